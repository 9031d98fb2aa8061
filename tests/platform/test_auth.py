"""Tokens: bounded lifetimes, claims that cannot lie, and revocations followed from NATS (KV) at once."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import nats
import pytest

from services.platform.auth import (
    MAX_TOKEN_TTL_S,
    AuthError,
    KvRevocationFeed,
    RevokedTokens,
    claims_of,
    mint,
    read_key,
    verify,
)

KEY = b"unit-key"


def forge(claims: object, key: bytes = KEY) -> str:
    """A token signed with the real key but with claims mint() would never write."""
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    signature = hmac.new(key, f"sfv1.{payload}".encode(), hashlib.sha256).digest()
    return f"sfv1.{payload}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


@pytest.mark.parametrize("ttl_s", [-86400.0, -1.0, 0.0, MAX_TOKEN_TTL_S + 1, 10_000 * 86400.0, float("nan")])
def test_a_token_lifetime_is_bounded(ttl_s: float) -> None:
    with pytest.raises(ValueError, match="days"):
        mint(KEY, "alice", "viewer", ttl_s=ttl_s)


def test_the_longest_lifetime_is_accepted() -> None:
    assert verify(KEY, mint(KEY, "alice", "viewer", ttl_s=MAX_TOKEN_TTL_S)).role == "viewer"


@pytest.mark.parametrize(
    ("claims", "why"),
    [
        ({"sub": "eve", "role": "admin", "iat": 0, "exp": 4_000_000_000, "jti": "a"}, "lifetime"),
        ({"sub": "eve", "role": "admin", "exp": 4_000_000_000, "jti": "a"}, "times"),
        ({"sub": "eve", "role": "admin", "iat": "0", "exp": "9999999999", "jti": "a"}, "times"),
        ({"sub": "eve", "role": "admin", "iat": time.time(), "exp": True, "jti": "a"}, "times"),
        ({"sub": "eve", "role": "root", "iat": time.time(), "exp": time.time() + 60, "jti": "a"}, "role"),
        ({"sub": "eve", "role": "admin", "iat": time.time(), "exp": time.time() + 60}, "id"),
        (["sub", "eve"], "malformed"),
        (
            {"sub": "eve", "role": "admin", "iat": time.time() + 86400, "exp": time.time() + 2 * 86400, "jti": "a"},
            "future",
        ),
    ],
)
def test_signed_claims_that_break_the_rules_are_refused(claims: object, why: str) -> None:
    with pytest.raises(AuthError, match=why):
        verify(KEY, forge(claims))


def test_expired_and_revoked_tokens_are_refused() -> None:
    old = mint(KEY, "bob", "operator", ttl_s=60, now=time.time() - 120)
    with pytest.raises(AuthError, match="expired"):
        verify(KEY, old)
    fresh = mint(KEY, "bob", "operator", ttl_s=60)
    revoked = RevokedTokens()
    assert verify(KEY, fresh, revoked).name == "bob"
    revoked.add(claims_of(KEY, fresh).token_id)
    with pytest.raises(AuthError, match="revoked"):
        verify(KEY, fresh, revoked)


def test_the_signing_key_reference_gives_one_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SFVAULT_AUTH_KEY", raising=False)
    with pytest.raises(AuthError, match="SFVAULT_AUTH_KEY is not set"):
        read_key("env:SFVAULT_AUTH_KEY")
    with pytest.raises(AuthError, match="cannot read"):
        read_key(f"file:{tmp_path / 'missing'}")
    with pytest.raises(AuthError, match="env:NAME or file:/path"):
        read_key("the-key-itself")
    (tmp_path / "key").write_text("k1\n")
    monkeypatch.setenv("SFVAULT_AUTH_KEY", f"file:{tmp_path / 'key'}")
    assert read_key("env:SFVAULT_AUTH_KEY") == b"k1"


async def test_revocations_are_followed_from_the_kv_bucket(nats_url: str, bus_namespace: str) -> None:
    nc = await nats.connect(nats_url)
    stop = asyncio.Event()
    try:
        writer = KvRevocationFeed(nc.jetstream(), bus_namespace)
        await writer.revoke("before", time.time(), "root")
        known = RevokedTokens()
        follower = KvRevocationFeed(nc.jetstream(), bus_namespace)
        watcher = await follower.load(known)
        await watcher.stop()
        assert "before" in known  # what was revoked before a service starts is known before it serves
        following = asyncio.create_task(follower.follow(known, stop))
        await writer.revoke("after", time.time(), "root")
        deadline = time.monotonic() + 10
        while "after" not in known:
            assert time.monotonic() < deadline, "a revocation not seen within 10 s"
            await asyncio.sleep(0.02)
        stop.set()
        await asyncio.wait_for(following, 10)
    finally:
        await nc.close()


async def test_a_stream_ends_when_its_token_is_revoked_or_expires() -> None:
    """A stream (WatchSession, an export) outlives the check at its start: each item is checked again."""
    import grpc

    from services.platform.auth import AuthInterceptor, aio_channel

    items: asyncio.Queue[bytes] = asyncio.Queue()

    async def watch(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        while True:
            yield await items.get()

    revoked = RevokedTokens()
    server = grpc.aio.server(interceptors=[AuthInterceptor(KEY, {"Watch": "viewer"}, revoked=revoked)])
    identity = (lambda b: b, lambda b: b)
    handler = grpc.unary_stream_rpc_method_handler(watch, *identity)
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("test.Streams", {"Watch": handler})])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        soon_expired = mint(KEY, "eve", "viewer", ttl_s=60, now=time.time() - 57)
        for token, end in [(mint(KEY, "bob", "viewer"), "revoke"), (soon_expired, "expire")]:
            channel = aio_channel(f"127.0.0.1:{port}", token)
            stream = channel.unary_stream("/test.Streams/Watch", *identity)(b"")
            await items.put(b"first")
            assert await stream.read() == b"first"
            if end == "revoke":
                revoked.add(claims_of(KEY, token).token_id)
            else:
                await asyncio.sleep(max(0.0, claims_of(KEY, token).expires_at - time.time()) + 0.05)
            await items.put(b"second")
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stream.read()
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert refused.value.details() == ("token revoked" if end == "revoke" else "token expired")
            await channel.close()
    finally:
        await server.stop(None)


def test_a_service_token_does_not_administer() -> None:
    """Every service holds a service token: one compromised jobrunner must not change orgs or revoke tokens."""
    from services.platform.auth import Principal

    service = Principal("jobrunner", "service", "j1")
    assert service.allows("viewer") and service.allows("operator") and service.allows("service")
    assert not service.allows("admin")
    admin = Principal("alice", "admin", "a1")
    assert admin.allows("admin") and not admin.allows("service")


async def test_revocations_are_followed_across_a_nats_restart_with_each_services_permissions(tmp_path: Path) -> None:
    """Discovery writes the bucket and a session service follows it, each as its own NATS user; NATS is killed
    and restarted: what is revoked afterwards still reaches the follower, nothing restarted on its side."""
    from devstack.embedded import nats_process
    from services.platform.natsauth import inbox_prefix

    with nats_process(str(tmp_path / "js")) as server:

        def url(user: str) -> str:
            return f"nats://{user}:{server.passwords[user]}@127.0.0.1:{server.port}"

        async def connect(user: str) -> nats.NATS:
            return await nats.connect(
                url(user), inbox_prefix=inbox_prefix(user), max_reconnect_attempts=-1, reconnect_time_wait=0.2
            )

        writer_nc, follower_nc = await connect("discovery"), await connect("session")
        stop = asyncio.Event()
        known = RevokedTokens()
        writer = KvRevocationFeed(writer_nc.jetstream())
        await writer.revoke("before", time.time(), "root")
        follower = KvRevocationFeed(follower_nc.jetstream(), resync_s=2.0)
        following = asyncio.create_task(follower.follow(known, stop))
        try:
            await until(lambda: "before" in known)
            server.restart(kill=True)
            await until(lambda: writer_nc.is_connected and follower_nc.is_connected)
            deadline = time.monotonic() + 20
            while True:  # JetStream answers a little after the connection is back: RevokeToken says retry
                try:
                    await writer.revoke("after", time.time(), "root")
                    break
                except nats.errors.TimeoutError:
                    assert time.monotonic() < deadline, "JetStream did not come back"
            await until(lambda: "after" in known)
            assert "before" in known
        finally:
            stop.set()
            await asyncio.wait_for(following, 10)
            await writer_nc.close()
            await follower_nc.close()


async def until(condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met"
        await asyncio.sleep(0.05)


async def test_people_changes_are_audited_not_reads_nor_the_services_own_writes() -> None:
    import grpc

    from services.platform.auth import AuthInterceptor, MemoryAudit, aio_channel

    async def answer(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        if request == b"refuse":
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
        return b"ok"

    sink = MemoryAudit()
    guard = AuthInterceptor(KEY, {"GetThing": "viewer"}, audit_sink=sink, service="storage")
    server = grpc.aio.server(interceptors=[guard])
    identity = (lambda b: b, lambda b: b)
    handlers = {name: grpc.unary_unary_rpc_method_handler(answer, *identity) for name in ("GetThing", "PutThing")}
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("test.Things", handlers)])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        for name, role, method, body in [
            ("alice", "admin", "PutThing", b"x"),
            ("alice", "admin", "PutThing", b"refuse"),
            ("alice", "admin", "GetThing", b"x"),
            ("jobrunner", "service", "PutThing", b"x"),
        ]:
            async with aio_channel(f"127.0.0.1:{port}", mint(KEY, name, role)) as channel:
                with contextlib.suppress(grpc.aio.AioRpcError):
                    await channel.unary_unary(f"/test.Things/{method}", *identity)(body)
    finally:
        await server.stop(None)
    assert [(e.actor, e.method, e.outcome, e.service) for e in sink.entries] == [
        ("alice", "PutThing", "OK", "storage"),
        ("alice", "PutThing", "NOT_FOUND", "storage"),
    ]


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        ("viewer", {"viewer"}),
        ("operator", {"viewer", "operator", "operator|restorer"}),
        ("restorer", {"viewer", "restorer", "operator|restorer"}),
        ("admin", {"viewer", "operator", "restorer", "admin", "operator|restorer"}),
        ("service", {"viewer", "operator", "restorer", "service", "operator|restorer"}),
    ],
)
def test_roles_are_two_branches_above_viewer(role: str, allowed: set[str]) -> None:
    """viewer < operator (backups), viewer < restorer (restores): neither includes the other; admin and the
    services' own role include both; only admin administers."""
    from services.platform.auth import Principal

    principal = Principal("p", role, "t")
    requirements = ["viewer", "operator", "restorer", "admin", "service", "operator|restorer"]
    assert {r for r in requirements if principal.allows(r)} == allowed
    assert verify(KEY, mint(KEY, "p", role)).role == role


