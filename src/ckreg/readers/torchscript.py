"""TorchScript archives (`torch.jit.save`): weights read symbolically, the code never run.

A TorchScript archive is a torch zip whose `data.pkl` pickles a tree of
`__torch__.*` module objects (each BUILD state holds its tensors, submodules
and plain attributes), next to `code/` (the modules' TorchScript source) and
`constants.pkl`. `torch.jit.load` compiles and runs that code, so the archive
is one `torchscript-code` warning, not one `unsafe-global` per `__torch__`
class: those classes are defined by the archive itself and rebuilt by the
TorchScript loader, not imported by pickle. Any other global outside the
allowlist is still an error.

Parameters and buffers come from each class's recorded `__parameters__` and
`__buffers__` lists in `code/` (read as text with a regular expression,
never executed); where a class has no such record, a tensor's
`requires_grad` flag decides.
"""

from __future__ import annotations

import re
from typing import Any, Iterable

from ckreg.readers.pickle_vm import Call, Global, TensorRef

# torch.jit._pickle helpers that TorchScript pickles use to rebuild typed lists and tags
JIT_PICKLE_HELPERS = frozenset({
    "build_intlist", "build_tensorlist", "build_doublelist", "build_boollist", "build_tensor_from_id",
    "restore_type_tag",
})
CODE_MEMBER_CAP = 4 << 20      # one code/*.py member larger than this is not parsed for its lists
_CLASS = re.compile(r"^class\s+([A-Za-z_][A-Za-z0-9_]*)\s*\(\s*Module\s*\)\s*:", re.M)
_LIST = r"\[\s*((?:\"[^\"\n]*\"\s*,\s*)*(?:\"[^\"\n]*\"\s*)?)\]"
_PARAMS = re.compile(r"^\s+__parameters__\s*=\s*" + _LIST, re.M)
_BUFFERS = re.compile(r"^\s+__buffers__\s*=\s*" + _LIST, re.M)
_NAME = re.compile(r"\"([^\"\n]*)\"")


def is_torchscript(names: Iterable[str]) -> bool:
    """A zip with `code/` members beside a `constants.pkl` or `data.pkl` (what torch.jit.save writes)."""
    names = list(names)
    has_code = any(n.startswith("code/") or "/code/" in n for n in names)
    has_pkl = any(n.endswith(("constants.pkl", "data.pkl")) for n in names)
    return has_code and has_pkl


def is_script_global(module: str, name: str) -> bool:
    """`__torch__.*` classes and torch.jit._pickle helpers: the TorchScript loader's, not pickle's."""
    if module == "__torch__" or module.startswith("__torch__."):
        return True
    return module == "torch.jit._pickle" and name in JIT_PICKLE_HELPERS


def code_module(member: str, base: str) -> str | None:
    """`archive/code/__torch__/torch/nn/modules/conv.py` -> `__torch__.torch.nn.modules.conv`."""
    rest = member[len(base):] if member.startswith(base) else None
    if rest is None or not rest.startswith("code/") or not rest.endswith(".py"):
        return None
    return rest[len("code/"):-len(".py")].replace("/", ".")


def parse_class_lists(module: str, text: str) -> dict[str, tuple[list[str], list[str]]]:
    """`{qualified class: (__parameters__, __buffers__)}` for every `class X(Module):` of one code file."""
    out: dict[str, tuple[list[str], list[str]]] = {}
    starts = [(m.start(), m.group(1)) for m in _CLASS.finditer(text)]
    for i, (pos, cls) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else len(text)
        body = text[pos:end]
        p, b = _PARAMS.search(body), _BUFFERS.search(body)
        if p is None and b is None:
            continue
        params = _NAME.findall(p.group(1)) if p else []
        buffers = _NAME.findall(b.group(1)) if b else []
        out[f"{module}.{cls}"] = (params, buffers)
    return out


def module_tensors(root: Any, classes: dict[str, tuple[list[str], list[str]]]
                   ) -> tuple[dict[str, TensorRef], dict[str, bool], list[str]]:
    """(state_dict name -> TensorRef in attribute order, name -> is_parameter, evidence) of a module tree."""
    tensors: dict[str, TensorRef] = {}
    is_param: dict[str, bool] = {}
    stats = {"modules": 0, "recorded": 0, "flag": 0}
    seen: set[int] = set()

    def walk(obj: Any, prefix: str, depth: int) -> None:
        if depth > 200 or id(obj) in seen:
            return
        seen.add(id(obj))
        state = obj.state
        if isinstance(state, tuple) and state and isinstance(state[0], dict):
            state = state[0]
        if not isinstance(state, dict):
            return
        stats["modules"] += 1
        cls = obj.func.full if isinstance(obj.func, Global) else ""
        lists = classes.get(cls)
        if lists is not None:
            stats["recorded"] += 1
        for key, value in state.items():
            if not isinstance(key, str):
                continue
            if isinstance(value, TensorRef):
                name = prefix + key
                tensors[name] = value
                if lists is not None and (key in lists[0] or key in lists[1]):
                    is_param[name] = key in lists[0]
                else:
                    is_param[name] = bool(value.requires_grad)
                    stats["flag"] += 1
            elif isinstance(value, Call) and _is_script_module(value):
                walk(value, f"{prefix}{key}.", depth + 1)

    if isinstance(root, Call) and _is_script_module(root):
        walk(root, "", 0)
    evidence = []
    if stats["modules"]:
        evidence.append(f"TorchScript module tree: {stats['modules']} modules, {len(tensors)} tensors "
                        f"(state_dict names rebuilt from module attributes)")
        if stats["recorded"]:
            evidence.append(f"parameters vs buffers from __parameters__/__buffers__ of {stats['recorded']} "
                            f"classes in code/" + (f"; {stats['flag']} tensors by their requires_grad flag"
                                                   if stats["flag"] else ""))
        elif tensors:
            evidence.append("parameters vs buffers from each tensor's requires_grad flag (no __parameters__ "
                            "records in code/)")
    return tensors, is_param, evidence


def _is_script_module(obj: Call) -> bool:
    return isinstance(obj.func, Global) and is_script_global(obj.func.module, obj.func.name) \
        and obj.func.module != "torch.jit._pickle"
