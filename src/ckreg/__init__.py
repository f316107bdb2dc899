"""ckreg: checkpoint registry and audit tool for PyTorch models.

The package root stays import-light: `import ckreg` must work where torch is
absent (issue #2), so `load` resolves the registry lazily.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "load"]


def load(ref: str, registry: str | None = None):
    """Load a registered model and its scaler, ready for `predict(episodes)`.

    `ref` is `NAME`, `NAME@alias` or `NAME@version` (issue #5). Needs the
    `ckreg[train]` extra, since it builds a torch module.
    """
    from ckreg.registry.api import load as _load

    return _load(ref, registry=registry)
