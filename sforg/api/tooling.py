"""Tooling API (`/services/data/vXX.X/tooling/...`): `query` (and `query/` with a trailing slash), `sobjects`
(describeGlobal), `sobjects/X/describe`, `sobjects/X` and `sobjects/X/{id}` for ApexClass, ApexTrigger, CustomField
and CustomObject, backed by the org's metadata components (the ones listMetadata and retrieve serve).

Queries run on the data API's SOQL engine over these rows (WHERE, ORDER BY, LIMIT, COUNT(), GROUP BY…); the answer
carries the Tooling keys `size`, `totalSize`, `done`, `queryLocator` (null), `entityTypeName` (null when nothing
matched) and `records` whose URLs are `/services/data/vXX.X/tooling/sobjects/{type}/{id}`, as recorded in
SFDO-Tooling/CumulusCI cumulusci/tasks/apex/tests/cassettes/ManualEditTestApexIntegrationTests…yaml."""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator, Sequence
from typing import Any

from aiohttp import web

from sforg import schema
from sforg.api.http import Api, error, json_response
from sforg.ids import is_valid, to18
from sforg.org import OrgError
from sforg.query import Context, Prefilter, RowSource, execute, fetch_page, plan_query, render_rest
from sforg.schema import F, FieldDef, ObjectDef

API_VERSION = 62.0


def _audit() -> list[FieldDef]:
    return [
        F("CreatedDate", "datetime", createable=False, updateable=False, nillable=False),
        F("CreatedById", "reference", reference_to=["User"], createable=False, updateable=False),
        F("LastModifiedDate", "datetime", createable=False, updateable=False, nillable=False),
        F("LastModifiedById", "reference", reference_to=["User"], createable=False, updateable=False),
        F("SystemModstamp", "datetime", createable=False, updateable=False, nillable=False),
    ]


SHARING_MODELS = ["Private", "Read", "ReadWrite", "ControlledByParent"]


def _manageable_state() -> FieldDef:
    return F("ManageableState", "picklist", picklist=["released", "deleted", "deprecated", "installed", "unmanaged"])


def _definition(name: str, prefix: str, label: str, before: list[FieldDef], after: list[FieldDef]) -> ObjectDef:
    """CustomObject or CustomField: Id, the fields before its DeveloperName, DeveloperName, NamespacePrefix,
    Description, the fields after, ManageableState and the audit fields."""
    return ObjectDef(
        name,
        prefix,
        label,
        label + "s",
        [
            F("Id", "id", createable=False, updateable=False, nillable=False),
            *before,
            F("DeveloperName", "string", length=40, nillable=False),
            F("NamespacePrefix", "string", length=15, createable=False, updateable=False),
            F("Description", "textarea", length=1000),
            *after,
            _manageable_state(),
            *_audit(),
        ],
        bulk_supported=False,
    )


def _code(name: str, prefix: str, extra: list[FieldDef]) -> ObjectDef:
    return ObjectDef(
        name,
        prefix,
        "Apex Class" if name == "ApexClass" else "Apex Trigger",
        "Apex Classes" if name == "ApexClass" else "Apex Triggers",
        [
            F("Id", "id", createable=False, updateable=False, nillable=False),
            F("NamespacePrefix", "string", length=15, createable=False, updateable=False),
            F("Name", "string", length=255, nillable=False, name_field=True),
            *extra,
            F("ApiVersion", "double", precision=18, scale=1, nillable=False),
            F("Status", "picklist", picklist=["Inactive", "Active", "Deleted"], nillable=False),
            F("IsValid", "boolean", nillable=False),
            F("BodyCrc", "double", precision=18, scale=0),
            F("Body", "textarea", length=1000000),
            F("LengthWithoutComments", "int", digits=9, nillable=False),
            *_audit(),
            _manageable_state(),
        ],
        bulk_supported=False,
    )


def catalogue() -> dict[str, ObjectDef]:
    """The Tooling objects sforg serves, with the fields of the real ones that a backup reads."""
    usage = [
        F(f"Usage{w}", "boolean", nillable=False)
        for w in (
            "BeforeInsert",
            "AfterInsert",
            "BeforeUpdate",
            "AfterUpdate",
            "BeforeDelete",
            "AfterDelete",
            "IsBulk",
            "AfterUndelete",
        )
    ]
    objs = [
        _code("ApexClass", "01p", []),
        _code("ApexTrigger", "01q", [F("TableEnumOrId", "picklist", length=40, nillable=False), *usage]),
        _definition(
            "CustomObject",
            "01I",
            "Custom Object",
            [],
            [
                F("ExternalName", "string", length=255),
                F("SharingModel", "picklist", picklist=SHARING_MODELS),
                F("ExternalSharingModel", "picklist", picklist=SHARING_MODELS),
            ],
        ),
        _definition(
            "CustomField",
            "00N",
            "Custom Field Definition",
            [F("TableEnumOrId", "picklist", length=40, nillable=False)],
            [F("Length", "int", digits=9), F("InlineHelpText", "textarea", length=510)],
        ),
    ]
    return {o.name: o for o in objs}


