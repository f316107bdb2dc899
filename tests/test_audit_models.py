"""The audit on third-party models: a model folder is one model, TorchScript and ONNX are never
skipped silently, and only families that need a scaler are warned about a missing one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ckreg.audit import audit, walk
from test_audit import save_ckpt, tiny_spec

torch = pytest.importorskip("torch")


def _mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))


def _hf_folder(folder: Path, sd: dict, shards: int = 2, config: dict | None = None) -> Path:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    keys = list(sd)
    step = -(-len(keys) // shards)
    wm = {}
    for i in range(shards):
        name = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = {k: sd[k].contiguous() for k in keys[i * step:(i + 1) * step]}
        save_file(part, str(folder / name))
        wm.update({k: name for k in part})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": wm}))
    (folder / "config.json").write_text(json.dumps(config or {"model_type": "mlp"}))
    return folder


def test_model_folder_is_one_row(tmp_path):
    m = _mlp()
    _hf_folder(tmp_path / "models" / "mlp", m.state_dict())
    (tmp_path / "models" / "mlp" / "tokenizer.json").write_text("{}")
    rep = audit(tmp_path, jobs=1)
    assert "models/mlp/" in rep.checked
    assert not [c for c in rep.checked if c.endswith(".safetensors")]
    row = rep.extra["files"]["models/mlp/"]
    assert row["params"] == sum(p.numel() for p in m.parameters())
    assert not [f for f in rep.findings if f.code == "scaler-missing"]     # a third-party model
    w = walk(tmp_path)
    assert w.checkpoints == [tmp_path / "models" / "mlp"]


def test_model_folder_given_directly(tmp_path):
    _hf_folder(tmp_path / "mlp", _mlp().state_dict())
    rep = audit(tmp_path / "mlp", jobs=1)
    assert rep.checked == ["mlp/"]


def test_folder_name_labels_the_model(tmp_path):
    """A folder named after one family holding another family's weights is mislabeled."""
    from safetensors.torch import save_file

    src = save_ckpt(tmp_path / "src.pt", "GRU", lightning=False)
    sd = torch.load(src, weights_only=True)
    folder = tmp_path / "tree" / "StackedGRU_run"
    folder.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text("{}")
    rep = audit(tmp_path / "tree", jobs=1)
    mis = [f for f in rep.findings if f.code == "family-mislabeled"]
    assert mis and mis[0].path == "StackedGRU_run/" and "folder name" in mis[0].message
    assert [f.path for f in rep.findings if f.code == "scaler-missing"] == ["StackedGRU_run/"]


def test_family_that_needs_a_scaler_is_still_warned(tmp_path):
    save_ckpt(tmp_path / "gru" / "model.ckpt", "GRU")
    (tmp_path / "other").mkdir()
    torch.save(_mlp().state_dict(), tmp_path / "other" / "mlp.pt")
    rep = audit(tmp_path, jobs=1)
    assert [f.path for f in rep.findings if f.code == "scaler-missing"] == ["gru/model.ckpt"]


def test_torchscript_code_is_named_as_not_checked(tmp_path):
    torch.jit.script(_mlp()).save(str(tmp_path / "scripted.pt"))
    rep = audit(tmp_path, jobs=1)
    assert "scripted.pt" in rep.checked
    assert {f.code for f in rep.findings if f.path == "scripted.pt"} == {"torchscript-code", "family-unknown"}
    assert any(s.path.startswith("scripted.pt") and "TorchScript code" in s.reason for s in rep.skipped)
    assert rep.extra["files"]["scripted.pt"]["params"] == sum(p.numel() for p in _mlp().parameters())


def test_onnx_without_the_extra_is_skipped_with_the_reason(tmp_path, monkeypatch):
    pytest.importorskip("onnx")
    from ckreg.readers import onnx_reader

    torch.onnx.export(_mlp(), (torch.randn(1, 6),), str(tmp_path / "m.onnx"), dynamo=False)
    rep = audit(tmp_path, jobs=1)
    assert "m.onnx" in rep.checked
    monkeypatch.setattr(onnx_reader, "onnx_available", lambda: False)
    rep = audit(tmp_path, jobs=1)
    assert "m.onnx" not in rep.checked
    assert [s.reason for s in rep.skipped if s.path == "m.onnx"][0].count("ckreg[onnx]") == 1
