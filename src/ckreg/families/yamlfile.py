"""Family files: families declared in YAML (`--families FILE`, a manifest's `families:`, plug-ins).

```yaml
families:
  - name: KWSNet
    hyperparameters: {n_mels: null, filters: 64, hidden_size: null, num_layers: 1, num_classes: null}
    indices: {l: "1..num_layers"}
    layout:
      conv.weight: [filters, n_mels, 5]
      "gru.weight_ih_l{l}": [3*hidden_size, hidden_size]
      fc.weight: [num_classes, hidden_size]
    names: [kws, kwsnet]
    build: "acme.kws:KWSNet"
```

Every problem is reported at once, each as `FILE:LINE: families[0].layout.fc.weight[0]:
what is wrong; the fix`, like manifest errors (`ckreg.yamlio.line_of`). Torch-free.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

from ckreg import yamlio
from ckreg.errors import FamilyError
from ckreg.families import expr
from ckreg.families.record import Family
from ckreg.families.template import DEFAULT_BUFFERS, Template, key_pattern, parse_range

FIELDS = ("name", "hyperparameters", "indices", "layout", "buffers", "names", "build", "needs_scaler",
          "readout", "not_in_weights", "signature", "description")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_FAMILY_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]*$")
_BUILD = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
RESERVED = ("unknown", "ambiguous")
MAX_REPORTED = 25


def _loc_str(loc: tuple) -> str:
    return yamlio.loc_str(loc)


class _Problems:
    def __init__(self, source: str, data: Any, base: tuple):
        self.source, self.data, self.base = source, data, base
        self.items: list[tuple[tuple, str]] = []

    def add(self, loc: tuple, text: str) -> None:
        self.items.append((self.base + loc, text))

    def render(self) -> list[str]:
        out = []
        for loc, text in self.items:
            line = yamlio.line_of(self.data, loc)
            where = f"{self.source}:{line}" if line else self.source
            out.append(f"{where}: {_loc_str(loc)}: {text}")
        return out


def _one(raw: Any, i: int, p: _Problems, source: str, kind: str) -> Family | None:
    loc = (i,)
    if not isinstance(raw, dict):
        p.add(loc, f"expected a mapping with name, hyperparameters and layout, got {type(raw).__name__}")
        return None
    start = len(p.items)
    for key in raw:
        if key not in FIELDS:
            close = difflib.get_close_matches(str(key), FIELDS, n=1)
            p.add(loc + (key,), f"unknown field {key!r}; expected one of: {', '.join(FIELDS)}"
                  + (f" (did you mean {close[0]!r}?)" if close else ""))
    name = raw.get("name")
    if not isinstance(name, str) or not _FAMILY_NAME.match(name) or name.lower() in RESERVED:
        p.add(loc + ("name",), f"expected a family name (letters, digits, _ . -), got {name!r}")
        name = None
    hp_raw = raw.get("hyperparameters")
    hps: dict[str, Any] = {}
    if hp_raw is None:
        hp_raw = {}
    if not isinstance(hp_raw, dict):
        p.add(loc + ("hyperparameters",), "expected a mapping of name: default (null = read from the weights)")
        hp_raw = {}
    for k, v in hp_raw.items():
        if not isinstance(k, str) or not _IDENT.match(k):
            p.add(loc + ("hyperparameters", k), f"hyperparameter names are identifiers, got {k!r}")
            continue
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, str))):
            p.add(loc + ("hyperparameters", k), f"a default is an integer, an expression or null, got {v!r}")
            continue
        hps[k] = v
    for k, v in hps.items():
        if isinstance(v, str):
            try:
                used = expr.names(expr.parse(v))
            except expr.ExprError as exc:
                p.add(loc + ("hyperparameters", k), str(exc))
                continue
            unknown = sorted(used - set(hps))
            if unknown:
                p.add(loc + ("hyperparameters", k), f"unknown hyperparameter {unknown[0]!r} in {v!r}; "
                      f"declare it under hyperparameters (known: {', '.join(hps)})")
    # indices
    indices = []
    idx_raw = raw.get("indices") or {}
    if not isinstance(idx_raw, dict):
        p.add(loc + ("indices",), 'expected a mapping of index: "START..STOP", like {l: "1..num_layers"}')
        idx_raw = {}
    for var, text in idx_raw.items():
        if not isinstance(var, str) or not _IDENT.match(var):
            p.add(loc + ("indices", var), f"index names are identifiers, got {var!r}")
            continue
        if var in hps:
            p.add(loc + ("indices", var), f"{var!r} is both an index and a hyperparameter; rename the index")
            continue
        try:
            a, b = parse_range(text)
        except (ValueError, expr.ExprError) as exc:
            p.add(loc + ("indices", var), str(exc))
            continue
        unknown = sorted((expr.names(a) | expr.names(b)) - set(hps))
        if unknown:
            p.add(loc + ("indices", var), f"unknown hyperparameter {unknown[0]!r} in {text!r}; "
                  f"declare it under hyperparameters (known: {', '.join(hps) or 'none'})")
            continue
        indices.append((var, a, b))
    known_vars = {v for v, _, _ in indices}
    declared_vars = set(idx_raw) if isinstance(idx_raw, dict) else set()
    # layout
    entries = []
    lay = raw.get("layout")
    if not isinstance(lay, dict) or not lay:
        p.add(loc + ("layout",), "expected a mapping of state_dict key: [shape expressions]")
        lay = {}
    for key, dims in lay.items():
        where = loc + ("layout", key)
        if not isinstance(key, str) or not key:
            p.add(where, f"keys are state_dict names, got {key!r}")
            continue
        if not isinstance(dims, list):
            p.add(where, f"expected a list of dimensions, like [3*hidden_size, filters], got {dims!r}")
            continue
        try:
            entry = key_pattern(key, dims)
        except expr.ExprError as exc:
            p.add(where, str(exc))
            continue
        except ValueError as exc:
            p.add(where, str(exc))
            continue
        bad_vars = [v for v in entry.variables if v not in known_vars]
        for v in bad_vars:
            if v not in declared_vars:
                p.add(where, f"index {{{v}}} has no range; declare it under indices, like {v}: \"0..num_layers\"")
        if bad_vars:
            continue
        ok = True
        for j, node in enumerate(entry.dims):
            unknown = sorted(expr.names(node) - set(hps) - set(entry.variables))
            if unknown:
                ok = False
                close = difflib.get_close_matches(unknown[0], list(hps), n=1)
                p.add(where + (j,), f"unknown hyperparameter {unknown[0]!r} in {entry.dims_text[j]!r}; "
                      + (f"did you mean {close[0]!r}? " if close else "")
                      + f"declare it under hyperparameters (known: {', '.join(hps) or 'none'})")
        if ok:
            entries.append(entry)
    literal = [e for e in entries if not e.variables]
    if lay and not literal and len(p.items) == start:
        p.add(loc + ("layout",), "needs at least one key without an index (the signature that claims a file)")
    # the rest
    buffers = raw.get("buffers")
    if buffers is None:
        buffers_t = DEFAULT_BUFFERS
    elif isinstance(buffers, list) and all(isinstance(b, str) for b in buffers):
        buffers_t = tuple(buffers)
    else:
        p.add(loc + ("buffers",), "expected a list of key patterns (fnmatch, like '*.running_mean')")
        buffers_t = DEFAULT_BUFFERS
    names = raw.get("names") or []
    if not isinstance(names, list) or not all(isinstance(n, str) and n.strip() for n in names):
        p.add(loc + ("names",), "expected a list of name tokens, like [kws, kwsnet]")
        names = []
    build = raw.get("build")
    if build is not None and (not isinstance(build, str) or not _BUILD.match(build)):
        p.add(loc + ("build",), f"expected \"package.module:attr\", got {build!r}")
        build = None
    needs_scaler = raw.get("needs_scaler", False)
    if not isinstance(needs_scaler, bool):
        p.add(loc + ("needs_scaler",), f"expected true or false, got {needs_scaler!r}")
        needs_scaler = False
    readout = raw.get("readout")
    if readout is not None and not isinstance(readout, str):
        p.add(loc + ("readout",), f"expected a string, got {readout!r}")
    niw = raw.get("not_in_weights") or {}
    if not isinstance(niw, dict):
        p.add(loc + ("not_in_weights",), "expected a mapping of name: default")
        niw = {}
    sig = raw.get("signature")
    literal_keys = [e.text for e in literal]
    if sig is None:
        signature = tuple(e.text for e in literal if len(e.dims) >= 2) or tuple(literal_keys)
    elif isinstance(sig, list) and sig and all(isinstance(s, str) and s in literal_keys for s in sig):
        signature = tuple(sig)
    else:
        p.add(loc + ("signature",), "expected a list of layout keys without an index")
        signature = tuple(literal_keys)
    if len(p.items) != start or name is None:
        return None
    template = Template(hyperparameters=tuple(hps), defaults=tuple(hps.items()), indices=tuple(indices),
                        entries=tuple(entries), buffers=buffers_t, signature=signature)
    defaults = {k: (expr.Derived(v) if isinstance(v, str) else v) for k, v in hps.items()}
    return Family(name=name, hyperparameters=defaults, template=template, not_in_weights=dict(niw),
                  names=tuple(str(n) for n in names), needs_scaler=needs_scaler, readout=readout, build=build,
                  source=kind, origin=source, description=str(raw.get("description") or ""))


def parse_families(raw: Any, source: str, *, kind: str = "file", data: Any = None,
                   base: tuple = ("families",)) -> list[Family]:
    """Family records from a loaded `families:` list (raises FamilyError listing every problem)."""
    p = _Problems(source, data if data is not None else {"families": raw}, base)
    if not isinstance(raw, list) or not raw:
        p.add((), "expected a list of families, each with name, hyperparameters and layout")
        _raise(p)
    out: list[Family] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(raw):
        fam = _one(item, i, p, source, kind)
        if fam is None:
            continue
        if fam.name in seen:
            p.add((i, "name"), f"two families named {fam.name!r} (also families[{seen[fam.name]}]); rename one")
            continue
        seen[fam.name] = i
        out.append(fam)
    if p.items:
        _raise(p)
    return out


def _raise(p: _Problems) -> None:
    lines = p.render()
    shown = lines[:MAX_REPORTED] + ([f"... and {len(lines) - MAX_REPORTED} more"] if len(lines) > MAX_REPORTED else [])
    if len(shown) == 1:
        raise FamilyError(f"invalid family declaration: {shown[0]}")
    raise FamilyError(f"invalid family declarations ({len(lines)} problems):\n  " + "\n  ".join(shown))


def load_family_file(path: str | Path, *, source: str = "file") -> list[Family]:
    """Parse a family file (FamilyError naming file, line and field for every problem)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FamilyError(f"{path}: no such family file", hint="give a YAML file with a families: list") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FamilyError(f"{path}: cannot read the family file: {exc}") from None
    try:
        data = yamlio.load_text(text)
    except Exception as exc:  # yaml.YAMLError and friends
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise FamilyError(f"{where}: not valid YAML: {getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(data, dict) or "families" not in data:
        raise FamilyError(f"{path}:1: expected a mapping with a `families:` list at the top level",
                          hint="see docs/families.md for the format")
    extra = [k for k in data if k != "families"]
    if extra:
        raise FamilyError(f"{path}:{data.lines.get(extra[0], 1)}: unknown top-level field {extra[0]!r}; "
                          "a family file holds only `families:`")
    return parse_families(data["families"], str(path), kind=source, data=data)


def add_family_files(paths: list[str | Path] | tuple, registry: Any = None) -> list[Family]:
    """Load each family file and register its families (FamilyError for any problem, naming the file)."""
    from ckreg.families.registry import registry as _registry

    reg = registry or _registry()
    out: list[Family] = []
    for path in paths:
        fams = load_family_file(path)
        for fam in fams:
            try:
                out.append(reg.add(fam))
            except FamilyError as exc:
                raise FamilyError(f"{path}: {exc}", hint=exc.hint) from None
    return out


__all__ = ["load_family_file", "parse_families", "add_family_files", "FIELDS"]
