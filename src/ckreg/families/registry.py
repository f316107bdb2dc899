"""The family registry: built-ins, plug-ins, and families declared in files or manifests.

`registry()` is the process's registry, filled on first use with the 14
built-ins (`ckreg.families.builtin`, each registered by `@register_family`)
and then every plug-in of the entry-point group `ckreg.families`. A plug-in
that fails to load is recorded in `Registry.problems` (shown by
`ckreg families` and by the commands that detect families), never a crash.
Families from `--families FILE` or a manifest's `families:` section are added
with `Registry.add`; two families with one name are an error naming both
origins. Iteration order is registration order (ranking ties keep it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import threading
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from ckreg.errors import FamilyError
from ckreg.families.record import Family

ENTRY_POINT_GROUP = "ckreg.families"

_lock = threading.RLock()
_REGISTRY: "Registry | None" = None
_LOADING: list[tuple[str, str | None]] = []   # (source, origin) while a plug-in module is imported
_BUILTINS: list[Family] = []                   # the built-in records, in registration order


class Registry:
    """Families by name, in registration order."""

    def __init__(self) -> None:
        self._families: dict[str, Family] = {}
        self.problems: list[str] = []
        self._regex: Any = None

    # -- reading --
    def __iter__(self) -> Iterator[Family]:
        return iter(list(self._families.values()))

    def __len__(self) -> int:
        return len(self._families)

    def __contains__(self, name: object) -> bool:
        return name in self._families

    def names(self) -> tuple[str, ...]:
        return tuple(self._families)

    def find(self, name: str) -> Family | None:
        return self._families.get(name)

    def get(self, name: str) -> Family:
        fam = self._families.get(name)
        if fam is None:
            raise FamilyError(f"unknown family {name!r}",
                              hint=f"known families: {', '.join(self._families)} "
                                   "(declare others with --families FILE or a manifest's families: section)")
        return fam

    def declared(self) -> list[Family]:
        """Families added from files or manifests (what worker processes must be given)."""
        return [f for f in self._families.values() if f.source in ("file", "manifest")]

    # -- writing --
    def add(self, family: Family) -> Family:
        """Register `family`; the same declaration twice is a no-op, two families with one name an error."""
        if not isinstance(family, Family):
            raise FamilyError(f"not a family record: {family!r}",
                              hint="plug-ins yield ckreg.families.Family records or a YAML file path")
        with _lock:
            old = self._families.get(family.name)
            if old is not None:
                if old is family or (old.origin == family.origin and old.source == family.source
                                     and old.origin is not None):
                    return old
                raise FamilyError(
                    f"two families named {family.name!r}: {_where(old)} and {_where(family)}",
                    hint="rename one of them (family names are unique across built-ins, plug-ins and files)")
            self._families[family.name] = family
            self._regex = None
        return family

    def add_all(self, families: Iterable[Family]) -> list[Family]:
        return [self.add(f) for f in families]

    def remove(self, name: str) -> None:
        with _lock:
            self._families.pop(name, None)
            self._regex = None

    @contextlib.contextmanager
    def scoped(self) -> Iterator["Registry"]:
        """Families added inside the block are removed afterwards (tests, library callers)."""
        before = dict(self._families)
        problems = list(self.problems)
        try:
            yield self
        finally:
            with _lock:
                self._families = before
                self.problems = problems
                self._regex = None

    # -- names as labels --
    def name_regex(self) -> tuple["re.Pattern[str]", dict[str, str]]:
        """One pattern over every family's name tokens (longest first) and token -> family."""
        if self._regex is None:
            canon: dict[str, str] = {}
            for fam in self._families.values():
                for tok in fam.tokens:
                    canon.setdefault(tok.lower(), fam.name)
            alts = "|".join(re.escape(t) for t in sorted(canon, key=len, reverse=True))
            # word-ish boundaries: no letter or digit before, no letter after (digits may follow: WRN16)
            pattern = re.compile(rf"(?<![A-Za-z0-9])({alts})(?![A-Za-z])", re.IGNORECASE) if alts else None
            self._regex = (pattern, canon)
        return self._regex


def _where(fam: Family) -> str:
    return f"{fam.source} {fam.origin}" if fam.origin else fam.source


def register_family(fn: Callable[[], Family] | Family) -> Any:
    """Decorator (or call) that registers a family record, in the spirit of timm's `register_model`.

    ```python
    @register_family
    def kwsnet() -> Family:
        return Family(name="KWSNet", hyperparameters={...}, template=...)
    ```
    Inside a plug-in module the record is marked `source="plug-in"` with the entry point as origin.
    """
    fam = fn() if callable(fn) and not isinstance(fn, Family) else fn
    if _LOADING and fam.source == "built-in":
        source, origin = _LOADING[-1]
        fam = dataclasses.replace(fam, source=source, origin=fam.origin or origin)
    elif fam.source == "built-in" and all(b.name != fam.name for b in _BUILTINS):
        _BUILTINS.append(fam)
    registry().add(fam)
    return fn


