"""`ckreg families [--json] [--families FILE]`: every family ckreg knows, and where it comes from.

Thin: parse, call `ckreg.families.listing`, render, exit. Exit 0, or 2 when a
plug-in could not be loaded (each named on stderr with the fix; the other
families are still listed).
"""

from __future__ import annotations

import click

from ckreg.cli._common import echo_json, families_option, terminal_width


def _hp_text(hp: dict) -> str:
    return ", ".join(k if v is None else f"{k}={v}" for k, v in hp.items()) or "-"


@click.command("families")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list, one object per family.")
@families_option
@click.pass_context
def families_cmd(ctx: click.Context, as_json: bool, family_files: tuple[str, ...] = ()) -> None:
    """List the registered families: built-in, plug-in, manifest or file, with their hyperparameters.

    A hyperparameter without `=value` has no default: it is read from the weights.
    """
    from ckreg.families import listing

    records, problems = listing(family_files)
    if as_json:
        echo_json([r.summary() for r in records])
    else:
        import textwrap

        width = max(60, min(terminal_width(), 120))
        name_w = min(22, max(len(r.name) for r in records))
        src_w = max(len(r.source) for r in records)
        indent = " " * (name_w + src_w + 4)
        for r in records:
            head = f"{r.name:<{name_w}}  {r.source:<{src_w}}  "
            body = textwrap.wrap(_hp_text(r.hyperparameters), width=width - len(indent),
                                 break_long_words=False, break_on_hyphens=False) or ["-"]
            if len(head) > len(indent):   # a long name: hyperparameters on the next line
                click.echo(head.rstrip())
                body_lines = [indent + b for b in body]
            else:
                body_lines = [head + body[0]] + [indent + b for b in body[1:]]
            click.echo("\n".join(body_lines))
        click.echo(f"{len(records)} families ({sum(r.builtin for r in records)} built-in)")
    for p in problems:
        click.echo(f"error: {p}", err=True)
    ctx.exit(2 if problems else 0)
