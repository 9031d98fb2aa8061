"""Bearer-token authentication and role checks for every gRPC service.

Tokens are HMAC-SHA256 signed (key from SFVAULT_AUTH_KEY, a Kubernetes Secret shared by the services), so
each service verifies them locally. Roles, each including the ones before it: viewer (reads), operator
(runs and cancels backups), admin (orgs, policies, tokens), service (the services' own calls: writes to
storage). Missing or bad token -> UNAUTHENTICATED; a role too low -> PERMISSION_DENIED. Health and
reflection stay open (they reveal no data). Mutating calls are written to the audit log.
"""

from __future__ import annotations

import base64
import contextvars
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc

from services.common import telemetry
from services.common.handlers import CallDetails, rewrap

ROLES = {"viewer": 1, "operator": 2, "admin": 3, "service": 4}
PUBLIC_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
audit = logging.getLogger("sfvault.audit")


class AuthError(Exception):
    pass


@dataclass(frozen=True)
class Principal:
    name: str
    role: str
    token_id: str

    def allows(self, role: str) -> bool:
        return ROLES.get(self.role, 0) >= ROLES[role]


ANONYMOUS = Principal("anonymous", "", "")
current_principal: contextvars.ContextVar[Principal] = contextvars.ContextVar("sfvault_principal", default=ANONYMOUS)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def mint(key: bytes, name: str, role: str, ttl_s: float = 90 * 86400.0, now: float | None = None) -> str:
    """A signed token `sfv1.<payload>.<signature>` for `name` with `role`, valid for ttl_s seconds."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    if not key:
        raise ValueError("the signing key is empty")
    issued = time.time() if now is None else now
    payload = _b64(
        json.dumps(
            {"sub": name, "role": role, "iat": int(issued), "exp": int(issued + ttl_s), "jti": uuid.uuid4().hex[:16]},
            separators=(",", ":"),
        ).encode()
    )
    signature = _b64(hmac.new(key, f"sfv1.{payload}".encode(), hashlib.sha256).digest())
    return f"sfv1.{payload}.{signature}"


def verify(key: bytes, token: str, revoked: frozenset[str] = frozenset(), now: float | None = None) -> Principal:
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
    if (time.time() if now is None else now) >= claims.get("exp", 0):
        raise AuthError("token expired")
    if claims.get("jti") in revoked:
        raise AuthError("token revoked")
    if claims.get("role") not in ROLES:
        raise AuthError("token carries an unknown role")
    return Principal(str(claims.get("sub", "")), claims["role"], str(claims.get("jti", "")))


def _abort_handler(code: grpc.StatusCode, details: str, like: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(code, details)

    async def streaming(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(code, details)
        yield  # pragma: no cover - makes this an async generator

    return rewrap(like, lambda _: unary, lambda _: streaming)


def _with_principal(handler: grpc.RpcMethodHandler, principal: Principal, method: str, mutating: bool) -> Any:
    def wrap_unary(fn: Callable[..., Any]) -> Callable[..., Any]:
        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            token = current_principal.set(principal)
            try:
                result = await fn(request, context)
                if mutating:
                    audit.info("%s by %s (%s): ok", method, principal.name, principal.role)
                return result
            except BaseException:
                if mutating:
                    audit.info("%s by %s (%s): refused or failed", method, principal.name, principal.role)
                raise
            finally:
                current_principal.reset(token)

        return call

    def wrap_stream(fn: Callable[..., Any]) -> Callable[..., Any]:
        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            token = current_principal.set(principal)
            try:
                async for item in fn(request, context):
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
        revoked: frozenset[str] = frozenset(),
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
        ),
    ) -> None:
        if not key:
            raise ValueError("SFVAULT_AUTH_KEY is empty: refusing to serve without authentication")
        self.key = key
        self.required = dict(required)
        self.default_role = default_role
        self.revoked = revoked
        self.mutating_verbs = mutating_verbs

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
                grpc.StatusCode.PERMISSION_DENIED, f"{method.rsplit('/', 1)[-1]} needs the {role} role", handler
            )
        mutating = method.rsplit("/", 1)[-1].startswith(self.mutating_verbs)
        return _with_principal(handler, principal, method, mutating)


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    """Call metadata carrying the token."""
    return (("authorization", f"Bearer {token}"),)


class _ClientAuth:
    def __init__(self, token: str) -> None:
        self.token = token

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = list(details.metadata or ()) + list(bearer(self.token))
        return grpc.aio.ClientCallDetails(
            details.method, details.timeout, grpc.aio.Metadata(*metadata), details.credentials, details.wait_for_ready
        )


# grpc.aio files each interceptor under the first kind it is an instance of, so one class per kind
class _UnaryUnaryAuth(_ClientAuth, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


class _UnaryStreamAuth(_ClientAuth, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


class _StreamUnaryAuth(_ClientAuth, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation: Any, details: Any, request_iterator: Any) -> Any:
        return await continuation(self._details(details), request_iterator)


class _StreamStreamAuth(_ClientAuth, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation: Any, details: Any, request_iterator: Any) -> Any:
        return await continuation(self._details(details), request_iterator)


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
    base = grpc.intercept_channel(
        grpc.secure_channel(address, credentials, options=opts)
        if credentials is not None
        else grpc.insecure_channel(address, options=opts),
        telemetry.ClientInterceptor(),
    )
    if not token:
        return base

    class _Sync(
        grpc.UnaryUnaryClientInterceptor,
        grpc.UnaryStreamClientInterceptor,
        grpc.StreamUnaryClientInterceptor,
        grpc.StreamStreamClientInterceptor,
    ):
        def _details(self, details: Any) -> Any:
            metadata = list(details.metadata or ()) + list(bearer(token))
            if hasattr(details, "_replace"):
                return details._replace(metadata=metadata)
            return CallDetails(details, metadata)

        def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
            return continuation(self._details(details), request)

        def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
            return continuation(self._details(details), request)

        def intercept_stream_unary(self, continuation: Any, details: Any, request_iterator: Any) -> Any:
            return continuation(self._details(details), request_iterator)

        def intercept_stream_stream(self, continuation: Any, details: Any, request_iterator: Any) -> Any:
            return continuation(self._details(details), request_iterator)

    return grpc.intercept_channel(base, _Sync())


def load_key(value: str) -> bytes:
    """SFVAULT_AUTH_KEY: the key itself, or "file:/path" of a mounted Secret."""
    if value.startswith("file:"):
        with open(value[5:], "rb") as f:
            return f.read().strip()
    return value.encode()
