"""The HTTPS server: OAuth, SOAP login, REST, Bulk API 2.0, Metadata SOAP and the /_sforg admin API."""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import hmac
import json
import re
import secrets
import ssl
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from aiohttp import web
from isal import isal_zlib

from sforg import metadata as md
from sforg import schema
from sforg.clock import stamp
from sforg.ids import is_valid, make_id, to18
from sforg.org import BulkJob, Org, OrgError, scale_total
from sforg.query import (
    DELIMITERS,
    aggregate_record,
    csv_header,
    csv_rows,
    csv_sql,
    fast_fields,
    fetch_page,
    json_sql,
    render_rest,
    write_csv,
)
from sforg.soql import SoqlError
from sforg.tls import ensure_certificates

JSON_TYPE = "application/json;charset=UTF-8"
MIN_VERSION, MAX_VERSION = 40.0, 62.0
VERSION_RE = re.compile(r"^/services/data/v(\d+\.\d)(?:/(.*))?$")
HANG_SECONDS = 600.0
ADMIN_METHODS = {
    "in_flight_requests",
    "update_records",
    "create_records",
    "soft_delete",
    "hard_delete",
    "undelete",
    "purge_recycle_bin",
    "add_field",
    "remove_field",
    "add_object",
    "remove_object",
    "change_metadata",
    "clock_set",
    "clock_advance",
    "clock_reset",
    "clock_info",
    "set_settings",
    "set_api_usage",
    "set_fault",
    "clear_faults",
    "expire_locators",
    "revoke_tokens",
    "get_accounting",
    "reset_accounting",
    "ground_truth",
    "record_count",
}


def dumps(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=dumps(data), status=status, headers={"Content-Type": JSON_TYPE, **(headers or {})})


def error(status: int, code: str, message: str, fields: list[str] | None = None) -> web.Response:
    item: dict[str, Any] = {"message": message, "errorCode": code}
    if fields is not None:
        item["fields"] = fields
    return json_response([item], status)


def xml_response(text: str, status: int = 200) -> web.Response:
    return web.Response(body=text.encode(), status=status, headers={"Content-Type": "text/xml;charset=UTF-8"})


def release_label(version: int) -> str:
    """Salesforce's release name of an API version: three a year, v40.0 being Summer '17."""
    n = version - 40
    season = ("Summer", "Winter", "Spring")[n % 3]
    return f"{season} '{17 + (n + 2) // 3:02d}"


# Refusals a fault can inject (as Salesforce words them): a feature the org does not have.
REFUSALS = {
    "FEATURENOTENABLED": (400, "Bulk API 2.0 is not enabled for this organization."),
    "API_DISABLED_FOR_ORG": (403, "API is not enabled for this Organization or Partner"),
    "ENTITY_IS_DELETED": (404, "entity is deleted"),
}


def classify(method: str, path: str) -> tuple[str, str]:
    """(endpoint name, kind) of a request: the names faults and accounting use."""
    if path.endswith("/services/oauth2/token"):
        return "oauth", "Auth"
    if "/services/Soap/u/" in path:
        return "soap_login", "Auth"
    if path.startswith("/services/Soap/m/"):
        return "metadata", "Metadata"
    m = VERSION_RE.match(path)
    if not m:
        return ("versions", "REST") if path == "/services/data" else ("other", "REST")
    rest = m.group(2) or ""
    parts = rest.split("/") if rest else []
    head = parts[0] if parts else ""
    if head == "jobs":
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
        if len(parts) == 4:
            return "blob", "REST"
        return "sobject", "REST"
    if head == "limits":
        return "limits", "REST"
    if head == "composite":
        return "composite", "REST"
    return ("resources" if not head else head), "REST"


