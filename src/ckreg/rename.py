"""Rename checkpoints by what they contain (issue #4, "Rename").

A name like `GRU_best.ckpt` says what someone believed; the weights say what
is there. `plan_rename` inspects every checkpoint under a root and derives a
name from content only: family, the hyperparameters that tell variants apart
and a short hash of the weights (timm's `clean_checkpoint` writes
`name-sha256[:8].ext`; we hash the *weights*, `Inspection.weights_sha256`, so
identical weights get identical names whatever their wrapper bytes). The
result is deterministic and idempotent: a second run plans nothing.

Safety rules (issue #4; DEVELOPING.md "never overwrite or delete a user's file"):

- Planning touches nothing. Unknown, unreadable, ambiguous, broken or unsafe
  files are skipped with a reason, never renamed.
- Applying never clobbers: each move is an atomic no-replace rename
  (`renameat2(RENAME_NOREPLACE)` on Linux, `renamex_np(RENAME_EXCL)` on macOS,
  else `os.link` + `os.unlink`, else an existence check + `os.rename`).
  Two files whose content implies the same name hold identical weights: the
  first keeps/gets the name, the others stay put and are reported
  (`duplicate-weights`); an unrelated file at the target is left alone
  (`rename-collision`).
- Companions (`x.ckpt` + `x.scaler.pkl` / `x.json` / `x.yaml`, any
  `x.<rest>` that is not itself a checkpoint) move with their checkpoint, or
  the whole group stays. Files never leave their folder, so a folder-level
  `scaler.pkl` keeps pairing by folder and is not touched.
- Every applied run writes a journal (`<root>/.ckreg/journal-<UTC>.jsonl`):
  an fsynced *intent* record before each move and a *done* record after, so
  after `kill -9` every file is under its old or its new name and
  `undo_rename` can still put everything back. Undo never clobbers either.
- With a manifest, its checkpoint/scaler paths are rewritten in place
  (only the path scalars change; comments and layout are kept), written to a
  temporary file and `os.replace`d; the journal holds the original bytes so
  undo restores the manifest byte for byte.

Torch-free: inspection goes through `ckreg.inspect` (imported lazily).
"""

from __future__ import annotations

import base64
import ctypes
import errno
import hashlib
import json
import os
import string
import sys
import time
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable, Literal, Sequence

from pydantic import BaseModel, Field

from ckreg.fsutil import file_sha256, fsync_dir, write_bytes
from ckreg.arch import FAMILIES, ArchSpec
from ckreg.families import names_in, registry
from ckreg.errors import CkregError, UsageError
from ckreg.findings import EXIT_FINDINGS, EXIT_OK, Finding, Skipped

__all__ = [
    "DEFAULT_TEMPLATE", "TEMPLATE_FIELDS", "CHECKPOINT_SUFFIXES", "JOURNAL_DIR",
    "Move", "ManifestEdit", "RenamePlan", "Journal", "UndoResult", "JournalError",
    "plan_rename", "plan_from_inspections", "apply_rename", "undo_rename",
    "validate_template", "render_name", "variant_tokens", "find_journal", "read_journal", "interrupted_journals",
]

# `{ext}` carries its dot (".ckpt"; "" for a file without one) so a template
# never produces a trailing dot.
DEFAULT_TEMPLATE = "{family}-{variant}-{hash8}{ext}"

# Files treated as checkpoints (longest first: ".pth.tar" before ".tar").
CHECKPOINT_SUFFIXES: tuple[str, ...] = (".pth.tar", ".ckpt", ".pt", ".pth", ".bin", ".safetensors")

JOURNAL_DIR = ".ckreg"
JOURNAL_VERSION = 1
# Folders never walked: our own journals, VCS metadata, caches.
_SKIP_DIRS = {JOURNAL_DIR, ".git", ".hg", ".svn", "__pycache__"}
# Test-only hook (issue #4: "an interrupted run ... Test that"): seconds to
# sleep after each checkpoint group, so a test can SIGKILL a run half-way.
_DELAY_ENV = "CKREG_RENAME_TEST_DELAY"

# Findings that make a file unfit for a content-derived name: a name must not
# launder an unsafe or corrupt file into a clean-looking one.
_REFUSE_CODES = {"unsafe-global", "pickle-malformed", "tensor-implausible", "safetensors-invalid",
                 "unreadable", "family-broken", "family-ambiguous"}

# name -> help, for --help and the docs; every field is content-derived.
TEMPLATE_FIELDS: dict[str, str] = {
    "family": "family, lower case (gru, mscsgru, ms3dgru, mscsgru_scaleaware, wrn)",
    "Family": "family as the spec spells it (MSCSGRU_ScaleAware)",
    "variant": "the tokens that tell variants apart: l<layers>-h<hidden>-k<classes>, plus "
               "c<input> / bi / p<proj> / f<filters> / <n>d / t<kernels> / cell when not the family default; "
               "WRN: d<depth>-w<widen>-<n>d-k<classes>",
    "input_size": "input channels", "hidden_size": "recurrent hidden size",
    "num_layers": "recurrent layers in total", "num_classes": "output classes",
    "cell": "GRU / LSTM / RNN", "bidirectional": "'bi' or 'uni'", "proj_size": "input projection width",
    "cnn_filters": "CNN filters per tower", "conv_dim": "1, 2 or 3",
    "tower_kernels": "tower kernels, e.g. 3_5_7 or 3_3x5x3_7", "depth": "WRN depth",
    "widen_factor": "WRN widen factor", "params": "trainable parameter count",
    "hash8": "first 8 hex digits of the weights' sha256", "hash": "the weights' full sha256 (use {hash:.12} for 12)",
    "ext": "the file's extension with its dot (.ckpt, .pth.tar)",
}
_INT_FIELDS = {"input_size", "hidden_size", "num_layers", "num_classes", "proj_size", "cnn_filters",
               "conv_dim", "depth", "widen_factor", "params"}
_NAME_OK = set(string.ascii_letters + string.digits + "._-+=,@")


class JournalError(CkregError):
    """A journal is missing, corrupted or does not belong to this tree."""


# --------------------------------------------------------------------------- models


class Move(BaseModel):
    """One planned (or applied) rename inside one folder; paths are relative to the root, posix style."""

    old: str
    new: str
    role: Literal["checkpoint", "companion"] = "checkpoint"
    group: int = 0                       # a checkpoint and its companions share a group
    reason: str = ""
    evidence: list[str] = Field(default_factory=list)
    weights_sha256: str | None = None
    sha256: str | None = None            # file bytes, when the inspector gave them
    size: int | None = None
    mtime_ns: int | None = None          # to refuse a stale plan


