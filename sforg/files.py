"""File bodies: generated deterministically from a seed (no disk), or stored content-addressed in DIR/blobs.

Two generators: `gen:` (a generated org's files, Mersenne Twister blocks: about 450 MB/s on one core) and `fast:` (an
AES-128-CTR keystream: several GB/s, so a benchmark's large files are served at the pace of what reads them, not of
the emulator's generator)."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from pathlib import Path

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK = 65536


def generated_blocks(seed: int, size: int) -> Iterator[bytes]:
    """The bytes of a generated file, block by block; the same (seed, size) always gives the same bytes."""
    remaining = size
    index = 0
    while remaining > 0:
        block = random.Random(seed * 1_000_003 + index).randbytes(BLOCK)
        if index == 0:
            # A readable header so a human opening a file sees what it is.
            head = f"sforg generated file seed={seed} size={size}\n".encode()
            block = head + block[len(head) :]
        yield block[:remaining]
        remaining -= min(BLOCK, remaining)
        index += 1


def fast_blocks(seed: int, size: int) -> Iterator[bytes]:
    """The bytes of a `fast:` body, block by block: the keystream of AES-128-CTR under a key derived from the seed
    (the same (seed, size) always gives the same bytes), behind the same readable header as a generated file's."""
    key = hashlib.sha256(f"sforg fast body {seed}".encode()).digest()[:16]
    keystream = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()
    zeros = bytes(BLOCK)
    head = f"sforg generated file seed={seed} size={size}\n".encode()
    sent = 0
    while sent < size:
        block = keystream.update(zeros[: min(BLOCK, size - sent)])
        if sent == 0:
            block = (head + block[len(head) :])[: len(block)]
        yield block
        sent += len(block)


def digests(blocks: Iterator[bytes]) -> tuple[str, str, int]:
    """(sha256 hex, md5 hex, size) of a stream of blocks."""
    sha, md5, n = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
    for b in blocks:
        sha.update(b)
        md5.update(b)
        n += len(b)
    return sha.hexdigest(), md5.hexdigest(), n


GENERATORS = {"gen": generated_blocks, "fast": fast_blocks}


class BlobStore:
    """Resolves a record's blob descriptor ('gen:SEED:SIZE', 'fast:SEED:SIZE' or 'sha:HEX') to a byte stream."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def put(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        path = self.root / sha
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.rename(path)
        return f"sha:{sha}"

    def size(self, descriptor: str) -> int:
        kind, _, rest = descriptor.partition(":")
        if kind in GENERATORS:
            return int(rest.split(":")[1])
        return (self.root / rest).stat().st_size

    def open(self, descriptor: str) -> Iterator[bytes]:
        kind, _, rest = descriptor.partition(":")
        if kind in GENERATORS:
            seed, size = rest.split(":")
            yield from GENERATORS[kind](int(seed), int(size))
            return
        with open(self.root / rest, "rb") as fh:
            while chunk := fh.read(BLOCK):
                yield chunk
