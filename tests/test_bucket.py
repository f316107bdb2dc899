"""Remote audits (`ckreg.bucket`): a bucket prefix audits exactly as a local copy of the same tree.

Every test runs on two remote stores: fsspec's in-memory filesystem (`memory://`, no
service needed) and the real S3 server (moto, from `.ci/services.sh`; skipped with the
reason without it). The archive holds what an audit must get right: duplicates (a
byte-identical copy and a re-save with other metadata), sidecar and duplicate scalers,
a mislabeled folder, an unreadable file, a text file, a legacy torch file, safetensors,
a sharded Hugging Face folder, a `.git` folder, and a manifest with a missing model.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest

from ckreg.audit import audit
from ckreg.errors import UsageError
from ckreg.findings import EXIT_USAGE
from ckreg.inspect.layouts import param_counts
from ckreg.manifest import parse_manifest
from test_audit import save_ckpt, save_scaler, tiny_spec


def _put_tree(fs, base: str, local: Path) -> None:
    for p in sorted(local.rglob("*")):
        if p.is_file():
            fs.put_file(str(p), f"{base}/{p.relative_to(local).as_posix()}")


@pytest.fixture(params=["memory", "s3"])
def store(request):
    """store(local_dir, name) -> URL of a copy of `local_dir` at `<store>/<name>` (memory:// or moto S3)."""
    from ckreg.readers.remote import filesystem

    if request.param == "memory":
        top = f"memory://ckreg-test-{uuid.uuid4().hex[:10]}"
    else:
        top = f"s3://{request.getfixturevalue('s3_bucket')}"
    fs, base = filesystem(top)

    def upload(local: Path, name: str) -> str:
        _put_tree(fs, f"{base.rstrip('/')}/{name}", local)
        return f"{top}/{name}"

    upload.fs = fs
    upload.top = top
    yield upload
    if request.param == "memory" and fs.exists(base):
        fs.rm(base, recursive=True)


def _safetensors(path: Path, tensors: dict[str, list[int]], metadata: dict | None = None) -> Path:
    """A safetensors file of zero-filled float32 tensors (stdlib only)."""
    header, offset = {}, 0
    for name, shape in tensors.items():
        n = 4
        for s in shape:
            n *= s
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    if metadata:
        header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + bytes(offset))
    return path


def build_archive(root: Path, torch) -> Path:
    """The archive both audits read; returns the manifest's path (beside the archive)."""
    best = save_ckpt(root / "GRU" / "GRU_best.ckpt", "GRU", seed=0)
    shutil.copy(best, root / "GRU" / "GRU_copy.ckpt")                    # byte-identical duplicate
    save_ckpt(root / "resaved" / "GRU_e2.ckpt", "GRU", seed=0, meta={"note": "re-saved"})   # same weights
    save_scaler(root / "GRU" / "scaler.json")
    shutil.copy(root / "GRU" / "scaler.json", root / "resaved" / "scaler.json")       # duplicate scaler
    save_ckpt(root / "StackedGRU" / "model.ckpt", "GRU", seed=1)         # the folder name says StackedGRU
    save_scaler(root / "StackedGRU" / "scaler.json", n_features=6)       # feature count mismatch
    whole = (root / "GRU" / "GRU_best.ckpt").read_bytes()
    (root / "broken.pt").write_bytes(whole[: len(whole) // 2])          # truncated: unreadable
    (root / "notes.txt").write_text("GRU_best, trained on the glove data\n")
    legacy = root / "legacy" / "StackedGRU_old.pt"
    legacy.parent.mkdir()
    sd = {k.removeprefix("model."): v for k, v in torch.load(best, weights_only=True)["state_dict"].items()}
    torch.save(sd, legacy, _use_new_zipfile_serialization=False)        # a GRU under a StackedGRU name
    _safetensors(root / "st" / "GRU.safetensors", {k: list(v.shape) for k, v in sd.items()},
                 {"format": "pt"})
    hf = root / "hf" / "tiny-bert"
    _safetensors(hf / "model-00001-of-00002.safetensors", {"embeddings.word_embeddings.weight": [16, 8]})
    _safetensors(hf / "model-00002-of-00002.safetensors", {"pooler.dense.weight": [8, 8],
                                                           "pooler.dense.bias": [8]})
    (hf / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": 800}, "weight_map": {
        "embeddings.word_embeddings.weight": "model-00001-of-00002.safetensors",
        "pooler.dense.weight": "model-00002-of-00002.safetensors",
        "pooler.dense.bias": "model-00002-of-00002.safetensors",
        "pooler.missing": "model-00002-of-00002.safetensors"}}))
    (hf / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 8}))
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("[core]\n")
    manifest = root.parent / "manifest.yaml"
    manifest.write_text(f"""
models:
  - name: GRU
    family: GRU
    hyperparameters: {{num_layers: 1, hidden_size: 4, proj_size: 8}}
    params: {param_counts(tiny_spec("GRU"))[0]}
    path: GRU/GRU_best.ckpt
  - name: MSCSGRU
    family: MSCSGRU
    path: MSCSGRU/best.ckpt
""", encoding="utf-8")
    return manifest


