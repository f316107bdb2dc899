"""`ckreg export --format onnx|onnx-int8|torchscript`: exported, verified on data, recorded; bad input loses nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ckreg.cli import cli
from ckreg.registry import Registry

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


def _export(reg_root, ref, to, fmt="onnx", data=None, *extra):
    args = ["export", ref, "--to", str(to), "--format", fmt, "--registry", str(reg_root), "--latency-samples", "5"]
    if data is not None:
        args += ["--data", str(data)]
    return CliRunner().invoke(cli, args + list(extra), env={"COLUMNS": "80"})


def _leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if p.name.startswith(".ckreg-tmp-")] if parent.exists() else []


@pytest.mark.parametrize("family", ["MSCSGRU_ScaleAware", "MSCGRU_ScaleAware", "MSCSGRU_ScaleHard", "MS3DGRU", "GRU"])
def test_onnx_matches_torch_on_padded_episodes(family, tmp_path):
    """The valid-step readout (halved for the scale-aware families) survives export: padded episodes agree."""
    import torch

    from ckreg import zoo
    from ckreg.arch import ArchSpec
    from ckreg.deploy import formats

    torch.manual_seed(0)
    extra = {} if family == "GRU" else {"cnn_filters": 4}
    model = zoo.build(ArchSpec.for_family(family, hidden_size=8, num_classes=5, **extra)).eval()
    path = tmp_path / "m.onnx"
    formats.export_onnx(model, model.spec, 14, path)
    run, inputs = formats.runner("onnx", path)
    rng = np.random.default_rng(1)
    X = rng.normal(size=(9, 14, 8)).astype(np.float32)
    mask = np.zeros((9, 14), np.uint8)
    for i in range(9):
        mask[i, 14 - i:] = 1 if i else 0          # 0 .. 8 padding rows
    with torch.no_grad():
        want = model(torch.from_numpy(X), torch.from_numpy(mask)).numpy()
    got = run(X, mask)
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert inputs == (["x"] if family == "GRU" else ["x", "mask"])
    if family != "GRU":
        # the mask really is read: the same rows with another padding give other logits
        assert not np.allclose(run(X, np.zeros_like(mask))[1:], got[1:], atol=1e-4)


def test_export_onnx_cli_folder_card_and_registry(registered, npz, tmp_path):
    reg_root, ref = registered("MSCSGRU_ScaleAware")
    out = tmp_path / "exp"
    r = _export(reg_root, ref, out, "onnx", npz)
    assert r.exit_code == 0, r.output
    assert "verified" in r.output and max(len(x) for x in r.output.splitlines()) <= 80, r.output
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "deploy.json", "model.onnx", "scaler.json"]
    rec = json.loads((out / "deploy.json").read_text())
    assert rec["status"] == "verified" and rec["format"] == "onnx" and rec["inputs"] == ["x", "mask"]
    assert rec["agreement"] == 1.0 and rec["accuracy"] == pytest.approx(rec["float_accuracy"])
    assert rec["latency"]["mean_ms"] > 0 and rec["latency"]["median_ms"] > 0
    assert rec["split"] == "test" and rec["n_episodes"] == len(rec["episode_ids"]) > 0
    card = (out / "README.md").read_text()
    for needle in ("flex1, flex2, flex3, flex4, flex5, pitch, roll, yaw", "scaler.json", "1 on padding rows",
                   "[batch, 12, 8]", "verified"):
        assert needle in card, needle
    with Registry(reg_root) as reg:
        arts = reg.artifacts(ref)
    assert arts[-1].format == "onnx" and arts[-1].status == "verified" and arts[-1].quantization is None
    assert arts[-1].model_sha256 == rec["files"]["model.onnx"]
    assert {k: v for k, v in arts[-1].record.items() if k != "files"} == {k: v for k, v in rec.items() if k != "files"}
    assert arts[-1].accuracy == rec["accuracy"] and arts[-1].agreement == rec["agreement"]
    assert arts[-1].latency_median_ms == rec["latency"]["median_ms"] and arts[-1].model_bytes == rec["model_bytes"]
    assert arts[-1].location == str(out)


@pytest.mark.parametrize("family,quant", [("MSCGRU_ScaleAware", "static"), ("MSCGRU_ScaleAware", "dynamic"),
                                          ("GRU", "static")])
def test_a_fresh_process_with_onnxruntime_and_numpy_only_reproduces_the_accuracy(registered, npz, tmp_path, family,
                                                                                   quant):
    reg_root, ref = registered(family)
    out = tmp_path / "exp"
    assert _export(reg_root, ref, out, "onnx-int8", npz, "--quant", quant).exit_code == 0
    rec = json.loads((out / "deploy.json").read_text())
    assert rec["quantization"]["mode"] == quant
    larger = rec["model_bytes"] > rec["quantization"]["float_onnx_bytes"]
    assert larger == any("larger than the float ONNX model" in w for w in rec["warnings"])
    assert larger or family == "GRU", "the tiny unrolled scale-aware cell is all small ops: its INT8 model is larger"
    block = tmp_path / "block"
    for mod in ("torch", "ckreg"):
        (block / mod).mkdir(parents=True)
        (block / mod / "__init__.py").write_text(f"raise ImportError('{mod} is not available here')\n")
    code = r'''
import json, sys, numpy as np, onnxruntime as ort
folder, data = sys.argv[1], sys.argv[2]
rec = json.load(open(folder + "/deploy.json"))
sc = json.load(open(folder + "/scaler.json"))
d = np.load(data)
idx = [int(i.rsplit("#", 1)[1]) for i in rec["episode_ids"]]
x = ((d["X"][idx] - np.array(sc["mean"])) / np.array(sc["scale"])).astype(np.float32)
sess = ort.InferenceSession(folder + "/" + rec["model_file"])
feed = {"x": x, "mask": d["mask"][idx].astype(np.int64)}
logits = sess.run(None, {i.name: feed[i.name] for i in sess.get_inputs()})[0]
print(float((logits.argmax(1) == d["y"][idx]).mean()))
'''
    env = dict(os.environ, PYTHONPATH=str(block))
    proc = subprocess.run([sys.executable, "-c", code, str(out), str(npz)], capture_output=True, text=True, env=env,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert float(proc.stdout) == pytest.approx(rec["accuracy"])


def _training_ids(npz, rec):
    from ckreg.data import load_dataset, split

    ds = load_dataset(npz)
    sp = split(ds, seed=0, val=0.15, test=0.15)
    return ds, {ds.ids[i] for i in sp.train}


def test_static_int8_is_the_default_and_calibrates_on_scaled_training_episodes(registered, npz, tmp_path):
    """The input's calibrated range is the range of exactly the recorded training episodes, scaled."""
    import onnx
    from onnx import numpy_helper

    reg_root, ref = registered("GRU")
    out = tmp_path / "st"
    r = _export(reg_root, ref, out, "onnx-int8", npz, "--calibration", "12")
    assert r.exit_code == 0, r.output
    assert "static QDQ" in r.output and "calibrated on 12 training" in r.output
    rec = json.loads((out / "deploy.json").read_text())
    q = rec["quantization"]
    assert rec["status"] == "verified" and q["mode"] == "static" and q["format"] == "QDQ"
    assert q["weights"] == "int8 per channel" and {"MatMul", "Gemm"} <= set(q["ops"])
    cal = q["calibration"]
    assert cal["split"] == "train" and cal["episodes"] == cal["requested"] == 12 == len(set(cal["episode_ids"]))
    ds, train = _training_ids(npz, rec)
    assert set(cal["episode_ids"]) <= train and not set(cal["episode_ids"]) & set(rec["episode_ids"])
    sc = json.loads((out / "scaler.json").read_text())
    where = {e: i for i, e in enumerate(ds.ids)}
    xc = (ds.X[[where[e] for e in cal["episode_ids"]]] - np.array(sc["mean"])) / np.array(sc["scale"])
    lo, hi = min(0.0, float(xc.min())), max(0.0, float(xc.max()))
    graph = onnx.load(str(out / "model.int8.onnx")).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    qx = next(n for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "x")
    assert float(inits[qx.input[1]]) == pytest.approx((hi - lo) / 255, rel=1e-4)
    # the recurrent op and the tensors between the int8 ops stay float
    gru_inputs = {i for m in graph.node if m.op_type == "GRU" for i in m.input}
    assert gru_inputs and not any(n.op_type == "DequantizeLinear" and n.output[0] in gru_inputs for n in graph.node)
    card = (out / "README.md").read_text()
    assert "statically (QDQ)" in card and "12 episodes of the" in card and "episode_ids" not in card
    with Registry(reg_root) as reg:
        art = reg.artifacts(ref)[-1]
    assert art.kind == "int8-static" and art.record["quantization"]["calibration"]["episodes"] == 12


