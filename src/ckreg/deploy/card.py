"""The model card of a deployment export: YAML front matter (machine-readable) and the input contract."""

from __future__ import annotations

from typing import Any

from ckreg import __version__
from ckreg.yamlio import dump as yaml_dump


def deploy_card(version, result, scaler, class_names: list[str]) -> str:
    from ckreg.registry.export import preprocessing

    pre = preprocessing(version)
    channels = list(scaler.channel_names or pre.get("channels") or [])
    C = version.spec.input_size
    uses_mask = "mask" in result.inputs
    contract: dict[str, Any] = {
        "x": {"dtype": "float32", "shape": ["batch", result.T, C], "channels": channels or f"{C} channels",
              "scaling": "(raw - mean) / scale per channel with scaler.json, padding rows included"},
        "mask": ({"dtype": "int64", "shape": ["batch", result.T], "meaning": "1 = padding row, 0 = recorded row"}
                 if uses_mask else "not an input: this family reads the last step, padding included"),
        "padding": f"episodes cut to the first {result.T} rows or padded to {result.T} rows with the raw value "
                   f"{pre['pad_value']} on every channel (before scaling)",
        "output": {"logits": ["batch", version.spec.num_classes], "classes": class_names or version.class_names},
    }
    front = {
        "name": version.name, "version": version.version, "family": version.family, "format": result.format,
        "status": result.status, "model_file": result.model_file,
        "input_contract": contract,
        "metrics": {
            "split": result.split, "split_source": result.split_source, "episodes": result.n_episodes,
            "data_hash": result.data_hash, "float_accuracy": result.float_accuracy, "accuracy": result.accuracy,
            "agreement_with_float": result.agreement, "tolerance": result.tolerance,
            "latency_ms_mean": result.latency.get("mean_ms"), "latency_ms_median": result.latency.get("median_ms"),
            "latency_threads": result.threads, "latency_batch": 1,
        },
        "quantization": _quant_summary(result.quantization),
        "reasons": result.reasons,
        "source": {"ref": version.ref, "checkpoint_sha256": version.sha256, "weights_sha256": version.weights_sha256,
                   "scaler_sha256": version.scaler.sha256 if version.scaler else None,
                   "pair_digest": version.pair_digest},
        "files": dict(result.files),
        "runtime": result.runtime,
        "exported_by": f"ckreg {__version__}",
    }
    verdict = ("verified" if result.verified else "FAILED verification: " + "; ".join(result.reasons))
    feed = '{"x": x, "mask": mask}' if uses_mask else '{"x": x}'
    run = ("import onnxruntime as ort\n"
           f'sess = ort.InferenceSession("{result.model_file}")\n'
           f"logits = sess.run(None, {feed})[0]") if result.format.startswith("onnx") else (
           "import torch\n"
           f'm = torch.jit.load("{result.model_file}")\n'
           "logits = m(torch.from_numpy(x), torch.from_numpy(mask)).numpy()")
    body = [
        f"# {version.name} v{version.version} ({version.family}), {result.format}",
        "",
        f"Status: **{verdict}**. On {result.n_episodes} held-out episodes ({result.split_source}) this artifact "
        f"scores {result.accuracy:.2%} where the float model scores {result.float_accuracy:.2%}; "
        f"{result.agreement:.2%} of the episodes get the float model's top-1 class.",
        "",
        *_quant_lines(result.quantization),
        "## Input contract",
        "",
        f"1. Take the episode's rows of {C} channels"
        + (f", in this order: {', '.join(channels)}." if channels else "."),
        f"2. Cut to the first {result.T} rows, or pad to {result.T} rows with the raw value {pre['pad_value']}"
        " on every channel.",
        "3. Scale every row, padding included: `(x - mean) / scale` with `mean` and `scale` from `scaler.json`.",
        f"4. `x` is float32 `[batch, {result.T}, {C}]`"
        + (f"; `mask` is int64 `[batch, {result.T}]`, 1 on padding rows." if uses_mask else
           "; this family takes no mask (it reads the last step, padding included)."),
        f"5. The output is logits `[batch, {version.spec.num_classes}]`; the class index order is the `classes`"
        " list in the header.",
        "",
        "```python",
        "import json, numpy as np",
        'sc = json.load(open("scaler.json"))',
        'x = ((raw - np.array(sc["mean"])) / np.array(sc["scale"])).astype(np.float32)   # raw: [batch, T, C], padded',
        run,
        "```",
        "",
    ]
    return "---\n" + yaml_dump(front) + "---\n\n" + "\n".join(body)


def _quant_summary(q: dict | None) -> dict | None:
    """The quantization record without the calibration episode ids (those are in deploy.json)."""
    if not q:
        return None
    out = {k: v for k, v in q.items() if k != "calibration"}
    if q.get("calibration"):
        out["calibration"] = {k: v for k, v in q["calibration"].items() if k != "episode_ids"}
    return out


def _quant_lines(q: dict | None) -> list[str]:
    if not q:
        return []
    if q.get("mode") == "static":
        cal = q.get("calibration") or {}
        text = (f"Quantized to INT8 statically ({q.get('format', 'QDQ')}): weights {q.get('weights')}, the "
                f"activation ranges calibrated ({q.get('method')}) on {cal.get('episodes')} episodes of the "
                "training split (listed in `deploy.json`).")
    else:
        text = "Quantized to INT8 dynamically: int8 weights, activation ranges computed per batch at run time."
    if q.get("ops"):
        text += f" INT8: {', '.join(q['ops'])}; everything else runs in float."
    return [text, ""]
