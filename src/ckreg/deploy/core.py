"""Export a registered pair to a deployment format, verify the artifact on data, record it.

`export_deployment(reg, ref, to_dir, fmt, data=...)`:

1. loads the float model from the registry blob (zoo, strict) and its scaler;
2. scores it on the held-out split of `data` (the test split the evaluator
   would use: seed and fractions recorded with the checkpoint, else seed 0);
3. builds the artifact (ONNX, INT8 ONNX or TorchScript) in a temporary folder
   beside `to_dir`, with `scaler.json`, `README.md` (model card with the input
   contract) and `deploy.json` (the metrics); static INT8 calibrates its
   activation ranges on up to `calibration` episodes of the training split of
   the same split (never the scored episodes when verifying on the test split);
4. runs the artifact itself on the same episodes: accuracy, agreement with the
   float model (same top-1), mean/median latency per episode at batch 1;
5. renames the folder into place (`to_dir` must not exist) and records the
   artifact in the registry, linked to the float version.

An artifact that loses more than `tolerance` (a fraction; 0.005 = 0.5 points)
of the float model's accuracy is recorded and written as `failed`, never as
`verified`. A missing runtime, a family that does not export, or an existing
`to_dir` is an error before anything is written.
"""

from __future__ import annotations

import json
import platform
import warnings
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from ckreg import __version__
from ckreg.deploy import formats
from ckreg.errors import UsageError
from ckreg.fsutil import atomic_dir, file_sha256, write_text

DEFAULT_TOLERANCE = 0.005
METRICS_FILE = "deploy.json"
CARD = "README.md"
SCALER = "scaler.json"


class DeployResult(BaseModel):
    """What `ckreg export --format onnx|onnx-int8|torchscript` did (also `deploy.json`)."""

    ref: str
    family: str
    format: str
    status: str                                  # verified | failed
    out: str
    files: dict[str, str] = Field(default_factory=dict)          # name -> sha256
    model_file: str
    model_bytes: int
    inputs: list[str]
    T: int
    pad_value: float | None = None                               # raw value padding rows hold (before scaling)
    channels: list[str] = Field(default_factory=list)            # input channel order
    classes: list[str] = Field(default_factory=list)             # logit index -> class name
    tolerance: float
    split: str
    split_source: str
    n_episodes: int
    data_hash: str | None = None
    float_accuracy: float
    accuracy: float
    accuracy_drop: float                         # float - artifact, a fraction
    agreement: float                             # fraction of episodes with the same top-1 as the float model
    max_abs_logit_diff: float
    latency: dict[str, Any] = Field(default_factory=dict)        # artifact: mean_ms, median_ms, p95_ms, samples
    float_latency: dict[str, Any] = Field(default_factory=dict)  # the float torch model, same episodes
    threads: int = 1
    quantization: dict[str, Any] | None = None                   # onnx-int8: mode static|dynamic, calibration
    quantized_ops: list[str] = Field(default_factory=list)
    runtime: dict[str, str] = Field(default_factory=dict)
    episode_ids: list[str] = Field(default_factory=list)         # the scored episodes (dataset ids)
    reasons: list[str] = Field(default_factory=list)             # why failed
    warnings: list[str] = Field(default_factory=list)

    @property
    def verified(self) -> bool:
        return self.status == "verified"


def _runtime(fmt: str) -> dict[str, str]:
    import torch

    out = {"ckreg": __version__, "torch": torch.__version__, "python": platform.python_version()}
    if fmt.startswith("onnx"):
        import onnx
        import onnxruntime

        out.update(onnx=onnx.__version__, onnxruntime=onnxruntime.__version__, opset=str(formats.OPSET))
    return out


def _episodes(model_blob: Path, ds, split: str, seed: int | None, warnings_out: list[str]):
    """(scored indices, how they were chosen, training-split indices, how that split was chosen).

    The split is the one `ckreg eval` uses (test ids or seed and fractions
    recorded with the checkpoint, else seed 0 and 0.15/0.15); its training part
    is what static quantization calibrates on.
    """
    import numpy as np

    from ckreg import zoo
    from ckreg.data import split as make_split
    from ckreg.train.evaluate import _test_indices, _training_record

    _sd, meta = zoo.load_state_dict(model_blob)
    rec = _training_record(model_blob, meta)
    test_idx, used, source = _test_indices(ds, rec, seed, warnings_out)
    m = rec.get("metrics") or {}
    val = rec.get("val_fraction", m.get("val_fraction")) or 0.15
    test = rec.get("test_fraction", m.get("test_fraction")) or 0.15
    train = np.asarray(make_split(ds, seed=int(used or 0), val=float(val), test=float(test)).train, dtype=np.int64)
    train = np.setdiff1d(train, test_idx)
    if split == "all":
        return np.arange(len(ds), dtype=np.int64), "every episode", train, source
    return test_idx, source, train, source


