"""Factories for registry tests: tiny checkpoints, scalers and registries in tmp dirs.

Core tests (blobs, schema, versions, aliases, events, concurrency) need no
torch and no inspector: they register arbitrary bytes with an explicit spec
and a stub `Inspection` (`reghelpers.stub_inspection`), the hook
`Registry.register` offers callers that already inspected. Export and
`ckreg.load` tests build real GRU checkpoints (hidden 8, 4 classes) with torch.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ckreg.data import SIGNGLOVE_CHANNELS
from ckreg.registry import Registry
from reghelpers import tiny_spec


@pytest.fixture(params=["sqlite+folder", "postgres+s3"])
def reg(request, tmp_path, monkeypatch) -> Registry:
    """The same registry tests on both backends: SQLite + a local folder, PostgreSQL + S3 (skipped without them)."""
    if request.param == "sqlite+folder":
        r = Registry(tmp_path / "reg")
    else:
        pg_url = request.getfixturevalue("pg_url")
        bucket = request.getfixturevalue("s3_bucket")
        monkeypatch.setenv("CKREG_CACHE_DIR", str(tmp_path / "cache"))
        r = Registry(tmp_path / "reg", db=pg_url, store=f"s3://{bucket}/team")
    yield r
    r.close()


@pytest.fixture
def blob_file(tmp_path):
    """blob_file(i) -> a small file with distinct, deterministic content."""
    made: dict[int, Path] = {}

    def make(i: int = 0, size: int = 2048) -> Path:
        if i not in made:
            p = tmp_path / "files" / f"f{i}.bin"
            p.parent.mkdir(exist_ok=True)
            p.write_bytes(hashlib.sha256(f"blob-{i}".encode()).digest() * (size // 32))
            made[i] = p
        return made[i]

    return make


@pytest.fixture
def gru_ckpt(tmp_path, torch_mod):
    """gru_ckpt(seed, lightning=False) -> (path, state_dict) of a tiny GRU (hidden 8, 4 classes)."""
    torch = torch_mod
    from ckreg.zoo import build

    def make(seed: int = 0, lightning: bool = False, name: str | None = None):
        torch.manual_seed(seed)
        module = build(tiny_spec())
        state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        path = tmp_path / "ckpts" / (name or f"gru_{seed}{'.ckpt' if lightning else '.pt'}")
        path.parent.mkdir(exist_ok=True)
        if lightning:
            torch.save({"state_dict": {f"model.{k}": v for k, v in state.items()}, "epoch": 3, "global_step": 30,
                        "pytorch-lightning_version": "2.1.0"}, path)
        else:
            torch.save(state, path)
        return path, state

    return make


@pytest.fixture
def scaler_file(tmp_path):
    """scaler_file(seed, pkl=False) -> path of a scaler (JSON or sklearn pickle) for 8 channels."""
    scaler_mod = pytest.importorskip("ckreg.scaler")
    np = pytest.importorskip("numpy")
    made: dict[tuple[int, bool], Path] = {}

    def make(seed: int = 0, pkl: bool = False) -> Path:
        if (seed, pkl) in made:
            return made[(seed, pkl)]
        rng = np.random.default_rng(seed)
        scale = rng.uniform(0.5, 2.0, size=8)
        sc = scaler_mod.Scaler(mean=rng.normal(size=8).tolist(), scale=scale.tolist(), var=(scale ** 2).tolist(),
                               n_features=8, n_samples_seen=100, channel_names=list(SIGNGLOVE_CHANNELS),
                               recipe="train-split", data_hash=f"data-{seed}")
        path = tmp_path / "scalers" / f"scaler_{seed}.{'pkl' if pkl else 'json'}"
        made[(seed, pkl)] = (scaler_mod.save_pickle if pkl else scaler_mod.save_json)(sc, path)
        return made[(seed, pkl)]

    return make
