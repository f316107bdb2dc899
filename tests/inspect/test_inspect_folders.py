"""Model folders (Hugging Face layout) inspected as one model: shards merged, index checked,
config.json filling and checked against what the weights show."""

from __future__ import annotations

import json

import pytest

from ckreg.inspect import exit_code, inspect_path

pytest.importorskip("torch")
import structure_factories as sf  # noqa: E402


def _shard(sd: dict, n: int) -> list[dict]:
    keys = list(sd)
    size = -(-len(keys) // n)
    return [{k: sd[k] for k in keys[i:i + size]} for i in range(0, len(keys), size)]


def _write_sharded(folder, sd, n=3, *, config=None, kind="safetensors"):
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    parts = _shard({k: v.contiguous() for k, v in sd.items()}, n)
    stem, ext = ("model", "safetensors") if kind == "safetensors" else ("pytorch_model", "bin")
    weight_map = {}
    for i, part in enumerate(parts, 1):
        name = f"{stem}-{i:05d}-of-{len(parts):05d}.{ext}"
        if kind == "safetensors":
            save_file(part, str(folder / name), metadata={"format": "pt"})
        else:
            torch.save(part, folder / name)
        weight_map.update({k: name for k in part})
    total = sum(v.numel() * v.element_size() for v in sd.values())
    (folder / f"{stem}.{ext}.index.json").write_text(json.dumps({"metadata": {"total_size": total},
                                                                   "weight_map": weight_map}))
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config))
    return folder


LLAMA_CONFIG = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 32,
                "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 1,
                "intermediate_size": 44, "vocab_size": 60, "torch_dtype": "float32",
                "tie_word_embeddings": False}


@pytest.mark.parametrize("kind", ["safetensors", "bin"])
def test_sharded_folder_is_one_model(tmp_path, kind):
    m = sf.Llamaish(vocab=60, d=32, kv=8, ffn=44, layers=3)
    folder = _write_sharded(tmp_path / "llama", m.state_dict(), 4, config=LLAMA_CONFIG, kind=kind)
    insp = inspect_path(folder, hash_weights=True)
    assert insp.error is None, insp.error
    assert (insp.params.trainable, insp.params.buffers) == sf.counts(m)
    assert insp.params.tensors == len(m.state_dict())          # storage keys of different shards never tie
    assert insp.metadata["model_folder"]["files"] and len(insp.metadata["model_folder"]["files"]) == 4
    t = insp.structure["transformer"]
    assert (t["num_layers"], t["d_model"], t["kv_dim"], t["num_heads"], t["num_kv_heads"]) == (3, 32, 8, 4, 1)
    assert insp.not_recorded["num_heads"] == 4
    assert [f.code for f in insp.findings] == ["family-unknown"]
    assert insp.weights_sha256 and insp.sha256
    assert insp.structure["classifier"]["prefix"] == "lm_head"


def test_one_prefix_decision_for_all_shards(tmp_path):
    """Each shard alone would be stripped differently (one holds only `model.*` keys)."""
    m = sf.Llamaish(vocab=60, d=32, kv=8, ffn=44, layers=3)
    sd = m.state_dict()
    folder = _write_sharded(tmp_path / "f", sd, 4, config=LLAMA_CONFIG)
    insp = inspect_path(folder)
    assert set(insp.layout) == set(sd)


def test_index_inconsistencies_are_findings(tmp_path):
    m = sf.Llamaish(vocab=60, d=32, kv=8, ffn=44, layers=3)
    folder = _write_sharded(tmp_path / "f", m.state_dict(), 3, config=LLAMA_CONFIG)
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    wm = index["weight_map"]
    moved = next(iter(wm))
    wm[moved] = "model-00003-of-00003.safetensors"            # indexed in the wrong shard
    dropped = list(wm)[5]
    del wm[dropped]                                            # a tensor the index does not name
    wm["ghost.weight"] = "model-00002-of-00003.safetensors"    # indexed, in no shard
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    insp = inspect_path(folder)
    msgs = [f.message for f in insp.findings if f.code == "model-folder-invalid"]
    assert any(moved in x and "but it is in" in x for x in msgs)
    assert any(dropped in x and "is not in" in x for x in msgs)
    assert any("ghost.weight" in x for x in msgs)
    assert exit_code([insp]) == 1


def test_missing_shard_is_a_finding_and_the_rest_is_read(tmp_path):
    m = sf.Llamaish(vocab=60, d=32, kv=8, ffn=44, layers=3)
    folder = _write_sharded(tmp_path / "f", m.state_dict(), 3, config=LLAMA_CONFIG)
    (folder / "model-00002-of-00003.safetensors").unlink()
    insp = inspect_path(folder)
    assert insp.error is None
    assert any("model-00002-of-00003.safetensors" in f.message and "no such file" in f.message
               for f in insp.findings if f.code == "model-folder-invalid")
    assert 0 < insp.params.tensors < len(m.state_dict())


def test_config_contradicting_weights(tmp_path):
    m = sf.Llamaish(vocab=60, d=32, kv=8, ffn=44, layers=3)
    cfg = dict(LLAMA_CONFIG, num_hidden_layers=12, vocab_size=32000, num_key_value_heads=2,
               torch_dtype="bfloat16")
    folder = _write_sharded(tmp_path / "f", m.state_dict(), 2, config=cfg)
    insp = inspect_path(folder)
    msgs = {f.message: (f.expected, f.actual) for f in insp.findings if f.code == "metadata-contradicts-weights"}
    assert msgs[next(x for x in msgs if "num_hidden_layers=12" in x)] == (3, 12)
    assert any("vocab_size=32000" in x for x in msgs)
    assert any("num_key_value_heads=2" in x and "8 wide" in x for x in msgs)
    assert any("torch_dtype=bfloat16" in x for x in msgs)


def test_unreadable_index_is_an_error_not_a_crash(tmp_path):
    m = sf.Llamaish(vocab=60, d=32, kv=8, ffn=44, layers=3)
    folder = _write_sharded(tmp_path / "f", m.state_dict(), 2, config=LLAMA_CONFIG)
    (folder / "model.safetensors.index.json").write_text("{not json")
    insp = inspect_path(folder)
    assert insp.error and "model.safetensors.index.json" in insp.error
    assert exit_code([insp]) == 2


def test_plain_folder_is_still_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    insp = inspect_path(tmp_path)
    assert insp.error and "directory" in insp.error