class ManifestEdit(BaseModel):
    """One path scalar of the manifest that follows a rename."""

    model: str                           # the model's name (or index)
    field: str                           # dotted location, e.g. "models.2.checkpoint.path"
    loc: list[Any] = Field(default_factory=list)
    old: str
    new: str
    group: int = 0


class RenamePlan(BaseModel):
    """What `rename --infer` would do, and why; `apply_rename` executes it."""

    root: str
    template: str = DEFAULT_TEMPLATE
    moves: list[Move] = Field(default_factory=list)
    unchanged: list[str] = Field(default_factory=list)   # already named by content
    skipped: list[Skipped] = Field(default_factory=list)
    findings: list[Finding] = Field(default_factory=list)
    manifest: str | None = None
    manifest_sha256: str | None = None
    manifest_edits: list[ManifestEdit] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)          # worth knowing, not a problem

    @property
    def empty(self) -> bool:
        return not self.moves and not self.manifest_edits

    def groups(self) -> list[list[Move]]:
        out: dict[int, list[Move]] = {}
        for m in self.moves:
            out.setdefault(m.group, []).append(m)
        return [out[k] for k in sorted(out)]

    def exit_code(self, fail_on: str = "error") -> int:
        """0 when the plan can be carried out: its warnings (collisions, duplicates) are shown, not failed
        on, unless `fail_on="warning"`; 1 when a finding at or above `fail_on` was reported."""
        return findings_exit(self.findings, fail_on)


class Journal(BaseModel):
    """The result of `apply_rename`: what moved, what was left, and where the journal is."""

    path: str | None = None              # None when there was nothing to do
    root: str
    applied: list[Move] = Field(default_factory=list)
    skipped: list[Skipped] = Field(default_factory=list)
    findings: list[Finding] = Field(default_factory=list)
    manifest: str | None = None
    manifest_updated: bool = False

    def exit_code(self, fail_on: str = "error") -> int:
        """0 when the renames succeeded (warnings shown), 1 with a finding at or above `fail_on`."""
        return findings_exit(self.findings, fail_on)


class UndoResult(BaseModel):
    journal: str
    root: str
    restored: list[Move] = Field(default_factory=list)      # moved back (new -> old)
    already: list[str] = Field(default_factory=list)        # already under the old name
    conflicts: list[Skipped] = Field(default_factory=list)  # left alone, with why
    manifest: str | None = None
    manifest_restored: bool | None = None                   # None: the run did not touch a manifest

    def exit_code(self) -> int:
        return EXIT_FINDINGS if self.conflicts else EXIT_OK


def findings_exit(findings: list[Finding], fail_on: str = "error") -> int:
    """1 when a finding is at or above `fail_on` (error, warning; never: always 0), else 0."""
    from ckreg.findings import FAIL_ON, Severity

    if fail_on not in FAIL_ON:
        raise UsageError(f"fail_on must be one of {', '.join(FAIL_ON)}, got {fail_on!r}")
    if fail_on == "never":
        return EXIT_OK
    threshold = Severity(fail_on).rank
    return EXIT_FINDINGS if any(f.severity.rank >= threshold for f in findings) else EXIT_OK


# --------------------------------------------------------------------------- naming


def _suffix(name: str) -> str:
    low = name.lower()
    for suf in CHECKPOINT_SUFFIXES:
        if low.endswith(suf) and len(name) > len(suf):
            return name[-len(suf):]
    dot = name.rfind(".")
    return name[dot:] if dot > 0 else ""


def _is_checkpoint_name(name: str) -> bool:
    low = name.lower()
    return any(low.endswith(s) and len(name) > len(s) for s in CHECKPOINT_SUFFIXES)


def _stem(name: str) -> str:
    suf = _suffix(name)
    return name[: len(name) - len(suf)] if suf else name


def _towers(kernels: Any) -> str:
    parts = []
    for tower in kernels or []:
        dims = [int(k) for k in (tower if isinstance(tower, (list, tuple)) else [tower])]
        parts.append(str(dims[0]) if len(set(dims)) == 1 else "x".join(map(str, dims)))
    return "_".join(parts)


def _norm_kernels(kernels: Any) -> list[list[int]] | None:
    if kernels is None:
        return None
    return [[int(k) for k in (t if isinstance(t, (list, tuple)) else [t])] for t in kernels]


def _hp(hp: dict, key: str) -> Any:
    """A hyperparameter as a plain value, or None when absent or not a value ("not recorded ...")."""
    v = hp.get(key)
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if key == "cell" and isinstance(v, str):
        return v
    if key == "tower_kernels" and isinstance(v, (list, tuple)):
        return _norm_kernels(v)
    if isinstance(v, str) and v.isdigit():
        return int(v)
    return None


def variant_tokens(family: str, hp: dict) -> list[str]:
    """The tokens that tell variants of one family apart (defaults of the spec left out, except l/h/k).

    `l`, `h` and `k` are always written because they are what people ask
    about first (`gru-l2-h64-k24-...`); the rest only when they differ from the
    family's reference configuration, to keep names short.
    """
    if family not in FAMILIES:
        return _declared_tokens(family, hp)
    ref = ArchSpec.for_family(family) if family in FAMILIES else None
    g = lambda k: _hp(hp, k)  # noqa: E731
    tokens: list[str] = []
    if family == "WRN":
        if g("depth") is not None:
            tokens.append(f"d{g('depth')}")
        if g("widen_factor") is not None:
            tokens.append(f"w{g('widen_factor')}")
        if g("conv_dim") is not None:
            tokens.append(f"{g('conv_dim')}d")
    else:
        if g("num_layers") is not None:
            tokens.append(f"l{g('num_layers')}")
        if g("hidden_size") is not None:
            tokens.append(f"h{g('hidden_size')}")
    if g("num_classes") is not None:
        tokens.append(f"k{g('num_classes')}")
    if g("input_size") is not None and g("input_size") != 8:
        tokens.append(f"c{g('input_size')}")
    if family != "WRN":
        if g("bidirectional"):
            tokens.append("bi")
        proj, hid = g("proj_size"), g("hidden_size")
        if proj is not None and hid is not None and proj != 2 * hid:
            tokens.append(f"p{proj}")
        cell = g("cell")
        if cell and ref is not None and ref.cell and str(cell).upper() != ref.cell:
            tokens.append(str(cell).lower())
        if g("cnn_filters") is not None and ref is not None and g("cnn_filters") != ref.cnn_filters:
            tokens.append(f"f{g('cnn_filters')}")
        if g("conv_dim") is not None and ref is not None and g("conv_dim") != ref.conv_dim:
            tokens.append(f"{g('conv_dim')}d")
        kern = g("tower_kernels")
        if kern is not None and ref is not None and kern != ref.tower_kernels:
            tokens.append("t" + _towers(kern))
    return tokens


