"""`ckreg inspect PATH... [--json] [--hash]`: what each checkpoint really is.

Thin: parse, call `ckreg.inspect.inspect_paths`, render, exit with
`ckreg.inspect.exit_code` (2 when any file is unreadable, 1 when any
error-severity finding such as `unsafe-global`, else 0). Nothing is executed
and nothing is written; each unreadable file gets one line on stderr naming it
while the other files are still reported.
"""

from __future__ import annotations

import math
import os

import click

from ckreg.cli._common import console, echo_json, families_option, load_families, tiers_line
from ckreg.inspect import NOT_RECORDED, exit_code, inspect_paths
from ckreg.inspect.model import Inspection
from ckreg.inspect.structure import structure_lines

_SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "note": "cyan"}
_MAX_CHILDREN = 8
_MAX_EVIDENCE = 14


@click.command("inspect")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list, one object per file (schema: docs/inspect.md).")
@click.option("--hash", "hash_weights", is_flag=True,
              help="Also compute weights_sha256 (streams every tensor's bytes; off by default).")
@click.option("--jobs", "-j", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Inspect files in parallel processes.")
@click.option("--tree/--no-tree", default=True, show_default=True, help="Show the module tree (human output).")
@click.option("--strict", is_flag=True, help="Judge pickle globals by exactly torch.load(weights_only=True)'s allowlist (the torch tier); by default the value-type tiers python, pathlib, numpy, omegaconf and lightning are allowed too.")
@families_option
@click.pass_context
def inspect_cmd(ctx: click.Context, paths: tuple[str, ...], as_json: bool, hash_weights: bool, jobs: int,
                tree: bool, strict: bool = False, family_files: tuple[str, ...] = ()) -> None:
    """Identify the architecture in each checkpoint without executing it.

    A PATH may be a URL (s3://bucket/key, read by range requests; needs the
    [s3] extra).

    Exit status: 0 ok; 1 an error-severity finding (e.g. unsafe-global);
    2 a file could not be read (it is named on stderr; the others are still reported).
    """
    from ckreg.readers import DEFAULT_TIERS, WEIGHTS_ONLY

    load_families(family_files)
    results = inspect_paths(paths, hash_weights=hash_weights, jobs=jobs, tiers=WEIGHTS_ONLY if strict else DEFAULT_TIERS)
    if as_json:
        echo_json([r.model_dump(mode="json") for r in results])
    else:
        out = console()
        for r in results:
            if r.error is None:
                render(out, r, tree=tree)
    for r in results:
        if r.error is not None:
            click.echo(f"error: {r.error}", err=True)
        else:
            for f in r.findings:
                if f.code == "unreadable":
                    click.echo(f"error: {f.message}", err=True)
    ctx.exit(exit_code(results))


# -- rendering (people) -------------------------------------------------------

def _fmt(n: int) -> str:
    return f"{n:,}"


def _hyper(value) -> str:
    if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
        return "[" + ", ".join("x".join(str(x) for x in v) for v in value) + "]"
    return str(value)


def render(out, insp: Inspection, tree: bool = True) -> None:
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()

    if insp.family == "ambiguous":
        fam = Text(f"ambiguous: {' | '.join(insp.ambiguous_between)}", style="yellow")
    elif insp.family == "unknown":
        fam = Text("unknown", style="magenta")
    else:
        broken = any(f.code == "family-broken" for f in insp.findings)
        fam = Text(insp.family + (" (recognised but broken)" if broken else ""),
                   style="yellow" if broken else "green")
    fam.append(f"   confidence {insp.confidence:.2f}", style="dim")
    grid.add_row("file", Text(insp.path, overflow="fold"))
    grid.add_row("family", fam)
    if insp.hyperparameters:
        grid.add_row("hyperparameters", Text(", ".join(f"{k}={_hyper(v)}" for k, v in insp.hyperparameters.items())))
    if insp.not_recorded:
        grid.add_row("not in weights", Text(", ".join(
            f"{k}: {'not recorded' if v == NOT_RECORDED else f'{v} (metadata)'}" for k, v in insp.not_recorded.items())))
    p = insp.params
    dtypes = ", ".join(f"{k} {_fmt(v)}" for k, v in p.dtypes.items()) or "-"
    grid.add_row("parameters", Text(f"{_fmt(p.trainable)} trainable + {_fmt(p.buffers)} buffer elements; "
                                    f"{_fmt(p.tensors)} tensors, {_fmt(p.bytes)} bytes ({dtypes})"))
    from ckreg.readers.fileio import is_url

    where, how = ("stored", "transferred") if is_url(insp.path) else ("on disk", "read")
    grid.add_row("format", Text(f"{insp.format or '-'}, {_fmt(insp.size or 0)} bytes {where}, "
                                f"{_fmt(insp.bytes_read)} {how}"))
    if insp.allowed_tiers:
        grid.add_row("allowlist", Text(tiers_line(insp.allowed_tiers).split(": ", 1)[1]))
    for label, value in (("sha256", insp.sha256), ("layout_sha256", insp.layout_sha256),
                         ("weights_sha256", insp.weights_sha256)):
        grid.add_row(label, Text(value, overflow="fold") if value else Text("(use --hash)", style="dim"))
    meta = _meta_line(insp.metadata)
    if meta:
        grid.add_row("metadata", Text(meta))
    ev = insp.evidence[:_MAX_EVIDENCE] + ([f"... {len(insp.evidence) - _MAX_EVIDENCE} more (--json)"]
                                          if len(insp.evidence) > _MAX_EVIDENCE else [])
    if ev:
        grid.add_row("evidence", Text("\n".join(ev)))
    srows = structure_lines(insp.structure)
    if srows:
        grid.add_row("structure", Text("\n".join(f"{label}: {text}" for label, text in srows)))
    if insp.family == "unknown" or not insp.candidates:
        grid.add_row("description", Text("\n".join(insp.description)))
    elif others := [c for c in insp.candidates if c.family != insp.family]:
        # the chosen family need not be the first candidate: ties are settled by metadata or the name
        grid.add_row("other candidates", Text("\n".join(
            f"{c.family} {c.score:.2f}" + (f" broken: {c.broken[0]}" if c.broken else "") for c in others[:3])))
    if insp.leftovers:
        grid.add_row("leftovers", Text("\n".join(insp.leftovers[:12]) + (" ..." if len(insp.leftovers) > 12 else "")))
    if insp.scales is not None and insp.scales.cells:
        grid.add_row("scale norms", scale_table(insp.scales))
    if insp.findings:
        lines = Text()
        for i, f in enumerate(insp.findings):
            if i:
                lines.append("\n")
            lines.append(f"{f.severity.value} {f.code}", style=_SEVERITY_STYLE.get(f.severity.value, ""))
            lines.append(f": {f.message}")
        grid.add_row("findings", lines)
    else:
        grid.add_row("findings", Text("none", style="green"))
    parts = [grid]
    if tree and insp.layout:
        parts.append(module_tree(insp))
    out.print(Panel(Group(*parts), title=Text(os.path.basename(insp.path) or insp.path), title_align="left"))


def scale_table(scales):
    """Per-scale weight norms: one row per cell and gate, then the per-scale sum (fits 80 columns)."""
    from rich.table import Table

    t = Table(box=None, padding=(0, 1), pad_edge=False, header_style="bold")
    t.add_column("cell")
    t.add_column("gate")
    for k in ("3", "5", "7"):
        t.add_column(f"scale {k}", justify="right")
    for cell in scales.cells:
        for gate, row in cell.gates.items():
            t.add_row(cell.cell, f"W_{gate}", *(f"{row[k]:.2f}" for k in ("3", "5", "7")))
        t.add_row(cell.cell, "sum", *(f"{cell.per_scale[k]:.2f} ({cell.share[k]:.0%})" for k in ("3", "5", "7")),
                  style="bold")
    return t


def _meta_line(meta: dict) -> str:
    bits = []
    for key in ("epoch", "global_step", "pytorch-lightning_version", "monitor", "best_model_score", "hparams_name"):
        if meta.get(key) is not None:
            bits.append(f"{key}={meta[key]}")
    if meta.get("hyper_parameters"):
        bits.append(f"hyper_parameters: {len(meta['hyper_parameters'])} keys")
    if "has_optimizer_state" in meta:
        bits.append("optimizer state" if meta["has_optimizer_state"] else "no optimizer state")
    return ", ".join(bits)


class _Node:
    __slots__ = ("children", "tensors", "total")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.tensors: list[tuple[str, str, list[int]]] = []
        self.total = 0


def module_tree(insp: Inspection):
    """The state_dict as a module tree: tensors with shape and dtype, element counts per module."""
    from rich.text import Text
    from rich.tree import Tree

    root = _Node()
    for name, (dtype, shape) in insp.layout.items():
        parts = name.split(".")
        node = root
        n = math.prod(shape) if shape else 1
        root.total += n
        for part in parts[:-1]:
            node = node.children.setdefault(part, _Node())
            node.total += n
        node.tensors.append((parts[-1], dtype, shape))
    top = Tree(Text(f"state_dict  {_fmt(root.total)} elements", style="bold"))

    def add(branch, node: _Node) -> None:
        items = [(k, c) for k, c in node.children.items()]
        for leaf, dtype, shape in node.tensors:
            n = math.prod(shape) if shape else 1
            branch.add(Text(f"{leaf} [{', '.join(map(str, shape))}] {dtype}  {_fmt(n)}", style="dim"))
        shown = items if len(items) <= _MAX_CHILDREN else items[:_MAX_CHILDREN - 2]
        for key, child in shown:
            sub = branch.add(Text(f"{key}  {_fmt(child.total)}"))
            add(sub, child)
        if len(shown) < len(items):
            rest = items[len(shown):]
            branch.add(Text(f"... {len(rest)} more ({rest[0][0]} .. {rest[-1][0]}), "
                            f"{_fmt(sum(c.total for _, c in rest))} elements", style="italic"))

    add(top, root)
    return top