def _view(report, root: str) -> dict:
    """What must not depend on where the archive lives: findings, checked, skipped, errors, per-file facts."""
    def norm(text):
        return text.replace(root, "<root>") if isinstance(text, str) else text

    # file hashes differ by design: a local file's sha256 is free, a remote one is transferred (only
    # on request), and small local files get weights hashed inline (remote: only where layouts collide)
    files = {rel: {k: norm(v) for k, v in info.items() if k not in ("sha256", "weights_sha256")}
             for rel, info in report.extra["files"].items()}
    return {
        "findings": sorted((f.code, f.severity.value, norm(f.path), norm(f.message), json.dumps(f.expected,
                            sort_keys=True, default=str), json.dumps(f.actual, sort_keys=True, default=str))
                           for f in report.findings),
        "checked": report.checked,
        "skipped": [(s.path, s.reason) for s in report.skipped],
        "errors": [(e.path, e.message) for e in report.errors],
        "files": files,
        "scalers": report.extra["scalers"],
        "declarations": json.loads(norm(json.dumps(report.extra.get("declarations"), sort_keys=True))),
    }


def test_bucket_audit_equals_local_audit(tmp_path, store, torch_mod):
    local = tmp_path / "archive"
    manifest_path = build_archive(local, torch_mod)
    url = store(local, "archive")
    m = parse_manifest(manifest_path.read_text(), source=str(manifest_path))
    here = audit(local, m, cache=False)
    there = audit(url, m, cache=False)
    assert there.root == url
    want, got = _view(here, str(local)), _view(there, url)
    for key in want:
        assert got[key] == want[key], key
    remote_hashes = {rel: i["weights_sha256"] for rel, i in there.extra["files"].items() if i["weights_sha256"]}
    assert set(remote_hashes) == {"GRU/GRU_best.ckpt", "GRU/GRU_copy.ckpt", "resaved/GRU_e2.ckpt",
                                  "StackedGRU/model.ckpt", "legacy/StackedGRU_old.pt", "st/GRU.safetensors"}
    assert all(here.extra["files"][rel]["weights_sha256"] == h for rel, h in remote_hashes.items())
    codes = {f.code for f in there.findings}
    assert {"duplicate-weights", "scaler-duplicate", "family-mislabeled", "unreadable", "model-missing",
            "model-folder-invalid", "scaler-feature-mismatch"} <= codes
    how = {f.path: f.message for f in there.findings if f.code == "duplicate-weights"}
    assert "a byte-identical copy" in how["GRU/GRU_copy.ckpt"]
    assert "different bytes" in how["resaved/GRU_e2.ckpt"]
    assert ("notes.txt", "text file, not a checkpoint (no pickle, zip or safetensors structure)") \
        in [(s.path, s.reason) for s in there.skipped]
    assert "hf/tiny-bert/" in there.checked and not any(".git" in p for p in there.checked)
    # bytes: per file and in total, a fraction of what is stored
    t = there.extra["transfer"]
    assert set(t["files"]) == set(there.checked)
    assert all(n > 0 for n in t["files"].values())
    assert t["total"] >= sum(t["files"].values()) and t["requests"] > 0
    assert t["stored"] == sum(p.stat().st_size for p in local.rglob("*") if p.is_file())
    assert "transfer" not in here.extra


def test_bucket_audit_reads_ranges_not_files(tmp_path, store, torch_mod):
    """A large checkpoint costs a few KiB: the zip tail, the pickle, the side members."""
    torch = torch_mod
    local = tmp_path / "big"
    local.mkdir()
    torch.save({f"layers.{i}.weight": torch.zeros(512, 1024) for i in range(8)}, local / "model.pt")  # 16 MiB
    url = store(local, "big")
    r = audit(url, cache=False)
    size = (local / "model.pt").stat().st_size
    assert r.extra["files"]["model.pt"]["size"] == size
    assert r.extra["transfer"]["files"]["model.pt"] <= 48 << 10 < size
    assert r.extra["transfer"]["requests"] <= 3


