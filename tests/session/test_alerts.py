"""Damage detection, restore drafts and alerts through the session application: on in-memory fakes of its
ports (the history, the drafts, the alert stored once), then delivered to a real local HTTP receiver and a real
local SMTP server (aiosmtpd), one of them down at first; and the same on real PostgreSQL and NATS through gRPC
(ListAlerts)."""

from __future__ import annotations

import asyncio
import datetime as dt
import http.server
import json
import socket
import threading
import uuid
from collections.abc import Iterator
from email import message_from_bytes

import grpc
import pytest
from aiosmtpd.controller import Controller
from sfvault.events.v1 import events_pb2 as pb
from sfvault.protect.v1 import protect_pb2 as ppb
from sfvault.restore.v1 import restore_pb2 as rpb
from sfvault.session.v1 import session_pb2 as api
from sfvault.session.v1 import session_pb2_grpc

from services.platform import db
from services.platform.auth import aio_channel
from services.session import domain as d
from services.session import service
from services.session.alerting import AlertDispatcher
from services.session.application import SessionService
from services.session.notify import HttpWebhooks, SmtpMailer
from services.session.store import Projection
from tests.platform.fakes import FakeBus, FakeDelivery
from tests.session.conftest import Running, token
from tests.session.fakes import FakeClock, FakeMailer, FakeProjection, FakeWebhooks

OK = pb.JOB_OUTCOME_SUCCESS


def protection(webhook_urls: list[str] = (), emails: list[str] = ()) -> tuple[ppb.AlertSettings, ppb.AnomalySettings]:  # type: ignore[assignment]
    alerts = ppb.AlertSettings(
        webhooks=[ppb.Webhook(url_ref=u, format=ppb.WEBHOOK_FORMAT_SLACK) for u in webhook_urls], emails=emails
    )
    return alerts, ppb.AnomalySettings(min_records=10, delete_pct=10)


class Harness:
    def __init__(self) -> None:
        self.clock = FakeClock(dt.datetime(2026, 12, 1, 2, 0, tzinfo=dt.UTC))
        self.bus = FakeBus()
        self.projection = FakeProjection()
        self.webhooks = FakeWebhooks()
        self.mailer = FakeMailer()
        self.dispatcher = AlertDispatcher(
            self.projection.alerts, self.webhooks, self.mailer, self.clock, retry_base=dt.timedelta(seconds=1)
        )
        self.app = SessionService(
            self.projection, self.bus, self.clock, dt.timedelta(hours=24), alerting=self.dispatcher
        )
        self.folded = 0

    async def deliver(self) -> None:
        while self.folded < len(self.bus.events):
            batch = self.bus.events[self.folded :]
            self.folded = len(self.bus.events)
            await self.app.handle_batch([FakeDelivery(env) for env in batch])

    async def backup(
        self,
        sid: str,
        counts: dict[str, pb.Counts],
        *,
        initial: bool = False,
        settings: tuple[ppb.AlertSettings, ppb.AnomalySettings] | None = None,
    ) -> d.Session:
        """A backup of policy p1 whose data jobs (one per object) count so, an hour after the previous one."""
        await self.emit_backup(sid, counts, initial=initial, settings=settings)
        await self.deliver()
        return await self.app.get(sid)

    async def emit_backup(
        self,
        sid: str,
        counts: dict[str, pb.Counts],
        *,
        initial: bool = False,
        settings: tuple[ppb.AlertSettings, ppb.AnomalySettings] | None = None,
    ) -> None:
        """What discovery, jobrunners and storage publish for such a backup (not delivered)."""
        self.clock.advance(dt.timedelta(hours=1))
        alerts, anomalies = settings or protection()
        await self.bus.emit(pb.SessionRequested(policy_id="p1", org_id="o1"), session_id=sid)
        started = pb.SessionStarted(policy_id="p1", org_id="o1", initial=initial, alerts=alerts, anomalies=anomalies)
        await self.bus.emit(started, session_id=sid)
        jobs = [pb.PlannedJob(job_id=f"{sid}-{o}", type=pb.JOB_TYPE_DATA, object_name=o) for o in counts]
        await self.bus.emit(pb.JobsPlanned(jobs=jobs), session_id=sid)
        for name, c in counts.items():
            await self.bus.emit(pb.JobFinished(outcome=OK, counts=c), session_id=sid, job_id=f"{sid}-{name}")

    def requested(self, session_id: str) -> list[pb.SessionRequested]:
        return [
            e.session_requested
            for e in self.bus.events
            if e.session_id == session_id and e.WhichOneof("payload") == "session_requested"
        ]


