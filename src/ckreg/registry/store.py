"""The registry core: `Registry(path)` over a blob store and a SQLite index (issue #5).

Torch-free: registering, resolving, aliasing, verifying blobs and gc work on
plain data. Only `export` and `ckreg.load` call into the zoo (lazily).

Concurrency: SQLite in WAL mode with a busy timeout; every write runs in a
`BEGIN IMMEDIATE` transaction, so version numbers are allocated under the
write lock and two processes registering at once both succeed with distinct
numbers. Blobs are written before the transaction (content-addressed, atomic
rename), so the lock is held only for a few index rows.
"""

from __future__ import annotations

import getpass
import json
import os
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from ckreg.arch import FAMILIES, FAMILY_FIELDS, ArchSpec
from ckreg.errors import CkregError, RegistryError, ScalerError, SpecError, UsageError
from ckreg.registry import index as _index
from ckreg.registry import schema
from ckreg.registry.blobs import PutResult, open_store
from ckreg.registry.model import (
    ARTIFACT_COLUMNS,
    Artifact,
    Event,
    GcResult,
    Problem,
    ScalerInfo,
    Verification,
    Version,
    VersionDetail,
    _jsonable,
    artifact_columns,
    check_alias,
    check_name,
    pair_digest,
    parse_ref,
    utcnow,
)

DB_NAME = "index.sqlite"
GC_GRACE_S = 3600.0
ENV_REGISTRY = "CKREG_REGISTRY"
ENV_REGISTRY_DB = "CKREG_REGISTRY_DB"
ENV_REGISTRY_STORE = "CKREG_REGISTRY_STORE"
ENV_USER = "CKREG_USER"


class _Any:
    def __repr__(self) -> str:
        return "ANY"


ANY: Any = _Any()
"""`alias(..., expect=ANY)`: move unconditionally (still atomic). Pass a version or None to compare-and-swap."""


class AliasConflictError(RegistryError):
    """The alias moved since the caller read it (compare-and-swap lost)."""


@dataclass(frozen=True)
class Registration:
    """What `register` did: the version, and whether it is new (False: the pair was already there)."""

    version: Version
    created: bool


def default_path(path: str | os.PathLike | None = None) -> Path:
    """`path`, else `$CKREG_REGISTRY`, else `registry/` relative to the working directory."""
    if path is not None and str(path) != "":
        return Path(path)
    env = os.environ.get(ENV_REGISTRY)
    return Path(env) if env else Path("registry")


def current_user() -> str:
    """Who, for the event log: `$CKREG_USER`, else the login name."""
    user = os.environ.get(ENV_USER)
    if user:
        return user
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (containers): still record something honest
        return "unknown"


def _dumps(obj: Any) -> str:
    return json.dumps(_jsonable(obj), sort_keys=True, ensure_ascii=False, separators=(",", ":"))


