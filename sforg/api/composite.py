"""REST Composite (`POST /composite`): up to 25 subrequests run in order in one call, `referenceId`s and
`@{ref.field}` / `@{ref.list[0].field}` references in URLs and bodies, `allOrNone` (everything rolled back and
the other subrequests answered 400 `PROCESSING_HALTED`), and, without it, only subrequests that depend on a
failed one halted. The top level is 200 either way.

Subrequests served: sObject create (POST sobjects/X), read (GET sobjects/X/id[?fields=]), update (PATCH
sobjects/X/id), upsert (PATCH sobjects/X/ExtField/value), delete (DELETE sobjects/X/id), collections
create / update / delete (composite/sobjects) and query/queryAll (first page). Others answer 400 NOT_FOUND inside
the composite response.

`POST /composite/batch`: up to 25 independent subrequests (URLs relative to /services/data, `richInput` bodies),
each committed on its own; `{"hasErrors", "results": [{"statusCode", "result"}]}`; `haltOnError` answers the
rest 412 BATCH_PROCESSING_HALTED. `POST /composite/tree/{SObject}`: records with `attributes.referenceId` and
children nested under their relationship name (up to 200 records, 5 levels), created parents first in one
transaction: 201 `{"hasErrors": false, "results": [{"referenceId", "id"}]}`, or on any failure nothing and 400
`{"hasErrors": true, "results": [{"referenceId", "errors": [{"statusCode", "message", "fields"}]}]}`."""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

from aiohttp import web

from sforg.api.http import VERSION_RE, Api, error, json_response
from sforg.ids import is_valid, to18
from sforg.org import OrgError
from sforg.query import aggregate_records, fetch_page, render_rest
from sforg.soql import SoqlError

MAX_SUBREQUESTS = 25
MAX_TREE_RECORDS = 200
MAX_TREE_DEPTH = 5
BATCH_HALTED = [{"errorCode": "BATCH_PROCESSING_HALTED", "message": "Batch processing halted per request"}]
REF_RE = re.compile(r"@\{([A-Za-z0-9_]+)((?:\.[A-Za-z0-9_]+|\[\d+\])*)\}")
HALTED = "The transaction was rolled back since another operation in the same transaction failed."


class _Halt(Exception):
    pass


class _RolledBack(Exception):
    pass


class _TreeFailed(Exception):
    def __init__(self, results: list[dict[str, Any]]) -> None:
        super().__init__("tree failed")
        self.results = results


