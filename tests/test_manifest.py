"""`ckreg.manifest`: validation with file, line and field path; the archive's manifest (issue #4)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ckreg.cli import cli
from ckreg.errors import ManifestError
from ckreg.inspect.layouts import param_counts
from ckreg.manifest import load_manifest, manifest_schema, parse_manifest, path_matches

MANIFEST = Path(__file__).resolve().parents[1] / "manifests" / "signglove.yaml"


def problems(text: str) -> list[tuple[str, int | None, str]]:
    with pytest.raises(ManifestError) as exc:
        parse_manifest(text, source="m.yaml")
    return exc.value.problems


def test_signglove_manifest_states_the_archive_intent():
    m = load_manifest(MANIFEST)
    by_name = {d.name: d for d in m.models}
    assert set(by_name) == {"GRU", "StackedGRU", "MS3DGRU", "MS3DStackedGRU", "MSCSGRU"}
    assert by_name["GRU"].declared()["num_layers"] == 1 and by_name["GRU"].declared()["proj_size"] == 128
    assert by_name["StackedGRU"].declared()["num_layers"] == 2
    assert m.metrics_for(by_name["MS3DGRU"]).accuracy == pytest.approx(0.9913)
    assert m.metrics_for(by_name["MSCSGRU"]).accuracy == pytest.approx(0.993)
    for d in m.models:
        hp = d.declared()
        assert (hp["input_size"], hp["num_classes"], hp["hidden_size"]) == (8, 24, 64)
        assert d.scaler and d.path
        # the declared parameter count is the one the declared architecture implies
        assert param_counts(d.spec())[0] == d.params, d.name
        assert m.training_for(d).epochs and m.training_for(d).lr and m.training_for(d).batch_size
    assert by_name["MS3DGRU"].path == "best_model/ms3dgru_best.ckpt"
    assert by_name["MS3DGRU"].scaler == "best_model/scaler.pkl"
    assert m.dataset_for(by_name["GRU"]).preprocessing.T == 87


def test_unknown_family_names_line_field_and_expectation():
    text = "models:\n  - name: A\n    family: GRU\n  - name: B\n    family: MS3DGRUU\n"
    ((where, line, msg),) = problems(text)
    assert (where, line) == ("models[1].family", 5)
    assert "did you mean 'MS3DGRU'" in msg and "expected one of" in msg


def test_message_format_is_file_line_path():
    with pytest.raises(ManifestError) as exc:
        parse_manifest("models:\n  - name: A\n    family: GRU\n    params: lots\n", source="dir/m.yaml")
    assert "dir/m.yaml:4: models[0].params:" in str(exc.value)
    assert "valid integer" in str(exc.value) and "'lots'" in str(exc.value)


def test_every_structural_problem_is_reported_at_once():
    text = """\
version: 1
models:
  - name: A
    family: GRU
    hyperparameters: {num_layerz: 2}
    metrics: {accuracy: 99.13}
    pathh: x.ckpt
  - family: GRUU
"""
    got = {(w, line): msg for w, line, msg in problems(text)}
    assert "did you mean 'GRU'" in got[("models[1].family", 8)]
    assert "did you mean 'num_layers'" in got[("models[0].hyperparameters.num_layerz", 5)]
    assert "did you mean 0.9913" in got[("models[0].metrics.accuracy", 6)]
    assert "expected one of: name, family" in got[("models[0].pathh", 7)]
    assert got[("models[1].name", 8)] == "required field is missing"


def test_hyperparameter_the_family_does_not_have():
    ((where, line, msg),) = problems("models:\n  - name: A\n    family: MS3DGRU\n    hyperparameters:\n      proj_size: 128\n")
    assert (where, line) == ("models[0].hyperparameters.proj_size", 5)
    assert "MS3DGRU has no hyperparameter 'proj_size'" in msg


def test_architecture_that_cannot_exist():
    text = "models:\n  - name: A\n    family: MS3DGRU\n    hyperparameters: {tower_kernels: [[3, 3], [5, 5]]}\n"
    ((where, line, msg),) = problems(text)
    assert where == "models[0].hyperparameters" and line == 4 and "not a valid MS3DGRU" in msg


def test_references_and_paths():
    text = """\
models:
  - {name: A, family: GRU, path: /abs/a.ckpt}
  - {name: A, family: GRU, scaler: ../outside/scaler.pkl, dataset: nope}
"""
    got = {w: (line, msg) for w, line, msg in problems(text)}
    assert "absolute path" in got["models[0].path"][1] and got["models[0].path"][0] == 2
    assert "duplicate model name 'A'" in got["models[1].name"][1]
    assert "inside the audited root" in got["models[1].scaler"][1]
    assert "unknown dataset 'nope'" in got["models[1].dataset"][1]


@pytest.mark.parametrize("text,needle", [
    ("", "empty"),
    ("- just\n- a list\n", "expected a mapping"),
    ("models: [\n", "not valid YAML"),
    ("name: x\n", "models"),
    ("models:\n  - name: A\n    family: GRU\n    family: LSTM\n", "duplicate key"),
])
def test_not_a_manifest(text, needle):
    with pytest.raises(ManifestError) as exc:
        parse_manifest(text, source="m.yaml")
    assert needle in str(exc.value)


def test_missing_manifest_file(tmp_path):
    with pytest.raises(ManifestError, match="no such manifest"):
        load_manifest(tmp_path / "absent.yaml")


@pytest.mark.parametrize("pattern,path,ok", [
    ("a/GRU_best.ckpt", "a/GRU_best.ckpt", True),
    ("./a/GRU_best.ckpt", "a/GRU_best.ckpt", True),
    ("a/GRU_best*.ckpt", "a/GRU_best-v1.ckpt", True),
    ("a/GRU_best*.ckpt", "a/b/GRU_best.ckpt", False),
    ("**/GRU_best.ckpt", "a/b/GRU_best.ckpt", True),
    ("**/GRU_best.ckpt", "GRU_best.ckpt", True),
    ("a/*.ckpt", "a/x.pt", False),
    ("a/[Gg]ru.ckpt", "a/gru.ckpt", True),
])
def test_path_globs(pattern, path, ok):
    assert path_matches(pattern, path) is ok


def test_schema_describes_the_manifest():
    jsonschema = pytest.importorskip("jsonschema")
    schema = manifest_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    import yaml

    data = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(schema).validate(data)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate({"models": [{"name": "x", "family": "GRU", "bogus": 1}]})


def test_cli_manifest_schema_and_check(tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["manifest", "schema"])
    assert res.exit_code == 0 and json.loads(res.output)["title"] == "ckreg manifest"
    res = runner.invoke(cli, ["manifest", "check", str(MANIFEST)])
    assert res.exit_code == 0 and "ok (5 models" in res.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  - name: A\n    family: GRUU\n", encoding="utf-8")
    res = runner.invoke(cli, ["manifest", "check", str(bad)])
    assert res.exit_code == 2
    assert f"{bad}:3: models[0].family" in res.output


def test_cli_check_many_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: []\n", encoding="utf-8")
    res = CliRunner().invoke(cli, ["manifest", "check", str(MANIFEST), str(bad)])
    assert res.exit_code == 2
    assert "signglove.yaml: ok" in res.stdout and f"{bad}:1: models" in res.stderr
