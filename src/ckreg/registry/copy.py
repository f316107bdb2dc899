"""`copy_versions(src, dest, ref)`: move versions between registries (local to team and back).

Copies each selected version with its blobs (re-hashed on the way: a damaged
source blob is never copied), its verifications, its deployment artifacts,
its events and the aliases that point to it. Idempotent: a version is matched by name and pair digest,
so a second copy finds everything in place and changes nothing. Version
numbers are kept where the destination has them free; otherwise the version
gets the destination's next number (the `copied` event records both).
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from ckreg.errors import RegistryError
from ckreg.registry.model import parse_ref, utcnow
from ckreg.registry.store import ANY, Registry, _dumps, current_user

_VERSION_COLUMNS = ("name", "version", "family", "spec_json", "source_path", "sha256", "size", "format",
                    "weights_sha256", "scaler_sha256", "scaler_json", "pair_digest", "class_names",
                    "provenance_json", "created_at", "created_by")


class CopiedVersion(BaseModel):
    source: str                 # NAME@N in the source registry
    dest: str                   # NAME@M in the destination
    created: bool               # False: it was already there
    blobs_uploaded: int = 0
    verifications: int = 0      # verification records added
    events: int = 0             # events added
    artifacts: int = 0          # deployment artifact records added
    aliases: list[str] = Field(default_factory=list)   # aliases set or moved in the destination


class CopyResult(BaseModel):
    source: str
    dest: str
    versions: list[CopiedVersion] = Field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(v.created or v.blobs_uploaded or v.verifications or v.events or v.artifacts or v.aliases
                   for v in self.versions)


def copy_versions(src: Registry, dest: Registry, ref: str) -> CopyResult:
    """Copy `ref` (`NAME`: every version; `NAME@3` / `NAME@best`: that one) from `src` into `dest`."""
    name, tag = parse_ref(ref)
    with src._read() as conn:
        if tag is None and "@" not in ref:
            numbers = [int(r[0]) for r in conn.execute("SELECT version FROM versions WHERE name = ? ORDER BY version",
                                                       (name,))]
            if not numbers:
                src._resolve_number(conn, ref)   # raises naming what exists
        else:
            numbers = [src._resolve_number(conn, ref)[1]]
        rows = {}
        for n in numbers:
            row = conn.execute(f"SELECT id, {', '.join(_VERSION_COLUMNS)} FROM versions WHERE name = ? AND version = ?",
                               (name, n)).fetchone()
            rows[n] = row
        verifs = {n: conn.execute("SELECT accuracy, passed, data_hash, result_json, verified_at, verified_by"
                                  " FROM verifications WHERE version_id = ? ORDER BY id", (rows[n][0],)).fetchall()
                  for n in numbers}
        events = {n: conn.execute("SELECT at, who, kind, data_json FROM events WHERE name = ? AND version = ?"
                                  " ORDER BY id", (name, n)).fetchall() for n in numbers}
        arts = {n: conn.execute("SELECT record_json, recorded_at, recorded_by FROM artifacts WHERE version_id = ?"
                                " ORDER BY id", (rows[n][0],)).fetchall() for n in numbers}
        aliases = conn.execute("SELECT alias, version FROM aliases WHERE name = ? ORDER BY alias", (name,)).fetchall()

    result = CopyResult(source=src.location, dest=dest.location)
    dest._open(create=True)
    for n in numbers:
        row = rows[n]
        values = dict(zip(_VERSION_COLUMNS, row[1:]))
        uploaded = 0
        for digest in (values["sha256"], values["scaler_sha256"]):
            if digest and not dest.blobs.exists(digest):
                put = dest.blobs.put_file(src.blobs.verified_path(digest))   # re-hashed as read
                if put.sha256 != digest:
                    raise RegistryError(f"blob {digest[:12]} changed while it was copied; try again")
                uploaded += 1
        with dest._write() as conn:
            for digest in (values["sha256"], values["scaler_sha256"]):
                if digest and not dest.blobs.exists(digest):
                    raise RegistryError(f"blob {digest[:12]} vanished from the destination during the copy; try again")
            found = conn.execute("SELECT id, version, family FROM versions WHERE name = ? AND pair_digest = ?",
                                 (name, values["pair_digest"])).fetchone()
            created = found is None
            if created:
                if conn.execute("SELECT 1 FROM models WHERE name = ?", (name,)).fetchone() is None:
                    conn.execute("INSERT INTO models (name, created_at, created_by) VALUES (?, ?, ?)",
                                 (name, values["created_at"], values["created_by"]))
                number = n
                if conn.execute("SELECT 1 FROM versions WHERE name = ? AND version = ?", (name, n)).fetchone():
                    number = int(conn.execute("SELECT COALESCE(MAX(version), 0) + 1 FROM versions WHERE name = ?",
                                              (name,)).fetchone()[0])
                values["version"] = number
                conn.execute(f"INSERT INTO versions ({', '.join(_VERSION_COLUMNS)}) VALUES"
                             f" ({', '.join('?' * len(_VERSION_COLUMNS))})", tuple(values[c] for c in _VERSION_COLUMNS))
                vid, dest_number = conn.execute("SELECT id, version FROM versions WHERE name = ? AND version = ?",
                                                (name, number)).fetchone()
            else:
                vid, dest_number = found[0], int(found[1])
                if found[2] != values["family"]:
                    raise RegistryError(f"{name}@{dest_number} in the destination is the same pair with family "
                                        f"{found[2]}, not {values['family']}")
            have = {(r[0], r[1]) for r in conn.execute(
                "SELECT result_json, verified_at FROM verifications WHERE version_id = ?", (vid,))}
            added_v = 0
            for acc, passed, data_hash, result_json, verified_at, verified_by in verifs[n]:
                if (result_json, verified_at) in have:
                    continue
                conn.execute("INSERT INTO verifications (version_id, accuracy, passed, data_hash, result_json,"
                             " verified_at, verified_by) VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (vid, acc, passed, data_hash, result_json, verified_at, verified_by))
                added_v += 1
            seen = {(r[0], r[1], r[2]) for r in conn.execute(
                "SELECT at, who, kind FROM events WHERE name = ? AND version = ?", (name, dest_number))}
            added_e = 0
            for at, who, kind, data_json in events[n]:
                if (at, who, kind) in seen:
                    continue
                conn.execute("INSERT INTO events (at, who, kind, name, version, data_json) VALUES (?, ?, ?, ?, ?, ?)",
                             (at, who, kind, name, dest_number, data_json))
                added_e += 1
            have_a = {(r[0], r[1]) for r in conn.execute(
                "SELECT recorded_at, recorded_by FROM artifacts WHERE version_id = ?", (vid,))}
            added_a = 0
            for record_json, at, who in arts[n]:
                if (at, who) not in have_a:
                    dest._insert_artifact(conn, vid, record_json, at, who)
                    added_a += 1
            moved = []
            for alias, target in aliases:
                if int(target) != n:
                    continue
                cur = conn.execute("SELECT version FROM aliases WHERE name = ? AND alias = ?", (name, alias)).fetchone()
                if cur is None or int(cur[0]) != dest_number:
                    dest._move_alias(conn, name, alias, dest_number, ANY)
                    moved.append(alias)
            item = CopiedVersion(source=f"{name}@{n}", dest=f"{name}@{dest_number}", created=created,
                                 blobs_uploaded=uploaded, verifications=added_v, events=added_e,
                                 artifacts=added_a, aliases=moved)
            if created or added_v or added_e or added_a or moved:
                conn.execute("INSERT INTO events (at, who, kind, name, version, data_json) VALUES (?, ?, ?, ?, ?, ?)",
                             (utcnow(), current_user(), "copied", name, dest_number,
                              _dumps({"from": src.location, "source": item.source, "created": created,
                                      "verifications": added_v, "events": added_e, "artifacts": added_a,
                                      "aliases": moved})))
        result.versions.append(item)
    return result


def summary_lines(result: CopyResult) -> list[str]:
    out = []
    for v in result.versions:
        what = "copied" if v.created else ("updated" if (v.verifications or v.events or v.artifacts or v.aliases)
                                           else "already there")
        extra = []
        if v.blobs_uploaded:
            extra.append(f"{v.blobs_uploaded} blob(s)")
        if v.verifications:
            extra.append(f"{v.verifications} verification(s)")
        if v.artifacts:
            extra.append(f"{v.artifacts} artifact(s)")
        if v.aliases:
            extra.append("aliases " + ", ".join(v.aliases))
        out.append(f"{v.source} -> {v.dest}: {what}" + (f" ({'; '.join(extra)})" if extra else ""))
    return out
