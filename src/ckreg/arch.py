"""The shared vocabulary of architectures: family names and `ArchSpec`.

One typed spec serves the inspector (what it reports), the manifest (what is
declared), the zoo (what it builds) and the registry (what it records), so
`build(spec_from_inspection)` loads the inspected file strictly (issue #3).
Hyperparameter names are those of issue #2. Torch-free by design.

Everything about a family (defaults, layout, detector, names) is its record
in `ckreg.families`; this module only derives the built-in vocabulary from
those records. `ArchSpec.hparams` carries the hyperparameters of declared
families (family files, manifests, plug-ins).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_serializer, model_validator

from ckreg.errors import SpecError

def _builtin_records():
    from ckreg.families import builtin_names, get

    return [get(name) for name in builtin_names()]


# Families of ../shared/spec/families.md, table "Families": derived from their registry records
# (`ckreg.families.builtin`), the one place a family is described.
FAMILIES: tuple[str, ...] = tuple(r.name for r in _builtin_records())

# Which hyperparameters mean something for each family (others must stay None).
FAMILY_FIELDS: dict[str, set[str]] = {r.name: set(r.hyperparameters) for r in _builtin_records()}

# What the weights cannot show (spec, "What weights cannot tell"): the zoo's
# defaults, used when neither metadata nor the user says otherwise.
NOT_IN_WEIGHTS: dict[str, dict] = {r.name: dict(r.not_in_weights) for r in _builtin_records()}

WEIGHT_FIELDS = (
    "input_size", "hidden_size", "num_layers", "num_classes", "cell", "bidirectional",
    "proj_size", "cnn_filters", "conv_dim", "tower_kernels", "depth", "widen_factor",
)


class ArchSpec(BaseModel):
    """A concrete architecture: family plus the hyperparameters the weights show.

    `dropout`/`pool` are training-time details the weights cannot show; they
    are carried so the zoo can rebuild the exact forward pass.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    family: str
    input_size: int | None = 8
    num_classes: int | None = 24
    hidden_size: int | None = None
    num_layers: int | None = None
    cell: Literal["GRU", "LSTM", "RNN"] | None = None
    bidirectional: bool | None = None
    proj_size: int | None = None
    cnn_filters: int | None = None
    conv_dim: Literal[1, 2, 3] | None = None
    tower_kernels: list[list[int]] | None = None
    depth: int | None = None
    widen_factor: int | None = None
    dropout: float | None = None
    pool: list[int] | None = None
    # Hyperparameters of a registered family outside the built-in vocabulary (a family file,
    # a manifest's families:, a plug-in): its own names, integers, as its template declares them.
    hparams: dict[str, int | None] | None = None

    @model_validator(mode="before")
    @classmethod
    def _declared_family_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("family") not in FAMILIES and data.get("family") is not None:
            data = dict(data)
            data.setdefault("input_size", None)
            data.setdefault("num_classes", None)
            data.setdefault("hparams", {})
        return data

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> Any:
        out = handler(self)
        if isinstance(out, dict) and out.get("hparams") is None:
            out.pop("hparams", None)
        return out

    @model_validator(mode="after")
    def _check_family(self) -> "ArchSpec":
        if self.family not in FAMILIES:
            from ckreg.families import find, names

            rec = find(self.family)
            if rec is None:
                raise ValueError(f"unknown family {self.family!r}; known: {', '.join(names())}")
            used = [n for n in WEIGHT_FIELDS + ("input_size", "num_classes", "pool") if getattr(self, n) is not None]
            if used:
                raise ValueError(f"{self.family} is a declared family: give its hyperparameters in hparams "
                                 f"({', '.join(rec.hyperparameters)}), not {used[0]}")
            unknown = [k for k in (self.hparams or {}) if k not in rec.hyperparameters]
            if unknown:
                raise ValueError(f"family {self.family} has no hyperparameter {unknown[0]!r}; "
                                 f"expected one of: {', '.join(rec.hyperparameters)}")
            return self
        if self.hparams is not None:
            raise ValueError(f"hparams is for declared families; {self.family} takes its named fields")
        allowed = FAMILY_FIELDS[self.family] | {"family", "dropout", "pool", "input_size", "num_classes"}
        for name in WEIGHT_FIELDS:
            if getattr(self, name) is not None and name not in allowed:
                raise ValueError(f"{name} does not apply to family {self.family}")
        return self

    @classmethod
    def for_family(cls, family: str, **overrides) -> "ArchSpec":
        """The family's reference configuration (its registry record's defaults), with overrides applied.

        Raises SpecError (not a pydantic error) for an unknown family or key,
        so the CLI can say which `--set` key is wrong.
        """
        from ckreg.families import find, names

        rec = find(family)
        if rec is None:
            raise SpecError(f"unknown family {family!r}", hint=f"known families: {', '.join(names())}")
        if family not in FAMILIES:
            for key in overrides:
                if key not in rec.hyperparameters:
                    raise SpecError(f"family {family} has no hyperparameter {key!r}",
                                    hint=f"settable: {', '.join(rec.hyperparameters)}")
            try:
                return cls(family=family, hparams=rec.defaults(overrides))
            except ValueError as exc:
                raise SpecError(f"invalid spec for {family}: {exc}") from exc
        allowed = FAMILY_FIELDS[family] | {"input_size", "num_classes", "dropout", "pool"}
        for key in overrides:
            if key not in allowed:
                raise SpecError(f"family {family} has no hyperparameter {key!r}",
                                hint=f"settable: {', '.join(sorted(allowed))}")
        # Only what ArchSpec carries ("activation" is implied by the family name).
        unrecorded = {k: v for k, v in NOT_IN_WEIGHTS[family].items() if k in cls.model_fields}
        fields = rec.defaults({k: v for k, v in overrides.items() if k in rec.hyperparameters})
        fields.update({k: v for k, v in unrecorded.items() if k not in overrides})
        fields.update({k: v for k, v in overrides.items() if k not in rec.hyperparameters})
        try:
            return cls(family=family, **fields)
        except ValueError as exc:  # pydantic.ValidationError is a ValueError
            raise SpecError(f"invalid spec for {family}: {exc}") from exc

    @classmethod
    def of(cls, family: str, hyperparameters: dict) -> "ArchSpec":
        """A spec from a family and hyperparameters as the inspector reports them (ValueError if invalid)."""
        if family in FAMILIES:
            return cls(family=family, **hyperparameters)
        return cls(family=family, hparams=dict(hyperparameters))

    @property
    def builtin(self) -> bool:
        return self.family in FAMILIES

    def hyperparameters(self) -> dict:
        """Every hyperparameter the family's layout reads (what `Family.layout` takes)."""
        if self.family not in FAMILIES:
            return dict(self.hparams or {})
        return {k: v for k, v in self.model_dump().items() if k not in ("family", "hparams")}

    def weight_hparams(self) -> dict:
        """Only the hyperparameters the weights can show (for comparisons and naming)."""
        if self.family not in FAMILIES:
            return {k: v for k, v in (self.hparams or {}).items() if v is not None}
        return {k: getattr(self, k) for k in WEIGHT_FIELDS if getattr(self, k) is not None}
