"""Rendering pieces of the trainer: the confusion-matrix PNG (matplotlib or the plain writer), the progress bar."""

from __future__ import annotations

import io
import struct
import sys
import zlib

from ckreg.train.png import plain_png, write_confusion_png
from ckreg.train.results import ProgressEvent

CM = [[3, 1, 0], [0, 4, 0], [2, 0, 2]]


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_plain_png_is_a_valid_image():
    data = plain_png(CM, cell=5)
    assert _png_size(data) == (16, 16)
    # every chunk's CRC checks out and the pixels inflate to height * (1 + 3 * width) bytes
    pos, idat = 8, b""
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        tag, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        assert struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0] == zlib.crc32(tag + body) & 0xFFFFFFFF
        if tag == b"IDAT":
            idat += body
        pos += 12 + n
    assert len(zlib.decompress(idat)) == 16 * (1 + 3 * 16)


def test_falls_back_without_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)      # import matplotlib -> ImportError
    out = tmp_path / "cm.png"
    assert write_confusion_png(out, CM, ["a", "b", "c"]) == "plain"
    assert _png_size(out.read_bytes())[0] > 0
    assert [p.name for p in tmp_path.iterdir()] == ["cm.png"]


def test_matplotlib_picture_with_hangul_names(tmp_path):
    import pytest

    pytest.importorskip("matplotlib")
    out = tmp_path / "cm.png"
    assert write_confusion_png(out, CM, ["ㄱ", "ㄴ", "ㄷ"], "title") == "matplotlib"
    w, h = _png_size(out.read_bytes())
    assert w > 100 and h > 100
    assert [p.name for p in tmp_path.iterdir()] == ["cm.png"]


def test_progress_bar_renders_every_event():
    from rich.console import Console

    from ckreg.cli.train_cmd import _Bar

    for terminal in (True, False):
        buf = io.StringIO()
        with _Bar(Console(file=buf, force_terminal=terminal, width=160)) as bar:
            bar(ProgressEvent("start", 0, 2, steps=2))
            for epoch in (1, 2):
                for step in (1, 2):
                    bar(ProgressEvent("batch", epoch, 2, step, 2, train_loss=1.0 / step, train_acc=0.5))
                bar(ProgressEvent("epoch", epoch, 2, 2, 2, 4, 0.9, 0.5, 0.8, 0.6, epoch, 0.8, 1.0))
                bar(ProgressEvent("saved", epoch, 2, best_epoch=epoch, best_val_loss=0.8))
            bar(ProgressEvent("end", 2, 2))
        text = buf.getvalue()
        assert "epoch" in text and "60.0%" in text


HANGUL = ["ㄱ", "ㄴ", "ㄷ", "ㄹ", "ㅁ", "ㅂ", "ㅅ", "ㅇ", "ㅈ", "ㅊ", "ㅋ", "ㅌ",
          "ㅍ", "ㅎ", "ㅏ", "ㅑ", "ㅓ", "ㅕ", "ㅗ", "ㅛ", "ㅜ", "ㅠ", "ㅡ", "ㅣ"]
CM24 = [[120 + i if i == j else (3 if (i + 2 * j) % 7 == 0 else 0) for j in range(24)] for i in range(24)]


def _figure_facts(fig):
    ax, bar = fig.axes[0], fig.axes[1]
    return ([t.get_text() for t in ax.get_xticklabels()], [t.get_text() for t in ax.get_yticklabels()],
            [t.get_text() for t in ax.texts], bar.get_ylabel(), ax.get_xlabel(), ax.get_ylabel())


def test_axes_name_the_classes_with_a_colour_bar_and_every_count():
    import pytest

    pytest.importorskip("matplotlib")
    from ckreg.train.png import confusion_figure

    fig, note = confusion_figure(CM24, [f"c{i}" for i in range(24)], "t")
    xs, ys, counts, bar, xl, yl = _figure_facts(fig)
    assert xs == ys == [f"c{i}" for i in range(24)] and note is None
    assert sorted(counts) == sorted(str(v) for row in CM24 for v in row if v)
    assert "fraction" in bar and "predicted" in xl and "true" in yl


def test_hangul_names_use_a_font_that_has_the_glyphs():
    import pytest

    pytest.importorskip("matplotlib")
    from matplotlib.ft2font import FT2Font

    from ckreg.train.png import confusion_figure, font_for

    font = font_for(HANGUL)
    if font is None:
        pytest.skip("no installed font has Hangul glyphs (fonts-nanum / fonts-noto-cjk)")
    assert "lastresort" not in font.lower(), "Last Resort draws boxes, not letters"
    cmap = FT2Font(font).get_charmap()
    assert all(ord(c) in cmap for c in "".join(HANGUL))
    fig, note = confusion_figure(CM24, HANGUL)
    xs, ys, *_ = _figure_facts(fig)
    assert xs == ys == HANGUL and note is None
    assert fig.axes[0].get_xticklabels()[0].get_fontproperties().get_file() == font


def test_without_a_font_the_picture_says_so_and_labels_stay_readable(tmp_path, monkeypatch):
    import pytest

    pytest.importorskip("matplotlib")
    import ckreg.train.png as png

    monkeypatch.setattr(png, "font_for", lambda names: None)
    fig, note = png.confusion_figure(CM24, HANGUL)
    xs, *_ = _figure_facts(fig)
    assert xs[0] == "0 KIYEOK" and xs[23] == "23 I"
    assert "fonts-nanum" in note and note in [t.get_text() for t in fig.texts]
    notes: list[str] = []
    assert png.write_confusion_png(tmp_path / "cm.png", CM24, HANGUL, notes=notes) == "matplotlib"
    assert notes == [note]
