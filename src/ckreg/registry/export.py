"""`ckreg export`: a registered pair as plain files (issue #5, "Registry").

    weights.safetensors   the state_dict (keys as `ckreg.zoo.build(spec)` expects);
                          `__metadata__` holds the spec, the digests and the preprocessing
    scaler.json           the scaler (mean/scale/var per channel, channel names), if the pair has one
    model.py              the architecture as plain torch code, no ckreg needed (`ckreg.registry.standalone`):
                          `import model; model.load().predict(episodes)`; checked against the zoo first
    scaler.pkl            on request (`pkl=True`), for sklearn users
    README.md             model card: YAML front matter (family, hyperparameters, metrics,
                          provenance, digests) + how to use it
    model.ckpt            on request (`ckpt=True`), Lightning-compatible

Blobs are re-hashed before use (IntegrityError on a flipped byte). Nothing is
ever clobbered: an existing target refuses the export unless `force=True`, and
every file is written to a temp name and then linked (no-clobber) or renamed
(force) into place, so a failed export leaves no half-written file.
"""

from __future__ import annotations

import json
import os
import uuid
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ckreg.errors import OutputExistsError
from ckreg.fsutil import file_sha256, publish, write_text
from ckreg import __version__
from ckreg.errors import IntegrityError, RegistryError
from ckreg.registry.model import Version
from ckreg.yamlio import dump as yaml_dump

if TYPE_CHECKING:
    from ckreg.registry.store import Registry

# SignGlove preprocessing (../shared/spec/families.md, "Data the SignGlove families were trained on")
from ckreg.data.signglove import DEFAULT_T as SEQ_LEN, PAD_VALUE  # noqa: E402  (one source of truth)

WEIGHTS = "weights.safetensors"
SCALER_JSON = "scaler.json"
SCALER_PKL = "scaler.pkl"
CARD = "README.md"
CKPT = "model.ckpt"
MODEL_PY = "model.py"


def channel_names(version: Version) -> tuple[list[str] | None, str]:
    """The input channels in order, and where that knowledge comes from (the card says which)."""
    from ckreg.data import SIGNGLOVE_CHANNELS

    if version.scaler and version.scaler.channel_names:
        return list(version.scaler.channel_names), "recorded with the scaler"
    prov = version.provenance or {}
    for key in ("channels", "channel_names"):
        if isinstance(prov.get(key), list) and len(prov[key]) == version.spec.input_size:
            return [str(c) for c in prov[key]], "recorded in the provenance"
    if version.spec.input_size == len(SIGNGLOVE_CHANNELS):
        return list(SIGNGLOVE_CHANNELS), "not recorded; assumed to be the SignGlove order the families are specified with"
    return None, "not recorded"


def preprocessing(version: Version) -> dict[str, Any]:
    """How raw episodes become model input, as the model was trained (recorded T wins over the default)."""
    prov = version.provenance or {}
    return {
        "T": int(prov.get("T", SEQ_LEN)),
        "pad_value": float(prov.get("pad_value", PAD_VALUE)),
        "mask": "1 = padding row",
        "cut": "first T rows",
        "scaling": "(x - mean) / scale per channel, padding rows included",
        "channels": channel_names(version)[0],
        "channels_source": channel_names(version)[1],
    }


def safetensors_metadata(version: Version) -> dict[str, str]:
    meta = {
        "format": "pt",
        "ckreg_version": __version__,
        "name": version.name,
        "version": str(version.version),
        "family": version.family,
        "spec": version.spec.model_dump_json(),
        "sha256": version.sha256,
        "weights_sha256": version.weights_sha256,
        "scaler_sha256": version.scaler.sha256 if version.scaler else None,
        "pair_digest": version.pair_digest,
        "accuracy": None if version.accuracy is None else repr(version.accuracy),
        "class_names": json.dumps(version.class_names, ensure_ascii=False) if version.class_names else None,
        "preprocessing": json.dumps(preprocessing(version), ensure_ascii=False),
    }
    return {k: v for k, v in meta.items() if v is not None}