class Server:
    """Routes every request through one dispatcher that applies limits, faults and accounting first."""

    def __init__(self, org: Org, host: str = "127.0.0.1", port: int = 0) -> None:
        self.org = org
        self.host, self.port = host, port
        self.base_url = ""
        self.runner: web.AppRunner | None = None
        self.app = web.Application(client_max_size=512 * 1024 * 1024)
        # One thread keeps each response's gzip stream in order.
        self.zip_pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sforg-gzip")
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
            return await self.admin(request, path)
        endpoint, kind = classify(request.method, path)
        org = self.org
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
                    failed = self.fault_error(fault["error"], kind)
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
            return await self.stall(request, resp, request["stall_after"])
        return resp

    def finish(self, resp: web.StreamResponse, kind: str) -> web.StreamResponse:
        if kind in ("REST", "Bulk") and not resp.prepared:
            resp.headers["Sforce-Limit-Info"] = f"api-usage={self.org.api_used}/{self.org.settings['api_max']}"
        return resp

    def fault_error(self, code: str, kind: str) -> web.Response:
        if kind == "Metadata":
            # every SOAP fault comes at HTTP 500, whatever it means
            fault = {"500": "UNKNOWN_EXCEPTION", "QUERY_TIMEOUT": "SERVER_UNAVAILABLE"}.get(code, code)
            return xml_response(md.fault(fault, "injected fault"), 500)
        if code == "QUERY_TIMEOUT":
            return error(400, "QUERY_TIMEOUT", "Your query request was running for too long.")
        if code in REFUSALS:
            status, message = REFUSALS[code]
            return error(status, code, message)
        if code in ("500", "UNKNOWN_EXCEPTION"):
            return error(
                500,
                "UNKNOWN_EXCEPTION",
                "An unexpected error occurred. Please include this ErrorId if "
                "you contact support: 1234567890-12345 (-1234567890)",
            )
        return error(503, "SERVER_UNAVAILABLE", "Server temporarily unavailable, please try again later")

    async def stall(self, request: web.Request, resp: web.Response, after: int) -> web.StreamResponse:
        """Send the headers and the first bytes of a body, then stop sending (a stalled transfer)."""
        body = resp.body if isinstance(resp.body, bytes) else b""
        out = web.StreamResponse(status=resp.status, headers=resp.headers)
        out.content_length = len(body)
        await out.prepare(request)
        await out.write(body[:after])
        self.org.add_bytes("stall", min(after, len(body)))
        await asyncio.sleep(HANG_SECONDS)
        return out

    async def route(self, request: web.Request, path: str, endpoint: str) -> web.StreamResponse:
        if endpoint == "oauth":
            return await self.oauth(request)
        if endpoint == "soap_login":
            return await self.soap_login(request, path)
        if endpoint == "metadata":
            return await self.metadata(request, path)
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
                return await self.identity(request)
            return error(404, "NOT_FOUND", "The requested resource does not exist")
        version = m.group(1)
        if not MIN_VERSION <= float(version) <= MAX_VERSION:
            return error(404, "NOT_FOUND", "The requested resource does not exist")
        token = self.bearer(request)
        if not self.org.check_token(token):
            return error(401, "INVALID_SESSION_ID", "Session expired or invalid")
        parts = (m.group(2) or "").split("/") if m.group(2) else []
        return await self.rest(request, version, parts)

    @staticmethod
    def bearer(request: web.Request) -> str | None:
        auth = request.headers.get("Authorization", "")
        if auth.lower().startswith(("bearer ", "oauth ")):
            return auth.split(" ", 1)[1].strip()
        return None

    # ------------------------------------------------------------ auth
    def token_body(self, token: str) -> dict[str, Any]:
        ident = self.org.identity
        issued = str(int(self.org.now() * 1000))
        sig = base64.b64encode(
            hmac.new(ident["client_secret"].encode(), (token + issued).encode(), "sha256").digest()
        ).decode()
        return {
            "access_token": token,
            "instance_url": self.base_url,
            "id": f"https://login.salesforce.com/id/{ident['org_id']}/{ident['user_id']}",
            "token_type": "Bearer",
            "issued_at": issued,
            "signature": sig,
        }

    async def oauth(self, request: web.Request) -> web.Response:
        form = await request.post()
        grant = str(form.get("grant_type", ""))
        ident = self.org.identity
        client_id, client_secret = str(form.get("client_id", "")), str(form.get("client_secret", ""))
        auth = request.headers.get("Authorization", "")
        if auth.lower().startswith("basic "):
            try:
                client_id, _, client_secret = base64.b64decode(auth[6:]).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return json_response(
                    {"error": "invalid_client", "error_description": "invalid client credentials"}, 400
                )

        def oauth_error(code: str, desc: str) -> web.Response:
            return json_response({"error": code, "error_description": desc}, 400)

        if grant == "client_credentials":
            if client_id != ident["client_id"] or client_secret != ident["client_secret"]:
                return oauth_error("invalid_client", "invalid client credentials")
            body = self.token_body(self.org.issue_token())
            body["scope"] = "api"
            return json_response(body)
        if grant == "password":
            if client_id != ident["client_id"] or client_secret != ident["client_secret"]:
                return oauth_error("invalid_client", "invalid client credentials")
            password = str(form.get("password", ""))
            if form.get("username") != ident["username"] or password not in (
                ident["password"],
                ident["password"] + ident["security_token"],
            ):
                return oauth_error("invalid_grant", "authentication failure")
            return json_response(self.token_body(self.org.issue_token()))
        if grant == "refresh_token":
            if client_id != ident["client_id"] or (client_secret and client_secret != ident["client_secret"]):
                return oauth_error("invalid_client", "invalid client credentials")
            if form.get("refresh_token") != ident["refresh_token"]:
                return oauth_error("invalid_grant", "expired access/refresh token")
            return json_response(self.token_body(self.org.issue_token()))
        return oauth_error("unsupported_grant_type", "grant type not supported")

    async def soap_login(self, request: web.Request, path: str) -> web.Response:
        body = await request.read()
        version = path.split("/services/Soap/u/")[1].split("/")[0]
        try:
            _, op_el, _ = md.parse_request(body)
        except Exception:
            op_el = None
        ident = self.org.identity
        username = md.text_of(op_el, "username") if op_el is not None else None
        password = md.text_of(op_el, "password") if op_el is not None else None
        if username != ident["username"] or password not in (
            ident["password"],
            ident["password"] + ident["security_token"],
        ):
            msg = "Invalid username, password, security token; or user locked out."
            return xml_response(
                '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/'
                'soap/envelope/" xmlns:sf="urn:fault.partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/'
                f'XMLSchema-instance"><soapenv:Body><soapenv:Fault><faultcode>sf:INVALID_LOGIN</faultcode>'
                f"<faultstring>INVALID_LOGIN: {msg}</faultstring><detail>"
                '<sf:LoginFault xsi:type="sf:LoginFault">'
                f"<sf:exceptionCode>INVALID_LOGIN</sf:exceptionCode><sf:exceptionMessage>{msg}"
                "</sf:exceptionMessage></sf:LoginFault></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>",
                500,
            )
        token = self.org.issue_token()
        org15 = ident["org_id"][:15]
        return xml_response(
            '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/'
            'soap/envelope/" xmlns="urn:partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-'
            'instance"><soapenv:Body><loginResponse><result>'
            f"<metadataServerUrl>{self.base_url}/services/Soap/m/{version}/{org15}</metadataServerUrl>"
            "<passwordExpired>false</passwordExpired><sandbox>false</sandbox>"
            f"<serverUrl>{self.base_url}/services/Soap/u/{version}/{org15}</serverUrl>"
            f"<sessionId>{escape(token)}</sessionId><userId>{ident['user_id']}</userId><userInfo>"
            "<accessibilityMode>false</accessibilityMode><currencySymbol>$</currencySymbol>"
            "<orgDefaultCurrencyIsoCode>USD</orgDefaultCurrencyIsoCode><organizationId>"
            f"{ident['org_id']}</organizationId><organizationName>sforg</organizationName>"
            f"<userEmail>{ident['username']}</userEmail><userFullName>Admin User</userFullName>"
            f"<userId>{ident['user_id']}</userId><userName>{ident['username']}</userName>"
            "<userTimeZone>Europe/Paris</userTimeZone></userInfo></result></loginResponse></soapenv:Body>"
            "</soapenv:Envelope>"
        )

    async def identity(self, request: web.Request) -> web.Response:
        token = request.query.get("oauth_token") or self.bearer(request)
        if not self.org.check_token(token):
            return json_response({"error": "Bad_OAuth_Token"}, 403)
        ident = self.org.identity
        return json_response(
            {
                "id": f"https://login.salesforce.com/id/{ident['org_id']}/{ident['user_id']}",
                "user_id": ident["user_id"],
                "organization_id": ident["org_id"],
                "username": ident["username"],
                "active": True,
            }
        )

    # ------------------------------------------------------------ REST
    async def rest(self, request: web.Request, version: str, parts: list[str]) -> web.StreamResponse:
        org = self.org
        method = request.method
        head = parts[0] if parts else ""
        if not head:
            base = f"/services/data/v{version}"
            names = [
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
            out = {n: f"{base}/{n}" for n in names}
            out["identity"] = f"https://login.salesforce.com/id/{org.identity['org_id']}/{org.identity['user_id']}"
            return json_response(out)
        if head in ("query", "queryAll"):
            if method != "GET":
                return error(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed. Allowed are GET")
            locator = parts[1] if len(parts) > 1 else None
            return await self.query(request, version, head == "queryAll", locator)
        if head == "sobjects":
            return await self.sobjects(request, version, parts[1:])
        if head == "limits":
            if len(parts) > 1 and parts[1] == "recordCount":
                names = [n for n in request.query.get("sObjects", "").split(",") if n]
                names = names or list(org.catalogue)
                return json_response(
                    {"sObjects": [{"count": org.record_count(n), "name": org.obj(n).name} for n in names]}
                )
            return json_response(self.limits())
        if head == "composite" and len(parts) > 1 and parts[1] == "sobjects":
            return await self.collections(request, version, parts[2:])
        if head == "jobs" and len(parts) > 1 and parts[1] == "query":
            return await self.bulk(request, version, parts[2:])
        return error(404, "NOT_FOUND", "The requested resource does not exist")

    def limits(self) -> dict[str, Any]:
        org = self.org
        used, mx = org.api_used, org.settings["api_max"]
        jobs = org.bulk_jobs_created

        def lim(m: int, r: int) -> dict[str, int]:
            return {"Max": m, "Remaining": max(0, r)}

        return {
            "ActiveScratchOrgs": lim(3, 3),
            "AnalyticsExternalDataSizeMB": lim(40960, 40960),
            "ConcurrentAsyncGetReportInstances": lim(200, 200),
            "ConcurrentEinsteinDataInsightsStoryCreation": lim(5, 5),
            "ConcurrentSyncReportRuns": lim(20, 20),
            "DailyAnalyticsDataflowJobExecutions": lim(60, 60),
            "DailyApiRequests": lim(mx, mx - used),
            "DailyAsyncApexExecutions": lim(250000, 250000),
            "DailyBulkApiBatches": lim(15000, 15000),
            "DailyBulkV2QueryFileStorageMB": lim(976562, 976562),
            "DailyBulkV2QueryJobs": lim(org.settings["bulk_jobs_max"], org.settings["bulk_jobs_max"] - jobs),
            "DailyDurableGenericStreamingApiEvents": lim(10000, 10000),
            "DailyDurableStreamingApiEvents": lim(10000, 10000),
            "DailyGenericStreamingApiEvents": lim(10000, 10000),
            "DailyStandardVolumePlatformEvents": lim(10000, 10000),
            "DailyStreamingApiEvents": lim(10000, 10000),
            "DailyWorkflowEmails": lim(1000, 1000),
            "DataStorageMB": lim(1024, 800),
            "DurableStreamingApiConcurrentClients": lim(20, 20),
            "FileStorageMB": lim(10240, 8000),
            "HourlyAsyncReportRuns": lim(1200, 1200),
            "HourlyDashboardRefreshes": lim(200, 200),
            "HourlyDashboardResults": lim(5000, 5000),
            "HourlyDashboardStatuses": lim(999999999, 999999999),
            "HourlyODataCallout": lim(10000, 10000),
            "HourlySyncReportRuns": lim(500, 500),
            "HourlyTimeBasedWorkflow": lim(50, 50),
            "MassEmail": lim(10, 10),
            "MonthlyPlatformEventsUsageEntitlement": lim(0, 0),
            "Package2VersionCreates": lim(6, 6),
            "PermissionSets": lim(1500, 1490),
            "SingleEmail": lim(15, 15),
            "StreamingApiConcurrentClients": lim(20, 20),
        }

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
            rowids = await loop.run_in_executor(None, org.run, plan)
            offset = 0
            batch = 2000
            opts = request.headers.get("Sforce-Query-Options", "")
            m = re.search(r"batchSize\s*=\s*(\d+)", opts)
            if m:
                batch = max(200, min(2000, int(m.group(1))))
            cur = None
            if plan.count_only:
                return json_response({"totalSize": len(rowids), "done": True, "records": []})
            if plan.aggregate:
                rec = await loop.run_in_executor(None, aggregate_record, plan, rowids, org.src, ctx)
                return json_response({"totalSize": 1, "done": True, "records": [rec]})
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

    async def json_body(self, request: web.Request) -> Any:
        # Parsed whatever the Content-Type: simple-salesforce sends text/xml after an mdapi call.
        raw = await request.read()
        try:
            return json.loads(raw or b"{}")
        except ValueError as exc:
            raise OrgError(400, "JSON_PARSER_ERROR", f"Unexpected character: {exc}") from exc

    def record_json(
        self, o: schema.ObjectDef, row: dict[str, Any], version: str, fields: list[str] | None = None
    ) -> dict[str, Any]:
        values = self.org.record_values(o, row, self.org.context())
        for k, v in list(values.items()):
            if isinstance(v, str) and v.startswith("/services/data/v59.0/sobjects/"):
                values[k] = v.replace("/v59.0/", f"/v{version}/", 1)
        if fields:
            wanted = {f.lower() for f in fields}
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
        o = org.obj(parts[0])
        if len(parts) == 1:
            if method == "GET":
                return json_response({"objectDescribe": schema.global_entry(o, version), "recentItems": []})
            if method == "POST":
                body = await self.json_body(request)
                rid = org.create_record(o.name, body)
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
        if method == "GET":
            row = org.get_row(o, rid)
            fields = request.query.get("fields")
            return json_response(self.record_json(o, row, version, fields.split(",") if fields else None))
        if method == "PATCH":
            body = await self.json_body(request)
            org.update_record(o.name, rid, body)
            return web.Response(status=204)
        if method == "DELETE":
            org.delete_record(o.name, rid)
            return web.Response(status=204)
        return error(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed. Allowed are GET,PATCH,DELETE")

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
            if not rows:
                rid = self.org.create_record(o.name, {**body, f.name: value})
                return json_response({"id": rid, "success": True, "errors": [], "created": True}, 201)
            self.org.update_record(o.name, rows[0][0], body)
            return json_response({"id": rows[0][0], "success": True, "errors": [], "created": False}, 200)
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

            def create(rec: dict[str, Any]) -> str:
                typ = (rec.get("attributes") or {}).get("type")
                if not typ:
                    raise OrgError(400, "INVALID_TYPE", "Must send a concrete entity type.")
                return org.create_record(typ, rec)

            return json_response(self.each(records, all_or_none, create))
        if method == "PATCH":

            def update(rec: dict[str, Any]) -> str:
                rid = rec.get("Id") or rec.get("id")
                if not rid:
                    raise OrgError(400, "MISSING_ARGUMENT", "Id not specified in an update call")
                o = org.object_of_id(str(rid))
                if o is None:
                    raise OrgError(400, "MALFORMED_ID", f"malformed id {rid}")
                org.update_record(o.name, str(rid), {k: v for k, v in rec.items() if k not in ("Id", "id")})
                return to18(str(rid))

            return json_response(self.each(records, all_or_none, update))
        return error(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed.")

    def _delete_any(self, rid: str) -> str:
        o = self.org.object_of_id(rid) if is_valid(rid) else None
        if o is None:
            raise OrgError(400, "MALFORMED_ID", f"malformed id {rid}")
        self.org.delete_record(o.name, rid)
        return to18(rid)

    @staticmethod
    def each(items: list[Any], all_or_none: bool, fn: Callable[[Any], str]) -> list[dict[str, Any]]:
        """Apply fn per record; failures become per-record errors (statusCode), as collections report."""
        out: list[dict[str, Any]] = []
        failed = False
        for item in items:
            try:
                out.append({"id": fn(item), "success": True, "errors": []})
            except OrgError as exc:
                failed = True
                out.append(
                    {
                        "success": False,
                        "errors": [{"statusCode": exc.code, "message": exc.message, "fields": exc.fields or []}],
                    }
                )
        if failed and all_or_none:
            # sforg applies records one by one; with allOrNone the successes are reported rolled back.
            for entry in out:
                if entry["success"]:
                    entry["success"] = False
                    entry["errors"] = [
                        {
                            "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                            "message": "Record rolled back because not all records were valid and the "
                            "request was using AllOrNone header",
                            "fields": [],
                        }
                    ]
        return out

    # ------------------------------------------------------------ Bulk API 2.0 query
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

    async def bulk(self, request: web.Request, version: str, parts: list[str]) -> web.StreamResponse:
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
        csv_expr = csv_sql(fast, delim, plan.obj, ctx.today) if fast is not None else ""
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

    # ------------------------------------------------------------ Metadata SOAP
    async def metadata(self, request: web.Request, path: str) -> web.Response:
        org = self.org
        body = await request.read()
        version = path.split("/services/Soap/m/")[1].split("/")[0]
        try:
            op, op_el, session = md.parse_request(body)
        except Exception:
            return xml_response(md.fault("INVALID_XML", "could not parse the request"), 500)
        session = session or self.bearer(request)
        if not org.check_token(session):
            return xml_response(
                md.fault("INVALID_SESSION_ID", "Invalid Session ID found in SessionHeader: Illegal Session"),
                500,
            )
        assert op_el is not None
        user_id, user_name = org.identity["user_id"], "Admin User"
        if op == "describeMetadata":
            return xml_response(md.describe_metadata_xml(version))
        if op == "listMetadata":
            types = [md.text_of(q, "type") for q in md.children(op_el, "queries")]
            rows = self.metadata_rows([t for t in types if t])
            return xml_response(md.list_metadata_xml(rows, user_id, user_name))
        if op == "retrieve":
            requested: dict[str, list[str]] = {}
            for t in md.children(op_el, "types"):
                name = md.text_of(t, "name") or ""
                requested.setdefault(name, []).extend(
                    (m.text or "").strip() for m in t.iter() if md.local(m.tag) == "members"
                )
            single = (md.text_of(op_el, "singlePackage") or "false").lower() == "true"
            rows, problems = [], []
            unretrievable = set(org.settings["unretrievable_metadata"])
            for mtype, members in requested.items():
                available = {
                    r["full_name"]: r
                    for r in self.metadata_rows([mtype])
                    if f"{mtype}:{r['full_name']}" not in unretrievable
                }
                for member in members:
                    if member == "*":
                        rows.extend(available.values())
                    elif member in available:
                        rows.append(available[member])
                    else:
                        problems.append(f"Entity of type '{mtype}' named '{member}' cannot be found")
            zip_bytes = md.build_zip(rows, requested, version, single, org.catalogue)
            async_id = make_id("09S", secrets.randbelow(62**9), pod="Dx")
            org.retrieves[async_id] = {"id": async_id, "rows": rows, "problems": problems, "zip": zip_bytes}
            return xml_response(md.retrieve_started_xml(async_id))
        if op == "checkRetrieveStatus":
            async_id = md.text_of(op_el, "asyncProcessId") or ""
            job = org.retrieves.get(async_id)
            if job is None:
                return xml_response(md.fault("INVALID_ID_FIELD", f"Invalid id: {async_id}"), 500)
            include = (md.text_of(op_el, "includeZip") or "true").lower() == "true"
            return xml_response(md.retrieve_result_xml(job, include, user_id, user_name))
        return xml_response(md.fault("UNKNOWN_EXCEPTION", f"sforg does not emulate the {op} call"), 500)

    def metadata_rows(self, types: list[str]) -> list[dict[str, Any]]:
        out = []
        for t in types:
            for r in self.org.store.conn().execute(
                "SELECT type, full_name, id, file_name, content, created_date, last_modified_date "
                "FROM metadata WHERE type=? ORDER BY full_name",
                (t,),
            ):
                out.append(
                    dict(
                        zip(
                            [
                                "type",
                                "full_name",
                                "id",
                                "file_name",
                                "content",
                                "created_date",
                                "last_modified_date",
                            ],
                            r,
                            strict=True,
                        )
                    )
                )
        return out

    # ------------------------------------------------------------ admin
    async def admin(self, request: web.Request, path: str) -> web.StreamResponse:
        token = self.bearer(request)
        if not token or not hmac.compare_digest(token, self.org.identity["admin_token"]):
            return json_response({"error": "admin token required"}, 401)
        name = path.removeprefix("/_sforg").strip("/")
        if name == "info":
            return json_response(self.org_json())
        if name == "add_file_version":
            body = await self.json_body(request)
            content = base64.b64decode(body.pop("content_b64"))
            return json_response(self.org.add_file_version(content, **body))
        if name not in ADMIN_METHODS:
            return json_response({"error": f"unknown admin call {name}"}, 404)
        kwargs = dict(request.query) if request.method == "GET" else await self.json_body(request)
        if name == "ground_truth" and request.method == "GET":
            kwargs = {
                "objects": kwargs["objects"].split(",") if kwargs.get("objects") else None,
                "values": kwargs.get("values", "1") != "0",
            }
        try:
            result = await asyncio.get_running_loop().run_in_executor(None, lambda: getattr(self.org, name)(**kwargs))
        except OrgError as exc:
            return json_response({"error": exc.code, "message": exc.message}, exc.status)
        except (TypeError, KeyError, ValueError) as exc:
            return json_response({"error": "BAD_REQUEST", "message": str(exc)}, 400)
        except Exception as exc:
            traceback.print_exc()
            return json_response({"error": "INTERNAL", "message": repr(exc)}, 500)
        if isinstance(result, int):
            result = {"result": result}
        return json_response(result)


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
