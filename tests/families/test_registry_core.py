"""The registry core: the 14 built-ins are records, one description per family, one unwrap."""

from __future__ import annotations

import pytest

from ckreg.arch import FAMILIES, FAMILY_FIELDS, NOT_IN_WEIGHTS, ArchSpec
from ckreg.errors import FamilyError
from ckreg.families import Family, expr, family_in_name, get, name_label, registry
from ckreg.families.builtin import BUILTIN_FAMILIES
from ckreg.inspect.layouts import expected_layout, param_counts


def test_builtins_are_records_in_the_spec_order():
    reg = registry()
    assert reg.names()[:14] == BUILTIN_FAMILIES == FAMILIES
    for name in BUILTIN_FAMILIES:
        rec = get(name)
        assert rec.source == "built-in" and rec.needs_scaler
        assert rec.build and ":" in rec.build and rec.readout
        assert set(rec.hyperparameters) == FAMILY_FIELDS[name]       # arch derives from the record
        assert dict(rec.not_in_weights) == NOT_IN_WEIGHTS[name]
        # layout and counts come from the record: the spec-level API agrees with it
        spec = ArchSpec.for_family(name)
        assert expected_layout(spec) == rec.layout(spec.hyperparameters())
        assert param_counts(spec) == rec.counts(spec.hyperparameters())


def test_expression_default_follows_overrides():
    assert ArchSpec.for_family("GRU", hidden_size=32).proj_size == 64
    assert ArchSpec.for_family("GRU", hidden_size=32, proj_size=10).proj_size == 10
    assert ArchSpec.for_family("GRU").proj_size == 128


def test_two_families_with_one_name_is_an_error():
    with registry().scoped() as reg:
        clash = Family(name="GRU", hyperparameters={}, layout_fn=lambda s: {}, source="file", origin="x.yaml")
        with pytest.raises(FamilyError, match="two families named 'GRU'.*x.yaml"):
            reg.add(clash)


@pytest.mark.parametrize("text,env,value", [
    ("3*hidden_size", {"hidden_size": 64}, 192),
    ("(depth - 4) // 6", {"depth": 28}, 4),
    ("a + b * 2 - -1", {"a": 1, "b": 3}, 8),
    (7, {}, 7),
])
def test_expressions(text, env, value):
    node = expr.parse(text)
    assert expr.evaluate(node, env) == value
    assert expr.evaluate(expr.parse(expr.render(node)), env) == value


@pytest.mark.parametrize("bad", ["3*", "h ** 2", "__import__('os')", "a.b", "(1", "1)", "", "2 / 3"])
def test_bad_expressions_never_evaluate(bad):
    with pytest.raises(expr.ExprError):
        expr.parse(bad)


def test_evaluation_errors_are_named():
    with pytest.raises(expr.ExprError, match="hidden is not known"):
        expr.evaluate(expr.parse("3*hidden"), {})
    with pytest.raises(expr.ExprError, match="division by zero"):
        expr.evaluate(expr.parse("4 // n"), {"n": 0})


def test_one_name_matcher():
    assert family_in_name("MSCSGRU_ScaleHard_best") == "MSCSGRU_ScaleHard"
    assert family_in_name("gruesome") is None and family_in_name("wrn28-3") == "WRN"
    assert name_label("mscsgru_scaleaware/best.ckpt",
                      candidates=["MSCSGRU_ScaleAware", "MSCSGRU_ScaleHard"])[0] == "MSCSGRU_ScaleAware"


def test_the_fallback_detector_and_duplicate_lists_are_gone():
    import ckreg.zoo.loading as loading
    from ckreg.families import builtin
    from ckreg.train import common

    assert not hasattr(loading, "_spec_from_state_dict") and not hasattr(loading, "PREFIXES")
    assert common.MS3D_FAMILIES is builtin.MS3D_FAMILIES


@pytest.mark.parametrize("prefix", ["_forward_module.", "_forward_module.module.", "model.", "module._orig_mod."])
def test_fabric_prefixed_gru_inspects_and_loads_strictly(tmp_path, torch_mod, prefix):
    """A Lightning Fabric checkpoint (`_forward_module.` keys): the inspector, the zoo loader and the
    audit read the same keys, so it inspects as GRU AND loads strictly."""
    torch = torch_mod
    from ckreg.audit import audit
    from ckreg.inspect import inspect_path
    from ckreg.zoo import build, load_checkpoint

    spec = ArchSpec.for_family("GRU", hidden_size=8, num_layers=2)
    module = build(spec)
    sd = {prefix + k: v for k, v in module.state_dict().items()}
    path = tmp_path / "GRU_fabric.ckpt"
    torch.save({"state_dict": sd, "epoch": 3}, path)
    insp = inspect_path(path)
    assert insp.family == "GRU" and insp.hyperparameters["num_layers"] == 2
    loaded, got, _ = load_checkpoint(path)
    assert got == spec
    x = torch.randn(2, 5, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x, None), module.eval()(x, None))
    m = tmp_path / "m.yaml"
    m.write_text("models:\n  - name: G\n    family: GRU\n    path: GRU_fabric.ckpt\n"
                 "    hyperparameters: {hidden_size: 8, num_layers: 2}\n")
    r = audit(tmp_path, manifest=m)
    assert not [f for f in r.findings if f.code in ("shape-drift", "family-mislabeled", "model-missing")]
