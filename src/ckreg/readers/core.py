"""`read_checkpoint`: any supported checkpoint -> `ReadResult`, never executing it (issue #2).

Format is detected from the bytes: a zip (torch >= 1.6 `torch.save`,
Lightning `.ckpt`), a legacy torch file (a sequence of pickles followed by raw
storages), safetensors, or a plain pickle (protocols 0-5). Pickles go through
the symbolic machine (`pickle_vm`); every global is judged against the
allowlist; unsafe content becomes findings while the rest is still read.

Unreadable input raises `ReadError`/`FormatError` naming the file. Such an
error may carry `.findings` (what was learned before giving up, e.g. an
unsafe global in a truncated file) and `.partial` (a `ReadResult` or None).
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import stat
from typing import Any, Callable, Iterator

from ckreg.errors import FormatError, ReadError
from ckreg.findings import Finding
from ckreg.readers import folder, onnx_reader, torchscript, zipread
from ckreg.readers.allowlist import DEFAULT_TIERS, tier_of
from ckreg.readers.fileio import Counter, Source, SourceReader, is_url, isdir, open_source
from ckreg.readers.meta import decode_scalar, extract_metadata
from ckreg.readers.model import DTYPE_SIZES, ReadResult, StorageRef, TensorRecord
from ckreg.readers import containers, npy
from ckreg.readers.joblib_arrays import joblib_hook
from ckreg.readers.pickle_vm import (DEFAULT_REDUCERS, canonical, STORAGE_DTYPES, Global, PersistentRef, PickleRun, StorageRec,
                                     TensorRef, could_be_pickle, pickle_like, run_all, run_pickle)
from ckreg.readers.safetensors_reader import looks_like_safetensors, read_safetensors
from ckreg.readers.tensorbytes import iter_tensor
from ckreg.readers.unwrap import find_state_dict, strip_prefixes

PICKLE_CAP = 64 << 20          # a pickle member/stream larger than this is refused (zip bombs, memory)
PLAIN_PICKLE_CAP = 256 << 20   # plain pickle files are read whole; bigger ones are refused
SCALAR_READ_MAX = 64           # bytes: 0-d tensors in metadata are decoded only when this small
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
LEGACY_PROBE = 16 << 10       # a remote pickle file's first read: a legacy file's first pickles, if not all five
# members torch writes besides data.pkl and storages
TORCH_SIDE_MEMBERS = ("byteorder", "version", ".data/version", ".data/serialization_id", ".format_version",
                      ".storage_alignment")


class _Ctx:
    """Per-file state: findings and the globals seen, judged once each."""

    def __init__(self, path: str, tiers: tuple[str, ...]):
        self.path = path
        self.tiers = tiers
        self.findings: list[Finding] = []
        self.globals: dict[str, str | None] = {}     # full name -> tier (None = unsafe)
        self.pickles = 0
        self.anomalies: list[str] = []
        self.script = False                           # a TorchScript archive (readers/torchscript.py)
        self.script_globals: list[str] = []

    def add(self, code: str, message: str, *, severity: str | None = None, **kw: Any) -> None:
        self.findings.append(Finding.make(code, f"{self.path}: {message}", path=self.path, severity=severity, **kw))

    def judge(self, run: PickleRun, where: str, *, sniffed: bool = False) -> None:
        """Judge every global of one run; report malformation (sniffed members: only as an anomaly)."""
        self.pickles += 1
        for g in run.globals:
            full = g.full
            if full in self.globals:
                continue
            if self.script and torchscript.is_script_global(g.module, g.name):
                self.globals[full] = "torchscript"   # defined by the archive; see readers/torchscript.py
                self.script_globals.append(full)
                continue
            tier = tier_of(g.module, g.name, self.tiers)
            self.globals[full] = tier
            if tier is None:
                canon = ".".join(canonical(g.module, g.name))
                alias = f" (= {canon})" if canon != full else ""
                self.add("unsafe-global",
                         f"unsafe global {full}{alias} in {where} (byte {g.pos}): loading this file with pickle "
                         f"or torch.load(weights_only=False) would import it",
                         actual=full)
        for code in dict.fromkeys(run.ext_codes):
            key = f"<extension code {code}>"
            if key not in self.globals:
                self.globals[key] = None
                self.add("unsafe-global", f"pickle extension code {code} in {where}: resolves through copyreg's "
                                          f"extension registry to a global that cannot be judged", actual=key)
        if not run.clean:
            if sniffed:
                self.anomalies.append(f"{where}: looks like a pickle but is not one ({run.error} at byte {run.error_pos})")
            else:
                self.add("pickle-malformed", f"{where}: {run.error} at byte {run.error_pos}; the stream is not clean",
                         actual=run.error)
        for w in run.warnings:
            self.add("pickle-malformed", f"{where}: {w} (pickle.dump never writes this)", severity="warning")

    def flush_anomalies(self) -> None:
        for a in dict.fromkeys(self.anomalies):
            self.add("archive-anomaly", a)
        self.anomalies = []

    def error(self, message: str, partial: ReadResult | None = None, cls: type = FormatError) -> ReadError:
        self.flush_anomalies()
        err = cls(message, path=self.path)
        err.findings = list(self.findings)  # type: ignore[attr-defined]
        err.partial = partial  # type: ignore[attr-defined]
        return err


# --------------------------------------------------------------------------- entry point


def _check_path(path: str) -> None:
    if is_url(path):
        _check_url(path)
        return
    try:
        st = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ReadError("symlink loop: the path never resolves to a file", path=path) from None
        if exc.errno == errno.ENOENT:
            if os.path.islink(path):
                raise ReadError("dangling symlink: its target does not exist", path=path) from None
            raise ReadError("no such file", path=path) from None
        raise ReadError(f"cannot stat: {exc.strerror}", path=path) from None
    if stat.S_ISDIR(st.st_mode):
        raise ReadError("is a directory, not a checkpoint file", path=path,
                        hint="pass the files inside it, or use `ckreg audit` on the folder")
    if not stat.S_ISREG(st.st_mode):
        raise ReadError("not a regular file (device, FIFO or socket)", path=path)
    if st.st_size == 0:
        raise ReadError("empty file (0 bytes)", path=path, hint="restore it from a backup or remove it")


def _check_url(url: str) -> None:
    """A remote object (`ckreg.readers.remote`): it exists, is an object (not a prefix), is not empty."""
    from ckreg.readers.remote import stat

    try:
        info = stat(url)
    except OSError as exc:
        raise ReadError(getattr(exc, "strerror", None) or str(exc), path=url, hint=getattr(exc, "hint", None)) \
            from None
    if info.is_dir:
        raise ReadError("is a folder (a prefix), not a checkpoint file", path=url,
                        hint="pass the objects inside it, or use `ckreg audit` on the prefix")
    if info.size == 0:
        raise ReadError("empty file (0 bytes)", path=url, hint="restore it from a backup or remove it")


def read_checkpoint(path: str | os.PathLike, *, tiers: tuple[str, ...] = DEFAULT_TIERS) -> ReadResult:
    """Read one checkpoint symbolically (a local path or a URL: `ckreg.readers.remote`).
    Raises `ReadError` only when the file cannot be read at all."""
    p = os.fspath(path)
    if isdir(p) and folder.is_model_folder(p):   # a Hugging Face model folder is one checkpoint
        return folder.read_model_folder(p)
    _check_path(p)
    counter = Counter()
    try:
        f = open_source(p, counter)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ReadError("symlink loop: the path never resolves to a file", path=p) from None
        raise ReadError(f"cannot open: {exc.strerror}", path=p, hint=getattr(exc, "hint", None)) from None
    ctx = _Ctx(p, tiers)
    try:
        with f:
            return _dispatch(f, ctx, counter)
    except OSError as exc:  # an I/O error mid-read (EIO, file vanished): unreadable, not a crash
        raise ctx.error(f"I/O error while reading: {exc.strerror or exc}", cls=ReadError) from None


def _dispatch(f: Source, ctx: _Ctx, counter: Counter) -> ReadResult:
    """Pick the reader from the bytes (never the extension), trying every format whose magic fits.

    safetensors is validated first: its 8-byte header length can begin with any byte (0x80
    included, about one file in 256), so a file that validates as safetensors is one, and only
    a file that does not is tried as a pickle.
    """
    head = f.pread(0, 512)
    res = None
    if zipread.looks_like_zip(head):
        res = _read_zip(f, ctx)
    elif looks_like_safetensors(head, f.size):
        try:
            res = _read_safetensors(f, ctx)
        except FormatError:
            if not could_be_pickle(head):
                raise
            ctx.findings = [x for x in ctx.findings if x.code != "safetensors-invalid"]
    if res is None and not zipread.looks_like_zip(head):
        kind = containers.sniff_container(head, f)
        if kind == "npy":
            res = _read_npy(f, ctx)
        elif kind == "tar":
            res = _read_tar(f, ctx)
        elif kind is not None:
            res = _read_compressed(f, ctx, kind)
        elif onnx_reader.looks_like_onnx(head):
            res = onnx_reader.read_onnx(ctx.path, f.size, ctx.findings, source=f)
        elif could_be_pickle(head):
            res = _read_pickle_file(f, ctx)
        else:
            raise ctx.error("not a recognised checkpoint format (not a zip, pickle, safetensors or ONNX file)",
                            cls=ReadError)
    res.bytes_read += counter.n
    return res




def _short(value: Any, limit: int = 80) -> str:
    """repr for messages: bounded, and safe on hostile (deep, cyclic) values."""
    try:
        text = repr(value)
    except (RecursionError, ValueError, TypeError):
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit] + "..."


def _itemsize(dtype: str) -> int | None:
    return DTYPE_SIZES.get(dtype) or {"qint8": 1, "quint8": 1, "qint32": 4, "quint4x2": 1, "quint2x4": 1}.get(dtype)


def _extent(t: TensorRef) -> int:
    """Elements of storage the tensor touches (max index + 1; 0 for empty tensors)."""
    if any(s == 0 for s in t.shape):
        return 0
    stride = t.stride if t.stride is not None else _contig(t.shape)
    if len(stride) != len(t.shape):
        return t.storage_offset + (math.prod(t.shape) if t.shape else 1)
    return t.storage_offset + sum((s - 1) * abs(st) for s, st in zip(t.shape, stride)) + 1


def _contig(shape: tuple) -> tuple:
    out, acc = [], 1
    for s in reversed(shape):
        out.append(acc)
        acc *= max(s, 1)
    return tuple(reversed(out))


def _walk_tensors(obj: Any, limit: int = 1_000_000) -> Iterator[TensorRef]:
    """Every TensorRef in the object tree (iterative; cycles and depth safe)."""
    from ckreg.readers.pickle_vm import Call, Unhashable

    stack = [obj]
    seen: set[int] = set()
    n = 0
    while stack and n < limit:
        o = stack.pop()
        n += 1
        if isinstance(o, TensorRef):
            yield o
            continue
        if isinstance(o, (dict, list, tuple, set, frozenset, Call, Unhashable)):
            if id(o) in seen:
                continue
            seen.add(id(o))
            if isinstance(o, dict):
                stack.extend(o.values())
            elif isinstance(o, Call):
                stack.extend([o.args, o.state, o.kwargs, o.items, o.setitems])
            elif isinstance(o, Unhashable):
                stack.append(o.value)
            else:
                stack.extend(o)


def _finish(ctx: _Ctx, f: Source, fmt: str, root: Any, storage_ref: Callable[[StorageRec], StorageRef],
            scalar_reader, byte_source_factory) -> ReadResult:
    sd, evidence = find_state_dict(root)
    originals = list(sd)
    names, ev2 = strip_prefixes(originals)
    evidence += ev2
    tensors: dict[str, TensorRecord] = {}
    original_names: dict[str, str] = {}
    refs: dict[int, StorageRef] = {}
    for new, orig in zip(names, originals):
        t = sd[orig]
        sref = None
        if isinstance(t.storage, StorageRec):
            sref = refs.get(id(t.storage))
            if sref is None:
                sref = refs[id(t.storage)] = storage_ref(t.storage)
        tensors[new] = TensorRecord(name=new, dtype=t.dtype, shape=tuple(t.shape), stride=t.stride, storage=sref,
                                    storage_offset=t.storage_offset, requires_grad=t.requires_grad,
                                    is_parameter=t.is_parameter or None)
        original_names[new] = orig
    metadata = extract_metadata(root, scalar_reader)
    metadata["global_tiers"] = {k: v for k, v in ctx.globals.items() if v is not None}
    ctx.flush_anomalies()
    res = ReadResult(path=ctx.path, format=fmt, size=f.size, tensors=tensors, unwrap=evidence, metadata=metadata,
                     findings=ctx.findings, globals=list(ctx.globals), root=root, pickles=ctx.pickles,
                     original_names=original_names)
    res._byte_source = byte_source_factory(res)
    return res


def _make_byte_source(path: str, range_for: Callable[[Source, TensorRecord], Callable]):
    """A byte source that opens the file per call (or reads the source `res.holding_source` keeps)
    and adds what it reads to `res.bytes_read`."""

    def factory(res: ReadResult):
        def source(rec: TensorRecord) -> Iterator[bytes]:
            isz = _itemsize(rec.dtype)
            if rec.storage is None or isz is None:
                raise ReadError(f"tensor {rec.name!r} has no readable storage (dtype {rec.dtype})", path=path)
            counter = Counter()
            held = res._held   # `ReadResult.holding_source`: one source for every tensor
            with (contextlib.nullcontext(held) if held is not None else open_source(path, counter)) as g:
                reader = range_for(g, rec)
                try:
                    for chunk in iter_tensor(reader, isz, rec.shape, rec.stride, rec.storage_offset,
                                             f"{path}: {rec.name}"):
                        res.bytes_read += counter.n
                        counter.n = 0
                        yield chunk
                except zipread.ZipProblem as exc:
                    raise ReadError(f"tensor {rec.name!r}: {exc}", path=path) from None
                res.bytes_read += counter.n
        return source
    return factory


def _check_tensor_sizes(ctx: _Ctx, root: Any, capacity: Callable[[StorageRec], int | None], where: str) -> None:
    """tensor-implausible: a tensor or storage declaring more bytes than the file holds."""
    reported: set[int] = set()
    for t in _walk_tensors(root):
        st = t.storage
        if not isinstance(st, StorageRec) or id(t) in reported:
            continue
        isz = _itemsize(st.dtype) or 1
        cap = capacity(st)
        need = _extent(t) * isz
        if cap is not None and need > cap:
            reported.add(id(t))
            ctx.add("tensor-implausible",
                    f"tensor of shape {list(t.shape)} ({st.dtype}) needs {need} bytes of storage {st.key!r}, "
                    f"which holds {cap} ({where})", expected=cap, actual=need)


# --------------------------------------------------------------------------- torch zip


def _read_zip(f: Source, ctx: _Ctx) -> ReadResult:
    try:
        idx = zipread.read_index(f)
    except zipread.ZipProblem as exc:
        raise ctx.error(f"corrupt or truncated zip: {exc}") from None
    ctx.anomalies.extend(idx.anomalies)
    members = idx.members
    ctx.script = torchscript.is_torchscript(m.name for m in members)
    # The member torch 2.x unpickles: `<first entry's folder>/data.pkl`, located the way miniz
    # locates it (case-insensitive binary search over its heap-sorted directory).
    raw_prefix = idx.torch_prefix
    prefix = raw_prefix.decode("utf-8", "replace") if raw_prefix is not None else ""
    main = idx.locate(raw_prefix + b"/data.pkl") if raw_prefix is not None else None
    if raw_prefix is None and members:
        ctx.anomalies.append(f"the first member {members[0].name!r} is not in a folder: torch.load refuses "
                             f"this archive")
    if main is not None and main.raw != raw_prefix + b"/data.pkl":
        ctx.anomalies.append(f"torch reads the pickle from {main.name!r}: zip names are matched "
                             f"case-insensitively")
    if main is None:
        named = [m for m in members if m.name.lower() == "data.pkl" or m.name.lower().endswith("/data.pkl")]
        named.sort(key=lambda m: (m.name.count("/"), m.index))
        main = named[0] if named else None
        if main is not None:
            ctx.anomalies.append(f"pickle member {main.name!r} is not under the archive's first folder "
                                 f"{prefix!r} (torch looks for {prefix}/data.pkl)")
    if main is None:  # no */data.pkl record: take the first member whose content is a pickle
        for m in members:
            if m.name.endswith("/") or "/data/" in m.name or m.name.startswith("data/"):
                continue
            try:
                head = zipread.read_member_head(f, m, 2)
            except zipread.ZipProblem:
                continue
            if len(head) == 2 and head[0] == 0x80 and head[1] <= 5:
                main = m
                ctx.anomalies.append(f"no */data.pkl member; {m.name!r} holds a pickle and was read as the "
                                     f"checkpoint (torch.load would refuse this file)")
                break
    if main is not None and main.name.endswith("data.pkl"):
        base = main.name[: -len("data.pkl")]
    elif main is not None:
        base = main.name.rsplit("/", 1)[0] + "/" if "/" in main.name else ""
    else:
        base = prefix + "/" if prefix else ""

    storages: dict[str, list[StorageRec]] = {}
    bad_pids: list[Any] = []

    def persistent_load(pid: Any) -> Any:
        if isinstance(pid, tuple) and len(pid) >= 5 and pid[0] in ("storage", b"storage"):
            st_type, key, location, numel = pid[1:5]
            tname = st_type.name if isinstance(st_type, Global) else ""
            rec = StorageRec(dtype=STORAGE_DTYPES.get(tname, "unknown"), key=str(key),
                             location=str(location), numel=numel if isinstance(numel, int) else None,
                             type_name=tname)
            storages.setdefault(rec.key, []).append(rec)
            return rec
        bad_pids.append(pid)
        return PersistentRef(pid)

    root: Any = None
    member_of: dict[str, zipread.Member] = {}
    if main is not None:
        try:
            data = zipread.read_member(f, main, PICKLE_CAP, ctx.anomalies)
        except zipread.ZipProblem as exc:
            ctx.anomalies.append(str(exc))
            data = None
        if data is None:
            _scan_other_members(f, ctx, members, main, set())
            raise ctx.error(f"cannot read the pickle member {main.name!r}")
        runs = run_all(data, persistent_load=persistent_load)
        ctx.judge(runs[0], main.name)
        for extra in runs[1:]:
            ctx.judge(extra, f"{main.name} (pickle at byte {extra.start}, after STOP)", sniffed=True)
            if extra.clean:
                ctx.anomalies.append(f"{main.name}: another pickle follows STOP at byte {extra.start} "
                                     f"(loaders ignore it; scanners must not)")
        if runs[0].truncated:
            ctx.anomalies.append(f"{main.name}: pickle ends before STOP (truncated member)")
        root = runs[0].value if runs[0].clean else runs[0].partial
        for pid in bad_pids[:3]:
            ctx.add("pickle-malformed", f"{main.name}: persistent id {_short(pid)} is not a storage reference "
                                        f"(torch.load refuses it)", severity="warning")
        # resolve storages to members
        by_suffix: dict[str, list[zipread.Member]] = {}
        for m in members:
            if "/data/" in m.name or m.name.startswith("data/"):
                by_suffix.setdefault(m.name.rsplit("/", 1)[-1], []).append(m)
        missing = []
        for key in storages:
            m = idx.locate(f"{base}data/{key}")   # torch's lookup: case-insensitive too
            if m is None:
                cands = [c for c in by_suffix.get(key, []) if c.name.endswith(f"data/{key}")]
                if len(cands) == 1:
                    m = cands[0]
                    ctx.anomalies.append(f"storage {key!r} found at {m.name!r}, not {base}data/{key}")
            if m is None:
                missing.append(f"{base}data/{key}")
            else:
                member_of[key] = m
    _scan_other_members(f, ctx, members, main, {id(m) for m in member_of.values()})

    def capacity(st: StorageRec) -> int | None:
        m = member_of.get(st.key)
        return m.usize if m is not None else f.size

    for key, recs in storages.items():
        m = member_of.get(key)
        for rec in recs:
            if rec.numel is not None and rec.numel < 0:
                ctx.add("tensor-implausible", f"storage {key!r} declares {rec.numel} elements (negative)",
                        actual=rec.numel)
                break
            isz = _itemsize(rec.dtype) or 1
            if rec.numel is not None and m is not None and rec.numel * isz > m.usize:
                ctx.add("tensor-implausible",
                        f"storage {key!r} declares {rec.numel} x {rec.dtype} = {rec.numel * isz} bytes but its "
                        f"member {m.name!r} holds {m.usize}", expected=m.usize, actual=rec.numel * isz)
                break
    _check_tensor_sizes(ctx, root, capacity, "zip")

    def storage_ref(st: StorageRec) -> StorageRef:
        m = member_of.get(st.key)
        return StorageRef(key=st.key, dtype=st.dtype, numel=st.numel, device=st.location,
                          member=m.name if m else f"{base}data/{st.key}")

    def scalar_reader(t: TensorRef) -> Any:
        st = t.storage
        if not isinstance(st, StorageRec):
            return None
        m = member_of.get(st.key)
        isz = _itemsize(st.dtype)
        if m is None or isz is None or isz > SCALAR_READ_MAX or m.method != zipread.STORED:
            return None
        try:
            off = zipread.resolve(f, m)
        except zipread.ZipProblem:
            return None
        if (t.storage_offset + 1) * isz > m.usize:
            return None
        return decode_scalar(f.pread(off + t.storage_offset * isz, isz), st.dtype)

    def range_for(g: Source, rec: TensorRecord):
        m = idx.get(rec.storage.member) if rec.storage and rec.storage.member else None
        if m is None:
            raise ReadError(f"tensor {rec.name!r}: storage member missing", path=ctx.path)
        m2 = zipread.Member(m.name, m.method, m.flags, m.crc, m.csize, m.usize, m.header_offset, m.data_offset)
        return lambda start, length: zipread.iter_member_range(g, m2, start, length, chunk=g.chunk)

    if main is None:
        npys = [m for m in members if m.name.lower().endswith(".npy")]
        if npys and ctx.pickles:
            return _finish(ctx, f, "npz", None, storage_ref, None, _make_byte_source(ctx.path, range_for))
        if npys and len(npys) == len([m for m in members if not m.name.endswith("/")]):
            raise ctx.error("a numpy .npz archive of plain arrays (no pickle): not a checkpoint", cls=ReadError)
        raise ctx.error("zip archive without a pickle member (no */data.pkl): not a torch checkpoint")
    if ctx.script:
        return _finish_torchscript(f, ctx, idx, members, base, root, missing, storage_ref, scalar_reader,
                                   range_for)
    res = _finish(ctx, f, "torch-zip", root, storage_ref, scalar_reader, _make_byte_source(ctx.path, range_for))
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise ctx.error(f"zip is missing {len(missing)} storage member(s) the pickle references: {shown}",
                        partial=res)
    return res


def _finish_torchscript(f: Source, ctx: _Ctx, idx, members: list, base: str, root: Any,
                        missing: list[str], storage_ref, scalar_reader, range_for) -> ReadResult:
    """A TorchScript archive: the module tree's tensors as a state_dict, one `torchscript-code` warning."""
    classes: dict[str, tuple[list[str], list[str]]] = {}
    for m in members:
        module = torchscript.code_module(m.name, base)
        if module is None or m.usize > torchscript.CODE_MEMBER_CAP:
            continue
        try:
            text = zipread.read_member(f, m, torchscript.CODE_MEMBER_CAP, ctx.anomalies)
        except zipread.ZipProblem as exc:
            ctx.anomalies.append(str(exc))
            continue
        if text is not None:
            classes.update(torchscript.parse_class_lists(module, bytes(text).decode("utf-8", "replace")))
    sd, is_param, evidence = torchscript.module_tensors(root, classes)
    shown = ", ".join(ctx.script_globals[:3]) + (f" (+{len(ctx.script_globals) - 3} more)"
                                                  if len(ctx.script_globals) > 3 else "")
    ctx.add("torchscript-code",
            f"TorchScript archive: torch.jit.load (and torch.load, which hands such archives to it) compiles and "
            f"runs the code in its code/ folder; {len(ctx.script_globals)} TorchScript classes and helpers "
            f"({shown}) were read, not run", actual=ctx.script_globals[:20])
    res = _finish(ctx, f, "torchscript", sd if sd else root, storage_ref, scalar_reader,
                  _make_byte_source(ctx.path, range_for))
    res.root = root
    if sd:
        res.unwrap = evidence + [e for e in res.unwrap if e != "the file is a plain state_dict"]
        res.tensors = {new: TensorRecord(name=rec.name, dtype=rec.dtype, shape=rec.shape, stride=rec.stride,
                                         storage=rec.storage, storage_offset=rec.storage_offset,
                                         requires_grad=rec.requires_grad,
                                         is_parameter=is_param.get(res.original_names.get(new, new)))
                       for new, rec in res.tensors.items()}
    res.metadata["torchscript"] = {"classes_recorded": len(classes), "modules": len(ctx.script_globals)}
    if missing:
        shown_m = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise ctx.error(f"zip is missing {len(missing)} storage member(s) the pickle references: {shown_m}",
                        partial=res)
    return res


