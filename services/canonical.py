"""sfvault's canonical form of a Salesforce record, and its content hash: what counts as a change.

The one place these rules are written. The jobrunner canonicalises the records it reads (parts, compile_rows:
the work scales out with its replicas) and sends them column by column (column_bytes); storage splits the
columns (split_column_texts), hashes the values with content_hash, and canonicalises a sample again
(canonicalize) to check them. Rules change only with CANONICAL_RULES: storage refuses records made under other
rules rather than storing hashes that would not compare.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import hashlib
import json
import math
import re
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple, Protocol, runtime_checkable

import orjson
import xxhash

from services.platform.errors import InvalidArgument

# the version of the rules below; a change of what they produce for any input is a new version. Rules 2 hash the
# canonical text with XXH3-128. (Rules 1 hashed the same text with BLAKE2b-128: storage rehashed those heads once,
# at start-up, PostgresStore.rehash_rules_1_heads; nothing compares by them any more.)
CANONICAL_RULES = 2


class Deleted(enum.IntEnum):
    """Deleted state of a record version; values match DeletedState in storage.proto and the database."""

    LIVE = 0
    SOFT = 1
    HARD = 2


class FieldType(enum.IntEnum):
    """How a field's value is canonicalised; values match FieldType in storage.proto."""

    UNSPECIFIED = 0
    STRING = 1
    ID = 2
    BOOLEAN = 3
    INTEGER = 4
    DOUBLE = 5
    DATE = 6
    DATETIME = 7
    TIME = 8
    COMPOUND = 9
    BASE64 = 10
    JSON = 11


# Audit fields that move on every save, even one that changed nothing: never a reason for a new version.
AUDIT_FIELDS = frozenset({"SystemModstamp", "LastModifiedDate"})
MAX_NAME_LENGTH = 255

# --- Salesforce Ids -------------------------------------------------------------------------------------

_ID_CHARS = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?$")
_CHECKSUM_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
# a byte per character of an (ASCII) Id: 1 for an upper-case letter, 0 otherwise
_UPPER_TO_BIT = bytes(1 if 65 <= c <= 90 else 0 for c in range(256))
# the checksum character of each block of 5 upper-case bits, keyed by the bits as written (first char first)
_BLOCK_CHAR = {bytes(int(b) for b in format(i, "05b")[::-1]): _CHECKSUM_ALPHABET[i] for i in range(32)}


def id_suffix(id15: str) -> str:
    """The 3-character suffix that makes a 15-character Id case-insensitively unique (Salesforce's checksum):
    each block of 5 characters gives one character, whose bits say which of the 5 are upper case. `id15` is
    ASCII (normalize_id checks it first)."""
    bits = id15.encode().translate(_UPPER_TO_BIT)
    block = _BLOCK_CHAR
    return block[bits[0:5]] + block[bits[5:10]] + block[bits[10:15]]


def normalize_id(value: object, what: str = "record Id") -> str:
    """A valid Salesforce Id in its 18-character form; raises InvalidArgument naming the problem."""
    # isascii() and isalnum(): letters and digits of ASCII only, what _ID_CHARS matches (and cheaper)
    if not (type(value) is str and (len(value) == 18 or len(value) == 15) and value.isascii() and value.isalnum()):
        if not isinstance(value, str) or not _ID_CHARS.match(value):
            raise InvalidArgument(f"{what} {value!r} is not a Salesforce Id (15 or 18 letters and digits)")
        value = str(value)  # not a subclass
    if len(value) == 15:
        return value + id_suffix(value)
    suffix = id_suffix(value[:15])
    if suffix == value[15:]:
        return value  # as Salesforce prints it (every API does)
    if suffix != value[15:].upper():
        raise InvalidArgument(f"{what} {value!r} has a wrong checksum (its last 3 characters)")
    # the suffix is case-insensitive in Salesforce; store it the way Salesforce prints it
    return value[:15] + suffix


# --- names ----------------------------------------------------------------------------------------------

# API names: letters, digits and single underscores, starting with a letter; an optional namespace prefix
# (ns__) and an optional suffix (__c, __r, __History, __Share, __e, __mdt, ...).
_API_NAME = re.compile(
    r"^(?:[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)*__)?[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)*(?:__[A-Za-z]+)?$"
)


def check_api_name(value: str, what: str = "object_name") -> str:
    if not value:
        raise InvalidArgument(f"{what} is required")
    if len(value) > MAX_NAME_LENGTH or not _API_NAME.match(value):
        raise InvalidArgument(f"{what} {value!r} is not a Salesforce API name")
    return value


