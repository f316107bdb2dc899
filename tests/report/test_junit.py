"""JUnit XML: one testsuite, a testcase per checked file, failures at or above --fail-on."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from ckreg.report.junit import render


def parse(text: str) -> ET.Element:
    root = ET.fromstring(text.encode("utf-8"))
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    return suite


def cases(suite: ET.Element) -> dict[str, ET.Element]:
    return {c.get("name"): c for c in suite.findall("testcase")}


def test_testcase_per_checked_file(report):
    suite = parse(render(report, fail_on="error"))
    got = cases(suite)
    for path in report.checked:
        assert path in got and got[path].get("file") == path
    assert got["ckpts/GRU_best.ckpt"].find("failure").get("type") == "layers-mismatch"
    assert got["ckpts/ok.ckpt"].find("failure") is None
    # a warning is not a failure at --fail-on error; it is listed in system-out
    dup = got["ckpts/GRU best v1.ckpt"]
    assert dup.find("failure") is None and "duplicate-weights" in dup.find("system-out").text
    # each missing declaration is its own testcase
    assert got["manifests/x.yaml#StackedGRU"].find("failure").get("type") == "model-missing"
    assert got["link_out"].find("skipped") is not None
    assert int(suite.get("tests")) == len(suite.findall("testcase"))
    assert int(suite.get("failures")) == sum(c.find("failure") is not None for c in suite.findall("testcase")) == 3


def test_fail_on_changes_failures(report):
    warn = parse(render(report, fail_on="warning"))
    assert cases(warn)["ckpts/GRU best v1.ckpt"].find("failure").get("type") == "duplicate-weights"
    assert int(warn.get("failures")) == 5
    never = parse(render(report, fail_on="never"))
    assert int(never.get("failures")) == 0 and not never.findall("testcase/failure")


def test_errors_and_nothing_checkable(error_report):
    suite = parse(render(error_report))
    assert suite.get("errors") == "1"
    assert suite.find("testcase/error").get("message") == "no such file or folder"
