"""The HTTPS server: one dispatcher that applies the API limits, injected faults and accounting to every
request, then routes it to its API (`sforg.api`: OAuth and SOAP login, REST sObjects, REST query, Bulk API 2.0,
limits, Metadata SOAP, the /_sforg admin API)."""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from sforg.api.admin import ADMIN_METHODS, AdminApi
from sforg.api.auth import AuthApi
from sforg.api.bulk import BulkApi
from sforg.api.composite import CompositeApi
from sforg.api.faults import fault_error, stall
from sforg.api.http import HANG_SECONDS, MAX_VERSION, MIN_VERSION, VERSION_RE, error, json_response
from sforg.api.ingest import IngestApi
from sforg.api.limits import LimitsApi
from sforg.api.metadata import MetadataApi
from sforg.api.rest_query import QueryApi
from sforg.api.soap import SoapApi
from sforg.api.sobjects import SObjectsApi
from sforg.api.tooling import ToolingApi
from sforg.org import Org, OrgError, scale_total
from sforg.soql import SoqlError
from sforg.tls import ensure_certificates

__all__ = ["ADMIN_METHODS", "HANG_SECONDS", "Server", "classify", "is_write", "release_label", "serve"]

RESOURCES = [
    "tooling",
    "metadata",
    "eclair",
    "folders",
    "prechatForms",
    "chatter",
    "tabs",
    "appMenu",
    "quickActions",
    "queryAll",
    "commerce",
    "wave",
    "analytics",
    "search",
    "identity",
    "composite",
    "parameterizedSearch",
    "fingerprint",
    "theme",
    "nouns",
    "event",
    "serviceTemplates",
    "recent",
    "connect",
    "licensing",
    "limits",
    "process",
    "async-queries",
    "query",
    "match",
    "emailConnect",
    "compactLayouts",
    "knowledgeManagement",
    "sobjects",
    "actions",
    "support",
    "jobs",
]


def release_label(version: int) -> str:
    """Salesforce's release name of an API version: three a year, v40.0 being Summer '17."""
    n = version - 40
    season = ("Summer", "Winter", "Spring")[n % 3]
    return f"{season} '{17 + (n + 2) // 3:02d}"


SOAP_OP_RE = re.compile(rb"<(?:[\w.-]+:)?Body\b[^>]*>\s*<(?:[\w.-]+:)?([\w]+)")
CHECK_ONLY_RE = re.compile(rb"<(?:[\w.-]+:)?checkOnly>\s*true\s*</")
PARTNER_WRITES = {"undelete", "emptyRecycleBin", "create", "update", "upsert", "delete", "merge"}


def soap_operation(body: bytes) -> str:
    """The local name of a SOAP request's first Body child (the operation), or ''."""
    m = SOAP_OP_RE.search(body[:65536])
    return m.group(1).decode() if m else ""


def classify(method: str, path: str, op: str = "") -> tuple[str, str]:
    """(endpoint name, kind) of a request: the names faults and accounting use (op: the SOAP operation)."""
    if path.endswith("/services/oauth2/token"):
        return "oauth", "Auth"
    if "/services/Soap/u/" in path:
        if op and op != "login":
            return "soap_partner", "SOAP"
        return "soap_login", "Auth"
    if path.startswith("/services/Soap/m/"):
        if op in ("deploy", "checkDeployStatus", "cancelDeploy"):
            return "metadata_deploy", "Metadata"
        return "metadata", "Metadata"
    m = VERSION_RE.match(path)
    if not m:
        return ("versions", "REST") if path == "/services/data" else ("other", "REST")
    rest = m.group(2) or ""
    parts = rest.split("/") if rest else []
    head = parts[0] if parts else ""
    if head == "jobs":
        if len(parts) >= 2 and parts[1] == "ingest":
            return "bulk2_ingest", "Bulk"
        if len(parts) >= 4 and parts[3] == "results":
            return "bulk2_results", "Bulk"
        if len(parts) >= 3:
            return "bulk2_job", "Bulk"
        return "bulk2_create", "Bulk"
    if head in ("query", "queryAll"):
        return ("query_more" if len(parts) > 1 else "query"), "REST"
    if head == "sobjects":
        if len(parts) == 1:
            return "describe_global", "REST"
        if len(parts) >= 3 and parts[2] == "describe":
            return "describe", "REST"
        if len(parts) >= 3 and parts[2] in ("updated", "deleted"):
            return parts[2], "REST"
        if method in ("POST", "PATCH", "PUT", "DELETE"):
            return "sobject_write", "REST"
        if len(parts) == 4:
            return "blob", "REST"
        return "sobject", "REST"
    if head == "limits":
        return "limits", "REST"
    if head == "composite":
        if len(parts) >= 2 and parts[1] == "sobjects":
            return "composite_sobjects", "REST"
        return "composite", "REST"
    return ("resources" if not head else head), "REST"


