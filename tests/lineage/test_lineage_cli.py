"""`ckreg lineage` on the command line, on real training runs, and without torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from ckreg.cli import cli
from ckreg.lineage import lineage

SRC = Path(__file__).resolve().parents[2] / "src"


def test_cli_table_and_json(runs, tmp_path):
    res = CliRunner().invoke(cli, ["lineage", str(tmp_path / "lab"), "--no-cache"])
    assert res.exit_code == 0, res.output
    assert "fine-tuned-from" in res.output and "transplanted" in res.output and "identical" in res.output
    assert "encoder.* 25/25" in res.output and "5 checkpoints, 3 edges" in res.output
    assert all(len(line) <= 80 or "/" in line for line in res.output.splitlines())
    res = CliRunner().invoke(cli, ["lineage", str(runs["ft"]), str(runs["base"]), "--no-cache", "--json"])
    assert res.exit_code == 0
    data = json.loads(res.output)
    (edge,) = data["edges"]
    assert edge["child"] == str(runs["ft"]) and edge["relation"] == "fine-tuned-from"
    assert data["checked"] == [str(runs["ft"]), str(runs["base"])]


def test_cli_exit_codes(tmp_path, runs):
    r = CliRunner().invoke(cli, ["lineage", str(tmp_path / "missing"), "--no-cache"])
    assert r.exit_code == 2 and "no such file or folder" in r.output
    empty = tmp_path / "empty"
    empty.mkdir()
    assert CliRunner().invoke(cli, ["lineage", str(empty), "--no-cache"]).exit_code == 3
    r = CliRunner().invoke(cli, ["lineage", str(runs["base"]), "--threshold", "0"])
    assert r.exit_code == 2


def test_cli_cache_dir(runs, tmp_path):
    cache = tmp_path / "c"
    for _ in range(2):
        r = CliRunner().invoke(cli, ["lineage", str(runs["base"]), str(runs["copy"]), "--cache-dir", str(cache),
                                     "--json"])
        assert r.exit_code == 0
    assert json.loads(r.output)["cache"]["hits"] == 2 and len(list(cache.iterdir())) == 2


def test_runs_where_torch_is_blocked(runs, tmp_path):
    block = tmp_path / "block" / "torch"
    block.mkdir(parents=True)
    (block / "__init__.py").write_text("raise ImportError('torch blocked for this test')\n")
    proc = subprocess.run([sys.executable, "-m", "ckreg", "lineage", str(tmp_path / "lab"), "--json", "--no-cache"],
                          capture_output=True, text=True,
                          env={"PYTHONPATH": f"{block.parent}:{SRC}", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    rel = sorted(e["relation"] for e in json.loads(proc.stdout)["edges"])
    assert rel == ["fine-tuned-from", "identical", "transplanted"]


def _train(torch, model, steps, seed):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(16, 12, 8, generator=g)
    y = torch.randint(0, 24, (16,), generator=g)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(X, None), y).backward()
        opt.step()


def test_real_runs_of_zoo_models(tmp_path, torch_mod):
    """Trained zoo models (WRN with batch norm, a conv-recurrent family), saved as Lightning-shaped .ckpt."""
    torch = torch_mod
    from ckreg import zoo
    from ckreg.arch import ArchSpec

    threads = torch.get_num_threads()
    torch.set_num_threads(1)          # several threads on a shared small box: 30x slower here
    try:
        _real_runs(torch, zoo, ArchSpec, tmp_path)
    finally:
        torch.set_num_threads(threads)


def _real_runs(torch, zoo, ArchSpec, tmp_path):

    def save(model, path, step):
        torch.save({"epoch": step // 10, "global_step": step,
                    "state_dict": {k: v.clone() for k, v in model.state_dict().items()}}, path)

    for family, kw in [("WRN", dict(depth=10, widen_factor=1, conv_dim=1)),
                       ("MSCSGRU", dict(hidden_size=16, cnn_filters=8))]:
        d = tmp_path / family
        d.mkdir()
        spec = ArchSpec.for_family(family, **kw)
        torch.manual_seed(0)
        base = zoo.build(spec)
        _train(torch, base, 8, 0)
        save(base, d / "base.ckpt", 20)
        _train(torch, base, 4, 1)
        save(base, d / "ft.ckpt", 30)
        torch.manual_seed(1)
        other = zoo.build(spec)
        _train(torch, other, 8, 0)
        save(other, d / "other.ckpt", 20)
        r = lineage([d], cache_dir=False)
        assert [(Path(e.child).name, Path(e.parent).name, e.relation, e.basis) for e in r.edges] == \
            [("ft.ckpt", "base.ckpt", "fine-tuned-from", "global_step")], family
        far = lineage([d / "base.ckpt", d / "other.ckpt"], threshold=100, cache_dir=False).edges[0]
        assert far.distance > 1.0, family
