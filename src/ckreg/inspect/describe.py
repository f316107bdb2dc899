"""A generic description of any state_dict (issue #2: "Anything else: family unknown ...").

The facts come from `ckreg.inspect.structure.analyze` (one place for the
reading of names and shapes); this module only words them: recurrent stacks
(cell, layers, input and hidden size, direction), convolutions (dimensionality,
kernels), attention blocks and transformer depth and width, embedding/codebook
tables with their roles, linear layers, the classifier head and how it was
chosen, normalisation layers, other tensors. What the weights cannot show
(attention head counts, activations) is said to be unrecorded, never guessed.
"""

from __future__ import annotations

from typing import Any, Mapping

from ckreg.inspect.structure import Analysis, analyze

Shapes = Mapping[str, tuple[int, ...]]


def describe(shapes: Shapes, *, ordered: bool = True, config: Mapping[str, Any] | None = None
             ) -> tuple[list[str], dict]:
    """Description lines plus a summary dict (`structure`, counts per kind, classifier)."""
    a = analyze(shapes, ordered=ordered, config=config)
    return a.lines, summary_of(a)


def summary_of(a: Analysis) -> dict:
    s = a.structure
    t = s.get("transformer")
    return {
        "structure": s,
        "analysis": a,
        "recurrent": len(s["recurrent"]),
        "convolutions": s["conv"]["count"],
        "attention": t["attention_blocks"] if t else 0,
        "embeddings": len(s["embeddings"]),
        "linear": s["linear"]["count"],
        "classifier": s["classifier"],
        "batchnorm": s["norms"].get("BatchNorm", 0),
        "norm": sum(v for k, v in s["norms"].items() if k != "BatchNorm"),
    }
