"""`ckreg registry add|ls|show|alias|verify|gc|upgrade|events` and `ckreg export`.

Each command parses options, calls one `ckreg.registry.Registry` method,
renders the result and exits: 0 ok, 1 problems (`registry verify`), 2 user or
I/O error (one line, via the lazy group's CkregError handling).
The registry is `--registry PATH` (on the group or the command), else
`$CKREG_REGISTRY`, else `./registry`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from ckreg.cli._common import console, echo_json
from ckreg.errors import UsageError
from ckreg.findings import EXIT_FINDINGS, EXIT_OK
from ckreg.cli.deploy_cmd import deploy_export, deploy_options

_REGISTRY_HELP = "registry directory, index and blobs both local (default: $CKREG_REGISTRY, else ./registry)"
_DB_HELP = "registry index: a SQLite path or postgresql://user@host/db (default: $CKREG_REGISTRY_DB)"
_STORE_HELP = "registry blob store: a folder or s3://bucket/prefix (default: $CKREG_REGISTRY_STORE)"


def _remember(key: str):
    def callback(ctx: click.Context, _param, value):
        if value is not None:
            ctx.meta[f"ckreg.registry.{key}"] = value   # meta is shared by the group and its commands
        return value
    return callback


def _registry_option(f):
    """--registry DIR, --registry-db URL, --registry-store URL: declared once, on the group and every command."""
    f = click.option("--registry-store", metavar="URL", default=None, expose_value=False,
                     callback=_remember("store"), help=_STORE_HELP)(f)
    f = click.option("--registry-db", metavar="URL", default=None, expose_value=False,
                     callback=_remember("db"), help=_DB_HELP)(f)
    return click.option("--registry", "registry_path", type=click.Path(file_okay=False, path_type=Path),
                        default=None, callback=_remember("path"), help=_REGISTRY_HELP)(f)


def _open(ctx: click.Context, registry_path: Path | None = None):
    from ckreg.registry import Registry

    meta = ctx.meta
    return Registry(registry_path or meta.get("ckreg.registry.path"),
                    db=meta.get("ckreg.registry.db"), store=meta.get("ckreg.registry.store"))


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100.0 * x:.2f}%"


def _read_json_file(path: Path | None, what: str) -> Any:
    if path is None:
        return None
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read the {what} JSON: {exc}", path=str(path)) from exc


def _parse_sets(items: tuple[str, ...]) -> dict[str, Any]:
    """--set key=value (values parsed as YAML: 64, true, [[3],[5],[7]])."""
    from ckreg.yamlio import load_text

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set {item!r}: expected KEY=VALUE")
        try:
            out[key.strip()] = load_text(value) if value.strip() else None
        except Exception as exc:  # yaml errors: a usage mistake
            raise UsageError(f"--set {item!r}: cannot parse the value ({exc})") from exc
    return out


@click.group("registry")
@_registry_option
@click.pass_context
def registry_group(ctx: click.Context, registry_path: Path | None) -> None:
    """Versioned, content-addressed registry of verified checkpoint + scaler pairs."""
    ctx.ensure_object(dict)
    ctx.obj["registry"] = registry_path


@registry_group.command("add")
@click.argument("ckpt", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--scaler", "scaler", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="the scaler trained with this checkpoint (JSON or scaler.pkl)")
@click.option("--name", default=None, help="model name (default: the family)")
@click.option("--family", default=None, help="the family, where the weights cannot tell (e.g. ScaleAware vs ScaleHard)")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="spec field on top of what the weights show")
@click.option("--alias", "aliases", multiple=True, help="point this alias at the new version (repeatable)")
@click.option("--verification", "verification_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="a verification result JSON (e.g. `ckreg verify --json` output) to record")
@click.option("--provenance", "provenance_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="provenance JSON (training recipe, split, data hash)")
@click.option("--data", "data", type=click.Path(exists=True, path_type=Path), default=None,
              help="verify the pair on this dataset (SignGlove folder or .npz) and record the result")
@click.option("--expect-acc", "expect_acc", type=float, default=None,
              help="with --data: the accuracy the pair must reach (fraction or percent)")
@click.option("--lineage", is_flag=True,
              help="compare the weights with every registered version and record the edges (ckreg lineage)")
@click.option("--json", "as_json", is_flag=True, help="print the version as JSON")
@_registry_option
@click.pass_context
def add_cmd(ctx, ckpt, scaler, name, family, sets, aliases, verification_file, provenance_file, data, expect_acc,
            lineage, as_json, registry_path):
    """Register CKPT (and its scaler) as the next version of NAME; re-adding the same pair is a no-op."""
    reg = _open(ctx, registry_path)
    res = reg.register(ckpt, scaler, name=name, family=family, overrides=_parse_sets(sets) or None,
                       verification=_read_json_file(verification_file, "verification"),
                       provenance=_read_json_file(provenance_file, "provenance"), aliases=aliases,
                       data=data, expect_acc=expect_acc, lineage=lineage)
    v = res.version
    if as_json:
        echo_json({**v.summary(), "created": res.created})
        sys.exit(EXIT_OK)
    if res.created:
        click.echo(f"registered {v.ref} ({v.family}, sha256 {v.sha256[:12]}, pair {v.pair_digest[:12]})"
                   + (f" aliases: {', '.join(v.aliases)}" if v.aliases else ""))
    else:
        click.echo(f"already registered as {v.ref} (same checkpoint and scaler); nothing added"
                   + (f"; aliases: {', '.join(v.aliases)}" if v.aliases else ""))
    if v.verification is not None:
        click.echo(f"verification: accuracy {_pct(v.accuracy)}, " + ("passed" if v.verified else "FAILED"))
    for line in _lineage_lines(v):
        click.echo(line)
    for note in (v.scaler.warnings if v.scaler else []):
        click.echo(f"note: {note}", err=True)
    sys.exit(EXIT_OK)


@registry_group.command("ls")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="one JSON object per version")
@_registry_option
@click.pass_context
def ls_cmd(ctx, name, as_json, registry_path):
    """List registered versions (of NAME)."""
    versions = _open(ctx, registry_path).ls(name)
    if as_json:
        echo_json([v.summary() for v in versions])
        sys.exit(EXIT_OK)
    if not versions:
        click.echo("no versions registered" + (f" for {name}" if name else ""))
        sys.exit(EXIT_OK)
    console().print(ls_table(versions))
    sys.exit(EXIT_OK)


def _status(v) -> str:
    if v.verification is None:
        return "-"
    return "verified" if v.verified else "FAILED"


def ls_table(versions):
    """One row per version, narrow enough for 80 columns (digests are in `show` and `--json`)."""
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("ref", no_wrap=True)
    table.add_column("aliases", overflow="fold", max_width=16)
    table.add_column("family", no_wrap=True)
    table.add_column("accuracy", justify="right", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("registered", no_wrap=True)
    for v in versions:
        status = _status(v)
        style = {"verified": "green", "FAILED": "bold red"}.get(status, "dim")
        table.add_row(v.ref, ", ".join(v.aliases) or "-", v.family, _pct(v.accuracy), f"[{style}]{status}[/]",
                      v.created_at[:16].replace("T", " "))
    return table


def show_lines(detail) -> list[tuple[str, str]]:
    """(label, text) pairs: the concise `registry show` (everything else: --json)."""
    v = detail.version
    spec = v.spec.model_dump(mode="json")
    hp = ", ".join(f"{k}={json.dumps(val)}" for k, val in spec.items() if k != "family" and val is not None)
    rows = [("family", f"{v.family} ({hp})" if hp else v.family)]
    ver = v.verification
    if ver is None:
        rows.append(("accuracy", "never verified"))
    else:
        target = f"target {_pct(ver.expect_acc)}" if ver.expect_acc is not None else "no target"
        verdict = "passed" if ver.passed else "FAILED"
        when = f", {ver.date[:16].replace('T', ' ')}" if ver.date else ""
        data = f" on data {ver.data_hash[:12]}" if ver.data_hash else ""
        rows.append(("accuracy", f"{_pct(ver.accuracy)} ({verdict}, {target}){data}{when}"))
        if isinstance(ver.per_class, dict) and ver.per_class:
            worst = sorted((a, n) for n, a in ver.per_class.items() if isinstance(a, (int, float)))[:3]
            if worst:
                rows.append(("lowest", ", ".join(f"{n} {_pct(a)}" for a, n in worst)))
    rows.append(("checkpoint", f"sha256 {v.sha256[:12]}, {v.size:,} bytes" + (f", {v.format}" if v.format else "")
                 + (f", from {v.source_path}" if v.source_path else "")))
    if v.scaler is None:
        rows.append(("scaler", "none"))
    else:
        sc = v.scaler
        bits = [f"sha256 {sc.sha256[:12]}", sc.format]
        if sc.n_features is not None:
            bits.append(f"{sc.n_features} features")
        if sc.recipe:
            bits.append(f"recipe {sc.recipe}")
        rows.append(("scaler", ", ".join(bits)))
        for w in sc.warnings:
            rows.append(("note", w))
    rows.append(("pair", f"digest {v.pair_digest[:12]}"))
    rows.append(("registered", f"{v.created_at[:16].replace('T', ' ')} by {v.created_by}"))
    rows.append(("history", f"{len(detail.verifications)} verification(s), {len(detail.events)} event(s) "
                            f"(ckreg registry events --name {v.name})"))
    rows.extend(("lineage", text) for text in _lineage_texts(v))
    return rows


ARTIFACTS_SHOWN = 8


def artifact_lines(artifacts) -> list[str]:
    """The deployment artifacts as a small table under the label column (at most 76 columns), newest last.

    A failed artifact shows its accuracy points against the float model.
    """
    if not artifacts:
        return []
    shown = artifacts[-ARTIFACTS_SHOWN:]
    out = [f"{'artifacts':<10} {'kind':<12} {'acc':>7} {'agree':>7} {'ms mean/med':>11} {'KiB':>5} status"]
    for a in shown:
        ms = ("-" if a.latency_mean_ms is None else
              f"{a.latency_mean_ms:.2f}/{a.latency_median_ms:.2f}" if a.latency_median_ms is not None
              else f"{a.latency_mean_ms:.2f}")
        kib = "-" if a.model_bytes is None else f"{a.model_bytes / 1024:.0f}"
        status = "verified" if a.verified else "FAILED"
        if not a.verified and a.accuracy is not None and a.float_accuracy is not None:
            status += f" {100 * (a.accuracy - a.float_accuracy):+.2f}pt"
        out.append(f"{'':<10} {a.kind:<12} {_pct(a.accuracy):>7} {_pct(a.agreement):>7} "
                   f"{ms:>11} {kib:>5} {status}")
    if len(artifacts) > len(shown):
        out.append(f"{'':<10} ({len(artifacts) - len(shown)} older: --json)")
    return out


@registry_group.command("show")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="everything recorded, as JSON")
@_registry_option
@click.pass_context
def show_cmd(ctx, ref, as_json, registry_path):
    """A summary of REF (NAME, NAME@alias, NAME@version); --json for everything recorded."""
    detail = _open(ctx, registry_path).show(ref)
    if as_json:
        echo_json(detail)
        sys.exit(EXIT_OK)
    from ckreg.cli._common import terminal_width
    from ckreg.report.wrapping import wrap

    v = detail.version
    width = terminal_width(80)
    head = f"{v.ref} {_status(v)}" + (f" (aliases: {', '.join(v.aliases)})" if v.aliases else "")
    for line in wrap(head, width):
        click.echo(line)
    for label, text in show_lines(detail):
        for i, line in enumerate(wrap(text, max(20, width - 13))):
            click.echo(f"  {label if i == 0 else '':<10} {line}")
    for line in artifact_lines(detail.artifacts):
        click.echo(f"  {line}")
    for line in wrap("everything recorded (per-class accuracy, confusion matrix, events, blob paths): --json", width):
        click.echo(line)
    sys.exit(EXIT_OK)


def _lineage_lines(v) -> list[str]:
    return [f"lineage: {t}" for t in _lineage_texts(v)]


def _lineage_texts(v) -> list[str]:
    """One text per lineage edge stored in the version's provenance (ckreg.lineage)."""
    lines = []
    for e in (v.provenance or {}).get("lineage") or []:
        if not isinstance(e, dict):
            continue
        mine = e.get("child") == v.ref
        other = e.get("parent") if mine else e.get("child")
        verb = e.get("relation", "?") if mine or not e.get("directed") else f"parent of ({e.get('relation')})"
        facts = []
        if e.get("distance") is not None:
            facts.append(f"distance {e['distance']:.4f}")
        if e.get("groups"):
            facts.append(", ".join(f"{g['name']} {g['shared']}/{g['total']}" for g in e["groups"][:4]))
        if not e.get("directed"):
            facts.append("undirected")
        lines.append(f"{verb} {other}" + (f" ({'; '.join(facts)})" if facts else ""))
    return lines


