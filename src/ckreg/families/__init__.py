"""The family registry: one record per architecture family (docs/families.md).

Public API (stable):
- `Family` (the record), `register_family` (decorator), `registry()` (the process's `Registry`),
  `get(name)`, `find(name)`, `names()`;
- `load_family_file(path)` / `add_family_files(paths)` / `parse_families(raw, source)` for YAML families;
- `family_in_name(name)` / `name_label(relpath)`: file and folder names as labels;
- `Template`, `expr` for layout templates.

Built-ins, plug-ins (entry-point group `ckreg.families`), a manifest's `families:` section and
`--families FILE` all land here; the inspector, manifest validation, audit, rename, zoo and
trainer read it. Torch-free; below `ckreg.inspect`, above `ckreg.readers`.
"""

from __future__ import annotations

from ckreg.families import expr
from ckreg.families.labels import family_in_name, name_label, names_in
from ckreg.families.record import Family
from ckreg.families.registry import (ENTRY_POINT_GROUP, Registry, find, get, listing, names, register_family,
                                     registry, reload)
from ckreg.families.template import Template

# Family files need PyYAML; most commands never read one, so the YAML loader is imported on
# first use rather than on every start-up (the inspect path stays light).
_YAML_API = ("add_family_files", "load_family_file", "parse_families")


def __getattr__(name: str):
    if name in _YAML_API:
        from ckreg.families import yamlfile

        return getattr(yamlfile, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def builtin_names() -> tuple[str, ...]:
    """The 14 built-in families of the spec, in the spec's order."""
    from ckreg.families.builtin import BUILTIN_FAMILIES

    return BUILTIN_FAMILIES


__all__ = ["Family", "Registry", "Template", "register_family", "registry", "get", "find", "names", "reload",
           "load_family_file", "add_family_files", "parse_families", "family_in_name", "name_label", "names_in",
           "builtin_names", "expr", "listing", "ENTRY_POINT_GROUP"]
