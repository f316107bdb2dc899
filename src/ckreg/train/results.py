"""What `train` and `evaluate` return, and what the progress callback receives.

Plain data (pydantic / a frozen dataclass) so the CLI renders it and tests
check it; nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

# Names of everything `train` may write into `out` (the clobber check reads this).
OUTPUT_FILES: tuple[str, ...] = (
    "weights.safetensors",
    "model.ckpt",
    "scaler.json",
    "scaler.pkl",
    "metrics.json",
    "confusion_matrix.png",
)


@dataclass(frozen=True)
class ProgressEvent:
    """One report to the progress callback (issue #3: the core stays UI-free).

    kind: "setup" (before epoch 1, once per preparation step; `stage` names it),
    "start" (before epoch 1; `steps` = batches per epoch), "batch" (after
    each optimiser step), "epoch" (after validation), "saved" (a new best
    checkpoint is on disk), "end". Raising from the callback (KeyboardInterrupt
    included) stops training; a KeyboardInterrupt keeps the best checkpoint so far.
    """

    kind: str
    epoch: int                 # 1-based; 0 before the first epoch
    epochs: int                # the cap
    step: int = 0              # batch within the epoch (1-based)
    steps: int = 0             # batches per epoch
    global_step: int = 0
    train_loss: float | None = None   # running mean over the epoch so far
    train_acc: float | None = None
    val_loss: float | None = None
    val_acc: float | None = None
    best_epoch: int | None = None
    best_val_loss: float | None = None
    elapsed_s: float = 0.0
    stage: str = ""            # kind "setup": what happens before epoch 1 ("loading data", ...)


class EpochRecord(BaseModel):
    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    wall_s: float
    lr: float


class TrainResult(BaseModel):
    out: str
    family: str
    spec: dict[str, Any]
    files: dict[str, str] = Field(default_factory=dict)     # output name -> path
    status: str = "completed"                                 # completed | interrupted
    stop_reason: str = ""                                     # early-stopping | max-epochs | interrupted
    epochs_run: int = 0
    best_epoch: int = 0
    best_val_loss: float | None = None
    test_accuracy: float | None = None
    n_test: int = 0
    params: int = 0
    seed: int = 0
    data_hash: str | None = None
    weights_sha256: str | None = None
    wall_time_s: float = 0.0
    epoch_times_s: list[float] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    metrics: dict[str, Any] = Field(default_factory=dict)    # the content of metrics.json

    @property
    def interrupted(self) -> bool:
        return self.status == "interrupted"


class EvalResult(BaseModel):
    checkpoint: str
    scaler: str | None = None
    data: str | None = None
    family: str
    split: str                                                # test | all
    split_source: str = ""                                    # how the test episodes were chosen
    seed: int | None = None
    n_episodes: int
    accuracy: float                                           # a fraction in [0, 1]
    correct: int
    class_names: list[str]
    per_class: dict[str, float | None]                        # class -> accuracy (None: no episode)
    per_class_support: dict[str, int]
    confusion_matrix: list[list[int]]                         # rows true, columns predicted
    latency_ms: float | None                                  # mean per episode, batch 1
    latency: dict[str, Any] = Field(default_factory=dict)     # median, p95, samples, threads, batch
    params: int
    buffers: int
    data_hash: str | None = None
    # scale-aware families: accuracy with each scale's input zeroed, and the weight norms per scale
    scale_ablation: dict[str, Any] | None = None
    scale_norms: dict[str, float] | None = None
    warnings: list[str] = Field(default_factory=list)
