"""Helpers of the restore end-to-end tests (test_restore.py, test_restore_chaos.py): backups and restores run
as sessions through the whole stack, the damage done to an org between them (cascade deletes, purges,
changes), and the checks of an org after a restore against sforg's ground truth taken before the damage."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import grpc
import requests
from google.protobuf.timestamp_pb2 import Timestamp
from sfvault.events.v1 import events_pb2 as pb
from sfvault.restore.v1 import restore_pb2 as rs
from sfvault.session.v1 import session_pb2 as api
from sfvault.storage.v1 import storage_pb2 as st

from services.cli.client import Clients
from sforg.testing import Admin
from tests.e2e.reconcile import same

RUNNING = (pb.SESSION_STATUS_PENDING, pb.SESSION_STATUS_RUNNING, pb.SESSION_STATUS_UNSPECIFIED)
STATES = ("created", "updated", "undeleted", "skipped", "failed")
# the family an Account takes with it into the recycle bin (Salesforce's cascade), by their AccountId
FAMILY = ("Contact", "Opportunity", "Case")
# never compared: written by the org itself, or not writable
AUDIT = {
    "Id",
    "IsDeleted",
    "CreatedDate",
    "CreatedById",
    "LastModifiedDate",
    "LastModifiedById",
    "SystemModstamp",
    "LastActivityDate",
    "LastViewedDate",
    "LastReferencedDate",
    "MasterRecordId",
}
Moment = Callable[[api.Session], bool]


def timestamp(when: dt.datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(when.astimezone(dt.UTC).replace(tzinfo=None))
    return ts


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# ---------------------------------------------------------------- sessions


def watch(
    c: Clients,
    session_id: str,
    *,
    timeout: float = 300,
    outages: list[tuple[Moment, str, Callable[[], None]]] | None = None,
) -> tuple[api.Session, list[str]]:
    """Watch a session to its end; each outage acts once, at the first update where its moment holds (or when
    the session ends first). The watch is opened again when the session service was cut."""
    pending = list(outages or [])
    done: list[str] = []
    while True:
        try:
            request = api.WatchSessionRequest(session_id=session_id)
            for update in c.session.WatchSession(request, timeout=timeout, wait_for_ready=True):
                for outage in list(pending):
                    moment, name, act = outage
                    if moment(update) or update.status not in RUNNING:
                        pending.remove(outage)
                        act()
                        done.append(name)
                if update.status not in RUNNING and not pending:
                    return update, done
        except grpc.RpcError as exc:  # the session service itself was killed or restarted: watch again
            if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN):
                raise


def backup(c: Clients, *, policy_id: str = "p1", org_id: str = "o1") -> api.Session:
    started = c.session.StartSession(api.StartSessionRequest(policy_id=policy_id, org_id=org_id, trigger="test"))
    final, _ = watch(c, started.session_id, timeout=600)
    assert final.status == pb.SESSION_STATUS_SUCCESS, f"backup {final.session_id}: {final.reason}"
    return final


def start_restore(c: Clients, spec: rs.RestoreSpec, *, kind: int = rs.SESSION_KIND_RESTORE, org_id: str = "o1") -> str:
    request = api.StartSessionRequest(org_id=org_id, trigger="test", kind=kind, restore=spec)  # type: ignore[arg-type]
    return str(c.session.StartSession(request).session_id)


def restore(
    c: Clients,
    spec: rs.RestoreSpec,
    *,
    kind: int = rs.SESSION_KIND_RESTORE,
    timeout: float = 300,
    outages: list[tuple[Moment, str, Callable[[], None]]] | None = None,
) -> api.Session:
    """A restore session started and watched to its end."""
    final, _ = watch(c, start_restore(c, spec, kind=kind), timeout=timeout, outages=outages)
    return final


def counts(session: api.Session) -> dict[str, dict[str, int]]:
    """Per object, the session's count of records per state (created, updated, undeleted, skipped, failed)."""
    return {o.object_name: {s: int(getattr(o, s)) for s in STATES} for o in session.restore_counts}


def totals(session: api.Session) -> dict[str, int]:
    per = counts(session)
    return {s: sum(c[s] for c in per.values()) for s in STATES}


