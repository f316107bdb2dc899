"""Remote sources (`ckreg.readers.remote`): range reads, their cost, and errors that name the fix.

Range reads run on fsspec's in-memory filesystem (no service needed) and on a
filesystem whose files are fsspec's buffered files (what most drivers use), to
show that fsspec's read-ahead cache never fetches megabytes. The S3 tests use
the real S3 server (moto, `.ci/services.sh`) and skip with the reason without it.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import pickle
import random
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from ckreg.errors import ReadError
from ckreg.inspect import inspect_path
from ckreg.readers import read_checkpoint, read_scaler_summary
from ckreg.readers import remote
from ckreg.readers.fileio import Counter, open_source, sha256_of
from ckreg.readers.sniff import classify

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture
def mem():
    """mem(local_file_or_bytes, name) -> memory:// URL of a copy; removed afterwards."""
    import fsspec

    fs = fsspec.filesystem("memory")
    base = f"/ckreg-remote-{uuid.uuid4().hex[:10]}"

    def put(src, name: str) -> str:
        if isinstance(src, (bytes, bytearray)):
            fs.pipe_file(f"{base}/{name}", bytes(src))
        else:
            fs.put_file(str(src), f"{base}/{name}")
        return f"memory://{base}/{name}"

    put.fs = fs
    put.base = base
    yield put
    if fs.exists(base):
        fs.rm(base, recursive=True)


def test_pread_matches_the_bytes_and_counts_what_it_fetched(mem):
    data = random.Random(0).randbytes(300_000)
    url = mem(data, "blob.bin")
    counter = Counter()
    with open_source(url, counter) as f:
        assert f.size == len(data) and f.remote
        rng = random.Random(1)
        for _ in range(200):
            off = rng.randrange(-5, len(data) + 5)
            n = rng.choice([0, 1, 7, 4095, 4096, 4097, 20_000, remote.DIRECT + 3])
            want = data[off:off + n] if off >= 0 and n > 0 else b""
            assert f.pread(off, n) == want, (off, n)
    assert 0 < counter.n
    before = remote.transferred(url)
    with open_source(url) as f:                          # blocks stay cached: a repeated small read is free
        assert f.pread(10, 100) == data[10:110]
    assert remote.transferred(url) == before


