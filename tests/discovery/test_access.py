"""AccessService against a discovery running in-process (real PostgreSQL and NATS): the token registry, a
revocation refused at once without a restart, and the audit of changes."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from sfvault.discovery.v1 import access_pb2 as acc
from sfvault.discovery.v1 import access_pb2_grpc, discovery_pb2_grpc
from sfvault.discovery.v1 import discovery_pb2 as api

from services.platform.auth import AuditEntry, StreamAudit, aio_channel, claims_of, mint
from tests.auth import AUTH_KEY, token
from tests.discovery.conftest import Running


def access_stub(running: Running, bearer: str) -> tuple[grpc.aio.Channel, access_pb2_grpc.AccessServiceStub]:
    channel = aio_channel(f"127.0.0.1:{running.port}", bearer)
    return channel, access_pb2_grpc.AccessServiceStub(channel)


async def code_of(call: object) -> grpc.StatusCode:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


async def test_a_revoked_token_is_refused_at_once_and_the_registry_shows_it(running: Running) -> None:
    alice = mint(AUTH_KEY, "alice", "viewer", ttl_s=86400)
    alice_id = claims_of(AUTH_KEY, alice).token_id
    admin_channel, admin = access_stub(running, token("admin", "root"))
    alice_channel = aio_channel(f"127.0.0.1:{running.port}", alice)
    as_alice = discovery_pb2_grpc.DiscoveryServiceStub(alice_channel)
    try:
        registered = await admin.RegisterToken(acc.RegisterTokenRequest(token=alice))
        assert (registered.token_id, registered.name, registered.role) == (alice_id, "alice", "viewer")
        assert not registered.HasField("revoked_at") and registered.registered_by == "root"
        listed = await admin.ListTokens(acc.ListTokensRequest())
        assert [t.token_id for t in listed.tokens] == [alice_id]
        assert alice not in str(listed)  # the registry never holds the token itself

        await as_alice.ListOrgs(api.ListOrgsRequest())
        revoked = await admin.RevokeToken(acc.RevokeTokenRequest(token_id=alice_id))
        assert revoked.HasField("revoked_at") and revoked.revoked_by == "root"
        deadline = time.monotonic() + 10
        while await code_of(as_alice.ListOrgs(api.ListOrgsRequest())) == grpc.StatusCode.OK:
            assert time.monotonic() < deadline, "a revoked token still accepted after 10 s"
            await asyncio.sleep(0.05)
        assert await code_of(as_alice.ListOrgs(api.ListOrgsRequest())) == grpc.StatusCode.UNAUTHENTICATED
        again = await admin.RevokeToken(acc.RevokeTokenRequest(token_id=alice_id))
        assert again.revoked_at == revoked.revoked_at  # the first revocation stays
    finally:
        await alice_channel.close()
        await admin_channel.close()


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (acc.RegisterTokenRequest(token="sfv1.forged.token"), grpc.StatusCode.INVALID_ARGUMENT),
        (acc.RegisterTokenRequest(token=mint(b"another-key", "eve", "admin")), grpc.StatusCode.INVALID_ARGUMENT),
        (acc.RegisterTokenRequest(), grpc.StatusCode.INVALID_ARGUMENT),
        (acc.RevokeTokenRequest(token_id="0123456789abcdef"), grpc.StatusCode.NOT_FOUND),
        (acc.RevokeTokenRequest(token_id="x" * 5000), grpc.StatusCode.INVALID_ARGUMENT),
        (acc.ListAuditRequest(page_size=-1), grpc.StatusCode.INVALID_ARGUMENT),
        (acc.ListAuditRequest(page_token="drop table"), grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
async def test_bad_requests_are_refused_clearly(running: Running, request_: object, code: grpc.StatusCode) -> None:
    channel, admin = access_stub(running, token("admin"))
    try:
        method = {
            acc.RegisterTokenRequest: admin.RegisterToken,
            acc.RevokeTokenRequest: admin.RevokeToken,
            acc.ListAuditRequest: admin.ListAudit,
        }[type(request_)]
        assert await code_of(method(request_)) == code
    finally:
        await channel.close()


@pytest.mark.parametrize("role", ["operator", "service"])
async def test_only_admins_see_tokens_and_audit(running: Running, role: str) -> None:
    channel, caller = access_stub(running, token(role))
    try:
        assert await code_of(caller.ListTokens(acc.ListTokensRequest())) == grpc.StatusCode.PERMISSION_DENIED
        assert await code_of(caller.ListAudit(acc.ListAuditRequest())) == grpc.StatusCode.PERMISSION_DENIED
        revoke = caller.RevokeToken(acc.RevokeTokenRequest(token_id="0123456789abcdef"))
        assert await code_of(revoke) == grpc.StatusCode.PERMISSION_DENIED
        as_caller = discovery_pb2_grpc.DiscoveryServiceStub(channel)
        delete = as_caller.DeleteOrg(api.DeleteOrgRequest(org_id="any"))
        assert await code_of(delete) == grpc.StatusCode.PERMISSION_DENIED
    finally:
        await channel.close()


async def test_the_audit_lists_people_changes_in_order_with_filters(running: Running) -> None:
    channel, admin = access_stub(running, token("admin", "root"))
    try:
        started = time.time()
        refused = running.stub.CreateOrg(  # refused calls are audited too, with their status
            api.CreateOrgRequest(
                org_id="audited",
                connection=api.OrgConnection(login_url="https://login.example.com", client_id="x"),
            )
        )
        assert await code_of(refused) == grpc.StatusCode.INVALID_ARGUMENT
        bob = mint(AUTH_KEY, "bob", "viewer", ttl_s=3600)
        await admin.RegisterToken(acc.RegisterTokenRequest(token=bob))
        entries = list((await admin.ListAudit(acc.ListAuditRequest())).entries)
        assert [(e.method, e.service, e.outcome) for e in entries][-2:] == [
            ("CreateOrg", "discovery", "INVALID_ARGUMENT"),
            ("RegisterToken", "discovery", "OK"),
        ]
        assert entries[-2].target == "audited" and entries[-2].actor == "tester" and entries[-1].actor == "root"
        assert all(bob not in str(e) for e in entries)
        only_root = (await admin.ListAudit(acc.ListAuditRequest(actor="root"))).entries
        assert {e.actor for e in only_root} == {"root"}
        since = acc.ListAuditRequest()
        since.since.FromNanoseconds(int((started + 3600) * 1e9))
        assert list((await admin.ListAudit(since)).entries) == []
        first = await admin.ListAudit(acc.ListAuditRequest(page_size=1))
        assert len(first.entries) == 1 and first.next_page_token
        rest = await admin.ListAudit(acc.ListAuditRequest(page_token=first.next_page_token))
        assert [e.method for e in [*first.entries, *rest.entries]] == [e.method for e in entries]
    finally:
        await channel.close()


async def test_the_audit_lists_what_a_call_noted_of_its_scope(running: Running) -> None:
    # the session service notes a restore's scope (names and counts) on its StartSession entry; ListAudit carries it
    sink = StreamAudit(running.bus.js, running.settings.bus_namespace)
    scope = "kind=RESTORE source=o1 target=o1 as_of=latest dry_run=false objects=Account(deleted_since)"
    await sink.record(AuditEntry(time.time(), "rita", "restorer", "t1", "session", "StartSession", "OK", "s1", scope))
    channel, admin = access_stub(running, token("admin", "root"))
    try:
        entries = (await admin.ListAudit(acc.ListAuditRequest(actor="rita"))).entries
        assert [(e.method, e.target, e.detail) for e in entries] == [("StartSession", "s1", scope)]
    finally:
        await channel.close()
