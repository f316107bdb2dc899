"""Containers and prefixes (families.md, "Wrappers and prefixes seen in the wild") and Lightning metadata."""

from __future__ import annotations

import itertools
import json
from collections import OrderedDict

import pytest

from ckreg.readers import read_checkpoint
from ckreg.readers.unwrap import strip_prefixes

CONTAINERS = [None, "state_dict", "model", "model_state_dict", "net", "state_dict_ema"]
PREFIXES = ["", "module.", "_orig_mod.", "_forward_module.", "model.", "module._orig_mod.",
            "_orig_mod.module.", "_forward_module.model.", "model.module.", "_forward_module._orig_mod.module."]


@pytest.mark.parametrize("container,prefix", list(itertools.product(CONTAINERS, PREFIXES)))
def test_every_container_and_prefix_combination(save, tiny_state_dict, container, prefix):
    wrapped = OrderedDict((prefix + k, v) for k, v in tiny_state_dict.items())
    obj = wrapped if container is None else {"epoch": 1, container: wrapped, "note": "x"}
    res = read_checkpoint(save(obj, "w.pt"))
    assert list(res.tensors) == list(tiny_state_dict)          # stripped, original order kept
    assert list(res.original_names.values()) == list(wrapped)
    if container:
        assert res.unwrap[0] == f"state_dict found under key '{container}'"
    for part in filter(None, prefix.split(".")):
        assert any(f"'{part}.'" in line for line in res.unwrap), res.unwrap
    n = len(tiny_state_dict)
    if prefix.startswith("module."):
        assert f"stripped prefix 'module.' from {n} keys" in res.unwrap


def test_container_whose_values_are_tensors_wins(save, tiny_state_dict, torch_mod):
    """'model' holding a config dict must not shadow 'state_dict' holding the tensors."""
    obj = {"model": {"name": "gru", "layers": 2}, "state_dict": tiny_state_dict}
    res = read_checkpoint(save(obj))
    assert list(res.tensors) == list(tiny_state_dict)
    assert res.unwrap[0] == "state_dict found under key 'state_dict'"


def test_ema_and_main_weights_prefers_state_dict(save, tiny_state_dict):
    obj = {"state_dict_ema": {"ema." + k: v for k, v in tiny_state_dict.items()}, "state_dict": tiny_state_dict}
    res = read_checkpoint(save(obj))
    assert list(res.tensors) == list(tiny_state_dict)
    assert any("state_dict_ema" in line for line in res.unwrap)


def test_nested_container(save, tiny_state_dict):
    res = read_checkpoint(save({"model": {"state_dict": tiny_state_dict}}))
    assert list(res.tensors) == list(tiny_state_dict)


@pytest.mark.parametrize("names,expected", [
    (["fc.weight", "fc.bias"], ["fc.weight", "fc.bias"]),                 # a single layer keeps its name
    (["encoder.layer.0.w", "encoder.layer.1.w"], ["encoder.layer.0.w", "encoder.layer.1.w"]),
    (["net.RNN.0.weight", "net.head.bias"], ["RNN.0.weight", "head.bias"]),
    (["0.weight", "1.weight"], ["0.weight", "1.weight"]),                  # nn.Sequential indices stay
    (["module.module.a.w", "module.module.b.w"], ["a.w", "b.w"]),
    (["module.a.w", "b.w"], ["module.a.w", "b.w"]),                         # not ALL keys: nothing stripped
])
def test_prefix_rules(names, expected):
    got, _ = strip_prefixes(names)
    assert got == expected


def test_pickled_whole_module_is_flagged_and_still_described(save, torch_mod):
    model = torch_mod.nn.Sequential(torch_mod.nn.Linear(4, 3), torch_mod.nn.BatchNorm1d(3))
    res = read_checkpoint(save(model, "whole.pt"))
    unsafe = {f.actual for f in res.findings if f.code == "unsafe-global"}
    assert "torch.nn.modules.container.Sequential" in unsafe
    assert "torch.nn.modules.linear.Linear" in unsafe
    assert set(res.tensors) == set(model.state_dict())
    assert any("pickled module" in line for line in res.unwrap)


# ---------------------------------------------------------------- metadata


