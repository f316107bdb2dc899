"""Model folders (Hugging Face layout) read as ONE checkpoint.

A folder holding `config.json` beside `model.safetensors` or `pytorch_model.bin`,
or shards listed by `model.safetensors.index.json` / `pytorch_model.bin.index.json`,
is one model: every shard is read (symbolically, as any file), the tensors are
merged under one prefix decision, the index is checked against the shards, and
`config.json` is kept as metadata (`metadata["config"]`) for the inspector to
fill and check what the weights cannot show. JSON is parsed, never executed.

Findings (`model-folder-invalid`, error): an indexed tensor missing from its
shard or found in another, a tensor no index entry names, a shard the index
names that does not exist, a weights file in the folder the index never names,
a config.json that cannot be parsed (a warning: the weights are still read).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any, Iterator

from ckreg.errors import ReadError
from ckreg.findings import Finding
from ckreg.readers.fileio import Counter, isdir, join, listdir, read_all, sha256_of, size_of
from ckreg.readers.model import ReadResult, StorageRef, TensorRecord
from ckreg.readers.unwrap import strip_prefixes

INDEX_NAMES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
SINGLE_NAMES = ("model.safetensors", "pytorch_model.bin")
_SHARD = re.compile(r"^(model|pytorch_model)-(\d+)-of-(\d+)\.(safetensors|bin)$")
JSON_CAP = 64 << 20
CONFIG_CAP = 4 << 20
# config.json keys kept as metadata (what the inspector uses); the rest is summarised by count
CONFIG_KEYS = ("architectures", "model_type", "num_attention_heads", "num_key_value_heads", "num_hidden_layers",
               "hidden_size", "vocab_size", "torch_dtype", "dtype", "intermediate_size", "n_layer", "n_head",
               "n_embd", "n_inner", "d_model", "d_ff", "d_kv", "num_layers", "num_decoder_layers", "num_heads",
               "encoder_layers", "decoder_layers", "encoder_attention_heads", "decoder_attention_heads",
               "encoder_ffn_dim", "decoder_ffn_dim", "head_dim", "tie_word_embeddings", "num_labels", "id2label",
               "max_position_embeddings", "n_positions", "num_mel_bins")


def weight_files(path: str) -> list[str]:
    """The weights files of a model folder, in shard order (names only)."""
    try:
        names = sorted(listdir(path))
    except OSError:
        return []
    shards = [n for n in names if _SHARD.match(n)]
    singles = [n for n in SINGLE_NAMES if n in names]
    return singles + sorted(shards, key=lambda n: (n.endswith(".bin"), int(_SHARD.match(n).group(2))))


def is_model_folder(path: str | os.PathLike) -> bool:
    """A folder with a Hugging Face weights file (or index), beside a config.json or an index."""
    p = os.fspath(path)
    if not isdir(p):
        return False
    try:
        names = set(listdir(p))
    except OSError:
        return False
    has_index = any(n in names for n in INDEX_NAMES)
    has_weights = bool(weight_files(p))
    return has_weights and ("config.json" in names or has_index) or has_index


def folder_members(path: str) -> list[str]:
    """Names in the folder that belong to the model (weights, index, config)."""
    names = set(listdir(path))
    out = [n for n in ("config.json", *INDEX_NAMES) if n in names]
    return out + weight_files(path)


def _read_json(path: str, cap: int) -> Any:
    try:
        size = size_of(path)
        if size > cap:
            raise ReadError(f"{size} bytes, over the {cap}-byte limit for a JSON file", path=path)
        return json.loads(read_all(path).decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ReadError(f"not valid JSON: {exc}", path=path) from None


def _config_summary(cfg: dict) -> dict:
    out = {k: cfg[k] for k in CONFIG_KEYS if k in cfg}
    for sub in ("text_config", "encoder", "decoder"):
        if isinstance(cfg.get(sub), dict):
            out[sub] = {k: cfg[sub][k] for k in CONFIG_KEYS if k in cfg[sub]}
    return out


@dataclass
class FolderResult(ReadResult):
    """A model folder's merged result; `sha256` covers its member files (name and sha256 of each)."""

    members: tuple[str, ...] = ()

    @property
    def sha256(self) -> str:
        if self._sha256 is None:
            import hashlib

            h = hashlib.sha256()
            for name in self.members:
                counter = Counter()
                digest = sha256_of(join(self.path, name), counter)
                self.bytes_read += counter.n
                h.update(f"{name}\t{digest}\n".encode())
            self._sha256 = h.hexdigest()
        return self._sha256


