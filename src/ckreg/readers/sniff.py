"""What a file is, by its bytes: checkpoint, scaler, or neither (with the reason).

The audit classifies every regular file with `classify` so that nothing is left out
without a word: a pickle is one whatever its name (`.txt`, `.npy`, `.dat`, no extension),
its protocol or its first opcode; zips, tars, compressed streams and `.npy` files are
looked into; and a file that is none of these is named in the report's `skipped` with the
reason. The cost stays small: a few KB per file (a zip's central directory, a 64 KiB
window of a compressed stream, a pickle's first MiB).
"""

from __future__ import annotations

import os
from pathlib import Path

from ckreg.readers import containers, npy, onnx_reader, zipread
from ckreg.readers.fileio import Source, SourceReader, open_source
from ckreg.readers.pickle_vm import could_be_pickle, pickle_like, run_pickle

STRONG_CKPT_EXTS = frozenset({".ckpt", ".pt", ".pth", ".safetensors"})
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_SCALER_WORDS = (b"sklearn", b"standardscaler")
_TRIAL = 1 << 20


def _is_scaler_pickle(data: bytes) -> bool:
    low = data.lower()
    return any(w in low for w in _SCALER_WORDS)


def _pickle_kind(data: bytes, full: bool) -> tuple[str | None, str]:
    """Classify bytes that may be a pickle (the file's first MiB, or all of it when `full`)."""
    run = run_pickle(data, 0, max_objects=200_000, max_ops=2_000_000)
    if run.clean and run.value == LEGACY_MAGIC:
        return "checkpoint", "legacy torch file"
    if run.truncated and not full:
        looks = run.proto > 0 or bool(run.globals)
    else:
        looks = pickle_like([run])
    if not looks:
        return None, ""
    return ("scaler" if _is_scaler_pickle(data[:_TRIAL]) else "checkpoint"), "pickle"


def classify(path: str | os.PathLike, head: bytes | None = None) -> tuple[str | None, str]:
    """("checkpoint" | "scaler" | None, reason). None means neither, and the reason says what it is.
    `path` may be a URL (`ckreg.readers.remote`): the same few ranges are read from the object."""
    ext = Path(path).suffix.lower()
    try:
        f = open_source(path)
    except OSError as exc:
        return ("checkpoint" if ext in STRONG_CKPT_EXTS else None), f"cannot be opened: {exc.strerror or exc}"
    with f:
        if head is None:
            head = f.pread(0, 4096)
        if not head:
            return ("checkpoint" if ext in STRONG_CKPT_EXTS else None), "empty file"
        if zipread.looks_like_zip(head):
            return _zip_kind(f, ext)
        if len(head) >= 9 and head[8:9] == b"{":
            n = int.from_bytes(head[:8], "little")
            if 2 <= n and 8 + n <= f.size:
                return "checkpoint", "safetensors"
        kind = containers.sniff_container(head[:512], f)
        if kind == "npy":
            h = npy.parse_header(f.pread(0, 65536))
            if h.error is None and h.has_object is False:
                return None, f"numeric numpy array (dtype {h.descr!r}): holds no pickle"
            return "checkpoint", "numpy object array"
        if kind == "tar":
            return _tar_kind(f)
        if kind is not None:
            if kind == "lz4":
                return "checkpoint", "lz4 stream"
            try:
                window = containers.decompress(f.pread(0, min(f.size, 1 << 20)), kind, 1 << 16, partial=True)
            except containers.ContainerProblem:
                window = b""
            if window[:6] == npy.MAGIC or (window and could_be_pickle(window[:2])):
                got, _ = _pickle_kind(window, full=False)
                if got or window[:6] == npy.MAGIC:
                    return got or "checkpoint", f"{kind}-compressed pickle"
            if not could_be_pickle(head[:2]):
                return ("checkpoint" if ext in STRONG_CKPT_EXTS else None), f"{kind}-compressed data, not a pickle"
        if could_be_pickle(head[:2]):
            first = run_pickle(head, 0, max_objects=1000, max_ops=10_000)
            if first.clean and first.value == LEGACY_MAGIC:   # told by its first pickle: no MiB to read
                return "checkpoint", "legacy torch file"
            data = head if f.size <= len(head) else f.pread(0, min(f.size, _TRIAL))
            got, why = _pickle_kind(data, full=f.size <= len(data))
            if got:
                return got, why
        if ext == ".onnx" or (onnx_reader.looks_like_onnx(head)
                              and any(w in head.lower() for w in (b"onnx", b"pytorch", b"tensorflow"))):
            return "checkpoint", "ONNX model"
        if ext == ".json" and head.lstrip()[:1] == b"{":
            if b'"mean' in head and (b'"scale' in head or b'"var' in head):
                return "scaler", "scaler JSON"
            return None, "JSON file, not a scaler"
        if ext in STRONG_CKPT_EXTS:
            return "checkpoint", "checkpoint extension"
        text = head[:1024]
        if all(32 <= b < 127 or b in (9, 10, 13) for b in text) or _utf8(text):
            return None, "text file, not a checkpoint (no pickle, zip or safetensors structure)"
        return None, "binary file of no checkpoint format (no pickle, zip, tar, numpy or safetensors structure)"


def _utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        # a multi-byte character cut at the window's end
        try:
            b[:-3].decode("utf-8")
            return len(b) > 3
        except UnicodeDecodeError:
            return False


def _zip_kind(f: Source, ext: str) -> tuple[str | None, str]:
    try:
        idx = zipread.read_index(f)
    except zipread.ZipProblem:
        return "checkpoint", "corrupt zip"   # a corrupt zip is reported as unreadable, not ignored
    names = [m.name.lower() for m in idx.members]
    if any(n.endswith((".pkl", ".pickle")) or "/data/" in n for n in names):
        return "checkpoint", "zip with pickle members"
    for m in idx.members[:256]:
        if m.name.endswith("/") or m.usize == 0:
            continue
        try:
            head = zipread.read_member_head(f, m, 4096)
        except zipread.ZipProblem:
            continue
        if head[:6] == npy.MAGIC:
            h = npy.parse_header(head)
            if h.error is None and h.has_object is not False:
                return "checkpoint", "zip with a numpy object array"
            continue
        if could_be_pickle(head[:2]) and _pickle_kind(head, full=m.usize <= len(head))[0]:
            return "checkpoint", "zip with a pickle member"
    if ext in STRONG_CKPT_EXTS:
        return "checkpoint", "checkpoint extension"
    return None, f"zip archive of {len(idx.members)} member(s), none of them a pickle"


def _tar_kind(f: Source) -> tuple[str | None, str]:
    import tarfile

    try:
        with tarfile.open(fileobj=SourceReader(f), mode="r:") as tar:
            names = tar.getnames()[:10_000]
    except (tarfile.TarError, OSError, EOFError):
        return "checkpoint", "corrupt tar"
    if any(n in ("pickle", "storages", "tensors", "sys_info") or n.lower().endswith((".pkl", ".pickle"))
           for n in names):
        return "checkpoint", "tar-format torch file"
    return None, f"tar archive of {len(names)} member(s), none of them torch's"
