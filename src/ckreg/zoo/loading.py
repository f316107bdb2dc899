"""Loading checkpoints into the zoo with safe loaders only (issue #3; issue #2, "never execute").

Weights: `torch.load(path, weights_only=True, map_location="cpu")` (PyTorch's
restricted unpickler) or safetensors, unwrapped with the readers' own
container list and prefix rules (`ckreg.readers.unwrap`: `module.`,
`_orig_mod.`, `_forward_module.`, a root attribute such as `model.`), so the
keys the zoo loads are exactly the keys the inspector saw. Architecture: the
inspector (`ckreg.inspect.inspect_path` + `spec_from_inspection`), which reads
the file symbolically; it is the only detector.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from ckreg.arch import ArchSpec
from ckreg.errors import ReadError, VerificationError
from ckreg.families import find, name_label
from ckreg.readers.unwrap import CONTAINERS, strip_prefixes

SPEC_METADATA_KEYS = ("ckreg.spec", "spec", "arch", "ckreg_spec")


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def _strip_prefixes(sd: dict[str, "torch.Tensor"]) -> dict[str, "torch.Tensor"]:
    """The readers' prefix rules (`ckreg.readers.unwrap.strip_prefixes`), applied to real tensors."""
    names, _ = strip_prefixes(list(sd))
    return dict(zip(names, sd.values()))


def _jsonable(obj: Any, depth: int = 0) -> Any:
    if depth > 6:
        return repr(obj)
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if isinstance(obj, torch.Tensor):
        return obj.item() if obj.numel() == 1 else f"tensor{list(obj.shape)}"
    if isinstance(obj, dict):
        return {str(k): _jsonable(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v, depth + 1) for v in obj]
    return repr(obj)


def load_state_dict(path: str | os.PathLike) -> tuple[dict[str, "torch.Tensor"], dict[str, Any]]:
    """(state_dict, metadata): the unwrapped, prefix-stripped tensors and JSON-able metadata.

    metadata holds Lightning `hyper_parameters`, `epoch`, `global_step` or the
    safetensors `__metadata__` map. ReadError for anything the safe loaders refuse.
    """
    p = Path(path)
    if not p.is_file():
        raise ReadError("no such file", path=str(p))
    with open(p, "rb") as fh:
        head = fh.read(16)
    meta: dict[str, Any] = {}
    if p.suffix == ".safetensors" or (len(head) >= 9 and head[8:9] == b"{"):
        try:
            from safetensors import safe_open
            from safetensors.torch import load_file

            sd = load_file(str(p), device="cpu")
            with safe_open(str(p), framework="pt") as f:
                meta = {"__metadata__": dict(f.metadata() or {})}
        except Exception as exc:  # safetensors raises its own error types
            if p.suffix == ".safetensors":
                raise ReadError(f"not a valid safetensors file: {exc}", path=str(p)) from exc
        else:
            return _strip_prefixes(dict(sd)), meta
    try:
        obj = torch.load(p, weights_only=True, map_location="cpu")
    except Exception as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ReadError(f"refused by the safe loader (torch.load weights_only=True): {msg}", path=str(p),
                        hint="run `ckreg inspect` on it; never load it with weights_only=False") from exc
    sd = None
    if _is_state_dict(obj):
        sd = obj
    elif isinstance(obj, dict):
        for key in CONTAINERS:
            if _is_state_dict(obj.get(key)):
                sd = obj[key]
                break
        for key in ("hyper_parameters", "epoch", "global_step", "pytorch-lightning_version", "hparams_name"):
            if key in obj:
                meta[key] = _jsonable(obj[key])
    if sd is None:
        raise ReadError("no state_dict found (looked at the top level and under "
                        + ", ".join(CONTAINERS) + ")", path=str(p))
    return _strip_prefixes(dict(sd)), meta


def _spec_from_metadata(meta: dict[str, Any]) -> ArchSpec | None:
    """A spec recorded by ckreg's trainer (safetensors `__metadata__` or Lightning `hyper_parameters`)."""
    candidates: list[Any] = []
    md = meta.get("__metadata__") or {}
    for key in SPEC_METADATA_KEYS:
        if key in md:
            candidates.append(md[key])
    hp = meta.get("hyper_parameters")
    if isinstance(hp, dict):
        candidates.append(hp.get("spec", hp))
    for cand in candidates:
        if isinstance(cand, str):
            try:
                cand = json.loads(cand)
            except ValueError:
                continue
        if isinstance(cand, dict) and isinstance(cand.get("family"), str) and find(cand["family"]) is not None:
            fields = {k: v for k, v in cand.items() if k in ArchSpec.model_fields}
            try:
                return ArchSpec(**fields)
            except ValueError:
                continue
    return None


def family_from_name(path: Path, candidates: list[str]) -> str | None:
    """The one tied family the file or folder name spells out, for weights that cannot tell.

    ScaleAware and ScaleHard have identical keys and shapes (spec, "What weights
    cannot tell"); a name such as `MSCSGRU_ScaleHard_best.ckpt` is then the only
    evidence left. The audit's name matcher (`ckreg.families.name_label`) over the
    file name, then its two nearest folders; no name leaves the choice to the caller.
    """
    label = name_label("/".join(path.parts[-3:]), candidates=candidates)
    return label[0] if label else None


def load_checkpoint(path: str | os.PathLike, *, spec: ArchSpec | None = None, family: str | None = None,
                    readout: str | None = None):
    """(module, spec, inspection): see `ckreg.zoo.load_checkpoint`."""
    from ckreg.inspect.model import Inspection
    from ckreg.zoo import build

    from ckreg.inspect import inspect_path, spec_from_inspection

    p = Path(path)
    sd, meta = load_state_dict(p)          # ReadError for anything the safe loaders refuse
    insp: Inspection = inspect_path(str(p))
    if spec is None and family is None:
        spec = _spec_from_metadata(meta)
    if spec is None:
        if not insp.ok:
            raise ReadError(f"the inspector cannot read it, so its architecture is unknown: {insp.error}",
                            path=str(p), hint="pass spec=ArchSpec.for_family(...) to load it anyway")
        if family is None and insp.family == "ambiguous":
            family = family_from_name(p, insp.ambiguous_between)
        spec = spec_from_inspection(insp, family=family)
    module = build(spec, readout=readout)
    try:
        module.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        raise VerificationError(f"weights do not load strictly into {spec.family}: "
                                + " ".join(str(exc).split())[:600], path=str(p)) from exc
    module.eval()
    return module, spec, insp