def test_static_int8_keeps_conv3d_float_and_calibrates_on_at_most_the_training_split(registered, npz, tmp_path):
    reg_root, ref = registered("MS3DGRU")
    out = tmp_path / "st3d"
    r = _export(reg_root, ref, out, "onnx-int8", npz, "--json")
    assert r.exit_code in (0, 1), r.output
    q = json.loads(r.stdout)["quantization"]
    assert "Conv" not in q["ops"] and q["kept_float"] and "Conv3d" in q["kept_float"][0]
    _ds, train = _training_ids(npz, None)
    assert q["calibration"]["requested"] == 200 and q["calibration"]["episodes"] == len(train)


def test_outside_the_tolerance_is_recorded_failed(registered, npz, tmp_path, monkeypatch):
    """An artifact that loses accuracy (here: its predictions shifted for every other episode) never reads verified."""
    from ckreg.deploy import formats

    real = formats.runner

    def worse(fmt, path, threads=1):
        run, names = real(fmt, path, threads)

        def shifted(x, mask):
            logits = run(x, mask)
            return np.roll(logits, 1, axis=1) if len(x) > 1 else logits
        return shifted, names

    monkeypatch.setattr(formats, "runner", worse)
    reg_root, ref = registered("GRU")
    out = tmp_path / "bad"
    r = _export(reg_root, ref, out, "onnx", npz)
    assert r.exit_code == 1, r.output
    assert "FAILED" in r.output and "points below" in r.output
    rec = json.loads((out / "deploy.json").read_text())
    assert rec["status"] == "failed" and rec["reasons"]
    assert "FAILED verification" in (out / "README.md").read_text()
    with Registry(reg_root) as reg:
        assert reg.artifacts(ref)[-1].status == "failed"


