"""The restore's rules as pure functions (issue 17): what of an object can be written, in which order objects
are restored (parents first, cycles broken by a second pass), a backup's canonical values turned into what
Salesforce accepts, references mapped to the new Ids, masking for another org, the per-record decision
(skip, update, undelete, create), matching creates after a lost answer, and the read-back proof.
No I/O here: every rule is unit-testable in milliseconds.

One equality serves the decision, the match after a lost answer and the proof (`normalized`): Salesforce's own,
by field type: numbers by value (1 == 1.0 == "1.00"), datetimes by instant at millisecond precision (+0000, Z and
offsets alike), Ids by their 18-character form (a 15-character Id and a wrong-case suffix compare equal), a
multipicklist as a set of values, an empty string as null (Salesforce stores "" as null), a null checkbox as
false."""

from __future__ import annotations

import enum
import functools
import hashlib
import hmac
import re
from collections.abc import Callable, Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple

from services import canonical as canon
from services.canonical import normalize_id
from services.jobrunner.domain import component_key
from services.platform.errors import InvalidArgument


class State(enum.Enum):
    """A record's outcome; .value is sfvault.restore.v1.RecordState's number."""

    SKIPPED = 1
    UPDATED = 2
    UNDELETED = 3
    CREATED = 4
    FAILED = 5


@dataclass(frozen=True)
class FieldInfo:
    name: str
    sf_type: str
    createable: bool
    updateable: bool
    nillable: bool
    calculated: bool
    reference_to: tuple[str, ...]
    relationship_name: str | None
    external_id: bool
    unique: bool
    defaulted_on_create: bool
    cascade_delete: bool = False  # master-detail (relationshipOrder / cascadeDelete)
    auto_number: bool = False
    compound: str | None = None  # the compound field this is a component of (BillingCity -> BillingAddress)


class ChildRelationship(NamedTuple):
    child_object: str
    field: str
    cascade_delete: bool


@dataclass(frozen=True)
class ObjectInfo:
    name: str
    key_prefix: str
    fields: Mapping[str, FieldInfo]
    children: tuple[ChildRelationship, ...]
    # what is derived once from the fields and read for every record (to_salesforce's columns); not compared
    derived: dict[str, Any] = dc_field(default_factory=dict, compare=False, repr=False)

    def field(self, name: str) -> FieldInfo | None:
        """A field by its name in any case (describe's spelling is the key of `fields`)."""
        found = self.fields.get(name)
        if found is not None:
            return found
        lowered = name.lower()
        for key, f in self.fields.items():
            if key.lower() == lowered:
                return f
        return None


# Salesforce maintains these itself. The audit fields may be createable (with "Set Audit Fields upon Record
# Creation"), but a restore never writes them: the restored row is created now, by the restoring user.
SYSTEM_FIELDS = frozenset(
    {"id", "isdeleted", "systemmodstamp", "createddate", "createdbyid", "lastmodifieddate", "lastmodifiedbyid"}
)
COMPOUND_TYPES = frozenset({"address", "location"})
NUMBER_TYPES = frozenset({"int", "long", "double", "currency", "percent"})
_TEXT_TYPES = frozenset({"string", "textarea", "picklist", "email", "phone", "url", "combobox", "encryptedstring"})


# ---------------------------------------------------------------- describe


def object_info(describe: Mapping[str, Any]) -> ObjectInfo:
    """An object's write-side facts from a REST sobjects/X/describe JSON."""
    fields: dict[str, FieldInfo] = {}
    for f in describe.get("fields") or ():
        name = str(f["name"])
        compound = f.get("compoundFieldName")
        fields[name] = FieldInfo(
            name=name,
            sf_type=str(f.get("type") or "string").lower(),
            createable=bool(f.get("createable")),
            updateable=bool(f.get("updateable")),
            nillable=bool(f.get("nillable")),
            calculated=bool(f.get("calculated")),
            reference_to=tuple(str(t) for t in f.get("referenceTo") or ()),
            relationship_name=f.get("relationshipName"),
            external_id=bool(f.get("externalId")),
            unique=bool(f.get("unique")),
            defaulted_on_create=bool(f.get("defaultedOnCreate")),
            cascade_delete=bool(f.get("cascadeDelete")) or f.get("relationshipOrder") is not None,
            auto_number=bool(f.get("autoNumber")),
            compound=str(compound) if compound and compound != name else None,
        )
    children = tuple(
        ChildRelationship(str(c["childSObject"]), str(c["field"]), bool(c.get("cascadeDelete")))
        for c in describe.get("childRelationships") or ()
    )
    return ObjectInfo(str(describe["name"]), str(describe.get("keyPrefix") or ""), fields, children)