def outcomes(c: Clients, session_id: str, state: int = rs.RECORD_STATE_UNSPECIFIED) -> list[rs.RecordOutcome]:
    """Every per-record outcome of a restore session (paged through)."""
    found: list[rs.RecordOutcome] = []
    token = ""
    while True:
        page = c.storage.ListRestoreRecords(
            st.ListRestoreRecordsRequest(session_id=session_id, state=state, page_size=5000, page_token=token)  # type: ignore[arg-type]
        )
        found.extend(page.outcomes)
        token = page.next_page_token
        if not token:
            return found


def id_map(c: Clients, source_org: str, target_org: str) -> dict[str, str]:
    """Storage's persisted Id map of a (source 00D, target 00D) pair: backup Id -> target Id."""
    response = c.storage.GetIdMap(st.GetIdMapRequest(source_org_id=source_org, target_org_id=target_org))
    return dict(response.ids)


def describe_session(s: api.Session, c: Clients | None = None) -> str:
    """A session for an assertion's message (counts, verification, its jobs' messages; never values)."""
    v = s.verification
    text = (
        f"{s.session_id} {pb.SessionStatus.Name(s.status)} reason={s.reason!r} counts={counts(s)} "
        f"verification(done={v.done}, verified={v.verified}, matching={v.matching}, differing={v.differing},"
        f" samples={list(v.samples)[:5]})"
    )
    if c is not None:
        for job in c.session.ListJobs(api.ListJobsRequest(session_id=s.session_id)).jobs:
            state, outcome = api.JobState.Name(job.state), pb.JobOutcome.Name(job.outcome)
            text += f"\n  job {job.job_id} {state} {outcome}: {job.message[:500]}"
        failed = c.storage.ListRestoreRecords(
            st.ListRestoreRecordsRequest(session_id=s.session_id, state=rs.RECORD_STATE_FAILED, page_size=5)
        ).outcomes
        for o in failed:
            text += f"\n  failed {o.object_name} {o.source_id}: {o.error_code} {o.message[:200]} {o.note[:100]}"
    return text


# ---------------------------------------------------------------- the org


class OrgRest:
    """Plain REST calls to an sforg org (describe), logged in with its client credentials."""

    def __init__(self, info: dict[str, Any]) -> None:
        self.info = info
        self.http = requests.Session()
        self.ca = info["ca_file"]  # per request: REQUESTS_CA_BUNDLE would win over the session's verify
        token = self.http.post(
            info["login_url"].rstrip("/") + "/services/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_id": info["client_id"],
                "client_secret": info["client_secret"],
            },
            timeout=30,
            verify=self.ca,
        )
        token.raise_for_status()
        body = token.json()
        self.base = body["instance_url"].rstrip("/") + f"/services/data/v{info['api_version']}"
        self.http.headers["Authorization"] = f"Bearer {body['access_token']}"

    def describe(self, obj: str) -> dict[str, Any]:
        response = self.http.get(f"{self.base}/sobjects/{obj}/describe", timeout=30, verify=self.ca)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def close(self) -> None:
        self.http.close()


@dataclass(frozen=True)
class Fields:
    """The fields of an object a restore writes and is compared on (createable and updateable, not computed,
    not audit), and its reference fields among them."""

    compared: tuple[str, ...]
    references: frozenset[str]

    @classmethod
    def of(cls, describe: dict[str, Any]) -> Fields:
        compared = [
            f["name"]
            for f in describe["fields"]
            if f.get("createable")
            and f.get("updateable")
            and not f.get("calculated")
            and not f.get("autoNumber")
            and f["type"] not in ("id", "base64", "address", "location")
            and f["name"] not in AUDIT
        ]
        references = frozenset(
            f["name"] for f in describe["fields"] if f["type"] == "reference" and f["name"] in compared
        )
        return cls(tuple(compared), references)


def fields_of(info: dict[str, Any], objects: Iterable[str]) -> dict[str, Fields]:
    rest = OrgRest(info)
    try:
        return {o: Fields.of(rest.describe(o)) for o in objects}
    finally:
        rest.close()


def active_users(truth: dict[str, Any]) -> set[str]:
    return {uid for uid, u in truth["objects"].get("User", {}).items() if u.get("IsActive") in (True, "true", None)}


