"""Sensitive field values (issue 18): the values of the fields a policy marks sensitive are kept in PostgreSQL only
encrypted, with keyed hashes beside them so equality is decided without decrypting.

The envelope scheme is encryption.py's: each org has one random 256-bit data key (its *value key*), wrapped by the
KEK (`Keyring.wrap`, AES-256-GCM) and kept in `storage.value_keys`; key rotation re-wraps it (`rewrap`) and no
stored value is rewritten. Three keys are derived from the value key (HKDF-SHA-256): one encrypts the values
(AES-256-GCM, a random 96-bit nonce per value, the object and field names as associated data, so a value cannot be
moved to another field), one keys the equality hash (HMAC-SHA-256 of the value's canonical JSON) and one the
search hash (HMAC-SHA-256 of the value as erasure compares it: trimmed, lower case). The hashes are keyed per org:
without the KEK they cannot be recomputed or guessed, and equal values of two orgs do not look alike.

A value is stored in the version's JSON as `{"$sfv1": "EQ.SEARCH.SEALED"}` (URL-safe base64 without padding),
whatever the field's type: no Salesforce value is an object with a key starting with "$", so a reader recognises
a sealed value without its schema (a field no longer sensitive keeps its older versions sealed, and they still
open). Nulls are not stored at all (canonical values omit them), so whether a sensitive field is empty shows.

Pure: no I/O.
"""

from __future__ import annotations

import base64
import hmac
import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from services.canonical import _plain as _exact
from services.platform.encryption import KEY_SETTING
from services.platform.errors import FailedPrecondition
from services.storage.erasure import value_key

TOKEN = "$sfv1"
MARK = '"' + TOKEN + '"'  # present in a version's JSON text exactly when one of its values is sealed


class ValueDamaged(FailedPrecondition):
    """A sealed value failed its authentication (altered, or moved to another field or object)."""


def no_key_message(object_name: str, fields: Iterable[str]) -> str:
    names = ", ".join(f"{object_name}.{f}" for f in fields)
    return (
        f"fields {names} are marked sensitive, but storage has no key to encrypt them:"
        f" set {KEY_SETTING} (a 32-byte key from a secret reference) or remove them from the policy's sensitive"
        " fields; nothing of theirs is stored in clear"
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _derive(data_key: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"sfvault sensitive " + purpose).derive(data_key)


def _where(object_name: str, field: str) -> bytes:
    return f"{object_name}.{field}".lower().encode()


def _search_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, separators=(",", ":"))


def _dumps(value: Any) -> bytes:
    """JSON text with keys sorted: orjson's, or the json module's for what orjson cannot write (integers beyond
    64 bits)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def _loads(text: bytes | str) -> Any:
    """orjson's reading where it is exact (services.canonical's rule); else the json module's (orjson reads an
    integer beyond 64 bits as a float)."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        value = None
    return value if value is not None and _exact(value) else json.loads(text)


def _plain(value: Any) -> bytes:
    """A value's one JSON text (keys sorted): what is sealed and what the equality hash is taken of."""
    return _dumps(value)


class ValueKey:
    """One org's value key, opened: seals, opens and hashes the values of sensitive fields. The hashes are
    HMAC-SHA-256 cut to 128 bits (ample for equality; 22 characters each)."""

    def __init__(self, data_key: bytes) -> None:
        self._aead = AESGCM(_derive(data_key, b"values"))
        self._equality = _derive(data_key, b"equality")
        self._search = _derive(data_key, b"search")

    def _hash(self, key: bytes, where: bytes, text: bytes) -> str:
        return _b64(hmac.digest(key, where + b"\0" + text, "sha256")[:16])

    def equality_hash(self, object_name: str, field: str, value: Any) -> str:
        """Equal for equal values of one field (the value's JSON, keyed): what compare compares."""
        return self._hash(self._equality, _where(object_name, field), _plain(value))

    def search_hash(self, object_name: str, field: str, value: Any) -> str:
        """Equal for values equal as erasure compares them (trimmed, case-insensitive), keyed."""
        return self._hash(self._search, _where(object_name, field), value_key(_search_text(value)).encode())

    def seal(self, object_name: str, field: str, value: Any) -> dict[str, str]:
        where = _where(object_name, field)
        plain = _plain(value)
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plain, where)
        eq = self._hash(self._equality, where, plain)
        search = self._hash(self._search, where, value_key(_search_text(value)).encode())
        return {TOKEN: f"{eq}.{search}.{_b64(nonce + sealed)}"}

    def open(self, object_name: str, field: str, token: str) -> Any:
        try:
            blob = _unb64(token.rsplit(".", 1)[1])
            plain = self._aead.decrypt(blob[:12], blob[12:], _where(object_name, field))
        except (InvalidTag, IndexError, ValueError):
            raise ValueDamaged(
                f"the sealed value of {object_name}.{field} fails authentication (altered or moved)"
            ) from None
        return _loads(plain)


def sealed(value: Any) -> str | None:
    """The token of a sealed value (else None)."""
    if type(value) is dict and len(value) == 1 and type(token := value.get(TOKEN)) is str:
        return token
    return None


def token_hashes(token: str) -> tuple[str, str]:
    """(equality hash, search hash) of a sealed value's token."""
    eq, search, _ = token.split(".", 2)
    return eq, search


def has_sealed(text: str) -> bool:
    return MARK in text


class FieldSealer:
    """The sensitive fields of one object under its org's value key."""

    def __init__(self, key: ValueKey, object_name: str, fields: Iterable[str]) -> None:
        self.key = key
        self.object_name = object_name
        self.fields = tuple(fields)
        # canonical JSON writes a key as "Name": -- a record without one of them is left as it came, unparsed
        self._marks = tuple(json.dumps(f).encode() + b":" for f in self.fields)

    def seal_json(self, data: bytes) -> bytes:
        """A record's values (a JSON object) with the sensitive fields' values sealed."""
        if not any(m in data for m in self._marks):
            return data
        values = _loads(data)
        for f in self.fields:
            v = values.get(f)
            if v is not None and sealed(v) is None:
                values[f] = self.key.seal(self.object_name, f, v)
        return _dumps(values)


def open_values(key: ValueKey, object_name: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """The values with every sealed one opened (whatever the schema says now)."""
    out = dict(values)
    for f, v in values.items():
        token = sealed(v)
        if token is not None:
            out[f] = key.open(object_name, f, token)
    return out


def open_json(key: ValueKey, object_name: str, text: str) -> str:
    """A version's values (JSON text) with the sealed ones opened (keys sorted); text without any, as is."""
    if MARK not in text:
        return text
    return _dumps(open_values(key, object_name, _loads(text))).decode()


def compared_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """The values as compare compares them: a sealed one by its keyed equality hash (no decryption)."""
    out = dict(values)
    for f, v in values.items():
        token = sealed(v)
        if token is not None:
            out[f] = {TOKEN: token_hashes(token)[0]}
    return out
