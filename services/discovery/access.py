"""Who may call sfvault and who did what: the token registry and the audit of changes (AccessService).

Tokens are minted with the signing key (`sfvault token create`) and registered here: discovery checks the
signature and keeps the claims (id, name, role, issued, expires), never the token. Revoking one marks it
here and puts its id into the KV bucket of revoked tokens every service follows (services.platform.auth), so
it is refused everywhere within a second or two. At start discovery puts every revoked, unexpired id again:
a bucket that lost an entry (a put that failed, a NATS that lost its storage) is repaired.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from sfvault.discovery.v1 import access_pb2 as api
from sfvault.discovery.v1 import access_pb2_grpc

from services.platform import auth, timestamps
from services.platform.auth import AuthError, Claims, KvRevocationFeed, StreamAudit, claims_of, current_principal
from services.platform.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable, grpc_errors

MAX_TOKEN_TEXT = 4096
MAX_PAGE = 5000
DEFAULT_PAGE = 500


@dataclass(frozen=True)
class TokenRecord:
    token_id: str
    name: str
    role: str
    issued_at: dt.datetime
    expires_at: dt.datetime
    registered_by: str = ""
    revoked_at: dt.datetime | None = None
    revoked_by: str = ""


def _utc(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.UTC)


class TokenStore:
    """The `tokens` table of discovery's schema (migration 4 in store.py)."""

    def __init__(self, pool: AsyncConnectionPool, schema: str = "discovery") -> None:
        self.pool = pool
        self.schema = schema

    async def _fetch(self, text: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        from psycopg import sql

        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(self.schema)))
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(text.encode(), params)
            return await cur.fetchall() if cur.description else []

    async def register(self, claims: Claims, by: str) -> TokenRecord:
        """Idempotent: registering a token again returns the first registration."""
        await self._fetch(
            "INSERT INTO tokens (token_id, name, role, issued_at, expires_at, registered_by)"
            " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (token_id) DO NOTHING",
            (claims.token_id, claims.name, claims.role, _utc(claims.issued_at), _utc(claims.expires_at), by),
        )
        found = await self.get(claims.token_id)
        assert found is not None
        return found

    async def get(self, token_id: str) -> TokenRecord | None:
        rows = await self._fetch("SELECT * FROM tokens WHERE token_id = %s", (token_id,))
        return _record(rows[0]) if rows else None

    async def list_tokens(self, include_expired: bool, now: dt.datetime) -> list[TokenRecord]:
        if include_expired:
            rows = await self._fetch("SELECT * FROM tokens ORDER BY issued_at, token_id")
        else:
            rows = await self._fetch("SELECT * FROM tokens WHERE expires_at > %s ORDER BY issued_at, token_id", (now,))
        return [_record(r) for r in rows]

    async def revoke(self, token_id: str, by: str, now: dt.datetime) -> TokenRecord | None:
        """Marks it revoked (the first revocation's time and author stay)."""
        await self._fetch(
            "UPDATE tokens SET revoked_at = %s, revoked_by = %s WHERE token_id = %s AND revoked_at IS NULL",
            (now, by, token_id),
        )
        return await self.get(token_id)

    async def revoked_unexpired(self, now: dt.datetime) -> list[TokenRecord]:
        rows = await self._fetch(
            "SELECT * FROM tokens WHERE revoked_at IS NOT NULL AND expires_at > %s ORDER BY token_id", (now,)
        )
        return [_record(r) for r in rows]


def _record(row: Mapping[str, Any]) -> TokenRecord:
    return TokenRecord(
        row["token_id"],
        row["name"],
        row["role"],
        row["issued_at"],
        row["expires_at"],
        row["registered_by"],
        row["revoked_at"],
        row["revoked_by"],
    )


def _token_pb(record: TokenRecord) -> api.TokenInfo:
    return api.TokenInfo(
        token_id=record.token_id,
        name=record.name,
        role=record.role,
        issued_at=timestamps.to_pb(record.issued_at),
        expires_at=timestamps.to_pb(record.expires_at),
        revoked_at=timestamps.to_pb(record.revoked_at),
        revoked_by=record.revoked_by,
        registered_by=record.registered_by,
    )


def _check_token_id(token_id: str) -> str:
    if not token_id:
        raise InvalidArgument("token_id is required")
    if len(token_id) > 64 or not token_id.isascii() or not token_id.isalnum():
        raise InvalidArgument("token_id is the id `sfvault token list` shows (letters and digits, at most 64)")
    return token_id


