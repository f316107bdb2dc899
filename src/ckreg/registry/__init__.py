"""The model registry (issue #5, "Registry"): content-addressed blobs + a SQLite index.

    from ckreg.registry import Registry
    reg = Registry("registry")                       # or $CKREG_REGISTRY, default ./registry
    v = reg.add("ms3dgru_best.ckpt", "scaler.pkl", aliases=["best"])
    reg.resolve("MS3DGRU@best"); reg.ls(); reg.export("MS3DGRU@best", "out/")

Torch-free; `export` and `ckreg.load` reach torch only through `ckreg.zoo`.
Documented in docs/registry.md.
"""

from __future__ import annotations

from ckreg.registry.model import Artifact, Event, GcResult, Problem, ScalerInfo, Verification, Version, VersionDetail, pair_digest, parse_ref
from ckreg.registry.store import ANY, AliasConflictError, Registration, Registry, current_user, default_path

__all__ = [
    "ANY",
    "AliasConflictError",
    "Artifact",
    "Event",
    "GcResult",
    "Problem",
    "Registration",
    "Registry",
    "ScalerInfo",
    "Verification",
    "Version",
    "VersionDetail",
    "current_user",
    "default_path",
    "pair_digest",
    "parse_ref",
]
