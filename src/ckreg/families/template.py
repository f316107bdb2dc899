"""Layout templates: a family as data (docs/families.md, "Layout templates").

A template lists every state_dict key of a family with its shape, each
dimension an integer expression over the hyperparameters (`ckreg.families.expr`).
Keys may carry index variables (`gru.weight_ih_l{l}`) whose half-open range
comes from `indices` (`l: "1..num_layers"`).

Detection is solve-then-re-derive:

1. *solve*: every dimension that is a bare hyperparameter binds it from the
   file (`n_mels=40 from conv.weight [64, 40, 5]`); an index range whose stop
   is a bare hyperparameter binds it from how many keys match
   (`num_layers=3 from gru.weight_ih_l{1,2}`); what is still unbound takes the
   family's default;
2. *re-derive*: the template is expanded with those values and every key and
   shape compared with the file (`ckreg.inspect.detectors.run_detector`), so a
   dimension that is not a bare hyperparameter is checked, never trusted.
"""

from __future__ import annotations

import fnmatch
import itertools
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from ckreg.errors import SpecError
from ckreg.families import expr
from ckreg.families.detect import Ctx, Detector
from ckreg.families.names import braces, fmt_shape

Layout = dict[str, tuple[int, ...]]

_VAR = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_RANGE = re.compile(r"^(.+?)\.\.(.+)$")
# BatchNorm running statistics and counters are buffers unless the template says otherwise.
DEFAULT_BUFFERS = ("*.running_mean", "*.running_var", "*.num_batches_tracked", "running_mean", "running_var",
                   "num_batches_tracked")


@dataclass(frozen=True)
class KeyPattern:
    """One layout entry: `gru.weight_ih_l{l}` -> [3*hidden_size, hidden_size]."""

    text: str
    dims: tuple[expr.Node, ...]
    dims_text: tuple[str, ...]
    variables: tuple[str, ...]
    regex: str

    def match(self, key: str) -> tuple[int, ...] | None:
        m = re.fullmatch(self.regex, key)
        if m is None:
            return None
        return tuple(int(g) for g in m.groups())

    def key(self, values: Mapping[str, int]) -> str:
        return _VAR.sub(lambda m: str(values[m.group(1)]), self.text)


def key_pattern(text: str, dims: list[Any]) -> KeyPattern:
    """Parse one layout entry (raises ExprError / ValueError with what is wrong)."""
    variables = tuple(dict.fromkeys(_VAR.findall(text)))
    pieces, pos = [], 0
    for m in _VAR.finditer(text):
        pieces.append(re.escape(text[pos:m.start()]))
        pieces.append(r"(0|[1-9][0-9]*)")
        pos = m.end()
    pieces.append(re.escape(text[pos:]))
    if "{" in _VAR.sub("", text) or "}" in _VAR.sub("", text):
        raise ValueError(f"key {text!r}: braces must hold one index name, like {{l}}")
    nodes = tuple(expr.parse(d) for d in dims)
    return KeyPattern(text=text, dims=nodes, dims_text=tuple(str(d) for d in dims), variables=variables,
                      regex="".join(pieces))


@dataclass(frozen=True)
class Template:
    """A parsed layout template (see the module docstring)."""

    hyperparameters: tuple[str, ...]
    defaults: tuple[tuple[str, Any], ...]
    indices: tuple[tuple[str, expr.Node, expr.Node], ...]   # (name, start, stop), stop exclusive
    entries: tuple[KeyPattern, ...]
    buffers: tuple[str, ...] = DEFAULT_BUFFERS
    signature: tuple[str, ...] = ()

    # -- expansion --
    def ranges(self, hp: Mapping[str, int]) -> dict[str, range]:
        out = {}
        for name, start, stop in self.indices:
            a, b = expr.evaluate(start, hp), expr.evaluate(stop, hp)
            out[name] = range(a, max(a, b))
        return out

    def expand(self, hp: Mapping[str, Any]) -> Layout:
        """Every key and shape for these hyperparameter values (SpecError when they do not fit)."""
        try:
            ranges = self.ranges(hp)
            out: Layout = {}
            for entry in self.entries:
                for combo in itertools.product(*(ranges[v] for v in entry.variables)):
                    values = dict(zip(entry.variables, combo))
                    env = {**hp, **values}
                    dims = tuple(expr.evaluate(d, env) for d in entry.dims)
                    key = entry.key(values)
                    bad = [f"{t}={v}" for t, v in zip(entry.dims_text, dims) if v < 1]
                    if bad:
                        raise SpecError(f"{key}: dimension {', '.join(bad)} is not positive")
                    out[key] = dims
            return out
        except expr.ExprError as exc:
            raise SpecError(str(exc)) from None

    def is_buffer(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, p) for p in self.buffers)


