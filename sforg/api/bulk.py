"""Bulk API 2.0 query jobs: create, poll, abort, delete, and the CSV results (gzip when asked)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import secrets
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from aiohttp import web
from isal import isal_zlib

from sforg.api.http import HANG_SECONDS, Api, error, json_response
from sforg.clock import stamp
from sforg.ids import make_id
from sforg.org import BulkJob
from sforg.query import DELIMITERS, csv_header, csv_rows, csv_sql, fast_fields, fetch_page, write_csv

if TYPE_CHECKING:
    from sforg.server import Server


class BulkApi(Api):
    def __init__(self, server: Server) -> None:
        super().__init__(server)
        # One thread keeps each response's gzip stream in order.
        self.zip_pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sforg-gzip")

    def job_info(self, job: BulkJob, full: bool = True) -> dict[str, Any]:
        info = dict(job.info)
        if job.done.is_set() and info["state"] in ("UploadComplete", "InProgress"):
            if job.error:
                info["state"] = "Failed"
                info["errorMessage"] = job.error
            else:
                info["state"] = "JobComplete"
            job.info["state"] = info["state"]
        if full:
            info.update(
                {
                    "jobType": "V2Query",
                    "lineEnding": job.info["lineEnding"],
                    "columnDelimiter": job.info["columnDelimiter"],
                    "numberRecordsProcessed": len(job.rowids),
                    "retries": 0,
                    "totalProcessingTime": job.info.get("_ms", 0),
                    "isPkChunkingSupported": True,
                }
            )
        return {k: v for k, v in info.items() if not k.startswith("_")}

    async def jobs(self, request: web.Request, version: str, parts: list[str]) -> web.StreamResponse:
        org = self.org
        method = request.method
        loop = asyncio.get_running_loop()
        if not parts:
            if method == "POST":
                body = await self.json_body(request)
                operation = body.get("operation")
                if operation not in ("query", "queryAll"):
                    return error(400, "INVALIDJOB", f"Invalid operation: {operation}")
                text = body.get("query") or ""
                delim = body.get("columnDelimiter", "COMMA")
                ending = body.get("lineEnding", "LF")
                if delim not in DELIMITERS or ending not in ("LF", "CRLF"):
                    return error(400, "INVALIDJOB", "Invalid columnDelimiter or lineEnding")
                plan = await loop.run_in_executor(None, org.plan, text, operation == "queryAll", True)
                if not plan.obj.bulk_supported:
                    return error(400, "INVALIDENTITY", f"Entity '{plan.obj.name}' is not supported by the Bulk API.")
                created = org.count_bulk_job()
                if created > org.settings["bulk_jobs_max"]:
                    return error(
                        400,
                        "LIMIT_EXCEEDED",
                        f"Max bulk v2 query jobs ({org.settings['bulk_jobs_max']}) "
                        f"per 24 hrs has been reached ({created})",
                    )
                job_failed = bool(request.get("job_failed"))
                now = stamp(org.now())
                jid = make_id("750", secrets.randbelow(62**9), pod="Dx")
                job = BulkJob(
                    jid,
                    {
                        "id": jid,
                        "operation": operation,
                        "object": plan.obj.name,
                        "createdById": org.identity["user_id"],
                        "createdDate": now[:-1] + "+0000",
                        "systemModstamp": now[:-1] + "+0000",
                        "state": "UploadComplete",
                        "concurrencyMode": "Parallel",
                        "contentType": "CSV",
                        "apiVersion": float(version),
                        "lineEnding": ending,
                        "columnDelimiter": delim,
                        "_query": text,
                    },
                    plan,
                )
                org.jobs[jid] = job

                def run() -> None:
                    started = time.perf_counter()
                    try:
                        if job_failed:
                            raise RuntimeError("InternalServerError : Retried more than 15 times")
                        job.rowids = org.run(plan)
                    except Exception as exc:
                        job.error = str(exc)
                    job.info["_ms"] = int((time.perf_counter() - started) * 1000)
                    job.done.set()

                loop.run_in_executor(None, run)
                return json_response(self.job_info(job, full=False))
            if method == "GET":
                return json_response(
                    {
                        "done": True,
                        "records": [self.job_info(j, False) for j in org.jobs.values()],
                        "nextRecordsUrl": None,
                    }
                )
            return error(405, "METHOD_NOT_ALLOWED", "HTTP Method not allowed")
        found = org.jobs.get(parts[0])
        if found is None:
            return error(404, "NOT_FOUND", "The requested resource does not exist")
        job = found
        if len(parts) == 1:
            if method == "GET":
                # Finish the job before the first poll answers: simple-salesforce sleeps before every poll.
                await loop.run_in_executor(None, job.done.wait, 60)
                return json_response(self.job_info(job))
            if method == "PATCH":
                body = await self.json_body(request)
                if body.get("state") != "Aborted":
                    return error(400, "INVALIDJOB", "Invalid state")
                if job.info["state"] in ("JobComplete", "Failed"):
                    return error(400, "INVALIDSTATUS", f"Job is already in state {job.info['state']}")
                job.info["state"] = "Aborted"
                return json_response(self.job_info(job, False))
            if method == "DELETE":
                org.jobs.pop(job.id, None)
                return web.Response(status=204)
        if len(parts) == 2 and parts[1] == "results" and method == "GET":
            return await self.results(request, job)
        return error(404, "NOT_FOUND", "The requested resource does not exist")

    async def results(self, request: web.Request, job: BulkJob) -> web.StreamResponse:
        org = self.org
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, job.done.wait, 60)
        info = self.job_info(job, False)
        if info["state"] != "JobComplete":
            return error(
                412,
                "JOB_NOT_COMPLETE",
                "can only download query results of successfully completed bulk "
                f"job with status: JOB_COMPLETE. Current status: {info['state'].upper()}",
            )
        locator = request.query.get("locator", "")
        try:
            start = int(base64.b64decode(locator + "=" * (-len(locator) % 4)).decode()) if locator else 0
        except (ValueError, binascii.Error):
            return error(400, "INVALIDLOCATOR", f"Invalid locator: {locator}")
        max_records = request.query.get("maxRecords")
        total = len(job.rowids)
        # Without maxRecords everything comes in one page (jsforce 3 breaks on several).
        end = min(total, start + int(max_records)) if max_records and max_records.isdigit() else total
        nxt = "null" if end >= total else base64.b64encode(str(end).encode()).decode().rstrip("=")
        plan = job.plan
        assert plan is not None
        delim = DELIMITERS[job.info["columnDelimiter"]]
        ending = "\n" if job.info["lineEnding"] == "LF" else "\r\n"
        resp = web.StreamResponse(
            status=200,
            headers={
                "Content-Type": "text/csv",
                "Sforce-NumberOfRecords": str(end - start),
                "Sforce-Locator": nxt,
                "Sforce-Limit-Info": f"api-usage={org.api_used}/{org.settings['api_max']}",
            },
        )
        # gzip when asked, as Salesforce does; compressed in the worker thread so it overlaps with the network
        # writes instead of blocking the event loop. ISA-L's deflate at level 1 (standard gzip, a slightly smaller
        # result than zlib's level 1) takes a quarter of zlib's CPU: the emulator shares the benchmarks' machine.
        gzip_wanted = "gzip" in request.headers.get("Accept-Encoding", "") and request.get("stall_after") is None
        compressor = isal_zlib.compressobj(1, isal_zlib.DEFLATED, 31) if gzip_wanted else None
        if compressor is not None:
            resp.headers["Content-Encoding"] = "gzip"
        await resp.prepare(request)
        ctx = org.context()
        header = csv_header(plan)
        stall = request.get("stall_after")
        sent = 0

        fast = fast_fields(plan, formulas_too=True)
        nul_safe = plan.obj.name in org.store.nul_objects()
        csv_expr = csv_sql(fast, delim, plan.obj, ctx.today, nul_safe) if fast is not None else ""
        header_line = (delim.join('"' + h.replace('"', '""') + '"' for h in header) + ending).encode()
        ending_bytes = ending.encode()

        def chunk_text(ids: Sequence[int], with_header: bool) -> bytes:
            import io

            if fast is not None:
                # SQLite's UTF-8 as it is: the lines are never decoded into a str to be encoded again.
                lines = org.store.fetch_joined(plan.obj.name, csv_expr, ids, ending) if ids else b""
                return b"".join((header_line if with_header else b"", lines, ending_bytes if lines else b""))

            buf = io.StringIO()
            rows = fetch_page(plan, org.src, ctx, ids) if ids else []
            data = csv_rows(plan, rows, ctx)
            for child in plan.root.children.values():
                child.cache.clear()
            if with_header:
                write_csv(buf, header, data, delim, ending)
            else:
                import csv as _csv

                _csv.writer(buf, delimiter=delim, quoting=_csv.QUOTE_ALL, lineterminator=ending).writerows(data)
            return buf.getvalue().encode()

        def compress(data: bytes, last: bool) -> bytes:
            assert compressor is not None
            return compressor.compress(data) + (compressor.flush() if last else b"")

        step = 25000
        bounds = list(range(start, end, step)) or [start]
        # Two stages overlap: SQLite renders chunk n+1 while ISA-L compresses chunk n and chunk n-1 is sent
        # (both release the GIL, so the two cores are used).
        rendering = loop.run_in_executor(None, chunk_text, job.rowids[start : min(end, start + step)], True)
        for n, _pos in enumerate(bounds):
            raw = await rendering
            last = n + 1 == len(bounds)
            if not last:
                next_start = bounds[n + 1]
                rendering = loop.run_in_executor(
                    None, chunk_text, job.rowids[next_start : min(end, next_start + step)], False
                )
            data = await loop.run_in_executor(self.zip_pool, compress, raw, last) if compressor else raw
            if stall is not None and sent + len(data) > stall:
                await resp.write(data[: max(0, stall - sent)])
                await asyncio.sleep(HANG_SECONDS)
            await resp.write(data)
            sent += len(data)
        org.add_bytes("bulk2_results", sent)
        await resp.write_eof()
        return resp
