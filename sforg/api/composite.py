"""REST Composite (`/composite`): subrequests with references, allOrNone."""

from __future__ import annotations

from aiohttp import web

from sforg.api.http import Api, error


class CompositeApi(Api):
    async def composite(self, request: web.Request, version: str) -> web.StreamResponse:
        return error(404, "NOT_FOUND", "The requested resource does not exist")
