"""Jobrunner fixtures: one sforg org per module, and per test a real PostgreSQL database, NATS, the storage
service in-process and the jobrunner in-process. Helpers build JobSpecs as discovery would, run them and
reconcile storage against the org's ground truth."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from nats.js.api import DeliverPolicy
from sfvault.discovery.v1 import discovery_pb2 as dpb
from sfvault.events.v1 import events_pb2 as ev
from sfvault.jobs.v1 import jobs_pb2
from sfvault.storage.v1 import storage_pb2 as spb
from sfvault.storage.v1 import storage_pb2_grpc

from services.jobrunner import service as jr_service
from services.jobrunner.config import JobrunnerSettings
from services.platform import events
from services.platform.bus import Bus, BusConfig
from services.sfclient import Credentials, OrgClient
from services.storage import service as st_service
from services.storage.config import StorageSettings
from services.storage.domain import FieldDef, FieldType, ObjectSchema, RecordCanonicalizer
from sforg.testing import Admin, running_org

SECRET_ENV = "SFVAULT_SECRET_TEST_SFORG"  # an org secret: the allowed prefix


@pytest.fixture(scope="module")
def org(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with running_org(tmp_path_factory.mktemp("org"), scale="tiny", seed=11) as info:
        os.environ[SECRET_ENV] = info["client_secret"]
        yield info


@pytest.fixture(scope="module")
def admin(org: dict[str, Any]) -> Admin:
    return Admin(org)


def connection(org: dict[str, Any]) -> dpb.OrgConnection:
    return dpb.OrgConnection(
        login_url=org["login_url"],
        auth_flow=dpb.AUTH_FLOW_CLIENT_CREDENTIALS,
        client_id=org["client_id"],
        client_secret_ref=f"env:{SECRET_ENV}",
        ca_bundle_ref="file:" + org["ca_file"],
        api_version=org["api_version"],
    )


def org_client(org: dict[str, Any]) -> OrgClient:
    return OrgClient(
        Credentials(
            login_url=org["login_url"],
            auth_flow="client_credentials",
            client_id=org["client_id"],
            client_secret_ref=f"env:{SECRET_ENV}",
            ca_bundle_ref="file:" + org["ca_file"],
            api_version=org["api_version"],
        )
    )


def data_spec(
    org: dict[str, Any],
    object_name: str,
    session_id: str,
    job_id: str,
    *,
    full: bool = False,
    reconcile_every: dt.timedelta | None = None,
    policy_id: str = "p1",
    api_call_cap: int = 0,
) -> jobs_pb2.JobSpec:
    """A data JobSpec built from the object's describe, as discovery builds it."""
    client = org_client(org)
    describe = client.call(lambda sf: getattr(sf, object_name).describe())
    names = {f["name"] for f in describe["fields"]}
    fields = [
        jobs_pb2.FieldSpec(
            name=f["name"],
            sf_type=f["type"],
            calculated=bool(f.get("calculated")),
            nillable=bool(f.get("nillable")),
            label=f.get("label", ""),
        )
        for f in describe["fields"]
    ]
    data = jobs_pb2.DataJob(
        fields=fields,
        key_prefix=describe.get("keyPrefix") or "",
        full=full,
        bulk_supported=object_name not in ("Attachment",),
        queryall_supported="IsDeleted" in names,
        has_system_modstamp="SystemModstamp" in names,
        replicateable=bool(describe.get("replicateable")),
        describe_json=json.dumps(describe).encode(),
    )
    if reconcile_every is not None:
        d = Duration()
        d.FromTimedelta(reconcile_every)
        data.reconcile_every.CopyFrom(d)
    return jobs_pb2.JobSpec(
        session_id=session_id,
        job_id=job_id,
        type=ev.JOB_TYPE_DATA,
        org_id="o1",
        policy_id=policy_id,
        object_name=object_name,
        fields=[f.name for f in fields],
        connection=connection(org),
        salesforce_org_id=org["org_id"],
        instance_url=org["instance_url"],
        data=data,
        api_call_cap=api_call_cap,
    )


def file_spec(org: dict[str, Any], session_id: str, job_id: str) -> jobs_pb2.JobSpec:
    return jobs_pb2.JobSpec(
        session_id=session_id,
        job_id=job_id,
        type=ev.JOB_TYPE_FILE,
        org_id="o1",
        policy_id="p1",
        connection=connection(org),
        salesforce_org_id=org["org_id"],
        instance_url=org["instance_url"],
        file=jobs_pb2.FileJob(content_versions=True, attachments=True, documents=True),
    )


