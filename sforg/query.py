"""SOQL execution: resolve a query against the catalogue, filter and sort stored rows, render them."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sforg import formulas, soql
from sforg.clock import UTC, rest_datetime, to_stamp
from sforg.ids import is_valid, to18
from sforg.schema import TEXT_TYPES, FieldDef, ObjectDef
from sforg.soql import BoolOp, Comparison, FieldRef, Literal, Not, SoqlError, SubQuery, TypeOf

# An address's components: its JSON key and the suffix of its column.
ADDRESS_PARTS = (
    ("city", "City"),
    ("country", "Country"),
    ("geocodeAccuracy", "GeocodeAccuracy"),
    ("latitude", "Latitude"),
    ("longitude", "Longitude"),
    ("postalCode", "PostalCode"),
    ("state", "State"),
    ("street", "Street"),
)
INVALID_FIELD_TAIL = (
    ". If you are attempting to use a custom field, be sure to append the '__c' after the custom "
    "field name. Please reference your WSDL or the describe call for the appropriate names."
)
INVALID_TYPE_TAIL = (
    " is not supported. If you are attempting to use a custom object, be sure to append the '__c' "
    "after the entity name. Please reference your WSDL or the describe call for the appropriate "
    "names."
)

# The `Type` of a polymorphic relationship (What.Type, Who.Type): the API name of the object the Id points to.
POLY_TYPE = FieldDef("Type", "picklist", label="Object Type", length=255, createable=False, updateable=False)
MUST_BE_GROUPED = "Field must be grouped or aggregated: "
# What a polymorphic relationship (Who, What) reaches: the fields of the Name object, whatever the record's type
# (Salesforce's object reference for Name).
NAME_FIELDS = {
    "id",
    "name",
    "type",
    "alias",
    "email",
    "firstname",
    "lastname",
    "isactive",
    "phone",
    "title",
    "userroleid",
    "profileid",
    "recordtypeid",
}

# SQL conditions a scan may apply before the compiled filter runs: (column, one of PREFILTER_OPS, value).
Prefilter = tuple[tuple[str, str, str], ...]


@dataclass
class Context:
    """What a query needs besides the rows: catalogue, hidden fields, today's date for formulas."""

    catalogue: dict[str, ObjectDef]
    hidden: dict[str, set[str]]
    today: dt.date
    now_epoch: float
    prefix_to_object: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.prefix_to_object = {o.key_prefix: o.name for o in self.catalogue.values()}

    def find_object(self, name: str) -> ObjectDef | None:
        for o in self.catalogue.values():
            if o.name.lower() == name.lower():
                return o
        return None

    def visible(self, obj: ObjectDef, name: str) -> FieldDef | None:
        f = obj.field(name)
        if f is None or f.name.lower() in self.hidden.get(obj.name, set()):
            return None
        return f


# ------------------------------------------------------------------ relationship tree


@dataclass
class RelNode:
    """A relationship hop: the reference field on the parent node and the columns needed on its targets."""

    ref: FieldDef | None
    targets: list[ObjectDef]
    name: str  # relationship name (canonical case), '' for the root
    columns: dict[str, list[str]] = field(default_factory=dict)  # object -> stored columns
    children: dict[str, RelNode] = field(default_factory=dict)
    cache: dict[str, tuple[str, tuple[Any, ...]]] = field(default_factory=dict)

    positions: dict[tuple[str, str], int] = field(default_factory=dict)

    def need(self, column: str) -> None:
        for t in self.targets:
            cols = self.columns.setdefault(t.name, ["Id"])
            if t.field(column) and column not in cols:
                cols.append(column)
        self.positions.clear()

    def index(self, obj: str, column: str) -> int:
        # Called per field per row; the positions are cached until the column list changes.
        key = (obj, column)
        pos = self.positions.get(key)
        if pos is None:
            cols = self.columns.get(obj, [])
            pos = self.positions[key] = cols.index(column) if column in cols else -1
        return pos


def deps(f: FieldDef, obj: ObjectDef) -> list[str]:
    """Stored columns a field's value is computed from."""
    if f.formula is not None:
        return formulas.inputs(f)
    if f.type in ("address", "location"):
        return [c.name for c in obj.fields if c.compound == f.name]
    if f.type == "base64":
        return ["Id"]
    return [f.name]


def value_of(f: FieldDef, obj: ObjectDef, node: RelNode, row: tuple[Any, ...], ctx: Context) -> Any:
    """A field's API value from a stored row: bools, stored datetime stamps, compound dicts."""

    def col(name: str) -> Any:
        i = node.index(obj.name, name)
        return row[i] if i >= 0 else None

    t = f.type
    if f is POLY_TYPE:
        return obj.name
    if f.formula is not None:
        return formulas.value(f, tuple(map(col, formulas.inputs(f))), ctx.today)
    if t == "address":
        p = f.name[: -len("Address")]
        vals = {k: col(p + c) for k, c in ADDRESS_PARTS}
        return None if all(v is None for v in vals.values()) else vals
    if t == "location":
        stem = f.name.removesuffix("__c")
        lat, lon = col(f"{stem}__Latitude__s"), col(f"{stem}__Longitude__s")
        return None if lat is None and lon is None else {"latitude": lat, "longitude": lon}
    if t == "base64":
        return ("blob", obj.name, col("Id"), f.name)
    v = col(f.name)
    if t == "boolean":
        return bool(v)
    if v is None:
        return None
    if t == "int":
        return int(v)
    if t in ("double", "currency", "percent"):
        return float(v)
    return v


# ------------------------------------------------------------------ plan


@dataclass
class Column:
    """A resolved field path of the SELECT, WHERE or ORDER BY clause."""

    path: list[str]  # canonical names: relationship names then the field name
    nodes: list[RelNode]  # the root, then one node per hop
    field: FieldDef
    owner: ObjectDef  # object the final field was resolved on (first target for polymorphic hops)

    def get(self, row: tuple[Any, ...], ctx: Context) -> Any:
        node = self.nodes[0]
        obj_name = node.targets[0].name
        values = row
        for nxt in self.nodes[1:]:
            ref = nxt.ref
            assert ref is not None
            i = node.index(obj_name, ref.name)
            rid = values[i] if i >= 0 else None
            if rid is None:
                return None
            hit = nxt.cache.get(rid)
            if hit is None:
                return None
            obj_name, values = hit
            node = nxt
        obj = ctx.catalogue[obj_name]
        if self.field is POLY_TYPE:
            return obj.name
        f = obj.field(self.field.name)
        if f is None:
            return None
        return value_of(f, obj, node, values, ctx)


@dataclass
class Plan:
    query: soql.Query
    obj: ObjectDef
    root: RelNode
    select: list[Any]  # Column | ("count", alias) | ("agg", func, Column|None, alias)
    where: Callable[[tuple[Any, ...]], bool] | None
    where_needs_parents: bool
    order: list[tuple[Column, bool, bool]]
    include_deleted: bool
    count_only: bool = False
    aggregate: bool = False
    subqueries: list[tuple[int, SubQuery]] = field(default_factory=list)
    filter_width: int = 0
    prefilter: Prefilter = ()
    group_by: list[Column] = field(default_factory=list)
    typeofs: list[tuple[TypeOf, FieldDef]] = field(default_factory=list)
    having: Callable[[list[tuple[Any, ...]]], bool] | None = None
    count_conditions: Prefilter | None = None  # COUNT() only: exact_conditions of the WHERE clause

    @property
    def columns(self) -> list[str]:
        return self.root.columns[self.obj.name]


def invalid_field(q: soql.Query, ref: FieldRef, obj: ObjectDef) -> SoqlError:
    name = ref.path[-1] if len(ref.path) == 1 else ref.path[0]
    if len(ref.path) > 1:
        msg = (
            f"Didn't understand relationship '{ref.path[0]}' in field path. If you are attempting to use a "
            "custom relationship, be sure to append the '__r' after the custom relationship name. Please "
            "reference your WSDL or the describe call for the appropriate names."
        )
    else:
        msg = f"No such column '{name}' on entity '{obj.name}'{INVALID_FIELD_TAIL}"
    return SoqlError("INVALID_FIELD", soql.caret_message(q.text, ref.pos, msg))


