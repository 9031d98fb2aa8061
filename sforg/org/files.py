"""Files: a new ContentVersion (and its ContentDocument and link) from given content."""

from __future__ import annotations

from typing import Any

from sforg.files import digests
from sforg.org.records import Records
from sforg.store import table


class Files(Records):
    def add_file_version(
        self, content: bytes, content_document_id: str | None = None, title: str | None = None
    ) -> dict[str, Any]:
        """A new ContentVersion (and a ContentDocument when none is given); older versions lose IsLatest."""
        cv = self.obj("ContentVersion")
        now = self._stamp_now()
        if content_document_id:
            doc = self.get_row(self.obj("ContentDocument"), content_document_id)
            with self.store.write_lock:
                self.store.conn().execute(
                    f'UPDATE {table("ContentVersion")} SET "IsLatest"=0 WHERE "ContentDocumentId"=?',
                    (doc["Id"],),
                )
            count = self.store.count("ContentVersion", 'WHERE "ContentDocumentId"=?', (doc["Id"],))
            title = title or doc["Title"]
        else:
            doc = None
            count = 0
            title = title or "New file"
        vid = self.new_id(cv)
        doc_id = doc["Id"] if doc else self.new_id(self.obj("ContentDocument"))
        sha, md5, size = digests(iter([content]))
        user = self.identity["user_id"]
        row = {
            "Id": vid,
            "IsDeleted": 0,
            "OwnerId": user,
            "CreatedDate": now,
            "CreatedById": user,
            "LastModifiedDate": now,
            "LastModifiedById": user,
            "SystemModstamp": now,
            "ContentDocumentId": doc_id,
            "Title": title,
            "PathOnClient": f"{title}.bin",
            "ContentSize": size,
            "FileType": "UNKNOWN",
            "FileExtension": "bin",
            "VersionNumber": str(count + 1),
            "IsLatest": 1,
            "Checksum": md5,
            "_blob": self.blobs.put(content),
            "_sha256": sha,
        }
        self.store.insert_many("ContentVersion", list(row), [list(row.values())])
        docrow = {
            "Title": title,
            "ContentSize": size,
            "LatestPublishedVersionId": vid,
            "LastModifiedDate": now,
            "SystemModstamp": now,
            "FileType": "UNKNOWN",
            "FileExtension": "bin",
        }
        if doc:
            self.store.update("ContentDocument", doc_id, docrow)
        else:
            full = {
                "Id": doc_id,
                "IsDeleted": 0,
                "OwnerId": user,
                "CreatedDate": now,
                "CreatedById": user,
                "LastModifiedById": user,
                **docrow,
            }
            self.store.insert_many("ContentDocument", list(full), [list(full.values())])
            link = {
                "Id": self.new_id(self.obj("ContentDocumentLink")),
                "IsDeleted": 0,
                "SystemModstamp": now,
                "LinkedEntityId": user,
                "ContentDocumentId": doc_id,
                "ShareType": "I",
                "Visibility": "AllUsers",
            }
            self.store.insert_many("ContentDocumentLink", list(link), [list(link.values())])
        return {"ContentVersionId": vid, "ContentDocumentId": doc_id, "sha256": sha}