def registry() -> Registry:
    """The process's registry (built-ins and plug-ins loaded on first use)."""
    global _REGISTRY
    if _REGISTRY is None:
        with _lock:
            if _REGISTRY is None:
                _REGISTRY = Registry()
                import ckreg.families.builtin  # noqa: F401  (registers the 14 built-ins)

                _load_plugins(_REGISTRY)
    return _REGISTRY


def get(name: str) -> Family:
    """The family record named `name` (FamilyError naming the known ones if absent)."""
    return registry().get(name)


def find(name: str) -> Family | None:
    return registry().find(name)


def names() -> tuple[str, ...]:
    return registry().names()


# -- plug-ins -----------------------------------------------------------------------------------

def _entry_points() -> list[Any]:
    from importlib.metadata import entry_points

    try:
        return list(entry_points(group=ENTRY_POINT_GROUP))
    except TypeError:  # pragma: no cover - Python < 3.10 API
        return list(entry_points().get(ENTRY_POINT_GROUP, []))


def _dist_name(ep: Any) -> str:
    dist = getattr(ep, "dist", None)
    return getattr(dist, "name", None) or "its package"


def _same_declaration(old: Family | None, new: Family) -> bool:
    if old is None or old.source != "plug-in":
        return False
    a, b = old.summary(), new.summary()
    a.pop("origin"), b.pop("origin")
    return a == b


def _load_plugins(reg: Registry) -> None:
    """Every entry point of `ckreg.families`: records, a callable giving records, or a YAML file path."""

    def load_family_file(path: Path, source: str) -> list[Family]:   # PyYAML only for a plug-in's YAML file
        from ckreg.families.yamlfile import load_family_file as load

        return load(path, source=source)

    for ep in _entry_points():
        origin = f"{ep.name} = {ep.value}"
        fix = f"fix or uninstall {_dist_name(ep)}"
        before = reg.names()
        _LOADING.append(("plug-in", origin))
        try:
            obj = ep.load()
            if callable(obj) and not isinstance(obj, Family):
                obj = obj()
            if obj is None:
                got: list[Family] = []
            elif isinstance(obj, (str, os.PathLike)):
                got = load_family_file(Path(obj), source="plug-in")
            elif isinstance(obj, Family):
                got = [obj]
            elif isinstance(obj, Iterable):
                got = []
                for item in obj:
                    if isinstance(item, (str, os.PathLike)):
                        got.extend(load_family_file(Path(item), source="plug-in"))
                    else:
                        got.append(item)
            else:
                raise FamilyError(f"yielded {type(obj).__name__}, not family records or a YAML file path")
            for fam in got:
                if isinstance(fam, Family) and fam.source == "built-in":
                    fam = dataclasses.replace(fam, source="plug-in", origin=fam.origin or origin)
                elif isinstance(fam, Family) and fam.origin and origin not in fam.origin:
                    fam = dataclasses.replace(fam, source="plug-in", origin=f"{origin} ({fam.origin})")
                if isinstance(fam, Family) and fam.name in before and reg.find(fam.name) is fam:
                    continue
                if isinstance(fam, Family) and _same_declaration(reg.find(fam.name), fam):
                    continue   # registered by its module's @register_family, then named by the entry point
                reg.add(fam)
        except FamilyError as exc:
            reg.problems.append(f"plug-in {origin}: {exc.render()}; {fix}")
        except Exception as exc:  # noqa: BLE001 - a broken plug-in is reported, never a crash
            msg = str(exc).splitlines()[0] if str(exc) else ""
            reg.problems.append(f"plug-in {origin} failed to load: {type(exc).__name__}"
                                + (f": {msg}" if msg else "") + f"; {fix}")
        finally:
            _LOADING.pop()


def reload() -> Registry:
    """Start over: built-ins and plug-ins again (after installing a plug-in in-process; tests)."""
    global _REGISTRY

    with _lock:
        registry()  # the built-ins are imported once
        _REGISTRY = Registry()
        _REGISTRY.add_all(_BUILTINS)
        _load_plugins(_REGISTRY)
    return _REGISTRY


__all__ = ["Registry", "registry", "register_family", "get", "find", "names", "reload", "ENTRY_POINT_GROUP"]


def listing(files: Iterable[str | os.PathLike] = ()) -> tuple[list[Family], list[str]]:
    """(every registered family, plug-in problems) after registering `files` (`ckreg families`)."""
    from ckreg.families.yamlfile import add_family_files

    reg = registry()
    if files:
        add_family_files(list(files), reg)
    return list(reg), list(reg.problems)