# How deep zips inside zip members are opened (a zip that holds itself would never end).
NESTED_ZIP_DEPTH = 3


def _scan_other_members(f: Source, ctx: _Ctx, members: list, main, storage_members: set[int],
                        outer: str = "", depth: int = 0) -> None:
    """Every other member whose bytes may hold a pickle is scanned too, whatever its name or case.

    Another loader (or another torch version) may pick a different member than the one read
    as the checkpoint: `DATA.PKL` next to `data.pkl`, a pickle named `.txt`, an `.npy` object
    array (as in `.npz` files). Only the storages the pickle references are raw bytes by design.
    A member that is itself a zip (a checkpoint stored inside the checkpoint, which whoever
    unpacks it may load) is opened and its members scanned the same way, `outer!inner` named.
    """
    for m in members:
        if m is main or id(m) in storage_members or m.name.endswith("/"):
            continue
        name = outer + m.name
        side = any(m.name == s or m.name.endswith("/" + s) for s in TORCH_SIDE_MEMBERS)
        if side and m.usize <= 64:
            try:
                head = zipread.read_member_head(f, m, 64)
            except zipread.ZipProblem:
                head = b""
            if head.strip().isalnum() or not head:
                continue
        in_data = "/data/" in m.name or m.name.startswith("data/")
        if in_data and not outer:
            ctx.anomalies.append(f"{name}: member not referenced by the pickle")
        try:
            head = zipread.read_member_head(f, m, 16)
        except zipread.ZipProblem as exc:
            ctx.anomalies.append(f"{outer}{exc}")
            continue
        if zipread.looks_like_zip(head):
            _scan_nested_zip(f, ctx, m, name, depth)
            continue
        named = m.name.lower().endswith((".pkl", ".pickle"))
        if not (named or head[:6] == b"\x93NUMPY" or could_be_pickle(head)):
            continue
        try:
            data = zipread.read_member(f, m, PICKLE_CAP, ctx.anomalies)
        except zipread.ZipProblem as exc:
            ctx.anomalies.append(f"{outer}{exc}")
            continue
        if data[:6] == b"\x93NUMPY":
            _judge_npy(ctx, data, name)
            continue
        runs = run_all(data)
        if not named and not pickle_like(runs):
            continue
        for run in runs:
            ctx.judge(run, f"{name} (another pickle member)", sniffed=not named)


