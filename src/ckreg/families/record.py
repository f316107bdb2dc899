"""One record per family: everything ckreg knows about an architecture, in one place.

A `Family` carries its name, hyperparameters with defaults, what the weights
cannot show, ONE layout description (a template, or for the built-ins a
function of the same role), the detector that solves hyperparameters from a
file, the name tokens that label files, whether it needs a scaler, its readout
and a lazy builder (`"package.module:attr"`, imported only to build a model).
Detection, validation, parameter counts and manifest expectations all come
from `Family.layout`. Torch-free.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from ckreg.errors import SpecError
from ckreg.families import expr
from ckreg.families.detect import Detector
from ckreg.families.template import DEFAULT_BUFFERS, Layout, Template, TemplateDetector

SOURCES = ("built-in", "plug-in", "manifest", "file")
BUFFER_SUFFIXES: tuple[str, ...] = ("running_mean", "running_var", "num_batches_tracked")


class _Spec:
    """Attribute view of a hyperparameter mapping (built-in layout functions read `spec.hidden_size`)."""

    def __init__(self, family: str, hp: Mapping[str, Any]):
        self.__dict__.update(hp)
        self.family = family

    def __getattr__(self, name: str) -> Any:
        return None


@dataclass(frozen=True, eq=False)
class Family:
    """A registered family (see the module docstring)."""

    name: str
    hyperparameters: dict[str, Any]             # name -> default (None: read from the weights; expr.Derived)
    layout_fn: Callable[[Any], Layout] | None = None   # built-ins: spec-like object -> layout
    template: Template | None = None            # declared families: the layout as data
    detector: Detector | None = None
    not_in_weights: dict[str, Any] = field(default_factory=dict)
    names: tuple[str, ...] = ()                 # tokens that label a file or folder as this family
    needs_scaler: bool = False
    readout: str | None = None
    build: str | None = None                    # "package.module:attr" (lazy; torch only when building)
    source: str = "built-in"
    origin: str | None = None                   # the file or entry point that declared it
    description: str = ""

    def __post_init__(self) -> None:
        if self.layout_fn is None and self.template is None:
            raise ValueError(f"family {self.name}: needs a layout (template or function)")
        if self.detector is None and self.template is not None:
            object.__setattr__(self, "detector", TemplateDetector(self.name, self.template))

    @property
    def builtin(self) -> bool:
        return self.source == "built-in"

    @property
    def tokens(self) -> tuple[str, ...]:
        """Name tokens, the family's own name first."""
        return tuple(dict.fromkeys((self.name, *self.names)))

    def defaults(self, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Hyperparameters with defaults applied; expression defaults see the overrides (`2*hidden_size`)."""
        given = dict(overrides or {})
        out = {k: v for k, v in self.hyperparameters.items() if not isinstance(v, expr.Derived)}
        out.update(given)
        for k, v in self.hyperparameters.items():
            if isinstance(v, expr.Derived) and k not in given:
                try:
                    out[k] = v.value(out)
                except (expr.ExprError, TypeError):
                    out[k] = None
        return out

    def layout(self, hp: Mapping[str, Any]) -> Layout:
        """Every state_dict key and shape these hyperparameters imply, in module order (SpecError if none)."""
        if self.template is not None:
            missing = [k for k in self.template.hyperparameters if hp.get(k) is None]
            if missing:
                raise SpecError(f"{self.name} needs {', '.join(missing)} to derive its layout")
            return self.template.expand(hp)
        assert self.layout_fn is not None
        return self.layout_fn(_Spec(self.name, hp))

    def is_buffer(self, name: str) -> bool:
        """True for buffers (BatchNorm running statistics and counters unless the template says otherwise)."""
        if self.template is not None and self.template.buffers != DEFAULT_BUFFERS:
            return self.template.is_buffer(name)
        return name.rsplit(".", 1)[-1] in BUFFER_SUFFIXES

    def counts(self, hp: Mapping[str, Any]) -> tuple[int, int]:
        """(parameter elements, buffer elements) of the layout."""
        params = buffers = 0
        for name, shape in self.layout(hp).items():
            n = math.prod(shape) if shape else 1
            if self.is_buffer(name):
                buffers += n
            else:
                params += n
        return params, buffers

    def summary(self) -> dict[str, Any]:
        """What `ckreg families --json` prints for this family."""
        return {"name": self.name, "source": self.source, "origin": self.origin,
                "hyperparameters": {k: (str(v) if isinstance(v, expr.Derived) else v)
                                    for k, v in self.hyperparameters.items()},
                "not_in_weights": dict(self.not_in_weights), "names": list(self.tokens),
                "needs_scaler": self.needs_scaler, "readout": self.readout, "build": self.build,
                "signature": list(self.detector.signature) if self.detector is not None else []}


__all__ = ["Family", "SOURCES", "BUFFER_SUFFIXES"]