# Short tokens for the hyperparameter names people share across families.
_SHORT = {"num_layers": "l", "hidden_size": "h", "num_classes": "k", "input_size": "c"}


def _declared_tokens(family: str, hp: dict) -> list[str]:
    """A declared family's variant tokens: l/h/k always, every other hyperparameter off its default."""
    rec = registry().find(family)
    defaults = rec.defaults() if rec is not None else {}
    tokens = []
    order = list(rec.hyperparameters if rec is not None else hp)
    first = [n for n in ("num_layers", "hidden_size", "num_classes") if n in order]
    for name in first + [n for n in order if n not in first]:
        value = _hp(hp, name)
        if value is None or isinstance(value, (list, bool)):
            continue
        short = _SHORT.get(name)
        if short in ("l", "h", "k") or value != defaults.get(name):
            tokens.append(f"{short or name.replace('_', '').lower()}{value}")
    return tokens


def _fields_for(family: str, hp: dict, weights_sha256: str, ext: str, params: int | None) -> dict[str, Any]:
    g = lambda k: _hp(hp, k)  # noqa: E731
    bidi = g("bidirectional")
    kern = g("tower_kernels")
    return {
        "family": family.lower(),
        "Family": family,
        "variant": "-".join(variant_tokens(family, hp)),
        "input_size": g("input_size"), "hidden_size": g("hidden_size"), "num_layers": g("num_layers"),
        "num_classes": g("num_classes"), "cell": g("cell"),
        "bidirectional": None if bidi is None else ("bi" if bidi else "uni"),
        "proj_size": g("proj_size"), "cnn_filters": g("cnn_filters"), "conv_dim": g("conv_dim"),
        "tower_kernels": None if kern is None else _towers(kern),
        "depth": g("depth"), "widen_factor": g("widen_factor"),
        "params": params if params else None,
        "hash8": weights_sha256[:8], "hash": weights_sha256, "ext": ext,
    }


def validate_template(template: str) -> list[str]:
    """Check a `--template` before any work; return the fields it uses. Raises UsageError with the fix."""
    if not isinstance(template, str) or not template.strip():
        raise UsageError("empty --template", hint=f"the default is {DEFAULT_TEMPLATE!r}")
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise UsageError(f"bad --template {template!r}: {exc}", hint="write fields as {family}; a literal brace as {{ or }}") from exc
    used: list[str] = []
    for literal, name, spec, conv in parsed:
        if any(c in literal for c in "/\\\0"):
            raise UsageError(f"bad --template {template!r}: names stay in their folder, no '/' allowed")
        if name is None:
            continue
        if name == "" or name.isdigit():
            raise UsageError(f"bad --template {template!r}: positional field {{{name}}}",
                             hint="name the field, e.g. {family}; known: " + ", ".join(TEMPLATE_FIELDS))
        if "." in name or "[" in name:
            raise UsageError(f"bad --template {template!r}: {{{name}}} uses attribute or index access",
                             hint="plain fields only: " + ", ".join(TEMPLATE_FIELDS))
        if name not in TEMPLATE_FIELDS:
            raise UsageError(f"unknown --template field {{{name}}}", hint="known fields: " + ", ".join(TEMPLATE_FIELDS))
        if conv not in (None, "s"):
            raise UsageError(f"bad --template {template!r}: conversion !{conv} not allowed")
        if spec and "{" in spec:
            raise UsageError(f"bad --template {template!r}: nested fields in a format spec are not allowed")
        used.append(name)
    if "ext" not in used:
        raise UsageError(f"--template {template!r} has no {{ext}}", hint="the extension is kept: end the template with {ext}")
    # Render samples so a bad format spec ({family:d}) fails now, not per file.
    samples = [
        _fields_for("MS3DGRU", {"input_size": 8, "hidden_size": 64, "num_layers": 1, "num_classes": 24, "cell": "GRU",
                                "cnn_filters": 32, "conv_dim": 3, "tower_kernels": [[3, 3, 3], [3, 5, 3], [7, 7, 7]]},
                    "0" * 64, ".ckpt", 58840),
        _fields_for("GRU", {"input_size": 8, "hidden_size": 64, "num_layers": 2, "num_classes": 24, "cell": "GRU",
                            "bidirectional": True, "proj_size": 128}, "f" * 64, ".pth.tar", 74776),
    ]
    for fields in samples:
        fields = {k: ("" if v is None else v) for k, v in fields.items()} | {
            k: (0 if fields[k] is None else fields[k]) for k in _INT_FIELDS}
        try:
            name = template.format(**fields)
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            raise UsageError(f"bad --template {template!r}: {exc}",
                             hint="format specs must suit the field: {hidden_size:03d} for numbers, {hash:.12} for text") from exc
        _check_name(name, template)
    return used


def _check_name(name: str, template: str) -> None:
    if not name or name in {".", ".."} or name.startswith(".") or len(name.encode()) > 255:
        raise UsageError(f"--template {template!r} renders {name!r}, not a usable file name")
    bad = sorted(set(name) - _NAME_OK)
    if bad:
        raise UsageError(f"--template {template!r} renders {name!r} with characters {''.join(bad)!r}",
                         hint="use letters, digits and . _ - + = , @")


def render_name(template: str, family: str, hyperparameters: dict, weights_sha256: str, ext: str,
                params: int | None = None) -> str:
    """The content-derived file name; raises ValueError naming the field when one does not apply."""
    fields = _fields_for(family, hyperparameters, weights_sha256, ext, params)
    for _lit, name, _spec, _conv in string.Formatter().parse(template):
        if name and fields.get(name) is None:
            raise ValueError(f"template field {{{name}}} has no value for this {family} file")
    name = template.format(**fields)
    if fields.get("variant") == "" and "{variant}" in template:   # a model without variant tokens
        name = name.replace("--", "-").replace("-.", ".").replace("_.", ".")
    _check_name(name, template)
    return name


# --------------------------------------------------------------------------- discovery


