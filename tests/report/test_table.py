"""The human view: per-model summary first, findings grouped by file, fits 80 columns, one summary line."""

from __future__ import annotations

import re

import pytest

from ckreg.findings import Finding, Report
from ckreg.report.table import render
from ckreg.report.wrapping import fold_token, wrap

DEEP = "archive/checkpoints_backup/checkpoints_backup/GRU_best-v1.ckpt"
DEEPER = "archive/checkpoints_backup/checkpoints_backup/old/runs/2024-05-01/MS3DStackedGRU_best.ckpt"


def long_report() -> Report:
    """Paths longer than a column, messages that are mostly paths (the real archive's shape)."""
    findings = [
        Finding.make("duplicate-weights", f"holds the same weights as {DEEPER} (different bytes, the metadata "
                     "differs; weights sha256 39a448ba813b)", path=DEEP, expected=DEEPER, actual="ab" * 32),
        Finding.make("scaler-ambiguous", f"one scaler is paired with 2 checkpoints ({DEEP}, {DEEPER}; paired by "
                     "folder); a scaler belongs to one training run", path="archive/scaler.pkl"),
        Finding.make("shape-drift", "declared as 'MS3DStackedGRU': 1 tensor(s) differ from the declared "
                     "architecture: tower2.0.weight is [32, 1, 5, 5, 5] in the file, [32, 1, 3, 5, 3] declared",
                     path=DEEPER),
    ]
    files = {DEEP: {"family": "GRU", "hyperparameters": {"num_layers": 2, "hidden_size": 64}, "params": 74776},
             DEEPER: {"family": "MS3DStackedGRU", "hyperparameters": {"num_layers": 2, "hidden_size": 64},
                      "params": 167032}}
    return Report(command="audit", root="/data/klp", checked=[DEEP, DEEPER, "archive/scaler.pkl"],
                  findings=findings,
                  extra={"files": files, "scalers": {"archive/scaler.pkl": {"n_features": 8, "paired_with": []}},
                         "declarations": {"MS3DStackedGRU": {"status": "missing", "path": DEEPER,
                                                             "looked_at": {DEEPER: ["drift"]}},
                                          "GRU": {"status": "satisfied", "by": "path", "files": [DEEP]}}})


def words_intact(text: str, message: str, width: int) -> list[str]:
    """The words of `message` short enough for a line that no single output line holds whole (a mid-word wrap)."""
    lines = text.splitlines()
    return [w for w in message.split() if len(w) <= width - 4 and not any(w in line for line in lines)]


def test_summary_first_then_findings_then_totals(report):
    text = render(report, width=200)
    lines = text.splitlines()
    assert lines[0].startswith("ckreg audit ") and "-m manifests/x.yaml" in lines[0]
    assert text.index("checkpoints") < text.index("findings")
    ok_row = next(line for line in lines if line.startswith("ckpts/ok.ckpt"))
    assert "MS3DGRU" in ok_row and "58,840" in ok_row and ok_row.rstrip().endswith("ok")
    gru_row = next(line for line in lines if line.startswith("ckpts/GRU_best.ckpt"))
    assert gru_row.rstrip().endswith("1 error")
    # findings: the file once, then each finding under it
    at = lines.index("ckpts/GRU_best.ckpt", lines.index("findings"))
    assert lines[at + 1].split() == ["error", "layers-mismatch"]
    assert "2 GRU layers where 1 is declared" in lines[at + 2]
    assert "\x1b[" not in text
    assert lines[-1].startswith("5 files checked: 3 errors, 2 warnings, 1 note, 1 skipped; exit 1")


def test_declared_models_table_says_missing_and_satisfied():
    text = render(long_report(), width=100)
    rows = text[text.index("declared models"):text.index("\nfindings\n")].splitlines()
    assert any(r.startswith("GRU ") and "satisfied" in r for r in rows)
    assert any(r.startswith("MS3DStackedGRU") and "missing" in r for r in rows)


@pytest.mark.parametrize("width", [80, 60])
def test_fits_the_width_without_mid_word_wraps(width):
    rep = long_report()
    text = render(rep, width=width)
    too_long = [line for line in text.splitlines() if len(line) > width]
    assert not too_long, too_long
    for f in rep.findings:
        assert not words_intact(text, f.message, width), words_intact(text, f.message, width)
    if width >= 80:   # a path too long for a line breaks after a '/', never inside a folder or file name
        for segment in set(DEEPER.split("/")) | set(DEEP.split("/")):
            assert any(re.search(rf"(^|[\s/(]){re.escape(segment)}($|[/\s,;])", line)
                       for line in text.splitlines()), segment


def test_colour_on_request(report):
    assert "\x1b[" in render(report, color=True)


def test_error_report_says_why(error_report):
    text = render(error_report, width=200)
    assert "no such file or folder" in text and "exit 2" in text.splitlines()[-1]


def test_wrap_breaks_at_spaces_and_after_slashes():
    assert wrap("aa bb cc", 5) == ["aa bb", "cc"]
    assert fold_token("abc/defgh/ij", 6) == ["abc/", "defgh/", "ij"]
    assert fold_token("abcdefghij", 4) == ["abcd", "efgh", "ij"]          # no separator: a hard cut is all there is
    assert all(len(x) <= 20 for x in wrap(f"see {DEEP}, then {DEEPER}", 20))
    assert "".join(wrap(DEEP, 20)) == DEEP
