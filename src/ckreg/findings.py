"""Findings are data (house style, after pip-audit and modelscan).

A `Finding` is a frozen pydantic model; a `Report` keeps what was checked,
what was found, what was skipped and what failed apart. Codes are stable and
documented here once: the README table, SARIF rules and JUnit cases all read
`CODES`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Severity(str, Enum):
    """SARIF's levels, so the mapping to code scanning is the identity."""

    error = "error"
    warning = "warning"
    note = "note"

    @property
    def rank(self) -> int:
        return {"note": 0, "warning": 1, "error": 2}[self.value]


@dataclass(frozen=True)
class CodeInfo:
    """A static table row; a plain dataclass because building 30 pydantic models at import
    cost ~60 ms of every `ckreg inspect` start-up (bench/bench_inspect.py, issue #2)."""

    code: str
    severity: Severity
    title: str
    help: str


def _c(code: str, severity: str, title: str, help: str) -> tuple[str, CodeInfo]:
    return code, CodeInfo(code=code, severity=Severity(severity), title=title, help=help)


# Stable codes. Add new ones at the end of their group; never rename one.
CODES: dict[str, CodeInfo] = dict(
    [
        # -- reading (readers/) --
        _c("unsafe-global", "error", "Pickle references a global outside the allowlist",
           "Loading this file with torch.load(weights_only=False) or pickle would import and may call it. Re-save the weights as safetensors."),
        _c("pickle-malformed", "error", "Malformed pickle stream",
           "Unknown opcode, FRAME mismatch, stack or memo misuse: the stream is not clean and is not trusted."),
        _c("unreadable", "error", "File cannot be read as a checkpoint",
           "Empty, truncated, corrupt or of an unsupported format. Restore it from a backup or remove it."),
        _c("archive-anomaly", "warning", "Zip container anomaly",
           "Bad CRC, odd flag bits, oversized or missing members. PyTorch may still load it; a scanner must not trust it blindly."),
        _c("safetensors-invalid", "error", "Invalid safetensors file",
           "Header length, JSON, dtypes, offsets or __metadata__ violate the format."),
        _c("tensor-implausible", "error", "Tensor declares an impossible size",
           "A tensor's shape or storage is larger than the file can hold (a memory-exhaustion trick or corruption)."),
        _c("format-unsupported", "error", "Pickle-bearing format that cannot be fully read",
           "A tar-format torch file, a compressed stream ckreg cannot open, or a zip stored inside a checkpoint that cannot be opened or nests too deep: loading it runs pickle, and ckreg cannot vouch for all of it. Re-save the weights as safetensors."),
        _c("npy-object-array", "warning", "numpy array of Python objects",
           "numpy.load(allow_pickle=True) unpickles this array's data; its globals are judged like any pickle. Store numbers, not objects."),
        _c("model-folder-invalid", "error", "Model folder's index or config disagrees with its files",
           "A shard the index names is missing, a tensor sits in another shard than indexed or in none, or config.json cannot be parsed. Re-save the folder with save_pretrained."),
        _c("format-needs-extra", "warning", "Format needs an optional extra to be read",
           "The file is recognised (e.g. ONNX) but reading its tensors needs an extra: pip install 'ckreg[onnx]'."),
        _c("torchscript-code", "warning", "TorchScript archive: loading it runs its code",
           "torch.jit.load (and torch.load on such a file) compiles and runs the archive's code/ folder. ckreg read the weights without running it; trust the archive only as far as its source."),
        # -- inspection (inspect/) --
        _c("family-unknown", "note", "No known family matches",
           "The weights match no family in the spec; a generic description is given."),
        _c("family-ambiguous", "warning", "Weights fit several families equally",
           "The weights cannot tell these families apart (e.g. ScaleAware vs ScaleHard); record the family in metadata or the manifest."),
        _c("family-broken", "warning", "Family recognised but its shapes break",
           "The key signature matches a family but some shapes do not; the file will not load strictly into that family."),
        _c("metadata-contradicts-weights", "warning", "Stored hyper_parameters contradict the weights",
           "The checkpoint's hyper_parameters disagree with what the tensors show; trust the weights and fix the metadata."),
        # -- audit (audit.py) --
        _c("family-mislabeled", "error", "Family differs from its label",
           "The manifest entry or the file/folder name says one family, the weights another. Rename with `ckreg rename --infer` or fix the manifest."),
        _c("layers-mismatch", "error", "Recurrent layer count differs from the declaration", "Fix the manifest or retrain."),
        _c("hidden-size-mismatch", "error", "Hidden size differs from the declaration", "Fix the manifest or retrain."),
        _c("classes-mismatch", "error", "Class count differs from the declaration", "Fix the manifest or retrain."),
        _c("input-size-mismatch", "error", "Input width differs from the declaration", "Fix the manifest or retrain."),
        _c("hyperparameter-mismatch", "error", "A declared hyperparameter differs from the weights", "Fix the manifest or retrain."),
        _c("shape-drift", "error", "Tensor shapes differ from the declared architecture",
           "The code (manifest) and the weights disagree on a shape, e.g. a tower kernel; strict loading will fail."),
        _c("param-count-mismatch", "error", "Parameter count differs from the declaration", "Fix the manifest or retrain."),
        _c("model-missing", "error", "Declared model has no checkpoint",
           "No file satisfies the declaration, by path or by content. Train it with `ckreg retrain --missing`."),
        _c("checkpoint-undeclared", "warning", "Checkpoint not declared in the manifest", "Declare it or remove it."),
        _c("scaler-missing", "warning", "Checkpoint has no scaler",
           "Inference needs the scaler the model was trained with; recover one with `ckreg scaler recover`."),
        _c("scaler-ambiguous", "warning", "One scaler is paired with several checkpoints",
           "A scaler belongs to one training run; verify which with `ckreg audit --data`."),
        _c("scaler-feature-mismatch", "error", "Scaler feature count differs from the model input", "Pair the model with its own scaler."),
        _c("duplicate-weights", "warning", "Several files hold identical weights", "Keep one; the others waste space and confuse provenance."),
        _c("scaler-duplicate", "warning", "Several scaler files are identical",
           "Same bytes or the same statistics: two training runs never fit the same scaler, so at most one of these belongs to its checkpoint. Verify with `ckreg audit --data`, recover the others with `ckreg scaler recover`."),
        _c("keys-missing", "error", "Declared state_dict keys are missing from the file",
           "The declared architecture (a module: lock or a reference: checkpoint) has keys the weights lack; strict loading will fail."),
        _c("keys-unexpected", "error", "The file has state_dict keys the declaration lacks",
           "The weights carry keys the declared architecture does not have (a changed or added layer); strict loading will fail."),
        _c("lineage", "note", "Checkpoint derives from another one in the tree",
           "Read from the weights (identical, transplanted, fine-tuned-from) or recorded by the trainer (distilled-from); see `ckreg lineage`."),
        # -- rename (rename.py) --
        _c("rename-collision", "warning", "Content-derived name is taken by another file",
           "`ckreg rename` left this file alone: the name its content implies already belongs to a different file. Move that file, or use a --template with {hash8}."),
        # -- verification (verify.py) --
        _c("verify-failed", "error", "Checkpoint does not load or predict",
           "Strict loading into the zoo failed or predictions are not finite."),
        _c("accuracy-below-declared", "error", "Pair misses its declared accuracy",
           "The checkpoint with this scaler does not reach the declared accuracy on the data."),
        _c("scaler-recovered", "note", "A re-fitted scaler makes the pair pass",
           "The paired scaler is wrong; the named recipe reproduces the training scaler. Run `ckreg scaler recover`."),
    ]
)


