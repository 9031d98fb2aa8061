"""Files: a new ContentVersion (and its ContentDocument and link) from given content."""

from __future__ import annotations

import os
from typing import Any

from sforg.files import digests, fast_blocks
from sforg.ids import is_valid, to18
from sforg.org.base import OrgError
from sforg.org.records import Records
from sforg.store import table


def _created_by(record_id: str, user: str, now: str) -> dict[str, Any]:
    """The system fields of a row the org's user creates now (owned by them, not deleted)."""
    return {
        "Id": record_id,
        "IsDeleted": 0,
        "OwnerId": user,
        "CreatedDate": now,
        "CreatedById": user,
        "LastModifiedDate": now,
        "LastModifiedById": user,
        "SystemModstamp": now,
    }


class Files(Records):
    def add_file_version(
        self, content: bytes, content_document_id: str | None = None, title: str | None = None
    ) -> dict[str, Any]:
        """A new ContentVersion (and a ContentDocument when none is given); older versions lose IsLatest."""
        sha, md5, size = digests(iter([content]))
        return self._add_version(self.blobs.put(content), (sha, md5, size), content_document_id, title)

    def add_generated_file(self, obj: str, seed: int, size: int, parent_id: str | None = None) -> dict[str, Any]:
        """A file whose body is generated from (seed, size) each time it is read (`fast:`, see sforg/files.py): no
        byte of it on disk or in memory, whatever its size (a benchmark's 2 GB file). A ContentVersion of a new
        document, or an Attachment on parent_id."""
        descriptor = f"fast:{seed}:{size}"
        sha, md5, n = digests(fast_blocks(seed, size))
        if obj == "ContentVersion":
            return self._add_version(descriptor, (sha, md5, n), None, f"Generated {seed}")
        if obj != "Attachment" or not parent_id:
            raise OrgError(400, "INVALID_TYPE", "a generated file is a ContentVersion, or an Attachment on a parent")
        user, now = self.identity["user_id"], self._stamp_now()
        row = {
            **_created_by(self.new_id(self.obj("Attachment")), user, now),
            "ParentId": parent_id,
            "Name": f"generated_{seed}.bin",
            "ContentType": "application/octet-stream",
            "BodyLength": n,
            "IsPrivate": 0,
            "_blob": descriptor,
            "_sha256": sha,
        }
        self.store.insert_many("Attachment", list(row), [list(row.values())])
        return {"AttachmentId": row["Id"], "sha256": sha}

    def _add_version(
        self, descriptor: str, digest: tuple[str, str, int], content_document_id: str | None, title: str | None
    ) -> dict[str, Any]:
        """The ContentVersion of a body stored as `descriptor`, of (sha256, md5, size) `digest`."""
        cv = self.obj("ContentVersion")
        now = self._stamp_now()
        if content_document_id:
            doc = self.get_row(self.obj("ContentDocument"), content_document_id)
            with self.store.write_lock:
                # the version that was latest stops being it, and its SystemModstamp moves (a backup sees it change)
                self.store.conn().execute(
                    f'UPDATE {table("ContentVersion")} SET "IsLatest"=0, "SystemModstamp"=? '
                    'WHERE "ContentDocumentId"=? AND "IsLatest"=1',
                    (now, doc["Id"]),
                )
            count = self.store.count("ContentVersion", 'WHERE "ContentDocumentId"=?', (doc["Id"],))
            title = title or doc["Title"]
        else:
            doc = None
            count = 0
            title = title or "New file"
        vid = self.new_id(cv)
        doc_id = doc["Id"] if doc else self.new_id(self.obj("ContentDocument"))
        sha, md5, size = digest
        user = self.identity["user_id"]
        row = {
            **_created_by(vid, user, now),
            "ContentDocumentId": doc_id,
            "Title": title,
            "PathOnClient": f"{title}.bin",
            "ContentSize": size,
            "FileType": "UNKNOWN",
            "FileExtension": "bin",
            "VersionNumber": str(count + 1),
            "IsLatest": 1,
            "Checksum": md5,
            "_blob": descriptor,
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

    # ------------------------------------------------------------ API writes of files
    def api_create(self, obj_name: str, values: dict[str, Any]) -> str:
        """A create as the API makes it (REST, collections, composite, Bulk): files get their documents and links."""
        name = self.obj(obj_name).name
        if name == "ContentVersion":
            return self.create_content_version(values)
        if name == "ContentDocumentLink":
            return self.create_content_document_link(values)
        return self.create_record(name, values)

    def create_content_version(self, values: dict[str, Any]) -> str:
        """POST sobjects/ContentVersion: a new document (linked to FirstPublishLocationId when given), or a new
        version of ContentDocumentId (IsLatest moves to it)."""
        values = dict(values)
        first = next((values.pop(k) for k in list(values) if k.lower() == "firstpublishlocationid"), None)
        doc_id = next((values.pop(k) for k in list(values) if k.lower() == "contentdocumentid"), None)
        path = str(values.get("PathOnClient") or "")
        if not path:
            raise OrgError(
                400, "REQUIRED_FIELD_MISSING", "Required fields are missing: [PathOnClient]", ["PathOnClient"]
            )
        stem, ext = os.path.splitext(os.path.basename(path))
        values.setdefault("Title", stem or path)
        if first is not None:
            if not is_valid(str(first)):
                raise OrgError(
                    400,
                    "MALFORMED_ID",
                    f"First Publish Location ID: id value of incorrect type: {first}",
                    ["FirstPublishLocationId"],
                )
            first = to18(str(first))
            self._live_target(first, "FirstPublishLocationId")
        cv, cd = self.obj("ContentVersion"), self.obj("ContentDocument")
        with self.store.transaction():
            now = self._stamp_now()
            user = self.identity["user_id"]
            if doc_id is not None:
                if not is_valid(str(doc_id)) or not str(doc_id).startswith(cd.key_prefix):
                    raise OrgError(
                        400,
                        "MALFORMED_ID",
                        f"ContentDocument ID: id value of incorrect type: {doc_id}",
                        ["ContentDocumentId"],
                    )
                doc = self.get_row(cd, str(doc_id))
                doc_id, new_doc = doc["Id"], False
            else:
                doc_id, new_doc = self.new_id(cd), True
                row = {**_created_by(doc_id, user, now), "Title": values["Title"]}
                self.store.insert_many(cd.name, list(row), [list(row.values())])
            count = self.store.count(cv.name, 'WHERE "ContentDocumentId"=?', (doc_id,))
            vid = self.create_record(cv.name, {**values, "ContentDocumentId": doc_id}, late=False)
            with self.store.write_lock:
                self.store.conn().execute(
                    f'UPDATE {table(cv.name)} SET "IsLatest"=0, "SystemModstamp"=? '
                    'WHERE "ContentDocumentId"=? AND "Id"<>? AND "IsLatest"=1',
                    (now, doc_id, vid),
                )
            version = self.store.get(cv.name, vid) or {}
            kind = (ext.lstrip(".") or "UNKNOWN").upper()
            self.store.update(
                cv.name,
                vid,
                {
                    "IsLatest": 1,
                    "VersionNumber": str(count + 1),
                    "FileType": kind,
                    "FileExtension": ext.lstrip(".").lower() or None,
                },
            )
            self.store.update(
                cd.name,
                doc_id,
                {
                    "Title": version.get("Title"),
                    "ContentSize": version.get("ContentSize"),
                    "LatestPublishedVersionId": vid,
                    "FileType": kind,
                    "FileExtension": ext.lstrip(".").lower() or None,
                    "LastModifiedDate": now,
                    "SystemModstamp": now,
                },
            )
            if new_doc:
                self._link(doc_id, user, "I", now)
                if first is not None and first != user:
                    self._link(doc_id, first, "V", now)
        return vid

    def _live_target(self, rid: str, field: str) -> None:
        target = self.object_of_id(rid)
        if target is None:
            raise OrgError(400, "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [field])
        row = (
            self.store.conn()
            .execute(
                f'SELECT {"IsDeleted" if target.field("IsDeleted") else "0"} FROM {table(target.name)} WHERE "Id"=?',
                (rid,),
            )
            .fetchone()
        )
        if row is None:
            raise OrgError(400, "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [field])
        if row[0]:
            raise OrgError(400, "ENTITY_IS_DELETED", "entity is deleted", [field])

    def _link(self, doc_id: str, entity: str, share: str, now: str, visibility: str = "AllUsers") -> str:
        lid = self.new_id(self.obj("ContentDocumentLink"))
        row = {
            "Id": lid,
            "IsDeleted": 0,
            "SystemModstamp": now,
            "LinkedEntityId": entity,
            "ContentDocumentId": doc_id,
            "ShareType": share,
            "Visibility": visibility,
        }
        self.store.insert_many("ContentDocumentLink", list(row), [list(row.values())])
        return lid

    def create_content_document_link(self, values: dict[str, Any]) -> str:
        """POST sobjects/ContentDocumentLink: a document shared with a record (once per pair)."""
        o = self.obj("ContentDocumentLink")
        data = self._coerce(o, values, creating=True)
        doc_id, entity = data.get("ContentDocumentId"), data.get("LinkedEntityId")
        missing = [n for n, v in (("LinkedEntityId", entity), ("ContentDocumentId", doc_id)) if v is None]
        if missing:
            raise OrgError(
                400, "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]", missing
            )
        assert isinstance(doc_id, str) and isinstance(entity, str)
        self.get_row(self.obj("ContentDocument"), doc_id)
        self._live_target(entity, "LinkedEntityId")
        dup = (
            self.store.conn()
            .execute(
                f'SELECT "Id" FROM {table(o.name)} WHERE "ContentDocumentId"=? AND "LinkedEntityId"=?', (doc_id, entity)
            )
            .fetchone()
        )
        if dup:
            raise OrgError(
                400,
                "DUPLICATE_VALUE",
                f"Document with ID: {doc_id} is already linked with the entity with ID: {entity}",
                [],
            )
        return self._link(
            doc_id,
            entity,
            str(data.get("ShareType") or "V"),
            self._stamp_now(),
            str(data.get("Visibility") or "AllUsers"),
        )