def test_an_existing_folder_is_refused_untouched(registered, npz, tmp_path):
    reg_root, ref = registered("GRU")
    out = tmp_path / "exists"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    r = _export(reg_root, ref, out, "onnx", npz)
    assert r.exit_code == 2 and "export folder exists" in r.output and "Traceback" not in r.output
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_an_operator_that_does_not_export_leaves_nothing(registered, npz, tmp_path, monkeypatch):
    import torch

    def refuse(*a, **k):
        raise torch.onnx.errors.UnsupportedOperatorError("aten::weird_op", 17, "")

    monkeypatch.setattr(torch.onnx, "export", refuse)
    reg_root, ref = registered("GRU")
    with Registry(reg_root) as reg:
        before = len(reg.artifacts(ref))
    out = tmp_path / "x" / "new"
    r = _export(reg_root, ref, out, "onnx", npz)
    assert r.exit_code == 2 and "does not export to ONNX" in r.output and "weird_op" in r.output
    assert not out.exists() and _leftovers(out.parent) == []
    with Registry(reg_root) as reg:
        assert len(reg.artifacts(ref)) == before


def test_missing_onnxruntime_names_the_extra(registered, npz, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    reg_root, ref = registered("GRU")
    r = _export(reg_root, ref, tmp_path / "o", "onnx", npz)
    assert r.exit_code == 2 and "pip install 'ckreg[deploy]'" in r.output
    assert not (tmp_path / "o").exists()


def test_deployment_formats_need_data_and_refuse_safetensors_flags(registered, npz, tmp_path):
    reg_root, ref = registered("GRU")
    r = _export(reg_root, ref, tmp_path / "o", "onnx")
    assert r.exit_code == 2 and "--data" in r.output
    r = _export(reg_root, ref, tmp_path / "o", "onnx", npz, "--force")
    assert r.exit_code == 2 and "--force" in r.output
    r = _export(reg_root, ref, tmp_path / "o", "onnx", npz, "--quant", "static")
    assert r.exit_code == 2 and "--quant applies to --format onnx-int8" in r.output
    r = _export(reg_root, ref, tmp_path / "o", "safetensors", None, "--quant", "dynamic")
    assert r.exit_code == 2 and "--quant applies to --format onnx-int8" in r.output
    r = _export(reg_root, ref, tmp_path / "o", "onnx-int8", npz, "--calibration", "0")
    assert r.exit_code == 2 and "--calibration" in r.output
    assert not (tmp_path / "o").exists()


def test_atomic_dir_removes_a_failed_folder_and_never_replaces(tmp_path):
    from ckreg.fsutil import atomic_dir

    target = tmp_path / "t"
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "a").write_text("x")
            raise RuntimeError("boom")
    assert not target.exists() and _leftovers(tmp_path) == []
    with atomic_dir(target) as tmp:
        (tmp / "a").write_text("x")
    assert (target / "a").read_text() == "x"
    with pytest.raises(FileExistsError):
        with atomic_dir(target):
            pass


