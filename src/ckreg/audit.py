"""`ckreg audit`: what an archive holds against what it should hold (issue #4).

The audit walks a tree (never following symlinks out of it, never looping),
classifies files by content (cheap magic bytes, not only extensions), inspects
every checkpoint in parallel, hashes weights only where layouts collide (as
duplicate-file finders group by size before hashing), then reconciles:

- with a manifest: each declaration is matched to files by its declared path
  AND by content; a declaration is satisfied only by a file whose inspected
  architecture matches it, and a file at a declared path that does not match
  gets the precise mismatch findings (family, layers, hidden size, shapes...);
- without one: family names found in file and folder names are the labels
  the weights are checked against;
- always: duplicates by `weights_sha256`, sidecar scalers paired by folder
  (or by the manifest), scalers shared by several checkpoints, scaler feature
  counts against model inputs, and every finding the inspection made.

Codes and severities live in `ckreg.findings.CODES`; reporters (`ckreg.report`)
render the `Report`. Torch-free: `--data` verification (issue #5) is imported
only when asked for.
"""

from __future__ import annotations

import importlib.util
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from ckreg import __version__
from ckreg.arch import WEIGHT_FIELDS
from ckreg.errors import CkregError, UsageError
from ckreg.findings import ErrorEntry, Finding, KeptReport, Report, Skipped
from ckreg.families import family_in_name, name_label, registry
from ckreg.families.builtin import MS3D_CHANNELS, MS3D_FAMILIES
from ckreg.families.names import collapse_names
from ckreg.readers.fileio import is_url, sha256_of
from ckreg.readers.folder import INDEX_NAMES, folder_members, is_model_folder
from ckreg.readers.unwrap import strip_prefixes
from ckreg.shards import Shard

if TYPE_CHECKING:
    from ckreg.manifest import Manifest, ModelDecl

HASH_POLICIES = ("collisions", "all", "none")

# Extensions that name a checkpoint strongly enough to be inspected whatever the bytes say:
# a truncated or corrupt `model.ckpt` must be reported as unreadable, not ignored.
CKPT_EXTS = frozenset({".ckpt", ".pt", ".pth", ".safetensors", ".bin", ".pkl", ".pickle", ".tar"})
STRONG_CKPT_EXTS = frozenset({".ckpt", ".pt", ".pth", ".safetensors"})
SCALER_EXTS = frozenset({".pkl", ".pickle", ".joblib", ".json"})
SKIP_DIRS = frozenset({".git", ".hg", ".svn", "__pycache__"})


# Declared hyperparameter -> finding code (the rest: hyperparameter-mismatch; tower kernels: shape-drift).
_HP_CODES = {
    "num_layers": "layers-mismatch",
    "hidden_size": "hidden-size-mismatch",
    "num_classes": "classes-mismatch",
    "input_size": "input-size-mismatch",
}

Progress = Callable[[str, int, int], None]


# -- classification by content -------------------------------------------------------------------

def sniff(path: str | os.PathLike, head: bytes | None = None) -> str | None:
    """"checkpoint", "scaler" or None, from the bytes (`ckreg.readers.sniff.classify`).

    Every pickle is a checkpoint or a scaler whatever its name or protocol; zips, tars,
    compressed streams and `.npy` files are looked into; a file under a strong checkpoint
    extension is a checkpoint whatever its bytes (a corrupt `model.ckpt` is reported as
    unreadable, never ignored).
    """
    from ckreg.readers.sniff import classify

    return classify(path, head)[0]


# -- walking --------------------------------------------------------------------------------------

@dataclass
class Walked:
    """What a walk found: absolute paths (the root as given, not resolved), and what it left out."""

    root: Path
    checkpoints: list[Path] = field(default_factory=list)
    scalers: list[Path] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    errors: list[ErrorEntry] = field(default_factory=list)


def staged_files(root: str | os.PathLike) -> set[str]:
    """Files the next commit will hold under `root` (git's index), as posix paths relative to `root`.

    The pre-commit hook audits these only: an untracked file in the working tree
    is not part of the commit and must not block it. Raises UsageError outside
    a git work tree or without git.
    """
    import subprocess

    try:
        proc = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--cached", "--", "."],
                              capture_output=True, check=False)
    except OSError as exc:
        raise UsageError(f"--staged needs git: {exc}") from None
    if proc.returncode != 0:
        msg = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise UsageError(f"--staged: {root} is not in a git work tree ({msg[0] if msg else 'git ls-files failed'})",
                         hint="run it inside a git repository, or drop --staged")
    return {p for p in proc.stdout.decode("utf-8", "surrogateescape").split("\0") if p}


def _restrict(walked: "Walked", root: Path, only: set[str]) -> "Walked":
    """Keep the files named in `only`; the others are listed in `skipped`, never silently left out."""
    kept = Walked(root=walked.root, skipped=list(walked.skipped), errors=list(walked.errors))
    for kind in ("checkpoints", "scalers"):
        for full in getattr(walked, kind):
            relpath = full.relative_to(root).as_posix()
            if relpath in only:
                getattr(kept, kind).append(full)
            else:
                kept.skipped.append(Skipped(path=relpath, reason="not staged for commit (--staged)"))
    return kept


def walk(root: str | os.PathLike, owns: Callable[[str | None], bool] | None = None,
         classify: "Callable[[list[tuple], list[bool]], list[tuple[str | None, str]]] | None" = None) -> Walked:
    """Every checkpoint and scaler file under `root`, by content.

    Symlinked folders are never followed (no loops, nothing outside the tree);
    symlinked files are followed only when they resolve inside the tree; hard
    links and links to files already seen count once. Everything left out is
    recorded in `skipped` with the reason.

    `owns(relpath)` (a shard's `Shard.owns`) limits what is classified and
    reported to the paths it keeps; another path's bytes are read only when a
    kept path is a link to the same file, so that "counted once" picks the same
    copy as the whole walk would.

    `classify(files, mine)` (the audit's cached, parallel sniffing) gets the `("file", ...)`
    entries of `_traverse` to be sniffed, and whether each is the walk's own (False: another
    shard's file, sniffed only for "counted once"); it returns `ckreg.readers.sniff.classify`'s
    answer for each.
    """
    root = Path(root)
    return _replay(root, _traverse(root), owns, classify)


_MODEL_FOLDER_MARKS = frozenset({"config.json", *INDEX_NAMES})   # `is_model_folder` needs one of them


def _traverse(root: Path) -> list[tuple]:
    """The walk without reading any file: what `walk` needs to decide, in its order.

    Entries: `("folder", path)` (a model folder), `("file", folder, name, full, relpath, stat)`
    (a regular file, or a link to one inside the tree: those come last, so that the real
    files are the ones audited), `("skip", Skipped)` and `("error", ErrorEntry)`.
    """
    events: list[tuple] = []
    root_real = root.resolve()

    def rel(p: Path) -> str:
        return p.relative_to(root).as_posix()

    def onerror(exc: OSError) -> None:
        name = getattr(exc, "filename", None)
        where = Path(name).relative_to(root).as_posix() if name and Path(name).is_relative_to(root) else name
        events.append(("error", ErrorEntry(path=where, message=f"cannot list folder: {exc.strerror or exc}")))

    links: list[tuple] = []
    for dirpath, dirnames, filenames in os.walk(root, topdown=True, onerror=onerror, followlinks=False):
        here = Path(dirpath)
        here_rel = rel(here)
        prefix = "" if here_rel == "." else here_rel + "/"
        base = dirpath if dirpath.endswith(os.sep) else dirpath + os.sep
        model_files: set[str] = set()
        listed = set(filenames) | set(dirnames)   # a model folder names a config.json or an index
        if (not listed.isdisjoint(_MODEL_FOLDER_MARKS) and is_model_folder(here)
                and not here.is_symlink()):   # a Hugging Face folder: one model
            model_files = set(folder_members(os.fspath(here)))
            events.append(("folder", here))
        keep = []
        for d in sorted(dirnames):
            full = here / d
            if d in SKIP_DIRS:
                continue
            if full.is_symlink():
                try:
                    target = full.resolve(strict=True)
                    where = "inside" if target.is_relative_to(root_real) else "outside"
                    reason = f"symlinked folder not followed (points {where} the tree: {target})"
                except (OSError, RuntimeError):
                    reason = "symlinked folder not followed (broken or a loop)"
                events.append(("skip", Skipped(path=rel(full), reason=reason)))
                continue
            keep.append(d)
        dirnames[:] = keep
        for name in sorted(filenames):
            if name in model_files:
                continue
            full_s = base + name   # os.path.join(dirpath, name), once per folder
            relpath = prefix + name
            try:
                lst = os.lstat(full_s)
            except OSError as exc:
                events.append(("error", ErrorEntry(path=relpath, message=f"cannot stat: {exc.strerror or exc}")))
                continue
            if stat.S_ISLNK(lst.st_mode):
                full = here / name
                try:
                    target = full.resolve(strict=True)
                except RuntimeError:
                    events.append(("skip", Skipped(path=relpath, reason="symlink loop")))
                    continue
                except OSError:
                    events.append(("skip", Skipped(path=relpath, reason="broken symlink")))
                    continue
                if not target.is_relative_to(root_real):  # not even sniffed: nothing outside the tree is read
                    events.append(("skip", Skipped(path=relpath,
                                                   reason=f"symlink points outside the audited tree: {target}")))
                    continue
                try:
                    st = os.stat(target)
                except OSError as exc:
                    events.append(("error", ErrorEntry(path=relpath, message=f"cannot stat: {exc.strerror or exc}")))
                    continue
                if not stat.S_ISREG(st.st_mode):
                    continue
                links.append(("file", here, name, full_s, relpath, st))   # after the real files
                continue
            if not stat.S_ISREG(lst.st_mode):
                continue
            events.append(("file", here, name, full_s, relpath, lst))
    return events + links


