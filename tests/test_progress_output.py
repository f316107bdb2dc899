"""Long work shows progress on stderr (`audit --data`, the start of `train`); library warnings read as one line."""

from __future__ import annotations

import io
import warnings

import click
import pytest
from click.testing import CliRunner
from rich.console import Console

import ckreg.cli as ckreg_cli
from ckreg.cli import cli


class InconsistentVersionWarning(UserWarning):
    """Stands in for scikit-learn's (a library's own warning class, not ckreg's)."""


@click.command("warny")
def warny_cmd():
    msg = ("Trying to unpickle estimator StandardScaler from version 1.4.2 when using version 1.9.1. This might "
           "lead to breaking code or invalid results. Use at your own risk. For more info please refer to:\n"
           "https://scikit-learn.org/stable/model_persistence.html#security-maintainability-limitations")
    warnings.warn(msg, InconsistentVersionWarning)
    warnings.warn(msg, InconsistentVersionWarning)          # the same message again: said once
    warnings.warn("a ckreg-style notice\n  over two lines", UserWarning)
    click.echo("done")


def test_library_warnings_are_one_line_each(monkeypatch):
    monkeypatch.setitem(ckreg_cli.COMMANDS, "warny", f"{__name__}:warny_cmd")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        res = CliRunner().invoke(cli, ["warny"])
    assert res.exit_code == 0 and res.stdout == "done\n"
    lines = res.stderr.splitlines()
    assert lines == [
        "warning: InconsistentVersionWarning: Trying to unpickle estimator StandardScaler from version 1.4.2 when "
        "using version 1.9.1. This might lead to breaking code or invalid results. Use at your own risk. For more "
        "info please refer to: https://scikit-learn.org/stable/model_persistence.html#security-maintainability-"
        "limitations",
        "warning: a ckreg-style notice over two lines"], lines
    assert "warnings.warn(" not in res.stderr


def test_audit_data_reports_loading_and_each_pair(tmp_path):
    pytest.importorskip("torch")
    from ckreg.audit import audit
    from ckreg.data import load_npz
    from ckreg.scaler import fit_scaler, save_json
    from verify_helpers import make_dataset, save_state_dict, train_tiny

    data = make_dataset(tmp_path / "glove.npz")
    ds = load_npz(data)
    sc = fit_scaler(ds, "train-split")
    model, _ = train_tiny(ds, sc)
    for name in ("a", "b"):
        (tmp_path / "arch" / name).mkdir(parents=True)
        save_state_dict(model, tmp_path / "arch" / name / "GRU_best.pt")
        save_json(sc, tmp_path / "arch" / name / "scaler.json")
    events: list[tuple[str, int, int]] = []
    audit(tmp_path / "arch", data=data, progress=lambda *ev: events.append(ev))
    verify = [e for e in events if e[0] in ("loading data", "verifying pairs")]
    assert verify[0] == ("loading data", 0, 0) and ("loading data", 1, 1) in verify
    assert [e for e in verify if e[0] == "verifying pairs"] == [("verifying pairs", i, 2) for i in (0, 1, 2)]

    from ckreg.cli.audit_cmd import _Bar

    buf = io.StringIO()
    bar = _Bar(enabled=True, console=Console(file=buf, force_terminal=True, width=100))
    for ev in verify:
        bar(*ev)
    bar.close()
    assert "verifying pairs" in buf.getvalue() and "loading data" in buf.getvalue()


def test_train_reports_its_setup_before_epoch_one(tmp_path):
    pytest.importorskip("torch")
    from ckreg.cli.train_cmd import _Bar
    from ckreg.train import train
    from verify_helpers import make_dataset

    data = make_dataset(tmp_path / "d.npz", k=3, per_class=8, T=10)
    events = []
    train("GRU", data, tmp_path / "out", overrides={"hidden_size": 4, "proj_size": 4, "num_layers": 1},
          epochs=1, progress=events.append, png=False)
    kinds = [e.kind for e in events]
    first_start = kinds.index("start")
    assert kinds[:first_start] == ["setup"] * first_start and first_start >= 3
    assert [e.stage for e in events[:first_start]][0] == "loading data"

    for terminal in (True, False):
        buf = io.StringIO()
        with _Bar(Console(file=buf, force_terminal=terminal, width=100)) as bar:
            for ev in events:
                bar(ev)
        text = buf.getvalue()
        assert "loading data" in text and "epoch" in text