def _glove_tree(root: Path) -> Path:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "train_factories_for_deploy", Path(__file__).resolve().parents[1] / "train" / "train_factories.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.make_glove_tree(root)


@pytest.mark.parametrize("quant", ["static", "dynamic"])
def test_the_independent_check_reproduces_a_signglove_export_without_torch_or_ckreg(tmp_path, fit, quant):
    """bench/e2e_deploy_check.py (onnxruntime + numpy, its own CSV reader) agrees with what the export recorded."""
    tree = _glove_tree(tmp_path / "glove")
    ck, sc = fit("GRU", tree, tmp_path / "src")
    with Registry(tmp_path / "reg") as reg:
        ref = reg.add(ck, sc, name="g", family="GRU").ref
    out = tmp_path / "exp"
    r = _export(tmp_path / "reg", ref, out, "onnx-int8", tree, "--quant", quant, "--split", "all")
    assert r.exit_code in (0, 1), r.output
    rec = json.loads((out / "deploy.json").read_text())
    assert rec["classes"] == ["a", "b", "c"] and rec["pad_value"] == 1.0 and len(rec["channels"]) == 8
    block = tmp_path / "block"
    for mod in ("torch", "ckreg"):
        (block / mod).mkdir(parents=True)
        (block / mod / "__init__.py").write_text(f"raise ImportError('{mod} is not available here')\n")
    script = Path(__file__).resolve().parents[2] / "bench" / "e2e_deploy_check.py"

    def check():
        return subprocess.run([sys.executable, str(script), "--data", str(tree), "--json", str(out)],
                              capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(block)),
                              cwd=tmp_path)

    proc = check()
    assert proc.returncode == 0, proc.stderr
    row = json.loads(proc.stdout)[0]
    assert row["match"] and row["n"] == rec["n_episodes"] == 21 and row["reproduced"] == pytest.approx(rec["accuracy"])
    assert row["kind"] == f"int8-{quant}"
    os.chmod(out / "deploy.json", 0o644)
    (out / "deploy.json").write_text(json.dumps({**rec, "accuracy": rec["accuracy"] - 2 / 21}))
    proc = check()
    assert proc.returncode == 1 and not json.loads(proc.stdout)[0]["match"]
