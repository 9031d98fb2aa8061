"""A raw REST client for sforg's write tests: requests with the org's bearer token, answers as JSON."""

from __future__ import annotations

from typing import Any

import requests


class Rest:
    """Plain requests against an org's REST API (v62.0), with a token from the client-credentials flow."""

    def __init__(self, info: dict[str, Any], version: str = "62.0") -> None:
        self.base = info["instance_url"].rstrip("/")
        self.data = f"{self.base}/services/data/v{version}"
        self.version = version
        self.http = requests.Session()
        tok = self.http.post(
            f"{self.base}/services/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_id": info["client_id"],
                "client_secret": info["client_secret"],
            },
        )
        tok.raise_for_status()
        self.token = tok.json()["access_token"]
        self.http.headers["Authorization"] = f"Bearer {self.token}"

    def call(self, method: str, path: str, body: Any = None, **kw: Any) -> requests.Response:
        url = path if path.startswith("https://") else (self.data + path if path.startswith("/") else path)
        return self.http.request(method, url, json=body, **kw)

    def ok(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        resp = self.call(method, path, body, **kw)
        assert resp.status_code < 300, (resp.status_code, resp.text)
        return resp.json() if resp.content else None

    def fails(self, method: str, path: str, body: Any, status: int = 400) -> dict[str, Any]:
        """A single-record call that must fail: its one error {message, errorCode, fields}."""
        resp = self.call(method, path, body)
        assert resp.status_code == status, (resp.status_code, resp.text)
        errors = resp.json()
        assert isinstance(errors, list) and len(errors) == 1
        return dict(errors[0])

    def query(self, soql: str, all_rows: bool = False) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        page = self.ok("GET", "/queryAll" if all_rows else "/query", params={"q": soql})
        out += page["records"]
        while page.get("nextRecordsUrl"):
            page = self.ok("GET", self.base + page["nextRecordsUrl"])
            out += page["records"]
        return out
