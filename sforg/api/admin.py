"""The /_sforg admin API: every Org admin method by name, behind the admin token."""

from __future__ import annotations

import asyncio
import base64
import hmac
import traceback

from aiohttp import web

from sforg.api.http import Api, json_response
from sforg.org import OrgError

ADMIN_METHODS = {
    "in_flight_requests",
    "update_records",
    "create_records",
    "soft_delete",
    "hard_delete",
    "undelete",
    "merge_records",
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
    "validation_rules",
    "set_validation_rule",
}


class AdminApi(Api):
    async def handle(self, request: web.Request, path: str) -> web.StreamResponse:
        token = self.bearer(request)
        if not token or not hmac.compare_digest(token, self.org.identity["admin_token"]):
            return json_response({"error": "admin token required"}, 401)
        name = path.removeprefix("/_sforg").strip("/")
        if name == "info":
            return json_response(self.server.org_json())
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
