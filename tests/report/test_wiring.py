"""Every `--format` choice is wired to a reporter, and every reporter is a choice."""

from __future__ import annotations

import click
import pytest

from ckreg.cli import cli
from ckreg.report import REPORTERS, render


def _choices(command_name: str) -> tuple[str, ...]:
    ctx = click.Context(cli)
    cmd = cli.get_command(ctx, command_name)
    (opt,) = [p for p in cmd.params if p.name == "fmt"]
    assert isinstance(opt.type, click.Choice)
    return tuple(opt.type.choices)


@pytest.mark.parametrize("command_name", ["audit", "demo"])
def test_format_choices_are_the_reporters(command_name):
    assert _choices(command_name) == tuple(REPORTERS)


@pytest.mark.parametrize("fmt", list(REPORTERS))
def test_every_reporter_renders_text(report, fmt):
    text = render(report, fmt, fail_on="warning")
    assert isinstance(text, str) and text.strip()
    assert "GRU_best.ckpt" in text


@pytest.mark.parametrize("fmt", ["table", "json", "sarif", "junit"])
def test_each_listed_format_exists(fmt):
    assert fmt in REPORTERS


def test_unknown_format_is_an_error(report):
    with pytest.raises(ValueError, match="unknown report format"):
        render(report, "html")
