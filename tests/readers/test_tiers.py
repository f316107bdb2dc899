"""The allowlist's tiers are pinned: any addition (say `runpy._run_code`) fails here, and `--strict`
means exactly torch.load(weights_only=True)'s own set."""

from __future__ import annotations

import hashlib
import struct
import zipfile
import zlib

import pytest
from click.testing import CliRunner

from ckreg.cli import cli
from ckreg.readers import DEFAULT_TIERS, TIERS, WEIGHTS_ONLY, read_checkpoint
from readers_builders import reduce_call, wrap

# Each tier, pinned: the sha256 of its sorted (module, name) pairs, and its size.
PINNED = {
    "torch": (144, "8b68bb8f0ea1bda4f3e5085ddd17fdaa93eadb502937856aa671188d6663ee59"),
    "python": (9, "195f994d2861bd223d7d39b8e742e0a2b1276f4660efb30833f73a4697cb0e2e"),
    "pathlib": (12, "404ca8bfb78abd2de0edbc5a3cef0d759c97807a6d9dbc8875d175c85219e290"),
    "numpy": (38, "6d3283c0afbc595111ec2c3699614bae96939998715a6a9a801b600a3738e52c"),
    "omegaconf": (21, "13baa9b0046df83a340654efae50521721145eab5be08c1eaa24a32d75bfa88a"),
    "lightning": (5, "d0986070211ca4052f8f86b0970653f9ae26e573a032506356a7ea61a83e959e"),
    "scaler": (4, "08c1bcfb3934e533e548b2078c2270e820dcc4b48872f9986a80b8ea387af876"),
}
PYTHON_TIER = {("builtins", "frozenset"), ("builtins", "slice"), ("builtins", "range"), ("builtins", "bytes"),
               ("datetime", "datetime"), ("datetime", "date"), ("datetime", "time"), ("datetime", "timedelta"),
               ("datetime", "timezone")}
NEVER = {("runpy", "_run_code"), ("builtins", "exec"), ("builtins", "eval"), ("builtins", "getattr"),
         ("os", "system"), ("posix", "system"), ("subprocess", "Popen"), ("pickle", "loads"), ("torch", "load")}


def check_tiers(tiers: dict) -> None:
    assert set(tiers) == set(PINNED)
    for name, pairs in tiers.items():
        size, digest = PINNED[name]
        assert len(pairs) == size, name
        assert hashlib.sha256(repr(sorted(pairs)).encode()).hexdigest() == digest, name
        assert not (set(pairs) & NEVER), name


def test_each_tier_is_pinned():
    check_tiers(TIERS)
    assert set(TIERS["python"]) == PYTHON_TIER
    assert DEFAULT_TIERS == ("torch", "python", "pathlib", "numpy", "omegaconf", "lightning")
    assert WEIGHTS_ONLY == ("torch",)


@pytest.mark.parametrize("tier", sorted(PINNED))
def test_adding_runpy_run_code_to_a_tier_fails_the_pin(tier):
    mutated = dict(TIERS)
    mutated[tier] = frozenset(TIERS[tier] | {("runpy", "_run_code")})
    with pytest.raises(AssertionError):
        check_tiers(mutated)


def test_torch_tier_is_exactly_weights_only(torch_mod):
    from torch._weights_only_unpickler import _get_allowed_globals

    theirs = {tuple(k.rsplit(".", 1)) for k in _get_allowed_globals()}
    assert set(TIERS["torch"]) == theirs


def _datetime_pickle(tmp_path):
    import datetime
    import pickle

    path = tmp_path / "meta.pkl"
    path.write_bytes(pickle.dumps({"w": [1.0], "when": datetime.timedelta(days=1)}, protocol=4))
    return path


def test_strict_flags_what_weights_only_refuses(tmp_path):
    path = _datetime_pickle(tmp_path)
    assert not read_checkpoint(path).unsafe
    assert read_checkpoint(path, tiers=WEIGHTS_ONLY).unsafe


