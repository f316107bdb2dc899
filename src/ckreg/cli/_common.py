"""Shared CLI helpers: rendering is here, never in the core."""

from __future__ import annotations

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


__all__ = ["echo_json", "fail", "console", "terminal_width", "CkregError"]
