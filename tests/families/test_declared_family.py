"""A family declared only in YAML: identified with its hyperparameters by inspect, its mislabeled and
drifted files found by audit, its files renamed by content; bad family files are one clear error."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from ckreg.cli import cli
from ckreg.errors import FamilyError
from ckreg.families import add_family_files, load_family_file, registry


def codes(report):
    return sorted({f.code for f in report.findings})


def test_inspect_identifies_the_declared_family(kws_file, kws_module, save_sd, tmp_path):
    from ckreg.inspect import inspect_path

    path = save_sd(kws_module(n_mels=40, hidden_size=48, num_layers=3, num_classes=10), tmp_path / "a.ckpt")
    before = inspect_path(path)
    assert before.family == "unknown"                       # never seen by the project
    add_family_files([kws_file])
    insp = inspect_path(path)
    assert insp.family == "KWSNet" and insp.confidence == 1.0 and insp.findings == []
    assert insp.hyperparameters == {"n_mels": 40, "filters": 64, "hidden_size": 48, "num_layers": 3,
                                    "num_classes": 10}
    ev = "\n".join(insp.evidence)
    assert "n_mels=40 from conv.weight [64, 40, 5]" in ev and "num_layers=3 from gru.weight_ih_l{1,2}" in ev
    rec = registry().get("KWSNet")
    assert (insp.params.trainable, insp.params.buffers) == rec.counts(insp.hyperparameters)


def test_a_checked_dimension_that_breaks_is_broken_not_identified(kws_file, kws_module, save_sd, tmp_path, torch_mod):
    add_family_files([kws_file])
    sd = kws_module(hidden_size=32).state_dict()
    sd["gru.weight_ih_l0"] = torch_mod.zeros(96, 50)       # [3*hidden, filters] with filters=64 bound by conv
    from ckreg.inspect import inspect_path

    insp = inspect_path(save_sd(sd, tmp_path / "b.ckpt"))
    assert insp.family == "KWSNet"
    assert [f.code for f in insp.findings] == ["family-broken"]
    assert any("gru.weight_ih_l0: expected [96, 64], found [96, 50]" in b for b in insp.candidates[0].broken)


def test_inspect_cli_with_families_file(kws_file, kws_module, save_sd, tmp_path):
    path = save_sd(kws_module(num_layers=2), tmp_path / "c.ckpt")
    r = CliRunner().invoke(cli, ["inspect", str(path), "--json", "--families", str(kws_file)])
    assert r.exit_code == 0, r.output
    (got,) = json.loads(r.stdout)
    assert got["family"] == "KWSNet" and got["hyperparameters"]["num_layers"] == 2


def test_audit_finds_mislabeled_and_drifted_files(kws_file, kws_module, save_sd, tmp_path):
    from ckreg.arch import ArchSpec
    from ckreg.audit import audit
    from ckreg.zoo import build

    root = tmp_path / "runs"
    save_sd(kws_module(n_mels=40, hidden_size=32), root / "kws_good.ckpt")
    save_sd(kws_module(n_mels=40, hidden_size=48), root / "kws_drifted.ckpt")
    save_sd(build(ArchSpec.for_family("GRU", hidden_size=8)), root / "kwsnet_v3.ckpt")   # a GRU named as KWSNet
    save_sd(kws_module(n_mels=40, hidden_size=32, num_classes=5), root / "GRU_final.ckpt")  # a KWSNet named GRU
    manifest = tmp_path / "m.yaml"
    manifest.write_text("models:\n"
                        "  - name: kws\n    family: KWSNet\n    path: kws_*.ckpt\n"
                        "    hyperparameters: {n_mels: 40, hidden_size: 32, num_classes: 12}\n")
    r = audit(root, manifest=manifest, families=[kws_file], jobs=2)   # worker processes see the family too
    by = {}
    for f in r.findings:
        by.setdefault(f.path, set()).add(f.code)
    assert r.extra["files"]["kws_good.ckpt"]["family"] == "KWSNet"
    assert "kws_good.ckpt" not in by
    assert {"hidden-size-mismatch", "shape-drift"} <= by["kws_drifted.ckpt"]
    drift = next(f for f in r.findings if f.path == "kws_drifted.ckpt" and f.code == "shape-drift")
    assert "hidden-size" not in drift.message   # the hidden size explains it: shapes it implies are not repeated
    assert r.extra["declarations"]["kws"]["status"] == "satisfied"
    # without a manifest the names are the labels, for declared families too
    r2 = audit(root, families=[kws_file])
    mis = {f.path: f for f in r2.findings if f.code == "family-mislabeled"}
    assert mis["kwsnet_v3.ckpt"].expected == "KWSNet" and mis["kwsnet_v3.ckpt"].actual == "GRU"
    assert mis["GRU_final.ckpt"].expected == "GRU" and mis["GRU_final.ckpt"].actual == "KWSNet"


def test_manifest_families_section(kws_module, save_sd, tmp_path):
    from ckreg.audit import audit
    from tests.families.conftest import KWS_YAML

    root = tmp_path / "runs"
    save_sd(kws_module(n_mels=20, num_layers=2), root / "model.ckpt")
    manifest = tmp_path / "m.yaml"
    manifest.write_text(KWS_YAML + "models:\n  - name: kws\n    family: KWSNet\n    path: model.ckpt\n"
                        "    hyperparameters: {num_layers: 1}\n")
    r = audit(root, manifest=manifest)
    assert "layers-mismatch" in codes(r)
    assert registry().get("KWSNet").source == "manifest"


def test_rename_by_content(kws_file, kws_module, save_sd, tmp_path):
    from ckreg.rename import plan_rename

    root = tmp_path / "runs"
    save_sd(kws_module(n_mels=40, hidden_size=32, num_layers=2), root / "final.ckpt")
    plan = plan_rename(root, families=[kws_file])
    (move,) = plan.moves
    assert move.new.startswith("kwsnet-l2-h32-k12-nmels40-") and move.new.endswith(".ckpt")
    assert "weights are KWSNet" in move.reason


def test_families_command_lists_sources(kws_file):
    r = CliRunner().invoke(cli, ["families", "--json", "--families", str(kws_file)])
    assert r.exit_code == 0, r.output
    rows = {x["name"]: x for x in json.loads(r.stdout)}
    assert rows["GRU"]["source"] == "built-in" and rows["GRU"]["hyperparameters"]["proj_size"] == "2*hidden_size"
    assert rows["KWSNet"]["source"] == "file" and rows["KWSNet"]["hyperparameters"]["filters"] == 64
    text = CliRunner().invoke(cli, ["families", "--families", str(kws_file)], env={"COLUMNS": "80"}).output
    assert "KWSNet" in text and "n_mels, filters=64" in text
    assert all(len(line) <= 80 for line in text.splitlines())


@pytest.mark.parametrize("edit,needle,at", [
    (("[filters, n_mels, 5]", "[filters, n_mel, 5]"), "unknown hyperparameter 'n_mel'", "conv.weight"),
    (('indices: {l: "1..num_layers"}', "indices: {}"), "index {l} has no range", "gru.weight_ih_l{l}"),
    (('"1..num_layers"', '"1..layers"'), "unknown hyperparameter 'layers'", "indices"),
    (("[3*hidden_size, filters]", "[3*hidden_size; filters]"), "unexpected", "gru.weight_ih_l0"),
    (("names: [kws, kwsnet]", "nmaes: [kws]"), "did you mean 'names'", "nmaes"),
])
def test_bad_family_files_name_file_line_and_field(tmp_path, edit, needle, at):
    from tests.families.conftest import KWS_YAML

    path = tmp_path / "bad.yaml"
    text = KWS_YAML.replace(*edit)
    path.write_text(text)
    with pytest.raises(FamilyError) as info:
        load_family_file(path)
    msg = str(info.value)
    assert needle in msg and f"{path}:" in msg and "families[0]" in msg
    line = int(msg.split(f"{path}:")[1].split(":")[0])
    assert at in text.splitlines()[line - 1]
    r = CliRunner().invoke(cli, ["inspect", str(path), "--families", str(path)])
    assert r.exit_code == 2 and needle in r.output and "Traceback" not in r.output


def test_two_families_with_one_name_in_files(tmp_path, kws_file):
    other = tmp_path / "other.yaml"
    other.write_text(kws_file.read_text())
    add_family_files([kws_file])
    with pytest.raises(FamilyError, match="two families named 'KWSNet'.*kws.yaml.*other.yaml|other.yaml.*two families"):
        add_family_files([other])
    gru = tmp_path / "gru.yaml"
    gru.write_text(kws_file.read_text().replace("name: KWSNet", "name: GRU"))
    r = CliRunner().invoke(cli, ["families", "--families", str(gru)])
    assert r.exit_code == 2 and "two families named 'GRU'" in r.output and "built-in" in r.output


def test_a_declared_family_with_build_loads_strictly(tmp_path, kws_module, save_sd, torch_mod, monkeypatch):
    """`build:` makes a declared family buildable: the zoo loads its files strictly (verify/eval path)."""
    from tests.families.conftest import KWS_YAML
    from ckreg.errors import SpecError
    from ckreg.zoo import load_checkpoint

    pkg = tmp_path / "pkgs" / "acme_kws.py"
    pkg.parent.mkdir()
    pkg.write_text("from torch import nn\n\n"
                   "class KWSNet(nn.Module):\n"
                   "    def __init__(self, n_mels, filters, hidden_size, num_layers, num_classes):\n"
                   "        super().__init__()\n"
                   "        self.conv = nn.Conv1d(n_mels, filters, 5)\n"
                   "        self.gru = nn.GRU(filters, hidden_size, num_layers, batch_first=True)\n"
                   "        self.fc = nn.Linear(hidden_size, num_classes)\n")
    monkeypatch.syspath_prepend(str(pkg.parent))
    fam = tmp_path / "kws.yaml"
    fam.write_text(KWS_YAML + '    build: "acme_kws:KWSNet"\n')
    add_family_files([fam])
    src = kws_module(n_mels=20, hidden_size=16, num_layers=2)
    path = save_sd({"_forward_module." + k: v for k, v in src.state_dict().items()}, tmp_path / "k.ckpt")
    module, spec, insp = load_checkpoint(path)
    assert spec.family == "KWSNet" and spec.hparams["num_layers"] == 2 and insp.family == "KWSNet"
    for k, v in src.state_dict().items():
        assert torch_mod.equal(module.state_dict()[k], v)
    no_build = tmp_path / "nobuild.yaml"
    no_build.write_text(KWS_YAML.replace("name: KWSNet", "name: KWSNet2").replace("names: [kws, kwsnet]", "names: []"))
    with registry().scoped():
        registry().remove("KWSNet")
        add_family_files([no_build])
        with pytest.raises(SpecError, match="declares no build"):
            load_checkpoint(path)