def test_cli_strict_names_its_tiers(tmp_path):
    import json

    path = _datetime_pickle(tmp_path)
    runner = CliRunner()
    r = runner.invoke(cli, ["inspect", str(path), "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)[0]["allowed_tiers"] == list(DEFAULT_TIERS)
    r = runner.invoke(cli, ["inspect", str(path), "--json", "--strict"])
    assert r.exit_code == 1
    out = json.loads(r.stdout)[0]
    assert out["allowed_tiers"] == ["torch"] and any(f["code"] == "unsafe-global" for f in out["findings"])
    r = runner.invoke(cli, ["inspect", str(path), "--strict", "--no-tree"])
    assert "weights_only" in r.stdout
    r = runner.invoke(cli, ["audit", str(tmp_path), "--json", "--strict"])
    assert json.loads(r.stdout)["extra"]["allowlist_tiers"] == ["torch"]
    assert "allowlist: torch (= torch.load weights_only)" in r.stderr and r.exit_code == 1
    r = runner.invoke(cli, ["audit", str(tmp_path), "--json"])
    assert "allowlist: torch, python" in r.stderr


def test_zip_bomb_whose_local_header_lies_about_its_size(tmp_path, monkeypatch):
    """data.pkl claims 100 bytes (local header and directory) but inflates to 2 MiB: the streaming
    inflate stops at the cap instead of trusting the declared size."""
    from ckreg.errors import ReadError
    from ckreg.readers import core

    monkeypatch.setattr(core, "PICKLE_CAP", 1 << 20)
    bomb = wrap(reduce_call("os", "system", "id")) + b"\0" * (2 << 20)
    path = tmp_path / "bomb.pt"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", bomb)
        z.writestr("archive/version", "3\n")
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, 22, 100)                      # the local header's uncompressed size
    cd = data.rfind(b"PK\x01\x02", 0, data.rfind(b"PK\x01\x02"))
    struct.pack_into("<I", data, cd + 24, 100)                 # the central directory's
    path.write_bytes(bytes(data))
    assert len(zlib.compress(bomb)) < len(bomb) // 100
    with pytest.raises(ReadError) as err:
        read_checkpoint(path)
    text = str(err.value) + " ".join(f.message for f in err.value.findings)
    assert "cap" in text and "zip bomb" in text


def test_strict_judges_scaler_pickles_by_what_a_scaler_needs(tmp_path):
    """torch.load never reads a scaler, so --strict keeps numpy + scaler tiers for scalers (not for checkpoints);
    a scaler pickle that calls anything else is still refused."""
    import json
    import pickle

    np = pytest.importorskip("numpy")
    sklearn_pre = pytest.importorskip("sklearn.preprocessing")
    sk = sklearn_pre.StandardScaler().fit(np.random.default_rng(0).normal(size=(20, 3)))
    (tmp_path / "ok").mkdir()
    (tmp_path / "ok" / "scaler.pkl").write_bytes(pickle.dumps(sk, protocol=4))
    runner = CliRunner()
    r = runner.invoke(cli, ["audit", str(tmp_path / "ok"), "--json", "--strict", "--no-cache"])
    rep = json.loads(r.stdout)
    assert not [f for f in rep["findings"] if f["code"] == "unsafe-global"], rep["findings"]
    r = runner.invoke(cli, ["inspect", str(tmp_path / "ok" / "scaler.pkl"), "--json", "--strict"])
    assert r.exit_code == 0 and not json.loads(r.stdout)[0]["findings"]
    # a "scaler" whose pickle runs os.system is flagged with or without --strict
    (tmp_path / "bad").mkdir()
    import os

    class Payload:
        def __reduce__(self):
            return (os.system, ("id",))      # written as a global + call; never run here

    sk.payload_ = Payload()
    (tmp_path / "bad" / "scaler.pkl").write_bytes(pickle.dumps(sk, protocol=4))
    for extra in ([], ["--strict"]):
        r = runner.invoke(cli, ["audit", str(tmp_path / "bad"), "--json", "--no-cache", *extra])
        assert any(f["code"] == "unsafe-global" and "system" in f["message"]
                   for f in json.loads(r.stdout)["findings"]), (extra, r.stdout)
