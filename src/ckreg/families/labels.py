"""File and folder names as family labels: the one name matcher (audit labels, zoo, rename).

`GRU_best.ckpt` -> GRU, `ms3dgru_best` -> MS3DGRU, `kws_v2.pt` -> KWSNet (a
declared family's `names:` tokens). Case-insensitive, with word-ish boundaries
(no letter or digit before, no letter after: `WRN16` is WRN, `gruesome` is
nothing); the longest token found wins (`MSCSGRU_ScaleAware` over `MSCSGRU`).
"""

from __future__ import annotations

from typing import Iterable

from ckreg.families.registry import registry

CHECKPOINT_SUFFIXES = (".safetensors", ".ckpt", ".pth", ".pt", ".bin", ".pkl", ".pickle", ".tar")


def family_in_name(name: str, candidates: Iterable[str] | None = None) -> str | None:
    """The family a file or folder name claims (restricted to `candidates` when given)."""
    pattern, canon = registry().name_regex()
    if pattern is None:
        return None
    allowed = set(candidates) if candidates is not None else None
    found = []
    for m in pattern.finditer(name):
        fam = canon.get(m.group(1).lower())
        if fam is not None and (allowed is None or fam in allowed):
            found.append((len(m.group(1)), fam))
    if not found and allowed is not None:
        # a shorter candidate token may hide inside a longer one of another family
        low = name.lower()
        for fam in allowed:
            rec = registry().find(fam)
            for tok in (rec.tokens if rec else (fam,)):
                for m in pattern.finditer(low.replace(tok.lower(), f" {tok.lower()} ")):
                    if canon.get(m.group(1).lower()) == fam:
                        found.append((len(tok), fam))
    if not found:
        return None
    return max(found, key=lambda t: t[0])[1]


def name_label(relpath: str, root_name: str = "", candidates: Iterable[str] | None = None) -> tuple[str, str] | None:
    """(family, where) from the file name, else the nearest folder name (then the root's own name)."""
    cands = list(candidates) if candidates is not None else None
    parts = relpath.replace("\\", "/").split("/")
    stem = parts[-1]
    for suffix in CHECKPOINT_SUFFIXES:
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    fam = family_in_name(stem, cands)
    if fam:
        return fam, f"file name {parts[-1]!r}"
    for folder in reversed(parts[:-1]):
        fam = family_in_name(folder, cands)
        if fam:
            return fam, f"folder name {folder + '/'!r}"
    if root_name:
        fam = family_in_name(root_name, cands)
        if fam:
            return fam, f"folder name {root_name + '/'!r}"
    return None


def names_in(text: str) -> list[str]:
    """Every family a name mentions (longest matches), for messages such as 'the old name says GRU'."""
    pattern, canon = registry().name_regex()
    if pattern is None:
        return []
    return list(dict.fromkeys(canon[m.group(1).lower()] for m in pattern.finditer(text)))


__all__ = ["family_in_name", "name_label", "names_in", "CHECKPOINT_SUFFIXES"]
