"""SARIF 2.1.0 for GitHub code scanning (issue #4).

Rules come from `ckreg.findings.CODES` (stable ids, shortDescription, help);
results carry ruleId, level (Severity values are SARIF levels), message.text and
one physical location. URIs are relative to the source root (`base`, default the
working directory, as `actions/checkout` lays out a repository) under the
`%SRCROOT%` base id; where the audited tree lies outside it they are relative to
the audited root under `AUDITROOT`. Both bases are declared in
`originalUriBaseIds`. Validated against the OASIS schema in tests/report/.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from urllib.parse import quote

from ckreg import __version__
from ckreg.findings import CODES, Finding, Report
from ckreg.report._common import absolute, jsonable, line_of, manifest_path

SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
RULE_INDEX = {code: i for i, code in enumerate(CODES)}


def _dir_uri(p: Path) -> str:
    uri = p.absolute().as_uri()
    return uri if uri.endswith("/") else uri + "/"


def _rules() -> list[dict]:
    rules = []
    for code, info in CODES.items():
        rules.append({
            "id": code,
            "name": "".join(w.capitalize() for w in code.split("-")),
            "shortDescription": {"text": info.title},
            "fullDescription": {"text": f"{info.title}. {info.help}"},
            "help": {"text": info.help, "markdown": f"**{info.title}** ({code}): {info.help}"},
            "defaultConfiguration": {"level": info.severity.value},
            "properties": {"tags": ["ckreg", "checkpoint"] + (["security"] if code in ("unsafe-global", "pickle-malformed") else []),
                           "precision": "high" if info.severity.value == "error" else "medium"},
        })
    return rules


class _Locator:
    def __init__(self, report: Report, base: str | os.PathLike | None):
        from ckreg.readers.fileio import is_url

        self.report = report
        self.base = Path(base).absolute() if base is not None else Path.cwd()
        # a remote archive (s3://bucket/prefix): its URL is the base of its files' URIs
        self.url = report.root.rstrip("/") + "/" if report.root and is_url(report.root) else None
        root = Path(report.root).absolute() if report.root and self.url is None else self.base
        self.root = root
        self.root_inside = root.is_relative_to(self.base)

    def artifact(self, path: str) -> dict:
        if self.url is not None and not Path(path).is_absolute() and path != manifest_path(self.report):
            return {"uri": quote(path), "uriBaseId": "AUDITROOT"}
        p = absolute(self.report, path)
        # normalise ".." without resolving symlinks (the tree may be reached through one)
        p = Path(os.path.normpath(p))
        if p.is_relative_to(self.base):
            return {"uri": quote(p.relative_to(self.base).as_posix()), "uriBaseId": "%SRCROOT%"}
        if p.is_relative_to(self.root):
            return {"uri": quote(p.relative_to(self.root).as_posix()), "uriBaseId": "AUDITROOT"}
        return {"uri": p.as_uri()}


def _fingerprint(f: Finding, uri: str) -> str:
    return hashlib.sha256(f"{f.code}\0{uri}\0{f.message}".encode()).hexdigest()[:32]


def _result(f: Finding, loc: _Locator) -> dict:
    res: dict = {
        "ruleId": f.code,
        "ruleIndex": RULE_INDEX.get(f.code, -1),
        "level": f.severity.value,
        "message": {"text": f.message},
    }
    if f.path:
        art = loc.artifact(f.path)
        res["locations"] = [{"physicalLocation": {"artifactLocation": art,
                                                  "region": {"startLine": line_of(f) or 1}}}]
        res["partialFingerprints"] = {"ckregFinding/v1": _fingerprint(f, art["uri"])}
    props = {k: jsonable(v) for k, v in (("expected", f.expected), ("actual", f.actual)) if v is not None}
    if props:
        res["properties"] = props
    return res


def build(report: Report, *, fail_on: str = "error", base: str | os.PathLike | None = None) -> dict:
    """The SARIF log as a dict."""
    loc = _Locator(report, base)
    notifications = [{"level": "error", "message": {"text": f"{e.path or '(run)'}: {e.message}"}} for e in report.errors]
    notifications += [{"level": "note", "message": {"text": f"skipped {s.path}: {s.reason}"}} for s in report.skipped]
    invocation: dict = {
        "executionSuccessful": not report.errors,
        "exitCode": report.exit_code(fail_on),
        "commandLine": f"ckreg {report.command or 'audit'} {report.root or ''}".strip(),
    }
    if notifications:
        invocation["toolExecutionNotifications"] = notifications
    run: dict = {
        "tool": {"driver": {
            "name": "ckreg",
            "version": report.version or __version__,
            "semanticVersion": report.version or __version__,
            "rules": _rules(),
        }},
        "originalUriBaseIds": {
            "%SRCROOT%": {"uri": _dir_uri(loc.base)},
            "AUDITROOT": {"uri": loc.url or _dir_uri(loc.root)},
        },
        "invocations": [invocation],
        "results": [_result(f, loc) for f in report.findings],
        "columnKind": "unicodeCodePoints",
        "properties": {"checked": list(report.checked), "failOn": fail_on},
    }
    return {"$schema": SCHEMA_URI, "version": "2.1.0", "runs": [run]}


def render(report: Report, *, fail_on: str = "error", base: str | os.PathLike | None = None, **_: object) -> str:
    return json.dumps(build(report, fail_on=fail_on, base=base), indent=2, ensure_ascii=False) + "\n"
