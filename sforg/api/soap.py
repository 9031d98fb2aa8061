"""SOAP Partner API calls other than login (`/services/Soap/u/{v}`): undelete and emptyRecycleBin."""

from __future__ import annotations

from aiohttp import web

from sforg.api.http import Api, xml_response


class SoapApi(Api):
    async def handle(self, request: web.Request, path: str) -> web.Response:
        return xml_response("", 500)