def test_small_reads_are_block_aligned_and_coalesced(mem):
    data = bytes(range(256)) * (2 * remote.DIRECT // 256)
    url = mem(data, "b.bin")
    with open_source(url) as f:
        f.pread(10, 20)                                   # one block
        assert remote.transferred(url) == (remote.BLOCK, 1)
        f.pread(100, 3 * remote.BLOCK)                    # the next three blocks, in one request
        assert remote.transferred(url) == (4 * remote.BLOCK, 2)
        big = f.pread(0, remote.DIRECT)                   # a large read: the cached head, then the rest
        assert big == data[:remote.DIRECT]
        assert remote.transferred(url) == (remote.DIRECT, 3)
        assert f.pread(remote.DIRECT - 10, 20) == data[remote.DIRECT - 10:remote.DIRECT + 10]
        assert remote.transferred(url) == (remote.DIRECT + 2 * remote.BLOCK, 4)   # large reads are not cached


class _Recording:
    """A filesystem whose files are fsspec's buffered files (default read-ahead cache), recording every range."""

    ranges: list[tuple[int, int]] = []


def _recording_fs():
    import fsspec
    from fsspec.spec import AbstractBufferedFile, AbstractFileSystem

    store: dict[str, bytes] = {}

    class File(AbstractBufferedFile):
        def _fetch_range(self, start, end):
            _Recording.ranges.append((start, end))
            return store[self.path][start:end]

    class RecordingFS(AbstractFileSystem):
        protocol = "ckregrec"

        def _open(self, path, mode="rb", block_size=None, autocommit=True, cache_options=None, **kw):
            return File(self, path, mode, block_size=block_size, cache_options=cache_options,
                        size=len(store[path]), **kw)

        def info(self, path, **kw):
            path = self._strip_protocol(path)
            if path not in store:
                raise FileNotFoundError(path)
            return {"name": path, "size": len(store[path]), "type": "file"}

    fsspec.register_implementation("ckregrec", RecordingFS, clobber=True)
    return store


def test_a_driver_without_ranged_reads_never_reads_ahead(tmp_path, torch_mod):
    """fsspec's default file cache reads ahead by megabytes; the source opens files with cache_type="none"."""
    store = _recording_fs()
    torch = torch_mod
    path = tmp_path / "big.pt"
    torch.save({f"w{i}": torch.zeros(256, 1024) for i in range(8)}, path)   # 8 MiB
    store["/big.pt"] = path.read_bytes()
    _Recording.ranges.clear()
    res = read_checkpoint("ckregrec:///big.pt")
    assert len(res.tensors) == 8
    fetched = sum(e - s for s, e in _Recording.ranges)
    assert fetched == res.bytes_read <= 48 << 10, _Recording.ranges
    assert len(_Recording.ranges) <= 3


def test_torch_zip_costs_a_few_requests(mem, torch_mod):
    """A 64 MiB checkpoint of 100 tensors: the zip tail and directory, the pickle and the side members."""
    torch = torch_mod
    buf = io.BytesIO()
    torch.save({f"layers.{i}.weight": torch.zeros(128, 1280) for i in range(100)}, buf)
    url = mem(buf.getvalue(), "model.pt")
    insp = inspect_path(url)
    assert insp.error is None and insp.params.tensors == 100
    got, requests = remote.transferred(url)
    assert insp.bytes_read == got <= 48 << 10
    assert requests <= 3


def _formats(tmp: Path, torch) -> dict[str, Path]:
    """One file per format the readers know (local), to read remotely too."""
    from readers_builders import tar_legacy_torch

    sd = {"gru.weight_ih_l0": torch.randn(12, 8), "gru.bias_ih_l0": torch.randn(12), "fc.weight": torch.randn(4, 4)}
    out = {}
    out["zip"] = tmp / "m.pt"
    torch.save({"state_dict": sd, "epoch": 3}, out["zip"])
    out["legacy"] = tmp / "legacy.pt"
    torch.save(sd, out["legacy"], _use_new_zipfile_serialization=False)
    out["pickle"] = tmp / "plain.pkl"
    out["pickle"].write_bytes(pickle.dumps({"w": [1.0] * 40_000}, protocol=4))
    out["gzip"] = tmp / "z.pkl.gz"
    out["gzip"].write_bytes(gzip.compress(pickle.dumps({"w": (1, 2, 3)}, protocol=2)))
    out["tar"] = tmp / "old.tar"
    tar_legacy_torch(out["tar"])
    header = json.dumps({"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
                         "__metadata__": {"format": "pt"}}).encode()
    out["safetensors"] = tmp / "m.safetensors"
    out["safetensors"].write_bytes(len(header).to_bytes(8, "little") + header + bytes(24))
    out["text"] = tmp / "notes.txt"
    out["text"].write_text("not a checkpoint\n")
    return out


def test_every_format_reads_the_same_remotely(tmp_path, mem, torch_mod):
    files = _formats(tmp_path, torch_mod)
    for kind, path in files.items():
        url = mem(path, path.name)
        assert classify(url) == classify(path), kind
        if kind == "text":
            continue
        here = inspect_path(path)
        before = remote.transfers()
        there = inspect_path(url)
        a, b = here.model_dump(mode="json"), there.model_dump(mode="json")
        for key in ("path", "sha256", "bytes_read", "findings", "evidence", "error"):
            a.pop(key), b.pop(key)
        assert a == b, kind
        norm = lambda i, p: [(f["code"], f["message"].replace(str(p), "<f>")) for f in  # noqa: E731
                             i.model_dump(mode="json")["findings"]]
        assert norm(there, url) == norm(here, path), kind
        assert there.sha256 is None            # a remote file's bytes are hashed only on request (--hash)
        assert there.bytes_read == remote.transferred(url, since=before)[0]
    whole = inspect_path(mem(files["pickle"], "again.pkl"))
    assert any("whole remote file was transferred" in e for e in whole.evidence)   # a plain pickle: no index
    zipped = inspect_path(mem(files["zip"], "again.pt"))
    assert not any("whole remote file" in e for e in zipped.evidence)


def test_hashes_and_tensor_bytes_match_local(tmp_path, mem, torch_mod):
    files = _formats(tmp_path, torch_mod)
    for kind in ("zip", "legacy", "safetensors"):
        url = mem(files[kind], files[kind].name)
        here, there = inspect_path(files[kind], hash_weights=True), inspect_path(url, hash_weights=True)
        assert (there.sha256, there.weights_sha256) == (here.sha256, here.weights_sha256), kind
        assert sha256_of(url) == here.sha256


def test_scaler_and_model_folder_remotely(tmp_path, mem):
    from ckreg.scaler import Scaler

    Scaler(mean=[0.0] * 4, scale=[1.0] * 4, n_features=4, n_samples_seen=3).save_json(tmp_path / "scaler.json")
    url = mem(tmp_path / "scaler.json", "run/scaler.json")
    assert read_scaler_summary(url).n_features == 4
    assert inspect_path(url).family == "scaler"
    header = json.dumps({"bert.embeddings.word_embeddings.weight": {"dtype": "F32", "shape": [4, 2],
                                                                    "data_offsets": [0, 32]}}).encode()
    mem(len(header).to_bytes(8, "little") + header + bytes(32), "bert/model.safetensors")
    mem(json.dumps({"model_type": "bert"}).encode(), "bert/config.json")
    folder = f"memory://{mem.base}/bert"
    insp = inspect_path(folder)                 # bytes: every object of the folder (config.json too)
    assert insp.bytes_read == len(header) + 8 + 32 + len(json.dumps({"model_type": "bert"}))
    res = read_checkpoint(folder)
    assert res.metadata["model_folder"]["files"] == ["model.safetensors"]


def test_missing_object_is_unreadable_with_the_reason(mem):
    insp = inspect_path(f"memory://{mem.base}/nothing.pt")
    assert insp.error and "no such object" in insp.error
    with pytest.raises(ReadError, match="no such object"):
        read_checkpoint(f"memory://{mem.base}/nothing.pt")


def test_onnx_remote_over_the_whole_file_limit_is_refused(mem, monkeypatch):
    pytest.importorskip("onnx")
    from ckreg.readers import onnx_reader

    monkeypatch.setattr(remote, "WHOLE_FILE_LIMIT", 16)
    url = mem(b"\x08\x07\x12\x07pytorch" + bytes(64), "m.onnx")
    with pytest.raises(ReadError, match="over the 16-byte limit for reading a remote file whole") as err:
        onnx_reader.read_onnx(url, 75, [], source=open_source(url))
    assert err.value.hint == "download it and inspect the local copy"


# ---------------------------------------------------------------- S3 (moto)


def _s3_put(bucket: str, key: str, data: bytes) -> str:
    fs, _ = remote.filesystem(f"s3://{bucket}")
    fs.pipe_file(f"{bucket}/{key}", data)
    return f"s3://{bucket}/{key}"


def test_s3_inspect_json_reports_bytes_per_file(tmp_path, s3_bucket, torch_mod):
    from click.testing import CliRunner

    from ckreg.cli import cli

    torch = torch_mod
    buf = io.BytesIO()
    torch.save({f"w{i}": torch.zeros(256, 1024) for i in range(4)}, buf)          # 4 MiB
    big = _s3_put(s3_bucket, "models/big.pt", buf.getvalue())
    small = _s3_put(s3_bucket, "models/empty.pt", b"")
    out = CliRunner().invoke(cli, ["inspect", big, "--json"])
    assert out.exit_code == 0, out.output
    (row,) = json.loads(out.output)
    assert row["path"] == big and row["size"] == len(buf.getvalue())
    assert 0 < row["bytes_read"] <= 48 << 10
    out = CliRunner().invoke(cli, ["inspect", small])
    assert out.exit_code == 2 and "empty file" in out.output


def test_s3_missing_bucket_names_url_and_fix(s3_endpoint, monkeypatch):
    from click.testing import CliRunner

    from ckreg.cli import cli

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    url = f"s3://ckreg-no-such-bucket-{uuid.uuid4().hex[:8]}/archive"
    out = CliRunner().invoke(cli, ["audit", url])
    assert out.exit_code == 2
    assert url in out.output and "no such bucket" in out.output and "AWS_ENDPOINT_URL" in out.output
    assert "Traceback" not in out.output
    out = CliRunner().invoke(cli, ["inspect", f"{url}/model.pt"])
    assert out.exit_code == 2 and "no such bucket" in out.output


def _run_cli(args: list[str], env: dict) -> subprocess.CompletedProcess:
    code = "import sys; from ckreg.cli import main; main(sys.argv[1:])"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120,
                          env={**env, "PYTHONPATH": f"{env.get('PYTHONPATH', '')}:{SRC}"})


