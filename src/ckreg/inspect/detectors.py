"""Running a family's detector: signature, inference, validation (issue #2, "Inference").

Every registered family (`ckreg.families`) has a detector that claims a file
when its *signature* (a few key names, never shapes) is present and *infers*
the hyperparameters from shapes, one evidence line per conclusion. Validation
is the same for every family: its layout is re-derived from the inferred
hyperparameters (`Family.layout`, the family's one description) and compared
with the file key by key.

Whatever the file shows that the family cannot be (an LSTM cell in the GRU
family, Conv3d towers in MSCGRU) is a `broken` reason, and the spec used for
validation keeps the family's own value, so the shapes that break show up as
mismatches. Detectors never decide between themselves: `ckreg.inspect.core`
ranks every candidate by score (no first match, no default family).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from ckreg.arch import ArchSpec
from ckreg.errors import SpecError
from ckreg.families import Family, registry
from ckreg.families.builtin import BUILTIN_FAMILIES
from ckreg.families.detect import Ctx, Detector
from ckreg.inspect.model import Candidate
from ckreg.inspect.names import collapse_names, fmt_int, fmt_shape

Shapes = Mapping[str, tuple[int, ...]]

_MAX_SHAPE_LINES = 8


@dataclass
class Detected:
    """One family's attempt on one file (internal; `Candidate` is the public view)."""

    family: str
    hyper: dict[str, Any]
    evidence: list[str]
    broken: list[str]
    score: float
    expected: dict[str, tuple[int, ...]] | None = None
    extra: list[str] = field(default_factory=list)   # file keys the family does not explain
    params: int | None = None
    buffers: int | None = None

    @property
    def valid(self) -> bool:
        return not self.broken

    def candidate(self) -> Candidate:
        return Candidate(family=self.family, score=round(self.score, 4), hyperparameters=dict(self.hyper),
                         evidence=list(self.evidence), broken=list(self.broken))


# The built-in families' detectors, in the spec's order (tests check one per family).
DETECTORS: list[Detector] = [registry().get(name).detector for name in BUILTIN_FAMILIES]  # type: ignore[misc]


def _short(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            return "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in errors())
        except Exception:  # pragma: no cover - defensive
            pass
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for v in shape:
        n *= int(v)
    return n


def run_detector(det: Detector | Family, shapes: Shapes) -> Detected | None:
    """Signature, inference, validation; None when the signature is absent."""
    fam = det if isinstance(det, Family) else registry().get(det.family)
    det = fam.detector  # type: ignore[assignment]
    if det is None or not det.matches(shapes):
        return None
    ctx = Ctx(shapes)
    ctx.say(f"signature: {', '.join(det.signature)}")
    try:
        hyper = det.infer(ctx)
    except (ArithmeticError, LookupError, TypeError, ValueError) as exc:  # odd shapes must not crash a run
        ctx.fail(f"inference failed: {exc}")
        hyper = {}
    hyper = {k: v for k, v in hyper.items() if v is not None}
    fields = {**hyper, **{k: v for k, v in ctx.force.items() if v is not None}}
    expected = None
    try:
        expected = fam.layout(ArchSpec.of(fam.name, fields).hyperparameters())
    except (SpecError, ValueError) as exc:
        ctx.fail(f"no {det.family} layout fits: {_short(exc)}")
    found = set(shapes)
    if expected is None:
        score = 0.5 * len(det.signature) / max(1, len(found))
        return Detected(det.family, hyper, ctx.evidence, ctx.broken, score, extra=sorted(found))
    matched = [k for k, s in expected.items() if k in shapes and tuple(shapes[k]) == s]
    missing = [k for k in expected if k not in shapes]
    wrong = [k for k in expected if k in shapes and tuple(shapes[k]) != expected[k]]
    extra = [k for k in shapes if k not in expected]
    if missing:
        shown = collapse_names(missing)
        ctx.fail(f"missing {len(missing)} expected key{'s' if len(missing) > 1 else ''}: "
                 + ", ".join(shown[:6]) + (" ..." if len(shown) > 6 else ""))
    for k in wrong[:_MAX_SHAPE_LINES]:
        ctx.fail(f"{k}: expected {fmt_shape(expected[k])}, found {fmt_shape(shapes[k])}")
    if len(wrong) > _MAX_SHAPE_LINES:
        ctx.fail(f"... and {len(wrong) - _MAX_SHAPE_LINES} more shape mismatches")
    params = buffers = 0
    for k, shp in expected.items():
        if fam.is_buffer(k):
            buffers += _numel(shp)
        else:
            params += _numel(shp)
    if not missing and not wrong:
        ctx.say(f"validated: all {len(expected)} expected keys present with the expected shapes "
                f"({fmt_int(params)} params + {fmt_int(buffers)} buffer elements)")
    else:
        ctx.say(f"validated: {len(matched)} of {len(expected)} expected keys match")
    if extra:
        shown = collapse_names(extra)
        ctx.say(f"{len(extra)} key{'s' if len(extra) > 1 else ''} outside {det.family}: "
                + ", ".join(shown[:6]) + (" ..." if len(shown) > 6 else ""))
    # half keys, half elements: twelve stray counters should not outweigh 50k validated weights
    key_part = len(matched) / max(1, len(found | set(expected)))
    matched_n = sum(_numel(expected[k]) for k in matched)
    union_n = (sum(_numel(tuple(s)) for s in shapes.values())
               + sum(_numel(expected[k]) for k in missing) + sum(_numel(expected[k]) for k in wrong))
    score = 0.5 * key_part + 0.5 * (matched_n / union_n if union_n else key_part)
    return Detected(det.family, hyper, ctx.evidence, ctx.broken, score, expected=expected, extra=extra,
                    params=params, buffers=buffers)


def detect_all(shapes: Shapes, families: Iterable[Family] | None = None) -> list[Detected]:
    """Every registered family whose signature is present, in registry order (ranking is the caller's).

    A detector's answer depends on the names and shapes alone, and an archive holds the same
    layout many times over: answers are remembered per (families, ordered names and shapes),
    the last `_MEMO_SIZE` of them, and handed out as copies.
    """
    fams = tuple(families if families is not None else registry())
    key = (tuple(id(f) for f in fams), tuple((k, tuple(v)) for k, v in shapes.items()))
    with _memo_lock:
        hit = _MEMO.get(key)
        if hit is not None and all(a is b for a, b in zip(hit[0], fams)):   # the same records, alive
            _MEMO.move_to_end(key)
            return [_copy(d) for d in hit[1]]
    out = []
    for fam in fams:
        found = run_detector(fam, shapes)
        if found is not None:
            out.append(found)
    with _memo_lock:
        _MEMO[key] = (fams, [_copy(d) for d in out])
        while len(_MEMO) > _MEMO_SIZE:
            _MEMO.popitem(last=False)
    return out


_MEMO_SIZE = 256
_MEMO: "OrderedDict[tuple, tuple[tuple[Family, ...], list[Detected]]]" = OrderedDict()
_memo_lock = threading.Lock()


def _copy(d: Detected) -> Detected:
    return Detected(d.family, _clone(d.hyper), list(d.evidence), list(d.broken), d.score,
                    dict(d.expected) if d.expected is not None else None, list(d.extra), d.params, d.buffers)


def _clone(value: Any) -> Any:
    """A copy of nested lists and dicts (hyperparameters such as tower_kernels): no sharing with the memo."""
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clone(v) for v in value]
    return value
