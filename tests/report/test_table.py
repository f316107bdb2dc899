"""The rich table: grouped by file, severity coloured only on request, one summary line."""

from __future__ import annotations

from ckreg.report.table import render


def test_grouped_by_file_with_summary(report):
    text = render(report, width=200)
    lines = text.splitlines()
    assert any("ckpts/GRU_best.ckpt" in line and "layers-mismatch" in line for line in lines)
    assert any("ckpts/ok.ckpt" in line and "satisfies MS3DGRU" in line for line in lines)
    assert "\x1b[" not in text
    assert lines[-1].startswith("5 files checked: 3 errors, 2 warnings, 1 note, 1 skipped; exit 1")


def test_colour_on_request(report):
    assert "\x1b[" in render(report, color=True)


def test_error_report_says_why(error_report):
    text = render(error_report, width=200)
    assert "no such file or folder" in text and "exit 2" in text.splitlines()[-1]
