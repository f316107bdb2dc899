"""A lenient zip reader, as lenient as PyTorch's (issue #2, scanners' lessons).

PyTorch reads checkpoints with miniz: it ignores CRCs and most flag bits and
trusts the central directory. Python's `zipfile` is stricter (it refuses
"encrypted" members and raises on a bad CRC), and scanners built on it have
been bypassed by files that torch loads happily (bad CRC, flag bit 0 set).
So we parse the central directory ourselves, read members through their
local headers, tolerate what torch tolerates, and report each oddity as an
`archive-anomaly` note for the caller. Decompression is capped (zip bombs).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from typing import Iterator

from ckreg.readers.fileio import RandomAccessFile

EOCD_SIG = b"PK\x05\x06"
EOCD64_LOC_SIG = b"PK\x06\x07"
EOCD64_SIG = b"PK\x06\x06"
CDIR_SIG = b"PK\x01\x02"
LOCAL_SIG = b"PK\x03\x04"

STORED, DEFLATED = 0, 8


class ZipProblem(Exception):
    """The archive structure itself cannot be read (no/garbled central directory)."""


@dataclass
class Member:
    name: str
    method: int
    flags: int
    crc: int
    csize: int
    usize: int
    header_offset: int
    data_offset: int | None = None   # resolved from the local header on demand
    index: int = 0
    raw: bytes = b""                 # the name's bytes as stored (what miniz compares)


@dataclass
class ZipIndex:
    members: list[Member]
    anomalies: list[str] = field(default_factory=list)
    by_name: dict[str, list[Member]] = field(default_factory=dict)
    _sorted: list[int] | None = field(default=None, repr=False)
    _folded: dict[bytes, Member] | None = field(default=None, repr=False)

    def get(self, name: str) -> Member | None:
        found = self.by_name.get(name)
        return found[0] if found else None

    @property
    def torch_prefix(self) -> bytes | None:
        """The folder torch reads records from: the first directory entry's name up to its first '/'
        (`PyTorchStreamReader::init`); None when that name has no '/' (torch refuses the file)."""
        if not self.members:
            return None
        raw = self.members[0].raw
        cut = raw.find(b"/")
        return raw[:cut] if cut >= 0 else None

    def locate(self, name: bytes | str) -> Member | None:
        """The member `mz_zip_reader_locate_file(name, flags=0)` returns, as torch's reader calls it.

        miniz sorts the central directory by lower-cased name with a heap sort (not stable) and
        binary-searches it, comparing ASCII case-insensitively: `ARCHIVE/DATA.PKL` answers a
        lookup of `archive/data.pkl`, and of several such members the search lands on one that
        depends on the directory's order, which this reproduces step for step.
        """
        key = name.encode("utf-8") if isinstance(name, str) else name
        if self._folded is None:
            # Names distinct once lower-cased (every archive torch.save writes): the sorted order
            # is the one order of distinct keys and the search finds the one equal name, so a
            # lookup by folded name answers the same, without sorting.
            folded = {m.raw.translate(_LOWER): m for m in self.members}
            self._folded = folded if len(folded) == len(self.members) else {}
        if self._folded:
            return self._folded.get(key.translate(_LOWER))
        if self._sorted is None:
            self._sorted = _miniz_sorted([m.raw for m in self.members])
        order, raws = self._sorted, self.members
        lo, hi = 0, len(order) - 1
        while lo <= hi:
            mid = lo + ((hi - lo) >> 1)
            comp = _miniz_compare(raws[order[mid]].raw, key)
            if comp == 0:
                return raws[order[mid]]
            if comp < 0:
                lo = mid + 1
            else:
                hi = mid - 1
        return None


_LOWER = bytes(c + 32 if 65 <= c <= 90 else c for c in range(256))


def _miniz_compare(left: bytes, right: bytes) -> int:
    """miniz `mz_zip_filename_compare`: lower-cased bytes, then length."""
    lo_l, lo_r = left.translate(_LOWER), right.translate(_LOWER)
    for a, b in zip(lo_l, lo_r):
        if a != b:
            return a - b
    return len(left) - len(right)


def _miniz_less(left: bytes, right: bytes) -> bool:
    """miniz `mz_zip_reader_filename_less`."""
    lo_l, lo_r = left.translate(_LOWER), right.translate(_LOWER)
    for a, b in zip(lo_l, lo_r):
        if a != b:
            return a < b
    return len(left) < len(right)


def _miniz_sorted(names: list[bytes]) -> list[int]:
    """The index order `mz_zip_reader_sort_central_dir_offsets_by_filename` leaves (its heap sort)."""
    size = len(names)
    idx = list(range(size))
    if size <= 1:
        return idx
    less = lambda i, j: _miniz_less(names[idx[i]], names[idx[j]])  # noqa: E731

    def sift(root: int, end: int) -> None:
        while True:
            child = (root << 1) + 1
            if child >= end:
                return
            if child + 1 < end and less(child, child + 1):
                child += 1
            if not less(root, child):
                return
            idx[root], idx[child] = idx[child], idx[root]
            root = child

    start = (size - 2) >> 1
    while True:
        sift(start, size)
        if not start:
            break
        start -= 1
    end = size - 1
    while end > 0:
        idx[end], idx[0] = idx[0], idx[end]
        sift(0, end)
        end -= 1
    return idx


def looks_like_zip(head: bytes) -> bool:
    return head[:4] in (LOCAL_SIG, EOCD_SIG)


def read_index(f: RandomAccessFile) -> ZipIndex:
    """Parse the central directory (ZIP64 aware), reading only the file's tail and the directory."""
    size = f.size
    anomalies: list[str] = []
    eocd_pos, tail, tail_start = -1, b"", 0
    for window in (4096, 65536 + 22):
        tail_start = max(0, size - window)
        tail = f.pread(tail_start, size - tail_start)
        eocd_pos = tail.rfind(EOCD_SIG)
        while eocd_pos >= 0 and len(tail) - eocd_pos < 22:
            eocd_pos = tail.rfind(EOCD_SIG, 0, eocd_pos)
        if eocd_pos >= 0 or tail_start == 0:
            break
    if eocd_pos < 0:
        raise ZipProblem("no zip end-of-central-directory record (the file is truncated or not a zip)")
    (_, disk, cd_disk, n_disk, n_total, cd_size, cd_offset, comment_len) = struct.unpack(
        "<4sHHHHIIH", tail[eocd_pos:eocd_pos + 22])
    abs_eocd = tail_start + eocd_pos
    if abs_eocd + 22 + comment_len != size:
        anomalies.append(f"{size - abs_eocd - 22 - comment_len} unexpected byte(s) after the zip comment")
    if n_total == 0xFFFF or cd_size == 0xFFFFFFFF or cd_offset == 0xFFFFFFFF:
        loc = abs_eocd - 20
        locator = f.pread(loc, 20) if loc >= 0 else b""
        if len(locator) == 20 and locator[:4] == EOCD64_LOC_SIG:
            (_, _, eocd64_off, _) = struct.unpack("<4sIQI", locator)
            rec = f.pread(eocd64_off, 56)
            if len(rec) == 56 and rec[:4] == EOCD64_SIG:
                (_, _, _, _, _, _, n_disk, n_total, cd_size, cd_offset) = struct.unpack("<4sQHHIIQQQQ", rec)
            else:
                raise ZipProblem("ZIP64 end-of-central-directory record missing or corrupt")
        else:
            raise ZipProblem("ZIP64 locator missing")
    if cd_offset + cd_size > size:
        raise ZipProblem(f"central directory (offset {cd_offset}, {cd_size} bytes) lies past the end of the "
                         f"file ({size} bytes): the file is truncated")
    if n_total > cd_size // 46 + 1:
        raise ZipProblem(f"central directory claims {n_total} entries in {cd_size} bytes")
    # Archives with a prefix (e.g. something prepended) shift every offset; detect via the first entry.
    cd = f.pread(cd_offset, cd_size)
    members: list[Member] = []
    pos = 0
    for i in range(n_total):
        if cd[pos:pos + 4] != CDIR_SIG:
            raise ZipProblem(f"central directory entry {i} is corrupt (bad signature)")
        (_, _, _, flags, method, _, _, crc, csize, usize, nlen, xlen, clen, _, _, _, hoff) = struct.unpack(
            "<4sHHHHHHIIIHHHHHII", cd[pos:pos + 46])
        raw_name = cd[pos + 46:pos + 46 + nlen]
        extra = cd[pos + 46 + nlen:pos + 46 + nlen + xlen]
        pos += 46 + nlen + xlen + clen
        if pos > len(cd):
            raise ZipProblem(f"central directory entry {i} runs past the directory")
        name = raw_name.decode("utf-8" if flags & 0x800 else "cp437", "replace")
        if 0xFFFFFFFF in (csize, usize, hoff):
            usize, csize, hoff = _zip64_extra(extra, usize, csize, hoff)
        members.append(Member(name, method, flags, crc, csize, usize, hoff, index=i, raw=bytes(raw_name)))
        if flags & 0x1:
            anomalies.append(f"{name}: 'encrypted' flag bit set (PyTorch ignores it; Python's zipfile refuses "
                             f"to read the member)")
        if method not in (STORED, DEFLATED):
            anomalies.append(f"{name}: compression method {method} (PyTorch reads only stored/deflated)")
    idx = ZipIndex(members, anomalies)
    for m in members:
        idx.by_name.setdefault(m.name, []).append(m)
    for name, ms in idx.by_name.items():
        if len(ms) > 1:
            anomalies.append(f"{name}: {len(ms)} members share this name (loaders disagree on which one wins)")
    return idx