def _discover(paths_or_root: str | os.PathLike | Sequence[str | os.PathLike]) -> tuple[Path, list[Path], list[Skipped]]:
    """Root and checkpoint files under it (sorted), never following symlinks."""
    if isinstance(paths_or_root, (str, os.PathLike)):
        items = [Path(paths_or_root)]
    else:
        items = [Path(p) for p in paths_or_root]
    if not items:
        raise UsageError("no path given", hint="ckreg rename --infer PATH")
    files: list[Path] = []
    skipped: list[Skipped] = []
    dirs: list[Path] = []
    for item in items:
        if not os.path.lexists(item):
            raise UsageError(f"{item}: no such file or directory", hint="check the path")
        absd = Path(os.path.abspath(item))
        if absd.is_dir() and not absd.is_symlink():
            dirs.append(absd)
            for dirpath, dirnames, filenames in os.walk(absd, followlinks=False):
                dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
                for fn in sorted(filenames):
                    if _is_checkpoint_name(fn):
                        p = Path(dirpath) / fn
                        if p.is_symlink():
                            skipped.append(Skipped(path=str(p), reason="symbolic link: rename the file it points to"))
                        elif p.is_file():
                            files.append(p)
        elif absd.is_symlink():
            raise UsageError(f"{item}: is a symbolic link", hint="pass the real file or folder")
        elif absd.is_file():
            dirs.append(absd.parent)
            files.append(absd)
        else:
            raise UsageError(f"{item}: not a regular file or folder")
    root = Path(os.path.commonpath([str(d) for d in dirs]))
    files = sorted(set(files), key=lambda p: p.as_posix())
    return root, files, skipped


def _rel(root: Path, p: Path | str) -> str:
    return Path(os.path.relpath(p, root)).as_posix()


def _companions(ckpts: list[Path]) -> dict[Path, list[Path]]:
    """Companion files by checkpoint: same folder, name `<stem>.<rest>`, not a checkpoint (longest stem wins)."""
    by_dir: dict[Path, list[Path]] = {}
    for c in ckpts:
        by_dir.setdefault(c.parent, []).append(c)
    out: dict[Path, list[Path]] = {c: [] for c in ckpts}
    for folder, members in by_dir.items():
        stems = sorted(((_stem(c.name), c) for c in members), key=lambda t: -len(t[0]))
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            continue
        for fn in names:
            p = folder / fn
            if _is_checkpoint_name(fn) or p.is_symlink() or not p.is_file():
                continue
            for stem, owner in stems:
                if stem and fn.startswith(stem + ".") and len(fn) > len(stem) + 1:
                    out[owner].append(p)
                    break
    return out


# --------------------------------------------------------------------------- planning


def _default_inspector(paths: list[Path], jobs: int) -> list:
    from ckreg.inspect import inspect_paths  # lazy: rename sits above inspect

    return list(inspect_paths([str(p) for p in paths], hash_weights=True, jobs=jobs))


def plan_rename(paths_or_root: str | os.PathLike | Sequence[str | os.PathLike], template: str = DEFAULT_TEMPLATE,
                manifest: str | os.PathLike | None = None, *, jobs: int = 1,
                inspector: Callable[[list[Path], int], Iterable] | None = None,
                families: Iterable[str | os.PathLike] = ()) -> RenamePlan:
    """Inspect the checkpoints under `paths_or_root` and plan content-derived names. Touches nothing.

    Raises UsageError for a missing path or a bad template, ManifestError for
    a bad manifest; per-file problems become `skipped` entries or findings.
    """
    validate_template(template)
    if families:
        from ckreg.families import add_family_files

        add_family_files(list(families))   # declared families name files too (docs/families.md)
    if manifest is not None:
        from ckreg.manifest import load_manifest

        load_manifest(manifest)   # validated (and its families: registered) before any work
    root, files, skipped = _discover(paths_or_root)
    insps = list((inspector or _default_inspector)(files, max(1, int(jobs)))) if files else []
    plan = plan_from_inspections(root, insps, template=template, manifest=manifest)
    plan.skipped[:0] = [Skipped(path=_rel(root, s.path), reason=s.reason) for s in skipped]
    for j in interrupted_journals(root / JOURNAL_DIR):
        plan.notes.append(f"an earlier rename was interrupted ({j}); applying is refused until "
                          f"`ckreg rename --undo {j}` has restored it")
    return plan


def _declared_layouts(manifest: str | os.PathLike | None) -> dict[str, dict[str, tuple]]:
    """name -> {key: shape} of the manifest's module:/reference: models (from the lock / the reference)."""
    if manifest is None:
        return {}
    from ckreg.manifest import load_manifest

    from ckreg.readers.unwrap import strip_prefixes

    out = {}
    for name, e in load_manifest(manifest).expected_layouts().items():
        keys, _ = strip_prefixes(list(e["keys"]))   # as the readers unwrap the file's keys
        out[name] = {k: tuple(v[1]) for k, v in zip(keys, e["keys"].values())}
    return out


def _declared_model(insp: Any, declared: dict[str, dict[str, tuple]]) -> str | None:
    """The one declared module:/reference: model whose layout the file matches exactly."""
    if not declared or getattr(insp, "error", None) or not getattr(insp, "layout", None):
        return None
    shapes = {k: tuple(v[1]) for k, v in insp.layout.items()}
    hits = [name for name, lay in declared.items() if lay == shapes]
    return hits[0] if len(hits) == 1 else None


def _refusal(insp: Any, declared: dict | None = None) -> str | None:
    """Why this inspection must not give its file a content name, or None."""
    if getattr(insp, "error", None):
        return f"unreadable: {insp.error}"
    family = getattr(insp, "family", "unknown")
    if family == "ambiguous":
        between = ", ".join(getattr(insp, "ambiguous_between", []) or []) or "several families"
        return f"ambiguous: the weights fit {between} equally (record the family in metadata)"
    if family not in registry() and family not in (declared or {}):
        return "no known family matches the weights"
    for f in getattr(insp, "findings", []) or []:
        if f.code in _REFUSE_CODES:
            return f"{f.code}: {f.message}"
    if not getattr(insp, "weights_sha256", None):
        return "no weights hash (the inspector could not read the tensor bytes)"
    return None


def _reason(insp: Any, tokens: list[str], old_name: str) -> str:
    parts = [f"weights are {insp.family}"]
    if tokens:
        parts.append(" ".join(tokens))
    parts.append(f"weights {insp.weights_sha256[:8]}")
    conf = getattr(insp, "confidence", None)
    if conf:
        parts.append(f"confidence {conf:.2f}")
    text = ", ".join(parts)
    named = names_in(old_name.replace("/", " "))
    if named:
        said = max(named, key=len)
        if said != insp.family:
            text += f"; the old name says {said}"
    return text