class CompositeApi(Api):
    async def _subrequests(self, request: web.Request, key: str) -> tuple[dict[str, Any], list[Any]]:
        """A composite POST's body and its list of subrequests under `key` (1 to MAX_SUBREQUESTS of them)."""
        if request.method != "POST":
            raise OrgError(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{request.method}' not allowed. Allowed are POST")
        body = await self.json_body(request)
        subs = body.get(key) if isinstance(body, dict) else None
        if not isinstance(subs, list) or not subs:
            raise OrgError(400, "JSON_PARSER_ERROR", f"{key}: a list of subrequests is required")
        if len(subs) > MAX_SUBREQUESTS:
            raise OrgError(400, "LIMIT_EXCEEDED", f"Maximum number of subrequests exceeded: {MAX_SUBREQUESTS}")
        return body, subs

    async def batch(self, request: web.Request, version: str) -> web.StreamResponse:
        body, subs = await self._subrequests(request, "batchRequests")
        halt = bool(body.get("haltOnError", False))
        results: list[dict[str, Any]] = []
        halted = False
        for sub in subs:
            if halted:
                results.append({"statusCode": 412, "result": BATCH_HALTED})
                continue
            url = str(sub.get("url", "")) if isinstance(sub, dict) else ""
            if url and not url.startswith("/"):
                url = "/services/data/" + url
            try:
                with self.org.store.transaction():
                    status, out, _headers = self.run(str(sub.get("method", "")), url, sub.get("richInput"), version)
            except OrgError as exc:
                status, out = exc.status, [{"errorCode": exc.code, "message": exc.message, "fields": exc.fields or []}]
            except SoqlError as exc:
                status, out = 400, [{"message": exc.message, "errorCode": exc.code}]
            results.append({"statusCode": status, "result": out})
            if status >= 400 and halt:
                halted = True
        has_errors = any(r["statusCode"] >= 400 for r in results)
        return json_response({"hasErrors": has_errors, "results": results})

    async def tree(self, request: web.Request, version: str, obj_name: str) -> web.StreamResponse:
        if request.method != "POST":
            return error(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{request.method}' not allowed. Allowed are POST")
        o = self.org.obj(obj_name)
        body = await self.json_body(request)
        records = body.get("records") if isinstance(body, dict) else None
        if not isinstance(records, list) or not records:
            return error(400, "JSON_PARSER_ERROR", "records: a list of records is required")
        flat: list[tuple[str, str, dict[str, Any], str | None, str | None]] = []  # (ref, object, values, parent, field)
        self.flatten(o.name, records, None, None, 1, flat)
        if len(flat) > MAX_TREE_RECORDS:
            return error(400, "LIMIT_EXCEEDED", f"Maximum number of records exceeded: {MAX_TREE_RECORDS}")
        refs = [r[0] for r in flat]
        if len(set(refs)) != len(refs):
            dup = next(r for r in refs if refs.count(r) > 1)
            return error(400, "INVALID_INPUT", f"Duplicate ReferenceId provided in the request: {dup}")
        results: list[dict[str, Any]] = []
        ids: dict[str, str] = {}
        try:
            with self.org.store.transaction():
                failures: list[dict[str, Any]] = []
                for ref, obj, values, parent_ref, field in flat:
                    if parent_ref is not None and parent_ref not in ids:
                        continue  # its parent failed: reported through the parent
                    data = dict(values)
                    if parent_ref is not None and field is not None:
                        data[field] = ids[parent_ref]
                    try:
                        rid = self.org.api_create(obj, data)
                    except OrgError as exc:
                        err = {"statusCode": exc.code, "message": exc.message, "fields": exc.fields or []}
                        failures.append({"referenceId": ref, "errors": [err]})
                        continue
                    ids[ref] = rid
                    results.append({"referenceId": ref, "id": rid})
                if failures:
                    raise _TreeFailed(failures)
        except _TreeFailed as exc:
            return json_response({"hasErrors": True, "results": exc.results}, 400)
        return json_response({"hasErrors": False, "results": results}, 201)

    def flatten(
        self,
        obj_name: str,
        records: list[Any],
        parent_ref: str | None,
        field: str | None,
        depth: int,
        out: list[tuple[str, str, dict[str, Any], str | None, str | None]],
    ) -> None:
        """Depth-first, parents before their children: (referenceId, object, values, parent's referenceId, lookup)."""
        if depth > MAX_TREE_DEPTH:
            raise OrgError(400, "INVALID_INPUT", f"Maximum tree depth exceeded: {MAX_TREE_DEPTH}")
        o = self.org.obj(obj_name)
        for rec in records:
            if not isinstance(rec, dict):
                raise OrgError(400, "JSON_PARSER_ERROR", "Each record must be an object")
            attrs = rec.get("attributes") or {}
            ref = attrs.get("referenceId")
            typ = attrs.get("type")
            if not isinstance(ref, str) or not ref:
                raise OrgError(400, "INVALID_INPUT", "Include a reference ID for each record in the request.")
            if not isinstance(typ, str) or typ.lower() != o.name.lower():
                raise OrgError(400, "INVALID_INPUT", f"The type of record {ref} must be {o.name}")
            values: dict[str, Any] = {}
            children: list[tuple[str, str, list[Any]]] = []
            for key, value in rec.items():
                if key == "attributes":
                    continue
                if isinstance(value, dict) and "records" in value:
                    child = self.child_lookup(o.name, key)
                    if child is None:
                        raise OrgError(
                            400, "INVALID_FIELD", f"No such column '{key}' on sobject of type {o.name}", [key]
                        )
                    children.append((child[0], child[1], list(value.get("records") or [])))
                else:
                    values[key] = value
            out.append((ref, o.name, values, parent_ref, field))
            for child_obj, child_field, child_records in children:
                self.flatten(child_obj, child_records, ref, child_field, depth + 1, out)

    def child_lookup(self, parent: str, relationship: str) -> tuple[str, str] | None:
        """(child object, lookup field) of a parent's child relationship name (Contacts -> Contact.AccountId)."""
        for other in self.org.catalogue.values():
            for f in other.fields:
                if (
                    f.type == "reference"
                    and f.child_relationship
                    and f.child_relationship.lower() == relationship.lower()
                    and parent in f.reference_to
                ):
                    return other.name, f.name
        return None

    async def composite(self, request: web.Request, version: str) -> web.StreamResponse:
        body, subs = await self._subrequests(request, "compositeRequest")
        refs = [s.get("referenceId") for s in subs]
        if any(not isinstance(r, str) or not r for r in refs) or len(set(refs)) != len(refs):
            return error(400, "INVALID_INPUT", "Each subrequest needs a unique referenceId")
        for s in subs:
            names = {k.lower() for k in (s.get("httpHeaders") or {})}
            if names & {"accept", "authorization", "content-type"}:
                return error(
                    400, "INVALID_INPUT", "Subrequest httpHeaders may not set Accept, Authorization or Content-Type"
                )
        all_or_none = bool(body.get("allOrNone", False))
        results: list[dict[str, Any]] = []
        done: dict[str, dict[str, Any]] = {}
        failed: set[str] = set()
        try:
            with self.org.store.transaction():
                for sub in subs:
                    ref = sub["referenceId"]
                    try:
                        url = self.resolve(sub.get("url", ""), done, failed)
                        payload = self.resolve(sub.get("body"), done, failed)
                        status, out, headers = self.run(str(sub.get("method", "")), url, payload, version)
                    except _Halt as exc:
                        status, out, headers = 400, [{"errorCode": "PROCESSING_HALTED", "message": str(exc)}], {}
                    except OrgError as exc:
                        status, out, headers = (
                            exc.status,
                            [{"errorCode": exc.code, "message": exc.message, "fields": exc.fields or []}],
                            {},
                        )
                    results.append({"body": out, "httpHeaders": headers, "httpStatusCode": status, "referenceId": ref})
                    if status >= 400:
                        failed.add(ref)
                        if all_or_none:
                            raise _RolledBack
                    else:
                        done[ref] = {"body": out, "status": status}
        except _RolledBack:
            for sub in subs[len(results) :]:
                results.append(
                    {"body": None, "httpHeaders": {}, "httpStatusCode": 0, "referenceId": sub["referenceId"]}
                )
            for r in results:
                if r["referenceId"] not in failed:
                    r.update(
                        body=[{"errorCode": "PROCESSING_HALTED", "message": HALTED}], httpHeaders={}, httpStatusCode=400
                    )
        return json_response({"compositeResponse": results})

    def query_page(self, text: str, include_deleted: bool, version: str) -> dict[str, Any]:
        """A query subrequest's answer: the first page, with nextRecordsUrl when there are more."""
        org = self.org
        ctx = org.context()
        plan = org.plan(text, include_deleted)
        if plan.count_only:
            return {"totalSize": org.count(plan), "done": True, "records": []}
        rowids = org.run(plan)
        if plan.aggregate:
            recs = aggregate_records(plan, rowids, org.src, ctx, version)
            return {"totalSize": len(recs), "done": True, "records": recs}
        batch = 2000
        head: dict[str, Any] = {"totalSize": len(rowids), "done": len(rowids) <= batch}
        if len(rowids) > batch:
            cur = org.new_cursor(plan, rowids, version, batch)
            head["nextRecordsUrl"] = f"/services/data/v{version}/query/{cur.id}-{batch}"
        rows = fetch_page(plan, org.src, ctx, rowids[:batch])
        recs = render_rest(plan, rows, ctx, version, org.src)
        for child in plan.root.children.values():
            child.cache.clear()
        return {**head, "records": recs}

    def resolve(self, value: Any, done: dict[str, dict[str, Any]], failed: set[str]) -> Any:
        if isinstance(value, dict):
            return {k: self.resolve(v, done, failed) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v, done, failed) for v in value]
        if not isinstance(value, str) or "@{" not in value:
            return value

        def lookup(m: re.Match[str]) -> Any:
            ref, path = m.group(1), m.group(2)
            expr = ref + path
            if ref in failed:
                raise _Halt(f"Invalid reference specified. Dependent subrequest {ref} failed.")
            if ref not in done:
                raise _Halt(
                    f"Invalid reference specified. No value for {expr} found in {ref}. Provided referenceId ('{expr}') "
                    "must start with a letter or a number, and it can contain only letters, numbers and "
                    "underscores ('_')."
                )
            cur: Any = done[ref]["body"]
            for token in re.findall(r"\.([A-Za-z0-9_]+)|\[(\d+)\]", path):
                name, index = token
                try:
                    cur = cur[int(index)] if index else cur[name]
                except (KeyError, IndexError, TypeError):
                    raise _Halt(f"Invalid reference specified. No value for {expr} found in {ref}.") from None
            return cur

        whole = REF_RE.fullmatch(value)
        if whole:
            return lookup(whole)
        return REF_RE.sub(lambda m: str(lookup(m)), value)

    def run(self, method: str, url: str, body: Any, version: str) -> tuple[int, Any, dict[str, str]]:
        org = self.org
        parsed = urllib.parse.urlsplit(url)
        m = VERSION_RE.match(parsed.path.rstrip("/"))
        if not m or method not in ("GET", "POST", "PATCH", "PUT", "DELETE"):
            return 400, [{"errorCode": "NOT_FOUND", "message": f"The requested resource does not exist: {url}"}], {}
        v = m.group(1)
        parts = (m.group(2) or "").split("/")
        query = urllib.parse.parse_qs(parsed.query)
        api = self.server.sobjects
        if parts[0] in ("query", "queryAll") and len(parts) == 1 and method == "GET":
            return 200, self.query_page(query.get("q", [""])[0], parts[0] == "queryAll", v), {}
        if parts[0] == "sobjects" and len(parts) >= 2:
            o = org.obj(parts[1])
            if len(parts) == 3 and parts[2] in ("updated", "deleted") and method == "GET":
                start = api.fix_date(query.get("start", [""])[0])
                end = api.fix_date(query.get("end", [""])[0])
                if not start or not end:
                    return 400, [{"errorCode": "MISSING_ARGUMENT", "message": "start and end are required"}], {}
                return 200, (org.updated if parts[2] == "updated" else org.deleted)(o.name, start, end), {}
            if len(parts) == 2 and method == "POST":
                rid = org.api_create(o.name, dict(body or {}))
                return (
                    201,
                    {"id": rid, "success": True, "errors": []},
                    {"Location": f"/services/data/v{v}/sobjects/{o.name}/{rid}"},
                )
            if len(parts) == 3 and is_valid(parts[2]):
                api.check_id_object(o, parts[2])
                rid = to18(parts[2])
                if method == "GET":
                    fields = query.get("fields", [""])[0]
                    return 200, api.record_json(o, org.get_row(o, rid), v, fields.split(",") if fields else None), {}
                if method == "PATCH":
                    org.update_record(o.name, rid, dict(body or {}))
                    return 204, None, {}
                if method == "DELETE":
                    org.delete_record(o.name, rid, api=True)
                    return 204, None, {}
            if len(parts) == 4 and method == "PATCH":
                rid, created = org.upsert_record(o.name, parts[2], urllib.parse.unquote(parts[3]), dict(body or {}))
                return (201 if created else 200), {"id": rid, "success": True, "errors": [], "created": created}, {}
        if parts[:2] == ["composite", "sobjects"] and len(parts) == 2:
            if method == "DELETE":
                ids = [i for i in query.get("ids", [""])[0].split(",") if i]
                return 200, api.each(ids, query.get("allOrNone", ["false"])[0] == "true", api._delete_any), {}
            records = list((body or {}).get("records", []))
            aon = bool((body or {}).get("allOrNone", False))
            if method == "POST":

                def create(rec: dict[str, Any]) -> tuple[str, bool | None]:
                    typ = (rec.get("attributes") or {}).get("type")
                    if not typ:
                        raise OrgError(400, "INVALID_TYPE", "Must send a concrete entity type.")
                    return org.api_create(typ, rec), None

                return 200, api.each(records, aon, create), {}
            if method == "PATCH":

                def update(rec: dict[str, Any]) -> tuple[str, bool | None]:
                    rid = str(rec.get("Id") or rec.get("id") or "")
                    o = org.object_of_id(rid) if is_valid(rid) else None
                    if o is None:
                        raise OrgError(400, "MALFORMED_ID", f"malformed id {rid}")
                    org.update_record(o.name, rid, {k: v for k, v in rec.items() if k not in ("Id", "id")})
                    return to18(rid), None

                return 200, api.each(records, aon, update), {}
        return 400, [{"errorCode": "NOT_FOUND", "message": f"The requested resource does not exist: {url}"}], {}
