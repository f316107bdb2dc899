"""`Inspection.structure`: facts as data for any state_dict, and the prose bugs it fixes.

Each architecture is a tiny randomly initialised torch module (structure_factories);
counts are compared with torch's own.
"""

from __future__ import annotations

import pytest

from ckreg.inspect import NOT_RECORDED, inspect_path, inspect_tensors
from ckreg.inspect.structure import analyze

pytest.importorskip("torch")
import structure_factories as sf  # noqa: E402


def _insp(to_records, model, *, ordered=True):
    recs = to_records(model.state_dict())
    if not ordered:
        recs = dict(sorted(recs.items()))
    return inspect_tensors(recs, ordered=ordered)


def test_resnet18_layout(to_records):
    m = sf.ResNet18(w=8, num_classes=10)
    insp = _insp(to_records, m)
    s = insp.structure
    assert s["conv"] == {"count": 20, "by_dim": {"2": 20}, "kernels": {"3x3": 16, "1x1": 3, "7x7": 1}}
    assert s["norms"] == {"BatchNorm": 20}
    assert s["linear"]["count"] == 1
    assert s["classifier"] == {"prefix": "fc", "in_features": 64, "out_features": 10, "role": "classifier",
                               "chosen_by": "named 'fc'"}
    assert s["transformer"] is None and s["recurrent"] == [] and s["embeddings"] == []
    assert (insp.params.trainable, insp.params.buffers) == sf.counts(m)
    assert insp.hyperparameters == {"input_size": 3, "num_classes": 10}
    assert "classifier: fc 64 -> 10 (named 'fc')" in insp.evidence


def test_resnet18_safetensors_file(tmp_path):
    from safetensors.torch import save_file

    m = sf.ResNet18(w=4, num_classes=7)
    save_file(m.state_dict(), str(tmp_path / "resnet.safetensors"))
    insp = inspect_path(tmp_path / "resnet.safetensors")
    assert insp.structure["conv"]["count"] == 20
    assert insp.structure["classifier"]["out_features"] == 7
    assert (insp.params.trainable, insp.params.buffers) == sf.counts(m)


def test_timm_vit_layout(to_records):
    m = sf.TimmViT(d=16, depth=3, ffn=40, num_classes=5)
    s = _insp(to_records, m).structure
    t = s["transformer"]
    assert (t["num_layers"], t["d_model"], t["ffn_dim"], t["attention"], t["kv_dim"]) == (3, 16, 40, "fused-qkv", 16)
    assert t["num_heads"] == NOT_RECORDED
    assert {"prefix": "pos_embed", "num_embeddings": 17, "embedding_dim": 16, "role": "position"} in s["embeddings"]
    assert s["conv"]["kernels"] == {"4x4": 1}
    assert s["classifier"]["prefix"] == "head" and s["classifier"]["out_features"] == 5


def test_cell_stacks_are_recurrent(to_records):
    """LSTMCell/GRUCell keys are weight_ih/weight_hh with no _l0: the old description missed them."""
    m = sf.CellStack()
    insp = _insp(to_records, m)
    rec = insp.structure["recurrent"]
    assert {"prefix": "cells", "cell": "LSTMCell", "num_layers": 3, "input_size": 8, "hidden_size": 24,
            "bidirectional": False} in rec
    assert {"prefix": "gru_cell", "cell": "GRUCell", "num_layers": 1, "input_size": 24, "hidden_size": 12,
            "bidirectional": False} in rec
    assert insp.structure["linear"]["count"] == 1      # the cells' matrices are not linear layers
    assert insp.hyperparameters == {"input_size": 8, "hidden_size": 24, "num_layers": 4, "num_classes": 4}
    assert any("recurrent cell stack cells: LSTMCell, 3 layers, input 8, hidden 24" in x for x in insp.description)


def test_hf_conv1d_is_read_in_out(to_records):
    """GPT-2's Conv1D stores [in, out]: c_fc is 16 -> 64, not 64 -> 16; the fused c_attn gets its width."""
    m = sf.GPT2ish(vocab=50, d=16, layers=2)
    insp = _insp(to_records, m)
    t = insp.structure["transformer"]
    assert (t["num_layers"], t["d_model"], t["ffn_dim"], t["attention"], t["kv_dim"]) == (2, 16, 64, "fused-qkv", 16)
    text = "\n".join(insp.description)
    assert "fused c_attn 16 -> 48" in text
    assert "h.0.mlp.c_fc 16 -> 64" in text and "64 -> 16 (Conv1D" not in text
    assert insp.structure["linear"]["conv1d_transposed"] == 8
    roles = {e["prefix"]: e["role"] for e in insp.structure["embeddings"]}
    assert roles == {"wte": "token", "wpe": "position"}
    assert insp.structure["classifier"] is None