def plan_from_inspections(root: str | os.PathLike, inspections: Iterable, *, template: str = DEFAULT_TEMPLATE,
                          manifest: str | os.PathLike | None = None) -> RenamePlan:
    """Plan from ready-made `Inspection`s (the pure core; `plan_rename` adds discovery and inspection).

    The filesystem is only read: companions and existing targets are looked up on disk.
    """
    validate_template(template)
    root = Path(os.path.abspath(root))
    plan = RenamePlan(root=str(root), template=template)
    insps = sorted(inspections, key=lambda i: Path(os.path.abspath(i.path)).as_posix())
    by_path = {Path(os.path.abspath(i.path)): i for i in insps}
    ckpts = list(by_path)
    companions = _companions(ckpts)

    # 1. a name for each file, or a reason not to
    declared = _declared_layouts(manifest)
    named: list[tuple[Path, Any, str, list[str]]] = []
    for path, insp in by_path.items():
        rel = _rel(root, path)
        model = _declared_model(insp, declared)
        if model is not None:   # exactly a declared module:/reference: model: named after it
            insp = insp.model_copy(update={"family": model, "hyperparameters": {}})
        why = _refusal(insp, declared)
        if why:
            plan.skipped.append(Skipped(path=rel, reason=why))
            continue
        hp = dict(insp.hyperparameters or {})
        params = getattr(getattr(insp, "params", None), "trainable", None)
        try:
            new = render_name(template, insp.family, hp, insp.weights_sha256, _suffix(path.name), params)
        except (ValueError, UsageError) as exc:
            plan.skipped.append(Skipped(path=rel, reason=str(exc)))
            continue
        named.append((path, insp, new, variant_tokens(insp.family, hp)))

    # 2. files already named by content claim their names first (idempotence)
    claimed: dict[Path, tuple[str, str]] = {}   # target -> (owner rel, weights sha)
    pending = []
    for path, insp, new, tokens in named:
        if path.name == new:
            plan.unchanged.append(_rel(root, path))
            claimed[path] = (_rel(root, path), insp.weights_sha256)
            for comp in companions.get(path, []):
                claimed[comp] = (_rel(root, path), insp.weights_sha256)
        else:
            pending.append((path, insp, new, tokens))

    # 3. the rest: first come, first named, never onto a taken name. Of two
    # identical checkpoints the one with companions (a sidecar scaler) wins, then
    # the shorter stem in each folder (GRU_best.ckpt before Lightning's
    # GRU_best-v1.ckpt), then path order: deterministic.
    pending.sort(key=lambda t: (not companions.get(t[0]), t[0].parent.as_posix(), _stem(t[0].name), t[0].name))
    dup_of: dict[str, list[str]] = {}
    group = 0
    for path, insp, new, tokens in pending:
        rel = _rel(root, path)
        target = path.parent / new
        wsha = insp.weights_sha256
        holder = claimed.get(target)
        if holder is None and os.path.lexists(target) and not _same_file(path, target):
            other = by_path.get(target)
            holder = (_rel(root, target), getattr(other, "weights_sha256", None) if other else None)
        if holder is not None:
            owner, osha = holder
            if osha == wsha:
                plan.skipped.append(Skipped(path=rel, reason=f"identical weights to {owner}, which has the name {new}"))
                dup_of.setdefault(owner, []).append(rel)
            else:
                plan.skipped.append(Skipped(path=rel, reason=f"{new} is taken by {owner} (different content)"))
                plan.findings.append(Finding.make(
                    "rename-collision", f"{rel} would be named {new}, which {owner} already has; left alone",
                    path=rel, expected=new, actual=owner))
            continue
        moves = [Move(old=rel, new=_rel(root, target), role="checkpoint", reason=_reason(insp, tokens, rel),
                      evidence=list(getattr(insp, "evidence", []) or [])[:6], weights_sha256=wsha,
                      sha256=getattr(insp, "sha256", None))]
        new_stem = _stem(new)
        old_stem = _stem(path.name)
        blocked = None
        for comp in companions.get(path, []):
            ctarget = comp.parent / (new_stem + comp.name[len(old_stem):])
            if ctarget in claimed or (os.path.lexists(ctarget) and not _same_file(comp, ctarget)):
                blocked = f"its companion {comp.name} cannot become {ctarget.name}: the name is taken"
                break
            moves.append(Move(old=_rel(root, comp), new=_rel(root, ctarget), role="companion",
                              reason=f"companion of {rel}: keeps its pairing", sha256=None))
        if blocked:
            plan.skipped.append(Skipped(path=rel, reason=blocked))
            plan.findings.append(Finding.make("rename-collision", f"{rel}: {blocked}; left alone", path=rel))
            continue
        for m in moves:
            src = root / m.old
            st = os.lstat(src)
            m.group, m.size, m.mtime_ns = group, st.st_size, st.st_mtime_ns
            if m.role == "companion":
                m.sha256 = file_sha256(src)   # companions are small; lets undo be checked byte for byte
            claimed[root / m.new] = (m.old, wsha)
        lone = path.parent / "scaler.pkl"
        if lone.is_file() and sum(1 for c in ckpts if c.parent == path.parent) == 1:
            moves[0].evidence.append("scaler.pkl stays in the folder: the pairing by folder is unchanged")
        plan.moves.extend(moves)
        group += 1

    # 4. identical weights are worth saying whether or not the names collided
    by_hash: dict[str, list[str]] = {}
    for path, insp, _new, _t in named:
        by_hash.setdefault(insp.weights_sha256, []).append(_rel(root, path))
    for wsha, rels in by_hash.items():
        if len(rels) > 1:
            keeper = next((r for r in rels if r in dup_of), rels[0])
            others = [r for r in rels if r != keeper]
            plan.findings.append(Finding.make(
                "duplicate-weights", f"{len(rels)} files hold identical weights ({wsha[:8]}): {', '.join(rels)}",
                path=keeper, expected=keeper, actual=others))

    if manifest is not None:
        _plan_manifest(plan, Path(manifest))
    return plan


