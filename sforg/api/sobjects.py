"""REST sObjects: describeGlobal, describe, records (by Id and by external Id), updated/deleted, blobs, and
composite/sobjects collections."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any

from aiohttp import BodyPartReader, web

from sforg import schema
from sforg.api.http import HANG_SECONDS, Api, error, json_response
from sforg.ids import is_valid, to18
from sforg.org import OrgError
from sforg.query import INVALID_FIELD_TAIL


class SObjectsApi(Api):
    def record_json(
        self, o: schema.ObjectDef, row: dict[str, Any], version: str, fields: list[str] | None = None
    ) -> dict[str, Any]:
        values = self.org.record_values(o, row, self.org.context())
        for k, v in list(values.items()):
            if isinstance(v, str) and v.startswith("/services/data/v59.0/sobjects/"):
                values[k] = v.replace("/v59.0/", f"/v{version}/", 1)
        if fields:
            wanted = {f.strip().lower() for f in fields if f.strip()}
            known = {k.lower() for k in values}
            for name in fields:
                if name.strip() and name.strip().lower() not in known:
                    # ?fields= naming no field: an error, not a silent omission
                    message = f"No such column '{name.strip()}' on entity '{o.name}'{INVALID_FIELD_TAIL}"
                    raise OrgError(400, "INVALID_FIELD", message)
            values = {k: v for k, v in values.items() if k.lower() in wanted}
        return {
            "attributes": {"type": o.name, "url": f"/services/data/v{version}/sobjects/{o.name}/{row['Id']}"},
            **values,
        }

    async def sobjects(self, request: web.Request, version: str, parts: list[str]) -> web.StreamResponse:
        org = self.org
        method = request.method
        if not parts:
            if self.not_modified(request):
                return web.Response(status=304)
            return json_response(
                {
                    "encoding": "UTF-8",
                    "maxBatchSize": 200,
                    "sobjects": [schema.global_entry(o, version) for o in org.catalogue.values()],
                }
            )
        try:
            o = org.obj(parts[0])
        except OrgError as exc:
            # an unknown sObject: this answer lists errorCode before message (heroku-applink-nodejs
            # mappings/create-unknown-object.json)
            return json_response([{"errorCode": exc.code, "message": exc.message}], exc.status)
        if len(parts) == 1:
            if method == "GET":
                return json_response({"objectDescribe": schema.global_entry(o, version), "recentItems": []})
            if method == "POST":
                body = await self.create_body(request, o)
                rid = org.api_create(o.name, body)
                return json_response({"id": rid, "success": True, "errors": []}, 201)
            return error(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed. Allowed are GET,POST")
        sub = parts[1]
        if sub == "describe" and len(parts) == 2:
            if self.not_modified(request):
                return web.Response(status=304)
            return json_response(
                schema.describe(o, org.catalogue, version, self.base_url, org.hidden().get(o.name, set()))
            )
        if sub in ("updated", "deleted") and len(parts) == 2:
            start = self.fix_date(request.query.get("start", ""))
            end = self.fix_date(request.query.get("end", ""))
            if not start or not end:
                return error(400, "MISSING_ARGUMENT", "start and end are required")
            fn = org.updated if sub == "updated" else org.deleted
            return json_response(await asyncio.get_running_loop().run_in_executor(None, fn, o.name, start, end))
        if len(parts) == 3:
            blob_field = o.field(parts[2])
            if blob_field is not None and blob_field.type == "base64" and is_valid(parts[1]):
                return await self.blob(request, o, parts[1], blob_field)
            ext = o.field(parts[1])
            if ext is not None and (ext.external_id or ext.id_lookup) and ext.type != "id":
                return await self.by_external_id(request, o, ext, parts[2], version)
            if ext is None and not is_valid(parts[1]):
                return error(
                    404,
                    "NOT_FOUND",
                    f"Provided external ID field does not exist or is not accessible: {parts[1]}",
                )
            return error(404, "NOT_FOUND", "The requested resource does not exist")
        rid = sub
        if not is_valid(rid):
            if o.field(rid) is not None:
                return error(404, "NOT_FOUND", "The requested resource does not exist")
            return error(404, "NOT_FOUND", f"Provided external ID field does not exist or is not accessible: {rid}")
        self.check_id_object(o, rid)
        if method == "GET":
            row = org.get_row(o, rid)
            fields = request.query.get("fields")
            return json_response(self.record_json(o, row, version, fields.split(",") if fields else None))
        if method == "PATCH":
            body = await self.json_body(request)
            org.update_record(o.name, rid, body)
            return web.Response(status=204)
        if method == "DELETE":
            org.delete_record(o.name, rid, api=True)
            return web.Response(status=204)
        return error(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed. Allowed are GET,PATCH,DELETE")

    @staticmethod
    def check_id_object(o: schema.ObjectDef, rid: str) -> None:
        """An Id of another object in a record URL: 400 MALFORMED_ID naming the Id as sent (heroku-applink-nodejs
        mappings/update-malformed-id.json)."""
        if is_valid(rid) and o.key_prefix and rid[:3] != o.key_prefix:
            raise OrgError(400, "MALFORMED_ID", f"Record ID: id value of incorrect type: {rid}", ["Id"])

    async def create_body(self, request: web.Request, o: schema.ObjectDef) -> dict[str, Any]:
        """A create's values: JSON, or multipart with a JSON part (entity_content, entity_document, ...) and a
        binary part named after the blob field (VersionData, Body)."""
        if not request.content_type.startswith("multipart/"):
            body = await self.json_body(request)
            if not isinstance(body, dict):
                raise OrgError(400, "JSON_PARSER_ERROR", "Cannot deserialize instance of object from START_ARRAY")
            return body
        values: dict[str, Any] = {}
        blob: bytes | None = None
        reader = await request.multipart()
        async for part in reader:
            if not isinstance(part, BodyPartReader):
                continue
            name = part.name or ""
            data = await part.read()
            if name.startswith("entity_"):
                try:
                    values.update(json.loads(data or b"{}"))
                except ValueError as exc:
                    raise OrgError(400, "JSON_PARSER_ERROR", f"Unexpected character: {exc}") from exc
            elif o.blob_field and name.lower() == o.blob_field.lower():
                blob = bytes(data)
        if blob is not None and o.blob_field:
            values[o.blob_field] = base64.b64encode(blob).decode()
        return values

    async def by_external_id(
        self, request: web.Request, o: schema.ObjectDef, f: schema.FieldDef, value: str, version: str
    ) -> web.StreamResponse:
        rows = list(
            self.org.store.scan(
                o.name,
                ["Id"],
                f'WHERE "{f.name}"=?' + (' AND "IsDeleted"=0' if o.field("IsDeleted") else ""),
                (value,),
            )
        )
        if request.method == "GET":
            if not rows:
                return error(404, "NOT_FOUND", "The requested resource does not exist")
            if len(rows) > 1:
                return json_response([f"/services/data/v{version}/sobjects/{o.name}/{r[0]}" for r in rows], 300)
            return json_response(self.record_json(o, self.org.get_row(o, rows[0][0]), version))
        if request.method == "PATCH":
            body = await self.json_body(request)
            if len(rows) > 1:
                return json_response([f"/services/data/v{version}/sobjects/{o.name}/{r[0]}" for r in rows], 300)
            rid, created = self.org.upsert_record(o.name, f.name, value, body)
            if not created and float(version) < 46.0:
                return web.Response(status=204)
            return json_response(
                {"id": rid, "success": True, "errors": [], "created": created}, 201 if created else 200
            )
        return error(405, "METHOD_NOT_ALLOWED", "HTTP Method not allowed. Allowed are GET,PATCH")

    def not_modified(self, request: web.Request) -> bool:
        ims = request.headers.get("If-Modified-Since")
        if not ims:
            return False
        try:
            since = parsedate_to_datetime(ims).timestamp()
        except (TypeError, ValueError):
            return False
        return self.org.describe_modified <= since

    @staticmethod
    def fix_date(text: str) -> str:
        # A '+' sent unencoded arrives as a space; simple-salesforce's naive datetimes end in a bare ':'.
        text = text.strip().replace(" ", "+")
        return text[:-1] if text.endswith(":") else text

    async def blob(self, request: web.Request, o: schema.ObjectDef, rid: str, f: schema.FieldDef) -> web.StreamResponse:
        row = self.org.get_row(o, rid)
        descriptor = row.get("_blob")
        if not descriptor:
            return error(404, "NOT_FOUND", "The requested resource does not exist")
        size = self.org.blobs.size(descriptor)
        resp = web.StreamResponse(
            status=200,
            headers={
                "Content-Type": "application/octetstream",
                "Sforce-Limit-Info": f"api-usage={self.org.api_used}/{self.org.settings['api_max']}",
            },
        )
        resp.content_length = size
        await resp.prepare(request)
        stall = request.get("stall_after")
        sent = 0
        for chunk in self.org.blobs.open(descriptor):
            if stall is not None and sent + len(chunk) > stall:
                await resp.write(chunk[: max(0, stall - sent)])
                self.org.add_bytes("blob", max(0, stall - sent))
                await asyncio.sleep(HANG_SECONDS)
            await resp.write(chunk)
            sent += len(chunk)
        self.org.add_bytes("blob", sent)
        await resp.write_eof()
        return resp

    async def collections(self, request: web.Request, version: str, parts: list[str]) -> web.Response:
        org = self.org
        method = request.method
        if method == "DELETE":
            ids = [i for i in request.query.get("ids", "").split(",") if i]
            all_or_none = request.query.get("allOrNone", "false").lower() == "true"
            if len(ids) > 200:
                return error(
                    400,
                    "EXCEEDED_ID_LIMIT",
                    "record limit reached. cannot submit more than 200 records into this call",
                )
            return json_response(self.each(ids, all_or_none, lambda rid: self._delete_any(rid)))
        if method == "GET" or (method == "POST" and parts):
            if not parts:
                return error(404, "NOT_FOUND", "The requested resource does not exist")
            o = org.obj(parts[0])
            if method == "GET":
                ids = [i for i in request.query.get("ids", "").split(",") if i]
                fields = [f for f in request.query.get("fields", "").split(",") if f]
            else:
                body = await self.json_body(request)
                ids, fields = body.get("ids", []), body.get("fields", [])
            out: list[dict[str, Any] | None] = []
            for rid in ids:
                try:
                    out.append(self.record_json(o, org.get_row(o, rid), version, fields or None))
                except OrgError:
                    out.append(None)
            return json_response(out)
        body = await self.json_body(request)
        records = body.get("records", [])
        all_or_none = bool(body.get("allOrNone", False))
        if len(records) > 200:
            return error(
                400,
                "EXCEEDED_ID_LIMIT",
                "record limit reached. cannot submit more than 200 records into this call",
            )
        if method == "POST":

            def create(rec: dict[str, Any]) -> tuple[str, bool | None]:
                typ = (rec.get("attributes") or {}).get("type")
                if not typ:
                    raise OrgError(400, "INVALID_TYPE", "Must send a concrete entity type.")
                if rec.get("id") or rec.get("Id"):
                    raise OrgError(
                        400, "INVALID_FIELD_FOR_INSERT_UPDATE", "cannot specify Id in an insert call", ["Id"]
                    )
                return org.api_create(typ, {k: v for k, v in rec.items() if k not in ("Id", "id")}), None

            return json_response(self.each(records, all_or_none, create))
        if method == "PATCH" and len(parts) == 2:
            o = org.obj(parts[0])
            ext = o.field(parts[1])
            if ext is None or not (ext.external_id or ext.id_lookup):
                return error(
                    400,
                    "INVALID_FIELD",
                    f"Field name provided, {parts[1]} is not an External ID or indexed field for {o.name}",
                )

            def upsert(rec: dict[str, Any]) -> tuple[str, bool | None]:
                typ = (rec.get("attributes") or {}).get("type") or o.name
                if typ.lower() != o.name.lower():
                    raise OrgError(400, "INVALID_TYPE", f"Record type {typ} does not match the URI type {o.name}")
                value = next((v for k, v in rec.items() if k.lower() == ext.name.lower()), None)
                values = {k: v for k, v in rec.items() if k.lower() != ext.name.lower()}
                return org.upsert_record(o.name, ext.name, value, values)

            return json_response(self.each(records, all_or_none, upsert, upserting=True))
        if method == "PATCH":

            def update(rec: dict[str, Any]) -> tuple[str, bool | None]:
                rid = rec.get("Id") or rec.get("id")
                if not rid:
                    raise OrgError(400, "MISSING_ARGUMENT", "Id not specified in an update call")
                o = org.object_of_id(str(rid)) if is_valid(str(rid)) else None
                if o is None:
                    raise OrgError(400, "MALFORMED_ID", f"malformed id {rid}")
                typ = (rec.get("attributes") or {}).get("type")
                if typ and typ.lower() != o.name.lower():
                    raise OrgError(400, "MALFORMED_ID", f"malformed id {rid}")
                org.update_record(o.name, str(rid), {k: v for k, v in rec.items() if k not in ("Id", "id")})
                return to18(str(rid)), None

            return json_response(self.each(records, all_or_none, update))
        return error(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed.")

    def _delete_any(self, rid: str) -> tuple[str, bool | None]:
        o = self.org.object_of_id(rid) if is_valid(rid) else None
        if o is None:
            raise OrgError(400, "MALFORMED_ID", f"malformed id {rid}")
        self.org.delete_record(o.name, rid, api=True)
        return to18(rid), None

    def each(
        self,
        items: list[Any],
        all_or_none: bool,
        fn: Callable[[Any], tuple[str, bool | None]],
        upserting: bool = False,
    ) -> list[dict[str, Any]]:
        """Apply fn per record in one transaction; failures become per-record errors (statusCode), as collections
        report. With allOrNone, one failure rolls every record back and the others say so."""
        out: list[dict[str, Any]] = []
        try:
            with self.org.store.transaction():
                for item in items:
                    try:
                        rid, created = fn(item)
                        entry: dict[str, Any] = {"id": rid, "success": True, "errors": []}
                        if upserting:
                            entry["created"] = bool(created)
                        out.append(entry)
                    except OrgError as exc:
                        out.append(
                            {
                                "success": False,
                                "errors": [
                                    {"statusCode": exc.code, "message": exc.message, "fields": exc.fields or []}
                                ],
                            }
                        )
                if all_or_none and any(not e["success"] for e in out):
                    raise _RolledBack
        except _RolledBack:
            for entry in out:
                if entry["success"]:
                    entry["success"] = False
                    entry.pop("created", None)
                    entry["errors"] = [
                        {
                            "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                            "message": "Record rolled back because not all records were valid and the "
                            "request was using AllOrNone header",
                            "fields": [],
                        }
                    ]
        return out


class _RolledBack(Exception):
    """Raised inside a collection's transaction to undo it (allOrNone with a failure)."""
