"""The org's state and what every concern shares: errors, settings, persistence, ids, housekeeping."""

from __future__ import annotations

import datetime as dt
import json
import random
import secrets
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sforg import schema
from sforg.catalogue import build_catalogue
from sforg.clock import UTC, Clock, stamp
from sforg.files import BlobStore
from sforg.generate import SCALES, Generator, plan
from sforg.ids import make_id
from sforg.org import history, shares
from sforg.org.source import StoreSource
from sforg.query import Context, Plan
from sforg.schema import ObjectDef
from sforg.store import Store, table

DAY = 86400.0
RECYCLE_BIN_DAYS = 15
REPLICATION_DAYS = 30


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


DEFAULT_SETTINGS: dict[str, Any] = {
    "token_ttl": 7200.0,
    "locator_ttl": 900.0,
    "late_commit_delay": 0.0,
    "formula_drift": False,
    "hidden_fields": {},
    # field-level security per profile: profile name -> {object: [fields]} hidden from users of that profile
    # (the API user's profile is the one in force)
    "profile_hidden_fields": {},
    "api_max": 100000,
    "concurrent_limit": 25,
    "long_running_seconds": 20.0,
    "bulk_jobs_max": 10000,
    "unretrievable_metadata": [],  # "Type:fullName" listed by listMetadata but left out of a retrieve
    "validation_rules": {},  # rule name -> active, overriding the rule's default (see validation.py)
    "audit_fields_on_insert": False,  # "Set Audit Fields upon Record Creation": CreatedDate... on insert
    "inactive_owner_updates": False,  # "Update Records with Inactive Owners": no INACTIVE_OWNER_OR_USER
    "recycle_bin_days": 15,  # org days a deleted record stays in the recycle bin before it is purged
    "retrieve_max_files": 10000,  # a Metadata retrieve with more files fails LIMIT_EXCEEDED
    "retrieve_max_bytes": 400 * 1024 * 1024,  # and one whose zip is larger
}


def new_accounting() -> dict[str, Any]:
    """The API use counted since start (or the last reset): calls and kinds by endpoint, bytes, writes."""
    return {"calls": {}, "kinds": {}, "bytes": {}, "bytes_total": 0, "writes": 0, "write_calls": {}}


