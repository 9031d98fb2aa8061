"""Discovery's gRPC servicers, DiscoveryService and AccessService (tokens and the audit; every RPC needs the
admin role): protobuf <-> application calls, nothing more.

Tokens are minted with the signing key (`sfvault token create`) and registered here: discovery checks the
signature and keeps the claims (id, name, role, issued, expires), never the token. Revoking one marks it in
the tokens table and puts its id into the KV bucket of revoked tokens every service follows
(services.platform.auth), so it is refused everywhere within a second or two.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import grpc
from sfvault.discovery.v1 import access_pb2 as access_api
from sfvault.discovery.v1 import access_pb2_grpc, discovery_pb2_grpc
from sfvault.discovery.v1 import discovery_pb2 as api
from sfvault.storage.v1 import storage_pb2

from services.discovery import domain as d
from services.discovery import translate
from services.discovery.application import Access, Catalog
from services.discovery.compare import LiveCompare
from services.platform import auth
from services.platform.auth import current_principal
from services.platform.compare import compare_piece_to_pb
from services.platform.errors import InvalidArgument, Unavailable, grpc_errors

MAX_AUDIT_PAGE = 5000
DEFAULT_AUDIT_PAGE = 500
T = TypeVar("T")
A = TypeVar("A")


def _domain(fn: Callable[[A], T], arg: A) -> T:
    """Run a conversion whose rule violations are the caller's mistake (INVALID_ARGUMENT)."""
    try:
        return fn(arg)
    except d.InvalidPolicy as exc:
        raise InvalidArgument(str(exc)) from None


