"""The DiscoveryService gRPC servicer: protobuf <-> application calls, nothing more."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import grpc
from sfvault.discovery.v1 import discovery_pb2 as api
from sfvault.discovery.v1 import discovery_pb2_grpc

from services.discovery import domain as d
from services.discovery import translate
from services.discovery.application import Catalog
from services.discovery.store import DiscoveryStore
from services.platform.errors import InvalidArgument, NotFound, grpc_errors

T = TypeVar("T")
A = TypeVar("A")


def _domain(fn: Callable[[A], T], arg: A) -> T:
    """Run a conversion whose rule violations are the caller's mistake (INVALID_ARGUMENT)."""
    try:
        return fn(arg)
    except d.InvalidPolicy as exc:
        raise InvalidArgument(str(exc)) from None


class DiscoveryApi(discovery_pb2_grpc.DiscoveryServiceServicer):
    def __init__(self, catalog: Catalog, store: DiscoveryStore) -> None:
        self.catalog = catalog
        self.store = store

    @grpc_errors
    async def CreateOrg(self, request: api.CreateOrgRequest, context: grpc.aio.ServicerContext) -> api.Org:
        if not request.HasField("connection"):
            raise InvalidArgument("connection is required")
        connection = _domain(translate.connection_from_pb, request.connection)
        org = await self.catalog.create_org(d.Org(request.org_id, request.name, connection))
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
        org = await self.catalog.update_org(_id("org_id", request.org_id), request.name or None, connection)
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
    async def GetSessionPlan(
        self, request: api.GetSessionPlanRequest, context: grpc.aio.ServicerContext
    ) -> api.SessionPlan:
        record = await self.store.get_session(_id("session_id", request.session_id))
        if record is None:
            raise NotFound(f"discovery has not handled session {request.session_id!r}")
        jobs = await self.store.session_jobs(record.session_id)
        schema = await self.store.session_schema(record.session_id)
        return translate.session_plan_to_pb(record, jobs, schema)


def _id(what: str, value: str) -> str:
    """Ids are checked at the door: a bad one is INVALID_ARGUMENT naming it, never a database error."""
    try:
        return d.check_id(what, value)
    except d.InvalidPolicy as exc:
        raise InvalidArgument(str(exc)) from None