def deleted_ids(truth: dict[str, Any], obj: str) -> set[str]:
    """Ids of `obj` not live in the org: in the recycle bin, hard-deleted or purged."""
    return (
        set(truth["recycle_bin"].get(obj, []))
        | set(truth["hard_deleted"].get(obj, []))
        | set(truth["purged"].get(obj, []))
    )


# ---------------------------------------------------------------- the damage


@dataclass
class Damage:
    """What was done to the org after the backup: Accounts deleted with their family (cascade), some of
    those purged from the recycle bin, other records changed."""

    accounts: list[str]
    family: dict[str, set[str]] = field(default_factory=dict)  # object -> deleted Ids (Accounts included)
    purged: dict[str, set[str]] = field(default_factory=dict)  # object -> Ids purged from the recycle bin
    changed: dict[str, set[str]] = field(default_factory=dict)  # object -> Ids changed (outside the family)

    def binned(self, obj: str) -> set[str]:
        """Deleted and still in the recycle bin: to be undeleted, keeping their Ids."""
        return self.family.get(obj, set()) - self.purged.get(obj, set())

    def all_gone(self) -> set[str]:
        return {i for ids in self.purged.values() for i in ids}


def family_of(truth: dict[str, Any], accounts: Iterable[str]) -> dict[str, set[str]]:
    wanted = set(accounts)
    family = {"Account": set(wanted)}
    for obj in FAMILY:
        family[obj] = {rid for rid, v in truth["objects"].get(obj, {}).items() if v.get("AccountId") in wanted}
    return family


