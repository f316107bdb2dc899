"""The inspector: read a file inertly, rank every family, count, hash, describe.

`inspect_path` never raises for a bad file (issue #2, "Bad input"): it sets
`Inspection.error` and adds an `unreadable` finding. Ranking rules (documented
in docs/inspect.md): every detector whose signature is present yields a
candidate; validated candidates rank above broken ones, then by score (half
keys, half elements matched with the right shape, over the union of file and
expected). A tie
at the top is `ambiguous` unless the checkpoint's metadata clearly names one of
the tied families.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import zlib
from typing import Any, Iterable, Mapping, Sequence

from ckreg.arch import FAMILIES, FAMILY_FIELDS, NOT_IN_WEIGHTS, WEIGHT_FIELDS, ArchSpec
from ckreg.families import registry
from ckreg.errors import AmbiguousFamilyError, CkregError, ReadError, SpecError
from ckreg.findings import Finding, Severity
from ckreg.inspect.describe import describe
from ckreg.inspect.detectors import Detected, detect_all
from ckreg.inspect.layouts import is_buffer_name
from ckreg.inspect.model import Inspection, ParamCounts
from ckreg.inspect.structure import apply_config, config_findings
from ckreg.inspect.names import collapse_names
from ckreg.readers.fileio import is_url, sha256_of, size_of
from ckreg.readers.model import ReadResult, TensorRecord

NOT_RECORDED = "not recorded in the weights"

# hyper_parameters keys (last path component, lower case) that name an ArchSpec field
_ALIASES: dict[str, tuple[str, ...]] = {
    "input_size": ("input_size", "input_dim", "in_channels", "input_channels", "n_features", "num_features",
                   "n_channels", "num_channels"),
    "hidden_size": ("hidden_size", "hidden_dim", "n_hidden", "hidden_units", "rnn_hidden", "rnn_hidden_size"),
    "num_layers": ("num_layers", "n_layers", "rnn_layers", "num_rnn_layers"),
    "num_classes": ("num_classes", "n_classes", "classes", "output_size", "output_dim", "num_labels", "n_outputs"),
    "cell": ("cell", "cell_type", "rnn_type", "rnn_cell"),
    "bidirectional": ("bidirectional",),
    "proj_size": ("proj_size", "projection_size", "proj_dim"),
    "cnn_filters": ("cnn_filters", "filters", "num_filters", "n_filters", "conv_filters"),
    "conv_dim": ("conv_dim",),
    "tower_kernels": ("tower_kernels", "kernel_sizes"),
    "depth": ("depth",),
    "widen_factor": ("widen_factor", "widen", "width_factor"),
}
# what the weights cannot show (spec, "What weights cannot tell")
_UNRECORDED_ALIASES: dict[str, tuple[str, ...]] = {
    "dropout": ("dropout", "dropout_rate", "drop_rate", "p_dropout", "dropout_p"),
    "pool": ("pool", "pool_size", "pooling", "pool_kernel"),
    "activation": ("activation", "act", "activation_fn", "nonlinearity"),
    "num_heads": ("num_heads", "nhead", "n_heads", "heads"),
}
_FAMILY_KEYS = ("model", "model_name", "model_type", "arch", "architecture", "family", "model_class", "name")
_TOKEN = re.compile(r"[^A-Za-z0-9_]+")


# -- counting and hashing ----------------------------------------------------

def _is_float(dtype: str) -> bool:
    return dtype.startswith(("float", "bfloat", "complex"))


def count_params(tensors: Mapping[str, TensorRecord]) -> ParamCounts:
    """Parameters vs buffers, tied tensors once (`TensorRecord.tie_key`), bytes and dtypes.

    A tensor is a buffer when the file records it as one (TorchScript's
    `__buffers__`), else when its name is a BatchNorm statistic or counter
    (`running_mean`, `running_var`, `num_batches_tracked`) or its dtype is not
    floating point (integer tensors cannot be trainable parameters).
    """
    seen: set = set()
    trainable = buffers = n_tensors = n_bytes = 0   # summed here, not on the model (pydantic setattr is slow)
    dtypes: dict[str, int] = {}
    for rec in tensors.values():
        key = rec.tie_key
        if key is not None:
            if key in seen:
                continue
            seen.add(key)
        n = rec.numel
        if rec.is_parameter is not None and _is_float(rec.dtype):  # recorded by the file (TorchScript)
            buffer = not rec.is_parameter
        else:
            buffer = is_buffer_name(rec.name) or not _is_float(rec.dtype)
        if buffer:
            buffers += n
        else:
            trainable += n
        n_tensors += 1
        n_bytes += rec.nbytes
        dtypes[rec.dtype] = dtypes.get(rec.dtype, 0) + n
    return ParamCounts(trainable=trainable, buffers=buffers, tensors=n_tensors, bytes=n_bytes, dtypes=dtypes)


def layout_sha256(tensors: Mapping[str, TensorRecord]) -> str:
    """sha256 over the sorted (name, dtype, shape) list: free, no tensor bytes read."""
    rows = sorted((name, rec.dtype, list(rec.shape)) for name, rec in tensors.items())
    return hashlib.sha256(json.dumps(rows, separators=(",", ":")).encode()).hexdigest()


def weights_sha256(result: ReadResult) -> str:
    """sha256 over names, dtypes, shapes and tensor bytes, in name order, streamed.

    Independent of the container (Lightning ckpt, plain state_dict,
    safetensors), of metadata and of storage sharing, so identical weights
    agree however they were saved (issue #2).
    """
    h = hashlib.sha256()
    for name in sorted(result.tensors):
        rec = result.tensors[name]
        h.update(json.dumps([name, rec.dtype, list(rec.shape)], separators=(",", ":")).encode() + b"\n")
        n = 0
        for chunk in result.iter_tensor_bytes(rec):
            h.update(chunk)
            n += len(chunk)
        if n != rec.nbytes:
            raise ReadError(f"tensor {name}: read {n} bytes, expected {rec.nbytes}", path=result.path)
    return h.hexdigest()


# -- metadata -----------------------------------------------------------------

def _flatten(obj: Any, prefix: str = "", depth: int = 0) -> Iterable[tuple[str, str, Any]]:
    """(dotted path, last key lower-cased, value) for every leaf of nested dicts."""
    if depth > 6:
        return
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            path = f"{prefix}.{k}" if prefix else str(k)
            if isinstance(v, Mapping):
                yield from _flatten(v, path, depth + 1)
            else:
                yield path, str(k).lower(), v


def hyper_parameters(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """The hyperparameters a file records: Lightning `hyper_parameters` (or `hparams`), or
    safetensors `__metadata__` values that parse as JSON objects or scalars."""
    if not metadata:
        return {}
    for key in ("hyper_parameters", "hparams"):
        hp = metadata.get(key)
        if isinstance(hp, Mapping) and hp:
            return dict(hp)
    for key in ("safetensors_metadata", "__metadata__", "safetensors"):
        st = metadata.get(key)
        if isinstance(st, Mapping) and st:
            out: dict[str, Any] = {}
            for k, v in st.items():
                if isinstance(v, str):
                    try:
                        v = json.loads(v)
                    except ValueError:
                        pass
                out[k] = v
            return out
    return {}


def _as_int(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, str) and v.strip().isdigit():
        return int(v.strip())
    return None


def _meta_value(field: str, value: Any) -> Any:
    """Normalise a metadata value for comparison with the weights; None = not comparable."""
    if field == "bidirectional":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        return None
    if field == "cell":
        if isinstance(value, str):
            v = value.split(".")[-1].upper()
            return v if v in ("GRU", "LSTM", "RNN") else None
        return None
    if field == "tower_kernels":
        if isinstance(value, (list, tuple)) and value:
            out = []
            for k in value:
                if _as_int(k) is not None:
                    out.append([_as_int(k)])
                elif isinstance(k, (list, tuple)) and all(_as_int(x) is not None for x in k):
                    out.append([_as_int(x) for x in k])
                else:
                    return None
            return out
        return None
    if field == "num_classes" and isinstance(value, (list, tuple)) and value and all(isinstance(x, str) for x in value):
        return len(value)  # a list of class names
    return _as_int(value)


def _same(field: str, weights: Any, meta: Any) -> bool:
    if field == "tower_kernels":
        if len(weights) != len(meta):
            return False
        for w, m in zip(weights, meta):
            if len(m) == 1 and all(v == m[0] for v in w):
                continue
            if list(w) != list(m):
                return False
        return True
    return weights == meta


def metadata_findings(insp: Inspection, hp: Mapping[str, Any]) -> list[Finding]:
    """`metadata-contradicts-weights` for each stored value the tensors disagree with."""
    findings = []
    lookup = {alias: field for field, aliases in _ALIASES.items() for alias in aliases}
    reg = registry()
    for name in insp.hyperparameters:   # a declared family's own names are their own aliases
        lookup.setdefault(name.lower(), name)
    shown = {insp.family} if insp.family in reg else set(insp.ambiguous_between)
    shown_text = insp.family if insp.family in reg else " or ".join(insp.ambiguous_between)
    for path, key, value in _flatten(hp):
        field = lookup.get(key)
        if field and field in insp.hyperparameters:
            meta = _meta_value(field, value)
            weights = insp.hyperparameters[field]
            if meta is not None and not _same(field, weights, meta):
                findings.append(Finding.make(
                    "metadata-contradicts-weights",
                    f"hyper_parameters {path}={value!r} but the weights show {field}={weights!r}",
                    path=insp.path, expected=weights, actual=value))
        elif key in _FAMILY_KEYS and shown and isinstance(value, str):
            named = [f for f in reg.names() if f.lower() == value.split(".")[-1].lower()]
            if named and named[0] not in shown:
                findings.append(Finding.make(
                    "metadata-contradicts-weights",
                    f"hyper_parameters {path}={value!r} but the weights are {shown_text}",
                    path=insp.path, expected=shown_text, actual=value))
    return findings


def _unrecorded(keys: Iterable[str], hp: Mapping[str, Any]) -> dict[str, Any]:
    flat = [(key, value) for _, key, value in _flatten(hp)]
    out: dict[str, Any] = {}
    for name in keys:
        aliases = _UNRECORDED_ALIASES.get(name, (name,))
        hit = next((v for k, v in flat if k in aliases), None)
        out[name] = hit if hit is not None else NOT_RECORDED
    return out


def _names_family(hp: Mapping[str, Any], hparams_name: Any, tied: Sequence[str]) -> tuple[str, str] | None:
    """The one tied family the metadata names as a whole token, with where it was found."""
    sources: list[tuple[str, str]] = [(p, v) for p, _, v in _flatten(hp) if isinstance(v, str)]
    if isinstance(hparams_name, str):
        sources.append(("hparams_name", hparams_name))
    hits: dict[str, str] = {}
    lowered = {f.lower(): f for f in tied}
    for where, text in sources:
        for token in _TOKEN.split(text):
            fam = lowered.get(token.lower())
            if fam:
                hits.setdefault(fam, where)
    if len(hits) == 1:
        fam, where = next(iter(hits.items()))
        return fam, where
    return None


# -- ranking ------------------------------------------------------------------

def rank(candidates: list[Detected]) -> list[Detected]:
    """Validated before broken, then by score; ties keep registry order (stable sort)."""
    order = {f: i for i, f in enumerate(registry().names())}
    ordered = sorted(candidates, key=lambda d: order.get(d.family, len(order)))
    return sorted(ordered, key=lambda d: (d.valid, d.score), reverse=True)


def inspect_tensors(tensors: Mapping[str, TensorRecord], *, metadata: Mapping[str, Any] | None = None,
                    path: str = "<memory>", evidence: Sequence[str] = (), ordered: bool = True,
                    config: Mapping[str, Any] | None = None) -> Inspection:
    """Identify, count, describe and cross-check one state_dict (no file access).

    `ordered`: the keys come in module order (pickled state_dicts); False for
    safetensors, whose keys are sorted. `config`: a Hugging Face config.json.
    """
    metadata = dict(metadata or {})
    shapes = {name: tuple(rec.shape) for name, rec in tensors.items()}
    insp = Inspection(path=path, metadata=metadata)
    insp.layout = {name: [rec.dtype, list(rec.shape)] for name, rec in tensors.items()}
    insp.layout_sha256 = layout_sha256(tensors)
    insp.params = count_params(tensors)
    insp.description, summary = describe(shapes, ordered=ordered, config=config)
    analysis = summary["analysis"]
    insp.structure = analysis.structure
    insp.evidence = list(evidence)
    config_evidence = apply_config(insp.structure, config)
    if config_evidence:  # the head the config names replaces "no classifier head" in the prose
        insp.description = [config_evidence[0] if line.startswith("no classifier head") else line
                            for line in insp.description]
    hp = hyper_parameters(metadata)

    ranked = rank(detect_all(shapes))
    insp.candidates = [d.candidate() for d in ranked]
    top = ranked[0] if ranked else None
    tied = [d for d in ranked if top is not None and d.valid == top.valid and abs(d.score - top.score) < 1e-9]
    findings: list[Finding] = []
    unrecorded_keys: list[str] = []

    if top is None:
        insp.family = "unknown"
        insp.confidence = 0.0
        insp.leftovers = collapse_names(shapes)
        insp.evidence.append("no family signature present; see the description and structure")
        insp.hyperparameters = dict(analysis.hyperparameters)
        findings.append(Finding.make("family-unknown", f"no known family matches {len(shapes)} tensors; "
                                     "a generic description is given", path=path))
        unrecorded_keys = ["dropout", "activation"]
        if summary.get("attention"):
            unrecorded_keys.append("num_heads")
    else:
        chosen = top
        if len(tied) > 1:
            named = _names_family(hp, metadata.get("hparams_name"), [d.family for d in tied])
            if named is not None:
                chosen = next(d for d in tied if d.family == named[0])
                others = ", ".join(d.family for d in tied if d is not chosen)
                insp.evidence.append(f"weights tie {chosen.family} with {others}; "
                                     f"metadata {named[1]} names {chosen.family}")
                insp.family = chosen.family
                insp.confidence = round(0.9 * chosen.score * (1.0 if chosen.valid else 0.5), 4)
            else:
                insp.family = "ambiguous"
                insp.ambiguous_between = [d.family for d in tied]
                insp.confidence = round(chosen.score / len(tied) * (1.0 if chosen.valid else 0.5), 4)
                findings.append(Finding.make(
                    "family-ambiguous",
                    f"weights fit {' and '.join(insp.ambiguous_between)} equally (score {chosen.score:.2f}); "
                    "record the family in metadata or the manifest", path=path, actual=insp.ambiguous_between))
        else:
            insp.family = chosen.family
            rivals = [d.score for d in ranked[1:] if d.valid == chosen.valid]
            margin = 1.0 - 0.5 * (max(rivals) / chosen.score) if rivals and chosen.score else 1.0
            insp.confidence = round(chosen.score * margin * (1.0 if chosen.valid else 0.5), 4)
        hyper = dict(chosen.hyper)
        if insp.family == "ambiguous":  # keep only what every tied family agrees on
            hyper = {k: v for k, v in hyper.items() if all(d.hyper.get(k) == v for d in tied)}
        if chosen.family in FAMILIES:
            insp.hyperparameters = {k: hyper[k] for k in WEIGHT_FIELDS if k in hyper}
        else:  # a declared family: its own hyperparameters, in its declaration's order
            insp.hyperparameters = dict(hyper)
        insp.evidence.extend(chosen.evidence)
        insp.leftovers = collapse_names(chosen.extra)
        if not chosen.valid:
            findings.append(Finding.make(
                "family-broken",
                f"key signature of {chosen.family} but {len(chosen.broken)} problem"
                f"{'s' if len(chosen.broken) > 1 else ''}: {chosen.broken[0]}"
                + (f" (+{len(chosen.broken) - 1} more)" if len(chosen.broken) > 1 else ""),
                path=path, expected=chosen.family, actual=chosen.broken[:12]))
        for d in (tied if insp.family == "ambiguous" else [chosen]):
            rec = registry().find(d.family)
            for k in (rec.not_in_weights if rec is not None else {}):
                if k not in unrecorded_keys:
                    unrecorded_keys.append(k)
        if insp.family in ("MSCSGRU_ScaleAware", "MSCSGRU_ScaleHard", "ambiguous") and "activation" not in unrecorded_keys:
            unrecorded_keys.append("activation")
    insp.evidence.extend(config_evidence or analysis.evidence)
    insp.not_recorded = _unrecorded(unrecorded_keys, hp)
    if config and "num_heads" in insp.not_recorded:
        t = insp.structure.get("transformer") or {}
        if t.get("num_heads") not in (None, NOT_RECORDED):
            insp.not_recorded["num_heads"] = t["num_heads"]
    for message, weights, value in config_findings(insp.structure, config, insp.params.dtypes):
        findings.append(Finding.make("metadata-contradicts-weights", message, path=path, expected=weights,
                                     actual=value))
    findings.extend(metadata_findings(insp, hp))
    insp.findings = findings
    return insp


# -- files --------------------------------------------------------------------

def _unreadable(insp: Inspection, message: str) -> Inspection:
    insp.error = message
    insp.findings = list(insp.findings) + [Finding.make("unreadable", message, path=insp.path)]
    return insp


# Formats whose keys are not in module order (safetensors sorts its header).
UNORDERED_FORMATS = frozenset({"safetensors"})

# A remote file read whole (a plain pickle, an ONNX model) says so in its evidence above this size.
WHOLE_NOTE_BYTES = 64 * 1024

# Small files get their file sha256 for free-ish (one sequential read); above this,
# only `--hash` reads the whole file.
FILE_HASH_BYTES = 64 * 1024 * 1024


def inspect_result(result: ReadResult, hash_weights: bool = False) -> Inspection:
    """Inspect what a reader returned (carries the reader's findings and unwrap evidence).

    `weights_sha256` (tensor bytes) is computed only with `hash_weights`.
    `sha256` (file bytes) is computed for files up to `FILE_HASH_BYTES` and,
    with `hash_weights`, for any size: plain inspection of a large file must
    not grow with tensor bytes (issue #2, "Speed": < 1 MB read for 1 GB).
    """
    insp = inspect_tensors(result.tensors, metadata=result.metadata, path=result.path, evidence=result.unwrap,
                           ordered=result.format not in UNORDERED_FORMATS,
                           config=result.metadata.get("config") if isinstance(result.metadata.get("config"), dict)
                           else None)
    insp.format = result.format
    insp.size = result.size
    insp.findings = list(result.findings) + insp.findings
    remote = is_url(result.path)   # a remote file's bytes are hashed only on request (they are transferred)
    if not hash_weights and not remote and result.size is not None and result.size <= FILE_HASH_BYTES:
        try:
            insp.sha256 = result.sha256
        except OSError:
            pass
    if hash_weights:  # both hashes read every byte: only on request (issue #2, "Speed")
        try:
            insp.sha256 = result.sha256
            insp.weights_sha256 = weights_sha256(result)
        except (CkregError, OSError, NotImplementedError, ValueError) as exc:
            msg = exc.render() if isinstance(exc, CkregError) else f"{result.path}: {exc}"
            insp.findings.append(Finding.make("unreadable", f"tensor bytes cannot be read: {msg}", path=result.path))
    _add_scales(insp, result)
    insp.bytes_read = result.bytes_read
    return insp


def _add_scales(insp: Inspection, result: ReadResult) -> None:
    """Scale-aware families: per-scale weight norms (reads only the W_{z,r,h}{3,5,7} bytes)."""
    from ckreg.inspect import scales

    if not scales.applies(insp.family, insp.ambiguous_between):
        return
    try:
        insp.scales = scales.scale_importance(result)
    except (CkregError, OSError, NotImplementedError, ValueError) as exc:
        msg = exc.render() if isinstance(exc, CkregError) else f"{result.path}: {exc}"
        insp.evidence.append(f"scale norms not computed: {msg}")


def inspect_path(path: str | os.PathLike, hash_weights: bool = False,
                 tiers: Sequence[str] | None = None, *, kind: str | None = None) -> Inspection:
    """Inspect one file; never raises for a bad file (sets `.error` and an `unreadable` finding).

    When the reader gives up part-way but learned something (an unsafe global
    in a truncated file, a partial state_dict), those findings and tensors are
    kept, so nothing it saw is lost. `kind`: what `ckreg.readers.sniff.classify`
    already said of the file ("checkpoint": it is not sniffed again for a scaler).
    """
    from ckreg.readers import DEFAULT_TIERS

    tiers = tuple(tiers) if tiers is not None else DEFAULT_TIERS
    p = os.fspath(path)
    if not is_url(p):
        insp = _inspect_path(p, hash_weights, tiers, kind)
    else:   # bytes_read: everything transferred for it (sniffing included), from the remote ledger
        from ckreg.readers import remote

        before = remote.transfers()
        insp = _inspect_path(p, hash_weights, tiers, kind)
        folder = insp.format is not None and "model_folder" in (insp.metadata or {})
        insp.bytes_read = remote.transferred(p, folder=folder, since=before)[0]
        if not hash_weights and insp.size and insp.size > WHOLE_NOTE_BYTES and insp.bytes_read >= insp.size:
            insp.evidence.append(f"the whole remote file was transferred ({insp.bytes_read:,} bytes): a "
                                 f"{insp.format or 'file of this'} format has no index to read by range")
    insp.allowed_tiers = list(tiers)
    return insp


def _inspect_path(p: str, hash_weights: bool, tiers: tuple[str, ...], kind: str | None = None) -> Inspection:
    insp = Inspection(path=p)
    scaler = _inspect_scaler(p, tiers) if kind != "checkpoint" else None
    if scaler is not None:
        return scaler
    try:
        from ckreg.readers import read_checkpoint

        result = read_checkpoint(p, tiers=tiers)
    except CkregError as exc:
        msg = exc.render() if exc.path else f"{p}: {exc}"
        partial = getattr(exc, "partial", None)
        if isinstance(partial, ReadResult) and partial.tensors:
            try:
                insp = inspect_result(partial)
            except CkregError:  # the partial view is a bonus; a bug in it still exits 4
                insp = Inspection(path=p)
        earlier = [f for f in getattr(exc, "findings", None) or [] if isinstance(f, Finding)]
        known = {(f.code, f.message) for f in insp.findings}
        insp.findings = list(insp.findings) + [f for f in earlier if (f.code, f.message) not in known]
        return _unreadable(insp, msg)
    except (OSError, MemoryError, RecursionError, EOFError, UnicodeDecodeError, struct.error, zlib.error) as exc:
        # I/O and the low-level parse errors odd bytes cause: facts about the file. Anything else
        # (a TypeError, a ZeroDivisionError) is a bug in ckreg: it exits 4, never reads as a finding.
        return _unreadable(insp, f"{p}: {type(exc).__name__}: {exc}")
    return inspect_result(result, hash_weights=hash_weights)


def _inspect_scaler(p: str, tiers: tuple[str, ...]) -> Inspection | None:
    """A scaler file, recognised and read as the audit reads it (its estimator class allowed).

    None when the file is not a scaler by its bytes, or cannot be read as one: then it is
    inspected as a checkpoint, so nothing it holds goes unjudged.
    """
    from ckreg.readers.sniff import classify

    try:
        kind, _ = classify(p)
    except OSError:
        return None
    if kind != "scaler":
        return None
    from ckreg.readers import read_scaler_summary
    from ckreg.readers.allowlist import scaler_tiers

    try:
        summary = read_scaler_summary(p, tiers=scaler_tiers(tiers))
    except CkregError:
        return None
    insp = Inspection(path=p, family="scaler", format=f"scaler ({summary.format})", size=size_of(p))
    insp.metadata = {"scaler": {k: v for k, v in summary.to_dict().items() if k not in ("findings", "path")}}
    cls = summary.class_name or "a scaler"
    insp.evidence = [f"{cls} with {summary.n_features} features, read symbolically (never unpickled)"]
    insp.description = [f"scaler: {cls}, n_features={summary.n_features}, n_samples_seen={summary.n_samples_seen}"]
    insp.findings = list(summary.findings)
    insp.bytes_read = summary.bytes_read
    insp.confidence = 1.0
    insp.sha256 = sha256_of(p)   # scalers are capped small (read_scaler_summary refuses large files)
    return insp


def _inspect_one(args: tuple) -> Inspection:
    if len(args) > 2 and args[2]:
        registry().add_all(args[2])   # declared families reach worker processes (spawn/forkserver)
    return inspect_path(args[0], hash_weights=args[1], tiers=args[3] if len(args) > 3 else None)


def inspect_paths(paths: Iterable[str | os.PathLike], hash_weights: bool = False, jobs: int = 1,
                  pool: str = "process", tiers: Sequence[str] | None = None) -> list[Inspection]:
    """Inspect many files, results in input order. `jobs > 1` uses a process pool
    (parsing is pure Python, so threads would share one core); `pool="thread"` for threads."""
    declared = tuple(registry().declared())
    items = [(os.fspath(p), hash_weights, declared, tuple(tiers) if tiers is not None else None) for p in paths]
    if jobs <= 1 or len(items) <= 1:
        return [_inspect_one(it) for it in items]
    import concurrent.futures as cf

    workers = min(jobs, len(items))
    if pool == "process":
        try:
            import multiprocessing as mp

            ctx = mp.get_context("forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn")
            with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as ex:
                chunk = max(1, min(16, len(items) // (workers * 4)))
                return list(ex.map(_inspect_one, items, chunksize=chunk))
        except (OSError, PermissionError, NotImplementedError, ImportError, cf.process.BrokenProcessPool):
            pass  # sandboxed environments without process support: fall back to threads
    with cf.ThreadPoolExecutor(max_workers=workers) as ex:
        return list(ex.map(_inspect_one, items))


def exit_code(inspections: Sequence[Inspection]) -> int:
    """2 when any file is unreadable; 1 when any error-severity finding (e.g. unsafe-global); else 0."""
    if any(i.error or any(f.code == "unreadable" for f in i.findings) for i in inspections):
        return 2
    if any(f.severity == Severity.error for i in inspections for f in i.findings):
        return 1
    return 0


# -- back to a spec -----------------------------------------------------------

def _coerce_unrecorded(name: str, value: Any) -> Any:
    if name == "dropout":
        try:
            v = float(value)
        except (TypeError, ValueError):
            return None
        return v if 0.0 <= v < 1.0 else None
    if name == "pool":
        if _as_int(value) is not None:
            return [_as_int(value)]
        if isinstance(value, (list, tuple)) and value and all(_as_int(v) is not None for v in value):
            return [_as_int(v) for v in value]
    return None


def spec_from_inspection(insp: Inspection, family: str | None = None) -> ArchSpec:
    """The ArchSpec the weights show, with dropout/pool from metadata where recorded
    (zoo defaults otherwise). `family` picks one of `ambiguous_between`."""
    if insp.error:
        raise ReadError(insp.error, path=insp.path)
    fam = family or insp.family
    if family and insp.family not in (family, "ambiguous"):
        raise SpecError(f"the weights are {insp.family}, not {family}", path=insp.path)
    if family and insp.family == "ambiguous" and family not in insp.ambiguous_between:
        raise SpecError(f"{family} is not among {', '.join(insp.ambiguous_between)}", path=insp.path)
    if fam == "ambiguous":
        raise AmbiguousFamilyError(f"family {fam!r} cannot be built", path=insp.path,
                                   hint=f"the weights cannot tell; pass --family (family= in Python) one of "
                                        f"{', '.join(insp.ambiguous_between)}, or name the file after it")
    if fam not in registry():
        raise SpecError(f"family {fam!r} cannot be built", path=insp.path,
                        hint="no family in the spec matches these weights")
    if fam not in FAMILIES:
        rec = registry().get(fam)
        return ArchSpec.for_family(fam, **{k: v for k, v in insp.hyperparameters.items()
                                           if k in rec.hyperparameters})
    allowed = FAMILY_FIELDS[fam] | {"input_size", "num_classes"}
    overrides: dict[str, Any] = {k: v for k, v in insp.hyperparameters.items() if k in allowed}
    for name, value in insp.not_recorded.items():
        if name in ("dropout", "pool") and value != NOT_RECORDED and name in NOT_IN_WEIGHTS.get(fam, {}):
            coerced = _coerce_unrecorded(name, value)
            if coerced is not None:
                overrides[name] = coerced
    return ArchSpec.for_family(fam, **overrides)


__all__ = ["inspect_path", "inspect_paths", "inspect_tensors", "inspect_result", "spec_from_inspection",
           "layout_sha256", "weights_sha256", "count_params", "hyper_parameters", "exit_code", "rank",
           "NOT_RECORDED"]
