"""Bearer-token authentication and role checks for every gRPC service.

Tokens are HMAC-SHA256 signed (key from SFVAULT_AUTH_KEY, a Kubernetes Secret shared by the services), so
each service verifies them locally. Roles (`INCLUDES`): viewer (reads); operator (a viewer that runs and
cancels backups); restorer (a viewer that starts restores, previews, retries and metadata restores: it writes
to an org, so an operator cannot); admin (orgs, policies, tokens, the audit; includes operator and restorer);
service (the services' own calls: writes to storage; includes operator and restorer but not admin). A method
requires a role, or any of several written "operator|restorer". Missing or bad token -> UNAUTHENTICATED; a
role that does not include the required one -> PERMISSION_DENIED. Health and reflection stay open (they
reveal no data). Mutating calls are written to the audit log, with what the method notes (`note_for_audit`).

A token lives at most MAX_TOKEN_TTL_S (366 days); one that claims longer is refused. Revocation is a port
(`Revocations`, anything with `in`): the in-memory `RevokedTokens`, filled in every service by
`KvRevocationFeed` from the JetStream KV bucket discovery writes when a token is revoked, so a revoked
token is refused everywhere within a second or two. People's mutating calls also go to an `AuditSink`
(`StreamAudit`: the AUDIT stream, read back by discovery's ListAudit). `BusAccess.attach` wires both
into a service's interceptors.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import contextvars
import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Container, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import grpc

from services.platform import telemetry
from services.platform.handlers import CallDetails, rewrap


class _Ranks(dict[str, int]):
    """How much a role may do, for ordering (e.g. "more than a viewer"); a requirement "a|b" ranks as its
    lowest part. What a role may do is INCLUDES, not its rank: operator and restorer rank alike, apart."""

    def __missing__(self, requirement: str) -> int:
        parts = requirement.split("|")
        if len(parts) < 2 or any(p not in self for p in parts):
            raise KeyError(requirement)
        return min(self[p] for p in parts)


ROLES = _Ranks({"viewer": 1, "operator": 2, "restorer": 2, "admin": 3, "service": 4})  # the roles a token can carry
INCLUDES: dict[str, frozenset[str]] = {
    "viewer": frozenset({"viewer"}),
    "operator": frozenset({"operator", "viewer"}),
    "restorer": frozenset({"restorer", "viewer"}),
    "admin": frozenset({"admin", "operator", "restorer", "viewer"}),
    # a service's token (every service mints one from the key) reads, runs backups and restores and writes
    # backed-up data, but does not administer: orgs, policies, tokens and the audit are people's business
    "service": frozenset({"service", "operator", "restorer", "viewer"}),
}
PUBLIC_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
MAX_TOKEN_TTL_S = 366 * 86400.0  # no token, a service's own included, lives longer than this
CLOCK_SKEW_S = 300.0  # a token issued this far in the future is still accepted (clocks differ)
MAX_NAME = 200
audit = logging.getLogger("sfvault.audit")
log = logging.getLogger("sfvault.auth")


class AuthError(Exception):
    pass


@dataclass(frozen=True)
class Principal:
    name: str
    role: str
    token_id: str
    expires_at: float = float("inf")

    def allows(self, required: str) -> bool:
        """Whether this principal's role includes the required one (or any of "a|b")."""
        included = INCLUDES.get(self.role, frozenset())
        return any(part in included for part in required.split("|"))


ANONYMOUS = Principal("anonymous", "", "")
current_principal: contextvars.ContextVar[Principal] = contextvars.ContextVar("sfvault_principal", default=ANONYMOUS)
_audit_notes: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("sfvault_audit_notes", default=None)


def note_for_audit(detail: str) -> None:
    """Add to the audit entry of the call under way what it did (e.g. a restore's scope): names and counts only,
    never record values. Outside an audited call it goes nowhere."""
    notes = _audit_notes.get()
    if notes is not None:
        notes.append(detail)


def describe_requirement(required: str) -> str:
    return " or ".join(required.split("|"))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def check_ttl(ttl_s: float) -> None:
    """A token's lifetime: more than nothing, at most MAX_TOKEN_TTL_S."""
    if not ttl_s > 0 or ttl_s > MAX_TOKEN_TTL_S:
        raise ValueError(f"a token lives more than 0 and at most {MAX_TOKEN_TTL_S / 86400:.0f} days")