class DiscoveryApi(discovery_pb2_grpc.DiscoveryServiceServicer):
    def __init__(self, catalog: Catalog, live: LiveCompare | None = None) -> None:
        self.catalog = catalog
        self.live = live

    @grpc_errors
    async def CreateOrg(self, request: api.CreateOrgRequest, context: grpc.aio.ServicerContext) -> api.Org:
        if not request.HasField("connection"):
            raise InvalidArgument("connection is required")
        connection = _domain(translate.connection_from_pb, request.connection)
        org = await self.catalog.create_org(d.Org(request.org_id, request.name, connection, sandbox=request.sandbox))
        return translate.org_to_pb(org)

    @grpc_errors
    async def GetOrg(self, request: api.GetOrgRequest, context: grpc.aio.ServicerContext) -> api.Org:
        return translate.org_to_pb(await self.catalog.get_org(_id("org_id", request.org_id)))

    @grpc_errors
    async def ListOrgs(self, request: api.ListOrgsRequest, context: grpc.aio.ServicerContext) -> api.ListOrgsResponse:
        return api.ListOrgsResponse(orgs=[translate.org_to_pb(o) for o in await self.catalog.list_orgs()])

    @grpc_errors
    async def UpdateOrg(self, request: api.UpdateOrgRequest, context: grpc.aio.ServicerContext) -> api.Org:
        connection = (
            _domain(translate.connection_from_pb, request.connection) if request.HasField("connection") else None
        )
        sandbox = request.sandbox if request.HasField("sandbox") else None
        org = await self.catalog.update_org(_id("org_id", request.org_id), request.name or None, connection, sandbox)
        return translate.org_to_pb(org)

    @grpc_errors
    async def DeleteOrg(
        self, request: api.DeleteOrgRequest, context: grpc.aio.ServicerContext
    ) -> api.DeleteOrgResponse:
        await self.catalog.delete_org(_id("org_id", request.org_id))
        return api.DeleteOrgResponse()

    @grpc_errors
    async def TestOrg(self, request: api.TestOrgRequest, context: grpc.aio.ServicerContext) -> api.TestOrgResponse:
        return api.TestOrgResponse(**await self.catalog.test_org(_id("org_id", request.org_id)))

    @grpc_errors
    async def CreatePolicy(self, request: api.CreatePolicyRequest, context: grpc.aio.ServicerContext) -> api.Policy:
        policy = await self.catalog.create_policy(_domain(translate.policy_from_pb, request.policy))
        return translate.policy_to_pb(policy)

    @grpc_errors
    async def GetPolicy(self, request: api.GetPolicyRequest, context: grpc.aio.ServicerContext) -> api.Policy:
        return translate.policy_to_pb(await self.catalog.get_policy(_id("policy_id", request.policy_id)))

    @grpc_errors
    async def ListPolicies(
        self, request: api.ListPoliciesRequest, context: grpc.aio.ServicerContext
    ) -> api.ListPoliciesResponse:
        policies = await self.catalog.list_policies(_id("org_id", request.org_id) if request.org_id else "")
        return api.ListPoliciesResponse(policies=[translate.policy_to_pb(p) for p in policies])

    @grpc_errors
    async def UpdatePolicy(self, request: api.UpdatePolicyRequest, context: grpc.aio.ServicerContext) -> api.Policy:
        if not request.policy.policy_id:
            raise InvalidArgument("policy.policy_id is required")
        policy = await self.catalog.update_policy(_domain(translate.policy_from_pb, request.policy))
        return translate.policy_to_pb(policy)

    @grpc_errors
    async def DeletePolicy(
        self, request: api.DeletePolicyRequest, context: grpc.aio.ServicerContext
    ) -> api.DeletePolicyResponse:
        await self.catalog.delete_policy(_id("policy_id", request.policy_id))
        return api.DeletePolicyResponse()

    @grpc_errors
    async def VerifyOrg(
        self, request: api.VerifyOrgRequest, context: grpc.aio.ServicerContext
    ) -> api.VerifyOrgResponse:
        result = await self.catalog.verify_org(_id("org_id", request.org_id), list(request.objects))
        return api.VerifyOrgResponse(
            salesforce_org_id=result["salesforce_org_id"],
            api_calls=result["api_calls"],
            objects=[api.ObjectVerification(**o) for o in result["objects"]],
        )

    @grpc_errors
    async def CompareLive(
        self, request: api.CompareLiveRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[storage_pb2.CompareChunk]:
        if self.live is None:
            raise Unavailable("compare with the org needs storage, which is not configured")
        since = None
        if request.HasField("from"):
            try:
                since = getattr(request, "from").ToDatetime(tzinfo=dt.UTC)
            except (ValueError, OverflowError):
                raise InvalidArgument("from is not a time between the years 1 and 9999") from None
        async for piece in self.live.compare(
            _id("org_id", request.org_id),
            since,
            list(request.objects),
            fields=list(request.fields),
            values=request.values,
            batch_size=request.batch_size,
            limit=request.limit,
        ):
            yield compare_piece_to_pb(piece)

    @grpc_errors
    async def GetSessionPlan(
        self, request: api.GetSessionPlanRequest, context: grpc.aio.ServicerContext
    ) -> api.SessionPlan:
        return translate.session_plan_to_pb(*await self.catalog.session_plan(_id("session_id", request.session_id)))


def _id(what: str, value: str) -> str:
    """Ids are checked at the door: a bad one is INVALID_ARGUMENT naming it, never a database error."""
    try:
        return d.check_id(what, value)
    except d.InvalidPolicy as exc:
        raise InvalidArgument(str(exc)) from None


# ---- AccessService ---------------------------------------------------------------------------------------


class AccessApi(access_pb2_grpc.AccessServiceServicer):
    """Every RPC needs the admin role (the AuthInterceptor's default)."""

    def __init__(self, access: Access) -> None:
        self.access = access

    @grpc_errors
    async def RegisterToken(self, request: access_api.RegisterTokenRequest, context: grpc.aio.ServicerContext) -> Any:
        return translate.token_to_pb(await self.access.register(request.token, current_principal.get().name))

    @grpc_errors
    async def ListTokens(self, request: access_api.ListTokensRequest, context: grpc.aio.ServicerContext) -> Any:
        records = await self.access.list_tokens(request.include_expired)
        return access_api.ListTokensResponse(tokens=[translate.token_to_pb(r) for r in records])

    @grpc_errors
    async def RevokeToken(self, request: access_api.RevokeTokenRequest, context: grpc.aio.ServicerContext) -> Any:
        record = await self.access.revoke(_check_token_id(request.token_id), current_principal.get().name)
        return translate.token_to_pb(record)

    @grpc_errors
    async def ListAudit(self, request: access_api.ListAuditRequest, context: grpc.aio.ServicerContext) -> Any:
        size = request.page_size or DEFAULT_AUDIT_PAGE
        if not 0 < size <= MAX_AUDIT_PAGE:
            raise InvalidArgument(f"page_size is 1 to {MAX_AUDIT_PAGE}")
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
        entries, last = await self.access.audit_entries(since, request.actor, size, after)
        return access_api.ListAuditResponse(
            entries=[translate.audit_entry_to_pb(e) for e in entries],
            next_page_token=str(last) if len(entries) >= size and last else "",
        )


def access_service_entry(api_: AccessApi) -> tuple[Any, AccessApi, str]:
    """What start_grpc_server takes to serve AccessService beside DiscoveryService."""
    return (
        access_pb2_grpc.add_AccessServiceServicer_to_server,
        api_,
        access_api.DESCRIPTOR.services_by_name["AccessService"].full_name,
    )


def _check_token_id(token_id: str) -> str:
    if not token_id:
        raise InvalidArgument("token_id is required")
    if len(token_id) > 64 or not token_id.isascii() or not token_id.isalnum():
        raise InvalidArgument("token_id is the id `sfvault token list` shows (letters and digits, at most 64)")
    return token_id
