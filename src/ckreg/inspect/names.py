"""Rendering helpers for key lists and shapes (they live in `ckreg.families.names`)."""

from __future__ import annotations

from ckreg.families.names import braces, collapse_names, fmt_int, fmt_kernel, fmt_shape

__all__ = ["braces", "collapse_names", "fmt_int", "fmt_kernel", "fmt_shape"]
