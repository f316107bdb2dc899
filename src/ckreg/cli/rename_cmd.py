"""`ckreg rename --infer PATH` and `ckreg rename --undo [JOURNAL]`.

Thin: parse, call `ckreg.rename`, render, exit. 0 renamed (warnings shown), 1 findings
at or above --fail-on (or undo conflicts), 2 usage errors (missing path, bad
template, corrupted journal: one line, no traceback).
"""

from __future__ import annotations

import sys

import click

from ckreg.cli._common import console, echo_json, fail, families_option, load_families
from ckreg.findings import EXIT_USAGE, FAIL_ON
from ckreg.rename import DEFAULT_TEMPLATE, TEMPLATE_FIELDS

_EPILOG = ("Template fields: " + ", ".join("{" + f + "}" for f in TEMPLATE_FIELDS)
           + ". Every applied run writes a journal under PATH/.ckreg/; `ckreg rename --undo` restores the old names.")


@click.command("rename", epilog=_EPILOG)
@click.argument("path", required=False)
@click.option("--infer", is_flag=True, help="Rename the checkpoints under PATH after their content.")
@click.option("--undo", "undo", is_flag=False, flag_value="", default=None, metavar="[JOURNAL]",
              help="Undo a rename: a journal file, or PATH's (default: the current folder's) newest journal.")
@click.option("--dry-run", is_flag=True, help="Print the plan (old -> new, and why); touch nothing.")
@click.option("--template", default=DEFAULT_TEMPLATE, show_default=True, help="Name template (str.format fields below).")
@click.option("-m", "--manifest", "manifest", default=None, help="Manifest whose checkpoint/scaler paths follow the renames.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("-j", "--jobs", type=click.IntRange(1, 256), default=1, show_default=True, help="Parallel inspections.")
@click.option("--journal-dir", default=None, help="Where to write the journal (default: PATH/.ckreg).")
@click.option("--fail-on", type=click.Choice(FAIL_ON), default="error", show_default=True,
              help="Lowest severity that makes the exit code 1 (collisions and duplicates are warnings).")
@families_option
def rename_cmd(path, infer, undo, dry_run, template, manifest, as_json, yes, jobs, journal_dir, fail_on,
               family_files=()):
    """Rename checkpoints by content (family, variant, weights hash), reversibly.

    Exit 0 when the renames succeeded (warnings such as a name collision or
    duplicate weights are shown; --fail-on warning makes them exit 1),
    1 on findings at or above --fail-on or undo conflicts, 2 usage errors.
    """
    from ckreg import rename as core

    if undo is not None:
        if infer or dry_run or manifest:
            fail("--undo cannot be combined with --infer, --dry-run or -m", EXIT_USAGE)
        result = core.undo_rename(undo or path or None)
        _show_undo(result, as_json)
        sys.exit(result.exit_code())
    if not infer:
        fail("say what to do: `ckreg rename --infer PATH` (add --dry-run to preview) or `ckreg rename --undo [JOURNAL]`",
             EXIT_USAGE)
    if not path:
        fail("missing PATH: `ckreg rename --infer PATH`", EXIT_USAGE)
    load_families(family_files)
    plan = core.plan_rename(path, template=template, manifest=manifest, jobs=jobs)
    if dry_run:
        if as_json:
            echo_json({"dry_run": True, "plan": plan})
        else:
            _show_plan(plan, dry_run=True)
        sys.exit(plan.exit_code(fail_on))
    if not as_json:
        _show_plan(plan, dry_run=False)
    if not plan.empty and not yes:
        if not sys.stdin.isatty():
            fail("refusing to rename without confirmation: pass --yes (or --dry-run to preview)", EXIT_USAGE)
        if not click.confirm(f"Rename {len(plan.moves)} file(s)?", err=True):
            click.echo("nothing renamed", err=True)
            sys.exit(0)
    result = core.apply_rename(plan, journal_dir=journal_dir)
    if as_json:
        echo_json({"dry_run": False, "plan": plan, "result": result})
    else:
        _show_applied(result, plan)
    sys.exit(result.exit_code(fail_on))


def _show_plan(plan, dry_run: bool) -> None:
    from rich.table import Table

    con = console()
    if plan.moves:
        table = Table(title=f"rename plan for {plan.root}", show_lines=False)
        table.add_column("old", overflow="fold")
        table.add_column("new", overflow="fold", style="green")
        table.add_column("why", overflow="fold")
        for m in plan.moves:
            table.add_row(m.old, m.new, m.reason if m.role == "checkpoint" else f"[dim]{m.reason}[/dim]")
        con.print(table)
    if plan.manifest_edits:
        table = Table(title=f"manifest {plan.manifest}")
        for col in ("model", "field", "old", "new"):
            table.add_column(col, overflow="fold")
        for e in plan.manifest_edits:
            table.add_row(e.model, e.field, e.old, e.new)
        con.print(table)
    _show_left(con, plan.skipped, plan.findings)
    for note in plan.notes:
        con.print(f"[yellow]note:[/yellow] {note}", highlight=False)
    checkpoints = sum(1 for m in plan.moves if m.role == "checkpoint")
    line = (f"{checkpoints} checkpoint(s) to rename ({len(plan.moves) - checkpoints} companion(s)), "
            f"{len(plan.unchanged)} already named by content, {len(plan.skipped)} skipped, "
            f"{len(plan.findings)} finding(s)")
    con.print(line + (" - dry run: nothing changed" if dry_run else ""), highlight=False)


def _show_left(con, skipped, findings) -> None:
    from rich.table import Table

    if skipped:
        table = Table(title="left alone")
        table.add_column("path", overflow="fold")
        table.add_column("reason", overflow="fold")
        for s in skipped:
            table.add_row(s.path, s.reason)
        con.print(table)
    for f in findings:
        con.print(f"[yellow]{f.severity.value}[/yellow] [bold]{f.code}[/bold] {f.path or ''}: {f.message}",
                  highlight=False)


def _show_applied(result, plan) -> None:
    # plain echo, not rich: paths must stay on one line to be copied
    if result.path is None:
        click.echo("nothing to rename: every checkpoint is already named by its content (or was left alone)")
        return
    click.echo(f"renamed {len(result.applied)} file(s); journal: {result.path}")
    if result.manifest_updated:
        click.echo(f"manifest updated: {result.manifest}")
    late_skips, late_findings = result.skipped[len(plan.skipped):], result.findings[len(plan.findings):]
    if late_skips or late_findings:   # what changed between planning and applying
        _show_left(console(), late_skips, late_findings)
    click.echo(f"undo with: ckreg rename --undo {result.path}")


def _show_undo(result, as_json: bool) -> None:
    if as_json:
        echo_json(result)
        return
    click.echo(f"restored {len(result.restored)} file(s) from {result.journal}"
               + (f"; {len(result.already)} already under their old name" if result.already else ""))
    if result.manifest_restored:
        click.echo(f"manifest restored: {result.manifest}")
    if result.conflicts:
        _show_left(console(), result.conflicts, [])