CATALOGUE = catalogue()
_COMMENTS = re.compile(r"//[^\n]*|/\*.*?\*/", re.DOTALL)
_TRIGGER = re.compile(r"trigger\s+\w+\s+on\s+(\w+)\s*\(([^)]*)\)", re.IGNORECASE)


class ToolingSource(RowSource):
    """Rows of the Tooling objects, built from the org's metadata components at each request (a few hundred)."""

    def __init__(self, rows: dict[str, list[dict[str, Any]]]) -> None:
        self.rows = rows

    def _tuple(self, obj: str, i: int, columns: Sequence[str]) -> tuple[Any, ...]:
        row = self.rows[obj][i]
        return tuple(i + 1 if c == "_rowid" else row.get(c) for c in columns)

    def scan(
        self, obj: str, columns: list[str], include_deleted: bool, prefilter: Prefilter = ()
    ) -> Iterator[tuple[Any, ...]]:
        for i in range(len(self.rows.get(obj, []))):
            yield self._tuple(obj, i, columns)

    def run_of_rowids(self, obj: str, include_deleted: bool) -> range | None:
        return range(1, len(self.rows.get(obj, [])) + 1)

    def fetch_rowids(self, obj: str, columns: list[str], rowids: Sequence[int]) -> list[tuple[Any, ...]]:
        return [self._tuple(obj, r - 1, columns) for r in rowids]

    def fetch_ids(self, obj: str, columns: list[str], ids: list[str]) -> dict[str, tuple[Any, ...]]:
        wanted = set(ids)
        return {
            row["Id"]: self._tuple(obj, i, columns)
            for i, row in enumerate(self.rows.get(obj, []))
            if row.get("Id") in wanted
        }

    def children(
        self, obj: str, columns: list[str], ref: str, parent_ids: list[str], include_deleted: bool
    ) -> list[tuple[Any, ...]]:
        wanted = set(parent_ids)
        return [self._tuple(obj, i, columns) for i, row in enumerate(self.rows.get(obj, [])) if row.get(ref) in wanted]