def _replay(root: Path, events: list[tuple], owns: Callable[[str | None], bool] | None = None,
            classify: Callable[[list[tuple], list[bool]], list[tuple[str | None, str]]] | None = None) -> Walked:
    """`Walked` from `_traverse`'s entries: which files to sniff is decided first (it does not
    depend on what sniffing says), they are sniffed in one go by `classify`, then taken in order."""
    steps: dict[int, list[tuple[int, bool]]] = {}   # entry index -> (file entry, mine) looked at there
    others: dict[tuple[int, int], list[int]] = {}   # no bigger than `seen` in a whole walk
    for i, e in enumerate(events):
        if e[0] != "file":
            continue
        key = (e[5].st_dev, e[5].st_ino)
        if owns is not None and not owns(e[4]):   # another shard's: looked at only if a kept path shares its file
            others.setdefault(key, []).append(i)
            continue
        steps[i] = [(j, False) for j in others.pop(key, ())] + [(i, True)]
    todo = list(dict.fromkeys(j for here in steps.values() for j, _ in here))
    mine = {j for here in steps.values() for j, own in here if own}
    if classify is None:
        from ckreg.readers.sniff import classify as sniff_one

        answers = [sniff_one(events[j][3]) for j in todo]
    else:
        answers = classify([events[j] for j in todo], [j in mine for j in todo])
    kinds = dict(zip(todo, answers))

    out = Walked(root=root)
    seen: dict[tuple[int, int], str] = {}
    for i, e in enumerate(events):
        tag = e[0]
        if tag == "folder":
            out.checkpoints.append(e[1])
        elif tag == "skip":
            out.skipped.append(e[1])
        elif tag == "error":
            out.errors.append(e[1])
        for j, own in steps.get(i, ()):
            _, here, name, _full, relpath, st = events[j]
            key = (st.st_dev, st.st_ino)
            if key in seen:
                if own:
                    out.skipped.append(Skipped(path=relpath, reason=f"same file as {seen[key]} (a link), audited there"))
                continue
            kind, why = kinds[j]
            if kind is None:
                if own:
                    out.skipped.append(Skipped(path=relpath, reason=why))
                continue
            seen[key] = relpath
            if own:
                (out.checkpoints if kind == "checkpoint" else out.scalers).append(here / name)
    if owns is not None:   # folders, links and errors: the shard of their own path
        out.checkpoints = [p for p in out.checkpoints if owns(p.relative_to(root).as_posix())]
        out.skipped = [x for x in out.skipped if owns(x.path)]
        out.errors = [x for x in out.errors if owns(x.path)]
    return out


# -- names as labels ------------------------------------------------------------------------------

# `family_in_name` and `name_label` are the registry's one name matcher (`ckreg.families.labels`):
# every registered family's name tokens, declared families included.


# -- comparing a file with a declaration ----------------------------------------------------------

