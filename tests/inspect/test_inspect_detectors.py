"""Detectors on in-memory state_dicts (TensorRecords built from torch modules): families,
hyperparameters, evidence, ranking, broken and unknown files, counts, metadata."""

from __future__ import annotations

import pytest

from ckreg.arch import FAMILIES, ArchSpec
from ckreg.inspect import NOT_RECORDED, inspect_tensors, spec_from_inspection
from ckreg.inspect.detectors import DETECTORS
from ckreg.inspect.layouts import param_counts
from ckreg.inspect.names import braces, collapse_names

# Variants the archive never showed: other sizes, layers, classes, cells, kernels, WRN shapes.
VARIANTS = [
    ("GRU", {}),
    ("GRU", {"num_layers": 2}),
    ("GRU", {"hidden_size": 32, "num_layers": 3, "num_classes": 10, "input_size": 6, "proj_size": 100}),
    ("GRU", {"bidirectional": True, "hidden_size": 16}),
    ("GRU", {"cell": "RNN", "hidden_size": 40}),
    ("LSTM", {}),
    ("LSTM", {"num_layers": 1, "hidden_size": 48, "num_classes": 5}),
    ("StackedGRU", {"num_layers": 3}),
    ("StackedGRU", {"num_layers": 2, "bidirectional": True, "hidden_size": 24}),
    ("StackedLSTM", {}),
    ("StackedLSTM", {"num_layers": 4, "hidden_size": 16, "input_size": 12}),
    ("CNNGRU", {}),
    ("CNNGRU", {"cell": "LSTM", "num_layers": 2, "hidden_size": 96, "cnn_filters": 16, "tower_kernels": [[5]]}),
    ("CNNStackedGRU", {}),
    ("CNNStackedGRU", {"num_layers": 3, "hidden_size": 32}),
    ("MSCGRU", {}),
    ("MSCGRU", {"tower_kernels": [[3], [5], [9]], "cnn_filters": 16}),
    ("MSCSGRU", {}),
    ("MSCSGRU", {"num_classes": 34}),
    ("MS3DGRU", {}),
    ("MS3DGRU", {"tower_kernels": [[3, 5, 3], [5, 5, 5], [7, 7, 7]], "hidden_size": 32}),
    ("MS3DStackedGRU", {}),
    ("MS3DStackedGRU", {"hidden_size": 32, "num_classes": 10, "cnn_filters": 8}),
    ("MSCGRU_ScaleAware", {}),
    ("MSCGRU_ScaleAware", {"hidden_size": 32, "cnn_filters": 16}),
    ("WRN", {"depth": 16, "widen_factor": 1, "conv_dim": 1}),
    ("WRN", {"depth": 16, "widen_factor": 1, "conv_dim": 2}),
    ("WRN", {"depth": 16, "widen_factor": 3, "conv_dim": 1}),
    ("WRN", {"depth": 28, "widen_factor": 3, "conv_dim": 1}),
    ("WRN", {"depth": 28, "widen_factor": 1, "conv_dim": 2}),
    ("WRN", {"depth": 28, "widen_factor": 3, "conv_dim": 2, "num_classes": 10}),
]


def test_one_detector_per_family():
    assert [d.family for d in DETECTORS] == list(FAMILIES)


@pytest.mark.parametrize("family,overrides", VARIANTS, ids=lambda v: str(v))
def test_family_and_hyperparameters(family_state_dict, to_records, family, overrides):
    spec = ArchSpec.for_family(family, **overrides)
    insp = inspect_tensors(to_records(family_state_dict(family, **overrides)), path="x.ckpt")
    assert insp.family == family, insp.candidates
    assert insp.confidence == 1.0
    assert insp.hyperparameters == spec.weight_hparams()
    assert insp.leftovers == [] and insp.findings == []
    assert (insp.params.trainable, insp.params.buffers) == param_counts(spec)
    assert 0.0 <= insp.confidence <= 1.0
    # the zoo contract: the inspected spec rebuilds exactly the same architecture
    assert spec_from_inspection(insp) == spec