def metadata_spec(org: dict[str, Any], session_id: str, job_id: str) -> jobs_pb2.JobSpec:
    return jobs_pb2.JobSpec(
        session_id=session_id,
        job_id=job_id,
        type=ev.JOB_TYPE_METADATA,
        org_id="o1",
        policy_id="p1",
        connection=connection(org),
        salesforce_org_id=org["org_id"],
        instance_url=org["instance_url"],
        metadata=jobs_pb2.MetadataJob(),
    )


@dataclass
class Stack:
    """Storage and one or more jobrunners on a fresh database and NATS."""

    database_url: str
    nats_url: str
    namespace: str
    tmp: Path
    storage: Any = None
    stub: Any = None
    channel: Any = None
    bus: Bus | None = None
    runners: list[Any] = field(default_factory=list)
    finished: dict[tuple[str, str], ev.JobFinished] = field(default_factory=dict)
    started: list[tuple[str, str]] = field(default_factory=list)
    chunks: dict[tuple[str, str], set[int]] = field(default_factory=dict)
    chunk_counts: dict[tuple[str, str], dict[int, ev.Counts]] = field(default_factory=dict)  # by chunk_seq
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def jobrunner_settings(self, **overrides: Any) -> JobrunnerSettings:
        values: dict[str, Any] = {
            "database_url": self.database_url,
            "nats_url": self.nats_url,
            "bus_namespace": self.namespace,
            "jobrunner_port": 0,
            "storage_addr": f"127.0.0.1:{self.storage.port}",
            "jobrunner_concurrency": 2,
            "jobrunner_heartbeat_s": 1.0,
            "jobrunner_ack_wait_s": 30.0,
        }
        values.update(overrides)
        return JobrunnerSettings(**values)

    async def start_jobrunner(self, **overrides: Any) -> Any:
        running = await jr_service.start(self.jobrunner_settings(**overrides))
        self.runners.append(running)
        return running

    async def enqueue(self, spec: jobs_pb2.JobSpec) -> None:
        assert self.bus is not None
        await self.bus.enqueue_job(spec)

    async def run(self, spec: jobs_pb2.JobSpec, within: float = 120.0) -> ev.JobFinished:
        await self.enqueue(spec)
        return await self.wait_finished(spec.session_id, spec.job_id, within)

    async def wait_for(self, condition: Any, within: float = 120.0) -> None:
        """Wait until condition() holds; re-checked whenever an event arrives, and at least every 0.2 s for
        conditions on state that no event announces."""

        async def watch() -> None:
            while not condition():
                self.changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.changed.wait(), 0.2)

        await asyncio.wait_for(watch(), within)

    async def wait_finished(self, session_id: str, job_id: str, within: float = 120.0) -> ev.JobFinished:
        await self.wait_for(lambda: (session_id, job_id) in self.finished, within)
        return self.finished[(session_id, job_id)]

    async def _collect(self, msg: Any) -> None:
        env = events.decode(msg.data)
        kind = events.event_type(env)
        if kind == "JobFinished":
            self.finished.setdefault((env.session_id, env.job_id), env.job_finished)
        elif kind == "JobStarted":
            self.started.append((env.session_id, env.job_id))
        elif kind == "ChunkUploaded":
            self.chunks.setdefault((env.session_id, env.job_id), set()).add(env.chunk_uploaded.chunk_seq)
            counts = self.chunk_counts.setdefault((env.session_id, env.job_id), {})
            counts[env.chunk_uploaded.chunk_seq] = env.chunk_uploaded.counts
        self.changed.set()

    async def export(self, org_id: str, object_name: str) -> dict[str, dict[str, Any]]:
        req = spb.ExportObjectAsOfRequest(
            org_id=org_id, object_name=object_name, format=spb.EXPORT_FORMAT_JSONL, include_deleted=True
        )
        text = b""
        try:
            async for piece in self.stub.ExportObjectAsOf(req):
                text += piece.data
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return {}
            raise
        out = {}
        for line in text.splitlines():
            if line.strip():
                rec = json.loads(line)
                out[rec["Id"]] = rec
        return out


