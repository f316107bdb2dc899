"""Atomic output files: a reader sees the old file or the new one, never half of one.

The one implementation for the trainer, scalers, rename's manifest rewrite and the
registry (house style: bad input loses nothing; issue #3: "Ctrl-C leaves the best checkpoint so far, never a half-written
file". Every output is written under a temporary name in the SAME directory
(so the rename cannot cross file systems), flushed and fsync'ed, then published:
by default never over an existing file (`os.link`, which refuses one, even a file
that appeared meanwhile), or with `overwrite=True` by `os.replace`. If anything (KeyboardInterrupt included)
interrupts the write, the temporary file is removed.)

Temporary names keep the real suffix (`.ckreg-tmp-<random>-model.ckpt`),
because some writers (matplotlib's `savefig`) choose the format from it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from pathlib import Path
from typing import Callable, Iterator

TMP_PREFIX = ".ckreg-tmp-"


def tmp_name(path: Path) -> Path:
    return path.with_name(f"{TMP_PREFIX}{secrets.token_hex(4)}-{path.name}")


_UMASK: int | None = None


def _default_mode() -> int:
    """0o666 minus the umask: what a plain open() would have given (mkstemp-based writers give 0o600)."""
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0)
        os.umask(_UMASK)
    return 0o666 & ~_UMASK


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (best effort: not every platform can open a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _refuse(path: Path) -> None:
    from ckreg.errors import OutputExistsError

    raise OutputExistsError("refusing to overwrite an existing file", path=str(path),
                            hint="choose another name, or pass --force where the command offers it")


def publish(tmp: str | Path, path: str | Path, *, overwrite: bool = False) -> None:
    """Move a finished temporary file into place: atomically, and (unless `overwrite`) never over an
    existing file, even one that appears while we write (`os.link` refuses an existing name).

    Raises `ckreg.errors.OutputExistsError` (exit 2) when `path` exists and `overwrite` is False;
    the temporary file is removed either way.
    """
    tmp, path = Path(tmp), Path(path)
    try:
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                _refuse(path)
            except OSError:
                # file systems without hard links: exclusive create, then copy the bytes
                try:
                    with open(path, "xb") as dst, open(tmp, "rb") as src:
                        while chunk := src.read(1 << 20):
                            dst.write(chunk)
                        dst.flush()
                        os.fsync(dst.fileno())
                except FileExistsError:
                    _refuse(path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_path(path: str | Path, *, mode: int | None = None, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is published as `path` atomically.

    The one writer (house style): every file ckreg writes goes through here.
    Without `overwrite` an existing `path` is never replaced (checked before the
    write starts and again, atomically, when publishing: `OutputExistsError`).
    On any exception (KeyboardInterrupt included) the temporary file is deleted
    and `path` is left exactly as it was. `mode`: permission bits of the result
    (default: what a plain open() gives under the umask).
    """
    path = Path(path)
    if not overwrite and (path.exists() or path.is_symlink()):
        _refuse(path)
    tmp = tmp_name(path)
    try:
        yield tmp
        os.chmod(tmp, _default_mode() if mode is None else mode)
        _fsync_file(tmp)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    publish(tmp, path, overwrite=overwrite)


def write_bytes(path: str | Path, data: bytes, *, mode: int | None = None, overwrite: bool = False) -> None:
    """Write `data` atomically; refuses an existing file unless `overwrite`."""
    with atomic_path(path, mode=mode, overwrite=overwrite) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)


def write_text(path: str | Path, text: str, *, overwrite: bool = False) -> None:
    write_bytes(path, text.encode("utf-8"), overwrite=overwrite)


def write_json(path: str | Path, doc: object, *, overwrite: bool = False) -> None:
    """Indented UTF-8 JSON (non-ASCII kept), newline-terminated."""
    import json

    write_text(path, json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n", overwrite=overwrite)


def write_with(path: str | Path, writer: Callable[[Path], object], *, overwrite: bool = False) -> None:
    """Atomic wrapper around a writer that only knows how to write to a path (savefig, np.savez, torch.save)."""
    with atomic_path(path, overwrite=overwrite) as tmp:
        writer(tmp)


def copy_file(src: str | Path, dst: str | Path, *, overwrite: bool = False) -> None:
    """Copy a file's bytes atomically (never over an existing `dst` unless `overwrite`)."""
    def _copy(tmp: Path) -> None:
        with open(src, "rb") as fin, open(tmp, "wb") as fout:
            while chunk := fin.read(1 << 20):
                fout.write(chunk)

    write_with(dst, _copy, overwrite=overwrite)


def leftover_temps(directory: str | Path) -> list[Path]:
    """Temporary files a killed process (SIGKILL, power loss) may have left behind."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.name.startswith(TMP_PREFIX))


def file_sha256(path: str | Path) -> str:
    """sha256 hex digest of a file's bytes, streamed in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside `path`; on success it is renamed to `path`, which must not exist.

    On any exception (KeyboardInterrupt included) the temporary folder and
    everything in it are removed, so a failed run leaves no half-written
    folder; an existing `path` is never replaced (FileExistsError).
    """
    import shutil

    path = Path(path)
    if path.exists() or path.is_symlink():
        raise FileExistsError(str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_name(path)
    tmp.mkdir(mode=0o777)
    try:
        yield tmp
        for child in tmp.iterdir():
            if child.is_file():
                os.chmod(child, _default_mode())
                _fsync_file(child)
        if path.exists() or path.is_symlink():   # appeared meanwhile: never replace it
            raise FileExistsError(str(path))
        os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(path.parent)