class Registry:
    """A model registry: an index database plus a blob store.

    `Registry(path)`: both local under `path` (`index.sqlite` + `blobs/`).
    `Registry(db=URL, store=URL)`: the index in SQLite (a path) or PostgreSQL
    (`postgresql://...`), the blobs in a local folder or any fsspec URL
    (`s3://bucket/prefix`). Unset, they come from `$CKREG_REGISTRY_DB` /
    `$CKREG_REGISTRY_STORE`, then `$CKREG_REGISTRY` (a folder for both), then
    `./registry`.

    Opening is lazy: reads on a missing registry raise `RegistryError` ("no
    registry at X"), `add` creates it. A registry with an older schema refuses
    to open until `upgrade()` (never an implicit migration).
    """

    def __init__(self, path: str | os.PathLike | None = None, *, db: str | os.PathLike | None = None,
                 store: str | os.PathLike | None = None):
        given = path is not None and str(path) != ""
        if not given:
            db = db or os.environ.get(ENV_REGISTRY_DB) or None
            store = store or os.environ.get(ENV_REGISTRY_STORE) or None
        self.root = default_path(path)
        self.db = str(db if db is not None else self.root / DB_NAME)        # as given: a path or URL
        self.store = str(store if store is not None else self.root)
        self.index = _index.Index(self.db)
        self.db_path = self.index.sqlite_path
        self.blobs = open_store(self.store)
        self._ready_pid: int | None = None

    @property
    def location(self) -> str:
        """Where this registry is, for messages: the folder, or `index + store` when they are apart."""
        if self.db_path is not None and self.db_path.parent == Path(self.blobs.url) and self.db_path.name == DB_NAME:
            return str(self.root)
        return f"{self.index.label} + {self.blobs.url}"

    def __repr__(self) -> str:
        return f"Registry({self.location!r})"

    # ------------------------------------------------------------------ connection
    def close(self) -> None:
        self.index.dispose()
        self._ready_pid = None

    def __enter__(self) -> "Registry":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def exists(self) -> bool:
        if not self.index.file_exists():
            return False
        if self.index.dialect == "sqlite":
            return True
        with self.index.plain() as conn:
            return bool(schema.table_names(conn.sa))

    def _missing(self) -> RegistryError:
        return RegistryError(f"no registry at {self.location}; create one with `ckreg registry add`")

    def _foreign(self) -> RegistryError:
        return RegistryError(f"{self.index.label} is not a ckreg registry index (no schema version)",
                             hint="point --registry (or --registry-db) at a ckreg registry")

    def _open(self, create: bool = False) -> None:
        """Check (and with `create`, make) the schema once per process."""
        if self._ready_pid == os.getpid():
            return
        if not self.index.file_exists():
            if not create:
                raise self._missing()
            if self.root.exists() and not self.root.is_dir() and self.db_path is not None \
                    and self.db_path.parent == self.root:
                raise RegistryError(f"registry path {self.root} is not a directory")
            self.db_path.parent.mkdir(parents=True, exist_ok=True)
        with self.index.plain() as conn:
            found = schema.read_version(conn.sa)
            has_tables = bool(schema.table_names(conn.sa))
        if found is None:
            if has_tables:
                raise self._foreign()
            if not create:  # an empty index: another process is creating it right now, or it never was
                raise self._missing()
            with self.index.write() as conn:
                if schema.read_version(conn.sa) is None:  # another process may have created it meanwhile
                    if schema.table_names(conn.sa):
                        raise self._foreign()
                    schema.migrate(conn.sa, 0, schema.current_version())
                    self._event(conn, "registry-created", data={"schema_version": schema.current_version()})
            with self.index.plain() as conn:
                found = schema.read_version(conn.sa)
        self._check_schema(found)
        self._ready_pid = os.getpid()

    def _check_schema(self, found: int) -> None:
        current = schema.current_version()
        if found < current:
            raise RegistryError(
                f"registry at {self.location} has schema version {found}, this ckreg needs {current}; "
                f"run `ckreg registry upgrade` on it to migrate it (a backup of a SQLite index is kept)")
        if found > current:
            raise RegistryError(
                f"registry at {self.location} has schema version {found}, newer than this ckreg understands ({current}); "
                "upgrade ckreg to use it")

    @contextmanager
    def _write(self, create: bool = False) -> Iterator[_index.Conn]:
        """A write transaction under the registry's write lock, so reads inside it are current."""
        self._open(create=create)
        with self.index.write() as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[_index.Conn]:
        """A read transaction: one consistent snapshot for a multi-query read."""
        self._open()
        with self.index.read() as conn:
            yield conn

    def _event(self, conn: _index.Conn, kind: str, name: str | None = None, version: int | None = None,
               data: dict | None = None) -> None:
        conn.execute("INSERT INTO events (at, who, kind, name, version, data_json) VALUES (?, ?, ?, ?, ?, ?)",
                     (utcnow(), current_user(), kind, name, version, _dumps(data or {})))

    # ------------------------------------------------------------------ schema
    def schema_version(self) -> int:
        if not self.exists():
            raise self._missing()
        with self.index.plain() as conn:
            found = schema.read_version(conn.sa)
            if found is None:
                raise self._foreign() if schema.table_names(conn.sa) else self._missing()
        return found

    def upgrade(self) -> tuple[int, int]:
        """Migrate the index to this ckreg's schema, explicitly; returns (from, to).

        A SQLite index is backed up first (`index.sqlite.v<old>.bak`, never
        overwriting an earlier backup); the migration runs in one transaction
        (on PostgreSQL the DDL too, so a failed step leaves nothing behind).
        """
        self.close()
        if not self.exists():
            raise self._missing()
        current = schema.current_version()
        found = self.schema_version()
        if found > current:
            self._check_schema(found)
        if found == current:
            return found, current
        backup = None
        if self.db_path is not None:
            backup = self.db_path.parent / f"{self.db_path.name}.v{found}.bak"
            n = 1
            while backup.exists():
                backup = self.db_path.parent / f"{self.db_path.name}.v{found}.bak{n}"
                n += 1
            self.index.backup_sqlite(backup)
        with self.index.write() as conn:
            found = schema.read_version(conn.sa) or 0   # re-read under the lock
            if found < current:
                schema.migrate(conn.sa, found, current)
                self._event(conn, "schema-upgraded", data={"from": found, "to": current,
                                                          "backup": str(backup) if backup else None})
        return found, current

    # ------------------------------------------------------------------ add
    def add(self, ckpt_path: str | os.PathLike, scaler_path: str | os.PathLike | None = None, name: str | None = None,
            spec: ArchSpec | dict | None = None, verification: Any = None, provenance: dict | None = None,
            aliases: Iterable[str] = (), **kwargs: Any) -> Version:
        """Register a checkpoint (+ scaler) as the next version of `name`; idempotent per pair.

        `name` defaults to the family; `spec` to the inspector's reading of the
        weights (an explicit spec must agree with what the weights show).
        Registering the same pair (same combined digest) under the same name
        returns the existing version; a given verification is then recorded
        only if it differs from the latest one, and aliases are moved to it.
        Further keywords as for `register`.
        """
        return self.register(ckpt_path, scaler_path, name=name, spec=spec, verification=verification,
                             provenance=provenance, aliases=aliases, **kwargs).version

    def register(self, ckpt_path: str | os.PathLike, scaler_path: str | os.PathLike | None = None,
                 name: str | None = None, spec: ArchSpec | dict | None = None, verification: Any = None,
                 provenance: dict | None = None, aliases: Iterable[str] = (), *, family: str | None = None,
                 overrides: dict | None = None, class_names: list[str] | None = None,
                 inspection: Any = None, data: Any = None, expect_acc: float | None = None,
                 lineage: bool = False) -> Registration:
        """`add`, also saying whether a new version was created (False: the pair was already registered).

        `family` settles what the weights cannot show (ScaleAware vs ScaleHard)
        while the other hyperparameters still come from the weights;
        `overrides` sets spec fields on top (e.g. dropout). `inspection` lets a
        caller that already inspected with `hash_weights=True` skip a second pass.
        `data` (a dataset path or `ckreg.data.Dataset`) verifies the pair on the
        way in with `ckreg.verify.verify_pair(..., expect_acc)` and records the
        result (pass or fail), instead of a ready `verification`.
        Lineage the trainer recorded (distilled-from) is stored in `provenance["lineage"]`;
        `lineage=True` also compares the weights with every registered version (`ckreg.lineage`).
        """
        ckpt = Path(ckpt_path)
        if not ckpt.is_file():
            raise RegistryError("no such checkpoint file", path=str(ckpt))
        if self.exists():
            self._open(create=True)  # schema refusals before any expensive work (an empty index is being created)
        spec = _coerce_spec(spec)
        if spec is not None and (family or overrides):
            raise UsageError("give either a full spec or family/overrides, not both")
        if family is not None and family not in FAMILIES:
            raise SpecError(f"unknown family {family!r}", hint=f"known families: {', '.join(FAMILIES)}")
        insp = inspection if inspection is not None else _inspect(ckpt, required=spec is None and family is None)
        if insp is not None and getattr(insp, "error", None):
            raise RegistryError(f"cannot register an unreadable checkpoint: {insp.error}", path=str(ckpt))
        if spec is None:
            spec = _spec_from(insp, ckpt, family)
            if overrides:
                spec = _coerce_spec({**spec.model_dump(), **dict(overrides)})
        if insp is not None:
            _check_spec_agrees(spec, insp, ckpt)
        name = check_name(name or spec.family)
        alias_list = [check_alias(a) for a in aliases]
        scaler_fields = _scaler_summary(Path(scaler_path), spec) if scaler_path is not None else None
        if data is not None:
            if verification is not None:
                raise UsageError("give a verification result or data to verify on, not both")
            if scaler_path is None:  # verify_pair would look for a sidecar: a pair other than the one registered
                raise UsageError("verifying on data needs the pair's scaler (--scaler)")
            from ckreg.verify import verify_pair

            verification = verify_pair(ckpt, scaler_path, data, expect_acc=expect_acc)
        elif expect_acc is not None:
            raise UsageError("an expected accuracy needs data to verify on (--data)")
        ver = Verification.from_any(verification) if verification is not None else None
        prov = _jsonable(provenance.model_dump(mode="json") if hasattr(provenance, "model_dump") else dict(provenance)) \
            if provenance else None
        if class_names is None:
            class_names = (prov or {}).get("class_names") or ((ver.model_extra or {}).get("class_names") if ver else None)
        if class_names is not None:
            class_names = [str(c) for c in class_names]
            if len(class_names) != spec.num_classes:
                raise RegistryError(f"{len(class_names)} class names for a model with {spec.num_classes} classes",
                                    path=str(ckpt))

        edges = self._lineage(ckpt, compare=lineage)
        if edges:
            prov = {**(prov or {}), "lineage": edges}
        self._open(create=True)
        ck = self.blobs.put_file(ckpt)
        if insp is not None and getattr(insp, "sha256", None) and insp.sha256 != ck.sha256:
            raise RegistryError("the file changed while it was being registered; try again", path=str(ckpt))
        sc: PutResult | None = self.blobs.put_file(scaler_path) if scaler_path is not None else None
        scaler_info = ScalerInfo(sha256=sc.sha256, size=sc.size, **scaler_fields) if sc is not None else None
        digest = pair_digest(ck.sha256, sc.sha256 if sc else None)

        with self._write() as conn:
            for blob in (ck, sc):
                if blob is not None and not self.blobs.exists(blob.sha256):  # a concurrent gc beat us (outside its grace period)
                    raise RegistryError(f"blob {blob.sha256[:12]} vanished during registration (concurrent gc?); try again")
            row = conn.execute("SELECT version, family FROM versions WHERE name = ? AND pair_digest = ?",
                               (name, digest)).fetchone()
            if row is not None:
                number = int(row[0])
                if row[1] != spec.family:
                    raise RegistryError(f"this pair is already registered as {name}@{number} with family {row[1]}, "
                                        f"not {spec.family}", path=str(ckpt),
                                        hint="versions are immutable; register it under another name")
            else:
                if conn.execute("SELECT 1 FROM models WHERE name = ?", (name,)).fetchone() is None:
                    conn.execute("INSERT INTO models (name, created_at, created_by) VALUES (?, ?, ?)",
                                 (name, utcnow(), current_user()))
                number = int(conn.execute("SELECT COALESCE(MAX(version), 0) + 1 FROM versions WHERE name = ?",
                                          (name,)).fetchone()[0])
                if prov and prov.get("lineage"):
                    from ckreg.lineage.provenance import name_new

                    prov = {**prov, "lineage": name_new(prov["lineage"], f"{name}@{number}")}
                conn.execute(
                    "INSERT INTO versions (name, version, family, spec_json, source_path, sha256, size, format,"
                    " weights_sha256, scaler_sha256, scaler_json, pair_digest, class_names, provenance_json,"
                    " created_at, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (name, number, spec.family, spec.model_dump_json(), str(ckpt.resolve()), ck.sha256, ck.size,
                     getattr(insp, "format", None), getattr(insp, "weights_sha256", None),
                     sc.sha256 if sc else None, scaler_info.model_dump_json() if scaler_info else None, digest,
                     _dumps(class_names) if class_names is not None else None,
                     _dumps(prov) if prov is not None else None, utcnow(), current_user()))
                self._event(conn, "registered", name, number, {
                    "source_path": str(ckpt.resolve()), "sha256": ck.sha256, "weights_sha256": getattr(insp, "weights_sha256", None),
                    "scaler_sha256": sc.sha256 if sc else None, "pair_digest": digest, "family": spec.family,
                    "scaler_source_path": str(Path(scaler_path).resolve()) if scaler_path is not None else None,
                })
            if ver is not None:
                self._record_verification(conn, name, number, ver, skip_if_same=row is not None)
            for alias in alias_list:
                self._move_alias(conn, name, alias, number, ANY)
        return Registration(version=self.resolve(f"{name}@{number}"), created=row is None)

    def _lineage(self, ckpt: Path, compare: bool) -> list[dict]:
        """Edges between `ckpt` and the registered versions (ckreg.lineage.provenance)."""
        from ckreg.lineage.provenance import Candidate, registration_edges

        def candidates() -> list[Candidate]:
            try:
                versions = self.ls() if self.exists() else []
            except RegistryError:   # being created by a concurrent registration: nothing to compare with yet
                versions = []
            return [Candidate(v.ref, str(self.blob_path(v.sha256)), v.weights_sha256) for v in versions]

        try:
            return registration_edges(ckpt, candidates, compare=compare)
        except CkregError:
            if compare:
                raise
            return []   # a file the readers cannot parse was registered with an explicit spec: no recorded lineage

    # ------------------------------------------------------------------ read
    def resolve(self, ref: str) -> Version:
        """`NAME` (latest), `NAME@version` or `NAME@alias` -> Version; RegistryError naming what exists otherwise."""
        with self._read() as conn:
            name, number = self._resolve_number(conn, ref)
            return self._versions(conn, "v.name = ? AND v.version = ?", (name, number))[0]

    def _resolve_number(self, conn: _index.Conn, ref: str) -> tuple[str, int]:
        name, tag = parse_ref(ref)
        latest = conn.execute("SELECT MAX(version) FROM versions WHERE name = ?", (name,)).fetchone()[0]
        if latest is None:
            known = [r[0] for r in conn.execute("SELECT DISTINCT name FROM versions ORDER BY name")]
            hint = f"known models: {', '.join(known)}" if known else "the registry is empty; add one with `ckreg registry add`"
            raise RegistryError(f"unknown model {name!r} in the registry at {self.location}", hint=hint)
        if tag is None:
            return name, int(latest)
        if isinstance(tag, int):
            if conn.execute("SELECT 1 FROM versions WHERE name = ? AND version = ?", (name, tag)).fetchone() is None:
                raise RegistryError(f"{name} has no version {tag}", hint=f"versions: 1..{latest}")
            return name, tag
        row = conn.execute("SELECT version FROM aliases WHERE name = ? AND alias = ?", (name, tag)).fetchone()
        if row is None:
            known = [r[0] for r in conn.execute("SELECT alias FROM aliases WHERE name = ? ORDER BY alias", (name,))]
            raise RegistryError(f"{name} has no alias {tag!r}",
                                hint=f"aliases: {', '.join(known)}" if known else "it has no aliases; set one with `ckreg registry alias`")
        return name, int(row[0])

    def ls(self, name: str | None = None) -> list[Version]:
        """Every version (of `name`, if given), by name then version."""
        if name is not None:
            check_name(name)
        with self._read() as conn:
            if name is None:
                return self._versions(conn, "1 = 1", ())
            return self._versions(conn, "v.name = ?", (name,))

    def show(self, ref: str) -> VersionDetail:
        """A version with its verification history, its events and its blob paths."""
        with self._read() as conn:
            name, number = self._resolve_number(conn, ref)
            version = self._versions(conn, "v.name = ? AND v.version = ?", (name, number))[0]
            vid = conn.execute("SELECT id FROM versions WHERE name = ? AND version = ?", (name, number)).fetchone()[0]
            history = [self._verification_from_row(r) for r in conn.execute(
                "SELECT result_json, verified_at, verified_by FROM verifications WHERE version_id = ? ORDER BY id", (vid,))]
            events = self._events(conn, "name = ? AND (version = ? OR version IS NULL)", (name, number))
            artifacts = self._artifacts(conn, name, number)
        blobs = {"checkpoint": self.blobs.location(version.sha256)}
        if version.scaler is not None:
            blobs["scaler"] = self.blobs.location(version.scaler.sha256)
        return VersionDetail(version=version, verifications=history, events=events, blobs=blobs, artifacts=artifacts)

    def events(self, name: str | None = None, kind: str | None = None) -> list[Event]:
        """The event log, oldest first (optionally one model's, or one kind's)."""
        where, args = ["1 = 1"], []
        if name is not None:
            where.append("name = ?")
            args.append(name)
        if kind is not None:
            where.append("kind = ?")
            args.append(kind)
        with self._read() as conn:
            return self._events(conn, " AND ".join(where), tuple(args))

    def _events(self, conn: _index.Conn, where: str, args: tuple) -> list[Event]:
        rows = conn.execute(f"SELECT id, at, who, kind, name, version, data_json FROM events WHERE {where} ORDER BY id", args)
        return [Event(id=r[0], at=r[1], who=r[2], kind=r[3], name=r[4], version=r[5], data=json.loads(r[6])) for r in rows]

    @staticmethod
    def _verification_from_row(row) -> Verification:
        data = json.loads(row[0])
        data.setdefault("date", row[1])
        data["by"] = row[2]
        return Verification.model_validate(data)

    def _versions(self, conn: _index.Conn, where: str, args: tuple) -> list[Version]:
        rows = conn.execute(
            "SELECT v.id, v.name, v.version, v.family, v.spec_json, v.source_path, v.sha256, v.size, v.format,"
            " v.weights_sha256, v.scaler_json, v.pair_digest, v.class_names, v.provenance_json, v.created_at, v.created_by"
            f" FROM versions v WHERE {where} ORDER BY v.name, v.version", args).fetchall()
        if not rows:
            return []
        ids = [r[0] for r in rows]
        marks = ",".join("?" * len(ids))
        aliases: dict[tuple[str, int], list[str]] = {}
        names = sorted({r[1] for r in rows})
        for n, a, v in conn.execute(
                f"SELECT name, alias, version FROM aliases WHERE name IN ({','.join('?' * len(names))}) ORDER BY alias", names):
            aliases.setdefault((n, v), []).append(a)
        latest: dict[int, Verification] = {}
        for r in conn.execute(
                "SELECT version_id, result_json, verified_at, verified_by FROM verifications WHERE id IN"
                f" (SELECT MAX(id) FROM verifications WHERE version_id IN ({marks}) GROUP BY version_id)", ids):
            latest[r[0]] = self._verification_from_row(r[1:])
        out = []
        for r in rows:
            out.append(Version(
                name=r[1], version=r[2], family=r[3], spec=ArchSpec.model_validate_json(r[4]), source_path=r[5],
                sha256=r[6], size=r[7], format=r[8], weights_sha256=r[9],
                scaler=ScalerInfo.model_validate_json(r[10]) if r[10] else None, pair_digest=r[11],
                class_names=json.loads(r[12]) if r[12] else None, provenance=json.loads(r[13]) if r[13] else None,
                created_at=r[14], created_by=r[15], aliases=aliases.get((r[1], r[2]), []), verification=latest.get(r[0])))
        return out

    # ------------------------------------------------------------------ aliases and verifications
    def alias(self, name: str, alias: str, version: int | None, expect: Any = ANY) -> Version | None:
        """Point `name@alias` at `version` (None removes it), compare-and-swap.

        `expect` is the version the caller believes the alias points to now
        (None: "not set"); if it moved meanwhile, `AliasConflictError` and
        nothing changes. The default `ANY` moves it unconditionally.
        """
        check_name(name)
        check_alias(alias)
        if version is not None:
            version = int(version)
        with self._write() as conn:
            self._move_alias(conn, name, alias, version, expect)
        return None if version is None else self.resolve(f"{name}@{version}")

    def _move_alias(self, conn: _index.Conn, name: str, alias: str, version: int | None, expect: Any) -> None:
        row = conn.execute("SELECT version FROM aliases WHERE name = ? AND alias = ?", (name, alias)).fetchone()
        current = None if row is None else int(row[0])
        if expect is not ANY and expect != current:
            raise AliasConflictError(
                f"{name}@{alias} points to {current if current is not None else 'nothing'}, not "
                f"{expect if expect is not None else 'nothing'} as expected; it moved meanwhile",
                hint="re-read it with `ckreg registry show` and try again")
        if version is None:
            if current is not None:
                conn.execute("DELETE FROM aliases WHERE name = ? AND alias = ?", (name, alias))
                self._event(conn, "alias-removed", name, current, {"alias": alias, "from": current})
            return
        if conn.execute("SELECT 1 FROM versions WHERE name = ? AND version = ?", (name, version)).fetchone() is None:
            raise RegistryError(f"{name} has no version {version}; cannot point {name}@{alias} at it")
        if current == version:
            return
        conn.execute(
            "INSERT INTO aliases (name, alias, version, updated_at, updated_by) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (name, alias) DO UPDATE SET version = excluded.version,"
            " updated_at = excluded.updated_at, updated_by = excluded.updated_by",
            (name, alias, version, utcnow(), current_user()))
        self._event(conn, "alias-moved", name, version, {"alias": alias, "from": current, "to": version})

    def record_verification(self, ref: str, result: Any) -> Version:
        """Append a verification result to a version (its latest one is its current status)."""
        ver = Verification.from_any(result)
        with self._write() as conn:
            name, number = self._resolve_number(conn, ref)
            self._record_verification(conn, name, number, ver, skip_if_same=False)
        return self.resolve(f"{name}@{number}")

    def _record_verification(self, conn: _index.Conn, name: str, number: int, ver: Verification,
                             skip_if_same: bool) -> None:
        vid = conn.execute("SELECT id FROM versions WHERE name = ? AND version = ?", (name, number)).fetchone()[0]
        data = ver.model_dump(mode="json", exclude={"by"})
        if skip_if_same:
            row = conn.execute("SELECT result_json FROM verifications WHERE version_id = ? ORDER BY id DESC LIMIT 1",
                               (vid,)).fetchone()
            if row is not None:
                old = json.loads(row[0])
                old.pop("date", None)
                if old == {k: v for k, v in data.items() if k != "date"}:
                    return
        conn.execute(
            "INSERT INTO verifications (version_id, accuracy, passed, data_hash, result_json, verified_at, verified_by)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (vid, ver.accuracy, None if ver.passed is None else int(ver.passed), ver.data_hash, _dumps(data),
             ver.date or utcnow(), current_user()))
        self._event(conn, "verified", name, number,
                    {"accuracy": ver.accuracy, "passed": ver.passed, "data_hash": ver.data_hash})

    # ------------------------------------------------------------------ deployment artifacts
    # An exported artifact (ONNX, INT8, TorchScript) of a version, with its verification metrics,
    # is a row of `artifacts` linked to the float version (append-only, like verifications), and
    # an `artifact` event in the log. `artifacts(ref)` lists them, oldest first.
    def record_artifact(self, ref: str, artifact: dict[str, Any]) -> Artifact:
        """Record a deployment artifact of REF (`format`, `status` verified|failed, files, metrics)."""
        if not isinstance(artifact, dict) or not artifact.get("format") or artifact.get("status") not in (
                "verified", "failed"):
            raise RegistryError("an artifact needs a format and a status of verified or failed")
        record = _jsonable(dict(artifact))
        with self._write() as conn:
            name, number = self._resolve_number(conn, ref)
            vid = conn.execute("SELECT id FROM versions WHERE name = ? AND version = ?", (name, number)).fetchone()[0]
            self._insert_artifact(conn, vid, _dumps(record), utcnow(), current_user())
            self._event(conn, "artifact", name, number, record)
            row = conn.execute(f"{_ARTIFACT_SELECT} WHERE a.version_id = ? ORDER BY a.id DESC LIMIT 1",
                               (vid,)).fetchone()
        return _artifact_from_row(row)

    @staticmethod
    def _insert_artifact(conn: _index.Conn, vid: int, record_json: str, at: str, who: str) -> None:
        cols = artifact_columns(json.loads(record_json))
        names = [*ARTIFACT_COLUMNS, "version_id", "record_json", "recorded_at", "recorded_by"]
        values = [cols[c] for c in ARTIFACT_COLUMNS] + [vid, record_json, at, who]
        conn.execute(f"INSERT INTO artifacts ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})", values)

    def artifacts(self, ref: str) -> list[Artifact]:
        """The deployment artifacts recorded for REF, oldest first."""
        with self._read() as conn:
            name, number = self._resolve_number(conn, ref)
            return self._artifacts(conn, name, number)

    def _artifacts(self, conn: _index.Conn, name: str, number: int) -> list[Artifact]:
        rows = conn.execute(f"{_ARTIFACT_SELECT} WHERE v.name = ? AND v.version = ? ORDER BY a.id", (name, number))
        return [_artifact_from_row(r) for r in rows]

    # ------------------------------------------------------------------ integrity and gc
    def blob_path(self, sha256: str) -> Path:
        """A blob's path after re-hashing it (IntegrityError when corrupted or missing)."""
        return self.blobs.verified_path(sha256)

    def _referenced(self, conn: _index.Conn) -> dict[str, list[str]]:
        refs: dict[str, list[str]] = {}
        for name, number, ck, sc in conn.execute("SELECT name, version, sha256, scaler_sha256 FROM versions ORDER BY name, version"):
            refs.setdefault(ck, []).append(f"{name}@{number}")
            if sc:
                refs.setdefault(sc, []).append(f"{name}@{number}")
        return refs

    def verify(self) -> list[Problem]:
        """Re-hash every blob and check the index; an empty list means all is well."""
        with self._read() as conn:
            refs = self._referenced(conn)
        check = self.index.integrity_check()
        problems: list[Problem] = []
        if check:
            problems.append(Problem(kind="index", path=self.index.label,
                                    message="SQLite quick_check: " + "; ".join(check)))
        for p in self.blobs.check(set(refs)):
            used = refs.get(p.sha256, [])
            if p.problem == "corrupt":
                msg = f"blob {p.sha256[:12]} is corrupted: its bytes hash to {p.actual[:12]}"
            elif p.problem == "missing":
                msg = f"blob {p.sha256[:12]} is missing"
            else:
                msg = f"{str(p.path).rsplit('/', 1)[-1]} is not a blob address (stray file in the blob store)"
            if used:
                msg += f" (used by {', '.join(used)})"
            problems.append(Problem(kind=p.problem, sha256=p.sha256, path=str(p.path), message=msg, referenced_by=used))
        return problems

    def gc(self, dry_run: bool = True, grace_seconds: float = GC_GRACE_S) -> GcResult:
        """Remove blobs no version references (and stale temp files).

        Runs under the write lock, and spares blobs younger than
        `grace_seconds`: a registration writes its blobs before its index
        transaction, and must not lose them to a concurrent gc.
        """
        result = GcResult(dry_run=dry_run)
        now = time.time()
        with self._write() as conn:
            refs = self._referenced(conn)
            for digest, path in self.blobs.iter_blobs():
                if digest in refs or len(digest) != 64:
                    continue
                if now - self.blobs.mtime(path) < grace_seconds:
                    result.kept_recent.append(digest)
                    continue
                result.removed.append(digest)
                result.bytes += self.blobs.size(path)
            result.temps = [str(p) for p in self.blobs.stale_temps(grace_seconds)]
            if not dry_run and (result.removed or result.temps):
                for digest in result.removed:
                    self.blobs.remove(digest)
                for t in result.temps:
                    self.blobs.remove_temp(t)
                self._event(conn, "gc", data={"removed": result.removed, "bytes": result.bytes, "temps": len(result.temps)})
        return result

    # ------------------------------------------------------------------ export
    def export(self, ref: str, to_dir: str | os.PathLike, pkl: bool = False, ckpt: bool = False,
               force: bool = False) -> list[Path]:
        """Write `weights.safetensors`, `scaler.json` (`scaler.pkl`), `README.md` (and `model.ckpt`) to `to_dir`."""
        from ckreg.registry.export import export_version

        return export_version(self, self.resolve(ref), Path(to_dir), pkl=pkl, ckpt=ckpt, force=force)


