"""The jobrunner's rules as pure functions: windows and marks, resume positions, SOQL, CSV typing, compound
fields, chunking. No I/O here: every rule is unit-testable in milliseconds."""

from __future__ import annotations

import datetime as dt
import json
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

# storage's FieldType numbers (sfvault.storage.v1.FieldType), kept here so domain imports no protobuf
FT_STRING, FT_ID, FT_BOOLEAN, FT_INTEGER, FT_DOUBLE = 1, 2, 3, 4, 5
FT_DATE, FT_DATETIME, FT_TIME, FT_COMPOUND, FT_BASE64, FT_JSON = 6, 7, 8, 9, 10, 11

_SF_TYPES = {
    "id": FT_ID,
    "reference": FT_ID,
    "boolean": FT_BOOLEAN,
    "int": FT_INTEGER,
    "long": FT_INTEGER,
    "double": FT_DOUBLE,
    "currency": FT_DOUBLE,
    "percent": FT_DOUBLE,
    "date": FT_DATE,
    "datetime": FT_DATETIME,
    "time": FT_TIME,
    "address": FT_COMPOUND,
    "location": FT_COMPOUND,
    "base64": FT_BASE64,
    "anytype": FT_JSON,
    "json": FT_JSON,
}
_STRINGS = {
    "string",
    "textarea",
    "picklist",
    "multipicklist",
    "email",
    "phone",
    "url",
    "combobox",
    "encryptedstring",
}

OVERLAP = dt.timedelta(minutes=10)  # re-read before the mark: late-visible commits land below it
SETTLE = dt.timedelta(minutes=5)  # never read the last minutes: commits there may not be visible yet
RECYCLE_BIN = dt.timedelta(days=15)  # past this gap soft deletes may have been purged unseen
REST_LINE_LIMIT = 14_000  # a REST query's URL-encoded length that stays below Salesforce's 16 KB request lines
DEFAULT_RECONCILE_EVERY = dt.timedelta(days=7)
REST_BATCH = 2000
BULK_THRESHOLD = 2000  # Salesforce's own rule of thumb: more rows than this, use Bulk API 2.0
BULK_PAGE = 50_000
CHUNK_RECORDS = 10_000  # storage's chunk limit


def storage_field_type(sf_type: str) -> int:
    t = sf_type.lower()
    if t in _STRINGS:
        return FT_STRING
    return _SF_TYPES.get(t, FT_STRING)


# ---------------------------------------------------------------- time


def parse_sf_datetime(text: str) -> dt.datetime:
    """Salesforce datetimes: 2024-01-01T10:00:00.000+0000 (REST) or ...Z (Bulk)."""
    s = text.strip()
    if s.endswith("Z"):
        s = s[:-1] + "+00:00"
    elif len(s) >= 5 and s[-5] in "+-" and s[-3] != ":":
        s = s[:-2] + ":" + s[-2:]
    parsed = dt.datetime.fromisoformat(s)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


