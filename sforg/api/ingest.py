"""Bulk API 2.0 ingest jobs: create, upload CSV, close, poll, results, abort, delete, list."""

from __future__ import annotations

from aiohttp import web

from sforg.api.http import Api, error


class IngestApi(Api):
    async def jobs(self, request: web.Request, version: str, parts: list[str]) -> web.StreamResponse:
        return error(404, "NOT_FOUND", "The requested resource does not exist")
