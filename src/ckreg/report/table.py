"""The human view: findings grouped by file, severity coloured, one summary line."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ckreg.findings import EXIT_CRASH, EXIT_FINDINGS, EXIT_NOTHING, EXIT_OK, EXIT_USAGE, Report
from ckreg.report._common import by_path, counts

STYLES = {"error": "bold red", "warning": "yellow", "note": "cyan", "ok": "green"}
EXIT_WORDS = {EXIT_OK: "ok", EXIT_FINDINGS: "findings", EXIT_USAGE: "usage or I/O error",
              EXIT_NOTHING: "nothing checkable found", EXIT_CRASH: "crash"}


def _file_note(report: Report, path: str) -> str:
    """What the file is, for files without findings ("GRU, 2 layers, 74,776 params")."""
    files = report.extra.get("files", {}) if isinstance(report.extra, dict) else {}
    info: dict[str, Any] = files.get(path) or {}
    if not info:
        scalers = report.extra.get("scalers", {}) if isinstance(report.extra, dict) else {}
        s = scalers.get(path)
        if s is not None:
            n = s.get("n_features")
            with_ = ", ".join(s.get("paired_with") or []) or "no checkpoint"
            return f"scaler ({n} features), paired with {with_}" if n is not None else f"scaler, paired with {with_}"
        return "no findings"
    hp = info.get("hyperparameters") or {}
    bits = [str(info.get("family"))]
    if hp.get("num_layers") is not None:
        bits.append(f"{hp['num_layers']} layer{'s' if hp['num_layers'] != 1 else ''}")
    if hp.get("hidden_size") is not None:
        bits.append(f"hidden {hp['hidden_size']}")
    if info.get("params"):
        bits.append(f"{info['params']:,} params")
    if info.get("satisfies"):
        bits.append("satisfies " + ", ".join(info["satisfies"]))
    return ", ".join(bits)


def render(report: Report, *, fail_on: str = "error", color: bool = False, width: int | None = None,
           **_: object) -> str:
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=color, no_color=not color, width=width or 120,
                      highlight=False, soft_wrap=False, color_system="standard" if color else None)
    title = f"ckreg audit {report.root or ''}".rstrip()
    t = Table(title=title, title_justify="left", show_lines=False, expand=False)
    t.add_column("file", overflow="fold", max_width=48)
    t.add_column("severity", no_wrap=True)
    t.add_column("code", no_wrap=True)
    t.add_column("message", overflow="fold")
    first_group = True
    for path, items in by_path(report).items():
        if not first_group:
            t.add_section()
        first_group = False
        if not items:
            t.add_row(path, Text("ok", style=STYLES["ok"]), "", _file_note(report, path))
            continue
        for i, f in enumerate(items):
            t.add_row(path if i == 0 else "", Text(f.severity.value, style=STYLES[f.severity.value]), f.code, f.message)
    for s in report.skipped:
        t.add_section()
        t.add_row(s.path, Text("skipped", style="dim"), "", s.reason)
    for e in report.errors:
        t.add_section()
        t.add_row(e.path or "(run)", Text("ERROR", style="bold red reverse"), "", e.message)
    if t.row_count:
        console.print(t)
    console.print(summary_text(report, fail_on))
    return buf.getvalue()



def summary_text(report: Report, fail_on: str = "error") -> Text:
    """The one summary line ("6 files checked: 7 errors, 2 warnings, 0 notes; exit 1 ...")."""
    c = counts(report)
    code = report.exit_code(fail_on)
    summary = Text()
    summary.append(f"{len(report.checked)} file{'s' if len(report.checked) != 1 else ''} checked: ")
    summary.append(f"{c['error']} error{'s' if c['error'] != 1 else ''}", style=STYLES["error"] if c["error"] else None)
    summary.append(", ")
    summary.append(f"{c['warning']} warning{'s' if c['warning'] != 1 else ''}", style=STYLES["warning"] if c["warning"] else None)
    summary.append(f", {c['note']} note{'s' if c['note'] != 1 else ''}")
    if report.skipped:
        summary.append(f", {len(report.skipped)} skipped")
    if report.errors:
        summary.append(f", {len(report.errors)} I/O error{'s' if len(report.errors) != 1 else ''}", style=STYLES["error"])
    summary.append(f"; exit {code} ({EXIT_WORDS.get(code, '?')}, --fail-on {fail_on})")
    return summary


def summary_line(report: Report, fail_on: str = "error") -> str:
    return summary_text(report, fail_on).plain