def read_model_folder(path: str | os.PathLike) -> ReadResult:
    """Read every weights file of a model folder into one `ReadResult` (format of its weights files)."""
    from ckreg.readers.core import read_checkpoint

    root = os.fspath(path)
    names = set(listdir(root))
    findings: list[Finding] = []
    metadata: dict[str, Any] = {}
    config: dict | None = None

    def add(code: str, message: str, **kw: Any) -> None:
        findings.append(Finding.make(code, f"{root}: {message}", path=root, **kw))

    if "config.json" in names:
        try:
            cfg = _read_json(join(root, "config.json"), CONFIG_CAP)
            if isinstance(cfg, dict):
                config = cfg
            else:
                add("model-folder-invalid", "config.json is not a JSON object; ignored", severity="warning")
        except ReadError as exc:
            add("model-folder-invalid", f"config.json cannot be used: {exc}", severity="warning")

    index_name = next((n for n in INDEX_NAMES if n in names), None)
    weight_map: dict[str, str] | None = None
    index_meta: dict = {}
    if index_name is not None:
        idx = _read_json(join(root, index_name), JSON_CAP)
        wm = idx.get("weight_map") if isinstance(idx, dict) else None
        if not isinstance(wm, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in wm.items()):
            raise ReadError(f"{index_name}: no weight_map object of tensor name -> shard file", path=root)
        weight_map = wm
        index_meta = idx.get("metadata") if isinstance(idx.get("metadata"), dict) else {}

    files = weight_files(root)
    if weight_map is not None:
        indexed = list(dict.fromkeys(weight_map.values()))
        for shard in indexed:
            if os.path.basename(shard) != shard or shard in ("", ".", ".."):
                raise ReadError(f"{index_name}: shard name {shard!r} is not a file in the folder", path=root)
        missing = [s for s in indexed if s not in names]
        for s in missing:
            n = sum(1 for v in weight_map.values() if v == s)
            add("model-folder-invalid", f"{index_name} names shard {s} ({n} tensors) but the folder has no such "
                                        f"file", expected=s)
        same_kind = ".safetensors" if index_name.startswith("model.safetensors") else ".bin"
        for extra in [f for f in files if f.endswith(same_kind) and f not in indexed]:
            add("model-folder-invalid", f"{extra} is in the folder but {index_name} does not name it; loaders "
                                        f"ignore it", actual=extra)
        files = [s for s in indexed if s in names]
    else:
        # no index: one file (safetensors preferred, as transformers does)
        files = [f for f in files if not _SHARD.match(f)][:1] or files[:1]
    if not files:
        raise ReadError("model folder without a readable weights file", path=root)

    parts: list[tuple[str, ReadResult]] = []
    for name in files:
        parts.append((name, read_checkpoint(join(root, name))))

    # merge under the names as stored, then one prefix decision for all shards
    stored: dict[str, tuple[str, ReadResult, TensorRecord]] = {}
    formats: list[str] = []
    for name, res in parts:
        formats.append(res.format)
        findings.extend(res.findings)
        for new, rec in res.tensors.items():
            orig = res.original_names.get(new, new)
            if orig in stored:
                add("model-folder-invalid", f"tensor {orig} is in {stored[orig][0]} and again in {name}",
                    expected=stored[orig][0], actual=name)
                continue
            stored[orig] = (name, res, rec)
            if weight_map is not None:
                want = weight_map.get(orig)
                if want is None:
                    add("model-folder-invalid", f"tensor {orig} in {name} is not in {index_name}", actual=name)
                elif want != name:
                    add("model-folder-invalid", f"{index_name} puts tensor {orig} in {want}, but it is in {name}",
                        expected=want, actual=name)
    if weight_map is not None:
        read = {n for n, _ in parts}
        absent = [k for k, v in weight_map.items() if v in read and k not in stored]
        for k in absent[:20]:
            add("model-folder-invalid", f"{index_name} puts tensor {k} in {weight_map[k]}, which does not hold it",
                expected=weight_map[k])
        if len(absent) > 20:
            add("model-folder-invalid", f"... and {len(absent) - 20} more indexed tensors missing from their shards",
                actual=len(absent))
    originals = list(stored)
    new_names, evidence = strip_prefixes(originals)
    tensors: dict[str, TensorRecord] = {}
    origin: dict[str, tuple[ReadResult, TensorRecord]] = {}
    original_names: dict[str, str] = {}
    for new, orig in zip(new_names, originals):
        shard, res, rec = stored[orig]
        st = rec.storage
        if st is not None:  # storage keys are per file: namespace them so shards never tie by accident
            st = StorageRef(key=f"{shard}:{st.key}", dtype=st.dtype, numel=st.numel, device=st.device,
                            member=st.member, offset=st.offset)
        tensors[new] = TensorRecord(name=new, dtype=rec.dtype, shape=rec.shape, stride=rec.stride, storage=st,
                                    storage_offset=rec.storage_offset, requires_grad=rec.requires_grad,
                                    is_parameter=rec.is_parameter)
        origin[new] = (res, rec)
        original_names[new] = orig
    kinds = sorted(set(formats))
    how = f"{len(parts)} shards listed by {index_name}" if weight_map is not None else f"weights file {files[0]}"
    unwrap = [f"model folder: {how}" + (f", config.json ({config.get('model_type') or 'no model_type'})"
                                        if config is not None else "")]
    unwrap += evidence
    for name, res in parts:
        metadata.setdefault("shards", {})[name] = {"format": res.format, "tensors": len(res.tensors),
                                                   "size": res.size}
    if config is not None:
        metadata["config"] = _config_summary(config)
    if index_meta:
        metadata["index_metadata"] = index_meta
        total = index_meta.get("total_size")
        have = sum(r.nbytes for _, _, r in stored.values())
        if isinstance(total, int) and not isinstance(total, bool) and weight_map is not None and total != have \
                and not any(f.code == "model-folder-invalid" for f in findings):
            add("model-folder-invalid", f"{index_name} metadata.total_size is {total:,} bytes; the shards' tensors "
                                        f"hold {have:,}", expected=have, actual=total, severity="warning")
    metadata["model_folder"] = {"index": index_name, "config": "config.json" if config is not None else None,
                                "files": [n for n, _ in parts]}
    for name, res in parts:  # carry the per-file metadata that matters (safetensors __metadata__)
        for key in ("safetensors_metadata", "__metadata__"):
            if key in res.metadata and key not in metadata:
                metadata[key] = res.metadata[key]
    size = sum(res.size for _, res in parts)
    out = FolderResult(path=root, format=kinds[0] if len(kinds) == 1 else "+".join(kinds), size=size,
                     tensors=tensors, unwrap=unwrap, metadata=metadata, findings=findings,
                     globals=[g for _, r in parts for g in r.globals], pickles=sum(r.pickles for _, r in parts),
                     original_names=original_names, members=tuple(folder_members(root)))
    out.bytes_read = sum(r.bytes_read for _, r in parts)

    def source(rec: TensorRecord) -> Iterator[bytes]:
        res, inner = origin[rec.name]
        before = res.bytes_read
        yield from res.iter_tensor_bytes(inner)
        out.bytes_read += res.bytes_read - before

    out._byte_source = source
    out._sha256 = None
    return out