def _same_file(a: Path, b: Path) -> bool:
    """True when b is a itself under another spelling (case-insensitive file systems)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


# --------------------------------------------------------------------------- manifest


def _plan_manifest(plan: RenamePlan, manifest: Path) -> None:
    """Find the manifest's checkpoint/scaler paths that name moved files.

    Manifest paths are relative to the audited root (`ckreg.manifest.ModelDecl.path`),
    which for rename is the PATH being renamed. Globs are left alone: they say
    which files may hold a model, and the audit matches by content anyway; one
    that no longer matches a renamed file gets a note.
    """
    from ckreg import yamlio
    from ckreg.manifest import is_glob, load_manifest, path_matches  # validates before any work (issue #4)

    if not manifest.is_file():
        raise UsageError(f"{manifest}: no such manifest", hint="check the -m path")
    loaded = load_manifest(manifest)
    data = yamlio.load_path(manifest)
    plan.manifest = str(Path(os.path.abspath(manifest)))
    plan.manifest_sha256 = file_sha256(manifest)
    moved = {m.old: m for m in plan.moves}
    raw_models = data.get("models") if isinstance(data, dict) else None
    for i, decl in enumerate(loaded.models):
        raw = raw_models[i] if isinstance(raw_models, list) and i < len(raw_models) else {}
        for field in ("path", "scaler"):
            value = getattr(decl, field, None)
            if not isinstance(value, str) or not isinstance(raw, dict) or raw.get(field) != value:
                continue
            rel = PurePosixPath(value.replace("\\", "/").removeprefix("./")).as_posix()
            if is_glob(value):
                lost = [m for m in plan.moves if m.role == "checkpoint" and path_matches(value, m.old)
                        and not path_matches(value, m.new)]
                if lost and field == "path":
                    plan.notes.append(f"manifest model {decl.name}: glob {value!r} will no longer match "
                                      f"{', '.join(m.new for m in lost)} (the audit still matches by content; "
                                      "edit the glob if you rely on it)")
                continue
            m = moved.get(rel)
            if m is None:
                continue
            new_value = ("./" if value.startswith("./") else "") + m.new
            plan.manifest_edits.append(ManifestEdit(model=decl.name, field=f"models[{i}].{field}",
                                                    loc=["models", i, field], old=value, new=new_value,
                                                    group=m.group))


# --------------------------------------------------------------------------- moving


def _libc_fn(name: str):
    try:
        libc = ctypes.CDLL(None, use_errno=True)   # the running process's symbols (libc); no ldconfig subprocess
        fn = getattr(libc, name)
    except (OSError, AttributeError):
        return None
    return fn


_RENAMEAT2 = _libc_fn("renameat2") if sys.platform.startswith("linux") else None
if _RENAMEAT2 is not None:
    _RENAMEAT2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    _RENAMEAT2.restype = ctypes.c_int
_RENAMEX_NP = _libc_fn("renamex_np") if sys.platform == "darwin" else None
if _RENAMEX_NP is not None:
    _RENAMEX_NP.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_uint]
    _RENAMEX_NP.restype = ctypes.c_int
_UNSUPPORTED = {errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM, errno.EMLINK, errno.EXDEV}


def _noreplace_syscall(src: str, dst: str) -> bool:
    """Atomic rename that fails if dst exists; False when the platform/file system has none."""
    if _RENAMEAT2 is not None:
        rc = _RENAMEAT2(-100, os.fsencode(src), -100, os.fsencode(dst), 1)   # AT_FDCWD, RENAME_NOREPLACE
    elif _RENAMEX_NP is not None:
        rc = _RENAMEX_NP(os.fsencode(src), os.fsencode(dst), 0x4)           # RENAME_EXCL
    else:
        return False
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err == errno.EEXIST:
        raise FileExistsError(err, os.strerror(err), dst)
    if err in _UNSUPPORTED - {errno.EXDEV}:
        return False
    raise OSError(err, os.strerror(err), src)


def _link_unlink(src: str, dst: str) -> bool:
    """`os.link` refuses an existing dst; then drop the old name. False where hard links are unsupported."""
    try:
        os.link(src, dst, follow_symlinks=False)
    except FileExistsError:
        raise
    except (NotImplementedError, AttributeError):
        return False
    except OSError as exc:
        if exc.errno in _UNSUPPORTED:
            return False
        raise
    os.unlink(src)
    return True


def _check_rename(src: str, dst: str) -> None:
    """Last resort: an existence check then rename (a race window remains; only where nothing better exists)."""
    if os.path.lexists(dst):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), dst)
    os.rename(src, dst)


def _move_noclobber(src: str | Path, dst: str | Path) -> None:
    """Rename src to dst, never replacing an existing dst (FileExistsError instead)."""
    src, dst = os.fspath(src), os.fspath(dst)
    if os.path.lexists(dst):
        if _same_file(Path(src), Path(dst)) and os.path.normcase(src) != os.path.normcase(dst):
            os.rename(src, dst)   # case-only rename on a case-insensitive file system
            return
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), dst)
    if _noreplace_syscall(src, dst):
        return
    if _link_unlink(src, dst):
        return
    _check_rename(src, dst)


class _JournalWriter:
    """Append-only JSON lines, each record flushed and fsynced before the caller goes on."""

    def __init__(self, path: Path, mode: str = "x"):
        self.path = path
        self.fh = open(path, mode + "b")

    def write(self, record: dict) -> None:
        self.fh.write(json.dumps(record, ensure_ascii=False, sort_keys=False).encode("utf-8") + b"\n")
        self.fh.flush()
        os.fsync(self.fh.fileno())

    def close(self) -> None:
        self.fh.close()


def _new_journal_path(jdir: Path) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    path = jdir / f"journal-{stamp}.jsonl"
    n = 1
    while path.exists():
        path = jdir / f"journal-{stamp}-{n}.jsonl"
        n += 1
    return path


class _Lock:
    """One rename/undo per root at a time (flock: released by the kernel when a killed process dies)."""

    def __init__(self, jdir: Path):
        self.path = jdir / "rename.lock"
        self.fd: int | None = None

    def __enter__(self):
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return self
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self.fd)
            self.fd = None
            raise CkregError("another ckreg rename or undo is running on this folder", path=str(self.path.parent.parent),
                             hint="wait for it to finish") from exc
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)   # closing releases the flock
        return False


def _test_delay() -> float:
    try:
        return max(0.0, float(os.environ.get(_DELAY_ENV, "0") or 0))
    except ValueError:
        return 0.0


def apply_rename(plan: RenamePlan, journal_dir: str | os.PathLike | None = None) -> Journal:
    """Execute a plan: journal each move (intent, move, done), never clobber, keep groups together.

    A group (checkpoint + companions) moves whole: if one of its files cannot
    move, the ones already moved go back and the group is reported skipped.
    Nothing to do writes no journal (so `--undo` keeps pointing at the last real run).
    """
    root = Path(plan.root)
    result = Journal(root=str(root), skipped=list(plan.skipped), findings=list(plan.findings), manifest=plan.manifest)
    if plan.empty:
        return result
    if not root.is_dir():
        raise UsageError(f"{root}: the plan's root folder is gone")
    jdir = Path(journal_dir) if journal_dir is not None else root / JOURNAL_DIR
    jdir.mkdir(parents=True, exist_ok=True)
    delay = _test_delay()
    with _Lock(jdir):
        stopped = interrupted_journals(jdir)
        if stopped:
            raise CkregError(f"an earlier rename was interrupted (journal {stopped[-1]})",
                             hint=f"run `ckreg rename --undo {stopped[-1]}` first, then rename again")
        jpath = _new_journal_path(jdir)
        result.path = str(jpath)
        jw = _JournalWriter(jpath)
        try:
            jw.write({"type": "header", "version": JOURNAL_VERSION, "tool": "ckreg", "op": "rename",
                      "root": str(root), "template": plan.template, "pid": os.getpid(),
                      "created": datetime.now(timezone.utc).isoformat(), "manifest": plan.manifest,
                      "planned": len(plan.moves)})
            seq = 0
            done_groups: set[int] = set()
            for grp in plan.groups():
                stale = _stale(root, grp)
                if stale:
                    result.skipped.append(Skipped(path=grp[0].old, reason=stale))
                    continue
                moved: list[tuple[int, Move]] = []
                failure = None
                for m in grp:
                    seq += 1
                    rec = {"seq": seq, "group": m.group, "role": m.role, "old": m.old, "new": m.new,
                           "size": m.size, "sha256": m.sha256}
                    jw.write({"type": "intent", **rec})
                    try:
                        _move_noclobber(root / m.old, root / m.new)
                    except FileExistsError:
                        failure = f"{m.new} appeared since planning; not overwritten"
                    except OSError as exc:
                        failure = f"cannot rename {m.old}: {exc.strerror or exc}"
                    if failure:
                        jw.write({"type": "failed", "seq": seq, "reason": failure})
                        break
                    fsync_dir((root / m.new).parent)
                    jw.write({"type": "done", "seq": seq})
                    moved.append((seq, m))
                if failure:
                    for s, m in reversed(moved):   # keep the pairing: all or nothing
                        try:
                            _move_noclobber(root / m.new, root / m.old)
                            jw.write({"type": "reverted", "seq": s})
                        except OSError as exc:
                            failure += f"; could not move {m.new} back ({exc}); `ckreg rename --undo` will"
                    result.skipped.append(Skipped(path=grp[0].old, reason=failure))
                    result.findings.append(Finding.make("rename-collision", f"{grp[0].old}: {failure}", path=grp[0].old))
                    continue
                result.applied.extend(m for _s, m in moved)
                done_groups.add(grp[0].group)
                if delay:
                    time.sleep(delay)
            edits = [e for e in plan.manifest_edits if e.group in done_groups]
            if plan.manifest and edits:
                _apply_manifest(plan, edits, jw, result)
            jw.write({"type": "end", "moved": len(result.applied), "manifest_updated": result.manifest_updated})
        finally:
            jw.close()
    return result


def _stale(root: Path, grp: list[Move]) -> str | None:
    for m in grp:
        try:
            st = os.lstat(root / m.old)
        except FileNotFoundError:
            return f"{m.old} is gone since planning"
        if (m.size is not None and st.st_size != m.size) or (m.mtime_ns is not None and st.st_mtime_ns != m.mtime_ns):
            return f"{m.old} changed since planning; plan again"
        if os.path.lexists(root / m.new) and not _same_file(root / m.old, root / m.new):
            return f"{m.new} appeared since planning; not overwritten"
    return None


def _replace_file(path: Path, data: bytes) -> None:
    """Atomic rewrite (readers see the old or the new file, never half), keeping the permission bits."""
    try:
        mode = os.stat(path).st_mode & 0o7777
    except OSError:
        mode = None
    write_bytes(path, data, mode=mode, overwrite=True)   # the manifest's new text, journaled for undo


def _apply_manifest(plan: RenamePlan, edits: list[ManifestEdit], jw: _JournalWriter, result: Journal) -> None:
    from ckreg import yamlio

    mpath = Path(plan.manifest)
    before = mpath.read_bytes()
    if hashlib.sha256(before).hexdigest() != plan.manifest_sha256:
        result.skipped.append(Skipped(path=str(mpath), reason="manifest changed since planning; not rewritten"))
        return
    after = yamlio.replace_scalars(before.decode("utf-8"), {tuple(e.loc): e.new for e in edits}).encode("utf-8")
    jw.write({"type": "manifest-intent", "path": str(mpath), "before_sha256": plan.manifest_sha256,
              "after_sha256": hashlib.sha256(after).hexdigest(),
              "before_b64": base64.b64encode(before).decode("ascii"),
              "edits": [e.model_dump(mode="json") for e in edits]})
    _replace_file(mpath, after)
    jw.write({"type": "manifest-done"})
    result.manifest_updated = True


# --------------------------------------------------------------------------- undo


def find_journal(path: str | os.PathLike | None = None) -> Path:
    """The journal to undo: PATH itself if a file, else the newest not-yet-undone journal under PATH/.ckreg."""
    p = Path(path) if path is not None else Path.cwd()
    if p.is_file():
        return p
    if not p.is_dir():
        raise JournalError(f"{p}: no such journal or folder", hint="pass a journal-*.jsonl or the folder you renamed")
    jdir = p if p.name == JOURNAL_DIR else p / JOURNAL_DIR
    journals = [j for j in sorted(jdir.glob("journal-*.jsonl")) if not _empty(j)] if jdir.is_dir() else []
    if not journals:
        raise JournalError(f"{p}: no rename journal found in {jdir}", hint="nothing was renamed here by ckreg")
    for j in reversed(journals):
        try:
            if not _is_undone(read_journal(j)):
                return j
        except JournalError:
            return j   # let undo report the corruption clearly
    raise JournalError(f"{p}: every rename journal in {jdir} is already undone", hint="nothing left to undo")


def _empty(path: Path) -> bool:
    try:
        return path.stat().st_size == 0
    except OSError:
        return False


def read_journal(path: str | os.PathLike) -> list[dict]:
    """Parse a journal; a torn last line (killed mid-write) is dropped, any other damage is an error."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise JournalError(f"cannot read journal: {exc.strerror or exc}", path=str(path)) from exc
    lines = raw.split(b"\n")
    torn = lines[-1] != b""   # no final newline: the last write was interrupted
    records: list[dict] = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict) or "type" not in rec:
                raise ValueError("not a journal record")
        except (ValueError, UnicodeDecodeError) as exc:
            if torn and i == len(lines) - 1:
                break
            raise JournalError(f"corrupted journal, line {i + 1}: {exc}", path=str(path),
                               hint="restore the journal or undo by hand from its intent records") from exc
        records.append(rec)
    if not records or records[0].get("type") != "header" or records[0].get("tool") != "ckreg":
        raise JournalError("not a ckreg rename journal (no header record)", path=str(path))
    if records[0].get("version") != JOURNAL_VERSION:
        raise JournalError(f"journal version {records[0].get('version')!r} is not supported (expected {JOURNAL_VERSION})",
                           path=str(path))
    for i, rec in enumerate(records):
        if rec["type"] == "intent" and not all(isinstance(rec.get(k), str) for k in ("old", "new")):
            raise JournalError(f"corrupted journal: intent record {i + 1} lacks old/new paths", path=str(path))
    return records