def parse_range(text: str) -> tuple[expr.Node, expr.Node]:
    """`"1..num_layers"` -> (start, stop) nodes (half-open)."""
    m = _RANGE.match(str(text).strip())
    if not m:
        raise ValueError(f"index range {text!r} should read START..STOP (half-open), like \"1..num_layers\"")
    return expr.parse(m.group(1).strip()), expr.parse(m.group(2).strip())


class TemplateDetector(Detector):
    """Solve a template's hyperparameters from the shapes (step 1 of the module docstring)."""

    def __init__(self, family: str, template: Template):
        self.family = family
        self.template = template
        self.signature = template.signature

    def infer(self, ctx: Ctx) -> dict[str, Any]:
        t = self.template
        hps = set(t.hyperparameters)
        bound: dict[str, int] = {}
        where: dict[str, str] = {}

        def bind_dims(key: str, entry: KeyPattern, shape: tuple[int, ...]) -> None:
            if len(shape) != len(entry.dims):
                ctx.fail(f"{key} {fmt_shape(shape)} should be {len(entry.dims)}-D")
                return
            for node, value in zip(entry.dims, shape):
                if isinstance(node, expr.Name) and node.name in hps and node.name not in bound:
                    bound[node.name] = int(value)
                    where[node.name] = f"{key} {fmt_shape(shape)}"
                    ctx.say(f"{node.name}={value} from {key} {fmt_shape(shape)}")

        literal = [e for e in t.entries if not e.variables]
        literal_keys = {e.text for e in literal}
        for entry in literal:
            shape = ctx.shape(entry.text)
            if shape is not None:
                bind_dims(entry.text, entry, shape)
        # index variables: which values appear, then the stop they imply
        seen: dict[str, set[int]] = {name: set() for name, _, _ in t.indices}
        first_key: dict[int, tuple[str, tuple[int, ...]]] = {}
        for i, entry in enumerate(t.entries):
            if not entry.variables:
                continue
            for key in ctx.shapes:
                if key in literal_keys:   # `gru.weight_ih_l0` is its own entry, not l=0 of `..._l{l}`
                    continue
                vals = entry.match(key)
                if vals is None:
                    continue
                for var, v in zip(entry.variables, vals):
                    seen[var].add(v)
                if i not in first_key or key < first_key[i][0]:
                    first_key[i] = (key, ctx.shape(key) or ())
        for name, start, stop in t.indices:
            try:
                a = expr.evaluate(start, {**dict(t.defaults), **bound})
            except expr.ExprError:
                a = 0
            values = sorted(seen[name])
            n_stop = (max(values) + 1) if values else a
            if values and values != list(range(a, n_stop)):
                ctx.fail(f"index {name}: found {braces(values)}, expected a contiguous run from {a}")
            if isinstance(stop, expr.Name) and stop.name in hps and stop.name not in bound:
                bound[stop.name] = n_stop
                pats = [e.text for e in t.entries if name in e.variables]
                shown = pats[0].replace("{" + name + "}", braces(values)) if values else pats[0]
                ctx.say(f"{stop.name}={n_stop} from {shown}" if values
                        else f"{stop.name}={n_stop}: no key matches {shown}")
        for i, entry in enumerate(t.entries):
            if entry.variables and i in first_key:
                bind_dims(first_key[i][0], entry, first_key[i][1])
        defaults = dict(t.defaults)
        for name in t.hyperparameters:
            if name in bound:
                continue
            default = defaults.get(name)
            if default is None:
                ctx.fail(f"{name} cannot be read from the weights (no dimension is exactly {name}) "
                         "and has no default")
                continue
            try:
                value = default if isinstance(default, int) else expr.evaluate(expr.parse(str(default)), bound)
            except expr.ExprError as exc:
                ctx.fail(f"{name}: default {default!r} cannot be evaluated: {exc}")
                continue
            bound[name] = value
            ctx.say(f"{name}={value}: the family's default (no dimension shows it alone)")
        return {k: bound[k] for k in t.hyperparameters if k in bound}


__all__ = ["Template", "KeyPattern", "TemplateDetector", "key_pattern", "parse_range", "DEFAULT_BUFFERS", "Layout"]
