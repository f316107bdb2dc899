"""Raw builders for hostile and odd files (pickle opcodes, zip byte patches).

Imported by the readers tests and conftest (unique module name: pytest puts
this folder on sys.path).
"""

from __future__ import annotations

import io
import pickle
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path


# ---------------------------------------------------------------- raw pickle helpers

def global_op(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def short_str(s: str) -> bytes:
    b = s.encode()
    return b"\x8c" + bytes([len(b)]) + b


def reduce_call(module: str, name: str, *str_args: str, proto: int = 2) -> bytes:
    """`module.name(*str_args)` as GLOBAL + TUPLE + REDUCE (the classic __reduce__ payload)."""
    body = global_op(module, name) + b"(" + b"".join(
        b"X" + struct.pack("<I", len(a.encode())) + a.encode() for a in str_args) + b"tR"
    return body


def wrap(body: bytes, proto: int = 2) -> bytes:
    return b"\x80" + bytes([proto]) + body + b"."


class FileTouchPayload:
    """A real `__reduce__` payload: unpickling it creates `target` (via builtins.exec)."""

    def __init__(self, target: str):
        self.target = target

    def __reduce__(self):
        return (exec, (f"open({self.target!r}, 'w').close()",))


# ---------------------------------------------------------------- zip helpers

def rewrite_zip(src: Path, dst: Path, *, rename=None, drop=None, extra=None, compress=None) -> Path:
    """Copy a torch zip member by member, optionally renaming, dropping or adding members."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            if drop and drop(info.filename):
                continue
            name = rename(info.filename) if rename else info.filename
            data = zin.read(info.filename)
            method = compress(info.filename) if compress else zipfile.ZIP_STORED
            zout.writestr(zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0)), data, compress_type=method)
        for name, data in (extra or {}).items():
            zout.writestr(zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0)), data)
    return dst


def patch_member_headers(path: Path, member_suffix: str, *, flag_bits: int | None = None,
                         crc: int | None = None) -> None:
    """Set flag bits / CRC of one member in both its local header and the central directory."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as z:
        infos = [i for i in z.infolist() if i.filename.endswith(member_suffix)]
    for info in infos:
        lh = info.header_offset
        if flag_bits is not None:
            struct.pack_into("<H", data, lh + 6, flag_bits)
        if crc is not None:
            struct.pack_into("<I", data, lh + 14, crc)
    # central directory entries
    pos = data.rfind(b"PK\x05\x06")
    cd_off = struct.unpack_from("<I", data, pos + 16)[0]
    p = cd_off
    while data[p:p + 4] == b"PK\x01\x02":
        nlen, xlen, clen = struct.unpack_from("<HHH", data, p + 28)
        name = bytes(data[p + 46:p + 46 + nlen]).decode()
        if name.endswith(member_suffix):
            if flag_bits is not None:
                struct.pack_into("<H", data, p + 8, flag_bits)
            if crc is not None:
                struct.pack_into("<I", data, p + 16, crc)
        p += 46 + nlen + xlen + clen
    path.write_bytes(bytes(data))


def zip_bomb_member(size: int) -> bytes:
    return zlib.compress(b"\0" * size)


def pickle_bytes(obj, protocol: int) -> bytes:
    return pickle.dumps(obj, protocol=protocol)


def tar_legacy_torch(path: Path) -> Path:
    """A tar-format (torch < 0.4) file whose `pickle` member calls os.system: ckreg cannot read all of it."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in (("sys_info", pickle.dumps({"little_endian": True}, protocol=2)),
                           ("pickle", wrap(reduce_call("os", "system", "id"))),
                           ("storages", pickle.dumps(0, protocol=2) + pickle.dumps([], protocol=2)),
                           ("tensors", pickle.dumps(0, protocol=2))):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path