@pytest.fixture
def harness() -> Harness:
    return Harness()


async def test_a_mass_delete_warns_prepares_one_draft_and_alerts_once(harness: Harness) -> None:
    settings = protection(["https://hooks.example.com/services/T0/B0/secret"], ["ops@example.com"])
    first = await harness.backup("s1", {"Contact": pb.Counts(received=200, new_versions=200)}, initial=True)
    assert first.status is d.Status.SUCCESS and not first.findings
    quiet = await harness.backup("s2", {"Contact": pb.Counts(received=3, changed=3)}, settings=settings)
    assert quiet.status is d.Status.SUCCESS and not quiet.findings
    assert await harness.projection.alerts.page() == ([], "")  # a plain success alerts no one

    damaged = await harness.backup("s3", {"Contact": pb.Counts(received=60, deleted=60)}, settings=settings)
    assert damaged.status is d.Status.WARNING
    [finding] = damaged.findings
    assert (finding.kind, finding.object_name, finding.count, finding.object_records) == (
        "mass_delete",
        "Contact",
        60,
        200,
    )
    assert "60 records deleted (30.0 % of 200)" in damaged.reason
    assert damaged.baseline_at == quiet.finished_at

    # the draft: a dry-run restore of the Contacts deleted since the previous backup, as of then
    [draft_request] = harness.requested(finding.draft_session_id)
    assert draft_request.kind == rpb.SESSION_KIND_RESTORE and draft_request.draft_of == "s3"
    spec = draft_request.restore
    assert spec.dry_run and spec.source_org_id == spec.target_org_id == "o1"
    assert spec.parents == 0 and spec.children == 0
    assert spec.as_of.ToDatetime(dt.UTC) == quiet.finished_at
    [selection] = spec.selections
    assert selection.object_name == "Contact" and selection.deleted_since.ToDatetime(dt.UTC) == quiet.finished_at
    draft = await harness.app.get(finding.draft_session_id)
    assert draft.kind is d.Kind.RESTORE and draft.draft_of == "s3"

    # the end is announced with its findings; redelivered, it prepares no second draft and raises no second alert
    [finished] = [
        e for e in harness.bus.events if e.session_id == "s3" and e.WhichOneof("payload") == "session_finished"
    ]
    assert [f.kind for f in finished.session_finished.findings] == ["mass_delete"]
    assert finished.session_finished.findings[0].draft_session_id == finding.draft_session_id
    await harness.app.handle_batch([FakeDelivery(e) for e in harness.bus.events if e.session_id == "s3"])
    await harness.app.enforce()
    assert len(harness.requested(finding.draft_session_id)) == 1
    [alert], _ = await harness.projection.alerts.page()
    assert alert.kind == "anomaly" and alert.session_id == "s3" and alert.findings == damaged.findings
    assert [x.shown for x in alert.deliveries] == ["hooks.example.com", "ops@example.com"]

    # delivered in the background: the receiver down at first gets it on a retry
    harness.webhooks.down = True
    assert await harness.dispatcher.deliver_due() == 2
    [(to, subject, body)] = harness.mailer.sent
    assert to == "ops@example.com" and "anomaly" in subject and "60 records deleted" in body
    assert finding.draft_session_id in body
    [alert], _ = await harness.projection.alerts.page()
    webhook = alert.deliveries[0]
    assert (webhook.status, webhook.attempts) == ("pending", 1) and "secret" not in webhook.last_error
    assert await harness.dispatcher.deliver_due() == 0  # not due yet (back-off)
    harness.webhooks.down = False
    harness.clock.advance(dt.timedelta(seconds=1))
    assert await harness.dispatcher.deliver_due() == 1
    [(url, posted)] = harness.webhooks.sent
    assert url.endswith("/secret") and "60 records deleted" in json.loads(posted)["text"]
    [alert], _ = await harness.projection.alerts.page()
    assert [(x.status, x.attempts) for x in alert.deliveries] == [("delivered", 2), ("delivered", 1)]


