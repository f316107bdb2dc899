"""Remote archives for `ckreg audit`: a bucket prefix (or any fsspec URL) walked like a folder.

`walk_url(url)` lists every object under the URL once (`fs.find(detail=True)`: size,
ETag, LastModified) and records the listing (`ckreg.readers.remote.remember`), so no
object is asked about again; then it walks the listing as `ckreg.audit.walk` walks a
folder: top-down, names sorted, `.git`-like folders left out, a Hugging Face model
folder as one checkpoint, every other object classified by its bytes
(`ckreg.readers.sniff.classify`: a few small ranges each, fetched by parallel threads).
Relative paths are the keys under the URL, so the report of a bucket reads as the
report of a local copy of the same tree. Objects have no links: nothing is skipped
for being one. Keys that cannot be file paths (an empty segment, `a//b`) are skipped
with that reason; zero-byte "folder marker" keys ending in `/` are not files at all.

`transfer_summary` turns the per-URL ledger into what the report shows: bytes
transferred per checked file and in total, and the requests made.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ckreg.errors import UsageError
from ckreg.findings import ErrorEntry, Skipped
from ckreg.readers.remote import (RemoteInfo, RemoteIOError, RemoteNotFound, RemotePath, filesystem, forget,
                                  info_from, remember, storage_errors, transferred)

Progress = Callable[[str, int, int], None]
CLASSIFY_THREADS = 16   # classification is a few round trips per object: latency, not CPU


@dataclass
class Listing:
    """What one listing of a URL found: objects (relative key -> info) and the folder tree."""

    url: str
    objects: dict[str, RemoteInfo] = field(default_factory=dict)
    odd: list[str] = field(default_factory=list)          # keys that cannot be file paths

    @property
    def stored(self) -> int:
        return sum(i.size for i in self.objects.values())


def _usage(url: str, err: RemoteIOError) -> UsageError:
    """Nothing can be audited when the listing fails: a user's error (exit 2) naming the URL and the fix."""
    return UsageError(err.strerror, path=url, hint=err.hint)


def list_url(url: str) -> tuple[RemoteInfo | None, Listing]:
    """(info of the URL itself or None when nothing is there, everything under it).

    A missing bucket, missing credentials or an unreachable service is a UsageError naming
    the URL and the fix (nothing can be audited); a missing driver is one too (`filesystem`).
    """
    fs, base = filesystem(url)
    url = str(RemotePath(url))
    forget(url)
    listing = Listing(url=url)
    try:
        with storage_errors(url):
            raw = fs.info(base)
    except RemoteIOError as err:
        if isinstance(err, RemoteNotFound) and err.hint is None:   # the bucket is there, the key is not
            return None, listing
        raise _usage(url, err) from None
    top = info_from(url, raw)
    if not top.is_dir:
        remember([top])
        return top, listing
    try:
        with storage_errors(url):
            found = fs.find(base, detail=True)
    except RemoteIOError as err:
        raise _usage(url, err) from None
    stripped = base.rstrip("/")
    for name, entry in sorted(found.items()):
        name = str(name)
        if not name.startswith(stripped + "/") or entry.get("type") == "directory":
            continue
        rel = name[len(stripped) + 1:]
        if not rel or rel.endswith("/"):
            continue                      # a zero-byte "folder marker" key, not a file
        if any(part in ("", ".", "..") for part in rel.split("/")):
            listing.odd.append(rel)
            continue
        listing.objects[rel] = info_from(f"{url}/{rel}", entry)
    _remember_tree(url, listing)
    return top, listing


def _remember_tree(url: str, listing: Listing) -> None:
    """Record every object and every folder's names (what `listdir`/`stat` answer without requests)."""
    folders: dict[str, set[str]] = {url: set()}
    for rel in listing.objects:
        parts = rel.split("/")
        for i in range(len(parts)):
            folder = "/".join([url, *parts[:i]])
            folders.setdefault(folder, set()).add(parts[i])
    dirs = [RemoteInfo(url=f, size=0, is_dir=True) for f in folders]
    remember(list(listing.objects.values()) + dirs, {f: sorted(n) for f, n in folders.items()})


