"""Orgs and policies over gRPC in-process (real PostgreSQL): CRUD, validation and status codes."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sfvault.discovery.v1 import discovery_pb2 as api

from tests.discovery.conftest import Running

pytestmark = pytest.mark.integration

CONNECTION = api.OrgConnection(
    login_url="https://login.example.com",
    auth_flow=api.AUTH_FLOW_CLIENT_CREDENTIALS,
    client_id="cid",
    client_secret_ref="env:SFVAULT_SECRET_SF",
)


async def code_of(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call  # type: ignore[misc]
    return err.value.code()


async def test_org_crud(running: Running) -> None:
    created = await running.stub.CreateOrg(api.CreateOrgRequest(org_id="acme", name="Acme", connection=CONNECTION))
    assert created.org_id == "acme" and created.connection.client_secret_ref == "env:SFVAULT_SECRET_SF"
    assert created.created_at.seconds > 0
    generated = await running.stub.CreateOrg(api.CreateOrgRequest(name="other", connection=CONNECTION))
    assert generated.org_id.startswith("org-")
    listed = await running.stub.ListOrgs(api.ListOrgsRequest())
    assert [o.org_id for o in listed.orgs] == sorted(["acme", generated.org_id])
    renamed = await running.stub.UpdateOrg(api.UpdateOrgRequest(org_id="acme", name="Acme Inc"))
    assert renamed.name == "Acme Inc" and renamed.connection.client_id == "cid"
    moved = api.OrgConnection()
    moved.CopyFrom(CONNECTION)
    moved.client_secret_ref = "file:/var/run/secrets/sfvault/salesforce/sf"
    updated = await running.stub.UpdateOrg(api.UpdateOrgRequest(org_id="acme", connection=moved))
    assert (
        updated.connection.client_secret_ref == "file:/var/run/secrets/sfvault/salesforce/sf"
        and updated.name == "Acme Inc"
    )
    assert (await running.stub.GetOrg(api.GetOrgRequest(org_id="acme"))).name == "Acme Inc"
    await running.stub.DeleteOrg(api.DeleteOrgRequest(org_id=generated.org_id))
    assert await code_of(running.stub.GetOrg(api.GetOrgRequest(org_id=generated.org_id))) == grpc.StatusCode.NOT_FOUND


async def test_org_errors(running: Running) -> None:
    stub = running.stub
    bad_ref = api.OrgConnection()
    bad_ref.CopyFrom(CONNECTION)
    bad_ref.client_secret_ref = "the-secret-itself"
    auth_key = api.OrgConnection()  # sfvault's own signing key, to be sent to a login URL of one's choosing
    auth_key.CopyFrom(CONNECTION)
    auth_key.client_secret_ref = "env:SFVAULT_AUTH_KEY"
    cases = [
        (stub.CreateOrg(api.CreateOrgRequest(org_id="a.b", connection=CONNECTION)), grpc.StatusCode.INVALID_ARGUMENT),
        (stub.CreateOrg(api.CreateOrgRequest(org_id="x", connection=bad_ref)), grpc.StatusCode.INVALID_ARGUMENT),
        (stub.CreateOrg(api.CreateOrgRequest(org_id="x", connection=auth_key)), grpc.StatusCode.INVALID_ARGUMENT),
        (stub.CreateOrg(api.CreateOrgRequest(org_id="x")), grpc.StatusCode.INVALID_ARGUMENT),
        (
            stub.CreateOrg(api.CreateOrgRequest(org_id="x", connection=api.OrgConnection(login_url="https://a"))),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (stub.GetOrg(api.GetOrgRequest(org_id="nope")), grpc.StatusCode.NOT_FOUND),
        (stub.UpdateOrg(api.UpdateOrgRequest(org_id="nope", name="n")), grpc.StatusCode.NOT_FOUND),
        (stub.DeleteOrg(api.DeleteOrgRequest(org_id="nope")), grpc.StatusCode.NOT_FOUND),
        (stub.TestOrg(api.TestOrgRequest(org_id="nope")), grpc.StatusCode.NOT_FOUND),
    ]
    for call, expected in cases:
        assert await code_of(call) == expected
    await stub.CreateOrg(api.CreateOrgRequest(org_id="acme", connection=CONNECTION))
    assert (
        await code_of(stub.CreateOrg(api.CreateOrgRequest(org_id="acme", connection=CONNECTION)))
        == grpc.StatusCode.ALREADY_EXISTS
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.CreateOrg(api.CreateOrgRequest(org_id="y", connection=bad_ref))
    assert "the-secret-itself" not in (err.value.details() or "")


async def test_policy_crud_and_errors(running: Running) -> None:
    stub = running.stub
    await stub.CreateOrg(api.CreateOrgRequest(org_id="acme", connection=CONNECTION))
    policy = api.Policy(
        policy_id="daily",
        org_id="acme",
        name="Daily",
        scope=api.Scope(
            include_objects=["Account", "Contact"], exclude_fields={"Account": api.FieldList(fields=["Phone"])}
        ),
        auto_add_new_objects=False,
        auto_add_new_fields=True,
        files=True,
        metadata=False,
        stall_timeout=Duration(seconds=7200),
        api_budget=api.ApiBudget(daily_share_percent=40, per_run_cap=5000),
        reconcile_every=Duration(seconds=86400),
        schedule="daily@02:00",
    )
    created = await stub.CreatePolicy(api.CreatePolicyRequest(policy=policy))
    expected = api.Policy()
    expected.CopyFrom(created)
    expected.ClearField("created_at")
    expected.ClearField("updated_at")
    assert expected == policy
    policy.name = "Nightly"
    policy.scope.exclude_objects.append("Lead")
    updated = await stub.UpdatePolicy(api.UpdatePolicyRequest(policy=policy))
    assert updated.name == "Nightly" and list(updated.scope.exclude_objects) == ["Lead"]
    assert updated.created_at == created.created_at
    listed = await stub.ListPolicies(api.ListPoliciesRequest(org_id="acme"))
    assert [p.policy_id for p in listed.policies] == ["daily"]

    delete_org = stub.DeleteOrg(api.DeleteOrgRequest(org_id="acme"))
    assert await code_of(delete_org) == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.CreatePolicy(api.CreatePolicyRequest(policy=api.Policy(policy_id="p2", org_id="ghost")))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND and "ghost" in (err.value.details() or "")
    invalid = [
        api.Policy(policy_id="p 3", org_id="acme"),
        api.Policy(policy_id="p3", org_id="acme", api_budget=api.ApiBudget(daily_share_percent=101)),
        api.Policy(policy_id="p3", org_id="acme", schedule="when it rains"),
        api.Policy(policy_id="p3", org_id="acme", stall_timeout=Duration(seconds=-5)),
    ]
    for bad in invalid:
        assert await code_of(stub.CreatePolicy(api.CreatePolicyRequest(policy=bad))) == grpc.StatusCode.INVALID_ARGUMENT
    assert await code_of(stub.CreatePolicy(api.CreatePolicyRequest(policy=policy))) == grpc.StatusCode.ALREADY_EXISTS
    assert (
        await code_of(stub.UpdatePolicy(api.UpdatePolicyRequest(policy=api.Policy(policy_id="ghost"))))
        == grpc.StatusCode.NOT_FOUND
    )
    assert (
        await code_of(stub.GetSessionPlan(api.GetSessionPlanRequest(session_id="never"))) == grpc.StatusCode.NOT_FOUND
    )
    await stub.DeletePolicy(api.DeletePolicyRequest(policy_id="daily"))
    assert await code_of(stub.GetPolicy(api.GetPolicyRequest(policy_id="daily"))) == grpc.StatusCode.NOT_FOUND
    await stub.DeleteOrg(api.DeleteOrgRequest(org_id="acme"))


async def test_health_is_serving(running: Running) -> None:
    target = f"127.0.0.1:{running.port}"
    async with grpc.aio.insecure_channel(target) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_an_org_registered_as_a_sandbox_says_so_everywhere(running: Running) -> None:
    stub = running.stub
    created = await stub.CreateOrg(api.CreateOrgRequest(org_id="uat", name="UAT", connection=CONNECTION, sandbox=True))
    await stub.CreateOrg(api.CreateOrgRequest(org_id="prod", name="Prod", connection=CONNECTION))
    assert created.sandbox
    assert (await stub.GetOrg(api.GetOrgRequest(org_id="uat"))).sandbox
    listed = await stub.ListOrgs(api.ListOrgsRequest())
    assert {o.org_id: o.sandbox for o in listed.orgs} == {"prod": False, "uat": True}
    renamed = await stub.UpdateOrg(api.UpdateOrgRequest(org_id="uat", name="UAT 2"))
    assert renamed.sandbox and renamed.name == "UAT 2"  # sandbox not given: it stays
    promoted = await stub.UpdateOrg(api.UpdateOrgRequest(org_id="uat", sandbox=False))
    assert not promoted.sandbox and promoted.name == "UAT 2"
    assert not (await stub.GetOrg(api.GetOrgRequest(org_id="uat"))).sandbox


async def test_a_policys_time_zone_is_kept_and_a_wrong_one_refused(running: Running) -> None:
    stub = running.stub
    await stub.CreateOrg(api.CreateOrgRequest(org_id="tz", connection=CONNECTION))
    policy = api.Policy(policy_id="tz-nightly", org_id="tz", schedule="daily@02:00", time_zone="Europe/Paris")
    created = await stub.CreatePolicy(api.CreatePolicyRequest(policy=policy))
    assert created.time_zone == "Europe/Paris"
    assert (await stub.GetPolicy(api.GetPolicyRequest(policy_id="tz-nightly"))).time_zone == "Europe/Paris"
    created.time_zone = "Mars/Olympus"
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.UpdatePolicy(api.UpdatePolicyRequest(policy=created))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Mars/Olympus" in (refused.value.details() or "") and "IANA" in (refused.value.details() or "")
    assert (await stub.GetPolicy(api.GetPolicyRequest(policy_id="tz-nightly"))).time_zone == "Europe/Paris"
