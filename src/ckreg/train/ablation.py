"""Scale ablation of the scale-aware families: accuracy with one scale's input zeroed.

The first scale-aware cell (`gru1`, or `gru` for MSCGRU_ScaleAware) splits
its input into the three tower outputs t3, t5, t7 (spec, "Scale-aware cell").
Zeroing one chunk for every step, everything else unchanged, and scoring the
same episodes again shows how much the predictions need that scale; the
weight norms (`ckreg.inspect.scales`) show how large its weights are. Zero
is an honest "off": the chunk comes out of BatchNorm, ReLU and max pooling,
where 0 is the silent value.

The zeroing is a forward pre-hook on that cell (removed afterwards), so the
model itself is not changed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import torch

SCALES = ("3", "5", "7")


def first_scale_cell(model: "torch.nn.Module"):
    """The scale-aware GRU whose three chunks are the towers, or None for other families."""
    from ckreg.zoo.models import ScaleAwareGRU

    for name in ("gru1", "gru"):
        cell = getattr(model, name, None)
        if isinstance(cell, ScaleAwareGRU):
            return name, cell
    return None


def _zero_chunk(index: int, width: int):
    def hook(_module, args):
        x = args[0].clone()
        x[..., index * width:(index + 1) * width] = 0
        return (x, *args[1:])

    return hook


def scale_ablation(model: "torch.nn.Module", X: "np.ndarray", mask: "np.ndarray", y: "np.ndarray",
                   base_pred: "np.ndarray | None" = None, batch_size: int = 256) -> dict[str, Any] | None:
    """`{"cell", "accuracy", "scales": {k: {"accuracy", "drop", "agreement"}}}` or None (not scale-aware).

    `drop` is accuracy lost in points of a fraction (base - ablated); `agreement`
    the fraction of episodes whose top-1 class did not change. `base_pred`: the
    unablated predictions when the caller has them already.
    """
    import numpy as np

    from ckreg.train.common import predict_logits

    found = first_scale_cell(model)
    if found is None:
        return None
    name, cell = found
    y = np.asarray(y, dtype=np.int64)
    n = len(y)
    if base_pred is None:
        base_pred = predict_logits(model, X, mask, batch_size).argmax(dim=1).numpy() if n else np.zeros(0, np.int64)
    base_pred = np.asarray(base_pred, dtype=np.int64)
    base = float((base_pred == y).mean()) if n else 0.0
    width = cell.cell.chunk_in
    out: dict[str, Any] = {"cell": name, "accuracy": base, "n_episodes": n, "scales": {}}
    for i, k in enumerate(SCALES):
        handle = cell.register_forward_pre_hook(_zero_chunk(i, width))
        try:
            pred = predict_logits(model, X, mask, batch_size).argmax(dim=1).numpy() if n else base_pred
        finally:
            handle.remove()
        acc = float((pred == y).mean()) if n else 0.0
        out["scales"][k] = {"accuracy": acc, "drop": base - acc,
                            "agreement": float((pred == base_pred).mean()) if n else 1.0}
    return out


def write_scales_png(path, ablation: dict[str, Any] | None, norms: dict[str, float] | None, title: str = "",
                     *, overwrite: bool = False) -> str:
    """Bar chart: accuracy with each scale zeroed (left) and each scale's weight-norm share (right).

    Written atomically through `ckreg.fsutil`; needs matplotlib (the `train` extra).
    """
    import warnings

    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    from ckreg.fsutil import write_with

    panels = [p for p in (ablation, norms) if p]
    fig = Figure(figsize=(3.2 * max(1, len(panels)) + 0.6, 3.2), dpi=100)
    col = 1
    labels = [f"scale {k}" for k in SCALES]
    colours = ["#4c72b0", "#55a868", "#c44e52"]
    if ablation:
        ax = fig.add_subplot(1, len(panels), col)
        col += 1
        vals = [100 * ablation["scales"][k]["accuracy"] for k in SCALES]
        ax.bar(labels, vals, color=colours)
        ax.axhline(100 * ablation["accuracy"], color="black", linestyle="--", linewidth=1, label="no scale zeroed")
        ax.set_ylim(0, 105)
        ax.set_ylabel("accuracy (%)")
        ax.set_title(f"{ablation['cell']}: input chunk zeroed", fontsize=9)
        for x, v in enumerate(vals):
            ax.text(x, v + 1, f"{v:.1f}", ha="center", fontsize=8)
        ax.legend(fontsize=7, loc="lower right")
    if norms:
        ax = fig.add_subplot(1, len(panels), col)
        vals = [norms[k] for k in SCALES]
        ax.bar(labels, vals, color=colours)
        ax.set_ylim(0, 1.15 * max(vals + [1e-9]))
        ax.set_ylabel("sum of ||W_gk||_F over gates")
        ax.set_title("weight norms", fontsize=9)
        for x, v in enumerate(vals):
            ax.text(x, v, f"{v:.2f}", ha="center", va="bottom", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_with(path, lambda tmp: fig.savefig(tmp, format="png"), overwrite=overwrite)
    return str(path)
