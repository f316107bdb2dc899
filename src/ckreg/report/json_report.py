"""JSON: the `Report` itself (reloadable with `Report.model_validate_json`) plus a summary."""

from __future__ import annotations

import json
from typing import Any

import pydantic_core

from ckreg.findings import KeptReport, Report


def render(report: Report | KeptReport, *, fail_on: str = "error", **_: object) -> str:
    tally = report.tally()
    summary = {
        "checked": tally.checked,
        "findings": dict(tally.counts),
        "skipped": tally.skipped,
        "errors": tally.errors,
        "fail_on": fail_on,
        "exit_code": tally.exit_code(fail_on),
    }
    # pydantic's serializer (Rust) writes what json.dumps(indent=2, ensure_ascii=False) writes of
    # the report's JSON form, several times faster on an archive's report; the one difference is
    # the spelling of tiny floats (0.00001 for 1e-05), the same number to every JSON reader. The
    # summary goes in as the last key, indented as a member of the top object.
    try:
        text = _kept_text(report) if isinstance(report, KeptReport) else report.model_dump_json(indent=2)
        tail = pydantic_core.to_json(summary, indent=2).decode("utf-8").replace("\n", "\n  ")
    except pydantic_core.PydanticSerializationError:   # a name that is not UTF-8 (a lone surrogate)
        data = (report.report() if isinstance(report, KeptReport) else report).model_dump(mode="json")
        data["summary"] = summary
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    assert text.endswith("\n}")
    return text[:-2] + ',\n  "summary": ' + tail + "\n}\n"


def _kept_text(kept: KeptReport) -> str:
    """The kept text with this run's entries appended to `extra` (the last member of a report):
    what `model_dump_json(indent=2)` writes of the report with them, without rebuilding it."""
    if not kept.run:
        return kept.text
    items = _members(kept.run, depth=2)
    empty = '\n  "extra": {}\n}'
    if kept.text.endswith(empty):
        return kept.text[:-len(empty)] + '\n  "extra": {\n' + items + "\n  }\n}"
    close = "\n  }\n}"
    if not kept.text.endswith(close):
        raise ValueError("a kept report ends with its extra")
    return kept.text[:-len(close)] + ",\n" + items + close


def _members(obj: dict[str, Any], depth: int) -> str:
    """The members of `obj` as an indent-2 writer puts them inside an object nested `depth - 1` deep."""
    inner = pydantic_core.to_json(obj, indent=2).decode("utf-8")[2:-2]   # drop "{\n" and "\n}"
    pad = "  " * (depth - 1)
    return pad + inner.replace("\n", "\n" + pad)
