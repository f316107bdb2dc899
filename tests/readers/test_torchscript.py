"""TorchScript archives: tensors read, parameters vs buffers from the archive's own records,
one `torchscript-code` warning instead of an unsafe-global error per `__torch__` class."""

from __future__ import annotations

import pytest

from ckreg.inspect import inspect_path
from ckreg.readers import read_checkpoint
from readers_builders import reduce_call, rewrite_zip, wrap


def _model(torch):
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(3, 4, 3)
            self.bn = nn.BatchNorm1d(4)
            self.rnn = nn.GRU(4, 6, batch_first=True)
            self.fc = nn.Linear(6, 5)
            self.register_buffer("scale", torch.ones(5))     # a float buffer: no name rule can tell

        def forward(self, x):
            h = self.bn(self.conv(x)).transpose(1, 2)
            out, _ = self.rnn(h)
            return self.fc(out[:, -1]) * self.scale

    return Net().eval()


def _counts(m, torch):
    params = sum(p.numel() for p in m.parameters())
    buffers = sum(b.numel() for b in m.buffers())
    return params, buffers


@pytest.mark.parametrize("how", ["script", "trace"])
def test_torchscript_is_read_with_exact_counts(tmp_path, torch_mod, how):
    torch = torch_mod
    m = _model(torch)
    sm = torch.jit.script(m) if how == "script" else torch.jit.trace(m, torch.randn(2, 3, 9))
    path = tmp_path / f"{how}.pt"
    sm.save(str(path))
    res = read_checkpoint(path)
    assert res.format == "torchscript"
    assert set(res.tensors) == set(m.state_dict())
    assert [f.code for f in res.findings] == ["torchscript-code"]
    assert res.findings[0].severity.value == "warning"
    insp = inspect_path(path)
    assert insp.format == "torchscript" and insp.error is None
    assert (insp.params.trainable, insp.params.buffers) == _counts(m, torch)
    assert not [f for f in insp.findings if f.code == "unsafe-global"]
    s = insp.structure
    assert s["recurrent"][0]["cell"] == "GRU" and s["recurrent"][0]["hidden_size"] == 6
    assert s["conv"]["count"] == 1 and s["classifier"]["out_features"] == 5
    assert any("__parameters__/__buffers__" in e for e in insp.evidence)


def test_torchscript_without_code_records_uses_requires_grad(tmp_path, torch_mod):
    torch = torch_mod
    m = _model(torch)
    path = tmp_path / "s.pt"
    torch.jit.script(m).save(str(path))
    blank = tmp_path / "blank.pt"
    import zipfile

    names = zipfile.ZipFile(path).namelist()
    code = {n: b"# no class records\n" for n in names if "/code/" in n and n.endswith(".py")}
    rewrite_zip(path, blank, drop=lambda n: n in code, extra=code)
    insp = inspect_path(blank)
    assert (insp.params.trainable, insp.params.buffers) == _counts(m, torch)
    assert any("requires_grad" in e for e in insp.evidence)


def test_unsafe_global_in_torchscript_is_still_an_error(tmp_path, torch_mod):
    torch = torch_mod
    path = tmp_path / "s.pt"
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(path))
    import zipfile

    const = next(n for n in zipfile.ZipFile(path).namelist() if n.endswith("constants.pkl"))
    evil = tmp_path / "evil.pt"
    rewrite_zip(path, evil, drop=lambda n: n == const, extra={const: wrap(reduce_call("os", "system", "id"))})
    res = read_checkpoint(evil)
    codes = [f.code for f in res.findings]
    assert codes.count("torchscript-code") == 1
    assert [f.actual for f in res.findings if f.code == "unsafe-global"] == ["os.system"]
