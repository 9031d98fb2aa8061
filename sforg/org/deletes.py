"""Deletes as the API makes them (recycle bin, cascades), hard deletes, undelete and purges.

Deleting a record deletes, with it, every record whose lookup to it has `cascadeDelete` (Account: Contacts,
Opportunities, Cases; Contact and Case: Tasks, Attachments; master-detail children such as Shipment__c), and
their own cascade children, into the recycle bin (junctions such as CampaignMember for good). Other lookups to a
deleted record are cleared. The `cascades` table remembers, per deleted root, which records went with it and
which lookups were cleared, so that undeleting the root brings the family back with the same Ids and puts
cleared lookups back where nothing replaced them; purging the root purges the family.
"""

from __future__ import annotations

from typing import Any

from sforg.ids import is_valid, to18
from sforg.org.base import OrgError
from sforg.org.files import Files
from sforg.schema import FieldDef, ObjectDef
from sforg.store import col, table

NOT_IN_BIN = "Entity is not in the recycle bin"


class Deletes(Files):
    def _referencing(self, parent: ObjectDef) -> list[tuple[ObjectDef, FieldDef]]:
        """Every (object, lookup field) that can point at records of parent."""
        out = []
        for o in self.catalogue.values():
            for f in o.fields:
                if f.type == "reference" and parent.name in f.reference_to and not f.system and f.stored:
                    if f.cascade_delete or (f.nillable and f.updateable and f.name != "OwnerId"):
                        out.append((o, f))
        return out

    def _moved(self, obj: str, now: str, modified: bool = False) -> dict[str, str]:
        """The audit columns a delete, undelete or cleared lookup moves: SystemModstamp (and LastModifiedDate when
        the record itself is deleted or back), those the object has (a history row has neither)."""
        cols = self.store.table_columns(obj)
        names = ("SystemModstamp", "LastModifiedDate") if modified else ("SystemModstamp",)
        return {n: now for n in names if n in cols}

    def delete_record(self, obj_name: str, rid: str, api: bool = False, hard: bool = False) -> None:
        """Delete as the API does: to the recycle bin with the cascade family (junctions for good)."""
        o = self.obj(obj_name)
        if api and o.name == "User":
            raise OrgError(400, "INVALID_OPERATION", "User records cannot be deleted", [])
        row = self.get_row(o, rid)
        if api:
            self._check_restricted(o, row)
        self._delete_family(o, row["Id"], self._stamp_now(), hard)

    def _check_restricted(self, o: ObjectDef, row: dict[str, Any]) -> None:
        """DELETE_FAILED while live records point at the record through a restricted lookup (a Contact with
        Cases), as Salesforce words it: the children's names (a Case's number)."""
        for child, f in self._referencing(o):
            if not f.restricted_delete:
                continue
            name = next((x.name for x in child.fields if x.name_field), "Id")
            found = self.store.conn().execute(
                f'SELECT {col(name)} FROM {table(child.name)} WHERE {col(f.name)}=? AND "IsDeleted"=0 LIMIT 20',
                (row["Id"],),
            )
            names = [str(r[0]) for r in found]
            if names:
                label = (o.field("Name") and row.get("Name")) or row["Id"]
                raise OrgError(
                    400,
                    "DELETE_FAILED",
                    f"Your attempt to delete {label} could not be completed because it is associated with the "
                    f"following {child.label_plural.lower()}.: {', '.join(names)}\n",
                    [],
                )

    def _bin_generated(self, marks: list[tuple[str, str, str]]) -> None:
        """A new org's soft-deleted records (deleted at, object, Id), oldest first, deleted as delete_record does:
        each with its cascade family, the lookups to it cleared; one already gone with an earlier root's family
        stays there."""
        conn = self.store.conn()
        with self.store.transaction():
            for deleted_at, obj_name, rid in marks:
                o = self.obj(obj_name)
                row = conn.execute(f'SELECT "IsDeleted" FROM {table(o.name)} WHERE "Id"=?', (rid,)).fetchone()
                if row is None or row[0]:
                    continue
                self._delete_family(o, rid, deleted_at, hard=False)

    def _delete_family(self, root_obj: ObjectDef, root: str | list[str], now: str, hard: bool) -> None:
        """Delete a root and its cascade family; a hard delete may take many roots at once (nothing to undo)."""
        roots = root if isinstance(root, list) else [root]
        assert hard or len(roots) == 1
        root = roots[0]
        conn = self.store.conn()
        with self.store.transaction():
            frontier: dict[str, list[str]] = {root_obj.name: roots}
            self._remove(root_obj, roots, now, hard, root, cascaded=False)
            while frontier:
                nxt: dict[str, list[str]] = {}
                for pname, pids in frontier.items():
                    parent = self.obj(pname)
                    for child, f in self._referencing(parent):
                        self._index(child, f)
                        live = ' AND "IsDeleted"=0' if child.field("IsDeleted") else ""
                        for i in range(0, len(pids), 500):
                            chunk = pids[i : i + 500]
                            marks = ",".join("?" * len(chunk))
                            rows = conn.execute(
                                f'SELECT "Id", {col(f.name)} FROM {table(child.name)} '
                                f"WHERE {col(f.name)} IN ({marks}){live}",
                                chunk,
                            ).fetchall()
                            if not rows:
                                continue
                            if f.cascade_delete:
                                ids = [r[0] for r in rows]
                                self._remove(child, ids, now, hard, root, cascaded=True)
                                nxt.setdefault(child.name, []).extend(ids)
                            else:
                                for cid, old in rows:
                                    self.store.update(child.name, cid, {f.name: None, **self._moved(child.name, now)})
                                    if not hard:
                                        conn.execute(
                                            "INSERT INTO cascades VALUES (?,?,?,?,?)",
                                            (root, child.name, cid, f.name, old),
                                        )
                frontier = nxt

    def _remove(self, o: ObjectDef, ids: list[str], now: str, hard: bool, root: str, cascaded: bool) -> None:
        for cid in ids:
            if hard or o.hard_delete or not o.field("IsDeleted"):
                self._tombstone(o.name, cid, now, "hard")
                continue
            self.store.update(o.name, cid, {"IsDeleted": 1, "_deleted_at": now, **self._moved(o.name, now, True)})
            if cascaded:
                self.store.conn().execute("INSERT INTO cascades VALUES (?,?,?,NULL,NULL)", (root, o.name, cid))

    def _cascade_root(self, rid: str) -> str | None:
        """The root whose delete took this record with it, while that root is still in the recycle bin."""
        row = (
            self.store.conn()
            .execute("SELECT root FROM cascades WHERE id=? AND field IS NULL AND root<>? LIMIT 1", (rid, rid))
            .fetchone()
        )
        return row[0] if row else None

    def undelete_one(self, rid: str, alone_ok: bool = False) -> str:
        """Undelete a record of the recycle bin, with its cascade family and cleared lookups. Errors as SOAP
        undelete reports them."""
        if not is_valid(rid):
            raise OrgError(400, "MALFORMED_ID", f"malformed id {rid}", [])
        rid = to18(rid)
        o = self.object_of_id(rid)
        if o is None:
            raise OrgError(400, "INVALID_ID_FIELD", f"invalid record id {rid}", [])
        if o.hard_delete or not o.field("IsDeleted") or o.name == "User":
            raise OrgError(400, "INVALID_ID_FIELD", f"Invalid id for undelete: {rid}", [])
        row = self.store.conn().execute(f'SELECT "IsDeleted" FROM {table(o.name)} WHERE "Id"=?', (rid,)).fetchone()
        if row is None or not row[0]:
            raise OrgError(400, "UNDELETE_FAILED", NOT_IN_BIN, [])
        root = self._cascade_root(rid)
        if root is not None and not alone_ok:
            root_obj = self.object_of_id(root)
            if root_obj is not None:
                r = (
                    self.store.conn()
                    .execute(f'SELECT "IsDeleted" FROM {table(root_obj.name)} WHERE "Id"=?', (root,))
                    .fetchone()
                )
                if r is not None and r[0]:
                    raise OrgError(400, "UNDELETE_FAILED", NOT_IN_BIN, [])
        now = self._stamp_now()
        conn = self.store.conn()
        with self.store.transaction():
            back = {"IsDeleted": 0, "_deleted_at": None, **self._moved(o.name, now, True)}
            self.store.update(o.name, rid, back)
            for obj, cid, fname, old in conn.execute(
                "SELECT object, id, field, value FROM cascades WHERE root=? ORDER BY rowid", (rid,)
            ).fetchall():
                if obj not in self.catalogue:
                    continue
                moved = self._moved(obj, now, fname is None)
                sets = "".join(f", {col(c)}=?" for c in moved)
                if fname is None:
                    conn.execute(
                        f'UPDATE {table(obj)} SET "IsDeleted"=0, _deleted_at=NULL{sets} WHERE "Id"=? AND "IsDeleted"=1',
                        (*moved.values(), cid),
                    )
                elif fname in self.store.table_columns(obj):
                    # put a cleared lookup back, unless something replaced it in the meantime
                    conn.execute(
                        f'UPDATE {table(obj)} SET {col(fname)}=?{sets} WHERE "Id"=? AND {col(fname)} IS NULL',
                        (old, *moved.values(), cid),
                    )
            conn.execute("DELETE FROM cascades WHERE root=? OR id=?", (rid, rid))
        return rid

    def purge_one(self, rid: str) -> str:
        """Empty one record (and its cascade family) from the recycle bin, as emptyRecycleBin does."""
        if not is_valid(rid):
            raise OrgError(400, "MALFORMED_ID", f"malformed id {rid}", [])
        rid = to18(rid)
        o = self.object_of_id(rid)
        if o is None or o.hard_delete or not o.field("IsDeleted"):
            raise OrgError(400, "INVALID_ID_FIELD", f"invalid record id {rid}", [])
        row = (
            self.store.conn()
            .execute(f'SELECT "IsDeleted", _deleted_at FROM {table(o.name)} WHERE "Id"=?', (rid,))
            .fetchone()
        )
        if row is None:
            raise OrgError(400, "ENTITY_IS_DELETED", "entity is deleted", [])
        if not row[0]:
            raise OrgError(400, "INVALID_ID_FIELD", "no recycle bin entry found", [])
        with self.store.transaction():
            self._tombstone(o.name, rid, row[1] or self._stamp_now(), "purged")
        return rid

    def _soft_delete(
        self, obj: str, n: int | None = None, ids: list[str] | None = None, fraction: float | None = None
    ) -> dict[str, Any]:
        targets = self._pick_ids(obj, n, fraction, ids)
        for rid in targets:
            self.delete_record(obj, rid)
        return {"ids": targets}

    def _hard_delete(
        self, obj: str, n: int | None = None, ids: list[str] | None = None, fraction: float | None = None
    ) -> dict[str, Any]:
        """Delete without the recycle bin (as the Bulk API hardDelete does): the Id (and its cascade family)
        vanishes everywhere."""
        o = self.obj(obj)
        targets = self._pick_ids(o.name, n, fraction, ids)
        now = self._stamp_now()
        live = self.store.fetch_ids(o.name, ["Id"], targets)
        for rid in targets:
            if rid not in live:
                self._tombstone(o.name, rid, now, "hard")
        present = [rid for rid in targets if rid in live]
        for i in range(0, len(present), 2000):
            self._delete_family(o, present[i : i + 2000], now, hard=True)
        return {"ids": targets}

    def _undelete(self, obj: str, ids: list[str] | None = None, n: int | None = None) -> dict[str, Any]:
        o = self.obj(obj)
        targets = self._pick_ids(o.name, n, None, ids, deleted=True)
        done = []
        for rid in targets:
            try:
                done.append(self.undelete_one(rid, alone_ok=True))
            except OrgError:
                continue  # already back with its parent
        return {"ids": targets}

    def _purge_recycle_bin(self, obj: str | None = None, ids: list[str] | None = None) -> dict[str, Any]:
        purged = []
        if ids:
            for rid in ids:
                try:
                    purged.append(self.purge_one(rid))
                except OrgError:
                    continue
            return {"ids": purged}
        for o in self.catalogue.values():
            if (obj and o.name != obj) or not o.field("IsDeleted"):
                continue
            for rid, at in list(self.store.scan(o.name, ["Id", "_deleted_at"], 'WHERE "IsDeleted"=1')):
                self._tombstone(o.name, rid, at or self._stamp_now(), "purged")
                purged.append(rid)
        return {"ids": purged}

    def soft_delete(self, obj: str, **kw: Any) -> dict[str, Any]:
        with self.store.transaction():
            return self._soft_delete(obj, **kw)

    def hard_delete(self, obj: str, **kw: Any) -> dict[str, Any]:
        with self.store.transaction():
            return self._hard_delete(obj, **kw)

    def undelete(self, obj: str, **kw: Any) -> dict[str, Any]:
        with self.store.transaction():
            return self._undelete(obj, **kw)

    def purge_recycle_bin(self, obj: str | None = None, ids: list[str] | None = None) -> dict[str, Any]:
        with self.store.transaction():
            return self._purge_recycle_bin(obj, ids)
