"""`ckreg verify`, `ckreg scaler recover` and `ckreg retrain`: parse, call one core function, render.

`scaler recover` is defined here (next to its core, `ckreg.verify.recover_scaler`)
and attached to the `scaler` group by `ckreg.cli.scaler_cmd`.
Exit codes: 0 pass, 1 fail (a finding), 2 usage or I/O error.
"""

from __future__ import annotations

import sys

import click

from ckreg.arch import FAMILIES
from ckreg.cli._common import ACC, console, echo_json
from ckreg.findings import EXIT_FINDINGS, EXIT_OK


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100.0 * x:.2f}%"




# --------------------------------------------------------------------------- rendering


def render_confusion(con, class_names: list[str], cm: list[list[int]], title: str = "confusion matrix") -> None:
    """The confusion matrix within the console's width (ckreg.cli._confusion, shared with `eval`)."""
    from ckreg.cli._confusion import print_confusion

    print_confusion(con, cm, class_names, title)


def render_verify(res, con=None) -> None:
    from rich.table import Table

    con = con or console()
    verdict = {"verified": "[bold green]VERIFIED[/]", "unverified": "[bold yellow]UNVERIFIED[/]"}.get(
        res.status, "[bold red]FAILED[/]")
    summary = Table(show_header=False, box=None, padding=(0, 1))
    summary.add_row("result", verdict)
    summary.add_row("checkpoint", res.ckpt)
    summary.add_row("scaler", str(res.scaler))
    if res.family:
        summary.add_row("family", res.family)
    summary.add_row("loaded", "yes" if res.loaded else "no")
    summary.add_row("finite", {True: "yes", False: "no", None: "-"}[res.finite])
    if res.data:
        summary.add_row("data", str(res.data))
        summary.add_row("data hash", str(res.data_hash))
    if res.split == "all":
        summary.add_row("accuracy", f"{_pct(res.accuracy)} (all {res.n_episodes} episodes)")
    else:
        how = ("recorded by the checkpoint" if res.split_recorded
               else "not recorded by the checkpoint: the default split")
        args = ", ".join(f"{k} {v:g}" for k, v in res.split_args.items())
        summary.add_row("accuracy", f"{_pct(res.accuracy)} on the held-out {res.split} split "
                                    f"({res.n_episodes} episodes; {how}{': ' + args if args else ''})")
        if res.accuracy_all is not None:
            summary.add_row("all episodes", f"{_pct(res.accuracy_all)} ({res.n_episodes_all} episodes, "
                                            "training ones included; secondary)")
    if res.skipped_episodes:
        first = res.skipped_episodes[0]
        summary.add_row("[yellow]skipped[/]", f"{len(res.skipped_episodes)} episode(s) skipped while loading, "
                                              f"e.g. {first['path']}: {first['reason']} (--json lists them all)")
    summary.add_row("target", f"{_pct(res.expect_acc)} ({res.target_source}; tolerance "
                              f"{100 * res.tolerance:.2f} points)" if res.expect_acc is not None else "none")
    for reason in res.reasons:
        summary.add_row("", reason)
    for warning in res.warnings:
        summary.add_row("[yellow]warning[/]", warning)
    con.print(summary)
    if res.per_class:
        pc = Table(title="per-class accuracy", box=None, padding=(0, 1))
        pc.add_column("class")
        pc.add_column("accuracy", justify="right")
        pc.add_column("n", justify="right")
        for k, (name, acc) in enumerate(res.per_class.items()):
            n = sum(res.confusion_matrix[k]) if k < len(res.confusion_matrix) else 0
            style = "" if acc is None or acc >= 0.95 else "red"
            pc.add_row(name, _pct(acc), str(n), style=style)
        con.print(pc)
    render_confusion(con, res.class_names, res.confusion_matrix)


# --------------------------------------------------------------------------- verify


