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

All three are invariant to a positive per-channel affine scaling, so raw or
scaled signals give the same images. numpy only; torch-free.
"""

from __future__ import annotations

from typing import Any

from ckreg.errors import UsageError

METHODS = ("gasf", "gadf", "mtf")
DEFAULT_SIZE = 64
DEFAULT_BINS = 8


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


def _rescale(x):
    """Min-max to [-1, 1] along the last axis; constant rows become 0."""
    import numpy as np

    lo = x.min(axis=-1, keepdims=True)
    hi = x.max(axis=-1, keepdims=True)
    span = hi - lo
    safe = np.where(span > 0, span, 1.0)
    out = np.where(span > 0, (2.0 * x - hi - lo) / safe, 0.0)
    return np.clip(out, -1.0, 1.0)


def gaf(x, kind: str):
    """GASF or GADF of series x [..., S] (already resampled): [..., S, S]."""
    import numpy as np

    u = _rescale(np.asarray(x, dtype=np.float64))
    s = np.sqrt(np.clip(1.0 - u * u, 0.0, 1.0))
    if kind == "gasf":
        return u[..., :, None] * u[..., None, :] - s[..., :, None] * s[..., None, :]
    if kind == "gadf":
        return s[..., :, None] * u[..., None, :] - u[..., :, None] * s[..., None, :]
    raise ValueError(kind)


def quantile_bins(x, Q: int):
    """Bin index in 0..Q-1 of each value, by the series' own quantiles."""
    import numpy as np

    x = np.asarray(x, dtype=np.float64)
    edges = np.quantile(x, np.arange(1, Q) / Q)
    return np.searchsorted(edges, x, side="right")


def mtf(x, Q: int = DEFAULT_BINS):
    """The L x L Markov transition field of one series (before resizing)."""
    import numpy as np

    q = quantile_bins(x, Q)
    W = np.zeros((Q, Q), dtype=np.float64)
    if len(q) > 1:
        np.add.at(W, (q[:-1], q[1:]), 1.0)
    rows = W.sum(axis=1, keepdims=True)
    W = np.divide(W, rows, out=np.zeros_like(W), where=rows > 0)
    return W[q][:, q]


def episode_images(x, methods: tuple[str, ...], size: int = DEFAULT_SIZE, bins: int = DEFAULT_BINS):
    """Images of one episode's valid steps x [L, C]: float32 [len(methods) * C, size, size]."""
    import numpy as np

    x = np.asarray(x, dtype=np.float64)
    L, C = x.shape
    out = np.zeros((len(methods) * C, size, size), dtype=np.float32)
    if L == 0:
        return out
    R = resample_matrix(L, size)
    xs = (R @ x).T                                   # [C, S]
    for m, method in enumerate(methods):
        if method in ("gasf", "gadf"):
            out[m * C:(m + 1) * C] = gaf(xs, method)
        else:
            for c in range(C):
                out[m * C + c] = R @ mtf(x[:, c], bins) @ R.T
    return out


def to_images(X: Any, mask: Any, methods: tuple[str, ...] | str, size: int = DEFAULT_SIZE,
              bins: int = DEFAULT_BINS):
    """Episodes X [N, T, C] with mask [N, T] (1 = padding) -> float32 images [N, len(methods) * C, size, size]."""
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
    M = np.zeros((N, T), dtype=np.uint8) if mask is None else np.asarray(mask)
    out = np.zeros((N, len(methods) * C, size, size), dtype=np.float32)
    for i in range(N):
        out[i] = episode_images(X[i][M[i] == 0], methods, size, bins)
    return out


# The last image set computed, by content: the runs of one process (the seeds of a configuration, a
# student's teacher logits) image the same episodes with the same parameters. One entry: 1,443
# SignGlove episodes as 8 x 64 x 64 GASF images are 190 MB.
_CACHE: dict[str, Any] = {}


def images_key(X: Any, mask: Any, methods: tuple[str, ...], size: int, bins: int) -> str:
    """sha256 of the episodes' bytes (values, shape, mask) and the transform's parameters."""
    import hashlib
    import json

    import numpy as np

    X = np.ascontiguousarray(X, dtype=np.float32)
    h = hashlib.sha256(json.dumps([list(methods), int(size), int(bins), list(X.shape)]).encode())
    h.update(X.tobytes())
    if mask is not None:
        h.update(np.ascontiguousarray(mask, dtype=np.uint8).tobytes())
    return h.hexdigest()


def cached_images(X: Any, mask: Any, methods: tuple[str, ...] | str, size: int = DEFAULT_SIZE,
                  bins: int = DEFAULT_BINS):
    """`to_images`, remembered for the last episodes and parameters it was asked for (read-only array).

    The images are a pure function of (X, mask, methods, size, bins), so a hit
    returns the same values a fresh computation would.
    """
    if isinstance(methods, str):
        methods = parse_imaging(methods)
    key = images_key(X, mask, tuple(methods), size, bins)
    hit = _CACHE.get(key)
    if hit is not None:
        return hit
    out = to_images(X, mask, methods, size, bins)
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


__all__ = ["METHODS", "DEFAULT_SIZE", "DEFAULT_BINS", "parse_imaging", "resample_matrix", "gaf", "mtf",
           "quantile_bins", "episode_images", "to_images", "cached_images", "clear_cache", "images_key",
           "image_channels"]
