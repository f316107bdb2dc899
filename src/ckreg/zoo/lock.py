"""`ckreg manifest lock`: the expected layout of every `module:` model, built on torch's meta device.

A manifest may declare a model by its code (`module: "pkg.mod:ClassOrFactory"`
+ `kwargs`). Locking imports that code, builds the module on the meta device
(no memory, no weights, nothing trained) and records per model the expected
state_dict keys, shapes and dtypes, the parameter and buffer counts and a hash
of the architecture block, in `<manifest stem>.lock.json` beside the manifest.
`ckreg audit` reads that file torch-free (`Manifest.read_lock`); a missing or
stale lock is a clear error telling the user to run this again.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from ckreg import fsutil
from ckreg.errors import ManifestError
from ckreg.manifest import Manifest, architecture_sha256, load_manifest

LOCK_VERSION = 1


def _import(target: str, where: str) -> Any:
    mod_name, _, attr = target.partition(":")
    try:
        obj: Any = importlib.import_module(mod_name)
    except Exception as exc:  # noqa: BLE001 - the user's module failing to import is a user error
        raise ManifestError(f"{where}: module {target!r} does not import: {type(exc).__name__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": "),
                            hint="install the package or fix the module: path (\"package.module:Class\")") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ManifestError(f"{where}: module {mod_name!r} has no attribute {attr!r}",
                                hint="fix the module: path (\"package.module:Class\")")
        obj = getattr(obj, part)
    return obj


def build_meta(target: str, kwargs: dict[str, Any], where: str) -> Any:
    """Build `target(**kwargs)` on the meta device; ManifestError unless it is an nn.Module."""
    import torch
    from torch import nn

    factory = _import(target, where)
    if not callable(factory):
        raise ManifestError(f"{where}: {target!r} is not callable", hint="point module: at a class or factory")
    try:
        with torch.device("meta"):
            module = factory(**kwargs)
    except Exception as exc:  # noqa: BLE001 - the user's constructor failing is a user error
        raise ManifestError(f"{where}: {target}(**kwargs) failed: {type(exc).__name__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else ''}",
                            hint="fix kwargs, or make the class buildable on torch's meta device") from None
    if not isinstance(module, nn.Module):
        raise ManifestError(f"{where}: {target}(**kwargs) returned {type(module).__name__}, not a torch.nn.Module",
                            hint="point module: at an nn.Module class or a factory returning one")
    return module


def lock_entry(target: str, kwargs: dict[str, Any], where: str) -> dict[str, Any]:
    module = build_meta(target, kwargs, where)
    sd = module.state_dict()
    keys = {k: {"dtype": str(v.dtype).removeprefix("torch."), "shape": list(v.shape)} for k, v in sd.items()}
    params = sum(p.numel() for p in module.parameters())
    buffers = sum(b.numel() for b in module.buffers())
    return {"module": target, "kwargs": kwargs, "keys": keys, "params": int(params), "buffers": int(buffers)}


def lock_manifest(manifest: str | os.PathLike | Manifest, *, sys_path: list[str] | None = None) -> tuple[Path, dict]:
    """Write `<stem>.lock.json` for every `module:` model; returns (path, lock). The manifest's folder
    is importable while locking (a project's own package beside its manifest)."""
    m = manifest if isinstance(manifest, Manifest) else load_manifest(manifest)
    mods = [d for d in m.models if d.module]
    if not mods:
        raise ManifestError(f"{m.source}: no model declares module:; nothing to lock",
                            hint="declare module: \"package.module:Class\" with kwargs, or audit as is")
    extra = [str(m.base_dir.resolve())] + list(sys_path or [])
    added = [p for p in extra if p not in sys.path]
    sys.path[:0] = added
    try:
        models = {}
        for d in mods:
            where = f"{m.source}:{m.line_of_model(d.name) or 1}: models {d.name!r}"
            entry = lock_entry(d.module, dict(d.kwargs), where)
            entry["architecture_sha256"] = architecture_sha256(d)
            models[d.name] = entry
    finally:
        for p in added:
            if p in sys.path:
                sys.path.remove(p)
    lock = {"ckreg_lock": LOCK_VERSION, "manifest": Path(m.source or "").name, "models": models}
    fsutil.write_text(m.lock_path, json.dumps(lock, indent=1, sort_keys=False) + "\n", overwrite=True)  # regenerated
    return m.lock_path, lock


__all__ = ["lock_manifest", "lock_entry", "build_meta", "LOCK_VERSION"]