def test_grouped_query_width_is_the_model_width(to_records):
    m = sf.Llamaish(vocab=60, d=32, kv=8, ffn=44, layers=3)
    insp = _insp(to_records, m, ordered=False)   # as safetensors would list it: lm_head first
    t = insp.structure["transformer"]
    assert t["d_model"] == 32 and t["kv_dim"] == 8 and t["attention"] == "grouped-query"
    assert t["ffn_dim"] == 44 and t["num_layers"] == 3 and t["num_kv_heads"] == NOT_RECORDED
    assert insp.structure["norms"] == {"RMSNorm": 7}
    head = insp.structure["classifier"]
    assert head["prefix"] == "lm_head" and head["role"] == "lm-head" and head["out_features"] == 60
    assert insp.hyperparameters["hidden_size"] == 32 and "num_classes" not in insp.hyperparameters
    assert (insp.params.trainable, insp.params.buffers) == sf.counts(m)


def test_prelu_is_not_a_norm(to_records):
    m = sf.PReLUNet()
    m.act = __import__("torch").nn.PReLU(16)
    insp = _insp(to_records, m)
    assert insp.structure["norms"] == {}
    assert insp.structure["activations"] == {"PReLU": 2}
    text = "\n".join(insp.description)
    assert "LayerNorm" not in text and "PReLU" in text


def test_t5_tables_are_embeddings_not_linear(to_records):
    m = sf.T5Encoderish(vocab=40, d=16, ffn=24, layers=2)
    insp = _insp(to_records, m)
    s = insp.structure
    embeds = {e["prefix"]: (e["num_embeddings"], e["embedding_dim"], e["role"]) for e in s["embeddings"]}
    assert embeds == {"shared": (40, 16, "token"),
                      "block.0.layer.0.SelfAttention.relative_attention_bias": (32, 4, "position")}
    assert s["linear"]["count"] == 2 * 6            # q, k, v, o, wi, wo per block; no table among them
    assert s["transformer"]["ffn_dim"] == 24 and s["transformer"]["num_layers"] == 2


def test_classifier_by_name_survives_alphabetical_order(to_records):
    from torch import nn

    class Tagger(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 20))
            self.classifier = nn.Linear(20, 6)
            self.projection = nn.Linear(20, 3)   # after the classifier, and last alphabetically

    insp = _insp(to_records, Tagger(), ordered=False)
    assert insp.structure["classifier"]["prefix"] == "classifier"
    assert insp.hyperparameters["num_classes"] == 6


def test_unnamed_head_needs_module_order(to_records):
    from torch import nn

    m = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 4))
    assert _insp(to_records, m).structure["classifier"]["prefix"] == "2"
    a = analyze({"0.weight": (20, 10), "0.bias": (20,), "2.weight": (4, 20), "2.bias": (4,)}, ordered=False)
    assert a.structure["classifier"] is None
    assert "alphabetical" in a.evidence[0]


def test_decoder_that_reconstructs_has_no_classifier(to_records):
    insp = _insp(to_records, sf.VQAutoencoder())
    assert insp.structure["classifier"] is None
    assert any("reconstruction" in e for e in insp.evidence)
    assert {"prefix": "quantizer.codebook", "num_embeddings": 64, "embedding_dim": 8,
            "role": "codebook"} in insp.structure["embeddings"]
    assert "num_classes" not in insp.hyperparameters


def test_known_family_gets_structure_too(family_state_dict, to_records):
    insp = inspect_tensors(to_records(family_state_dict("GRU")))
    assert insp.family == "GRU"
    rec = insp.structure["recurrent"]
    assert rec and rec[0]["cell"] == "GRU" and rec[0]["hidden_size"] == insp.hyperparameters["hidden_size"]
    assert insp.structure["classifier"]["out_features"] == insp.hyperparameters["num_classes"]