# ---------------------------------------------------------------------- helpers
_ARTIFACT_SELECT = (f"SELECT a.id, v.name, v.version, {', '.join('a.' + c for c in ARTIFACT_COLUMNS)}, "
                    "a.recorded_at, a.recorded_by, a.record_json FROM artifacts a JOIN versions v ON v.id = a.version_id")


def _artifact_from_row(row) -> Artifact:
    n = len(ARTIFACT_COLUMNS)
    fields = dict(zip(ARTIFACT_COLUMNS, row[3:3 + n]))
    return Artifact(id=row[0], name=row[1], version=int(row[2]), **fields, recorded_at=row[3 + n],
                    recorded_by=row[4 + n], record=json.loads(row[5 + n]))


def _coerce_spec(spec: Any) -> ArchSpec | None:
    if spec is None or isinstance(spec, ArchSpec):
        return spec
    try:
        if isinstance(spec, str):
            return ArchSpec.model_validate_json(spec)
        return ArchSpec.model_validate(dict(spec))
    except ValueError as exc:
        raise SpecError(f"invalid architecture spec: {exc}") from exc


def _inspect(path: Path, required: bool):
    """The inspector's reading (with weights_sha256); None only when it is absent and a spec or family was given."""
    try:
        from ckreg.inspect import inspect_path
    except ImportError:
        if required:
            raise RegistryError("the inspector (ckreg.inspect) is not available; pass the architecture spec explicitly",
                                path=str(path)) from None
        return None
    return inspect_path(str(path), hash_weights=True)


