"""`ckreg train` and `ckreg eval`: parse, call one core function, render, exit.

The core (`ckreg.train.train` / `evaluate`) knows nothing of click or the
terminal; the progress bar here is its `progress` callback.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import click

from ckreg.arch import FAMILIES
from ckreg.cli._common import ACC, console, echo_json, terminal_width
from ckreg.errors import UsageError
from ckreg.train.loop import DEFAULTS


def parse_sets(items: tuple[str, ...]) -> dict[str, Any]:
    """`--set key=value` pairs; values are YAML scalars or lists (`--set tower_kernels=[[3],[5]]`)."""
    from ckreg.yamlio import load_text

    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--set {item!r} is not key=value", hint="e.g. --set hidden_size=32")
        if key in out:
            raise UsageError(f"--set {key} given twice")
        try:
            value = load_text(raw)
        except Exception as exc:  # yaml.YAMLError and friends: one line, no traceback
            raise UsageError(f"--set {key}: cannot parse {raw!r} as a YAML value ({exc.__class__.__name__})") from exc
        if value is None or isinstance(value, dict):
            raise UsageError(f"--set {key} needs a number, string, boolean or list (got {raw!r})")
        out[key] = value
    return out


class _Bar:
    """The rich progress bar: epoch, step, running train loss/accuracy, last validation, best epoch."""

    def __init__(self, con=None) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.con = con or console(stderr=True)
        self.live = self.con.is_terminal
        self.progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]} acc {task.fields[acc]}"),
            TextColumn("| val loss {task.fields[vloss]} acc {task.fields[vacc]} | best {task.fields[best]}"),
            TimeElapsedColumn(), console=self.con, transient=False, disable=not self.live,
        )
        self.task = None
        self.setup = None          # the bar before epoch 1 (one live display at a time: started, then stopped)
        self.setup_task = None
        self.started = False

    def __enter__(self) -> "_Bar":
        return self

    def __exit__(self, *exc) -> None:
        if self.setup is not None:
            self.setup.stop()
        if self.started:
            self.progress.stop()

    def __call__(self, ev) -> None:
        fmt = lambda v, pct=False: "-" if v is None else (f"{v:.1%}" if pct else f"{v:.4f}")  # noqa: E731
        if ev.kind == "setup":           # before epoch 1: a bar without an end, named after the step
            if not self.live:
                self.con.print(f"{ev.stage} ...", highlight=False)
                return
            if self.setup is None:
                from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

                self.setup = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                      TimeElapsedColumn(), console=self.con, transient=True)
                self.setup.start()
                self.setup_task = self.setup.add_task(ev.stage, total=None)
            self.setup.update(self.setup_task, description=ev.stage)
            return
        if ev.kind == "start":
            if self.setup is not None:
                self.setup.stop()
                self.setup = None
            if self.live and not self.started:
                self.progress.start()
                self.started = True
            self.task = self.progress.add_task("train", total=ev.steps, epoch=f"1/{ev.epochs}", loss="-",
                                               acc="-", vloss="-", vacc="-", best="-")
        elif ev.kind == "batch" and self.task is not None:
            if ev.step == 1:
                self.progress.reset(self.task, total=ev.steps)
            self.progress.update(self.task, completed=ev.step, epoch=f"{ev.epoch}/{ev.epochs}",
                                 loss=fmt(ev.train_loss), acc=fmt(ev.train_acc, True))
        elif ev.kind == "epoch" and self.task is not None:
            self.progress.update(self.task, vloss=fmt(ev.val_loss), vacc=fmt(ev.val_acc, True),
                                 best=str(ev.best_epoch or "-"))
            if not self.live:  # logs and CI: one plain line per epoch instead of a live bar
                self.con.print(f"epoch {ev.epoch}/{ev.epochs}  loss {fmt(ev.train_loss)}  acc "
                               f"{fmt(ev.train_acc, True)}  val loss {fmt(ev.val_loss)}  val acc "
                               f"{fmt(ev.val_acc, True)}  best {ev.best_epoch}  {ev.elapsed_s:.1f}s",
                               highlight=False)


@click.command("train")
@click.argument("family")
@click.option("--data", required=True, type=click.Path(path_type=Path),
              help="SignGlove folder ({class}/{session}/episode_*.csv) or .npz (X [N,T,C], y [N]).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Output folder.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override a hyperparameter of the family (YAML value), e.g. --set hidden_size=32.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--epochs", type=int, default=None, help=f"Epoch cap (default {DEFAULTS['epochs']}, early stopping).")
@click.option("--batch-size", type=int, default=DEFAULTS["batch_size"], show_default=True)
@click.option("--lr", type=float, default=DEFAULTS["lr"], show_default=True, help="AdamW learning rate.")
@click.option("--patience", type=int, default=DEFAULTS["patience"], show_default=True,
              help="Epochs without a validation-loss improvement of at least --min-delta before stopping.")
@click.option("--min-delta", type=click.FloatRange(min=0), default=DEFAULTS["min_delta"], show_default=True,
              help="A validation-loss improvement smaller than this does not reset --patience.")
@click.option("--threads", type=click.IntRange(min=1), default=DEFAULTS["threads"], show_default=True,
              help="torch intra-op threads (recorded in metrics.json; results are bit-identical for a given count).")
@click.option("--pkl", is_flag=True, help="Also write scaler.pkl (scikit-learn pickle) for legacy inference code.")
@click.option("--force", is_flag=True, help="Replace the outputs of an earlier run in --out.")
@click.option("--optimizer", type=click.Choice(("adamw", "sgd")), default="adamw", show_default=True,
              help="AdamW (plateau schedule) or SGD with momentum and weight decay.")
@click.option("--schedule", type=click.Choice(("plateau", "cosine", "step")), default=None,
              help="Learning-rate schedule (default: plateau for AdamW, cosine for SGD).")
@click.option("--momentum", type=float, default=0.9, show_default=True, help="SGD momentum.")
@click.option("--weight-decay", type=click.FloatRange(min=0), default=None,
              help=f"Weight decay (default {DEFAULTS['weight_decay']}).")
@click.option("--lr-min", type=click.FloatRange(min=0), default=1e-4, show_default=True,
              help="Cosine schedule: the learning rate at the epoch cap.")
@click.option("--step-size", type=click.IntRange(min=1), default=30, show_default=True,
              help="Step schedule: epochs between decays.")
@click.option("--gamma", type=float, default=0.1, show_default=True, help="Step schedule: decay factor.")
@click.option("--imaging", default=None, metavar="gasf|gadf|mtf|gasf+gadf+mtf",
              help="Train on images of the signals (WRN --set conv_dim=2).")
@click.option("--image-size", type=click.IntRange(min=2), default=64, show_default=True)
@click.option("--mtf-bins", type=click.IntRange(min=2), default=8, show_default=True, help="MTF quantile bins.")
@click.option("--image-rescale", type=click.Choice(["train-split", "episode"]), default="train-split",
              show_default=True, help="Image range and MTF edges: per channel from the training split "
              "(keeps each signal's level), or each series' own.")
@click.option("--teacher", default=None, metavar="REF",
              help="Distil from this teacher: a checkpoint, a training output folder or a registry reference.")
@click.option("--kd-temperature", type=float, default=4.0, show_default=True)
@click.option("--kd-lambda", type=float, default=0.7, show_default=True,
              help="Weight of the distillation term: (1-l) CE + l T^2 KL.")
@click.option("--seeds", default=None, metavar="0,1,2",
              help="One run per seed into --out/seed-<s>, reported each and as mean ± std.")
@click.option("--register", "register_name", default=None, metavar="NAME",
              help="Verify the run(s) against --min-acc on the held-out test split and register the "
                   "verified ones as versions of NAME; alias `best` = best by validation.")
@click.option("--min-acc", type=ACC, default=None,
              help="Accuracy target for --register (a fraction 0.99 or a percentage 99).")
@click.option("--registry", "registry_path", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Registry folder (for --register and registry --teacher refs; default $CKREG_REGISTRY or ./registry).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def train_cmd(family, data, out, sets, seed, epochs, batch_size, lr, patience, min_delta, threads, pkl, force,
              optimizer, schedule, momentum, weight_decay, lr_min, step_size, gamma, imaging, image_size, mtf_bins,
              image_rescale, teacher, kd_temperature, kd_lambda, seeds, register_name, min_acc, registry_path, as_json):
    """Train FAMILY on --data and write weights, a Lightning .ckpt, the scaler and metrics into --out."""
    from ckreg.train import train
    from ckreg.train.recipes import ImagingConfig, OptimConfig

    if min_acc is not None and register_name is None:
        raise UsageError("--min-acc is the target runs must reach to be registered; it needs --register NAME")
    overrides = parse_sets(sets)
    kwargs: dict[str, Any] = dict(
        overrides=overrides, epochs=epochs, batch_size=batch_size, lr=lr, patience=patience,
        min_delta=min_delta, threads=threads, pkl=pkl,
        optim=OptimConfig(optimizer=optimizer, schedule=schedule, momentum=momentum, lr_min=lr_min,
                          step_size=step_size, gamma=gamma),
        kd_temperature=kd_temperature, kd_lambda=kd_lambda)
    if weight_decay is not None:
        kwargs["weight_decay"] = weight_decay
    if imaging:
        from ckreg.data.imaging import parse_imaging

        kwargs["imaging"] = ImagingConfig(parse_imaging(imaging), image_size, mtf_bins, image_rescale)
    if teacher:
        from ckreg.registry.runs import resolve_teacher

        kwargs["teacher"] = resolve_teacher(teacher, registry_path)
    if seeds is not None or register_name is not None:
        from ckreg.registry.runs import train_runs

        with _Bar() as bar:
            res = train_runs(family, data, out, seeds if seeds is not None else [seed], register=register_name,
                             registry=registry_path, min_acc=min_acc, force=force, progress=bar, **kwargs)
        if as_json:
            echo_json(res)
        else:
            _render_seeds(res)
        if (res.get("registered") or {}).get("not_registered"):
            sys.exit(1)        # a run that did not verify is a finding, not a crash
        return
    with _Bar() as bar:
        result = train(family, data, out, seed=seed, progress=bar, force=force, **kwargs)
    if as_json:
        payload = result.model_dump(mode="json", exclude={"metrics"})
        payload["metrics_path"] = result.files.get("metrics")
        echo_json(payload)
    else:
        _render_train(result)
    if result.interrupted:
        click.echo(f"interrupted: kept the best checkpoint (epoch {result.best_epoch}) in {result.out}", err=True)
        sys.exit(130)


def _render_seeds(res: dict) -> None:
    from rich.table import Table

    pct = lambda v: "-" if v is None else f"{v:.2%}"  # noqa: E731
    t = Table(box=None, pad_edge=False)
    for col in ("seed", "val acc", "val loss", "test acc", "epochs", "s/epoch", "version"):
        t.add_column(col)
    table = res["seeds"]
    for run in table["runs"]:
        t.add_row(str(run["seed"]), pct(run["val_accuracy"]),
                  "-" if run["best_val_loss"] is None else f"{run['best_val_loss']:.4f}", pct(run["test_accuracy"]),
                  f"{run['epochs_run']} (best {run['best_epoch']})",
                  "-" if run["mean_epoch_s"] is None else f"{run['mean_epoch_s']:.2f}",
                  (res.get("registered") or {}).get("versions", {}).get(str(run["seed"]), "-"))
    console().print(t)
    m, sd = table["test_accuracy_mean"], table["test_accuracy_std"]
    click.echo(f"{table['family']}: test accuracy {pct(m)} ± {pct(sd)} over {len(table['runs'])} seed(s); "
               f"best by validation: seed {table['best_seed']}")
    reg = res.get("registered")
    if reg:
        if reg["versions"]:
            click.echo(f"registered {', '.join(reg['versions'].values())} (verified, target {pct(reg['min_acc'])})")
            click.echo(f"{reg['name']}@{reg['alias']} -> {reg['best']} (best verified run by validation)")
        for s, why in reg.get("not_registered", {}).items():
            click.echo(textwrap.fill(f"seed {s} not registered (not verified): {why}", width=terminal_width(),
                                     subsequent_indent="  ", break_on_hyphens=False))


def _render_train(r) -> None:
    from rich.table import Table

    con = console()
    t = Table(show_header=False, box=None, pad_edge=False)
    t.add_column(style="bold")
    t.add_column()
    acc = "-" if r.test_accuracy is None else f"{r.test_accuracy:.2%} of {r.n_test} test episodes"
    per_epoch = (sum(r.epoch_times_s) / len(r.epoch_times_s)) if r.epoch_times_s else 0.0
    for k, v in [("family", r.family), ("params", f"{r.params:,}"),
                 ("epochs", f"{r.epochs_run} (best {r.best_epoch}, {r.stop_reason})"),
                 ("best val loss", f"{r.best_val_loss:.4f}" if r.best_val_loss is not None else "-"),
                 ("test accuracy", acc),
                 ("wall time", f"{r.wall_time_s:.1f}s total, {per_epoch:.2f}s per epoch"),
                 ("weights sha256", r.weights_sha256 or "-")]:
        t.add_row(k, v)
    for name, path in r.files.items():
        t.add_row(name, path)
    con.print(t)
    for w in r.warnings:
        click.echo(f"warning: {w}", err=True)


@click.command("eval")
@click.argument("ckpt", type=click.Path(path_type=Path))
@click.option("--scaler", "scaler", required=True, type=click.Path(path_type=Path),
              help="scaler.json (or a scaler.pkl, read without unpickling code).")
@click.option("--data", required=True, type=click.Path(path_type=Path))
@click.option("--split", "split", type=click.Choice(["test", "all"]), default="test", show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=None,
              help="Split seed (default: the one recorded with the checkpoint).")
@click.option("--png", type=click.Path(path_type=Path), default=None, help="Also write the confusion matrix as PNG.")
@click.option("--scales-png", type=click.Path(path_type=Path), default=None,
              help="Scale-aware families: also write the scale ablation and weight norms as a bar chart PNG.")
@click.option("--latency-samples", type=click.IntRange(min=0), default=100, show_default=True)
@click.option("--force", is_flag=True, help="Overwrite an existing --png file.")
@click.option("--family", "family", type=click.Choice(FAMILIES), default=None,
              help="Family, when the weights cannot tell (ScaleAware vs ScaleHard).")
@click.option("--json", "as_json", is_flag=True, help="Print ONE JSON object.")
def eval_cmd(ckpt, scaler, data, split, seed, png, scales_png, latency_samples, force, family, as_json):
    """Score CKPT with its scaler on --data: accuracy, per-class accuracy, confusion matrix, latency."""
    from ckreg.train import evaluate

    for flag, target in (("--png", png), ("--scales-png", scales_png)):
        if target is not None and target.exists() and not force:
            raise UsageError("refusing to overwrite an existing file", path=str(target),
                             hint=f"pass --force or another {flag}")
    result = evaluate(ckpt, scaler, data, split=split, seed=seed, latency_samples=latency_samples, family=family)
    if scales_png is not None:
        if result.scale_ablation is None:
            raise UsageError(f"--scales-png: {result.family} has no scale-aware cell, so there is no scale ablation",
                             path=str(ckpt), hint="use it with MSCSGRU_ScaleAware, MSCSGRU_ScaleHard or MSCGRU_ScaleAware")
        from ckreg.train.ablation import write_scales_png

        write_scales_png(scales_png, result.scale_ablation, result.scale_norms,
                         f"{result.family}, {result.split} split, {result.n_episodes} episodes", overwrite=force)
    if png is not None:
        from ckreg.train.png import write_confusion_png

        png_notes: list[str] = []
        write_confusion_png(png, result.confusion_matrix, result.class_names,
                            f"{result.family} {split} accuracy {result.accuracy:.2%}", notes=png_notes,
                            overwrite=force)
        for note in png_notes:
            click.echo(f"warning: {png}: {note}", err=True)
    if as_json:
        echo_json(result.model_dump(mode="json"))
        return
    con = console()
    from ckreg.cli._confusion import print_confusion

    print_confusion(con, result.confusion_matrix, result.class_names, f"confusion matrix ({split} split)")
    lat = result.latency
    lat_txt = (f"{result.latency_ms:.2f} ms/episode (batch 1, {lat.get('threads')} thread, "
               f"median {lat.get('median_ms', 0):.2f}, p95 {lat.get('p95_ms', 0):.2f}, n={lat.get('samples')})"
               if result.latency_ms is not None else "not measured")
    worst = sorted(((a, n) for n, a in result.per_class.items() if a is not None))[:3]
    con.print(f"[bold]{result.family}[/]  {result.split} split ({result.split_source}): "
              f"accuracy [bold]{result.accuracy:.2%}[/] ({result.correct}/{result.n_episodes})", highlight=False)
    con.print(f"params {result.params:,} (+{result.buffers:,} buffer elements)   latency {lat_txt}", highlight=False)
    if worst:
        con.print("lowest per-class: " + ", ".join(f"{n} {a:.1%}" for a, n in worst), highlight=False)
    if result.scale_ablation is not None:
        con.print(scale_table(result.scale_ablation, result.scale_norms))
    for target in (png, scales_png):
        if target is not None:
            con.print(f"wrote {target}", highlight=False)
    for w in result.warnings:
        click.echo(f"warning: {w}", err=True)


def _points(delta: float) -> str:
    """An accuracy change in percentage points; no '-0.00' for an unchanged one."""
    pts = round(100 * delta, 2)
    return "0.00 pt" if pts == 0 else f"{pts:+.2f} pt"


def scale_table(ablation: dict, norms: dict | None):
    """Per scale: accuracy with its input chunk zeroed, the change, top-1 agreement, and the weight norm."""
    from rich.table import Table

    t = Table(title=None, box=None, padding=(0, 1), pad_edge=False, header_style="bold")
    for name, justify in (("zeroed", "left"), ("accuracy", "right"), ("change", "right"),
                          ("agreement", "right"), ("weight norm", "right")):
        t.add_column(name, justify=justify)
    t.add_row("none", f"{ablation['accuracy']:.2%}", "-", "-", "-")
    total = sum(norms.values()) if norms else 0.0
    for k, row in ablation["scales"].items():
        norm = f"{norms[k]:.2f} ({norms[k] / total:.0%})" if norms and total else "-"
        t.add_row(f"scale {k}", f"{row['accuracy']:.2%}", _points(-row["drop"]),
                  f"{row['agreement']:.2%}", norm)
    return t
