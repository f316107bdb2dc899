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
