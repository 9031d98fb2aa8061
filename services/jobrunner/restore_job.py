"""The restore job (issue 17): put a backed-up state back into the target org, record by record, resumable
without ever creating a record twice, and prove the result by reading it back.

An attempt:
1. BeginJob (the target's 00D, JOB_TYPE_RESTORE): the chunks of outcomes already stored; on a resume, the
   outcomes already recorded (ListRestoreRecords of the session) are not decided again.
2. The selection, as Ids per object (the only thing held for the whole job): the RestoreSpec's selections read
   from storage as of the point in time (ReadRecordsAsOf), or the Failed records of `retry_of`; missing parents
   (`parents` levels up: references to records neither in the target nor in the Id map) and children
   (`children` levels down, through the describe's child relationships) added.
3. Unresolved intents (a batch of creates whose answer was lost) resolved before any batch is decided: what
   the restoring user created since the batch was sent is matched to the batch's records
   (restore_domain.match_created), and those are recorded Created with their new Ids and what the batch wrote
   in place of the backup's values (PutRestoreOutcomes, resolved_intents); the unmatched ones were not created
   and are decided again like any other record.
4. Objects in restore order (parents first); per object, batches: the backup's values (to_salesforce,
   masked for another org, references through the Id map), the target's current state (by Id, 200 a call;
   a large selection through one Bulk queryAll of the object; with match_on in another org, by that field),
   the decision, then (unless a dry run) undelete, update, create (the intent committed before the call;
   Collections up to the Bulk threshold, a Bulk ingest job above) or upsert on match_on; owner fallback on
   INACTIVE_OWNER_OR_USER; each batch's outcomes and Id map entries committed in one PutRestoreOutcomes.
5. A second pass patches the references deferred to break cycles and self-lookups: this attempt's, and those
   of the records earlier attempts decided, derived again from the backup and the Id map (nothing an attempt
   holds in memory is needed by another).
6. Verification (not in a dry run): the restored scope read back from the target and compared with the backup
   values on the restored fields."""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import datetime as dt
import functools
import hashlib
import itertools
import json
import logging
import marshal
import math
import re
import resource
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson
from google.protobuf.timestamp_pb2 import Timestamp
from sfvault.restore.v1 import restore_pb2 as rpb
from sfvault.storage.v1 import storage_pb2 as spb

from services.jobrunner import restore_domain as rd
from services.jobrunner.job_run import JobRun
from services.jobrunner.ports import SalesforceWrites
from services.jobrunner.salesforce_write import WriteResult
from services.jobrunner.streams import read_ahead
from services.platform import events, lifecycle
from services.platform.counts import RestoreCounts

log = logging.getLogger("services.jobrunner.restore")

# objects a restore never writes: users, groups and setup objects are referenced, not restored
NOT_RESTORED = frozenset(
    {"User", "Group", "RecordType", "Profile", "UserRole", "Organization", "BusinessHours", "PermissionSet"}
)
# file records: their bodies come back through restore_files (spec.files), never as plain records
FILE_OBJECTS = frozenset({"ContentVersion", "ContentDocument", "Attachment", "ContentDocumentLink"})
# the file records restore_files finds by their own Id, which an undelete of their parent brings back
BINNED_FILES = frozenset({"Attachment", "ContentDocument"})
READ_BATCH = 2000  # records per storage read and per decision batch
# a selection above the Bulk threshold is decided and written in batches of one ingest job each, one batch written
# while the next is decided and the one before is at the org (held as bytes). A record held costs memory by its
# fields (its values once, as a dict): BIG_BATCH records of BATCH_FIELDS restored fields, fewer of more, more of
# fewer (up to 1.6 times as many), so that the three batches keep a jobrunner within 300 MB while a 100,000-record
# restore stays below 10 API calls per 10,000 records
BIG_BATCH = 11_000
BATCH_FIELDS = 36