def _shapes(layout: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """The inspector's layout (name -> [dtype, shape]) as name -> shape, prefixes looked through
    with the readers' own rules (`ckreg.readers.unwrap.strip_prefixes`; a no-op on what they unwrapped)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for name, value in layout.items():
        shape = value[1] if isinstance(value, (list, tuple)) and len(value) == 2 and isinstance(value[1], (list, tuple)) else value
        shapes[name] = tuple(int(v) for v in shape)
    names, _ = strip_prefixes(list(shapes))
    return dict(zip(names, shapes.values()))


def _norm(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_norm(v) for v in value)
    return value


def _fmt(value: Any) -> str:
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (list, tuple)) for v in value):
        return "[" + ", ".join("x".join(str(x) for x in v) for v in value) + "]"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(str(v) for v in value) + "]"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10000:
        return f"{value:,}"
    return str(value)


def _family_fits(insp: Any, family: str) -> bool:
    return insp.family == family or (insp.family == "ambiguous" and family in insp.ambiguous_between)


def _layout_diff(actual: dict[str, tuple], expected: dict[str, tuple]) -> tuple[list[str], dict, dict]:
    lines, exp, act = [], {}, {}
    for name, shape in expected.items():
        if name not in actual:
            lines.append(f"{name} {list(shape)} declared, missing from the file")
            exp[name], act[name] = list(shape), None
        elif tuple(actual[name]) != tuple(shape):
            lines.append(f"{name} is {list(actual[name])} in the file, {list(shape)} declared")
            exp[name], act[name] = list(shape), list(actual[name])
    for name, shape in actual.items():
        if name not in expected:
            lines.append(f"{name} {list(shape)} in the file, not in the declared architecture")
            exp[name], act[name] = None, list(shape)
    return lines, exp, act


def _numel(shape: Iterable[int]) -> int:
    n = 1
    for v in shape:
        n *= int(v)
    return n


def _names_text(names: list[str], limit: int = 6) -> str:
    shown = collapse_names(names)
    return ", ".join(shown[:limit]) + (f" and {len(shown) - limit} more" if len(shown) > limit else "")


def compare_layout(insp: Any, decl: ModelDecl, expected: dict[str, Any], relpath: str) -> list[Finding]:
    """A file against a declared layout (a module: lock entry or a reference checkpoint):
    keys-missing, keys-unexpected, shape-drift (key, both shapes), param-count-mismatch."""
    if not insp.ok:
        return [Finding.make("unreadable", f"cannot be read: {insp.error}", path=relpath)]
    actual = _shapes(insp.layout or {})
    want = _shapes(expected["keys"])   # the readers' prefix rules on both sides (a lone root `body.` too)
    source = expected.get("source") or decl.kind
    out: list[Finding] = []
    missing = [k for k in want if k not in actual]
    unexpected = [k for k in actual if k not in want]
    drift = [k for k in want if k in actual and actual[k] != want[k]]
    if missing:
        out.append(Finding.make("keys-missing", f"{len(missing)} key(s) of the declared architecture [{source}] "
                                f"are missing from the file: {_names_text(missing)}", path=relpath,
                                expected=collapse_names(missing), actual=None))
    if unexpected:
        out.append(Finding.make("keys-unexpected", f"{len(unexpected)} key(s) in the file are not in the declared "
                                f"architecture [{source}]: {_names_text(unexpected)}", path=relpath,
                                expected=None, actual=collapse_names(unexpected)))
    if drift:
        lines = [f"{k} is {list(actual[k])} in the file, {list(want[k])} declared" for k in drift]
        out.append(Finding.make("shape-drift", f"{len(drift)} tensor(s) differ from the declared architecture: "
                                + "; ".join(lines[:6]) + (f"; and {len(lines) - 6} more" if len(lines) > 6 else ""),
                                path=relpath, expected={k: list(want[k]) for k in drift},
                                actual={k: list(actual[k]) for k in drift}))
    have_n = sum(_numel(v) for v in actual.values())
    want_n = sum(_numel(v) for v in want.values())
    if decl.params is not None:
        have = insp.params.trainable + (insp.params.buffers if decl.params_include_buffers else 0)
        if have != decl.params:
            what = "parameter and buffer elements" if decl.params_include_buffers else "parameters"
            out.append(Finding.make("param-count-mismatch", f"{have:,} {what} in the weights, {decl.params:,} declared",
                                    path=relpath, expected=decl.params, actual=have))
    elif have_n != want_n:
        out.append(Finding.make("param-count-mismatch", f"{have_n:,} parameter and buffer elements in the weights, "
                                f"{want_n:,} in the declared architecture", path=relpath, expected=want_n, actual=have_n))
    return out


def compare(insp: Any, decl: ModelDecl, relpath: str, expected: dict[str, Any] | None = None) -> list[Finding]:
    """Why `insp` does not satisfy `decl` (empty when it does).

    Messages state the difference alone ("the weights have 2 GRU layers where 1
    is declared"); the audit prefixes the declaration when it reports them on a file.
    `expected` is the declared layout of a module:/reference: declaration
    (`Manifest.expected_layouts`).
    """
    from ckreg.inspect.layouts import expected_layout

    if decl.family is None:
        if expected is None:
            return [Finding.make("unreadable", f"no declared layout for {decl.name!r}", path=relpath)]
        return compare_layout(insp, decl, expected, relpath)
    if not insp.ok:
        return [Finding.make("unreadable", f"cannot be read: {insp.error}", path=relpath)]
    if not _family_fits(insp, decl.family):
        what = {"unknown": "match no known family", "ambiguous": f"fit {' or '.join(insp.ambiguous_between)}"}
        actual = what.get(insp.family, f"are a {insp.family}")
        return [Finding.make("family-mislabeled", f"{decl.family} is declared but the weights {actual}",
                             path=relpath, expected=decl.family, actual=insp.family)]
    out: list[Finding] = []
    observed = dict(insp.hyperparameters or {})
    mismatched: dict[str, Any] = {}
    for key, want in decl.declared().items():
        if (key not in WEIGHT_FIELDS and key not in observed) or key == "tower_kernels":
            continue
        have = observed.get(key)
        if have is None or _norm(have) == _norm(want):
            continue
        mismatched[key] = have
        code = _HP_CODES.get(key, "hyperparameter-mismatch")
        noun = {"hidden_size": "hidden size", "num_classes": "class count",
                "input_size": "input width"}.get(key, key)
        if key == "num_layers":
            text = (f"the weights have {_fmt(have)} {decl.family} layers where {_fmt(want)} "
                    f"{'is' if want == 1 else 'are'} declared")
        else:
            text = f"{noun} is {_fmt(have)} in the weights, {_fmt(want)} declared"
        out.append(Finding.make(code, text, path=relpath, expected=want, actual=have))
    # shape drift: every tensor against the declared architecture; differences that the
    # mismatches above already explain are not repeated.
    actual_shapes = _shapes(insp.layout or {})
    if actual_shapes:
        try:
            explained = decl.spec(observed).model_copy(update=mismatched)
            expected = {k: tuple(v) for k, v in expected_layout(explained).items()}
        except (CkregError, ValueError):
            expected = None
        if expected is not None and expected != actual_shapes:
            lines, exp, act = _layout_diff(actual_shapes, expected)
            if lines:
                shown = "; ".join(lines[:6]) + (f"; and {len(lines) - 6} more" if len(lines) > 6 else "")
                out.append(Finding.make("shape-drift", f"{len(lines)} tensor(s) differ from the declared "
                                        f"architecture: {shown}", path=relpath, expected=exp, actual=act))
    if decl.params is not None:
        have = insp.params.trainable + (insp.params.buffers if decl.params_include_buffers else 0)
        if have != decl.params:
            what = "parameter and buffer elements" if decl.params_include_buffers else "parameters"
            out.append(Finding.make("param-count-mismatch", f"{have:,} {what} in the weights, "
                                    f"{decl.params:,} declared", path=relpath, expected=decl.params, actual=have))
    return out


# -- the audit -----------------------------------------------------------------------------------

@dataclass
class _File:
    rel: str
    abs: Path
    insp: Any
    by_path: list[str] = field(default_factory=list)     # declarations whose path matches this file
    satisfies: list[str] = field(default_factory=list)   # declarations this file satisfies
    scaler: str | None = None
    scaler_source: str | None = None


def _rel(root: Path, p: Path) -> str:
    """Relative path; a model folder ends with `/` (its name labels it, as a folder)."""
    rel = p.relative_to(root).as_posix()
    return rel + "/" if p.is_dir() else rel


def _set_aside_unchecked(files: list[_File], report: Report) -> list[_File]:
    """What the audit cannot check goes to `skipped` with the reason, never silently.

    A file read without its tensors (an ONNX model in an install without the onnx extra) is
    skipped; a TorchScript archive is checked for its weights, and its code is named as
    not analysed.
    """
    kept = []
    for f in files:
        need = [x for x in f.insp.findings if x.code == "format-needs-extra"]
        if need and not f.insp.layout:
            report.skipped.append(Skipped(path=f.rel, reason=need[0].message.removeprefix(f"{f.insp.path}: ")))
            continue
        if f.insp.format == "torchscript":
            report.skipped.append(Skipped(path=f"{f.rel} (code/)", reason="TorchScript code is not analysed: "
                                          "the weights were checked; torch.jit.load would run this code"))
        kept.append(f)
    return kept


def _carry(findings: Iterable[Finding], rel: str) -> list[Finding]:
    return [f.model_copy(update={"path": rel}) for f in findings]


def _weights_digest(path: str) -> str | None:
    """weights_sha256 of one file: read + hash only (no family detection), for the collision pass."""
    from ckreg.inspect import weights_sha256
    from ckreg.readers import read_checkpoint

    try:
        return weights_sha256(read_checkpoint(path))
    except (CkregError, OSError):  # an unreadable file was already reported by the inspection
        return None


class _Runner:
    """Runs per-file work in input order on one pool kept for the whole audit.

    Parsing is pure Python, so processes (forkserver, else spawn) rather than
    threads; sandboxes without processes fall back to threads. The same pool
    serves the inspection and the collision-hashing pass (one start-up cost).
    """

    def __init__(self, jobs: int, progress: Progress | None, threads: bool = False):
        self.jobs = jobs
        self.progress = progress
        self.threads = threads
        self._ex: Any = None

    def _executor(self, n: int) -> Any:
        if self._ex is None:
            import concurrent.futures as cf
            import multiprocessing as mp

            workers = min(self.jobs, max(n, 1))
            if self.threads:
                self._ex = cf.ThreadPoolExecutor(max_workers=workers)
                return self._ex
            try:
                ctx = mp.get_context("forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn")
                self._ex = cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
            except (OSError, NotImplementedError, ImportError):
                self._ex = cf.ThreadPoolExecutor(max_workers=workers)
        return self._ex

    def map(self, fn: Callable[[str], Any], names: list[str], stage: str) -> list[Any]:
        total = len(names)
        if not names:
            return []
        out: list[Any] = []

        def take(values: Iterable[Any]) -> None:
            for value in values:
                out.append(value)
                if self.progress:
                    self.progress(stage, len(out), total)

        if self.progress:
            self.progress(stage, 0, total)
        if self.jobs <= 1 or total == 1:
            take(map(fn, names))
            return out
        import concurrent.futures as cf

        try:
            take(self._executor(total).map(fn, names, chunksize=max(1, min(32, total // (self.jobs * 4)))))
        except (OSError, cf.process.BrokenProcessPool):  # sandboxes that forbid processes: threads
            self._ex = cf.ThreadPoolExecutor(max_workers=min(self.jobs, total))
            take(self._ex.map(fn, names[len(out):]))
        return out

    def close(self) -> None:
        if self._ex is not None:
            self._ex.shutdown()
            self._ex = None


# Files up to this size get their weights hashed during the inspection itself: the
# tensor bytes are a few hundred KB, cheaper to stream now than to parse the pickle a
# second time in the collision pass (bench/bench_audit.py: ~40% of CPU went there).
INLINE_HASH_BYTES = 16 * 1024 * 1024


def _inspect_one(path: str, hash_policy: str, inline_limit: int, declared: tuple = (),
                 tiers: tuple[str, ...] | None = None, kind: str | None = None) -> Any:
    """Worker: inspect one file, hashing weights inline when the policy and size say so."""
    from ckreg.inspect import inspect_path

    if declared:
        registry().add_all(declared)   # declared families reach worker processes (spawn/forkserver)

    hash_weights = hash_policy == "all"
    if hash_policy == "collisions" and inline_limit > 0:
        try:
            size = (sum(os.path.getsize(os.path.join(path, n)) for n in folder_members(path))
                    if os.path.isdir(path) else os.path.getsize(path))
            hash_weights = size <= inline_limit
        except OSError:
            hash_weights = False
    return _audit_view(inspect_path(path, hash_weights=hash_weights, tiers=tiers, kind=kind))


# What the audit reads of an inspection (reconciliation, summaries, duplicates, pairing). The
# rest (candidates, description, structure, evidence, metadata...) is `ckreg inspect`'s to show:
# left out, an inspection travels from a worker, and sits in the cache, at a third of the size.
AUDIT_FIELDS = ("path", "format", "size", "family", "ambiguous_between", "hyperparameters", "params", "sha256",
                "layout_sha256", "weights_sha256", "layout", "findings", "error")


def _audit_view(insp: Any) -> Any:
    """The inspection reduced to `AUDIT_FIELDS`: the other fields emptied in a copy (its values are
    validated already; a copy, not `model_construct`, which inspects every default factory's
    signature on each call)."""
    return insp.model_copy(update={k: _EMPTY[k]() for k in _EMPTY})


_EMPTY: dict[str, Callable[[], Any]] = {
    "confidence": float, "not_recorded": dict, "metadata": dict, "evidence": list, "candidates": list,
    "leftovers": list, "description": list, "structure": dict, "scales": lambda: None, "bytes_read": int,
    "allowed_tiers": list}


def _inspect_all(runner: _Runner, paths: list[Path], *, hash_policy: str,
                 tiers: tuple[str, ...] | None = None, inline_limit: int = INLINE_HASH_BYTES) -> list[Any]:
    """`inspect_path` on every file (never raises for bad files), results in input order.
    `inline_limit` 0: no inline hashing (remote files: tensor bytes only where layouts collide)."""
    import functools

    worker = functools.partial(_inspect_one, hash_policy=hash_policy, inline_limit=inline_limit,
                               declared=tuple(registry().declared()), tiers=tiers)
    return runner.map(worker, [str(p) for p in paths],
                      "inspecting")


def _open_cache(cache: Any):
    """None/False: no cache; an `InspectionCache`; or a path to one."""
    if cache is None or cache is False:
        return None
    from ckreg.inspect.cache import InspectionCache

    return cache if isinstance(cache, InspectionCache) else InspectionCache(cache)


def _inspection_options(hash_policy: str, tiers: tuple[str, ...] | None) -> dict[str, Any]:
    """Everything besides a file's bytes that changes its inspection (part of its cache key): the
    families other than the built-ins (declared in files and manifests, and plug-ins) included."""
    declared = [[f.name, f.source, f.origin, repr(f.template), repr(sorted(f.hyperparameters.items(), key=str)),
                 list(f.names)] for f in registry() if f.source != "built-in"]
    return {"hash_policy": hash_policy, "inline_hash_bytes": INLINE_HASH_BYTES,
            "tiers": list(tiers) if tiers is not None else None, "declared": declared}


SNIFF_OPTIONS = {"entry": "sniff"}


def _scaler_options(tiers: tuple[str, ...] | None) -> dict[str, Any]:
    return {"entry": "scaler", "tiers": list(tiers) if tiers is not None else None}


def _scaler_entry(path: Path, tiers: tuple[str, ...] | None) -> tuple[dict[str, Any], list[Finding], str | None]:
    """What the audit needs of one scaler file: its summary, the findings reading it made, its sha256."""
    summary, findings = _scaler_info(path, tiers)
    try:
        digest = sha256_of(path)
    except OSError:
        digest = None
    return summary, findings, digest


def _scan_one(item: tuple[str, bool], hash_policy: str, inline_limit: int, declared: tuple = (),
              tiers: tuple[str, ...] | None = None) -> tuple:
    """Worker: sniff one file, then inspect it (a checkpoint, when `item[1]` asks) or summarise it (a scaler).

    One pass per file on the pool: the walk's sniffing and the inspection share the worker,
    and the file is sniffed once.
    """
    from ckreg.readers.sniff import classify

    path, want = item
    kind, why = classify(path)
    if not want or kind is None:
        return kind, why, None
    if kind == "scaler":
        return kind, why, _scaler_entry(Path(path), tiers)
    return kind, why, _inspect_one(path, hash_policy, inline_limit, declared, tiers, kind=kind)


class _Scan:
    """The per-file work of one audit of a folder: sniffing every file, inspecting each checkpoint,
    summarising each scaler; answered from the cache where the file is unchanged, else run on the
    pool in one pass (`_scan_one`). New answers are written back in one transaction (`save`)."""

    def __init__(self, store: Any, runner: "_Runner", hash_policy: str, tiers: tuple[str, ...] | None,
                 only: set[str] | None):
        self.store, self.runner, self.hash_policy, self.tiers, self.only = store, runner, hash_policy, tiers, only
        self.insp_options = _inspection_options(hash_policy, tiers)
        self.inspections: dict[str, Any] = {}        # str(path) -> Inspection (cached or fresh)
        self.insp_keys: dict[str, str | None] = {}   # str(path) -> its inspection cache key
        self.cached: set[str] = set()                # keys whose inspection came from the cache
        self.scalers: dict[str, tuple] = {}          # str(path) -> _scaler_entry(...)
        self.new: dict[str, str] = {}                # cache entries to write

    def classify(self, files: list[tuple], mine: list[bool]) -> list[tuple[str | None, str]]:
        """`walk`'s sniffing, cached; a file of this audit's own is inspected or summarised on the way."""
        from ckreg.inspect.cache import stat_key

        store = self.store
        kinds: list[Any] = [None] * len(files)
        sniff_keys = [stat_key(e[3], e[5], SNIFF_OPTIONS) for e in files] if store is not None else [None] * len(files)
        known = store.get_values(sniff_keys) if store is not None else {}
        for i, key in enumerate(sniff_keys):
            kinds[i] = _sniffed(known.get(key)) if key in known else None
        wanted = [own and (self.only is None or e[4] in self.only) for e, own in zip(files, mine)]
        # what the cache knows besides the sniff: inspections and scaler summaries of unchanged files
        if store is not None:
            ikeys = {e[3]: stat_key(e[3], e[5], self.insp_options) for e, k, w in zip(files, kinds, wanted)
                     if w and (k is None or k[0] == "checkpoint")}
            got = store.get_many(ikeys.values(), count=False)
            for path, key in ikeys.items():
                self.insp_keys[path] = key
                if key in got:
                    self.inspections[path] = got[key]
                    self.cached.add(key)
            skeys = {e[3]: stat_key(e[3], e[5], _scaler_options(self.tiers)) for e, k, w in zip(files, kinds, wanted)
                     if w and (k is None or k[0] == "scaler")}
            svals = store.get_values(skeys.values())
            for path, key in skeys.items():
                entry = _scaler_from_json(svals.get(key)) if key in svals else None
                if entry is not None:
                    self.scalers[path] = entry
        todo = [i for i, e in enumerate(files)
                if kinds[i] is None or (wanted[i] and kinds[i][0] == "checkpoint" and e[3] not in self.inspections)
                or (wanted[i] and kinds[i][0] == "scaler" and e[3] not in self.scalers)]
        items = [(files[i][3], wanted[i] and files[i][3] not in self.inspections and files[i][3] not in self.scalers)
                 for i in todo]
        declared = tuple(registry().declared())
        import functools

        worker = functools.partial(_scan_one, hash_policy=self.hash_policy, inline_limit=INLINE_HASH_BYTES,
                                   declared=declared, tiers=self.tiers)
        for i, (kind, why, value) in zip(todo, self.runner.map(worker, items, "inspecting")):
            path = files[i][3]
            if kinds[i] is None and sniff_keys[i]:
                self.new[sniff_keys[i]] = _json_dumps([kind, why])
            kinds[i] = (kind, why)
            if value is None:
                continue
            if kind == "scaler":
                self.scalers[path] = value
                if store is not None and value[2] is not None:   # an unreadable file is not remembered
                    key = stat_key(path, files[i][5], _scaler_options(self.tiers))
                    if key:
                        self.new[key] = _scaler_to_json(value)
            else:
                self.inspections[path] = value
        return kinds

    def inspect(self, paths: list[Path], inline_limit: int = INLINE_HASH_BYTES) -> list[Any]:
        """The inspection of each checkpoint (folders and files the scan did not inspect: cached or on the pool)."""
        from ckreg.inspect.cache import file_key

        for p in paths:
            s_p = str(p)
            if s_p not in self.insp_keys:
                self.insp_keys[s_p] = file_key(p, self.insp_options) if self.store is not None else None
        missing = {str(p): self.insp_keys[str(p)] for p in paths if str(p) not in self.inspections}
        if self.store is not None and missing:
            got = self.store.get_many((k for k in missing.values() if k), count=False)
            for s_p, key in missing.items():
                if key in got:
                    self.inspections[s_p] = got[key]
                    self.cached.add(key)
        todo = [p for p in paths if str(p) not in self.inspections]
        for p, insp in zip(todo, _inspect_all(self.runner, todo, hash_policy=self.hash_policy, tiers=self.tiers,
                                              inline_limit=inline_limit)):
            self.inspections[str(p)] = insp
        out = []
        for p in paths:
            insp = self.inspections[str(p)]
            out.append(insp if insp.path == str(p) else insp.model_copy(update={"path": str(p)}))
        return out

    def stats(self, files: list["_File"]) -> dict[str, Any]:
        """The cache's statistics, hits and misses counting the checkpoints' inspections."""
        hits = sum(1 for f in files if self.insp_keys.get(str(f.abs)) in self.cached)
        self.store.hits, self.store.misses = hits, len(files) - hits
        return self.store.stats()

    def write_back(self, files: list["_File"]) -> None:
        """Write back what this audit learnt: new sniffs, scaler summaries and inspections (and
        weights hashes the collision pass added to cached ones), in one transaction."""
        if self.store is None:
            return
        for f in files:
            key = self.insp_keys.get(str(f.abs))
            if not key:
                continue
            if key not in self.cached or f.insp.weights_sha256 != self.inspections[str(f.abs)].weights_sha256:
                try:
                    self.new[key] = f.insp.model_dump_json()
                except ValueError:   # a name that is not UTF-8: inspected again next time
                    continue
        self.store.put_values(self.new)
        self.new = {}


def _json_dumps(value: Any) -> str:
    """Compact JSON, ASCII only (a name that is not UTF-8 is escaped, not an error when stored)."""
    import json

    return json.dumps(value, separators=(",", ":"))


def _sniffed(value: str | None) -> tuple[str | None, str] | None:
    """A cached sniff answer, checked for shape (anything else is a miss)."""
    import json

    try:
        kind, why = json.loads(value or "")
    except (ValueError, TypeError):
        return None
    if kind not in (None, "checkpoint", "scaler") or not isinstance(why, str):
        return None
    return kind, why


def _scaler_to_json(entry: tuple) -> str:
    summary, findings, digest = entry
    return _json_dumps({"summary": summary, "findings": [f.model_dump(mode="json") for f in findings],
                        "sha256": digest})


def _scaler_from_json(value: str | None) -> tuple | None:
    """A cached scaler entry, validated (findings through the model; anything odd is a miss)."""
    import json

    try:
        doc = json.loads(value or "")
        summary, digest = doc["summary"], doc["sha256"]
        findings = [Finding.model_validate(x) for x in doc["findings"]]
    except (ValueError, TypeError, KeyError):
        return None
    if not isinstance(summary, dict) or not isinstance(digest, str):
        return None
    return summary, findings, digest


def _hash_collisions(files: list[_File], runner: _Runner) -> None:
    """Fill `weights_sha256` only where it can matter: files sharing a layout.

    Within a layout group, files with the same bytes share weights by definition;
    one representative per distinct byte hash is read again and hashed.
    """
    groups: dict[str, list[_File]] = {}
    for f in files:
        if f.insp.ok and f.insp.layout_sha256 and not f.insp.weights_sha256:
            groups.setdefault(f.insp.layout_sha256, []).append(f)
    todo: dict[str, list[_File]] = {}
    for members in groups.values():
        if len(members) < 2:
            continue
        for f in members:
            todo.setdefault(_bytes_identity(f), []).append(f)
    reps = [fs[0] for fs in todo.values()]
    digests = runner.map(_weights_digest, [str(f.abs) for f in reps], "hashing")
    for rep, digest in zip(reps, digests):
        for f in todo[_bytes_identity(rep)]:
            f.insp = f.insp.model_copy(update={"weights_sha256": digest})


def _scaler_info(path: Path, tiers: tuple[str, ...] | None = None) -> tuple[dict[str, Any], list[Finding]]:
    """n_features and friends of a scaler file, read symbolically (never unpickled)."""
    from ckreg.errors import UnsafeFileError

    try:
        from ckreg.readers import read_scaler_summary
    except ImportError:  # pragma: no cover - readers always ship with ckreg
        return {}, []
    from ckreg.readers.allowlist import scaler_tiers

    try:
        summary = read_scaler_summary(path, tiers=scaler_tiers(tiers))
    except UnsafeFileError as exc:
        return {"error": str(exc)}, [Finding.make("unsafe-global", f"scaler refused: {exc}")]
    except CkregError as exc:
        if path.suffix.lower() == ".json":
            return _json_scaler_info(path)
        seen = [f for f in getattr(exc, "findings", None) or [] if isinstance(f, Finding)]
        return {"error": str(exc)}, [Finding.make("unreadable", f"scaler cannot be read: {exc}")] + seen
    info: dict[str, Any] = {}
    for key in ("format", "class_name", "n_features", "n_samples_seen", "sklearn_version", "feature_names", "recipe"):
        value = getattr(summary, key, None)
        if value is not None:
            info[key] = value if isinstance(value, (int, float, str, bool)) else _jsonable(value)
    content = _scaler_content(getattr(summary, "mean", None), getattr(summary, "scale", None))
    if content:
        info["content_sha256"] = content
    return info, list(getattr(summary, "findings", []) or [])


def _scaler_content(mean: Any, scale: Any) -> str | None:
    """sha256 over a scaler's statistics (mean and scale, 12 significant digits): equal for the same
    scaler saved as a pickle, a joblib file or ckreg JSON."""
    import hashlib
    import json

    if not isinstance(mean, (list, tuple)) or not isinstance(scale, (list, tuple)) or not mean:
        return None
    try:
        doc = [[float(f"{float(v):.12g}") for v in mean], [float(f"{float(v):.12g}") for v in scale]]
    except (TypeError, ValueError):
        return None
    return hashlib.sha256(json.dumps(doc).encode()).hexdigest()


def _json_scaler_info(path: Path) -> tuple[dict[str, Any], list[Finding]]:
    import json

    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
        mean = obj.get("mean")
        n = obj.get("n_features") or (len(mean) if isinstance(mean, list) else None)
        info = {"n_features": n, "format": "json"}
        content = _scaler_content(mean, obj.get("scale"))
        if content:
            info["content_sha256"] = content
        return info, []
    except (OSError, ValueError, AttributeError) as exc:
        return {"error": str(exc)}, [Finding.make("unreadable", f"scaler cannot be read: {exc}")]


def _jsonable(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    return str(value)


def _input_size(insp: Any) -> int | None:
    v = (insp.hyperparameters or {}).get("input_size")
    if v is None and insp.family in MS3D_FAMILIES:
        return MS3D_CHANNELS  # the [B, T, 4, 2] reshape needs C = 8 (spec, "MS3D families")
    return int(v) if isinstance(v, int) else None


def _check_data_hook(data: Any) -> None:
    """`--data` needs `ckreg.verify` and torch; say so before any heavy work."""
    if data is None:
        return
    if importlib.util.find_spec("ckreg.verify") is None:
        raise UsageError("--data needs ckreg.verify, which this installation does not have")
    if importlib.util.find_spec("torch") is None:
        raise UsageError("--data runs the models and needs torch", hint="pip install 'ckreg[train]'")
    if not Path(data).exists():
        raise UsageError(f"--data {data}: no such file or folder")


def audit(path: str | os.PathLike, manifest: Manifest | str | os.PathLike | None = None, *,
          data: str | os.PathLike | None = None, jobs: int | None = None, hash_policy: str = "collisions",
          progress: Progress | None = None, min_acc: float | None = None,
          families: Iterable[str | os.PathLike] = (), tiers: tuple[str, ...] | None = None,
          lineage: bool = False, cache: Any = None, only: Iterable[str] | None = None,
          shard: Shard | str | None = None, lazy: bool = False) -> Report | KeptReport:
    """Audit a folder (or one file) of checkpoints; returns a `Report` (never raises for bad files).

    `manifest` is a `Manifest` or a path (validated first: ManifestError before any heavy work).
    `jobs` inspection processes (default: min(cpu count, 8), 1 for few files). `hash_policy`:
    "collisions" hashes small files inline and large ones only where layouts collide, "all" hashes
    every file, "none" skips
    duplicate detection. `data` verifies every checkpoint + scaler pair on a dataset
    (`ckreg.verify.verify_for_audit`, issue #5) against each model's accuracy target (declared,
    `min_acc`, or the manifest's `min_accuracy`). `progress(stage, done, total)` is called as files
    are inspected. `families` are family files (docs/families.md) registered before the manifest
    is read. `lineage` adds a `lineage` note per edge between the checkpoints
    (`ckreg lineage`). A missing path is an error in the report (exit 2); a tree without any
    checkpoint leaves `checked` empty (exit 3). `cache` (an `InspectionCache` or a path; None: off)
    reuses inspections of files unchanged since an earlier audit (`ckreg.inspect.cache`).
    `shard` ("I/N" or a `Shard`) audits the files of one shard of a folder (`ckreg.shards`): the
    report holds what each file says on its own and carries what `ckreg.shards.merge_reports`
    needs for the whole-archive checks. `lazy`: an unchanged tree's report, reused from the cache,
    comes back as the `KeptReport` it was kept as (its JSON, validated only when asked), for a
    caller that writes it out as JSON.
    """
    if hash_policy not in HASH_POLICIES:
        raise UsageError(f"hash_policy must be one of {', '.join(HASH_POLICIES)}, got {hash_policy!r}")
    if jobs is not None and jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {jobs}")
    if shard is not None:
        shard = Shard.parse(shard)
        for given_opt, name in ((data, "--data"), (lineage, "--lineage")):
            if given_opt:
                raise UsageError(f"--shard cannot be combined with {name}: it needs every checkpoint of the "
                                 "archive at once", hint=f"run {name} on the whole archive, or drop it")
    if families:
        from ckreg.families import add_family_files   # PyYAML: only when family files are given

        add_family_files(list(families))   # before the manifest, which may declare models of these families
    if manifest is not None:   # imported here: an audit without a manifest never loads the module
        from ckreg.manifest import Manifest, load_manifest

        if not isinstance(manifest, Manifest):
            manifest = load_manifest(manifest)
    layouts = manifest.expected_layouts() if manifest is not None else {}   # module: lock, reference: files
    _check_data_hook(data)

    remote = is_url(path)   # a bucket prefix or object (`ckreg.bucket`): read by range requests
    if remote and (data is not None or lineage or only is not None or shard is not None):
        what = "--data" if data is not None else "--lineage" if lineage else "--staged" if only is not None \
            else "--shard"
        why = {"--shard": "a shard hashes every file of its share", "--staged": "it reads git's index"}.get(
            what, "it reads every tensor")
        raise UsageError(f"{what} needs a local copy of {path}: {why}",
                         hint=f"download the archive and audit the copy with {what}, or drop {what}")
    given = Path(path) if not remote else None
    report = Report(command="audit", version=__version__, root=str(path) if remote else os.path.abspath(given))
    report.extra["hash_policy"] = hash_policy
    from ckreg.readers import DEFAULT_TIERS

    report.extra["allowlist_tiers"] = list(tiers if tiers is not None else DEFAULT_TIERS)
    if manifest is not None:
        report.extra["manifest"] = _manifest_record(manifest)
    found = None
    if remote:
        from ckreg.bucket import walk_url
        from ckreg.readers.remote import transfers

        before = transfers()
        listed = walk_url(str(path), progress=progress)
        if listed is None:
            report.errors.append(ErrorEntry(path=str(path), message="no such object or prefix"))
            return report
        found = (*listed, before)
    elif not given.exists() and not given.is_symlink():
        report.errors.append(ErrorEntry(path=str(path), message="no such file or folder"))
        return report
    elif shard is not None and (not given.is_dir() or is_model_folder(given)):
        raise UsageError(f"--shard {shard}: {path} is not a folder of checkpoints; a shard is a share of a folder's files",
                         hint="audit a single file or model folder without --shard")
    store = _open_cache(cache)
    try:
        out = _audit_tree(given, report, store, manifest=manifest, layouts=layouts, data=data, jobs=jobs,
                          hash_policy=hash_policy, progress=progress, min_acc=min_acc, tiers=tiers,
                          lineage=lineage, only=only, shard=shard, found=found, lazy=lazy)
        if isinstance(out, Report):   # this run's own figures last: what a reused report replaces (`_Memo`)
            out.extra.update({k: out.extra.pop(k) for k in RUN_FIGURES if k in out.extra})
        return out
    finally:
        if store is not None:
            store.close()


def _audit_tree(given: Path | None, report: Report, store: Any, *, manifest: Manifest | None,
                layouts: dict[str, Any], data: Any, jobs: int | None, hash_policy: str, progress: Progress | None,
                min_acc: float | None, tiers: tuple[str, ...] | None, lineage: bool, only: Iterable[str] | None,
                shard: Shard | None, found: tuple | None = None, lazy: bool = False) -> Report | KeptReport:
    """`audit` once the arguments are checked: walk, inspect (cached), reconcile. `found`: a remote
    audit's (root, walked, listing, transfers before) from `ckreg.bucket.walk_url`."""
    memo = None
    remote = found is not None
    # a shard cannot see which layouts collide in the other shards: it hashes every file of its share
    inspect_policy = "all" if shard is not None and hash_policy == "collisions" else hash_policy
    runner = _Runner(1, progress, threads=remote)
    scan = _Scan(store, runner, inspect_policy, tiers, set(only) if only is not None else None)
    if found is not None:
        root, walked, listing, before = found
        n_files = len(walked.checkpoints)
    elif given.is_file():
        root = given.parent
        walked = Walked(root=root)
        if sniff(given) == "scaler":
            walked.scalers.append(given)
        else:  # a file named explicitly is checked whatever its bytes
            walked.checkpoints.append(given)
        for sib in sorted(root.iterdir()):
            if sib != given and sib.is_file() and not sib.is_symlink() and sniff(sib) == "scaler":
                walked.scalers.append(sib)
        n_files = len(walked.checkpoints)
    elif given.is_dir() and is_model_folder(given):   # one model folder: audited as one model
        root = given.parent
        walked = walk(given)
        walked.root = root
        walked.checkpoints = [given] + [p for p in walked.checkpoints if p != given]
        walked.skipped = [x.model_copy(update={"path": f"{given.name}/{x.path}"}) for x in walked.skipped]
        walked.errors = [x.model_copy(update={"path": f"{given.name}/{x.path}" if x.path else x.path})
                         for x in walked.errors]
        n_files = len(walked.checkpoints)
    elif given.is_dir():
        root = given
        events = _traverse(root)
        owns = shard.owns if shard is not None else None
        n_files = sum(1 for e in events if e[0] in ("file", "folder") and (owns is None or owns(e[4] if e[0] == "file"
                      else e[1].relative_to(root).as_posix())))
        runner.jobs = jobs or (1 if n_files < 8 else min(os.cpu_count() or 1, 8))
        if store is not None and data is None:
            memo = _Memo(store, root, events, report, manifest=manifest, layouts=layouts, hash_policy=hash_policy,
                         tiers=tiers, lineage=lineage, only=only, shard=shard)
            again = memo.load(runner.jobs, lazy)
            if again is not None:
                return again
        try:
            walked = _replay(root, events, owns, scan.classify)
        except BaseException:
            runner.close()
            raise
        if only is not None:
            walked = _restrict(walked, root, set(only))
        # walk order, whatever the walk or a shard's share: what a merge of shards reproduces
        walked.checkpoints.sort(key=lambda p: _walk_key(_rel(root, p)))
        walked.scalers.sort(key=lambda p: _walk_key(_rel(root, p)))
    else:
        report.errors.append(ErrorEntry(path=str(given), message="not a regular file or folder"))
        return report
    report.root = str(root) if remote else os.path.abspath(root)
    report.skipped.extend(walked.skipped)
    report.errors.extend(walked.errors)

    n_jobs = jobs or (1 if n_files < 8 else min(os.cpu_count() or 1, 8))
    if remote:   # threads: waiting on the network, and sharing the blocks the walk fetched
        n_jobs = jobs or min(8, max(1, len(walked.checkpoints)))
    report.extra["jobs"] = n_jobs
    runner.jobs = n_jobs
    try:
        insps = scan.inspect(walked.checkpoints, inline_limit=0 if remote else INLINE_HASH_BYTES)
        files = [_File(rel=_rel(root, p), abs=p, insp=insp) for p, insp in zip(walked.checkpoints, insps)]
        if inspect_policy == "collisions":
            _hash_collisions(files, runner)
        if store is not None:
            scan.write_back(files)
            report.extra["cache"] = scan.stats(files)
    finally:
        runner.close()
    files = _set_aside_unchecked(files, report)

    findings: list[Finding] = []
    for f in files:
        findings.extend(_carry(f.insp.findings, f.rel))
    scalers = _read_scalers({_rel(root, p): p for p in walked.scalers}, tiers, known=scan.scalers)
    declared = _read_scalers(_declared_scaler_paths(root, manifest, scalers, shard.owns if shard else None), tiers)
    for rec in scalers.values():
        findings.extend(rec["findings"])
    reasons = _reconcile_local(root.absolute().name, files, manifest, findings, layouts)

    if shard is not None:   # the whole-archive checks are the merge's: carry what they read
        report.checked = [f.rel for f in files] + sorted(scalers)
        report.findings = _ordered(findings)
        report.extra["files"] = {f.rel: _summary(f) for f in files}
        report.extra["scalers"] = {rel: rec["summary"] for rel, rec in sorted(scalers.items())}
        report.extra["shard"] = _shard_record(shard, root, files, reasons, scalers, declared, manifest,
                                              hash_policy, report, only is not None)
        if memo is not None:
            memo.keep(report)
        return report

    decl_status, scaler_info, used = _reconcile_archive(files, reasons, scalers, declared, manifest,
                                                       findings, hash_policy)
    if data is not None:
        _verify(files, manifest, data, findings, report, min_acc, progress=progress)
    if lineage and files:   # `lineage` notes (ckreg.lineage): copies, transplants, fine-tunes, students
        from ckreg.lineage.provenance import audit_findings

        notes, edges = audit_findings([f.abs for f in files], root)
        findings.extend(notes)
        report.extra["lineage"] = edges
    _fill(report, files, used, findings, scaler_info, decl_status, manifest)
    if remote:
        from ckreg.bucket import transfer_summary

        report.extra["transfer"] = transfer_summary(
            root, {f.rel: f.abs for f in files} | {rel: root / rel for rel in used}, listing, before)
    if memo is not None:
        memo.keep(report)
    return report


def _reconcile_archive(files: list[_File], reasons: dict[tuple[str, str], list[str]],
                       scalers: dict[str, dict[str, Any]], declared: dict[str, dict[str, Any]],
                       manifest: Manifest | None, findings: list[Finding], hash_policy: str
                       ) -> tuple[dict[str, Any], dict[str, Any], dict[str, dict[str, Any]]]:
    """The checks that need the whole archive, on the audit's files or on the shards' records:
    declarations (`model-missing`), scaler pairing, identical scalers, duplicate weights."""
    decl_status = _declarations(files, manifest, reasons, findings)
    scaler_info, used = _pair_scalers(files, scalers, manifest, findings, declared)
    if hash_policy != "none":
        _duplicates(files, findings)
    return decl_status, scaler_info, used


def _fill(report: Report, files: list[_File], scalers: dict[str, Any], findings: list[Finding],
          scaler_info: dict[str, Any], decl_status: dict[str, Any], manifest: Manifest | None) -> None:
    if files:
        report.checked = [f.rel for f in files] + sorted(scalers)
    report.findings = _ordered(findings)
    report.extra["files"] = {f.rel: _summary(f) for f in files}
    report.extra["scalers"] = scaler_info
    if manifest is not None:
        report.extra["declarations"] = decl_status


def _ordered(findings: list[Finding]) -> list[Finding]:
    return sorted(_dedupe(findings), key=lambda x: (x.path or "", -x.severity.rank, x.code, x.message))


def _walk_key(rel: str) -> tuple:
    """`walk`'s order as a sort key of a relative path (a model folder's ends with `/`): topdown,
    names sorted, a folder's files before its subfolders."""
    parts = rel.rstrip("/").split("/")
    if rel.endswith("/"):
        return tuple((1, p) for p in parts)
    return tuple((1, p) for p in parts[:-1]) + ((0, parts[-1]),)


def _manifest_record(manifest: Manifest) -> dict[str, Any]:
    import hashlib

    text = manifest.text
    return {"path": manifest.source, "name": manifest.name, "models": [m.name for m in manifest.models],
            "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest() if text is not None else None}


# -- shards (`ckreg.shards`) ----------------------------------------------------------------------

def _shard_record(shard: Shard, root: Path, files: list[_File], reasons: dict[tuple[str, str], list[str]],
                  scalers: dict[str, dict[str, Any]], declared: dict[str, dict[str, Any]],
                  manifest: Manifest | None, hash_policy: str, report: Report, staged: bool) -> dict[str, Any]:
    """What the merge needs besides the shard report's files and findings (`extra.shard`)."""
    from ckreg.shards import SHARD_FORMAT, families_fingerprint

    needed: dict[str, dict[str, list[str]]] = {}
    for decl in (manifest.models if manifest is not None else []):
        at_path, same_family = _looked_at(decl, files)
        for f in (*at_path, *same_family):
            needed.setdefault(f.rel, {})[decl.name] = reasons.get((decl.name, f.rel), [])
    text = manifest.text if manifest is not None else None
    if manifest is not None and text is None:
        raise UsageError("--shard needs the manifest's text to record it; load it from its file")

    def scaler_rows(recs: dict[str, dict[str, Any]]) -> dict[str, Any]:
        return {rel: {"summary": rec["summary"], "sha256": rec["sha256"],
                      "findings": [x.model_dump(mode="json") for x in rec["findings"]]}
                for rel, rec in sorted(recs.items())}

    return {
        "format": SHARD_FORMAT, "index": shard.index, "count": shard.count,
        "root_name": root.absolute().name,
        "options": {"hash_policy": hash_policy, "allowlist_tiers": report.extra.get("allowlist_tiers"),
                    "staged": staged},
        "families": families_fingerprint(),
        "manifest": ({**report.extra["manifest"], "text": text} if manifest is not None else None),
        "left_to_merge": ["model-missing", "scaler-missing", "scaler-ambiguous", "scaler-feature-mismatch",
                          "scaler-duplicate", "duplicate-weights"],
        "reasons": needed,
        "scalers": scaler_rows(scalers),
        "declared_scalers": scaler_rows(declared),
    }


def _file_from_summary(rel: str, s: dict[str, Any], root: Path) -> _File:
    """A checked file as a shard recorded it (`_summary`): what the whole-archive checks read."""
    from ckreg.inspect.model import Inspection, ParamCounts

    insp = Inspection(path=str(root / rel), format=s.get("format"), size=s.get("size"), family=s.get("family") or "unknown",
                      ambiguous_between=list(s.get("ambiguous_between") or []),
                      hyperparameters=dict(s.get("hyperparameters") or {}),
                      params=ParamCounts(trainable=s.get("params") or 0, buffers=s.get("buffers") or 0),
                      sha256=s.get("sha256"), layout_sha256=s.get("layout_sha256"),
                      weights_sha256=s.get("weights_sha256"), error=s.get("error"))
    return _File(rel=rel, abs=root / rel, insp=insp, by_path=list(s.get("declared_by_path") or []),
                 satisfies=list(s.get("satisfies") or []))


def merge_shards(reports: list[Report]) -> Report:
    """The whole-archive report from shard reports that `ckreg.shards.check_shards` accepted.

    Runs the same whole-archive checks as `audit` (`_reconcile_archive`) on what the shards
    recorded; each shard's own findings are final and kept as they are.
    """
    from ckreg.manifest import parse_manifest

    first = reports[0]
    meta = first.extra["shard"]
    root = Path(first.root or ".")
    recorded = meta.get("manifest")
    manifest = parse_manifest(recorded["text"], source=recorded["path"]) if recorded else None
    report = Report(command="audit", version=first.version, root=first.root)
    report.extra["hash_policy"] = meta["options"]["hash_policy"]
    report.extra["allowlist_tiers"] = meta["options"]["allowlist_tiers"]
    if manifest is not None:
        report.extra["manifest"] = {k: v for k, v in recorded.items() if k != "text"}
    findings: list[Finding] = []
    files: list[_File] = []
    reasons: dict[tuple[str, str], list[str]] = {}
    scalers: dict[str, dict[str, Any]] = {}
    declared: dict[str, dict[str, Any]] = {}

    def scaler_recs(rows: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {rel: {"summary": row["summary"], "sha256": row.get("sha256"),
                      "findings": [Finding.model_validate(x) for x in row.get("findings", [])]}
                for rel, row in rows.items()}

    for r in reports:
        s = r.extra["shard"]
        report.skipped.extend(r.skipped)
        report.errors.extend(r.errors)
        findings.extend(r.findings)
        files.extend(_file_from_summary(rel, summary, root) for rel, summary in r.extra.get("files", {}).items())
        for rel, per_decl in s.get("reasons", {}).items():
            for name, why in per_decl.items():
                reasons[(name, rel)] = list(why)
        scalers.update(scaler_recs(s.get("scalers", {})))
        declared.update(scaler_recs(s.get("declared_scalers", {})))
    files.sort(key=lambda f: _walk_key(f.rel))
    scalers = dict(sorted(scalers.items(), key=lambda kv: _walk_key(kv[0])))
    decl_status, scaler_info, used = _reconcile_archive(files, reasons, scalers, declared, manifest,
                                                       findings, report.extra["hash_policy"])
    _fill(report, files, used, findings, scaler_info, decl_status, manifest)
    return report


# The entries of a report's extra that describe the run rather than the archive: a reused report
# has this run's.
RUN_FIGURES = ("jobs", "cache")


class _Memo:
    """The whole report of an unchanged tree, reused: the cache's last report for this tree and these
    options, kept with the key of everything it was computed from.

    That key covers every input the audit reads: each file's identity as the inspection cache
    sees it (path, size, mtime_ns, inode, device; a model folder's members), the walk's own
    decisions (links, skipped folders, listing errors), the manifest (its declarations, lines,
    expected layouts, and the files its scalers name), the options (hash policy, tiers,
    declared families, lineage, --staged's list) and the ckreg version. Any change there is a
    miss, and the audit runs as usual on its per-file entries. Never used with `--data`.

    The report is kept as a `KeptReport` (`ckreg.findings`): its indented JSON without this
    run's figures, and a head with its counts and errors. Writing it out as JSON then costs no
    more than reading it (an unchanged 5,000-file archive's report is ~9 MB; validating it back
    into objects and serialising it again were half of a warm audit's time).
    """

    def __init__(self, store: Any, root: Path, events: list[tuple], report: Report, *, manifest: Manifest | None,
                 layouts: dict[str, Any], hash_policy: str, tiers: tuple[str, ...] | None, lineage: bool,
                 only: Iterable[str] | None, shard: Shard | None = None):
        import hashlib
        import json

        from ckreg.inspect.cache import file_key

        self.store = store
        base = {"entry": "report", "root": os.path.abspath(root), "version": __version__,
                "options": _inspection_options(hash_policy, tiers), "lineage": lineage,
                "manifest": manifest.source if manifest is not None else None,
                "shard": str(shard) if shard is not None else None}
        self.slot = hashlib.sha256(_json_dumps(base).encode()).hexdigest()
        declared: Any = None
        if manifest is not None:
            scalers = sorted({m.scaler for m in manifest.models if m.scaler})
            declared = {"models": manifest.model_dump(mode="json"),
                        "lines": [manifest.line_of_model(m.name) for m in manifest.models],
                        "layouts": layouts, "scalers": [[s, file_key(root / s, {})] for s in scalers]}
        ident = [base, sorted(only) if only is not None else None, declared, dict(report.extra)]
        h = hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode())
        # the tree, one record per entry: tag, then fields a NUL apart (no path holds a NUL), a newline
        for e in events:
            if e[0] == "file":
                st = e[5]
                h.update(f"f\0{e[4]}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}\0{st.st_dev}\n"
                         .encode("utf-8", "surrogateescape"))
            elif e[0] == "folder":
                h.update(f"d\0{e[1].relative_to(root).as_posix()}\0{file_key(e[1], {})}\n"
                         .encode("utf-8", "surrogateescape"))
            else:
                h.update(f"{e[0]}\0{json.dumps(e[1].model_dump(mode='json'))}\n".encode())
        self.key = h.hexdigest()

    def load(self, jobs: int, lazy: bool = False) -> Report | KeptReport | None:
        """The stored report when its key is this audit's, with this run's jobs and cache figures:
        a `KeptReport` when `lazy`, else validated into a `Report` (a value that does not parse or
        validate is a miss)."""
        value = self.store.get_values([self.slot]).get(self.slot)
        if value is None or not value.startswith(self.key + "\n"):
            return None
        head, sep, text = value[len(self.key) + 1:].partition("\n")
        try:
            if not sep:
                raise ValueError("no report after the head")
            kept = KeptReport.load(text, head)
            stats = kept.run.get("cache")
            if not isinstance(stats, dict) or "jobs" not in kept.run:
                raise ValueError("a kept report carries its run's figures")
            n = int(stats.get("hits") or 0) + int(stats.get("misses") or 0)
            self.store.hits, self.store.misses = n, 0
            kept.set_run({"jobs": jobs, "cache": {**self.store.stats(), "report_reused": True}})
            return kept if lazy else kept.report()
        except ValueError:
            self.store.damaged += 1
            return None

    def keep(self, report: Report) -> None:
        try:   # the per-file summaries are what a kept report leaves out of its head
            text, head = KeptReport.keep(report, RUN_FIGURES, heavy=("files", "scalers", "shard", "lineage"))
        except ValueError:   # a name that is not UTF-8 (a lone surrogate): this report is not kept
            return
        self.store.put_values({self.slot: self.key + "\n" + head + "\n" + text})


def _dedupe(findings: list[Finding]) -> list[Finding]:
    seen, out = set(), []
    for f in findings:
        key = (f.code, f.path, f.message)
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out


def _summary(f: _File) -> dict[str, Any]:
    i = f.insp
    return {
        "family": i.family,
        "ambiguous_between": list(i.ambiguous_between) or None,
        "hyperparameters": _jsonable(i.hyperparameters),
        "params": i.params.trainable,
        "buffers": i.params.buffers,
        "format": i.format,
        "size": i.size,
        "sha256": i.sha256,
        "layout_sha256": i.layout_sha256,
        "weights_sha256": i.weights_sha256,
        "declared_by_path": f.by_path,
        "satisfies": f.satisfies,
        "scaler": f.scaler,
        "scaler_source": f.scaler_source,
        "error": i.error,
    }


def _spec_text(decl: ModelDecl) -> str:
    if decl.module:
        return f"module {decl.module}"
    if decl.reference:
        return f"reference {decl.reference}"
    hp = ", ".join(f"{k}={_fmt(v)}" for k, v in decl.declared().items() if k not in ("dropout", "pool"))
    return f"{decl.family}" + (f" ({hp})" if hp else "")


# What a declaration that nothing satisfies names as looked at: the files at its path, and the
# first few others of its family (in walk order).
LOOKED_AT_SAME_FAMILY = 5


def _reconcile_local(root_name: str, files: list[_File], manifest: Manifest | None, findings: list[Finding],
                     layouts: dict[str, Any] | None = None) -> dict[tuple[str, str], list[str]]:
    """What each file says on its own: declarations against the file (by path and by content),
    undeclared files, names as labels where no declaration speaks.

    Fills `by_path` and `satisfies`; returns why each (declaration, file) pair does not match
    (messages; empty when it does), which `_declarations` reads for the whole archive.
    """
    reasons: dict[tuple[str, str], list[str]] = {}
    if manifest is not None:
        decls = {d.name: d for d in manifest.models}
        for f in files:
            mismatches: dict[str, list[Finding]] = {}
            for decl in manifest.models:
                mism = compare(f.insp, decl, f.rel, (layouts or {}).get(decl.name))
                mismatches[decl.name] = mism
                reasons[(decl.name, f.rel)] = [x.message for x in mism]
                if not mism and f.insp.ok:
                    f.satisfies.append(decl.name)
                if decl.matches_path(f.rel):
                    f.by_path.append(decl.name)
            for name in f.by_path:
                decl, mism = decls[name], mismatches[name]
                # a file that is exactly another declared model (of another family or layout): mislabeled
                other = [o for o in f.satisfies if o != name and decls[o].label != decl.label]
                if mism and other and (decl.family is None or decls[other[0]].family is None):
                    o = decls[other[0]]
                    findings.append(Finding.make(
                        "family-mislabeled", f"declared as {name!r} [{_spec_text(decl)}] but the weights are exactly "
                        f"the declared model {o.name!r} [{_spec_text(o)}]", path=f.rel,
                        expected=decl.label, actual=o.label))
                    continue
                # a file where a declaration says it lives: every way it differs
                findings.extend(x.model_copy(update={"message": f"declared as {name!r}: {x.message}"})
                                for x in mism if x.code != "unreadable")
        for f in files:
            if f.insp.ok and not f.by_path and not f.satisfies:
                fam = f.insp.family
                findings.append(Finding.make(
                    "checkpoint-undeclared",
                    f"not declared in {manifest.source or 'the manifest'}: no declaration's path matches it and "
                    f"its weights ({fam}) satisfy none", path=f.rel, actual=fam))
        # a file a module:/reference: declaration claims is not of "unknown" family
        claimed = {f.rel for f in files if any(decls[n].family is None for n in (*f.by_path, *f.satisfies))}
        findings[:] = [x for x in findings if not (x.code == "family-unknown" and x.path in claimed)]
    # names as labels: for every file no declaration places (all files without a manifest)
    for f in files:
        if f.by_path or not f.insp.ok:
            continue
        label = name_label(f.rel, root_name)
        if label is None:
            continue
        fam, where = label
        if f.insp.family in ("unknown",):
            continue
        if _family_fits(f.insp, fam):
            continue
        actual = f.insp.family if f.insp.family != "ambiguous" else " or ".join(f.insp.ambiguous_between)
        findings.append(Finding.make(
            "family-mislabeled", f"the {where} says {fam} but the weights are {actual}",
            path=f.rel, expected=fam, actual=f.insp.family))
    return reasons


def _looked_at(decl: ModelDecl, files: list[_File]) -> tuple[list[_File], list[_File]]:
    """(files at the declared path, the first other files of its family): what a `model-missing` names."""
    at_path = [f for f in files if decl.name in f.by_path]
    same_family = [f for f in files if f not in at_path and f.insp.ok and decl.family is not None
                   and _family_fits(f.insp, decl.family)]
    return at_path, same_family[:LOOKED_AT_SAME_FAMILY]


def _declarations(files: list[_File], manifest: Manifest | None, reasons: dict[tuple[str, str], list[str]],
                  findings: list[Finding]) -> dict[str, Any]:
    """Each declaration over the whole archive: satisfied (by path or content, with the files) or
    `model-missing`, naming every file looked at and why it fails."""
    status: dict[str, Any] = {}
    if manifest is None:
        return status
    for decl in manifest.models:
        at_path, same_family = _looked_at(decl, files)
        good_at_path = [f.rel for f in at_path if decl.name in f.satisfies]
        good_elsewhere = [f.rel for f in files if decl.name in f.satisfies and f not in at_path]
        entry: dict[str, Any] = {"family": decl.family, "declared": _jsonable(decl.declared()),
                                 "path": decl.path, "line": manifest.line_of_model(decl.name)}
        if good_at_path or good_elsewhere:
            entry.update(status="satisfied", by="path" if good_at_path else "content",
                         files=good_at_path or good_elsewhere)
            status[decl.name] = entry
            continue
        looked: dict[str, list[str]] = {}
        for f in at_path:
            looked[f.rel] = list(reasons.get((decl.name, f.rel)) or ["cannot be inspected"])
        for f in same_family:
            looked[f.rel] = list(reasons.get((decl.name, f.rel), []))
        parts = []
        if decl.path is None:
            parts.append("no path is declared")
        elif not at_path:
            from ckreg.manifest import is_glob

            parts.append(f"nothing at the declared path {decl.path}" + (" (glob)" if is_glob(decl.path) else ""))
        for rel, why in looked.items():
            how = "declared path" if rel in {f.rel for f in at_path} else "same family"
            parts.append(f"{rel} ({how}): " + "; ".join(why))
        if not same_family:
            parts.append(f"no other file in the tree holds {decl.family} weights" if decl.family
                         else "no file in the tree has its layout")
        entry.update(status="missing", files=[], looked_at=looked)
        status[decl.name] = entry
        findings.append(Finding.make(
            "model-missing",
            f"no checkpoint satisfies {decl.name!r} [{_spec_text(decl)}]: " + "; ".join(parts),
            path=manifest.source,
            expected={"model": decl.name, "family": decl.family, "hyperparameters": _jsonable(decl.declared()),
                      "path": decl.path, "line": manifest.line_of_model(decl.name)},
            actual={"looked_at": looked}))
    return status


def _needs_scaler(f: _File, decls: dict[str, ModelDecl]) -> bool:
    """Only families whose record says so (`Family.needs_scaler`; every built-in) need a scaler.

    A declaration without a family (a `module:` model) and a model of no known family (a
    third-party model: torchvision, Hugging Face, ...) are never warned about a missing scaler.
    """
    if any(decls[n].family is None for n in (f.by_path or f.satisfies)):
        return False
    names = f.insp.ambiguous_between if f.insp.family == "ambiguous" else [f.insp.family]
    names = [n for n in names if n not in ("unknown", "ambiguous")]
    if not names:
        return False
    recs = [registry().find(n) for n in names]
    return any(r is None or r.needs_scaler for r in recs)


def _read_scalers(paths: dict[str, Path], tiers: tuple[str, ...] | None = None,
                  known: dict[str, tuple] | None = None) -> dict[str, dict[str, Any]]:
    """rel -> {"summary", "findings", "sha256"} of each scaler file: what pairing reads (symbolically, never
    unpickled), so that it runs on what a shard recorded as well as on the files. `known`: the
    `_scaler_entry` results the audit's scan already has (str(path) -> entry)."""
    out: dict[str, dict[str, Any]] = {}
    for rel, p in paths.items():
        entry = (known or {}).get(str(p))
        summary, extra, digest = entry if entry is not None else _scaler_entry(p, tiers)
        out[rel] = {"summary": summary, "findings": _carry(extra, rel), "sha256": digest}
    return out


def _declared_scaler_paths(root: Path, manifest: Manifest | None, walked: Iterable[str],
                           keep: Callable[[str], bool] | None = None) -> dict[str, Path]:
    """Scalers the manifest declares that the walk did not find as scalers but that exist: read
    beforehand, used only if a checkpoint is paired with them."""
    out: dict[str, Path] = {}
    walked = set(walked)
    for decl in (manifest.models if manifest is not None else []):
        want = decl.scaler
        if want and want not in walked and want not in out and (keep is None or keep(want)) \
                and (root / want).is_file():
            out[want] = root / want
    return out


def _pair_scalers(files: list[_File], scalers: dict[str, dict[str, Any]], manifest: Manifest | None,
                  findings: list[Finding], declared: dict[str, dict[str, Any]] | None = None
                  ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Pair each checkpoint with its scaler: the manifest's, else a sidecar in the same folder.

    `scalers` and `declared` are `_read_scalers` records (the walk's scalers, and the declared ones
    it did not find). Returns (report.extra["scalers"], the scalers checked: the walk's and the
    declared ones some checkpoint uses). The findings of reading the walk's scalers are the
    caller's (`_scaler_findings`); those of a declared one are added here, when it is used.
    """
    declared = declared or {}
    used = dict(scalers)
    by_folder: dict[str, list[str]] = {}
    for rel in scalers:
        by_folder.setdefault(rel.rpartition("/")[0], []).append(rel)
    decls = {m.name: m for m in manifest.models} if manifest is not None else {}
    for f in files:
        if not f.insp.ok:
            continue
        names = [decls[n].scaler for n in (f.by_path or f.satisfies) if decls[n].scaler]
        if names:
            want = names[0]
            if want in used or want in declared:
                if want not in used:
                    used[want] = declared[want]
                    findings.extend(declared[want]["findings"])
                f.scaler, f.scaler_source = want, "manifest"
            else:
                findings.append(Finding.make("scaler-missing", f"the declared scaler {want} does not exist",
                                             path=f.rel, expected=want))
            continue
        folder = f.rel.rpartition("/")[0]
        here = by_folder.get(folder, [])
        stem = f.rel.rpartition("/")[2].split(".")[0].lower()
        named = [s for s in here if s.rpartition("/")[2].lower().startswith(stem)]
        if len(here) == 1:
            f.scaler, f.scaler_source = here[0], "folder"
        elif len(named) == 1:
            f.scaler, f.scaler_source = named[0], "name"
        elif not _needs_scaler(f, decls):
            continue   # its family takes no scaler, or it is a third-party model (no known family)
        elif here:
            findings.append(Finding.make(
                "scaler-missing", f"{len(here)} scalers in its folder and none named after it: {', '.join(here)}",
                path=f.rel))
        else:
            where = f"folder {folder + '/' if folder else '(root)'}"
            findings.append(Finding.make("scaler-missing", f"no scaler in its {where} and none declared", path=f.rel))
    info: dict[str, Any] = {}
    users: dict[str, list[_File]] = {}
    for f in files:
        if f.scaler:
            users.setdefault(f.scaler, []).append(f)
    by_bytes: dict[str, list[str]] = {}
    by_content: dict[str, list[str]] = {}
    for rel, rec in sorted(used.items()):
        summary = rec["summary"]
        paired = users.get(rel, [])
        info[rel] = {**summary, "paired_with": [f.rel for f in paired]}
        if rec.get("sha256"):
            by_bytes.setdefault(rec["sha256"], []).append(rel)
        if summary.get("content_sha256"):
            by_content.setdefault(summary["content_sha256"], []).append(rel)
        if len(paired) > 1:
            how = sorted({f.scaler_source or "" for f in paired})
            findings.append(Finding.make(
                "scaler-ambiguous",
                f"one scaler is paired with {len(paired)} checkpoints ({', '.join(x.rel for x in paired)}; "
                f"paired by {' and '.join(how)}); a scaler belongs to one training run",
                path=rel, expected=1, actual=[x.rel for x in paired]))
        n = summary.get("n_features")
        if isinstance(n, int):
            for f in paired:
                want = _input_size(f.insp)
                if want is not None and want != n:
                    findings.append(Finding.make(
                        "scaler-feature-mismatch",
                        f"its scaler {rel} has {n} features but the model takes {want} inputs",
                        path=f.rel, expected=want, actual=n))
    _identical_scalers(by_bytes, by_content, findings)
    return info, used


def _identical_scalers(by_bytes: dict[str, list[str]], by_content: dict[str, list[str]],
                       findings: list[Finding]) -> None:
    """Identical scalers (same bytes, or the same statistics in another file): `scaler-duplicate`."""
    reported: set[str] = set()
    for how, groups in (("same bytes", by_bytes), ("same mean and scale", by_content)):
        for members in groups.values():
            members = sorted(set(members), key=lambda r: (r.count("/"), len(r), r))
            if len(members) < 2:
                continue
            keep = members[0]
            for rel in members[1:]:
                if rel in reported:
                    continue
                reported.add(rel)
                findings.append(Finding.make(
                    "scaler-duplicate", f"identical to {keep} ({how}): at most one of them belongs to its "
                    "checkpoint's training run", path=rel, expected=keep, actual=how))


def _bytes_identity(f: _File) -> str:
    """What tells byte-identical files apart without reading them: the sha256 when known; a remote
    object's size and ETag (`ckreg.bucket.etag_identity`); else the file itself."""
    if f.insp.sha256:
        return f.insp.sha256
    if is_url(str(f.abs)):
        from ckreg.bucket import etag_identity

        return etag_identity(f.abs) or f.rel
    return f.rel


def _same_bytes(a: _File, b: _File) -> bool:
    """Byte-identical: by sha256 where both are known; two remote objects by size and ETag, else by
    hashing both now (`ckreg.bucket.same_bytes`: only files already found to hold the same weights)."""
    if a.insp.sha256 and b.insp.sha256:
        return a.insp.sha256 == b.insp.sha256
    if is_url(str(a.abs)) and is_url(str(b.abs)):
        from ckreg.bucket import same_bytes

        return same_bytes(a.abs, b.abs)
    return False


def _duplicates(files: list[_File], findings: list[Finding]) -> None:
    groups: dict[str, list[_File]] = {}
    for f in files:
        if f.insp.ok and f.insp.weights_sha256:
            groups.setdefault(f.insp.weights_sha256, []).append(f)
    for digest, members in groups.items():
        if len(members) < 2:
            continue
        members.sort(key=lambda f: (f.rel.count("/"), len(f.rel), f.rel))
        keep = members[0]
        for f in members[1:]:
            same_bytes = _same_bytes(f, keep)
            how = "a byte-identical copy" if same_bytes else "different bytes, the metadata differs"
            findings.append(Finding.make(
                "duplicate-weights",
                f"holds the same weights as {keep.rel} ({how}; weights sha256 {digest[:12]})",
                path=f.rel, expected=keep.rel, actual=digest))


VERIFY_STAGES = ("loading data", "verifying pairs")   # slow per item: a progress bar however few there are


def _counted(items: list, progress: Progress | None, stage: str):
    """Yield `items`, reporting (stage, done, total) as each one has been dealt with."""
    for i, item in enumerate(items):
        if progress:
            progress(stage, i, len(items))
        yield item
    if progress:
        progress(stage, len(items), len(items))


def _verify(files: list[_File], manifest: Manifest | None, data: Any, findings: list[Finding], report: Report,
            min_acc: float | None = None, progress: Progress | None = None) -> None:
    """The `--data` hook (issue #5): verify each recognised checkpoint with its scaler, against its target."""
    from ckreg.verify import Pair, load_data, normalize_acc, verify_for_audit

    min_acc = normalize_acc(min_acc)

    decls = {m.name: m for m in manifest.models} if manifest is not None else {}
    pairs = []
    for f in files:
        if not f.insp.ok or f.insp.family in ("unknown", "ambiguous"):
            continue
        names = f.satisfies or f.by_path
        decl = decls.get(names[0]) if names else None
        metrics = manifest.metrics_for(decl) if (manifest is not None and decl is not None) else None
        if decl is not None:
            target, tol, source = manifest.accuracy_target(decl, min_acc)
        elif min_acc is not None:
            target, tol, source = min_acc, 0.0, "--min-acc"
        elif manifest is not None and manifest.min_accuracy is not None:
            target, tol, source = manifest.min_accuracy, 0.0, "manifest min_accuracy"
        else:
            target, tol, source = None, None, None
        pairs.append(Pair(ckpt=str(f.abs), scaler=str(Path(report.root or ".") / f.scaler) if f.scaler else None,
                          expect_acc=target, tolerance=tol if target is not None else None,
                          target_source=source, split=metrics.split if metrics else None,
                          model=decl.name if decl else None))
    results: list[Any] = []
    if progress and pairs:
        progress(VERIFY_STAGES[0], 0, 0)           # total 0: a bar without an end (CSV parsing, once per path)
        load_data(data)                            # cached: verify_for_audit reads it back
        progress(VERIFY_STAGES[0], 1, 1)
    found = verify_for_audit(_counted(pairs, progress, VERIFY_STAGES[1]), data, results=results)
    by_abs = {str(f.abs): f.rel for f in files}
    for x in found:
        findings.append(x.model_copy(update={"path": by_abs.get(x.path or "", x.path)}))
    report.extra["verification"] = [
        {"ckpt": by_abs.get(r.ckpt, r.ckpt), "scaler": r.scaler, "status": r.status, "passed": r.passed,
         "split": r.split, "accuracy": r.accuracy, "n_episodes": r.n_episodes, "accuracy_all": r.accuracy_all,
         "n_episodes_all": r.n_episodes_all, "expect_acc": r.expect_acc, "target": r.target_source}
        for r in results]
    # episodes the data loader skipped are named in the report, never dropped silently
    for ep in (results[0].skipped_episodes if results else []):
        report.skipped.append(Skipped(path=ep["path"], reason=f"data episode skipped while loading: {ep['reason']}"))


__all__ = ["audit", "walk", "sniff", "compare", "family_in_name", "name_label", "Walked", "HASH_POLICIES"]
