"""Reporters: a `Report` in, text out (issue #4). Plug-ins in one dict.

`REPORTERS[name](report, fail_on="error", **options) -> str`. The CLI's
`--format` choice is `tuple(REPORTERS)`, so adding a reporter here wires it
(tests/report/test_wiring.py checks both directions). rich is allowed here
(tests/test_layering.py); the audit core never renders.
"""

from __future__ import annotations

from typing import Any, Callable

from ckreg.findings import KeptReport, Report

Reporter = Callable[..., str]


def _reporter(module: str) -> Reporter:
    """`ckreg.report.<module>.render`, imported when first called (a JSON run never loads rich)."""

    def render(report: Report, **options: Any) -> str:
        from importlib import import_module

        return import_module(f"ckreg.report.{module}").render(report, **options)

    render.__qualname__ = f"{module}.render"
    return render


REPORTERS: dict[str, Reporter] = {
    "table": _reporter("table"),
    "json": _reporter("json_report"),
    "sarif": _reporter("sarif"),
    "junit": _reporter("junit"),
}

# Formats that write a `KeptReport` (a reused audit's JSON, kept as text) without rebuilding the
# Report; any other format gets the Report, validated from that text.
KEPT_FORMATS = frozenset({"json"})

# Formats meant for machines: keep stdout clean (no progress bar, no colour) when they go there.
MACHINE_FORMATS = frozenset({"json", "sarif", "junit"})


def render(report: Report | KeptReport, fmt: str, **options: Any) -> str:
    """Render `report` in format `fmt` (a key of REPORTERS)."""
    try:
        reporter = REPORTERS[fmt]
    except KeyError:
        raise ValueError(f"unknown report format {fmt!r}; known: {', '.join(REPORTERS)}") from None
    if isinstance(report, KeptReport) and fmt not in KEPT_FORMATS:
        report = report.report()
    return reporter(report, **options)


__all__ = ["REPORTERS", "MACHINE_FORMATS", "KEPT_FORMATS", "render", "Reporter"]
