"""REST Composite (`POST /composite`): up to 25 subrequests run in order in one call, `referenceId`s and
`@{ref.field}` / `@{ref.list[0].field}` references in URLs and bodies, `allOrNone` (everything rolled back and
the other subrequests answered 400 `PROCESSING_HALTED`), and, without it, only subrequests that depend on a
failed one halted. The top level is 200 either way.

Subrequests served: sObject create (POST sobjects/X), read (GET sobjects/X/id[?fields=]), update (PATCH
sobjects/X/id), upsert (PATCH sobjects/X/ExtField/value), delete (DELETE sobjects/X/id) and collections
create / update / delete (composite/sobjects). Others answer 400 NOT_FOUND inside the composite response."""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

from aiohttp import web

from sforg.api.http import VERSION_RE, Api, error, json_response
from sforg.ids import is_valid, to18
from sforg.org import OrgError

MAX_SUBREQUESTS = 25
REF_RE = re.compile(r"@\{([A-Za-z0-9_]+)((?:\.[A-Za-z0-9_]+|\[\d+\])*)\}")
HALTED = "The transaction was rolled back since another operation in the same transaction failed."


class _Halt(Exception):
    pass


class _RolledBack(Exception):
    pass


class CompositeApi(Api):
    async def composite(self, request: web.Request, version: str) -> web.StreamResponse:
        if request.method != "POST":
            return error(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{request.method}' not allowed. Allowed are POST")
        body = await self.json_body(request)
        subs = body.get("compositeRequest") if isinstance(body, dict) else None
        if not isinstance(subs, list) or not subs:
            return error(400, "JSON_PARSER_ERROR", "compositeRequest: a list of subrequests is required")
        if len(subs) > MAX_SUBREQUESTS:
            return error(400, "LIMIT_EXCEEDED", f"Maximum number of subrequests exceeded: {MAX_SUBREQUESTS}")
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
        if parts[0] == "sobjects" and len(parts) >= 2:
            o = org.obj(parts[1])
            if len(parts) == 2 and method == "POST":
                rid = org.api_create(o.name, dict(body or {}))
                return (
                    201,
                    {"id": rid, "success": True, "errors": []},
                    {"Location": f"/services/data/v{v}/sobjects/{o.name}/{rid}"},
                )
            if len(parts) == 3 and is_valid(parts[2]):
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