def resolve(q: soql.Query, ctx: Context, root: RelNode, ref: FieldRef) -> Column:
    """Walk a field path through relationship names to its final field, registering needed columns."""
    obj = root.targets[0]
    path = list(ref.path)
    if (
        len(path) > 1
        and path[0].lower() == obj.name.lower()
        and not any(f.relationship_name and f.relationship_name.lower() == path[0].lower() for f in obj.fields)
    ):
        path = path[1:]
    node = root
    nodes = [root]
    canonical: list[str] = []
    current = node.targets
    for hop in path[:-1]:
        ref_field = None
        for t in current:
            for f in t.fields:
                if (
                    f.type == "reference"
                    and f.relationship_name
                    and f.relationship_name.lower() == hop.lower()
                    and f.name.lower() not in ctx.hidden.get(t.name, set())
                ):
                    ref_field = f
                    break
            if ref_field:
                break
        if ref_field is None or len(nodes) > 5:
            raise invalid_field(q, ref, obj)
        node.need(ref_field.name)
        child = node.children.get(ref_field.relationship_name or "")
        if child is None:
            targets = [ctx.catalogue[t] for t in ref_field.reference_to if t in ctx.catalogue]
            child = RelNode(ref_field, targets, ref_field.relationship_name or "")
            node.children[child.name] = child
        canonical.append(child.name)
        node = child
        nodes.append(node)
        current = node.targets
    final = None
    owner = current[0] if current else obj
    last_ref = nodes[-1].ref
    polymorphic = last_ref is not None and len(last_ref.reference_to) > 1
    if polymorphic and path[-1].lower() not in NAME_FIELDS:
        msg = f"No such column '{path[-1]}' on entity 'Name'{INVALID_FIELD_TAIL}"
        raise SoqlError("INVALID_FIELD", soql.caret_message(q.text, ref.pos, msg))
    if polymorphic and path[-1].lower() == "type":
        final = POLY_TYPE  # What.Type: the object the polymorphic lookup points to
    for t in current if final is None else []:
        final = ctx.visible(t, path[-1])
        if final:
            owner = t
            break
    if final is None and polymorphic:
        final = FieldDef(path[-1], "string")  # a Name field none of the types has (Who.Alias): always null
    if final is None:
        if len(path) == 1:
            raise invalid_field(q, ref, obj)
        msg = f"No such column '{path[-1]}' on entity '{owner.name}'{INVALID_FIELD_TAIL}"
        raise SoqlError("INVALID_FIELD", soql.caret_message(q.text, ref.pos, msg))
    if final is POLY_TYPE:
        node.need("Id")
    for t in node.targets if final is not POLY_TYPE else []:
        target_field = t.field(final.name)
        if target_field:
            for c in deps(target_field, t):
                node.need(c)
    canonical.append(final.name)
    return Column(canonical, nodes, final, owner)


def date_range(lit: Literal, ctx: Context) -> tuple[dt.date, dt.date]:
    """[start, end) of a relative date literal such as TODAY or LAST_N_DAYS:30."""
    today = dt.datetime.fromtimestamp(ctx.now_epoch, UTC).date()
    one = dt.timedelta(days=1)
    name, n = str(lit.value), lit.n or 0
    if name == "TODAY":
        return today, today + one
    if name == "YESTERDAY":
        return today - one, today
    if name == "TOMORROW":
        return today + one, today + 2 * one
    if name == "LAST_N_DAYS":
        return today - n * one, today + one
    if name == "NEXT_N_DAYS":
        return today + one, today + (n + 1) * one
    if name == "N_DAYS_AGO":
        return today - n * one, today - (n - 1) * one
    if name == "LAST_90_DAYS":
        return today - 90 * one, today + one
    if name == "NEXT_90_DAYS":
        return today + one, today + 91 * one
    week = today - dt.timedelta(days=(today.weekday() + 1) % 7)
    if name == "THIS_WEEK":
        return week, week + 7 * one
    if name == "LAST_WEEK":
        return week - 7 * one, week
    if name == "NEXT_WEEK":
        return week + 7 * one, week + 14 * one
    month = today.replace(day=1)
    nxt = (month + 32 * one).replace(day=1)
    if name == "THIS_MONTH":
        return month, nxt
    if name == "LAST_MONTH":
        return (month - one).replace(day=1), month
    if name == "NEXT_MONTH":
        return nxt, (nxt + 32 * one).replace(day=1)
    year = today.replace(month=1, day=1)
    if name == "THIS_YEAR":
        return year, year.replace(year=year.year + 1)
    if name == "LAST_YEAR":
        return year.replace(year=year.year - 1), year
    if name == "NEXT_YEAR":
        return year.replace(year=year.year + 1), year.replace(year=year.year + 2)
    # N weeks/months/years: approximate with days, enough for backup filters.
    days = {
        "LAST_N_WEEKS": -7,
        "NEXT_N_WEEKS": 7,
        "LAST_N_MONTHS": -30,
        "NEXT_N_MONTHS": 30,
        "LAST_N_YEARS": -365,
        "NEXT_N_YEARS": 365,
    }.get(name, -1) * n
    return (today + days * one, today + one) if days < 0 else (today + one, today + (days + 1) * one)


def _bad_value(q: soql.Query, lit: Literal, f: FieldDef, expected: str) -> SoqlError:
    return SoqlError(
        "INVALID_FIELD",
        soql.caret_message(
            q.text,
            lit.pos,
            f"value of filter criterion for field '{f.name}' must be of type {expected} and should "
            "not be enclosed in quotes",
        ),
    )


def literal_for(q: soql.Query, col: Column, lit: Literal, ctx: Context) -> Any:
    """A literal converted to the comparable form of the column's type (or a date range tuple)."""
    f = col.field
    t = f.type
    if lit.kind == "null":
        return None
    if lit.kind == "dateliteral":
        if t not in ("date", "datetime"):
            raise _bad_value(q, lit, f, t)
        start, end = date_range(lit, ctx)
        if t == "date":
            return ("range", start.isoformat(), end.isoformat())
        return ("range", start.isoformat() + "T00:00:00.000Z", end.isoformat() + "T00:00:00.000Z")
    if t == "boolean":
        if lit.kind != "boolean":
            raise _bad_value(q, lit, f, "boolean")
        return lit.value
    if t in ("int", "double", "currency", "percent"):
        if lit.kind != "number":
            raise _bad_value(q, lit, f, "double" if t != "int" else "int")
        return lit.value
    if t == "datetime":
        if lit.kind not in ("datetime", "date"):
            raise _bad_value(q, lit, f, "dateTime")
        return to_stamp(lit.value)
    if t == "date":
        if lit.kind != "date":
            raise _bad_value(q, lit, f, "date")
        return lit.value
    if lit.kind != "string":
        if lit.kind == "number" and t in TEXT_TYPES:
            raise _bad_value(q, lit, f, "string")
        raise _bad_value(q, lit, f, t)
    if t in ("id", "reference"):
        v = str(lit.value)
        if t == "id" and not is_valid(v):
            raise SoqlError("INVALID_QUERY_FILTER_OPERATOR", f"invalid ID field: {v}")
        return to18(v) if is_valid(v) else v
    return str(lit.value)


def _cmp_value(col: Column, v: Any) -> Any:
    if isinstance(v, str) and col.field.type not in ("id", "reference", "date", "datetime"):
        return v.lower()
    return v


Row = TypeVar("Row")


def _compile_logic(node: Any, compile_part: Callable[[Any], Callable[[Row], bool]]) -> Callable[[Row], bool] | None:
    """AND / OR / NOT of a WHERE or a HAVING, each part compiled by `compile_part`; None for a comparison."""
    if isinstance(node, BoolOp):
        parts = [compile_part(i) for i in node.items]
        if node.op == "AND":
            return lambda r: all(p(r) for p in parts)
        return lambda r: any(p(r) for p in parts)
    if isinstance(node, Not):
        inner = compile_part(node.item)
        return lambda r: not inner(r)
    return None


