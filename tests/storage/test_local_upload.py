"""A local repository's upload gathers small pieces before writing them (one worker-thread hop for a small body),
yet writes a large body as it comes (never held whole), keeps every byte in order, and leaves nothing behind when
aborted, before or after its first write to disk."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

from services.storage.files import WRITE_AT, LocalFileRepository


def _pieces(total: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    out, left = [], total
    while left:
        n = min(left, rng.randrange(1, 70_000))
        out.append(rng.randbytes(n))
        left -= n
    return out


def _temporary(root: Path) -> list[Path]:
    return list((root / ".tmp").iterdir())


async def test_a_large_body_is_written_as_it_comes_and_read_back_intact(tmp_path: Path) -> None:
    repo = LocalFileRepository(tmp_path)
    pieces = _pieces(3 * WRITE_AT + 777, seed=1)
    up = await repo.begin()
    for piece in pieces:
        await up.write(piece)
    (tmp,) = _temporary(tmp_path)
    assert tmp.stat().st_size >= 2 * WRITE_AT  # on disk before the commit: not held whole in memory
    body = b"".join(pieces)
    key = await up.commit(hashlib.sha256(body).hexdigest())
    assert b"".join([c async for c in repo.read(key)]) == body
    assert _temporary(tmp_path) == []


async def test_an_aborted_upload_leaves_nothing_whether_or_not_it_reached_the_disk(tmp_path: Path) -> None:
    repo = LocalFileRepository(tmp_path)
    for total in (1000, 2 * WRITE_AT):  # gathered only, and written in part
        up = await repo.begin()
        for piece in _pieces(total, seed=total):
            await up.write(piece)
        await up.abort()
        assert _temporary(tmp_path) == []
    small = b"x" * 1000
    up = await repo.begin()
    await up.write(small)
    key = await up.commit(hashlib.sha256(small).hexdigest())
    assert (tmp_path / key).read_bytes() == small and (tmp_path / key).stat().st_mode & 0o777 == 0o600