def _scan_nested_zip(f: Source, ctx: _Ctx, m, name: str, depth: int) -> None:
    """A zip stored as a member: every member of it is scanned (`_scan_other_members`), to
    `NESTED_ZIP_DEPTH` levels. One that cannot be opened or goes deeper is a format-unsupported
    error, never silently passed over: its pickles were not judged."""
    if depth + 1 > NESTED_ZIP_DEPTH:
        ctx.add("format-unsupported", f"{name}: a zip nested more than {NESTED_ZIP_DEPTH} deep inside the "
                                    f"checkpoint; its members were not scanned")
        return
    try:
        data = zipread.read_member(f, m, PICKLE_CAP, ctx.anomalies)
        inner = containers.BytesFile(f"{ctx.path}!{name}", data)
        idx = zipread.read_index(inner)
    except zipread.ZipProblem as exc:
        ctx.add("format-unsupported", f"{name}: a member that starts like a zip cannot be opened as one ({exc}); "
                                    f"its contents were not scanned")
        return
    ctx.anomalies.append(f"{name}: a zip archive stored inside the checkpoint (torch.load never reads it; "
                         f"whoever unpacks it may); its {len(idx.members)} members were scanned")
    ctx.anomalies.extend(f"{name}!{a}" for a in idx.anomalies)
    _scan_other_members(inner, ctx, idx.members, None, set(), outer=name + "!", depth=depth + 1)