def compile_where(
    q: soql.Query, node: Any, ctx: Context, root: RelNode, uses_parents: list[bool]
) -> Callable[[tuple[Any, ...]], bool]:
    logic = _compile_logic(node, lambda part: compile_where(q, part, ctx, root, uses_parents))
    if logic is not None:
        return logic
    assert isinstance(node, Comparison) and isinstance(node.field, FieldRef)
    col = resolve(q, ctx, root, node.field)
    if len(col.nodes) > 1:
        uses_parents[0] = True
    f = col.field
    if f.type in ("address", "location", "base64") or (f.type == "textarea" and f.length > 255):
        raise SoqlError(
            "INVALID_FIELD",
            soql.caret_message(q.text, node.field.pos, f"field '{f.name}' can not be filtered in a query call"),
        )

    def get(r: tuple[Any, ...]) -> Any:
        return _cmp_value(col, col.get(r, ctx))

    op = node.op
    if op in ("IN", "NOT IN"):
        assert isinstance(node.value, list)
        values = {_cmp_value(col, literal_for(q, col, lit, ctx)) for lit in node.value}
        if op == "IN":
            return lambda r: get(r) in values
        return lambda r: get(r) not in values
    if op in ("INCLUDES", "EXCLUDES"):
        assert isinstance(node.value, list)
        wanted = [{p.strip().lower() for p in str(lit.value).split(";")} for lit in node.value]

        def includes(r: tuple[Any, ...]) -> bool:
            v = col.get(r, ctx)
            have = {p.lower() for p in v.split(";")} if v else set()
            return any(w <= have for w in wanted)

        return includes if op == "INCLUDES" else (lambda r: not includes(r))
    assert isinstance(node.value, Literal)
    lit = node.value
    if op == "LIKE":
        pattern = re.escape(str(lit.value)).replace("%", ".*").replace("_", ".")
        rx = re.compile(f"^{pattern}$", re.IGNORECASE | re.DOTALL)
        return lambda r: (v := col.get(r, ctx)) is not None and rx.match(str(v)) is not None
    target = literal_for(q, col, lit, ctx)
    if isinstance(target, tuple) and target and target[0] == "range":
        _, lo, hi = target
        checks: dict[str, Callable[[Any], bool]] = {
            "=": lambda v: lo <= v < hi,
            "!=": lambda v: not (lo <= v < hi),
            "<": lambda v: v < lo,
            "<=": lambda v: v < hi,
            ">": lambda v: v >= hi,
            ">=": lambda v: v >= lo,
        }
        check = checks[op]
        return lambda r: (v := get(r)) is not None and check(v)
    target = _cmp_value(col, target)
    if target is None:
        if op == "=":
            return lambda r: get(r) is None
        if op == "!=":
            return lambda r: get(r) is not None
        return lambda r: False
    if op == "=":
        return lambda r: get(r) == target
    if op == "!=":
        return lambda r: get(r) != target
    cmp: dict[str, Callable[[Any], bool]] = {
        "<": lambda v: v < target,
        "<=": lambda v: v <= target,
        ">": lambda v: v > target,
        ">=": lambda v: v >= target,
    }
    c = cmp[op]
    return lambda r: (v := get(r)) is not None and c(v)


# ------------------------------------------------------------------ prefilter (pushed down into the scan)
#
# A backup's window query (SystemModstamp >= X AND SystemModstamp < Y, plus its keyset condition) matches a
# sliver of the object; filtering every row in Python makes it cost the whole object. The WHERE clause's
# top-level ANDed range and equality conditions on the columns the store indexes become SQL conditions of the
# scan, so SQLite reads only the range from the index. The compiled filter still runs on every row that comes
# back: the prefilter only has to keep every row the filter keeps. It compares the very values the filter
# compares (the stored text and the literal as literal_for converts it), with SQLite's BINARY collation, which
# orders text as Python does.

INDEXED = {"Id": "id", "SystemModstamp": "datetime"}  # column -> field type; "Id" is UNIQUE, SystemModstamp indexed
PREFILTER_OPS = ("=", "<", "<=", ">", ">=")
# The stored datetime form (clock.stamp): only for it does text order agree with time order.
STAMP_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")


@dataclass(frozen=True)
class Interval:
    """The values a condition lets through on one column: from lo to hi, None being unbounded."""

    lo: str | None = None
    lo_open: bool = False
    hi: str | None = None
    hi_open: bool = False

    def meet(self, other: Interval) -> Interval:
        """Both conditions hold (AND): the tighter bound on each side."""
        lo, lo_open = _tighter(self.lo, self.lo_open, other.lo, other.lo_open, max)
        hi, hi_open = _tighter(self.hi, self.hi_open, other.hi, other.hi_open, min)
        return Interval(lo, lo_open, hi, hi_open)

    def join(self, other: Interval) -> Interval:
        """Either condition holds (OR): the looser bound on each side (the hull, a superset of the union)."""
        lo, lo_open = _looser(self.lo, self.lo_open, other.lo, other.lo_open, min)
        hi, hi_open = _looser(self.hi, self.hi_open, other.hi, other.hi_open, max)
        return Interval(lo, lo_open, hi, hi_open)

    def sql(self, column: str) -> Prefilter:
        if self.lo is not None and self.lo == self.hi and not self.lo_open and not self.hi_open:
            return ((column, "=", self.lo),)
        out: list[tuple[str, str, str]] = []
        if self.lo is not None:
            out.append((column, ">" if self.lo_open else ">=", self.lo))
        if self.hi is not None:
            out.append((column, "<" if self.hi_open else "<=", self.hi))
        return tuple(out)


def _tighter(a: str | None, a_open: bool, b: str | None, b_open: bool, pick: Any) -> tuple[str | None, bool]:
    """The stricter of two bounds on one side (pick: max for lower bounds, min for upper bounds)."""
    if a is None:
        return b, b_open
    if b is None:
        return a, a_open
    if a == b:
        return a, a_open or b_open
    return (a, a_open) if pick(a, b) == a else (b, b_open)


def _looser(a: str | None, a_open: bool, b: str | None, b_open: bool, pick: Any) -> tuple[str | None, bool]:
    """The laxer of two bounds on one side (pick: min for lower bounds, max for upper bounds)."""
    if a is None or b is None:
        return None, False
    if a == b:
        return a, a_open and b_open
    return (a, a_open) if pick(a, b) == a else (b, b_open)


def _indexed(f: FieldDef) -> bool:
    return INDEXED.get(f.name) == f.type


def _comparison_bounds(
    q: soql.Query, ctx: Context, obj: ObjectDef, node: Comparison, usable_field: Callable[[FieldDef], bool] = _indexed
) -> dict[str, Interval]:
    """The interval a comparison confines a root object's column to ({} when it does not), for the columns
    usable_field accepts (by default those the store indexes)."""
    if node.op not in (*PREFILTER_OPS, "IN") or not isinstance(node.field, FieldRef):
        return {}
    try:
        c = resolve(q, ctx, RelNode(None, [obj], ""), node.field)  # a scratch root: no columns registered
    except SoqlError:
        return {}
    f = c.field
    if len(c.nodes) != 1 or not usable_field(f) or not f.stored:
        return {}

    def usable(v: Any) -> bool:
        return isinstance(v, str) and (f.type != "datetime" or STAMP_RE.fullmatch(v) is not None)

    try:
        if node.op == "IN":
            assert isinstance(node.value, list)
            values = [_cmp_value(c, literal_for(q, c, lit, ctx)) for lit in node.value]
            if not values or not all(usable(v) for v in values):
                return {}
            return {f.name: Interval(min(values), False, max(values), False)}
        assert isinstance(node.value, Literal)
        target = literal_for(q, c, node.value, ctx)
    except SoqlError:
        return {}
    op = node.op
    if isinstance(target, tuple) and target and target[0] == "range":
        # A date literal on a datetime: [lo, hi), with the checks compile_where applies.
        _, lo, hi = target
        if not (usable(lo) and usable(hi)):
            return {}
        ranges = {
            "=": Interval(lo, False, hi, True),
            "<": Interval(hi=lo, hi_open=True),
            "<=": Interval(hi=hi, hi_open=True),
            ">": Interval(lo=hi),
            ">=": Interval(lo=lo),
        }
        return {f.name: ranges[op]}
    target = _cmp_value(c, target)
    if not usable(target):
        return {}  # NULL (= null matches NULLs) or a value whose text order is not the filter's order
    plain = {
        "=": Interval(target, False, target, False),
        "<": Interval(hi=target, hi_open=True),
        "<=": Interval(hi=target),
        ">": Interval(lo=target, lo_open=True),
        ">=": Interval(lo=target),
    }
    return {f.name: plain[op]}


