"""Signals as images: Gramian angular fields (GASF, GADF) and Markov transition fields (MTF).

For the Wide-ResNet teachers trained on images of the signals, distilled into
1D signal students. Per episode and channel, only the valid (unpadded) steps
are used; each field is resized to S x S (default 64) and the fields are
stacked as channels, method-major: for `gasf+gadf` and 8 channels, image
channels 0-7 are the GASF of signal channels 0-7, 8-15 their GADF.

Definitions (Wang & Oates, "Imaging time-series to improve classification"):
- the series of length L is first resampled to S points (`resample_matrix`:
  piecewise aggregate means when L >= S, linear interpolation when L < S),
  then min-max rescaled to [-1, 1] (a constant series becomes all 0) and
  `phi = arccos(x)`:
  GASF[i, j] = cos(phi_i + phi_j) = x_i x_j - sqrt(1 - x_i^2) sqrt(1 - x_j^2),
  GADF[i, j] = sin(phi_i - phi_j) = sqrt(1 - x_i^2) x_j - x_i sqrt(1 - x_j^2).
- MTF with Q quantile bins: each step of the series (length L) gets its bin
  (edges at the series' own 1/Q, ..., (Q-1)/Q quantiles; a value on an edge
  goes to the upper bin), W[a, b] is the fraction of transitions out of bin a
  that go to bin b (rows without transitions are 0), MTF[i, j] = W[q_i, q_j]
  over the L x L steps, resized with the same matrix R: R MTF R^T.

Where the rescaling range and the quantile edges come from (`rescale`):
- `episode` (the definition above, per series): each image shows the shape of
  its series only. For the SignGlove data that throws the information away:
  a static sign is mostly each sensor's LEVEL (how far a finger is bent), and a
  linear classifier on 16 x 16 per-episode GASF images scores 8.8% on the test
  split against 94.0% with the range below (24 classes).
- `train-split` (what the trainer uses): per signal channel, the minimum and
  maximum (GASF/GADF) and the Q-quantile edges (MTF) of the TRAINING split's
  valid steps (`fit_stats`), the same for every episode, so the images keep
  each channel's level; values outside the range are clipped to [-1, 1]. The
  statistics are part of the model's recipe (`ImageStats`), as a scaler is.

Either way the images are invariant to a positive per-channel affine scaling
applied to the statistics' data too, so they are made from the raw values.
numpy only; torch-free.
"""

from __future__ import annotations

from typing import Any

from ckreg.errors import UsageError

METHODS = ("gasf", "gadf", "mtf")
DEFAULT_SIZE = 64
DEFAULT_BINS = 8
RESCALES = ("train-split", "episode")


def parse_imaging(spec: str | None) -> tuple[str, ...]:
    """`"gasf"`, `"gasf+gadf+mtf"` -> validated tuple of methods (None/"" -> ())."""
    if spec is None or str(spec).strip() in ("", "none"):
        return ()
    parts = tuple(p.strip().lower() for p in str(spec).split("+"))
    bad = [p for p in parts if p not in METHODS]
    if bad or len(set(parts)) != len(parts):
        raise UsageError(f"--imaging {spec!r}: use one or more of {', '.join(METHODS)} joined by '+', each once",
                         hint="e.g. --imaging gasf or --imaging gasf+gadf+mtf")
    return parts


