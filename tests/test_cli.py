"""The CLI's exit-code contract: user errors 2, crashes 4, a missing [train] extra is a clear 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
from click.testing import CliRunner

import ckreg.cli as cli_mod
from ckreg.cli import cli
from ckreg.findings import EXIT_CRASH, EXIT_USAGE

SRC = Path(__file__).resolve().parents[1] / "src"


def test_missing_train_extra_is_a_clear_usage_error(tmp_path):
    """With the base install (no torch), training commands say which extra to install."""
    block = tmp_path / "block" / "torch"
    block.mkdir(parents=True)
    (block / "__init__.py").write_text("raise ModuleNotFoundError('No module named torch', name='torch')\n")
    ckpt = tmp_path / "m.ckpt"
    ckpt.write_bytes(b"not inspected: the command needs torch before it reads anything")
    code = "from ckreg.cli import main; main()"
    proc = subprocess.run([sys.executable, "-c", code, "verify", str(ckpt)],
                          capture_output=True, text=True,
                          env={"PYTHONPATH": f"{block.parent}:{SRC}", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == EXIT_USAGE, proc.stderr
    assert "pip install 'ckreg[train]'" in proc.stderr and "Traceback" not in proc.stderr


def test_a_crash_exits_4_never_1(monkeypatch):
    @click.command("boom")
    def boom():
        raise RuntimeError("kaboom")

    monkeypatch.setitem(cli_mod.COMMANDS, "boom", "tests_boom:boom")
    monkeypatch.setattr(cli_mod.LazyGroup, "_available", staticmethod(lambda name: True))
    monkeypatch.setattr(cli_mod.LazyGroup, "get_command", lambda self, ctx, name: boom if name == "boom" else None)
    r = CliRunner().invoke(cli, ["boom"])
    assert r.exit_code == EXIT_CRASH and "this is a bug" in r.output


def test_every_registered_command_resolves():
    for name in cli_mod.COMMANDS:
        assert cli.get_command(click.Context(cli), name) is not None, name



def test_closed_pipe_is_not_a_crash(monkeypatch):
    """`ckreg families | head -1`: the reader leaving early exits 141 quietly, never 4 as a crash."""
    from click.testing import CliRunner

    def closed(*args, **kwargs):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(click, "echo", closed)
    monkeypatch.setattr(cli_mod, "_quiet_stdout", lambda: None)
    res = CliRunner().invoke(cli_mod.cli, ["families"])
    assert res.exit_code == 141, res.output
    assert "crash" not in res.output.lower()