def test_evidence_lines(family_state_dict, to_records):
    insp = inspect_tensors(to_records(family_state_dict("GRU", num_layers=2)))
    ev = "\n".join(insp.evidence)
    assert "hidden_size=64 from RNN.1.weight_hh_l0 [192, 64]" in ev
    assert "cell=GRU: gate rows 192 = 3 x 64" in ev
    assert "num_layers=2 from RNN.1.weight_ih_l{0,1}" in ev
    assert "proj_size=128 from RNN.0.weight [128, 8]" in ev
    ms3d = inspect_tensors(to_records(family_state_dict("MS3DGRU")))
    ev = "\n".join(ms3d.evidence)
    assert "tower2 kernel 5x5x5 from tower2.0.weight [32, 1, 5, 5, 5]" in ev
    assert "conv_dim=3" in ev
    lstm = inspect_tensors(to_records(family_state_dict("StackedLSTM", num_layers=3)))
    assert "cell=LSTM: gate rows 256 = 4 x 64" in lstm.evidence
    assert "num_layers=3 from RNN.weight_ih_l{0..2}" in lstm.evidence


def test_rivals_are_ranked_not_first_matched(family_state_dict, to_records):
    """An MS3D file also carries MSCGRU's key names: both are candidates, MSCGRU is broken."""
    insp = inspect_tensors(to_records(family_state_dict("MS3DGRU")))
    fams = [c.family for c in insp.candidates]
    assert fams[0] == "MS3DGRU" and "MSCGRU" in fams
    rival = next(c for c in insp.candidates if c.family == "MSCGRU")
    assert rival.broken and rival.score < insp.candidates[0].score
    lstm = inspect_tensors(to_records(family_state_dict("LSTM")))
    assert lstm.family == "LSTM"
    gru_rival = next(c for c in lstm.candidates if c.family == "GRU")
    assert any("cell=LSTM does not fit GRU" in b for b in gru_rival.broken)


def test_scale_aware_vs_hard_is_ambiguous(family_state_dict, to_records):
    insp = inspect_tensors(to_records(family_state_dict("MSCSGRU_ScaleAware")))
    assert insp.family == "ambiguous"
    assert insp.ambiguous_between == ["MSCSGRU_ScaleAware", "MSCSGRU_ScaleHard"]
    assert [f.code for f in insp.findings] == ["family-ambiguous"]
    assert insp.confidence == 0.5
    assert insp.hyperparameters["hidden_size"] == 64 and insp.hyperparameters["num_layers"] == 2
    assert insp.not_recorded["activation"] == NOT_RECORDED
    with pytest.raises(Exception):
        spec_from_inspection(insp)
    assert spec_from_inspection(insp, family="MSCSGRU_ScaleHard").family == "MSCSGRU_ScaleHard"


@pytest.mark.parametrize("meta,family", [
    ({"hyper_parameters": {"model_name": "MSCSGRU_ScaleHard", "dropout": 0.3}}, "MSCSGRU_ScaleHard"),
    ({"hyper_parameters": {"cfg": {"arch": "models.MSCSGRU_ScaleAware"}}}, "MSCSGRU_ScaleAware"),
    ({"hyper_parameters": {"lr": 0.001}, "hparams_name": "MSCSGRU_ScaleHard"}, "MSCSGRU_ScaleHard"),
    ({"hyper_parameters": {"note": "MSCSGRU_ScaleHard vs MSCSGRU_ScaleAware"}}, "ambiguous"),
    ({"hyper_parameters": {"lr": 0.001}, "hparams_name": "kwargs"}, "ambiguous"),
])
def test_metadata_breaks_the_tie_only_when_clear(family_state_dict, to_records, meta, family):
    insp = inspect_tensors(to_records(family_state_dict("MSCSGRU_ScaleAware")), metadata=meta)
    assert insp.family == family
    if family != "ambiguous":
        assert any("metadata" in e and family in e for e in insp.evidence)
        assert 0.5 < insp.confidence < 1.0
        assert not any(f.code == "family-ambiguous" for f in insp.findings)


def test_metadata_naming_another_family_contradicts_an_ambiguous_file(family_state_dict, to_records):
    insp = inspect_tensors(to_records(family_state_dict("MSCSGRU_ScaleHard")),
                           metadata={"hyper_parameters": {"model_name": "MSCSGRU"}})
    assert insp.family == "ambiguous"
    bad = [f for f in insp.findings if f.code == "metadata-contradicts-weights"]
    assert len(bad) == 1 and bad[0].actual == "MSCSGRU"


