"""The shared vocabulary of architectures: family names and `ArchSpec`.

One typed spec serves the inspector (what it reports), the manifest (what is
declared), the zoo (what it builds) and the registry (what it records), so
`build(spec_from_inspection)` loads the inspected file strictly (issue #3).
Hyperparameter names are those of issue #2. Torch-free by design.

Per-family expected state_dict layouts (names and shapes) live in
`ckreg.inspect.layouts`, derived from `../shared/spec/families.md`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, model_validator

from ckreg.errors import SpecError

# Families of ../shared/spec/families.md, table "Families".
FAMILIES: tuple[str, ...] = (
    "GRU",
    "LSTM",
    "StackedGRU",
    "StackedLSTM",
    "CNNGRU",
    "CNNStackedGRU",
    "MSCGRU",
    "MSCSGRU",
    "MS3DGRU",
    "MS3DStackedGRU",
    "MSCSGRU_ScaleAware",
    "MSCSGRU_ScaleHard",
    "MSCGRU_ScaleAware",
    "WRN",
)

# Which hyperparameters mean something for each family (others must stay None).
_RNN = {"input_size", "hidden_size", "num_layers", "num_classes", "cell", "bidirectional"}
_CNN = {"input_size", "hidden_size", "num_layers", "num_classes", "cell", "cnn_filters", "conv_dim", "tower_kernels"}
FAMILY_FIELDS: dict[str, set[str]] = {
    "GRU": _RNN | {"proj_size"},
    "LSTM": _RNN | {"proj_size"},
    "StackedGRU": set(_RNN),
    "StackedLSTM": set(_RNN),
    "CNNGRU": set(_CNN),
    "CNNStackedGRU": set(_CNN),
    "MSCGRU": set(_CNN),
    "MSCSGRU": set(_CNN),
    "MS3DGRU": set(_CNN),
    "MS3DStackedGRU": set(_CNN),
    "MSCSGRU_ScaleAware": set(_CNN),
    "MSCSGRU_ScaleHard": set(_CNN),
    "MSCGRU_ScaleAware": set(_CNN),
    "WRN": {"input_size", "num_classes", "conv_dim", "depth", "widen_factor"},
}

# Defaults from the spec's notation: C=8, H=64, K=24, F=32; towers 3,5,7.
_DEFAULTS: dict[str, dict] = {
    "GRU": dict(num_layers=1, cell="GRU", proj_size=128),
    "LSTM": dict(num_layers=2, cell="LSTM", proj_size=128),
    "StackedGRU": dict(num_layers=2, cell="GRU"),
    "StackedLSTM": dict(num_layers=2, cell="LSTM"),
    "CNNGRU": dict(num_layers=1, cell="GRU", cnn_filters=32, conv_dim=1, tower_kernels=[[3]]),
    "CNNStackedGRU": dict(num_layers=2, cell="GRU", cnn_filters=32, conv_dim=1, tower_kernels=[[3]]),
    "MSCGRU": dict(num_layers=1, cell="GRU", cnn_filters=32, conv_dim=1, tower_kernels=[[3], [5], [7]]),
    "MSCSGRU": dict(num_layers=2, cell="GRU", cnn_filters=32, conv_dim=1, tower_kernels=[[3], [5], [7]]),
    "MS3DGRU": dict(num_layers=1, cell="GRU", cnn_filters=32, conv_dim=3,
                    tower_kernels=[[3, 3, 3], [5, 5, 5], [7, 7, 7]]),
    "MS3DStackedGRU": dict(num_layers=2, cell="GRU", cnn_filters=32, conv_dim=3,
                           tower_kernels=[[3, 3, 3], [5, 5, 5], [7, 7, 7]]),
    "MSCSGRU_ScaleAware": dict(num_layers=2, cell="GRU", cnn_filters=32, conv_dim=1, tower_kernels=[[3], [5], [7]]),
    "MSCSGRU_ScaleHard": dict(num_layers=2, cell="GRU", cnn_filters=32, conv_dim=1, tower_kernels=[[3], [5], [7]]),
    "MSCGRU_ScaleAware": dict(num_layers=1, cell="GRU", cnn_filters=32, conv_dim=1, tower_kernels=[[3], [5], [7]]),
    "WRN": dict(conv_dim=1, depth=16, widen_factor=1),
}

# What the weights cannot show (spec, "What weights cannot tell"): the zoo's
# defaults, used when neither metadata nor the user says otherwise.
NOT_IN_WEIGHTS: dict[str, dict] = {
    "GRU": dict(dropout=0.2),
    "LSTM": dict(dropout=0.2),
    "StackedGRU": dict(dropout=0.2),
    "StackedLSTM": dict(dropout=0.2),
    "CNNGRU": dict(dropout=0.3),
    "CNNStackedGRU": dict(dropout=0.3),
    "MSCGRU": dict(dropout=0.3),
    "MSCSGRU": dict(dropout=0.3),
    "MS3DGRU": dict(dropout=0.1, pool=[2, 4, 2]),
    "MS3DStackedGRU": dict(dropout=0.1, pool=[1, 4, 2]),
    "MSCSGRU_ScaleAware": dict(dropout=0.3, activation="sigmoid/tanh"),
    "MSCSGRU_ScaleHard": dict(dropout=0.3, activation="hardsigmoid/hardtanh"),
    "MSCGRU_ScaleAware": dict(dropout=0.3, activation="sigmoid/tanh"),
    "WRN": dict(dropout=0.0),
}

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
    input_size: int = 8
    num_classes: int = 24
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

    @model_validator(mode="after")
    def _check_family(self) -> "ArchSpec":
        if self.family not in FAMILIES:
            raise ValueError(f"unknown family {self.family!r}; known: {', '.join(FAMILIES)}")
        allowed = FAMILY_FIELDS[self.family] | {"family", "dropout", "pool", "input_size", "num_classes"}
        for name in WEIGHT_FIELDS:
            if getattr(self, name) is not None and name not in allowed:
                raise ValueError(f"{name} does not apply to family {self.family}")
        return self

    @classmethod
    def for_family(cls, family: str, **overrides) -> "ArchSpec":
        """The spec's reference configuration for a family, with overrides applied.

        Raises SpecError (not a pydantic error) for an unknown family or key,
        so the CLI can say which `--set` key is wrong.
        """
        if family not in FAMILIES:
            raise SpecError(f"unknown family {family!r}", hint=f"known families: {', '.join(FAMILIES)}")
        fields = dict(input_size=8, num_classes=24)
        if family != "WRN":
            fields["hidden_size"] = 64
            fields["bidirectional"] = False if family in {"GRU", "LSTM", "StackedGRU", "StackedLSTM"} else None
        fields.update(_DEFAULTS[family])
        # Only what ArchSpec carries ("activation" is implied by the family name).
        fields.update({k: v for k, v in NOT_IN_WEIGHTS[family].items() if k in cls.model_fields})
        allowed = FAMILY_FIELDS[family] | {"input_size", "num_classes", "dropout", "pool"}
        for key in overrides:
            if key not in allowed:
                raise SpecError(f"family {family} has no hyperparameter {key!r}",
                                hint=f"settable: {', '.join(sorted(allowed))}")
        fields.update(overrides)
        if family in {"GRU", "LSTM"} and "proj_size" not in overrides and "hidden_size" in overrides:
            try:
                fields["proj_size"] = 2 * int(fields["hidden_size"])
            except (TypeError, ValueError):
                pass  # a non-integer hidden_size: pydantic names it below, as a SpecError (--set hidden_size=abc)
        try:
            return cls(family=family, **fields)
        except ValueError as exc:  # pydantic.ValidationError is a ValueError
            raise SpecError(f"invalid spec for {family}: {exc}") from exc

    def weight_hparams(self) -> dict:
        """Only the hyperparameters the weights can show (for comparisons and naming)."""
        return {k: getattr(self, k) for k in WEIGHT_FIELDS if getattr(self, k) is not None}
