"""Record writes as the REST API and the admin API make them, and admin bulk changes (update, create)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import itertools
import json
import random
from collections.abc import Callable, Iterable
from typing import Any

from sforg.admin_calls import RecordUpdate
from sforg.clock import parse_datetime, stamp
from sforg.ids import counter_of, is_valid, to18
from sforg.org.base import DAY, OrgError
from sforg.org.validation import AUDIT_FIELDS, Validation, changed_references, id18
from sforg.schema import FieldDef, ObjectDef

_SKIP = object()  # a value stored elsewhere (a file body)


class Records(Validation):
    # ------------------------------------------------------------ record writes (REST and admin)
    def _coerce(self, o: ObjectDef, values: dict[str, Any], creating: bool, admin: bool = False) -> dict[str, Any]:
        hidden = self.hidden().get(o.name, set())
        audit_ok = creating and bool(self.settings.get("audit_fields_on_insert"))
        return _coerced(
            values,
            {},
            lambda key: _column(o, key, hidden, creating=creating, admin=admin, audit_ok=audit_ok),
            lambda f, v: self._typed(f, v, admin),
            required=not admin,
        )

    def _typed(self, f: FieldDef, v: Any, admin: bool) -> Any:
        """A value as stored, or an error as Salesforce words it."""
        t = f.type
        try:
            if t == "boolean":
                if isinstance(v, str) and v.lower() not in ("true", "false", "1", "0"):
                    raise ValueError(v)
                return 1 if v in (True, "true", "True", "TRUE", 1, "1") else 0
            if t == "datetime":
                return stamp(parse_datetime(str(v)).timestamp())
            if t == "date":
                text = str(v)[:10]
                dt.date.fromisoformat(text)
                return text
            if t == "int":
                if isinstance(v, float) and not v.is_integer():
                    raise ValueError(v)
                return int(float(v)) if isinstance(v, str) else int(v)
            if t in ("double", "currency", "percent"):
                if isinstance(v, bool):
                    raise ValueError(v)
                return float(v)
        except (TypeError, ValueError) as exc:
            raise OrgError(
                400, "INVALID_TYPE_ON_FIELD_IN_RECORD", f"{f.label}: value not of required type: {v}", [f.name]
            ) from exc
        if t in ("reference", "id"):
            rid = id18(str(v))
            if rid is None:
                raise OrgError(400, "MALFORMED_ID", f"{f.label}: id value of incorrect type: {v}", [f.name])
            return rid
        if t == "base64":
            return _SKIP
        v = str(v)
        if t in ("string", "email", "phone", "url", "picklist", "textarea", "combobox") and len(v) > f.length:
            raise OrgError(
                400, "STRING_TOO_LONG", f"{f.label}: data value too large: {v[:40]} (max length={f.length})", [f.name]
            )
        if not admin and f.custom and t in ("picklist", "multipicklist") and f.picklist:
            for item in v.split(";") if t == "multipicklist" else [v]:
                if item not in f.picklist:
                    raise OrgError(
                        400,
                        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                        f"{f.label}: bad value for restricted picklist field: {item}",
                        [f.name],
                    )
        return v

    def create_record(self, obj_name: str, values: dict[str, Any], admin: bool = False, late: bool = True) -> str:
        o = self.obj(obj_name)
        rid, row = self._create_row(o, values, admin, None)
        if late and self.settings["late_commit_delay"] > 0:
            self._defer(o.name, rid, "insert", row)
        else:
            self.store.insert_many(o.name, list(row), [list(row.values())])
        return rid

    def _create_row(
        self, o: ObjectDef, values: dict[str, Any], admin: bool, batch: CreateBatch | None
    ) -> tuple[str, dict[str, Any]]:
        """The new record's Id and stored row, every check of a create made (or an OrgError)."""
        data = batch.coerce(values) if batch else self._coerce(o, values, creating=True, admin=admin)
        blob_data = None
        if o.blob_field and o.blob_field in {k for k in values}:
            try:
                blob_data = base64.b64decode(values[o.blob_field] or "", validate=True)
            except (ValueError, TypeError) as exc:
                msg = f"{o.blob_field}: value not of required type"
                raise OrgError(400, "INVALID_TYPE_ON_FIELD_IN_RECORD", msg, [o.blob_field]) from exc
        required = batch.required if batch else _required(o)
        missing = [name for name in required if data.get(name) is None]
        if o.blob_field and blob_data is None and not admin:
            bf = o.field(o.blob_field)
            if bf is not None and not bf.nillable:
                missing.append(o.blob_field)
        if missing:
            raise OrgError(
                400, "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]", missing
            )
        if not admin:
            if batch is None:
                self.check_write(o, data, None, {})
            else:
                batch.check(data)
        now = batch.now if batch else self._stamp_now()
        rid = self.new_id(o, save=batch is None)
        user = self.identity["user_id"]
        sysvals: dict[str, Any] = {
            "Id": rid,
            "CreatedDate": now,
            "CreatedById": user,
            "LastModifiedDate": now,
            "LastModifiedById": user,
            "SystemModstamp": now,
        }
        shape = batch.shape if batch else _Shape(o)
        if shape.deleted:
            sysvals["IsDeleted"] = 0
        if shape.owner and "OwnerId" not in data:
            sysvals["OwnerId"] = user
        for name in shape.auto_numbers:
            if not data.get(name):
                # numbered as the generator numbers them (CaseNumber 00001234): the record's Id counter
                sysvals[name] = f"{counter_of(rid):08d}"
        for name in shape.booleans:
            if name not in data and name not in sysvals:
                sysvals[name] = 0
        row = {**sysvals, **{k: v for k, v in data.items() if v is not None or k not in sysvals}}
        if shape.full_name:
            row["Name"] = " ".join(p for p in (row.get("FirstName"), row.get("LastName")) if p)
        if blob_data is not None:
            row["_blob"] = self.blobs.put(blob_data)
            row["_sha256"] = hashlib.sha256(blob_data).hexdigest()
            size_field = "ContentSize" if o.field("ContentSize") else "BodyLength"
            if o.field(size_field):
                row[size_field] = len(blob_data)
            if o.name == "ContentVersion":
                row["Checksum"] = hashlib.md5(blob_data, usedforsecurity=False).hexdigest()
        return rid, row

    def update_batch(self, obj_name: str) -> UpdateBatch:
        """API updates of one object made as `update_record` makes them, written together (the caller holds the
        store's transaction, calls `load` with a chunk's Ids, `update` per record and `flush` at the chunk's
        end). Only for objects other than User, without late commits."""
        return UpdateBatch(self, self.obj(obj_name))

    def create_batch(self, obj_name: str) -> CreateBatch:
        """API creates of one object made as many `create_record` calls would make them, written together: the
        caller holds the store's transaction, calls `create` per record and `flush` at its end (and before
        reading the object's table itself). Only for objects without files and without late commits."""
        return CreateBatch(self, self.obj(obj_name))

    def upsert_record(self, obj_name: str, ext_field: str, value: Any, values: dict[str, Any]) -> tuple[str, bool]:
        """Upsert on an external-Id field (or Id): update the one live match, else create. (Id, created)."""
        o = self.obj(obj_name)
        f = o.field(ext_field)
        if f is None or not (f.external_id or f.id_lookup):
            raise OrgError(
                400,
                "INVALID_FIELD",
                f"Field name provided, {ext_field} is not an External ID or indexed field for {o.name}",
            )
        if value in (None, ""):
            if f.name != "Id":
                raise OrgError(
                    400,
                    "REQUIRED_FIELD_MISSING",
                    f"Required fields are missing: [{f.name}]",
                    [f.name],
                )
            return self.create_record(o.name, values), True
        if f.name == "Id":
            if not is_valid(str(value)):
                raise OrgError(400, "MALFORMED_ID", f"malformed id {value}", ["Id"])
            self.update_record(o.name, to18(str(value)), values)
            return to18(str(value)), False
        where = f'WHERE "{f.name}"=?' + (' AND "IsDeleted"=0' if o.field("IsDeleted") else "")
        if f.unique:
            self._index(o, f)
        rows = [r[0] for r in itertools.islice(self.store.scan(o.name, ["Id"], where, (str(value),)), 2)]
        if len(rows) > 1:
            raise OrgError(
                300,
                "DUPLICATE_EXTERNAL_ID",
                f"{f.label}: more than one record found for external id field: {rows}",
                [f.name],
            )
        if rows:
            self.update_record(o.name, rows[0], values)
            return rows[0], False
        return self.create_record(o.name, {**values, f.name: value}), True

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
        current = self.get_row(o, rid)
        if not admin:
            values = {k: v for k, v in values.items() if not (k.lower() == "id" and str(v)[:15] == rid[:15])}
        data = self._coerce(o, values, creating=False, admin=admin)
        if not admin:
            self.check_write(o, data, current["Id"], current)
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

    def _change_values(
        self, o: ObjectDef, rng: random.Random, fields: list[str] | None, current: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """New values for an admin update: given fields, or a sensible updateable field of the object; a checkbox
        or a picklist always moves off its `current` value (an update that changes nothing is no change)."""
        now = current or {}
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
        if not fields and not candidates:  # field history, feeds: Salesforce writes them, nobody updates them
            raise OrgError(400, "INVALID_TYPE_FOR_OPERATION", f"entity type {o.name} does not support update")
        chosen = [o.field(n) for n in fields] if fields else [candidates[int(rng.random() * len(candidates))]]
        out: dict[str, Any] = {}
        for f in chosen:
            if f is None:
                continue
            t = f.type
            if t == "boolean":
                out[f.name] = rng.random() < 0.5 if current is None else not now.get(f.name)
            elif t in ("int",):
                out[f.name] = int(rng.random() * 1000)
            elif t in ("double", "currency", "percent"):
                out[f.name] = round(rng.random() * 100, 2)
            elif t == "date":
                out[f.name] = (dt.date(2024, 1, 1) + dt.timedelta(days=int(rng.random() * 700))).isoformat()
            elif t == "datetime":
                out[f.name] = stamp(self.now() - rng.random() * DAY)
            elif t in ("picklist", "multipicklist"):
                i = int(rng.random() * len(f.picklist))
                same = f.picklist[i] == now.get(f.name)
                out[f.name] = f.picklist[(i + 1) % len(f.picklist) if same else i]
            elif t == "email":
                out[f.name] = f"changed{int(rng.random() * 10**6)}@example.com"
            else:
                out[f.name] = f"changed {int(rng.random() * 10**6)}"[: f.length or 255]
        return out

    def _update_records(self, obj: str, change: RecordUpdate) -> dict[str, Any]:
        o = self.obj(obj)
        targets = self._pick_ids(o.name, change.n, change.fraction, change.ids, seed=change.seed)
        rng = random.Random(change.seed if change.seed is not None else len(targets))
        modstamp = self._stamp_now() if change.same_modstamp else None
        for rid in targets:
            self.update_record(
                o.name,
                rid,
                change.values
                if change.values is not None
                else self._change_values(o, rng, change.fields, self.store.get(o.name, rid)),
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

    # Admin changes run in one transaction each: thousands of rows change in one commit, as a data load does.
    def update_records(self, obj: str, **kw: Any) -> dict[str, Any]:
        """Update records of obj as an admin_calls.RecordUpdate of kw says."""
        with self.store.transaction():
            return self._update_records(obj, RecordUpdate(**kw))

    def create_records(self, obj: str, n: int = 1, values: dict[str, Any] | None = None) -> dict[str, Any]:
        with self.store.transaction():
            return self._create_records(obj, n, values)


_PLAIN_TEXT = ("string", "email", "phone", "url", "textarea", "combobox")


def _column(
    o: ObjectDef, key: str, hidden: set[str], *, creating: bool, admin: bool, audit_ok: bool
) -> tuple[FieldDef, bool, bool]:
    """The field a written key names, whether this write may set it, and whether its value is plain text (a string
    within its length is stored as given); INVALID_FIELD for no such (visible) field, and an Id given to an API
    insert is refused."""
    f = o.field(key)
    if f is None or f.name.lower() in hidden:
        raise OrgError(400, "INVALID_FIELD", f"No such column '{key}' on sobject of type {o.name}")
    if not admin and f.name == "Id" and creating:
        raise OrgError(400, "INVALID_FIELD_FOR_INSERT_UPDATE", "cannot specify Id in an insert call", ["Id"])
    writable = admin or (f.createable if creating else f.updateable) or (audit_ok and f.name in AUDIT_FIELDS)
    plain = f.type in _PLAIN_TEXT or (f.type == "picklist" and not (f.custom and f.picklist))
    return f, writable and f.stored, plain


def _coerced(
    values: dict[str, Any],
    columns: dict[str, tuple[FieldDef, bool, bool]],
    column: Callable[[str], tuple[FieldDef, bool, bool]],
    typed: Callable[[FieldDef, Any], Any],
    required: bool,
) -> dict[str, Any]:
    """A write's values as stored, by field name (a base64 body left out: it is stored elsewhere); the fields it
    may not set refused together. columns caches column's answers (a batch keeps it across its records)."""
    out: dict[str, Any] = {}
    refused: list[str] = []
    for key, v in values.items():
        plan = columns.get(key)
        if plan is None:
            if key == "attributes":
                continue
            plan = columns[key] = column(key)
        f, writable, plain = plan
        if not writable:
            refused.append(f.name)
            continue
        if v is None:
            v = _null(f, required)
        elif not (plain and type(v) is str and len(v) <= f.length):  # else as typed returns it
            v = typed(f, v)
            if v is _SKIP:
                continue
        out[f.name] = v
    if refused:
        raise _not_writable(refused)
    return out


def _null(f: FieldDef, required: bool) -> Any:
    """A null written to f as stored: false for a checkbox; REQUIRED_FIELD_MISSING for a field that cannot be
    null when required (API writes), else None."""
    if f.type == "boolean":
        return 0
    if required and not f.nillable:
        raise OrgError(400, "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{f.name}]", [f.name])
    return None


def _not_writable(refused: list[str]) -> OrgError:
    """INVALID_FIELD_FOR_INSERT_UPDATE naming every field the write may not set, together, as Salesforce does."""
    return OrgError(
        400,
        "INVALID_FIELD_FOR_INSERT_UPDATE",
        f"Unable to create/update fields: {', '.join(refused)}. Please check the security settings of this field"
        " and verify that it is read/write for your profile or permission set.",
        refused,
    )


def _required(o: ObjectDef) -> list[str]:
    """Fields a create must give a value (REQUIRED_FIELD_MISSING otherwise)."""
    return [
        f.name
        for f in o.fields
        if f.stored
        and not f.nillable
        and not f.defaulted
        and f.type != "base64"
        and f.createable
        and not (o.name in ("Contact", "Lead", "User") and f.name == "Name")
    ]


class _Shape:
    """What a created record's row gets beside its values, by the object's fields (looked up once per batch)."""

    def __init__(self, o: ObjectDef) -> None:
        self.deleted = o.field("IsDeleted") is not None
        self.owner = o.field("OwnerId") is not None
        self.auto_numbers = [f.name for f in o.fields if f.auto_number and f.stored]
        self.booleans = [f.name for f in o.fields if f.stored and f.type == "boolean"]
        # a person's Name: its first and last names
        self.full_name = o.name in ("Contact", "Lead", "User") and bool(o.field("Name") and o.field("LastName"))


class _References:
    """A batch's reference checks: each (field, value) checked once (its error kept), the chunk's referenced rows
    read at once beforehand (`prefetch`) where the caller knows them."""

    refs: dict[tuple[str, str], OrgError | None]
    known: dict[str, tuple[Any, ...] | None]

    def prefetch(self, org: Records, values: Iterable[str]) -> None:
        """The rows these references name, as they are stored now (for `reference`)."""
        wanted = {rid for rid in map(id18, values) if rid is not None}
        self.known.update(org.reference_rows(v for v in wanted if v not in self.known))

    def reference(self, org: Records, o: ObjectDef, f: FieldDef, value: str) -> None:
        """`check_reference`, once per field and value."""
        key = (f.name, value)
        if key in self.refs:
            cached = self.refs[key]
            if cached is not None:
                raise OrgError(cached.status, cached.code, cached.message, cached.fields and list(cached.fields))
            return
        row = self.known.get(value)  # found then, found now: a batch neither deletes nor deactivates
        try:
            if row is not None:
                org.check_reference(o, f, value, row=row)
            else:  # read now: it may be a record written since (this batch's own)
                org.check_reference(o, f, value)
        except OrgError as exc:
            self.refs[key] = exc
            raise
        self.refs[key] = None


class CreateBatch(_References):
    """Creates of one object checked one by one as `create_record` checks them (so each fails alone, with the
    same error), their rows written together. What the per-record path reads from the store is known here
    without a query where it can be: a reference checked once per value (the records of this batch, not yet
    written, count as live), unique values of this batch kept in memory beside the stored ones."""

    def __init__(self, org: Records, o: ObjectDef) -> None:
        self.org, self.o = org, o
        self.hidden = org.hidden().get(o.name, set())
        self.audit_ok = bool(org.settings.get("audit_fields_on_insert"))
        self.columns: dict[str, tuple[FieldDef, bool, bool]] = {}
        self.references = {
            f.name: f for f in o.fields if f.type == "reference" and f.name not in AUDIT_FIELDS
        }  # data's keys are field names
        self.required = _required(o)
        self.shape = _Shape(o)
        self.now = org._stamp_now()
        self.rows: list[dict[str, Any]] = []
        self.pending: set[str] = set()
        self.refs: dict[tuple[str, str], OrgError | None] = {}
        self.known: dict[str, tuple[Any, ...] | None] = {}
        self.unique = [f for f in o.fields if f.unique and f.name != "Id"]
        self.unique_seen: dict[str, dict[Any, str]] = {f.name: {} for f in self.unique}

    def coerce(self, values: dict[str, Any]) -> dict[str, Any]:
        """`_coerce` of an API create (the same values, the same errors in the same order), each column's field
        looked up once."""
        return _coerced(
            values,
            self.columns,
            lambda key: _column(self.o, key, self.hidden, creating=True, admin=False, audit_ok=self.audit_ok),
            lambda f, v: self.org._typed(f, v, False),
            required=True,
        )

    def create(self, values: dict[str, Any]) -> str:
        rid, row = self.org._create_row(self.o, values, False, self)
        self.rows.append(row)
        self.pending.add(rid)
        for f in self.unique:
            v = row.get(f.name)
            if v is not None:
                self.unique_seen[f.name].setdefault(v, rid)
        return rid

    def check(self, data: dict[str, Any]) -> None:
        """`check_write` of a create: the same checks in the same order, with the same errors."""
        org, o = self.org, self.o
        refs = self.references
        for name, v in data.items():
            f = refs.get(name)
            if f is None or v is None:
                continue
            value = id18(str(v)) or str(v)
            if value in self.pending:  # a record of this batch: written first, then checked as stored
                self.flush()
            self.reference(org, o, f, value)
        for f in self.unique:
            v = data.get(f.name)
            if v is None:
                continue
            hit = self.unique_seen[f.name].get(v)
            if hit is not None:
                raise OrgError(
                    400,
                    "DUPLICATE_VALUE",
                    f"duplicate value found: {f.name} duplicates value on record with id: {hit}",
                    [f.name],
                )
            org.check_unique(o, {f.name: v}, None)
        org.check_rules(o, data)

    def flush(self) -> None:
        """Write the batch's rows, in order, and the Id counters."""
        rows, self.rows = self.rows, []
        self.pending.clear()
        for names in self.unique_seen.values():
            names.clear()
        if rows:
            # one statement: a column a row leaves out is NULL in it, as an INSERT without it stores (no defaults)
            columns = list(dict.fromkeys(c for row in rows for c in row))
            self.org.store.insert_many(self.o.name, columns, [list(map(row.get, columns)) for row in rows])
            with self.org.lock:
                self.org.store.set_meta("counters", self.org.counters)


class UpdateBatch(_References):
    """Updates of one object checked one by one as `update_record` checks them (the same errors, in the same
    order), their rows written together: the chunk's current rows read in one query (and kept as each update
    leaves them), a reference checked once per value, the rows of the same columns written by one statement.
    A unique value is checked against the stored rows once the rows before are written."""

    def __init__(self, org: Records, o: ObjectDef) -> None:
        self.org, self.o = org, o
        self.now = org._stamp_now()
        self.current: dict[str, dict[str, Any]] = {}
        self.writes: dict[tuple[str, ...], list[list[Any]]] = {}
        self.refs: dict[tuple[str, str], OrgError | None] = {}
        self.known: dict[str, tuple[Any, ...] | None] = {}
        self.unique = {f.name for f in o.fields if f.unique and f.name != "Id"}

    def load(self, ids: list[str]) -> None:
        """The current rows of these Ids (valid ones), read at once."""
        wanted = [i18 for i in dict.fromkeys(ids) if (i18 := id18(i)) is not None and i18 not in self.current]
        self.current.update(self.org.store.get_many(self.o.name, wanted))

    def _row(self, rid: str) -> dict[str, Any]:
        rid18 = id18(rid)
        if rid18 is None:
            return self.org.get_row(self.o, rid)  # its error
        row = self.current.get(rid18)
        if row is None or row.get("IsDeleted"):
            return self.org.get_row(self.o, rid)  # read again: its error, or a row another write made since
        return row

    def update(self, rid: str, values: dict[str, Any]) -> None:
        org, o = self.org, self.o
        current = self._row(rid)
        values = {k: v for k, v in values.items() if not (k.lower() == "id" and str(v)[:15] == rid[:15])}
        data = org._coerce(o, values, creating=False)
        self.check(data, current)
        data.update(
            {"LastModifiedDate": self.now, "SystemModstamp": self.now, "LastModifiedById": org.identity["user_id"]}
        )
        if o.name in ("Contact", "Lead") and ("FirstName" in data or "LastName" in data):
            merged = {**current, **data}
            data["Name"] = " ".join(p for p in (merged.get("FirstName"), merged.get("LastName")) if p)
        current.update(data)
        self.current[current["Id"]] = current
        self.writes.setdefault(tuple(data), []).append([*data.values(), current["Id"]])

    def check(self, data: dict[str, Any], current: dict[str, Any]) -> None:
        """`check_write`: references (each value once), unique values (against the rows written), rules."""
        org, o = self.org, self.o
        for f, value in changed_references(o, data, current):
            self.reference(org, o, f, value)
        if any(data.get(n) is not None for n in self.unique):
            self.flush()
            org.check_unique(o, data, current["Id"])
        org.check_rules(o, {**current, **data})

    def flush(self) -> None:
        writes, self.writes = self.writes, {}
        for columns, rows in writes.items():
            self.org.store.update_many(self.o.name, columns, rows)