def test_single_object_and_model_folder_targets(tmp_path, store, torch_mod):
    local = tmp_path / "archive"
    build_archive(local, torch_mod)
    url = store(local, "archive")
    for target, checked in ((f"{url}/GRU/GRU_best.ckpt", ["GRU_best.ckpt", "scaler.json"]),
                            (f"{url}/hf/tiny-bert", ["tiny-bert/"])):
        here = audit(local / target.removeprefix(url + "/"), cache=False)
        there = audit(target, cache=False)
        assert there.checked == here.checked == checked
        assert _view(there, url)["findings"] == _view(here, str(local))["findings"]


def test_missing_prefix_is_an_error_entry(store):
    r = audit(f"{store.top}/no/such/prefix", cache=False)
    assert [e.message for e in r.errors] == ["no such object or prefix"]
    assert r.exit_code() == EXIT_USAGE


def test_remote_audit_refuses_what_needs_a_local_copy(store, tmp_path):
    for kw in ({"lineage": True}, {"only": ["a.pt"]}):
        with pytest.raises(UsageError, match="needs a local copy"):
            audit(f"{store.top}/x", cache=False, **kw)


def test_remote_audit_cache_keys_by_etag(tmp_path, s3_bucket, torch_mod):
    """The cache reuses an object's inspection while its URL, size and ETag are unchanged; a rewritten
    object (new ETag) is inspected again."""
    from ckreg.inspect.cache import InspectionCache
    from ckreg.readers.remote import filesystem

    local = tmp_path / "archive"
    save_ckpt(local / "GRU_best.ckpt", "GRU", seed=0)
    url = f"s3://{s3_bucket}/archive"
    fs, base = filesystem(url)
    _put_tree(fs, base, local)
    cache = InspectionCache(tmp_path / "cache.sqlite")
    first = audit(url, cache=cache)
    assert first.extra["cache"]["misses"] == 1
    cache = InspectionCache(tmp_path / "cache.sqlite")
    second = audit(url, cache=cache)
    assert (second.extra["cache"]["hits"], second.extra["cache"]["misses"]) == (1, 0)
    save_ckpt(local / "GRU_best.ckpt", "GRU", seed=3)           # same size, other bytes: a new ETag
    _put_tree(fs, base, local)
    cache = InspectionCache(tmp_path / "cache.sqlite")
    third = audit(url, cache=cache)
    assert third.extra["cache"]["misses"] == 1


def test_cli_audit_of_a_url_reports_bytes_transferred(tmp_path, store, torch_mod):
    from click.testing import CliRunner

    from ckreg.cli import cli

    local = tmp_path / "archive"
    save_ckpt(local / "GRU" / "GRU_best.ckpt", "GRU", seed=0)
    save_scaler(local / "GRU" / "scaler.json")
    url = store(local, "archive")
    out = CliRunner().invoke(cli, ["audit", url, "--no-cache"], env={"COLUMNS": "80"})
    assert out.exit_code == 0, out.output
    line = next(x for x in out.output.splitlines() if x.startswith("remote:"))
    assert "transferred (" in line and "for 2 files" in line and line.endswith(" stored")
    assert all(len(x) <= 80 for x in out.output.splitlines() if not x.startswith("ckreg audit"))
    out = CliRunner().invoke(cli, ["audit", url, "--no-cache", "--json"])
    report = json.loads(out.stdout)
    t = report["extra"]["transfer"]
    assert set(t["files"]) == {"GRU/GRU_best.ckpt", "GRU/scaler.json"}
    assert t["total"] == sum(t["files"].values()) > 0
    out = CliRunner().invoke(cli, ["audit", url, "--staged"])
    assert out.exit_code == 2 and "--staged needs a local copy" in out.output


def test_remote_report_in_every_format(tmp_path, store, torch_mod):
    """SARIF locates a remote archive's files under its URL (AUDITROOT); every reporter renders it."""
    import jsonschema

    from ckreg.report import REPORTERS, render

    local = tmp_path / "archive"
    save_ckpt(local / "StackedGRU" / "model.ckpt", "GRU", seed=1)     # family-mislabeled
    url = store(local, "archive")
    report = audit(url, cache=False)
    for fmt in REPORTERS:
        assert render(report, fmt)
    sarif = json.loads(render(report, "sarif"))
    schema = json.loads((Path(__file__).parent / "report" / "sarif-schema-2.1.0.json").read_text())
    jsonschema.validate(sarif, schema)
    run = sarif["runs"][0]
    assert run["originalUriBaseIds"]["AUDITROOT"]["uri"] == url + "/"
    locs = [r["locations"][0]["physicalLocation"]["artifactLocation"] for r in run["results"]]
    assert {"uri": "StackedGRU/model.ckpt", "uriBaseId": "AUDITROOT"} in locs