def loads_with(version: Version, files: dict[str, str]) -> list[str]:
    """One line per file: exactly what reads it and what it gives (the card's "What loads with what")."""
    import platform

    out = [f"- `{WEIGHTS}`: the state_dict (tensors only, no code) for any safetensors reader "
           f"(`safetensors.torch.load_file`, or `model.read_safetensors` here); the architecture is not in it."]
    if MODEL_PY in files:
        out.append(f"- `{MODEL_PY}`: the architecture and preprocessing as plain PyTorch; needs only `torch` "
                   f"(exported and checked with torch {_torch_version()}, Python {platform.python_version()}). "
                   "`model.load(folder)` builds the model, loads the weights strictly and reads `scaler.json`.")
    else:
        out.append(f"- no `{MODEL_PY}`: ckreg cannot generate a standalone definition of {version.family}; "
                   "build it with `ckreg.zoo.build` (ckreg installed) or your own code for the spec above.")
    if SCALER_JSON in files:
        out.append(f"- `{SCALER_JSON}`: plain JSON (`json.load`): `mean` and `scale` per input channel, in the order "
                   "of `channel_names`.")
    else:
        out.append("- no scaler: this pair was registered without one, so raw episodes cannot be scaled.")
    if SCALER_PKL in files:
        out.append(f"- `{SCALER_PKL}`: a scikit-learn `StandardScaler` pickle for code that expects one; unpickling "
                   "runs code, so load it only from a source you trust (`scaler.json` holds the same numbers).")
    if CKPT in files:
        out.append(f"- `{CKPT}`: `torch.load(path, weights_only=True)` gives `state_dict` (keys prefixed `model.`) "
                   "and `hyper_parameters` (the spec); a LightningModule holding the model as `self.model` loads it.")
    return out


def _torch_version() -> str:
    from ckreg.zoo.compare import torch_version

    return torch_version()


def model_card(version: Version, files: dict[str, str]) -> str:
    """README.md: a YAML front matter (machine-readable) and a short human part."""
    ver = version.verification
    metrics: dict[str, Any] = {}
    if ver is not None:
        metrics = {
            "accuracy": ver.accuracy,
            "passed": ver.passed,
            "expect_acc": ver.expect_acc,
            "data_hash": ver.data_hash,
            "verified_at": ver.date,
            "per_class": ver.per_class,
        }
        metrics = {k: v for k, v in metrics.items() if v is not None}
    spec = version.spec.model_dump(mode="json")
    front = {
        "name": version.name,
        "version": version.version,
        "family": version.family,
        "hyperparameters": {k: v for k, v in spec.items() if k != "family" and v is not None},
        "metrics": metrics,
        "provenance": version.provenance or {},
        "digests": {
            "checkpoint_sha256": version.sha256,
            "weights_sha256": version.weights_sha256,
            "scaler_sha256": version.scaler.sha256 if version.scaler else None,
            "pair_digest": version.pair_digest,
        },
        "files": dict(files),
        "preprocessing": preprocessing(version),
        "channels": preprocessing(version)["channels"],
        "class_names": version.class_names,
        "registered": {"at": version.created_at, "by": version.created_by, "source_path": version.source_path},
        "exported_by": f"ckreg {__version__}",
    }
    acc = f"{ver.accuracy:.2%}" if ver is not None and ver.accuracy is not None else "not verified"
    status = "" if ver is None else (" (passed)" if ver.passed else " (FAILED verification)")
    pre = preprocessing(version)
    body = [
        f"# {version.name} v{version.version} ({version.family})",
        "",
        f"Accuracy: {acc}{status}. Exported from the ckreg registry; the YAML header above is the machine-readable record.",
        "",
        "## Files",
        "",
        *[f"- `{name}` — sha256 `{digest}`" for name, digest in files.items()],
        "",
        "## Use",
        "",
        f"Input: raw episodes `[t, {version.spec.input_size}]`, cut or padded to T = {pre['T']} rows; padding rows hold the",
        f"raw value {pre['pad_value']} on every channel and are marked 1 in the padding mask; then every row",
        "(padding included) is scaled with `scaler.json` as `(x - mean) / scale`.",
        "",
        f"Channels, in order: {', '.join(pre['channels']) if pre.get('channels') else 'unknown'} "
        f"({pre.get('channels_source', 'not recorded')}).",
        "",
        *(["Without ckreg (torch only), from this folder:", "", "```python", "import model",
           "m = model.load()                    # this folder",
           "labels = m.predict(episodes)        # list of raw [t, C] arrays or nested lists", "```", ""]
          if MODEL_PY in files else []),
        "With ckreg and the registry at hand:",
        "",
        "```python",
        "import ckreg",
        f'm = ckreg.load("{version.name}@{version.version}")',
        "pred = m.predict(episodes)          # list of [t, C] arrays or one [N, T, C] array",
        "```",
        "",
        "## What loads with what",
        "",
        *loads_with(version, files),
        "",
    ]
    return "---\n" + yaml_dump(front) + "---\n\n" + "\n".join(body)


def _standalone_text(version: Version) -> str | None:
    """model.py for families the zoo's own source defines; None (said in the card) for others."""
    from ckreg.arch import FAMILIES
    from ckreg.registry.standalone import model_py

    if version.family not in FAMILIES:
        return None
    return model_py(f"{version.name} v{version.version} ({version.family})", preprocessing(version),
                    version.spec.input_size, version.spec.num_classes)