def implied_bounds(q: soql.Query, ctx: Context, obj: ObjectDef, node: Any) -> dict[str, Interval]:
    """Intervals every row matching node lies in, per indexed column (a column left out is unconstrained).

    AND intersects its items' intervals; OR keeps a column only when every branch constrains it, as the hull
    of the branches' intervals (the keyset condition (S > X OR (S = X AND Id > Y)) gives S >= X); NOT gives
    nothing.
    """
    if isinstance(node, Comparison):
        return _comparison_bounds(q, ctx, obj, node)
    if isinstance(node, BoolOp):
        parts = [implied_bounds(q, ctx, obj, item) for item in node.items]
        if node.op == "AND":
            out: dict[str, Interval] = {}
            for p in parts:
                for column, iv in p.items():
                    out[column] = out[column].meet(iv) if column in out else iv
            return out
        common = set.intersection(*(set(p) for p in parts)) if parts else set()
        joined: dict[str, Interval] = {}
        for column in common:
            iv = parts[0][column]
            for p in parts[1:]:
                iv = iv.join(p[column])
            joined[column] = iv
        return joined
    return {}


def plan_prefilter(q: soql.Query, ctx: Context, obj: ObjectDef) -> Prefilter:
    """SQL conditions (column, operator, value) keeping a superset of the rows q's WHERE clause matches."""
    if q.where is None:
        return ()
    bounds = implied_bounds(q, ctx, obj, q.where)
    return tuple(cond for column in INDEXED if column in bounds for cond in bounds[column].sql(column))


# COUNT() (a backup's count check: SELECT COUNT() FROM X WHERE CreatedDate <= T) is answered by SQLite's
# count(*) when the prefilter's conditions say exactly what the WHERE clause says: the WHERE is comparisons
# (= < <= > >=, no IN, no NULL) ANDed together, each on a stored Id or datetime column of the root object. On
# those the compiled filter compares the stored text with the converted literal as SQLite's BINARY collation
# does, and a NULL matches no comparison in either.


def _countable(f: FieldDef) -> bool:
    return f.type in ("id", "datetime")


def exact_conditions(q: soql.Query, ctx: Context, obj: ObjectDef) -> Prefilter | None:
    """SQL conditions matching exactly the rows q's WHERE clause matches, or None when there are none such."""
    if q.where is None:
        return ()
    stack, comparisons = [q.where], []
    while stack:
        node = stack.pop()
        if isinstance(node, BoolOp) and node.op == "AND":
            stack.extend(node.items)
        elif isinstance(node, Comparison) and node.op in PREFILTER_OPS:
            comparisons.append(node)
        else:
            return None
    bounds: dict[str, Interval] = {}
    for node in comparisons:
        one = _comparison_bounds(q, ctx, obj, node, _countable)
        if not one:
            return None
        for column, iv in one.items():
            bounds[column] = bounds[column].meet(iv) if column in bounds else iv
    return tuple(cond for column, iv in bounds.items() for cond in iv.sql(column))


def _filters_by_id(where: Any, fields: tuple[str, ...]) -> bool:
    """Whether a WHERE clause restricts one of the fields with = or IN at its top level (ANDed)."""
    wanted = {f.lower() for f in fields}
    items = where.items if isinstance(where, BoolOp) and where.op == "AND" else [where]
    return any(
        isinstance(i, Comparison)
        and isinstance(i.field, FieldRef)
        and i.op in ("=", "IN")
        and i.field.path[-1].lower() in wanted
        for i in items
    )


def plan_query(text: str, ctx: Context, include_deleted: bool, bulk: bool = False) -> Plan:
    q = soql.parse(text)
    obj = ctx.find_object(q.sobject)
    if obj is None or obj.flags.get("queryable") is False:
        # a change or platform event is listed but not queryable: a real org answers as for an unknown type
        raise SoqlError(
            "INVALID_TYPE",
            soql.caret_message(q.text, q.sobject_pos, f"sObject type '{q.sobject}'" + INVALID_TYPE_TAIL),
        )
    if q.offset is not None and q.offset > 2000:
        raise SoqlError("NUMBER_OUTSIDE_VALID_RANGE", "Maximum SOQL offset allowed is 2000")
    if obj.name == "ContentDocumentLink" and not _filters_by_id(q.where, ("ContentDocumentId", "LinkedEntityId")):
        raise SoqlError(
            "MALFORMED_QUERY",
            "Implementation restriction: ContentDocumentLink requires a filter by a single Id on "
            "ContentDocumentId or LinkedEntityId using the equals operator or multiple Id's using the IN "
            "operator.",
        )
    root = RelNode(None, [obj], "")
    root.need("Id")

    group_cols = [resolve(q, ctx, RelNode(None, [obj], ""), g) for g in q.group_by]
    grouped = {".".join(c.path).lower() for c in group_cols}
    has_aggregate = any(isinstance(i, soql.Aggregate) and i.func not in ("FIELDS",) and i.arg for i in q.select)

    def resolve_select(
        root: RelNode,
    ) -> tuple[list[Any], bool, bool, list[tuple[int, SubQuery]], list[tuple[TypeOf, FieldDef]]]:
        select: list[Any] = []
        count_only = False
        aggregate = bool(q.group_by)
        subqueries: list[tuple[int, SubQuery]] = []
        typeofs: list[tuple[TypeOf, FieldDef]] = []
        for item in q.select:
            if isinstance(item, FieldRef):
                col = resolve(q, ctx, root, item)
                if (q.group_by or has_aggregate) and ".".join(col.path).lower() not in grouped:
                    raise SoqlError(
                        "MALFORMED_QUERY", soql.caret_message(q.text, item.pos, MUST_BE_GROUPED + item.text)
                    )
                select.append(col)
            elif isinstance(item, SubQuery):
                if bulk:
                    raise SoqlError(
                        "INVALIDJOB",
                        "Unsupported query: parent-to-child relationship queries are not supported by the Bulk API",
                    )
                subquery_plan(q, ctx, obj, item, include_deleted)  # unknown relationship or field: fails at once
                subqueries.append((len(select), item))
                select.append(item)
            elif isinstance(item, TypeOf):
                if bulk:
                    raise SoqlError("INVALIDJOB", "Unsupported query: TYPEOF is not supported by the Bulk API")
                ref = typeof_reference(q, ctx, obj, item)
                root.need(ref.name)
                typeofs.append((item, ref))
                select.append(("typeof", item, ref))
            elif item.func == "FIELDS":
                which = item.arg.path[0] if item.arg else "ALL"
                for f in obj.fields:
                    if f.name.lower() in ctx.hidden.get(obj.name, set()):
                        continue
                    if (which == "CUSTOM" and not f.custom) or (which == "STANDARD" and f.custom):
                        continue
                    select.append(resolve(q, ctx, root, FieldRef([f.name], item.pos)))
            elif item.func == "COUNT" and item.arg is None:
                if len(q.select) > 1:
                    raise SoqlError(
                        "MALFORMED_QUERY",
                        soql.caret_message(q.text, item.pos, "COUNT() and other fields cannot be selected together"),
                    )
                count_only = True
            else:
                if bulk:
                    raise SoqlError(
                        "INVALIDJOB",
                        "Unsupported query: aggregate functions are not supported by the Bulk API",
                    )
                aggregate = True
                arg_col = resolve(q, ctx, root, item.arg) if item.arg else None
                select.append(("agg", item.func, arg_col, item.alias))
        return select, count_only, aggregate, subqueries, typeofs

    # Select-list errors come first, as Salesforce reports them; a scratch pass finds them.
    resolve_select(RelNode(None, [obj], ""))
    uses_parents = [False]
    where = compile_where(q, q.where, ctx, root, uses_parents) if q.where is not None else None
    order = []
    for o in q.order:
        col = resolve(q, ctx, root, o.field)
        if len(col.nodes) > 1:
            uses_parents[0] = True
        if col.field.type in ("address", "location", "base64", "multipicklist"):
            raise SoqlError(
                "INVALID_FIELD",
                soql.caret_message(q.text, o.field.pos, f"field '{col.field.name}' can not be sorted in a query call"),
            )
        order.append((col, o.desc, o.nulls_first))
    # WHERE and ORDER BY columns are resolved first, so they are a prefix of the root's column list:
    # the filtering scan reads only that prefix, the page fetch reads everything.
    filter_width = len(root.columns[obj.name])
    group_cols = [resolve(q, ctx, root, g) for g in q.group_by]
    if any(len(c.nodes) > 1 for c in group_cols):
        uses_parents[0] = True
    select, count_only, aggregate, subqueries, typeofs = resolve_select(root)
    having = compile_having(q, q.having, ctx, root, grouped) if q.having is not None else None
    seen: set[str] = set()
    for item in select:
        if isinstance(item, Column):
            key = ".".join(item.path).lower()
            if key in seen:
                raise SoqlError("MALFORMED_QUERY", f"duplicate field selected: {'.'.join(item.path)}")
            seen.add(key)
    if bulk:
        for s in select:
            if isinstance(s, Column) and s.field.type in ("address", "location"):
                raise SoqlError("INVALIDJOB", "Selecting compound data not supported in Bulk Query")
            if isinstance(s, Column) and s.field.type == "base64":
                raise SoqlError(
                    "INVALIDJOB",
                    f"Unsupported query: base64 field {s.field.name} is not supported by the Bulk API",
                )
        if q.offset is not None:
            raise SoqlError("INVALIDJOB", "Unsupported query: OFFSET is not supported by the Bulk API")
    return Plan(
        q,
        obj,
        root,
        select,
        where,
        uses_parents[0],
        order,
        include_deleted or q.all_rows,
        count_only,
        aggregate,
        subqueries,
        filter_width,
        plan_prefilter(q, ctx, obj),
        group_cols,
        typeofs,
        having,
        exact_conditions(q, ctx, obj) if count_only else None,
    )


