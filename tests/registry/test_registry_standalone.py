"""An export builds its model without ckreg: a generated, torch-only `model.py` that reproduces ckreg.

`model.py` is generated from the zoo's own source, so every family is covered;
the subprocess test imports it with ckreg made unimportable and compares its
predictions with `ckreg.load(...).predict` on the same raw episodes.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ckreg.arch import FAMILIES, ArchSpec
from ckreg.errors import IntegrityError

torch = pytest.importorskip("torch")

from ckreg.registry import standalone  # noqa: E402

# tiny but real hyperparameters per family (the layouts stay exact, the tensors small)
TINY: dict[str, dict] = {
    "GRU": dict(hidden_size=4, proj_size=6, num_layers=2), "LSTM": dict(hidden_size=4, proj_size=6, num_layers=1),
    "StackedGRU": dict(hidden_size=4, num_layers=2), "StackedLSTM": dict(hidden_size=4, num_layers=2),
    "WRN": dict(depth=10, widen_factor=1),
}
PRE = {"T": 12, "pad_value": 1.0, "channels": None}


def tiny(family: str) -> ArchSpec:
    hp = TINY.get(family)
    if hp is None:
        hp = dict(hidden_size=4, cnn_filters=2)
    return ArchSpec.for_family(family, num_classes=3, **hp)


def generated(tmp_path: Path) -> Path:
    path = tmp_path / "model.py"
    path.write_text(standalone.model_py("test", PRE, 8, 3), encoding="utf-8")
    return path


def test_model_py_imports_nothing_but_torch_and_the_stdlib(tmp_path):
    tree = ast.parse(generated(tmp_path).read_text(encoding="utf-8"))
    tops = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            tops |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            tops.add((node.module or "").split(".")[0])
    assert tops <= {"__future__", "json", "struct", "pathlib", "torch"}, tops


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_matches_the_zoo(tmp_path, family):
    from ckreg.zoo import build

    torch.manual_seed(0)
    spec = tiny(family)
    state = build(spec).state_dict()
    assert standalone.check_standalone(generated(tmp_path), spec, state, T=12) <= 1e-6


def test_a_drifted_model_py_is_refused(tmp_path):
    from ckreg.zoo import build

    path = generated(tmp_path)
    text = path.read_text(encoding="utf-8")
    assert "outputs[:, -1, :]" in text
    path.write_text(text.replace("outputs[:, -1, :]", "outputs[:, 0, :]"), encoding="utf-8")   # a wrong readout
    spec = tiny("StackedGRU")
    with pytest.raises(IntegrityError, match="does not reproduce"):
        standalone.check_standalone(path, spec, build(spec).state_dict(), T=12)


def test_ckreg_constants_are_inlined_and_the_rest_refused():
    src = ("from ckreg.arch import ArchSpec, FAMILIES\nfrom ckreg.families import get\n"
           "TABLE = {f: get(f) for f in FAMILIES}\n")
    body = standalone._body(src, values={"FAMILIES": ("A", "B"), "get": len, "TABLE": {"A": 1, "B": 1}})
    assert "FAMILIES = ('A', 'B')" in body and "TABLE = {'A': 1, 'B': 1}" in body and "ckreg" not in body
    with pytest.raises(IntegrityError, match="uses get"):        # a ckreg function called inside a function
        standalone._body("from ckreg.families import get\ndef f(x):\n    return get(x)\n", values={"get": len})
    with pytest.raises(IntegrityError, match="imports ckreg"):
        standalone._body("def f():\n    import ckreg.zoo\n", values={})


BLOCK_CKREG = """
import importlib.util, json, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "ckreg" or name.startswith("ckreg.") or name.startswith("safetensors"):
            raise ImportError(f"{name} is blocked: the export must not need it")
sys.meta_path.insert(0, Block())
episodes = json.load(open(sys.argv[1]))
out = []
for i, folder in enumerate(sys.argv[2:]):
    spec = importlib.util.spec_from_file_location(f"model{i}", folder + "/model.py")
    model = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(model)
    m = model.load(folder)
    out.append({"labels": m.predict(episodes), "logits": m.logits(episodes).tolist(), "channels": m.channels})
print(json.dumps({"results": out, "ckreg": any(k.startswith("ckreg") for k in sys.modules)}))
"""

FRESH = ["GRU", "MSCSGRU", "MS3DGRU"]


def test_fresh_process_with_torch_only_reproduces_ckreg(reg, tmp_path, scaler_file):
    import numpy as np

    import ckreg
    from ckreg.zoo import build

    versions, folders = [], []
    for family in FRESH:
        torch.manual_seed(1)
        spec = ArchSpec.for_family(family, **{**(TINY.get(family) or dict(hidden_size=4, cnn_filters=2)),
                                              "num_classes": 4})
        ckpt = tmp_path / f"{family}.pt"
        torch.save(build(spec).state_dict(), ckpt)
        v = reg.add(ckpt, scaler_file(0), name=family, spec=spec, verification={
            "accuracy": 0.5, "passed": True, "class_names": ["a", "b", "c", "d"], "per_class": {}, "data_hash": "x"})
        reg.export(v.ref, tmp_path / family)
        versions.append(v)
        folders.append(str(tmp_path / family))
    rng = np.random.default_rng(0)
    episodes = [(rng.normal(size=(n, 8)) * 5 + 1).round(3).tolist() for n in (3, 40, 87, 120)]
    (tmp_path / "episodes.json").write_text(json.dumps(episodes))
    proc = subprocess.run([sys.executable, "-I", "-c", BLOCK_CKREG, str(tmp_path / "episodes.json"), *folders],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout)
    assert got["ckreg"] is False
    for v, res in zip(versions, got["results"]):
        want = ckreg.load(v.ref, registry=reg).predict([np.asarray(e, dtype=np.float32) for e in episodes])
        assert res["labels"] == want.labels, v.ref
        logits = np.asarray(res["logits"])
        probs = np.exp(logits - logits.max(1, keepdims=True))
        probs /= probs.sum(1, keepdims=True)
        assert np.allclose(probs, want.probabilities, atol=1e-5), v.ref
        assert res["channels"] == ["flex1", "flex2", "flex3", "flex4", "flex5", "pitch", "roll", "yaw"]


def test_card_says_what_loads_with_what(reg, tmp_path, gru_ckpt, scaler_file):
    path, _ = gru_ckpt(0)
    v = reg.add(path, scaler_file(0))
    out = tmp_path / "export"
    reg.export(v.ref, out, pkl=True)
    card = (out / "README.md").read_text(encoding="utf-8")
    section = card[card.index("## What loads with what"):]
    for name in ("weights.safetensors", "model.py", "scaler.json", "scaler.pkl"):
        assert f"`{name}`" in section, name
    assert "needs only `torch`" in section and torch.__version__ in section
    assert "unpickling runs code" in section
    sc = json.loads((out / "scaler.json").read_text(encoding="utf-8"))
    assert sc["channel_names"] == ["flex1", "flex2", "flex3", "flex4", "flex5", "pitch", "roll", "yaw"]
