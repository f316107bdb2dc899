"""Lineage in the audit (notes) and in the registry (provenance, `registry show`)."""

from __future__ import annotations

import json
import re

from click.testing import CliRunner

from ckreg.audit import audit
from ckreg.cli import cli
from ckreg.findings import CODES, Severity
from ckreg.registry import Registry


def test_audit_lineage_notes(runs, tmp_path):
    plain = audit(tmp_path / "lab")
    assert not [f for f in plain.findings if f.code == "lineage"]
    rep = audit(tmp_path / "lab", lineage=True)
    notes = {f.path: f for f in rep.findings if f.code == "lineage"}
    assert set(notes) == {"ft/model.safetensors", "vq/model.safetensors", "copy/base_copy.safetensors"}
    assert all(f.severity == Severity.note for f in notes.values())
    assert "fine-tuned-from base/model.safetensors" in notes["ft/model.safetensors"].message
    assert "encoder.* 25/25" in notes["vq/model.safetensors"].message
    assert {e["relation"] for e in rep.extra["lineage"]} == {"identical", "fine-tuned-from", "transplanted"}
    assert CODES["lineage"].severity == Severity.note
    assert rep.exit_code() == plain.exit_code()       # notes never fail the gate


def test_audit_cli_lineage_json(runs, tmp_path):
    res = CliRunner().invoke(cli, ["audit", str(tmp_path / "lab"), "--lineage", "--format", "json"])
    data = json.loads(res.stdout)
    assert any(f["code"] == "lineage" for f in data["findings"])


def _spec():
    from ckreg.arch import ArchSpec

    return ArchSpec.for_family("GRU", hidden_size=16, input_size=8, num_classes=10)


def test_registry_records_and_shows_lineage(runs, tmp_path):
    reg = Registry(tmp_path / "reg")
    base = reg.add(runs["base"], name="enc", spec=_spec(), lineage=True)
    assert not (base.provenance or {}).get("lineage")
    ft = reg.add(runs["ft"], name="enc", spec=_spec(), lineage=True)
    (edge,) = ft.provenance["lineage"]
    assert edge["child"] == "enc@2" and edge["parent"] == "enc@1" and edge["relation"] == "fine-tuned-from"
    assert edge["directed"] and 0 < edge["distance"] < 0.2
    vq = reg.add(runs["vq"], name="vq", spec=_spec(), lineage=True)
    (tp,) = vq.provenance["lineage"]
    assert {tp["child"], tp["parent"]} == {"vq@1", "enc@1"} and tp["relation"] == "transplanted"
    assert tp["groups"][0] == {"name": "encoder.*", "shared": 25, "total": 25}
    # without --lineage nothing is compared
    other = reg.add(runs["other"], name="other", spec=_spec())
    assert not (other.provenance or {}).get("lineage")
    res = CliRunner().invoke(cli, ["registry", "--registry", str(tmp_path / "reg"), "show", "enc@2"])
    assert res.exit_code == 0, res.output
    assert re.search(r"lineage\s+fine-tuned-from enc@1 \(distance", res.output), res.output
    copy = reg.add(runs["copy"], name="copy", spec=_spec(), lineage=True)
    assert [(e["relation"], e["parent"]) for e in copy.provenance["lineage"]] == [("identical", "enc@1")] or \
        [(e["relation"], e["child"]) for e in copy.provenance["lineage"]] == [("identical", "enc@1")]
    res = CliRunner().invoke(cli, ["registry", "--registry", str(tmp_path / "reg"), "show", "copy@1"])
    assert re.search(r"lineage\s+identical enc@1", res.output), res.output
