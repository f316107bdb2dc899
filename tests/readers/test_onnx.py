"""ONNX: initializers read with the onnx package (the [onnx] extra); the base install names the extra."""

from __future__ import annotations

import pytest

from ckreg.inspect import exit_code, inspect_path
from ckreg.readers import onnx_reader, read_checkpoint

onnx = pytest.importorskip("onnx")


def _helper_model(path):
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.arange(12, dtype=np.float16).reshape(4, 3), "fc.weight")
    b = numpy_helper.from_array(np.zeros(4, dtype=np.float16), "fc.bias")
    steps = numpy_helper.from_array(np.array([7], dtype=np.int64), "steps")
    node = helper.make_node("Gemm", ["x", "fc.weight", "fc.bias"], ["y"], transB=1)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [1, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT16, [1, 4])],
                              initializer=[w, b, steps])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_helper_built_model(tmp_path):
    path = _helper_model(tmp_path / "m.onnx")
    res = read_checkpoint(path)
    assert res.format == "onnx"
    assert {n: (r.dtype, r.shape) for n, r in res.tensors.items()} == {
        "fc.weight": ("float16", (4, 3)), "fc.bias": ("float16", (4,)), "steps": ("int64", (1,))}
    assert res.metadata["onnx"]["opset"] == {"ai.onnx": 17}
    insp = inspect_path(path, hash_weights=True)
    assert (insp.params.trainable, insp.params.buffers) == (16, 1)
    assert insp.structure["classifier"]["out_features"] == 4
    assert insp.weights_sha256 and not [f for f in insp.findings if f.code == "unreadable"]


def test_torch_export_counts_and_structure(tmp_path, torch_mod):
    torch = torch_mod
    from torch import nn

    m = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 10)).eval()
    path = tmp_path / "net.onnx"
    torch.onnx.export(m, (torch.randn(1, 3, 8, 8),), str(path), dynamo=False, do_constant_folding=False)
    insp = inspect_path(path)
    assert insp.format == "onnx" and insp.error is None
    assert insp.params.trainable == sum(p.numel() for p in m.parameters()) and insp.params.buffers == 0
    s = insp.structure
    assert s["conv"] == {"count": 1, "by_dim": {"2": 1}, "kernels": {"3x3": 1}}
    assert s["classifier"]["in_features"] == 288 and s["classifier"]["out_features"] == 10
    assert insp.metadata["onnx"]["ops"]["Conv"] == 1


def test_base_install_names_the_extra(tmp_path, monkeypatch):
    path = _helper_model(tmp_path / "m.onnx")
    monkeypatch.setattr(onnx_reader, "onnx_available", lambda: False)
    insp = inspect_path(path)
    assert insp.error is None and insp.format == "onnx"
    need = [f for f in insp.findings if f.code == "format-needs-extra"]
    assert need and "ckreg[onnx]" in need[0].message
    assert not [f for f in insp.findings if f.code == "unreadable"]
    assert exit_code([insp]) == 0


def test_truncated_onnx_is_unreadable_not_a_crash(tmp_path):
    path = _helper_model(tmp_path / "m.onnx")
    data = path.read_bytes()
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(data[: len(data) // 2])
    insp = inspect_path(bad)
    assert insp.error and "ONNX" in insp.error
