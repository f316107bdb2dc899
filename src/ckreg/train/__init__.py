"""The bundled trainer and evaluator (issue #3, "Trainer").

`train(family, data, out, ...) -> TrainResult` and
`evaluate(ckpt, scaler, data, split=...) -> EvalResult` are the whole API; the
CLI (`ckreg train`, `ckreg eval`) only parses options and renders. torch is
imported inside the functions, so importing this package stays cheap.
"""

from __future__ import annotations

from ckreg.train.evaluate import evaluate, measure_latency
from ckreg.train.loop import DEFAULTS, check_out, lightning_checkpoint, train
from ckreg.train.results import OUTPUT_FILES, EpochRecord, EvalResult, ProgressEvent, TrainResult

__all__ = [
    "train", "evaluate", "measure_latency", "check_out", "lightning_checkpoint", "DEFAULTS",
    "OUTPUT_FILES", "TrainResult", "EvalResult", "ProgressEvent", "EpochRecord",
]
