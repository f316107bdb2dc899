"""Lineage as audit notes and as registry provenance (same edges, two consumers).

- `audit_findings(paths, root)`: one `lineage` note per edge, on the child.
- `registration_edges(path, candidates, compare=...)`: the edges between a
  checkpoint being registered and the registered versions, with the versions
  named by their refs; the trainer's recorded edges (distilled-from) always,
  weight comparisons when `compare`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterable, NamedTuple

from ckreg.errors import CkregError
from ckreg.findings import Finding
from ckreg.lineage.core import DEFAULT_THRESHOLD, Edge, analyse, lineage
from ckreg.lineage.digests import DigestCache, default_cache_dir

NEW = "@new"   # stands for the version being registered until its number is known


def describe(e: Edge, name=lambda p: p) -> str:
    """`fine-tuned-from base.ckpt (distance 0.0252; direction: global_step)`."""
    head = f"identical to {name(e.parent)}" if e.relation == "identical" else f"{e.relation} {name(e.parent)}"
    facts = []
    if e.distance is not None and e.relation != "identical":
        facts.append(f"distance {e.distance:.4f}")
    if e.groups:
        facts.append("shares " + ", ".join(f"{g.name} {g.shared}/{g.total}" for g in e.groups[:4])
                     + (" ..." if len(e.groups) > 4 else ""))
    facts.append(f"direction: {e.basis}" if e.directed else "undirected")
    return head + f" ({'; '.join(facts)})"


def audit_findings(paths: Iterable[str | os.PathLike], root: str | os.PathLike,
                   threshold: float = DEFAULT_THRESHOLD) -> tuple[list[Finding], list[dict[str, Any]]]:
    """(`lineage` notes on each edge's child, the edges as JSON with paths relative to `root`)."""
    root = Path(root)

    def rel(p: str) -> str:
        try:
            return Path(p).relative_to(root).as_posix()
        except ValueError:   # a registry reference or a path outside the tree
            return p

    result = lineage([Path(p) for p in paths], threshold=threshold)
    findings = []
    edges = []
    for e in result.edges:
        d = e.public()
        d["child"], d["parent"] = rel(e.child), rel(e.parent)
        edges.append(d)
        findings.append(Finding.make("lineage", describe(e, rel), path=rel(e.child),
                                     actual={k: d[k] for k in ("relation", "parent", "distance", "directed")}))
    return findings, edges


class Candidate(NamedTuple):
    ref: str                  # NAME@N
    path: str                 # its blob
    weights_sha256: str | None


def registration_edges(path: str | os.PathLike, candidates: Callable[[], Iterable[Candidate]], *, compare: bool,
                       threshold: float = DEFAULT_THRESHOLD) -> list[dict[str, Any]]:
    """Edges touching the checkpoint at `path` (named NEW), the other end named by its ref.

    `candidates()` lists the registered versions; it is called only when needed
    (comparing, or naming a recorded parent), so a plain registration never reads the index twice.
    """
    from ckreg.lineage.digests import order_and_record
    from ckreg.readers import read_checkpoint

    out: list[dict[str, Any]] = []
    _order, recorded = order_and_record(read_checkpoint(path))   # metadata only: no tensor bytes
    cands = list(candidates()) if (compare or recorded) else []
    by_path = {os.fspath(c.path): c.ref for c in cands}
    by_weights = {c.weights_sha256: c.ref for c in cands if c.weights_sha256}
    if compare and cands:
        cache = DigestCache(default_cache_dir())
        mine = cache.get(path)
        others = []
        for c in cands:
            try:
                others.append(cache.get(c.path))
            except (CkregError, OSError):   # a damaged blob is `registry verify`'s business
                continue
        name = {mine.path: NEW, **by_path}
        for e in analyse([*others, mine], threshold=threshold):   # a copy: the registered one stands for both
            if mine.path in (e.child, e.parent) and e.basis != "recorded by the trainer":
                d = e.public()
                d["child"], d["parent"] = name.get(e.child, e.child), name.get(e.parent, e.parent)
                out.append(d)
    for rec in recorded:
        parent = rec.get("parent") if isinstance(rec.get("parent"), dict) else {}
        wsha = parent.get("weights_sha256")
        ref = by_weights.get(wsha) or parent.get("ref") or parent.get("path") or "unknown"
        out.append({"child": NEW, "parent": ref, "relation": rec["relation"], "shared_tensors": 0,
                    "total_tensors": None, "groups": [], "distance": None, "directed": True,
                    "basis": "recorded by the trainer", "parent_weights_sha256": wsha})
    return out


def name_new(edges: list[dict[str, Any]], ref: str) -> list[dict[str, Any]]:
    return [{**e, "child": ref if e["child"] == NEW else e["child"],
             "parent": ref if e["parent"] == NEW else e["parent"]} for e in edges]
