"""Lineage from the weights: which checkpoints are copies, fine-tunes, transplants or students of which.

Torch-free: tensor bytes are streamed by the readers (never unpickled),
hashed per tensor and cached; distances decode float16/bfloat16/float32 with
numpy (optional). Documented in docs/lineage.md.

    from ckreg.lineage import lineage
    result = lineage(["runs/"])           # LineageResult: checked, edges, errors, warnings
"""

from __future__ import annotations

from ckreg.lineage.core import (DEFAULT_THRESHOLD, RELATIONS, Edge, Group, LineageResult, analyse, lineage,
                                name_groups, shared_tensors)
from ckreg.lineage.digests import DigestCache, FileDigests, TensorDigest, default_cache_dir, digest_file

__all__ = ["lineage", "analyse", "LineageResult", "Edge", "Group", "DEFAULT_THRESHOLD", "RELATIONS",
           "name_groups", "shared_tensors", "DigestCache", "FileDigests", "TensorDigest", "default_cache_dir",
           "digest_file"]