async def republish_revocations(store: TokenStore, feed: KvRevocationFeed) -> int:
    """Every revoked, unexpired token id into the KV bucket again; returns how many."""
    records = await store.revoked_unexpired(dt.datetime.now(dt.UTC))
    for r in records:
        assert r.revoked_at is not None
        await feed.revoke(r.token_id, r.revoked_at.timestamp(), r.revoked_by)
    return len(records)


class AccessApi(access_pb2_grpc.AccessServiceServicer):
    """Every RPC needs the admin role (the AuthInterceptor's default)."""

    def __init__(self, key: bytes, store: TokenStore, feed: KvRevocationFeed, audit: StreamAudit) -> None:
        self.key = key
        self.store = store
        self.feed = feed
        self.audit = audit

    @grpc_errors
    async def RegisterToken(self, request: api.RegisterTokenRequest, context: grpc.aio.ServicerContext) -> Any:
        if not self.key:
            raise FailedPrecondition("authentication is disabled on this installation: there are no tokens")
        if not request.token or len(request.token) > MAX_TOKEN_TEXT:
            raise InvalidArgument(f"token is required (at most {MAX_TOKEN_TEXT} characters)")
        try:
            claims = claims_of(self.key, request.token)
        except AuthError as exc:
            raise InvalidArgument(f"not a token of this installation: {exc}") from None
        if claims.expires_at <= time.time():
            raise InvalidArgument("the token has expired")
        if claims.expires_at - claims.issued_at > auth.MAX_TOKEN_TTL_S + 1:
            raise InvalidArgument(f"the token lives longer than {auth.MAX_TOKEN_TTL_S / 86400:.0f} days")
        return _token_pb(await self.store.register(claims, current_principal.get().name))

    @grpc_errors
    async def ListTokens(self, request: api.ListTokensRequest, context: grpc.aio.ServicerContext) -> Any:
        records = await self.store.list_tokens(request.include_expired, dt.datetime.now(dt.UTC))
        return api.ListTokensResponse(tokens=[_token_pb(r) for r in records])

    @grpc_errors
    async def RevokeToken(self, request: api.RevokeTokenRequest, context: grpc.aio.ServicerContext) -> Any:
        token_id = _check_token_id(request.token_id)
        record = await self.store.revoke(token_id, current_principal.get().name, dt.datetime.now(dt.UTC))
        if record is None:
            raise NotFound(f"no registered token {token_id!r} (`sfvault token list --all` shows them)")
        assert record.revoked_at is not None
        try:
            await self.feed.revoke(token_id, record.revoked_at.timestamp(), record.revoked_by)
        except Exception as exc:  # recorded, not yet announced: a retry (or discovery's next start) announces it
            raise Unavailable(
                f"token {token_id} is marked revoked but not yet announced ({type(exc).__name__}); retry"
            ) from None
        return _token_pb(record)

    @grpc_errors
    async def ListAudit(self, request: api.ListAuditRequest, context: grpc.aio.ServicerContext) -> Any:
        size = request.page_size or DEFAULT_PAGE
        if not 0 < size <= MAX_PAGE:
            raise InvalidArgument(f"page_size is 1 to {MAX_PAGE}")
        after = 0
        if request.page_token:
            # ASCII digits only ("²" is a digit to isdigit, not to int) and within bigint
            if not (request.page_token.isascii() and request.page_token.isdigit()) or len(request.page_token) > 18:
                raise InvalidArgument("page_token is not one this service gave")
            after = int(request.page_token)
        if len(request.actor) > auth.MAX_NAME:
            raise InvalidArgument(f"actor is at most {auth.MAX_NAME} characters")
        since = None
        if request.HasField("since"):
            if not 0 <= request.since.seconds < 253402300800:
                raise InvalidArgument("since is out of range")
            since = request.since.seconds + request.since.nanos / 1e9
        try:
            entries, last = await self.audit.read(since, request.actor, size, after)
        except Exception as exc:
            raise Unavailable(f"the audit stream cannot be read now ({type(exc).__name__})") from None
        return api.ListAuditResponse(
            entries=[
                api.AuditEntry(
                    at=timestamps.to_pb(e.at),
                    actor=e.actor,
                    role=e.role,
                    token_id=e.token_id,
                    service=e.service,
                    method=e.method,
                    outcome=e.outcome,
                    target=e.target,
                )
                for e in entries
            ],
            next_page_token=str(last) if len(entries) >= size and last else "",
        )


def service_entry(api_: AccessApi) -> tuple[Any, AccessApi, str]:
    """What start_grpc_server takes to serve AccessService beside DiscoveryService."""
    return (
        access_pb2_grpc.add_AccessServiceServicer_to_server,
        api_,
        api.DESCRIPTOR.services_by_name["AccessService"].full_name,
    )