@registry_group.command("alias")
@click.argument("name")
@click.argument("alias")
@click.argument("version", required=False, type=int)
@click.option("--expect", default=None, metavar="VERSION|none",
              help="compare-and-swap: fail unless the alias points here now ('none': unset)")
@click.option("--delete", is_flag=True, help="remove the alias")
@_registry_option
@click.pass_context
def alias_cmd(ctx, name, alias, version, expect, delete, registry_path):
    """Point NAME@ALIAS at VERSION (compare-and-swap with --expect)."""
    from ckreg.registry import ANY

    if delete == (version is not None):
        raise UsageError("give a VERSION to point the alias at, or --delete (not both)")
    if expect is None:
        expected: Any = ANY
    elif expect.lower() in ("none", "null", "-"):
        expected = None
    elif expect.isdigit():
        expected = int(expect)
    else:
        raise UsageError(f"--expect {expect!r}: give a version number or 'none'")
    _open(ctx, registry_path).alias(name, alias, None if delete else version, expect=expected)
    click.echo(f"removed {name}@{alias}" if delete else f"{name}@{alias} -> {name}@{version}")
    sys.exit(EXIT_OK)


@registry_group.command("verify")
@click.option("--json", "as_json", is_flag=True)
@_registry_option
@click.pass_context
def verify_cmd(ctx, as_json, registry_path):
    """Re-hash every blob and check the index; exit 1 on any mismatch."""
    reg = _open(ctx, registry_path)
    problems = reg.verify()
    if as_json:
        echo_json({"ok": not problems, "problems": problems})
    elif problems:
        for p in problems:
            click.echo(f"{p.kind}: {p.message} [{p.path}]")
        click.echo(f"{len(problems)} problem(s) in the registry at {reg.location}", err=True)
    else:
        n = sum(1 for _ in reg.blobs.iter_blobs())
        click.echo(f"ok: {n} blob(s) verified, index intact ({reg.location})")
    sys.exit(EXIT_FINDINGS if problems else EXIT_OK)


