"""Sharded audits: `ckreg audit PATH --shard I/N`, then `ckreg report merge`.

An archive too large for one machine is audited in N shards, each on its own
machine (a CI matrix, a Slurm array), and the JSON shard reports are merged.

A file belongs to shard `1 + sha256(relative path) mod N`: the share depends on
the path relative to PATH alone, never on the walk's order or on how many files
there are, so adding a file never moves another one. A shard inspects its own
files and scalers and reports what can be judged file by file (inspection
findings, a file against the manifest's declarations, names as labels). What
needs the whole archive (declared models nothing satisfies, duplicates,
scaler pairing, identical scalers) is left to the merge: the shard carries the
per-file summaries those checks read (`ckreg.audit` runs the same functions at
audit time and at merge time). The merge refuses reports it cannot combine
into the one report an unsharded audit would have written (other manifests,
options, versions, shard counts; shards missing or given twice).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from ckreg.errors import UsageError
from ckreg.findings import Report

# Version of the data a shard report carries for the merge (`extra.shard`).
SHARD_FORMAT = 1

_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count` (1-based, as `--shard I/N` says it)."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: "str | Shard") -> "Shard":
        """`"I/N"` with 1 <= I <= N (UsageError otherwise, naming the fix)."""
        if isinstance(text, Shard):
            return text
        m = _SPEC.match(str(text))
        hint = "give I/N with 1 <= I <= N, e.g. --shard 1/4 ... --shard 4/4"
        if m is None:
            raise UsageError(f"--shard {text}: expected I/N (shard I of N)", hint=hint)
        i, n = int(m.group(1)), int(m.group(2))
        if n < 1:
            raise UsageError(f"--shard {text}: N must be at least 1", hint=hint)
        if not 1 <= i <= n:
            raise UsageError(f"--shard {text}: I must be between 1 and {n} (shards count from 1)", hint=hint)
        return cls(i, n)

    def owns(self, relpath: str | None) -> bool:
        """Is `relpath` (posix, relative to the audited root) this shard's? Path-less entries go to shard 1."""
        if relpath is None:
            return self.index == 1
        return shard_of(relpath, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def shard_of(relpath: str, count: int) -> int:
    """The shard (1..count) of a path relative to the audited root: a hash of the path alone."""
    digest = hashlib.sha256(relpath.encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") % count + 1


def families_fingerprint() -> str:
    """sha256 of the families registered from family files and plug-ins (not the manifest's own,
    which its digest covers): they decide detection, labels and which models need a scaler."""
    from ckreg.families import registry

    rows = sorted([f.name, f.source, repr(f.template), repr(sorted(f.hyperparameters.items(), key=str)),
                   sorted(f.names), bool(f.needs_scaler)]
                  for f in registry() if f.source in ("file", "plug-in"))
    return hashlib.sha256(json.dumps(rows, default=str).encode()).hexdigest()


# -- merging ---------------------------------------------------------------------------------------

def _load(path: str | os.PathLike) -> Report:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{path}: no such report file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read the report: {exc}") from None
    try:
        report = Report.model_validate_json(text)
    except ValueError:
        raise UsageError(f"{path}: not a ckreg JSON report",
                         hint="give the files written by `ckreg audit --shard I/N --format json --output FILE`") from None
    shard = report.extra.get("shard")
    if report.command != "audit" or not isinstance(shard, dict):
        raise UsageError(f"{path}: not a shard report (written without --shard)",
                         hint="merge the reports of `ckreg audit --shard I/N --format json`")
    if shard.get("format") != SHARD_FORMAT:
        raise UsageError(f"{path}: shard data of format {shard.get('format')!r}, this ckreg reads {SHARD_FORMAT}",
                         hint="audit the shards and merge them with the same ckreg version")
    return report


def _same(loaded: list[tuple[str, Report]], what: str, value: Any, hint: str) -> None:
    """Every report must agree with the first one on `value(report)`; else an error naming both files."""
    first_path, first = loaded[0]
    want = value(first)
    for path, report in loaded[1:]:
        have = value(report)
        if have != want:
            raise UsageError(f"{path}: {what} differs from {first_path} ({_short(have)} vs {_short(want)})", hint=hint)


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def check_shards(loaded: list[tuple[str, Report]]) -> int:
    """Refuse reports that do not make up one audit; return N."""
    from ckreg import __version__

    rerun = "audit every shard with the same ckreg, PATH options and manifest"
    _same(loaded, "the ckreg version", lambda r: r.version, rerun)
    path0, r0 = loaded[0]
    if r0.version != __version__:
        raise UsageError(f"{path0}: written by ckreg {r0.version}, this is ckreg {__version__}",
                         hint="merge with the ckreg version that audited the shards")
    _same(loaded, "the shard count N", lambda r: r.extra["shard"].get("count"), "merge the shards of one --shard I/N run")
    _same(loaded, "the manifest", lambda r: (r.extra["shard"].get("manifest") or {}).get("sha256"),
          "audit every shard against the same manifest")
    _same(loaded, "the audit options", lambda r: r.extra["shard"].get("options"), rerun)
    _same(loaded, "the families", lambda r: r.extra["shard"].get("families"),
          "give every shard the same --families files")
    _same(loaded, "the audited folder's name", lambda r: r.extra["shard"].get("root_name"),
          "audit the same folder in every shard")
    n = r0.extra["shard"].get("count")
    if not isinstance(n, int) or n < 1:
        raise UsageError(f"{path0}: no shard count recorded")
    seen: dict[int, str] = {}
    for path, report in loaded:
        i = report.extra["shard"].get("index")
        if i in seen:
            raise UsageError(f"{path}: shard {i}/{n} is given twice (also {seen[i]})",
                             hint="give each shard report once")
        seen[i] = path
    missing = [str(i) for i in range(1, n + 1) if i not in seen]
    if missing:
        raise UsageError(f"shard{'s' if len(missing) > 1 else ''} {', '.join(missing)} of {n} missing "
                         f"(given: {', '.join(sorted(seen.values()))})", hint="give all N shard reports")
    if families_fingerprint() != r0.extra["shard"].get("families"):
        raise UsageError(f"{path0}: the shards were audited with other family files or plug-ins than this merge "
                         "has", hint="give `ckreg report merge` the same --families files as `ckreg audit`")
    owner: dict[str, str] = {}
    for path, report in loaded:
        for rel in report.checked:
            if rel in owner:
                raise UsageError(f"{path}: {rel} is also in {owner[rel]}; the shards overlap",
                                 hint="audit every shard of the same tree with the same N")
            owner[rel] = path
    return n


def merge_reports(paths: Iterable[str | os.PathLike]) -> Report:
    """One report from the JSON reports of `ckreg audit --shard I/N`: what the unsharded audit says.

    UsageError (naming the file) for a report that is not a shard report, or that does not
    belong with the others.
    """
    from ckreg.audit import merge_shards

    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise UsageError("no shard reports given", hint="ckreg report merge shard-*.json")
    loaded = [(p, _load(p)) for p in paths]
    check_shards(loaded)
    loaded.sort(key=lambda pr: pr[1].extra["shard"]["index"])
    report = merge_shards([r for _, r in loaded])
    report.extra["shards"] = {"count": len(loaded), "reports": [p for p, _ in loaded]}
    return report


__all__ = ["Shard", "shard_of", "merge_reports", "check_shards", "families_fingerprint", "SHARD_FORMAT"]