@pytest.fixture
async def stack(database_url: str, nats_url: str, bus_namespace: str, tmp_path: Path) -> AsyncIterator[Stack]:
    st = Stack(database_url, nats_url, bus_namespace, tmp_path)
    st.storage = await st_service.start(
        StorageSettings(
            database_url=database_url,
            nats_url=nats_url,
            bus_namespace=bus_namespace,
            storage_port=0,
            file_repository=f"file://{tmp_path / 'files'}",
            auth_disabled=True,  # in-process here; tests/e2e run storage with authentication
            # every canonical record the jobrunner sends is canonicalised again by storage: both must agree
            storage_canonical_check_every=1,
        )
    )
    st.channel = grpc.aio.insecure_channel(
        f"127.0.0.1:{st.storage.port}", options=[("grpc.max_receive_message_length", 64 << 20)]
    )
    st.stub = storage_pb2_grpc.StorageServiceStub(st.channel)
    st.bus = await Bus.connect(BusConfig(nats_url, namespace=bus_namespace), producer="test")
    await st.bus.js.subscribe(
        st.bus.config.events_subject("*.JobFinished"),
        cb=st._collect,
        ordered_consumer=True,
        deliver_policy=DeliverPolicy.ALL,
    )
    await st.bus.js.subscribe(
        st.bus.config.events_subject("*.ChunkUploaded"),
        cb=st._collect,
        ordered_consumer=True,
        deliver_policy=DeliverPolicy.ALL,
    )
    await st.bus.js.subscribe(
        st.bus.config.events_subject("*.JobStarted"),
        cb=st._collect,
        ordered_consumer=True,
        deliver_policy=DeliverPolicy.ALL,
    )
    try:
        yield st
    finally:
        for running in st.runners:
            await running.stop(5)
        await st.bus.close()
        await st.channel.close()
        await st.storage.stop(1)


# ---------------------------------------------------------------- reconciliation against ground truth


@dataclass
class Reconciliation:
    missing: list[str]
    stale: list[str]
    phantom: list[str]
    wrong_state: list[str]

    @property
    def clean(self) -> bool:
        return not (self.missing or self.stale or self.phantom or self.wrong_state)

    def __str__(self) -> str:
        return (
            f"missing={self.missing[:5]} ({len(self.missing)}) stale={self.stale[:5]} ({len(self.stale)}) "
            f"phantom={self.phantom[:5]} ({len(self.phantom)}) wrong_state={self.wrong_state[:5]}"
        )


_TYPES = {
    "id": FieldType.ID,
    "reference": FieldType.ID,
    "boolean": FieldType.BOOLEAN,
    "int": FieldType.INTEGER,
    "double": FieldType.DOUBLE,
    "currency": FieldType.DOUBLE,
    "percent": FieldType.DOUBLE,
    "date": FieldType.DATE,
    "datetime": FieldType.DATETIME,
    "time": FieldType.TIME,
    "address": FieldType.COMPOUND,
    "location": FieldType.COMPOUND,
}


def reconcile(
    truth: dict[str, Any], stored: dict[str, dict[str, Any]], spec: jobs_pb2.JobSpec, *, formulas: bool = True
) -> Reconciliation:
    """Every live org record stored live with equal values, every recycle-bin record stored soft-deleted, and
    nothing else stored live or soft."""
    obj = spec.object_name
    fields = [f for f in spec.data.fields if f.sf_type != "base64" and (formulas or not f.calculated)]
    schema = ObjectSchema(
        obj, tuple(FieldDef(f.name, _TYPES.get(f.sf_type, FieldType.STRING), f.calculated) for f in fields)
    )
    canon = RecordCanonicalizer(schema)
    # storage keeps an audit-only change (SystemModstamp, LastModifiedDate) without a new version, so the
    # latest version may carry older audit values than the org: they are not compared
    names = {f.name for f in fields} - {"SystemModstamp", "LastModifiedDate"}
    live = truth["objects"].get(obj, {})
    binned = set(truth["recycle_bin"].get(obj, []))
    missing, stale, phantom, wrong = [], [], [], []
    for rid, values in live.items():
        got = stored.get(rid)
        if got is None:
            missing.append(rid)
            continue
        if got.get("_deleted"):
            wrong.append(rid)
            continue
        want = json.loads(canon.canonicalize({k: v for k, v in values.items() if k in names}).values_json)
        have = {k: v for k, v in got.items() if k in names}
        if want != have:
            diff = sorted(k for k in set(want) | set(have) if want.get(k) != have.get(k))
            stale.append(f"{rid}:{','.join(diff)}:{[want.get(k) for k in diff]}!={[have.get(k) for k in diff]}")
    for rid in binned:
        got = stored.get(rid)
        if got is None:
            missing.append(rid)
        elif got.get("_deleted") != "soft":
            wrong.append(rid)
    for rid in stored:
        if rid not in live and rid not in binned:
            phantom.append(rid)
    return Reconciliation(missing, stale, phantom, wrong)
