"""Deployment artifacts: rows linked to their float version (append-only), shown by `registry show`,
backfilled from the event log by the schema upgrade, copied with their version."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from ckreg.cli import cli
from ckreg.errors import RegistryError
from ckreg.registry import Artifact, Registry, schema
from ckreg.registry.copy import copy_versions
from reghelpers import as_revision_0001, stub_add


def record(fmt="onnx", status="verified", acc=0.9954, float_acc=0.9954, agree=1.0, mean=0.52, median=0.48,
           size=171_000, quant=None, out="/exports/gru"):
    """A deployment record shaped like `deploy.json` (the fields the registry reads, plus some it keeps)."""
    name = {"onnx": "model.onnx", "onnx-int8": "model.int8.onnx", "torchscript": "model.pt"}[fmt]
    rec = {"ref": "GRU@1", "family": "GRU", "format": fmt, "status": status, "out": out,
           "files": {name: "ab" * 32, "scaler.json": "cd" * 32}, "model_file": name, "model_bytes": size,
           "split": "test", "n_episodes": 217, "data_hash": "d" * 64, "float_accuracy": float_acc,
           "accuracy": acc, "agreement": agree, "threads": 2,
           "latency": {"mean_ms": mean, "median_ms": median, "p95_ms": 1.0, "samples": 50},
           "episode_ids": [f"a/{i}.csv" for i in range(5)], "reasons": [] if status == "verified" else ["worse"]}
    if quant:
        rec["quantization"] = {"mode": quant, "ops": ["MatMul"]}
    return rec


def test_an_artifact_is_a_row_of_its_version_and_an_event(reg, blob_file):
    stub_add(reg, blob_file(1))
    stub_add(reg, blob_file(2))
    a = reg.record_artifact("GRU@1", record())
    b = reg.record_artifact("GRU@1", record("onnx-int8", "failed", acc=0.9862, agree=0.9908, quant="static"))
    assert isinstance(a, Artifact) and a.ref == "GRU@1" and a.id < b.id
    assert (a.format, a.quantization, a.status, a.kind) == ("onnx", None, "verified", "onnx")
    assert (b.kind, b.status, b.verified, b.accuracy, b.float_accuracy, b.agreement) == (
        "int8-static", "failed", False, 0.9862, 0.9954, 0.9908)
    assert (b.latency_mean_ms, b.latency_median_ms, b.threads, b.model_bytes, b.n_episodes) == (0.52, 0.48, 2, 171_000,
                                                                                               217)
    assert b.model_sha256 == "ab" * 32 and b.location == "/exports/gru" and b.record["episode_ids"][0] == "a/0.csv"
    assert [x.id for x in reg.artifacts("GRU@1")] == [a.id, b.id] and reg.artifacts("GRU@2") == []
    assert [x.kind for x in reg.show("GRU@1").artifacts] == ["onnx", "int8-static"]
    events = [e for e in reg.events(kind="artifact") if e.version == 1]
    assert [e.data["format"] for e in events] == ["onnx", "onnx-int8"]
    with pytest.raises(RegistryError, match="status of verified or failed"):
        reg.record_artifact("GRU@1", {**record(), "status": "maybe"})
    assert len(reg.artifacts("GRU@1")) == 2


@pytest.mark.parametrize("sql", ["UPDATE artifacts SET status = 'verified'", "DELETE FROM artifacts"])
def test_artifacts_are_append_only_in_the_database(reg, blob_file, sql):
    stub_add(reg, blob_file(1))
    reg.record_artifact("GRU@1", record(status="failed", acc=0.5))
    with pytest.raises(sa.exc.DBAPIError, match="append-only"):
        with reg.index.write() as conn:
            conn.sa.execute(sa.text(sql))
    assert [a.status for a in reg.artifacts("GRU@1")] == ["failed"]


def test_upgrading_an_index_turns_its_artifact_events_into_rows(reg, blob_file):
    """An index written before the `artifacts` table: its `artifact` events become rows, the log stays."""
    stub_add(reg, blob_file(1))
    stub_add(reg, blob_file(2))
    old_int8 = {k: v for k, v in record("onnx-int8", "failed", acc=0.8663, agree=0.8711).items()}
    reg.record_artifact("GRU@1", record())
    reg.record_artifact("GRU@2", old_int8)
    before = [(e.id, e.at, e.who, e.data) for e in reg.events(kind="artifact")]
    as_revision_0001(reg)
    with pytest.raises(RegistryError, match="ckreg registry upgrade"):
        Registry(reg.root, db=reg.db, store=reg.store).ls()

    up = Registry(reg.root, db=reg.db, store=reg.store)
    assert up.upgrade() == (1, schema.current_version())
    arts = {a.ref: a for a in (up.artifacts("GRU@1") + up.artifacts("GRU@2"))}
    assert arts["GRU@1"].kind == "onnx" and arts["GRU@1"].status == "verified"
    two = arts["GRU@2"]
    assert (two.kind, two.status, two.accuracy, two.agreement) == ("int8-dynamic", "failed", 0.8663, 0.8711)
    assert (two.recorded_at, two.recorded_by) == (before[1][1], before[1][2]) and two.record == old_int8
    assert [(e.id, e.at, e.who, e.data) for e in up.events(kind="artifact")] == before
    up.record_artifact("GRU@2", record("onnx-int8", quant="static"))
    assert [a.kind for a in up.artifacts("GRU@2")] == ["int8-dynamic", "int8-static"]
    up.close()


def test_show_lists_artifacts_concisely_in_80_columns(tmp_path, blob_file):
    rp = tmp_path / "reg"
    with Registry(rp) as reg:
        stub_add(reg, blob_file(1))
        reg.record_artifact("GRU@1", record(mean=5.83, median=5.1, size=296 * 1024))
        reg.record_artifact("GRU@1", record("onnx-int8", "failed", acc=0.8663, agree=0.8711, quant="dynamic",
                                            mean=16.68, median=12.0, size=266 * 1024))
    res = CliRunner().invoke(cli, ["registry", "show", "GRU@1", "--registry", str(rp)], env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert max(len(x) for x in lines) <= 80, res.output
    head = next(i for i, x in enumerate(lines) if x.strip().startswith("artifacts"))
    onnx, int8 = lines[head + 1].split(), lines[head + 2].split()
    assert onnx == ["onnx", "99.54%", "100.00%", "5.83/5.10", "296", "verified"]
    drop = f"{100 * (0.8663 - 0.9954):+.2f}pt"
    assert int8 == ["int8-dynamic", "86.63%", "87.11%", "16.68/12.00", "266", "FAILED", drop]
    shown = json.loads(CliRunner().invoke(cli, ["registry", "show", "GRU@1", "--json", "--registry", str(rp)]).stdout)
    assert [a["status"] for a in shown["artifacts"]] == ["verified", "failed"]


def test_show_keeps_the_newest_artifacts_and_says_how_many_more(tmp_path, blob_file):
    from ckreg.cli.registry_cmd import ARTIFACTS_SHOWN

    rp = tmp_path / "reg"
    with Registry(rp) as reg:
        stub_add(reg, blob_file(1))
        for i in range(ARTIFACTS_SHOWN + 2):
            reg.record_artifact("GRU@1", record(size=(i + 1) * 1024))
    res = CliRunner().invoke(cli, ["registry", "show", "GRU@1", "--registry", str(rp)])
    rows = [x.split() for x in res.output.splitlines() if x.strip().startswith("onnx")]
    assert [r[4] for r in rows] == [str(i + 1) for i in range(2, ARTIFACTS_SHOWN + 2)]
    assert "(2 older: --json)" in res.output


def test_copy_brings_the_artifacts_along_once(tmp_path, blob_file, reg):
    src = Registry(tmp_path / "src")
    stub_add(src, blob_file(1))
    src.record_artifact("GRU@1", record())
    src.record_artifact("GRU@1", record("onnx-int8", quant="static"))
    res = copy_versions(src, reg, "GRU")
    assert res.versions[0].artifacts == 2
    got = reg.artifacts("GRU@1")
    assert [(a.kind, a.recorded_at, a.record) for a in got] == [(a.kind, a.recorded_at, a.record)
                                                                for a in src.artifacts("GRU@1")]
    again = copy_versions(src, reg, "GRU")
    assert again.versions[0].artifacts == 0 and len(reg.artifacts("GRU@1")) == 2
    src.close()
