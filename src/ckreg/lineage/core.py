"""Where a checkpoint came from, read from its weights (`ckreg lineage`).

Relations between the given checkpoints (folders are walked):

- `identical`: the same tensors, byte for byte (a re-saved copy, another container).
- `transplanted`: named groups of tensors are byte-identical (`encoder.*` 48/48):
  a frozen backbone or an encoder loaded from another run. Only float tensors
  with at least two distinct values count as evidence: zero biases, unit norm
  weights, step counters, 0/1 masks and buffers computed from the shape alone
  (positional encodings, rotary frequencies: `DETERMINISTIC_BUFFERS`) are equal
  in any two fresh models.
- `fine-tuned-from`: the same layout and a small relative L2 distance over the
  tensors that changed (`d = ||a - b|| / max(||a||, ||b||)`, default threshold
  `DEFAULT_THRESHOLD`). Two independent initialisations are about sqrt(2) apart
  (the difference of two independent draws has twice the variance) and stay
  near 1 after training; a fine-tune moves a few percent. Among many
  candidates only a minimum spanning forest is kept, so a chain a -> b -> c is
  two edges, not three. Byte-identical groups (frozen layers) are listed.
- `distilled-from`: recorded by ckreg's trainer in the student's metadata
  (the teacher's registry version and weights_sha256); the parent is the
  given file with those weights, else the registry reference.

Direction: the later training position (global_step, else epoch, from the
files' metadata) is the child; without it an edge is reported undirected
(`"directed": false`, child and parent in path order).
"""

from __future__ import annotations

import math
import os
from collections import Counter
from itertools import combinations
from pathlib import Path
from typing import Any, Callable, Iterable

from pydantic import BaseModel, ConfigDict, Field

from ckreg import __version__
from ckreg.errors import CkregError, ReadError, UsageError
from ckreg.findings import ErrorEntry, Skipped
from ckreg.lineage.digests import DigestCache, FileDigests, aligned, default_cache_dir, is_evidence

DEFAULT_THRESHOLD = 0.6
RELATIONS = ("identical", "transplanted", "fine-tuned-from", "distilled-from")

Progress = Callable[[str, int, int], None]


