"""REST query, queryAll and their locators (query/{locator}): pages of 2,000 rows or the batch size asked."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from aiohttp import web

from sforg.api.http import JSON_TYPE, Api, dumps, error, json_response
from sforg.query import aggregate_records, fast_fields, fetch_page, json_sql, render_rest


class QueryApi(Api):
    async def query(
        self, request: web.Request, version: str, include_deleted: bool, locator: str | None
    ) -> web.Response:
        org = self.org
        loop = asyncio.get_running_loop()
        ctx = org.context()
        if locator:
            cid, _, off = locator.partition("-")
            cur = org.get_cursor(cid)
            if cur is None or not off.isdigit():
                return error(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
            offset = int(off)
            plan = cur.plan
            rowids = cur.rowids
            batch = cur.batch
        else:
            text = request.query.get("q")
            if text is None:
                return error(400, "MALFORMED_QUERY", "A query string has to be specified")
            plan = await loop.run_in_executor(None, org.plan, text, include_deleted)
            if plan.count_only:
                n = await loop.run_in_executor(None, org.count, plan)
                return json_response({"totalSize": n, "done": True, "records": []})
            rowids = await loop.run_in_executor(None, org.run, plan)
            offset = 0
            batch = 2000
            opts = request.headers.get("Sforce-Query-Options", "")
            m = re.search(r"batchSize\s*=\s*(\d+)", opts)
            if m:
                batch = max(200, min(2000, int(m.group(1))))
            cur = None
            if plan.aggregate:
                recs = await loop.run_in_executor(None, aggregate_records, plan, rowids, org.src, ctx, version)
                return json_response({"totalSize": len(recs), "done": True, "records": recs})
        page_ids = rowids[offset : offset + batch]
        total = len(rowids)
        head: dict[str, Any] = {"totalSize": total, "done": offset + batch >= total}
        if offset + batch < total:
            if cur is None:
                cur = org.new_cursor(plan, rowids, version, batch)
            head["nextRecordsUrl"] = f"/services/data/v{version}/query/{cur.id}-{offset + batch}"
        fast = fast_fields(plan, formulas_too=True)

        def render() -> bytes:
            if fast is not None:
                expr = json_sql(plan, fast, version, ctx.today)
                rows = org.store.fetch_joined(plan.obj.name, expr, page_ids, ",")
                return dumps(head)[:-1] + b',"records":[' + rows + b"]}"
            fetched = fetch_page(plan, org.src, ctx, page_ids)
            recs = render_rest(plan, fetched, ctx, version, org.src)
            for child in plan.root.children.values():
                child.cache.clear()
            return dumps({**head, "records": recs})

        body = await loop.run_in_executor(None, render)
        return web.Response(body=body, headers={"Content-Type": JSON_TYPE})