def _spec_from(insp: Any, path: Path, family: str | None = None) -> ArchSpec:
    """The spec the weights show; `family` (when given) settles the family, the weights the rest."""
    if insp is None:  # inspector unavailable: the family's reference configuration
        return ArchSpec.for_family(family)
    found = getattr(insp, "family", "unknown")
    if family is not None and found != family:
        candidates = list(getattr(insp, "ambiguous_between", None) or [])
        if found == "ambiguous" and family in candidates:
            allowed = FAMILY_FIELDS[family] | {"input_size", "num_classes"}
            shown = {k: v for k, v in (insp.hyperparameters or {}).items() if k in allowed and v is not None}
            return ArchSpec.for_family(family, **shown)
        if found in FAMILIES:
            raise RegistryError(f"the weights are a {found}, not a {family}", path=str(path),
                                hint="drop the explicit family or register the right file")
        raise RegistryError(f"the weights do not show a {family} ({found})", path=str(path))
    if found not in FAMILIES:
        between = list(getattr(insp, "ambiguous_between", None) or [])
        what = (f"the weights fit several families equally ({', '.join(between)})" if between
                else "no known family matches these weights")
        raise RegistryError(what, path=str(path), hint="pass the family explicitly (--family, or family=...)")
    try:
        from ckreg.inspect import spec_from_inspection
    except ImportError:
        raise RegistryError("the inspector cannot build a spec here; pass it explicitly", path=str(path)) from None
    try:
        return spec_from_inspection(insp)
    except CkregError as exc:
        raise RegistryError(f"cannot derive the architecture from the weights: {exc}", path=str(path),
                            hint="pass the family explicitly (--family, or family=...)") from exc