def resample_matrix(L: int, S: int):
    """R [S, L]: R @ x resamples a length-L series to S points (PAA means if L >= S, else linear interpolation)."""
    import numpy as np

    R = np.zeros((S, L), dtype=np.float64)
    if L == 0:
        return R
    if L >= S:
        for a in range(S):
            lo = (a * L) // S
            hi = max(lo + 1, -(-((a + 1) * L) // S))   # ceil: bins may overlap by one step, as in PAA on a grid
            R[a, lo:hi] = 1.0 / (hi - lo)
        return R
    pos = np.linspace(0.0, L - 1, S)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, L - 1)
    frac = pos - lo
    R[np.arange(S), lo] += 1.0 - frac
    R[np.arange(S), hi] += frac
    return R


def _rescale(x, lo=None, hi=None):
    """Min-max to [-1, 1] along the last axis (or by the given per-row `lo`/`hi`, clipped); constant rows become 0."""
    import numpy as np

    if lo is None or hi is None:
        lo = x.min(axis=-1, keepdims=True)
        hi = x.max(axis=-1, keepdims=True)
    else:
        lo = np.asarray(lo, dtype=np.float64).reshape(*x.shape[:-1], 1)
        hi = np.asarray(hi, dtype=np.float64).reshape(*x.shape[:-1], 1)
    span = hi - lo
    safe = np.where(span > 0, span, 1.0)
    out = np.where(span > 0, (2.0 * x - hi - lo) / safe, 0.0)
    return np.clip(out, -1.0, 1.0)


def gaf(x, kind: str, lo=None, hi=None):
    """GASF or GADF of series x [..., S] (already resampled): [..., S, S]; `lo`/`hi` [...] fix the range."""
    import numpy as np

    u = _rescale(np.asarray(x, dtype=np.float64), lo, hi)
    s = np.sqrt(np.clip(1.0 - u * u, 0.0, 1.0))
    if kind == "gasf":
        return u[..., :, None] * u[..., None, :] - s[..., :, None] * s[..., None, :]
    if kind == "gadf":
        return s[..., :, None] * u[..., None, :] - u[..., :, None] * s[..., None, :]
    raise ValueError(kind)


def quantile_bins(x, Q: int, edges=None):
    """Bin index in 0..Q-1 of each value, by the series' own quantiles (or the given Q-1 `edges`)."""
    import numpy as np

    x = np.asarray(x, dtype=np.float64)
    if edges is None:
        edges = np.quantile(x, np.arange(1, Q) / Q)
    return np.searchsorted(np.asarray(edges, dtype=np.float64), x, side="right")


def mtf(x, Q: int = DEFAULT_BINS, edges=None):
    """The L x L Markov transition field of one series (before resizing)."""
    import numpy as np

    q = quantile_bins(x, Q, edges)
    W = np.zeros((Q, Q), dtype=np.float64)
    if len(q) > 1:
        np.add.at(W, (q[:-1], q[1:]), 1.0)
    rows = W.sum(axis=1, keepdims=True)
    W = np.divide(W, rows, out=np.zeros_like(W), where=rows > 0)
    return W[q][:, q]


class ImageStats:
    """Per-channel statistics of the training split for `rescale="train-split"`: lo, hi [C], MTF edges [C, Q-1]."""

    def __init__(self, lo, hi, edges):
        import numpy as np

        self.lo = np.asarray(lo, dtype=np.float64)
        self.hi = np.asarray(hi, dtype=np.float64)
        self.edges = np.asarray(edges, dtype=np.float64).reshape(len(self.lo), -1)

    def to_dict(self) -> dict:
        return {"lo": self.lo.tolist(), "hi": self.hi.tolist(), "mtf_edges": self.edges.tolist()}

    @classmethod
    def from_dict(cls, d: Any) -> "ImageStats | None":
        if not isinstance(d, dict) or "lo" not in d or "hi" not in d:
            return None
        return cls(d["lo"], d["hi"], d.get("mtf_edges") or [[] for _ in d["lo"]])

    def key(self) -> bytes:
        return self.lo.tobytes() + self.hi.tobytes() + self.edges.tobytes()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ImageStats) and self.key() == other.key()

    def __hash__(self) -> int:
        return hash(self.key())

    def __repr__(self) -> str:
        return f"ImageStats(channels={len(self.lo)})"


def fit_stats(X: Any, mask: Any, rows: Any = None, bins: int = DEFAULT_BINS) -> ImageStats:
    """Per-channel min, max and Q-quantile edges over the valid steps of episodes `rows` (the training split)."""
    import numpy as np

    X = np.asarray(X)
    M = np.zeros(X.shape[:2], dtype=np.uint8) if mask is None else np.asarray(mask)
    idx = np.arange(len(X)) if rows is None else np.asarray(rows, dtype=np.int64)
    if len(idx) == 0:
        raise UsageError("no episodes to fit the image statistics on")
    steps = X[idx][M[idx] == 0].astype(np.float64)            # [n_steps, C]
    if len(steps) == 0:
        raise UsageError("the episodes to fit the image statistics on have no valid steps")
    edges = np.quantile(steps, np.arange(1, bins) / bins, axis=0).T if bins > 1 else np.zeros((steps.shape[1], 0))
    return ImageStats(steps.min(axis=0), steps.max(axis=0), edges)