# --------------------------------------------------------------------------- pickle files (plain / legacy)


def _read_pickle_file(f: Source, ctx: _Ctx) -> ReadResult:
    # First pickle decides: the legacy magic number, or a plain pickle (judged on its first MiB).
    # A remote file is probed with a small window first (the magic number is a few bytes, and
    # the legacy reader grows the window only as far as its pickles need).
    window = f.pread(0, min(f.size, LEGACY_PROBE if getattr(f, "remote", False) else 1 << 20))
    first = run_pickle(window, 0)
    if not (first.clean and first.value == LEGACY_MAGIC) and len(window) < f.size:
        window = f.pread(0, min(f.size, 1 << 20))
        first = run_pickle(window, 0)
    while first.truncated and len(window) < f.size and len(window) < PICKLE_CAP:
        window = f.pread(0, min(f.size, len(window) * 8, PICKLE_CAP))
        first = run_pickle(window, 0)
    if first.clean and first.value == LEGACY_MAGIC:
        return _read_legacy(f, ctx, window, first)
    return _read_plain(f, ctx, first)


def _read_plain(f: Source, ctx: _Ctx, first: PickleRun) -> ReadResult:
    if not pickle_like([first]) and not first.truncated:
        raise ctx.error(f"not a recognised checkpoint format ({first.error} at byte {first.error_pos})",
                        cls=ReadError)
    if f.size > PLAIN_PICKLE_CAP:
        ctx.judge(first, "pickle")
        raise ctx.error(f"plain pickle of {f.size} bytes is over the {PLAIN_PICKLE_CAP}-byte limit for symbolic "
                        f"reading; re-save the weights as safetensors")
    data = f.pread(0, f.size)
    nested: list[PickleRun] = []
    arrays: list[PickleRun] = []
    reducers = dict(DEFAULT_REDUCERS)
    reducers[("torch.storage", "_load_from_bytes")] = lambda args: _storage_from_bytes(args, nested)
    runs = run_all(data, max_bytes=PLAIN_PICKLE_CAP, reducers=reducers, build_hook=joblib_hook(arrays))
    ctx.judge(runs[0], "pickle")
    for i, inner in enumerate(nested):
        ctx.judge(inner, f"pickle embedded by torch.storage._load_from_bytes (#{i + 1})")
    for inner in arrays:
        ctx.judge(inner, f"object array pickled inside the joblib stream (byte {inner.start})")
    for extra in runs[1:]:
        ctx.judge(extra, f"pickle at byte {extra.start} (after STOP)", sniffed=True)
        if extra.clean:
            ctx.anomalies.append(f"another pickle follows STOP at byte {extra.start}")
    if runs[0].truncated:
        raise ctx.error(f"truncated pickle: the stream ends at byte {f.size} before STOP")
    root = runs[0].value if runs[0].clean else runs[0].partial

    def no_storage(st: StorageRec) -> StorageRef:
        return StorageRef(key=st.key, dtype=st.dtype, numel=st.numel, device=st.location)

    def range_for(g, rec):
        raise ReadError(f"tensor {rec.name!r}: a plain pickle holds no tensor storages", path=ctx.path)

    return _finish(ctx, f, "pickle", root, no_storage, None, _make_byte_source(ctx.path, range_for))


