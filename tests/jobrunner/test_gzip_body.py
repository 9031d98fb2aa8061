"""The body of a Bulk result page, read in large steps: inflated when gzipped (every byte, every member, a
truncated body is an error, never a short page taken as whole), NUL characters removed."""

from __future__ import annotations

import gzip
import io
import random

import pytest
from urllib3.exceptions import ProtocolError

from services.jobrunner.salesforce import _PageBody


class Wire:
    """A response's raw stream: read(n, decode_content=False), in pieces of at most `piece` bytes."""

    def __init__(self, data: bytes, piece: int = 1 << 16, *, gzipped: bool = True) -> None:
        self.stream = io.BytesIO(data)
        self.piece = piece
        self.gzipped = gzipped

    def read(self, n: int, decode_content: bool = True) -> bytes:
        assert decode_content is not self.gzipped  # urllib3 decodes only what the reader does not
        return self.stream.read(min(n, self.piece))


def inflate(data: bytes, piece: int = 1 << 16, *, gzipped: bool = True) -> bytes:
    return io.BufferedReader(_PageBody(Wire(data, piece, gzipped=gzipped), gzipped=gzipped), 1 << 12).read()


random.seed(7)
TEXT = "".join(f'{i},"name {i}",{random.random()}\n' for i in range(50_000)).encode()


@pytest.mark.parametrize("piece", [1, 97, 1 << 16])
def test_every_byte_whatever_the_wire_pieces(piece: int) -> None:
    body = TEXT if piece > 1 else TEXT[:20_000]
    assert inflate(gzip.compress(body, 1), piece) == body


def test_a_body_of_several_members_is_inflated_whole() -> None:
    data = gzip.compress(TEXT[:1000]) + gzip.compress(TEXT[1000:30_000]) + gzip.compress(TEXT[30_000:])
    assert inflate(data) == TEXT


def test_an_empty_body() -> None:
    assert inflate(gzip.compress(b"")) == b""


def test_a_truncated_body_is_an_error() -> None:
    with pytest.raises(ProtocolError, match="gzip body ended"):
        inflate(gzip.compress(TEXT)[:5000])


@pytest.mark.parametrize("gzipped", [True, False])
def test_nul_characters_are_removed_and_nothing_else(gzipped: bool) -> None:
    body = "Id,Name\n001,Z\u00fcrich\x00 AG\n002,\x00\x00\n".encode()
    data = gzip.compress(body) if gzipped else body
    assert inflate(data, 5, gzipped=gzipped) == "Id,Name\n001,Z\u00fcrich AG\n002,\n".encode()
