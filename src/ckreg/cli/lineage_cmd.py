"""`ckreg lineage PATH...`: parse, call `ckreg.lineage.lineage`, render, exit."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from ckreg.cli._common import echo_json
from ckreg.lineage.core import DEFAULT_THRESHOLD


def _short(path: str) -> str:
    """Paths relative to the working directory where that is shorter (fits 80 columns)."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return rel if len(rel) < len(path) else path


def render_edge(e) -> list[str]:
    arrow = "<-" if e.directed else "--"
    lines = [f"{e.relation:<16} {_short(e.child)} {arrow} {_short(e.parent)}"]
    facts = []
    if e.distance is not None:
        facts.append(f"distance {e.distance:.4f}")
    if e.relation != "distilled-from":
        facts.append(f"{e.shared_tensors}/{e.total_tensors} tensors byte-identical")
    facts.append(f"direction: {e.basis}" if e.directed else "undirected")
    lines.append(" " * 17 + ", ".join(facts))
    if e.groups:
        shown = ", ".join(f"{g.name} {g.shared}/{g.total}" for g in e.groups[:6])
        more = f" (+{len(e.groups) - 6} more)" if len(e.groups) > 6 else ""
        lines.append(" " * 17 + "groups: " + shown + more)
    return lines


@click.command("lineage")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--threshold", type=click.FloatRange(min=0, min_open=True), default=DEFAULT_THRESHOLD,
              show_default=True, help="Largest relative L2 distance that still counts as fine-tuned-from.")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None,
              help="Where per-tensor digests are cached (default: the user cache folder).")
@click.option("--no-cache", is_flag=True, help="Neither read nor write the digest cache.")
@click.option("--progress/--no-progress", default=True, help="Progress bar on stderr for many files (terminal only).")
@click.option("--json", "as_json", is_flag=True, help="Print ONE JSON object (edges, checked, errors).")
@click.pass_context
def lineage_cmd(ctx: click.Context, paths, threshold, cache_dir, no_cache, progress, as_json) -> None:
    """Find which checkpoints under PATHS are copies, fine-tunes, transplants or students of which,
    from their weights (folders are walked; nothing is unpickled).

    Exit codes: 0 done, 2 a path is missing or unreadable, 3 no checkpoint found.
    """
    from ckreg.cli.audit_cmd import _Bar
    from ckreg.lineage import lineage

    cache = False if no_cache else (cache_dir if cache_dir is not None else True)
    bar = _Bar(enabled=progress and sys.stderr.isatty())
    try:
        result = lineage(paths, threshold=threshold, cache_dir=cache, progress=bar)
    finally:
        bar.close()
    if as_json:
        echo_json(result.model_dump(mode="json"))
    else:
        for e in result.edges:
            for line in render_edge(e):
                click.echo(line)
        n = len(result.checked)
        click.echo(f"{n} checkpoint{'s' if n != 1 else ''}, {len(result.edges)} "
                   f"edge{'s' if len(result.edges) != 1 else ''}")
    for s in result.skipped:
        click.echo(f"skipped: {s.path}: {s.reason}", err=True)
    for w in result.warnings:
        click.echo(f"warning: {w}", err=True)
    for e in result.errors:
        click.echo(f"error: {e.path or ''}: {e.message}", err=True)
    ctx.exit(result.exit_code())
