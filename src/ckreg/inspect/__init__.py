"""Inference: which family a state_dict is, with what hyperparameters, and why.

Public API (stable, see docs/DEVELOPING.md):
- `inspect_path(path, hash_weights=False) -> Inspection` (never raises for a bad file)
- `inspect_paths(paths, hash_weights=False, jobs=1) -> list[Inspection]` (input order)
- `spec_from_inspection(insp, family=None) -> ArchSpec`
- `layouts.expected_layout(spec)`, `layouts.param_counts(spec)`
- `inspect_tensors(tensors, metadata=..., path=...)` for a state_dict already in memory
- `layout_sha256(tensors)`, `weights_sha256(read_result)`, `exit_code(inspections)`

No torch on this path (issue #2): everything works on inert `TensorRecord`s.
"""

from __future__ import annotations

__all__ = [
    "Candidate", "Inspection", "ParamCounts", "NOT_RECORDED",
    "inspect_path", "inspect_paths", "inspect_tensors", "inspect_result", "spec_from_inspection",
    "layout_sha256", "weights_sha256", "count_params", "hyper_parameters", "exit_code",
    "expected_layout", "param_counts",
]

# imported on first use (the inspector, the families and the readers it pulls in): the inspection
# cache (`ckreg.inspect.cache`) is used without them by a warm audit
_LAZY = {name: "core" for name in ("NOT_RECORDED", "count_params", "exit_code", "hyper_parameters", "inspect_path",
                                   "inspect_paths", "inspect_result", "inspect_tensors", "layout_sha256",
                                   "spec_from_inspection", "weights_sha256")}
_LAZY.update(expected_layout="layouts", param_counts="layouts", Candidate="model", Inspection="model",
             ParamCounts="model")


def __getattr__(name: str):
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f"ckreg.inspect.{_LAZY[name]}"), name)
    raise AttributeError(name)
