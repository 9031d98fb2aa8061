"""What every API of the emulator shares: Salesforce's JSON and XML responses and error shapes, the API
versions served, the bearer token and the request body."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from aiohttp import web

from sforg.org import Org, OrgError

if TYPE_CHECKING:
    from sforg.server import Server

JSON_TYPE = "application/json;charset=UTF-8"
MIN_VERSION, MAX_VERSION = 40.0, 62.0
VERSION_RE = re.compile(r"^/services/data/v(\d+\.\d)(?:/(.*))?$")
HANG_SECONDS = 600.0


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


class Api:
    """One API of the server: the org it serves, and the server (whose URL is known once it listens)."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.org: Org = server.org

    @property
    def base_url(self) -> str:
        return self.server.base_url

    @staticmethod
    def bearer(request: web.Request) -> str | None:
        auth = request.headers.get("Authorization", "")
        if auth.lower().startswith(("bearer ", "oauth ")):
            return auth.split(" ", 1)[1].strip()
        return None

    async def json_body(self, request: web.Request) -> Any:
        # Parsed whatever the Content-Type: simple-salesforce sends text/xml after an mdapi call.
        raw = await request.read()
        try:
            return json.loads(raw or b"{}")
        except ValueError as exc:
            raise OrgError(400, "JSON_PARSER_ERROR", f"Unexpected character: {exc}") from exc