class OrgBase:
    """The org's state (store, blobs, catalogue, settings, clock, identity, counters, in-memory cursors, jobs and
    faults), its persistence, and what every concern uses: the clock, objects by name, new Ids, housekeeping."""

    def __init__(self, state_dir: Path, scale: str | int = "tiny", seed: int = 1, progress: Any = None) -> None:
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.store = Store(self.state_dir / "org.db")
        self._generated_bin: list[tuple[str, str, str]] = []
        self.blobs = BlobStore(self.state_dir / "blobs")
        self.lock = threading.RLock()
        self.cursors: dict[str, Cursor] = {}
        self.jobs: dict[str, BulkJob] = {}
        self.retrieves: dict[str, dict[str, Any]] = {}
        self.faults: dict[str, dict[str, Any]] = {}
        self.fault_rng = random.Random(0)
        self.in_flight: dict[int, float] = {}
        self.accounting: dict[str, Any] = new_accounting()
        if self.store.get_meta("catalogue") is None:
            self._build(scale, seed, progress)
        self.catalogue = self._load_catalogue()
        history.install(self.store, self.catalogue)
        shares.install(self.store, self.catalogue)
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
        if self._generated_bin:
            self._bin_generated(self._generated_bin)
            self._generated_bin = []

    # ------------------------------------------------------------ build / persistence
    def _build(self, scale: str | int, seed: int, progress: Any) -> None:
        total = scale_total(scale)
        # Generated timestamps hang off the start of the current UTC day, so the same seed gives the same org
        # (to the byte) all day long while the org still looks recently used.
        anchor = float(int(time.time()) // 86400 * 86400)
        cat = build_catalogue()
        rng = random.Random(f"{seed}:identity")
        org_id = make_id("00D", 1 + int(rng.random() * 10**6), pod="5g")
        gen = Generator(self.store, cat, seed, total, anchor, progress, org_id=org_id)
        counters = gen.build()
        self._generated_bin = sorted(gen.to_bin)
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
        self._write_catalogue(cat, cat)

    def _load_catalogue(self) -> dict[str, ObjectDef]:
        names = self.store.get_meta("catalogue")
        if names and isinstance(names[0], dict):  # an org saved before: the whole catalogue in one row
            return schema.catalogue_from_json(names)
        return schema.catalogue_from_json([self.store.get_meta(f"catalogue/{n}") for n in names])

    def _write_catalogue(self, cat: dict[str, ObjectDef], changed: Iterable[str]) -> None:
        """The catalogue as one row per object (only the changed ones written: the wide standard objects make
        the whole a megabyte) and the list of the objects' names."""
        for name in changed:
            if name in cat:
                self.store.set_meta(f"catalogue/{name}", schema.catalogue_to_json({name: cat[name]})[0])
            else:
                self.store.delete_meta(f"catalogue/{name}")
        self.store.set_meta("catalogue", list(cat))

    def _bin_generated(self, marks: list[tuple[str, str, str]]) -> None:
        """The records a new org's generator marked deleted, deleted as the API deletes (Deletes)."""
        raise NotImplementedError

    def save_catalogue(self, *changed: str) -> None:
        """Persist the objects named (every object when none is) and the catalogue's list of objects."""
        self._write_catalogue(self.catalogue, changed or list(self.catalogue))
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
        """Fields hidden from the API user: org-wide (`hidden_fields`) and by the user's profile."""
        out = {k: {f.lower() for f in v} for k, v in self.settings["hidden_fields"].items()}
        by_profile = self.settings["profile_hidden_fields"]
        if by_profile:
            for k, v in by_profile.get(self.api_profile(), {}).items():
                out.setdefault(k, set()).update(f.lower() for f in v)
        return out

    def api_profile(self) -> str:
        """The name of the API user's profile."""
        row = (
            self.store.conn()
            .execute(
                f'SELECT p."Name" FROM {table("User")} u JOIN {table("Profile")} p ON p."Id" = u."ProfileId" '
                'WHERE u."Id" = ?',
                (self.identity["user_id"],),
            )
            .fetchone()
        )
        return str(row[0]) if row else ""

    def context(self) -> Context:
        now = self.now()
        today = dt.datetime.fromtimestamp(now if self.settings["formula_drift"] else self.anchor, UTC).date()
        return Context(self.catalogue, self.hidden(), today, now)

    def new_id(self, obj: ObjectDef, save: bool = True) -> str:
        """The next Id of the object; save=False leaves writing the counters to the caller (a batch of creates)."""
        with self.lock:
            n = self.counters.get(obj.name, 1)
            self.counters[obj.name] = n + 1
            if save:
                self.store.set_meta("counters", self.counters)
        return make_id(obj.key_prefix, n)

    def object_of_id(self, record_id: str) -> ObjectDef | None:
        for o in self.catalogue.values():
            if o.key_prefix and record_id.startswith(o.key_prefix):
                return o
        return None

    def _stamp_now(self) -> str:
        return stamp(self.now())

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
        cutoff = stamp(now - float(self.settings.get("recycle_bin_days", RECYCLE_BIN_DAYS)) * DAY)
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
        """Remove a row for good (hard delete or purge); a purged root takes its cascade family with it."""
        with self.store.write_lock:
            conn = self.store.conn()
            self.store.delete_row(obj, rid)
            conn.execute("INSERT OR REPLACE INTO tombstones VALUES (?, ?, ?, ?)", (obj, rid, deleted_at, kind))
            family = conn.execute(
                "SELECT object, id FROM cascades WHERE root=? AND field IS NULL AND id<>?", (rid, rid)
            ).fetchall()
            conn.execute("DELETE FROM cascades WHERE root=? OR id=?", (rid, rid))
            for cobj, cid in family:
                if cobj in self.catalogue and self.store.get(cobj, cid) is not None:
                    self._tombstone(cobj, cid, deleted_at, kind)
