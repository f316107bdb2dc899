"""Reporters: a `Report` in, text out (issue #4). Plug-ins in one dict.

`REPORTERS[name](report, fail_on="error", **options) -> str`. The CLI's
`--format` choice is `tuple(REPORTERS)`, so adding a reporter here wires it
(tests/report/test_wiring.py checks both directions). rich is allowed here
(tests/test_layering.py); the audit core never renders.
"""

from __future__ import annotations

from typing import Any, Callable

from ckreg.findings import Report
from ckreg.report import json_report, junit, sarif, table

Reporter = Callable[..., str]

REPORTERS: dict[str, Reporter] = {
    "table": table.render,
    "json": json_report.render,
    "sarif": sarif.render,
    "junit": junit.render,
}

# Formats meant for machines: keep stdout clean (no progress bar, no colour) when they go there.
MACHINE_FORMATS = frozenset({"json", "sarif", "junit"})


def render(report: Report, fmt: str, **options: Any) -> str:
    """Render `report` in format `fmt` (a key of REPORTERS)."""
    try:
        reporter = REPORTERS[fmt]
    except KeyError:
        raise ValueError(f"unknown report format {fmt!r}; known: {', '.join(REPORTERS)}") from None
    return reporter(report, **options)


__all__ = ["REPORTERS", "MACHINE_FORMATS", "render", "Reporter"]