@click.command("verify")
@click.argument("ckpt", type=click.Path(exists=True, dir_okay=False))
@click.option("--scaler", "scaler", type=click.Path(exists=True, dir_okay=False),
              help="Scaler (JSON or scaler.pkl). Default: the one next to the checkpoint.")
@click.option("--data", "data", type=click.Path(exists=True), help="Dataset folder (SignGlove) or .npz.")
@click.option("--expect-acc", type=ACC, help="Declared accuracy, a fraction (0.9913) or a percentage (99.13).")
@click.option("--tolerance", type=float, default=None, show_default="0.005",
              help="How far (a fraction) below the declared accuracy still passes.")
@click.option("--min-acc", type=ACC, help="Target for a pair without a declared accuracy (fraction or percentage).")
@click.option("--split", type=click.Choice(["all", "train", "val", "test"]), default=None, show_default="test",
              help="Where the headline accuracy is measured: the held-out test split the checkpoint records "
                   "(else the default split); all episodes are shown second.")
@click.option("-m", "--manifest", "manifest", type=click.Path(exists=True, dir_okay=False),
              help="Take the declared accuracy from this manifest (the model whose checkpoint this is).")
@click.option("--model", "model_name", help="With -m: the manifest model name (default: matched by path).")
@click.option("--family", "family", type=click.Choice(FAMILIES), default=None,
              help="Family, when the weights cannot tell (ScaleAware vs ScaleHard).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def verify_cmd(ckpt, scaler, data, expect_acc, tolerance, min_acc, split, manifest, model_name, family, as_json):
    """Verify a checkpoint + scaler pair: strict load, finite predictions, accuracy against a target.

    A pair is VERIFIED only against an explicit target: --expect-acc, the
    manifest's declared accuracy (-m), --min-acc, or the manifest's
    min_accuracy. Without one it is UNVERIFIED ("loads and predicts; no
    target"). Exit 0 verified or unverified, 1 failed, 2 usage error (an
    ambiguous family included: pass --family).
    """
    from ckreg.errors import UsageError
    from ckreg.retrain import target_for_checkpoint
    from ckreg.verify import DEFAULT_SPLIT, DEFAULT_TOLERANCE, verify_pair

    if (expect_acc is not None or min_acc is not None) and data is None:
        raise UsageError("--expect-acc and --min-acc need --data: accuracy is measured on a dataset")
    target = target_for_checkpoint(manifest, ckpt, model_name, min_acc)
    source = "--expect-acc"
    if expect_acc is None:
        expect_acc, source = target["expect_acc"], target["source"]
        if tolerance is None and target["tolerance"] is not None:
            tolerance = target["tolerance"]
    if tolerance is None:
        tolerance = DEFAULT_TOLERANCE
    split = split or target["split"] or DEFAULT_SPLIT
    res = verify_pair(ckpt, scaler, data, expect_acc=expect_acc, tolerance=tolerance, split=split, family=family,
                      target_source=source)
    if as_json:
        echo_json(res)
    else:
        render_verify(res)
    sys.exit(EXIT_FINDINGS if res.status == "failed" else EXIT_OK)


# --------------------------------------------------------------------------- scaler recover


@click.command("recover")
@click.argument("ckpt", type=click.Path(exists=True, dir_okay=False))
@click.option("--data", "data", type=click.Path(exists=True), required=True, help="Dataset folder or .npz.")
@click.option("--expect-acc", type=ACC, help="Declared accuracy the recovered scaler must reach.")
@click.option("--tolerance", type=float, default=0.005, show_default=True)
@click.option("--recipe", "recipes", multiple=True, type=click.Choice(["upstream", "train-split"]),
              help="Recipes to try (default: upstream, then train-split).")
@click.option("--out-dir", type=click.Path(file_okay=False),
              help="Where to write (default: ./ckreg-recovered, or <folder>-ckreg-recovered beside the "
                   "checkpoint's folder when run from inside it; never into the checkpoint's folder).")
@click.option("--pkl", is_flag=True, help="Also write a scikit-learn scaler.pkl.")
@click.option("--dry-run", is_flag=True, help="Try the recipes, write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print recipe, accuracy and path as JSON.")
def scaler_recover_cmd(ckpt, data, expect_acc, tolerance, recipes, out_dir, pkl, dry_run, as_json):
    """Re-fit a checkpoint's lost scaler by the known recipes and keep the one that verifies.

    Writes `<ckpt-stem>.scaler.json` outside the checkpoint's folder (see
    --out-dir; never over an existing file: `-1`, `-2`, ... suffixes),
    recording how it was recovered; the checkpoint's folder stays as it was.
    Exit 0 when a scaler verifies, 1 when none does.
    """
    from ckreg.verify import RECIPES, recover_scaler

    res = recover_scaler(ckpt, data, out_dir=out_dir, expect_acc=expect_acc, recipes=recipes or RECIPES,
                         tolerance=tolerance, pkl=pkl, write=not dry_run)
    if as_json:
        doc = res.model_dump(mode="json", exclude={"verification"})
        if res.verification is not None:
            doc["per_class"] = res.verification.per_class
            doc["n_episodes"] = res.verification.n_episodes
        echo_json(doc)
    else:
        from rich.table import Table

        con = console()
        table = Table(title=f"scaler recovery for {ckpt}", box=None, padding=(0, 1))
        table.add_column("recipe")
        table.add_column("accuracy", justify="right")
        table.add_column("verifies")
        for c in res.candidates:
            table.add_row(c.recipe + (" (kept)" if c.recipe == res.recipe and res.passed else ""), _pct(c.accuracy),
                          "yes" if c.passed else "no")
        con.print(table)
        for reason in res.reasons:
            con.print(reason)
        if res.written:
            click.echo(f"wrote {res.path}" + (f" and {res.pkl_path}" if res.pkl_path else ""))  # one line, copyable
    sys.exit(EXIT_OK if res.passed else EXIT_FINDINGS)


# --------------------------------------------------------------------------- retrain


@click.command("retrain")
@click.option("-m", "--manifest", "manifest", type=click.Path(exists=True, dir_okay=False), required=True)
@click.option("--data", "data", type=click.Path(exists=True), required=True, help="Dataset folder or .npz.")
@click.option("--archive", "archive", type=click.Path(exists=True, file_okay=False), envvar="CKREG_ARCHIVE",
              help="Root of the existing checkpoints the manifest's paths are relative to "
                   "(default: $CKREG_ARCHIVE, else the manifest's `root`).")
@click.option("--missing", is_flag=True, help="Train declared models that have no checkpoint (default).")
@click.option("--failed", is_flag=True, help="Train declared models whose pair fails verification.")
@click.option("--register-existing/--no-register-existing", default=True, show_default=True,
              help="Also register the existing pairs that verify (recovering their scaler when needed), "
                   "so that afterwards every declared model has a verified pair in the registry.")
@click.option("--dry-run", is_flag=True, help="Say what would run and why; write nothing.")
@click.option("--force", is_flag=True, help="Train every selected model even when up to date.")
@click.option("--jobs", type=click.IntRange(1, 64), default=1, show_default=True)
@click.option("--registry", "registry", type=click.Path(file_okay=False), envvar="CKREG_REGISTRY",
              help="Registry to register into (default: registry/ or $CKREG_REGISTRY).")
@click.option("--no-register", is_flag=True, help="Train and verify only.")
@click.option("--out", "out", type=click.Path(file_okay=False), default="retrained", show_default=True,
              help="Where trained runs go (<out>/<name>/v<N>/, lock in <out>/<name>/ckreg.lock.json).")
@click.option("--epochs", type=click.IntRange(1, 10_000), help="Override the recipe's epoch cap.")
@click.option("--min-acc", type=ACC, help="Target for models without a declared accuracy (over the manifest's "
                                         "min_accuracy). Without any target nothing is registered as verified.")
@click.option("--only", "only", multiple=True, help="Restrict to these manifest model names.")
@click.option("--json", "as_json", is_flag=True)
def retrain_cmd(manifest, data, archive, missing, failed, register_existing, dry_run, force, jobs, registry,
                no_register, out, epochs, min_acc, only, as_json):
    """Train the declared models that are missing or fail verification, verify them, register them.

    Staleness as DVC decides it: a model is (re)trained only when its output is
    missing or fails verification, or its recipe, hyperparameters or data hash
    changed since the recorded run (`<out>/<name>/ckreg.lock.json`).
    """
    from ckreg.retrain import plan_retrain, run_retrain

    if not missing and not failed and not force:
        missing = True
    if registry is None and not no_register:
        registry = "registry"
    plan = plan_retrain(manifest, data, archive_root=archive, registry=None if no_register else registry,
                        missing=missing, failed=failed, force=force, out=out, epochs=epochs,
                        register_existing=register_existing, only=list(only) or None, min_acc=min_acc)
    if dry_run:
        if as_json:
            echo_json([item.model_dump(mode="json", exclude={"inputs_detail"}) for item in plan])
        else:
            _render_plan(plan)
        sys.exit(EXIT_OK)
    con = console(stderr=True)
    if not as_json:
        _render_plan(plan, con=console())

    def progress(msg: str) -> None:
        if not as_json:
            con.print(msg)

    result = run_retrain(plan, jobs=jobs, progress=progress)
    if as_json:
        echo_json(result)
    else:
        _render_result(result)
    sys.exit(result.exit_code())


def _render_plan(plan, con=None) -> None:
    from rich.table import Table

    con = con or console()
    table = Table(title="retrain plan", box=None, padding=(0, 1))
    table.add_column("model", no_wrap=True)
    table.add_column("action", no_wrap=True)
    table.add_column("why", overflow="fold")
    table.add_column("output", overflow="fold")
    for item in plan:
        style = {"train": "bold yellow", "register": "cyan"}.get(item.action, "dim")
        table.add_row(item.name, f"[{style}]{item.action}[/]", item.reason, item.out_dir or "")
    con.print(table)


def _render_result(result, con=None) -> None:
    from rich.table import Table

    con = con or console()
    table = Table(title="retrain result", box=None, padding=(0, 1))
    for col in ("model", "status", "accuracy", "verified", "registered", "alias"):
        table.add_column(col, no_wrap=True)
    table.add_column("where", overflow="fold")
    for o in result.outcomes:
        style = {"trained": "green", "registered": "cyan", "failed": "bold red",
                 "unverified": "bold yellow"}.get(o.status, "dim")
        table.add_row(o.name, f"[{style}]{o.status}[/]", _pct(o.accuracy),
                      {True: "yes", False: "no", None: "-"}[o.verified],
                      f"{o.name}@{o.version}" if o.version is not None else "-",
                      ", ".join(o.aliases) or "-", o.run_dir or o.ckpt or "")
    con.print(table)
    for o in result.outcomes:
        if o.runs:     # a seeded model: its runs, and which one @best is (by validation)
            seeds = ",".join(str(r["seed"]) for r in o.runs)
            spread = (f"test {100 * o.test_accuracy_mean:.2f} ± {100 * o.test_accuracy_std:.2f}%"
                      if o.test_accuracy_mean is not None and o.test_accuracy_std is not None else "test -")
            best = (f"; {o.name}@best = seed {o.best_seed} (by validation)"
                    if o.best_seed is not None and o.version is not None else "")
            con.print(f"{o.name}: seeds {seeds}: {spread}{best}")
    for o in result.outcomes:
        if o.error:
            con.print(f"[red]{o.name}: {o.error}[/]")


__all__ = ["verify_cmd", "scaler_recover_cmd", "retrain_cmd", "render_verify", "render_confusion"]