def _calibration_pick(train, n: int):
    """Up to `n` training episodes, a fixed seeded sample (sorted), so a re-export calibrates the same way."""
    import numpy as np

    if len(train) <= n:
        return np.asarray(train, dtype=np.int64)
    return np.sort(np.random.default_rng(0).choice(train, size=n, replace=False)).astype(np.int64)


def export_deployment(reg, ref: str, to_dir: str | Path, fmt: str, data: Any, *, split: str = "test",
                      seed: int | None = None, tolerance: float = DEFAULT_TOLERANCE, threads: int = 1,
                      latency_samples: int = 100, quant: str | None = None,
                      calibration: int = formats.CALIBRATION_EPISODES) -> DeployResult:
    """Export, verify on `data` and record REF in `fmt`; see the module docstring.

    `quant` (onnx-int8 only): `static` (default; calibrated on `calibration`
    training episodes) or `dynamic`.
    """
    formats.require(fmt)
    if quant is not None and fmt != "onnx-int8":
        raise UsageError(f"--quant applies to --format onnx-int8, not {fmt}")
    if fmt == "onnx-int8":
        quant = quant or formats.DEFAULT_QUANT
        if quant not in formats.QUANT_MODES:
            raise UsageError(f"unknown quantization {quant!r}", hint=f"one of {', '.join(formats.QUANT_MODES)}")
    if int(calibration) < 1:
        raise UsageError(f"--calibration must be at least 1 episode, got {calibration}")
    to_dir = Path(to_dir)
    if to_dir.exists() or to_dir.is_symlink():
        raise UsageError("the export folder exists", path=str(to_dir),
                         hint="export to a new folder (a deployment export never writes into an existing one)")
    if split not in ("test", "all"):
        raise UsageError(f"unknown split {split!r}", hint="use test or all")
    if not 0 <= tolerance < 1:
        raise UsageError(f"tolerance must be a fraction in [0, 1), got {tolerance}")
    if data is None:
        raise UsageError(f"--format {fmt} verifies the exported model on data", hint="pass --data DIR")
    import numpy as np

    from ckreg import zoo
    from ckreg.registry.export import preprocessing
    from ckreg.scaler import load_scaler
    from ckreg.train import common
    from ckreg.train.evaluate import measure_latency

    version = reg.resolve(ref)
    if version.scaler is None:
        raise UsageError(f"{version.ref} has no scaler; a deployed model needs the scaler it was trained with",
                         hint="register the pair with its scaler")
    blob = reg.blob_path(version.sha256)
    model, spec, _insp = zoo.load_checkpoint(blob, spec=version.spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scaler = load_scaler(reg.blob_path(version.scaler.sha256))
    ds = common.as_dataset(data)
    common.check_scaler(spec, scaler, "registry scaler")
    common.check_channels(spec, ds.n_channels, getattr(ds, "source", "") or str(data))
    common.check_labels(spec, ds)
    pre = preprocessing(version)
    T = int(np.asarray(ds.X).shape[1])
    notes: list[str] = []
    if T != pre["T"]:
        notes.append(f"data T = {T}, model trained with T = {pre['T']}: exported for T = {T}")
    idx, source, train, train_source = _episodes(blob, ds, split, seed, notes)
    if len(idx) == 0:
        raise UsageError("no episodes to verify the export on", path=str(data))
    X = common.scale(scaler, np.asarray(ds.X, dtype=np.float32)[idx])
    mask = np.asarray(ds.mask, dtype=np.uint8)[idx]
    y = np.asarray(ds.y, dtype=np.int64)[idx]
    calib = _calibration_pick(train, int(calibration)) if quant == "static" else None
    if calib is not None and split == "all":
        notes.append("--split all scores every episode, so the calibration episodes are among the scored ones")

    ref_logits = common.predict_logits(model, X, mask).numpy()
    ref_pred = ref_logits.argmax(axis=1)
    float_acc = float((ref_pred == y).mean())
    name = formats.MODEL_FILE[fmt]
    try:
        with atomic_dir(to_dir) as tmp:
            qrec: dict[str, Any] | None = None
            if fmt == "torchscript":
                formats.export_torchscript(model, spec, T, tmp / name)
            else:
                float_onnx = tmp / formats.MODEL_FILE["onnx"]
                formats.export_onnx(model, spec, T, float_onnx)
                if quant == "dynamic":
                    qrec = formats.quantize_int8(float_onnx, tmp / name)
                elif quant == "static":
                    _r, float_inputs = formats.runner("onnx", float_onnx)
                    qrec = formats.quantize_static_int8(
                        float_onnx, tmp / name, common.scale(scaler, np.asarray(ds.X, dtype=np.float32)[calib]),
                        np.asarray(ds.mask, dtype=np.uint8)[calib], float_inputs)
                    qrec["calibration"] = {"split": "train", "split_source": train_source,
                                           "requested": int(calibration), "episodes": int(len(calib)),
                                           "episode_ids": [str(ds.ids[i]) for i in calib]}
                if quant is not None:
                    float_bytes, int8_bytes = float_onnx.stat().st_size, (tmp / name).stat().st_size
                    qrec["float_onnx_bytes"] = float_bytes
                    if int8_bytes > float_bytes:
                        notes.append(f"the INT8 model ({int8_bytes:,} bytes) is larger than the float ONNX model "
                                     f"({float_bytes:,} bytes): its quantize/dequantize nodes outweigh the smaller "
                                     "weights (a graph with many small int8 ops, e.g. recurrent steps unrolled); "
                                     "compare the latencies before deploying it")
                    float_onnx.unlink()
            run, inputs = formats.runner(fmt, tmp / name, threads=threads)
            logits = formats.predict_all(run, X, mask)
            pred = logits.argmax(axis=1)
            acc = float((pred == y).mean())
            lat = formats.latency(run, X, mask, latency_samples)
            flat = measure_latency(model, X, mask, samples=latency_samples, threads=threads) if latency_samples else {}
            drop = float_acc - acc
            reasons = []
            if drop > tolerance + 1e-12:
                reasons.append(f"accuracy {acc:.2%} is {100 * drop:.2f} points below the float model's "
                               f"{float_acc:.2%} (tolerance {100 * tolerance:.2f})")
            if not np.isfinite(logits).all():
                reasons.append("the exported model produced non-finite logits")
            status = "failed" if reasons else "verified"
            scaler.save_json(tmp / SCALER)
            files = {n: file_sha256(tmp / n) for n in (name, SCALER)}
            result = DeployResult(
                ref=version.ref, family=spec.family, format=fmt, status=status, out=str(to_dir), files=files,
                model_file=name, model_bytes=(tmp / name).stat().st_size, inputs=inputs, T=T,
                pad_value=pre["pad_value"], channels=list(scaler.channel_names or pre.get("channels") or []),
                classes=list(ds.class_names or version.class_names or []),
                tolerance=tolerance, split=split, split_source=source, n_episodes=int(len(idx)),
                data_hash=ds.data_hash, float_accuracy=float_acc, accuracy=acc, accuracy_drop=drop,
                agreement=float((pred == ref_pred).mean()),
                max_abs_logit_diff=float(np.abs(logits - ref_logits).max()),
                latency=lat, float_latency={k: flat.get(k) for k in ("mean_ms", "median_ms", "p95_ms", "samples")},
                threads=threads, quantization=qrec, quantized_ops=list((qrec or {}).get("ops", [])),
                runtime=_runtime(fmt),
                episode_ids=[str(ds.ids[i]) for i in idx], reasons=reasons, warnings=notes)
            write_text(tmp / METRICS_FILE, json.dumps(result.model_dump(mode="json"), indent=2, ensure_ascii=False)
                       + "\n")
            from ckreg.deploy.card import deploy_card

            write_text(tmp / CARD, deploy_card(version, result, scaler, list(ds.class_names)))
            result.files.update({n: file_sha256(tmp / n) for n in (METRICS_FILE, CARD)})
    except FileExistsError:
        raise UsageError("the export folder appeared during the export; nothing was replaced",
                         path=str(to_dir)) from None
    reg.record_artifact(version.ref, {k: v for k, v in result.model_dump(mode="json").items()})
    return result