def soql_datetime(when: dt.datetime) -> str:
    """A SOQL datetime literal, millisecond precision, UTC."""
    utc = when.astimezone(dt.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def soql_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass(frozen=True)
class ObjectMarks:
    """What the jobrunner remembers per (policy, object, Id range) between sessions."""

    mark: dt.datetime | None = None  # every change with its cursor (SystemModstamp, ...) <= mark is stored
    last_full: dt.datetime | None = None
    last_reconcile: dt.datetime | None = None
    last_success: dt.datetime | None = None  # org time of the last successful job


# The field an incremental window filters on, the first the object has (as the best extractors choose it):
# SystemModstamp (every change, indexed) > LastModifiedDate > CreatedDate (append-only objects: field history,
# feeds). With CreatedDate only, a change to an existing record is seen by the next full read (the Id reconciliation
# reads in full at least every `reconcile_every`), never by a window.
CURSORS = ("SystemModstamp", "LastModifiedDate", "CreatedDate")


def cursor_field(names: Iterable[str]) -> str:
    """The object's window field (CURSORS' order) among its field names, any case; '' when it has none."""
    have = {n.lower() for n in names}
    return next((c for c in CURSORS if c.lower() in have), "")


@dataclass(frozen=True)
class Plan:
    mode: str  # "full" | "incremental"
    reason: str
    start: dt.datetime | None  # incremental only: SystemModstamp >= start
    end: dt.datetime  # SystemModstamp <= end (full: the new mark)
    reconcile: bool  # compare every Id in the org with storage afterwards (hard deletes)
    deleted_since: dt.datetime | None  # /deleted from here (None: not usable)
    cursor: str = "SystemModstamp"  # the field the window filters and orders on (cursor_field)


def plan_data_job(
    marks: ObjectMarks,
    org_now: dt.datetime,
    *,
    full: bool,
    cursor: str,
    replicateable: bool,
    reconcile_every: dt.timedelta | None,
    overlap: dt.timedelta = OVERLAP,
    settle: dt.timedelta = SETTLE,
) -> Plan:
    """Decide a data job's mode and window from what is stored and the org's clock.

    The window's end stays `settle` behind the org's clock; its start `overlap` before the mark; it filters on
    `cursor` (cursor_field). A full copy is needed when asked, when there is no mark, or when the object has no
    cursor field. An Id reconciliation
    runs with a full read when it is due, or when the gap since the last backup exceeds the recycle bin's
    15 days (soft deletes may have been purged unseen); it is skipped only for a first copy (nothing stored).
    """
    every = reconcile_every or DEFAULT_RECONCILE_EVERY
    end = org_now - settle
    first = marks.mark is None
    gap = marks.last_success is None or org_now - marks.last_success > RECYCLE_BIN
    due = marks.last_reconcile is None or org_now - marks.last_reconcile >= every
    if full or first or not cursor:
        reason = "first copy" if first else ("asked for a full copy" if full else "no field to window on")
        return Plan("full", reason, None, end, reconcile=not first, deleted_since=None, cursor=cursor)
    if gap or due:
        reason = "gap since the last backup exceeds 15 days" if gap else "Id reconciliation due"
        return Plan("full", reason, None, end, reconcile=True, deleted_since=None, cursor=cursor)
    assert marks.mark is not None
    start = marks.mark - overlap
    if start > end:  # the clock went back, or two runs within the settle margin: nothing safe to read yet
        start = end
    deleted_since = start if replicateable and org_now - start < RECYCLE_BIN else None
    reason = "window" if cursor == "SystemModstamp" else f"window on {cursor}"
    return Plan("incremental", reason, start, end, reconcile=False, deleted_since=deleted_since, cursor=cursor)


def advance_mark(old: dt.datetime | None, plan: Plan) -> dt.datetime:
    """The mark after a successful job: the window's end, never backwards."""
    if old is not None and old > plan.end:
        return old
    return plan.end


# ---------------------------------------------------------------- resume positions (keyset)


@dataclass(frozen=True)
class Key:
    """A position in an ordered read: (the cursor's value, Id) for windows, (None, Id) for full reads by Id.

    The position is always the full key of the last stored record, never a timestamp alone: a group of rows
    sharing one SystemModstamp (a mass update) can be cut anywhere and resumed exactly after the last Id."""

    modstamp: str | None
    record_id: str


def keyset_condition(key: Key | None, cursor: str = "SystemModstamp") -> str:
    if key is None:
        return ""
    rid = soql_string(key.record_id)
    if key.modstamp is None:
        return f"Id > {rid}"
    ts = soql_datetime(parse_sf_datetime(key.modstamp))
    return f"({cursor} > {ts} OR ({cursor} = {ts} AND Id > {rid}))"


def rest_fits(soql: str) -> bool:
    """Whether a query can go as a REST GET: URL-encoded, within Salesforce's 16 KB request lines."""
    return len(urllib.parse.quote_plus(soql)) <= REST_LINE_LIMIT


def build_soql(
    object_name: str,
    fields: Sequence[str],
    *,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    id_from: str = "",
    id_to: str = "",
    after: Key | None = None,
    ordered: str = "",  # "" | "id" | "modstamp" (by the cursor, then Id)
    ids: Sequence[str] = (),
    cursor: str = "SystemModstamp",  # the field a window (start, end, after) filters and orders on
) -> str:
    where: list[str] = []
    if start is not None:
        where.append(f"{cursor} >= {soql_datetime(start)}")
    if end is not None:
        where.append(f"{cursor} <= {soql_datetime(end)}")
    if id_from:
        where.append(f"Id >= {soql_string(id_from)}")
    if id_to:
        where.append(f"Id < {soql_string(id_to)}")
    if ids:
        where.append("Id IN (" + ",".join(soql_string(i) for i in ids) + ")")
    cond = keyset_condition(after, cursor)
    if cond:
        where.append(cond)
    text = f"SELECT {', '.join(fields)} FROM {object_name}"
    if where:
        text += " WHERE " + " AND ".join(where)
    if ordered == "id":
        text += " ORDER BY Id"
    elif ordered == "modstamp":
        text += f" ORDER BY {cursor}, Id"
    return text


def key_of(record: dict[str, Any], ordered: str, cursor: str = "SystemModstamp") -> Key:
    rid = str(record["Id"])
    if ordered == "modstamp":
        return Key(str(record.get(cursor) or ""), rid)
    return Key(None, rid)


# ---------------------------------------------------------------- fields


@dataclass(frozen=True)
class FieldInfo:
    name: str
    sf_type: str
    calculated: bool = False
    compound: str = ""  # the compound field this is a component of (describe's compoundFieldName)


@dataclass(frozen=True)
class Selection:
    """Which fields a read selects through REST and through Bulk, and how compound values are rebuilt."""

    rest_fields: tuple[str, ...]  # base64 left out: bodies go through file jobs
    bulk_fields: tuple[str, ...]  # also without compound fields (Bulk cannot select them)
    compounds: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)  # name -> ((key, component))
    types: dict[str, str] = field(default_factory=dict)  # field -> sf_type (for CSV typing)


_COMPONENT_SUFFIXES = (
    "GeocodeAccuracy",
    "PostalCode",
    "CountryCode",
    "StateCode",
    "Longitude",
    "Latitude",
    "Country",
    "Street",
    "State",
    "City",
)