def _zip64_extra(extra: bytes, usize: int, csize: int, hoff: int) -> tuple[int, int, int]:
    pos = 0
    while pos + 4 <= len(extra):
        hid, hlen = struct.unpack("<HH", extra[pos:pos + 4])
        body = extra[pos + 4:pos + 4 + hlen]
        if hid == 0x0001:
            vals = list(struct.unpack(f"<{len(body) // 8}Q", body[: len(body) // 8 * 8]))
            if usize == 0xFFFFFFFF and vals:
                usize = vals.pop(0)
            if csize == 0xFFFFFFFF and vals:
                csize = vals.pop(0)
            if hoff == 0xFFFFFFFF and vals:
                hoff = vals.pop(0)
            break
        pos += 4 + hlen
    return usize, csize, hoff


def resolve(f: RandomAccessFile, m: Member, anomalies: list[str] | None = None) -> int:
    """Offset of a member's data, from its local header (name and extra lengths may differ from the directory)."""
    if m.data_offset is not None:
        return m.data_offset
    head = f.pread(m.header_offset, 30)
    if len(head) < 30 or head[:4] != LOCAL_SIG:
        raise ZipProblem(f"{m.name}: local header missing or corrupt at offset {m.header_offset}")
    (_, _, lflags, lmethod, _, _, _, _, _, nlen, xlen) = struct.unpack("<4sHHHHHIIIHH", head)
    if anomalies is not None:
        if lmethod != m.method:
            anomalies.append(f"{m.name}: local header says method {lmethod}, directory says {m.method}")
        lname = f.pread(m.header_offset + 30, nlen)
        if lname.decode("utf-8", "replace") != m.name:
            anomalies.append(f"{m.name}: local header names it {lname.decode('utf-8', 'replace')!r}")
    m.data_offset = m.header_offset + 30 + nlen + xlen
    if m.data_offset + m.csize > f.size:
        raise ZipProblem(f"{m.name}: data runs past the end of the file (truncated)")
    return m.data_offset


def read_member(f: RandomAccessFile, m: Member, cap: int, anomalies: list[str] | None = None,
                check_crc: bool = True) -> bytes:
    """The whole (decompressed) member, refusing more than `cap` bytes (zip bombs)."""
    off = resolve(f, m, anomalies)
    if m.method == STORED:
        if m.csize > cap:
            raise ZipProblem(f"{m.name}: {m.csize} bytes, over the {cap}-byte cap for this member")
        data = f.pread(off, m.csize)
        if m.usize != m.csize and anomalies is not None:
            anomalies.append(f"{m.name}: stored member with compressed size {m.csize} != size {m.usize}")
    elif m.method == DEFLATED:
        if m.usize > cap:
            raise ZipProblem(f"{m.name}: declares {m.usize} bytes uncompressed, over the {cap}-byte cap")
        d = zlib.decompressobj(-15)
        out = []
        total = 0
        pos, end = off, off + m.csize
        while pos < end:
            chunk = f.pread(pos, min(1 << 20, end - pos))
            if not chunk:
                break
            pos += len(chunk)
            try:
                piece = d.decompress(chunk, cap + 1 - total)
            except zlib.error as exc:
                raise ZipProblem(f"{m.name}: corrupt deflate data ({exc})") from None
            out.append(piece)
            total += len(piece)
            if total > cap or d.unconsumed_tail:
                raise ZipProblem(f"{m.name}: expands past the {cap}-byte cap (zip bomb?)")
        data = b"".join(out)
        if len(data) != m.usize and anomalies is not None:
            anomalies.append(f"{m.name}: inflates to {len(data)} bytes, directory says {m.usize}")
    else:
        raise ZipProblem(f"{m.name}: unsupported compression method {m.method}")
    if check_crc and anomalies is not None and (zlib.crc32(data) & 0xFFFFFFFF) != m.crc:
        anomalies.append(f"{m.name}: CRC mismatch (PyTorch ignores CRCs; Python's zipfile raises)")
    return data


def read_member_head(f: RandomAccessFile, m: Member, n: int) -> bytes:
    """The first `n` decompressed bytes of a member (content sniffing)."""
    off = resolve(f, m)
    if m.method == STORED:
        return f.pread(off, min(n, m.csize))
    if m.method == DEFLATED:
        d = zlib.decompressobj(-15)
        try:
            return d.decompress(f.pread(off, min(m.csize, 4096)), n)
        except zlib.error:
            return b""
    return b""


def iter_member_range(f: RandomAccessFile, m: Member, start: int, length: int,
                      chunk: int = 1 << 20) -> Iterator[bytes]:
    """Stream `length` decompressed bytes of a member from `start`."""
    off = resolve(f, m)
    if m.method == STORED:
        pos, end = off + start, off + start + length
        while pos < end:
            b = f.pread(pos, min(chunk, end - pos))
            if not b:
                raise ZipProblem(f"{m.name}: ends early (truncated)")
            pos += len(b)
            yield b
        return
    if m.method != DEFLATED:
        raise ZipProblem(f"{m.name}: unsupported compression method {m.method}")
    d = zlib.decompressobj(-15)
    skip, want = start, length
    pos, end = off, off + m.csize
    while want > 0:
        src = d.unconsumed_tail
        if not src:
            if pos >= end:
                raise ZipProblem(f"{m.name}: ends early")
            src = f.pread(pos, min(chunk, end - pos))
            pos += len(src)
        piece = d.decompress(src, chunk)
        if not piece and d.eof:
            raise ZipProblem(f"{m.name}: deflate stream ends early")
        if skip:
            cut = min(skip, len(piece))
            piece = piece[cut:]
            skip -= cut
        if piece:
            piece = piece[:want]
            want -= len(piece)
            yield piece
