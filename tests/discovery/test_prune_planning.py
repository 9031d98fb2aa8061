"""Prune sessions planned by discovery (issue 18, keep): the retention resolved from the org's policies (the most
keeping of them), one prune job carrying it and dry_run, nothing to prune -> no job and the reason; a restore
draft's point pinned in storage when it is planned. On the pure rules and the planner with in-memory fakes."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence

import pytest
from sfvault.events.v1 import events_pb2 as ev
from sfvault.restore.v1 import restore_pb2 as rpb

from services.discovery import domain as d
from tests.discovery.fakes import FakeDiscoveryStore
from tests.discovery.test_restore_planning import NOW, PROD, World, published, restore_request
from tests.discovery.test_restore_planning import world as world


def policy(pid: str, days: int = 0, versions: int = 0, latest: bool = False, org: str = "prod") -> d.Policy:
    return d.Policy(policy_id=pid, org_id=org, retention=d.RetentionSettings(days, versions, latest))


@pytest.mark.parametrize(
    ("policies", "expected"),
    [
        ([], None),
        ([policy("a", 7)], d.RetentionSettings(7, 0, False)),
        ([policy("a", 7, 3, True), policy("b", 30, 5, True)], d.RetentionSettings(30, 5, True)),
        ([policy("a", 7, 3, True), policy("b", 30, 5)], d.RetentionSettings(30, 5, False)),
        ([policy("a", 7), policy("b")], None),  # b keeps everything: forever wins
        ([policy("a", 7, 3), policy("b", 0, 5)], d.RetentionSettings(0, 5, False)),  # days: forever wins
    ],
)
def test_the_most_keeping_of_the_policies_retention_wins(
    policies: list[d.Policy], expected: d.RetentionSettings | None
) -> None:
    assert d.prune_retention(policies) == expected


def prune_request(dry_run: bool = False, org: str = "prod") -> ev.SessionRequested:
    return ev.SessionRequested(org_id=org, kind=rpb.SESSION_KIND_PRUNE, dry_run=dry_run, requested_by="ada")


async def _set_policies(store: FakeDiscoveryStore, policies: Sequence[d.Policy]) -> None:
    for p in await store.list_policies("prod"):
        await store.delete_policy(p.policy_id)
    for p in policies:
        await store.create_policy(p)


async def test_a_prune_is_one_job_with_the_org_retention_and_dry_run(world: World) -> None:
    await _set_policies(world.store, [policy("a", 7, 0), policy("b", 14, 0, True)])
    record = await world.planner.plan("p1", prune_request(dry_run=True))
    assert record.planned and record.kind is d.SessionKind.PRUNE and record.policy_id == ""
    started, planned = published(world.bus, "p1")
    assert started.session_started.kind == rpb.SESSION_KIND_PRUNE and started.session_started.org_id == "prod"
    assert not started.session_started.HasField("restore")
    assert [(j.job_id, j.type) for j in planned.jobs_planned.jobs] == [("prune", ev.JOB_TYPE_PRUNE)]
    [job] = world.bus.jobs
    assert (job.session_id, job.type, job.org_id, job.salesforce_org_id) == (
        "p1",
        ev.JOB_TYPE_PRUNE,
        "prod",
        PROD.salesforce_org_id,
    )
    assert (job.prune.retention.days, job.prune.retention.versions, job.prune.retention.prune_latest) == (14, 0, False)
    assert job.prune.dry_run and job.connection.client_id == "id" and world.logins == []  # never logged in to
    await world.planner.plan("p1", prune_request(dry_run=True))  # redelivered: decided once
    assert len(world.bus.jobs) == 1


async def test_nothing_to_prune_plans_no_job_and_says_why(world: World) -> None:
    await _set_policies(world.store, [policy("a", 7), policy("forever")])
    record = await world.planner.plan("p1", prune_request())
    assert record.planned and world.bus.jobs == []
    _started, planned = published(world.bus, "p1")
    assert list(planned.jobs_planned.jobs) == []
    assert list(planned.jobs_planned.warnings) == [
        "nothing to prune: policy forever of org prod keeps every restore point (no retention set)"
    ]
    await world.store.create_policy(policy("u", 7, org="uat"))
    never = await world.planner.plan("p2", prune_request(org="uat"))
    assert never.warnings == ("nothing to prune: org uat was never backed up",)
    unknown = await world.planner.plan("p3", prune_request(org="nowhere"))
    assert not unknown.planned and unknown.failure_reason == "org 'nowhere' does not exist"


async def test_a_restore_draft_pins_its_point_when_planned(world: World) -> None:
    pins: list[tuple[str, dt.datetime, list[str], str, str]] = []

    async def pin(org: str, at: dt.datetime, objects: Sequence[str], reason: str, session_id: str) -> None:
        pins.append((org, at, list(objects), reason, session_id))

    world.planner = dataclasses.replace(world.planner, pin_point=pin)
    as_of = NOW - dt.timedelta(days=1)
    draft = restore_request(dry_run=True)
    draft.draft_of = "s3"
    draft.restore.as_of.FromDatetime(as_of)
    assert (await world.planner.plan("d1", draft)).planned
    assert pins == [(PROD.salesforce_org_id, as_of, ["Account"], "restore draft of session s3", "d1")]
    await world.planner.plan("r1", restore_request(dry_run=True))  # not a draft: nothing pinned
    assert len(pins) == 1

    async def away(*_: object) -> None:
        raise ConnectionError("storage away")

    world.planner = dataclasses.replace(world.planner, pin_point=away)
    draft2 = restore_request(dry_run=True)
    draft2.draft_of = "s4"
    planned = await world.planner.plan("d2", draft2)
    assert planned.planned and "could not be pinned" in planned.warnings[0]  # a warning, never a failure
