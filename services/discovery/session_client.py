"""Discovery's adapter to the session service: the scheduler asks it for a policy's running session and
starts scheduled ones (with this service's own token)."""

from __future__ import annotations

from typing import Any

from services.discovery import domain as d


class GrpcSessionStarter:
    """Asks the session service (with this service's own token)."""

    def __init__(self, address: str, token: str, credentials: Any = None) -> None:
        from sfvault.session.v1 import session_pb2_grpc

        from services.platform.auth import aio_channel

        self.channel = aio_channel(address, token, credentials)
        self.stub = session_pb2_grpc.SessionServiceStub(self.channel)

    async def running_session(self, policy_id: str) -> str | None:
        from sfvault.events.v1 import events_pb2 as pb
        from sfvault.session.v1 import session_pb2 as api

        for status in (pb.SESSION_STATUS_RUNNING, pb.SESSION_STATUS_PENDING):
            page = await self.stub.ListSessions(
                api.ListSessionsRequest(policy_id=policy_id, status=status, page_size=1), timeout=10
            )
            if page.sessions:
                return str(page.sessions[0].session_id)
        return None

    async def start(self, policy: d.Policy, session_id: str) -> str:
        from sfvault.session.v1 import session_pb2 as api

        # no stall timeout: the policy's applies, decided by discovery's planning like any session's
        request = api.StartSessionRequest(
            policy_id=policy.policy_id, org_id=policy.org_id, trigger="schedule", session_id=session_id
        )
        started = await self.stub.StartSession(request, timeout=10)
        return str(started.session_id)

    async def close(self) -> None:
        await self.channel.close()
