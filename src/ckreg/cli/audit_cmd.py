"""`ckreg audit` and `ckreg demo`: parse, call the core, render, exit."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ckreg.cli._common import families_option, load_families, terminal_width
from ckreg.findings import FAIL_ON
from ckreg.report import KEPT_FORMATS, MACHINE_FORMATS, REPORTERS

PROGRESS_MIN_FILES = 20


class _Bar:
    """A rich progress bar on stderr, when stderr is a terminal: for inspecting many files, and always for
    the slow `--data` stages (loading the dataset, verifying each pair)."""

    def __init__(self, enabled: bool, console=None):
        self.enabled = enabled
        self.console = console
        self.progress = None
        self.tasks: dict[str, int] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        from ckreg.audit import VERIFY_STAGES

        if not self.enabled or (total < PROGRESS_MIN_FILES and stage not in VERIFY_STAGES):
            return
        if self.progress is None:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), console=self.console or Console(stderr=True),
                                     transient=True)
            self.progress.start()
        if stage not in self.tasks:
            self.tasks[stage] = self.progress.add_task(stage, total=total or None)
        self.progress.update(self.tasks[stage], completed=done, total=total or None)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def report_format(fmt: str | None, as_json: bool) -> str:
    """`--json` is `--format json`; asking for both json and another format is a usage error."""
    from ckreg.errors import UsageError

    if as_json and fmt not in (None, "json"):
        raise UsageError(f"--json and --format {fmt} ask for two formats; give one")
    return "json" if as_json else (fmt or "table")


def _check_output(output: Path, force: bool) -> None:
    """Before any work: an existing --output is refused unless --force, a checkpoint or scaler always."""
    from ckreg.audit import sniff
    from ckreg.errors import OutputExistsError, UsageError

    if output.is_dir():
        raise UsageError(f"--output {output} is a folder; give a file name")
    if output.exists() and sniff(output) is not None:
        raise UsageError(f"--output {output} looks like a checkpoint or scaler; refusing to overwrite it")
    if (output.exists() or output.is_symlink()) and not force:
        raise OutputExistsError(f"--output {output} exists; refusing to overwrite it",
                                hint="pass --force to replace it, or choose another file")


def _write_report(text: str, output: Path, force: bool = False) -> None:
    """Write the report atomically through ckreg.fsutil (no-clobber unless --force)."""
    from ckreg.fsutil import write_text

    _check_output(output, force)
    output.parent.mkdir(parents=True, exist_ok=True)
    write_text(output, text, overwrite=force)


def _emit(report, fmt: str, output: Path | None, fail_on: str, force: bool = False) -> int:
    """Render, write (file or stdout), mention I/O errors on stderr; return the exit code."""
    from ckreg.report import render

    to_terminal = output is None and sys.stdout.isatty()
    text = render(report, fmt, fail_on=fail_on, color=(fmt == "table" and to_terminal),
                  width=terminal_width() if output is None else None)
    if output is not None:
        _write_report(text, output, force)
    else:
        click.echo(text, nl=False)
    for e in report.errors:
        click.echo(f"error: {e.path or ''}: {e.message}", err=True)
    code = report.exit_code(fail_on)
    if output is not None or fmt in MACHINE_FORMATS:
        from ckreg.report._common import summary_line

        summary = summary_line(report, fail_on)
        where = f" (report: {output})" if output is not None else ""
        click.echo(summary + where, err=True)
    return code


def report_options(fn):
    """--format/--json/--output/--force/--fail-on: the options of every command that emits a report."""
    for option in reversed([
        click.option("--format", "fmt", type=click.Choice(tuple(REPORTERS), case_sensitive=False), default=None,
                     help="Report format  [default: table]."),
        click.option("--json", "as_json", is_flag=True, help="Same as --format json."),
        click.option("-o", "--output", type=click.Path(path_type=Path),
                     help="Write the report here instead of stdout (an existing file is refused unless --force)."),
        click.option("--force", is_flag=True, help="Replace an existing --output file."),
        click.option("--fail-on", type=click.Choice(FAIL_ON), default="error", show_default=True,
                     help="Lowest severity that makes the exit code 1."),
    ]):
        fn = option(fn)
    return fn


@click.command("audit")
@click.argument("path", type=str)
@click.option("-m", "--manifest", type=click.Path(path_type=Path), help="Manifest YAML declaring what PATH should hold.")
@report_options
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None, help="Inspection processes (default: CPUs, max 8).")
@click.option("--data", type=click.Path(path_type=Path), default=None,
              help="Dataset to verify every checkpoint + scaler pair on (needs the [train] extra).")
@click.option("--min-acc", default=None, type=float,
              help="With --data: accuracy (fraction or percentage) a pair without a declared one must reach.")
@click.option("--hash-policy", type=click.Choice(("collisions", "all", "none")), default="collisions", show_default=True,
              help="Hash weights where layouts collide (duplicates), for every file, or never.")
@click.option("--lineage", is_flag=True, help="Add a note for each checkpoint that copies, fine-tunes or "
              "transplants another one, read from the weights.")
@click.option("--progress/--no-progress", default=True, help="Progress bar on stderr for many files (terminal only).")
@click.option("--staged", is_flag=True,
              help="Audit only the files git's index holds (what the next commit contains; the pre-commit "
                   "hook uses it): untracked files are listed as skipped, never audited.")
@click.option("--strict", is_flag=True, help="Judge pickle globals by exactly torch.load(weights_only=True)'s allowlist (the torch tier); by default the value-type tiers python, pathlib, numpy, omegaconf and lightning are allowed too.")
@click.option("--cache", "cache_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Inspection cache file (default: inspections.sqlite in the user cache directory).")
@click.option("--no-cache", is_flag=True, help="Inspect every file again; read and write no cache.")
@click.option("--shard", "shard", metavar="I/N", default=None,
              help="Audit shard I of N (a stable share of the files, by path); merge the JSON shard "
                   "reports with `ckreg report merge`.")
@families_option
@click.pass_context
def audit_cmd(ctx: click.Context, path: str, manifest: Path | None, fmt: str | None, as_json: bool,
              output: Path | None, force: bool, fail_on: str, jobs: int | None, data: Path | None,
              min_acc: float | None, hash_policy: str, progress: bool, staged: bool = False,
              strict: bool = False, lineage: bool = False, cache_path: Path | None = None,
              no_cache: bool = False, shard: str | None = None, family_files: tuple[str, ...] = ()) -> None:
    """Audit the checkpoints under PATH (against a manifest with -m).

    PATH is a folder, a file, or a URL such as s3://bucket/prefix (read by
    range requests; needs the [s3] extra). Exit codes: 0 nothing at or above --fail-on, 1 findings, 2 usage or I/O
    error, 3 nothing checkable found, 4 crash. The report is written before exiting.
    """
    from ckreg.audit import audit, staged_files
    from ckreg.cli._common import tiers_line
    from ckreg.inspect.cache import default_path
    from ckreg.readers import DEFAULT_TIERS, WEIGHTS_ONLY
    from ckreg.readers.fileio import is_url
    from ckreg.shards import Shard

    fmt = report_format(fmt, as_json)
    shard_spec = Shard.parse(shard) if shard is not None else None
    target = path if is_url(path) else Path(path)
    only = staged_files(target) if staged and not is_url(path) and target.is_dir() else None
    if staged and is_url(path):
        only = set()   # refused by the core with the reason (--staged reads git's index)
    load_families(family_files)   # before the manifest, which may name these families
    loaded = None
    if manifest is not None:   # validated before heavy work
        from ckreg.manifest import load_manifest

        loaded = load_manifest(manifest)
    if output is not None:
        _check_output(output, force)
    bar = _Bar(enabled=progress and sys.stderr.isatty())
    try:
        report = audit(target, loaded, data=data, jobs=jobs, hash_policy=hash_policy, progress=bar, min_acc=min_acc,
                       only=only, tiers=WEIGHTS_ONLY if strict else DEFAULT_TIERS, lineage=lineage,
                       cache=None if no_cache else (cache_path or default_path()), shard=shard_spec,
                       lazy=fmt in KEPT_FORMATS)
    finally:
        bar.close()
    click.echo(tiers_line(report.extra.get("allowlist_tiers", [])), err=True)
    ctx.exit(_emit(report, fmt, output, fail_on, force))


@click.command("demo")
@click.argument("directory", required=False, type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(tuple(REPORTERS), case_sensitive=False), default=None,
              help="Report format  [default: table].")
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.pass_context
def demo_cmd(ctx: click.Context, directory: Path | None, fmt: str | None, as_json: bool) -> None:
    """Create a small archive with the seed archive's problems in DIRECTORY (default: a new
    temporary folder; a non-empty one is refused), then audit it against its manifest."""
    from ckreg.audit import audit
    from ckreg.demo import make_demo

    fmt = report_format(fmt, as_json)
    demo = make_demo(directory)
    click.echo(f"demo archive: {demo.root}\ndemo manifest: {demo.manifest}\n"
               f"audit again with: ckreg audit {demo.root} -m {demo.manifest}", err=True)
    report = audit(demo.root, demo.manifest)
    ctx.exit(_emit(report, fmt, None, "error"))
