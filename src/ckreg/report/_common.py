"""Helpers every reporter shares: counting, ordering and locating findings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ckreg.findings import FAIL_ON, Finding, Report, Severity


def counts(report: Report) -> dict[str, int]:
    out = {s.value: 0 for s in Severity}
    for f in report.findings:
        out[f.severity.value] += 1
    return out


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
