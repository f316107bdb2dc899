"""On the real archive: register + verify, export, reproduce in a fresh process.

Slow (reads 1,444 episodes twice); run with `-m slow`.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from reghelpers import flip_byte

pytestmark = [pytest.mark.slow, pytest.mark.realdata]

FRESH = r"""
import json, sys
import numpy as np, torch
from safetensors import safe_open
from safetensors.torch import load_file
from ckreg.arch import ArchSpec
from ckreg.data import load_signglove
from ckreg.zoo import build

out, data = sys.argv[1], sys.argv[2]
meta = safe_open(out + "/weights.safetensors", "pt").metadata()
model = build(ArchSpec.model_validate_json(meta["spec"]))
model.load_state_dict(load_file(out + "/weights.safetensors"), strict=True)
model.eval()
sc = json.load(open(out + "/scaler.json"))
ds = load_signglove(data)
X = ((ds.X - np.asarray(sc["mean"])) / np.asarray(sc["scale"])).astype(np.float32)
with torch.no_grad():
    pred = model(torch.from_numpy(X), torch.from_numpy(ds.mask)).argmax(1).numpy()
print(json.dumps({"accuracy": float((pred == ds.y).mean())}))
"""


def test_register_export_reproduce_on_the_archive(archive_dir, signglove_dir, tmp_path, torch_mod):
    from ckreg.errors import IntegrityError
    from ckreg.registry import Registry

    reg = Registry(tmp_path / "reg")
    v = reg.add(archive_dir / "best_model" / "ms3dgru_best.ckpt", archive_dir / "best_model" / "scaler.pkl",
                data=signglove_dir, expect_acc=0.99, aliases=["best"])
    assert v.verified and v.accuracy >= 0.99 and v.family == "MS3DGRU"
    out = tmp_path / "out"
    reg.export("MS3DGRU@best", out, pkl=True, ckpt=True)
    proc = subprocess.run([sys.executable, "-c", FRESH, str(out), str(signglove_dir)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    # the fresh process scores every episode: compare with the recorded all-episode figure
    # (the headline `accuracy` is the held-out test split)
    recorded_all = v.verification.model_dump()["accuracy_all"]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["accuracy"] == pytest.approx(recorded_all, abs=1e-9)

    flip_byte(reg.blobs.path_for(v.sha256), offset=123456)
    assert [p.kind for p in reg.verify()] == ["corrupt"]
    with pytest.raises(IntegrityError):
        reg.export("MS3DGRU@best", tmp_path / "out2")