def compile_having(
    q: soql.Query, node: Any, ctx: Context, root: RelNode, grouped: set[str]
) -> Callable[[list[tuple[Any, ...]]], bool]:
    """HAVING as a test of one group's rows: aggregates of the group, or grouped fields (equal in every row)."""
    logic = _compile_logic(node, lambda part: compile_having(q, part, ctx, root, grouped))
    if logic is not None:
        return logic
    assert isinstance(node, Comparison)
    lits = node.value if isinstance(node.value, list) else [node.value]
    get: Callable[[list[tuple[Any, ...]]], Any]
    if isinstance(node.field, soql.Aggregate):
        agg = node.field
        col = resolve(q, ctx, root, agg.arg) if agg.arg else None
        if agg.func in ("COUNT", "COUNT_DISTINCT"):
            for lit in lits:
                if lit.kind != "number":
                    raise _bad_value(q, lit, FieldDef(f"{agg.func}()", "int"), "int")
            targets = [lit.value for lit in lits]
        else:
            assert col is not None
            targets = [_cmp_value(col, literal_for(q, col, lit, ctx)) for lit in lits]

        def get(g: list[tuple[Any, ...]], a: soql.Aggregate = agg, c: Column | None = col) -> Any:
            v = _aggregate_raw(a.func, c, g, ctx)
            return _cmp_value(c, v) if c is not None else v

    else:
        col = resolve(q, ctx, root, node.field)
        if ".".join(col.path).lower() not in grouped:
            raise SoqlError(
                "MALFORMED_QUERY", soql.caret_message(q.text, node.field.pos, MUST_BE_GROUPED + node.field.text)
            )
        targets = [_cmp_value(col, literal_for(q, col, lit, ctx)) for lit in lits]

        def get(g: list[tuple[Any, ...]], c: Column = col) -> Any:
            return _cmp_value(c, c.get(g[0], ctx)) if g else None

    op = node.op
    checks: dict[str, Callable[[Any, Any], bool]] = {
        "=": lambda v, t: v == t,
        "!=": lambda v, t: v != t,
        "<": lambda v, t: v is not None and t is not None and v < t,
        "<=": lambda v, t: v is not None and t is not None and v <= t,
        ">": lambda v, t: v is not None and t is not None and v > t,
        ">=": lambda v, t: v is not None and t is not None and v >= t,
    }
    if op in ("IN", "NOT IN"):
        return lambda g: (get(g) in targets) == (op == "IN")
    if op not in checks:
        raise SoqlError("MALFORMED_QUERY", soql.caret_message(q.text, lits[0].pos, f"unexpected token: {op}"))
    check = checks[op]
    return lambda g: check(get(g), targets[0])


def child_relationship(q: soql.Query, ctx: Context, parent: ObjectDef, sq: SubQuery) -> tuple[FieldDef, ObjectDef]:
    """The lookup field and child object a subquery's FROM names: Contacts, or qualified Account.Contacts."""
    rel = sq.query.sobject
    if "." in rel:
        qualifier, _, rel = rel.rpartition(".")
        if qualifier.lower() != parent.name.lower():
            rel = sq.query.sobject  # reported whole below
    found: tuple[FieldDef, ObjectDef] | None = None
    for o in ctx.catalogue.values():
        for f in o.fields:
            if (
                f.type == "reference"
                and f.child_relationship
                and f.child_relationship.lower() == rel.lower()
                and parent.name in f.reference_to
                and f.name.lower() not in ctx.hidden.get(o.name, set())
            ):
                found = (f, o)
    if found is None:
        raise SoqlError(
            "INVALID_TYPE",
            soql.caret_message(
                q.text,
                sq.query.sobject_pos,
                f"Didn't understand relationship '{rel}' in FROM part of query call. "
                "If you are attempting to use a custom relationship, be sure to append the '__r' after the "
                "custom relationship name. Please reference your WSDL or the describe call for the "
                "appropriate names.",
            ),
        )
    return found


def typeof_reference(q: soql.Query, ctx: Context, obj: ObjectDef, t: TypeOf) -> FieldDef:
    """The polymorphic lookup a TYPEOF names, after checking every WHEN object and every field it lists."""
    ref = next(
        (
            f
            for f in obj.fields
            if f.type == "reference"
            and f.relationship_name
            and f.relationship_name.lower() == t.relationship.lower()
            and f.name.lower() not in ctx.hidden.get(obj.name, set())
        ),
        None,
    )
    if ref is None:
        raise invalid_field(q, FieldRef([t.relationship, "Id"], t.pos), obj)
    for name, fields in typeof_branches(ctx, ref, t):
        target = ctx.catalogue[name]
        for fr in fields:
            resolve(q, ctx, RelNode(None, [target], ""), fr)
    for name, _fields in t.whens:
        if not any(r.lower() == name.lower() for r in ref.reference_to):
            raise SoqlError(
                "INVALID_FIELD",
                soql.caret_message(q.text, t.pos, f"TYPEOF {ref.relationship_name}: {name} is not one of its types"),
            )
    return ref


def typeof_branches(ctx: Context, ref: FieldDef, t: TypeOf) -> list[tuple[str, list[FieldRef]]]:
    """(object, fields) for every object the lookup may point to: its WHEN fields, else the ELSE fields."""
    out = []
    for target in ref.reference_to:
        if target not in ctx.catalogue:
            continue
        fields = next((f for name, f in t.whens if name.lower() == target.lower()), t.otherwise)
        if fields:
            out.append((target, fields))
    return out


def render_typeof(
    plan: Plan, t: TypeOf, ref: FieldDef, rows: list[tuple[Any, ...]], ctx: Context, version: str, src: RowSource
) -> dict[str, dict[str, Any]]:
    """Referenced Id -> the record a TYPEOF renders for it (its type's fields); Ids of other types are left out."""
    i = plan.root.index(plan.obj.name, ref.name)
    ids = {r[i] for r in rows if i >= 0 and r[i]}
    out: dict[str, dict[str, Any]] = {}
    for target, fields in typeof_branches(ctx, ref, t):
        prefix = ctx.catalogue[target].key_prefix
        wanted = [rid for rid in ids if rid[:3] == prefix]
        if not wanted:
            continue
        inner = soql.Query(list(fields), target, t.pos, text=plan.query.text)
        sub = _plan_from_ast(inner, ctx, plan.include_deleted)
        fetched = src.fetch_ids(target, sub.columns[1:], wanted)
        trows = [(rid, *vals) for rid, vals in fetched.items()]
        load_parents(sub.root, trows, target, src, ctx)
        for rid, rec in zip(fetched, render_rest(sub, trows, ctx, version, src), strict=True):
            out[rid] = rec
    return out


