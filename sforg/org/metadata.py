"""Metadata components: the admin's edits and the rows schema changes keep in step."""

from __future__ import annotations

import secrets
from typing import Any

from sforg.ids import make_id
from sforg.org.base import OrgBase


class Metadata(OrgBase):
    def _metadata_upsert(self, mtype: str, full_name: str, file_name: str, content: str, prefix: str) -> None:
        now = self._stamp_now()
        with self.store.write_lock:
            c = self.store.conn()
            row = c.execute(
                "SELECT id, created_date FROM metadata WHERE type=? AND full_name=?", (mtype, full_name)
            ).fetchone()
            mid = row[0] if row else (make_id(prefix, 500000 + secrets.randbelow(10**6)) if prefix else "")
            created = row[1] if row else now
            c.execute(
                "INSERT OR REPLACE INTO metadata VALUES (?, ?, ?, ?, ?, ?, ?)",
                (mtype, full_name, mid, file_name, content, created, now),
            )

    def change_metadata(self, type: str, full_name: str, content: str | None = None) -> dict[str, Any]:
        """Edit a component (or create it): new content and a new lastModifiedDate."""
        from sforg.metadata import ID_PREFIXES, TYPES, component_xml

        row = (
            self.store.conn()
            .execute("SELECT file_name, content FROM metadata WHERE type=? AND full_name=?", (type, full_name))
            .fetchone()
        )
        if row is None:
            directory, suffix = TYPES[type][0], TYPES[type][1]
            file_name, old = f"{directory}/{full_name}.{suffix}", ""
        else:
            file_name, old = row
        if content is None:
            rev = old.count("revision") + 2
            content = (
                (old + f"// revision {rev}\n")
                if type in ("ApexClass", "ApexTrigger")
                else component_xml(type, full_name, rev).replace("</", f"<!-- revision {rev} --></", 1)
            )
        self._metadata_upsert(type, full_name, file_name, content, ID_PREFIXES.get(type, ""))
        return {"type": type, "fullName": full_name}