async def test_sessions_folded_in_one_batch_are_judged_against_each_other(harness: Harness) -> None:
    """A consumer catching up folds many sessions at once: each is judged against those that ended before it."""
    await harness.emit_backup("b1", {"Contact": pb.Counts(new_versions=200)}, initial=True)
    await harness.emit_backup("b2", {"Contact": pb.Counts(changed=2)})
    await harness.emit_backup("b3", {"Contact": pb.Counts(deleted=60)})
    await harness.app.handle_batch([FakeDelivery(e) for e in harness.bus.events])
    damaged = await harness.app.get("b3")
    assert damaged.status is d.Status.WARNING and [f.object_records for f in damaged.findings] == [200]


async def test_with_a_baseline_an_ordinary_delete_rate_is_no_anomaly(harness: Harness) -> None:
    await harness.backup("s0", {"Contact": pb.Counts(new_versions=10_000)}, initial=True)
    for i, n in enumerate([400, 380, 420, 410], start=1):
        assert (await harness.backup(f"s{i}", {"Contact": pb.Counts(deleted=n)})).status is d.Status.SUCCESS
    # 440 is above the 10 % floor of ~8,400 records but within 3 sigma of the baseline (~400 ± 15): no finding
    assert (await harness.backup("s5", {"Contact": pb.Counts(deleted=440)})).status is d.Status.SUCCESS
    caught = await harness.backup("s6", {"Contact": pb.Counts(deleted=1_100)})
    [finding] = caught.findings
    assert finding.baseline_sessions == 5 and 400 < finding.baseline_mean < 420


async def test_a_failed_session_alerts_even_without_findings(harness: Harness) -> None:
    alerts, _ = protection(emails=["ops@example.com"])
    alerts.on.append("failed")
    await harness.bus.emit(pb.SessionRequested(policy_id="p1", org_id="o1"), session_id="f1")
    await harness.bus.emit(pb.SessionStarted(policy_id="p1", org_id="o1", alerts=alerts), session_id="f1")
    await harness.bus.emit(pb.SessionFailed(reason="org o1: login refused"), session_id="f1")
    await harness.deliver()
    [alert], _ = await harness.projection.alerts.page()
    assert alert.kind == "failed" and "login refused" in alert.message


# ---- real receivers --------------------------------------------------------------------------------------


class Receiver(http.server.BaseHTTPRequestHandler):
    bodies: list[bytes] = []
    failures_left = 0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if Receiver.failures_left > 0:
            Receiver.failures_left -= 1
            self.send_response(503)
        else:
            Receiver.bodies.append(body)
            self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    Receiver.bodies, Receiver.failures_left = [], 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook/secret-token"
    finally:
        server.shutdown()
        server.server_close()


class Inbox:
    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.arrived = threading.Event()

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        self.messages.append(envelope.content)  # type: ignore[attr-defined]
        self.arrived.set()
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[int, Inbox]]:
    inbox = Inbox()
    with socket.socket() as probe:  # aiosmtpd's readiness check connects to the port it is given: not 0
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, inbox
    finally:
        controller.stop()


