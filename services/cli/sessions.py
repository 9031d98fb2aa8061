"""Sessions in the CLI: a session id given by a unique prefix (as git takes a hash), and `session list`'s filters.

`resolve` is the one place a session id the user typed becomes a session id: the whole id, or a prefix that
only one session's id starts with (none: a not-found error; several: an error listing them).
ListSessions filters by policy, status, kind and time itself; it has no org filter, so `--org` is applied here
(the pages are read until `--limit` sessions of the org are found).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc
from sfvault.session.v1 import session_pb2 as api

from services.cli.errors import CodedError

PAGE = 500  # ListSessions' largest page
SHOWN_CANDIDATES = 10


def pages(c: Any, request: api.ListSessionsRequest) -> Iterator[api.Session]:
    """Every session ListSessions answers to `request`, page after page (newest first)."""
    while True:
        page = c.session.ListSessions(request)
        yield from page.sessions
        if not page.next_page_token:
            return
        request.page_token = page.next_page_token


def resolve(c: Any, text: str) -> str:
    """The session id `text` names: itself when a session has that id, else the one session whose id starts
    with it."""
    prefix = text.strip().lower()
    if not prefix:
        raise CodedError("a session id (or the start of one) is required", "invalid_argument")
    try:
        return str(c.session.GetSession(api.GetSessionRequest(session_id=prefix)).session_id)
    except grpc.RpcError as exc:
        if exc.code() not in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):  # type: ignore[attr-defined]
            raise
    found = [s.session_id for s in pages(c, api.ListSessionsRequest(page_size=PAGE)) if s.session_id.startswith(prefix)]
    if not found:
        raise CodedError(f"no session id starts with {text.strip()!r} (see `sfvault session list`)", "not_found")
    if len(found) > 1:
        shown = ", ".join(found[:SHOWN_CANDIDATES]) + (", ..." if len(found) > SHOWN_CANDIDATES else "")
        raise CodedError(
            f"session id {text.strip()!r} is ambiguous: {len(found)} sessions start with it ({shown}); "
            "give more characters",
            "invalid_argument",
        )
    return found[0]


def listed(
    c: Any, request: api.ListSessionsRequest, limit: int, keep: Callable[[api.Session], bool]
) -> list[api.Session]:
    """Up to `limit` sessions ListSessions answers to `request` that `keep` keeps, newest first."""
    request.page_size = min(PAGE, max(limit, 1))
    chosen: list[api.Session] = []
    for s in pages(c, request):
        if keep(s):
            chosen.append(s)
            if len(chosen) >= limit:
                break
    return chosen


def of_org(org: str) -> Callable[[api.Session], bool]:
    """Sessions of sfvault's org `org` (a restore also when it writes into that org); every one without `org`."""
    return lambda s: not org or org in (s.org_id, s.restore.target_org_id)
