"""`ckreg report merge`: parse, call the core, render, exit."""

from __future__ import annotations

from pathlib import Path

import click

from ckreg.cli._common import families_option, load_families
from ckreg.cli.audit_cmd import _check_output, _emit, report_format, report_options


@click.group("report")
def report_group() -> None:
    """Work with audit reports."""


@report_group.command("merge")
@click.argument("reports", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@report_options
@families_option
@click.pass_context
def merge_cmd(ctx: click.Context, reports: tuple[Path, ...], fmt: str | None, as_json: bool, output: Path | None,
              force: bool, fail_on: str, family_files: tuple[str, ...] = ()) -> None:
    """Merge the JSON reports of `ckreg audit --shard I/N` (all N of them) into the
    report of the whole archive: missing models, duplicates and scaler pairing are
    checked here, across the shards.

    Exit codes as `ckreg audit`: 0 nothing at or above --fail-on, 1 findings,
    2 usage or I/O error (reports that do not belong together), 3 nothing
    checkable found, 4 crash.
    """
    from ckreg.shards import merge_reports

    fmt = report_format(fmt, as_json)
    load_families(family_files)   # the families the shards were audited with
    if output is not None:
        _check_output(output, force)
    report = merge_reports(reports)
    ctx.exit(_emit(report, fmt, output, fail_on, force))