def test_metadata_contradictions_and_not_recorded(family_state_dict, to_records):
    meta = {"hyper_parameters": {"hidden_size": 128, "num_classes": 24, "dropout": 0.25, "model": {"num_layers": 2}}}
    insp = inspect_tensors(to_records(family_state_dict("GRU", num_layers=2)), metadata=meta)
    bad = [f for f in insp.findings if f.code == "metadata-contradicts-weights"]
    assert len(bad) == 1
    assert bad[0].expected == 64 and bad[0].actual == 128 and "hidden_size" in bad[0].message
    assert insp.not_recorded == {"dropout": 0.25}
    assert spec_from_inspection(insp).dropout == 0.25
    fam = inspect_tensors(to_records(family_state_dict("GRU")),
                          metadata={"hyper_parameters": {"model_name": "StackedGRU"}})
    assert [f.actual for f in fam.findings if f.code == "metadata-contradicts-weights"] == ["StackedGRU"]
    plain = inspect_tensors(to_records(family_state_dict("MS3DGRU")))
    assert plain.not_recorded == {"dropout": NOT_RECORDED, "pool": NOT_RECORDED}
    pooled = inspect_tensors(to_records(family_state_dict("MS3DGRU")),
                             metadata={"hyper_parameters": {"pool_size": [1, 4, 2], "tower_kernels": [3, 5, 7]}})
    assert pooled.findings == []  # kernel sizes 3, 5, 7 mean cubic kernels: no contradiction
    assert spec_from_inspection(pooled).pool == [1, 4, 2]


def test_broken_family_is_reported(family_state_dict, to_records):
    sd = family_state_dict("MSCSGRU")
    import torch

    sd["tower2.0.weight"] = torch.zeros(16, 8, 5)  # 16 filters where the family needs 32
    del sd["output_layers.3.bias"]
    insp = inspect_tensors(to_records(sd))
    assert insp.family == "MSCSGRU"
    top = insp.candidates[0]
    assert top.family == "MSCSGRU" and top.broken
    assert any("tower2.0.weight" in b for b in top.broken)
    assert any("missing" in b and "output_layers.3.bias" in b for b in top.broken)
    assert [f.code for f in insp.findings] == ["family-broken"]
    assert insp.confidence < 0.5


def test_bad_gate_rows_are_broken_not_a_crash(to_records):
    import torch

    sd = {"RNN.weight_ih_l0": torch.zeros(320, 8), "RNN.weight_hh_l0": torch.zeros(320, 64),
          "RNN.bias_ih_l0": torch.zeros(320), "RNN.bias_hh_l0": torch.zeros(320)}
    insp = inspect_tensors(to_records(sd))
    assert insp.family in ("StackedGRU", "StackedLSTM", "ambiguous")
    assert any("gate rows 320" in b for c in insp.candidates for b in c.broken)
    assert any(f.code == "family-broken" for f in insp.findings)


def test_leftovers_collapsed(family_state_dict, to_records):
    import torch

    sd = family_state_dict("GRU")
    for i in range(12):
        sd[f"aux.layers.{i}.x"] = torch.zeros(2)
    sd["scaler_mean"] = torch.zeros(8)
    insp = inspect_tensors(to_records(sd))
    assert insp.family == "GRU"
    assert insp.leftovers == ["aux.layers.{0..11}.x", "scaler_mean"]
    assert 0.5 < insp.confidence < 1.0


def test_counts_tied_and_integer_tensors(to_records):
    import torch

    emb = torch.randn(100, 16)
    sd = {"embed.weight": emb, "head.weight": emb, "head.bias": torch.zeros(100),
          "steps": torch.zeros((), dtype=torch.int64), "half": torch.zeros(4, dtype=torch.float16)}
    insp = inspect_tensors(to_records(sd))
    assert insp.params.trainable == 1600 + 100 + 4
    assert insp.params.buffers == 1
    assert insp.params.tensors == 4
    assert insp.params.bytes == 1600 * 4 + 100 * 4 + 8 + 4 * 2
    assert insp.params.dtypes == {"float32": 1700, "int64": 1, "float16": 4}
    assert insp.layout["head.weight"] == ["float32", [100, 16]]


def test_unknown_transformer_is_described(to_records):
    import torch
    from torch import nn

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok_embedding = nn.Embedding(1000, 32)
            layer = nn.TransformerEncoderLayer(32, 4, 64, batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, 3, enable_nested_tensor=False)
            self.classifier = nn.Linear(32, 7)

    insp = inspect_tensors(to_records(Encoder().state_dict()))
    assert insp.family == "unknown" and insp.confidence == 0.0
    assert [f.code for f in insp.findings] == ["family-unknown"]
    text = "\n".join(insp.description)
    assert "attention blocks: 3" in text and "encoder.layers.{0..2}.self_attn" in text
    assert "embedding/codebook tables: 1 (tok_embedding [1000, 32])" in text
    assert "classifier output width 7 from classifier.weight [7, 32]" in text
    assert "linear layers: 7" in text  # 3 x (linear1, linear2) + classifier; out_proj belongs to attention
    assert "encoder.layers.{0..2}.self_attn.in_proj_weight" in insp.leftovers
    assert insp.not_recorded["num_heads"] == NOT_RECORDED


