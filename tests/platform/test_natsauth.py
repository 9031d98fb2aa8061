"""NATS authentication and per-service permissions, against a real nats-server configured from
services.platform.natsauth: nobody unauthenticated, and each service publishes only its own events."""

from __future__ import annotations

import asyncio
import os
import ssl

import nats
import pytest
from nats.errors import Error as NatsError
from sfvault.events.v1 import events_pb2
from sfvault.jobs.v1 import jobs_pb2

from devstack.embedded import NatsServer, free_port, nats_process
from services.platform import events, natsauth
from services.platform.bus import Bus, BusConfig


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with nats_process(str(tmp_path_factory.mktemp("nats"))) as s:
        yield s


def _config(server: NatsServer, user: str) -> BusConfig:
    return BusConfig(url=server.address, user=user, password=server.passwords[user], ack_wait_s=5)


class Errors(list[Exception]):
    """The asynchronous errors a connection got; `violations(n)` waits until n permission violations came."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = asyncio.Condition()

    async def add(self, exc: Exception) -> None:
        async with self.changed:
            self.append(exc)
            self.changed.notify_all()

    def violation_count(self) -> int:
        return sum("permissions violation" in str(e).lower() for e in self)

    async def violations(self, n: int) -> None:
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(lambda: self.violation_count() >= n), 10)


async def _connect_as(server: NatsServer, user: str) -> tuple[nats.NATS, Errors]:
    errors = Errors()

    async def on_error(exc: Exception) -> None:
        await errors.add(exc)

    nc = await nats.connect(
        server.address,
        user=user,
        password=server.passwords[user],
        inbox_prefix=natsauth.inbox_prefix(user),
        error_cb=on_error,
        allow_reconnect=False,
    )
    return nc, errors


async def test_an_unauthenticated_connection_is_refused(server: NatsServer) -> None:
    with pytest.raises(NatsError):
        await nats.connect(server.address, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=2)
    with pytest.raises(NatsError):
        await nats.connect(
            server.address, user="storage", password="guessed", allow_reconnect=False, max_reconnect_attempts=0
        )


async def test_the_jobrunner_cannot_forge_a_chunk_nor_a_session_end(server: NatsServer) -> None:
    admin = await Bus.connect(BusConfig(url=server.url), producer="test")  # declares the streams
    nc, errors = await _connect_as(server, "jobrunner")
    try:
        before = (await admin.js.stream_info(admin.config.events_stream)).state.messages
        js = nc.jetstream()
        for payload in (events_pb2.ChunkUploaded(chunk_seq=1), events_pb2.SessionFinished()):
            env = events.envelope(payload, session_id="s1", job_id="j1", producer="jobrunner")
            with pytest.raises(NatsError):  # the server drops it: no stream answers
                await js.publish(events.subject(env), env.SerializeToString(), timeout=1)
        await errors.violations(2)
        assert (await admin.js.stream_info(admin.config.events_stream)).state.messages == before
        # what the jobrunner owns goes through
        env = events.envelope(events_pb2.JobStarted(worker_id="w"), session_id="s1", job_id="j1", producer="jobrunner")
        await js.publish(events.subject(env), env.SerializeToString(), timeout=5)
        assert (await admin.js.stream_info(admin.config.events_stream)).state.messages == before + 1
    finally:
        await nc.close()
        await admin.close()


async def test_a_service_cannot_read_another_s_consumer_nor_its_replies(server: NatsServer) -> None:
    nc, errors = await _connect_as(server, "storage")
    try:
        await nc.subscribe("_INBOX.session.>")
        await nc.subscribe("sfvault.events.>")
        await errors.violations(2)
    finally:
        await nc.close()


@pytest.mark.parametrize("service", natsauth.SERVICES)
async def test_each_service_does_its_own_work_with_its_own_user(server: NatsServer, service: str) -> None:
    """Its streams declared, its consumers created, fed and acked, its events published, its dead letters."""
    bus = await Bus.connect(_config(server, service), producer=service)
    try:
        for kind in natsauth.PUBLISHES[service]:
            payload = getattr(events_pb2, kind)()
            await bus.emit(payload, session_id="own", job_id="j1")
        if service in ("discovery", "jobrunner"):  # discovery plans jobs; a jobrunner defers one (fair scheduling)
            spec = jobs_pb2.JobSpec(session_id="own", job_id="j1", type=events_pb2.JOB_TYPE_DATA, object_name="A")
            await bus.enqueue_job(spec)
        for kind, durable in natsauth.CONSUMES[service]:
            stream = bus.config.events_stream if kind == "events" else bus.config.jobs_stream
            subject = bus.config.events_subject() if kind == "events" else bus.config.jobs_subject()
            sub = await bus.pull_subscription(stream, durable, subject)
            await sub.fetch(1, timeout=0.5)  # nothing may be there for it; the request itself is allowed
    finally:
        await bus.close()


async def test_the_jobrunner_watcher_reads_closing_events(server: NatsServer) -> None:
    """Ordered consumers and last-message reads on EVENTS (services.jobrunner.application.Watcher)."""
    admin = await Bus.connect(BusConfig(url=server.url), producer="test")
    session = await Bus.connect(_config(server, "session"), producer="session")
    bus = await Bus.connect(_config(server, "jobrunner"), producer="jobrunner")
    try:
        got = asyncio.Event()

        async def on_msg(_msg) -> None:
            got.set()

        await bus.js.subscribe(bus.config.events_subject("*.SessionCancelled"), cb=on_msg, ordered_consumer=True)
        await session.emit(events_pb2.SessionCancelled(reason="x"), session_id="w1")
        await asyncio.wait_for(got.wait(), 10)
        last = await bus.js.get_last_msg(bus.config.events_stream, bus.config.events_subject("w1.SessionCancelled"))
        assert events.decode(last.data).session_id == "w1"
    finally:
        for b in (bus, session, admin):
            await b.close()


def test_only_the_owner_of_an_event_may_publish_it() -> None:
    owners: dict[str, set[str]] = {}
    for service in natsauth.SERVICES:
        for subject in natsauth.permissions(service).publish:
            if subject.startswith("sfvault.events.*."):
                owners.setdefault(subject.rsplit(".", 1)[1], set()).add(service)
    assert owners["ChunkUploaded"] == {"storage"}
    assert owners["JobStarted"] == owners["JobFinished"] == {"jobrunner"}
    assert owners["SessionFinished"] == owners["JobTerminated"] == owners["SessionCancelled"] == {"session"}
    assert owners["SessionStarted"] == owners["JobsPlanned"] == {"discovery"}
    assert owners["SessionFailed"] == {"session", "discovery"}  # a stall, or a plan that could not be made
    every_kind = {f.message_type.name for f in events_pb2.Envelope.DESCRIPTOR.oneofs_by_name["payload"].fields}
    assert set(owners) == every_kind


def test_the_kubernetes_nats_users_are_this_table_and_a_real_server_enforces_them(tmp_path) -> None:
    """k8s/components/nats/auth.conf is generated from natsauth; nats-server takes each password from its
    environment (the Secret sfvault-nats-users) and enforces the same permissions."""
    import subprocess
    from pathlib import Path

    from devstack.embedded import _wait_for_port, free_port, nats_server_binary

    committed = Path(__file__).resolve().parents[2] / "k8s" / "components" / "nats" / "auth.conf"
    assert committed.read_text() == natsauth.kubernetes_auth_conf(), "run: python -m services.platform.natsauth"
    port = free_port()
    (tmp_path / "auth.conf").write_text(committed.read_text())
    (tmp_path / "nats.conf").write_text(f"listen: 127.0.0.1:{port}\ninclude auth.conf\n")
    passwords = {user: f"pw-{user}" for user in (*natsauth.SERVICES, natsauth.ADMIN)}
    env = {**os.environ, **{natsauth.password_variable(u): p for u, p in passwords.items()}}
    proc = subprocess.Popen(
        [nats_server_binary(), "-c", str(tmp_path / "nats.conf"), "-js", "-sd", str(tmp_path / "js")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(port, proc, "nats-server")

        async def check() -> None:
            server = NatsServer(str(tmp_path / "unused"), port, auth=False)
            server.passwords = passwords
            nc, errors = await _connect_as(server, "jobrunner")
            try:
                await nc.publish("sfvault.events.s1.ChunkUploaded", b"forged")
                await errors.violations(1)
            finally:
                await nc.close()
            with pytest.raises(NatsError):
                await nats.connect(
                    f"nats://127.0.0.1:{port}",
                    user="jobrunner",
                    password="pw-storage",
                    allow_reconnect=False,
                    max_reconnect_attempts=0,
                )

        asyncio.run(check())
    finally:
        proc.terminate()
        proc.wait()


async def test_nats_over_tls_with_the_ca_of_the_settings(tmp_path) -> None:
    """SFVAULT_NATS_TLS_CA_FILE: a service verifies the server's certificate; without TLS it gets nowhere."""
    from services.platform.settings import ServiceSettings
    from sforg.tls import ensure_certificates

    ca, cert, key = ensure_certificates(tmp_path / "tls")
    server = NatsServer(str(tmp_path / "nats"), free_port(), tls=(str(cert), str(key)))
    server.start()
    try:
        settings = ServiceSettings(
            database_url="unused",
            nats_url=f"tls://localhost:{server.port}",
            nats_user="session",
            nats_password=server.passwords["session"],
            nats_tls_ca_file=str(ca),
        )
        bus = await Bus.connect(settings.bus_config(), producer="session")
        try:
            await bus.emit(events_pb2.SessionCancelled(reason="x"), session_id="tls1")
        finally:
            await bus.close()
        # a client without the CA cannot trust it (nor talk without TLS: the server requires it)
        with pytest.raises((NatsError, ssl.SSLError)):
            await nats.connect(server.url, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=2)
    finally:
        server.stop()