def interrupted_journals(journal_dir: str | os.PathLike) -> list[Path]:
    """Journals of runs that stopped half-way (no `end` record) and were not undone since.

    After such a run a checkpoint may carry its new name while a companion still
    has the old stem; renaming again would orphan the companion, so apply refuses
    until `--undo` has put the run back.
    """
    jdir = Path(journal_dir)
    out = []
    for j in sorted(jdir.glob("journal-*.jsonl")) if jdir.is_dir() else []:
        if _empty(j):
            continue   # killed before the header was written: nothing happened
        try:
            recs = read_journal(j)
        except JournalError:
            out.append(j)
            continue
        if not any(r["type"] == "end" for r in recs) and not _is_undone(recs):
            out.append(j)
    return out


def _is_undone(records: list[dict]) -> bool:
    ends = [r for r in records if r["type"] == "undo-end"]
    return bool(ends) and not ends[-1].get("conflicts")


def _journal_root(path: Path, header: dict) -> Path:
    root = Path(header.get("root") or "")
    if root.is_dir():
        return root
    if path.parent.name == JOURNAL_DIR and path.parent.parent.is_dir():
        return path.parent.parent   # the tree was moved as a whole: follow it
    raise JournalError(f"the renamed folder {root} no longer exists", path=str(path))


