"""Keep (issue 18): the tables legal_holds, restore_pins, retention_horizons, and the prune step over
record_versions, metadata_versions, file_versions and files (see retention.py for the rules).

One prune step is one transaction: it claims its (job, chunk_seq) like every chunk (a redelivered step returns
its first result), gathers what it may delete into temporary tables (bounded by `limit`), deletes it, moves the
horizons and stores its result with its ChunkUploaded in the outbox. The file bodies it dropped from `files` are
returned for the caller to delete from the repository after the commit (a body left behind by a crash in
between is unreferenced garbage, never a dangling reference).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import psycopg

from services.storage.store_base import S, StoreBase


@dataclass(frozen=True)
class HoldRow:
    hold_id: int
    org_id: str
    object_name: str
    reason: str
    policy_id: str
    set_by: str
    set_at: dt.datetime
    released_at: dt.datetime | None
    released_by: str


@dataclass(frozen=True)
class PruneRule:
    days: int = 0
    versions: int = 0
    prune_latest: bool = False


@dataclass(frozen=True)
class PruneResult:
    """One prune step (storage.v1.PruneStepResponse): what it deleted (or, in a dry run, would), `done` when
    nothing is left to prune, `held` when a legal hold kept (part of) the org, the org's horizon after it, and
    `replayed` for a redelivered step (its first result)."""

    record_versions: int = 0
    metadata_versions: int = 0
    file_versions: int = 0
    file_bodies: int = 0
    bytes_freed: int = 0
    done: bool = False
    held: bool = False
    horizon: dt.datetime | None = None
    replayed: bool = False

    @property
    def work(self) -> int:
        return self.record_versions + self.metadata_versions + self.file_versions + self.file_bodies

    def to_json(self) -> dict[str, Any]:
        """The step's part of its chunk's stored result (`replayed` is the call's, not stored)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "replayed"}
        return data | {"horizon": self.horizon.isoformat() if self.horizon else None}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, replayed: bool) -> PruneResult:
        horizon = dt.datetime.fromisoformat(data["horizon"]) if data["horizon"] else None
        counted = {
            f: data[f] for f in ("record_versions", "metadata_versions", "file_versions", "file_bodies", "bytes_freed")
        }
        return cls(**counted, done=bool(data["done"]), held=bool(data["held"]), horizon=horizon, replayed=replayed)


_HOLD_COLUMNS = (
    "h.hold_id, o.org_id, h.object_name, h.reason, h.policy_id, h.set_by, h.set_at, h.released_at, h.released_by"
)

# the versions of records a step may delete: superseded before the cutoff, or beyond the last `versions` of their
# record; never a record's latest; never the version in force at a pin of its object
_RECORD_CANDIDATES = f"""
INSERT INTO prune_rv (object_key, record_id, version_id, superseded_at, whole)
SELECT c.object_key, c.record_id, c.version_id, c.superseded_at, false FROM (
  SELECT v.object_key, v.record_id, v.version_id, v.captured_at,
         lead(v.captured_at) OVER (PARTITION BY v.object_key, v.record_id ORDER BY v.version_id) AS superseded_at,
         row_number() OVER (PARTITION BY v.object_key, v.record_id ORDER BY v.version_id DESC) AS rn
  FROM {S}.record_versions v
  WHERE v.org_key = %(org)s AND NOT (v.object_key = ANY(%(held)s::int[]))
) c JOIN {S}.objects o ON o.object_key = c.object_key
WHERE c.superseded_at IS NOT NULL
  AND ((%(days)s > 0 AND c.superseded_at < %(cutoff)s) OR (%(versions)s > 0 AND c.rn > %(versions)s))
  AND NOT EXISTS (SELECT 1 FROM {S}.restore_pins p WHERE p.org_key = %(org)s
                  AND (p.objects = '{{}}' OR lower(o.object_name) = ANY(p.objects))
                  AND c.captured_at <= p.at AND c.superseded_at > p.at)
ORDER BY c.object_key, c.record_id, c.version_id
LIMIT %(limit)s
ON CONFLICT DO NOTHING
"""

