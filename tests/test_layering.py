"""Imports point inward (house style): cli -> report -> audit/rename/registry -> inspect -> readers.

The core never imports click or rich; torch only inside zoo/, train/ and verify.
Checked statically on every module's import statements (including lazy ones
inside functions), and dynamically: the inspect path runs with torch blocked.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "ckreg"

# layer of each top-level ckreg part; a module may import its own layer or lower ones
LAYERS = {
    "errors": 0, "findings": 0, "fsutil": 0, "yamlio": 0, "__init__": 0,
    "readers": 1,
    "families": 1.5, "arch": 1.7,   # families (records, layouts, detectors) sit below arch's vocabulary
    "inspect": 2,
    "manifest": 3, "scaler": 3, "data": 3,
    "zoo": 3, "train": 4, "verify": 5,
    "audit": 6, "bucket": 6, "lineage": 6, "rename": 6, "registry": 6, "deploy": 6, "retrain": 6, "demo": 6,
    "shards": 6,
    "report": 7,
    "cli": 8, "__main__": 8,
}
TORCH_OK = {"zoo", "train", "verify", "deploy"}
UI_OK = {"cli"}          # click
RICH_OK = {"cli", "report", "train"}   # train draws its progress bar (issue #3)


def _modules():
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC)
        yield rel.parts[0].removesuffix(".py"), path


def _imports(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, node.lineno


def test_every_part_has_a_layer():
    parts = {part for part, _ in _modules()}
    assert parts <= set(LAYERS), f"give these a layer: {parts - set(LAYERS)}"


@pytest.mark.parametrize("part,path", list(_modules()), ids=lambda v: str(v))
def test_imports_point_inward(part, path):
    problems = []
    for name, line in _imports(path):
        top = name.split(".")[0]
        if top == "torch" and part not in TORCH_OK:
            problems.append(f"line {line}: torch imported outside zoo/train/verify")
        if top == "click" and part not in UI_OK:
            problems.append(f"line {line}: click imported outside cli")
        if top == "rich" and part not in RICH_OK:
            problems.append(f"line {line}: rich imported in the core")
        if top == "ckreg" and name != "ckreg":
            target = name.split(".")[1].removesuffix(".py")
            if target in LAYERS and LAYERS[target] > LAYERS[part] and part != "__init__":
                problems.append(f"line {line}: {part} imports outward into {target}")
    assert not problems, f"{path.relative_to(SRC)}: " + "; ".join(problems)


def test_cli_imports_without_torch(tmp_path):
    """`import ckreg.cli` and `ckreg --help` must work where `import torch` fails."""
    block = tmp_path / "block" / "torch"
    block.mkdir(parents=True)
    (block / "__init__.py").write_text("raise ImportError('torch blocked for this test')\n")
    code = "import ckreg.cli, sys; from ckreg.cli import cli; sys.argv=['ckreg','--help']; cli()"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={"PYTHONPATH": f"{block.parent}:{SRC.parent}", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert "inspect" in proc.stdout or "Usage" in proc.stdout
