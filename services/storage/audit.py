"""The read audit: who read what and when. Each read RPC records one entry (caller, RPC, org, object, record
Id or file or component, the time asked for, how many versions, records or bytes it sent; never a value). The
entries are kept in memory and appended in batches (COPY), so a read waits for no write: at most
`flush_interval_s` of entries are lost if the process is killed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

from services.storage.domain import InvalidArgument, ReadEntry
from services.storage.ports import ReadAuditStore

log = logging.getLogger(__name__)
DEFAULT_PAGE = 500
MAX_PAGE = 5000


class ReadAuditLog:
    def __init__(
        self, store: ReadAuditStore, *, flush_interval_s: float = 1.0, batch: int = 500, max_pending: int = 100_000
    ) -> None:
        self.store = store
        self.flush_interval_s = flush_interval_s
        self.batch = batch
        self.max_pending = max_pending
        self._pending: list[ReadEntry] = []
        self._full = asyncio.Event()
        self._lock = asyncio.Lock()
        self.dropped = 0

    def record(self, entry: ReadEntry) -> None:
        """Keeps the entry for the next batch (no I/O here)."""
        if len(self._pending) >= self.max_pending:  # the database is away for long: keep the newest
            del self._pending[: self.batch]
            self.dropped += self.batch
            log.warning("read audit: %d entries dropped so far (database unreachable)", self.dropped)
        self._pending.append(entry)
        if len(self._pending) >= self.batch:
            self._full.set()

    async def flush(self) -> None:
        """Appends what is pending (kept for the next try when the database refuses)."""
        async with self._lock:
            while self._pending:
                entries = self._pending[: self.batch * 10]
                await self.store.record_reads(entries)
                del self._pending[: len(entries)]

    async def run(self) -> None:
        """Until cancelled: a batch every interval, or sooner when one is full."""
        while True:
            try:
                async with asyncio.timeout(self.flush_interval_s):
                    await self._full.wait()
            except TimeoutError:
                pass
            self._full.clear()
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # retried at the next interval, nothing lost meanwhile
                log.warning("read audit: %d entries not written yet (%s)", len(self._pending), type(exc).__name__)

    async def page(
        self, *, since: dt.datetime | None, actor: str, page_size: int, page_token: str
    ) -> tuple[list[ReadEntry], str]:
        """A page of entries, oldest first, and the token of the next page ("" at the end)."""
        if page_size < 0 or page_size > MAX_PAGE:
            raise InvalidArgument(f"page_size must be between 0 and {MAX_PAGE} (0: {DEFAULT_PAGE}), got {page_size}")
        if page_token and not (page_token.isascii() and page_token.isdigit() and int(page_token) < 2**63):
            raise InvalidArgument("page_token is not one this service gave (use next_page_token as it came)")
        size = page_size or DEFAULT_PAGE
        await self.flush()  # this replica's reads until now are in the answer
        rows = await self.store.read_audit(since=since, actor=actor, after=int(page_token or 0), limit=size + 1)
        more = len(rows) > size
        rows = rows[:size]
        return rows, str(rows[-1].entry_id) if more else ""
