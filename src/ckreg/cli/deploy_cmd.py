"""`ckreg export --format onnx|onnx-int8|torchscript`: the deployment half of `export`.

Thin: parse the deployment options, call `ckreg.deploy.export_deployment`,
render, exit (0 verified, 1 failed verification: the folder and the registry
record say `failed`; 2 bad input, nothing written).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ckreg.cli._common import console, echo_json
from ckreg.errors import UsageError
from ckreg.findings import EXIT_FINDINGS, EXIT_OK


def deploy_options(f):
    """The options only the deployment formats use (kept here so `export` stays one short command)."""
    for opt in reversed([
        click.option("--data", type=click.Path(path_type=Path), default=None,
                     help="deployment formats: data to verify the exported model on (SignGlove folder or .npz)"),
        click.option("--split", type=click.Choice(["test", "all"]), default="test", show_default=True,
                     help="deployment formats: the held-out test split, or every episode"),
        click.option("--seed", type=click.IntRange(min=0), default=None,
                     help="deployment formats: split seed (default: the one recorded with the checkpoint)"),
        click.option("--tolerance", type=click.FloatRange(min=0, max=100), default=0.5, show_default=True,
                     help="deployment formats: accuracy points the artifact may lose against the float model"),
        click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
                     help="deployment formats: intra-op threads for the latency measurement"),
        click.option("--latency-samples", type=click.IntRange(min=0), default=100, show_default=True,
                     help="deployment formats: episodes timed at batch 1"),
        click.option("--quant", type=click.Choice(["static", "dynamic"]), default=None,
                     help="onnx-int8: static (default; activation ranges calibrated on training episodes) "
                          "or dynamic (ranges per batch at run time)"),
        click.option("--calibration", type=click.IntRange(min=1), default=200, show_default=True, metavar="N",
                     help="onnx-int8 --quant static: training-split episodes to calibrate on"),
    ]):
        f = opt(f)
    return f


def deploy_export(reg, ref, to_dir, fmt, *, pkl, ckpt, force, data, split, seed, tolerance, threads,
                  latency_samples, quant, calibration, as_json) -> None:
    from ckreg.deploy import export_deployment

    for flag, on in (("--pkl", pkl), ("--ckpt", ckpt), ("--force", force)):
        if on:
            raise UsageError(f"{flag} belongs to the safetensors export, not --format {fmt}",
                             hint="a deployment export always goes to a new folder")
    result = export_deployment(reg, ref, to_dir, fmt, data, split=split, seed=seed, tolerance=tolerance / 100.0,
                               threads=threads, latency_samples=latency_samples, quant=quant,
                               calibration=calibration)
    if as_json:
        echo_json(result.model_dump(mode="json"))
    else:
        render(result)
    sys.exit(EXIT_OK if result.verified else EXIT_FINDINGS)


def _ms(lat: dict) -> str:
    if not lat or lat.get("mean_ms") is None:
        return "not measured"
    return f"{lat['mean_ms']:.2f} ms (median {lat['median_ms']:.2f})"


def quant_text(q: dict) -> str:
    """One line on how an INT8 artifact was quantized."""
    if q.get("mode") == "static":
        cal = q.get("calibration") or {}
        text = (f"static {q.get('format', 'QDQ')}, weights {q.get('weights', 'int8')}, calibrated on "
                f"{cal.get('episodes', '?')} training episodes ({q.get('method', 'MinMax')})")
    else:
        text = "dynamic (activation ranges per batch at run time)"
    if q.get("ops"):
        text += "; int8: " + ", ".join(q["ops"])
    if q.get("kept_float"):
        text += "; float: " + ", ".join(q["kept_float"])
    return text


def render(r) -> None:
    from rich.table import Table

    con = console()
    t = Table(show_header=False, box=None, pad_edge=False)
    t.add_column(style="bold", no_wrap=True)
    t.add_column()
    status = "[green]verified[/]" if r.verified else "[bold red]FAILED[/]"
    t.add_row("export", f"{r.ref} ({r.family}) as {r.format}: {status}")
    t.add_row("episodes", f"{r.n_episodes} ({r.split}: {r.split_source})")
    t.add_row("accuracy", f"{r.accuracy:.2%} vs float {r.float_accuracy:.2%} "
                          f"({0.0 - 100 * r.accuracy_drop:+.2f} pt; tolerance -{100 * r.tolerance:.2f} pt)")
    t.add_row("agreement", f"{r.agreement:.2%} same top-1 as float (max logit diff {r.max_abs_logit_diff:.2g})")
    t.add_row("latency", f"{_ms(r.latency)} vs float {_ms(r.float_latency)}; batch 1, {r.threads} thread(s)")
    t.add_row("model", f"{r.model_file}, {r.model_bytes:,} bytes; inputs {', '.join(r.inputs)}")
    if r.quantization:
        t.add_row("int8", quant_text(r.quantization))
    t.add_row("folder", r.out)
    con.print(t, highlight=False)
    for reason in r.reasons:
        click.echo(f"failed: {reason}", err=True)
    for w in r.warnings:
        click.echo(f"warning: {w}", err=True)
