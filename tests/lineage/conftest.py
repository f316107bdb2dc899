"""Fixtures for lineage tests (factories in lineage_factories.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lineage_factories import init_encoder, init_head, train_steps, write_safetensors


@pytest.fixture
def runs(tmp_path: Path) -> dict[str, Path]:
    """A small lab: a base and its fine-tune, a VQ model with the base's encoder, an unrelated run, a copy."""
    rng = np.random.default_rng(1234)
    base = {**init_encoder(rng), **init_head(rng)}
    base = train_steps(base, rng, scale=0.5)               # "trained from scratch"
    ft = train_steps(base, rng, scale=0.03)
    vq = {**{k: v for k, v in base.items() if k.startswith("encoder.")},
          **init_head(rng, "codebook", out=64), **init_head(rng, "decoder", out=8)}
    vq = train_steps(vq, rng, scale=0.5, frozen=("encoder.",))
    other = train_steps({**init_encoder(np.random.default_rng(99)), **init_head(np.random.default_rng(98))},
                        rng, scale=0.5)
    paths = {
        "base": write_safetensors(tmp_path / "lab" / "base" / "model.safetensors", base,
                                  {"ckreg.global_step": "1000", "ckreg.epoch": "9"}),
        "ft": write_safetensors(tmp_path / "lab" / "ft" / "model.safetensors", ft,
                                {"ckreg.global_step": "1200", "ckreg.epoch": "11"}),
        "vq": write_safetensors(tmp_path / "lab" / "vq" / "model.safetensors", vq),
        "other": write_safetensors(tmp_path / "lab" / "other" / "model.safetensors", other),
    }
    # a re-saved copy: same tensors, another tensor order and metadata in the header
    copy = {k: base[k] for k in reversed(sorted(base))}
    paths["copy"] = write_safetensors(tmp_path / "lab" / "copy" / "base_copy.safetensors", copy, {"note": "re-saved"})
    return paths


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """The default digest cache goes to a temporary folder, never the user's."""
    monkeypatch.setenv("CKREG_CACHE_DIR", str(tmp_path / "user-cache"))