@registry_group.command("gc")
@click.option("--apply", is_flag=True, help="delete (default: dry run, only list)")
@click.option("--grace", type=float, default=3600.0, show_default=True,
              help="spare unreferenced blobs younger than this many seconds (in-flight registrations)")
@click.option("--json", "as_json", is_flag=True)
@_registry_option
@click.pass_context
def gc_cmd(ctx, apply, grace, as_json, registry_path):
    """Remove blobs that no version references (dry run unless --apply)."""
    res = _open(ctx, registry_path).gc(dry_run=not apply, grace_seconds=grace)
    if as_json:
        echo_json(res)
        sys.exit(EXIT_OK)
    verb = "removed" if apply else "would remove"
    for digest in res.removed:
        click.echo(f"{verb} blob {digest}")
    click.echo(f"{verb} {len(res.removed)} blob(s), {res.bytes} bytes, {len(res.temps)} stale temp file(s)"
               + (f"; kept {len(res.kept_recent)} recent unreferenced blob(s)" if res.kept_recent else "")
               + ("" if apply or not (res.removed or res.temps) else " (run with --apply to delete)"))
    sys.exit(EXIT_OK)


@registry_group.command("copy")
@click.argument("ref")
@click.option("--to", "to_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="destination registry directory (index and blobs local)")
@click.option("--to-db", "to_db", metavar="URL", default=None, help="destination index (SQLite path or postgresql://...)")
@click.option("--to-store", "to_store", metavar="URL", default=None, help="destination blob store (folder or s3://...)")
@click.option("--json", "as_json", is_flag=True, help="what was copied, as JSON")
@_registry_option
@click.pass_context
def copy_cmd(ctx, ref, to_dir, to_db, to_store, as_json, registry_path):
    """Copy REF (NAME: every version; NAME@N or NAME@alias: one) with its events and aliases into another registry.

    Idempotent: versions already in the destination (same pair) are matched, not duplicated.
    """
    from ckreg.registry import Registry
    from ckreg.registry.copy import copy_versions, summary_lines

    if to_dir is None and to_db is None and to_store is None:
        raise UsageError("say where to copy to: --to DIR, or --to-db URL and --to-store URL")
    if to_dir is None and (to_db is None or to_store is None):
        raise UsageError("give both --to-db and --to-store (or --to DIR for a local registry)")
    src = _open(ctx, registry_path)
    dest = Registry(to_dir, db=to_db, store=to_store)
    result = copy_versions(src, dest, ref)
    if as_json:
        echo_json(result.model_dump(mode="json"))
    else:
        for line in summary_lines(result):
            click.echo(line)
    sys.exit(EXIT_OK)


@registry_group.command("upgrade")
@_registry_option
@click.pass_context
def upgrade_cmd(ctx, registry_path):
    """Migrate the registry index to this ckreg's schema (a backup is kept)."""
    reg = _open(ctx, registry_path)
    old, new = reg.upgrade()
    click.echo(f"schema already at version {new}; nothing to do" if old == new
               else f"upgraded the registry at {reg.location} from schema {old} to {new}")
    sys.exit(EXIT_OK)


@registry_group.command("events")
@click.option("--name", default=None, help="only this model's events")
@click.option("--kind", default=None, help="only this kind (registered, verified, alias-moved, gc, ...)")
@click.option("--json", "as_json", is_flag=True)
@_registry_option
@click.pass_context
def events_cmd(ctx, name, kind, as_json, registry_path):
    """The append-only event log: who did what, when."""
    events = _open(ctx, registry_path).events(name=name, kind=kind)
    if as_json:
        echo_json(events)
        sys.exit(EXIT_OK)
    for e in events:
        target = "" if e.name is None else (f" {e.name}" + ("" if e.version is None else f"@{e.version}"))
        click.echo(f"{e.id:>5} {e.at} {e.who} {e.kind}{target} {json.dumps(e.data, ensure_ascii=False, sort_keys=True)}")
    sys.exit(EXIT_OK)


@click.command("export")
@click.argument("ref")
@click.option("--to", "to_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="directory to write into (created if needed)")
@click.option("--format", "fmt", type=click.Choice(["safetensors", "onnx", "onnx-int8", "torchscript"]),
              default="safetensors", show_default=True,
              help="safetensors (weights + model.py) or a deployment format verified on --data")
@click.option("--pkl", is_flag=True, help="also write scaler.pkl (sklearn StandardScaler)")
@click.option("--ckpt", is_flag=True, help="also write a Lightning-compatible model.ckpt")
@click.option("--force", is_flag=True, help="overwrite existing files in the target directory")
@deploy_options
@click.option("--json", "as_json", is_flag=True, help="print the written paths (or the deployment record) as JSON")
@_registry_option
@click.pass_context
def export_cmd(ctx, ref, to_dir, fmt, pkl, ckpt, force, data, split, seed, tolerance, threads, latency_samples,
               quant, calibration, as_json, registry_path):
    """Export REF (NAME, NAME@alias, NAME@version) as safetensors + scaler.json + model card,
    or as ONNX / INT8 ONNX / TorchScript verified on --data (--format)."""
    if fmt == "safetensors" and quant:
        raise UsageError("--quant applies to --format onnx-int8", hint="add --format onnx-int8")
    if fmt != "safetensors":
        deploy_export(_open(ctx, registry_path), ref, to_dir, fmt, pkl=pkl, ckpt=ckpt, force=force, data=data,
                      split=split, seed=seed, tolerance=tolerance, threads=threads,
                      latency_samples=latency_samples, quant=quant, calibration=calibration, as_json=as_json)
    paths = _open(ctx, registry_path).export(ref, to_dir, pkl=pkl, ckpt=ckpt, force=force)
    if as_json:
        echo_json([str(p) for p in paths])
    else:
        for p in paths:
            click.echo(str(p))
    sys.exit(EXIT_OK)
