"""`ckreg scaler ...`: fit and inspect per-channel scalers.

A click group so more subcommands can join it (`recover` lives with verify):
register them with `scaler_group.add_command(...)` or `@scaler_group.command()`.
"""

from __future__ import annotations

import warnings

import click

from ckreg.cli._common import console, echo_json


@click.group("scaler")
def scaler_group() -> None:
    """Fit, inspect (and recover) per-channel StandardScalers."""


@scaler_group.command("fit")
@click.option("--data", "data", required=True, type=click.Path(exists=True),
              help="SignGlove folder or .npz dataset.")
@click.option("--recipe", type=click.Choice(["train-split", "upstream"]), default="train-split", show_default=True,
              help="train-split: training episodes' unpadded rows; upstream: every row, padding included.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the train/val/test split (train-split).")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False),
              help="JSON file to write (a .pkl name writes the pickle and a .json beside it).")
@click.option("--pkl", "pkl", is_flag=True, help="Also write a scikit-learn pickle (same name, .pkl).")
@click.option("--keep-degenerate/--skip-degenerate", default=None,
              help="Keep degenerate episodes (e.g. one row) in the fit [default: keep for upstream, skip for train-split].")
@click.option("--force", is_flag=True, help="Replace existing output files (written to a temp name, then renamed).")
@click.option("--json", "as_json", is_flag=True, help="Print the fitted scaler as JSON.")
def fit_cmd(data: str, recipe: str, seed: int, out: str, pkl: bool, keep_degenerate: bool | None, force: bool,
            as_json: bool) -> None:
    """Fit a scaler on DATA by RECIPE and save it (JSON; --pkl adds scaler.pkl)."""
    from ckreg.scaler import fit_and_save

    scaler, files = fit_and_save(data, recipe=recipe, seed=seed, out=out, pickle_too=pkl, overwrite=force,
                                 keep_degenerate=keep_degenerate)
    if as_json:
        echo_json({**scaler.to_json_dict(), "files": [str(f) for f in files]})
        return
    _render(scaler, title=f"{recipe} scaler fitted on {data}")
    for f in files:
        click.echo(f"wrote {f}")


@scaler_group.command("inspect")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def inspect_cmd(file: str, as_json: bool) -> None:
    """Show a scaler (ckreg JSON, or a scaler.pkl read without unpickling code)."""
    from ckreg.scaler import ScalerVersionWarning, load_scaler

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ScalerVersionWarning)   # rendered below from scaler.warnings
        scaler = load_scaler(file)
    if as_json:
        echo_json(scaler.model_dump(mode="json"))
        return
    for w in scaler.warnings:
        click.echo(f"warning: {w}", err=True)
    _render(scaler, title=f"{file} ({scaler.source_format})")


def _render(scaler, title: str) -> None:
    from rich.table import Table

    con = console()
    con.print(title, highlight=False)
    table = Table()
    table.add_column("#", justify="right")
    table.add_column("channel")
    table.add_column("mean", justify="right")
    table.add_column("scale", justify="right")
    table.add_column("var", justify="right")
    names = scaler.channel_names or [""] * scaler.n_features
    var = scaler.var or [None] * scaler.n_features
    for i, (n, m, s, v) in enumerate(zip(names, scaler.mean, scaler.scale, var)):
        table.add_row(str(i), n or "-", f"{m:.6g}", f"{s:.6g}", "-" if v is None else f"{v:.6g}")
    con.print(table)
    con.print(f"features: {scaler.n_features}   samples seen: {scaler.n_samples_seen}   recipe: {scaler.recipe}   "
              f"scikit-learn: {scaler.sklearn_version or '-'}")
    if scaler.data_hash:
        con.print(f"data hash: {scaler.data_hash}")


# `ckreg scaler recover` is defined with its core in ckreg.cli.verify_cmd.
from ckreg.cli.verify_cmd import scaler_recover_cmd as _recover_cmd  # noqa: E402  (cheap: no torch)

scaler_group.add_command(_recover_cmd, "recover")
