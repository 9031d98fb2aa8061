"""SOAP Partner API calls other than login (`/services/Soap/u/{v}`): `undelete` and `emptyRecycleBin`.

Dispatched on the Body's first child, `ids` matched by local name (jsforce puts them in another namespace), the
session from the `SessionHeader` (or a Bearer header). Results per Id in request order (`errors*, id, success`),
at most 200 Ids a call (more: an `EXCEEDED_ID_LIMIT` fault)."""

from __future__ import annotations

from xml.etree import ElementTree as ET
from xml.sax.saxutils import escape

from aiohttp import web

from sforg import metadata as md
from sforg.api.http import Api, xml_response
from sforg.ids import is_valid, to18
from sforg.org import OrgError

SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
MAX_IDS = 200


def fault(code: str, message: str) -> web.Response:
    return xml_response(
        f'<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="{SOAP_NS}" '
        'xmlns:sf="urn:fault.partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        f"<soapenv:Body><soapenv:Fault><faultcode>sf:{code}</faultcode>"
        f"<faultstring>{escape(code)}: {escape(message)}</faultstring><detail>"
        f'<sf:UnexpectedErrorFault xsi:type="sf:UnexpectedErrorFault"><sf:exceptionCode>{code}</sf:exceptionCode>'
        f"<sf:exceptionMessage>{escape(message)}</sf:exceptionMessage></sf:UnexpectedErrorFault></detail>"
        "</soapenv:Fault></soapenv:Body></soapenv:Envelope>",
        500,
    )


def result_xml(rid: str | None, error: OrgError | None) -> str:
    ident = f"<id>{escape(rid)}</id>" if rid else '<id xsi:nil="true"/>'
    if error is None:
        return f"<result>{ident}<success>true</success></result>"
    return (
        f"<result><errors><message>{escape(error.message)}</message><statusCode>{error.code}</statusCode>"
        f"</errors>{ident}<success>false</success></result>"
    )


class SoapApi(Api):
    async def handle(self, request: web.Request, path: str) -> web.Response:
        try:
            raw = await request.read()
            op, op_el, session = md.parse_request(raw)
            root_el: ET.Element | None = ET.fromstring(raw).find(f"{{{SOAP_NS}}}Header")
        except Exception:
            return fault("INVALID_XML", "could not parse the request")
        if not self.org.check_token(session or self.bearer(request)):
            return fault("INVALID_SESSION_ID", "Invalid Session ID found in SessionHeader: Illegal Session")
        if op not in ("undelete", "emptyRecycleBin") or op_el is None:
            return fault("UNSUPPORTED_API_VERSION" if not op else "INVALID_OPERATION", f"sforg does not serve {op}")
        ids = [(el.text or "").strip() for el in op_el.iter() if md.local(el.tag) == "ids"]
        if len(ids) > MAX_IDS:
            return fault(
                "EXCEEDED_ID_LIMIT", f"record limit reached. cannot submit more than {MAX_IDS} records into this call"
            )
        if not ids:
            return fault("INVALID_ID_FIELD", "ids: at least one Id is required")
        org = self.org
        results: dict[int, tuple[str | None, OrgError | None]] = {}
        keys = [to18(r) if is_valid(r) else r for r in ids]
        roots = {i: org._cascade_root(keys[i]) if is_valid(ids[i]) else None for i in range(len(ids))}
        # Roots first: a cascade child named in the same call as its parent comes back (or goes) with it.
        done: set[str] = set()
        all_or_none = (md.text_of(root_el, "allOrNone") or "false").lower() == "true" if root_el is not None else False
        try:
            with org.store.transaction():
                for i in sorted(range(len(ids)), key=lambda i: roots[i] is not None):
                    key = keys[i]
                    try:
                        if key not in done and not (roots[i] is not None and roots[i] in done):
                            (org.undelete_one if op == "undelete" else org.purge_one)(ids[i])
                        done.add(key)
                        results[i] = (key, None)
                    except OrgError as exc:
                        results[i] = (key if is_valid(ids[i]) else None, exc)
                if all_or_none and any(err is not None for _, err in results.values()):
                    raise _RolledBack
        except _RolledBack:
            rolled = OrgError(
                400,
                "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                "Record rolled back because not all records were valid and the request was using AllOrNone header",
            )
            results = {i: (rid, err or rolled) for i, (rid, err) in results.items()}
        body = "".join(result_xml(*results[i]) for i in range(len(ids)))
        return xml_response(
            f'<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="{SOAP_NS}" '
            'xmlns="urn:partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
            f"<soapenv:Body><{op}Response>{body}</{op}Response></soapenv:Body></soapenv:Envelope>"
        )


class _RolledBack(Exception):
    """Undo an AllOrNoneHeader call with a failure."""