def is_write(endpoint: str, method: str, path: str, op: str = "") -> bool:
    """Whether a request is a write call (what a dry run must never make), whatever its outcome."""
    if endpoint == "sobject_write":
        return True
    if endpoint == "composite_sobjects":
        # POST composite/sobjects/{X} with ids is a read (retrieve); POST composite/sobjects creates.
        return method in ("PATCH", "DELETE") or (method == "POST" and path.rstrip("/").endswith("/sobjects"))
    if endpoint == "composite":
        return method == "POST"
    if endpoint == "bulk2_ingest":
        return method in ("POST", "PUT", "PATCH", "DELETE")
    if endpoint == "soap_partner":
        return op in PARTNER_WRITES
    if endpoint == "metadata_deploy":
        return op == "deploy"
    return False


class Server:
    """Routes every request through one dispatcher that applies limits, faults and accounting first."""

    def __init__(self, org: Org, host: str = "127.0.0.1", port: int = 0) -> None:
        self.org = org
        self.host, self.port = host, port
        self.base_url = ""
        self.runner: web.AppRunner | None = None
        self.app = web.Application(client_max_size=512 * 1024 * 1024)
        self.auth = AuthApi(self)
        self.sobjects = SObjectsApi(self)
        self.queries = QueryApi(self)
        self.bulk = BulkApi(self)
        self.limits = LimitsApi(self)
        self.metadata = MetadataApi(self)
        self.soap = SoapApi(self)
        self.ingest = IngestApi(self)
        self.composite = CompositeApi(self)
        self.tooling = ToolingApi(self)
        self.admin = AdminApi(self)
        self.app.router.add_route("*", "/{tail:.*}", self.dispatch)

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> int:
        ca_file, cert_file, key_file = ensure_certificates(self.org.state_dir)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert_file, key_file)
        self.runner = web.AppRunner(
            # Salesforce accepts request lines (URI + query) up to 16,384 bytes; aiohttp's default is 8,190.
            self.app,
            handler_cancellation=True,
            access_log=None,
            max_line_size=16384 + 64,
        )
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", self.port, ssl_context=ctx, backlog=512)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        try:  # also answer on ::1, since "localhost" may resolve there first
            await web.TCPSite(self.runner, "::1", self.port, ssl_context=ctx, backlog=512).start()
        except OSError:
            pass
        self.base_url = f"https://localhost:{self.port}"
        self.ca_file = ca_file
        return self.port

    async def stop(self) -> None:
        self.org.flush()
        if self.runner:
            await self.runner.cleanup()

    def org_json(self) -> dict[str, Any]:
        ident = self.org.identity
        return {
            "instance_url": self.base_url,
            "login_url": self.base_url,
            "port": self.port,
            "client_id": ident["client_id"],
            "client_secret": ident["client_secret"],
            "username": ident["username"],
            "password": ident["password"],
            "security_token": ident["security_token"],
            "refresh_token": ident["refresh_token"],
            "admin_token": ident["admin_token"],
            "api_version": "59.0",
            "ca_file": str(self.ca_file),
            "org_id": ident["org_id"],
            "user_id": ident["user_id"],
            "state_dir": str(self.org.state_dir),
        }

    # ------------------------------------------------------------ dispatcher
    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if len(path) > 1:
            path = path.rstrip("/")
        if path.startswith("/_sforg"):
            return await self.admin.handle(request, path)
        op = ""
        check_only = False  # a validating deploy changes nothing in the org: it is no write
        if path.startswith("/services/Soap/") and request.method == "POST":
            body = await request.read()
            op = soap_operation(body)
            check_only = op == "deploy" and CHECK_ONLY_RE.search(body) is not None
        endpoint, kind = classify(request.method, path, op)
        org = self.org
        if is_write(endpoint, request.method, path, op) and not check_only:
            org.count_write(endpoint)
        await asyncio.get_running_loop().run_in_executor(None, org.maintain) if endpoint in (
            "query",
            "updated",
            "deleted",
            "bulk2_create",
        ) else org.maintain()
        counted = kind != "Auth" and endpoint not in ("versions", "other")
        if counted:
            if org.api_used >= org.settings["api_max"]:
                org.account(endpoint, kind, 0)
                return self.finish(error(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."), kind)
            org.api_used += 1
            if org.api_used - org._api_saved >= 200:
                org._api_saved = org.api_used
                org.flush()
        now = time.monotonic()
        long_running = sum(1 for t in org.in_flight.values() if now - t >= org.settings["long_running_seconds"])
        if counted and long_running >= org.settings["concurrent_limit"]:
            org.account(endpoint, kind, 0)
            return self.finish(error(403, "REQUEST_LIMIT_EXCEEDED", "ConcurrentPerOrgLongTxn Limit exceeded."), kind)
        key = id(request)
        org.in_flight[key] = now
        try:
            fault = org.take_fault(endpoint)
            if fault:
                if fault["latency"]:
                    await asyncio.sleep(float(fault["latency"]))
                if fault["hang"]:
                    await asyncio.sleep(HANG_SECONDS)
                failing = bool(fault["error_rate"]) and org.fault_rng.random() < float(fault["error_rate"])
                if failing and fault["error"] == "JOB_FAILED":
                    # Not an HTTP error: the Bulk job is accepted and ends Failed, as Salesforce's do.
                    request["job_failed"] = True
                elif failing:
                    failed = fault_error(fault["error"], kind)
                    org.account(endpoint, kind, len(failed.body) if isinstance(failed.body, bytes) else 0)
                    return self.finish(failed, kind)
                if fault["stall_after"] is not None:
                    request["stall_after"] = int(fault["stall_after"])
            resp: web.StreamResponse = await self.route(request, path, endpoint)
        except OrgError as exc:
            resp = error(exc.status, exc.code, exc.message, exc.fields)
        except SoqlError as exc:
            resp = error(400, exc.code, exc.message)
        except web.HTTPException:
            raise
        except Exception:
            # A bug in sforg must still look like Salesforce to the client: a JSON error, not an HTML page.
            traceback.print_exc()
            resp = error(
                500,
                "UNKNOWN_EXCEPTION",
                "An unexpected error occurred. Please include this ErrorId if "
                "you contact support: 0000000000-00000 (sforg)",
            )
        finally:
            org.in_flight.pop(key, None)
        size = len(resp.body) if isinstance(resp, web.Response) and isinstance(resp.body, bytes) else 0
        org.account(endpoint, kind, size)
        resp = self.finish(resp, kind)
        if "stall_after" in request and isinstance(resp, web.Response) and not resp.prepared:
            return await stall(self.org, request, resp, request["stall_after"])
        return resp

    def finish(self, resp: web.StreamResponse, kind: str) -> web.StreamResponse:
        if kind in ("REST", "Bulk") and not resp.prepared:
            resp.headers["Sforce-Limit-Info"] = f"api-usage={self.org.api_used}/{self.org.settings['api_max']}"
        return resp

    async def route(self, request: web.Request, path: str, endpoint: str) -> web.StreamResponse:
        if endpoint == "oauth":
            return await self.auth.oauth(request)
        if endpoint == "soap_login":
            return await self.auth.soap_login(request, path)
        if endpoint == "soap_partner":
            return await self.soap.handle(request, path)
        if endpoint in ("metadata", "metadata_deploy"):
            return await self.metadata.handle(request, path)
        if path == "/services/data":
            return json_response(
                [
                    {"label": release_label(v), "url": f"/services/data/v{v}.0", "version": f"{v}.0"}
                    for v in range(int(MIN_VERSION), int(MAX_VERSION) + 1)
                ]
            )
        m = VERSION_RE.match(path)
        if not m:
            if path.startswith("/id/"):
                return await self.auth.identity(request)
            return error(404, "NOT_FOUND", "The requested resource does not exist")
        version = m.group(1)
        if not MIN_VERSION <= float(version) <= MAX_VERSION:
            return error(404, "NOT_FOUND", "The requested resource does not exist")
        token = self.auth.bearer(request)
        if not self.org.check_token(token):
            return error(401, "INVALID_SESSION_ID", "Session expired or invalid")
        parts = (m.group(2) or "").split("/") if m.group(2) else []
        return await self.rest(request, version, parts)

    async def rest(self, request: web.Request, version: str, parts: list[str]) -> web.StreamResponse:
        org = self.org
        method = request.method
        head = parts[0] if parts else ""
        if not head:
            base = f"/services/data/v{version}"
            out = {n: f"{base}/{n}" for n in RESOURCES}
            out["identity"] = f"https://login.salesforce.com/id/{org.identity['org_id']}/{org.identity['user_id']}"
            return json_response(out)
        if head in ("query", "queryAll"):
            if method != "GET":
                return error(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed. Allowed are GET")
            locator = parts[1] if len(parts) > 1 else None
            return await self.queries.query(request, version, head == "queryAll", locator)
        if head == "sobjects":
            return await self.sobjects.sobjects(request, version, parts[1:])
        if head == "limits":
            if len(parts) > 1 and parts[1] == "recordCount":
                return self.limits.record_count(request)
            return json_response(self.limits.limits())
        if head == "composite" and len(parts) > 1 and parts[1] == "sobjects":
            return await self.sobjects.collections(request, version, parts[2:])
        if head == "jobs" and len(parts) > 1 and parts[1] == "query":
            return await self.bulk.jobs(request, version, parts[2:])
        if head == "jobs" and len(parts) > 1 and parts[1] == "ingest":
            return await self.ingest.jobs(request, version, parts[2:])
        if head == "composite" and len(parts) == 1:
            return await self.composite.composite(request, version)
        if head == "tooling":
            return await self.tooling.handle(request, version, parts[1:])
        if head == "composite" and len(parts) == 2 and parts[1] == "batch":
            return await self.composite.batch(request, version)
        if head == "composite" and len(parts) == 3 and parts[1] == "tree":
            return await self.composite.tree(request, version, parts[2])
        return error(404, "NOT_FOUND", "The requested resource does not exist")


async def serve(
    state_dir: Path,
    port: int,
    scale: str,
    seed: int,
    ready: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
) -> None:
    """Build or open the org, listen, write DIR/org.json, and serve until cancelled."""
    loop = asyncio.get_running_loop()
    org = await loop.run_in_executor(
        None, lambda: Org(state_dir, scale, seed, progress=lambda m: print(f"sforg: {m}", flush=True))
    )
    built = org.store.get_meta("scale", {})
    if built and (built.get("seed") != seed or built.get("total") != scale_total(scale)):
        print(
            f"sforg: {state_dir} already holds an org ({built.get('total')} records, "
            f"seed {built.get('seed')}); --scale and --seed apply to a new state directory only",
            flush=True,
        )
    server = Server(org, port=port)
    await server.start()
    info = server.org_json()
    tmp = state_dir / "org.json.tmp"
    tmp.write_text(json.dumps(info, indent=2))
    tmp.chmod(0o600)
    tmp.rename(state_dir / "org.json")
    print(f"sforg: listening on {server.base_url} (state in {state_dir})", flush=True)
    if ready:
        await ready(info)
    try:
        while True:
            await asyncio.sleep(5)
            org.flush()
    finally:
        await server.stop()
