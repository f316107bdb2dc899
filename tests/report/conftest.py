"""Synthetic reports for the reporters (no torch: reporters only see `Report` objects)."""

from __future__ import annotations

import pytest

from ckreg.findings import ErrorEntry, Finding, Report, Skipped


def make_report(root: str, manifest: str | None = "manifests/x.yaml") -> Report:
    findings = [
        Finding.make("layers-mismatch", "declared as 'GRU': the weights have 2 GRU layers where 1 is declared",
                     path="ckpts/GRU_best.ckpt", expected=1, actual=2),
        Finding.make("duplicate-weights", "holds the same weights as ckpts/GRU_best.ckpt",
                     path="ckpts/GRU best v1.ckpt", expected="ckpts/GRU_best.ckpt", actual="ab" * 32),
        Finding.make("family-unknown", "no known family matches", path="misc/blob.pt"),
        Finding.make("scaler-ambiguous", "one scaler is paired with 2 checkpoints", path="ckpts/scaler.pkl",
                     expected=1, actual=["ckpts/GRU_best.ckpt", "ckpts/GRU best v1.ckpt"]),
    ]
    if manifest:
        findings.append(Finding.make("model-missing", "no checkpoint satisfies 'StackedGRU'", path=manifest,
                                     expected={"model": "StackedGRU", "family": "StackedGRU", "line": 12},
                                     actual={"looked_at": {}}))
        findings.append(Finding.make("model-missing", "no checkpoint satisfies 'MSCSGRU'", path=manifest,
                                     expected={"model": "MSCSGRU", "family": "MSCSGRU", "line": 20},
                                     actual={"looked_at": {}}))
    return Report(
        command="audit", version="0.1.0", root=root,
        checked=["ckpts/GRU best v1.ckpt", "ckpts/GRU_best.ckpt", "ckpts/ok.ckpt", "misc/blob.pt", "ckpts/scaler.pkl"],
        findings=findings,
        skipped=[Skipped(path="link_out", reason="symlinked folder not followed (points outside the tree: /x)")],
        extra={"manifest": {"path": manifest} if manifest else None,
               "files": {"ckpts/ok.ckpt": {"family": "MS3DGRU", "hyperparameters": {"num_layers": 1}, "params": 58840,
                                           "satisfies": ["MS3DGRU"]}},
               "scalers": {"ckpts/scaler.pkl": {"n_features": 8, "paired_with": ["a", "b"]}}},
    )


@pytest.fixture
def report_factory():
    return make_report


@pytest.fixture
def report(tmp_path, monkeypatch) -> Report:
    """A report whose audited root lies under the working directory (as in CI)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "archive").mkdir()
    return make_report(str(tmp_path / "archive"))


@pytest.fixture
def error_report(tmp_path) -> Report:
    return Report(command="audit", root=str(tmp_path / "typo"),
                  errors=[ErrorEntry(path=str(tmp_path / "typo"), message="no such file or folder")])
