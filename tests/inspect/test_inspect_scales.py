"""Scale importance (per-scale weight norms) of scale-aware checkpoints, read without torch."""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

from ckreg.arch import ArchSpec
from ckreg.inspect import inspect_path
from ckreg.inspect.scales import SCALE_FAMILIES, applies, scale_importance

torch = pytest.importorskip("torch")

SMALL = {"hidden_size": 8, "cnn_filters": 4, "num_classes": 5}


def _zoo_state(family: str, seed: int = 0, **overrides) -> dict:
    from ckreg import zoo

    torch.manual_seed(seed)
    return zoo.build(ArchSpec.for_family(family, **{**SMALL, **overrides})).state_dict()


def _expected(sd: dict, cell: str) -> dict[str, dict[str, float]]:
    return {g: {k: float(torch.linalg.norm(sd[f"{cell}.cell.W_{g}{k}.weight"].double()))
                for k in "357"} for g in "zrh"}


def _check(cells, sd, names, tol=1e-5):
    assert [c.cell for c in cells] == names
    for c in cells:
        want = _expected(sd, c.cell)
        for g in "zrh":
            for k in "357":
                assert c.gates[g][k] == pytest.approx(want[g][k], rel=tol, abs=1e-6)
        for k in "357":
            assert c.per_scale[k] == pytest.approx(sum(want[g][k] for g in "zrh"), rel=tol, abs=1e-6)
        assert sum(c.share.values()) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("family", SCALE_FAMILIES)
def test_scale_norms_match_torch_for_every_scale_family(family, save_ckpt):
    sd = _zoo_state(family, seed=3)
    insp = inspect_path(save_ckpt(sd, kind="lightning", prefix="model."))
    assert insp.scales is not None, insp.evidence
    names = ["gru"] if family == "MSCGRU_ScaleAware" else ["gru1", "gru2"]
    _check(insp.scales.cells, sd, names)
    assert insp.scales.cells[0].input.startswith("convolution towers")


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float64"])
def test_half_and_double_weights_decode_without_torch(dtype, save_ckpt):
    sd = {k: (v.to(getattr(torch, dtype)) if v.is_floating_point() else v)
          for k, v in _zoo_state("MSCSGRU_ScaleAware", seed=1).items()}
    insp = inspect_path(save_ckpt(sd, kind="safetensors"))
    assert insp.scales is not None, insp.evidence
    _check(insp.scales.cells, sd, ["gru1", "gru2"], tol=1e-6)


def test_strided_weights_are_read_element_by_element(save_ckpt):
    """A W saved as a transposed view (non-contiguous storage) still gives its own norm."""
    sd = _zoo_state("MSCGRU_ScaleAware", seed=2)
    big = torch.arange(1.0, 1.0 + 8 * 4 * 2).reshape(8, 4 * 2)
    sd["gru.cell.W_r5.weight"] = big[:, ::2]          # [8, 4], stride (8, 2)
    assert not sd["gru.cell.W_r5.weight"].is_contiguous()
    insp = inspect_path(save_ckpt(sd, kind="plain"))
    _check(insp.scales.cells, sd, ["gru"])


def test_only_the_scale_tensors_are_read(tmp_path):
    """The norms stream the 18 W tensors' bytes, nothing else of the checkpoint."""
    from safetensors.torch import save_file

    from ckreg.readers import read_checkpoint

    sd = _zoo_state("MSCSGRU_ScaleAware", seed=0, hidden_size=16, num_classes=300)   # a big head
    path = tmp_path / "m.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    result = read_checkpoint(str(path))
    before = result.bytes_read
    assert scale_importance(result) is not None
    want = sum(v.numel() * v.element_size() for k, v in sd.items() if ".cell.W_" in k)
    assert result.bytes_read - before == want
    assert want < path.stat().st_size / 4


def test_other_families_have_no_scale_norms(save_ckpt):
    insp = inspect_path(save_ckpt(_zoo_state("MSCSGRU"), kind="plain"))
    assert insp.family == "MSCSGRU"
    assert insp.scales is None


def test_applies_to_a_tie_between_scale_families_only():
    assert applies("ambiguous", ["MSCSGRU_ScaleAware", "MSCSGRU_ScaleHard"])
    assert not applies("ambiguous", ["MSCSGRU_ScaleAware", "MSCSGRU"])
    assert not applies("ambiguous", [])
    assert not applies("MSCSGRU")


def test_undecodable_weights_say_so_in_the_evidence(save_ckpt):
    sd = _zoo_state("MSCGRU_ScaleAware")
    sd["gru.cell.W_h7.weight"] = torch.ones(8, 4, dtype=torch.int32)
    insp = inspect_path(save_ckpt(sd, kind="plain"))
    assert insp.scales is None
    assert any("scale norms not computed" in e and "int32" in e for e in insp.evidence)


def test_cli_shows_the_table_and_json_field(save_ckpt):
    from ckreg.cli import cli

    sd = _zoo_state("MSCSGRU_ScaleHard", seed=5)
    path = save_ckpt(sd, kind="lightning", hyper_parameters={"model": "MSCSGRU_ScaleHard"})
    res = CliRunner().invoke(cli, ["inspect", str(path), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)[0]
    cells = data["scales"]["cells"]
    assert [c["cell"] for c in cells] == ["gru1", "gru2"]
    want = _expected(sd, "gru1")
    assert cells[0]["per_scale"]["7"] == pytest.approx(sum(want[g]["7"] for g in "zrh"), rel=1e-5)
    human = CliRunner().invoke(cli, ["inspect", str(path), "--no-tree"], env={"COLUMNS": "80"})
    assert human.exit_code == 0, human.output
    assert "scale norms" in human.output and "scale 7" in human.output
    s3 = sum(want[g]["3"] for g in "zrh")
    assert f"{s3:.2f}" in human.output
    assert max(len(line) for line in human.output.splitlines()) <= 80


def test_inspect_path_stays_torch_free(save_ckpt, tmp_path):
    """The norms are computed in a process where `import torch` fails."""
    import subprocess
    import sys

    path = save_ckpt(_zoo_state("MSCSGRU_ScaleAware"), kind="plain")
    block = tmp_path / "block" / "torch"
    block.mkdir(parents=True)
    (block / "__init__.py").write_text("raise ImportError('torch blocked')\n")
    code = ("import sys; from ckreg.inspect import inspect_path; i = inspect_path(sys.argv[1]); "
            "print(len(i.scales.cells), round(i.scales.cells[0].per_scale['5'], 4))")
    import os

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path / "block")] + sys.path))
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    want = _expected(_zoo_state("MSCSGRU_ScaleAware"), "gru1")
    n, s5 = proc.stdout.split()
    assert n == "2" and math.isclose(float(s5), sum(want[g]["5"] for g in "zrh"), rel_tol=1e-3)
