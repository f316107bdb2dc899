"""What a family's detector works with: the file's shapes, evidence and broken reasons.

A detector claims a file when its *signature* (a few key names, never shapes)
is present, then *infers* hyperparameters from shapes, one evidence line per
conclusion ("hidden_size=64 from gru.weight_hh_l0 [192, 64]"). Validation (the
family's layout re-derived from what was inferred, compared key by key) is the
inspector's (`ckreg.inspect.detectors.run_detector`), the same for every family.
"""

from __future__ import annotations

from typing import Any, Mapping

from ckreg.families.names import fmt_shape

Shapes = Mapping[str, tuple[int, ...]]


class Ctx:
    """What a detector has learned so far: evidence, broken reasons, forced spec values."""

    def __init__(self, shapes: Shapes):
        self.shapes = shapes
        self.evidence: list[str] = []
        self.broken: list[str] = []
        self.force: dict[str, Any] = {}

    def shape(self, key: str) -> tuple[int, ...] | None:
        s = self.shapes.get(key)
        return tuple(int(v) for v in s) if s is not None else None

    def say(self, line: str) -> None:
        self.evidence.append(line)

    def fail(self, line: str) -> None:
        self.broken.append(line)

    def dims(self, key: str, ndim: int | None = None, min_ndim: int | None = None) -> tuple[int, ...] | None:
        """The shape of `key`, or None (with a broken reason) when absent or of the wrong rank."""
        s = self.shape(key)
        if s is None:
            self.fail(f"{key} missing")
            return None
        if (ndim is not None and len(s) != ndim) or (min_ndim is not None and len(s) < min_ndim):
            want = f"{ndim}-D" if ndim is not None else f"at least {min_ndim}-D"
            self.fail(f"{key} {fmt_shape(s)} should be {want}")
            return None
        return s


class Detector:
    """Base: a family, its signature, and `infer` (hyperparameters with evidence)."""

    family: str = ""
    signature: tuple[str, ...] = ()

    def matches(self, shapes: Shapes) -> bool:
        return all(k in shapes for k in self.signature)

    def infer(self, ctx: Ctx) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> str:
        return f"{self.family}: requires {', '.join(self.signature)}"


__all__ = ["Ctx", "Detector", "Shapes"]
