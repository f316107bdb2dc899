"""The deployment formats: build each artifact from the float zoo module, and run it.

- `onnx`:        `torch.onnx.export` (TorchScript-based exporter, opset 17), run by onnxruntime.
- `onnx-int8`:   the ONNX model quantized to INT8 by onnxruntime, run by onnxruntime:
                 `static` (the default): QDQ format, int8 weights (per output
                 channel) and activations whose ranges were calibrated on
                 training episodes (`CalibrationDataReader`, MinMax);
                 `dynamic`: int8 weights of MatMul/Gemm/Conv, activations
                 quantized per batch at run time.
- `torchscript`: `torch.jit.trace`, run by `torch.jit.load`.

Every artifact takes `x` float32 [B, T, C] (already scaled) and, for families
whose readout reads the padding mask, `mask` int64 [B, T] (1 = padding), and
returns logits [B, K]. T is fixed at export (the zoo's sequence length): the
scale-aware cell is a Python loop over steps, unrolled by tracing; the batch
axis is dynamic. Families with a last-step readout (GRU, LSTM, StackedGRU,
StackedLSTM) ignore the mask, and the exporter drops an unused input, so their
ONNX models take `x` only; `inputs(...)` says which.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any, Callable

from ckreg.errors import CkregError, UsageError

FORMATS = ("onnx", "onnx-int8", "torchscript")
QUANT_MODES = ("static", "dynamic")
DEFAULT_QUANT = "static"
CALIBRATION_EPISODES = 200
CALIBRATION_BATCH = 16
STATIC_OPS = ("MatMul", "Gemm", "Conv")
MODEL_FILE = {"onnx": "model.onnx", "onnx-int8": "model.int8.onnx", "torchscript": "model.pt"}
OPSET = 17
DEPLOY_EXTRA = "pip install 'ckreg[deploy]'"


class ExportError(CkregError):
    """The model cannot be exported to the requested format (an operator the exporter does not support)."""


def require(fmt: str) -> None:
    """Fail early, with the install line, when the format's runtime is missing."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown deployment format {fmt!r}", hint=f"one of {', '.join(FORMATS)}")
    if fmt.startswith("onnx"):
        import importlib.util

        missing = [m for m in ("onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
        if missing:
            raise UsageError(f"--format {fmt} needs {' and '.join(missing)}, which this install lacks",
                             hint=DEPLOY_EXTRA)


def _wrapper(model):
    import torch

    class Deployed(torch.nn.Module):
        """(x, mask) -> logits with the mask as int64 (ONNX has no uint8 comparisons everywhere)."""

        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x, mask):
            return self.m(x, mask)

    return Deployed(model).eval()


def _example(spec, T: int):
    import torch

    x = torch.zeros(2, T, spec.input_size)
    mask = torch.zeros(2, T, dtype=torch.int64)
    mask[1, T // 2:] = 1          # a padded episode, so the valid-step readout is traced with a real mask
    return x, mask


def export_onnx(model, spec, T: int, path: Path) -> None:
    import warnings

    import torch

    x, mask = _example(spec, T)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # tracer warnings about the unrolled loop are expected
            torch.onnx.export(_wrapper(model), (x, mask), str(path), input_names=["x", "mask"],
                              output_names=["logits"], opset_version=OPSET, dynamo=False,
                              dynamic_axes={"x": {0: "batch"}, "mask": {0: "batch"}, "logits": {0: "batch"}})
    except Exception as exc:  # noqa: BLE001 - torch.onnx raises many types for an unsupported operator
        raise ExportError(f"{spec.family} does not export to ONNX: {type(exc).__name__}: {str(exc)[:300]}",
                          hint="export it as torchscript or safetensors instead") from exc
    finally:
        model.eval()


class _QuietRoot:
    """Silence the root logger while onnxruntime quantizes (its "consider pre-processing" advice is for image models)."""

    def __enter__(self):
        import logging

        self.root = logging.getLogger()
        self.level = self.root.level
        self.root.setLevel(logging.ERROR)

    def __exit__(self, *exc):
        self.root.setLevel(self.level)


def _int8_ops(path: Path) -> list[str]:
    import onnx

    return sorted({n.op_type for n in onnx.load(str(path)).graph.node
                   if n.op_type.startswith(("DynamicQuantize", "MatMulInteger", "ConvInteger", "QLinear",
                                            "QuantizeLinear", "DequantizeLinear"))})


def _int8_weight_ops(path: Path) -> list[str]:
    """The op types of a QDQ model whose weights are stored int8 (a DequantizeLinear of an initializer feeds them)."""
    import onnx

    graph = onnx.load(str(path)).graph
    inits = {i.name for i in graph.initializer}
    dq = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits}
    return sorted({n.op_type for n in graph.node if n.op_type != "QuantizeLinear" and any(i in dq for i in n.input)})


def _conv3d_nodes(path: Path) -> list[str]:
    """Conv nodes with a 5-D weight (Conv3d). On onnxruntime's CPU provider the MS3D towers ran slower in int8
    than in float, and lost an episode, when these settings were chosen (dynamic INT8, which quantizes them, is
    about 10x slower there: docs/deploy.md), so static quantization keeps them float."""
    import onnx

    graph = onnx.load(str(path)).graph
    rank = {i.name: len(i.dims) for i in graph.initializer}
    return [n.name for n in graph.node if n.op_type == "Conv" and len(n.input) > 1 and rank.get(n.input[1]) == 5]


def quantize_int8(src: Path, dst: Path) -> dict[str, Any]:
    """Dynamic INT8 quantization; returns the quantization record (mode, the int8 op types)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    try:
        with _QuietRoot():
            quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
    except Exception as exc:  # noqa: BLE001
        raise ExportError(f"onnxruntime could not quantize the model: {type(exc).__name__}: {str(exc)[:300]}",
                          hint="use --format onnx") from exc
    return {"mode": "dynamic", "weights": "int8 per tensor", "activations": "uint8, range per batch at run time",
            "ops": _int8_ops(dst)}


def quantize_static_int8(src: Path, dst: Path, X, mask, inputs: list[str], *, per_channel: bool = True,
                         batch_size: int = CALIBRATION_BATCH) -> dict[str, Any]:
    """Static INT8 (QDQ) quantization calibrated on `X`/`mask` (scaled training episodes).

    Only the compute ops are quantized (MatMul, Gemm, Conv but not Conv3d):
    weights int8 symmetric (per output channel with `per_channel`), their
    input activations uint8 with the MinMax ranges seen on the calibration
    episodes, fed in batches of `batch_size` by a `CalibrationDataReader`.
    Everything between them (the recurrent ops and their state, the
    additions, the readout's indexing) stays float: when these settings were
    chosen, quantizing those tensors too cost the retrained SignGlove GRU two
    test episodes, and per-tensor weights one. Returns the quantization record.
    """
    import numpy as np
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    if len(X) == 0:
        raise UsageError("static INT8 quantization needs calibration episodes, and the training split has none",
                         hint="use --quant dynamic, or data with a training split")

    class Episodes(CalibrationDataReader):
        """Scaled training episodes, `batch_size` at a time, as the model's own inputs."""

        def __init__(self):
            self.starts = iter(range(0, len(X), batch_size))

        def get_next(self):
            i = next(self.starts, None)
            if i is None:
                return None
            feed = {"x": np.ascontiguousarray(X[i:i + batch_size], dtype=np.float32),
                    "mask": np.asarray(mask[i:i + batch_size], dtype=np.int64)}
            return {k: feed[k] for k in inputs}

    kept = _conv3d_nodes(src)
    try:
        with _QuietRoot():
            quantize_static(str(src), str(dst), Episodes(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax, op_types_to_quantize=list(STATIC_OPS),
                            nodes_to_exclude=kept or None)
    except Exception as exc:  # noqa: BLE001
        raise ExportError(f"onnxruntime could not quantize the model: {type(exc).__name__}: {str(exc)[:300]}",
                          hint="use --quant dynamic or --format onnx") from exc
    return {"mode": "static", "format": "QDQ", "method": "MinMax",
            "weights": "int8 " + ("per channel" if per_channel else "per tensor"),
            "activations": "uint8, calibrated ranges (inputs of the int8 ops only)", "ops": _int8_weight_ops(dst),
            "kept_float": ([f"{len(kept)} Conv3d node(s)"] if kept else [])}


def export_torchscript(model, spec, T: int, path: Path) -> None:
    import warnings

    import torch

    x, mask = _example(spec, T)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(_wrapper(model), (x, mask), check_trace=False)
            torch.jit.save(traced, str(path))
    except Exception as exc:  # noqa: BLE001
        raise ExportError(f"{spec.family} does not trace to TorchScript: {type(exc).__name__}: {str(exc)[:300]}",
                          hint="export it as onnx or safetensors instead") from exc


def runner(fmt: str, path: Path, threads: int = 1) -> tuple[Callable[[Any, Any], Any], list[str]]:
    """(predict(x, mask) -> logits numpy, input names) for an artifact, with `threads` intra-op threads."""
    import numpy as np

    if fmt.startswith("onnx"):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        names = [i.name for i in sess.get_inputs()]

        def run(x, mask):
            feed = {"x": np.ascontiguousarray(x, dtype=np.float32), "mask": np.asarray(mask, dtype=np.int64)}
            return sess.run(None, {k: feed[k] for k in names})[0]

        return run, names
    import torch

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)   # TorchScript is deprecated upstream, still supported
        mod = torch.jit.load(str(path), map_location="cpu").eval()

    def run_ts(x, mask):
        prev = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            with torch.inference_mode():
                return mod(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
                           torch.from_numpy(np.asarray(mask, dtype=np.int64))).numpy()
        finally:
            torch.set_num_threads(prev)

    return run_ts, ["x", "mask"]


def predict_all(run, X, mask, batch_size: int = 64):
    import numpy as np

    out = [run(X[i:i + batch_size], mask[i:i + batch_size]) for i in range(0, len(X), batch_size)]
    return np.concatenate(out, axis=0) if out else np.zeros((0, 0), np.float32)


def latency(run, X, mask, samples: int, seed: int = 0, warmup: int = 5) -> dict[str, Any]:
    """Mean/median/p95 ms per episode at batch 1 (same episode sample as `ckreg eval`)."""
    import numpy as np

    n = len(X)
    if n == 0 or samples <= 0:
        return {"mean_ms": None, "median_ms": None, "samples": 0}
    pick = np.random.default_rng(seed).choice(n, size=min(samples, n), replace=False)
    for i in pick[:warmup]:
        run(X[i:i + 1], mask[i:i + 1])
    times = []
    for i in pick:
        t0 = time.perf_counter()
        run(X[i:i + 1], mask[i:i + 1])
        times.append((time.perf_counter() - t0) * 1000.0)
    times.sort()
    return {"mean_ms": statistics.fmean(times), "median_ms": statistics.median(times),
            "p95_ms": times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))], "samples": len(times)}
