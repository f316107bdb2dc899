"""A manifest declaring a user's own nn.Module (`module:` + `kwargs`, locked on the meta device) or a
reference checkpoint: the audit catches a changed layer, a changed class count and a different model,
torch-free once `ckreg manifest lock` has run."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from ckreg.cli import cli
from ckreg.errors import ManifestError

SRC = Path(__file__).resolve().parents[2] / "src"

USER_CODE = textwrap.dedent("""\
    from torch import nn

    class KWSNet(nn.Module):
        def __init__(self, n_mels=40, hidden=32, num_classes=12, kernel=5, extra=False):
            super().__init__()
            self.conv = nn.Conv1d(n_mels, 64, kernel)
            self.norm = nn.BatchNorm1d(64)
            self.gru = nn.GRU(64, hidden, batch_first=True)
            if extra:
                self.proj = nn.Linear(hidden, hidden)
            self.fc = nn.Linear(hidden, num_classes)

    class Tiny(nn.Module):
        def __init__(self, width=8):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(4, width), nn.ReLU(), nn.Linear(width, 2))

    def not_a_module(**kwargs):
        return {"weights": 1}
    """)

MANIFEST = textwrap.dedent("""\
    models:
      - name: kws
        module: "acme_models.kws:KWSNet"
        kwargs: {n_mels: 40, hidden: 32, num_classes: 12}
        path: "kws/*.ckpt"
      - name: tiny
        module: "acme_models.kws:Tiny"
        kwargs: {width: 8}
        path: tiny.ckpt
    """)


@pytest.fixture
def project(tmp_path, torch_mod):
    """A user's project: their package beside the manifest, and checkpoints built from their code."""
    pkg = tmp_path / "proj" / "acme_models"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "kws.py").write_text(USER_CODE)
    manifest = tmp_path / "proj" / "models.yaml"
    manifest.write_text(MANIFEST)
    sys.path.insert(0, str(pkg.parent))
    try:
        import importlib

        kws = importlib.import_module("acme_models.kws")
        importlib.reload(kws)
        root = tmp_path / "archive"

        def save(module, rel):
            p = root / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            torch_mod.save(module.state_dict(), p)
            return p

        save(kws.KWSNet(), "kws/good.ckpt")
        save(kws.KWSNet(kernel=3), "kws/changed_kernel.ckpt")
        save(kws.KWSNet(extra=True), "kws/extra_layer.ckpt")
        save(kws.KWSNet(num_classes=5), "kws/five_classes.ckpt")
        save(kws.Tiny(), "kws/really_tiny.ckpt")
        save(kws.Tiny(), "tiny.ckpt")
        yield manifest, root
    finally:
        sys.path.remove(str(pkg.parent))
        for name in [m for m in sys.modules if m == "acme_models" or m.startswith("acme_models.")]:
            del sys.modules[name]


def _by_path(report):
    out = {}
    for f in report.findings:
        out.setdefault(f.path, {})[f.code] = f
    return out


def test_lock_then_audit(project):
    from ckreg.audit import audit

    manifest, root = project
    with pytest.raises(ManifestError) as info:
        audit(root, manifest=manifest)        # no lock yet: a clear error, before any work
    assert "no lock file" in info.value.render() and "run `ckreg manifest lock" in info.value.render()
    r = CliRunner().invoke(cli, ["manifest", "lock", str(manifest)])
    assert r.exit_code == 0, r.output
    lock = json.loads(manifest.with_name("models.lock.json").read_text())
    kws = lock["models"]["kws"]
    assert kws["keys"]["fc.weight"] == {"dtype": "float32", "shape": [12, 32]}
    assert kws["keys"]["norm.num_batches_tracked"]["dtype"] == "int64"
    assert kws["buffers"] == 64 + 64 + 1
    report = audit(root, manifest=manifest)
    by = _by_path(report)
    assert "kws/good.ckpt" not in by and "tiny.ckpt" not in by
    assert report.extra["declarations"]["kws"]["status"] == "satisfied"
    drift = by["kws/changed_kernel.ckpt"]["shape-drift"]
    assert "conv.weight is [64, 40, 3] in the file, [64, 40, 5] declared" in drift.message
    extra = by["kws/extra_layer.ckpt"]
    assert "keys-unexpected" in extra and "proj.{weight,bias}" not in extra["keys-unexpected"].message
    assert extra["keys-unexpected"].actual == ["proj.weight", "proj.bias"]
    assert "param-count-mismatch" in extra
    five = by["kws/five_classes.ckpt"]
    assert "fc.weight is [5, 32] in the file, [12, 32] declared" in five["shape-drift"].message
    other = by["kws/really_tiny.ckpt"]
    assert set(other) == {"family-mislabeled"}
    assert other["family-mislabeled"].actual == "tiny" and other["family-mislabeled"].expected == "kws"


