"""`ckreg.lineage`: edges found from the weights of checkpoints it has never seen."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from ckreg.lineage import DEFAULT_THRESHOLD, lineage, name_groups
from ckreg.lineage.numeric import decode

from lineage_factories import init_encoder, init_head, train_steps, write_safetensors


def _edges(result, a, b):
    return [e for e in result.edges if {e.child, e.parent} == {str(a), str(b)}]


def test_the_lab(runs, tmp_path):
    r = lineage([tmp_path / "lab"], cache_dir=False)
    assert not r.errors and len(r.checked) == 5
    # a fine-tune and its base, directed by global_step
    (ft,) = _edges(r, runs["ft"], runs["base"])
    assert ft.relation == "fine-tuned-from" and ft.directed and ft.basis == "global_step"
    assert ft.child == str(runs["ft"]) and ft.parent == str(runs["base"])
    assert 0 < ft.distance < 0.2
    # the VQ model shares the base's encoder, byte for byte: one named group
    (tp,) = _edges(r, runs["vq"], runs["base"])
    assert tp.relation == "transplanted" and not tp.directed
    enc = [g for g in tp.groups if g.name == "encoder.*"]
    assert enc and enc[0].shared == enc[0].total == 25
    assert all(not g.name.startswith(("codebook", "decoder", "head")) for g in tp.groups)
    # the re-saved copy is identical to the base
    (cp,) = _edges(r, runs["copy"], runs["base"])
    assert cp.relation == "identical" and cp.shared_tensors == cp.total_tensors == 28 and cp.distance == 0.0
    # the unrelated run of the same architecture has no edge to anything
    assert r.edges_of(str(runs["other"])) == []
    # the copy is not reported again against the fine-tune and the VQ model (its cluster's first file stands for it)
    assert len(r.edges) == 3


def test_edge_json_has_the_documented_fields(runs):
    r = lineage([runs["ft"], runs["base"]], cache_dir=False)
    (e,) = r.edges
    d = e.public()
    assert {"child", "parent", "relation", "shared_tensors", "total_tensors", "groups", "distance"} <= set(d)
    assert json.loads(json.dumps(d))["relation"] == "fine-tuned-from"


def test_threshold_is_tunable(runs):
    tight = lineage([runs["ft"], runs["base"]], threshold=1e-4, cache_dir=False)
    assert tight.edges == []


def test_independent_inits_are_far_apart(tmp_path):
    """Two fresh inits of one architecture sit near sqrt(2) apart: far above the default threshold."""
    a = {**init_encoder(np.random.default_rng(1)), **init_head(np.random.default_rng(2))}
    b = {**init_encoder(np.random.default_rng(3)), **init_head(np.random.default_rng(4))}
    pa = write_safetensors(tmp_path / "a.safetensors", a)
    pb = write_safetensors(tmp_path / "b.safetensors", b)
    r = lineage([pa, pb], threshold=10.0, cache_dir=False)
    (e,) = r.edges
    assert abs(e.distance - math.sqrt(2)) < 0.15
    # shared zero biases and unit norm weights are no evidence of origin
    assert lineage([pa, pb], cache_dir=False).edges == []
    assert e.groups == []


def test_fine_tune_with_frozen_layers_names_them(tmp_path):
    rng = np.random.default_rng(5)
    base = train_steps({**init_encoder(rng), **init_head(rng)}, rng, scale=0.5)
    ft = train_steps(base, rng, scale=0.02, frozen=("encoder.layers.0.", "encoder.layers.1."))
    r = lineage([write_safetensors(tmp_path / "b.safetensors", base),
                 write_safetensors(tmp_path / "f.safetensors", ft)], cache_dir=False)
    (e,) = r.edges
    assert e.relation == "fine-tuned-from"
    assert [g.name for g in e.groups] == ["encoder.layers.0.*", "encoder.layers.1.*"]


def test_chain_keeps_the_nearest_edges(tmp_path):
    rng = np.random.default_rng(6)
    a = train_steps({**init_encoder(rng), **init_head(rng)}, rng, scale=0.5)
    b = train_steps(a, rng, scale=0.05)
    c = train_steps(b, rng, scale=0.05)
    paths = [write_safetensors(tmp_path / f"{n}.safetensors", sd, {"ckreg.epoch": str(i)})
             for i, (n, sd) in enumerate([("a", a), ("b", b), ("c", c)])]
    r = lineage(paths, cache_dir=False)
    assert sorted((e.child[-13], e.parent[-13]) for e in r.edges) == [("b", "a"), ("c", "b")]
    assert all(e.basis == "epoch" for e in r.edges)


def test_groups_are_shortest_fully_shared_prefixes():
    names = ["enc.a.w", "enc.a.b", "enc.b.w", "dec.w", "dec.b"]
    shared = {"enc.a.w", "enc.a.b", "enc.b.w", "dec.w"}
    g = name_groups(names, shared, evidence=set(shared))
    assert [(x.name, x.shared, x.total) for x in g] == [("enc.*", 3, 3), ("dec.w", 1, 1)]
    # a group of constants only is no evidence and is not listed
    assert name_groups(names, shared, evidence={"enc.a.w"}) == [name_groups(names, shared, {"enc.a.w"})[0]]
    assert [x.name for x in name_groups(names, shared, evidence={"enc.a.w"})] == ["enc.*"]


def test_decode_half_and_bfloat16_by_hand():
    # bfloat16 1.0 = 0x3F80, -2.0 = 0xC000, 0.5 = 0x3F00; float16 1.0 = 0x3C00, -2.0 = 0xC000
    bf = bytes([0x80, 0x3F, 0x00, 0xC0, 0x00, 0x3F])
    assert decode(np, bf, "bfloat16").tolist() == [1.0, -2.0, 0.5]
    assert decode(np, bytes([0x00, 0x3C, 0x00, 0xC0]), "float16").tolist() == [1.0, -2.0]
    assert decode(np, np.array([1.5, -3.0], "<f4").tobytes(), "float32").tolist() == [1.5, -3.0]


def test_bfloat16_and_float16_checkpoints_get_distances(tmp_path, torch_mod):
    torch = torch_mod
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    w = torch.randn(64, 64, generator=g)
    for dtype in (torch.bfloat16, torch.float16):
        a = {"lin.weight": w.to(dtype)}
        b = {"lin.weight": (w + 0.01 * torch.randn(64, 64, generator=g)).to(dtype)}
        pa, pb = tmp_path / f"a{dtype}.safetensors", tmp_path / f"b{dtype}.safetensors"
        save_file(a, str(pa))
        save_file(b, str(pb))
        (e,) = lineage([pa, pb], cache_dir=False).edges
        want = float((b["lin.weight"].double() - a["lin.weight"].double()).norm()
                     / max(a["lin.weight"].double().norm(), b["lin.weight"].double().norm()))
        assert e.relation == "fine-tuned-from" and abs(e.distance - want) < 1e-5


def test_cache_reads_no_tensor_bytes_the_second_time(runs, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = lineage([tmp_path / "lab"], cache_dir=cache)
    assert first.cache["misses"] == 5 and first.cache["hits"] == 0
    import ckreg.lineage.digests as digests

    def boom(path):
        raise AssertionError(f"{path} digested again")

    monkeypatch.setattr(digests, "digest_file", boom)
    second = lineage([tmp_path / "lab"], cache_dir=cache)
    assert second.cache["hits"] == 5
    assert [e.public() for e in second.edges] == [e.public() for e in first.edges]


def test_cache_notices_a_changed_file(runs, tmp_path):
    cache = tmp_path / "cache"
    lineage([runs["base"], runs["copy"]], cache_dir=cache)
    rng = np.random.default_rng(7)
    write_safetensors(runs["copy"], {**init_encoder(rng), **init_head(rng)})
    r = lineage([runs["base"], runs["copy"]], cache_dir=cache)
    assert r.cache["misses"] == 1 and r.edges == []


def test_damaged_cache_entry_is_recomputed(runs, tmp_path):
    cache = tmp_path / "cache"
    lineage([runs["base"]], cache_dir=cache)
    (entry,) = cache.iterdir()
    entry.write_text("{not json")
    r = lineage([runs["base"], runs["copy"]], cache_dir=cache)
    assert r.cache["misses"] == 2 and r.edges[0].relation == "identical"


def test_unreadable_and_missing_files_are_errors_not_crashes(runs, tmp_path):
    bad = tmp_path / "lab" / "broken.ckpt"
    bad.write_bytes(b"PK\x03\x04 truncated")
    r = lineage([tmp_path / "lab", tmp_path / "nope"], cache_dir=False)
    msgs = {e.path: e.message for e in r.errors}
    assert any(p.endswith("broken.ckpt") for p in msgs) and str(tmp_path / "nope") in msgs
    assert len(r.checked) == 5 and r.exit_code() == 2
    assert bad.read_bytes() == b"PK\x03\x04 truncated"     # loses nothing


def test_same_file_twice_is_checked_once(runs):
    r = lineage([runs["base"], runs["base"]], cache_dir=False)
    assert r.checked == [str(runs["base"])] and r.skipped and r.edges == []


def test_bad_threshold_is_a_usage_error(runs):
    from ckreg.errors import UsageError

    with pytest.raises(UsageError):
        lineage([runs["base"]], threshold=0)
    assert DEFAULT_THRESHOLD < 1.0


def _sinusoidal(length: int, width: int) -> np.ndarray:
    pos = np.arange(length)[:, None]
    div = np.exp(np.arange(0, width, 2) * (-np.log(10000.0) / width))
    pe = np.zeros((length, width), np.float32)
    pe[:, 0::2], pe[:, 1::2] = np.sin(pos * div), np.cos(pos * div)
    return pe


def test_buffers_computed_from_the_shape_are_no_evidence(tmp_path):
    """Fresh runs of one architecture share their positional encodings and causal masks, not an origin."""
    def fresh(seed: int) -> dict:
        rng = np.random.default_rng(seed)
        return {**init_encoder(rng), **init_head(rng), "encoder.pos.pe": _sinusoidal(32, 16),
                "encoder.layers.0.attn.mask": np.tril(np.ones((32, 32), np.float32))}

    pa = write_safetensors(tmp_path / "a.safetensors", fresh(1))
    pb = write_safetensors(tmp_path / "b.safetensors", fresh(2))
    assert lineage([pa, pb], cache_dir=False).edges == []
    # a real transplant is still found, and the deterministic buffers ride along in its group
    sd = fresh(3)
    sd.update({k: v for k, v in fresh(1).items() if k.startswith("encoder.")})
    pc = write_safetensors(tmp_path / "c.safetensors", sd)
    edges = lineage([pa, pc], cache_dir=False).edges
    assert [e.relation for e in edges] == ["transplanted"]
    assert [(g.name, g.shared) for g in edges[0].groups] == [("encoder.*", 27)]