def _compound_parents(info: ObjectInfo) -> dict[str, list[str]]:
    """compound field -> its components (in describe order)."""
    out: dict[str, list[str]] = {n: [] for n, f in info.fields.items() if f.sf_type in COMPOUND_TYPES}
    for f in info.fields.values():
        if f.compound and f.compound in info.fields:
            out.setdefault(f.compound, []).append(f.name)
    return out


def writable(f: FieldInfo) -> bool:
    """Whether a restore may send this field at all (on create or on update)."""
    return (
        (f.createable or f.updateable)
        and not f.calculated
        and not f.auto_number
        and f.name.lower() not in SYSTEM_FIELDS
        and f.sf_type not in COMPOUND_TYPES
        and f.sf_type != "base64"
    )


def restorable_fields(info: ObjectInfo, selected: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """(the fields written, the selected ones that cannot be written), in describe's spelling.

    Written: createable or updateable, not calculated (formula, roll-up), auto-number, system or audit, Id. A
    compound field (BillingAddress, a geolocation, a person's Name) is written through its components: selecting
    it selects them. base64 bodies are neither: files are restored by their own jobs. selected None: every field
    of the object; left out then are its fields that cannot be written. Id and compound fields are never
    counted as left out (Id is the record's identity, a compound is written through its components).
    A selected name the object does not have (another org) is left out as given."""
    compounds = _compound_parents(info)
    written: list[str] = []
    left_out: list[str] = []

    def take(name: str) -> None:
        if name not in written:
            written.append(name)

    def leave(name: str) -> None:
        if name not in left_out:
            left_out.append(name)

    if selected is None:
        for each in info.fields.values():
            if writable(each):
                take(each.name)
            elif each.name.lower() != "id" and each.name not in compounds and each.sf_type != "base64":
                leave(each.name)
        return written, left_out
    for asked in selected:
        f = info.field(asked)
        if f is None:
            leave(asked)
        elif f.name in compounds:
            parts = [c for c in compounds[f.name] if writable(info.fields[c])]
            if not parts:
                leave(f.name)
            for c in parts:
                take(c)
        elif writable(f):
            take(f.name)
        elif f.sf_type != "base64" and f.name.lower() != "id":
            leave(f.name)
    return written, left_out


# ---------------------------------------------------------------- order


def _reference_edges(infos: Mapping[str, ObjectInfo]) -> dict[str, list[tuple[str, FieldInfo]]]:
    """object -> (parent object, reference field) among the given objects, for the fields a restore writes."""
    edges: dict[str, list[tuple[str, FieldInfo]]] = {name: [] for name in infos}
    for name, info in infos.items():
        for f in info.fields.values():
            if f.sf_type != "reference" or not writable(f):
                continue
            for target in f.reference_to:
                if target in infos:
                    edges[name].append((target, f))
    return edges


def _deferrable(f: FieldInfo) -> bool:
    """Whether a reference can be left empty on create and patched after: a lookup, not a master-detail or
    other required reference (a lookup that cascades deletes, as Contact.AccountId, is still optional)."""
    return f.nillable and f.updateable


def _components(nodes: Sequence[str], parents: Mapping[str, set[str]]) -> list[list[str]]:
    """Strongly connected components (Tarjan, iterative), parents' components first."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in nodes:
        if root in index:
            continue
        work: list[tuple[str, list[str]]] = [(root, sorted(parents[root], key=nodes.index))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, todo = work[-1]
            if todo:
                nxt = todo.pop(0)
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, sorted(parents[nxt], key=nodes.index)))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp: list[str] = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    comp.append(top)
                    if top == node:
                        break
                out.append(sorted(comp, key=nodes.index))
    return out  # Tarjan emits a component after every component it reaches: parents first


def _place_cycle(
    comp: Sequence[str], edges: Mapping[str, list[tuple[str, FieldInfo]]]
) -> tuple[list[str], dict[str, set[str]]]:
    """The objects of one cycle in order, and the references cut (to objects placed later): each step places
    an object whose required references point at placed objects, the one with the fewest lookups left open."""
    members = set(comp)
    placed: list[str] = []
    left = list(comp)
    cut: dict[str, set[str]] = {}

    needs = {n: {p for p, f in edges[n] if p in members and p != n and not _deferrable(f)} for n in comp}
    # the cycles of required references alone (Salesforce allows none; a describe may still show one)
    stuck_with = {n: c for c in _components(list(comp), needs) for n in c}

    def required_ready(n: str) -> bool:
        return needs[n] <= set(placed)

    def only_stuck(n: str) -> bool:
        return all(p in placed or p in stuck_with[n] for p in needs[n])

    def open_lookups(n: str) -> int:
        return sum(1 for p, _f in edges[n] if p in members and p not in placed and p != n)

    while left:
        ready = [n for n in left if required_ready(n)] or [n for n in left if only_stuck(n)] or left
        pick = min(ready, key=lambda n: (open_lookups(n), left.index(n)))
        for p, f in edges[pick]:
            if p in members and p != pick and p not in placed:
                cut.setdefault(pick, set()).add(f.name)
        placed.append(pick)
        left.remove(pick)
    return placed, cut


def restore_order(infos: Mapping[str, ObjectInfo]) -> tuple[list[str], dict[str, set[str]]]:
    """Objects parents-first by their reference fields among the given objects. Cycles and self-lookups are
    broken: the second value maps object -> reference fields written in a second pass (patch) after all
    creates. Self-lookups (Account.ParentId, Contact.ReportsToId) always go to the second pass. In a cycle the
    objects are placed so that every master-detail or required reference points at an object placed before
    (Shipment__c after Invoice__c); the lookups that point at objects placed later are deferred. A cycle of
    required references only (which Salesforce itself does not allow) is deferred all the same: those
    records will fail with the org's reason. Ties keep the order of `infos`."""
    nodes = list(infos)
    edges = _reference_edges(infos)
    parents = {n: {p for p, _f in edges[n] if p != n} for n in nodes}
    deferred: dict[str, set[str]] = {}
    for n in nodes:
        for p, f in edges[n]:
            if p == n:
                deferred.setdefault(n, set()).add(f.name)
    order: list[str] = []
    for comp in _components(nodes, parents):
        if len(comp) == 1:
            order.append(comp[0])
            continue
        placed, cut = _place_cycle(comp, edges)
        for n, names in cut.items():
            deferred.setdefault(n, set()).update(names)
        order.extend(placed)
    return order, deferred


# ---------------------------------------------------------------- values


def to_salesforce(
    values: Mapping[str, Any], info: ObjectInfo, *, problems: list[str] | None = None, keep_null: bool = True
) -> dict[str, Any]:
    """A backup record's canonical values (values_json decoded) -> the JSON values Salesforce accepts on write:
    booleans, numbers (integral ones as integers), dates YYYY-MM-DD, datetimes UTC with milliseconds, times,
    multipicklists as "A;B", references as 18-character Ids, text as is. Only the fields a restore may write
    are kept (`writable`), keyed in describe's spelling: Id, system, audit, formula and compound fields and
    base64 bodies are left out; a component missing from `values` is taken from its compound's value.
    A value that is not of its field's type (the field's type changed since the backup, or differs in another
    org) raises InvalidArgument (naming the field, never the value); with `problems` given, the field is left
    out instead and a reason appended ("NumberOfEmployees: the backup's value is not a valid int"), so one
    record's drift never stops the rest. keep_null False: a field without a value is left out (every rule here
    reads a missing field as a null one)."""
    columns = _write_columns(info)
    out: dict[str, Any] = {}
    given: set[str] = set()
    compounds: list[tuple[str, Mapping[str, Any]]] = []
    for key, raw in values.items():
        column = columns.get(key)
        if column is None:
            column = columns[key] = _column_of(info, key)
        f, text = column
        if f is None:
            if text and isinstance(raw, Mapping):  # a compound value: its components unless given themselves
                compounds.append((key.lower(), raw))
            continue
        given.add(f.name)
        if raw is None or (text and raw == ""):
            if keep_null:
                out[f.name] = None  # as _to_sf_value returns it
        elif text:
            out[f.name] = raw
        else:
            _convert(out, f, raw, problems)
    for low, compound in compounds:
        for f, key in _components_of(info).get(low, ()):
            if f.name not in given and key in compound and (keep_null or compound[key] is not None):
                _convert(out, f, compound[key], problems)
    return out


def _write_columns(info: ObjectInfo) -> dict[str, tuple[FieldInfo | None, bool]]:
    """A record's key (as the backup spells it) -> (the writable field it names or None, whether its value is
    text taken as it is); for None, whether the key names a compound field. Filled as keys are met."""
    columns: dict[str, tuple[FieldInfo | None, bool]] = info.derived.setdefault("write_columns", {})
    return columns


def _column_of(info: ObjectInfo, key: str) -> tuple[FieldInfo | None, bool]:
    low = key.lower()
    by_lower: dict[str, FieldInfo] = info.derived.get("writable_by_lower") or info.derived.setdefault(
        "writable_by_lower", {f.name.lower(): f for f in info.fields.values() if writable(f)}
    )
    f = by_lower.get(low)
    if f is None:
        return None, low in _components_of(info)
    return f, f.sf_type in _TEXT_TYPES


def _components_of(info: ObjectInfo) -> dict[str, list[tuple[FieldInfo, str]]]:
    """compound field (lower case) -> its writable components and their keys in the compound value, in describe
    order."""
    found: dict[str, list[tuple[FieldInfo, str]]] | None = info.derived.get("components")
    if found is None:
        found = {}
        for f in info.fields.values():
            if writable(f) and f.compound:
                # as the backup built the compound value
                found.setdefault(f.compound.lower(), []).append((f, component_key(f.name)))
        info.derived["components"] = found
    return found


def _convert(out: dict[str, Any], f: FieldInfo, raw: Any, problems: list[str] | None) -> None:
    try:
        out[f.name] = _to_sf_value(raw, f)
    except InvalidArgument:
        if problems is None:
            raise
        problems.append(f"{f.name}: the backup's value is not a valid {f.sf_type}")


# a field type -> the canonical form Salesforce accepts of its value (services.canonical: raises InvalidArgument)
_CANON: dict[str, Callable[[Any, str], Any]] = {
    "boolean": canon.canon_boolean,
    **dict.fromkeys(("int", "long"), canon.canon_integer),
    **dict.fromkeys(("double", "currency", "percent"), canon.canon_double),
    "date": canon.canon_date,
    "datetime": canon.canon_datetime,
    "time": canon.canon_time,
    **dict.fromkeys(("reference", "id"), canon.canon_reference),
}


def _to_sf_value(value: Any, f: FieldInfo) -> Any:
    if value is None:
        return None
    t = f.sf_type
    to_canon = _CANON.get(t)
    if to_canon is not None:
        return to_canon(value, f.name)
    if t == "multipicklist":
        if isinstance(value, (list, tuple)):
            return ";".join(str(v) for v in value)
        return value
    if t in _TEXT_TYPES and value == "":
        return None
    return value


def _as_id(value: Any) -> str | None:
    if type(value) is str:
        return _text_as_id(value)
    try:
        return normalize_id(value)
    except InvalidArgument:
        return None


@functools.lru_cache(maxsize=1 << 16)
def _text_as_id(value: str) -> str | None:
    """An Id's 18-character form (a restore meets the same owners and parents again and again)."""
    try:
        return normalize_id(value)
    except InvalidArgument:
        return None


def _object_of(ref: str, f: FieldInfo, prefixes: Mapping[str, str] | None) -> str:
    if prefixes and ref[:3] in prefixes:
        return prefixes[ref[:3]]
    if len(f.reference_to) == 1:
        return f.reference_to[0]
    return "record"


def required(f: FieldInfo) -> bool:
    """Whether a record cannot be created without this field: a master-detail or another required field
    (nillable false) that the org does not fill itself (OwnerId defaults to the restoring user)."""
    return not f.nillable and not f.defaulted_on_create and f.sf_type != "boolean"


def rewrite_references(
    values: dict[str, Any],
    info: ObjectInfo,
    id_map: Mapping[str, str],
    present: Callable[[str], bool],
    *,
    prefixes: Mapping[str, str] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """Every reference value mapped through id_map (old Id -> new Id, 18-character keys). A reference to a
    record neither mapped nor present in the target (present(18-character Id)) is dropped from the write
    (lookup left empty) and named in the second value, one reason per field:
    "ParentId: Account 001... not in the target org, left empty"; for a `required` one (master-detail)
    "parent Account 001... not restored" (record_failure finds it: a create must then fail with it; an update
    leaves the org's value). prefixes (key prefix -> object) names the parent of a polymorphic reference.
    `values` is not changed: a new dict is returned."""
    out = dict(values)
    reasons: list[str] = []
    references: dict[str, FieldInfo] | None = info.derived.get("references")
    if references is None:
        references = info.derived["references"] = {n: f for n, f in info.fields.items() if f.sf_type == "reference"}
    fields = info.fields
    if values.keys() <= fields.keys():  # every key in describe's spelling (to_salesforce's): its references
        todo = [(name, references[name]) for name in values if name in references]
    else:
        todo = []
        for name in values:
            f = references.get(name)
            if f is None and name not in fields:
                f = info.field(name)  # another spelling
            if f is not None and f.sf_type == "reference":
                todo.append((name, f))
    for name, f in todo:
        value = values[name]
        if value is None:
            continue
        ref = _as_id(value)
        if ref is None:
            continue  # not an Id: the org answers MALFORMED_ID for this record, with the field named
        mapped = id_map.get(ref) or id_map.get(str(value))
        if mapped is not None:
            out[name] = _as_id(mapped) or mapped
        elif present(ref):
            out[name] = ref
        else:
            del out[name]
            parent = _object_of(ref, f, prefixes)
            if required(f):
                reasons.append(f"parent {parent} {ref} not restored")
            else:
                reasons.append(f"{f.name}: {parent} {ref} not in the target org, left empty")
    return out, reasons


def record_failure(reasons: Sequence[str]) -> str | None:
    """The reason a record cannot be created, among rewrite_references' reasons (a master-detail or required
    parent that is not there), or None."""
    for r in reasons:
        if r.startswith("parent "):
            return r
    return None


def split_deferred(write: Mapping[str, Any], deferred: Collection[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A create's values in two passes (restore_order's second value for its object): (what is sent on create,
    the deferred references with a value, patched once every record of the restore is created)."""
    low = {d.lower() for d in deferred}
    first = {k: v for k, v in write.items() if k.lower() not in low}
    patch = {k: v for k, v in write.items() if k.lower() in low and v is not None}
    return first, patch


# ---------------------------------------------------------------- masking

MASK_RULES = ("null", "email", "phone", "pseudonym", "fixed:VALUE")


def check_mask_rule(rule: str) -> None:
    """Raises InvalidArgument (a ValueError) for a rule that is not one of MASK_RULES."""
    if rule in ("null", "email", "phone", "pseudonym") or rule.startswith("fixed:"):
        return
    raise InvalidArgument(f"mask rule {rule!r} is unknown: one of {', '.join(MASK_RULES)}")


def _digest(secret: bytes, rule: str, value: Any) -> str:
    text = str(value).strip()
    if rule == "email":
        text = text.lower()
    return hmac.new(secret, f"{rule}\x00{text}".encode(), hashlib.sha256).hexdigest()


def _pseudonym_stem(field: str) -> str:
    stem = re.sub(r"__c$|__s$|Id$", "", field).replace("_", " ").strip()
    return stem or "Value"


def mask_values(
    object_name: str,
    values: dict[str, Any],
    masks: Sequence[tuple[str, str, str]],
    *,
    secret: bytes,
    info: ObjectInfo | None = None,
) -> dict[str, Any]:
    """masks: (object, field, rule), names in any case. Rules: null; email (a fake address from HMAC(secret,
    value): "u<16 hex>@example.com", one per address whatever its case); phone ("+1555" and 7 digits from the
    HMAC); pseudonym ("<Field> <6 hex>", e.g. "LastName 1a2b3c"); fixed:VALUE. A null stays null. An unknown
    rule (of any mask, for any object) raises InvalidArgument (a ValueError). Deterministic for one secret:
    the same value masks alike across records, fields and runs (references between masked data stay
    consistent); the original value cannot be read back from the mask. Returns a new dict.

    With the object's `info`, a mask on a compound field (MailingAddress, a geolocation) masks each of its
    components (a number component is emptied unless the rule is fixed:), and a compound value found beside a
    masked component is emptied too: no part of a masked value is left anywhere in the record."""
    for _obj, _field, rule in masks:
        check_mask_rule(rule)
    wanted: list[tuple[str, str]] = []
    compounds = _compound_parents(info) if info is not None else {}
    for obj, field, rule in masks:
        if obj.lower() != object_name.lower():
            continue
        f = info.field(field) if info is not None else None
        wanted.append((f.name if f is not None else field, rule))
        if f is not None:
            for component in compounds.get(f.name, ()):
                numeric = info is not None and info.fields[component].sf_type in NUMBER_TYPES
                wanted.append((component, "null" if numeric and not rule.startswith("fixed:") else rule))
            if f.compound:
                wanted.append((f.compound, "null"))
    out = dict(values)
    lowered = {k.lower(): k for k in values}
    for field, rule in wanted:
        key = lowered.get(field.lower())
        if key is None or out[key] is None:
            continue
        original = values[key]
        if rule == "null" or isinstance(original, Mapping):  # a compound value: its components carry it
            out[key] = None
        elif rule == "email":
            out[key] = f"u{_digest(secret, rule, original)[:16]}@example.com"
        elif rule == "phone":
            out[key] = f"+1555{int(_digest(secret, rule, original)[:12], 16) % 10_000_000:07d}"
        elif rule == "pseudonym":
            out[key] = f"{_pseudonym_stem(key)} {_digest(secret, rule, original)[:6]}"
        else:
            out[key] = rule.removeprefix("fixed:")
    return out


# ---------------------------------------------------------------- equality


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    try:
        d = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    return d if d.is_finite() else None


_DATETIME_SHAPE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")


def _loose(value: Any) -> Hashable:
    """A comparable form of a value whose field type is unknown."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, (int, float)):
        return ("n", _decimal(value))
    if isinstance(value, str):
        if len(value) in (15, 18) and value.isascii() and value.isalnum():
            ref = _as_id(value)
            if ref is not None:
                return ("s", ref)
        if _DATETIME_SHAPE.match(value):
            try:
                return ("s", canon.canon_datetime(value, "value"))
            except InvalidArgument:
                pass
        return ("s", value)
    if isinstance(value, Mapping):
        return ("d", tuple(sorted((str(k), _loose(v)) for k, v in value.items() if _loose(v) is not None)))
    if isinstance(value, (list, tuple)):
        return ("l", tuple(_loose(v) for v in value))
    return ("o", repr(value))


def normalized(value: Any, f: FieldInfo | None) -> Hashable:
    """The form two values of one field are compared in (equal forms: Salesforce holds the same value). Never
    raises: a value not of its field's type is compared as it is."""
    t = f.sf_type if f is not None else ""
    try:
        if t == "boolean":
            return ("b", False if value is None or value == "" else canon.canon_boolean(value, "value"))
        if value is None or value == "":
            return None
        if t in NUMBER_TYPES:
            d = _decimal(value)
            return ("n", d) if d is not None else _loose(value)
        if t == "date":
            return ("s", canon.canon_date(value, "value"))
        if t == "datetime":
            return ("s", canon.canon_datetime(value, "value"))
        if t == "time":
            return ("s", canon.canon_time(value, "value"))
        if t in ("reference", "id"):
            return ("s", _as_id(value) or value)
        if t == "multipicklist":
            items = value if isinstance(value, (list, tuple)) else str(value).split(";")
            found = frozenset(str(v).strip() for v in items if str(v).strip())
            return ("m", found) if found else None
        if t in _TEXT_TYPES:
            return ("s", value) if isinstance(value, str) else _loose(value)
    except InvalidArgument:
        pass
    return _loose(value)


def same(a: Any, b: Any, f: FieldInfo | None) -> bool:
    """Salesforce's equality of two values of one field (see the module's docstring)."""
    return normalized(a, f) == normalized(b, f)


def _compared(
    backup: Mapping[str, Any], fields: Sequence[str], info: ObjectInfo | None, restore_empty: bool
) -> list[tuple[str, FieldInfo | None]]:
    """The fields a record is compared on: `fields` that the backup holds a value of; with restore_empty also
    those it holds none of (a null then means null), but a checkbox or a required field (which Salesforce never
    holds empty: the field did not exist then) only with a value."""
    out: list[tuple[str, FieldInfo | None]] = []
    by_name = info.fields if info is not None else None
    get = backup.get
    for name in fields:
        f: FieldInfo | None = None
        key = name
        if by_name is not None:
            f = by_name.get(name)
            if f is None:
                f = info.field(name) if info is not None else None  # another spelling
                if f is None:
                    continue
            key = f.name
        value = get(key)
        if (value is None or value == "") and (  # no value (normalized(value, None) is None)
            not restore_empty or (f is not None and (f.sf_type == "boolean" or not f.nillable))
        ):
            continue  # no value: the org's is left (a checkbox or a required field is never emptied)
        out.append((key, f))
    return out


def differences(
    expected: Mapping[str, Any],
    actual: Mapping[str, Any],
    fields: Sequence[str],
    *,
    info: ObjectInfo | None = None,
    restore_empty: bool = False,
) -> list[str]:
    """The read-back proof: the fields whose values differ, names only, with decide's equality (by field type
    when `info` is given, else by the values' own kinds). A field `expected` holds no value of is not compared
    unless restore_empty (the restore left the org's value)."""
    return [
        name
        for name, f in _compared(expected, fields, info, restore_empty)
        if not same(expected.get(name), actual.get(name), f)
    ]


# ---------------------------------------------------------------- the decision


@dataclass(frozen=True, slots=True)
class Decision:
    source_id: str
    target_id: str | None
    state: State
    write: dict[str, Any]  # values to send
    undelete: bool
    changed_fields: tuple[str, ...]
    note: str = ""


def with_write(d: Decision, write: dict[str, Any]) -> Decision:
    """The decision with other values to send (dataclasses.replace's result, at a third of its cost: a batch of
    creates swaps each one's twice)."""
    return Decision(d.source_id, d.target_id, d.state, write, d.undelete, d.changed_fields, d.note)


def _create_plan(info: ObjectInfo, fields: Sequence[str], restore_empty: bool) -> list[tuple[str, bool]]:
    """What a create writes of `fields`, as `_compared` and `decide` take them, derived once per object and fields:
    (the createable field's name, whether it is written without a value: with restore_empty, a field that can be
    empty and is not a checkbox)."""
    key = ("create_plan", tuple(fields), restore_empty)
    plan: list[tuple[str, bool]] | None = info.derived.get(key)  # type: ignore[call-overload]
    if plan is None:
        plan = []
        for name in fields:
            f = info.fields.get(name) or info.field(name)
            if f is not None and f.createable:
                plan.append((f.name, restore_empty and f.sf_type != "boolean" and f.nillable))
        info.derived[key] = plan  # type: ignore[index]
    return plan


def decide(
    source_id: str,
    backup: Mapping[str, Any],
    target: Mapping[str, Any] | None,
    *,
    target_id: str | None,
    target_deleted: bool,
    fields: Sequence[str],
    info: ObjectInfo,
    restore_empty: bool,
) -> Decision:
    """backup and target are Salesforce-shaped values (to_salesforce output, after rewrite/mask); compared on
    `fields` only, with Salesforce's equality (`same`). A backup field without a value is compared (and
    written as null) only with restore_empty; a null is never written to a checkbox.

    - target None and not deleted -> CREATED: write = the createable fields with a value (nulls only with
      restore_empty), changed_fields = their names;
    - target_deleted -> UNDELETED (undelete=True), write = the differing updateable fields (all of them when
      the deleted row's values are not given);
    - exists & equal -> SKIPPED (write {});
    - exists & differs -> UPDATED, write = the differing updateable fields. When none of the differing fields
      is updateable (a master-detail that cannot be reparented) -> SKIPPED with a note; the proof shows them.
    The write never holds Id: the caller sends target_id."""
    if target is None and not target_deleted:
        write: dict[str, Any] = {}
        get = backup.get
        for name, keep_empty in _create_plan(info, fields, restore_empty):
            value = get(name)
            if (value is None or value == "") and not keep_empty:
                continue
            write[name] = value
        if type(backup) is dict and write.keys() == backup.keys():
            write = backup  # the same values (held once while the batch is written)
        return Decision(source_id, None, State.CREATED, write, False, tuple(write))
    current: Mapping[str, Any] = target if target is not None else {}
    compared = _compared(backup, fields, info, restore_empty)
    if target is None:  # deleted, its values unknown: everything the backup holds is written
        changed = [name for name, _f in compared]
    else:
        changed = [name for name, f in compared if not same(backup.get(name), current.get(name), f)]
    write = {}
    fixed: list[str] = []
    for name in changed:
        f = info.fields[name]
        value = backup.get(name)
        if not f.updateable or (value is None and f.sf_type == "boolean"):
            fixed.append(name)
            continue
        write[name] = value
    note = f"cannot be updated: {', '.join(fixed)}" if fixed else ""
    if target_deleted:
        return Decision(source_id, target_id, State.UNDELETED, write, True, tuple(changed), note)
    if not write:
        return Decision(source_id, target_id, State.SKIPPED, {}, False, tuple(changed), note)
    return Decision(source_id, target_id, State.UPDATED, write, False, tuple(changed), note)


def with_deferred(decision: Decision, deferred: Sequence[str]) -> Decision:
    """The decision of an existing record some of whose references differ from the backup's and are written by
    the second pass (a self-lookup or a cycle, deferred until the record it names is restored): those fields
    are among its changed fields, and a record otherwise equal is Updated (its write left to the second pass),
    in a preview as in the real run. A created record is written whole: unchanged."""
    if not deferred or decision.state == State.CREATED:
        return decision
    changed = (*decision.changed_fields, *(n for n in deferred if n not in decision.changed_fields))
    state = State.UPDATED if decision.state == State.SKIPPED else decision.state
    return Decision(
        decision.source_id, decision.target_id, state, decision.write, decision.undelete, changed, decision.note
    )


# ---------------------------------------------------------------- resume after a lost answer


def match_created(
    expected: Mapping[str, Mapping[str, Any]],
    candidates: Sequence[Mapping[str, Any]],
    fields: Sequence[str],
    *,
    info: ObjectInfo | None = None,
) -> dict[str, str]:
    """Resume after a lost answer: expected = source_id -> values written; candidates = rows (with "Id") the
    restoring user created since the batch was sent. A candidate matches a source when they are equal
    (`same`, by field type when `info` is given) on each of `fields` the source wrote a key for (a field not
    written may hold the org's default). Each candidate is used once; identical sources take identical
    candidates in order (which of two identical records gets which new Id does not matter; a source without a
    candidate left is not matched: it is to be created). Returns source_id -> new Id (18 characters) for the
    matched ones."""

    def field_of(name: str) -> FieldInfo | None:
        return info.field(name) if info is not None else None

    common = [name for name in fields if all(name in written for written in expected.values())]
    rows: list[tuple[str, Mapping[str, Any]]] = []
    for row in candidates:
        new_id = row.get("Id")
        if isinstance(new_id, str):
            rows.append((_as_id(new_id) or new_id, row))
    index: dict[tuple[Hashable, ...], list[tuple[str, Mapping[str, Any]]]] = {}
    for new_id, row in rows:
        index.setdefault(tuple(normalized(row.get(k), field_of(k)) for k in common), []).append((new_id, row))
    used: set[str] = set()
    out: dict[str, str] = {}
    for source_id, written in expected.items():
        sig = tuple(normalized(written.get(k), field_of(k)) for k in common)
        rest = [k for k in fields if k in written and k not in common]
        for new_id, row in index.get(sig, ()):
            if new_id in used:
                continue
            if all(same(written.get(k), row.get(k), field_of(k)) for k in rest):
                used.add(new_id)
                out[source_id] = new_id
                break
    return out


def sample_line(object_name: str, source_id: str, fields: Sequence[str], reason: str) -> str:
    """One line for a sample of failures or differences: the object, the record's Id, field names and a reason;
    never a value."""
    names = ", ".join(fields)
    line = f"{object_name} {source_id}"
    if names:
        line += f" [{names}]"
    if reason:
        line += f": {reason}"
    return line
