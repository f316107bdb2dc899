"""Versions, references, aliases (compare-and-swap), verifications and the event log (issue #5)."""

from __future__ import annotations

import sqlalchemy as sa

import pytest

from ckreg.errors import RegistryError
from ckreg.registry import ANY, AliasConflictError, pair_digest, parse_ref
from reghelpers import stub_add, stub_inspection, tiny_spec

VERIFIED = {"accuracy": 0.995, "passed": True, "per_class": {"a": 1.0, "b": 0.99}, "data_hash": "d1",
            "confusion_matrix": [[5, 0], [0, 5]], "class_names": ["a", "b", "c", "d"]}


def test_versions_are_numbered_per_name_and_record_everything(reg, blob_file):
    v1 = stub_add(reg, blob_file(1), provenance={"recipe": "train-split", "split": {"seed": 0}})
    v2 = stub_add(reg, blob_file(2))
    other = stub_add(reg, blob_file(3), name="Other")
    assert (v1.ref, v2.ref, other.ref) == ("GRU@1", "GRU@2", "Other@1")
    assert v1.spec == tiny_spec() and v1.family == "GRU"
    assert v1.source_path == str(blob_file(1).resolve())
    assert v1.weights_sha256 == stub_inspection(blob_file(1)).weights_sha256
    assert v1.pair_digest == pair_digest(v1.sha256, None)
    assert v1.provenance == {"recipe": "train-split", "split": {"seed": 0}}
    assert [v.ref for v in reg.ls()] == ["GRU@1", "GRU@2", "Other@1"]
    assert [v.ref for v in reg.ls("GRU")] == ["GRU@1", "GRU@2"]


def test_pair_digest_depends_on_both_members():
    a, b = "a" * 64, "b" * 64
    assert len({pair_digest(a, None), pair_digest(a, b), pair_digest(b, a), pair_digest(b, None)}) == 4
    assert pair_digest(a, b) not in (a, b)


def test_re_adding_the_same_pair_returns_the_existing_version(reg, blob_file):
    first = reg.register(blob_file(1), name="GRU", spec=tiny_spec(), inspection=stub_inspection(blob_file(1)))
    n_events = len(reg.events())
    again = reg.register(blob_file(1), name="GRU", spec=tiny_spec(), inspection=stub_inspection(blob_file(1)))
    assert first.created and not again.created
    assert again.version.ref == "GRU@1" and len(reg.ls()) == 1
    assert len(reg.events()) == n_events, "an idempotent re-add changes nothing"
    # with a verification and an alias, the re-add records them on the existing version
    v = stub_add(reg, blob_file(1), verification=VERIFIED, aliases=["best"])
    assert v.ref == "GRU@1" and v.verified and v.aliases == ["best"]
    stub_add(reg, blob_file(1), verification=VERIFIED)
    assert len(reg.show("GRU@1").verifications) == 1, "the same verification is not recorded twice"
    with pytest.raises(RegistryError, match="already registered as GRU@1 with family GRU, not StackedGRU"):
        stub_add(reg, blob_file(1), spec=tiny_spec("StackedGRU"))


def test_versions_are_immutable_and_the_log_is_append_only(reg, blob_file):
    stub_add(reg, blob_file(1), verification=VERIFIED)
    statements = ["UPDATE versions SET sha256 = 'x'", "DELETE FROM versions",
                  "UPDATE events SET who = 'mallory'", "DELETE FROM events",
                  "UPDATE verifications SET accuracy = 1.0", "DELETE FROM verifications"]
    if reg.index.dialect == "postgresql":
        statements += ["TRUNCATE versions CASCADE", "TRUNCATE events", "TRUNCATE verifications"]
    engine = sa.create_engine(reg.index.url, poolclass=sa.pool.NullPool)   # a plain SQL client, not ckreg
    try:
        for sql in statements:
            with engine.connect() as conn:
                with pytest.raises(sa.exc.IntegrityError, match="immutable|append-only"):
                    conn.execute(sa.text(sql))
                conn.rollback()
    finally:
        engine.dispose()
    assert len(reg.events()) >= 3 and len(reg.ls()) == 1
    assert reg.resolve("GRU@1").verification.accuracy == 0.995


def test_references_resolve_and_unknown_ones_name_what_exists(reg, blob_file):
    stub_add(reg, blob_file(1))
    stub_add(reg, blob_file(2), aliases=["best", "prod"])
    stub_add(reg, blob_file(3))
    assert reg.resolve("GRU").version == 3
    assert reg.resolve("GRU@latest").version == 3
    assert reg.resolve("GRU@1").version == 1 and reg.resolve("GRU@v1").version == 1
    assert reg.resolve("GRU@best").version == 2 and reg.resolve("GRU@2").aliases == ["best", "prod"]
    with pytest.raises(RegistryError, match="unknown model 'LSTM'") as exc:
        reg.resolve("LSTM@best")
    assert "GRU" in exc.value.render()
    with pytest.raises(RegistryError, match="no version 9") as exc:
        reg.resolve("GRU@9")
    assert "1..3" in exc.value.render()
    with pytest.raises(RegistryError, match="no alias 'staging'") as exc:
        reg.resolve("GRU@staging")
    assert "best, prod" in exc.value.render()
    for bad in ("", "GRU@", "a/b", "GRU@best@x", "GRU@1a!"):
        with pytest.raises(RegistryError):
            parse_ref(bad)


