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
