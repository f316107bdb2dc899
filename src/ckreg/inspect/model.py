"""What the inspector concludes about one file (the `--json` schema, issue #2).

Documented in README.md, section "inspect --json schema". Keep them in step.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ckreg.findings import Finding


class ParamCounts(BaseModel):
    trainable: int = 0          # parameter elements (tied tensors once)
    buffers: int = 0            # buffer elements (BatchNorm running stats and counters)
    tensors: int = 0            # distinct tensors
    bytes: int = 0              # bytes of distinct tensors
    dtypes: dict[str, int] = Field(default_factory=dict)  # dtype -> element count


class Candidate(BaseModel):
    """One family's attempt to explain the weights."""

    family: str
    score: float                               # 0..1, fraction of keys explained and shapes validated
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    evidence: list[str] = Field(default_factory=list)
    broken: list[str] = Field(default_factory=list)   # validation failures ("recognised but broken")


class ScaleCell(BaseModel):
    """Weight norms of one scale-aware cell (`ckreg.inspect.scales`)."""

    cell: str                                   # module name, e.g. "gru1"
    input: str                                  # what its three chunks are
    gates: dict[str, dict[str, float]]          # gate z/r/h -> scale "3"/"5"/"7" -> ||W_gk||_F
    per_scale: dict[str, float]                 # scale -> sum over gates
    share: dict[str, float]                     # scale -> per_scale / sum of per_scale


class ScaleImportance(BaseModel):
    """Scale-aware families only: how large each convolution scale's input weights are."""

    method: str
    cells: list[ScaleCell] = Field(default_factory=list)


class Inspection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str
    format: str | None = None
    size: int | None = None
    family: str = "unknown"                    # a FAMILIES name, "unknown" or "ambiguous"
    ambiguous_between: list[str] = Field(default_factory=list)
    confidence: float = 0.0
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    not_recorded: dict[str, Any] = Field(default_factory=dict)   # name -> value from metadata, or "not recorded in the weights"
    params: ParamCounts = Field(default_factory=ParamCounts)
    sha256: str | None = None
    layout_sha256: str | None = None
    weights_sha256: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    evidence: list[str] = Field(default_factory=list)
    candidates: list[Candidate] = Field(default_factory=list)
    leftovers: list[str] = Field(default_factory=list)
    description: list[str] = Field(default_factory=list)          # generic description (always filled)
    structure: dict[str, Any] = Field(default_factory=dict)       # the description as data (docs/inspect.md)
    layout: dict[str, list] = Field(default_factory=dict)         # name -> [dtype, shape]; for drift checks
    findings: list[Finding] = Field(default_factory=list)
    scales: ScaleImportance | None = None      # scale-aware families: per-scale weight norms
    bytes_read: int = 0
    allowed_tiers: list[str] = Field(default_factory=list)      # allowlist tiers the globals were judged by
    error: str | None = None                   # set when the file could not be read at all

    @property
    def ok(self) -> bool:
        return self.error is None
