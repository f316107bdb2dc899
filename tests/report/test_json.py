"""JSON: the Report, reloadable through the library, with a summary."""

from __future__ import annotations

import json

from ckreg.findings import Report
from ckreg.report.json_report import render


def test_roundtrip_and_summary(report):
    text = render(report, fail_on="never")
    again = Report.model_validate_json(text)
    assert again.findings == report.findings and again.checked == report.checked
    summary = json.loads(text)["summary"]
    assert summary == {"checked": 5, "findings": {"error": 3, "warning": 2, "note": 1}, "skipped": 1,
                       "errors": 0, "fail_on": "never", "exit_code": 0}


def test_fast_rendering_writes_what_json_dumps_writes(report):
    """The serializer is pydantic's (fast); the text is json.dumps(indent=2)'s, a non-UTF-8 name included."""
    odd = report.model_copy(update={"checked": [*report.checked, "caf\u00e9/\u2028.pt", "bad-\udcff.pt"]})
    for rep in (report, odd):
        text = render(rep, fail_on="never")
        data = rep.model_dump(mode="json")
        data["summary"] = json.loads(text)["summary"]
        assert text == json.dumps(data, indent=2, ensure_ascii=False) + "\n"
