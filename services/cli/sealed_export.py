"""An export encrypted on request (issue 18): `sfvault export OBJ --encrypt-to KEYREF` writes the export sealed
with storage's own envelope scheme (services/platform/encryption.py, not a second one): a random 256-bit data key
seals the bytes as they stream (AES-256-GCM, 1 MiB segments, each authenticated with its index and whether it is
the last), and the key from the secret reference (32 bytes, hex or base64) wraps the data key. `sfvault decrypt
FILE --key KEYREF` reads it back. Nothing is held whole.

File: `SFVEXP01`, the key's id (derived from it, not secret) and the wrapped data key, each preceded by its
length (2 bytes), then the sealed body (encryption.py's framing). A wrong key, or a file altered or cut short,
fails with a message, never with partial plaintext passed off as whole."""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator

from services.platform.encryption import Envelope, Keyring, KeyUnavailable, Opener, Sealer, parse_key
from services.platform.secrets import read_secret

__all__ = ["KeyUnavailable", "SealedExportError", "keyring_of", "open_sealed", "seal"]

MAGIC = b"SFVEXP01"
_LENGTH = struct.Struct(">H")


class SealedExportError(ValueError):
    pass


def keyring_of(ref: str, option: str) -> Keyring:
    """The key a secret reference holds (the error names the option and the reference, never a value)."""
    return Keyring(parse_key(read_secret(ref, option), f"{option} ({ref})"))


def seal(parts: Iterable[bytes], keyring: Keyring) -> Iterator[bytes]:
    data_key, envelope = keyring.new_data_key()
    kek_id = envelope.kek_id.encode()
    yield MAGIC + _LENGTH.pack(len(kek_id)) + kek_id + _LENGTH.pack(len(envelope.wrapped_key)) + envelope.wrapped_key
    sealer = Sealer(data_key)
    for part in parts:
        if out := sealer.feed(part):
            yield out
    yield sealer.finish()


def _field(buffer: bytearray, at: int) -> tuple[bytes, int] | None:
    if len(buffer) < at + 2:
        return None
    (size,) = _LENGTH.unpack_from(buffer, at)
    if len(buffer) < at + 2 + size:
        return None
    return bytes(buffer[at + 2 : at + 2 + size]), at + 2 + size


def open_sealed(parts: Iterable[bytes], keyring: Keyring, where: str = "the export") -> Iterator[bytes]:
    """The plaintext of a sealed export, as it is read; raises SealedExportError (not one), KeyUnavailable (another
    key) or BodyDamaged (altered or cut short)."""
    buffer = bytearray()
    opener: Opener | None = None
    for part in parts:
        if opener is not None:
            if out := opener.feed(part):
                yield out
            continue
        buffer += part
        if len(buffer) < len(MAGIC):
            continue
        if bytes(buffer[: len(MAGIC)]) != MAGIC:
            raise SealedExportError(f"{where} is not an encrypted sfvault export")
        kek = _field(buffer, len(MAGIC))
        wrapped = _field(buffer, kek[1]) if kek else None
        if kek is None or wrapped is None:
            continue
        opener = Opener(keyring.unwrap(Envelope(kek[0].decode(errors="replace"), wrapped[0])), where)
        if out := opener.feed(bytes(buffer[wrapped[1] :])):
            yield out
    if opener is None:
        raise SealedExportError(f"{where} is cut short (no complete header)")
    yield opener.finish()
