"""Shared CLI helpers: rendering is here, never in the core."""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Any

import click

from ckreg.errors import CkregError


def echo_json(obj: Any) -> None:
    """Print JSON for machines (pydantic models and lists of them welcome)."""

    def default(o: Any) -> Any:
        if hasattr(o, "model_dump"):
            return o.model_dump(mode="json")
        if isinstance(o, (set, tuple)):
            return list(o)
        return str(o)

    click.echo(json.dumps(obj, default=default, indent=2, ensure_ascii=False))


def fail(message: str, code: int = 2) -> None:
    """Exit with one line on stderr (user mistakes never show a traceback)."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def families_option(fn: Any) -> Any:
    """`--families FILE` (repeatable): family files registered before any work (docs/families.md)."""
    return click.option("--families", "family_files", multiple=True, type=click.Path(dir_okay=False),
                        metavar="FILE", help="YAML file declaring more families (repeatable; see docs/families.md).")(fn)


def load_families(files: Any) -> None:
    """Register family files, and say on stderr which plug-ins could not be loaded (never a crash)."""
    from ckreg.families import registry

    if files:
        from ckreg.families import add_family_files

        add_family_files(list(files))
    for problem in registry().problems:
        click.echo(f"warning: {problem}", err=True)


@contextlib.contextmanager
def one_line_warnings():
    """Library warnings (scikit-learn's version skew, torch's notices) as one `warning:` line on stderr each.

    Python's default shows `file:line: Category: message` plus the source line
    of the `warnings.warn` call, and scikit-learn's message spans lines: a
    multi-line dump that reads like a crash. Here each distinct message is
    printed once, whitespace collapsed, with the category named unless it is a
    plain UserWarning or one of ckreg's own.
    """
    import warnings

    seen: set[tuple[type, str]] = set()
    previous = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        text = " ".join(str(message).split())
        if (category, text) in seen:
            return
        seen.add((category, text))
        own = category is UserWarning or category.__module__.split(".")[0] == "ckreg"
        click.echo(f"warning: {'' if own else category.__name__ + ': '}{text}", err=True)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = previous


def terminal_width(default: int = 100) -> int:
    """The terminal's width ($COLUMNS first, as `shutil` reads it), or `default` when not a terminal."""
    import os
    import shutil

    if os.environ.get("COLUMNS", "").strip().isdigit():
        return max(20, int(os.environ["COLUMNS"]))
    return shutil.get_terminal_size((default, 24)).columns


def console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, soft_wrap=False)


__all__ = ["echo_json", "fail", "families_option", "load_families", "console", "terminal_width", "one_line_warnings",
           "CkregError", "tiers_line", "ACC"]


def tiers_line(tiers) -> str:
    """One short line naming the allowlist tiers pickle globals were judged against."""
    tiers = list(tiers)
    return f"allowlist: {', '.join(tiers)}" + (" (= torch.load weights_only)" if tiers == ["torch"] else "")


def _acc_type(value: str) -> float:
    """--expect-acc accepts 0.9913 or 99.13 (percent)."""
    from ckreg.verify import normalize_acc

    return normalize_acc(float(value))


class _Acc(click.ParamType):
    """An accuracy target: a fraction (0.99) or a percentage (99)."""

    name = "ACC"

    def convert(self, value, param, ctx):
        if isinstance(value, float):
            return value
        try:
            return _acc_type(value)
        except (ValueError, CkregError) as exc:  # click renders it as a usage error (exit 2)
            self.fail(f"{value!r}: {exc}", param, ctx)


ACC = _Acc()
