"""`ckreg audit` as people run it: an 80-column terminal, `--json`, `--format` in any case."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ckreg.cli import cli

pytest.importorskip("torch")

DEEP = "archive/checkpoints_backup/checkpoints_backup"


def tiny_archive(root: Path) -> Path:
    """Two GRUs with the same weights deep in the tree, sharing one scaler (two warnings with long paths)."""
    import torch

    from ckreg.arch import ArchSpec
    from ckreg.inspect.layouts import expected_layout
    from ckreg.scaler import Scaler

    spec = ArchSpec.for_family("GRU", hidden_size=4, proj_size=8, num_layers=1)
    g = torch.Generator().manual_seed(0)
    sd = {k: torch.randn(s, generator=g) for k, s in expected_layout(spec).items()}
    folder = root / DEEP
    folder.mkdir(parents=True)
    torch.save({"state_dict": {f"model.{k}": v for k, v in sd.items()}, "epoch": 1}, folder / "GRU_best.ckpt")
    torch.save({"state_dict": {f"model.{k}": v for k, v in sd.items()}, "epoch": 2}, folder / "GRU_best-v1.ckpt")
    Scaler(mean=[0.0] * 8, scale=[1.0] * 8, n_features=8, n_samples_seen=10).save_json(folder / "scaler.json")
    return root


def run(args, columns: int = 80):
    return CliRunner().invoke(cli, args, env={"COLUMNS": str(columns)})


def test_table_fits_80_columns_and_summarises_first(tmp_path):
    root = tiny_archive(tmp_path / "a")
    res = run(["audit", str(root)])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert all(len(line) <= 80 for line in lines), [line for line in lines if len(line) > 80]
    assert res.output.index("checkpoints") < res.output.index("findings")
    for name in ("GRU_best.ckpt", "GRU_best-v1.ckpt", "checkpoints_backup/"):   # whole names, never cut
        assert any(name in line for line in lines), name
    assert "duplicate-weights" in res.output
    assert lines[-1].startswith("3 files checked: 0 errors,")


def test_json_flag_is_format_json(tmp_path):
    root = tiny_archive(tmp_path / "a")
    flag, option = run(["audit", str(root), "--json"]), run(["audit", str(root), "--format", "json"])
    assert flag.exit_code == option.exit_code == 0
    a, b = json.loads(flag.stdout), json.loads(option.stdout)
    assert a["checked"] == b["checked"] and a["summary"] == b["summary"]
    assert {f["code"] for f in a["findings"]} >= {"duplicate-weights"}


@pytest.mark.parametrize("spelling", ["JSON", "Json", "json"])
def test_format_is_case_insensitive(tmp_path, spelling):
    root = tiny_archive(tmp_path / "a")
    res = run(["audit", str(root), "--format", spelling])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["tool"] == "ckreg"


def test_json_and_another_format_is_a_usage_error(tmp_path):
    root = tiny_archive(tmp_path / "a")
    res = run(["audit", str(root), "--json", "--format", "sarif"])
    assert res.exit_code == 2
    assert "--json" in res.output and "Traceback" not in res.output
