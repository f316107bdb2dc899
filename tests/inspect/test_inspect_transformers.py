"""Hugging Face models (tiny, randomly initialised configs of BERT, GPT-2, T5, Whisper, Llama),
saved with save_pretrained as users ship them: counts exact, structure right."""

from __future__ import annotations

import pytest

from ckreg.inspect import inspect_path

T = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")


def _build(name: str):
    torch.manual_seed(0)
    if name == "bert":
        c = T.BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=37, max_position_embeddings=64, num_labels=3)
        return T.BertForSequenceClassification(c)
    if name == "gpt2":
        c = T.GPT2Config(vocab_size=99, n_embd=32, n_layer=3, n_head=4, n_positions=64, bos_token_id=1,
                         eos_token_id=2)
        return T.GPT2LMHeadModel(c)
    if name == "t5":
        c = T.T5Config(vocab_size=99, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_decoder_layers=3, num_heads=4,
                       pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
        return T.T5ForConditionalGeneration(c)
    if name == "whisper":
        c = T.WhisperConfig(vocab_size=99, d_model=32, encoder_layers=2, decoder_layers=3, encoder_attention_heads=4,
                            decoder_attention_heads=4, encoder_ffn_dim=37, decoder_ffn_dim=37, num_mel_bins=16,
                            max_source_positions=30, max_target_positions=40, pad_token_id=1, bos_token_id=2,
                            eos_token_id=3, decoder_start_token_id=2)
        return T.WhisperForConditionalGeneration(c)
    c = T.LlamaConfig(vocab_size=99, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=64, bos_token_id=1, eos_token_id=2)
    return T.LlamaForCausalLM(c)


def _counts(m):
    params = sum(p.numel() for p in m.parameters())
    sd = m.state_dict(keep_vars=True)
    buffers = sum(v.numel() for k, v in sd.items() if not isinstance(v, torch.nn.Parameter)
                  and k in dict(m.named_buffers()))
    return params, buffers


EXPECT = {  # num_layers, stacks, d_model, ffn, attention, kv_dim, heads, classifier (prefix, out, role), conv
    "bert": (2, {"bert.encoder.layer": 2}, 32, 37, "separate", 32, 4, ("classifier", 3, "classifier"), 0),
    "gpt2": (3, {"h": 3}, 32, 128, "fused-qkv", 32, 4, ("lm_head", 99, "lm-head"), 0),
    "t5": (5, {"encoder.block": 2, "decoder.block": 3}, 32, 37, "separate", 32, 4, ("lm_head", 99, "lm-head"), 0),
    "whisper": (5, {"encoder.layers": 2, "decoder.layers": 3}, 32, 37, "separate", 32, 4,
                ("lm_head", 99, "lm-head"), 2),
    "llama": (2, {"model.layers": 2}, 32, 37, "grouped-query", 16, 4, ("lm_head", 99, "lm-head"), 0),
}


@pytest.fixture(scope="module")
def models():
    return {name: _build(name) for name in EXPECT}


CASES = [(n, "single") for n in EXPECT] + [("llama", "sharded"), ("t5", "sharded"), ("gpt2", "bin"),
                                           ("whisper", "bin")]


@pytest.mark.parametrize(("name", "layout"), CASES)
def test_hf_folder(tmp_path, models, name, layout):
    m = models[name]
    folder = tmp_path / name
    kw = {"max_shard_size": "24KB"} if layout == "sharded" else {}
    if layout == "bin":
        kw["safe_serialization"] = False
    try:
        m.save_pretrained(folder, **kw)
    except TypeError:
        pytest.skip(f"this transformers cannot save {layout}")
    insp = inspect_path(folder)
    assert insp.error is None, insp.error
    assert (insp.params.trainable, insp.params.buffers) == _counts(m)
    bad = [f for f in insp.findings if f.code not in ("family-unknown",)]
    assert not bad, [(f.code, f.message) for f in bad]
    n, stacks, d, ffn, attn, kv, heads, head, conv = EXPECT[name]
    t = insp.structure["transformer"]
    assert t["num_layers"] == n
    assert {s["prefix"]: s["num_layers"] for s in t["stacks"]} == stacks
    assert (t["d_model"], t["ffn_dim"], t["attention"], t["kv_dim"], t["num_heads"]) == (d, ffn, attn, kv, heads)
    c = insp.structure["classifier"]
    assert (c["prefix"], c["out_features"], c["role"]) == head
    assert insp.structure["conv"]["count"] == conv
    tokens = [e for e in insp.structure["embeddings"] if e["role"] == "token"]
    assert tokens and tokens[0]["num_embeddings"] == 99
    assert insp.structure["linear"]["count"] > 0
    if layout == "sharded":
        assert len(insp.metadata["model_folder"]["files"]) > 1


def test_gpt2_pickled_state_dict_reads_conv1d_forwards(tmp_path, models):
    """A plain torch.save of GPT-2's state_dict (module order, tied head saved twice, counted once)."""
    m = models["gpt2"]
    path = tmp_path / "gpt2.pt"
    torch.save(m.state_dict(), path)
    insp = inspect_path(path)
    assert (insp.params.trainable, insp.params.buffers) == _counts(m)
    assert insp.structure["linear"]["conv1d_transposed"] == 3 * 4
    assert any("h.0.mlp.c_fc 32 -> 128" in line for line in insp.description)
    assert insp.structure["classifier"]["prefix"] == "lm_head"
    assert insp.structure["classifier"]["role"] == "lm-head"