def test_alias_compare_and_swap(reg, blob_file):
    for i in (1, 2, 3):
        stub_add(reg, blob_file(i))
    reg.alias("GRU", "prod", 1, expect=None)                 # create: expected unset
    with pytest.raises(AliasConflictError):
        reg.alias("GRU", "prod", 2, expect=None)             # someone set it already
    reg.alias("GRU", "prod", 2, expect=1)
    with pytest.raises(AliasConflictError, match="points to 2, not 1"):
        reg.alias("GRU", "prod", 3, expect=1)                # stale read: refused, nothing moves
    assert reg.resolve("GRU@prod").version == 2
    reg.alias("GRU", "prod", 3, expect=ANY)
    assert reg.resolve("GRU@prod").version == 3
    with pytest.raises(RegistryError, match="no version 7"):
        reg.alias("GRU", "prod", 7)
    with pytest.raises(RegistryError, match="invalid alias"):
        reg.alias("GRU", "7", 1)
    with pytest.raises(RegistryError, match="invalid alias"):
        reg.alias("GRU", "latest", 1)
    reg.alias("GRU", "prod", None, expect=3)                 # delete
    with pytest.raises(RegistryError, match="no alias 'prod'"):
        reg.resolve("GRU@prod")
    moves = [(e.kind, e.data.get("from"), e.data.get("to")) for e in reg.events(kind=None)
             if e.kind.startswith("alias")]
    assert moves == [("alias-moved", None, 1), ("alias-moved", 1, 2), ("alias-moved", 2, 3),
                     ("alias-removed", 3, None)]


def test_record_verification_appends_and_latest_wins(reg, blob_file, monkeypatch):
    monkeypatch.setenv("CKREG_USER", "tester")
    stub_add(reg, blob_file(1))
    assert not reg.resolve("GRU").verified and reg.resolve("GRU").accuracy is None
    v = reg.record_verification("GRU@1", VERIFIED)
    assert v.verified and v.accuracy == 0.995 and v.class_names is None
    assert v.verification.confusion_matrix == [[5, 0], [0, 5]] and v.verification.by == "tester"
    failed = reg.record_verification("GRU", {**VERIFIED, "accuracy": 0.5, "passed": False, "data_hash": "d2"})
    assert not failed.verified and failed.accuracy == 0.5
    detail = reg.show("GRU@1")
    assert [h.accuracy for h in detail.verifications] == [0.995, 0.5]
    ev = reg.events(kind="verified")
    assert [(e.who, e.data["accuracy"]) for e in ev] == [("tester", 0.995), ("tester", 0.5)]
    assert all(e.at.endswith("+00:00") for e in ev)


def test_verification_accepts_pydantic_results(reg, blob_file):
    from pydantic import BaseModel

    class FakeVerifyResult(BaseModel):   # the shape of ckreg.verify.VerifyResult
        accuracy: float
        passed: bool
        per_class: dict
        confusion_matrix: list
        data_hash: str
        class_names: list

    res = FakeVerifyResult(accuracy=0.99, passed=True, per_class={"a": 1.0}, confusion_matrix=[[1]],
                           data_hash="h", class_names=["a", "b", "c", "d"])
    v = stub_add(reg, blob_file(1), verification=res)
    assert v.verified and v.verification.data_hash == "h"
    assert v.class_names == ["a", "b", "c", "d"], "class names come along with the verification"


def test_explicit_spec_must_agree_with_the_weights(reg, blob_file):
    from ckreg.arch import ArchSpec

    insp = stub_inspection(blob_file(1))
    with pytest.raises(RegistryError, match="weights are a GRU, not a LSTM"):
        reg.add(blob_file(1), spec=ArchSpec.for_family("LSTM", hidden_size=8, num_classes=4), inspection=insp)
    with pytest.raises(RegistryError, match="hidden_size=64 but the weights show 8"):
        reg.add(blob_file(1), spec=ArchSpec.for_family("GRU", num_classes=4), inspection=insp)
    assert not reg.exists(), "a refused add leaves no registry behind"


def test_class_names_must_match_the_model(reg, blob_file):
    with pytest.raises(RegistryError, match="3 class names for a model with 4 classes"):
        stub_add(reg, blob_file(1), class_names=["a", "b", "c"])


def test_events_record_who_and_when(reg, blob_file, monkeypatch):
    monkeypatch.setenv("CKREG_USER", "alice")
    stub_add(reg, blob_file(1), aliases=["best"])
    events = reg.events(name="GRU")
    assert [e.kind for e in events] == ["registered", "alias-moved"]
    assert {e.who for e in events} == {"alice"}
    assert events[0].data["sha256"] == reg.resolve("GRU").sha256
    ids = [e.id for e in reg.events()]
    assert ids == sorted(ids)