class Finding(BaseModel):
    """One thing wrong (or worth knowing) about one path."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    code: str
    severity: Severity
    path: str | None = None
    message: str
    expected: Any = None
    actual: Any = None

    @classmethod
    def make(cls, code: str, message: str, *, path: str | None = None, severity: Severity | str | None = None,
             expected: Any = None, actual: Any = None) -> "Finding":
        """Build a finding with the code's default severity (codes must be registered in CODES)."""
        info = CODES[code]
        sev = Severity(severity) if severity is not None else info.severity
        return cls(code=code, severity=sev, path=path, message=message, expected=expected, actual=actual)


class Skipped(BaseModel):
    model_config = ConfigDict(frozen=True, defer_build=True)
    path: str
    reason: str


class ErrorEntry(BaseModel):
    """A failure to process a path (I/O error, crash in one file): not a finding about its content."""

    model_config = ConfigDict(frozen=True, defer_build=True)
    path: str | None
    message: str


# Exit codes (issue #4). A crash (an unexpected exception) is 4, never 1.
EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_NOTHING = 3
EXIT_CRASH = 4

FAIL_ON = ("error", "warning", "never")


class Report(BaseModel):
    """The result of a run over many files."""

    model_config = ConfigDict(defer_build=True)

    tool: str = "ckreg"
    version: str = ""
    command: str = ""
    root: str | None = None
    checked: list[str] = Field(default_factory=list)
    findings: list[Finding] = Field(default_factory=list)
    skipped: list[Skipped] = Field(default_factory=list)
    errors: list[ErrorEntry] = Field(default_factory=list)
    extra: dict[str, Any] = Field(default_factory=dict)

    def tally(self) -> "Tally":
        """The counts a summary line, an exit code and a JSON summary are made of."""
        counts = {s.value: 0 for s in Severity}
        for f in self.findings:
            counts[f.severity.value] += 1
        return Tally(checked=len(self.checked), counts=counts, skipped=len(self.skipped), errors=len(self.errors),
                     shard=isinstance(self.extra.get("shard"), dict))

    def exit_code(self, fail_on: str = "error") -> int:
        return self.tally().exit_code(fail_on)