def test_s3_without_credentials_says_how_to_set_them(s3_bucket, s3_endpoint, tmp_path):
    url = _s3_put(s3_bucket, "a/model.pt", b"x")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ENDPOINT_URL=s3_endpoint, AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
               AWS_CONFIG_FILE=str(tmp_path / "none"), AWS_EC2_METADATA_DISABLED="true")
    proc = _run_cli(["audit", f"s3://{s3_bucket}/a"], env)
    assert proc.returncode == 2, proc.stderr
    assert f"s3://{s3_bucket}/a" in proc.stderr and "no credentials" in proc.stderr
    assert "AWS_ACCESS_KEY_ID" in proc.stderr and "Traceback" not in proc.stderr
    assert url


def test_missing_s3fs_says_pip_install(tmp_path):
    """Where s3fs is not installed, an s3:// URL is a usage error naming the extra (exit 2, one line)."""
    block = tmp_path / "block"
    (block / "s3fs").mkdir(parents=True)
    (block / "s3fs" / "__init__.py").write_text("raise ImportError('No module named s3fs')\n")
    env = dict(os.environ, PYTHONPATH=str(block))
    for args in (["audit", "s3://bucket/archive"], ["inspect", "s3://bucket/model.pt"]):
        proc = _run_cli(args, env)
        assert proc.returncode == 2, proc.stderr
        assert "pip install 'ckreg[s3]'" in proc.stderr and "Traceback" not in proc.stderr


def test_legacy_file_costs_its_pickles_and_one_tiny_range_per_storage(mem, torch_mod):
    """A legacy (pre-zip) file: the pickles, then each storage's 8-byte header, fetched at once where the
    pickle says they are (no megabyte window, no block per header)."""
    torch = torch_mod
    buf = io.BytesIO()
    torch.save({f"w{i}": torch.zeros(64, 1024) for i in range(40)}, buf, _use_new_zipfile_serialization=False)
    url = mem(buf.getvalue(), "old.pt")
    assert classify(url) == ("checkpoint", "legacy torch file")
    insp = inspect_path(url)
    assert insp.error is None and insp.format == "torch-legacy" and insp.params.tensors == 40
    got, requests = remote.transferred(url)
    assert got <= remote.BLOCK + 40 * 8 and requests == 1 + 40