# --- object schemas -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldDef:
    name: str
    type: FieldType = FieldType.STRING
    calculated: bool = False
    sf_type: str = ""
    label: str = ""
    sensitive: bool = False  # the policy marks it sensitive: storage keeps its values encrypted


@dataclass(frozen=True)
class ObjectSchema:
    object_name: str
    fields: tuple[FieldDef, ...]
    key_prefix: str = ""

    def validate(self) -> ObjectSchema:
        check_api_name(self.object_name)
        if self.key_prefix and not re.fullmatch(r"[A-Za-z0-9]{3}", self.key_prefix):
            raise InvalidArgument(f"key_prefix {self.key_prefix!r} of {self.object_name} is not 3 letters or digits")
        seen: set[str] = set()
        for f in self.fields:
            check_api_name(f.name, f"field name of {self.object_name}")
            if f.name.lower() in seen:
                raise InvalidArgument(f"field {f.name} of {self.object_name} is listed twice")
            seen.add(f.name.lower())
        if "id" not in seen:
            raise InvalidArgument(f"the schema of {self.object_name} has no Id field")
        return self

    def to_json(self) -> list[dict[str, Any]]:
        # "sensitive" only where set: the digest of a schema without sensitive fields is what it always was
        return [
            {"name": f.name, "type": int(f.type), "calculated": f.calculated, "sf_type": f.sf_type, "label": f.label}
            | ({"sensitive": True} if f.sensitive else {})
            for f in self.fields
        ]

    @classmethod
    def from_json(cls, object_name: str, key_prefix: str, fields: Sequence[Mapping[str, Any]]) -> ObjectSchema:
        return cls(
            object_name,
            tuple(
                FieldDef(
                    f["name"],
                    FieldType(f["type"]),
                    bool(f["calculated"]),
                    f.get("sf_type", ""),
                    f.get("label", ""),
                    bool(f.get("sensitive", False)),
                )
                for f in fields
            ),
            key_prefix,
        )

    def digest(self) -> bytes:
        """Equal for equal describes (field order ignored), so an unchanged describe keeps its version."""
        body = json.dumps(
            {"key_prefix": self.key_prefix, "fields": sorted(self.to_json(), key=lambda f: f["name"].lower())},
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(body.encode()).digest()

    @property
    def field_names(self) -> list[str]:
        return [f.name for f in self.fields]

    @property
    def sensitive_fields(self) -> tuple[str, ...]:
        """The fields whose values are stored encrypted, in the schema's spelling."""
        return tuple(f.name for f in self.fields if f.sensitive)


# --- canonical values -----------------------------------------------------------------------------------

_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _bad(name: str, kind: str, value: object) -> InvalidArgument:
    # the value's kind and length, never the value: error messages are logged and record contents never are
    return InvalidArgument(
        f"field {name}: a {type(value).__name__} value ({len(str(value))} characters) is not a valid {kind}"
    )


def canon_boolean(value: object, name: str) -> bool:
    if value is True or value is False:
        return value
    if isinstance(value, str):
        low = value.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise _bad(name, "boolean", value)


def _number(value: object, name: str, kind: str) -> int | float:
    if type(value) is int:
        return value
    if type(value) is float:
        if value != value or value in (float("inf"), float("-inf")):
            raise _bad(name, kind, value)
        return int(value) if value.is_integer() else value
    if isinstance(value, str):
        try:
            d = Decimal(value.strip())
        except InvalidOperation:
            raise _bad(name, kind, value) from None
        if not d.is_finite():
            raise _bad(name, kind, value)
        if d == d.to_integral_value():
            return int(d)
        return float(d)
    raise _bad(name, kind, value)


def canon_integer(value: object, name: str) -> int:
    n = _number(value, name, "integer")
    if not isinstance(n, int):
        raise _bad(name, "integer", value)
    return n


def canon_double(value: object, name: str) -> int | float:
    # 1, 1.0, "1.00" and 1e0 are the same number; integral values are written as integers
    kind = type(value)
    if kind is float:
        if value.is_integer():  # type: ignore[attr-defined]
            return int(value)  # type: ignore[call-overload,no-any-return]
        if math.isfinite(value):  # type: ignore[arg-type]
            return value  # type: ignore[return-value]
    elif kind is int:
        return value  # type: ignore[return-value]
    return _number(value, name, "number")


def canon_date(value: object, name: str) -> str:
    if isinstance(value, str):
        s = value.strip()
        if len(s) == 10 and s[4] == "-" and s[7] == "-":
            try:
                return dt.date.fromisoformat(s).isoformat()
            except ValueError:
                raise _bad(name, "date", value) from None
        return canon_datetime(s, name)[:10]
    if isinstance(value, int) and not isinstance(value, bool):
        return canon_datetime(value, name)[:10]
    raise _bad(name, "date", value)


def canon_datetime(value: object, name: str) -> str:
    """UTC with millisecond precision, Salesforce's own precision: 2024-01-02T03:04:05.000Z."""
    if isinstance(value, str):
        s = value.strip()
        # fast path: already canonical (what Bulk API 2.0 returns)
        if len(s) == 24 and s[23] == "Z" and s[10] == "T" and s[19] == ".":
            return s
        try:
            parsed = dt.datetime.fromisoformat(s)
        except ValueError:
            raise _bad(name, "datetime", value) from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)  # Salesforce datetimes without an offset are UTC
    elif isinstance(value, int) and not isinstance(value, bool):
        try:
            parsed = _EPOCH + dt.timedelta(milliseconds=value)  # Bulk API 1.0 JSON: epoch milliseconds
        except OverflowError:
            raise _bad(name, "datetime", value) from None
    else:
        raise _bad(name, "datetime", value)
    try:
        utc = parsed.astimezone(dt.UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00
        raise _bad(name, "datetime", value) from None
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def canon_time(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise _bad(name, "time", value)
    s = value.strip().removesuffix("Z")
    try:
        t = dt.time.fromisoformat(s)
    except ValueError:
        raise _bad(name, "time", value) from None
    return t.strftime("%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def canon_reference(value: object, name: str) -> object:
    # references arrive as 18 characters from every API; a 15-character one is widened so both compare equal
    if isinstance(value, str) and len(value) == 15 and _ID_CHARS.match(value):
        return value + id_suffix(value)
    return value


def canon_string(value: object, name: str) -> object:
    return value


_CANON: dict[FieldType, Callable[[Any, str], Any] | None] = {
    FieldType.UNSPECIFIED: None,
    FieldType.STRING: None,
    FieldType.ID: canon_reference,
    FieldType.BOOLEAN: canon_boolean,
    FieldType.INTEGER: canon_integer,
    FieldType.DOUBLE: canon_double,
    FieldType.DATE: canon_date,
    FieldType.DATETIME: canon_datetime,
    FieldType.TIME: canon_time,
    FieldType.COMPOUND: None,
    FieldType.BASE64: None,
    FieldType.JSON: None,
}

_MISSING = object()


class CanonicalRecord(NamedTuple):  # a tuple: one is built per record, ten thousand per chunk
    record_id: str
    data: bytes  # canonical JSON (UTF-8) of every stored value (nulls omitted)
    hash: bytes  # of the values that count for a change: formula fields and audit fields excluded
    system_modstamp: str | None
    deleted: Deleted
    raw_hash: bytes = b""  # the fast path's fingerprint (storage: of the canonical parts it was sent)

    @property
    def values_json(self) -> str:
        return self.data.decode()


# --- canonical JSON ---------------------------------------------------------------------------------------
#
# The canonical text is what `json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`
# writes from what `json.loads` read (its hash is stored in every head and version). orjson reads and writes the
# very same values and bytes, except for:
# - integers beyond 64 bits, which orjson reads as floats (so a float of magnitude 2**63 or more is suspect);
# - floats below 1e-4, which Python writes as 1e-05 and orjson as 0.00001 or 1e-7;
# - what orjson refuses: a BOM, UTF-16, lone surrogates, NaN and Infinity, numbers beyond a double.
# The fast path uses orjson while every number it meets is of none of these kinds and every value that is not
# canonicalised by its type is a string (or a container holding no such number); otherwise the record takes the
# json module's path, the reference. So a record's hash does not depend on the path that computed it.

_legacy_encode = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
_SORTED = orjson.OPT_SORT_KEYS
_HUGE = 9.2e18  # below 2**63: floats from here on may be integers orjson could not read as integers
_TINY = 1e-4


def _plain(value: object) -> bool:
    """Whether orjson writes `value` (as read by orjson) exactly as the json module would."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return True
    if kind is float:
        return value == 0 or _TINY <= abs(value) < _HUGE  # type: ignore[arg-type]
    if kind is dict:
        return all(_plain(v) for v in value.values())  # type: ignore[attr-defined]
    if kind is list:
        return all(_plain(v) for v in value)  # type: ignore[attr-defined]
    return False


def _not_a_number(value: str) -> Any:
    raise ValueError(f"{value} is not a JSON number")


def _legacy_loads(raw: bytes | str, position: int) -> Any:
    # NaN and Infinity are not JSON (and PostgreSQL refuses them in jsonb)
    try:
        return json.loads(raw, parse_constant=_not_a_number)
    except ValueError as exc:
        raise InvalidArgument(f"record {position} is not valid JSON: {exc}") from None


def _legacy_dumps(value: dict[str, Any], position: int) -> bytes:
    try:
        return _legacy_encode(value).encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgument(f"record {position} holds a lone surrogate (not Unicode text)") from None
    except ValueError as exc:  # Infinity (from a number too large for a double)
        raise InvalidArgument(f"record {position}: {exc}") from None


# JSON's escape of NUL, \u0000, where it is one: after an even number of backslashes (escaped backslashes) or none.
# After an odd number it is text: an escaped backslash, then "u0000" (the text \u0000), which is kept.
ESCAPED_NUL = re.compile(rb"(?<!\\)((?:\\\\)*)\\u0000")


def has_escaped_nul(json_text: bytes) -> bool:
    """Whether JSON text holds a NUL character. A backslash is looked for first (memchr's speed; most texts have
    none), then "\\u0000", and only then is it told whether that is an escape or text."""
    return b"\\" in json_text and b"\\u0000" in json_text and ESCAPED_NUL.search(json_text) is not None


def strip_escaped_nul(json_text: bytes) -> bytes:
    """JSON text without its NUL characters (each escape of one removed, nothing else changed)."""
    return ESCAPED_NUL.sub(rb"\1", json_text)


def _without_nul(json_text: bytes, position: int) -> bytes:
    """Canonical JSON text without NUL characters. Written again by the reference from the stripped text: a key
    of a nested object that held a NUL may now equal another key (the last one stays, as jsonb keeps it) or sort
    elsewhere, and the text hashed must be the one the stored values give back. (The rare path: most texts hold
    no NUL, and a stripped NUL in a value alone gives the same text again.)"""
    return _legacy_dumps(json.loads(strip_escaped_nul(json_text)), position)


# 128 bits: per-record comparison only, never a security boundary; keeps the head table narrow. XXH3-128: what
# rsync checks transfers with; well distributed (SMHasher), a hash of a 1 KiB record in a tenth of BLAKE2b's time.
content_hash: Callable[[bytes], bytes] = xxhash.xxh3_128_digest


def canonical_json(values: Mapping[str, Any]) -> bytes:
    """The canonical text of values already canonical (e.g. read back from a stored version): the reference
    writer's, the text `content_hash` is taken of."""
    return _legacy_dumps(dict(values), 0)


def values_hash(values: Mapping[str, Any]) -> bytes:
    """The content hash of canonical values already parsed: what canonicalize gives a record holding them."""
    return content_hash(canonical_json(values))


# how the compiled pick (RecordCanonicalizer._compile_pick) takes a value of each kind of field: `{fn}` is the
# canon function; each shortcut gives v exactly when the function would return v unchanged. `risky` marks a
# value orjson may not have read or may not write as the json module does (see _plain).
_NUMBER = (
    "if type(v) is not int:\n"
    "    if type(v) is float and not -_HUGE < v < _HUGE: risky = True\n"
    "    v = {fn}(v, {key})\n"
    "    if type(v) is float and -_TINY < v < _TINY: risky = True\n"
)
_TAKE: dict[Callable[[Any, str], Any] | None, str] = {
    None: "if type(v) is not str and not _plain(v): risky = True\n",
    # a finite float neither tiny nor huge is canon_double's own shortcut, inlined
    canon_double: "if type(v) is float and _TINY <= abs(v) < _HUGE:\n    if v.is_integer(): v = int(v)\n"
    + "else:\n"
    + "".join(f"    {line}\n" for line in _NUMBER.splitlines()),
    canon_integer: _NUMBER,
    canon_boolean: "if v is not True and v is not False: v = {fn}(v, {key})\n",
    canon_reference: "if type(v) is str:\n    if len(v) == 15: v = {fn}(v, {key})\nelif not _plain(v): risky = True\n",
    # canon_datetime's own shortcut, inlined (no surrounding whitespace: ends with Z, does not start with one)
    canon_datetime: "if not (type(v) is str and len(v) == 24 and v[23] == 'Z' and v[10] == 'T' and v[19] == '.'"
    + " and not v[0].isspace()):\n    v = {fn}(v, {key})\n",
    # dates repeat across records: remembered (per canonicaliser) once canonicalised
    canon_date: "d = _dates.get(v) if type(v) is str else None\n"
    + "if d is None:\n    d = {fn}(v, {key})\n    if type(v) is str:\n"
    + "        if len(_dates) > 50000: _dates.clear()\n        _dates[v] = d\n"
    + "v = d\n",
}
# _TAKE's code where v is known to be a non-empty string (a CSV cell's text): the same, without its type tests
_TAKE_TEXT: dict[Callable[[Any, str], Any] | None, str] = {
    None: "",
    canon_reference: "if len(v) == 15: v = {fn}(v, {key})\n",
    canon_datetime: "if not (len(v) == 24 and v[23] == 'Z' and v[10] == 'T' and v[19] == '.' and not v[0].isspace()):\n"
    + "    v = {fn}(v, {key})\n",
    canon_date: "d = _dates.get(v)\n"
    + "if d is None:\n    d = {fn}(v, {key})\n"
    + "    if len(_dates) > 50000: _dates.clear()\n    _dates[v] = d\n"
    + "v = d\n",
}
# Other types (dates, datetimes, times) always call their function, whose result is a string or an error; any
# error of the fast path is raised by the json module's path instead, whose reading is the reference.


def _take_lines(
    env: dict[str, Any], fn: Callable[[Any, str], Any] | None, name: str, indent: str, *, text: bool = False
) -> list[str]:
    """The code that makes v, a non-empty value of field `name`, canonical by `fn` (`text`: v is a str), its
    function put in `env` under its own name; `name` is written as a literal: nothing from the input becomes
    code."""
    slot = f"_{fn.__name__}" if fn is not None else "_none"
    env[slot] = fn
    code = _TAKE_TEXT.get(fn) if text else None
    if code is None:
        code = _TAKE.get(fn, "v = {fn}(v, {key})\n")
    return [indent + line for line in code.format(fn=slot, key=repr(name)).splitlines()]


class RecordCanonicalizer:
    """Turns raw records of one object (as Salesforce returns them) into their canonical form and hash.

    Canonical: keys in the schema's spelling, null and empty values omitted (Salesforce does not distinguish
    them), numbers/booleans/dates in one formatting. The hash covers every value except formula
    (calculated) fields and the audit fields SystemModstamp and LastModifiedDate.
    """

    def __init__(self, schema: ObjectSchema, *, count_formula_changes: bool = False) -> None:
        self.schema = schema
        by_lower = {f.name.lower(): f for f in schema.fields}
        ignored = set(AUDIT_FIELDS)
        if not count_formula_changes:
            ignored |= {f.name for f in schema.fields if f.calculated}
        # a fixed order (schema fields sorted by name, hashed ones first)
        ordered = sorted(schema.fields, key=lambda f: f.name)
        self._core = tuple((f.name, _CANON[f.type]) for f in ordered if f.name not in ignored)
        self._excluded = tuple((f.name, _CANON[f.type]) for f in ordered if f.name in ignored)
        self._pick_core = self._compile_pick(self._core)
        self._pick_excluded = self._compile_pick(self._excluded)
        self._known = frozenset(f.name for f in schema.fields) | {"attributes"}
        self._by_lower = {k: f.name for k, f in by_lower.items()}
        self._id_field = by_lower["id"].name
        self._modstamp_field = by_lower["systemmodstamp"].name if "systemmodstamp" in by_lower else None
        self._deleted_field = by_lower["isdeleted"].name if "isdeleted" in by_lower else None

    def _respell(self, obj: dict[str, Any], position: int) -> dict[str, Any]:
        """Slow path: keys in another case than the schema's, or unknown keys (refused)."""
        out: dict[str, Any] = {}
        for key, value in obj.items():
            if key == "attributes":
                continue
            spelled = self._by_lower.get(key.lower())
            if spelled is None:
                raise InvalidArgument(
                    f"record {position}: {key!r} is not a field of {self.schema.object_name} in its schema"
                )
            out[spelled] = value
        return out

    @staticmethod
    @functools.lru_cache(maxsize=1024)
    def _compile_pick(
        plan: tuple[tuple[str, Any], ...],
    ) -> Callable[[dict[str, Any]], tuple[dict[str, Any], bool]]:
        """For a plan of (field, canon function): a function of a parsed record that returns (the canonical
        values of those fields, whether a value is risky for orjson). Straight-line code, no call for values
        already canonical: it runs for every field of every record. Compiled once per plan in a process (a
        session's jobs of an object, and the next session's, take the same function)."""
        env: dict[str, Any] = {"_plain": _plain, "_TINY": _TINY, "_HUGE": _HUGE, "_dates": {}}
        lines = ["def pick(obj):", "    get = obj.get", "    out = {}", "    risky = False"]
        for name, fn in plan:
            # Salesforce does not distinguish null from empty: both are omitted
            lines += [f"    v = get({name!r})", '    if v is not None and v != "":']
            lines += _take_lines(env, fn, name, "        ")
            lines.append(f"        out[{name!r}] = v")
        lines.append("    return out, risky")
        exec("\n".join(lines), env)
        return env["pick"]  # type: ignore[no-any-return]

    def canonicalize(
        self, raw: bytes | str | Mapping[str, Any], position: int = 0, raw_hash: bytes = b""
    ) -> CanonicalRecord:
        """The canonical record of raw JSON (or a parsed record); `raw_hash` is carried into it as given."""
        done: CanonicalParts | None = None
        if isinstance(raw, bytes):
            try:
                obj = orjson.loads(raw)
            except ValueError:
                pass
            else:
                try:
                    done = self._parts(obj, position, fast=True)
                except InvalidArgument:
                    done = None  # the json module's reading says what is wrong
        if done is None:
            obj = _legacy_loads(raw, position) if isinstance(raw, bytes | str) else raw
            done = self._parts(obj, position, fast=False)
            assert done is not None
        rid, core_json, rest_json, modstamp, deleted = done
        stored = join_values(core_json, rest_json)
        return CanonicalRecord(rid, stored, content_hash(core_json), modstamp, deleted, raw_hash)

    @property
    def hashed_fields(self) -> frozenset[str]:
        """The fields whose values count for a change (those the hash covers)."""
        return frozenset(name for name, _fn in self._core)

    def parts(self, obj: Mapping[str, Any], position: int = 0) -> CanonicalParts:
        """The canonical parts of a record already parsed (by the json module, or typed from Bulk CSV as the json
        module would have read its REST form): what the jobrunner sends in PutRecordsRequest.canonical_columns."""
        done = self._parts(obj, position, fast=True)
        if done is None:
            done = self._parts(obj, position, fast=False)
            assert done is not None
        return done

    def _parts(self, obj: Any, position: int, *, fast: bool) -> CanonicalParts | None:
        """The canonical parts of a parsed record; None when `fast` (orjson writes) and a value is risky."""
        if not isinstance(obj, dict):
            raise InvalidArgument(f"record {position} is not a JSON object")
        if not obj.keys() <= self._known:
            obj = self._respell(obj, position)
        core, risky = self._pick_core(obj)
        excluded, risky_excluded = self._pick_excluded(obj)
        if fast and (risky or risky_excluded):
            return None
        return self._finish(core, excluded, position, fast=fast)

    def _finish(
        self, core: dict[str, Any], excluded: dict[str, Any], position: int, *, fast: bool
    ) -> CanonicalParts | None:
        """The parts of picked values (see _parts)."""
        rid = core.get(self._id_field)
        if rid is None:
            raise InvalidArgument(f"record {position} of {self.schema.object_name} has no Id")
        rid = normalize_id(rid, f"record {position} Id")
        prefix = self.schema.key_prefix
        if prefix and not rid.startswith(prefix):
            raise InvalidArgument(
                f"record {position} Id {rid} does not start with {prefix}, the key prefix of {self.schema.object_name}"
            )
        core[self._id_field] = rid
        deleted = Deleted.SOFT if self._deleted_field and core.get(self._deleted_field) is True else Deleted.LIVE
        modstamp = excluded.get(self._modstamp_field) if self._modstamp_field else None
        try:
            if fast:
                # copied out: orjson's bytes keep the whole buffer it wrote into (several KiB for a record of
                # a few hundred bytes), which a chunk of ten thousand held parts multiplied into 100 MB
                core_json = bytes(memoryview(orjson.dumps(core, option=_SORTED)))
                rest = bytes(memoryview(orjson.dumps(excluded, option=_SORTED)))
            else:
                core_json, rest = _legacy_dumps(core, position), _legacy_dumps(excluded, position)
        except TypeError:  # orjson: an integer beyond 64 bits, from a numeric string
            return None
        # PostgreSQL text and jsonb cannot hold NUL; Salesforce exports occasionally contain it
        if has_escaped_nul(core_json):
            core_json = _without_nul(core_json, position)
        if has_escaped_nul(rest):
            rest = _without_nul(rest, position)
        return _new_parts(CanonicalParts, (rid, core_json, rest, modstamp, deleted))

    def compile_rows(
        self,
        header: Sequence[str],
        typing: Sequence[Callable[[str], Any] | None],
        compounds: Mapping[str, Sequence[tuple[str, str]]] | None = None,
        drop: Collection[str] = (),
    ) -> Callable[[list[str], int], CanonicalParts | None] | None:
        """For rows of text cells under `header` (a Bulk CSV page): a function of a row and its position giving
        exactly what parts() gives for the record those cells stand for, without building that record:
        {name: None if cell == "" else typing[i](cell)}, each compound {key: its component's value} (None when
        all are None), the `drop` columns then removed.

        The function returns None for a row it does not take (not one cell per column, a value that is risky
        for orjson): parts() of the record reads that one. None instead of a function when the header holds a
        name twice or a name not spelled as in the schema: parts() reads every row (and respells or refuses)."""
        compounds = compounds or {}
        if len(set(header)) != len(header) or len(typing) != len(header):
            return None
        kept = [h for h in header if h not in drop]
        if set(compounds) & set(header) or not set(kept) | set(compounds) <= self._known - {"attributes"}:
            return None
        plans = {name: (fn, "core") for name, fn in self._core} | {name: (fn, "other") for name, fn in self._excluded}
        env: dict[str, Any] = {"_plain": _plain, "_TINY": _TINY, "_HUGE": _HUGE, "_dates": {}, "_finish": self._finish}
        lines = ["def row_parts(row, position):", f"    if len(row) != {len(header)}:", "        return None"]
        lines += ["    core = {}", "    other = {}", "    risky = False"]
        column = {h: i for i, h in enumerate(header)}

        # a name is written as a literal (repr): nothing from the input becomes code
        for i, name in enumerate(header):
            if name in drop or name not in plans:
                continue
            fn, target = plans[name]
            lines += [f"    v = row[{i}]", "    if v:"]  # an empty cell is null: omitted
            if typing[i] is None:  # the text itself
                lines += _take_lines(env, fn, name, "        ", text=True)
                lines.append(f"        {target}[{name!r}] = v")
            else:
                env[f"t{i}"] = typing[i]
                lines += [f"        v = t{i}(v)", '        if v is not None and v != "":']
                lines += _take_lines(env, fn, name, "            ")
                lines.append(f"            {target}[{name!r}] = v")
        for name, parts in compounds.items():
            if name in drop or name not in plans:
                continue
            fn, target = plans[name]
            if len({key for key, _comp in parts}) != len(parts):
                return None  # two components of one key: the record reading keeps the last one
            values, plain_checks, present = [], [], []
            for j, (key, comp) in enumerate(parts):
                i = column.get(comp, -1)
                if i < 0:
                    values.append(f"{key!r}: None")
                    continue
                if typing[i] is None:
                    lines.append(f"    c{j} = row[{i}] or None")
                else:
                    env[f"t{i}"] = typing[i]
                    lines.append(f"    c{j} = t{i}(row[{i}]) if row[{i}] else None")
                    plain_checks.append(f"        if not _plain(c{j}): risky = True")
                values.append(f"{key!r}: c{j}")
                present.append(f"c{j}")
            if not present:
                continue  # every component null: the compound is null, omitted
            lines.append(f"    if {' or '.join(f'{c} is not None' for c in present)}:")
            lines.append(f"        v = {{{', '.join(values)}}}")
            # a dict is risky when a value in it is (_TAKE[None]); text and null never are
            lines += plain_checks if fn is None else _take_lines(env, fn, name, "        ")
            lines.append(f"        {target}[{name!r}] = v")
        lines += ["    if risky:", "        return None", "    return _finish(core, other, position, fast=True)"]
        exec("\n".join(lines), env)
        return env["row_parts"]  # type: ignore[no-any-return]


class CanonicalParts(NamedTuple):
    record_id: str
    values: bytes  # canonical JSON object of the hashed values
    other_values: bytes  # canonical JSON object of the others (audit fields; formula fields unless counted)
    system_modstamp: str | None
    deleted: Deleted


# a NamedTuple's own __new__ is a Python call; one is built per record
_new_parts = tuple.__new__


# --- canonical columns: a chunk of canonical records in one message (PutRecordsRequest.canonical_columns) ----


def column_bytes(parts: Sequence[CanonicalParts]) -> Iterator[tuple[str, bytes]]:
    """(field of CanonicalColumns, its bytes) for each column of these records: record i is line i of every
    text column, byte i of `deleted`. One column is joined at a time, so a caller that sets each as it comes
    holds one column twice at most. No records: no columns (all empty)."""
    if not parts:
        return
    yield "record_ids", "".join([p.record_id + "\n" for p in parts]).encode()
    yield "values", b"".join([p.values + b"\n" for p in parts])
    yield "other_values", b"".join([p.other_values + b"\n" for p in parts])
    yield "system_modstamps", "".join([(p.system_modstamp or "") + "\n" for p in parts]).encode()
    yield "deleted", bytes([p.deleted for p in parts])


@runtime_checkable
class CanonicalColumnsIn(Protocol):
    """Canonical records column by column, as PutRecordsRequest.canonical_columns carries them (column_bytes)."""

    record_ids: bytes
    values: bytes
    other_values: bytes
    system_modstamps: bytes
    deleted: bytes


def split_column_texts(
    c: CanonicalColumnsIn,
) -> tuple[list[str], list[bytes], list[bytes], list[str], bytes, bytes, bytes]:
    """(Ids, values, other values, modstamps, deleted flags) of canonical columns whose lines all line up, then
    the values' and the other values' columns as they were read (each record a line ending in a newline): each
    column is read once (a protobuf bytes field is copied at every read) and the
    large ones are split without being counted or sliced first."""
    columns = {
        "record_ids": c.record_ids,
        "values": c.values,
        "other_values": c.other_values,
        "system_modstamps": c.system_modstamps,
    }
    count = columns["record_ids"].count(b"\n")
    lines: dict[str, list[bytes]] = {}
    for name, column in columns.items():
        if name in ("values", "other_values"):
            split = column.split(b"\n")  # count + 1 pieces, the last one empty, when every line ends in a newline
            found, last = len(split) - 1, split.pop()
            lines[name] = split
        else:  # decoded and split as text below
            found, last = column.count(b"\n"), column[-1:].strip(b"\n")
        if found != count or last:
            raise InvalidArgument(
                f"canonical_columns.{name} has {found} lines ending in a newline, record_ids {count}: each"
                " record is one line of every column (a raw newline inside a value breaks this)"
            )
    deleted = c.deleted
    if len(deleted) != count or deleted.translate(None, b"\x00\x01"):
        raise InvalidArgument(f"canonical_columns.deleted must be {count} bytes, each 0 or 1")
    try:
        ids = columns["record_ids"].decode("ascii")[:-1].split("\n") if count else []
        modstamps = columns["system_modstamps"].decode("ascii")[:-1].split("\n") if count else []
    except UnicodeDecodeError:
        raise InvalidArgument("canonical_columns: record_ids and system_modstamps are ASCII") from None
    return ids, lines["values"], lines["other_values"], modstamps, deleted, columns["values"], columns["other_values"]


def join_values(values: bytes, other_values: bytes) -> bytes:
    """The stored JSON of a record: its hashed values, then the others, in one object."""
    if len(other_values) <= 2:
        return values
    if len(values) <= 2:
        return other_values
    return values[:-1] + b"," + other_values[1:]


# --- a change between two versions of a record (compare: storage's CompareAsOf, discovery's CompareLive) ---------

_compare_encode = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


def value_json(value: Any) -> bytes:
    """The canonical JSON of one value (b"" for a value absent: null or empty, which Salesforce does not tell apart)."""
    return b"" if value is None else _compare_encode(value).encode()


@dataclass(frozen=True)
class FieldChange:
    field: str
    old_json: bytes = b""  # canonical JSON of the value (only when values are asked for)
    new_json: bytes = b""


def changed_fields(
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    comparable: Collection[str],
    *,
    only: Collection[str] | None = None,
    values: bool = False,
) -> tuple[FieldChange, ...]:
    """The fields whose value differs between two versions of a record, in name order.

    `comparable`: the fields that count for a change at both points (hashed at both: no audit field, no formula
    field unless formula changes are counted, and no field that was not in the backup's scope at one of the two
    points -- its value there is unknown, not empty). `only`: the fields filter (None: every comparable one).
    A value absent (null or empty) differs from any present value."""
    names = comparable if only is None else [f for f in only if f in comparable]
    out = []
    for name in sorted(names):
        a, b = old.get(name), new.get(name)
        if a != b or type(a) is not type(b):
            out.append(FieldChange(name, value_json(a), value_json(b)) if values else FieldChange(name))
    return tuple(out)


@dataclass(frozen=True)
class RecordChange:
    """A record added, deleted or changed (with the fields that changed) between two points of a compare."""

    object_name: str
    record_id: str
    change: str  # added | deleted | changed
    fields: tuple[FieldChange, ...] = ()


@dataclass
class ObjectSummary:
    """One object's changes of a compare, counted by kind (exact even where a limit cut the list of changes)."""

    object_name: str
    added: int = 0
    deleted: int = 0
    changed: int = 0

    def count(self, change: str) -> None:
        setattr(self, change, getattr(self, change) + 1)


@dataclass
class ComparePiece:
    """One piece of a compare's stream: changes; the last piece also the per-object summaries."""

    changes: list[RecordChange] = field(default_factory=list)
    summaries: list[ObjectSummary] | None = None
    truncated: bool = False
