"""The confusion matrix in a terminal (`verify`, `eval`): 80 columns, Hangul, any count size."""

from __future__ import annotations

import io

import pytest
from rich.cells import cell_len
from rich.console import Console

from ckreg.cli._confusion import confusion_blocks, print_confusion

HANGUL = ["ㄱ", "ㄴ", "ㄷ", "ㄹ", "ㅁ", "ㅂ", "ㅅ", "ㅇ", "ㅈ", "ㅊ", "ㅋ", "ㅌ",
          "ㅍ", "ㅎ", "ㅏ", "ㅑ", "ㅓ", "ㅕ", "ㅗ", "ㅛ", "ㅜ", "ㅠ", "ㅡ", "ㅣ"]


def matrix(k: int, diag: int, off: int) -> list[list[int]]:
    return [[diag + i if i == j else (off if (i + j) % 5 == 0 else 0) for j in range(k)] for i in range(k)]


def printed(cm, names, width: int = 80) -> str:
    buf = io.StringIO()
    print_confusion(Console(file=buf, width=width, no_color=True), cm, names)
    return buf.getvalue()


@pytest.mark.parametrize("diag", [7, 140, 1200])
def test_24_hangul_classes_fit_80_columns_with_every_count(diag):
    cm = matrix(24, diag, 3)
    text = printed(cm, HANGUL)
    lines = text.splitlines()
    assert max(cell_len(line) for line in lines) <= 80
    body = [line for line in lines if line[:1] in HANGUL]
    # every row's counts, in order, across the column blocks
    for i, name in enumerate(HANGUL):
        cells = [tok for line in body if line.startswith(name) for tok in line.split()[1:]]
        assert cells == [str(v) if v else "·" for v in cm[i]], name
    assert all(name in text for name in HANGUL)


def test_blocks_are_balanced_and_counts_never_touch():
    blocks = confusion_blocks(matrix(24, 140, 3), HANGUL, width=80)
    sizes = [stop - start for start, stop, _ in blocks]
    assert len(blocks) == 2 and max(sizes) - min(sizes) <= 1
    text = printed(matrix(24, 140, 3), HANGUL)
    assert "140" in text and "1403" not in text     # a space between neighbours even without colour


def test_long_class_names_become_indices_with_names_on_the_rows():
    text = printed([[5, 1], [0, 7]], ["hello", "world"])
    lines = text.splitlines()
    assert lines[1].split() == ["0", "1"]
    assert lines[2].split() == ["0", "hello", "5", "1"] and lines[3].split() == ["1", "world", "·", "7"]


def test_verify_cli_output_fits_80_columns(tmp_path):
    pytest.importorskip("torch")
    from click.testing import CliRunner

    from ckreg.cli import cli
    from ckreg.data import load_npz
    from ckreg.scaler import fit_scaler, save_json
    from verify_helpers import make_dataset, save_state_dict, train_tiny

    data = make_dataset(tmp_path / "glove.npz", k=24, per_class=5)
    ds = load_npz(data)
    sc = fit_scaler(ds, "train-split")
    deep = tmp_path / "archive" / "checkpoints_backup" / "checkpoints_backup" / "runs"
    deep.mkdir(parents=True)
    model, _ = train_tiny(ds, sc, steps=5)
    ckpt = save_state_dict(model, deep / "GRU_tiny_best.pt")
    scaler = save_json(sc, deep / "scaler.json")
    res = CliRunner().invoke(cli, ["verify", str(ckpt), "--scaler", str(scaler), "--data", str(data)],
                             env={"COLUMNS": "80"})
    assert res.exit_code in (0, 1), res.output
    lines = res.stdout.splitlines()
    assert lines and max(cell_len(line) for line in lines) <= 80, [x for x in lines if cell_len(x) > 80]
    assert "confusion matrix" in res.stdout and "c23" in res.stdout