def big_batch(fields: int, records: int) -> int:
    """Records per batch of a large selection (one Bulk ingest job): the object's share of the memory a batch may
    hold, evened out over the batches its records need (no small last batch costing a job of its own)."""
    size = min(max(BIG_BATCH * BATCH_FIELDS // max(fields, 1), BIG_BATCH // 2), BIG_BATCH * 8 // 5)
    batches = max(1, -(-records // size))
    return max(1, -(-records // batches))


IN_FLIGHT = 8  # chunks of outcomes on their way to storage while the job goes on
# storage takes at most 1,000 items of a repeated field (ids, where_in, source_ids, outcomes) per call
PER_CALL = 1000
READ_AHEAD = 2  # storage messages read ahead of the batch being decided (JSON text, a few MB)
READ_PAGE = 1000  # records per message of a storage read (a bigger one holds more memory in flight, for no gain)
SAMPLES = 20
_EMPTY = (None, "")  # a value normalized(value, None) takes as none
# field types whose values the proof's digest takes as they are (see RestoreJob._digest)
_AS_IS = frozenset({"string", "textarea", "picklist", "email", "phone", "url", "combobox", "reference", "id"})
# what an outcome's note says the restore wrote in place of the backup's value (read again by a resumed attempt's
# proof): the owner written instead of an inactive one, a reference left empty on Salesforce's refusal
_OWNER_NOTE = "owner replaced: inactive user"
_OWNER_NOTED = re.compile(re.escape(_OWNER_NOTE) + r" \((\w{15,18})\)")
_LEFT_EMPTY = " the referenced record is not in the target org ("
_LEFT_EMPTY_NOTED = re.compile(r"(\w+):" + re.escape(_LEFT_EMPTY))


def _owner_note(owner: str) -> str:
    return f"{_OWNER_NOTE} ({owner})"


STATE_COUNTER = {
    rd.State.CREATED: "created",
    rd.State.UPDATED: "updated",
    rd.State.UNDELETED: "undeleted",
    rd.State.SKIPPED: "skipped",
    rd.State.FAILED: "failed",
}


def _pieces(items: Iterable[Any], size: int) -> Iterator[tuple[list[Any], bool]]:
    """`items` in lists of at most `size`, each with whether it is the last (one empty list for no items)."""
    it = iter(items)
    piece = list(itertools.islice(it, size))
    while True:
        following = list(itertools.islice(it, size)) if len(piece) == size else []
        yield piece, not following
        if not following:
            return
        piece = following


def _loads(values_json: bytes | str) -> dict[str, Any]:
    """A record's stored values: orjson (several times the json module's pace), the json module for what orjson
    refuses (NaN, an integer above 64 bits)."""
    try:
        values = orjson.loads(values_json)
    except orjson.JSONDecodeError:
        values = json.loads(values_json)
    return values if isinstance(values, dict) else {}


# the value kinds of a digest's part written as they are (a normalized form ("s", text), a number ...)
_MARSHALLED = frozenset({str, int, float, bool})


def _number_form(value: Any, fi: rd.FieldInfo | None) -> Any:
    """A number field's value in one form per number (100, 100.0 and "100.00" alike) for the proof's digest."""
    kind = type(value)
    if kind is int:
        return ("n", value)
    if kind is float and math.isfinite(value):
        return ("n", int(value)) if value.is_integer() else ("n", value)
    form = rd.normalized(value, fi)
    if isinstance(form, tuple) and len(form) == 2 and form[0] == "n" and isinstance(form[1], Decimal):
        d = form[1]
        return ("n", int(d)) if d == d.to_integral_value() else ("d", str(d.normalize()))
    return form


def _form(value: Any, fi: rd.FieldInfo | None, number: bool) -> object:
    """A value as the proof's digest takes it (but text and Ids, taken as they are): a number by value, any other
    through the domain's equality (`normalized`), marshalled as it is or by its repr."""
    form = _number_form(value, fi) if number else rd.normalized(value, fi)
    kind = type(form[1]) if type(form) is tuple and len(form) == 2 else None
    return form if kind in _MARSHALLED or form is None else ("r", repr(form))


def _packed(digest: bytes, mask: int) -> bytes:
    """A proof expectation as one bytes (a tuple of them, held for every record restored, cost twice the memory):
    the digest's 16 bytes, then the mask's, little-endian (`_unpacked`)."""
    return digest + mask.to_bytes((mask.bit_length() + 7) // 8, "little")


def _unpacked(known: bytes) -> tuple[bytes, int]:
    return known[:16], int.from_bytes(known[16:], "little")


def _parts_digest(parts: list[object]) -> bytes:
    # marshal (version 2: no back-references) writes each part with its type and length: one text per parts
    return hashlib.blake2b(marshal.dumps(parts, 2), digest_size=16).digest()


def mask_secret(auth_key: bytes, fallback: str = "") -> bytes:
    """The per-deployment masking key: derived from the deployment's auth key (SFVAULT_AUTH_KEY), else from
    `fallback` (a deployment-wide setting); never the key itself."""
    material = auth_key or fallback.encode()
    return hashlib.sha256(b"sfvault restore masking\x00" + material).digest()


@dataclass(slots=True)
class Pending:
    """One record's decision in a batch, on its way to an outcome."""

    source_id: str
    decision: rd.Decision
    values: dict[str, Any]  # what it should hold in the target (for a re-decision, the proof)
    target_id: str | None = None
    state: rd.State | None = None
    code: str = ""
    message: str = ""
    notes: list[str] = field(default_factory=list)
    exact: bool = True  # `values` are the backup's, every reference mapped (none left empty): the proof's expectation
    # while its Bulk job is at the org (`_freeze`): its values and write as marshal bytes, the proof's expectation
    frozen: bytes = b""
    expected: bytes | None = None  # _expectation's


@dataclass
class RestoreJob:
    run: JobRun
    sf: SalesforceWrites
    secret: bytes = b""
    warnings: list[str] = field(default_factory=list)
    # children of the selected records that no restore can create (field history, shares, feeds: Salesforce
    # writes them itself, describe says not createable): object -> how many the backup holds, said in the report
    unrestorable: dict[str, int] = field(default_factory=dict)
    counts: dict[str, RestoreCounts] = field(default_factory=dict)  # object -> its counts (kept without a name)
    verification: rpb.Verification = field(default_factory=rpb.Verification)
    infos: dict[str, rd.ObjectInfo] = field(default_factory=dict)
    id_map: dict[str, str] = field(default_factory=dict)
    done: dict[str, tuple[int, str]] = field(default_factory=dict)  # source Id -> (state, target Id)
    selection: dict[str, list[str]] = field(default_factory=dict)  # object -> source Ids, in order
    fields_of: dict[str, list[str]] = field(default_factory=dict)
    deferred: dict[str, set[str]] = field(default_factory=dict)
    missing: set[str] = field(default_factory=set)  # referenced Ids neither in the target nor restored
    # real run: target Ids in the recycle bin when it started (cascade children of the selection; _snapshot_bin)
    binned_at_start: set[str] = field(default_factory=set)
    _bin_noted: bool = False
    prefixes: dict[str, str] = field(default_factory=dict)
    file_items: list[tuple[str, str]] = field(default_factory=list)  # (file object, source Id) for restore_files
    # object -> source Id -> deferred reference field -> the backup's reference (patched in the second pass)
    to_patch: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)
    # records an earlier attempt decided (its outcomes, and the creates of its batches whose answer was lost): what
    # it deferred to the second pass is derived again from the backup and the Id map (_earlier_patches)
    earlier: set[str] = field(default_factory=set)
    owners: dict[str, str] = field(default_factory=dict)  # source Id -> the owner written in place of its own
    failure_codes: dict[str, int] = field(default_factory=dict)  # Salesforce's error code -> records
    # the proof's expectation of each record restored in this attempt: a digest of its compared values and which
    # of the object's restored fields are compared (bit i: the i-th of `_fields`)
    expect: dict[str, bytes] = field(default_factory=dict)  # _expectation of each record, until its object is proved
    _digest_plans: dict[str, list[tuple[str, rd.FieldInfo | None, bool, bool]]] = field(default_factory=dict)
    spent: dict[str, float] = field(default_factory=dict)  # seconds per part of the step being timed
    dropped: dict[str, set[str]] = field(default_factory=dict)  # source Id -> references left empty on a retry
    _owner_active: dict[str, bool] = field(default_factory=dict)
    user: str = ""
    seq: int = 0
    _proof: rpb.Verification = field(default_factory=rpb.Verification)
    _writes_seen: int = 0
    _api_seen: int = 0
    _seen: dict[str, set[str]] = field(default_factory=dict)  # object -> the Ids of its selection
    _selected: set[str] | None = None  # every Id of the selection (_all_selected)
    _written: dict[str, list[str]] = field(default_factory=dict)  # object -> its restored fields
    # object -> the storage reads its whole selection came from (none added by Id): read again the same way
    _reads: dict[str, list[spb.ReadRecordsAsOfRequest]] = field(default_factory=dict)
    _describes: dict[str, dict[str, Any]] = field(default_factory=dict)  # {} : not in the target org
    _patched: set[str] = field(default_factory=set)  # objects whose second pass is sent
    _proved: set[str] = field(default_factory=set)  # objects whose part of the proof is taken (or being taken)
    _outcomes_pipe: ThreadPoolExecutor | None = None
    _writer: ThreadPoolExecutor | None = None  # a large object's batches written behind their decisions
    _writing: Future[None] | None = None
    # a batch of creates whose Bulk job is at the org, its results taken once the next batch is sent
    _unfinished: Callable[[], None] | None = None
    _intents_made: int = 0  # intents recorded by this attempt (their keys told apart while two are open)
    _in_flight: list[Future[None]] = field(default_factory=list)  # chunks of outcomes being stored, in order

    # ------------------------------------------------------------------ the spec (fixed for the job: read per record)
    @functools.cached_property
    def spec(self) -> rpb.RestoreSpec:
        return self.run.spec.restore.spec

    @functools.cached_property
    def source_org(self) -> str:
        return self.run.spec.salesforce_org_id

    @functools.cached_property
    def target_org(self) -> str:
        return self.run.spec.restore.target_salesforce_org_id or self.source_org

    @functools.cached_property
    def same_org(self) -> bool:
        return self.target_org[:15] == self.source_org[:15]

    @functools.cached_property
    def dry_run(self) -> bool:
        return bool(self.spec.dry_run)

    @functools.cached_property
    def masks(self) -> list[tuple[str, str, str]]:
        if self.same_org:
            return []  # masking is for another org (sandbox seeding); the source's own values go back
        return [(m.object_name, m.field, m.rule) for m in self.spec.masks]

    def _as_of(self) -> Timestamp | None:
        return self.spec.as_of if self.spec.HasField("as_of") else None

    # ------------------------------------------------------------------ the job
    def execute(self) -> str:
        try:
            message = self._execute()
            self._settle()
            return message
        finally:
            with contextlib.suppress(Exception):  # an error of the job itself goes first
                self._settle()
            if self._outcomes_pipe is not None:
                self._outcomes_pipe.shutdown(wait=True)

    def _execute(self) -> str:
        run = self.run
        for _o, _f, rule in self.masks:
            rd.check_mask_rule(rule)
        resp = run.storage.begin_job(self.target_org, run.spec.session_id, run.spec.job_id, run.spec.type, "")
        self.seq = run.seq = int(resp.last_chunk_seq)
        run.received = int(resp.counts.received)
        self.user = self.sf.user_id()
        if self.seq:
            self._load_done()
        # a file's intent (batch key "file:...") is settled by restore_files itself when the files come
        intents = [
            i
            for i in run.storage.list_restore_intents(run.spec.session_id, run.spec.job_id)
            if not i.batch_key.startswith("file:")
        ]
        with self._timed("selection"):
            self._select()
            self._describe_all()
            self._load_id_map()
        if int(self.spec.parents if self.spec.HasField("parents") else 1) > 0:
            with self._timed("parents"):
                self._add_parents()
        order, deferred = rd.restore_order({o: self.infos[o] for o in self.selection if o in self.infos})
        self.deferred = deferred
        if intents:
            with self._timed("open intents"):
                self._resolve(intents)
        # an object whose only deferred references are self-lookups has its second pass sent as soon as its own
        # records are restored, while the next objects are decided and written
        early = ThreadPoolExecutor(max_workers=1, thread_name_prefix="restore-patch")
        patches: list[Future[None]] = []
        try:
            for obj in order:
                run.control.check()
                with self._timed(obj):
                    self._restore_object(obj)
                if not self.dry_run and self._self_only(obj):
                    self._patched.add(obj)
                    patches.append(early.submit(self._patch_object, obj, self.deferred[obj]))
                if not self.dry_run and self._final(obj):
                    # its records are as the restore leaves them once its second pass (if any) is written: read
                    # back beside the next objects' restore
                    self._proved.add(obj)
                    patches.append(early.submit(self._prove, obj))
            if not self.dry_run:
                with self._timed("second pass"):
                    for future in patches:
                        future.result()
                    self._patch()
        finally:
            for future in patches:
                future.cancel()
            early.shutdown(wait=True)
        if not self.dry_run:
            with self._timed("proof"):
                self._verify()
        if self.spec.files:
            self._settle()
            self._files()
        total = sum(c.created + c.updated + c.undeleted + c.skipped + c.failed for c in self.counts.values())
        failed = sum(c.failed for c in self.counts.values())
        if failed:
            codes = ", ".join(
                f"{code} {n}" for code, n in sorted(self.failure_codes.items(), key=lambda kv: -kv[1])[:5]
            )
            self.warnings.append(f"{failed} record(s) failed" + (f" ({codes})" if codes else ""))
        if self.verification.done and not self.verification.verified:
            self.warnings.append(f"{self.verification.differing} record(s) differ from the backup after the restore")
        verb = "would restore" if self.dry_run else "restored"
        kept = ", ".join(f"{obj} {n}" for obj, n in sorted(self.unrestorable.items()))
        return (
            f"{verb} {total - failed} of {total} records"
            + (f"; not restored, the org writes them itself (not createable, or sharing rows): {kept}" if kept else "")
            + ("; warning: " + "; ".join(self.warnings) if self.warnings else "")
        )

    @contextlib.contextmanager
    def _timed(self, what: str) -> Iterator[None]:
        """Where a restore spends its time (and Salesforce calls), in the log: never values."""
        started, calls = time.monotonic(), int(self.run.client.api_calls)
        self.spent = {}
        yield
        log.info(
            "restore %s: %s in %.1f s (%s), %d API calls, peak RSS %d MB",
            self.run.spec.job_id,
            what,
            time.monotonic() - started,
            ", ".join(f"{k} {v:.1f} s" for k, v in self.spent.items()),
            int(self.run.client.api_calls) - calls,
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        )

    def all_failed(self) -> bool:
        failed = sum(c.failed for c in self.counts.values())
        total = sum(c.created + c.updated + c.undeleted + c.skipped + c.failed for c in self.counts.values())
        return total > 0 and failed == total

    def restore_counts(self) -> list[rpb.ObjectRestoreCounts]:
        return [events.restore_counts_to_pb(c, name) for name, c in sorted(self.counts.items())]

    def _count(self, obj: str, more: RestoreCounts) -> None:
        self.counts[obj] = self.counts.get(obj, RestoreCounts()) + more

    def _count_states(self, obj: str, states: dict[str, int]) -> None:
        """Records counted by state (created, updated, ...: RestoreCounts' names)."""
        if states:
            self._count(obj, RestoreCounts("", **states))

    # ------------------------------------------------------------------ resume
    def _load_done(self) -> None:
        loaded: dict[str, dict[str, int]] = {}  # object -> state name -> records
        for o in self.run.storage.list_restore_records(self.run.spec.session_id):
            self.done[o.source_id] = (int(o.state), o.target_id)
            self.earlier.add(o.source_id)
            name = STATE_COUNTER.get(rd.State(int(o.state))) if int(o.state) else None
            if name:
                by_state = loaded.setdefault(o.object_name, {})
                by_state[name] = by_state.get(name, 0) + 1
            if o.target_id and int(o.state) == rd.State.CREATED.value:
                self.id_map[o.source_id] = o.target_id
            if o.note and int(o.state) not in (0, rd.State.FAILED.value):
                self._noted(o.source_id, o.note)
        for obj, by_state in loaded.items():
            self._count_states(obj, by_state)

    def _noted(self, sid: str, note: str) -> None:
        """What an earlier attempt wrote in place of the backup's values, from its outcome's note: the proof
        expects it as this attempt's own writes."""
        owner = _OWNER_NOTED.search(note)
        if owner:
            self.owners[sid] = owner.group(1)
        elif _OWNER_NOTE in note:  # noted before the owner was: the fallback is the same one
            self.owners[sid] = self._fallback_owner()
        for name in _LEFT_EMPTY_NOTED.findall(note):
            self.dropped.setdefault(sid, set()).add(name)

    def _resolve(self, intents: Sequence[spb.RestoreIntent]) -> None:
        """Batches of creates whose answer was lost: what they created is found and recorded, never created
        again; with what the batch wrote in place of the backup's values noted on the outcome (the proof expects
        it, in this attempt and any later one)."""
        # records the org refused, mended (`_mend`) and sent again in a batch of their own: what the mend changed
        # (not derivable: it followed the refusal's answer) is read from the record the batch made
        mended = {sid for i in intents if ":again" in i.batch_key for sid in i.source_ids}
        # a record the restore already knows it made (stored outcomes, or found for an intent before) is no
        # candidate: two batches' intents may be open at once, and one's records are then the other's candidates
        claimed = {new_id[:15] for new_id in self.id_map.values() if new_id}
        for intent in intents:
            self.run.control.check()
            obj = intent.object_name
            info = self._info(obj)
            todo = [i for i in intent.source_ids if i not in self.done]
            outcomes: list[rpb.RecordOutcome] = []
            if todo and info is not None:
                expected, notes = self._lost_writes(obj, info, todo)
                fields = self._fields(obj)
                plain = [f for f in fields if info.fields[f].sf_type != "reference"]
                since = intent.sent_at.ToDatetime(dt.UTC) - dt.timedelta(seconds=1)
                candidates = [
                    r
                    for r in self.sf.created_since(obj, self.user, since, fields)
                    if str(r.get("Id"))[:15] not in claimed
                ]
                matched = rd.match_created(expected, candidates, plain, info=info)
                claimed.update(new_id[:15] for new_id in matched.values())
                rows = {str(r.get("Id"))[:15]: r for r in candidates}  # 15 characters: an Id in either form
                for sid, new_id in matched.items():
                    note = notes[sid]
                    if sid in mended:
                        note += self._mends_found(obj, info, expected[sid], rows.get(new_id[:15]))
                    note.append("created by a batch whose answer was lost; found and matched")
                    self.id_map[sid] = new_id
                    self.done[sid] = (rd.State.CREATED.value, new_id)
                    self.earlier.add(sid)
                    self._noted(sid, "; ".join(note))
                    outcomes.append(
                        rpb.RecordOutcome(
                            object_name=obj,
                            source_id=sid,
                            target_id=new_id,
                            state=rpb.RECORD_STATE_CREATED,
                            note="; ".join(note)[:500],
                        )
                    )
                    self._count(obj, RestoreCounts(created=1))
            self._put(obj, outcomes, resolved=[intent.batch_key])

    def _lost_writes(
        self, obj: str, info: rd.ObjectInfo, sids: list[str]
    ) -> tuple[dict[str, dict[str, Any]], dict[str, list[str]]]:
        """What a batch of creates wrote, derived again as `_batch` decided it: per record, the values sent (the
        owner mapped, an inactive one replaced) and the notes saying what differs from the backup."""
        fields = self._fields(obj)
        backup = list(self._backup(obj, sids))
        inactive = self._inactive_owners([str(v.get("OwnerId")) for _s, v in backup if v.get("OwnerId")])
        writes: dict[str, dict[str, Any]] = {}
        notes: dict[str, list[str]] = {}
        for sid, values in backup:
            said = notes[sid] = []
            values = self._mapped_owner(values, said)
            if values.get("OwnerId") in inactive:
                values = {**values, "OwnerId": self._fallback_owner()}
                said.append(_owner_note(values["OwnerId"]))
            writes[sid] = rd.decide(
                sid,
                values,
                None,
                target_id=None,
                target_deleted=False,
                fields=fields,
                info=info,
                restore_empty=bool(self.spec.restore_empty),
            ).write
        return writes, notes

    def _mends_found(
        self, obj: str, info: rd.ObjectInfo, write: dict[str, Any], row: dict[str, Any] | None
    ) -> list[str]:
        """The notes of what `_mend` changed in a record sent again, read from the record made: the owner replaced
        (by the one a mend picks), optional references it holds no value of (left empty). A deferred reference
        is no mend: the second pass writes it."""
        if row is None:
            return []
        found: list[str] = []
        owner = write.get("OwnerId")
        if isinstance(owner, str) and "OwnerId" in row and not rd.same(owner, row["OwnerId"], info.field("OwnerId")):
            fallback = self.spec.owner_map.get(owner) or self._fallback_owner()
            if rd.same(fallback, row["OwnerId"], info.field("OwnerId")):
                found.append(_owner_note(fallback))
        deferred = self.deferred.get(obj, set())
        for name, value in write.items():
            f = info.field(name)
            if f is None or f.sf_type != "reference" or not f.nillable or name in deferred or name == "OwnerId":
                continue
            if value not in _EMPTY and row.get(name) in _EMPTY:
                found.append(f"{name}:{_LEFT_EMPTY}refused), left empty")
        return found

    # ------------------------------------------------------------------ the selection
    def _request(self, obj: str, **kw: Any) -> spb.ReadRecordsAsOfRequest:
        # the values as stored, not in canonical form: the job parses them (storage's canonical text is not needed)
        req = spb.ReadRecordsAsOfRequest(
            org_id=self.source_org, object_name=obj, batch_size=READ_PAGE, as_stored=True, **kw
        )
        as_of = self._as_of()
        if as_of is not None:
            req.as_of.CopyFrom(as_of)
        return req

    def _ids_of(self, req: spb.ReadRecordsAsOfRequest) -> Iterator[str]:
        """The Ids a selection names: read without their values (a copy: the request may be read again later
        for the values, at the object's turn)."""
        only_ids = spb.ReadRecordsAsOfRequest()
        only_ids.CopyFrom(req)
        only_ids.ids_only = True
        for batch in self.run.storage.read_records_as_of(only_ids):
            for r in batch.records:
                yield r.record_id

    def _all_selected(self) -> set[str]:
        """Every selected Id, of any object (kept until the selection grows)."""
        if self._selected is None:
            self._selected = {i for ids in self.selection.values() for i in ids}
        return self._selected

    def _add(self, obj: str, ids: Sequence[str], *, by_id: bool = False) -> list[str]:
        self._selected = None
        held = self.selection.setdefault(obj, [])
        seen = self._seen.setdefault(obj, set(held))
        new = [i for i in ids if i not in seen]
        if by_id and new:
            self._reads.pop(obj, None)  # no longer one plain read: by its Ids
        seen.update(new)
        held.extend(new)
        return new

    def _select(self) -> None:
        spec = self.spec
        picked: dict[str, list[str]] = {}
        if spec.retry_of:
            for o in self.run.storage.list_restore_records(spec.retry_of, rpb.RECORD_STATE_FAILED):
                picked.setdefault(o.object_name, []).append(o.source_id)
            for obj, ids in picked.items():
                self._add(obj, ids)
            return  # a retry re-runs exactly the Failed records
        selections = list(spec.selections)
        if spec.whole_org:
            names = [n for n in self.sf.object_names() if n not in NOT_RESTORED]
            selections = [rpb.RestoreSelection(object_name=n, all=True) for n in names]
        # the plain reads (all, deleted_since, changed_since) of several objects are made at once: storage and
        # its database answer one while the job takes another's Ids
        plain_reads: dict[int, Future[list[str]]] = {}
        pool = ThreadPoolExecutor(max_workers=3, thread_name_prefix="restore-select")
        try:
            for n, sel in enumerate(selections):
                if not sel.ids:
                    plain_reads[n] = pool.submit(lambda req: list(self._ids_of(req)), self._plain_request(sel))
            self._select_each(selections, plain_reads)
        finally:
            for future in plain_reads.values():
                future.cancel()
            pool.shutdown(wait=True)
        self._select_children()

    def _plain_request(self, sel: rpb.RestoreSelection) -> spb.ReadRecordsAsOfRequest:
        obj = sel.object_name
        if sel.HasField("deleted_since"):
            return self._request(obj, deleted_since=sel.deleted_since)
        if sel.HasField("changed_since"):
            return self._request(obj, changed_since=sel.changed_since)
        return self._request(obj, all=True)

    def _select_each(
        self, selections: Sequence[rpb.RestoreSelection], plain_reads: dict[int, Future[list[str]]]
    ) -> None:
        for n, sel in enumerate(selections):
            self.run.control.check()
            obj = sel.object_name
            if sel.fields:
                self.fields_of.setdefault(obj, [])
                self.fields_of[obj].extend(f for f in sel.fields if f not in self.fields_of[obj])
            if sel.ids:
                ids = [i for i in sel.ids]
                for i in range(0, len(ids), PER_CALL):
                    self._add(obj, list(self._ids_of(self._request(obj, ids=ids[i : i + PER_CALL]))), by_id=True)
            else:
                req = self._plain_request(sel)
                plain = obj not in self.selection or obj in self._reads
                self._add(obj, plain_reads[n].result())
                if plain:
                    self._reads.setdefault(obj, []).append(req)

    def _select_children(self) -> None:
        spec = self.spec
        levels = int(spec.children) if spec.HasField("children") else 2
        frontier = {obj: list(ids) for obj, ids in self.selection.items()}
        # level by level down to `levels`; the files of every record selected (at any level, the last one too)
        for level in itertools.count():
            if not frontier or (level >= levels and not spec.files):
                break
            nxt: dict[str, list[str]] = {}
            for obj, ids in frontier.items():
                info = self._info(obj)
                if info is None or not ids:
                    continue
                for rel in info.children:
                    child = rel.child_object
                    if child in FILE_OBJECTS:
                        if self.spec.files:
                            self._file_children(child, rel.field, ids)
                        continue
                    if level >= levels or child in NOT_RESTORED:
                        continue
                    if not self._restorable(child):
                        if self._info(child) is not None:  # in the target, but the org's to write: counted, said
                            self._count_unrestorable(child, rel.field, ids)
                        continue
                    for i in range(0, len(ids), PER_CALL):
                        self.run.control.check()
                        req = self._request(child, where_field=rel.field, where_in=ids[i : i + PER_CALL])
                        new = self._add(child, list(self._ids_of(req)), by_id=True)
                        nxt.setdefault(child, []).extend(new)
            frontier = nxt
        for obj in [o for o in self.selection if o in FILE_OBJECTS]:
            self.file_items.extend((obj, i) for i in self.selection.pop(obj))
        self.selection = {o: ids for o, ids in self.selection.items() if ids}

    def _count_unrestorable(self, child: str, field_name: str, ids: list[str]) -> None:
        for i in range(0, len(ids), PER_CALL):
            req = self._request(child, where_field=field_name, where_in=ids[i : i + PER_CALL])
            found = sum(1 for _ in self._ids_of(req))
            if found:
                self.unrestorable[child] = self.unrestorable.get(child, 0) + found

    def _file_children(self, child: str, field_name: str, ids: list[str]) -> None:
        """The files of the selected records: their Attachments, and the documents their ContentDocumentLinks
        name (restore_files brings the bodies back)."""
        for i in range(0, len(ids), PER_CALL):
            req = self._request(child, where_field=field_name, where_in=ids[i : i + PER_CALL])
            for batch in self.run.storage.read_records_as_of(req):
                for r in batch.records:
                    if child == "ContentDocumentLink":
                        values = json.loads(r.values_json) if r.values_json else {}
                        doc = values.get("ContentDocumentId")
                        if isinstance(doc, str) and doc:
                            self.file_items.append(("ContentDocument", doc))
                    else:
                        self.file_items.append((child, r.record_id))

    def _restorable(self, obj: str) -> bool:
        info = self._info(obj)
        if info is None:
            return False
        describe = self._describes.get(obj) or {}
        return (
            bool(describe.get("createable", True)) and bool(describe.get("queryable", True)) and not self._sharing(obj)
        )

    def _sharing(self, obj: str) -> bool:
        """A sharing object (AccountShare, ...): its rows are the org's own, written from the owner, the sharing
        rules and teams (Salesforce refuses a row of RowCause Owner); a restored record gets its owner's row from
        the org, so none is written."""
        return (self._describes.get(obj) or {}).get("associateEntityType") == "Share"

    def _info(self, obj: str) -> rd.ObjectInfo | None:
        if obj in self.infos:
            return self.infos[obj]
        if obj in self._describes:
            return None  # described before: not in the target
        try:
            describe = self.sf.describe(obj)
        except Exception as exc:  # not in the target org (another org), or not describable
            if getattr(exc, "status", 0) in (400, 404):
                self._describes[obj] = {}
                return None
            raise
        self._describes[obj] = describe
        info = rd.object_info(describe)
        self.infos[obj] = info
        if info.key_prefix:
            self.prefixes[info.key_prefix] = obj
        return info

    def _describe_all(self) -> None:
        for obj in list(self.selection):
            if self._info(obj) is None:
                self.warnings.append(f"{obj}: not in the target org; its records are not restored")
                for sid in self.selection[obj]:
                    self.done.setdefault(sid, (rd.State.FAILED.value, ""))
                del self.selection[obj]
            elif self._sharing(obj):  # selected by name: said, never written
                self.unrestorable[obj] = self.unrestorable.get(obj, 0) + len(self.selection.pop(obj))

    def _fields(self, obj: str) -> list[str]:
        """The fields restored of an object (written, compared), and the count of those left out."""
        known = self._written.get(obj)
        if known is not None:
            return known
        info = self.infos[obj]
        selected = self.fields_of.get(obj)
        written, left_out = rd.restorable_fields(info, selected or None)
        self.counts[obj] = dataclasses.replace(self.counts.get(obj, RestoreCounts()), fields_left_out=len(left_out))
        self._written[obj] = written
        return written

    def _load_id_map(self) -> None:
        ids = [i for ids in self.selection.values() for i in ids]
        if ids:
            self.id_map.update(self.run.storage.get_id_map(self.source_org, self.target_org, ids))

    # ------------------------------------------------------------------ parents
    def _refs(self, obj: str, values: dict[str, Any]) -> Iterator[tuple[str, str]]:
        """(parent object, parent Id) of each reference of a record to a restorable object."""
        info = self.infos[obj]
        for name, value in values.items():
            f = info.field(name)
            if f is None or f.sf_type != "reference" or not isinstance(value, str) or len(value) < 15:
                continue
            parent = self.prefixes.get(value[:3]) or (f.reference_to[0] if len(f.reference_to) == 1 else "")
            if parent and parent not in NOT_RESTORED:
                yield parent, value

    def _add_parents(self) -> None:
        levels = int(self.spec.parents) if self.spec.HasField("parents") else 1
        frontier = {o: list(ids) for o, ids in self.selection.items()}
        for _level in range(levels):
            wanted: dict[str, set[str]] = {}
            for obj, ids in frontier.items():
                for _sid, values in self._backup(obj, ids, raw=True):
                    for parent, ref in self._refs(obj, values):
                        if ref in self._seen.get(parent, set()) or ref in self.id_map:
                            continue
                        wanted.setdefault(parent, set()).add(ref)
            nxt: dict[str, list[str]] = {}
            for parent, refs in wanted.items():
                info = self._info(parent)
                if info is None or not self._restorable(parent):
                    if not self.same_org:
                        self.missing.update(refs)
                    continue
                present: set[str] = set()
                if self.same_org:
                    rows = self.sf.query_ids(parent, self._deleted_field(parent), sorted(refs))
                    present = {str(r["Id"]) for r in rows if not r.get("IsDeleted")}
                absent = sorted(refs - present)
                if not absent:
                    continue
                found: list[str] = []
                for i in range(0, len(absent), PER_CALL):
                    found.extend(self._ids_of(self._request(parent, ids=absent[i : i + PER_CALL])))
                self.missing.update(set(absent) - set(found))
                new = self._add(parent, found, by_id=True)
                if new:
                    nxt[parent] = new
            frontier = nxt
            if not frontier:
                break

    def _deleted_field(self, obj: str) -> list[str]:
        return ["IsDeleted"] if "IsDeleted" in self.infos[obj].fields else []

    # ------------------------------------------------------------------ reads
    def _backup(
        self, obj: str, ids: Sequence[str], *, raw: bool = False, again: bool = False
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """(source Id, values) of these records as of the point: Salesforce-shaped and masked (raw: the values
        as stored, parsed). again: the object's selection read as it was selected when it came from
        plain reads (one stream, no lookup by Id), keeping these Ids."""
        for chunk in self._backup_json(obj, ids, again=again):
            yield from self._shaped(obj, chunk, raw=raw)

    def _shaped(
        self, obj: str, chunk: list[tuple[str, bytes]], *, raw: bool = False
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Records as stored (values_json) made (source Id, values) as `_backup` yields them."""
        info = self.infos.get(obj)
        masks = self.masks
        for record_id, values_json in chunk:
            values = _loads(values_json) if values_json else {}
            if raw or info is None:
                yield record_id, values
                continue
            out = rd.to_salesforce(values, info, keep_null=False)
            if masks:
                out = rd.mask_values(obj, out, masks, secret=self.secret)
            yield record_id, out

    def _backup_json(self, obj: str, ids: Sequence[str], *, again: bool = False) -> Iterator[list[tuple[str, bytes]]]:
        """The records of `_backup` as stored, (source Id, values_json), one list per storage batch."""
        wanted: set[str] | None = None
        if again and obj in self._reads:
            wanted = set(ids)
            requests = list(self._reads[obj])
        else:
            requests = [self._request(obj, ids=list(ids[i : i + PER_CALL])) for i in range(0, len(ids), PER_CALL)]
        for req in requests:
            for batch in self.run.storage.read_records_as_of(req):
                chunk: list[tuple[str, bytes]] = []
                for r in batch.records:
                    if wanted is not None:
                        if r.record_id not in wanted:
                            continue
                        wanted.discard(r.record_id)  # two selections of one object may name a record twice
                    chunk.append((r.record_id, r.values_json))
                if chunk:
                    yield chunk

    def _target_of(self, sid: str) -> str | None:
        mapped = self.id_map.get(sid)
        if mapped:
            return mapped
        return sid if self.same_org else None

    def _target_rows(self, obj: str, fields: list[str], keys: list[str], by: str = "Id") -> dict[str, dict[str, Any]]:
        """The target's current records with these keys (Ids, or match_on values), queryAll: by key 200 a call,
        or, above the Bulk threshold, one Bulk queryAll of the whole object kept only for these keys."""
        started = time.monotonic()
        try:
            return self._read_target(obj, fields, keys, by)
        finally:
            self.spent["target reads"] = self.spent.get("target reads", 0.0) + time.monotonic() - started

    def _read_target(self, obj: str, fields: list[str], keys: list[str], by: str) -> dict[str, dict[str, Any]]:
        info = self.infos[obj]
        select = list(dict.fromkeys([*fields, *self._deleted_field(obj), *([by] if by != "Id" else [])]))
        if not keys:
            return {}
        if len(keys) > self.run.tuning.bulk_threshold:
            wanted = set(keys)
            types = {f: info.fields[f].sf_type for f in select if f in info.fields}
            whole = self.sf.query_object(obj, select, types, few_first=True)
            return {str(r.get(by)): r for r in whole if str(r.get(by) or "") in wanted}
        rows = self.sf.query_in(obj, select, by, keys) if by != "Id" else self.sf.query_ids(obj, select, keys)
        return {str(r.get(by)): r for r in rows}

    # ------------------------------------------------------------------ one object
    def _restore_object(self, obj: str) -> None:
        info = self.infos[obj]
        fields = self._fields(obj)
        ids = [i for i in self.selection[obj] if i not in self.done]
        if not ids:
            return
        match_on = self.spec.match_on if (self.spec.match_on and not self.same_org) else ""
        if match_on and info.field(match_on) is None:
            match_on = ""
        # a large selection goes in batches of about BIG_BATCH: one Bulk ingest job each (few API calls per record)
        big = len(ids) > self.run.tuning.bulk_threshold
        size = big_batch(len(fields), len(ids)) if big else READ_BATCH
        log.info("restore %s: %s, %d fields restored, batches of %d", self.run.spec.job_id, obj, len(fields), size)
        chunks = self._backup_json(obj, ids, again=True)
        if big and not self.dry_run:
            # the next batch is read from storage (as stored: its values' JSON text, a few KB a record) while the
            # target is read and while the batch before is written
            chunks = read_ahead(chunks, READ_AHEAD)
            # a batch is written (the org at work on its Bulk job) while the next one is decided: the object's
            # own records are all the next batch could refer to, and those references wait for the second pass
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="restore-write")
        prefetched: dict[str, dict[str, Any]] | None = None
        batch: list[tuple[str, dict[str, Any]]] = []
        try:
            if big and not match_on:
                targets = [t for t in (self._target_of(i) for i in ids) if t]
                prefetched = self._target_rows(obj, fields, targets)
            for chunk in chunks:
                for sid, values in self._shaped(obj, chunk):
                    batch.append((sid, values))
                    if len(batch) >= size:
                        self._batch(obj, info, fields, batch, prefetched, match_on)
                        batch = []
            if batch:
                self._batch(obj, info, fields, batch, prefetched, match_on)
            self._wait_write(last=True)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
            if self._writer is not None:
                with contextlib.suppress(Exception):  # the error that stopped the object goes first
                    self._wait_write(last=True)
                self._writer.shutdown(wait=True)
                self._writer = None
        for sid in ids:  # requested but not in the backup as of the point: nothing to restore
            if sid not in self.done:
                self.done[sid] = (0, "")

    def _present(self, ref: str) -> bool:
        if ref in self.missing:
            return False
        state = self.done.get(ref)
        if state is not None:
            return state[0] not in (rd.State.FAILED.value, 0) and (self.same_org or bool(state[1]))
        return self.same_org

    def _batch(
        self,
        obj: str,
        info: rd.ObjectInfo,
        fields: list[str],
        batch: list[tuple[str, dict[str, Any]]],
        prefetched: dict[str, dict[str, Any]] | None,
        match_on: str,
    ) -> None:
        self.run.control.check()
        if match_on:
            keys = [str(v[match_on]) for _s, v in batch if v.get(match_on) not in (None, "")]
            current = self._target_rows(obj, fields, keys, by=match_on)
        elif prefetched is not None:
            current = prefetched
        else:
            targets = [t for t in (self._target_of(s) for s, _v in batch) if t]
            current = self._target_rows(obj, fields, targets)
        deferred = self.deferred.get(obj, set())
        selected = self._all_selected()  # a pending record: selected, not decided yet
        items: list[Pending] = []
        restore_empty = bool(self.spec.restore_empty)
        inactive = self._inactive_owners([str(v.get("OwnerId")) for _s, v in batch if v.get("OwnerId")])
        for n in range(len(batch)):
            sid, values = batch[n]
            batch[n] = ("", {})  # its values live on in `items` only: one copy of the batch at a time
            notes: list[str] = []
            values = self._mapped_owner(values, notes)

            here = current.get(self._target_of(sid) or "") if not match_on else None
            later: list[str] = []  # references that differ, written by the second pass
            for f in deferred:
                ref = values.get(f)
                if isinstance(ref, str) and ref in selected and ref not in self.done:
                    if here is not None and here.get(f) and here.get(f) == self._target_of(ref):
                        continue  # already pointing where it should: compared as any field
                    values = dict(values)
                    del values[f]  # patched in the second pass
                    self.to_patch.setdefault(obj, {}).setdefault(sid, {})[f] = ref
                    later.append(f)
            values, reasons = rd.rewrite_references(values, info, self.id_map, self._present, prefixes=self.prefixes)
            row = current.get(str(values.get(match_on))) if match_on else None
            tid = str(row["Id"]) if row is not None else self._target_of(sid)
            if not match_on:
                row = current.get(tid) if tid else None
            deleted = bool(row.get("IsDeleted")) if row is not None else False
            # in the recycle bin when the restore started, live now: its parent's undelete (this session) brought
            # it back; Undeleted as the preview says, its differences written without undeleting it again
            revived = not deleted and row is not None and tid is not None and tid in self.binned_at_start

            how: dict[str, Any] = {
                "target_id": tid if row is not None else None,
                "target_deleted": deleted or revived,
                "fields": fields,
                "info": info,
                "restore_empty": restore_empty,
            }
            decision = rd.decide(sid, values, None if deleted else row, **how)
            if decision.write.get("OwnerId") in inactive:
                values = self._replaced_owner(sid, values, notes)
                decision = rd.decide(sid, values, None if deleted else row, **how)
            if revived:
                decision = dataclasses.replace(decision, undelete=False)
            elif decision.state == rd.State.SKIPPED and row is not None and self._lookups_back(info, fields, values):
                # a lookup Salesforce cleared when its parent was deleted, put back by that parent's undelete in
                # this session: Updated in the preview (it differs) and in the real run (the org restored it)
                decision = dataclasses.replace(decision, state=rd.State.UPDATED)
                notes.append("lookups restored by the undelete of their parent")
            # an existing record whose deferred references differ is Updated by the second pass (a preview too)
            decision = rd.with_deferred(decision, later)
            item = Pending(sid, decision, values, target_id=decision.target_id, notes=notes)
            if decision.note:
                item.notes.append(decision.note)
            failure = rd.record_failure(reasons)
            if failure and decision.state == rd.State.CREATED:
                item.state, item.code, item.message = rd.State.FAILED, "PARENT_NOT_RESTORED", failure
            elif reasons:
                item.notes.extend(reasons)
            item.exact = not reasons
            items.append(item)
        batch.clear()  # the values live on in `items` only
        if self.dry_run:
            for item in items:
                if item.state is None:
                    item.state = item.decision.state
                    if item.state == rd.State.CREATED:
                        self.id_map.setdefault(item.source_id, item.source_id)  # children see it as restored
            self._commit(obj, items, [])
            return
        if self._writer is None:
            self._timed_write(obj, items, match_on)
            return
        # written by the writer thread while the next batch is read and decided; batches written in order
        self._wait_write()
        self._writing = self._writer.submit(contextvars.copy_context().run, self._timed_write, obj, items, match_on)

    def _timed_write(self, obj: str, items: list[Pending], match_on: str) -> None:
        """A batch written; then the batch before it, whose Bulk job was left at the org, finished (so the org
        works on one while the results of the other are taken and the next one is decided)."""
        started = time.monotonic()
        before, self._unfinished = self._unfinished, None
        try:
            self._write(obj, items, match_on)
        except BaseException:
            if before is not None:
                with contextlib.suppress(Exception):  # the error of this batch goes first
                    before()
            raise
        if before is not None:
            before()
            lifecycle.release_memory()  # the batch before, let go: given back before the next one is held
        self.spent["writes"] = self.spent.get("writes", 0.0) + time.monotonic() - started

    def _wait_write(self, *, last: bool = False) -> None:
        """The batch being written is written (its error raised here); the last one (`last`) finished too."""
        writing, self._writing = self._writing, None
        if writing is not None:
            writing.result()
            lifecycle.release_memory()  # the batch's values, freed: given back, not left resident
        if last and self._unfinished is not None:
            unfinished, self._unfinished = self._unfinished, None
            unfinished()

    def _mapped_owner(self, values: dict[str, Any], notes: list[str]) -> dict[str, Any]:
        """The record's values with its owner through the spec's owner map (noted when it is)."""
        owner = values.get("OwnerId")
        mapped = self.spec.owner_map.get(str(owner)) if owner else None
        if not mapped:
            return values
        notes.append("owner replaced from the owner map")
        return {**values, "OwnerId": mapped}

    def _fallback_owner(self) -> str:
        """The owner written in place of an inactive one (the org refuses one on a write): the default owner,
        or the restoring user."""
        return self.spec.default_owner_id or self.user

    def _replaced_owner(self, sid: str, values: dict[str, Any], notes: list[str]) -> dict[str, Any]:
        """The record's values with an inactive owner replaced; noted on its outcome, where a resumed attempt's
        proof reads it again."""
        new_owner = self._fallback_owner()
        self.owners[sid] = new_owner
        notes.append(_owner_note(new_owner))
        return {**values, "OwnerId": new_owner}

    def _inactive_owners(self, owners: list[str]) -> set[str]:
        """The owners among these that are inactive users of the target (asked once per user): their records
        go to the default owner or the restoring user, so a second restore decides the same."""
        unknown = sorted({o for o in owners if o.startswith("005") and o not in self._owner_active})
        if unknown and "User" not in self._describes:
            try:
                rows = self.sf.query_ids("User", ["IsActive"], unknown)
            except Exception as exc:  # no User object to ask (or no access): the write's answer decides
                log.info("owners not checked: %s", type(exc).__name__)
                self._describes["User"] = {}
                rows = []
            found = {str(r["Id"]): r.get("IsActive") is not False for r in rows}
            for o in unknown:
                self._owner_active[o] = found.get(o, True)  # a user the target lacks: its answer decides
        return {o for o in owners if self._owner_active.get(o) is False}

    def _lookups_back(self, info: rd.ObjectInfo, fields: list[str], values: dict[str, Any]) -> bool:
        """Whether a restored lookup of the record names a record this session undeleted (in the recycle bin
        when it started): Salesforce cleared that lookup on the delete and puts it back on the undelete. The
        record named may not be decided yet (a self-lookup to a record of the same object, brought back by the
        undelete of its own parent): in the recycle bin at the start is enough."""
        for name in fields:
            f = info.fields.get(name)
            ref = values.get(name)
            if f is None or f.sf_type != "reference" or f.cascade_delete or not isinstance(ref, str):
                continue
            if self.done.get(ref, (0, ""))[0] == rd.State.UNDELETED.value:
                return True
            if self.binned_at_start and (self._target_of(ref) or "") in self.binned_at_start:
                return True
        return False

    def _snapshot_bin(self) -> None:
        """The real run's record of what was in the recycle bin when it started (Ids only), for the records not
        decided yet of the objects an undelete of this restore can bring back with their parent (a cascade-delete
        child of a selected object): a record it brings back counts Undeleted, as the preview (which writes
        nothing) sees it. Taken before the session's first undelete (nothing before it brings a record back):
        a restore that undeletes nothing never reads it."""
        self._bin_noted = True
        if self.dry_run or not self.same_org:
            return
        children = {
            c.child_object
            for o in self.selection
            for c in self.infos[o].children
            if c.cascade_delete and c.child_object in self.selection
        }
        for obj in children:
            if not self._deleted_field(obj):
                continue
            targets = [t for t in (self._target_of(s) for s in self.selection[obj] if s not in self.done) if t]
            rows = self._target_rows(obj, [], targets)
            self.binned_at_start.update(t for t, r in rows.items() if r.get("IsDeleted"))
        # the selected files (Attachments, documents) an undelete of their parent can bring back: restore_files
        # counts one of them Undeleted, as the preview does
        files: dict[str, list[str]] = {}
        for obj, sid in dict.fromkeys(self.file_items):
            target = self._target_of(sid) if obj in BINNED_FILES and sid not in self.done else None
            if target:
                files.setdefault(obj, []).append(target)
        for obj, targets in files.items():
            self.binned_at_start.update(self._binned(obj, targets))

    def _binned(self, obj: str, targets: list[str]) -> Iterator[str]:
        """Those of these target Ids in the recycle bin: Ids only, by Id (queryAll, 200 a call)."""
        return (str(r["Id"]) for r in self.sf.query_ids(obj, ["IsDeleted"], targets) if r.get("IsDeleted"))

    # ------------------------------------------------------------------ writes
    def _write(self, obj: str, items: list[Pending], match_on: str) -> list[str]:
        """The batch's writes and their outcomes: undeletes and updates committed first, then the intent of the
        creates, the creates and their outcomes (with the intents they resolve)."""
        undelete = [i for i in items if i.state is None and i.decision.undelete and i.target_id]
        if undelete and not self._bin_noted:
            self._snapshot_bin()  # before the session's first undelete, the org is as the restore found it
        if undelete:
            results = self.sf.undelete([str(i.target_id) for i in undelete])
            for item, res in zip(undelete, results, strict=True):
                if res.success:
                    item.state = rd.State.UNDELETED
                elif res.code in ("UNDELETE_FAILED", "ENTITY_IS_DELETED", "INVALID_ID_FIELD"):
                    # purged since it was read: it comes back as a new record
                    item.decision = rd.decide(
                        item.source_id,
                        item.values,
                        None,
                        target_id=None,
                        target_deleted=False,
                        fields=self._fields(obj),
                        info=self.infos[obj],
                        restore_empty=bool(self.spec.restore_empty),
                    )
                    item.target_id = None
                else:
                    self._fail(item, res)
        for item in items:  # in the recycle bin at the start, brought back by its parent's undelete
            if item.state is None and item.decision.state == rd.State.UNDELETED and not item.decision.undelete:
                item.state = rd.State.UNDELETED
        updates = [
            i
            for i in items
            if i.decision.write
            and i.target_id
            and ((i.state is None and i.decision.state == rd.State.UPDATED) or i.state == rd.State.UNDELETED)
        ]
        if updates:
            records = [{"Id": i.target_id, **i.decision.write} for i in updates]
            results = self._send(obj, "update", records)
            again: list[Pending] = []
            for item, res in zip(updates, results, strict=True):
                if res.success:
                    item.state = item.state or rd.State.UPDATED
                elif self._mend(obj, item, res):
                    item.state = item.state or rd.State.UPDATED
                    again.append(item)
                else:
                    self._fail(item, res)
            if again:
                self._retry(obj, again, "update")
        for item in items:
            if item.state is None and item.decision.state == rd.State.SKIPPED:
                item.state = rd.State.SKIPPED
            elif item.state is None and item.decision.state == rd.State.UPDATED and not item.decision.write:
                # its lookups came back with their parent's undelete, or its deferred ones go in the second pass
                item.state = rd.State.UPDATED
        # what is settled so far is committed before any create is sent: a lost answer loses no other outcome
        creates = [i for i in items if i.state is None and i.decision.state == rd.State.CREATED]
        settled = [i for i in items if i.state is not None]
        if settled:
            self._commit(obj, settled, [])
        resolved: list[str] = []
        upserts = [i for i in creates if match_on and i.values.get(match_on) not in (None, "")]
        if upserts:  # idempotent on the external Id: no intent needed
            records = [{**i.decision.write, match_on: i.values.get(match_on)} for i in upserts]
            if len(records) <= self._bulk():
                results = self.sf.upsert(obj, match_on, records)
            else:
                results = self._bulk_send(obj, "upsert", records, match_on)
            self._settle_creates(obj, upserts, results, upsert=True)
        plain = [i for i in creates if i not in upserts]
        if plain:
            self._bind_deferred(obj, plain)
            resolved.extend(self._intent(obj, plain))
            records = [i.decision.write for i in plain]
            if self._writer is not None and len(records) > self._bulk():
                # two Bulk jobs at the org: this one is sent now, its results taken once the next batch is sent
                # (`_timed_write`); its intent stays open until then, as a lost answer's would
                collect = self.sf.bulk_start(obj, "insert", records)
                del records
                self._freeze(obj, plain)
                self._unfinished = lambda: self._created(obj, creates, plain, collect(), resolved)
                return resolved
            self._created(obj, creates, plain, self._send(obj, "create", records), resolved)
        elif creates or resolved:
            self._commit(obj, creates, resolved)
        return resolved

    def _created(
        self,
        obj: str,
        creates: list[Pending],
        plain: list[Pending],
        results: Sequence[WriteResult],
        resolved: list[str],
    ) -> None:
        """The answer of a batch's plain creates on its records (a refused one mended and sent once more), then
        the batch's creates committed with the intents they resolve."""
        failures = self._settle_creates(obj, plain, results)
        for item, _res in failures:
            self._thaw(item)
        again = [item for item, res in failures if self._mend(obj, item, res)]
        if again:
            resolved.extend(self._intent(obj, again, suffix="again"))
            self._retry(obj, again, "create")
        self._commit(obj, creates, resolved)

    def _freeze(self, obj: str, items: list[Pending]) -> None:
        """Creates whose Bulk job is at the org, held small until its results come (two batches are then held
        beside the one being decided): the proof's expectation made now (their values are final unless the org
        refuses them), their values and write kept as bytes for a refused record's mend (`_thaw`)."""
        for item in items:
            write = item.decision.write
            try:
                frozen = marshal.dumps((item.values, None if write is item.values else write))
            except ValueError:  # a value marshal does not take: held as it is
                continue
            if item.exact:
                item.expected = self._expectation(obj, item.source_id, item.values)
            item.frozen = frozen
            item.values = {}
            item.decision = rd.with_write(item.decision, {})

    @staticmethod
    def _thaw(item: Pending) -> None:
        """A frozen record's values and write back (`_freeze`)."""
        if item.frozen:
            values, write = marshal.loads(item.frozen)
            item.values = values
            item.decision = rd.with_write(item.decision, values if write is None else write)
            item.frozen, item.expected = b"", None

    def _bind_deferred(self, obj: str, creates: list[Pending]) -> None:
        """Deferred references of these creates to records created by an earlier batch (written while this one was
        decided): sent with the create, through the Id map, instead of patched by the second pass."""
        marked = self.to_patch.get(obj)
        if not marked:
            return
        for item in creates:
            refs = marked.get(item.source_id)
            if not refs:
                continue
            for name, ref in list(refs.items()):
                new = self.id_map.get(ref)
                if new is None or self.done.get(ref, (0, ""))[0] != rd.State.CREATED.value:
                    continue
                item.decision.write[name] = new  # (the same dict as the values when they were written whole)
                item.values[name] = new
                del refs[name]
            if not refs:
                del marked[item.source_id]

    def _bulk(self) -> int:
        return int(self.run.tuning.bulk_threshold)

    def _send(self, obj: str, operation: str, records: list[dict[str, Any]]) -> list[WriteResult]:
        if len(records) > self._bulk():
            return self._bulk_send(obj, "insert" if operation == "create" else operation, records, "")
        if operation == "create":
            return self.sf.create(obj, records)
        return self.sf.update(obj, records)

    def _bulk_send(self, obj: str, operation: str, records: list[dict[str, Any]], external: str) -> list[WriteResult]:
        return self.sf.bulk_ingest(obj, operation, records, external_id=external)

    def _settle_creates(
        self, obj: str, creates: list[Pending], results: Sequence[WriteResult], *, upsert: bool = False
    ) -> list[tuple[Pending, WriteResult]]:
        """The results of creates on their records; returns the refused ones with their answer."""
        refused: list[tuple[Pending, WriteResult]] = []
        for item, res in zip(creates, results, strict=True):
            if res.success and res.id:
                item.target_id = res.id
                item.state = rd.State.CREATED if (res.created or not upsert) else rd.State.UPDATED
            else:
                self._fail(item, res)
                refused.append((item, res))
        return refused

    def _mend(self, obj: str, item: Pending, res: WriteResult) -> bool:
        """Whether a refused write can be sent once more, changed as Salesforce's answer says (and changes it):
        INACTIVE_OWNER_OR_USER -> the owner mapped, the default owner or the restoring user; a lookup to a
        record that is deleted or not in the target (ENTITY_IS_DELETED, INVALID_CROSS_REFERENCE_KEY naming
        optional reference fields) -> left empty. Noted on the record."""
        write = dict(item.decision.write)
        info = self.infos[obj]
        if res.code == "INACTIVE_OWNER_OR_USER" and "OwnerId" in write:
            old = str(write["OwnerId"])
            new = self.spec.owner_map.get(old) or self._fallback_owner()
            if new == old:
                return False
            write["OwnerId"] = new
            item.values = {**item.values, "OwnerId": new}
            self.owners[item.source_id] = new  # what the proof expects
            item.notes.append(_owner_note(new))
        elif res.code in ("ENTITY_IS_DELETED", "INVALID_CROSS_REFERENCE_KEY") and res.fields:
            named = [info.field(f) for f in res.fields]
            if not all(f is not None and f.sf_type == "reference" and f.nillable and f.name in write for f in named):
                return False
            for f in named:
                assert f is not None
                del write[f.name]
                item.values = {k: v for k, v in item.values.items() if k != f.name}
                item.exact = False
                self.dropped.setdefault(item.source_id, set()).add(f.name)
                item.notes.append(f"{f.name}:{_LEFT_EMPTY}{res.code}), left empty")
        else:
            return False
        item.decision = rd.Decision(
            item.source_id,
            item.target_id,
            item.decision.state,
            write,
            item.decision.undelete,
            item.decision.changed_fields,
            item.decision.note,
        )
        item.code, item.message = "", ""
        return True

    def _retry(self, obj: str, items: list[Pending], operation: str) -> None:
        """The second and last try of writes `_mend` changed (Bulk above the threshold, as the first)."""
        if operation == "create":
            for item in items:
                item.state = None
            results = self._send(obj, "create", [i.decision.write for i in items])
            self._settle_creates(obj, items, results)
            return
        results = self._send(obj, "update", [{"Id": i.target_id, **i.decision.write} for i in items])
        for item, res in zip(items, results, strict=True):
            if not res.success:
                self._fail(item, res)

    @staticmethod
    def _fail(item: Pending, res: WriteResult) -> None:
        item.state, item.code, item.message = rd.State.FAILED, res.code or "FAILED", res.message

    def _intent(self, obj: str, creates: list[Pending], suffix: str = "") -> list[str]:
        """The intents of a batch of creates (1,000 records each), committed before the call: a resumed attempt
        finds what they created instead of creating again."""
        self._settle()  # what was decided before is stored before any create is sent
        sent = Timestamp()
        sent.FromDatetime(self.run.client.org_now())
        keys: list[str] = []
        self._intents_made += 1
        for n, i in enumerate(range(0, len(creates), PER_CALL)):
            # the chunk that follows the stored ones, and this attempt's count (two batches' intents may be open)
            key = f"{obj}:create:{self.seq + 1}.{self._intents_made}" + (f":{suffix}" if suffix else "")
            key += f":{n}" if n else ""
            self.run.storage.record_restore_intent(
                spb.RecordRestoreIntentRequest(
                    org_id=self.target_org,
                    session_id=self.run.spec.session_id,
                    job_id=self.run.spec.job_id,
                    batch_key=key,
                    object_name=obj,
                    source_ids=[c.source_id for c in creates[i : i + PER_CALL]],
                    sent_at=sent,
                )
            )
            keys.append(key)
        return keys

    # ------------------------------------------------------------------ outcomes
    def _commit(self, obj: str, items: list[Pending], resolved: list[str]) -> None:
        self._put(obj, self._outcomes(obj, items), resolved)

    def _outcomes(self, obj: str, items: list[Pending]) -> Iterator[rpb.RecordOutcome]:
        """The items' outcomes, each noted as it is made (counts, the Id map, the proof's expectation): made as
        they are sent, a chunk at a time."""
        by_state: dict[str, int] = {}
        try:
            yield from self._each_outcome(obj, items, by_state)
        finally:
            self._count_states(obj, by_state)

    def _each_outcome(self, obj: str, items: list[Pending], by_state: dict[str, int]) -> Iterator[rpb.RecordOutcome]:
        for item in items:
            state = item.state or rd.State.FAILED
            if state == rd.State.FAILED and not item.code:
                item.code, item.message = "NOT_WRITTEN", "the record was not written"
            name = STATE_COUNTER[state]
            by_state[name] = by_state.get(name, 0) + 1
            if state == rd.State.FAILED:
                self.failure_codes[item.code] = self.failure_codes.get(item.code, 0) + 1
            target = item.target_id or ""
            if self.dry_run and state == rd.State.CREATED:
                target = ""
            self.done[item.source_id] = (state.value, target)
            if state == rd.State.CREATED and target:
                self.id_map[item.source_id] = target
            if state != rd.State.FAILED and item.exact and not self.dry_run:
                if item.expected is not None:  # frozen, unchanged since
                    self.expect[item.source_id] = item.expected
                else:
                    self._expect(obj, item.source_id, item.values)
            yield rpb.RecordOutcome(
                object_name=obj,
                source_id=item.source_id,
                target_id=target,
                state=state.value,  # type: ignore[arg-type]
                error_code=item.code,
                message=item.message[:500],
                # a Created record was written whole: its fields are not listed (a fifth of a restore's outcomes'
                # cost, here and in storage)
                changed_fields=list(item.decision.changed_fields) if state != rd.State.CREATED else (),
                note="; ".join(item.notes)[:500],
            )

    def _put(self, obj: str, outcomes: Iterable[rpb.RecordOutcome], resolved: list[str], *, files: int = 0) -> None:
        """Outcomes committed in chunks of at most 1,000 (storage's limit); the last one carries the intents they
        resolve, the files and the calls (a crash between two leaves the intents open: the next attempt finds
        the rest)."""
        for piece, last in _pieces(outcomes, PER_CALL):
            writes = int(self.sf.write_calls)
            api = int(self.run.client.api_calls)
            seq = self.seq + 1
            request = spb.PutRestoreOutcomesRequest(
                source_org_id=self.source_org,
                target_org_id=self.target_org,
                session_id=self.run.spec.session_id,
                job_id=self.run.spec.job_id,
                chunk_seq=seq,
                outcomes=piece,
                resolved_intents=resolved if last else [],
                dry_run=self.dry_run,
                write_calls=writes - self._writes_seen,
                api_calls=api - self._api_seen,
                files=files if last else 0,
            )
            if obj != "files":
                self._count(obj, RestoreCounts(write_calls=writes - self._writes_seen))
            self._writes_seen, self._api_seen = writes, api
            self.seq = seq
            self._store_outcomes(seq, request, len(piece))
        self.run.control.check()  # a stop is obeyed once what was written is recorded (`_settle` on the way out)

    def _store_outcomes(self, seq: int, request: spb.PutRestoreOutcomesRequest, received: int) -> None:
        """A chunk of outcomes stored by a thread of its own, chunks in order, while the job decides its next batch
        (storage and its database work beside the job); `_settle` waits for them, before any create is sent."""

        def store() -> None:
            result = self.run.storage.put_restore_outcomes(request)
            self.run.committed(seq, result, received=received)

        if self._outcomes_pipe is None:
            self._outcomes_pipe = ThreadPoolExecutor(max_workers=1, thread_name_prefix="restore-outcomes")
        self._in_flight.append(self._outcomes_pipe.submit(contextvars.copy_context().run, store))
        while len(self._in_flight) > IN_FLIGHT:
            self._in_flight.pop(0).result()

    def _settle(self) -> None:
        """Every chunk of outcomes sent is stored (or its error raised here)."""
        while self._in_flight:
            self._in_flight.pop(0).result()

    # ------------------------------------------------------------------ files
    def _files(self) -> None:
        """The bodies of the selected records' files (H6's restore_files), their outcomes one more chunk."""
        from services.jobrunner.restore_files import restore_files

        items: list[tuple[str, str, str, int]] = [
            (obj, sid, tid, state)
            for obj, ids in self.selection.items()
            for sid in ids
            for state, tid in [self.done.get(sid, (0, ""))]
        ]
        # an item an earlier attempt restored comes with its stored outcome (restore_files skips it)
        items.extend(
            (obj, sid, self.done.get(sid, (0, ""))[1], self.done.get(sid, (0, ""))[0])
            for obj, sid in dict.fromkeys(self.file_items)
        )
        if not any(obj in FILE_OBJECTS for obj, *_rest in items):
            return
        self.run.control.check()
        result = restore_files(
            self.run, self.sf, self.run.storage, items, dry_run=self.dry_run, binned_at_start=self.binned_at_start
        )
        self.warnings.extend(result.warnings)
        for c in result.counts():  # every count restore_files keeps, Undeleted files too
            self._count(c.object_name, events.restore_counts_from_pb(c, named=False))
        for o in result.outcomes:
            self.done[o.source_id] = (int(o.state), o.target_id)
        if result.outcomes or result.resolved_intents:
            self._put("files", list(result.outcomes), list(result.resolved_intents), files=result.files)

    # ------------------------------------------------------------------ second pass
    def _patch(self) -> None:
        """References deferred to break cycles and self-lookups, written once every record exists."""
        for obj, names in self.deferred.items():
            if obj not in self._patched:
                self._patch_object(obj, names)

    def _self_only(self, obj: str) -> bool:
        """Whether the object's deferred references are self-lookups only: its second pass needs none but its own
        records, and can be sent as soon as they are all restored."""
        info = self.infos[obj]
        names = self.deferred.get(obj) or set()
        return bool(names) and all(
            info.fields[n].reference_to and set(info.fields[n].reference_to) <= {obj} for n in names
        )

    def _patch_object(self, obj: str, names: set[str]) -> None:
        """The second pass of one object: its deferred references written now that the records exist."""
        self._patched.add(obj)
        if obj not in self.selection or not names:
            return
        info = self.infos[obj]
        wanted: dict[str, dict[str, str]] = dict(self.to_patch.get(obj, {}))
        earlier = [s for s in self.selection[obj] if s in self.earlier and s not in wanted and self._kept(s)]
        if earlier:
            wanted.update(self._earlier_patches(obj, names, earlier))
        records: list[dict[str, Any]] = []
        for sid, refs in wanted.items():
            state, tid = self.done.get(sid, (0, ""))
            tid = tid or self._target_of(sid) or ""
            if state in (0, rd.State.FAILED.value) or not tid:
                continue
            rewritten, _reasons = rd.rewrite_references(
                dict(refs), info, self.id_map, self._present, prefixes=self.prefixes
            )
            patch = {n: v for n, v in rewritten.items() if n in refs}
            if patch:
                records.append({"Id": tid, **patch})
        if not records:
            return
        results = self._send(obj, "update", records)
        failed = [r for r in results if not r.success]
        if failed:
            self.warnings.append(f"{obj}: {len(failed)} reference(s) could not be patched ({failed[0].code})")

    def _kept(self, sid: str) -> bool:
        """Whether the record is in the target after its decision (created, updated, undeleted or skipped)."""
        return self.done.get(sid, (0, ""))[0] not in (0, rd.State.FAILED.value)

    def _earlier_patches(self, obj: str, names: set[str], sids: list[str]) -> dict[str, dict[str, str]]:
        """The deferred references of records an earlier attempt decided, derived again rather than remembered
        (that attempt may have ended before its second pass, or during it): the backup's reference of each
        deferred field, through the Id map as it is now, where the target does not hold it yet. What a second
        pass of the earlier attempt already wrote is not written again."""
        info = self.infos[obj]
        wanted: dict[str, dict[str, str]] = {}
        for sid, values in self._backup(obj, sids):
            refs = {n: values[n] for n in names if isinstance(values.get(n), str)}
            if refs:
                wanted[sid] = refs
        if not wanted:
            return {}
        targets = {sid: self.done[sid][1] or self._target_of(sid) or "" for sid in wanted}
        current = self._target_rows(obj, sorted(names), [t for t in targets.values() if t])
        out: dict[str, dict[str, str]] = {}
        for sid, refs in wanted.items():
            row = current.get(targets[sid])
            if row is None or row.get("IsDeleted"):
                continue  # not there to patch: the proof says so
            mapped, _reasons = rd.rewrite_references(
                dict(refs), info, self.id_map, self._present, prefixes=self.prefixes
            )
            differ = {
                n: r for n, r in refs.items() if n in mapped and not rd.same(mapped[n], row.get(n), info.fields.get(n))
            }
            if differ:
                out[sid] = differ
        return out

    # ------------------------------------------------------------------ the proof
    def _expect(self, obj: str, sid: str, values: dict[str, Any]) -> None:
        """The proof's expectation of a record this attempt restored (`_expectation`)."""
        self.expect[sid] = self._expectation(obj, sid, values)

    def _expectation(self, obj: str, sid: str, values: dict[str, Any]) -> bytes:
        """The digest of a record's values on the restored fields it holds a value of (any, with restore_empty), but
        the references the second pass writes, and the mask of those fields, in one pass (`_packed`)."""
        deferred = self.to_patch.get(obj, {}).get(sid, {})
        restore_empty = bool(self.spec.restore_empty)
        parts: list[object] = []
        mask = 0
        bit = 1
        for f, fi, as_is, number in self._digest_plan(obj):
            value = values.get(f)
            if (restore_empty or value not in _EMPTY) and f not in deferred:
                mask |= bit
                as_it_is = as_is and (value is None or type(value) is str)
                parts.append(value or None if as_it_is else _form(value, fi, number))
            bit <<= 1
        return _packed(_parts_digest(parts), mask)

    def _digest_plan(self, obj: str) -> list[tuple[str, rd.FieldInfo | None, bool, bool]]:
        """The object's restored fields with how the digest takes each: (name, field, as it is, a number)."""
        plan = self._digest_plans.get(obj)
        if plan is None:
            info = self.infos[obj]
            plan = self._digest_plans[obj] = [
                (f, fi, fi is not None and fi.sf_type in _AS_IS, fi is not None and fi.sf_type in rd.NUMBER_TYPES)
                for f in self._fields(obj)
                for fi in [info.fields.get(f)]
            ]
        return plan

    def _digest(self, obj: str, mask: int, values: dict[str, Any]) -> bytes:
        """A digest of values on the restored fields of `mask`: text and Ids as they are (both sides are
        Salesforce's 18-character form), numbers by value, other types through the domain's equality. Equal
        digests mean equal values; a difference the domain would forgive (1 and 1.0 in a text field) only sends
        the row to the backup's comparison."""
        parts: list[object] = []
        for f, fi, as_is, number in self._digest_plan(obj):
            if not mask & 1:
                mask >>= 1
                continue
            mask >>= 1
            value = values.get(f)
            parts.append(value or None if as_is and (value is None or type(value) is str) else _form(value, fi, number))
        return _parts_digest(parts)

    def _matches(self, obj: str, sid: str, row: dict[str, Any]) -> bool:
        """A read-back row equal to what the restore wrote (or found equal), without reading the backup again;
        False: not known here (the backup decides)."""
        known = self.expect.get(sid)
        if known is None or row.get("IsDeleted"):
            return False
        info = self.infos[obj]
        digest, mask = _unpacked(known)
        if self._digest(obj, mask, row) != digest:
            return False
        refs = self.to_patch.get(obj, {}).get(sid)
        if refs:
            mapped, reasons = rd.rewrite_references(
                dict(refs), info, self.id_map, self._present, prefixes=self.prefixes
            )
            if reasons or any(not rd.same(mapped.get(f), row.get(f), info.fields.get(f)) for f in refs):
                return False
        return True

    def _final(self, obj: str) -> bool:
        """Whether an object just restored is final once its own second pass is written (none, or sent now: its
        deferred references are self-lookups only), no later step writing it (files are restored at the end)."""
        return obj not in FILE_OBJECTS and (not self.deferred.get(obj) or obj in self._patched)

    def _verify(self) -> None:
        """The restored scope read back from the target and compared with the backup (`_prove`), for the objects
        not proved beside the restore of the next ones."""
        for obj in self.selection:
            if obj not in self._proved:
                self._proved.add(obj)
                self._prove(obj)
        self._proof.done = True
        self._proof.verified = self._proof.differing == 0
        self.verification = self._proof

    def _prove(self, obj: str) -> None:
        """One object's restored records read back from the target (by Id, or one Bulk queryAll of the object
        streamed in pieces for a large scope) and compared with the backup's values on the restored fields: a record
        equal to what this attempt wrote counts at once; any other (different, or decided by an earlier attempt) is
        compared with the backup read again, which names the differing fields. One object at a time (the counts
        of `_proof` are not shared between threads). The object's expectations are let go once it is proved."""
        ids = self.selection.get(obj) or []
        restored = [s for s in ids if self.done.get(s, (0, ""))[0] not in (0, rd.State.FAILED.value)]
        try:
            self._prove_restored(obj, restored)
        finally:
            for sid in ids:
                self.expect.pop(sid, None)

    def _prove_restored(self, obj: str, restored: list[str]) -> None:
        if not restored:
            return
        fields = self._fields(obj)
        targets = ((s, self.done[s][1] or self._target_of(s) or "") for s in restored)
        if len(restored) <= self.run.tuning.bulk_threshold:
            small = dict(targets)
            self._check(obj, fields, small, self._target_rows(obj, fields, [t for t in small.values() if t]))
            return
        # target Id -> source Id, each let go once its row is read (what is left was not found); a record without
        # a target Id, or whose target Id another record took, is compared as not found
        reverse: dict[str, str] = {}
        gone: dict[str, str] = {}
        for sid, tid in targets:
            if not tid:
                gone[sid] = tid
                continue
            taken = reverse.get(tid)
            if taken is not None:
                gone[taken] = tid
            reverse[tid] = sid
        info = self.infos[obj]
        select = list(dict.fromkeys([*fields, *self._deleted_field(obj)]))
        types = {f: info.fields[f].sf_type for f in select if f in info.fields}
        piece: dict[str, dict[str, Any]] = {}
        ids: dict[str, str] = {}  # source Id -> target Id of the rows in `piece`
        for row in self.sf.query_object(obj, select, types):
            tid = str(row.get("Id"))
            found = reverse.pop(tid, None)
            if found is None:
                continue
            if self._matches(obj, found, row):
                self._proof.matching += 1
                continue
            piece[tid] = row
            ids[found] = tid
            if len(piece) >= READ_BATCH * 5:
                self._compare(obj, fields, ids, piece)
                piece, ids = {}, {}
        if piece:
            self._compare(obj, fields, ids, piece)
        gone.update((sid, tid) for tid, sid in reverse.items())
        if gone:
            self._compare(obj, fields, gone, {})

    def _check(self, obj: str, fields: list[str], targets: dict[str, str], current: dict[str, dict[str, Any]]) -> None:
        rest: dict[str, str] = {}
        for sid, tid in targets.items():
            row = current.get(tid)
            if row is not None and self._matches(obj, sid, row):
                self._proof.matching += 1
            else:
                rest[sid] = tid
        if rest:
            self._compare(obj, fields, rest, current)

    def _compare(
        self, obj: str, fields: list[str], targets: dict[str, str], current: dict[str, dict[str, Any]]
    ) -> None:
        v = self._proof
        info = self.infos[obj]
        owner_map = dict(self.spec.owner_map)
        for sid, values in self._backup(obj, list(targets)):
            self.run.control.check()
            owner = self.owners.get(sid) or owner_map.get(str(values.get("OwnerId")))
            if owner and "OwnerId" in values:
                values = {**values, "OwnerId": owner}
            expected, _reasons = rd.rewrite_references(values, info, self.id_map, self._present, prefixes=self.prefixes)
            for name in self.dropped.get(sid, ()):  # left empty on Salesforce's refusal (noted on the outcome)
                expected.pop(name, None)
            row = current.get(targets.get(sid) or "")
            if row is None or row.get("IsDeleted"):
                v.differing += 1
                if len(v.samples) < SAMPLES:
                    v.samples.append(rd.sample_line(obj, sid, [], "not in the target org after the restore"))
                continue
            diff = rd.differences(expected, row, fields, info=info, restore_empty=bool(self.spec.restore_empty))
            if diff:
                v.differing += 1
                if len(v.samples) < SAMPLES:
                    left = set(diff) <= self.dropped.get(sid, set())
                    reason = "left empty: the referenced record is not in the target org" if left else "differs"
                    v.samples.append(rd.sample_line(obj, sid, diff, reason))
            else:
                v.matching += 1
