"""Factories for tests/inspect: state_dicts of every family, built with torch, saved in tmp dirs.

`inspect_factories` (the torch modules) is imported lazily so the torch-free
tests here run without the [train] extra.
"""

from __future__ import annotations

import pytest

from ckreg.arch import ArchSpec


def _factories():
    pytest.importorskip("torch")
    import inspect_factories

    return inspect_factories


def _records(sd) -> dict:
    """TensorRecords as a reader would declare them (storage identity models tied weights)."""
    from ckreg.readers.model import StorageRef, TensorRecord

    out = {}
    for name, t in sd.items():
        dtype = str(t.dtype).removeprefix("torch.")
        st = t.untyped_storage()
        out[name] = TensorRecord(name=name, dtype=dtype, shape=tuple(t.shape), stride=tuple(t.stride()),
                                 storage=StorageRef(key=str(st.data_ptr()), dtype=dtype,
                                                    numel=st.nbytes() // t.element_size()),
                                 storage_offset=t.storage_offset())
    return out


@pytest.fixture(scope="session")
def factories():
    """The torch module builders (`build`, `state_dict`, `save`)."""
    return _factories()


@pytest.fixture(scope="session")
def family_state_dict():
    """`family_state_dict(family, **overrides) -> state_dict` for any ArchSpec of any family."""
    f = _factories()

    def make(family: str, **overrides):
        return f.state_dict(ArchSpec.for_family(family, **overrides))

    return make


@pytest.fixture(scope="session")
def to_records():
    """torch state_dict -> {name: TensorRecord} (what read_checkpoint returns as `.tensors`)."""
    return _records


@pytest.fixture
def save_ckpt(tmp_path):
    """`save_ckpt(family_or_state_dict, kind="lightning", prefix="", name=None, **save_kwargs) -> Path`.

    kind: "lightning" (dict with state_dict, epoch, callbacks, ...), "plain",
    "model"/"model_state_dict"/"net"/"state_dict" (a dict holding one), "safetensors".
    """
    f = _factories()
    counter = iter(range(10_000))

    def make(what, kind: str = "lightning", prefix: str = "", name: str | None = None, overrides=None, **kw):
        sd = what if isinstance(what, dict) else f.state_dict(ArchSpec.for_family(what, **(overrides or {})))
        ext = ".safetensors" if kind == "safetensors" else ".ckpt"
        path = tmp_path / (name or f"model{next(counter)}{ext}")
        return f.save(sd, path, kind=kind, prefix=prefix, **kw)

    return make


def readers_available() -> bool:
    try:
        from ckreg.readers import read_checkpoint  # noqa: F401
    except ImportError:
        return False
    return True
