"""An export encrypted on request (issue 18): sealed with storage's envelope scheme as it streams, read back with
the key (`sfvault decrypt`), refused with another key, altered or cut short; the real entry point for decrypt."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from services.cli.sealed_export import MAGIC, SealedExportError, keyring_of, open_sealed, seal
from services.platform.encryption import SEGMENT, BodyDamaged, Keyring, KeyUnavailable
from services.platform.secrets import SecretError
from tests.cli.test_main import one_error_line, sfvault

KEY, OTHER = os.urandom(32), os.urandom(32)


def _pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


@pytest.mark.parametrize("size", [0, 10, SEGMENT + 5, 2 * SEGMENT])
def test_an_export_round_trips_whatever_the_pieces(size: int) -> None:
    data = os.urandom(size)
    sealed = b"".join(seal(_pieces(data, 70_000), Keyring(KEY)))
    assert sealed.startswith(MAGIC) and (size < 64 or data[:64] not in sealed)
    for piece in (1, 7, 4099, SEGMENT):
        if piece == 1 and size > 100:
            continue
        assert b"".join(open_sealed(_pieces(sealed, piece), Keyring(KEY))) == data


def test_another_key_an_altered_or_a_cut_file_fails() -> None:
    data = b"Id,Email\n003000000000001AAA,jane@example.org\n" * 1000
    sealed = b"".join(seal([data], Keyring(KEY)))
    with pytest.raises(KeyUnavailable):
        b"".join(open_sealed([sealed], Keyring(OTHER)))
    altered = bytearray(sealed)
    altered[-20] ^= 1
    with pytest.raises(BodyDamaged):
        b"".join(open_sealed([bytes(altered)], Keyring(KEY)))
    with pytest.raises(BodyDamaged):
        b"".join(open_sealed([sealed[:-10]], Keyring(KEY)))
    with pytest.raises(SealedExportError, match="cut short"):
        b"".join(open_sealed([sealed[:12]], Keyring(KEY)))
    with pytest.raises(SealedExportError, match="not an encrypted"):
        b"".join(open_sealed([data], Keyring(KEY)))


def test_the_key_comes_from_a_secret_reference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPORT_KEY", KEY.hex())
    assert keyring_of("env:EXPORT_KEY", "--encrypt-to").current_id == Keyring(KEY).current_id
    (tmp_path / "short").write_text("abcd")
    with pytest.raises(SecretError, match="--encrypt-to") as refused:
        keyring_of(f"file:{tmp_path / 'short'}", "--encrypt-to")
    assert "abcd" not in str(refused.value)


def test_sfvault_decrypt(tmp_path: Path) -> None:
    data = b"Id,Email\n003000000000001AAA,jane@example.org\n"
    source = tmp_path / "export.csv.sfv"
    source.write_bytes(b"".join(seal([data], Keyring(KEY))))
    (tmp_path / "key").write_text(KEY.hex())
    (tmp_path / "other").write_text(OTHER.hex())
    out = tmp_path / "plain.csv"
    done = sfvault("decrypt", str(source), "--key", f"file:{tmp_path / 'key'}", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == data and (out.stat().st_mode & 0o777) == 0o600
    shown = sfvault("decrypt", str(source), "--key", f"file:{tmp_path / 'key'}")
    assert shown.stdout.encode() == data
    wrong = sfvault("decrypt", str(source), "--key", f"file:{tmp_path / 'other'}", "-o", str(tmp_path / "x.csv"))
    assert "is not encrypted with the key" in one_error_line(wrong) and not (tmp_path / "x.csv").exists()