def mint(key: bytes, name: str, role: str, ttl_s: float = 90 * 86400.0, now: float | None = None) -> str:
    """A signed token `sfv1.<payload>.<signature>` for `name` with `role`, valid for ttl_s seconds."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    if not key:
        raise ValueError("the signing key is empty")
    if not name or len(name) > MAX_NAME:
        raise ValueError(f"a token's name is 1 to {MAX_NAME} characters")
    check_ttl(ttl_s)
    issued = time.time() if now is None else now
    payload = _b64(
        json.dumps(
            {"sub": name, "role": role, "iat": int(issued), "exp": int(issued + ttl_s), "jti": uuid.uuid4().hex[:16]},
            separators=(",", ":"),
        ).encode()
    )
    signature = _b64(hmac.new(key, f"sfv1.{payload}".encode(), hashlib.sha256).digest())
    return f"sfv1.{payload}.{signature}"


@dataclass(frozen=True)
class Claims:
    token_id: str
    name: str
    role: str
    issued_at: float
    expires_at: float


def claims_of(key: bytes, token: str) -> Claims:
    """The claims of a token signed with `key`, whatever its times (AuthError if forged or malformed)."""
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != "sfv1":
        raise AuthError("malformed token")
    expected = hmac.new(key, f"sfv1.{parts[1]}".encode(), hashlib.sha256).digest()
    try:
        signature = _unb64(parts[2])
        claims = json.loads(_unb64(parts[1]))
    except (ValueError, json.JSONDecodeError):
        raise AuthError("malformed token") from None
    if not hmac.compare_digest(expected, signature):
        raise AuthError("token signature is not valid")
    if not isinstance(claims, dict):
        raise AuthError("malformed token")
    iat, exp, jti = claims.get("iat"), claims.get("exp"), claims.get("jti")
    if not all(isinstance(t, int | float) and not isinstance(t, bool) for t in (iat, exp)):
        raise AuthError("token carries no valid issue and expiry times")
    if not isinstance(jti, str) or not jti:
        raise AuthError("token carries no id")
    if claims.get("role") not in ROLES:
        raise AuthError("token carries an unknown role")
    return Claims(jti, str(claims.get("sub", "")), claims["role"], float(iat), float(exp))  # type: ignore[arg-type]


def verify(key: bytes, token: str, revoked: Container[str] = frozenset(), now: float | None = None) -> Principal:
    claims = claims_of(key, token)
    at = time.time() if now is None else now
    if at >= claims.expires_at:
        raise AuthError("token expired")
    if claims.expires_at - claims.issued_at > MAX_TOKEN_TTL_S + 1:
        raise AuthError(f"token lifetime exceeds {MAX_TOKEN_TTL_S / 86400:.0f} days")
    if claims.issued_at > at + CLOCK_SKEW_S:
        raise AuthError("token issued in the future")
    if claims.token_id in revoked:
        raise AuthError("token revoked")
    return Principal(claims.name, claims.role, claims.token_id, claims.expires_at)


# ---- revocation -----------------------------------------------------------------------------------------


class Revocations(Protocol):
    """The token ids no longer accepted: anything that answers `token_id in revocations`."""

    def __contains__(self, token_id: object) -> bool: ...


class RevokedTokens:
    """The in-memory revocation set each service checks (filled by KvRevocationFeed, or by a test)."""

    def __init__(self, token_ids: Iterable[str] = ()) -> None:
        self._ids = set(token_ids)

    def __contains__(self, token_id: object) -> bool:
        return token_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, token_id: str) -> None:
        self._ids.add(token_id)


def revocation_bucket(namespace: str = "") -> str:
    return f"{namespace.upper()}REVOKED_TOKENS"


class KvRevocationFeed:
    """Revoked token ids in a JetStream KV bucket (key: the id; value: when and by whom). Discovery puts;
    every service follows the bucket into its RevokedTokens. An entry outlives any token it can name (the
    bucket's TTL is longer than MAX_TOKEN_TTL_S). The watch is made again every `resync_s`, so a watch
    that a NATS restart silently broke costs at most that long."""

    def __init__(self, js: Any, namespace: str = "", replicas: int = 1, resync_s: float = 30.0) -> None:
        self.js = js
        self.bucket_name = revocation_bucket(namespace)
        self.replicas = replicas
        self.resync_s = resync_s
        self._kv: Any = None

    async def bucket(self) -> Any:
        if self._kv is None:
            from nats.js.api import KeyValueConfig
            from nats.js.errors import BadRequestError

            config = KeyValueConfig(
                bucket=self.bucket_name, history=1, ttl=MAX_TOKEN_TTL_S + 86400.0, replicas=self.replicas
            )
            try:
                self._kv = await self.js.create_key_value(config)
            except BadRequestError:  # exists with another configuration (e.g. replicas): use it as it is
                self._kv = await self.js.key_value(self.bucket_name)
        return self._kv

    async def revoke(self, token_id: str, revoked_at: float, revoked_by: str) -> None:
        kv = await self.bucket()
        await kv.put(token_id, json.dumps({"revoked_at": revoked_at, "revoked_by": revoked_by}).encode())

    async def load(self, into: RevokedTokens, timeout_s: float = 30.0) -> Any:
        """Every revoked id into `into`; returns the watcher, which goes on delivering new ones. TimeoutError
        when the bucket's contents do not arrive within timeout_s."""
        kv = await self.bucket()
        watcher = await kv.watchall(ignore_deletes=True)
        try:
            async with asyncio.timeout(timeout_s):
                while (entry := await watcher.updates(timeout=timeout_s)) is not None:  # None: the end
                    into.add(entry.key)
        except BaseException:
            with contextlib.suppress(Exception):
                await watcher.stop()
            raise
        return watcher

    async def follow(self, into: RevokedTokens, stop: asyncio.Event) -> None:
        """Keep `into` up to date until `stop`: a new watch every resync_s, a retry after any failure."""
        from nats.errors import TimeoutError as NatsTimeout

        while not stop.is_set():
            watcher = None
            try:
                watcher = await self.load(into)
                deadline = time.monotonic() + self.resync_s
                while not stop.is_set() and time.monotonic() < deadline:
                    try:
                        entry = await watcher.updates(timeout=1)
                    except NatsTimeout:
                        continue
                    if entry is not None and entry.operation is None:
                        into.add(entry.key)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # NATS away: keep what is known, try again shortly
                log.warning("revocations: following %s failed (%s); retrying", self.bucket_name, type(exc).__name__)
                self._kv = None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
            finally:
                if watcher is not None:
                    with contextlib.suppress(Exception):
                        await watcher.stop()


# ---- the audit of changes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditEntry:
    at: float  # epoch seconds
    actor: str
    role: str
    token_id: str
    service: str
    method: str
    outcome: str  # OK, or the gRPC status name
    target: str = ""
    detail: str = ""  # what the call did, when its method says (a restore's scope): names and counts, never values


class AuditSink(Protocol):
    async def record(self, entry: AuditEntry) -> None: ...


class MemoryAudit:
    """An AuditSink for tests."""

    def __init__(self) -> None:
        self.entries: list[AuditEntry] = []

    async def record(self, entry: AuditEntry) -> None:
        self.entries.append(entry)


def audit_stream(namespace: str = "") -> str:
    return f"{namespace.upper()}AUDIT"


class StreamAudit:
    """The audit of changes in a JetStream stream (AUDIT, subjects sfvault.audit.<service>): appended by every
    service, read back in order by discovery's ListAudit. Kept 400 days."""

    MAX_AGE_S = 400 * 86400.0

    def __init__(self, js: Any, namespace: str = "", replicas: int = 1) -> None:
        self.js = js
        self.namespace = namespace
        self.stream = audit_stream(namespace)
        self.replicas = replicas

    def subject(self, service: str = "*") -> str:
        return f"{self.namespace}sfvault.audit.{service}"

    async def ensure(self) -> None:
        from nats.js.api import DiscardPolicy

        from services.platform.bus import ensure_stream, kept_stream

        config = kept_stream(self.stream, self.subject(">"), self.replicas, self.MAX_AGE_S, discard=DiscardPolicy.OLD)
        await ensure_stream(self.js, config)

    async def record(self, entry: AuditEntry) -> None:
        await self.js.publish(
            self.subject(entry.service or "unknown"), json.dumps(asdict(entry)).encode(), stream=self.stream
        )

    async def read(
        self, since: float | None = None, actor: str = "", limit: int = 500, after_seq: int = 0
    ) -> tuple[list[AuditEntry], int]:
        """Entries from `since` (or after stream sequence `after_seq`), oldest first; the last sequence read
        (0 when none)."""
        from nats.errors import TimeoutError as NatsTimeout
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
        from nats.js.errors import NotFoundError

        try:
            info = await self.js.stream_info(self.stream)
        except NotFoundError:
            return [], 0  # nothing audited yet
        if info.state.messages == 0 or after_seq >= info.state.last_seq:
            return [], 0
        config = ConsumerConfig(ack_policy=AckPolicy.NONE, inactive_threshold=30.0, max_ack_pending=-1)
        if after_seq:
            config.deliver_policy, config.opt_start_seq = DeliverPolicy.BY_START_SEQUENCE, after_seq + 1
        elif since is not None:
            config.deliver_policy = DeliverPolicy.BY_START_TIME
            config.opt_start_time = dt.datetime.fromtimestamp(since, dt.UTC)
        else:
            config.deliver_policy = DeliverPolicy.ALL
        sub = await self.js.pull_subscribe(self.subject(">"), stream=self.stream, config=config)
        entries: list[AuditEntry] = []
        last = 0
        try:
            while len(entries) < limit:
                try:
                    msgs = await sub.fetch(min(256, limit - len(entries)), timeout=1.0)
                except NatsTimeout:
                    break
                for msg in msgs:
                    last = msg.metadata.sequence.stream
                    try:
                        entry = AuditEntry(**json.loads(msg.data))
                    except (ValueError, TypeError):
                        continue
                    if not actor or entry.actor == actor:
                        entries.append(entry)
                if msgs and msgs[-1].metadata.num_pending == 0:
                    break
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        return entries, last


def _abort_handler(code: grpc.StatusCode, details: str, like: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(code, details)

    async def streaming(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(code, details)
        yield  # pragma: no cover - makes this an async generator

    return rewrap(like, lambda _: unary, lambda _: streaming)


def _target(request: Any) -> str:
    """The id a call is about: the first non-empty `*_id` text field, at the top or one message down."""
    fields = request.ListFields() if hasattr(request, "ListFields") else []
    for field, value in fields:
        if field.name.endswith("_id") and isinstance(value, str) and value:
            return value[:200]
    for _field, value in fields:
        if hasattr(value, "ListFields") and (found := _target(value)):
            return found
    return ""


def _outcome(context: Any, failed: bool) -> str:
    code = None
    with contextlib.suppress(Exception):
        code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    return "ERROR" if failed else "OK"


def _with_principal(
    handler: grpc.RpcMethodHandler,
    principal: Principal,
    method: str,
    mutating: bool,
    sink: AuditSink | None = None,
    service: str = "",
    revoked: Revocations = frozenset(),
) -> Any:
    short = method.rsplit("/", 1)[-1]

    def refusal() -> str | None:
        """Why the token no longer holds (a stream outlives its check at the door), or None."""
        if time.time() >= principal.expires_at:
            return "token expired"
        if principal.token_id in revoked:
            return "token revoked"
        return None

    async def record(request: Any, context: Any, failed: bool, notes: list[str]) -> None:
        outcome = _outcome(context, failed)
        detail = "; ".join(notes)[:2000]
        audit.info(
            "%s by %s (%s): %s%s",
            method,
            principal.name,
            principal.role,
            outcome.lower(),
            f" [{detail}]" if detail else "",
        )
        if sink is None or principal.role == "service":  # the services' own writes are the backup itself
            return
        entry = AuditEntry(
            time.time(),
            principal.name,
            principal.role,
            principal.token_id,
            service,
            short,
            outcome,
            _target(request),
            detail,
        )
        try:
            await asyncio.wait_for(sink.record(entry), 5)
        except Exception as exc:
            log.warning("audit entry of %s by %s not recorded: %s", short, principal.name, type(exc).__name__)

    def wrap_unary(fn: Callable[..., Any]) -> Callable[..., Any]:
        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            token = current_principal.set(principal)
            notes: list[str] = []
            noting = _audit_notes.set(notes)
            try:
                result = await fn(request, context)
                if mutating:
                    await record(request, context, False, notes)
                return result
            except BaseException:
                if mutating:
                    await record(request, context, True, notes)
                raise
            finally:
                _audit_notes.reset(noting)
                current_principal.reset(token)

        return call

    def wrap_stream(fn: Callable[..., Any]) -> Callable[..., Any]:
        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            token = current_principal.set(principal)
            try:
                async for item in fn(request, context):
                    if (reason := refusal()) is not None:
                        await context.abort(grpc.StatusCode.UNAUTHENTICATED, reason)
                    yield item
            finally:
                current_principal.reset(token)

        return call

    return rewrap(handler, wrap_unary, wrap_stream)


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Checks the bearer token of every call against the role its method requires.

    `required` maps a method's short name ("GetSession") or full path to a role; a method not listed
    requires `default_role`. Methods whose name starts with a verb in `mutating_verbs` are audited.
    """

    def __init__(
        self,
        key: bytes,
        required: Mapping[str, str],
        *,
        default_role: str = "admin",
        revoked: Revocations = frozenset(),
        mutating_verbs: tuple[str, ...] = (
            "Create",
            "Update",
            "Delete",
            "Start",
            "Cancel",
            "Put",
            "Mark",
            "Upload",
            "Begin",
            "Register",
            "Revoke",
            "Erase",
            "Set",
            "Release",
            "Pin",
            "Prune",
            "Record",
        ),
        audit_sink: AuditSink | None = None,
        service: str = "",
    ) -> None:
        if not key:
            raise ValueError("SFVAULT_AUTH_KEY is empty: refusing to serve without authentication")
        self.key = key
        self.required = dict(required)
        self.default_role = default_role
        self.revoked = revoked
        self.mutating_verbs = mutating_verbs
        self.audit_sink = audit_sink
        self.service = service

    def role_for(self, method: str) -> str:
        short = method.rsplit("/", 1)[-1]
        return self.required.get(method) or self.required.get(short) or self.default_role

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method
        handler = await continuation(handler_call_details)
        if handler is None or method.startswith(PUBLIC_PREFIXES):
            return handler
        metadata = dict(handler_call_details.invocation_metadata or ())
        header = metadata.get("authorization", "")
        if not isinstance(header, str) or not header.lower().startswith("bearer "):
            return _abort_handler(grpc.StatusCode.UNAUTHENTICATED, "a bearer token is required", handler)
        try:
            principal = verify(self.key, header[7:].strip(), self.revoked)
        except AuthError as exc:
            return _abort_handler(grpc.StatusCode.UNAUTHENTICATED, str(exc), handler)
        role = self.role_for(method)
        if not principal.allows(role):
            return _abort_handler(
                grpc.StatusCode.PERMISSION_DENIED,
                f"{method.rsplit('/', 1)[-1]} needs the {describe_requirement(role)} role",
                handler,
            )
        mutating = method.rsplit("/", 1)[-1].startswith(self.mutating_verbs)
        return _with_principal(handler, principal, method, mutating, self.audit_sink, self.service, self.revoked)


class BusAccess:
    """Wires a service's AuthInterceptors to the bus: the revocations of the KV bucket (loaded before the
    service serves, then followed) and the AUDIT stream. `close()` stops following."""

    def __init__(self, feed: KvRevocationFeed, revoked: RevokedTokens, audit: StreamAudit) -> None:
        self.feed = feed
        self.revoked = revoked
        self.audit = audit
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def attach(cls, interceptors: Iterable[Any], bus: Any, service: str) -> BusAccess:
        config = bus.config
        guards = [i for i in interceptors if isinstance(i, AuthInterceptor)]
        static = [t for g in guards if isinstance(g.revoked, frozenset | set) for t in g.revoked]
        access = cls(
            KvRevocationFeed(bus.js, config.namespace, config.events_replicas),
            RevokedTokens(static),
            StreamAudit(bus.js, config.namespace, config.events_replicas),
        )
        await access.audit.ensure()
        watcher = await access.feed.load(access.revoked)
        with contextlib.suppress(Exception):
            await watcher.stop()
        for guard in guards:
            guard.revoked = access.revoked
            guard.audit_sink = access.audit
            guard.service = service
        access._task = asyncio.create_task(access.feed.follow(access.revoked, access._stop))
        return access

    async def close(self) -> None:
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    """Call metadata carrying the token."""
    return (("authorization", f"Bearer {token}"),)


class _ClientAuth:
    def __init__(self, token: str) -> None:
        self.token = token

    async def _with_token(self, continuation: Any, details: grpc.aio.ClientCallDetails, request: Any) -> Any:
        """Any kind of call (its request, or request iterator), continued with the bearer token added."""
        metadata = list(details.metadata or ()) + list(bearer(self.token))
        with_token = grpc.aio.ClientCallDetails(
            details.method, details.timeout, grpc.aio.Metadata(*metadata), details.credentials, details.wait_for_ready
        )
        return await continuation(with_token, request)


# grpc.aio files each interceptor under the first kind it is an instance of, so one class per kind, each with
# the one method of its kind
class _UnaryUnaryAuth(_ClientAuth, grpc.aio.UnaryUnaryClientInterceptor):
    intercept_unary_unary = _ClientAuth._with_token


class _UnaryStreamAuth(_ClientAuth, grpc.aio.UnaryStreamClientInterceptor):
    intercept_unary_stream = _ClientAuth._with_token


class _StreamUnaryAuth(_ClientAuth, grpc.aio.StreamUnaryClientInterceptor):
    intercept_stream_unary = _ClientAuth._with_token


class _StreamStreamAuth(_ClientAuth, grpc.aio.StreamStreamClientInterceptor):
    intercept_stream_stream = _ClientAuth._with_token


def aio_channel(
    address: str, token: str, credentials: grpc.ChannelCredentials | None = None, **options: Any
) -> grpc.aio.Channel:
    """An asyncio channel that sends the token with every call, and a CLIENT span per call."""
    kinds = (_UnaryUnaryAuth, _UnaryStreamAuth, _StreamUnaryAuth, _StreamStreamAuth)
    interceptors: list[Any] = telemetry.aio_client_interceptors() + ([kind(token) for kind in kinds] if token else [])
    opts = list(options.get("options", ()))
    if credentials is not None:
        return grpc.aio.secure_channel(address, credentials, options=opts, interceptors=interceptors)
    return grpc.aio.insecure_channel(address, options=opts, interceptors=interceptors)


def channel(
    address: str, token: str, credentials: grpc.ChannelCredentials | None = None, **options: Any
) -> grpc.Channel:
    """A blocking channel that sends the token with every call (for threads and the CLI), with CLIENT spans."""
    opts = list(options.get("options", ()))
    base = telemetry.traced_channel(
        grpc.secure_channel(address, credentials, options=opts)
        if credentials is not None
        else grpc.insecure_channel(address, options=opts)
    )
    if not token:
        return base

    class _Sync(
        grpc.UnaryUnaryClientInterceptor,
        grpc.UnaryStreamClientInterceptor,
        grpc.StreamUnaryClientInterceptor,
        grpc.StreamStreamClientInterceptor,
    ):
        def _with_token(self, continuation: Any, details: Any, request: Any) -> Any:
            """Any kind of call (its request, or request iterator), continued with the bearer token added."""
            metadata = list(details.metadata or ()) + list(bearer(token))
            if hasattr(details, "_replace"):
                return continuation(details._replace(metadata=metadata), request)
            return continuation(CallDetails(details, metadata), request)

        intercept_unary_unary = intercept_unary_stream = _with_token
        intercept_stream_unary = intercept_stream_stream = _with_token

    return grpc.intercept_channel(base, _Sync())


def load_key(value: str) -> bytes:
    """SFVAULT_AUTH_KEY: the key itself, or "file:/path" of a mounted Secret."""
    if value.startswith("file:"):
        with open(value[5:], "rb") as f:
            return f.read().strip()
    return value.encode()


def read_key(ref: str, what: str = "the signing key", option: str = "--key-ref") -> bytes:
    """The signing key (or another secret: `what`) from "env:NAME" (its value as SFVAULT_AUTH_KEY takes it:
    the value, or file:/path) or "file:/path"; an AuthError naming what is missing, never the value."""
    kind, _, where = ref.partition(":")
    if kind == "env" and where:
        value = os.environ.get(where, "")
        if not value:
            raise AuthError(f"{what}: environment variable {where} is not set (or give {option} file:/path)")
        try:
            key = load_key(value)
        except OSError as exc:
            raise AuthError(f"{what}: cannot read the file {where} names: {exc.strerror}") from None
    elif kind == "file" and where:
        try:
            key = load_key(ref)
        except OSError as exc:
            raise AuthError(f"{what}: cannot read {where}: {exc.strerror}") from None
    else:
        raise AuthError(f"{what}: the reference {ref!r} must be env:NAME or file:/path")
    if not key:
        raise AuthError(f"{what} is empty")
    return key