def test_lightning_metadata_is_plain_json(lightning_ckpt, tiny_state_dict):
    res = read_checkpoint(lightning_ckpt)
    assert not [f for f in res.findings if f.severity.value != "note"], res.findings
    m = res.metadata
    json.dumps(m)  # JSON-able
    assert m["epoch"] == 12 and m["global_step"] == 3400
    assert m["pytorch-lightning_version"] == "2.2.2"
    assert m["hparams_name"] == "kwargs"
    hp = m["hyper_parameters"]
    assert hp["data_dir"] == "/data/signglove"                 # pathlib.Path
    assert hp["lr"] == 0.001 and hp["seed"] == 42              # numpy scalars
    assert hp["class_weights"] == [1.0, 2.0]                    # small numpy array
    assert hp["kernel_sizes"] == [3, 5, 7] and hp["nested"] == {"bidirectional": False, "proj": None}
    assert m["monitor"] == "val/loss"
    assert m["best_model_score"] == 0.125                       # 0-d tensor read from its 4 bytes
    assert m["has_optimizer_state"] is True
    assert list(res.tensors) == list(tiny_state_dict)
    assert "stripped root attribute 'model.' shared by all 8 keys" in res.unwrap
    tiers = m["global_tiers"]
    assert tiers["pathlib.PosixPath"] == "pathlib" and tiers["collections.OrderedDict"] == "torch"


def test_weights_only_tiers_flag_lightning_extras(lightning_ckpt):
    """With tiers=WEIGHTS_ONLY exactly what torch.load(weights_only=True) refuses is flagged."""
    from ckreg.readers import WEIGHTS_ONLY

    res = read_checkpoint(lightning_ckpt, tiers=WEIGHTS_ONLY)
    flagged = {f.actual for f in res.findings if f.code == "unsafe-global"}
    assert "pathlib.PosixPath" in flagged and "numpy.dtype" in flagged
    assert not any(name.startswith("torch.") for name in flagged)


def test_weights_only_verdict_agrees_with_torch(lightning_ckpt, save, tiny_state_dict, torch_mod):
    """Our weights-only tier and torch's own unpickler accept and refuse the same files."""
    from ckreg.readers import WEIGHTS_ONLY

    plain = save(tiny_state_dict, "plain.pt")
    for path in (plain, lightning_ckpt):
        res = read_checkpoint(path, tiers=WEIGHTS_ONLY)
        ours = not res.unsafe
        try:
            torch_mod.load(path, weights_only=True)
            theirs = True
        except Exception:
            theirs = False
        assert ours == theirs, path


def test_best_model_score_on_cuda_like_storage_and_missing(save, tiny_state_dict, torch_mod):
    obj = {"state_dict": tiny_state_dict,
           "callbacks": {"ModelCheckpoint{}": {"monitor": "acc", "best_model_score": None}}}
    m = read_checkpoint(save(obj)).metadata
    assert m["monitor"] == "acc" and m["best_model_score"] is None
    assert m["has_optimizer_state"] is False


def test_legacy_metadata_scalars(save, tiny_state_dict, torch_mod):
    obj = {"state_dict": tiny_state_dict, "epoch": 2,
           "callbacks": {"ModelCheckpoint{}": {"monitor": "m", "best_model_score": torch_mod.tensor(0.5)}}}
    m = read_checkpoint(save(obj, _use_new_zipfile_serialization=False)).metadata
    assert m["best_model_score"] == 0.5 and m["epoch"] == 2


def test_omegaconf_hyperparameters_are_benign_and_converted(save, tiny_state_dict):
    """Hydra/OmegaConf configs saved as hyper_parameters: no unsafe findings, plain JSON out."""
    omegaconf = pytest.importorskip("omegaconf")
    cfg = omegaconf.OmegaConf.create({"model": {"hidden_size": 64, "layers": [1, 2]}, "lr": 0.001, "path": None})
    res = read_checkpoint(save({"state_dict": tiny_state_dict, "hyper_parameters": cfg}, "omega.ckpt"))
    assert not res.findings, res.findings
    assert res.metadata["hyper_parameters"] == {"model": {"hidden_size": 64, "layers": [1, 2]}, "lr": 0.001,
                                                "path": None}
    assert res.metadata["global_tiers"]["omegaconf.dictconfig.DictConfig"] == "omegaconf"


def test_python2_names_are_judged_as_pickle_resolves_them(write):
    """`__builtin__.long` is builtins.int (allowed only in the omegaconf tier); `__builtin__.eval` is unsafe."""
    from ckreg.readers.allowlist import tier_of

    assert tier_of("__builtin__", "long") == "omegaconf"
    assert tier_of("__builtin__", "set") == "torch"
    assert tier_of("__builtin__", "eval") is None
    assert tier_of("copy_reg", "_reconstructor") is None