def _storage_from_bytes(args: tuple, nested: list[PickleRun]) -> Any:
    """`torch.storage._load_from_bytes(b)` (how plain pickle saves a tensor's storage): the bytes are
    a legacy torch file holding one storage; read them symbolically for its dtype and size, and keep
    every embedded pickle run so that its globals are judged too."""
    if len(args) != 1 or not isinstance(args[0], (bytes, bytearray)):
        return NotImplemented
    found: list[StorageRec] = []

    def persistent_load(pid: Any) -> Any:
        if isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage":
            tname = pid[1].name if isinstance(pid[1], Global) else ""
            rec = StorageRec(dtype=STORAGE_DTYPES.get(tname, "unknown"), key=str(pid[2]), location=str(pid[3]),
                             numel=pid[4] if isinstance(pid[4], int) else None, type_name=tname)
            found.append(rec)
            return rec
        return PersistentRef(pid)

    runs = run_all(bytes(args[0]), persistent_load=persistent_load, max_pickles=5)
    nested.extend(runs)
    if len(runs) >= 4 and runs[3].clean and isinstance(runs[3].value, StorageRec):
        return runs[3].value
    return NotImplemented


def _read_legacy(f: Source, ctx: _Ctx, window: bytes, first: PickleRun) -> ReadResult:
    """Legacy (pre-zip) torch: magic, protocol version, sys_info, the object, storage keys, raw storages."""
    storages: dict[str, StorageRec] = {}
    bad_pids: list[Any] = []

    def persistent_load(pid: Any) -> Any:
        if isinstance(pid, tuple) and len(pid) >= 5 and pid[0] in ("storage", b"storage"):
            st_type, root_key, location, numel = pid[1:5]
            view = pid[5] if len(pid) > 5 else None
            tname = st_type.name if isinstance(st_type, Global) else ""
            key = str(root_key)
            rec = StorageRec(dtype=STORAGE_DTYPES.get(tname, "unknown"), key=key, location=str(location),
                             numel=numel if isinstance(numel, int) else None, type_name=tname)
            storages.setdefault(key, rec)
            if isinstance(view, tuple) and len(view) == 3 and isinstance(view[1], int):
                return StorageRec(dtype=rec.dtype, key=key, location=rec.location, numel=rec.numel,
                                  type_name=tname, view_offset=view[1],
                                  view_numel=view[2] if isinstance(view[2], int) else None)
            return rec
        bad_pids.append(pid)
        return PersistentRef(pid)

    names = ["magic number", "protocol version", "sys_info", "the saved object", "storage keys"]
    grow = 2 if getattr(f, "remote", False) else 8   # remote: transfer little more than the pickles
    runs: list[PickleRun] = [first]
    ctx.judge(first, "pickle 1 (magic number)")
    pos = first.end
    while len(runs) < 5:
        run = run_pickle(window, pos, persistent_load=persistent_load)
        while run.truncated and len(window) < f.size and len(window) < PICKLE_CAP:
            storages.clear()
            window = f.pread(0, min(f.size, len(window) * grow, PICKLE_CAP))
            run = run_pickle(window, pos, persistent_load=persistent_load)
        i = len(runs)
        runs.append(run)
        ctx.judge(run, f"pickle {i + 1} ({names[i]})")
        if not run.clean:
            break
        pos = run.end
    for pid in bad_pids[:3]:
        ctx.add("pickle-malformed", f"persistent id {_short(pid)} is not a storage reference", severity="warning")
    if len(runs) < 5 or not runs[-1].clean:
        if runs[-1].truncated:
            raise ctx.error(f"truncated legacy torch file: {names[len(runs) - 1]} pickle ends early")
        root = runs[3].partial if len(runs) > 3 else None
        keys: list = []
    else:
        if runs[1].value != LEGACY_PROTOCOL:
            ctx.anomalies.append(f"legacy protocol version {runs[1].value!r} (torch writes {LEGACY_PROTOCOL})")
        root = runs[3].value
        keys = runs[4].value if isinstance(runs[4].value, list) else []
        if not isinstance(runs[4].value, list):
            ctx.add("pickle-malformed", "storage-key pickle is not a list", severity="warning")
    # walk the raw storages: 8-byte element count, then the bytes
    offsets: dict[str, tuple[int, int]] = {}        # key -> (absolute offset, bytes)
    missing: list[str] = []
    spos = pos if len(runs) == 5 and runs[-1].clean else f.size
    prefetch = getattr(f, "prefetch", None)
    if prefetch is not None and keys:   # a remote file: every 8-byte header at once, where the pickle puts them
        at, planned = spos, []
        for key in keys:
            rec = storages.get(str(key))
            isz = _itemsize(rec.dtype) if rec else None
            if rec is None or rec.numel is None or isz is None or rec.numel < 0 or at + 8 > f.size:
                break
            planned.append((at, 8))
            at += 8 + rec.numel * isz
        prefetch(planned)
    for key in keys:
        key = str(key)
        rec = storages.get(key)
        hdr = f.pread(spos, 8)
        if len(hdr) < 8:
            missing.append(key)
            continue
        numel = int.from_bytes(hdr, "little", signed=True)
        isz = _itemsize(rec.dtype) if rec else 1
        nbytes = numel * (isz or 1)
        if numel < 0 or spos + 8 + nbytes > f.size:
            ctx.add("tensor-implausible", f"storage {key!r} declares {numel} elements ({nbytes} bytes) but only "
                                          f"{f.size - spos - 8} bytes remain in the file",
                    expected=f.size - spos - 8, actual=nbytes)
            missing.append(key)
            spos = f.size
            continue
        if rec is not None and rec.numel is not None and rec.numel != numel:
            ctx.anomalies.append(f"storage {key!r}: pickle says {rec.numel} elements, data header says {numel}")
        offsets[key] = (spos + 8, nbytes)
        spos += 8 + nbytes
    if spos < f.size and keys:
        trailing = f.pread(spos, min(f.size - spos, PICKLE_CAP))
        ctx.anomalies.append(f"{f.size - spos} byte(s) after the last storage")
        if could_be_pickle(trailing[:2]):
            for run in run_all(trailing):
                ctx.judge(run, f"data after the last storage (byte {spos + run.start})", sniffed=True)
    for key in storages:
        if key not in offsets and key not in missing and keys:
            missing.append(key)

    def capacity(st: StorageRec) -> int | None:
        got = offsets.get(st.key)
        return got[1] if got else None

    _check_tensor_sizes(ctx, root, capacity, "legacy")

    def storage_ref(st: StorageRec) -> StorageRef:
        got = offsets.get(st.key)
        return StorageRef(key=st.key, dtype=st.dtype, numel=st.numel, device=st.location,
                          offset=got[0] if got else None)

    def scalar_reader(t: TensorRef) -> Any:
        st = t.storage
        got = offsets.get(st.key) if isinstance(st, StorageRec) else None
        isz = _itemsize(st.dtype) if isinstance(st, StorageRec) else None
        if got is None or isz is None or isz > SCALAR_READ_MAX or (t.storage_offset + 1) * isz > got[1]:
            return None
        return decode_scalar(f.pread(got[0] + t.storage_offset * isz, isz), st.dtype)

    def range_for(g: Source, rec: TensorRecord):
        if rec.storage is None or rec.storage.offset is None:
            raise ReadError(f"tensor {rec.name!r}: storage data missing", path=ctx.path)
        return _pread_range(g, rec.storage.offset, f"tensor {rec.name!r}: file ends inside its storage", ctx.path)

    res = _finish(ctx, f, "torch-legacy", root, storage_ref, scalar_reader, _make_byte_source(ctx.path, range_for))
    if missing:
        raise ctx.error(f"legacy torch file is missing data for {len(missing)} storage(s): "
                        + ", ".join(missing[:3]), partial=res)
    return res