def test_a_nats_user_without_its_password_stops_start_up() -> None:
    from services.platform.settings import ServiceSettings

    with pytest.raises(SystemExit, match="SFVAULT_NATS_PASSWORD"):
        ServiceSettings(database_url="x", nats_url="nats://x", nats_user="storage").bus_config()


async def test_the_fixtures_give_a_component_its_own_user(nats_url: str, nats_credentials) -> None:
    from services.platform.settings import ServiceSettings

    settings = ServiceSettings(database_url="unused", nats_url=nats_url, **nats_credentials("storage"))
    bus = await Bus.connect(settings.bus_config(), producer="storage")
    try:
        assert bus.nc.connected_url is not None
        await bus.emit(events_pb2.ChunkUploaded(chunk_seq=1), session_id="f1", job_id="j1", id_parts=(1,))
        if nats_credentials("storage"):  # the embedded server: storage may not announce what it does not own
            bus.config = BusConfig(url=nats_url, publish_retry_s=0.5)
            with pytest.raises(NatsError):
                await bus.emit(events_pb2.JobFinished(), session_id="f1", job_id="j1")
    finally:
        await bus.close()


async def test_a_wrong_password_fails_start_up_at_once_instead_of_hanging(server: NatsServer) -> None:
    from services.platform.bus import NatsRefused

    config = BusConfig(url=server.address, user="storage", password="not-its-password")
    with pytest.raises(NatsRefused, match="refused user storage"):
        await asyncio.wait_for(Bus.connect(config, producer="storage"), 20)