def _norm(value: Any) -> Any:
    return json.loads(json.dumps(value, default=list))


def _check_spec_agrees(spec: ArchSpec, insp: Any, path: Path) -> None:
    """An explicit spec may settle what the weights cannot show, never contradict what they do."""
    family = getattr(insp, "family", None)
    if family in FAMILIES and family != spec.family:
        raise RegistryError(f"the weights are a {family}, not a {spec.family}", path=str(path),
                            hint="drop the explicit family or register the right file")
    if family == "ambiguous" and spec.family not in (insp.ambiguous_between or []):
        raise RegistryError(f"the weights fit {', '.join(insp.ambiguous_between)}, not {spec.family}", path=str(path))
    if family in FAMILIES or family == "ambiguous":
        shown = getattr(insp, "hyperparameters", {}) or {}
        for key, value in spec.weight_hparams().items():
            if key in shown and shown[key] is not None and _norm(shown[key]) != _norm(value):
                raise RegistryError(f"spec says {key}={value!r} but the weights show {shown[key]!r}", path=str(path),
                                    hint="fix the spec (the weights are the truth)")


def _scaler_summary(path: Path, spec: ArchSpec) -> dict:
    """Read the scaler safely (restricted unpickling) and check it fits the model input."""
    if not path.is_file():
        raise ScalerError("no such scaler file", path=str(path))
    try:
        from ckreg.scaler import load_scaler
    except ImportError:
        raise RegistryError("registering a scaler needs ckreg.scaler, which is not available", path=str(path)) from None
    with warnings.catch_warnings():  # version skew is recorded in ScalerInfo.warnings, not printed mid-run
        warnings.simplefilter("ignore")
        scaler = load_scaler(path)
    n = getattr(scaler, "n_features", None)
    if n is not None and n != spec.input_size:
        raise ScalerError(f"the scaler has {n} features but the model takes {spec.input_size} input channels",
                          path=str(path), hint="pair the model with its own scaler")
    with open(path, "rb") as fh:
        head = fh.read(64).lstrip()
    return {
        "format": "json" if head.startswith(b"{") else "pkl",
        "n_features": n,
        "channel_names": list(getattr(scaler, "channel_names", None) or []) or None,
        "recipe": getattr(scaler, "recipe", None),
        "data_hash": getattr(scaler, "data_hash", None),
        "sklearn_version": getattr(scaler, "sklearn_version", None),
        "warnings": [str(w) for w in (getattr(scaler, "warnings", None) or [])],
    }