def _pread_range(g: Source, base: int, short_message: str, path: str):
    """A `read_range(start, length)` streaming bytes at absolute offset `base` + start, in 1 MiB reads."""

    def read_range(start: int, length: int) -> Iterator[bytes]:
        p, end = base + start, base + start + length
        while p < end:
            b = g.pread(p, min(g.chunk, end - p))
            if not b:
                raise ReadError(short_message, path=path)
            p += len(b)
            yield b
    return read_range


# --------------------------------------------------------------------------- other containers


def _judge_npy(ctx: _Ctx, data: bytes, where: str) -> bool:
    """An `.npy` array (a file or an `.npz` member): object arrays carry a pickle, judged here.
    Returns whether the array holds (or may hold) a pickle."""
    h = npy.parse_header(data)
    if h.error:
        ctx.anomalies.append(f"{where}: {h.error}")
        return False
    obj = h.has_object
    if obj is False:
        return False
    body = data[h.data_offset:]
    runs = run_all(body)
    if obj is None and not pickle_like(runs):
        ctx.anomalies.append(f"{where}: .npy dtype {h.descr!r} not understood")
        return False
    ctx.add("npy-object-array", f"{where}: numpy array of Python objects (dtype {h.descr!r}): "
                                f"numpy.load(allow_pickle=True) unpickles its data", actual=str(h.descr))
    for run in runs:
        ctx.judge(run, f"{where} (object array data)")
    return True


