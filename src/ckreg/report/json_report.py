"""JSON: the `Report` itself (reloadable with `Report.model_validate_json`) plus a summary."""

from __future__ import annotations

import json

import pydantic_core

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
    # pydantic's serializer (Rust) writes what json.dumps(indent=2, ensure_ascii=False) writes, ~5x
    # faster on an archive's report; the one difference is the spelling of tiny floats (0.00001
    # for 1e-05), the same number to every JSON reader. A name that is not UTF-8 (a lone surrogate
    # from os.walk) is beyond it: json.dumps then, as before.
    try:
        return pydantic_core.to_json(data, indent=2).decode("utf-8") + "\n"
    except pydantic_core.PydanticSerializationError:
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