def component_key(component: str) -> str:
    """BillingPostalCode -> postalCode, Headquarters__Latitude__s -> latitude (the REST compound keys)."""
    stem = component.removesuffix("__s")
    for suffix in _COMPONENT_SUFFIXES:
        if stem.endswith(suffix):
            return suffix[0].lower() + suffix[1:]
    return stem[0].lower() + stem[1:]


def compound_components(describe_json: bytes | str | None) -> dict[str, str]:
    """component field -> its compound field, from the object's describe."""
    if not describe_json:
        return {}
    try:
        describe = json.loads(describe_json)
    except ValueError:
        return {}
    return {
        f["name"]: f["compoundFieldName"]
        for f in describe.get("fields", [])
        if isinstance(f, dict) and f.get("compoundFieldName")
    }


def select_fields(fields: Iterable[FieldInfo], components: dict[str, str]) -> Selection:
    infos = list(fields)
    names = {f.name for f in infos}
    rest: list[str] = []
    bulk: list[str] = []
    compounds: dict[str, list[tuple[str, str]]] = {}
    for f in infos:
        t = f.sf_type.lower()
        if t == "base64":
            continue
        rest.append(f.name)
        if t in ("address", "location"):
            compounds.setdefault(f.name, [])
            continue
        bulk.append(f.name)
    types = {f.name: f.sf_type.lower() for f in infos}
    for comp, parent in components.items():
        if parent in compounds:
            key = component_key(comp)
            compounds[parent].append((key, comp))
            if comp not in names:
                bulk.append(comp)  # needed to rebuild the compound value
                # typed as REST returns it inside the compound, though out of scope itself: coordinates are
                # numbers, every other component is text
                types[comp] = "double" if key in ("latitude", "longitude") else "string"
    if "Id" in names:
        for seq in (rest, bulk):
            if "Id" in seq:
                seq.remove("Id")
            seq.insert(0, "Id")
    return Selection(
        tuple(rest),
        tuple(bulk),
        {k: tuple(sorted(v)) for k, v in compounds.items()},
        types,
    )


# ---------------------------------------------------------------- Bulk CSV -> JSON records


def _csv_bool(text: str) -> bool:
    return text.lower() == "true"


def _csv_int(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        try:
            as_float = float(text)  # "0.0" in an int column (a known Bulk quirk)
        except ValueError:
            return text
        return int(as_float) if as_float.is_integer() else as_float


def _csv_float(text: str) -> Any:
    try:
        return float(text)
    except ValueError:
        return text


# how a non-empty cell of each type is read; any other type stays text
_CSV_TYPED: dict[str, Callable[[str], Any]] = {
    "boolean": _csv_bool,
    "int": _csv_int,
    "long": _csv_int,
    "double": _csv_float,
    "currency": _csv_float,
    "percent": _csv_float,
}


def csv_value(sf_type: str, text: str) -> Any:
    """A Bulk CSV cell typed as REST would return it. Empty is null (CSV cannot tell them apart; storage
    treats both alike). Unparseable numbers stay strings: storage refuses them loudly rather than us guessing."""
    if text == "":
        return None
    typed = _CSV_TYPED.get(sf_type)
    return text if typed is None else typed(text)


def csv_typing(header: Sequence[str], selection: Selection) -> list[Callable[[str], Any] | None]:
    """How each column's non-empty cells are read (csv_value, column by column); None: the text as it is."""
    return [_CSV_TYPED.get(selection.types.get(h, "string")) for h in header]


def csv_decoder(
    header: Sequence[str], selection: Selection, drop: Sequence[str] = ()
) -> Callable[[list[str]], dict[str, Any]]:
    """A Bulk CSV row under `header` as a JSON-ready record: typed as REST returns it, compound values rebuilt
    from their components, and the components selected only for that dropped. The reference reading of a row:
    RecordCanonicalizer.compile_rows takes the same rows straight to canonical parts."""
    # a text column (most of them) costs no call per cell
    typed = csv_typing(header, selection)
    compounds = selection.compounds
    dropped = set(drop)

    def decode(row: list[str]) -> dict[str, Any]:
        rec = {h: None if v == "" else v if t is None else t(v) for h, t, v in zip(header, typed, row, strict=False)}
        for name, parts in compounds.items():
            inner = {key: rec.get(comp) for key, comp in parts}
            rec[name] = None if all(v is None for v in inner.values()) else inner
        for d in dropped:
            rec.pop(d, None)
        return rec

    return decode


def components_to_drop(selection: Selection, wanted: Iterable[str]) -> tuple[str, ...]:
    """Components selected only to rebuild a compound value, not in the job's scope themselves."""
    scope = set(wanted)
    return tuple(f for f in selection.bulk_fields if f not in scope)


# ---------------------------------------------------------------- counts


class CountMismatch(RuntimeError):
    """Salesforce said one number of records, we received or stored another: never a silent success."""


def check_counts(what: str, expected: int, received: int) -> None:
    if expected != received:
        raise CountMismatch(f"{what}: Salesforce reported {expected} records, {received} were received")


def batched(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
