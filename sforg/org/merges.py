"""Merge, as Salesforce merges Accounts, Contacts, Leads and Cases: the records related to the losers move to the
master, each loser gets MasterRecordId = the master and goes to the recycle bin (so `deleted` and queryAll show it,
with IsDeleted and MasterRecordId)."""

from __future__ import annotations

from typing import Any

from sforg.org.base import OrgError
from sforg.org.deletes import Deletes
from sforg.store import col, table

MERGEABLE = ("Account", "Contact", "Lead", "Case")


class Merges(Deletes):
    def merge_records(self, obj: str, master: str, losers: list[str]) -> dict[str, Any]:
        """Merge up to two records into a master of the same object (the SOAP merge() call's rule)."""
        o = self.obj(obj)
        if o.name not in MERGEABLE:
            raise OrgError(400, "INVALID_TYPE", f"Merge is not supported for {o.name}")
        if not 1 <= len(losers) <= 2:
            raise OrgError(400, "INVALID_ARGUMENT", "A merge takes one or two records besides the master")
        keep = self.get_row(o, master)["Id"]
        gone = [self.get_row(o, rid)["Id"] for rid in losers]
        if keep in gone:
            raise OrgError(400, "INVALID_ARGUMENT", "The master record cannot be merged into itself")
        now = self._stamp_now()
        moved = 0
        conn = self.store.conn()
        with self.store.transaction():
            for loser in gone:
                for child, f in self._referencing(o):
                    if child.flags.get("associateEntityType") == "Share":
                        continue  # a loser's sharing rows go with it; the master keeps its own owner row
                    rows = conn.execute(f'SELECT "Id" FROM {table(child.name)} WHERE {col(f.name)}=?', (loser,))
                    for (cid,) in rows.fetchall():
                        stamp_col = {"SystemModstamp": now} if child.field("SystemModstamp") else {}
                        self.store.update(child.name, cid, {f.name: keep, **stamp_col})
                        moved += 1
                if o.field("MasterRecordId"):
                    self.store.update(o.name, loser, {"MasterRecordId": keep, "SystemModstamp": now})
                self._delete_family(o, loser, now, hard=False)
        return {"master": keep, "merged": gone, "related_moved": moved}
