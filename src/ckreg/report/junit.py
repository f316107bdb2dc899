"""JUnit XML: one testsuite, a testcase per checked file (issue #4).

Findings at or above `--fail-on` are the testcase's failure (one `<failure>`
per testcase, every finding listed in its text, which is what Jenkins, GitLab
and GitHub test reporters render); findings below it go to `system-out`.
Findings about other paths (a manifest declaration without a checkpoint) get
their own testcase; I/O errors are `<error>`s, skipped paths `<skipped>`.
"""

from __future__ import annotations

import datetime as _dt
import xml.etree.ElementTree as ET

from ckreg.findings import Finding, Report
from ckreg.report._common import by_path, counts, failing

SUITE = "ckreg audit"


def _lines(items: list[Finding]) -> str:
    return "\n".join(f"[{f.severity.value}] {f.code}: {f.message}" for f in items)


def _case(suite: ET.Element, name: str, file: str | None, items: list[Finding], fail_on: str) -> bool:
    case = ET.SubElement(suite, "testcase", {"classname": "ckreg.audit", "name": name, "time": "0"})
    if file:
        case.set("file", file)
    bad = [f for f in items if failing(f, fail_on)]
    rest = [f for f in items if not failing(f, fail_on)]
    if bad:
        head = bad[0]
        more = f" (+{len(bad) - 1} more)" if len(bad) > 1 else ""
        fail = ET.SubElement(case, "failure", {"type": head.code, "message": f"{head.code}: {head.message}{more}"})
        fail.text = _lines(bad)
    if rest:
        ET.SubElement(case, "system-out").text = _lines(rest)
    return bool(bad)


def render(report: Report, *, fail_on: str = "error", **_: object) -> str:
    root = ET.Element("testsuites", {"name": SUITE})
    suite = ET.SubElement(root, "testsuite", {
        "name": SUITE,
        "timestamp": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "time": "0",
    })
    props = ET.SubElement(suite, "properties")
    for k, v in (("root", report.root or ""), ("fail_on", fail_on), ("exit_code", str(report.exit_code(fail_on)))):
        ET.SubElement(props, "property", {"name": k, "value": v})
    tests = failures = 0
    checked = set(report.checked)
    for path, items in by_path(report).items():
        if path in checked:
            tests += 1
            failures += _case(suite, path, path, items, fail_on)
            continue
        # other paths (the manifest): one testcase per declaration, so each missing model shows
        per: dict[str, list[Finding]] = {}
        for f in items:
            model = f.expected.get("model") if isinstance(f.expected, dict) else None
            per.setdefault(f"{path}#{model}" if model else path, []).append(f)
        for name, group in per.items():
            tests += 1
            failures += _case(suite, name, path if path != "(run)" else None, group, fail_on)
    for s in report.skipped:
        tests += 1
        case = ET.SubElement(suite, "testcase", {"classname": "ckreg.audit", "name": s.path, "time": "0"})
        ET.SubElement(case, "skipped", {"message": s.reason})
    for e in report.errors:
        tests += 1
        case = ET.SubElement(suite, "testcase", {"classname": "ckreg.audit", "name": e.path or "(run)", "time": "0"})
        ET.SubElement(case, "error", {"type": "io-error", "message": e.message}).text = e.message
    if not report.checked and not report.errors:
        tests += 1
        case = ET.SubElement(suite, "testcase", {"classname": "ckreg.audit", "name": "(nothing checkable)", "time": "0"})
        ET.SubElement(case, "error", {"type": "nothing-checkable",
                                      "message": "no checkpoint found under the audited path"})
    n = {"tests": tests, "failures": failures, "errors": len(report.errors) + (0 if report.checked or report.errors else 1),
         "skipped": len(report.skipped)}
    for el in (root, suite):
        for k, v in n.items():
            el.set(k, str(v))
    c = counts(report)
    ET.SubElement(suite, "system-out").text = (
        f"{len(report.checked)} checked; {c['error']} errors, {c['warning']} warnings, {c['note']} notes; "
        f"exit {report.exit_code(fail_on)} (--fail-on {fail_on})")
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