def test_a_requirement_of_either_role_ranks_as_the_lower() -> None:
    from services.platform.auth import ROLES

    assert ROLES["operator|restorer"] == ROLES["operator"] == ROLES["restorer"] > ROLES["viewer"]
    assert "operator|restorer" not in ROLES  # not a role a token can carry
    with pytest.raises(ValueError, match="unknown role"):
        mint(KEY, "eve", "operator|restorer")
    with pytest.raises(KeyError):
        ROLES["operator|root"]


async def test_a_call_notes_what_it_did_in_its_audit_entry() -> None:
    import grpc

    from services.platform.auth import AuthInterceptor, MemoryAudit, aio_channel, note_for_audit

    async def answer(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        note_for_audit("objects=Account(ids:2)")
        return b"ok"

    sink = MemoryAudit()
    guard = AuthInterceptor(KEY, {"StartThing": "operator|restorer"}, audit_sink=sink, service="session")
    server = grpc.aio.server(interceptors=[guard])
    identity = (lambda b: b, lambda b: b)
    handlers = {"StartThing": grpc.unary_unary_rpc_method_handler(answer, *identity)}
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("test.Things", handlers)])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with aio_channel(f"127.0.0.1:{port}", mint(KEY, "rita", "restorer")) as channel:
            assert await channel.unary_unary("/test.Things/StartThing", *identity)(b"x") == b"ok"
        async with aio_channel(f"127.0.0.1:{port}", mint(KEY, "victor", "viewer")) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await channel.unary_unary("/test.Things/StartThing", *identity)(b"x")
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "operator or restorer" in (refused.value.details() or "")
    finally:
        await server.stop(None)
    assert [(e.actor, e.method, e.detail) for e in sink.entries] == [("rita", "StartThing", "objects=Account(ids:2)")]
