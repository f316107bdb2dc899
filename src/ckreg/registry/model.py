"""What the registry records and returns: plain data (pydantic), no torch.

`Version` is what `add`, `resolve` and `ls` return; `Verification` is the
normalised form of a verification result (a `ckreg.verify.VerifyResult`, a
dict, or anything with `model_dump`), so the registry core never needs the
verifier itself (issue #5).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ckreg.arch import ArchSpec
from ckreg.errors import RegistryError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
ALIAS_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]{0,63}$")
RESERVED_ALIASES = {"latest"}


def utcnow() -> str:
    """UTC ISO 8601 with milliseconds, e.g. 2025-01-31T12:00:00.123+00:00."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def pair_digest(ckpt_sha256: str, scaler_sha256: str | None) -> str:
    """The pair's combined digest: sha256 over the checkpoint and scaler digests.

    Domain-separated and versioned so it can never collide with a file digest;
    a checkpoint without a scaler is a different pair from the same checkpoint
    with one.
    """
    text = f"ckreg-pair-v1\ncheckpoint:{ckpt_sha256}\nscaler:{scaler_sha256 or 'none'}\n"
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise RegistryError(f"invalid model name {name!r}",
                            hint="use letters, digits, '_', '.', '-' (no '@' or '/'), starting with a letter or digit")
    return name


def check_alias(alias: str) -> str:
    if not isinstance(alias, str) or not ALIAS_RE.match(alias) or alias in RESERVED_ALIASES:
        raise RegistryError(f"invalid alias {alias!r}",
                            hint="aliases start with a letter (numbers name versions) and 'latest' is reserved")
    return alias


def parse_ref(ref: str) -> tuple[str, str | int | None]:
    """`NAME` -> (NAME, None); `NAME@3` -> (NAME, 3); `NAME@best` -> (NAME, 'best'); `NAME@latest` -> (NAME, None)."""
    if not isinstance(ref, str) or not ref.strip():
        raise RegistryError(f"invalid reference {ref!r}", hint="write NAME, NAME@alias or NAME@version")
    name, sep, tag = ref.strip().partition("@")
    check_name(name)
    if not sep:
        return name, None
    if tag.startswith("v") and tag[1:].isdigit():
        tag = tag[1:]
    if tag.isdigit():
        return name, int(tag)
    if tag == "latest":
        return name, None
    check_alias(tag)
    return name, tag


class ScalerInfo(BaseModel):
    """The scaler blob of a pair and what it says about itself."""

    model_config = ConfigDict(frozen=True)

    sha256: str
    size: int
    format: str                      # "json" | "pkl"
    n_features: int | None = None
    channel_names: list[str] | None = None
    recipe: str | None = None
    data_hash: str | None = None
    sklearn_version: str | None = None
    warnings: list[str] = Field(default_factory=list)   # e.g. scikit-learn version skew of a pickle


class Verification(BaseModel):
    """A verification result as recorded (accuracy is a fraction)."""

    model_config = ConfigDict(extra="allow")

    accuracy: float | None = None
    per_class: Any = None
    confusion_matrix: list[list[int]] | None = None
    data_hash: str | None = None
    passed: bool | None = None
    expect_acc: float | None = None
    date: str | None = None
    by: str | None = None

    @classmethod
    def from_any(cls, result: Any) -> "Verification":
        """Accept a VerifyResult, any pydantic model, a dataclass or a dict (plain data in, issue #5)."""
        if isinstance(result, Verification):
            return result
        if hasattr(result, "model_dump"):
            data = result.model_dump(mode="json")
        elif dataclasses.is_dataclass(result) and not isinstance(result, type):
            data = dataclasses.asdict(result)
        elif isinstance(result, dict):
            data = dict(result)
        else:
            raise RegistryError(f"cannot record a verification of type {type(result).__name__}",
                                hint="pass a VerifyResult, a pydantic model or a dict")
        data = _jsonable(data)
        if "confusion_matrix" not in data and "confusion" in data:
            data["confusion_matrix"] = data.pop("confusion")
        if "date" not in data:
            data["date"] = data.pop("verified_at", None) or utcnow()
        try:
            return cls.model_validate(data)
        except ValueError as exc:
            raise RegistryError(f"invalid verification result: {exc}") from exc