def _read_npy(f, ctx: _Ctx) -> ReadResult:
    if f.size > PLAIN_PICKLE_CAP:
        raise ctx.error(f".npy file of {f.size} bytes is over the {PLAIN_PICKLE_CAP}-byte limit for scanning")
    data = f.pread(0, f.size)
    if not _judge_npy(ctx, data, "npy"):
        h = npy.parse_header(data)
        raise ctx.error(f"a numpy array file (dtype {h.descr!r}), not a checkpoint: it holds no pickle"
                        if not h.error else f"corrupt .npy file ({h.error})", cls=ReadError)
    return _finish(ctx, f, "npy", None, lambda st: StorageRef(key=st.key, dtype=st.dtype), None,
                   _make_byte_source(ctx.path, _no_tensor_bytes(ctx.path)))


def _no_tensor_bytes(path: str):
    def range_for(g, rec):
        raise ReadError(f"tensor {rec.name!r}: this file holds no tensor storages", path=path)
    return range_for


def _read_compressed(f, ctx: _Ctx, kind: str) -> ReadResult:
    """A compressed stream (joblib's `compress=`): inflate with a cap, then read the pickle inside."""
    head = f.pread(0, 512)
    try:
        if f.size > PLAIN_PICKLE_CAP:
            raise containers.ContainerProblem(f"{f.size} bytes compressed: over the scanning limit")
        data = containers.decompress(f.pread(0, f.size), kind, PLAIN_PICKLE_CAP)
    except containers.ContainerProblem as exc:
        if could_be_pickle(head):      # magic bytes that a pickle may start with too
            return _read_pickle_file(f, ctx)
        ctx.add("format-unsupported", f"{exc}; loading it with joblib runs the pickle inside")
        raise ctx.error(f"{kind}-compressed file that cannot be scanned: {exc}", cls=FormatError) from None
    inner = containers.BytesFile(ctx.path, data)
    if data[:6] == npy.MAGIC:
        res = _read_npy(inner, ctx)
    elif could_be_pickle(data[:2]):
        res = _read_pickle_file(inner, ctx)
    else:
        raise ctx.error(f"{kind}-compressed data that is not a pickle", cls=ReadError)
    res.format = f"{res.format}+{kind}"
    res.size = f.size
    res.unwrap.insert(0, f"{kind}-compressed: {len(data)} bytes inflated")
    return res


