"""`ckreg export`: a registered pair as plain files (issue #5, "Registry").

    weights.safetensors   the state_dict (keys as `ckreg.zoo.build(spec)` expects);
                          `__metadata__` holds the spec, the digests and the preprocessing
    scaler.json           the scaler (mean/scale/var per channel), if the pair has one
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


def preprocessing(version: Version) -> dict[str, Any]:
    """How raw episodes become model input, as the model was trained (recorded T wins over the default)."""
    prov = version.provenance or {}
    return {
        "T": int(prov.get("T", SEQ_LEN)),
        "pad_value": float(prov.get("pad_value", PAD_VALUE)),
        "mask": "1 = padding row",
        "cut": "first T rows",
        "scaling": "(x - mean) / scale per channel, padding rows included",
        "channels": (version.scaler.channel_names if version.scaler and version.scaler.channel_names else None),
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
        "```python",
        "import ckreg  # with the registry at hand",
        f'm = ckreg.load("{version.name}@{version.version}")',
        "pred = m.predict(episodes)          # list of [t, C] arrays or one [N, T, C] array",
        "```",
        "",
        "Without ckreg: `safetensors.torch.load_file(\"weights.safetensors\")` gives the state_dict for the",
        "architecture in the header (`hyperparameters`, also in the safetensors `__metadata__` as `spec`);",
        "`json.load(open(\"scaler.json\"))` gives the per-channel `mean` and `scale`.",
        "",
    ]
    return "---\n" + yaml_dump(front) + "---\n\n" + "\n".join(body)


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
    names = [WEIGHTS] + ([SCALER_JSON] if version.scaler else []) + ([SCALER_PKL] if pkl else []) \
        + ([CKPT] if ckpt else []) + [CARD]
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
        if sc_blob is not None:
            from ckreg.scaler import load_scaler

            with warnings.catch_warnings():   # version skew was recorded at registration
                warnings.simplefilter("ignore")
                scaler = load_scaler(sc_blob)
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
