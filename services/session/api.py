"""The SessionService gRPC servicer: protobuf <-> application calls, nothing more."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import AsyncIterator

import grpc
from sfvault.events.v1 import events_pb2 as pb
from sfvault.session.v1 import session_pb2 as api
from sfvault.session.v1 import session_pb2_grpc

from services.platform import events, timestamps
from services.platform.auth import current_principal, note_for_audit
from services.platform.errors import InvalidArgument, RequestError, grpc_errors
from services.session import restore_request, translate
from services.session.application import SessionService
from services.session.domain import RESTORE_KINDS, Kind, SessionQuery
from services.session.domain_alerts import KINDS

MAX_PAGE = 500


class PermissionDenied(RequestError):
    code = grpc.StatusCode.PERMISSION_DENIED


def _page_size(asked: int) -> int:
    """A list's page: 50 unless asked, at most MAX_PAGE."""
    if asked < 0:
        raise InvalidArgument("page_size must not be negative")
    return min(asked or 50, MAX_PAGE)


def _encode_token(token: tuple[dt.datetime, str] | None) -> str:
    if token is None:
        return ""
    return base64.urlsafe_b64encode(f"{token[0].isoformat()}|{token[1]}".encode()).decode()


def _decode_token(token: str) -> tuple[dt.datetime, str] | None:
    if not token:
        return None
    try:
        when, sid = base64.urlsafe_b64decode(token.encode()).decode().split("|", 1)
        # the session id goes to SQL: one of the shape this service issues (a NUL made psycopg fail: UNKNOWN)
        return dt.datetime.fromisoformat(when), events.check_token("page_token", sid)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument("page_token is not a token this service issued") from exc


class SessionApi(session_pb2_grpc.SessionServiceServicer):
    def __init__(self, app: SessionService, caller: str = "anonymous") -> None:
        self.app = app
        self.caller = caller

    @grpc_errors
    async def StartSession(self, request: api.StartSessionRequest, context: grpc.aio.ServicerContext) -> api.Session:
        stall = request.stall_timeout.ToTimedelta() if request.HasField("stall_timeout") else None
        if stall is not None and stall < dt.timedelta(0):
            raise InvalidArgument("stall_timeout must not be negative")
        kind = translate.KIND_FROM_PB.get(request.kind)
        if kind is None:
            raise InvalidArgument(f"unknown kind {request.kind}")
        # the door lets operators and restorers in; which of them may start this kind is decided here
        principal = current_principal.get()
        needed = restore_request.role_for(kind)
        if principal.role and not principal.allows(needed):
            raise PermissionDenied(f"starting a {kind.value} session needs the {needed} role")
        if kind in RESTORE_KINDS:
            note_for_audit(restore_request.audit_scope(kind, request.org_id, request.restore))
        elif kind == Kind.PRUNE:
            note_for_audit(f"prune of org {request.org_id[:40]}" + (" (dry run)" if request.dry_run else ""))
        session = await self.app.start(
            policy_id=request.policy_id,
            org_id=request.org_id,
            stall_timeout=stall or None,
            trigger=request.trigger,
            requested_by=_caller(context, self.caller),
            session_id=request.session_id,
            kind=kind,
            restore=request.restore if request.HasField("restore") else None,
            dry_run=request.dry_run,
        )
        return translate.session_to_pb(session)

    @grpc_errors
    async def GetSession(self, request: api.GetSessionRequest, context: grpc.aio.ServicerContext) -> api.Session:
        return translate.session_to_pb(await self.app.get(request.session_id))

    @grpc_errors
    async def ListSessions(
        self, request: api.ListSessionsRequest, context: grpc.aio.ServicerContext
    ) -> api.ListSessionsResponse:
        page_size = _page_size(request.page_size)
        status = None
        if request.status != pb.SESSION_STATUS_UNSPECIFIED:
            status = translate.STATUS_FROM_PB.get(request.status)
            if status is None:
                raise InvalidArgument(f"unknown status {request.status}")
        kind = None
        if request.kind != 0:
            kind = translate.KIND_FROM_PB.get(request.kind)
            if kind is None:
                raise InvalidArgument(f"unknown kind {request.kind}")
        page = await self.app.list(
            SessionQuery(
                kind=kind,
                policy_id=request.policy_id,
                status=status,
                after=timestamps.from_pb(request, "requested_after"),
                before=timestamps.from_pb(request, "requested_before"),
                page_size=page_size,
                page_after=_decode_token(request.page_token),
            )
        )
        return api.ListSessionsResponse(
            sessions=[translate.session_to_pb(s) for s in page.sessions],
            next_page_token=_encode_token(page.next_token),
        )

    @grpc_errors
    async def ListAlerts(
        self, request: api.ListAlertsRequest, context: grpc.aio.ServicerContext
    ) -> api.ListAlertsResponse:
        page_size = _page_size(request.page_size)
        for name in ("policy_id", "session_id", "page_token"):
            value = getattr(request, name)
            if value:
                try:
                    events.check_token(name, value)
                except ValueError as exc:
                    raise InvalidArgument(str(exc)) from exc
        if request.kind and request.kind not in KINDS:
            raise InvalidArgument(f"kind {request.kind[:40]!r} is not one of {', '.join(KINDS)}")
        found, next_token = await self.app.list_alerts(
            policy_id=request.policy_id,
            session_id=request.session_id,
            kind=request.kind,
            page_size=page_size,
            page_after=request.page_token,
        )
        return api.ListAlertsResponse(alerts=[translate.alert_to_pb(a) for a in found], next_page_token=next_token)

    @grpc_errors
    async def ListJobs(self, request: api.ListJobsRequest, context: grpc.aio.ServicerContext) -> api.ListJobsResponse:
        session = await self.app.get(request.session_id)
        jobs = sorted(session.jobs.values(), key=lambda j: (j.job_type, j.object_name, j.job_id))
        return api.ListJobsResponse(jobs=[translate.job_to_pb(session.session_id, j) for j in jobs])

    @grpc_errors
    async def WatchSession(
        self, request: api.WatchSessionRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[api.Session]:
        async for session in self.app.watch(request.session_id):
            yield translate.session_to_pb(session)

    @grpc_errors
    async def CancelSession(self, request: api.CancelSessionRequest, context: grpc.aio.ServicerContext) -> api.Session:
        principal = current_principal.get()
        needed = restore_request.role_for((await self.app.get(request.session_id)).kind)
        if principal.role and not principal.allows(needed):
            raise PermissionDenied(f"cancelling this session needs the {needed} role")
        session = await self.app.cancel(
            request.session_id, requested_by=_caller(context, self.caller), reason=request.reason
        )
        return translate.session_to_pb(session)


def _caller(context: grpc.aio.ServicerContext, default: str) -> str:
    """Who is calling, as the authentication interceptor established it."""
    principal = current_principal.get()
    return principal.name if principal.role else default
