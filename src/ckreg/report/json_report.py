"""JSON: the `Report` itself (reloadable with `Report.model_validate_json`) plus a summary."""

from __future__ import annotations

import json

from ckreg.findings import Report
from ckreg.report._common import counts


def render(report: Report, *, fail_on: str = "error", **_: object) -> str:
    data = report.model_dump(mode="json")
    data["summary"] = {
        "checked": len(report.checked),
        "findings": counts(report),
        "skipped": len(report.skipped),
        "errors": len(report.errors),
        "fail_on": fail_on,
        "exit_code": report.exit_code(fail_on),
    }
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
