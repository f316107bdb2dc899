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


# --------------------------------------------------------------------------- a kept report (reused audit)


def _kept(report, run):
    """`report` with `run` as its last extra entries, and the KeptReport a cache would give back."""
    from ckreg.findings import KeptReport

    full = report.model_copy(update={"extra": {**{k: v for k, v in report.extra.items() if k not in run}, **run}},
                             deep=True)
    text, head = KeptReport.keep(full, tuple(run), heavy=("files",))
    kept = KeptReport.load(text, head)
    return full, kept


def test_a_kept_report_is_written_as_the_report_itself(report):
    """The JSON of a reused report, spliced from its kept text, is byte for byte the Report's JSON."""
    runs = [{"jobs": 2, "cache": {"hits": 5, "path": "c\u00e9.sqlite", "nested": [1, {"a": None}]}}, {"jobs": 1}, {}]
    for base in (report, report.model_copy(update={"extra": {}})):
        for run in runs:
            full, kept = _kept(base, run)
            for fail_on in ("error", "warning", "never"):
                assert render(kept, fail_on=fail_on) == render(full, fail_on=fail_on)
                assert render(kept, fail_on=fail_on) == render(kept.report(), fail_on=fail_on)


def test_a_kept_report_takes_this_runs_figures(report):
    full, kept = _kept(report, {"jobs": 8, "cache": {"hits": 0}})
    kept.set_run({"jobs": 2, "cache": {"hits": 5, "report_reused": True}})
    data = json.loads(render(kept))
    assert data["extra"]["jobs"] == 2 and data["extra"]["cache"] == {"hits": 5, "report_reused": True}
    assert list(data["extra"])[-2:] == ["jobs", "cache"]
    assert kept.report().extra["cache"]["report_reused"] is True
    assert kept.extra["jobs"] == 2 and "files" not in kept.extra, "the head leaves the heavy entries out"


def test_a_kept_report_counts_and_exits_like_the_report(report, error_report):
    for rep in (report, error_report, Report(), Report(extra={"shard": {"index": 1}})):
        full, kept = _kept(rep, {"jobs": 1})
        assert kept.tally() == full.tally()
        for fail_on in ("error", "warning", "never"):
            assert kept.exit_code(fail_on) == full.exit_code(fail_on)
        assert kept.errors == full.errors


def test_a_kept_head_that_is_not_one_is_refused(report):
    import pytest

    from ckreg.findings import KeptReport

    text, head = KeptReport.keep(report, ("jobs",))
    for bad_head in ("", "[]", '{"head": {}}', json.dumps({**json.loads(head), "tally": {"checked": -1}})):
        with pytest.raises(ValueError):
            KeptReport.load(text, bad_head)
    with pytest.raises(ValueError):
        KeptReport.load("not json", head)