def _inside(root: Path, rel: str) -> Path:
    p = Path(os.path.normpath(root / rel))
    if os.path.isabs(rel) or not (p == root or root in p.parents):
        raise JournalError(f"journal path {rel!r} points outside {root}")
    return p


def undo_rename(journal_path: str | os.PathLike | None = None) -> UndoResult:
    """Put every file of a rename run back under its old name, and the manifest back byte for byte.

    Safe to repeat and safe after an interrupted run: each move is judged by
    what is on disk (new name present and old free: move back; old present:
    already there; both present: conflict, left alone). Never clobbers.
    """
    jpath = find_journal(journal_path)
    records = read_journal(jpath)
    header = records[0]
    root = _journal_root(jpath, header)
    result = UndoResult(journal=str(jpath), root=str(root))
    intents: dict[int, dict] = {}
    reverted: set[int] = set()
    manifest_rec = None
    for rec in records:
        if rec["type"] == "intent":
            intents[int(rec["seq"])] = rec
        elif rec["type"] == "reverted":
            reverted.add(int(rec["seq"]))
        elif rec["type"] == "manifest-intent":
            manifest_rec = rec
    moves = [(s, intents[s]) for s in sorted(intents, reverse=True) if s not in reverted]
    for _s, rec in moves:   # validate every path before touching anything
        _inside(root, rec["old"]), _inside(root, rec["new"])
    with _Lock(jpath.parent):
        jw = _JournalWriter(jpath, "a")
        try:
            jw.write({"type": "undo-start", "pid": os.getpid(), "at": datetime.now(timezone.utc).isoformat()})
            if manifest_rec is not None:
                _undo_manifest(manifest_rec, result)
            for seq, rec in moves:
                old, new = _inside(root, rec["old"]), _inside(root, rec["new"])
                m = Move(old=rec["old"], new=rec["new"], role=rec.get("role", "checkpoint"), group=rec.get("group", 0),
                         size=rec.get("size"), sha256=rec.get("sha256"))
                has_old, has_new = os.path.lexists(old), os.path.lexists(new)
                if has_new and not has_old:
                    try:
                        _move_noclobber(new, old)
                    except OSError as exc:
                        result.conflicts.append(Skipped(path=rec["new"], reason=f"cannot move back to {rec['old']}: {exc}"))
                        continue
                    fsync_dir(old.parent)
                    jw.write({"type": "undone", "seq": seq})
                    result.restored.append(m)
                elif has_old and not has_new:
                    result.already.append(rec["old"])
                elif has_old and has_new:
                    if _same_file(old, new) and os.path.normcase(str(old)) != os.path.normcase(str(new)):
                        os.unlink(new)   # killed between link and unlink: drop the second name
                        jw.write({"type": "undone", "seq": seq})
                        result.restored.append(m)
                    else:
                        result.conflicts.append(Skipped(
                            path=rec["new"], reason=f"both {rec['old']} and {rec['new']} exist; neither touched"))
                else:
                    result.conflicts.append(Skipped(path=rec["old"], reason=f"neither {rec['old']} nor {rec['new']} exists"))
            jw.write({"type": "undo-end", "restored": len(result.restored), "conflicts": len(result.conflicts),
                      "manifest_restored": result.manifest_restored})
        finally:
            jw.close()
    return result


def _undo_manifest(rec: dict, result: UndoResult) -> None:
    mpath = Path(rec["path"])
    result.manifest = str(mpath)
    try:
        before = base64.b64decode(rec["before_b64"], validate=True)
    except (KeyError, ValueError) as exc:
        raise JournalError(f"corrupted journal: manifest record unreadable ({exc})") from exc
    if hashlib.sha256(before).hexdigest() != rec.get("before_sha256"):
        raise JournalError("corrupted journal: the saved manifest bytes do not match their sha256")
    current = mpath.read_bytes() if mpath.is_file() else None
    cur_sha = hashlib.sha256(current).hexdigest() if current is not None else None
    if cur_sha == rec["before_sha256"]:
        result.manifest_restored = True   # already the original (interrupted before the write, or undone)
    elif cur_sha == rec.get("after_sha256"):
        _replace_file(mpath, before)
        result.manifest_restored = True
    else:
        result.manifest_restored = False
        result.conflicts.append(Skipped(path=str(mpath), reason="the manifest was edited after the rename; not restored "
                                        "(its original is in the journal's manifest-intent record, base64)"))