def episode_images(x, methods: tuple[str, ...], size: int = DEFAULT_SIZE, bins: int = DEFAULT_BINS,
                   stats: ImageStats | None = None):
    """Images of one episode's valid steps x [L, C]: float32 [len(methods) * C, size, size].

    `stats` None: each series' own range and quantiles (`episode`); else the fixed per-channel ones."""
    import numpy as np

    x = np.asarray(x, dtype=np.float64)
    L, C = x.shape
    out = np.zeros((len(methods) * C, size, size), dtype=np.float32)
    if L == 0:
        return out
    R = resample_matrix(L, size)
    xs = (R @ x).T                                   # [C, S]
    lo, hi = (None, None) if stats is None else (stats.lo, stats.hi)
    for m, method in enumerate(methods):
        if method in ("gasf", "gadf"):
            out[m * C:(m + 1) * C] = gaf(xs, method, lo, hi)
        else:
            for c in range(C):
                out[m * C + c] = R @ mtf(x[:, c], bins, None if stats is None else stats.edges[c]) @ R.T
    return out


def to_images(X: Any, mask: Any, methods: tuple[str, ...] | str, size: int = DEFAULT_SIZE,
              bins: int = DEFAULT_BINS, stats: ImageStats | None = None):
    """Episodes X [N, T, C] with mask [N, T] (1 = padding) -> float32 images [N, len(methods) * C, size, size].

    `stats` (from `fit_stats` on the training split) fixes each channel's range and MTF edges."""
    import numpy as np

    if isinstance(methods, str):
        methods = parse_imaging(methods)
    if not methods:
        raise UsageError("no imaging method given", hint=f"one or more of {', '.join(METHODS)}")
    if int(size) < 2 or int(bins) < 2:
        raise UsageError(f"image size and MTF bins must be >= 2 (got size {size}, bins {bins})")
    X = np.asarray(X)
    if X.ndim != 3:
        raise UsageError(f"imaging needs episodes [N, T, C], got shape {list(X.shape)}")
    N, T, C = X.shape
    if stats is not None and (len(stats.lo) != C or ("mtf" in methods and stats.edges.shape[1] != int(bins) - 1)):
        raise UsageError(f"the image statistics are for {len(stats.lo)} channels and "
                         f"{stats.edges.shape[1] + 1} MTF bins, the data has {C} channels ({bins} bins)")
    M = np.zeros((N, T), dtype=np.uint8) if mask is None else np.asarray(mask)
    out = np.zeros((N, len(methods) * C, size, size), dtype=np.float32)
    for i in range(N):
        out[i] = episode_images(X[i][M[i] == 0], methods, size, bins, stats)
    return out


# The last image set computed, by content: the runs of one process (the seeds of a configuration, a
# student's teacher logits) image the same episodes with the same parameters. One entry: 1,443
# SignGlove episodes as 8 x 64 x 64 GASF images are 190 MB.
_CACHE: dict[str, Any] = {}


def images_key(X: Any, mask: Any, methods: tuple[str, ...], size: int, bins: int,
               stats: ImageStats | None = None) -> str:
    """sha256 of the episodes' bytes (values, shape, mask) and the transform's parameters."""
    import hashlib
    import json

    import numpy as np

    X = np.ascontiguousarray(X, dtype=np.float32)
    h = hashlib.sha256(json.dumps([list(methods), int(size), int(bins), list(X.shape)]).encode())
    h.update(X.tobytes())
    if mask is not None:
        h.update(np.ascontiguousarray(mask, dtype=np.uint8).tobytes())
    h.update(b"stats:" + (stats.key() if stats is not None else b"episode"))
    return h.hexdigest()


def cached_images(X: Any, mask: Any, methods: tuple[str, ...] | str, size: int = DEFAULT_SIZE,
                  bins: int = DEFAULT_BINS, stats: ImageStats | None = None):
    """`to_images`, remembered for the last episodes and parameters it was asked for (read-only array).

    The images are a pure function of (X, mask, methods, size, bins, stats), so
    a hit returns the same values a fresh computation would.
    """
    if isinstance(methods, str):
        methods = parse_imaging(methods)
    key = images_key(X, mask, tuple(methods), size, bins, stats)
    hit = _CACHE.get(key)
    if hit is not None:
        return hit
    out = to_images(X, mask, methods, size, bins, stats)
    out.setflags(write=False)
    _CACHE.clear()
    _CACHE[key] = out
    return out


def clear_cache() -> None:
    _CACHE.clear()


def image_channels(methods: tuple[str, ...] | str, n_channels: int) -> int:
    if isinstance(methods, str):
        methods = parse_imaging(methods)
    return len(methods) * int(n_channels)


__all__ = ["METHODS", "DEFAULT_SIZE", "DEFAULT_BINS", "RESCALES", "ImageStats", "fit_stats", "parse_imaging", "resample_matrix", "gaf", "mtf",
           "quantile_bins", "episode_images", "to_images", "cached_images", "clear_cache", "images_key",
           "image_channels"]