# legacy tar members torch (< 0.4) wrote, in the order legacy_load reads them
_TAR_MEMBERS = ("sys_info", "storages", "tensors", "pickle")


def _read_tar(f, ctx: _Ctx) -> ReadResult:
    """A tar-format torch checkpoint: every pickle in it is judged; its tensors are not described.

    torch.load refuses these with weights_only=True and unpickles them otherwise, so the
    file is reported as unsupported, and its payloads as unsafe globals.
    """
    import tarfile

    try:
        with tarfile.open(fileobj=SourceReader(f), mode="r:") as tar:
            found = {}
            for member in tar.getmembers():
                if member.isfile() and member.name in _TAR_MEMBERS:
                    if member.size > PICKLE_CAP:
                        ctx.add("format-unsupported", f"tar member {member.name!r} of {member.size} bytes is "
                                                      f"over the scanning limit")
                        continue
                    fh = tar.extractfile(member)
                    found[member.name] = fh.read(PICKLE_CAP) if fh else b""
                elif member.isfile():
                    ctx.anomalies.append(f"tar member {member.name!r} is not one torch writes")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ctx.error(f"corrupt tar archive ({exc})") from None
    if not found:
        raise ctx.error("a tar archive without torch's members (sys_info, pickle, storages, tensors): "
                        "not a checkpoint", cls=ReadError)
    ctx.add("format-unsupported", "tar-format torch checkpoint (torch < 0.4): torch.load refuses it with "
                                  "weights_only=True and unpickles it otherwise; its pickles were scanned, its "
                                  "tensors are not described; re-save it as safetensors")
    for name in ("sys_info", "pickle"):
        if name in found:
            for run in run_all(found[name]):
                ctx.judge(run, f"tar member {name!r}")
    if "storages" in found:
        _walk_tar_records(ctx, found["storages"], "storages")
    if "tensors" in found:
        _walk_tar_records(ctx, found["tensors"], "tensors")
    return _finish(ctx, f, "torch-tar", None, lambda st: StorageRef(key=st.key, dtype=st.dtype), None,
                   _make_byte_source(ctx.path, _no_tensor_bytes(ctx.path)))


def _walk_tar_records(ctx: _Ctx, data: bytes, which: str) -> None:
    """`storages`/`tensors` members: a count pickle, then per record a pickle and raw bytes, sized as
    torch's legacy_load reads them; a size that cannot be worked out stops the walk with a finding."""
    where = f"tar member {which!r}"
    first = run_pickle(data, 0)
    ctx.judge(first, f"{where} (count)")
    if not first.clean or not isinstance(first.value, int) or first.value < 0:
        return
    pos = first.end
    for i in range(first.value):
        run = run_pickle(data, pos)
        ctx.judge(run, f"{where} (record {i})")
        if not run.clean:
            return
        pos = run.end
        rec = run.value
        if which == "storages":
            st = rec[2] if isinstance(rec, tuple) and len(rec) == 3 else None
            isz = _itemsize(STORAGE_DTYPES.get(st.name, "")) if isinstance(st, Global) else None
            if isz is None or pos + 8 > len(data):
                ctx.add("pickle-malformed", f"{where}: record {i} does not name a known storage type; the "
                                            f"bytes after it cannot be sized", actual=_short(rec))
                return
            numel = int.from_bytes(data[pos:pos + 8], "little", signed=True)
            if numel < 0:
                ctx.add("tensor-implausible", f"{where}: storage {i} declares {numel} elements", actual=numel)
                return
            pos += 8 + numel * isz
        else:
            if pos + 8 > len(data):
                return
            ndim = int.from_bytes(data[pos:pos + 4], "little", signed=True)
            if ndim < 0:
                ctx.add("tensor-implausible", f"{where}: tensor {i} declares {ndim} dimensions", actual=ndim)
                return
            pos += 8 + 16 * ndim + 8
        if pos > len(data):
            ctx.add("tensor-implausible", f"{where}: record {i} runs past the member's end")
            return
    if which == "storages" and pos < len(data):
        for run in run_all(data[pos:]):
            ctx.judge(run, f"{where} (storage views)")


# --------------------------------------------------------------------------- safetensors


def _read_safetensors(f: Source, ctx: _Ctx) -> ReadResult:
    try:
        tensors, meta, findings = read_safetensors(f, ctx.path)
    except FormatError as exc:
        exc.partial = None  # type: ignore[attr-defined]
        raise
    ctx.findings.extend(findings)
    names, evidence = strip_prefixes(list(tensors))
    evidence.insert(0, "safetensors: tensors listed in the header")
    renamed: dict[str, TensorRecord] = {}
    originals: dict[str, str] = {}
    for new, (orig, rec) in zip(names, tensors.items()):
        renamed[new] = TensorRecord(name=new, dtype=rec.dtype, shape=rec.shape, stride=rec.stride,
                                    storage=rec.storage, storage_offset=0)
        originals[new] = orig
    res = ReadResult(path=ctx.path, format="safetensors", size=f.size, tensors=renamed, unwrap=evidence,
                     metadata=meta, findings=ctx.findings, globals=[], root=None, original_names=originals)

    def range_for(g: Source, rec: TensorRecord):
        base = rec.storage.offset if rec.storage else None
        if base is None:
            raise ReadError(f"tensor {rec.name!r}: no data offset", path=ctx.path)
        return _pread_range(g, base, f"tensor {rec.name!r}: file ends inside its data", ctx.path)

    res._byte_source = _make_byte_source(ctx.path, range_for)(res)
    return res
