"""The query engine's RowSource over the SQLite store."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sforg.query import PREFILTER_OPS, Prefilter, RowSource
from sforg.schema import ObjectDef
from sforg.store import Store, col, table


class StoreSource(RowSource):
    """RowSource over the SQLite store."""

    def __init__(self, store: Store, catalogue: dict[str, ObjectDef]) -> None:
        self.store = store
        self.catalogue = catalogue

    def soft_deletes(self, obj: str) -> bool:
        return self.catalogue[obj].field("IsDeleted") is not None

    def scan(
        self, obj: str, columns: list[str], include_deleted: bool, prefilter: Prefilter = ()
    ) -> Iterator[tuple[Any, ...]]:
        where, params = self.scan_where(obj, include_deleted, prefilter)
        return self.store.scan(obj, columns, where, params)

    def scan_by_id(
        self, obj: str, columns: list[str], include_deleted: bool, prefilter: Prefilter = ()
    ) -> Iterator[tuple[Any, ...]] | None:
        where, params = self.scan_where(obj, include_deleted, prefilter)
        # _rowid breaks ties among NULL Ids as the stable sort of a rowid-ordered scan does (the Id index holds
        # it, so no sorting either way).
        return self.store.scan(obj, columns, where, params, order='"Id", _rowid')

    def run_of_rowids(self, obj: str, include_deleted: bool) -> range | None:
        where, params = self.scan_where(obj, include_deleted, ())
        n, lo, hi = (
            self.store.conn()
            .execute(f"SELECT count(*), min(_rowid), max(_rowid) FROM {table(obj)} {where}", params)
            .fetchone()
        )
        if n == 0:
            return range(0)
        return range(lo, hi + 1) if hi - lo + 1 == n else None

    def count(self, obj: str, include_deleted: bool, conditions: Prefilter) -> int:
        # No likelihood() hint: narrowing reads index entries to pick a range worth it for a scan, not a count.
        where, params = self.scan_where(obj, include_deleted, conditions, hint=False)
        return self.store.count(obj, where, params)

    def scan_where(
        self, obj: str, include_deleted: bool, prefilter: Prefilter, hint: bool = True
    ) -> tuple[str, list[Any]]:
        conds = [] if include_deleted or not self.soft_deletes(obj) else ['"IsDeleted" = 0']
        params: list[Any] = []
        # The plan's range conditions on indexed columns, by column.
        ranges: dict[str, tuple[list[str], list[Any]]] = {}
        for column, op, value in prefilter:
            if op not in PREFILTER_OPS:
                raise ValueError(f"not a prefilter operator: {op!r}")
            sql, values = ranges.setdefault(column, ([], []))
            sql.append(f"{col(column)} {op} ?")
            values.append(value)
        narrow = self.narrow_range(obj, ranges) if hint else None
        for column, (sql, values) in ranges.items():
            # Without statistics SQLite prefers a full scan in rowid order to a one-sided index range and a
            # sort; for a range holding few rows likelihood() tells it better, and it reads just the range.
            conds += [f"likelihood({c}, 0.001)" for c in sql] if column == narrow else sql
            params += values
        return (f"WHERE {' AND '.join(conds)}" if conds else ""), params

    def narrow_range(self, obj: str, ranges: dict[str, tuple[list[str], list[Any]]]) -> str | None:
        """The column whose range holds the fewest rows if under an eighth of the table, counted on its index
        (at most that many entries read)."""
        if not ranges:
            return None
        cap = self.store.max_rowid(obj) // 8 + 1
        best, best_n = None, cap
        for column, (sql, values) in ranges.items():
            n = self.store.count_upto(obj, f"WHERE {' AND '.join(sql)}", values, best_n)
            if n < best_n:
                best, best_n = column, n
        return best

    def fetch_rowids(self, obj: str, columns: list[str], rowids: Sequence[int]) -> list[tuple[Any, ...]]:
        return self.store.fetch_rowids(obj, columns, rowids)

    def fetch_ids(self, obj: str, columns: list[str], ids: list[str]) -> dict[str, tuple[Any, ...]]:
        return self.store.fetch_ids(obj, columns, ids)

    def children(
        self, obj: str, columns: list[str], ref: str, parent_ids: list[str], include_deleted: bool
    ) -> list[tuple[Any, ...]]:
        out: list[tuple[Any, ...]] = []
        deleted = "" if include_deleted or not self.soft_deletes(obj) else ' AND "IsDeleted" = 0'
        for i in range(0, len(parent_ids), 30000):
            chunk = parent_ids[i : i + 30000]
            out.extend(
                self.store.scan(obj, columns, f"WHERE {col(ref)} IN ({','.join('?' * len(chunk))}){deleted}", chunk)
            )
        return out