class Group(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str            # "encoder.*" (a module and everything under it) or one tensor's name
    shared: int          # byte-identical tensors in the group
    total: int           # the child's tensors under that name


class Edge(BaseModel):
    model_config = ConfigDict(frozen=True)

    child: str
    parent: str
    relation: str
    shared_tensors: int           # the child's tensors byte-identical to one of the parent's
    total_tensors: int            # the child's tensors
    groups: list[Group] = Field(default_factory=list)
    distance: float | None = None  # relative L2 distance over the tensors that differ (same layout only)
    directed: bool = False
    basis: str = ""                # how the direction was decided

    def public(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class LineageResult(BaseModel):
    version: str = __version__
    threshold: float = DEFAULT_THRESHOLD
    checked: list[str] = Field(default_factory=list)
    edges: list[Edge] = Field(default_factory=list)
    skipped: list[Skipped] = Field(default_factory=list)
    errors: list[ErrorEntry] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    cache: dict[str, Any] = Field(default_factory=dict)

    def exit_code(self) -> int:
        from ckreg.findings import EXIT_NOTHING, EXIT_OK, EXIT_USAGE

        if self.errors:
            return EXIT_USAGE
        if not self.checked:
            return EXIT_NOTHING
        return EXIT_OK

    def edges_of(self, path: str) -> list[Edge]:
        return [e for e in self.edges if path in (e.child, e.parent)]


# -- collecting files -----------------------------------------------------------------------------

def collect(paths: Iterable[str | os.PathLike], result: LineageResult) -> list[str]:
    """Checkpoint files from files and folders (walked as the audit walks them), each real file once."""
    from ckreg.audit import walk

    out: list[str] = []
    seen: set[str] = set()

    def add(p: Path) -> None:
        real = os.path.realpath(p)
        if real in seen:
            result.skipped.append(Skipped(path=str(p), reason="same file given twice; checked once"))
            return
        seen.add(real)
        out.append(str(p))

    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            walked = walk(p)
            result.skipped.extend(Skipped(path=str(p / s.path), reason=s.reason) for s in walked.skipped)
            result.errors.extend(ErrorEntry(path=str(p / e.path) if e.path else str(p), message=e.message)
                                 for e in walked.errors)
            for c in walked.checkpoints:
                add(c)
        elif p.is_file():
            add(p)
        else:
            result.errors.append(ErrorEntry(path=str(p), message="no such file or folder"))
    return out


# -- groups and sharing ---------------------------------------------------------------------------

def name_groups(names: Iterable[str], shared: set[str], evidence: set[str]) -> list[Group]:
    """The shortest module prefixes whose tensors are all shared (`encoder.*`), else single tensors.

    Groups without any evidence tensor (only constants) are left out: they
    show nothing about origin.
    """
    names = sorted(names)
    total_under: Counter[str] = Counter()
    shared_under: Counter[str] = Counter()
    for n in names:
        parts = n.split(".")
        for k in range(1, len(parts)):
            p = ".".join(parts[:k])
            total_under[p] += 1
            if n in shared:
                shared_under[p] += 1
    chosen: dict[str, list[str]] = {}
    for n in names:
        if n not in shared:
            continue
        parts = n.split(".")
        key = n
        for k in range(1, len(parts)):
            p = ".".join(parts[:k])
            if shared_under[p] == total_under[p]:
                key = p + ".*"
                break
        chosen.setdefault(key, []).append(n)
    groups = []
    for key, members in chosen.items():
        if not any(m in evidence for m in members):
            continue
        total = total_under[key[:-2]] if key.endswith(".*") else 1
        groups.append(Group(name=key, shared=len(members), total=total))
    return sorted(groups, key=lambda g: (-g.shared, g.name))


def shared_tensors(child: FileDigests, parent: FileDigests) -> set[str]:
    """The child's tensors byte-identical to a parent tensor: by name, or (evidence only) under another name."""
    by_content = {d.key for n, d in parent.tensors.items() if is_evidence(n, d)}
    out = set()
    for name, d in child.tensors.items():
        p = parent.tensors.get(name)
        if p is not None and p.key == d.key:
            out.add(name)
        elif is_evidence(name, d) and d.key in by_content:
            out.add(name)
    return out


# -- distances ------------------------------------------------------------------------------------

class _Distances:
    """Relative L2 distances between same-layout files over the float tensors that differ."""

    def __init__(self, np: Any):
        self.np = np
        self.results: dict[str, Any] = {}

    def _read(self, path: str):
        from ckreg.readers import read_checkpoint

        if path not in self.results:
            self.results[path] = read_checkpoint(path)
        return self.results[path]

    @staticmethod
    def lower_bound(a: FileDigests, b: FileDigests, names: list[str]) -> float:
        """|‖a_t‖ - ‖b_t‖| <= ‖a_t - b_t‖ per tensor: a free lower bound on `distance` (skips far pairs)."""
        total = weighted = 0.0
        for n in names:
            na, nb = math.sqrt(a.tensors[n].sumsq or 0.0), math.sqrt(b.tensors[n].sumsq or 0.0)
            k = a.tensors[n].numel
            total += k
            weighted += k * (abs(na - nb) / max(na, nb) if max(na, nb) > 0 else 0.0)
        return weighted / total if total else 0.0

    def distance(self, a: FileDigests, b: FileDigests, names: list[str]) -> float:
        """Mean over tensors, weighted by element count, of ‖a_t - b_t‖ / max(‖a_t‖, ‖b_t‖).

        Per tensor, because norm-layer weights (all near 1) and running
        variances are similar in ANY two models of one architecture and, summed
        into one norm, drown the convolution and linear weights that do tell
        runs apart (measured on WRN: 0.82 between unrelated runs as one norm,
        1.3 per tensor); weighted by size, so a few-element bias trained away
        from zero counts for little.
        """
        from ckreg.lineage.numeric import diff_squares
        from ckreg.readers import DTYPE_SIZES

        ra, rb = self._read(a.path), self._read(b.path)
        total = weighted = 0.0
        for n in names:
            rec_a, rec_b = ra.tensors[n], rb.tensors[n]
            size = DTYPE_SIZES[rec_a.dtype]
            diff = diff_squares(self.np, aligned(ra.iter_tensor_bytes(rec_a), size),
                                aligned(rb.iter_tensor_bytes(rec_b), size), rec_a.dtype)
            scale = math.sqrt(max(a.tensors[n].sumsq or 0.0, b.tensors[n].sumsq or 0.0))
            k = a.tensors[n].numel
            total += k
            weighted += k * (math.sqrt(diff) / scale if scale > 0 else 0.0)
        return weighted / total if total else 0.0

    def close(self) -> None:
        self.results.clear()


# -- direction ------------------------------------------------------------------------------------

def orient(a: FileDigests, b: FileDigests) -> tuple[FileDigests, FileDigests, bool, str]:
    """(child, parent, directed, basis): the later training position is the child."""
    for key in ("global_step", "epoch"):
        va, vb = a.order.get(key), b.order.get(key)
        if va is not None and vb is not None and va != vb:
            return (a, b, True, key) if va > vb else (b, a, True, key)
    return b, a, False, "no training position tells them apart"


# -- the analysis ---------------------------------------------------------------------------------

def analyse(digests: list[FileDigests], *, threshold: float = DEFAULT_THRESHOLD,
            progress: Progress | None = None, warnings: list[str] | None = None) -> list[Edge]:
    """Edges between digested files (pure: reads tensor bytes again only for distances)."""
    warnings = warnings if warnings is not None else []
    emit = progress or (lambda stage, done, total: None)
    edges: list[Edge] = []

    # identical: one cluster per weights_sha256; the first file (path order) stands for it
    clusters: dict[str, list[FileDigests]] = {}
    for d in digests:
        clusters.setdefault(d.weights_sha256, []).append(d)
    reps = []
    for members in clusters.values():
        rep = members[0]
        reps.append(rep)
        for other in members[1:]:
            n = len(other.tensors)
            child, parent, directed, basis = orient(rep, other)
            edges.append(Edge(child=child.path, parent=parent.path, relation="identical", shared_tensors=n,
                              total_tensors=n, groups=[], distance=0.0, directed=directed,
                              basis=basis if directed else "byte-identical tensors"))

    try:
        import numpy as np
    except ImportError:
        np = None
    dist = _Distances(np) if np is not None else None
    pairs = list(combinations(reps, 2))
    candidates: list[tuple[float, Edge, FileDigests, FileDigests]] = []
    no_numpy = False
    try:
        for i, (a, b) in enumerate(pairs, 1):
            emit("compare", i, len(pairs))
            child, parent, directed, basis = orient(a, b)
            shared = shared_tensors(child, parent)
            evidence = {n for n in shared if is_evidence(n, child.tensors[n])}
            groups = name_groups(child.tensors, shared, evidence)
            distance = None
            if a.layout == b.layout:
                changed = [n for n in sorted(a.tensors) if a.tensors[n].key != b.tensors[n].key]
                floats = [n for n in changed if a.tensors[n].is_float]
                if dist is None:
                    no_numpy = True
                elif not floats:          # only counters (num_batches_tracked) moved
                    distance = 0.0
                else:
                    if dist.lower_bound(a, b, floats) <= threshold:
                        distance = dist.distance(a, b, floats)
                    else:
                        distance = math.inf
            edge_base = dict(child=child.path, parent=parent.path, shared_tensors=len(shared),
                             total_tensors=len(child.tensors), groups=groups, directed=directed,
                             basis=basis)
            if distance is not None and distance <= threshold:
                candidates.append((distance, Edge(relation="fine-tuned-from", distance=round(distance, 6),
                                                  **edge_base), a, b))
            elif evidence:
                d = None if distance is None or not math.isfinite(distance) else round(distance, 6)
                edges.append(Edge(relation="transplanted", distance=d, **edge_base))
    finally:
        if dist is not None:
            dist.close()
    if no_numpy:
        warnings.append("numpy is not installed, so fine-tuned-from (a distance) was not checked: "
                        "pip install 'ckreg[lineage]'")

    # fine-tuned-from: a minimum spanning forest (Kruskal) of the candidates
    root: dict[str, str] = {}

    def find(x: str) -> str:
        while root.get(x, x) != x:
            x = root[x]
        return x

    for _d, edge, a, b in sorted(candidates, key=lambda c: (c[0], c[1].child, c[1].parent)):
        ra, rb = find(a.path), find(b.path)
        if ra != rb:
            root[ra] = rb
            edges.append(edge)

    # distilled-from (and anything else the trainer recorded)
    by_weights = {d.weights_sha256: d for d in digests}
    for d in digests:
        for rec in d.recorded:
            parent_info = rec.get("parent") if isinstance(rec.get("parent"), dict) else {}
            wsha = parent_info.get("weights_sha256")
            parent = by_weights.get(wsha) if isinstance(wsha, str) else None
            name = parent.path if parent is not None else str(parent_info.get("ref") or parent_info.get("path")
                                                              or (f"weights {wsha[:12]}" if isinstance(wsha, str)
                                                                  else "unknown"))
            edges.append(Edge(child=d.path, parent=name, relation=str(rec["relation"]), shared_tensors=0,
                              total_tensors=len(d.tensors), groups=[], distance=None, directed=True,
                              basis="recorded by the trainer"))
    order = {r: i for i, r in enumerate(RELATIONS)}
    return sorted(edges, key=lambda e: (e.child, order.get(e.relation, 9), e.parent))


def lineage(paths: Iterable[str | os.PathLike], *, threshold: float = DEFAULT_THRESHOLD,
            cache_dir: str | os.PathLike | None | bool = True, progress: Progress | None = None) -> LineageResult:
    """Digest every checkpoint under `paths` and find the edges between them.

    `cache_dir`: True for the default cache folder, a path, or False/None for
    no cache. Unreadable files are errors in the result (exit 2), never a crash.
    """
    if not (isinstance(threshold, (int, float)) and math.isfinite(threshold) and threshold > 0):
        raise UsageError(f"the distance threshold must be a positive number (got {threshold!r})")
    result = LineageResult(threshold=float(threshold))
    files = collect(paths, result)
    directory = default_cache_dir() if cache_dir is True else (cache_dir or None)
    cache = DigestCache(directory)
    emit = progress or (lambda stage, done, total: None)
    digests: list[FileDigests] = []
    for i, path in enumerate(files, 1):
        emit("digest", i, len(files))
        try:
            digests.append(cache.get(path))
        except ReadError as exc:
            result.errors.append(ErrorEntry(path=path, message=f"unreadable: {exc}"))
        except CkregError as exc:
            result.errors.append(ErrorEntry(path=path, message=exc.render()))
        except OSError as exc:
            result.errors.append(ErrorEntry(path=path, message=f"cannot read: {exc.strerror or exc}"))
    result.checked = [d.path for d in digests]
    result.edges = analyse(digests, threshold=threshold, progress=progress, warnings=result.warnings)
    result.cache = {"dir": None if cache.dir is None else str(cache.dir), "hits": cache.hits, "misses": cache.misses}
    if cache.write_error:
        result.warnings.append(cache.write_error)
    return result