# ------------------------------------------------------------------ execution


class RowSource:
    """What the executor needs from the store (kept small so tests can fake it)."""

    def scan(
        self, obj: str, columns: list[str], include_deleted: bool, prefilter: Prefilter = ()
    ) -> Iterator[tuple[Any, ...]]:
        """The rows in rowid order. prefilter holds conditions every row the plan matches meets: a source may
        apply them to read less, or ignore them (the compiled filter runs on whatever comes back)."""
        raise NotImplementedError

    def run_of_rowids(self, obj: str, include_deleted: bool) -> range | None:
        """The live (or, with include_deleted, all) rowids of obj when they are one consecutive run, else None.
        Optional: a source returning None always just makes execute scan."""
        return None

    def scan_by_id(
        self, obj: str, columns: list[str], include_deleted: bool, prefilter: Prefilter = ()
    ) -> Iterator[tuple[Any, ...]] | None:
        """As scan, but the rows in ascending Id order (NULL Ids first, ties in rowid order), or None when the
        source cannot: execute then sorts in Python."""
        return None

    def count(self, obj: str, include_deleted: bool, conditions: Prefilter) -> int | None:
        """How many (live, or with include_deleted all) rows of obj meet every condition, or None when the
        source cannot count (count_matches then runs the query)."""
        return None

    def fetch_rowids(self, obj: str, columns: list[str], rowids: Sequence[int]) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def fetch_ids(self, obj: str, columns: list[str], ids: list[str]) -> dict[str, tuple[Any, ...]]:
        raise NotImplementedError

    def children(
        self, obj: str, columns: list[str], ref: str, parent_ids: list[str], include_deleted: bool
    ) -> list[tuple[Any, ...]]:
        raise NotImplementedError


def load_parents(node: RelNode, rows: Iterable[tuple[Any, ...]], obj_name: str, src: RowSource, ctx: Context) -> None:
    """Fill each child node's cache with the parent rows the given rows point to, recursively."""
    rows = list(rows)
    for child in node.children.values():
        assert child.ref is not None
        i = node.index(obj_name, child.ref.name)
        if i < 0:
            continue
        ids = {r[i] for r in rows if r[i] is not None and r[i] not in child.cache}
        by_obj: dict[str, list[str]] = {}
        for rid in ids:
            target = ctx.prefix_to_object.get(rid[:3])
            if target and any(t.name == target for t in child.targets):
                by_obj.setdefault(target, []).append(rid)
        for target, tids in by_obj.items():
            cols = child.columns.get(target, ["Id"])
            fetched = src.fetch_ids(target, cols[1:], tids)
            for rid, vals in fetched.items():
                child.cache[rid] = (target, (rid, *vals))
            load_parents(child, [(rid, *vals) for rid, vals in fetched.items()], target, src, ctx)


def _sort_key(col: Column, desc: bool, nulls_first: bool, ctx: Context) -> Callable[[tuple[Any, ...]], Any]:
    null_key = (2 if desc else 0) if nulls_first else (0 if desc else 2)

    def key(r: tuple[Any, ...]) -> Any:
        v = col.get(r, ctx)
        if v is None:
            return (null_key, "")
        return (
            1,
            v.lower()
            if isinstance(v, str) and col.field.type in TEXT_TYPES and col.field.type not in ("id", "reference")
            else v,
        )

    return key


def _by_id_only(plan: Plan) -> bool:
    """Whether the plan sorts by the root object's Id alone, ascending with NULLs first (SOQL's default): the
    order of a scan in Id order. Ids are unique, and Python's str order is SQLite's BINARY order of UTF-8."""
    if len(plan.order) != 1:
        return False
    col, desc, nulls_first = plan.order[0]
    return len(col.nodes) == 1 and col.field.name == "Id" and col.field.type == "id" and not desc and nulls_first


def execute(plan: Plan, src: RowSource, ctx: Context) -> Sequence[int]:
    """Rowids of the matching rows, filtered, sorted, offset and limited (a range when they are one run)."""
    cols = plan.columns
    q = plan.query
    if plan.where is None and not plan.order:
        # No filter and no sort: the rowids of the (live) rows are the answer.
        run = src.run_of_rowids(plan.obj.name, plan.include_deleted)
        rowids: Sequence[int]
        if run is not None:
            rowids = run
        else:
            rowids = [r[0] for r in src.scan(plan.obj.name, ["_rowid"], plan.include_deleted)]
        if plan.aggregate:
            return rowids  # LIMIT and OFFSET count result rows (groups), not the rows aggregated
        rowids = rowids[q.offset or 0 :]
        return rowids if q.limit is None else rowids[: q.limit]
    matched: list[tuple[Any, ...]] = []
    batch: list[tuple[Any, ...]] = []

    def flush() -> None:
        if plan.where_needs_parents:
            load_parents(plan.root, [r[1:] for r in batch], plan.obj.name, src, ctx)
        if plan.where is None:
            matched.extend(batch)
        else:
            w = plan.where
            matched.extend(r for r in batch if w(r[1:]))
        batch.clear()

    width = plan.filter_width or len(cols)
    scan_cols = ["_rowid", *cols[:width]]
    # Sorted by Id alone: SQLite reads the rows in that order off the Id index and nothing is sorted here (nor
    # any column read when nothing is filtered).
    rows = None
    if _by_id_only(plan):
        by_id_cols = scan_cols if plan.where is not None else ["_rowid"]
        rows = src.scan_by_id(plan.obj.name, by_id_cols, plan.include_deleted, plan.prefilter)
    presorted = rows is not None
    if rows is None:
        rows = src.scan(plan.obj.name, scan_cols, plan.include_deleted, prefilter=plan.prefilter)
    for r in rows:
        batch.append(r)
        if len(batch) >= 20000:
            flush()
    flush()
    if plan.order and not presorted:
        if not plan.where_needs_parents:
            load_parents(plan.root, [r[1:] for r in matched], plan.obj.name, src, ctx)
        for col, desc, nulls_first in reversed(plan.order):
            key = _sort_key(col, desc, nulls_first, ctx)

            def by_key(r: tuple[Any, ...], k: Callable[[tuple[Any, ...]], Any] = key) -> Any:
                return k(r[1:])

            matched.sort(key=by_key, reverse=desc)
    rowids = [r[0] for r in matched]
    if q.offset and not plan.aggregate:
        rowids = rowids[q.offset :]
    if q.limit is not None and not plan.aggregate:
        rowids = rowids[: q.limit]
    for child in plan.root.children.values():
        child.cache.clear()
    return rowids


def count_matches(plan: Plan, src: RowSource, ctx: Context) -> int:
    """COUNT()'s totalSize: the matching rows after OFFSET and LIMIT, counted by the source when it can."""
    n = None
    if plan.count_conditions is not None:
        n = src.count(plan.obj.name, plan.include_deleted, plan.count_conditions)
    if n is None:
        return len(execute(plan, src, ctx))
    n = max(0, n - (plan.query.offset or 0))
    return n if plan.query.limit is None else min(n, plan.query.limit)


def _aggregate_raw(func: str, col: Column | None, rows: list[tuple[Any, ...]], ctx: Context) -> Any:
    """An aggregate of rows, in the stored form (MIN/MAX of a datetime: its stored stamp)."""
    values = [col.get(r, ctx) for r in rows] if col else [1] * len(rows)
    present = [v for v in values if v is not None]
    if func == "COUNT":
        return len(present)
    if func == "COUNT_DISTINCT":
        return len({v.lower() if isinstance(v, str) else v for v in present})
    if not present:
        return None
    if func in ("MIN", "MAX"):
        return min(present) if func == "MIN" else max(present)
    if func == "SUM":
        return sum(present)
    return sum(present) / len(present)  # AVG


def _aggregate(func: str, col: Column | None, rows: list[tuple[Any, ...]], ctx: Context, version: str) -> Any:
    v = _aggregate_raw(func, col, rows, ctx)
    if func in ("MIN", "MAX") and col is not None:
        return _rest_value(col.field, v, version)
    return v