def _parent_listing(given: RemotePath) -> None:
    """One object audited alone: its folder's objects are listed (its sibling scalers pair with it)."""
    parent = given.parent
    fs, base = filesystem(parent.url)
    try:
        with storage_errors(parent.url):
            entries = fs.ls(base, detail=True)
    except RemoteIOError as err:
        raise _usage(parent.url, err) from None
    stripped = base.rstrip("/")
    infos, names = [], []
    for entry in entries:
        name = str(entry.get("name", "")).rstrip("/")
        child = name[len(stripped) + 1:] if name.startswith(stripped + "/") else ""
        if not child or "/" in child:
            continue
        names.append(child)
        infos.append(info_from(f"{parent.url}/{child}", entry))
    remember(infos, {parent.url: names})


def _classify_all(paths: list[RemotePath], progress: Progress | None) -> list[tuple[str | None, str] | OSError]:
    """`classify` on every object, in parallel threads, results in input order (an OSError where one fails)."""
    import concurrent.futures as cf

    from ckreg.readers.sniff import classify

    def one(p: RemotePath):
        try:
            return classify(p)
        except OSError as exc:
            return exc

    out: list = []
    if progress:
        progress("classifying", 0, len(paths))
    if not paths:
        return out
    with cf.ThreadPoolExecutor(max_workers=min(CLASSIFY_THREADS, len(paths))) as ex:
        for value in ex.map(one, paths):
            out.append(value)
            if progress:
                progress("classifying", len(out), len(paths))
    return out


def walk_listing(root: RemotePath, listing: Listing, progress: Progress | None = None):
    """The `Walked` of the objects under `root` (a listed prefix): as `ckreg.audit.walk` on a local copy."""
    from ckreg.audit import SKIP_DIRS, Walked
    from ckreg.readers.folder import folder_members, is_model_folder

    out = Walked(root=root)   # type: ignore[arg-type]
    tree: dict[str, tuple[set[str], list[str]]] = {"": (set(), [])}   # folder -> (sub-folders, files)
    for rel in listing.objects:
        parts = rel.split("/")
        for i in range(len(parts) - 1):
            tree.setdefault("/".join(parts[:i]), (set(), []))[0].add(parts[i])
            tree.setdefault("/".join(parts[:i + 1]), (set(), []))
        tree.setdefault("/".join(parts[:-1]), (set(), []))[1].append(parts[-1])
    for rel in listing.odd:
        out.skipped.append(Skipped(path=rel, reason="object key with an empty or dot path segment: it is not a "
                                                    "file path, and a local copy could not hold it"))
    slots: list[tuple[str, Any, str]] = []    # ("folder", path, rel) | ("file", path, rel)
    stack = [""]
    while stack:
        here = stack.pop()
        dirs, files = tree.get(here, (set(), []))
        here_path = RemotePath(f"{root.url}/{here}" if here else root.url, is_dir=True)
        model_files: set[str] = set()
        if is_model_folder(here_path):
            model_files = set(folder_members(here_path.url))
            slots.append(("folder", here_path, here))
        for name in sorted(files):
            if name in model_files:
                continue
            rel = f"{here}/{name}" if here else name
            slots.append(("file", RemotePath(f"{root.url}/{rel}", is_dir=False), rel))
        keep = [d for d in sorted(dirs) if d not in SKIP_DIRS]
        stack.extend(reversed([f"{here}/{d}" if here else d for d in keep]))   # pre-order, names sorted
    kinds = iter(_classify_all([p for kind, p, _ in slots if kind == "file"], progress))
    for kind, p, rel in slots:
        if kind == "folder":
            out.checkpoints.append(p)
            continue
        got = next(kinds)
        if isinstance(got, OSError):
            out.errors.append(ErrorEntry(path=rel, message=f"cannot read: {got.strerror or got}"))
        elif got[0] is None:
            out.skipped.append(Skipped(path=rel, reason=got[1]))
        else:
            (out.checkpoints if got[0] == "checkpoint" else out.scalers).append(p)
    return out