def test_audit_after_lock_is_torch_free(project, tmp_path):
    manifest, root = project
    assert CliRunner().invoke(cli, ["manifest", "lock", str(manifest)]).exit_code == 0
    block = tmp_path / "block" / "torch"
    block.mkdir(parents=True)
    (block / "__init__.py").write_text("raise ImportError('torch blocked for this test')\n")
    code = ("import sys; from ckreg.cli import cli; "
            f"sys.argv=['ckreg','audit',{str(root)!r},'-m',{str(manifest)!r},'--json','-j','1']; cli()")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={"PYTHONPATH": f"{block.parent}:{SRC}", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 1, proc.stderr
    found = {(f["path"], f["code"]) for f in json.loads(proc.stdout)["findings"]}
    assert ("kws/changed_kernel.ckpt", "shape-drift") in found
    assert ("kws/really_tiny.ckpt", "family-mislabeled") in found
    assert ("kws/extra_layer.ckpt", "keys-unexpected") in found


def test_a_stale_lock_is_a_clear_error(project):
    manifest, root = project
    assert CliRunner().invoke(cli, ["manifest", "lock", str(manifest)]).exit_code == 0
    manifest.write_text(MANIFEST.replace("num_classes: 12", "num_classes: 10"))
    r = CliRunner().invoke(cli, ["audit", str(root), "-m", str(manifest)])
    assert r.exit_code == 2 and "stale" in r.output and "ckreg manifest lock" in r.output
    assert "Traceback" not in r.output


@pytest.mark.parametrize("module,needle", [
    ("acme_models.nope:KWSNet", "does not import"),
    ("acme_models.kws:Nope", "has no attribute"),
    ("acme_models.kws:not_a_module", "not a torch.nn.Module"),
])
def test_bad_module_paths_exit_2(project, module, needle):
    manifest, _ = project
    manifest.write_text(MANIFEST.replace("acme_models.kws:Tiny", module))
    r = CliRunner().invoke(cli, ["manifest", "lock", str(manifest)])
    assert r.exit_code == 2 and needle in r.output and "models.yaml:" in r.output
    assert "Traceback" not in r.output and not manifest.with_name("models.lock.json").exists()


def test_rename_names_declared_models_by_manifest_name(project):
    from ckreg.rename import plan_rename

    manifest, root = project
    assert CliRunner().invoke(cli, ["manifest", "lock", str(manifest)]).exit_code == 0
    plan = plan_rename(root, manifest=manifest)
    new = {m.old: m.new for m in plan.moves if m.role == "checkpoint"}
    assert new["kws/good.ckpt"].startswith("kws/kws-") and new["kws/good.ckpt"].endswith(".ckpt")
    assert new["kws/really_tiny.ckpt"].startswith("kws/tiny-")
    assert "kws/changed_kernel.ckpt" in {s.path for s in plan.skipped}   # matches no family and no model


def test_reference_checkpoint_is_the_expectation(project):
    from ckreg.audit import audit

    manifest, root = project
    manifest.write_text("models:\n  - name: kws\n    reference: ../archive/kws/good.ckpt\n    path: \"kws/*.ckpt\"\n")
    by = _by_path(audit(root, manifest=manifest))
    assert "kws/good.ckpt" not in by
    assert "shape-drift" in by["kws/five_classes.ckpt"]
    assert {"keys-missing", "keys-unexpected"} <= set(by["kws/really_tiny.ckpt"])


def test_one_architecture_per_model(tmp_path):
    from ckreg.manifest import load_manifest

    m = tmp_path / "m.yaml"
    m.write_text("models:\n  - name: a\n    family: GRU\n    module: \"x.y:Z\"\n")
    with pytest.raises(ManifestError, match=r"m.yaml:2: models\[0\]: declare one architecture"):
        load_manifest(m)