@dataclass(frozen=True)
class Tally:
    """A report counted: what its exit code and its one summary line depend on (a `Report` or a
    `KeptReport` alike, so both give the same code for the same findings)."""

    checked: int
    counts: dict[str, int]     # severity -> number of findings
    skipped: int
    errors: int
    shard: bool = False        # a shard's report (extra["shard"]): an empty share is no failure

    def exit_code(self, fail_on: str = "error") -> int:
        if fail_on not in FAIL_ON:
            raise ValueError(f"fail_on must be one of {FAIL_ON}")
        if self.errors:
            return EXIT_USAGE
        if not self.checked:   # a shard's share may hold nothing: the merge tells whether the archive does
            return EXIT_OK if self.shard else EXIT_NOTHING
        if fail_on == "never":
            return EXIT_OK
        threshold = Severity(fail_on).rank
        if any(n and Severity(sev).rank >= threshold for sev, n in self.counts.items()):
            return EXIT_FINDINGS
        return EXIT_OK

    def as_dict(self) -> dict[str, Any]:
        return {"checked": self.checked, "counts": dict(self.counts), "skipped": self.skipped,
                "errors": self.errors, "shard": self.shard}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Tally":
        counts = data["counts"]
        if set(counts) != {s.value for s in Severity} or not all(type(v) is int for v in counts.values()):
            raise ValueError("a tally counts findings by severity")
        fields = [data[k] for k in ("checked", "skipped", "errors")]
        if not all(type(v) is int and v >= 0 for v in fields) or type(data["shard"]) is not bool:
            raise ValueError("a tally holds counts")
        return cls(checked=data["checked"], counts=dict(counts), skipped=data["skipped"], errors=data["errors"],
                   shard=data["shard"])


class KeptReport:
    """A whole report as an earlier run kept it: its JSON form, with this run's own figures to put in.

    Why: an unchanged archive's audit is answered from the report its last audit kept
    (`ckreg.audit`), and turning megabytes of JSON back into thousands of `Finding` objects,
    only to write them out as the same JSON, would be most of that answer's time. The JSON
    reporter writes `text` as it is, with `run` spliced into `extra`
    (`ckreg.report.json_report`); any other use asks `report()`, which validates the text into
    a `Report` like any stored one.

    - `text`: `Report.model_dump_json(indent=2)` of the report without the `run` keys of extra;
    - `run`: entries of extra that belong to this run (jobs, cache figures), written last;
    - `tally()`: the report counted; `errors`: its errors; `extra`: its extra without the entries
      the keeper named heavy (per-file summaries), with `run`.
    """

    __slots__ = ("text", "run", "_tally", "errors", "extra", "_report")

    def __init__(self, text: str, run: dict[str, Any], tally: Tally, errors: list[ErrorEntry],
                 extra: dict[str, Any]):
        if not (text.startswith("{\n") and text.endswith("\n}")):
            raise ValueError("a kept report is the indented JSON form of a report")
        self.text, self.run, self._tally, self.errors = text, dict(run), tally, list(errors)
        self.extra = {**extra, **run}
        self._report: Report | None = None

    @classmethod
    def keep(cls, report: Report, run_keys: tuple[str, ...], heavy: tuple[str, ...] = ()) -> tuple[str, str]:
        """(text, head) of `report` to store: `head` is the JSON of everything else `load` needs."""
        text = report.model_dump_json(indent=2, exclude={"extra": set(run_keys)})
        light = {k: v for k, v in report.extra.items() if k not in heavy and k not in run_keys}
        head = Report(errors=report.errors, extra=light).model_dump(mode="json", include={"errors", "extra"})
        run = {k: report.extra[k] for k in run_keys if k in report.extra}
        return text, json.dumps({"tally": report.tally().as_dict(), "head": head, "run": run}, ensure_ascii=False)

    @classmethod
    def load(cls, text: str, head: str) -> "KeptReport":
        """From what `keep` gave, with the kept run's figures (ValueError when `head` is not such a record)."""
        data = json.loads(head)
        if not isinstance(data, dict) or not isinstance(data.get("head"), dict) or not isinstance(data.get("run"), dict):
            raise ValueError("not a kept report's head")
        small = Report.model_validate(data["head"])
        try:
            tally = Tally.from_dict(data["tally"])
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"not a kept report's tally: {e}") from None
        return cls(text, data["run"], tally, small.errors, small.extra)

    def set_run(self, run: dict[str, Any]) -> None:
        """This run's figures in place of the kept ones."""
        self.extra = {**{k: v for k, v in self.extra.items() if k not in self.run}, **run}
        self.run = dict(run)
        self._report = None

    def tally(self) -> Tally:
        return self._tally

    def exit_code(self, fail_on: str = "error") -> int:
        return self._tally.exit_code(fail_on)

    def report(self) -> Report:
        """The `Report` itself, validated from the text (once), with this run's figures."""
        if self._report is None:
            report = Report.model_validate_json(self.text)
            report.extra.update(self.run)
            self._report = report
        return self._report
