"""One writer: every file ckreg writes goes through `ckreg.fsutil`'s atomic, no-clobber API.

Two halves: the API's promises (atomic, refuses an existing file unless told, even one that
appears while writing, leaves no temp behind), and a static check over `src/ckreg` that no
module writes a file its own way (open(..., "w"), Path.write_text, os.replace, np.save,
savefig, shutil.copy, ...) outside fsutil.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from ckreg import fsutil
from ckreg.errors import CkregError, OutputExistsError

SRC = Path(__file__).resolve().parents[1] / "src" / "ckreg"


# --------------------------------------------------------------------------- the API


def test_refuses_an_existing_file_unless_overwrite(tmp_path):
    target = tmp_path / "report.json"
    fsutil.write_text(target, "first")
    with pytest.raises(OutputExistsError) as info:
        fsutil.write_text(target, "second")
    assert isinstance(info.value, CkregError) and str(target) in info.value.render()
    assert target.read_text() == "first" and not fsutil.leftover_temps(tmp_path)
    fsutil.write_text(target, "second", overwrite=True)
    assert target.read_text() == "second"


def test_a_file_that_appears_while_writing_is_not_replaced(tmp_path):
    """The existence check before the write is not enough: publishing itself refuses (os.link)."""
    target = tmp_path / "scaler.json"

    def slow_writer(tmp):
        Path(tmp).write_text("ours")
        target.write_text("theirs")   # another process got there first

    with pytest.raises(OutputExistsError):
        fsutil.write_with(target, slow_writer)
    assert target.read_text() == "theirs" and not fsutil.leftover_temps(tmp_path)


def test_a_symlink_is_never_written_through(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    link = tmp_path / "out.txt"
    link.symlink_to(victim)
    with pytest.raises(OutputExistsError):
        fsutil.write_text(link, "x")
    assert victim.read_text() == "keep"


def test_copy_and_json(tmp_path):
    src = tmp_path / "a.bin"
    src.write_bytes(b"\x00\x01" * 1000)
    fsutil.copy_file(src, tmp_path / "b.bin")
    assert (tmp_path / "b.bin").read_bytes() == src.read_bytes()
    with pytest.raises(OutputExistsError):
        fsutil.copy_file(src, tmp_path / "b.bin")
    fsutil.write_json(tmp_path / "d.json", {"ㄱ": 1})
    assert (tmp_path / "d.json").read_text(encoding="utf-8") == '{\n  "ㄱ": 1\n}\n'


# --------------------------------------------------------------------------- nobody writes their own way

# (module path relative to src/ckreg, function) -> why it may write directly
ALLOWED = {
    ("rename.py", "_link_unlink"): "moves a user's file to its new name (link + unlink), writes no bytes",
    ("rename.py", "_check_rename"): "moves a user's file to its new name, writes no bytes",
    ("rename.py", "_move_noclobber"): "moves a user's file to its new name, writes no bytes",
    ("train/loop.py", "_torch_bytes"): "torch.save into an in-memory buffer; fsutil writes the bytes",
    ("zoo/io.py", "write_safetensors"): "writes a staged temp path an fsutil-published export owns",
    ("zoo/io.py", "write_lightning_ckpt"): "writes a staged temp path an fsutil-published export owns",
    ("registry/export.py", "export_version"): "fsyncs its staged temp files before fsutil.publish",
    ("inspect/cache.py", "_set_aside"): "moves ckreg's own damaged SQLite cache aside, writes no bytes",
    ("inspect/cache.py", "_connect"): "opens the cache _create published through fsutil; SQLite's rollback "
                                      "journal makes each later transaction atomic",
    ("deploy/formats.py", "export_torchscript"): "torch.jit.save into the staged folder of a deploy export",
}
WRITE_METHODS = {"write_text", "write_bytes", "savefig", "savez", "savez_compressed", "save", "dump",
                 "to_csv", "to_parquet"}
WRITE_FUNCS = {("os", "replace"), ("os", "rename"), ("os", "link"), ("shutil", "copy"), ("shutil", "copy2"),
               ("shutil", "copyfile"), ("shutil", "move"), ("np", "save"), ("np", "savez"),
               ("numpy", "save"), ("torch", "save"), ("json", "dump"), ("pickle", "dump"), ("joblib", "dump"),
               ("sqlite3", "connect")}   # creates the database file when it does not exist
FSUTIL_NAMES = {"fsutil", "write_text", "write_bytes", "write_with", "write_json"}


def _is_write_open(call: ast.Call) -> bool:
    if not (isinstance(call.func, ast.Name) and call.func.id == "open"):
        return False
    mode = call.args[1] if len(call.args) > 1 else next((k.value for k in call.keywords if k.arg == "mode"), None)
    return isinstance(mode, ast.Constant) and isinstance(mode.value, str) and any(c in mode.value for c in "wax+")


def _direct_writes(path: Path) -> list[tuple[str, int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    # callbacks handed to fsutil (write_with(path, lambda tmp: fig.savefig(tmp))) write fsutil's temp path
    inside_fsutil: set[int] = set()
    callbacks: set[str] = set()     # local functions handed to write_with by name
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            if name in ("write_with", "atomic_path"):
                for arg in node.args[1:]:
                    if isinstance(arg, ast.Name):
                        callbacks.add(arg.id)
                    for sub in ast.walk(arg):
                        inside_fsutil.add(id(sub))
    found = []

    def visit(node, func: str, in_atomic: bool) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            func = node.name
            in_atomic = in_atomic or node.name in callbacks
        if isinstance(node, ast.With):   # `with atomic_path(p) as tmp:` bodies write fsutil's temp path
            for item in node.items:
                c = item.context_expr
                if isinstance(c, ast.Call) and getattr(c.func, "attr", getattr(c.func, "id", "")) == "atomic_path":
                    in_atomic = True
        if isinstance(node, ast.Call) and id(node) not in inside_fsutil and not in_atomic:
            f = node.func
            what = None
            if _is_write_open(node):
                what = "open(..., 'w')"
            elif isinstance(f, ast.Name) and f.id in ("save_file", "copyfile", "copy2"):
                what = f"{f.id}()"
            elif isinstance(f, ast.Attribute):
                base = f.value.id if isinstance(f.value, ast.Name) else None
                if (base, f.attr) in WRITE_FUNCS:
                    what = f"{base}.{f.attr}"
                elif f.attr in WRITE_METHODS and base not in FSUTIL_NAMES and base not in ("yaml", "yamlio"):
                    what = f".{f.attr}()"
            if what:
                found.append((func, node.lineno, what))
        for child in ast.iter_child_nodes(node):
            visit(child, func, in_atomic)

    visit(tree, "<module>", False)
    return found


def test_no_module_writes_files_its_own_way():
    problems, used = [], set()
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel == "fsutil.py":
            continue
        for func, line, what in _direct_writes(path):
            if (rel, func) in ALLOWED:
                used.add((rel, func))
            else:
                problems.append(f"{rel}:{line} in {func}: {what} (write through ckreg.fsutil)")
    assert not problems, "\n".join(problems)
    assert used == set(ALLOWED), f"stale exceptions: {set(ALLOWED) - used}"


def test_the_static_check_catches_a_direct_write(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n\ndef save(p, t):\n    p.write_text(t)\n    os.replace(p, p)\n"
                   "    with open(p, 'w') as fh:\n        fh.write(t)\n    sqlite3.connect(p)\n")
    assert [w[2] for w in _direct_writes(bad)] == [".write_text()", "os.replace", "open(..., 'w')", "sqlite3.connect"]
