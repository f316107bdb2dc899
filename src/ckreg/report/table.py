"""The human view, made for a terminal of any width (80 columns included).

Layout, top to bottom:
  1. the title (what was audited, against which manifest);
  2. a per-model summary: one row per checkpoint (family, size, scaler, verdict) and,
     with a manifest, one row per declared model (satisfied by which file, or missing);
  3. the findings, grouped by file: the path on its own line, then `severity code`
     and the message wrapped under it (paths break after a `/`, never inside a word);
  4. skipped files and I/O errors, each with its reason;
  5. for a remote archive (s3://...), one line: the bytes transferred;
  6. the one summary line (also what `--output` and machine formats print on stderr).
"""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ckreg.findings import Report, Severity
from ckreg.report._common import EXIT_WORDS, by_path, summary_line, summary_parts  # noqa: F401 (re-exported)
from ckreg.report.wrapping import fold_token, wrap

STYLES = {"error": "bold red", "warning": "yellow", "note": "cyan", "ok": "green"}
DEFAULT_WIDTH = 100
MIN_WIDTH = 40
INDENT = 4          # a finding's message sits under its `severity code` line


def _extra(report: Report, key: str) -> dict[str, Any]:
    value = report.extra.get(key) if isinstance(report.extra, dict) else None
    return value if isinstance(value, dict) else {}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _verdict(items: list) -> Text:
    """"ok", or the counts by severity ("2 errors, 1 warning"), coloured by the worst."""
    if not items:
        return Text("ok", style=STYLES["ok"])
    n = {s.value: 0 for s in Severity}
    for f in items:
        n[f.severity.value] += 1
    words = [_plural(n[s], s) for s in ("error", "warning", "note") if n[s]]
    worst = next(s for s in ("error", "warning", "note") if n[s])
    return Text(", ".join(words), style=STYLES[worst])


def _model_lines(info: dict[str, Any]) -> list[str]:
    """What the weights are: the family, then its size ("2 layers, hidden 64")."""
    if not info:
        return ["-"]
    hp = info.get("hyperparameters") or {}
    bits = []
    if hp.get("num_layers") is not None:
        bits.append(_plural(hp["num_layers"], "layer"))
    if hp.get("hidden_size") is not None:
        bits.append(f"hidden {hp['hidden_size']}")
    family = str(info.get("family") or "unknown")
    return [family, ", ".join(bits)] if bits else [family]


def _model_text(lines: list[str], width: int) -> str:
    """One line ("GRU, 2 layers, hidden 64") where it fits, else the family above its size."""
    one = ", ".join(lines)
    if len(one) <= width:
        return one
    return "\n".join(piece for line in lines for piece in wrap(line, width))


def _folded(text: str, width: int) -> str:
    return "\n".join(fold_token(text, width))


def _fit(values: list[str], cap: int) -> int:
    return min(cap, max([len(v) for v in values] + [1]))


def _checkpoint_table(report: Report, groups: dict[str, list], width: int) -> Table | None:
    files = _extra(report, "files")
    scalers = _extra(report, "scalers")
    rows = [p for p in report.checked if p not in scalers]
    if not rows:
        return None
    model_lines = {p: _model_lines(files.get(p) or {}) for p in rows}
    models = {p: ", ".join(lines) for p, lines in model_lines.items()}
    params = {p: (f"{files[p]['params']:,}" if (files.get(p) or {}).get("params") else "-") for p in rows}
    verdicts = {p: _verdict(groups.get(p, [])) for p in rows}
    w_params = _fit(list(params.values()) + ["params"], 12)
    w_verdict = _fit([v.plain for v in verdicts.values()] + ["result"], 28)
    room = max(30, width - w_params - w_verdict - 4 * 2)     # file + model, after each column's right padding
    nat_file, nat_model = _fit(rows + ["file"], 10_000), _fit(list(models.values()) + ["model"], 10_000)
    if nat_file + nat_model <= room:
        w_file, w_model = nat_file, nat_model
    else:   # the path is what people look for: it gets the larger share
        widest_part = _fit([part for lines in model_lines.values() for part in lines], 24)
        w_model = min(nat_model, max(widest_part, room - nat_file))
        w_file = max(16, room - w_model)
        w_model = max(8, room - w_file)
    t = Table(title="checkpoints", title_justify="left", title_style="bold", box=None, padding=(0, 2, 0, 0),
              show_edge=False, expand=False, header_style="bold")
    t.add_column("file", no_wrap=True, max_width=w_file)
    t.add_column("model", overflow="fold", max_width=w_model)
    t.add_column("params", justify="right", no_wrap=True)
    t.add_column("result", no_wrap=True)
    for p in rows:
        t.add_row(_folded(p, w_file), _model_text(model_lines[p], w_model), params[p], verdicts[p])
    return t


