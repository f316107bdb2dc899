"""Expected state_dict layouts, from each family's registry record (`ckreg.families`).

`expected_layout(spec)` lists every key and shape a family implies, in module
order (the order `nn.Module.state_dict()` yields them), so the inspector can
validate a file against it and the zoo can test its modules against it
(issue #2: "a validation that re-derives every expected shape"; issue #3:
`build(spec_from_inspection)` loads strictly). The layouts themselves are the
families' own descriptions (`ckreg.families.builtin` for the 14 built-ins, a
template for declared families); this module is the spec-level entry point.
Torch-free by design.
"""

from __future__ import annotations

from typing import Mapping

from ckreg.arch import ArchSpec
from ckreg.families import get
from ckreg.families.builtin import GATES, wrn_groups
from ckreg.families.record import BUFFER_SUFFIXES

Shape = tuple[int, ...]
Layout = dict[str, Shape]


def is_buffer_name(name: str, family: str | None = None) -> bool:
    """True for buffers: BatchNorm running statistics and counters, or what the family declares."""
    if family is not None:
        return get(family).is_buffer(name)
    return name.rsplit(".", 1)[-1] in BUFFER_SUFFIXES


def expected_layout(spec: ArchSpec) -> dict[str, Shape]:
    """Every state_dict key and shape `spec` implies, in module order.

    Raises SpecError when the spec cannot describe a model of its family
    (missing hyperparameters, a depth that is not 6n + 4, a scale-aware family
    with a layer count other than its cells').
    """
    return get(spec.family).layout(spec.hyperparameters())


def layout_counts(layout: Mapping[str, Shape], family: str | None = None) -> tuple[int, int]:
    """(parameter elements, buffer elements) of a layout."""
    params = buffers = 0
    for name, shape in layout.items():
        n = 1
        for v in shape:
            n *= int(v)
        if is_buffer_name(name, family):
            buffers += n
        else:
            params += n
    return params, buffers


def param_counts(spec: ArchSpec) -> tuple[int, int]:
    """(parameters, buffer elements) of `spec`; e.g. MS3DGRU at the defaults: (58840, 388)."""
    return get(spec.family).counts(spec.hyperparameters())


__all__ = ["expected_layout", "param_counts", "layout_counts", "is_buffer_name", "wrn_groups", "GATES",
           "BUFFER_SUFFIXES"]