def _jsonable(obj: Any) -> Any:
    """numpy scalars/arrays and tuples -> JSON types (verification results may carry numpy)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "tolist") and callable(obj.tolist):
        return obj.tolist()
    if hasattr(obj, "item") and callable(obj.item):
        try:
            return obj.item()
        except (TypeError, ValueError):
            pass
    return obj


class Version(BaseModel):
    """One immutable registered version (plus its current aliases and latest verification)."""

    model_config = ConfigDict(frozen=True)

    name: str
    version: int
    family: str
    spec: ArchSpec
    source_path: str | None = None
    sha256: str                        # the checkpoint file's digest (its blob address)
    size: int
    format: str | None = None
    weights_sha256: str | None = None
    scaler: ScalerInfo | None = None
    pair_digest: str
    class_names: list[str] | None = None
    provenance: dict[str, Any] | None = None
    created_at: str
    created_by: str
    aliases: list[str] = Field(default_factory=list)
    verification: Verification | None = None

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def verified(self) -> bool:
        return bool(self.verification is not None and self.verification.passed)

    @property
    def accuracy(self) -> float | None:
        return None if self.verification is None else self.verification.accuracy

    def summary(self) -> dict[str, Any]:
        """The `ls --json` object: one per version."""
        return {
            "name": self.name,
            "version": self.version,
            "ref": self.ref,
            "aliases": list(self.aliases),
            "family": self.family,
            "accuracy": self.accuracy,
            "verified": self.verified,
            "sha256": self.sha256,
            "weights_sha256": self.weights_sha256,
            "scaler_sha256": None if self.scaler is None else self.scaler.sha256,
            "pair_digest": self.pair_digest,
            "created_at": self.created_at,
        }


class Event(BaseModel):
    """One line of the append-only event log: who did what, when."""

    model_config = ConfigDict(frozen=True)

    id: int
    at: str
    who: str
    kind: str              # registered | verified | alias-moved | alias-removed | gc | registry-created | schema-upgraded
    name: str | None = None
    version: int | None = None
    data: dict[str, Any] = Field(default_factory=dict)


ARTIFACT_COLUMNS = ("format", "quantization", "status", "accuracy", "float_accuracy", "agreement",
                    "latency_mean_ms", "latency_median_ms", "threads", "model_bytes", "model_sha256",
                    "n_episodes", "split", "data_hash", "location")


def artifact_columns(record: dict[str, Any]) -> dict[str, Any]:
    """The `artifacts` row's metric columns from a deployment record (`ckreg.deploy.DeployResult` as a dict)."""
    def num(v):
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    def whole(v):
        return int(v) if isinstance(v, int) and not isinstance(v, bool) else None

    fmt = str(record.get("format") or "")
    quant = record.get("quantization")
    mode = quant.get("mode") if isinstance(quant, dict) else None
    if mode is None and fmt == "onnx-int8":
        mode = "dynamic"          # records written before static quantization existed
    lat = record.get("latency") if isinstance(record.get("latency"), dict) else {}
    files = record.get("files") if isinstance(record.get("files"), dict) else {}
    return {
        "format": fmt, "quantization": mode, "status": str(record.get("status") or ""),
        "accuracy": num(record.get("accuracy")), "float_accuracy": num(record.get("float_accuracy")),
        "agreement": num(record.get("agreement")),
        "latency_mean_ms": num(lat.get("mean_ms")), "latency_median_ms": num(lat.get("median_ms")),
        "threads": whole(record.get("threads")), "model_bytes": whole(record.get("model_bytes")),
        "model_sha256": files.get(record.get("model_file")) if record.get("model_file") else None,
        "n_episodes": whole(record.get("n_episodes")), "split": record.get("split"),
        "data_hash": record.get("data_hash"), "location": record.get("out"),
    }


class Artifact(BaseModel):
    """A deployment artifact of a version (`ckreg export --format onnx|onnx-int8|torchscript`), as recorded.

    The columns are what a listing needs; `record` is everything the export
    recorded (`deploy.json`: files, episode ids, runtime versions, reasons).
    """

    model_config = ConfigDict(frozen=True)

    id: int
    name: str
    version: int
    format: str
    quantization: str | None = None      # onnx-int8: static | dynamic
    status: str                          # verified | failed
    accuracy: float | None = None
    float_accuracy: float | None = None
    agreement: float | None = None
    latency_mean_ms: float | None = None
    latency_median_ms: float | None = None
    threads: int | None = None
    model_bytes: int | None = None
    model_sha256: str | None = None
    n_episodes: int | None = None
    split: str | None = None
    data_hash: str | None = None
    location: str | None = None
    recorded_at: str
    recorded_by: str
    record: dict[str, Any] = Field(default_factory=dict)

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def verified(self) -> bool:
        return self.status == "verified"

    @property
    def kind(self) -> str:
        """`onnx`, `torchscript`, `int8-static`, `int8-dynamic`."""
        return f"int8-{self.quantization}" if self.format == "onnx-int8" and self.quantization else self.format


class VersionDetail(BaseModel):
    """`show`: a version, its verification history, its events and its deployment artifacts."""

    version: Version
    verifications: list[Verification] = Field(default_factory=list)
    events: list[Event] = Field(default_factory=list)
    blobs: dict[str, str] = Field(default_factory=dict)   # role -> blob path
    artifacts: list[Artifact] = Field(default_factory=list)


class Problem(BaseModel):
    """A `verify` finding: a blob whose bytes no longer match, or one the index needs but lacks."""

    model_config = ConfigDict(frozen=True)

    kind: str              # corrupt | missing | misplaced | index
    sha256: str | None = None
    path: str | None = None
    message: str
    referenced_by: list[str] = Field(default_factory=list)   # version refs using the blob


class GcResult(BaseModel):
    dry_run: bool
    removed: list[str] = Field(default_factory=list)       # blob digests (would be) removed
    bytes: int = 0
    kept_recent: list[str] = Field(default_factory=list)   # unreferenced but inside the grace period
    temps: list[str] = Field(default_factory=list)         # stale temp files (would be) removed
