"""The one YAML module: safe loading with line numbers, and stable dumping.

Manifests need "file, line and field path" in their errors (issue #4), so the
loader records where every mapping key starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that remembers the line of each mapping key (1-based)."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    mapping = LineDict()
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in mapping:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        mapping[key] = loader.construct_object(value_node, deep=deep)
        mapping.lines[key] = key_node.start_mark.line + 1
    mapping.line = node.start_mark.line + 1
    return mapping


class LineDict(dict):
    """A dict that knows the source line of itself and of each key."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.lines: dict[Any, int] = {}
        self.line: int | None = None


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_text(text: str) -> Any:
    """Parse YAML safely; mappings come back as `LineDict`."""
    return yaml.load(text, Loader=_LineLoader)  # noqa: S506 - SafeLoader subclass


def load_path(path: str | Path) -> Any:
    return load_text(Path(path).read_text(encoding="utf-8"))


def loc_str(loc: tuple, top: str = "") -> str:
    """A pydantic error location as a field path (`models[2].architecture`), `top` when empty."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or top


def line_of(data: Any, loc: tuple) -> int | None:
    """Best line for a pydantic error location inside data loaded by `load_text`."""
    line = getattr(data, "line", None)
    node = data
    for part in loc:
        if isinstance(node, LineDict) and part in node:
            line = node.lines.get(part, line)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
            line = getattr(node, "line", line)
        else:
            break
    return line


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def dump(data: Any) -> str:
    """Stable, human-friendly YAML (insertion order kept, unicode kept)."""
    return yaml.safe_dump(_plain(data), sort_keys=False, allow_unicode=True, default_flow_style=False)


def _render_scalar(value: str, style: str | None) -> str:
    """`value` as a YAML scalar in the original quoting style where that is safe."""
    import json

    if style == "'" and "\n" not in value:
        return "'" + value.replace("'", "''") + "'"
    if style is None and value and value == value.strip() and not any(c in value for c in ",[]{}#\n\"'"):
        try:
            if yaml.safe_load(value) == value and ": " not in value:
                return value
        except yaml.YAMLError:
            pass
    return json.dumps(value, ensure_ascii=False)   # a JSON string is a valid double-quoted YAML scalar


def replace_scalars(text: str, edits: dict[tuple, str]) -> str:
    """Replace string scalars at `loc` paths (e.g. ("models", 2, "path")) in YAML text, keeping
    everything else (comments, order, quoting, layout) byte for byte.

    Used by `ckreg rename -m` (issue #4) to make a manifest follow renamed files.
    Raises KeyError for a location that is not a scalar, ValueError if the result
    would not parse back to exactly the intended data.
    """
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    spans = []
    for loc, new in edits.items():
        node = root
        for part in loc:
            if isinstance(node, yaml.MappingNode):
                match = [v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == str(part)]
                if not match:
                    raise KeyError(f"no key {part!r} at {loc}")
                node = match[0]
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
                node = node.value[part]
            else:
                raise KeyError(f"cannot follow {part!r} at {loc}")
        if not isinstance(node, yaml.ScalarNode):
            raise KeyError(f"{loc} is not a scalar")
        spans.append((node.start_mark.index, node.end_mark.index, _render_scalar(new, node.style)))
    out = text
    for start, end, rendered in sorted(spans, reverse=True):
        out = out[:start] + rendered + out[end:]
    expected = _plain(load_text(text))
    for loc, new in edits.items():
        node = expected
        for part in loc[:-1]:
            node = node[part]
        node[loc[-1]] = new
    if _plain(load_text(out)) != expected:
        raise ValueError("rewriting the YAML in place would change more than the intended values")
    return out
