"""Helpers every reporter shares: counting, ordering and locating findings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ckreg.findings import EXIT_CRASH, EXIT_FINDINGS, EXIT_NOTHING, EXIT_OK, EXIT_USAGE, FAIL_ON, Finding, KeptReport, Report, Severity

EXIT_WORDS = {EXIT_OK: "ok", EXIT_FINDINGS: "findings", EXIT_USAGE: "usage or I/O error",
              EXIT_NOTHING: "nothing checkable found", EXIT_CRASH: "crash"}


def counts(report: Report | KeptReport) -> dict[str, int]:
    """Findings by severity ({"error": n, "warning": n, "note": n})."""
    return dict(report.tally().counts)


def summary_parts(report: Report | KeptReport, fail_on: str = "error") -> list[tuple[str, str | None]]:
    """The one summary line ("6 files checked: 7 errors, 2 warnings, 0 notes; exit 1 ..."), as
    (text, severity it is styled as or None) pieces: plain here, coloured by the table reporter."""
    tally = report.tally()
    c = tally.counts
    code = tally.exit_code(fail_on)
    n = tally.checked
    parts: list[tuple[str, str | None]] = [
        (f"{n} file{'s' if n != 1 else ''} checked: ", None),
        (f"{c['error']} error{'s' if c['error'] != 1 else ''}", "error" if c["error"] else None),
        (", ", None),
        (f"{c['warning']} warning{'s' if c['warning'] != 1 else ''}", "warning" if c["warning"] else None),
        (f", {c['note']} note{'s' if c['note'] != 1 else ''}", None)]
    if tally.skipped:
        parts.append((f", {tally.skipped} skipped", None))
    if tally.errors:
        parts.append((f", {tally.errors} I/O error{'s' if tally.errors != 1 else ''}", "error"))
    parts.append((f"; exit {code} ({EXIT_WORDS.get(code, '?')}, --fail-on {fail_on})", None))
    return parts


def summary_line(report: Report | KeptReport, fail_on: str = "error") -> str:
    """The summary line as plain text (machine formats print it on stderr; no rich needed)."""
    return "".join(text for text, _ in summary_parts(report, fail_on))


def failing(finding: Finding, fail_on: str) -> bool:
    """Does this finding fail the run at this threshold (`--fail-on`)?"""
    if fail_on not in FAIL_ON:
        raise ValueError(f"fail_on must be one of {FAIL_ON}")
    return fail_on != "never" and finding.severity.rank >= Severity(fail_on).rank


def manifest_path(report: Report) -> str | None:
    m = report.extra.get("manifest") if isinstance(report.extra, dict) else None
    return m.get("path") if isinstance(m, dict) else None


def absolute(report: Report, path: str) -> Path:
    """A finding's path on disk: files are relative to the audited root; the manifest is as given."""
    p = Path(path)
    if p.is_absolute():
        return p
    if path == manifest_path(report) or not report.root:
        return p.absolute()
    return Path(report.root) / p


def line_of(finding: Finding) -> int | None:
    """A line inside a text artifact (manifest declarations), else None."""
    exp = finding.expected
    if isinstance(exp, dict) and isinstance(exp.get("line"), int) and exp["line"] > 0:
        return exp["line"]
    return None


def by_path(report: Report) -> dict[str, list[Finding]]:
    """Findings grouped by path, checked files first (in order), then the other paths."""
    groups: dict[str, list[Finding]] = {p: [] for p in report.checked}
    for f in report.findings:
        groups.setdefault(f.path or "(run)", []).append(f)
    for items in groups.values():
        items.sort(key=lambda f: (-f.severity.rank, f.code))
    return groups


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return str(value)
