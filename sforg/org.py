"""The org: records, files and metadata in the store, plus clock, sessions, cursors, adversity, faults
and accounting.

Every admin operation is a method here; the HTTP admin API and the Python admin client call the same methods.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import random
import secrets
import threading
import time
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sforg import formulas, schema
from sforg.clock import UTC, Clock, parse_datetime, stamp
from sforg.files import BlobStore, digests
from sforg.generate import SCALES, Generator, plan
from sforg.ids import is_valid, make_id, to18
from sforg.query import PREFILTER_OPS, Context, Plan, Prefilter, RowSource, execute, plan_query
from sforg.schema import FieldDef, ObjectDef
from sforg.store import Store, ascending_run, col, table

DAY = 86400.0
RECYCLE_BIN_DAYS = 15
REPLICATION_DAYS = 30
SYSTEM_FIELDS = {
    "Id",
    "IsDeleted",
    "CreatedDate",
    "CreatedById",
    "LastModifiedDate",
    "LastModifiedById",
    "SystemModstamp",
}


class OrgError(Exception):
    """An error a REST call reports as [{"message", "errorCode", "fields"}] with an HTTP status."""

    def __init__(self, status: int, code: str, message: str, fields: list[str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.fields = status, code, message, fields


@dataclass
class Cursor:
    """A REST query locator: the matching rowids, frozen at query time, and where the client is."""

    id: str
    plan: Plan
    rowids: Sequence[int]
    version: str
    batch: int
    last_used: float


@dataclass
class BulkJob:
    id: str
    info: dict[str, Any]
    plan: Plan | None = None
    rowids: Sequence[int] = field(default_factory=list)
    error: str | None = None
    done: threading.Event = field(default_factory=threading.Event)


def scale_total(scale: str | int) -> int:
    if isinstance(scale, int):
        return scale
    return SCALES[scale] if scale in SCALES else int(scale)


class StoreSource(RowSource):
    """RowSource over the SQLite store."""

    def __init__(self, store: Store, catalogue: dict[str, ObjectDef]) -> None:
        self.store = store
        self.catalogue = catalogue

    def soft_deletes(self, obj: str) -> bool:
        return self.catalogue[obj].field("IsDeleted") is not None

    def scan(
        self, obj: str, columns: list[str], include_deleted: bool, prefilter: Prefilter = ()
    ) -> Iterator[tuple[Any, ...]]:
        where, params = self.scan_where(obj, include_deleted, prefilter)
        return self.store.scan(obj, columns, where, params)

    def scan_by_id(
        self, obj: str, columns: list[str], include_deleted: bool, prefilter: Prefilter = ()
    ) -> Iterator[tuple[Any, ...]] | None:
        where, params = self.scan_where(obj, include_deleted, prefilter)
        # _rowid breaks ties among NULL Ids as the stable sort of a rowid-ordered scan does (the Id index holds
        # it, so no sorting either way).
        return self.store.scan(obj, columns, where, params, order='"Id", _rowid')

    def run_of_rowids(self, obj: str, include_deleted: bool) -> range | None:
        where, params = self.scan_where(obj, include_deleted, ())
        n, lo, hi = (
            self.store.conn()
            .execute(f"SELECT count(*), min(_rowid), max(_rowid) FROM {table(obj)} {where}", params)
            .fetchone()
        )
        if n == 0:
            return range(0)
        return range(lo, hi + 1) if hi - lo + 1 == n else None

    def scan_where(self, obj: str, include_deleted: bool, prefilter: Prefilter) -> tuple[str, list[Any]]:
        conds = [] if include_deleted or not self.soft_deletes(obj) else ['"IsDeleted" = 0']
        params: list[Any] = []
        # The plan's range conditions on indexed columns, by column.
        ranges: dict[str, tuple[list[str], list[Any]]] = {}
        for column, op, value in prefilter:
            if op not in PREFILTER_OPS:
                raise ValueError(f"not a prefilter operator: {op!r}")
            sql, values = ranges.setdefault(column, ([], []))
            sql.append(f"{col(column)} {op} ?")
            values.append(value)
        narrow = self.narrow_range(obj, ranges)
        for column, (sql, values) in ranges.items():
            # Without statistics SQLite prefers a full scan in rowid order to a one-sided index range and a
            # sort; for a range holding few rows likelihood() tells it better, and it reads just the range.
            conds += [f"likelihood({c}, 0.001)" for c in sql] if column == narrow else sql
            params += values
        return (f"WHERE {' AND '.join(conds)}" if conds else ""), params

    def narrow_range(self, obj: str, ranges: dict[str, tuple[list[str], list[Any]]]) -> str | None:
        """The column whose range holds the fewest rows if under an eighth of the table, counted on its index
        (at most that many entries read)."""
        if not ranges:
            return None
        cap = self.store.max_rowid(obj) // 8 + 1
        best, best_n = None, cap
        for column, (sql, values) in ranges.items():
            n = self.store.count_upto(obj, f"WHERE {' AND '.join(sql)}", values, best_n)
            if n < best_n:
                best, best_n = column, n
        return best

    def fetch_rowids(self, obj: str, columns: list[str], rowids: Sequence[int]) -> list[tuple[Any, ...]]:
        return self.store.fetch_rowids(obj, columns, rowids)

    def fetch_ids(self, obj: str, columns: list[str], ids: list[str]) -> dict[str, tuple[Any, ...]]:
        return self.store.fetch_ids(obj, columns, ids)

    def children(
        self, obj: str, columns: list[str], ref: str, parent_ids: list[str], include_deleted: bool
    ) -> list[tuple[Any, ...]]:
        out: list[tuple[Any, ...]] = []
        deleted = "" if include_deleted or not self.soft_deletes(obj) else ' AND "IsDeleted" = 0'
        for i in range(0, len(parent_ids), 30000):
            chunk = parent_ids[i : i + 30000]
            out.extend(
                self.store.scan(obj, columns, f"WHERE {col(ref)} IN ({','.join('?' * len(chunk))}){deleted}", chunk)
            )
        return out


DEFAULT_SETTINGS: dict[str, Any] = {
    "token_ttl": 7200.0,
    "locator_ttl": 900.0,
    "late_commit_delay": 0.0,
    "formula_drift": False,
    "hidden_fields": {},
    "api_max": 100000,
    "concurrent_limit": 25,
    "long_running_seconds": 20.0,
    "bulk_jobs_max": 10000,
    "unretrievable_metadata": [],  # "Type:fullName" listed by listMetadata but left out of a retrieve
}


class Org:
    """One emulated org living in a state directory."""

    def __init__(self, state_dir: Path, scale: str | int = "tiny", seed: int = 1, progress: Any = None) -> None:
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.store = Store(self.state_dir / "org.db")
        self.blobs = BlobStore(self.state_dir / "blobs")
        self.lock = threading.RLock()
        self.cursors: dict[str, Cursor] = {}
        self.jobs: dict[str, BulkJob] = {}
        self.retrieves: dict[str, dict[str, Any]] = {}
        self.faults: dict[str, dict[str, Any]] = {}
        self.fault_rng = random.Random(0)
        self.in_flight: dict[int, float] = {}
        self.accounting: dict[str, Any] = {"calls": {}, "kinds": {}, "bytes": {}, "bytes_total": 0}
        if self.store.get_meta("catalogue") is None:
            self._build(scale, seed, progress)
        self.catalogue = schema.catalogue_from_json(self.store.get_meta("catalogue"))
        self.src = StoreSource(self.store, self.catalogue)
        self.settings = {**DEFAULT_SETTINGS, **self.store.get_meta("settings", {})}
        clock = self.store.get_meta("clock", {"offset": 0.0, "frozen": None})
        self.clock = Clock(clock["offset"], clock["frozen"])
        self.counters: dict[str, int] = self.store.get_meta("counters")
        self.identity: dict[str, str] = self.store.get_meta("identity")
        self.anchor: float = self.store.get_meta("anchor")
        self.api_used: int = self.store.get_meta("api_used", 0)
        self._api_saved = self.api_used
        self.describe_modified: float = self.store.get_meta("describe_modified", self.anchor)
        self._maintained = 0.0
        self.bulk_jobs_created: int = self.store.get_meta("bulk_jobs_created", 0)
        self._clock_seen: tuple[float, float | None] = (self.clock.offset, self.clock.frozen)

    # ------------------------------------------------------------ build / persistence
    def _build(self, scale: str | int, seed: int, progress: Any) -> None:
        total = scale_total(scale)
        # Generated timestamps hang off the start of the current UTC day, so the same seed gives the same org
        # (to the byte) all day long while the org still looks recently used.
        anchor = float(int(time.time()) // 86400 * 86400)
        cat = schema.build_catalogue()
        gen = Generator(self.store, cat, seed, total, anchor, progress)
        counters = gen.build()
        rng = random.Random(f"{seed}:identity")
        org_id = make_id("00D", 1 + int(rng.random() * 10**6), pod="5g")
        self.store.set_meta(
            "identity",
            {
                "org_id": org_id,
                "user_id": make_id("005", 1),
                "username": "admin@sforg.example.com",
                "password": secrets.token_urlsafe(12),
                "security_token": secrets.token_urlsafe(9),
                "client_id": "3MVG9sforg" + secrets.token_urlsafe(24).replace("-", "x").replace("_", "y"),
                "client_secret": secrets.token_hex(32).upper(),
                "admin_token": secrets.token_urlsafe(32),
                "refresh_token": "5Aep861sforg" + secrets.token_urlsafe(40),
            },
        )
        self.store.set_meta("counters", counters)
        self.store.set_meta("anchor", anchor)
        self.store.set_meta("scale", {"total": total, "seed": seed, "counts": plan(total)})
        self.store.set_meta("catalogue", schema.catalogue_to_json(cat))

    def save_catalogue(self) -> None:
        self.store.set_meta("catalogue", schema.catalogue_to_json(self.catalogue))
        self.describe_modified = self.clock.now()
        self.store.set_meta("describe_modified", self.describe_modified)

    def save_settings(self) -> None:
        self.store.set_meta("settings", self.settings)

    def save_clock(self) -> None:
        self.store.set_meta("clock", {"offset": self.clock.offset, "frozen": self.clock.frozen})

    def flush(self) -> None:
        self.store.set_meta("api_used", self.api_used)
        self.store.set_meta("bulk_jobs_created", self.bulk_jobs_created)

    def count_bulk_job(self) -> int:
        """Count a Bulk 2.0 query job against the daily allowance (like api_used, it never resets itself)."""
        with self.lock:
            self.bulk_jobs_created += 1
            return self.bulk_jobs_created

    # ------------------------------------------------------------ helpers
    def now(self) -> float:
        return self.clock.now()

    def obj(self, name: str) -> ObjectDef:
        for o in self.catalogue.values():
            if o.name.lower() == name.lower():
                return o
        raise OrgError(404, "NOT_FOUND", "The requested resource does not exist")

    def hidden(self) -> dict[str, set[str]]:
        return {k: {f.lower() for f in v} for k, v in self.settings["hidden_fields"].items()}

    def context(self) -> Context:
        now = self.now()
        today = dt.datetime.fromtimestamp(now if self.settings["formula_drift"] else self.anchor, UTC).date()
        return Context(self.catalogue, self.hidden(), today, now)

    def new_id(self, obj: ObjectDef) -> str:
        with self.lock:
            n = self.counters.get(obj.name, 1)
            self.counters[obj.name] = n + 1
            self.store.set_meta("counters", self.counters)
        return make_id(obj.key_prefix, n)

    def object_of_id(self, record_id: str) -> ObjectDef | None:
        for o in self.catalogue.values():
            if record_id.startswith(o.key_prefix):
                return o
        return None

    # ------------------------------------------------------------ sessions
    def issue_token(self) -> str:
        token = f"{self.identity['org_id'][:15]}!AQ{secrets.token_urlsafe(72)}"
        with self.store.write_lock:
            self.store.conn().execute("INSERT INTO tokens VALUES (?, 'access', ?)", (token, self.now()))
        return token

    def check_token(self, token: str | None) -> bool:
        if not token:
            return False
        row = self.store.conn().execute("SELECT issued FROM tokens WHERE token=?", (token,)).fetchone()
        if row is None:
            return False
        return self.now() - row[0] < self.settings["token_ttl"]

    def revoke_tokens(self) -> int:
        with self.store.write_lock:
            return self.store.conn().execute("DELETE FROM tokens").rowcount

    # ------------------------------------------------------------ maintenance
    def maintain(self, force: bool = False) -> None:
        """Make late commits visible when due and empty recycle-bin entries older than 15 days.

        Runs at most once a second of real time (every request asks), unless the clock was moved.
        """
        tick = time.monotonic()
        clock_state = (self.clock.offset, self.clock.frozen)
        if not force and tick - self._maintained < 1.0 and self._clock_seen == clock_state:
            return
        self._maintained = tick
        self._clock_seen = clock_state
        now = self.now()
        pending = (
            self.store.conn()
            .execute("SELECT seq, object, id, op, payload FROM pending WHERE visible_at <= ? ORDER BY seq", (now,))
            .fetchall()
        )
        for seq, obj, rid, op, payload in pending:
            values = json.loads(payload)
            with self.store.write_lock:
                if op == "insert":
                    self.store.insert_many(obj, list(values), [list(values.values())])
                else:
                    self.store.update(obj, rid, values)
                self.store.conn().execute("DELETE FROM pending WHERE seq=?", (seq,))
        cutoff = stamp(now - RECYCLE_BIN_DAYS * DAY)
        for o in self.catalogue.values():
            if not o.field("IsDeleted"):
                continue
            rows = (
                self.store.conn()
                .execute(
                    f'SELECT "Id", _deleted_at FROM {table(o.name)} WHERE _deleted_at IS NOT NULL AND _deleted_at < ?',
                    (cutoff,),
                )
                .fetchall()
            )
            for rid, deleted_at in rows:
                self._tombstone(o.name, rid, deleted_at, "purged")

    def _tombstone(self, obj: str, rid: str, deleted_at: str, kind: str) -> None:
        with self.store.write_lock:
            self.store.delete_row(obj, rid)
            self.store.conn().execute(
                "INSERT OR REPLACE INTO tombstones VALUES (?, ?, ?, ?)", (obj, rid, deleted_at, kind)
            )

    # ------------------------------------------------------------ record writes (REST and admin)
    def _coerce(self, o: ObjectDef, values: dict[str, Any], creating: bool, admin: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {}
        hidden = self.hidden().get(o.name, set())
        for key, v in values.items():
            if key == "attributes":
                continue
            f = o.field(key)
            if f is None or f.name.lower() in hidden:
                raise OrgError(400, "INVALID_FIELD", f"No such column '{key}' on sobject of type {o.name}")
            if (not admin and not (f.createable if creating else f.updateable)) or not f.stored:
                raise OrgError(
                    400,
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    f"Unable to create/update fields: {f.name}. Please check the security settings "
                    "of this field and verify that it is read/write for your profile or permission "
                    "set.",
                    [f.name],
                )
            if v is not None:
                if f.type == "boolean":
                    v = 1 if v in (True, "true", 1) else 0
                elif f.type == "datetime":
                    v = stamp(parse_datetime(str(v)).timestamp())
                elif f.type in ("int",):
                    v = int(v)
                elif f.type in ("double", "currency", "percent"):
                    v = float(v)
                elif f.type in ("reference", "id"):
                    if not is_valid(str(v)):
                        raise OrgError(400, "MALFORMED_ID", f"{f.label}: id value of incorrect type: {v}", [f.name])
                    v = to18(str(v))
                elif f.type == "base64":
                    continue
                else:
                    v = str(v)
                    if f.type in ("string", "email", "phone", "url", "picklist", "textarea") and len(v) > f.length:
                        raise OrgError(400, "STRING_TOO_LONG", f"{f.label}: data value too large: {v[:40]}", [f.name])
            out[f.name] = v
        return out

    def _stamp_now(self) -> str:
        return stamp(self.now())

    def create_record(self, obj_name: str, values: dict[str, Any], admin: bool = False, late: bool = True) -> str:
        o = self.obj(obj_name)
        data = self._coerce(o, values, creating=True, admin=admin)
        blob_data = None
        if o.blob_field and o.blob_field in {k for k in values}:
            blob_data = base64.b64decode(values[o.blob_field] or "")
        for f in o.fields:
            if (
                f.stored
                and not f.nillable
                and f.name not in data
                and not f.defaulted
                and f.type != "base64"
                and f.createable
                and not (o.name in ("Contact", "Lead", "User") and f.name == "Name")
            ):
                raise OrgError(400, "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{f.name}]", [f.name])
        now = self._stamp_now()
        rid = self.new_id(o)
        user = self.identity["user_id"]
        sysvals: dict[str, Any] = {
            "Id": rid,
            "CreatedDate": now,
            "CreatedById": user,
            "LastModifiedDate": now,
            "LastModifiedById": user,
            "SystemModstamp": now,
        }
        if o.field("IsDeleted"):
            sysvals["IsDeleted"] = 0
        if o.field("OwnerId") and "OwnerId" not in data:
            sysvals["OwnerId"] = user
        for f in o.fields:
            if f.stored and f.type == "boolean" and f.name not in data and f.name not in sysvals:
                sysvals[f.name] = 0
        row = {**sysvals, **data}
        if o.field("Name") and o.field("LastName") and o.name in ("Contact", "Lead", "User"):
            row["Name"] = " ".join(p for p in (row.get("FirstName"), row.get("LastName")) if p)
        if blob_data is not None:
            row["_blob"] = self.blobs.put(blob_data)
            row["_sha256"] = hashlib.sha256(blob_data).hexdigest()
            size_field = "ContentSize" if o.field("ContentSize") else "BodyLength"
            if o.field(size_field):
                row[size_field] = len(blob_data)
            if o.name == "ContentVersion":
                row["Checksum"] = hashlib.md5(blob_data, usedforsecurity=False).hexdigest()
        if late and self.settings["late_commit_delay"] > 0:
            self._defer(o.name, rid, "insert", row)
        else:
            self.store.insert_many(o.name, list(row), [list(row.values())])
        return rid

    def _defer(self, obj: str, rid: str, op: str, values: dict[str, Any]) -> None:
        visible = self.now() + float(self.settings["late_commit_delay"])
        with self.store.write_lock:
            self.store.conn().execute(
                "INSERT INTO pending (visible_at, object, id, op, payload) VALUES (?,?,?,?,?)",
                (visible, obj, rid, op, json.dumps(values)),
            )

    def get_row(self, o: ObjectDef, rid: str, include_deleted: bool = False) -> dict[str, Any]:
        if not is_valid(rid):
            raise OrgError(
                404,
                "NOT_FOUND",
                "Provided external ID field does not exist or is not accessible: " + rid
                if not rid.isalnum()
                else "The requested resource does not exist",
            )
        row = self.store.get(o.name, to18(rid))
        if row is None or (row.get("IsDeleted") and not include_deleted):
            if row is not None:
                raise OrgError(404, "ENTITY_IS_DELETED", "entity is deleted", [])
            raise OrgError(404, "NOT_FOUND", "The requested resource does not exist")
        return row

    def update_record(
        self,
        obj_name: str,
        rid: str,
        values: dict[str, Any],
        admin: bool = False,
        modstamp: str | None = None,
        late: bool = True,
    ) -> None:
        o = self.obj(obj_name)
        self.get_row(o, rid)
        data = self._coerce(o, values, creating=False, admin=admin)
        now = modstamp or self._stamp_now()
        data.update({"LastModifiedDate": now, "SystemModstamp": now, "LastModifiedById": self.identity["user_id"]})
        if o.name in ("Contact", "Lead", "User") and ("FirstName" in data or "LastName" in data):
            cur = self.store.get(o.name, to18(rid)) or {}
            merged = {**cur, **data}
            data["Name"] = " ".join(p for p in (merged.get("FirstName"), merged.get("LastName")) if p)
        if late and self.settings["late_commit_delay"] > 0:
            self._defer(o.name, to18(rid), "update", data)
        else:
            self.store.update(o.name, to18(rid), data)

    def delete_record(self, obj_name: str, rid: str) -> None:
        """Delete as the API does: to the recycle bin, or for junctions such as CampaignMember, for good."""
        o = self.obj(obj_name)
        row = self.get_row(o, rid)
        now = self._stamp_now()
        if o.hard_delete or not o.field("IsDeleted"):
            self._tombstone(o.name, row["Id"], now, "hard")
        else:
            self.store.update(
                o.name,
                row["Id"],
                {"IsDeleted": 1, "_deleted_at": now, "SystemModstamp": now, "LastModifiedDate": now},
            )
        self._cascade(o, row["Id"], now)

    def _cascade(self, parent: ObjectDef, rid: str, now: str) -> None:
        """Master-detail children (cascadeDelete) go with their parent."""
        for o in self.catalogue.values():
            for f in o.fields:
                if f.type == "reference" and f.cascade_delete and parent.name in f.reference_to:
                    for (cid,) in list(
                        self.store.scan(
                            o.name,
                            ["Id"],
                            f"WHERE {col(f.name)}=? AND " + ('"IsDeleted"=0' if o.field("IsDeleted") else "1"),
                            (rid,),
                        )
                    ):
                        if o.hard_delete:
                            self._tombstone(o.name, cid, now, "hard")
                        else:
                            self.store.update(
                                o.name,
                                cid,
                                {
                                    "IsDeleted": 1,
                                    "_deleted_at": now,
                                    "SystemModstamp": now,
                                    "LastModifiedDate": now,
                                },
                            )

    # ------------------------------------------------------------ admin: changes
    def _pick_ids(
        self,
        obj: str,
        n: int | None,
        fraction: float | None,
        ids: list[str] | None,
        deleted: bool = False,
        seed: int | None = None,
    ) -> list[str]:
        if ids:
            return [to18(i) for i in ids]
        o = self.obj(obj)
        where = ('WHERE "IsDeleted"=1' if deleted else 'WHERE "IsDeleted"=0') if o.field("IsDeleted") else ""
        all_ids = [r[0] for r in self.store.scan(o.name, ["Id"], where)]
        if fraction is not None:
            n = round(len(all_ids) * fraction)
        n = min(n if n is not None else 1, len(all_ids))
        return random.Random(seed if seed is not None else len(all_ids)).sample(all_ids, n)

    def _change_values(self, o: ObjectDef, rng: random.Random, fields: list[str] | None) -> dict[str, Any]:
        """New values for an admin update: given fields, or a sensible updateable field of the object."""
        candidates = [
            f
            for f in o.fields
            if f.stored
            and f.updateable
            and f.createable
            and not f.system
            and f.type not in ("reference", "base64", "id")
            and not f.unique
        ]
        chosen = [o.field(n) for n in fields] if fields else [candidates[int(rng.random() * len(candidates))]]
        out: dict[str, Any] = {}
        for f in chosen:
            if f is None:
                continue
            t = f.type
            if t == "boolean":
                out[f.name] = rng.random() < 0.5
            elif t in ("int",):
                out[f.name] = int(rng.random() * 1000)
            elif t in ("double", "currency", "percent"):
                out[f.name] = round(rng.random() * 100, 2)
            elif t == "date":
                out[f.name] = (dt.date(2024, 1, 1) + dt.timedelta(days=int(rng.random() * 700))).isoformat()
            elif t == "datetime":
                out[f.name] = stamp(self.now() - rng.random() * DAY)
            elif t in ("picklist", "multipicklist"):
                out[f.name] = f.picklist[int(rng.random() * len(f.picklist))]
            elif t == "email":
                out[f.name] = f"changed{int(rng.random() * 10**6)}@example.com"
            else:
                out[f.name] = f"changed {int(rng.random() * 10**6)}"[: f.length or 255]
        return out

    def _update_records(
        self,
        obj: str,
        n: int | None = None,
        fraction: float | None = None,
        ids: list[str] | None = None,
        values: dict[str, Any] | None = None,
        fields: list[str] | None = None,
        same_modstamp: bool = False,
        seed: int | None = None,
    ) -> dict[str, Any]:
        """Update N records (or a fraction, or given ids); same_modstamp gives all one SystemModstamp."""
        o = self.obj(obj)
        targets = self._pick_ids(o.name, n, fraction, ids, seed=seed)
        rng = random.Random(seed if seed is not None else len(targets))
        modstamp = self._stamp_now() if same_modstamp else None
        for rid in targets:
            self.update_record(
                o.name,
                rid,
                values if values is not None else self._change_values(o, rng, fields),
                admin=True,
                modstamp=modstamp,
            )
        return {"ids": targets, "modstamp": modstamp}

    def _create_records(self, obj: str, n: int = 1, values: dict[str, Any] | None = None) -> dict[str, Any]:
        o = self.obj(obj)
        ids = []
        rng = random.Random(self.counters.get(o.name, 0))
        for i in range(n):
            vals = dict(values or {})
            for f in o.fields:
                if (
                    f.stored
                    and not f.nillable
                    and f.createable
                    and not f.defaulted
                    and f.name not in vals
                    and f.type != "base64"
                ):
                    if f.type == "reference":
                        parent = self.obj(f.reference_to[0])
                        vals[f.name] = next(iter(self.store.scan(parent.name, ["Id"])))[0]
                    elif f.type == "picklist":
                        vals[f.name] = f.picklist[0]
                    elif f.type == "date":
                        vals[f.name] = "2025-01-01"
                    elif f.type == "email":
                        vals[f.name] = f"new{i}@example.com"
                    else:
                        vals[f.name] = f"New {o.label} {self.counters.get(o.name, 0)}"[: f.length or 80]
            if o.blob_field and o.blob_field not in vals:
                vals[o.blob_field] = base64.b64encode(rng.randbytes(256)).decode()
            ids.append(self.create_record(o.name, vals, admin=True))
        return {"ids": ids}

    def _soft_delete(
        self, obj: str, n: int | None = None, ids: list[str] | None = None, fraction: float | None = None
    ) -> dict[str, Any]:
        targets = self._pick_ids(obj, n, fraction, ids)
        for rid in targets:
            self.delete_record(obj, rid)
        return {"ids": targets}

    def _hard_delete(
        self, obj: str, n: int | None = None, ids: list[str] | None = None, fraction: float | None = None
    ) -> dict[str, Any]:
        """Delete without the recycle bin (as the Bulk API hardDelete does): the Id vanishes everywhere."""
        o = self.obj(obj)
        targets = self._pick_ids(o.name, n, fraction, ids)
        now = self._stamp_now()
        for rid in targets:
            self._tombstone(o.name, rid, now, "hard")
        return {"ids": targets}

    def _undelete(self, obj: str, ids: list[str] | None = None, n: int | None = None) -> dict[str, Any]:
        o = self.obj(obj)
        targets = self._pick_ids(o.name, n, None, ids, deleted=True)
        now = self._stamp_now()
        for rid in targets:
            self.store.update(
                o.name,
                rid,
                {"IsDeleted": 0, "_deleted_at": None, "SystemModstamp": now, "LastModifiedDate": now},
            )
        return {"ids": targets}

    def _purge_recycle_bin(self, obj: str | None = None) -> dict[str, Any]:
        purged = []
        for o in self.catalogue.values():
            if (obj and o.name != obj) or not o.field("IsDeleted"):
                continue
            for rid, at in list(self.store.scan(o.name, ["Id", "_deleted_at"], 'WHERE "IsDeleted"=1')):
                self._tombstone(o.name, rid, at or self._stamp_now(), "purged")
                purged.append(rid)
        return {"ids": purged}

    # Admin changes run in one transaction each: thousands of rows change in one commit, as a data load does.
    def update_records(self, obj: str, **kw: Any) -> dict[str, Any]:
        """Update N records (or a fraction, or given ids); same_modstamp gives all one SystemModstamp."""
        with self.store.transaction():
            return self._update_records(obj, **kw)

    def create_records(self, obj: str, n: int = 1, values: dict[str, Any] | None = None) -> dict[str, Any]:
        with self.store.transaction():
            return self._create_records(obj, n, values)

    def soft_delete(self, obj: str, **kw: Any) -> dict[str, Any]:
        with self.store.transaction():
            return self._soft_delete(obj, **kw)

    def hard_delete(self, obj: str, **kw: Any) -> dict[str, Any]:
        with self.store.transaction():
            return self._hard_delete(obj, **kw)

    def undelete(self, obj: str, **kw: Any) -> dict[str, Any]:
        with self.store.transaction():
            return self._undelete(obj, **kw)

    def purge_recycle_bin(self, obj: str | None = None) -> dict[str, Any]:
        with self.store.transaction():
            return self._purge_recycle_bin(obj)

    def add_field(self, obj: str, name: str, type: str = "string", **kw: Any) -> dict[str, Any]:
        o = self.obj(obj)
        if not name.endswith("__c"):
            name += "__c"
        if o.field(name):
            raise OrgError(400, "DUPLICATE_DEVELOPER_NAME", f"field {name} already exists")
        f = schema.F(name, type, **kw)
        o.fields.append(f)
        o.reindex()
        self.store.add_column(o.name, f)
        self.save_catalogue()
        self._metadata_upsert("CustomField", f"{o.name}.{name}", f"objects/{o.name}.object", "", "00N")
        return {"object": o.name, "field": name}

    def remove_field(self, obj: str, name: str) -> dict[str, Any]:
        o = self.obj(obj)
        f = o.field(name)
        if f is None or not f.custom:
            raise OrgError(400, "INVALID_FIELD", f"cannot remove field {name}")
        o.fields = [x for x in o.fields if x is not f and x.compound != f.name]
        o.reindex()
        if f.stored:
            self.store.drop_column(o.name, f.name)
        self.save_catalogue()
        with self.store.write_lock:
            self.store.conn().execute(
                "DELETE FROM metadata WHERE type='CustomField' AND full_name=?", (f"{o.name}.{f.name}",)
            )
        return {"object": o.name, "field": f.name}

    def add_object(self, name: str, label: str | None = None, records: int = 0) -> dict[str, Any]:
        if not name.endswith("__c"):
            name += "__c"
        if name in self.catalogue:
            raise OrgError(400, "DUPLICATE_DEVELOPER_NAME", f"object {name} already exists")
        used = {o.key_prefix for o in self.catalogue.values()}
        prefix = next(f"a{i:02d}" for i in range(2, 99) if f"a{i:02d}" not in used)
        o = ObjectDef(
            name,
            prefix,
            label or name[:-3],
            (label or name[:-3]) + "s",
            [
                *schema.system_fields(),
                schema.F("Name", "string", length=80, nillable=False, name_field=True),
                schema.F("Value__c", "double", precision=18, scale=2),
            ],
        )
        self.catalogue[name] = o
        self.store.create_object(o)
        self.counters[name] = 1
        self.save_catalogue()
        self._metadata_upsert("CustomObject", name, f"objects/{name}.object", "", "01I")
        if records:
            self.create_records(name, records)
        return {"object": name, "keyPrefix": prefix}

    def remove_object(self, name: str) -> dict[str, Any]:
        o = self.obj(name)
        if not o.custom:
            raise OrgError(400, "INVALID_TYPE", f"cannot remove standard object {name}")
        del self.catalogue[o.name]
        self.store.drop_object(o.name)
        self.save_catalogue()
        with self.store.write_lock:
            self.store.conn().execute(
                "DELETE FROM metadata WHERE (type='CustomObject' AND full_name=?) OR "
                "(type='CustomField' AND full_name LIKE ?)",
                (o.name, o.name + ".%"),
            )
        return {"object": o.name}

    def _metadata_upsert(self, mtype: str, full_name: str, file_name: str, content: str, prefix: str) -> None:
        now = self._stamp_now()
        with self.store.write_lock:
            c = self.store.conn()
            row = c.execute(
                "SELECT id, created_date FROM metadata WHERE type=? AND full_name=?", (mtype, full_name)
            ).fetchone()
            mid = row[0] if row else (make_id(prefix, 500000 + secrets.randbelow(10**6)) if prefix else "")
            created = row[1] if row else now
            c.execute(
                "INSERT OR REPLACE INTO metadata VALUES (?, ?, ?, ?, ?, ?, ?)",
                (mtype, full_name, mid, file_name, content, created, now),
            )

    def change_metadata(self, type: str, full_name: str, content: str | None = None) -> dict[str, Any]:
        """Edit a component (or create it): new content and a new lastModifiedDate."""
        from sforg.metadata import TYPES, component_xml

        row = (
            self.store.conn()
            .execute("SELECT file_name, content FROM metadata WHERE type=? AND full_name=?", (type, full_name))
            .fetchone()
        )
        if row is None:
            directory, suffix = TYPES[type][0], TYPES[type][1]
            file_name, old = f"{directory}/{full_name}.{suffix}", ""
        else:
            file_name, old = row
        if content is None:
            rev = old.count("revision") + 2
            content = (
                (old + f"// revision {rev}\n")
                if type in ("ApexClass", "ApexTrigger")
                else component_xml(type, full_name, rev).replace("</", f"<!-- revision {rev} --></", 1)
            )
        prefix = {
            "ApexClass": "01p",
            "ApexTrigger": "01q",
            "Flow": "301",
            "PermissionSet": "0PS",
            "Profile": "00e",
            "Layout": "00h",
            "CustomField": "00N",
            "CustomObject": "01I",
        }.get(type, "")
        self._metadata_upsert(type, full_name, file_name, content, prefix)
        return {"type": type, "fullName": full_name}

    def add_file_version(
        self, content: bytes, content_document_id: str | None = None, title: str | None = None
    ) -> dict[str, Any]:
        """A new ContentVersion (and a ContentDocument when none is given); older versions lose IsLatest."""
        cv = self.obj("ContentVersion")
        now = self._stamp_now()
        if content_document_id:
            doc = self.get_row(self.obj("ContentDocument"), content_document_id)
            with self.store.write_lock:
                self.store.conn().execute(
                    f'UPDATE {table("ContentVersion")} SET "IsLatest"=0 WHERE "ContentDocumentId"=?',
                    (doc["Id"],),
                )
            count = self.store.count("ContentVersion", 'WHERE "ContentDocumentId"=?', (doc["Id"],))
            title = title or doc["Title"]
        else:
            doc = None
            count = 0
            title = title or "New file"
        vid = self.new_id(cv)
        doc_id = doc["Id"] if doc else self.new_id(self.obj("ContentDocument"))
        sha, md5, size = digests(iter([content]))
        user = self.identity["user_id"]
        row = {
            "Id": vid,
            "IsDeleted": 0,
            "OwnerId": user,
            "CreatedDate": now,
            "CreatedById": user,
            "LastModifiedDate": now,
            "LastModifiedById": user,
            "SystemModstamp": now,
            "ContentDocumentId": doc_id,
            "Title": title,
            "PathOnClient": f"{title}.bin",
            "ContentSize": size,
            "FileType": "UNKNOWN",
            "FileExtension": "bin",
            "VersionNumber": str(count + 1),
            "IsLatest": 1,
            "Checksum": md5,
            "_blob": self.blobs.put(content),
            "_sha256": sha,
        }
        self.store.insert_many("ContentVersion", list(row), [list(row.values())])
        docrow = {
            "Title": title,
            "ContentSize": size,
            "LatestPublishedVersionId": vid,
            "LastModifiedDate": now,
            "SystemModstamp": now,
            "FileType": "UNKNOWN",
            "FileExtension": "bin",
        }
        if doc:
            self.store.update("ContentDocument", doc_id, docrow)
        else:
            full = {
                "Id": doc_id,
                "IsDeleted": 0,
                "OwnerId": user,
                "CreatedDate": now,
                "CreatedById": user,
                "LastModifiedById": user,
                **docrow,
            }
            self.store.insert_many("ContentDocument", list(full), [list(full.values())])
            link = {
                "Id": self.new_id(self.obj("ContentDocumentLink")),
                "IsDeleted": 0,
                "SystemModstamp": now,
                "LinkedEntityId": user,
                "ContentDocumentId": doc_id,
                "ShareType": "I",
                "Visibility": "AllUsers",
            }
            self.store.insert_many("ContentDocumentLink", list(link), [list(link.values())])
        return {"ContentVersionId": vid, "ContentDocumentId": doc_id, "sha256": sha}

    # ------------------------------------------------------------ admin: clock, adversity, limits
    def clock_set(self, when: str | float, freeze: bool = False) -> dict[str, Any]:
        epoch = when if isinstance(when, int | float) else parse_datetime(str(when)).timestamp()
        self.clock.set(float(epoch), freeze)
        self.save_clock()
        return self.clock_info()

    def clock_advance(self, seconds: float) -> dict[str, Any]:
        self.clock.advance(float(seconds))
        self.save_clock()
        return self.clock_info()

    def clock_reset(self) -> dict[str, Any]:
        self.clock.reset()
        self.save_clock()
        return self.clock_info()

    def clock_info(self) -> dict[str, Any]:
        return {"now": stamp(self.now()), "epoch": self.now(), "frozen": self.clock.frozen is not None}

    def set_settings(self, **kw: Any) -> dict[str, Any]:
        if "hidden_fields" in kw and kw["hidden_fields"] != self.settings["hidden_fields"]:
            # Field-level security changes what describe returns, so If-Modified-Since must see it.
            self.describe_modified = self.now()
            self.store.set_meta("describe_modified", self.describe_modified)
        for k, v in kw.items():
            if k not in DEFAULT_SETTINGS:
                raise OrgError(400, "INVALID_SETTING", f"unknown setting {k}")
            self.settings[k] = v
        self.save_settings()
        return dict(self.settings)

    def set_api_usage(
        self, used: int | None = None, max: int | None = None, bulk_jobs: int | None = None
    ) -> dict[str, Any]:
        """Set the daily API counter (and its maximum) and the count of Bulk 2.0 query jobs today."""
        if bulk_jobs is not None:
            self.bulk_jobs_created = int(bulk_jobs)
        if used is not None:
            self.api_used = int(used)
        if max is not None:
            self.settings["api_max"] = int(max)
            self.save_settings()
        self.flush()
        return {"used": self.api_used, "max": self.settings["api_max"], "bulk_jobs": self.bulk_jobs_created}

    # ------------------------------------------------------------ admin: faults
    def set_fault(
        self,
        endpoint: str = "*",
        error_rate: float = 0.0,
        error: str = "SERVER_UNAVAILABLE",
        latency: float = 0.0,
        hang: bool = False,
        stall_after: int | None = None,
        count: int | None = None,
    ) -> dict[str, Any]:
        """Arm a fault on an endpoint name (see README) or '*': errors, latency, hangs, mid-body stalls."""
        spec = {
            "endpoint": endpoint,
            "error_rate": error_rate,
            "error": error,
            "latency": latency,
            "hang": hang,
            "stall_after": stall_after,
            "count": count,
        }
        self.faults[endpoint] = spec
        return spec

    def clear_faults(self) -> dict[str, Any]:
        self.faults.clear()
        return {"faults": {}}

    def in_flight_requests(self) -> dict[str, Any]:
        """How many API requests are being served now (what the concurrent long-requests limit counts)."""
        return {"in_flight": len(self.in_flight)}

    def expire_locators(self) -> dict[str, Any]:
        n = len(self.cursors)
        self.cursors.clear()
        return {"expired": n}

    def take_fault(self, endpoint: str) -> dict[str, Any] | None:
        """The fault to apply to this request, if any (counts down 'count')."""
        with self.lock:
            spec = self.faults.get(endpoint) or self.faults.get("*")
            if spec is None:
                return None
            key = spec["endpoint"]
            if spec["count"] is not None:
                if spec["count"] <= 0:
                    del self.faults[key]
                    return None
                spec["count"] -= 1
                if spec["count"] <= 0:
                    del self.faults[key]
            return spec

    # ------------------------------------------------------------ accounting
    def account(self, endpoint: str, kind: str, nbytes: int) -> None:
        with self.lock:
            a = self.accounting
            a["calls"][endpoint] = a["calls"].get(endpoint, 0) + 1
            a["kinds"][kind] = a["kinds"].get(kind, 0) + 1
            a["bytes"][endpoint] = a["bytes"].get(endpoint, 0) + nbytes
            a["bytes_total"] += nbytes

    def add_bytes(self, endpoint: str, nbytes: int) -> None:
        with self.lock:
            self.accounting["bytes"][endpoint] = self.accounting["bytes"].get(endpoint, 0) + nbytes
            self.accounting["bytes_total"] += nbytes

    def get_accounting(self) -> dict[str, Any]:
        with self.lock:
            return json.loads(
                json.dumps({**self.accounting, "api_used": self.api_used, "api_max": self.settings["api_max"]})
            )

    def reset_accounting(self) -> dict[str, Any]:
        with self.lock:
            self.accounting = {"calls": {}, "kinds": {}, "bytes": {}, "bytes_total": 0}
        return self.get_accounting()

    # ------------------------------------------------------------ ground truth
    def record_values(self, o: ObjectDef, row: dict[str, Any], ctx: Context) -> dict[str, Any]:
        """A stored row as the REST API renders it (hidden fields omitted, formulas computed)."""
        from sforg.query import RelNode, _rest_value, value_of

        node = RelNode(None, [o], "")
        cols = [c for c in row if not c.startswith("_")]
        node.columns[o.name] = cols
        tup = tuple(row[c] for c in cols)
        hidden = ctx.hidden.get(o.name, set())
        out: dict[str, Any] = {}
        for f in o.fields:
            if f.name.lower() in hidden:
                continue
            v = value_of(f, o, node, tup, ctx)
            if f.type == "base64":
                v = ("blob", o.name, row["Id"], f.name) if row.get("_blob") else None
            out[f.name] = _rest_value(f, v, "59.0")
        return out

    def _truth_of(
        self, o: ObjectDef, ctx: Context, values: bool, files: dict[str, Any]
    ) -> tuple[dict[str, Any], list[str]]:
        """Live records (Id -> values as REST renders them) and recycle-bin Ids of one object.

        Plain fields are rendered by SQLite (the same expressions as REST pages); formulas and blob URLs
        are computed here.
        """
        from sforg.query import RelNode, _q, _rest_value, json_object_sql, value_of

        hidden = ctx.hidden.get(o.name, set())
        visible = [f for f in o.fields if f.name.lower() not in hidden]
        fast = [f for f in visible if f.formula is None and f.type != "base64"]
        slow = [f for f in visible if f.formula is not None or f.type == "base64"]
        slow_cols = ["Id"]
        for f in slow:
            for c in formulas.inputs(f) if f.formula else []:
                if c not in slow_cols and o.field(c):
                    slow_cols.append(c)
        modstamp = o.field("SystemModstamp") or fast[0]
        members: list[tuple[str, FieldDef | str]] = (
            [(f.name, f) for f in fast] if values else [("SystemModstamp", modstamp)]
        )
        rendered = json_object_sql(members, o)
        deleted = '"IsDeleted"' if o.field("IsDeleted") else "0"
        sql = (
            f"SELECT {deleted}, _sha256, _blob, {rendered}, {', '.join(_q(c) for c in slow_cols)} "
            f"FROM {table(o.name)} ORDER BY _rowid"
        )
        node = RelNode(None, [o], "")
        node.columns[o.name] = slow_cols
        live: dict[str, Any] = {}
        binned: list[str] = []
        for row in self.store.conn().execute(sql):
            is_deleted, sha, blob, text, rest = row[0], row[1], row[2], row[3], row[4:]
            rid = rest[0]
            if is_deleted:
                binned.append(rid)
                continue
            vals = json.loads(text)
            if values and slow:
                for f in slow:
                    if f.type == "base64":
                        vals[f.name] = _rest_value(f, ("blob", o.name, rid, f.name), "59.0") if blob else None
                    else:
                        vals[f.name] = _rest_value(f, value_of(f, o, node, rest, ctx), "59.0")
                vals = {f.name: vals[f.name] for f in visible}
            live[rid] = vals
            if sha:
                files[rid] = {"sha256": sha, "object": o.name, "size": self.blobs.size(blob)}
        return live, binned

    def ground_truth(self, objects: list[str] | None = None, values: bool = True) -> dict[str, Any]:
        """The org as the API would return it, to reconcile a backup against exactly."""
        self.maintain(force=True)
        ctx = self.context()
        out: dict[str, Any] = {
            "generated_at": stamp(self.now()),
            "objects": {},
            "recycle_bin": {},
            "hard_deleted": {},
            "purged": {},
            "files": {},
            "metadata": [],
            "pending": 0,
        }
        for o in self.catalogue.values():
            if objects and o.name not in objects:
                continue
            live, binned = self._truth_of(o, ctx, values, out["files"])
            out["objects"][o.name] = live
            out["recycle_bin"][o.name] = binned
        for obj, rid, _at, kind in self.store.conn().execute("SELECT * FROM tombstones"):
            out["hard_deleted" if kind == "hard" else "purged"].setdefault(obj, []).append(rid)
        for mtype, full_name, mid, file_name, content, _created, modified in self.store.conn().execute(
            "SELECT * FROM metadata ORDER BY type, full_name"
        ):
            out["metadata"].append(
                {
                    "type": mtype,
                    "fullName": full_name,
                    "id": mid,
                    "fileName": file_name,
                    "lastModifiedDate": modified,
                    "sha256": hashlib.sha256(content.encode()).hexdigest(),
                }
            )
        out["pending"] = self.store.conn().execute("SELECT COUNT(*) FROM pending").fetchone()[0]
        return out

    # ------------------------------------------------------------ queries
    def plan(self, soql_text: str, include_deleted: bool, bulk: bool = False) -> Plan:
        return plan_query(soql_text, self.context(), include_deleted, bulk)

    def run(self, plan_: Plan) -> Sequence[int]:
        # Cursors and Bulk jobs keep their rowids: one range when they are a run (a whole object, or a slice of one
        # by Id when Ids follow rowids), which pages are rendered from inside SQLite; otherwise 8 bytes each in an
        # array, not a list of int objects.
        rowids = execute(plan_, self.src, self.context())
        if isinstance(rowids, range) or not rowids:
            return rowids or range(0)
        if ascending_run(rowids):
            return range(rowids[0], rowids[-1] + 1)
        return array("q", rowids)

    def new_cursor(self, plan_: Plan, rowids: Sequence[int], version: str, batch: int) -> Cursor:
        cid = make_id("01g", secrets.randbelow(62**9), pod="Dx")
        cur = Cursor(cid, plan_, rowids, version, batch, self.now())
        with self.lock:
            self.cursors[cid] = cur
            # Older cursors are dropped first when many are open, like a server with bounded memory.
            while len(self.cursors) > 64:
                oldest = min(self.cursors.values(), key=lambda c: c.last_used)
                del self.cursors[oldest.id]
        return cur

    def get_cursor(self, cid: str) -> Cursor | None:
        cur = self.cursors.get(cid)
        if cur is None:
            return None
        if self.now() - cur.last_used > self.settings["locator_ttl"]:
            self.cursors.pop(cid, None)
            return None
        cur.last_used = self.now()
        return cur

    def record_count(self, obj: str) -> int:
        o = self.obj(obj)
        return self.store.count(o.name, 'WHERE "IsDeleted"=0' if o.field("IsDeleted") else "")

    def replication_window(self, start_text: str, end_text: str) -> tuple[float, float]:
        try:
            start = parse_datetime(start_text).timestamp()
            end = parse_datetime(end_text).timestamp()
        except ValueError as exc:
            raise OrgError(400, "INVALID_REPLICATION_DATE", "startDate or endDate is not a valid date") from exc
        # Salesforce works to the minute: seconds are truncated.
        start, end = start - start % 60, end - end % 60
        now = self.now()
        if end <= start:
            raise OrgError(400, "INVALID_REPLICATION_DATE", "endDate must chronologically follow the startDate")
        if start < now - REPLICATION_DAYS * DAY:
            raise OrgError(400, "INVALID_REPLICATION_DATE", "startDate cannot be more than 30 days ago")
        return start, min(end, now - now % 60)

    def updated(self, obj: str, start_text: str, end_text: str) -> dict[str, Any]:
        o = self.obj(obj)
        start, end = self.replication_window(start_text, end_text)
        ids = [
            r[0]
            for r in self.store.scan(
                o.name,
                ["Id"],
                'WHERE "SystemModstamp" >= ? AND "SystemModstamp" < ?'
                + (' AND "IsDeleted"=0' if o.field("IsDeleted") else ""),
                (stamp(start), stamp(end)),
                order='"SystemModstamp"',
            )
        ]
        if len(ids) > 600000:
            raise OrgError(400, "EXCEEDED_ID_LIMIT", "too many ids")
        return {"ids": ids, "latestDateCovered": self._latest_covered(end)}

    def _latest_covered(self, end: float) -> str:
        # A pending (late-visible) commit holds latestDateCovered at the start of that transaction.
        row = self.store.conn().execute("SELECT MIN(json_extract(payload, '$.SystemModstamp')) FROM pending").fetchone()
        covered = stamp(end)
        if row and row[0] and row[0] < covered:
            covered = row[0]
        return covered[:-1] + "+0000"

    def deleted(self, obj: str, start_text: str, end_text: str) -> dict[str, Any]:
        o = self.obj(obj)
        start, end = self.replication_window(start_text, end_text)
        self.maintain(force=True)
        recs = []
        if o.field("IsDeleted") and not o.hard_delete:
            recs = [
                {"id": rid, "deletedDate": at[:-1] + "+0000"}
                for rid, at in self.store.scan(
                    o.name,
                    ["Id", "_deleted_at"],
                    "WHERE _deleted_at >= ? AND _deleted_at < ?",
                    (stamp(start), stamp(end)),
                    order="_deleted_at",
                )
            ]
        earliest = stamp(max(self.now() - RECYCLE_BIN_DAYS * DAY, self.anchor - RECYCLE_BIN_DAYS * DAY))
        row = (
            self.store.conn()
            .execute("SELECT MAX(deleted_at) FROM tombstones WHERE object=? AND kind='purged'", (o.name,))
            .fetchone()
        )
        if row and row[0] and row[0] > earliest:
            earliest = row[0]
        return {
            "deletedRecords": recs,
            "earliestDateAvailable": earliest[:-1] + "+0000",
            "latestDateCovered": stamp(end)[:-1] + "+0000",
        }