async def test_real_webhook_and_smtp_get_the_numbers_and_a_receiver_down_at_first_gets_a_retry(
    harness: Harness, receiver: str, smtp: tuple[int, Inbox]
) -> None:
    port, inbox = smtp
    harness.dispatcher.webhooks = HttpWebhooks(timeout_s=5)
    harness.dispatcher.mailer = SmtpMailer("127.0.0.1", port, sender="sfvault@example.com")
    settings = protection([receiver], ["ops@example.com"])
    await harness.backup("s1", {"Contact": pb.Counts(new_versions=200)}, initial=True)
    await harness.backup("s2", {"Contact": pb.Counts(changed=1)}, settings=settings)
    Receiver.failures_left = 1  # the receiver answers 503 the first time
    damaged = await harness.backup("s3", {"Contact": pb.Counts(deleted=60)}, settings=settings)
    assert damaged.status is d.Status.WARNING  # the session ended before anything was delivered

    await harness.dispatcher.deliver_due()
    [mail] = [message_from_bytes(m) for m in inbox.messages]
    assert mail["To"] == "ops@example.com" and "anomaly" in mail["Subject"]
    assert "60 records deleted (30.0 % of 200)" in mail.get_payload()
    assert Receiver.bodies == []
    [alert], _ = await harness.projection.alerts.page()
    assert alert.deliveries[0].last_error == "WebhookRefused: the receiver answered HTTP 503"
    harness.clock.advance(dt.timedelta(seconds=1))
    await harness.dispatcher.deliver_due()
    [body] = [json.loads(b) for b in Receiver.bodies]
    assert "60 records deleted (30.0 % of 200)" in body["text"] and "baseline" in body["text"]


async def test_a_hanging_receiver_never_blocks_the_sessions(harness: Harness) -> None:
    class Hanging:
        async def post(self, url: str, body: bytes) -> None:
            await asyncio.Event().wait()

    harness.dispatcher.webhooks = Hanging()
    harness.dispatcher.attempt_timeout_s = 0.2
    stop = asyncio.Event()
    loop = asyncio.create_task(harness.dispatcher.run(stop))
    try:
        settings = protection(["https://slow.example.com/x"])
        settings[0].on.append("warning")
        await harness.backup("s1", {"Contact": pb.Counts(new_versions=200)}, initial=True)
        for i in range(2, 5):  # each ends at once, whatever the receiver does
            ended = await asyncio.wait_for(
                harness.backup(f"s{i}", {"Contact": pb.Counts(deleted=60)}, settings=settings), 2
            )
            assert ended.is_final
    finally:
        stop.set()
        await asyncio.wait_for(loop, 5)
    alerts, _ = await harness.projection.alerts.page()
    assert len(alerts) == 3


# ---- on PostgreSQL and NATS, through gRPC ---------------------------------------------------------------


async def test_on_postgresql_the_history_judges_and_list_alerts_answers(running: Running) -> None:
    alerts, anomalies = protection(["https://hooks.example.com/T/secret"])

    async def backup(sid: str, counts: pb.Counts, initial: bool = False) -> api.Session:
        await running.publish(pb.SessionRequested(policy_id="pp", org_id="o1"), sid)
        started = pb.SessionStarted(policy_id="pp", org_id="o1", initial=initial, alerts=alerts, anomalies=anomalies)
        await running.publish(started, sid)
        await running.publish(
            pb.JobsPlanned(jobs=[pb.PlannedJob(job_id="j", type=pb.JOB_TYPE_DATA, object_name="Contact")]), sid
        )
        await running.publish(pb.JobFinished(outcome=OK, counts=counts), sid, "j")
        return await running.final(sid)

    assert (await backup("p1", pb.Counts(new_versions=200), initial=True)).status == pb.SESSION_STATUS_SUCCESS
    running.clock.advance(dt.timedelta(minutes=1))
    assert (await backup("p2", pb.Counts(changed=2))).status == pb.SESSION_STATUS_SUCCESS
    running.clock.advance(dt.timedelta(minutes=1))
    damaged = await backup("p3", pb.Counts(deleted=60))
    assert damaged.status == pb.SESSION_STATUS_WARNING
    [finding] = damaged.findings
    assert (finding.kind, finding.count, finding.object_records) == ("mass_delete", 60, 200)
    draft = await running.stub.GetSession(api.GetSessionRequest(session_id=finding.draft_session_id))
    assert draft.draft_of == "p3" and draft.restore.dry_run and draft.restore.selections[0].object_name == "Contact"

    listed = await running.stub.ListAlerts(api.ListAlertsRequest(policy_id="pp"))
    [alert] = listed.alerts
    assert alert.kind == "anomaly" and alert.session_id == "p3" and alert.findings[0].count == 60
    assert [x.target for x in alert.deliveries] == ["hooks.example.com"]
    assert "secret" not in str(listed)
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await running.stub.ListAlerts(api.ListAlertsRequest(kind="nonsense"))
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "kind" in bad.value.details()
    async with aio_channel(f"127.0.0.1:{running.port}", token("viewer", "val")) as channel:
        viewer = session_pb2_grpc.SessionServiceStub(channel)
        assert len((await viewer.ListAlerts(api.ListAlertsRequest(session_id="p3"))).alerts) == 1

    # a rebuild from the stream judges the same, and starts no draft of its own
    schema = f"rebuild_{uuid.uuid4().hex[:8]}"
    await service.rebuild(running.settings, schema)
    pool = await db.open_pool(running.settings.database_url)
    try:
        ours = {"p1", "p2", "p3", finding.draft_session_id}
        live, rebuilt = await Projection(pool, "session").snapshot(), await Projection(pool, schema).snapshot()
    finally:
        await pool.close()

    def mine(snapshot: dict[str, list[dict[str, object]]]) -> dict[str, list[dict[str, object]]]:
        return {table: [r for r in rows if r["session_id"] in ours] for table, rows in snapshot.items()}

    assert mine(rebuilt) == mine(live)
    [p3] = [r for r in mine(rebuilt)["sessions"] if r["session_id"] == "p3"]
    assert p3["status"] == "WARNING" and [f["count"] for f in p3["findings"]] == [60]  # type: ignore[attr-defined]