class ToolingApi(Api):
    def rows(self) -> dict[str, list[dict[str, Any]]]:
        """ApexClass, ApexTrigger, CustomObject (custom ones) and CustomField rows from the metadata table."""
        org = self.org
        user = org.identity["user_id"]
        out: dict[str, list[dict[str, Any]]] = {name: [] for name in CATALOGUE}
        object_ids: dict[str, str] = {}
        cur = org.store.conn().execute(
            "SELECT type, full_name, id, content, created_date, last_modified_date FROM metadata "
            "WHERE type IN ('ApexClass', 'ApexTrigger', 'CustomObject', 'CustomField') ORDER BY type, full_name"
        )
        for mtype, full_name, mid, content, created, modified in cur.fetchall():
            audit = {
                "CreatedDate": created,
                "CreatedById": user,
                "LastModifiedDate": modified,
                "LastModifiedById": user,
                "SystemModstamp": modified,
                "NamespacePrefix": None,
                "ManageableState": "unmanaged",
            }
            if mtype in ("ApexClass", "ApexTrigger"):
                body = content or ""
                row = {
                    "Id": mid,
                    "Name": full_name,
                    "ApiVersion": API_VERSION,
                    "Status": "Active",
                    "IsValid": 1,
                    "BodyCrc": float(zlib.crc32(body.encode())),
                    "Body": body,
                    "LengthWithoutComments": len(_COMMENTS.sub("", body).strip()),
                    **audit,
                }
                if mtype == "ApexTrigger":
                    m = _TRIGGER.search(body)
                    events = {e.strip().replace(" ", "").lower() for e in (m.group(2).split(",") if m else [])}
                    row["TableEnumOrId"] = m.group(1) if m else None
                    for when in ("Before", "After"):
                        for op in ("Insert", "Update", "Delete"):
                            row[f"Usage{when}{op}"] = int(f"{when}{op}".lower() in events)
                    row["UsageAfterUndelete"] = int("afterundelete" in events)
                    row["UsageIsBulk"] = 1
                out[mtype].append(row)
            elif mtype == "CustomObject" and mid:
                object_ids[full_name] = mid
                out["CustomObject"].append(
                    {
                        "Id": mid,
                        "DeveloperName": full_name.removesuffix("__c"),
                        "Description": None,
                        "ExternalName": None,
                        "SharingModel": "ReadWrite",
                        "ExternalSharingModel": "Private",
                        **audit,
                    }
                )
            elif mtype == "CustomField" and mid:
                obj_name, _, field_name = full_name.partition(".")
                o = org.catalogue.get(obj_name)
                f = o.field(field_name) if o else None
                out["CustomField"].append(
                    {
                        "Id": mid,
                        "TableEnumOrId": obj_name,
                        "DeveloperName": field_name.removesuffix("__c"),
                        "Description": None,
                        "Length": f.length if f is not None and f.length else None,
                        "InlineHelpText": None,
                        **audit,
                    }
                )
        for row in out["CustomField"]:
            row["TableEnumOrId"] = object_ids.get(row["TableEnumOrId"], row["TableEnumOrId"])
        return out

    def context(self) -> Context:
        base = self.org.context()
        return Context(CATALOGUE, {}, base.today, base.now_epoch)

    async def handle(self, request: web.Request, version: str, parts: list[str]) -> web.StreamResponse:
        head = parts[0] if parts else ""
        if head == "query" and len(parts) == 1:
            if request.method != "GET":
                return error(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{request.method}' not allowed. Allowed are GET")
            text = request.query.get("q")
            if text is None:
                return error(400, "MALFORMED_QUERY", "A query string has to be specified")
            return json_response(self.query(text, version))
        if head == "sobjects" and request.method == "GET":
            return self.sobjects(version, parts[1:])
        return error(404, "NOT_FOUND", "The requested resource does not exist")

    def query(self, text: str, version: str) -> dict[str, Any]:
        ctx = self.context()
        src = ToolingSource(self.rows())
        plan = plan_query(text, ctx, include_deleted=False)
        rowids = execute(plan, src, ctx)
        if plan.count_only or plan.aggregate:
            raise OrgError(400, "MALFORMED_QUERY", "sforg's Tooling API does not answer aggregate queries")
        rows = fetch_page(plan, src, ctx, rowids)
        records = tooling_urls(render_rest(plan, rows, ctx, version, src), version)
        return {
            "size": len(records),
            "totalSize": len(records),
            "done": True,
            "queryLocator": None,
            "entityTypeName": plan.obj.name if records else None,
            "records": records,
        }

    def sobjects(self, version: str, parts: list[str]) -> web.Response:
        if not parts:
            entries = [tooling_urls(schema.global_entry(o, version), version) for o in CATALOGUE.values()]
            return json_response({"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": entries})
        o = next((c for c in CATALOGUE.values() if c.name.lower() == parts[0].lower()), None)
        if o is None:
            return error(404, "NOT_FOUND", "The requested resource does not exist")
        if len(parts) == 1:
            return json_response(
                {"objectDescribe": tooling_urls(schema.global_entry(o, version), version), "recentItems": []}
            )
        if len(parts) == 2 and parts[1] == "describe":
            return json_response(tooling_urls(schema.describe(o, CATALOGUE, version, self.base_url, set()), version))
        if len(parts) == 2 and is_valid(parts[1]):
            rid = to18(parts[1])
            hit = next((r for r in self.rows()[o.name] if r["Id"] == rid), None)
            if hit is None:
                return error(404, "NOT_FOUND", "The requested resource does not exist")
            names = ", ".join(f.name for f in o.fields)
            record = self.query(f"SELECT {names} FROM {o.name} WHERE Id = '{rid}'", version)["records"][0]
            return json_response(record)
        return error(404, "NOT_FOUND", "The requested resource does not exist")


def tooling_urls(value: Any, version: str) -> Any:
    """The data API's URLs rewritten to the Tooling API's (…/sobjects/… -> …/tooling/sobjects/…)."""
    data_prefix = f"/services/data/v{version}/sobjects"
    if isinstance(value, dict):
        return {k: tooling_urls(v, version) for k, v in value.items()}
    if isinstance(value, list):
        return [tooling_urls(v, version) for v in value]
    if isinstance(value, str) and value.startswith(data_prefix):
        return f"/services/data/v{version}/tooling/sobjects" + value[len(data_prefix) :]
    return value