def test_unknown_resnet_and_recurrent_are_described(to_records):
    from torch import nn

    class Block(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
            self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)

    class ResNetish(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(3, 16, 7, bias=False), nn.BatchNorm2d(16)
            self.layer1 = nn.Sequential(Block(16), Block(16))
            self.rnn = nn.LSTM(16, 20, num_layers=2, bidirectional=True)
            self.codebook = nn.Embedding(512, 16)
            self.head = nn.Linear(40, 11)

    insp = inspect_tensors(to_records(ResNetish().state_dict()))
    text = "\n".join(insp.description)
    assert insp.family == "unknown"
    assert "convolutions: 5 x Conv2d; kernels 3x3 (4), 7x7 (1)" in text
    assert "recurrent stack rnn: LSTM, 2 layers, input 16, hidden 20, bidirectional" in text
    assert "codebook [512, 16]" in text
    assert "classifier output width 11" in text
    assert "5 BatchNorm" in text
    assert insp.params.buffers == 5 * (16 + 16 + 1)


def test_collapse_names_and_braces():
    assert braces([0, 1]) == "{0,1}" and braces([0, 1, 2]) == "{0..2}" and braces([4]) == "4"
    assert braces([0, 1, 2, 3, 7, 9, 10, 11]) == "{0..3,7,9..11}"
    names = [f"layers.{i}.{p}" for i in range(12) for p in ("w", "b")]
    assert collapse_names(names) == ["layers.{0..11}.w", "layers.{0..11}.b"]
    ragged = ["a.0.x", "a.0.y", "a.1.x"]
    assert collapse_names(ragged) == ["a.{0,1}.x", "a.0.y"]
    grid = [f"b.{i}.c.{j}" for i in range(2) for j in range(3)]
    assert collapse_names(grid) == ["b.{0,1}.c.{0..2}"]
    partial = ["b.0.c.0", "b.0.c.1", "b.1.c.0"]
    assert collapse_names(partial) == ["b.0.c.{0,1}", "b.1.c.0"]


def test_odd_shapes_never_crash():
    """Signature keys with random shapes, ranks and dtypes: candidates or unknown, never an exception."""
    import random

    from ckreg.inspect.layouts import expected_layout
    from ckreg.readers.model import TensorRecord

    rng = random.Random(7)
    layouts = [expected_layout(ArchSpec.for_family(f)) for f in FAMILIES]
    for _ in range(400):
        lay = dict(rng.choice(layouts))
        lay.update(rng.sample(list(rng.choice(layouts).items()), 4))
        for k in rng.sample(list(lay), min(len(lay), rng.randint(1, 8))):
            if rng.random() < 0.3:
                del lay[k]
            else:
                lay[k] = tuple(rng.randint(0, 5) for _ in range(rng.randint(0, 6)))
        recs = {k: TensorRecord(k, rng.choice(["float32", "int64"]), s) for k, s in lay.items()}
        insp = inspect_tensors(recs, metadata={"hyper_parameters": {"hidden_size": rng.choice([1, "x", [1], None])}})
        assert 0.0 <= insp.confidence <= 1.0 and insp.description


def test_remembered_detections_are_the_detections_and_never_shared(family_state_dict, to_records):
    """detect_all remembers answers per layout: the same answer as running the detectors, as copies,
    and a change of the registered families is a new answer."""
    import dataclasses

    from ckreg.families import registry
    from ckreg.inspect import detectors

    shapes = {k: tuple(r.shape) for k, r in to_records(family_state_dict("MS3DGRU")).items()}
    fresh = [d for d in (detectors.run_detector(f, shapes) for f in registry()) if d is not None]
    for _ in range(2):   # the second answer is a remembered one: changing it changes nothing
        got = detectors.detect_all(shapes)
        got[0].hyper["tower_kernels"].append([1, 1, 1])
        got[0].evidence.clear()
    again = detectors.detect_all(shapes)
    assert [dataclasses.asdict(d) for d in again] == [dataclasses.asdict(d) for d in fresh]
    with registry().scoped():
        gone = registry().find("MS3DGRU")
        registry().remove("MS3DGRU")
        assert gone.name not in {d.family for d in detectors.detect_all(shapes)}
    assert [d.family for d in detectors.detect_all(shapes)] == [d.family for d in fresh]