async def test_a_webhook_given_by_reference_is_read_when_sent_and_never_logged(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("SFVAULT_TEST_HOOK", "https://hooks.example.com/services/T0/B0/secret-token")
    settings = protection(["env:SFVAULT_TEST_HOOK", "https://other.example.com/x/secret-token"])
    await harness.backup("s1", {"Contact": pb.Counts(new_versions=200)}, initial=True)
    await harness.backup("s2", {"Contact": pb.Counts(deleted=60)}, settings=settings)
    harness.webhooks.down = True
    with caplog.at_level("DEBUG"):
        await harness.dispatcher.deliver_due()
        harness.webhooks.down = False
        harness.clock.advance(dt.timedelta(seconds=1))
        await harness.dispatcher.deliver_due()
    assert [url for url, _ in harness.webhooks.sent] == [
        "https://hooks.example.com/services/T0/B0/secret-token",
        "https://other.example.com/x/secret-token",
    ]
    assert "receiver down" in caplog.text and "secret-token" not in caplog.text
    [alert], _ = await harness.projection.alerts.page()
    assert [x.shown for x in alert.deliveries] == ["env:…", "other.example.com"]


async def test_a_stall_termination_and_a_spent_budget_alert(harness: Harness) -> None:
    alerts, _ = protection(emails=["ops@example.com"])
    for sid in ("stall", "budget"):
        await harness.bus.emit(pb.SessionRequested(policy_id="p1", org_id="o1"), session_id=sid)
        started = pb.SessionStarted(policy_id="p1", org_id="o1", initial=True, alerts=alerts)
        started.stall_timeout.FromTimedelta(dt.timedelta(hours=1))
        await harness.bus.emit(started, session_id=sid)
        jobs = [pb.PlannedJob(job_id=j, type=pb.JOB_TYPE_DATA, object_name=j) for j in ("Account", "Contact")]
        await harness.bus.emit(pb.JobsPlanned(jobs=jobs), session_id=sid)
        await harness.bus.emit(pb.JobFinished(outcome=OK), session_id=sid, job_id="Account")
    spent = "stopped: the policy's API budget of 500 calls for this run is spent"
    await harness.bus.emit(
        pb.JobFinished(outcome=pb.JOB_OUTCOME_ERROR, message=spent), session_id="budget", job_id="Contact"
    )
    await harness.deliver()
    # the fake bus stamps events with the wall clock: two hours after it, the Contact job of "stall" has stalled
    harness.clock.current = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
    await harness.app.enforce()
    await harness.deliver()
    found = {a.session_id: a for a in (await harness.projection.alerts.page())[0]}
    assert found["stall"].kind == "stalled" and "stall timeout" in found["stall"].message
    assert found["budget"].kind == "budget" and f"1 of 2 jobs completed with errors; Contact: {spent}" in (
        found["budget"].message
    )
    assert [x.shown for x in found["budget"].deliveries] == ["ops@example.com"]