def aggregate_records(
    plan: Plan, rowids: Sequence[int], src: RowSource, ctx: Context, version: str = "62.0"
) -> list[dict[str, Any]]:
    """AggregateResult records: one per GROUP BY group (in the order rows come, ORDER BY applied to them),
    or a single one without GROUP BY. Unaliased aggregates are named expr0, expr1, … in select order;
    grouped fields keep their field name. LIMIT and OFFSET apply to these records."""
    rows = fetch_page(plan, src, ctx, rowids)
    groups: dict[tuple[Any, ...], list[tuple[Any, ...]]] = {}
    if plan.group_by:
        for r in rows:
            groups.setdefault(tuple(c.get(r, ctx) for c in plan.group_by), []).append(r)
    else:
        groups[()] = rows
    out = []
    for members in groups.values():
        if plan.having is not None and not plan.having(members):
            continue
        rec: dict[str, Any] = {"attributes": {"type": "AggregateResult"}}
        n = 0
        for item in plan.select:
            if isinstance(item, Column):
                rec[item.path[-1]] = _rest_value(item.field, item.get(members[0], ctx), version)
                continue
            func, col, alias = item[1], item[2], item[3]
            name = alias or f"expr{n}"
            if not alias:
                n += 1
            rec[name] = _aggregate(func, col, members, ctx, version)
        out.append(rec)
    for child in plan.root.children.values():
        child.cache.clear()
    q = plan.query
    out = out[q.offset or 0 :]
    return out if q.limit is None else out[: q.limit]


def fetch_page(plan: Plan, src: RowSource, ctx: Context, rowids: Sequence[int]) -> list[tuple[Any, ...]]:
    rows = src.fetch_rowids(plan.obj.name, plan.columns, rowids)
    load_parents(plan.root, rows, plan.obj.name, src, ctx)
    return rows


def _rest_value(f: FieldDef, v: Any, version: str) -> Any:
    if v is None:
        return None
    if f.type == "datetime":
        return rest_datetime(v)
    if f.type == "base64":
        _, obj, rid, name = v
        return f"/services/data/v{version}/sobjects/{obj}/{rid}/{name}"
    return v


def render_rest(
    plan: Plan, rows: list[tuple[Any, ...]], ctx: Context, version: str, src: RowSource
) -> list[dict[str, Any]]:
    """Records as the REST query resource returns them (nested parents with their own attributes)."""
    sub_results = [render_subquery(plan, sq, rows, ctx, version, src) for _idx, sq in plan.subqueries]
    typeof_results = {id(t): render_typeof(plan, t, ref, rows, ctx, version, src) for t, ref in plan.typeofs}
    out = []
    obj = plan.obj.name
    id_index = plan.root.index(obj, "Id")
    for r in rows:
        rec: dict[str, Any] = {
            "attributes": {"type": obj, "url": f"/services/data/v{version}/sobjects/{obj}/{r[id_index]}"}
        }
        sub_n = 0
        for item in plan.select:
            if isinstance(item, SubQuery):
                name, per_parent = sub_results[sub_n]
                rec[name] = per_parent.get(r[id_index])
                sub_n += 1
                continue
            if isinstance(item, tuple) and item[0] == "typeof":
                _, t, ref = item
                ri = plan.root.index(obj, ref.name)
                target_id = r[ri] if ri >= 0 else None
                rec[ref.relationship_name or t.relationship] = typeof_results[id(t)].get(target_id or "")
                continue
            col: Column = item
            target = rec
            node = col.nodes[0]
            obj_name = obj
            values: tuple[Any, ...] | None = r
            for hop_name, nxt in zip(col.path[:-1], col.nodes[1:], strict=True):
                if values is None:
                    break
                assert nxt.ref is not None
                i = node.index(obj_name, nxt.ref.name)
                rid = values[i] if i >= 0 else None
                hit = nxt.cache.get(rid) if rid else None
                if hit is None:
                    target.setdefault(hop_name, None)
                    values = None
                    break
                obj_name, values = hit
                existing = target.get(hop_name)
                if existing is None:
                    existing = {
                        "attributes": {
                            "type": obj_name,
                            "url": f"/services/data/v{version}/sobjects/{obj_name}/{values[0]}",
                        }
                    }
                    target[hop_name] = existing
                target = existing
                node = nxt
            if values is None:
                continue
            pobj = ctx.catalogue[obj_name]
            f = col.field if col.field is POLY_TYPE else pobj.field(col.field.name)
            v = value_of(f, pobj, node, values, ctx) if f else None
            target[col.path[-1]] = _rest_value(col.field, v, version)
        out.append(rec)
    return out


def render_subquery(
    plan: Plan,
    sq: SubQuery,
    rows: list[tuple[Any, ...]],
    ctx: Context,
    version: str,
    src: RowSource,
) -> tuple[str, dict[str, Any]]:
    """A child subquery evaluated for the parents of one page: name -> {parentId: result or None}."""
    child_field, child_obj, sub_plan = subquery_plan(plan.query, ctx, plan.obj, sq, plan.include_deleted)
    id_index = plan.root.index(plan.obj.name, "Id")
    parent_ids = [r[id_index] for r in rows]
    crow = src.children(child_obj.name, sub_plan.columns, child_field.name, parent_ids, plan.include_deleted)
    load_parents(sub_plan.root, crow, child_obj.name, src, ctx)
    ref_i = sub_plan.root.index(child_obj.name, child_field.name)
    grouped: dict[str, list[tuple[Any, ...]]] = {}
    for r in crow:
        if sub_plan.where is None or sub_plan.where(r):
            grouped.setdefault(r[ref_i], []).append(r)
    result: dict[str, Any] = {}
    for pid, crows in grouped.items():
        for col, desc, nulls_first in reversed(sub_plan.order):
            crows.sort(key=_sort_key(col, desc, nulls_first, ctx), reverse=desc)
        if sub_plan.query.limit is not None:
            crows = crows[: sub_plan.query.limit]
        recs = render_rest(sub_plan, crows, ctx, version, src)
        result[pid] = {"totalSize": len(recs), "done": True, "records": recs}
    return (child_field.child_relationship or sq.query.sobject), result


def subquery_plan(
    q: soql.Query, ctx: Context, parent: ObjectDef, sq: SubQuery, include_deleted: bool
) -> tuple[FieldDef, ObjectDef, Plan]:
    """The lookup, the child object and the plan of a child subquery (its fields checked against the child)."""
    child_field, child_obj = child_relationship(q, ctx, parent, sq)
    for item in sq.query.select:
        if not isinstance(item, FieldRef):
            raise SoqlError(
                "MALFORMED_QUERY",
                soql.caret_message(q.text, sq.pos + 1, "only plain fields are supported in a subquery by sforg"),
            )
    inner = soql.Query(
        sq.query.select,
        child_obj.name,
        sq.query.sobject_pos,
        sq.query.where,
        sq.query.order,
        sq.query.limit,
        None,
        [],
        sq.query.text,  # the whole statement; only the inner part is planned, with the child's name
    )
    sub_plan = _plan_from_ast(inner, ctx, include_deleted)
    sub_plan.root.need(child_field.name)
    return child_field, child_obj, sub_plan


def _plan_from_ast(q: soql.Query, ctx: Context, include_deleted: bool) -> Plan:
    obj = ctx.find_object(q.sobject)
    assert obj is not None
    root = RelNode(None, [obj], "")
    root.need("Id")
    select: list[Any] = [resolve(q, ctx, root, item) for item in q.select if isinstance(item, FieldRef)]
    uses = [False]
    where = compile_where(q, q.where, ctx, root, uses) if q.where is not None else None
    order = [(resolve(q, ctx, root, o.field), o.desc, o.nulls_first) for o in q.order]
    return Plan(q, obj, root, select, where, uses[0], order, include_deleted)


# ------------------------------------------------------------------ CSV (Bulk API 2.0)

DELIMITERS = {"COMMA": ",", "TAB": "\t", "PIPE": "|", "SEMICOLON": ";", "CARET": "^", "BACKQUOTE": "`"}


def csv_header(plan: Plan) -> list[str]:
    return [".".join(c.path) for c in plan.select if isinstance(c, Column)]


