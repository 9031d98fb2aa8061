"""The gzip body of a Bulk result page is inflated in large steps: every byte, every member, and a truncated
body is an error (never a short page taken as whole)."""

from __future__ import annotations

import gzip
import io
import random

import pytest
from urllib3.exceptions import ProtocolError

from services.jobrunner.salesforce import _Gunzipped


class Wire:
    """A response's raw stream: read(n, decode_content=False), in pieces of at most `piece` bytes."""

    def __init__(self, data: bytes, piece: int = 1 << 16) -> None:
        self.stream = io.BytesIO(data)
        self.piece = piece

    def read(self, n: int, decode_content: bool = True) -> bytes:
        assert decode_content is False
        return self.stream.read(min(n, self.piece))


def inflate(data: bytes, piece: int = 1 << 16) -> bytes:
    return io.BufferedReader(_Gunzipped(Wire(data, piece)), 1 << 12).read()


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
