"""README.md's and docs/audit.md's finding-codes tables are CODES (regenerate: python -m ckreg.report.docs)."""

from __future__ import annotations

from pathlib import Path

from ckreg.findings import CODES
from ckreg.report.docs import BEGIN, END, block, codes_table

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("doc", ["README.md", "docs/audit.md"])
def test_readme_table_matches_codes(doc):
    text = (ROOT / doc).read_text(encoding="utf-8")
    start, end = text.index(BEGIN), text.index(END) + len(END)
    assert text[start:end] == block(), f"{doc} is stale: paste `python -m ckreg.report.docs` between the markers"


def test_table_lists_every_code_once():
    rows = [r for r in codes_table().splitlines()[2:]]
    assert [r.split("`")[1] for r in rows] == list(CODES)
