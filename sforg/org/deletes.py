"""Deletes as the API makes them (recycle bin, cascades), hard deletes, undelete and purges."""

from __future__ import annotations

from typing import Any

from sforg.org.records import Records
from sforg.schema import ObjectDef
from sforg.store import col


class Deletes(Records):
    def delete_record(self, obj_name: str, rid: str) -> None:
        """Delete as the API does: to the recycle bin, or for junctions such as CampaignMember, for good."""
        o = self.obj(obj_name)
        row = self.get_row(o, rid)
        now = self._stamp_now()
        if o.hard_delete or not o.field("IsDeleted"):
            self._tombstone(o.name, row["Id"], now, "hard")
        else:
            self.store.update(
                o.name,
                row["Id"],
                {"IsDeleted": 1, "_deleted_at": now, "SystemModstamp": now, "LastModifiedDate": now},
            )
        self._cascade(o, row["Id"], now)

    def _cascade(self, parent: ObjectDef, rid: str, now: str) -> None:
        """Master-detail children (cascadeDelete) go with their parent."""
        for o in self.catalogue.values():
            for f in o.fields:
                if f.type == "reference" and f.cascade_delete and parent.name in f.reference_to:
                    for (cid,) in list(
                        self.store.scan(
                            o.name,
                            ["Id"],
                            f"WHERE {col(f.name)}=? AND " + ('"IsDeleted"=0' if o.field("IsDeleted") else "1"),
                            (rid,),
                        )
                    ):
                        if o.hard_delete:
                            self._tombstone(o.name, cid, now, "hard")
                        else:
                            self.store.update(
                                o.name,
                                cid,
                                {
                                    "IsDeleted": 1,
                                    "_deleted_at": now,
                                    "SystemModstamp": now,
                                    "LastModifiedDate": now,
                                },
                            )

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
        """Delete without the recycle bin (as the Bulk API hardDelete does): the Id vanishes everywhere."""
        o = self.obj(obj)
        targets = self._pick_ids(o.name, n, fraction, ids)
        now = self._stamp_now()
        for rid in targets:
            self._tombstone(o.name, rid, now, "hard")
        return {"ids": targets}

    def _undelete(self, obj: str, ids: list[str] | None = None, n: int | None = None) -> dict[str, Any]:
        o = self.obj(obj)
        targets = self._pick_ids(o.name, n, None, ids, deleted=True)
        now = self._stamp_now()
        for rid in targets:
            self.store.update(
                o.name,
                rid,
                {"IsDeleted": 0, "_deleted_at": None, "SystemModstamp": now, "LastModifiedDate": now},
            )
        return {"ids": targets}

    def _purge_recycle_bin(self, obj: str | None = None) -> dict[str, Any]:
        purged = []
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

    def purge_recycle_bin(self, obj: str | None = None) -> dict[str, Any]:
        with self.store.transaction():
            return self._purge_recycle_bin(obj)