def csv_value(f: FieldDef, v: Any) -> Any:
    if v is None:
        return ""
    if f.type == "boolean":
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer() and f.type == "int":
        return int(v)
    return v


def csv_rows(plan: Plan, rows: list[tuple[Any, ...]], ctx: Context) -> list[list[Any]]:
    cols = [c for c in plan.select if isinstance(c, Column)]
    # Fast path: plain columns of the root object need no relationship walk.
    out = []
    simple = []
    for c in cols:
        if len(c.nodes) == 1 and c.field.formula is None and c.field.stored:
            simple.append((plan.root.index(plan.obj.name, c.field.name), c.field.type))
        else:
            simple.append((-1, c.field.type))
    for r in rows:
        line = []
        for (i, t), c in zip(simple, cols, strict=True):
            v = r[i] if i >= 0 else c.get(r, ctx)
            if t == "boolean":
                line.append("true" if v else "false")
            elif v is None:
                line.append("")
            else:
                line.append(v)
        out.append(line)
    return out


def write_csv(
    stream: io.TextIOBase | Any,
    header: list[str],
    rows: Iterable[list[Any]],
    delimiter: str,
    line_ending: str,
) -> None:
    w = csv.writer(stream, delimiter=delimiter, quoting=csv.QUOTE_ALL, lineterminator=line_ending)
    w.writerow(header)
    w.writerows(rows)


# ------------------------------------------------------------------ rendering inside SQLite (fast path)
#
# A backup selects plain fields of one object; for those SQLite renders each record's JSON or CSV line in C,
# which is what lets one Python process serve hundreds of thousands of records a second. Anything else
# (relationships, formulas, blobs, subqueries) takes the Python path above; both render the same values.


def fast_fields(plan: Plan, *, formulas_too: bool = False) -> list[FieldDef] | None:
    """The selected fields when every one is a root-object field SQLite can render; otherwise None.
    `formulas_too`: formula fields count as such (csv_sql and json_sql compute them with the formulas module's SQL
    functions)."""
    if plan.subqueries or plan.count_only or plan.aggregate:
        return None
    out = []
    for s in plan.select:
        if not isinstance(s, Column) or len(s.nodes) != 1:
            return None
        f = s.field
        if (f.formula is not None and not (formulas_too and f.formula in formulas.DEPS)) or f.type == "base64":
            return None
        out.append(f)
    return out or None


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _json_expr(f: FieldDef, obj: ObjectDef, as_text: bool = True, today: dt.date | None = None) -> str:
    """SQL for one field's JSON value: as JSON text (for concatenation) or as an argument of json_object. A
    formula field's value is computed as of `today` (formulas.csv_text_sql: the number's text, as json.dumps
    writes it; json() keeps a number's text as it is)."""
    c = _q(f.name)
    null = "'null'" if as_text else "NULL"
    if f.formula is not None:
        assert today is not None, "a formula field needs today"
        text = formulas.csv_text_sql(f, obj, today)
        return f"coalesce({text}, 'null')" if as_text else f"json({text})"
    if f.type == "boolean":
        text = f"CASE WHEN {c} THEN 'true' ELSE 'false' END"
        return text if as_text else f"json({text})"
    if f.type == "datetime":
        if as_text:
            return f"CASE WHEN {c} IS NULL THEN 'null' ELSE '\"' || substr({c}, 1, 23) || '+0000\"' END"
        return f"CASE WHEN {c} IS NULL THEN NULL ELSE substr({c}, 1, 23) || '+0000' END"
    if f.type == "address":
        p = f.name[: -len("Address")]
        present = [(k, _q(p + s)) for k, s in ADDRESS_PARTS if obj.field(p + s)]
        all_null = " AND ".join(f"{col} IS NULL" for _, col in present)
        inner = ", ".join(f"'{k}', {col}" for k, col in present)
        return f"CASE WHEN {all_null} THEN {null} ELSE json_object({inner}) END"
    if f.type == "location":
        stem = f.name.removesuffix("__c")
        lat, lon = _q(f"{stem}__Latitude__s"), _q(f"{stem}__Longitude__s")
        return (
            f"CASE WHEN {lat} IS NULL AND {lon} IS NULL THEN {null} "
            f"ELSE json_object('latitude', {lat}, 'longitude', {lon}) END"
        )
    return f"json_quote({c})" if as_text else c


def _concat(parts: list[str]) -> str:
    """parts joined with || as a balanced tree, keeping the expression depth (limit 1000) logarithmic."""
    if len(parts) == 1:
        return parts[0]
    mid = len(parts) // 2
    return f"({_concat(parts[:mid])} || {_concat(parts[mid:])})"


def json_object_sql(members: list[tuple[str, FieldDef | str]], obj: ObjectDef, today: dt.date | None = None) -> str:
    """SQL building a JSON object's text from (key, field or SQL JSON-text expression) pairs, in order.

    One json_object() call is fastest, but SQLite functions take at most 127 arguments; wider records are
    built by concatenating JSON texts instead.
    """
    if len(members) <= 62:
        args = []
        for key, value in members:
            if isinstance(value, FieldDef):
                expr = _json_expr(value, obj, as_text=False, today=today)
            else:
                expr = f"json({value})"
            args.append(f"{_lit(key)}, {expr}")
        return f"json_object({', '.join(args)})"
    parts = ["'{'"]
    for n, (key, value) in enumerate(members):
        parts.append(_lit(("," if n else "") + json.dumps(key) + ":"))
        parts.append(_json_expr(value, obj, today=today) if isinstance(value, FieldDef) else value)
    parts.append("'}'")
    return _concat(parts)


def json_sql(plan: Plan, fields: list[FieldDef], version: str, today: dt.date | None = None) -> str:
    """A SQL expression rendering one record as the REST query resource does (formula fields as of `today`)."""
    obj = plan.obj
    url = json.dumps(f"/services/data/v{version}/sobjects/{obj.name}/")[:-1]
    attributes = f'\'{{"type":{json.dumps(obj.name)},"url":{url}\' || "Id" || \'"}}\''
    members: list[tuple[str, FieldDef | str]] = [("attributes", attributes)]
    members += [(f.name, f) for f in fields]
    return json_object_sql(members, obj, today)


def csv_sql(
    fields: list[FieldDef],
    delimiter: str,
    obj: ObjectDef | None = None,
    today: dt.date | None = None,
    nul_safe: bool = False,
) -> str:
    """A SQL expression rendering one record as a Bulk API 2.0 CSV line (every value quoted).

    SQLite's format() with %w doubles embedded double quotes, which is exactly CSV's escaping; it takes at
    most 126 values, so wide records are formatted in chunks. A formula field (fast_fields' formulas_too) is
    computed by the formulas module's SQL function, from the columns of `obj`, as of `today`.

    format() stops at a NUL character; with `nul_safe` (an object some write put one into) text is quoted by
    replace() and concatenation instead, which keep every character (about half as fast).
    """
    if nul_safe:
        cells = []
        for f in fields:
            c = _q(f.name)
            if f.formula is not None:
                assert obj is not None and today is not None, "a formula field needs its object and today"
                value = f"coalesce({formulas.csv_text_sql(f, obj, today)}, '')"
            elif f.type == "boolean":
                value = f"CASE WHEN {c} THEN 'true' ELSE 'false' END"
            else:
                value = f"coalesce({c}, '')"
            cells.append(f"""('"' || replace({value}, '"', '""') || '"')""")
        return _concat([part for i, cell in enumerate(cells) for part in ((_lit(delimiter),) if i else ()) + (cell,)])
    chunks = []
    for i in range(0, len(fields), 100):
        part = fields[i : i + 100]
        template = delimiter.replace("%", "%%").join('"%w"' for _ in part)
        args = []
        for f in part:
            c = _q(f.name)
            if f.formula is not None:
                assert obj is not None and today is not None, "a formula field needs its object and today"
                args.append(f"coalesce({formulas.csv_text_sql(f, obj, today)}, '')")
            elif f.type == "boolean":
                args.append(f"CASE WHEN {c} THEN 'true' ELSE 'false' END")
            else:
                args.append(f"coalesce({c}, '')")
        chunks.append(f"format({_lit(template)}, {', '.join(args)})")
    return f" || {_lit(delimiter)} || ".join(chunks)