def walk_url(url: str, progress: Progress | None = None):
    """(root, Walked, Listing) for an audit of `url`, or None when nothing is there.

    A prefix is walked as a folder; a model folder is one model (relative paths start with its
    name, as for a local model folder); one object is audited with the scalers beside it.
    """
    from ckreg.audit import Walked
    from ckreg.readers.folder import is_model_folder
    from ckreg.readers.sniff import classify

    top, listing = list_url(url)
    if top is None:
        return None
    given = RemotePath(listing.url, is_dir=top.is_dir)
    if not top.is_dir:
        root = given.parent
        _parent_listing(given)
        walked = Walked(root=root)   # type: ignore[arg-type]
        kind, _ = classify(given)
        (walked.scalers if kind == "scaler" else walked.checkpoints).append(given)
        siblings = [RemotePath(f"{root.url}/{n}", is_dir=False) for n in _names(root)
                    if n != given.name and (root / n).is_file()]
        for sib, got in zip(siblings, _classify_all(siblings, progress)):
            if not isinstance(got, OSError) and got[0] == "scaler":
                walked.scalers.append(sib)
        listing.objects = {given.name: top}
        return root, walked, listing
    if is_model_folder(given):
        root = given.parent
        inner = walk_listing(given, listing, progress)
        walked = Walked(root=root)   # type: ignore[arg-type]
        walked.checkpoints = [given] + [p for p in inner.checkpoints if p != given]
        walked.scalers = inner.scalers
        walked.skipped = [x.model_copy(update={"path": f"{given.name}/{x.path}"}) for x in inner.skipped]
        walked.errors = [x.model_copy(update={"path": f"{given.name}/{x.path}" if x.path else x.path})
                         for x in inner.errors]
        return root, walked, listing
    return given, walk_listing(given, listing, progress), listing


def _names(folder: RemotePath) -> list[str]:
    from ckreg.readers.remote import listdir

    return sorted(listdir(folder.url))


def transfer_summary(root: RemotePath, rels: dict[str, Any], listing: Listing,
                     before: dict[str, tuple[int, int]]) -> dict[str, Any]:
    """Bytes transferred per checked file (a model folder: all its objects) and in total, since `before`."""
    files = {}
    for rel, p in rels.items():
        files[rel] = transferred(str(p), folder=rel.endswith("/"), since=before)[0]
    total, requests = transferred(root.url, folder=True, since=before)
    return {"url": root.url, "objects": len(listing.objects), "stored": listing.stored, "total": total,
            "requests": requests, "files": files}


def etag_identity(p: Any) -> str | None:
    """A remote object's (or model folder's) size and ETag(s) as one string: equal for objects whose bytes
    were stored identically (the same ETag is the same content), None when the listing gave no ETag."""
    from ckreg.readers.folder import folder_members
    from ckreg.readers.remote import stat

    url = str(p)
    try:
        info = stat(url)
        if not info.is_dir:
            return f"etag:{info.size}:{info.etag}" if info.etag else None
        parts = [(n, stat(f"{url}/{n}")) for n in folder_members(url)]
    except OSError:
        return None
    if not parts or any(i.etag is None for _, i in parts):
        return None
    return "etag:" + ";".join(f"{n}:{i.size}:{i.etag}" for n, i in parts)


def _digest(p: Any) -> str:
    """sha256 of an object's bytes, or of a model folder as `FolderResult.sha256` defines it."""
    import hashlib

    from ckreg.readers.fileio import sha256_of
    from ckreg.readers.folder import folder_members
    from ckreg.readers.remote import isdir

    url = str(p)
    if not isdir(url):
        return sha256_of(url)
    h = hashlib.sha256()
    for name in folder_members(url):
        h.update(f"{name}\t{sha256_of(f'{url}/{name}')}\n".encode())
    return h.hexdigest()


def same_bytes(a: Any, b: Any) -> bool:
    """Whether two remote files hold the same bytes: equal size and ETag say so without reading; otherwise
    (ETags differ for equal bytes uploaded in other part sizes, or encrypted) both are hashed, in full."""
    ia, ib = etag_identity(a), etag_identity(b)
    if ia is not None and ia == ib:
        return True
    from ckreg.readers.remote import stat

    try:
        if not stat(str(a)).is_dir and stat(str(a)).size != stat(str(b)).size:
            return False
        return _digest(a) == _digest(b)
    except OSError:
        return False