# prune_latest: every version of a record whose latest version is a deletion captured before the cutoff, unless a
# pin of its object falls after its first version (the record would come back wrong at that pin)
_WHOLE_RECORDS = f"""
WITH gone AS (
  SELECT h.object_key, h.record_id FROM {S}.record_head h JOIN {S}.objects o ON o.object_key = h.object_key
  WHERE h.org_key = %(org)s AND h.deleted <> 0 AND h.changed_at < %(cutoff)s
    AND NOT (h.object_key = ANY(%(held)s::int[]))
    AND NOT EXISTS (SELECT 1 FROM {S}.restore_pins p WHERE p.org_key = %(org)s
                    AND (p.objects = '{{}}' OR lower(o.object_name) = ANY(p.objects))
                    AND p.at >= (SELECT min(v.captured_at) FROM {S}.record_versions v WHERE v.org_key = %(org)s
                                 AND v.object_key = h.object_key AND v.record_id = h.record_id))
  ORDER BY h.object_key, h.record_id
  LIMIT %(limit)s
)
INSERT INTO prune_rv (object_key, record_id, version_id, superseded_at, whole)
SELECT v.object_key, v.record_id, v.version_id, last.captured_at, true
FROM gone g
JOIN {S}.record_versions v ON v.org_key = %(org)s AND v.object_key = g.object_key AND v.record_id = g.record_id
CROSS JOIN LATERAL (SELECT max(x.captured_at) AS captured_at FROM {S}.record_versions x WHERE x.org_key = %(org)s
                    AND x.object_key = g.object_key AND x.record_id = g.record_id) last
ON CONFLICT (object_key, record_id, version_id) DO UPDATE SET whole = true, superseded_at = excluded.superseded_at
"""

_METADATA_CANDIDATES = f"""
INSERT INTO prune_mv (version_id, type, full_name, superseded_at, sha256, size)
SELECT c.version_id, c.type, c.full_name, c.superseded_at, c.sha256, c.size FROM (
  SELECT m.version_id, m.type, m.full_name, m.captured_at, m.sha256, m.size,
         lead(m.captured_at) OVER (PARTITION BY m.type, m.full_name ORDER BY m.version_id) AS superseded_at,
         row_number() OVER (PARTITION BY m.type, m.full_name ORDER BY m.version_id DESC) AS rn
  FROM {S}.metadata_versions m WHERE m.org_key = %(org)s
) c
WHERE c.superseded_at IS NOT NULL
  AND ((%(days)s > 0 AND c.superseded_at < %(cutoff)s) OR (%(versions)s > 0 AND c.rn > %(versions)s))
  AND NOT EXISTS (SELECT 1 FROM {S}.restore_pins p WHERE p.org_key = %(org)s AND p.objects = '{{}}'
                  AND c.captured_at <= p.at AND c.superseded_at > p.at)
ORDER BY c.version_id
LIMIT %(limit)s
"""

_FILE_CANDIDATES = f"""
INSERT INTO prune_fv (version_id, object_name, superseded_at, sha256, size)
SELECT c.version_id, c.object_name, c.superseded_at, c.sha256, c.size FROM (
  SELECT f.version_id, f.object_name, f.captured_at, f.sha256, f.size,
         lead(f.captured_at) OVER (PARTITION BY f.object_name, f.record_id ORDER BY f.version_id) AS superseded_at,
         row_number() OVER (PARTITION BY f.object_name, f.record_id ORDER BY f.version_id DESC) AS rn
  FROM {S}.file_versions f
  WHERE f.org_key = %(org)s AND NOT (lower(f.object_name) = ANY(%(held_names)s::text[]))
) c
WHERE c.superseded_at IS NOT NULL
  AND ((%(days)s > 0 AND c.superseded_at < %(cutoff)s) OR (%(versions)s > 0 AND c.rn > %(versions)s))
  AND NOT EXISTS (SELECT 1 FROM {S}.restore_pins p WHERE p.org_key = %(org)s
                  AND (p.objects = '{{}}' OR lower(c.object_name) = ANY(p.objects))
                  AND c.captured_at <= p.at AND c.superseded_at > p.at)
ORDER BY c.version_id
LIMIT %(limit)s
"""

# bodies no version of any org references (after this step's deletes); a dry run: those only the candidates do
_UNREFERENCED = f"""
SELECT f.sha256, f.size, f.location FROM {S}.files f
WHERE NOT EXISTS (SELECT 1 FROM {S}.file_versions fv WHERE fv.sha256 = f.sha256
                  AND NOT EXISTS (SELECT 1 FROM prune_fv p WHERE p.version_id = fv.version_id))
  AND NOT EXISTS (SELECT 1 FROM {S}.metadata_versions mv WHERE mv.sha256 = f.sha256
                  AND NOT EXISTS (SELECT 1 FROM prune_mv p WHERE p.version_id = mv.version_id))
ORDER BY f.sha256
LIMIT %(limit)s
"""

