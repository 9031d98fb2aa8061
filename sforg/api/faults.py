"""Injected faults as Salesforce words them: error responses, and a response that stalls mid-body (the
dispatcher's, not an API of their own)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from sforg import metadata as md
from sforg.api.http import HANG_SECONDS, error, xml_response
from sforg.org import Org

# Refusals a fault can inject (as Salesforce words them): a feature the org does not have.
REFUSALS = {
    "FEATURENOTENABLED": (400, "Bulk API 2.0 is not enabled for this organization."),
    "API_DISABLED_FOR_ORG": (403, "API is not enabled for this Organization or Partner"),
    "ENTITY_IS_DELETED": (404, "entity is deleted"),
}


def fault_error(code: str, kind: str) -> web.Response:
    """The error an injected fault answers with, as the API of that kind words it."""
    if kind == "Metadata":
        # every SOAP fault comes at HTTP 500, whatever it means
        fault = {"500": "UNKNOWN_EXCEPTION", "QUERY_TIMEOUT": "SERVER_UNAVAILABLE"}.get(code, code)
        return xml_response(md.fault(fault, "injected fault"), 500)
    if kind == "SOAP":  # Partner API faults, at HTTP 500 like every SOAP fault
        from sforg.api.soap import fault as soap_fault

        return soap_fault(
            {"500": "UNKNOWN_EXCEPTION", "QUERY_TIMEOUT": "SERVER_UNAVAILABLE"}.get(code, code), "injected fault"
        )
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


async def stall(org: Org, request: web.Request, resp: web.Response, after: int) -> web.StreamResponse:
    """Send the headers and the first bytes of a body, then stop sending (a stalled transfer)."""
    body = resp.body if isinstance(resp.body, bytes) else b""
    out = web.StreamResponse(status=resp.status, headers=resp.headers)
    out.content_length = len(body)
    await out.prepare(request)
    await out.write(body[:after])
    org.add_bytes("stall", min(after, len(body)))
    await asyncio.sleep(HANG_SECONDS)
    return out
