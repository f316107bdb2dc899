"""Find the state_dict inside whatever wraps it, and say how (issue #2, families.md "Wrappers").

Containers: a dict holding the state_dict under `state_dict`, `model_state_dict`,
`model`, `net` or `state_dict_ema` (the one whose values are tensors wins).
Prefixes: `module.` (DDP), `_orig_mod.` (torch.compile), `_forward_module.`
(Lightning/Fabric), stripped repeatedly in any order while ALL keys carry one;
then a root attribute such as `model.` when all keys share it and it wraps a
module tree (not a single layer like `fc.weight`/`fc.bias`). Every step is an
evidence line.
"""

from __future__ import annotations

from typing import Any

from ckreg.readers.pickle_vm import Call, Global, TensorRef

CONTAINERS = ("state_dict", "model_state_dict", "model", "net", "state_dict_ema")
WRAPPER_PREFIXES = ("module.", "_orig_mod.", "_forward_module.")
ROOT_WRAPPERS = ("model", "net", "network", "_model", "base_model")


def _tensor_count(d: Any) -> int:
    if not isinstance(d, dict):
        return 0
    return sum(1 for v in d.values() if isinstance(v, TensorRef))


def is_state_dict(d: Any) -> bool:
    """A dict whose values are (mostly) tensors, keyed by strings."""
    if not isinstance(d, dict) or not d:
        return False
    n = _tensor_count(d)
    return n > 0 and n * 2 >= len(d) and all(isinstance(k, str) for k in d)


def _module_state(call: Call, prefix: str, out: dict, depth: int = 0, seen: set | None = None) -> None:
    """What `nn.Module.state_dict()` would give for a pickled module (whole-model pickles)."""
    seen = set() if seen is None else seen
    if depth > 64 or id(call) in seen:
        return
    seen.add(id(call))
    state = call.state
    if not isinstance(state, dict):
        return
    non_persistent = state.get("_non_persistent_buffers_set")
    skip = set(non_persistent) if isinstance(non_persistent, (set, frozenset)) else set()
    for attr in ("_parameters", "_buffers"):
        group = state.get(attr)
        if isinstance(group, dict):
            for k, v in group.items():
                if isinstance(k, str) and isinstance(v, TensorRef) and not (attr == "_buffers" and k in skip):
                    out[prefix + k] = v
    mods = state.get("_modules")
    if isinstance(mods, dict):
        for k, v in mods.items():
            if isinstance(k, str) and isinstance(v, Call):
                _module_state(v, f"{prefix}{k}.", out, depth + 1, seen)


def find_state_dict(root: Any) -> tuple[dict, list[str]]:
    """(state_dict of str -> TensorRef in file order, evidence lines)."""
    evidence: list[str] = []

    def search(obj: Any, path: str, depth: int) -> dict | None:
        if is_state_dict(obj):
            if path:
                evidence.append(f"state_dict found under key {path}")
            else:
                evidence.append("the file is a plain state_dict")
            return obj
        if not isinstance(obj, dict) or depth > 3:
            return None
        present = [k for k in CONTAINERS if k in obj]
        hits = []
        for k in present:
            found_ev = len(evidence)
            got = search(obj[k], f"{path}['{k}']" if path else f"'{k}'", depth + 1)
            if got is not None:
                hits.append((k, got))
                break
            del evidence[found_ev:]
        if hits:
            others = [k for k in present if k != hits[0][0] and _tensor_count(obj[k])]
            if others:
                evidence.append(f"also present, not used: {', '.join(repr(o) for o in others)}")
            return hits[0][1]
        # any other key holding a state_dict (largest wins)
        best = None
        for k, v in obj.items():
            if isinstance(k, str) and is_state_dict(v) and (best is None or _tensor_count(v) > _tensor_count(best[1])):
                best = (k, v)
        if best is not None:
            evidence.append(f"state_dict found under non-standard key {path + '/' if path else ''}'{best[0]}'")
            return best[1]
        return None

    found = search(root, "", 0)
    if found is None and isinstance(root, Call):
        out: dict = {}
        _module_state(root, "", out)
        if out:
            evidence.append(f"state_dict rebuilt from a pickled module ({root.func_name}): a whole-model pickle")
            return out, evidence
    if found is None and isinstance(root, dict):
        for k in CONTAINERS:
            v = root.get(k)
            if isinstance(v, Call):
                out = {}
                _module_state(v, "", out)
                if out:
                    evidence.append(f"state_dict rebuilt from the pickled module under key '{k}' ({v.func_name})")
                    return out, evidence
    if found is None:
        evidence.append("no state_dict found (no dict of tensors at the root or under "
                        + ", ".join(repr(c) for c in CONTAINERS) + ")")
        return {}, evidence
    tensors = {k: v for k, v in found.items() if isinstance(v, TensorRef)}
    skipped = [k for k in found if not isinstance(found[k], TensorRef)]
    if skipped:
        shown = ", ".join(repr(k) if not isinstance(k, Global) else k.full for k in skipped[:5])
        evidence.append(f"{len(skipped)} non-tensor entr{'y' if len(skipped) == 1 else 'ies'} ignored: {shown}"
                        + (" ..." if len(skipped) > 5 else ""))
    return tensors, evidence


def strip_prefixes(names: list[str]) -> tuple[list[str], list[str]]:
    """(new names in the same order, evidence lines)."""
    evidence: list[str] = []
    if not names:
        return names, evidence
    root_done = False
    while True:
        for p in WRAPPER_PREFIXES:
            if all(n.startswith(p) for n in names):
                names = [n[len(p):] for n in names]
                evidence.append(f"stripped prefix '{p}' from {len(names)} keys")
                break
        else:
            if root_done:
                break
            first = names[0].split(".", 1)[0]
            p = first + "."
            if (first and not first.isdigit() and all(n.startswith(p) for n in names)
                    and (first in ROOT_WRAPPERS or _wraps_a_tree([n[len(p):] for n in names]))):
                names = [n[len(p):] for n in names]
                evidence.append(f"stripped root attribute '{p}' shared by all {len(names)} keys")
                root_done = True
                continue
            break
    return names, evidence


def _wraps_a_tree(rest: list[str]) -> bool:
    """After removing a common root, do the keys still describe submodules (not one layer's weight/bias)?"""
    heads = {r.split(".", 1)[0] for r in rest}
    return any("." in r for r in rest) and len(heads) >= 2