def _declared_table(report: Report, width: int) -> Table | None:
    decls = _extra(report, "declarations")
    if not decls:
        return None
    w_name = _fit(list(decls) + ["declared model"], 28)
    w_status = len("satisfied")
    w_where = max(16, width - w_name - w_status - 3 * 2)
    title = "declared models"
    name = (_extra(report, "manifest") or {}).get("name")
    if name:
        title += f" ({name})"
    t = Table(title=title, title_justify="left", title_style="bold", box=None, padding=(0, 2, 0, 0),
              show_edge=False, expand=False, header_style="bold")
    t.add_column("declared model", no_wrap=True, max_width=w_name)
    t.add_column("status", no_wrap=True)
    t.add_column("checkpoint", no_wrap=True, max_width=w_where)
    for model, entry in decls.items():
        entry = entry if isinstance(entry, dict) else {}
        status = str(entry.get("status") or "?")
        found = entry.get("files") or []
        if status == "satisfied":
            where = ", ".join(found) + (" (by content)" if entry.get("by") == "content" else "")
            style = STYLES["ok"]
        else:
            looked = list((entry.get("looked_at") or {}))
            if looked:
                where = ", ".join(looked) + (" differs" if len(looked) == 1 else " differ") + " (see findings)"
            else:
                where = f"nothing at {entry['path']}" if entry.get("path") else "no path declared"
            style = STYLES["error"]
        t.add_row(_folded(model, w_name), Text(status, style=style), "\n".join(wrap(where, w_where)))
    return t


def _finding_lines(console: Console, head: Text, message: str, width: int) -> None:
    console.print(head)
    for line in wrap(message, width - INDENT):
        console.print(Text(" " * INDENT + line))


def render(report: Report, *, fail_on: str = "error", color: bool = False, width: int | None = None,
           **_: object) -> str:
    width = max(MIN_WIDTH, int(width or DEFAULT_WIDTH))
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=color, no_color=not color, width=width,
                      highlight=False, soft_wrap=True, color_system="standard" if color else None)
    title = "ckreg audit" + (f" {report.root}" if report.root else "")
    manifest = (_extra(report, "manifest") or {}).get("path")
    if manifest:
        title += f" -m {manifest}"
    shard, merged = _extra(report, "shard"), _extra(report, "shards")
    if shard:
        title += f" --shard {shard.get('index')}/{shard.get('count')}"
    for line in wrap(title, width):
        console.print(Text(line, style="bold"))
    if shard:   # a shard's report holds what each file says; the whole-archive checks come with the merge
        for line in wrap("one shard: missing models, duplicates and scaler pairing are checked by "
                         "`ckreg report merge` over all shards", width):
            console.print(Text(line, style="dim"))
    elif merged:
        for line in wrap(f"merged from {merged.get('count')} shard reports", width):
            console.print(Text(line, style="dim"))

    groups = by_path(report)
    for table in (_checkpoint_table(report, groups, width), _declared_table(report, width)):
        if table is not None:
            console.print()
            console.print(table)

    with_findings = [(p, items) for p, items in groups.items() if items]
    if with_findings:
        console.print()
        console.print(Text("findings", style="bold"))
    for path, items in with_findings:
        for line in fold_token(path, width):
            console.print(Text(line, style="bold"))
        for f in items:
            head = Text("  ")
            head.append(f.severity.value, style=STYLES[f.severity.value])
            head.append(f" {f.code}")
            _finding_lines(console, head, f.message, width)
    if report.skipped:
        console.print()
        console.print(Text(f"skipped ({len(report.skipped)})", style="bold"))
        for s in report.skipped:
            for line in fold_token(s.path, width):
                console.print(Text(line))
            for line in wrap(s.reason, width - INDENT):
                console.print(Text(" " * INDENT + line, style="dim"))
    if report.errors:
        console.print()
        console.print(Text(f"I/O errors ({len(report.errors)})", style="bold red"))
        for e in report.errors:
            for line in fold_token(e.path or "(run)", width):
                console.print(Text(line))
            for line in wrap(e.message, width - INDENT):
                console.print(Text(" " * INDENT + line, style=STYLES["error"]))
    transfer = _extra(report, "transfer")
    if transfer:
        console.print()
        for line in wrap(transfer_line(transfer), width):
            console.print(Text(line, style="dim"))
    console.print()
    for line in wrap(summary_text(report, fail_on).plain, width):
        console.print(_restyle(line, report, fail_on))
    return "".join(line.rstrip(" ") + "\n" for line in buf.getvalue().splitlines())


def _bytes(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def transfer_line(transfer: dict[str, Any]) -> str:
    """"remote: 92.0 KiB transferred (14 requests) for 6 files; 2.0 GiB stored"."""
    files = transfer.get("files") or {}
    return (f"remote: {_bytes(int(transfer.get('total') or 0))} transferred ({transfer.get('requests', 0)} "
            f"requests) for {len(files)} file{'s' if len(files) != 1 else ''}; "
            f"{_bytes(int(transfer.get('stored') or 0))} stored")


def _restyle(line: str, report: Report, fail_on: str) -> Text:
    """The summary line with its counts coloured (wrapped lines keep their colour where they can)."""
    full = summary_text(report, fail_on)
    start = full.plain.find(line)
    return full[start:start + len(line)] if start >= 0 else Text(line)


def summary_text(report: Report, fail_on: str = "error") -> Text:
    """The one summary line ("6 files checked: 7 errors, 2 warnings, 0 notes; exit 1 ..."), coloured."""
    summary = Text()
    for text, style in summary_parts(report, fail_on):
        summary.append(text, style=STYLES[style] if style else None)
    return summary