def _save_scaler(scaler: Any, how: str, path: Path) -> None:
    """Call `Scaler.save_json/save_pickle` (method) or `ckreg.scaler.save_json/save_pickle(scaler, path)`."""
    method = getattr(scaler, how, None)
    if callable(method):
        method(path)
        return
    import ckreg.scaler as scaler_mod

    getattr(scaler_mod, how)(scaler, path)


def _check_weights(path: Path, version: Version, name: str) -> None:
    """The exported tensors must hash to the registered `weights_sha256` (container-independent digest)."""
    if version.weights_sha256 is None:
        return
    from ckreg.inspect import inspect_path

    insp = inspect_path(str(path), hash_weights=True)
    if insp.weights_sha256 != version.weights_sha256:
        raise IntegrityError(f"exported {name} does not reproduce the registered weights "
                             f"(weights_sha256 {str(insp.weights_sha256)[:12]} != {version.weights_sha256[:12]})",
                             hint="this is a bug in the export; nothing was written")


def export_version(reg: "Registry", version: Version, to_dir: Path, pkl: bool = False, ckpt: bool = False,
                   force: bool = False) -> list[Path]:
    if to_dir.exists() and not to_dir.is_dir():
        raise RegistryError("export target is not a directory", path=str(to_dir))
    if pkl and version.scaler is None:
        raise RegistryError(f"{version.ref} has no scaler, so there is no scaler.pkl to export")
    standalone = _standalone_text(version)
    names = [WEIGHTS] + ([MODEL_PY] if standalone is not None else []) + ([SCALER_JSON] if version.scaler else []) \
        + ([SCALER_PKL] if pkl else []) + ([CKPT] if ckpt else []) + [CARD]
    existing = [n for n in names if (to_dir / n).exists() or (to_dir / n).is_symlink()]
    if existing and not force:
        raise RegistryError(f"refusing to overwrite {', '.join(existing)} in {to_dir}",
                            hint="export to an empty directory, or pass --force")

    # re-hash before use: a flipped byte is refused here, never exported
    ck_blob = reg.blob_path(version.sha256)
    sc_blob = reg.blob_path(version.scaler.sha256) if version.scaler else None

    from ckreg.zoo.io import read_state_dict, write_lightning_ckpt, write_safetensors

    to_dir.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    temps: dict[str, Path] = {n: to_dir / f".ckreg-tmp-{tag}-{n}" for n in names}   # suffix kept for readers
    try:
        state = read_state_dict(ck_blob)
        write_safetensors(state, temps[WEIGHTS], safetensors_metadata(version))
        if standalone is not None:
            from ckreg.registry.standalone import check_standalone

            temps[MODEL_PY].write_text(standalone, encoding="utf-8")
            check_standalone(temps[MODEL_PY], version.spec, state, preprocessing(version)["T"])
        if sc_blob is not None:
            from ckreg.scaler import load_scaler

            with warnings.catch_warnings():   # version skew was recorded at registration
                warnings.simplefilter("ignore")
                scaler = load_scaler(sc_blob)
            names_in_order = preprocessing(version)["channels"]
            if names_in_order and not getattr(scaler, "channel_names", None) and hasattr(scaler, "model_copy"):
                scaler = scaler.model_copy(update={"channel_names": list(names_in_order)})
            _save_scaler(scaler, "save_json", temps[SCALER_JSON])
            if pkl:
                _save_scaler(scaler, "save_pickle", temps[SCALER_PKL])
        if ckpt:
            write_lightning_ckpt(state, version.spec, temps[CKPT], extra={
                "name": version.name, "version": version.version, "sha256": version.sha256,
                "weights_sha256": version.weights_sha256, "pair_digest": version.pair_digest,
            })
        for n in (WEIGHTS, CKPT):
            if n in temps:
                _check_weights(temps[n], version, n)
        files = {n: file_sha256(temps[n]) for n in names if n != CARD}
        write_text(temps[CARD], model_card(version, files), overwrite=True)   # our own staged temp file
        for n in names:
            os.chmod(temps[n], 0o644)   # temp files are private (mkstemp); the export is an ordinary file
            with open(temps[n], "rb+") as fh:
                os.fsync(fh.fileno())
        done: list[Path] = []
        for n in names:
            target = to_dir / n
            try:
                publish(temps[n], target, overwrite=force)   # atomic no-clobber, even against a concurrent writer
            except OutputExistsError:
                raise RegistryError(f"refusing to overwrite {n} in {to_dir} (it appeared during the export)",
                                    hint="pass --force") from None
            done.append(target)
        return done
    finally:
        for t in temps.values():
            t.unlink(missing_ok=True)