def do_damage(admin: Admin, truth: dict[str, Any], *, accounts: int, purge: int, changes: int, seed: int) -> Damage:
    """Delete `accounts` Accounts through the org's API delete, their Cases first (the cascade takes their
    Contacts and Opportunities into the recycle bin), purge the first `purge` of them with their family, and
    change `changes` other records of Account, Contact and Opportunity."""
    rng = random.Random(seed)
    pool = sorted(truth["objects"]["Account"])
    chosen = sorted(rng.sample(pool[: len(pool) // 2], accounts))  # the second half stays for other tests
    damage = Damage(accounts=chosen, family=family_of(truth, chosen))
    # an Account with Cases cannot be deleted (restrictedDelete, as in a real org): the Cases go first, as a
    # user deletes them
    if damage.family["Case"]:
        admin.soft_delete("Case", ids=sorted(damage.family["Case"]))
    admin.soft_delete("Account", ids=chosen)
    after = admin.ground_truth(objects=["Account", *FAMILY], values=False)
    for obj, ids in damage.family.items():
        in_bin = ids & set(after["recycle_bin"].get(obj, []))
        assert in_bin == ids, (
            f"sforg: deleting {len(chosen)} Accounts did not take {len(ids - in_bin)} of their {obj} records"
            f" into the recycle bin (cascade), e.g. {sorted(ids - in_bin)[:3]}"
        )
    purged_accounts = set(chosen[:purge])
    damage.purged = family_of(truth, purged_accounts)
    for obj in reversed(["Account", *FAMILY]):  # children first, as a purge of the family would
        gone = sorted(damage.purged[obj])
        if gone:
            admin.hard_delete(obj, ids=gone)
    in_family = {i for ids in damage.family.values() for i in ids}
    per = max(1, changes // 3)
    for obj in ("Account", "Contact", "Opportunity"):
        candidates = sorted(set(truth["objects"][obj]) - in_family)
        picked = sorted(rng.sample(candidates, min(per, len(candidates))))
        admin.update(obj, ids=picked, seed=seed)
        damage.changed[obj] = set(picked)
    return damage


# ---------------------------------------------------------------- the checks


def _expected(
    values: dict[str, Any], fields: Fields, ids: dict[str, str], live: set[str] | None = None
) -> dict[str, Any]:
    """A backed-up record's compared values as they should be in the org: references through the Id map; a
    reference to a record that was not live at the backup (`live`: the Ids that were) left empty."""
    out = {}
    for name in fields.compared:
        v = values.get(name)
        if name in fields.references and isinstance(v, str):
            v = ids.get(v, v if live is None or v in live else EitherEmpty(v))
        out[name] = v
    return out


@dataclass(frozen=True)
class EitherEmpty:
    """A reference to a record not live at the backup: the restore leaves it empty when it writes it, an
    undeleted record may keep it."""

    value: str


def live_ids(truth: dict[str, Any]) -> set[str]:
    return {rid for records in truth["objects"].values() for rid in records}


def differing(expected: dict[str, Any], actual: dict[str, Any], fields: Fields, users: set[str]) -> list[str]:
    names = []
    for name in fields.compared:
        want = expected.get(name)
        if name == "OwnerId" and want not in users:
            continue  # an inactive or unknown owner falls back to another user, by design
        if isinstance(want, EitherEmpty):
            if actual.get(name) in (None, "") or same(want.value, actual.get(name)):
                continue
            want = want.value
        if not same(want, actual.get(name)):
            names.append(name)
    return names


def check_restored(
    before: dict[str, Any],
    after: dict[str, Any],
    damage: Damage,
    ids: dict[str, str],
    fields: dict[str, Fields],
) -> list[str]:
    """Problems (no values, Ids and field names only) of the org after a restore of the damage: every record
    of the family back (undeleted ones with their Id, purged ones created under a new Id mapped in `ids`,
    their lookups pointing at the right new parents), every changed record equal to the backup again."""
    problems: list[str] = []
    users, was_live = active_users(before), live_ids(before)
    for obj, family in damage.family.items():
        live = after["objects"].get(obj, {})
        for rid in sorted(family):
            backed_up = before["objects"][obj][rid]
            if rid in damage.purged.get(obj, set()):
                new = ids.get(rid)
                if new is None:
                    problems.append(f"{obj} {rid}: purged, not in the Id map")
                    continue
                if new == rid or new not in live:
                    problems.append(f"{obj} {rid}: mapped to {new}, not a new live record")
                    continue
                actual = live[new]
            else:
                if rid in ids:
                    problems.append(f"{obj} {rid}: was in the recycle bin, created again as {ids[rid]}")
                if rid not in live:
                    problems.append(f"{obj} {rid}: in the recycle bin, not undeleted")
                    continue
                actual = live[rid]
            expected = _expected(backed_up, fields[obj], ids, was_live)
            diff = differing(expected, actual, fields[obj], users)
            if diff:
                refs = {
                    n: (backed_up.get(n), expected.get(n), actual.get(n)) for n in diff if n in fields[obj].references
                }
                problems.append(f"{obj} {rid}: differs on {diff} (references: backup, expected, org: {refs})")
    for obj, changed in damage.changed.items():
        live = after["objects"].get(obj, {})
        for rid in sorted(changed):
            if rid not in live:
                problems.append(f"{obj} {rid}: changed, now gone")
                continue
            expected = _expected(before["objects"][obj][rid], fields[obj], ids, was_live)
            diff = differing(expected, live[rid], fields[obj], users)
            if diff:
                problems.append(f"{obj} {rid}: changed, still differs on {diff}")
    return problems


def duplicates(
    before: dict[str, Any], after: dict[str, Any], obj: str, fields: Fields, ids: dict[str, str], only: set[str]
) -> list[str]:
    """Records created twice: backed-up records of `obj` (those of `only`) that two live records of the org
    both equal (on the compared fields but the owner, references through the Id map)."""
    by_values: dict[tuple[str, ...], list[str]] = {}
    was_live = live_ids(before)
    names = [n for n in fields.compared if n != "OwnerId"]
    for rid, values in after["objects"].get(obj, {}).items():
        key = tuple(repr(_norm(values.get(n))) for n in names)
        by_values.setdefault(key, []).append(rid)
    found = []
    for rid, values in before["objects"].get(obj, {}).items():
        if rid not in only:
            continue
        expected = _expected(values, fields, ids, was_live)
        key = tuple(repr(_norm(expected.get(n))) for n in names)
        twins = by_values.get(key, [])
        if len(twins) > 1:
            found.append(f"{obj} {rid}: {len(twins)} live records {sorted(twins)[:3]}")
    return found


def _norm(value: Any) -> Any:
    """A value in one form for grouping (what `same` treats as equal, for the types the org renders)."""
    if isinstance(value, EitherEmpty) or value in (None, ""):
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and len(value) >= 19 and value[4] == "-" and value[10] == "T":
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("+0000", "+00:00"))
        return parsed.astimezone(dt.UTC).isoformat()
    return value
