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