_TEMP = """
CREATE TEMP TABLE IF NOT EXISTS prune_rv (
  object_key int NOT NULL, record_id text NOT NULL, version_id bigint NOT NULL, superseded_at timestamptz,
  whole boolean NOT NULL, PRIMARY KEY (object_key, record_id, version_id)) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS prune_mv (
  version_id bigint PRIMARY KEY, type text NOT NULL, full_name text NOT NULL, superseded_at timestamptz,
  sha256 bytea NOT NULL, size bigint NOT NULL) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS prune_fv (
  version_id bigint PRIMARY KEY, object_name text NOT NULL, superseded_at timestamptz,
  sha256 bytea NOT NULL, size bigint NOT NULL) ON COMMIT DELETE ROWS;
"""


class RetentionStore(StoreBase):
    """Tables legal_holds, restore_pins, retention_horizons; the prune step."""

    # --- legal holds -----------------------------------------------------------------------------------------

    async def set_hold(self, org_id: str, object_name: str, reason: str, policy_id: str, set_by: str) -> HoldRow:
        """A new hold; an active hold on the same scope is returned as it is (setting twice holds once)."""
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(f"INSERT INTO {S}.orgs (org_id) VALUES (%s) ON CONFLICT (org_id) DO NOTHING", (org_id,))
            cur = await conn.execute(
                f"SELECT h.hold_id FROM {S}.legal_holds h JOIN {S}.orgs o USING (org_key)"
                " WHERE o.org_id = %s AND lower(h.object_name) = lower(%s) AND h.released_at IS NULL"
                " ORDER BY h.hold_id LIMIT 1 FOR UPDATE OF h",
                (org_id, object_name),
            )
            row = await cur.fetchone()
            if row is None:
                cur = await conn.execute(
                    f"INSERT INTO {S}.legal_holds (org_key, object_name, reason, policy_id, set_by)"
                    f" SELECT org_key, %s, %s, %s, %s FROM {S}.orgs WHERE org_id = %s RETURNING hold_id",
                    (object_name, reason, policy_id, set_by, org_id),
                )
                row = await cur.fetchone()
            assert row is not None
            hold = await self._hold(conn, int(row[0]))
            assert hold is not None
            return hold

    async def _hold(self, conn: psycopg.AsyncConnection[Any], hold_id: int) -> HoldRow | None:
        cur = await conn.execute(
            f"SELECT {_HOLD_COLUMNS} FROM {S}.legal_holds h JOIN {S}.orgs o USING (org_key) WHERE h.hold_id = %s",
            (hold_id,),
        )
        row = await cur.fetchone()
        return HoldRow(*row) if row else None

    async def release_hold(self, hold_id: int, released_by: str) -> HoldRow | None:
        """Releases an active hold (a released one is returned unchanged); None when there is no such hold."""
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(
                f"UPDATE {S}.legal_holds SET released_at = now(), released_by = %s"
                " WHERE hold_id = %s AND released_at IS NULL",
                (released_by, hold_id),
            )
            return await self._hold(conn, hold_id)

    async def holds(self, org_id: str, include_released: bool) -> list[HoldRow]:
        rows = await self._all(
            f"SELECT {_HOLD_COLUMNS} FROM {S}.legal_holds h JOIN {S}.orgs o USING (org_key)"
            " WHERE (%s = '' OR o.org_id = %s) AND (%s OR h.released_at IS NULL) ORDER BY h.hold_id",
            (org_id, org_id, include_released),
        )
        return [HoldRow(*r) for r in rows]

    # --- pins and horizons -------------------------------------------------------------------------------------

    async def pin(self, org_key: int, at: dt.datetime, objects: Sequence[str], reason: str, session_id: str) -> int:
        """A pin; the same pin (org, time, objects, session) again returns the first one's id."""
        names = sorted({o.lower() for o in objects})
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('storage.restore_pins'), %s)", (org_key,))
            cur = await conn.execute(
                f"SELECT pin_id FROM {S}.restore_pins WHERE org_key = %s AND at = %s AND objects = %s::text[]"
                " AND session_id = %s ORDER BY pin_id LIMIT 1",
                (org_key, at, names, session_id),
            )
            row = await cur.fetchone()
            if row is None:
                cur = await conn.execute(
                    f"INSERT INTO {S}.restore_pins (org_key, at, objects, reason, session_id)"
                    " VALUES (%s, %s, %s, %s, %s) RETURNING pin_id",
                    (org_key, at, names, reason, session_id),
                )
                row = await cur.fetchone()
            assert row is not None
            return int(row[0])

    async def horizon(self, org_key: int, scopes: Sequence[str]) -> dt.datetime | None:
        """The latest horizon of these scopes (lower-case object names, '#metadata'); None when none was pruned."""
        row = await self._one(
            f"SELECT max(horizon) FROM {S}.retention_horizons WHERE org_key = %s AND scope = ANY(%s::text[])",
            (org_key, [s.lower() for s in scopes]),
        )
        return row[0] if row else None

    async def any_horizon(self, org_key: int) -> dt.datetime | None:
        async with self.pool.connection() as conn:
            return await self._org_horizon(conn, org_key)

    async def pinned_at(self, org_key: int, at: dt.datetime, objects: Sequence[str]) -> bool:
        """Whether `at` is a pinned point for every one of these objects."""
        names = [o.lower() for o in objects]
        row = await self._one(
            "SELECT bool_and(EXISTS ("
            f" SELECT 1 FROM {S}.restore_pins p WHERE p.org_key = %s AND p.at = %s"
            " AND (p.objects = '{}' OR n = ANY(p.objects))))"
            " FROM unnest(%s::text[]) AS n",
            (org_key, at, names),
        )
        return bool(row and row[0])

    # --- the prune step ----------------------------------------------------------------------------------------

    async def prune_step(
        self,
        job_key: int,
        org_key: int,
        seq: int,
        digest: bytes,
        rule: PruneRule,
        *,
        dry_run: bool,
        limit: int,
    ) -> tuple[dict[str, Any], bool, list[str]]:
        """(result, replayed, repository locations of the bodies dropped) of one step."""
        async with self.pool.connection() as conn, conn.transaction():
            previous = await self._claim(conn, job_key, seq, "prune", digest)
            if previous is not None:
                return previous, True, []
            counts, locations = await self._prune(conn, org_key, rule, dry_run=dry_run, limit=limit)
            result = {
                "counts": {
                    "received": counts.record_versions + counts.metadata_versions + counts.file_versions,
                    "deleted": counts.record_versions,
                    "metadata_components": counts.metadata_versions,
                    "files": counts.file_bodies,
                    "bytes": counts.bytes_freed,
                },
                "prune": replace(counts, done=dry_run or counts.work < limit).to_json() | {"dry_run": dry_run},
            }
            await self._finish(conn, job_key, seq, result)
            return result, False, locations

    async def _prune(
        self, conn: psycopg.AsyncConnection[Any], org_key: int, rule: PruneRule, *, dry_run: bool, limit: int
    ) -> tuple[PruneResult, list[str]]:
        # one step of an org at a time (two prune sessions of one org take turns, never count the same rows)
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('storage.prune'), %s)", (org_key,))
        for statement in _TEMP.strip().split(";\n"):
            await conn.execute(statement)
        await conn.execute("DELETE FROM prune_rv")
        await conn.execute("DELETE FROM prune_mv")
        await conn.execute("DELETE FROM prune_fv")
        cur = await conn.execute(
            f"SELECT h.object_name FROM {S}.legal_holds h WHERE h.org_key = %s AND h.released_at IS NULL FOR SHARE",
            (org_key,),
        )
        held_names = sorted({r[0].lower() for r in await cur.fetchall()})
        if "" in held_names:  # the whole org is on hold
            return PruneResult(held=True, horizon=await self._org_horizon(conn, org_key)), []
        cur = await conn.execute(
            f"SELECT object_key FROM {S}.objects WHERE org_key = %s AND lower(object_name) = ANY(%s::text[])",
            (org_key, held_names),
        )
        held = [int(r[0]) for r in await cur.fetchall()]
        cur = await conn.execute("SELECT now() - make_interval(days => %s)", (rule.days,))
        cutoff = (await cur.fetchone())[0]  # type: ignore[index]
        budget = 2**62 if dry_run else limit
        params: dict[str, Any] = {
            "org": org_key,
            "held": held,
            "held_names": held_names,
            "days": rule.days,
            "versions": rule.versions,
            "cutoff": cutoff,
        }
        records = 0
        if rule.prune_latest and rule.days > 0:
            await conn.execute(_WHOLE_RECORDS, {**params, "limit": budget})
        await conn.execute(_RECORD_CANDIDATES, {**params, "limit": budget})
        records = await self._count(conn, "prune_rv")
        await conn.execute(_METADATA_CANDIDATES, {**params, "limit": max(0, budget - records)})
        metadata = await self._count(conn, "prune_mv")
        await conn.execute(_FILE_CANDIDATES, {**params, "limit": max(0, budget - records - metadata)})
        files = await self._count(conn, "prune_fv")
        horizon = await self._move_horizons(conn, org_key, dry_run=dry_run)
        body_budget = max(0, budget - records - metadata - files)
        if not dry_run:
            await conn.execute(
                f"DELETE FROM {S}.record_versions v USING prune_rv p WHERE v.org_key = %s"
                " AND v.object_key = p.object_key AND v.record_id = p.record_id AND v.version_id = p.version_id",
                (org_key,),
            )
            await conn.execute(
                f"DELETE FROM {S}.record_head h USING (SELECT DISTINCT object_key, record_id FROM prune_rv WHERE whole)"
                " w WHERE h.org_key = %s AND h.object_key = w.object_key AND h.record_id = w.record_id",
                (org_key,),
            )
            await conn.execute(
                f"UPDATE {S}.record_head h SET versions = greatest(1, h.versions - d.n)"
                " FROM (SELECT object_key, record_id, count(*) AS n FROM prune_rv GROUP BY object_key, record_id) d"
                " WHERE h.org_key = %s AND h.object_key = d.object_key AND h.record_id = d.record_id",
                (org_key,),
            )
            await conn.execute(
                f"DELETE FROM {S}.metadata_versions m USING prune_mv p WHERE m.version_id = p.version_id", ()
            )
            await conn.execute(
                f"UPDATE {S}.metadata_head h SET versions = greatest(1, h.versions - d.n)"
                " FROM (SELECT type, full_name, count(*) AS n FROM prune_mv GROUP BY type, full_name) d"
                " WHERE h.org_key = %s AND h.type = d.type AND h.full_name = d.full_name",
                (org_key,),
            )
            await conn.execute(f"DELETE FROM {S}.file_versions f USING prune_fv p WHERE f.version_id = p.version_id")
            # emptied: the bodies only the deleted versions referenced are now referenced by none
            await conn.execute("DELETE FROM prune_fv")
            await conn.execute("DELETE FROM prune_mv")
        cur = await conn.execute(_UNREFERENCED, {"limit": body_budget})
        bodies = await cur.fetchall()
        if not dry_run and bodies:
            await conn.execute(
                f"DELETE FROM {S}.files WHERE sha256 = ANY(%s::bytea[])", ([bytes(b[0]) for b in bodies],)
            )
        counts = PruneResult(
            record_versions=records,
            metadata_versions=metadata,
            file_versions=files,
            file_bodies=len(bodies),
            bytes_freed=sum(int(b[1]) for b in bodies),
            held=bool(held_names),
            horizon=horizon,
        )
        return counts, [b[2] for b in bodies] if not dry_run else []

    @staticmethod
    async def _count(conn: psycopg.AsyncConnection[Any], table: str) -> int:
        cur = await conn.execute(f"SELECT count(*) FROM {table}")
        return int((await cur.fetchone())[0])  # type: ignore[index]

    async def _move_horizons(
        self, conn: psycopg.AsyncConnection[Any], org_key: int, *, dry_run: bool
    ) -> dt.datetime | None:
        """Each scope's horizon moved to the latest time a deleted version was still in force; the org's latest
        record horizon after the step (what it would be, in a dry run)."""
        moved = (
            f"SELECT lower(o.object_name), max(p.superseded_at) FROM prune_rv p JOIN {S}.objects o USING (object_key)"
            " GROUP BY 1"
            " UNION ALL SELECT '#metadata', max(superseded_at) FROM prune_mv HAVING count(*) > 0"
            " UNION ALL SELECT 'file:' || lower(object_name), max(superseded_at) FROM prune_fv GROUP BY 1"
        )
        if dry_run:
            cur = await conn.execute(
                f"SELECT max(m.h) FROM ({moved}) AS m(scope, h) WHERE m.scope NOT LIKE 'file:%%'"
                " AND m.scope <> '#metadata'"
            )
            would = (await cur.fetchone())[0]  # type: ignore[index]
            now = await self._org_horizon(conn, org_key)
            return max((t for t in (would, now) if t is not None), default=None)
        await conn.execute(
            f"INSERT INTO {S}.retention_horizons (org_key, scope, horizon)"
            f" SELECT %s, m.scope, m.h FROM ({moved}) AS m(scope, h) WHERE m.h IS NOT NULL"
            " ON CONFLICT (org_key, scope) DO UPDATE"
            " SET horizon = greatest(retention_horizons.horizon, excluded.horizon), pruned_at = now()",
            (org_key,),
        )
        return await self._org_horizon(conn, org_key)

    async def _org_horizon(self, conn: psycopg.AsyncConnection[Any], org_key: int) -> dt.datetime | None:
        cur = await conn.execute(
            f"SELECT max(horizon) FROM {S}.retention_horizons WHERE org_key = %s AND scope NOT LIKE 'file:%%'"
            " AND scope <> '#metadata'",
            (org_key,),
        )
        row = await cur.fetchone()
        return row[0] if row else None
