"""SQLite persistence of the org: one table per sObject, plus settings, tombstones, metadata and tokens."""

from __future__ import annotations

import contextlib
import itertools
import json
import operator
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from sforg import formulas
from sforg.schema import FieldDef, ObjectDef

INTERNAL = ("_deleted_at", "_blob", "_sha256")


def table(obj: str) -> str:
    return f'"o_{obj}"'


def col(name: str) -> str:
    return f'"{name}"'


def ascending_run(rowids: Sequence[int]) -> bool:
    """Whether rowids are consecutive ascending integers (lo, lo + 1, ..., hi). Exact: O(1) for a range (what
    Bulk jobs and cursors over a whole object keep), one C-speed pass otherwise."""
    if isinstance(rowids, range):
        return rowids.step == 1 or len(rowids) <= 1
    n = len(rowids)
    if n == 0 or rowids[-1] - rowids[0] + 1 != n:
        return False
    return all(map(operator.lt, rowids, itertools.islice(rowids, 1, None)))


class Store:
    """Thread-safe access to the org database: a connection per thread, writes serialised by a lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self.write_lock = threading.RLock()
        self._columns: dict[str, set[str]] = {}
        # per object, the statements that write what each inserted record brings along (its history's `created`
        # row, its owner's share row): run once per insert for all of its rows (see on_insert)
        self._after_insert: dict[str, list[str]] = {}
        with self.write_lock:
            c = self.conn()
            c.executescript(
                """
                CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
                CREATE TABLE IF NOT EXISTS tombstones (object TEXT, id TEXT PRIMARY KEY, deleted_at TEXT,
                                                       kind TEXT);
                CREATE TABLE IF NOT EXISTS metadata (type TEXT, full_name TEXT, id TEXT, file_name TEXT,
                    content TEXT, created_date TEXT, last_modified_date TEXT, PRIMARY KEY (type, full_name));
                CREATE TABLE IF NOT EXISTS tokens (token TEXT PRIMARY KEY, kind TEXT, issued REAL);
                CREATE TABLE IF NOT EXISTS pending (seq INTEGER PRIMARY KEY, visible_at REAL, object TEXT,
                    id TEXT, op TEXT, payload TEXT);
                CREATE TABLE IF NOT EXISTS cascades (root TEXT, object TEXT, id TEXT, field TEXT, value TEXT);
                CREATE INDEX IF NOT EXISTS ix_cascades_root ON cascades (root);
                CREATE INDEX IF NOT EXISTS ix_cascades_id ON cascades (id);
                """
            )

    def conn(self) -> sqlite3.Connection:
        c = getattr(self._local, "conn", None)
        if c is None:
            c = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=60)
            c.execute("PRAGMA journal_mode=WAL")
            c.execute("PRAGMA synchronous=NORMAL")
            c.execute("PRAGMA cache_size=-65536")
            c.execute("PRAGMA temp_store=MEMORY")
            formulas.register(c)
            self._local.conn = c
        return c

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction for many small writes (an admin change of thousands of rows)."""
        with self.write_lock:
            c = self.conn()
            if c.in_transaction:
                # nested: a savepoint, so an inner failure (an allOrNone collection inside a composite) undoes
                # only its own writes before it propagates
                name = f"sp{id(c)}_{self._depth(1)}"
                c.execute(f"SAVEPOINT {name}")
                try:
                    yield
                except BaseException:
                    c.execute(f"ROLLBACK TO {name}")
                    c.execute(f"RELEASE {name}")
                    raise
                finally:
                    self._depth(-1)
                c.execute(f"RELEASE {name}")
                return
            c.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                c.execute("ROLLBACK")
                raise
            c.execute("COMMIT")

    def _depth(self, step: int) -> int:
        depth = int(getattr(self._local, "depth", 0)) + step
        self._local.depth = depth
        return depth

    # ------------------------------------------------------------ meta
    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self.conn().execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def set_meta(self, key: str, value: Any) -> None:
        with self.write_lock:
            self.conn().execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def delete_meta(self, key: str) -> None:
        with self.write_lock:
            self.conn().execute("DELETE FROM meta WHERE key=?", (key,))

    def nul_objects(self) -> set[str]:
        """Objects a write has put a NUL character into (SQLite's format() stops at one, so their CSV is rendered
        another way: query.csv_sql's nul_safe)."""
        return set(self.get_meta("nul_objects", []))

    def _note_nul(self, obj: str, values: Iterable[Any]) -> None:
        if any(isinstance(v, str) and "\x00" in v for v in values):
            marked = self.nul_objects()
            if obj not in marked:
                self.set_meta("nul_objects", sorted(marked | {obj}))

    # ------------------------------------------------------------ schema
    def create_object(self, obj: ObjectDef) -> None:
        self._columns.clear()
        cols = "".join(f", {col(f.name)} {f.sql_type}" for f in obj.stored_fields() if f.name != "Id")
        with self.write_lock:
            c = self.conn()
            c.execute(
                f"CREATE TABLE IF NOT EXISTS {table(obj.name)} (_rowid INTEGER PRIMARY KEY, "
                f'"Id" TEXT UNIQUE{cols}, _deleted_at TEXT, _blob TEXT, _sha256 TEXT)'
            )
            c.execute(
                f'CREATE INDEX IF NOT EXISTS "ix_{obj.name}_del" ON {table(obj.name)} (_deleted_at) '
                "WHERE _deleted_at IS NOT NULL"
            )
            if obj.field("SystemModstamp"):
                c.execute(f'CREATE INDEX IF NOT EXISTS "ix_{obj.name}_sms" ON {table(obj.name)} ("SystemModstamp")')

    def drop_object(self, name: str) -> None:
        self._columns.clear()
        with self.write_lock:
            self.conn().execute(f"DROP TABLE IF EXISTS {table(name)}")

    def add_column(self, obj: str, f: FieldDef) -> None:
        self._alter(f"ALTER TABLE {table(obj)} ADD COLUMN {col(f.name)} {f.sql_type}")

    def drop_column(self, obj: str, name: str) -> None:
        self._alter(f"ALTER TABLE {table(obj)} DROP COLUMN {col(name)}")

    def _alter(self, statement: str) -> None:
        """A change of a table's columns, on a connection of its own: a thread's connection may still be in the
        read transaction of a statement not stepped to its end (a query page not read to its last row), whose
        snapshot predates the last change of columns (DROP COLUMN then found no such column)."""
        self._columns.clear()
        with self.write_lock:
            c = sqlite3.connect(self.path, isolation_level=None, timeout=60)
            try:
                c.execute(statement)
            finally:
                c.close()

    # ------------------------------------------------------------ rows
    def table_columns(self, obj: str) -> set[str]:
        cached = self._columns.get(obj)
        if cached is None:
            cached = {r[1] for r in self.conn().execute(f"PRAGMA table_info({table(obj)})")}
            self._columns[obj] = cached
        return cached

    def insert_many(self, obj: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        known = self.table_columns(obj)
        if any(c not in known for c in columns):
            # Callers write the usual system fields; objects such as ContentDocumentLink lack some of them.
            keep = [i for i, c in enumerate(columns) if c in known]
            columns = [columns[i] for i in keep]
            rows = ([r[i] for i in keep] for r in rows)
        if isinstance(rows, list):  # API writes (generation streams its rows and writes no NUL)
            for r in rows:
                self._note_nul(obj, r)
        sql = (
            f"INSERT INTO {table(obj)} ({', '.join(col(c) for c in columns)}) "
            f"VALUES ({', '.join('?' for _ in columns)})"
        )
        along = self._after_insert.get(obj, ())
        with self.transaction():
            c = self.conn()
            last = self.max_rowid(obj) if along else 0
            c.executemany(sql, rows)
            for statement in along:
                c.execute(statement, (last,))

    def on_insert(self, obj: str, statement: str) -> None:
        """Run `statement` after every insert into obj, in its transaction, with one parameter: the table's largest
        _rowid before the insert (the inserted rows are the ones after it: an insert never names its _rowid).
        What an AFTER INSERT trigger does, for all of an insert's rows at once: a trigger runs its program once a
        row, which costs an org's Bulk insert more than the row itself."""
        statements = self._after_insert.setdefault(obj, [])
        if statement not in statements:
            statements.append(statement)

    def scan(
        self,
        obj: str,
        columns: Sequence[str],
        where: str = "",
        params: Sequence[Any] = (),
        order: str = "_rowid",
    ) -> Iterator[tuple[Any, ...]]:
        sql = f"SELECT {', '.join(col(c) for c in columns)} FROM {table(obj)} {where} ORDER BY {order}"
        cur = self.conn().execute(sql, params)
        while True:
            rows = cur.fetchmany(5000)
            if not rows:
                return
            yield from rows

    def fetch_rowids(self, obj: str, columns: Sequence[str], rowids: Sequence[int]) -> list[tuple[Any, ...]]:
        """Rows for the given rowids, in the order given."""
        out: dict[int, tuple[Any, ...]] = {}
        cols = ", ".join(["_rowid", *(col(c) for c in columns)])
        c = self.conn()
        for i in range(0, len(rowids), 30000):
            chunk = rowids[i : i + 30000]
            lo, hi = min(chunk), max(chunk)
            if hi - lo + 1 == len(chunk):
                rows = c.execute(f"SELECT {cols} FROM {table(obj)} WHERE _rowid BETWEEN ? AND ?", (lo, hi)).fetchall()
            else:
                rows = c.execute(
                    f"SELECT {cols} FROM {table(obj)} WHERE _rowid IN ({','.join('?' * len(chunk))})", chunk
                ).fetchall()
            for r in rows:
                out[r[0]] = r[1:]
        return [out[r] for r in rowids if r in out]

    def fetch_rendered(self, obj: str, expr: str, rowids: Sequence[int]) -> list[bytes]:
        """One SQL-rendered text per rowid as UTF-8, in the order given (rows deleted since are skipped)."""
        out: dict[int, bytes] = {}
        c = self.conn()
        for i in range(0, len(rowids), 30000):
            chunk = rowids[i : i + 30000]
            lo, hi = min(chunk), max(chunk)
            if hi - lo + 1 == len(chunk):
                cur = c.execute(
                    f"SELECT _rowid, CAST({expr} AS BLOB) FROM {table(obj)} WHERE _rowid BETWEEN ? AND ?", (lo, hi)
                )
            else:
                cur = c.execute(
                    f"SELECT _rowid, CAST({expr} AS BLOB) FROM {table(obj)} "
                    f"WHERE _rowid IN ({','.join('?' * len(chunk))})",
                    chunk,
                )
            out.update(cur.fetchall())
        return [out[r] for r in rowids if r in out]

    def fetch_joined(self, obj: str, expr: str, rowids: Sequence[int], sep: str) -> bytes:
        """The SQL-rendered texts of the rowids joined by sep, as UTF-8 (SQLite's own bytes: no decoding into str
        and encoding back). Built inside SQLite when the rowids are one ascending run (the common case: a whole
        object, or a page of it); otherwise joined here."""
        if not rowids:
            return b""
        if ascending_run(rowids):
            row = (
                self.conn()
                .execute(
                    f"SELECT CAST(group_concat(r, ?) AS BLOB) FROM (SELECT {expr} AS r FROM {table(obj)} "
                    "WHERE _rowid BETWEEN ? AND ? ORDER BY _rowid)",
                    (sep, rowids[0], rowids[-1]),
                )
                .fetchone()
            )
            return bytes(row[0] or b"")
        return sep.encode().join(self.fetch_rendered(obj, expr, rowids))

    def fetch_ids(self, obj: str, columns: Sequence[str], ids: Sequence[str]) -> dict[str, tuple[Any, ...]]:
        out: dict[str, tuple[Any, ...]] = {}
        cols = ", ".join(['"Id"', *(col(c) for c in columns)])
        c = self.conn()
        ids = list(ids)
        for i in range(0, len(ids), 30000):
            chunk = ids[i : i + 30000]
            for r in c.execute(f'SELECT {cols} FROM {table(obj)} WHERE "Id" IN ({",".join("?" * len(chunk))})', chunk):
                out[r[0]] = r[1:]
        return out

    def get(self, obj: str, record_id: str) -> dict[str, Any] | None:
        cur = self.conn().execute(f'SELECT * FROM {table(obj)} WHERE "Id"=?', (record_id,))
        row = cur.fetchone()
        if row is None:
            return None
        return dict(zip([d[0] for d in cur.description], row, strict=True))

    def update(self, obj: str, record_id: str, values: dict[str, Any]) -> None:
        known = self.table_columns(obj)
        values = {k: v for k, v in values.items() if k in known}
        if not values:
            return
        sets = ", ".join(f"{col(k)}=?" for k in values)
        self._note_nul(obj, values.values())
        with self.write_lock:
            self.conn().execute(f'UPDATE {table(obj)} SET {sets} WHERE "Id"=?', [*values.values(), record_id])

    def get_many(self, obj: str, record_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """`get` of several Ids in one query: Id -> row (absent ones left out)."""
        if not record_ids:
            return {}
        marks = ", ".join("?" for _ in record_ids)
        cur = self.conn().execute(f'SELECT * FROM {table(obj)} WHERE "Id" IN ({marks})', list(record_ids))
        names = [d[0] for d in cur.description]
        return {row["Id"]: row for row in (dict(zip(names, r, strict=True)) for r in cur.fetchall())}

    def update_many(self, obj: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """`update` of several records with the same columns: each row is the columns' values, then the Id."""
        known = self.table_columns(obj)
        keep = [i for i, c in enumerate(columns) if c in known]
        if not keep or not rows:
            return
        sets = ", ".join(f"{col(columns[i])}=?" for i in keep)
        params = [[r[i] for i in keep] + [r[-1]] for r in rows]
        for p in params:
            self._note_nul(obj, p[:-1])
        with self.write_lock:
            self.conn().executemany(f'UPDATE {table(obj)} SET {sets} WHERE "Id"=?', params)

    def delete_row(self, obj: str, record_id: str) -> None:
        with self.write_lock:
            self.conn().execute(f'DELETE FROM {table(obj)} WHERE "Id"=?', (record_id,))

    def count(self, obj: str, where: str = "", params: Sequence[Any] = ()) -> int:
        return int(self.conn().execute(f"SELECT COUNT(*) FROM {table(obj)} {where}", params).fetchone()[0])

    def count_upto(self, obj: str, where: str, params: Sequence[Any], cap: int) -> int:
        """COUNT(*) of the rows matching where, reading no more than cap of them (returns at most cap)."""
        sql = f"SELECT COUNT(*) FROM (SELECT 1 FROM {table(obj)} {where} LIMIT ?)"
        return int(self.conn().execute(sql, [*params, cap]).fetchone()[0])

    def max_rowid(self, obj: str) -> int:
        return int(self.conn().execute(f"SELECT COALESCE(MAX(_rowid), 0) FROM {table(obj)}").fetchone()[0])
