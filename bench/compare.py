"""Compare (issue 18) on a large object: BENCH_COMPARE_RECORDS (1,000,000) Accounts backed up, then 1 % of them
changed (and a few added and deleted) in a later session; storage's CompareAsOf between the two points (names of
the changed fields, then with values) and CountLive, timed. The records are written straight into storage's
tables with SQL (the backup itself is bench/storage.py's subject), on embedded PostgreSQL.

    make bench-compare            # or: python -m bench compare
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from devstack.embedded import postgres_server
from services.canonical import FieldDef, FieldType, ObjectSchema
from services.storage.application import Storage
from services.storage.files import LocalFileRepository
from services.storage.store import PostgresStore, open_store_pool

ORG = "00D000000000062EAA"
ACCOUNT = ObjectSchema(
    "Account",
    (
        FieldDef("Id", FieldType.ID),
        FieldDef("Name", FieldType.STRING),
        FieldDef("Industry", FieldType.STRING),
        FieldDef("AnnualRevenue", FieldType.DOUBLE),
        FieldDef("SystemModstamp", FieldType.DATETIME),
    ),
    key_prefix="001",
)


class _Quiet:
    async def chunk_uploaded(self, *args: Any, **kwargs: Any) -> None:
        return None


async def _load(store: PostgresStore, storage: Storage, records: int) -> tuple[dt.datetime, int, int, int]:
    """The initial backup (session s1) and a session s2 changing 1 %, adding and deleting 0.01 % each; returns
    (a time between them, changed, added, deleted)."""
    await storage.begin_job(ORG, "s1", "j1", 3, "Account")
    await storage.put_schema(ORG, "s1", ACCOUNT)
    await storage.begin_job(ORG, "s2", "j1", 3, "Account")
    await storage.put_schema(ORG, "s2", ACCOUNT)
    async with store.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT o.org_key, o.object_key, j.job_key FROM storage.objects o JOIN storage.jobs j USING (org_key)"
            " WHERE j.session_id = 's1'"
        )
        org_key, object_key, job1 = await cur.fetchone()  # type: ignore[misc]
        cur = await conn.execute("SELECT job_key FROM storage.jobs WHERE session_id = 's2'")
        (job2,) = await cur.fetchone()  # type: ignore[misc]
        # Ids: '001' + 12 digits + a checksum that is 'AAA' for digits only
        make_id = "'001' || lpad(i::text, 12, '0') || 'AAA'"
        data = (
            f"jsonb_build_object('Id', {make_id}, 'Name', 'Account ' || i, 'Industry', 'Retail', 'AnnualRevenue', i,"
            " 'SystemModstamp', '2026-01-01T00:00:00.000Z')"
        )

        async def add_versions(
            numbers: str, job: int, *, deleted: int = 0, hashed: str = "i::text", more: str = ""
        ) -> None:
            """A version in `job` of each record numbered by `numbers` (a SELECT of i); its data with `more`."""
            await conn.execute(
                "INSERT INTO storage.record_versions (org_key, object_key, record_id, job_key, schema_version, deleted,"
                f" hash, data) SELECT %s, %s, {make_id}, %s, 1, {deleted}, decode(md5({hashed}), 'hex'), {data}{more}"
                f" FROM ({numbers}) n",
                (org_key, object_key, job),
            )

        async def add_heads(numbers: str) -> None:
            await conn.execute(
                "INSERT INTO storage.record_head (org_key, object_key, record_id, hash, deleted, versions)"
                f" SELECT %s, %s, {make_id}, decode(md5(i::text), 'hex'), 0, 1 FROM ({numbers}) n",
                (org_key, object_key),
            )

        async def update_heads(numbers: str, change: str) -> None:
            """`change` (SET ...; n.i the record's number) and one more version for each record of `numbers`."""
            await conn.execute(
                f"UPDATE storage.record_head h SET {change}, versions = versions + 1, changed_at = now()"
                f" FROM ({numbers}) n WHERE h.org_key = %s AND h.object_key = %s"
                f" AND h.record_id = {make_id.replace('i::', 'n.i::')}",
                (org_key, object_key),
            )

        initial = f"SELECT i FROM generate_series(1, {records}) i"
        await add_versions(initial, job1)
        await add_heads(initial)
        await conn.commit()
        await conn.set_autocommit(True)
        await conn.execute("VACUUM ANALYZE storage.record_versions")
        await conn.execute("VACUUM ANALYZE storage.record_head")
        await conn.set_autocommit(False)
        await asyncio.sleep(0.01)
        between = dt.datetime.now(dt.UTC)
        await asyncio.sleep(0.01)
        step = 100  # every 100th record changed: 1 %
        changed = f"SELECT i FROM generate_series(1, {records}, {step}) i"
        rename = " || jsonb_build_object('Name', 'Renamed ' || i)"
        await add_versions(changed, job2, hashed="'x' || i", more=rename)
        await update_heads(changed, "hash = decode(md5('x' || n.i), 'hex')")
        few = max(1, records // 10_000)
        deleted = f"SELECT i FROM generate_series(50, {50 + 100 * (few - 1)}, 100) i"  # not among the changed
        await add_versions(deleted, job2, deleted=2)
        await update_heads(deleted, "deleted = 2")
        added = f"SELECT i FROM generate_series({records + 1}, {records + few}) i"
        await add_versions(added, job2)
        await add_heads(added)
        await conn.commit()
        await conn.execute("ANALYZE storage.record_head")
        await conn.commit()
        return between, len(range(1, records + 1, step)), few, few


async def _main(url: str, files: str) -> None:
    records = int(os.environ.get("BENCH_COMPARE_RECORDS", "1000000"))
    pool = await open_store_pool(url, max_size=4)
    store = PostgresStore(pool)
    await store.migrate()
    storage = Storage(store, LocalFileRepository(Path(files)), _Quiet())  # type: ignore[arg-type]
    started = time.perf_counter()
    between, changed, added, deleted = await _load(store, storage, records)
    print(f"loaded {records:,} records, then {changed:,} changed, {added:,} added, {deleted:,} deleted"
          f" in {time.perf_counter() - started:.1f} s", flush=True)  # fmt: skip
    for values in (False, True, False):
        started = time.perf_counter()
        counts = {"added": 0, "deleted": 0, "changed": 0}
        summaries: list[Any] = []
        async for piece in storage.compare_as_of(ORG, between, None, values=values):
            for c in piece.changes:
                counts[c.change] += 1
            summaries = piece.summaries or summaries
        took = time.perf_counter() - started
        assert counts == {"added": added, "deleted": deleted, "changed": changed}, counts
        s = summaries[0]
        assert (s.added, s.deleted, s.changed) == (added, deleted, changed)
        print(f"CompareAsOf{' (values)' if values else ''}: {sum(counts.values()):,} changes of {records:,}"
              f" records in {took:.2f} s", flush=True)  # fmt: skip
    started = time.perf_counter()
    live = await storage.count_live(ORG)
    print(f"CountLive: {live} in {time.perf_counter() - started:.3f} s", flush=True)
    assert live["Account"] == records + added - deleted
    await pool.close()


def run() -> None:
    with tempfile.TemporaryDirectory(prefix="sfvault-bench-") as tmp, postgres_server() as pg:
        asyncio.run(_main(pg, str(Path(tmp) / "files")))


if __name__ == "__main__":
    run()
