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


@pytest.mark.parametrize("piece", [1, 3, 1 << 16])
def test_a_body_of_several_members_is_inflated_whole(piece: int) -> None:
    body = TEXT if piece > 3 else TEXT[:3000]
    data = gzip.compress(body[:1000]) + gzip.compress(body[1000:2000]) + gzip.compress(body[2000:])
    assert inflate(data, piece) == body


def test_bytes_after_the_last_member_are_ignored_as_urllib3_does() -> None:
    assert inflate(gzip.compress(TEXT[:5000]) + b"\x00\x00trailing") == TEXT[:5000]


@pytest.mark.parametrize("gzipped", [True, False])
def test_a_body_of_no_bytes_is_empty_whatever_its_encoding(gzipped: bool) -> None:
    assert inflate(b"", gzipped=gzipped) == b""


def test_crlf_lines_and_a_nul_between_cr_and_lf() -> None:
    body = b'"Id","Name"\r\n"001","A"\r\x00\n"002","B"\r\n'
    assert inflate(gzip.compress(body), 4) == body.replace(b"\x00", b"")


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


def test_a_corrupt_body_is_a_protocol_error_so_the_page_is_read_again() -> None:
    data = bytearray(gzip.compress(TEXT))
    data[2000:2100] = bytes(100)  # deflate blocks overwritten
    with pytest.raises(ProtocolError, match="gzip body is corrupt"):
        inflate(bytes(data))
    bad_crc = bytearray(gzip.compress(TEXT[:5000]))
    bad_crc[-8] ^= 0xFF  # the trailer's CRC-32
    with pytest.raises(ProtocolError, match="gzip body is corrupt"):
        inflate(bytes(bad_crc))
