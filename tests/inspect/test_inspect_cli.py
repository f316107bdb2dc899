"""`ckreg inspect`: human output, --json schema, --hash, exit codes, bad input, no torch."""

from __future__ import annotations

import json
import os
import random
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from ckreg.cli import cli
from ckreg.inspect import inspect_path

SRC = Path(__file__).resolve().parents[2] / "src"


def _run(*args):
    return CliRunner().invoke(cli, ["inspect", *map(str, args)])


def test_human_output(save_ckpt):
    path = save_ckpt("MS3DGRU")
    res = _run(path)
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert "MS3DGRU" in out and "confidence 1.00" in out
    assert "58,840 trainable + 388 buffer elements" in out
    assert "tower_kernels=[3x3x3, 5x5x5, 7x7x7]" in out
    assert "tower2  4,161" in out and "weight [32, 1, 5, 5, 5] float32" in out  # module tree
    assert "findings" in out and "none" in out


def test_other_candidates_never_list_the_chosen_family(save_ckpt):
    """ScaleAware and ScaleHard tie on weights; metadata picks ScaleHard, so ScaleAware is the other one."""
    path = save_ckpt("MSCSGRU_ScaleHard", hyper_parameters={"model_name": "MSCSGRU_ScaleHard"})
    out = _run(path, "--no-tree").stdout
    line = next(ln for ln in out.splitlines() if "other candidates" in ln)
    assert "MSCSGRU_ScaleAware 1.00" in line and "MSCSGRU_ScaleHard" not in line


def test_human_output_unknown_and_ambiguous(save_ckpt, tmp_path):
    import torch

    unknown = save_ckpt({"encoder.weight": torch.zeros(4, 3), "encoder.bias": torch.zeros(4)}, kind="plain")
    amb = save_ckpt("MSCSGRU_ScaleAware")
    res = _run(unknown, amb)
    assert res.exit_code == 0, res.output
    assert "unknown" in res.stdout and "classifier output width 4" in res.stdout
    assert "ambiguous: MSCSGRU_ScaleAware | MSCSGRU_ScaleHard" in res.stdout
    assert "family-ambiguous" in res.stdout


JSON_FIELDS = {"path", "format", "family", "confidence", "hyperparameters", "params", "sha256", "layout_sha256",
               "weights_sha256", "metadata", "evidence", "findings", "not_recorded", "candidates", "leftovers",
               "description", "layout", "error"}


def test_json_schema(save_ckpt):
    paths = [save_ckpt("GRU", overrides={"num_layers": 2}), save_ckpt("CNNGRU", kind="safetensors")]
    res = _run("--json", *paths)
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert isinstance(data, list) and [d["path"] for d in data] == [str(p) for p in paths]
    first = data[0]
    assert JSON_FIELDS <= set(first)
    assert first["family"] == "GRU" and first["format"] == "torch-zip"
    assert first["hyperparameters"] == {"input_size": 8, "hidden_size": 64, "num_layers": 2, "num_classes": 24,
                                        "cell": "GRU", "bidirectional": False, "proj_size": 128}
    assert first["params"]["trainable"] == 74_776 and first["params"]["buffers"] == 0
    assert isinstance(first["confidence"], float) and 0 <= first["confidence"] <= 1
    assert len(first["sha256"]) == 64 and first["weights_sha256"] is None and len(first["layout_sha256"]) == 64
    assert first["metadata"]["epoch"] == 3
    assert any(e.startswith("hidden_size=64 from") for e in first["evidence"])
    assert first["layout"]["RNN.0.weight"] == ["float32", [128, 8]]
    assert data[1]["format"] == "safetensors" and data[1]["params"]["buffers"] == 65


def test_json_findings_and_hash(save_ckpt):
    path = save_ckpt("MSCSGRU_ScaleHard")
    res = _run("--json", "--hash", path)
    assert res.exit_code == 0, res.output
    (obj,) = json.loads(res.stdout)
    assert len(obj["sha256"]) == 64 and len(obj["weights_sha256"]) == 64
    (f,) = obj["findings"]
    assert {"code", "severity", "message"} <= set(f)
    assert f["code"] == "family-ambiguous" and f["severity"] == "warning"


def test_bad_inputs_exit_2_and_others_reported(tmp_path, save_ckpt):
    good = save_ckpt("GRU")
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    rnd = tmp_path / "random.bin"
    # seeded, and led by 0xff (no pickle opcode, no format magic): random bytes must not
    # sometimes spell a valid header and make the test flaky
    rnd.write_bytes(b"\xff" + random.Random(0).randbytes(2047))
    trunc = tmp_path / "trunc.ckpt"
    trunc.write_bytes(good.read_bytes()[:3000])
    loop = tmp_path / "loop.ckpt"
    os.symlink(loop, loop)
    missing = tmp_path / "missing.ckpt"
    bad = [empty, rnd, trunc, tmp_path, loop, missing]
    before = sorted(os.listdir(tmp_path))
    res = _run("--json", good, *bad)
    assert res.exit_code == 2
    data = json.loads(res.stdout)
    assert [d["family"] for d in data] == ["GRU"] + ["unknown"] * len(bad)
    assert data[0]["error"] is None and all(d["error"] for d in data[1:])
    err_lines = res.stderr.strip().splitlines()
    assert len(err_lines) == len(bad)
    for path, line in zip(bad, err_lines):
        assert line.startswith("error: ") and str(path) in line
    assert "Traceback" not in res.output
    assert sorted(os.listdir(tmp_path)) == before  # nothing written
    human = _run(good, empty)
    assert human.exit_code == 2 and "GRU" in human.stdout and str(empty) in human.stderr


def test_unsafe_global_exit_1(tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    path = tmp_path / "evil.pt"
    with open(path, "wb") as fh:
        pickle.dump({"state_dict": {}, "x": Payload()}, fh, protocol=2)
    res = _run(path)
    assert res.exit_code == 1, res.output
    assert "unsafe-global" in res.stdout
    assert not (tmp_path / "pwned").exists()


def test_exit_codes_match_the_core(tmp_path, save_ckpt):
    from ckreg.inspect import exit_code

    good = inspect_path(save_ckpt("GRU"))
    missing = inspect_path(tmp_path / "missing.ckpt")
    assert exit_code([good]) == 0 and exit_code([good, missing]) == 2


def test_inspect_works_where_torch_import_fails(tmp_path, save_ckpt):
    path = save_ckpt("MSCSGRU", kind="lightning", prefix="model.")
    block = tmp_path / "block" / "torch"
    block.mkdir(parents=True)
    (block / "__init__.py").write_text("raise ImportError('torch blocked for this test')\n")
    code = "import sys; from ckreg.cli import main; main(['inspect', '--json', '--hash', sys.argv[1]])"
    env = {"PYTHONPATH": f"{block.parent}{os.pathsep}{SRC}", "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    (obj,) = json.loads(proc.stdout)
    assert obj["family"] == "MSCSGRU" and obj["params"]["trainable"] == 71_800 and obj["weights_sha256"]
    check = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True, text=True, env=env)
    assert check.returncode != 0  # the block really was in place


def test_usage_error_without_paths():
    res = CliRunner().invoke(cli, ["inspect"])
    assert res.exit_code == 2
