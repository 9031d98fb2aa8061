"""Restore end to end, every service a separate process, on a tiny emulated org: a backup, then damage
(Accounts deleted with their family by the cascade, half of them purged from the recycle bin, other records
changed), then a restore of "deleted since T" and "changed since T" (files too) as of before the damage —
previewed first (the same counts, zero writes by sforg's own accounting), then run: every record of every
object back as backed up (undeleted ones with their Ids, purged ones created with every lookup on the right
new parent), each in the state it was in at the start, verified, and a second run all Skipped with no record
created twice. A restore into a second sforg with masking lets no original value of a masked field reach it,
in that field or any other. Metadata: three changed Apex classes and a custom field deployed back to their
earlier version (as the org holds and describes them); a deploy failing validation deploys nothing and gives
the org's reason. test_restore_scale.py runs the first scenario at the issue's scale (make test-long)."""

from __future__ import annotations

import html
import io
import json
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sfvault.discovery.v1 import discovery_pb2 as disc
from sfvault.events.v1 import events_pb2 as pb
from sfvault.restore.v1 import restore_pb2 as rs
from sfvault.session.v1 import session_pb2 as api
from sfvault.storage.v1 import storage_pb2 as st

from devstack.localstack import Stack, local_stack
from services.cli import local
from services.cli.client import Clients
from services.cli.demo import secrets_dir
from services.jobrunner.salesforce import MD_NS
from sforg.catalogue import build_catalogue
from sforg.testing import Admin, ca_bundle, running_org, simple_salesforce
from tests.e2e.conftest import register
from tests.e2e.reconcile import same
from tests.e2e.restore_scenario import (
    FAMILY,
    Damage,
    Fields,
    OrgRest,
    backup,
    check_restored,
    counts,
    describe_session,
    do_damage,
    fields_of,
    id_map,
    now,
    outcomes,
    restore,
    timestamp,
    totals,
)

pytestmark = pytest.mark.e2e
SFVAULT = str(Path(sys.executable).parent / "sfvault")
BROKEN_CLASS = "InvoiceService0"  # its backed-up version does not compile (see `scenario`)


@pytest.fixture(scope="module")
def stack(stack_home: Path, stack_database: str) -> Iterator[Stack]:
    """A tiny org (about 1,000 records) keeps the restores of this module within a minute; the database is one of
    the run's PostgreSQL server (no initdb of its own)."""
    env = {
        **local.prepare_auth(stack_home),
        "SFVAULT_STORAGE_CANONICAL_CHECK_EVERY": "1",
        "SFVAULT_SECRETS_DIR": str(secrets_dir(stack_home)),
    }
    with local_stack(stack_home, with_org="tiny", org_seed=7, extra_env=env, database_url=stack_database) as s:
        yield s


@dataclass
class Scenario:
    stack: Stack
    home: Path
    admin: Admin
    sf_org: str  # the org's 00D
    before: dict[str, Any]  # sforg's ground truth at the backup
    as_of: Any  # a Timestamp just after the backup, before any damage


@pytest.fixture(scope="module")
def scenario(stack: Stack, clients: Clients, stack_home: Path) -> Scenario:
    assert stack.org is not None
    admin = Admin(stack.org)
    register(clients, stack.org, stack_home)
    policy = clients.discovery.GetPolicy(disc.GetPolicyRequest(policy_id="p1"))
    policy.reconcile_every.FromSeconds(60)  # the backup after the damage sees the purged records gone
    clients.discovery.UpdatePolicy(disc.UpdatePolicyRequest(policy=policy))
    # the backup holds a class that does not compile: restoring it must fail validation
    admin.change_metadata("ApexClass", BROKEN_CLASS, content=f"public class {BROKEN_CLASS} {{\n")
    backup(clients)
    before = admin.ground_truth()
    as_of = timestamp(now())
    return Scenario(stack, stack_home, admin, stack.org["org_id"], before, as_of)


def cli_env(s: Scenario) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("SFVAULT_")}
    e.update(
        SFVAULT_HOME=str(s.home / "cli"),
        SFVAULT_SESSION_ADDR=s.stack.address("session"),
        SFVAULT_DISCOVERY_ADDR=s.stack.address("discovery"),
        SFVAULT_STORAGE_ADDR=s.stack.address("storage"),
        SFVAULT_TOKEN=(s.home / "admin.token").read_text().strip(),
        COLUMNS="200",
    )
    return e


def test_deleted_and_changed_records_come_back_previewed_verified_and_idempotent(
    scenario: Scenario, clients: Clients
) -> None:
    s, admin = scenario, scenario.admin
    fields = fields_of(s.stack.org or {}, ["Account", *FAMILY])
    damage = do_damage(admin, s.before, accounts=10, purge=5, changes=30, seed=17)
    differences = changed_differences(s.before, admin.ground_truth(objects=sorted(damage.changed)), damage, fields)
    binned = binned_since(admin, s.before)
    everything = whole_org(admin, s.before)
    admin.advance_clock(15 * 60)  # past the backup's settle margin
    backup(clients)  # the backup now knows what was deleted and changed since T
    selections = [rs.RestoreSelection(object_name="Account", deleted_since=s.as_of)]
    selections += [rs.RestoreSelection(object_name=o, changed_since=s.as_of) for o in sorted(damage.changed)]
    # restore_empty: a field empty in the backup and filled in since is emptied again (equal to the backup);
    # files, as `sfvault restore run` does by default: the Attachments of the purged Accounts come back
    spec = rs.RestoreSpec(
        source_org_id="o1", as_of=s.as_of, selections=selections, children=2, restore_empty=True, files=True
    )

    # the preview: decides everything, writes nothing (sforg's own accounting)
    admin.reset_accounting()
    preview = restore(clients, variant(spec, dry_run=True))
    writes = admin.accounting()
    assert "writes" in writes, f"sforg's accounting counts no writes: {sorted(writes)}"
    assert writes["writes"] == 0, f"the dry run wrote to the org: {writes.get('write_calls')}"
    assert preview.status == pb.SESSION_STATUS_SUCCESS, describe_session(preview, clients)
    predicted = counts(preview)
    for obj in ("Account", *FAMILY):  # gone: Created, each once
        got = predicted.get(obj, {}).get("created", 0)
        assert got == len(damage.purged[obj]), (obj, describe_session(preview, clients))
    assert len(outcomes(clients, preview.session_id)) == sum(sum(c.values()) for c in predicted.values())
    assert not id_map(clients, s.sf_org, s.sf_org), "a dry run mapped Ids"

    # o1 is a production org: without confirmation (--yes) nothing is written
    refused = restore(clients, spec)
    assert refused.status == pb.SESSION_STATUS_FAILED and "--yes" in refused.reason, describe_session(refused)
    assert admin.accounting()["writes"] == 0

    # the restore itself: the same decisions, every record back, the read-back proving it
    real = restore(clients, variant(spec, confirmed=True))
    assert real.status == pb.SESSION_STATUS_SUCCESS, describe_session(real, clients)
    assert counts(real) == predicted, f"preview {predicted} != restore {counts(real)}"
    assert totals(real)["failed"] == 0, describe_session(real, clients)
    for obj, changed in damage.changed.items():
        assert counts(real)[obj]["updated"] >= len(changed), (obj, describe_session(real, clients))
    v = real.verification
    assert v.done and v.verified and v.differing == 0 and v.matching > 0, describe_session(real, clients)
    ids = id_map(clients, s.sf_org, s.sf_org)
    assert set(ids) >= damage.all_gone(), f"{len(damage.all_gone() - set(ids))} purged records not in the Id map"
    other_kind = sorted((k, v) for k, v in ids.items() if k[:3] != v[:3])  # the same org: the same key prefixes
    assert not other_kind, f"{len(other_kind)} Ids mapped to a record of another object: {other_kind[:5]}"
    created = outcomes(clients, real.session_id, rs.RECORD_STATE_CREATED)
    assert {o.source_id: o.target_id for o in created} == {k: ids[k] for k in (o.source_id for o in created)}
    after = admin.ground_truth()
    problems = check_restored(s.before, after, damage, ids, fields)
    assert not problems, f"{len(problems)} problems: {problems[:10]}"
    all_fields = fields_of(s.stack.org or {}, sorted(everything.family))
    problems = check_restored(s.before, after, everything, ids, all_fields)
    assert not problems, f"{len(problems)} records of the backup not as backed up: {problems[:10]}"
    missing = missing_records(s.before, after, ids)
    assert not missing, f"{len(missing)} records of the backup not back: {missing[:10]}"
    wrong = wrong_states(clients, real.session_id, differences)
    assert not wrong, f"{len(wrong)} changed records not in the state they were in: {wrong[:10]}"
    wrong = not_undeleted(clients, real.session_id, binned)
    assert not wrong, f"{len(wrong)} records in the recycle bin at the start not Undeleted: {wrong[:10]}"

    # the same restore again: nothing left to do
    admin.reset_accounting()
    again = restore(clients, variant(spec, confirmed=True))
    assert admin.accounting()["writes"] == 0, "the second restore wrote to the org"
    assert again.status == pb.SESSION_STATUS_SUCCESS, describe_session(again, clients)
    t = totals(again)
    nothing = t["created"] == t["updated"] == t["undeleted"] == t["failed"] == 0
    assert t["skipped"] > 0 and nothing, describe_session(again, clients)
    assert again.verification.verified, describe_session(again, clients)
    now_map = id_map(clients, s.sf_org, s.sf_org)
    changed_map = sorted(set(now_map.items()) ^ set(ids.items()))
    assert now_map == ids, f"the second restore changed the Id map: {len(changed_map)} entries, {changed_map[:5]}"
    counted = live_counts_differ(admin, s.before)
    assert not counted, f"after the second restore, not the backup's number of records: {counted}"

    # the CLI's preview of the Accounts deleted since T: one JSON object, every Account Skipped now
    result = subprocess.run(
        [
            SFVAULT,
            *("restore", "run", "o1", "--object", "Account"),
            *("--deleted-since", _iso(s.as_of), "--as-of", _iso(s.as_of), "--dry-run", "--json"),
        ],
        env=cli_env(s),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stdout[-2000:] + result.stderr[-2000:]
    shown = json.loads(result.stdout)
    assert {"session_id", "status", "objects", "verified"} <= set(shown), shown
    account = shown["objects"]["Account"]
    assert {k: account[k] for k in ("created", "updated", "undeleted", "failed")} == dict.fromkeys(
        ("created", "updated", "undeleted", "failed"), 0
    ), account
    assert account["skipped"] >= len(damage.accounts), account  # with their child Accounts

    # in the recycle bin at the restore: Undeleted (the family too, brought back by its Account's undelete)
    for obj in ("Account", *FAMILY):
        got = predicted.get(obj, {}).get("undeleted", 0)
        assert got == len(damage.binned(obj)), (obj, describe_session(preview, clients))


def test_a_restore_into_a_sandbox_masks_values_before_they_leave(
    scenario: Scenario, clients: Clients, tmp_path: Path
) -> None:
    s = scenario
    accounts = sorted(s.before["objects"]["Account"])[-4:]  # the damage takes Accounts from the first half
    contacts = {rid for rid, v in s.before["objects"]["Contact"].items() if v.get("AccountId") in accounts}
    # one level of children: their Contacts, and the Accounts whose parent they are (ParentId)
    children = {rid for rid, v in s.before["objects"]["Account"].items() if v.get("ParentId") in accounts}
    masks = {
        ("Account", "Name"): "pseudonym",
        ("Account", "Phone"): "phone",
        ("Contact", "Email"): "email",
        ("Contact", "Phone"): "null",
        ("Contact", "LastName"): "pseudonym",
    }
    # a small sandbox: its few Accounts' unique External_Id__c values are not those of the restored ones
    with running_org(tmp_path / "sandbox", scale=20, seed=11) as sandbox:
        register_sandbox(clients, sandbox, s.home)
        admin2 = Admin(sandbox)
        existing = admin2.ground_truth(objects=["Account", "Contact"], values=False)["objects"]
        spec = rs.RestoreSpec(
            source_org_id="o1",
            target_org_id="o2",
            as_of=s.as_of,
            selections=[rs.RestoreSelection(object_name="Account", ids=accounts)],
            children=1,
            parents=0,
            masks=[rs.MaskRule(object_name=o, field=f, rule=r) for (o, f), r in masks.items()],
        )
        done = restore(clients, spec)
        assert done.status == pb.SESSION_STATUS_SUCCESS, describe_session(done, clients)
        after = admin2.ground_truth(objects=["Account", "Contact"])["objects"]
        new = {obj: {k: v for k, v in after[obj].items() if k not in existing[obj]} for obj in ("Account", "Contact")}
        assert len(new["Account"]) == len(set(accounts) | children), describe_session(done, clients)
        assert len(new["Contact"]) == len(contacts), describe_session(done, clients)
        source_of = {new_id: old for old, new_id in id_map(clients, s.sf_org, sandbox["org_id"]).items()}
        for (obj, name), rule in masks.items():
            originals = {str(v[name]).lower() for v in s.before["objects"][obj].values() if v.get(name)}
            for rid, values in new[obj].items():
                value, source = values.get(name), source_of.get(rid)
                assert source in s.before["objects"][obj], f"{obj} {rid}: not in the Id map of the restore"
                if rule == "null" or not s.before["objects"][obj][source].get(name):
                    assert value in (None, ""), f"{obj}.{name} of {rid} not null"
                else:
                    assert value, f"{obj}.{name} of {rid} empty, expected a {rule} value"
                    assert str(value).lower() not in originals, f"{obj}.{name} of {rid}: an original value reached it"
        # nor anywhere else in the sandbox's new records: no field of a restored record holds (as a whole word)
        # a masked value of its source record, e.g. in a compound Name built from an unmasked LastName
        for obj, records in new.items():
            for rid, values in records.items():
                source = s.before["objects"][obj][source_of[rid]]
                masked = [str(source[f]) for (o, f) in masks if o == obj and source.get(f)]
                leaks = [
                    key
                    for key, value in values.items()
                    if isinstance(value, str) and any(_holds(value, original) for original in masked)
                ]
                assert not leaks, f"{obj} {rid}: a masked value of its source record in {leaks}"
        # what is not masked came across: the new Contacts under the new Accounts, first names as backed up
        firsts = sorted(str(s.before["objects"]["Contact"][c].get("FirstName")) for c in contacts)
        assert sorted(str(v.get("FirstName")) for v in new["Contact"].values()) == firsts
        assert {v.get("AccountId") for v in new["Contact"].values()} <= set(new["Account"])


def test_metadata_comes_back_to_its_earlier_version_and_a_failed_validation_deploys_nothing(
    scenario: Scenario, clients: Clients, monkeypatch: pytest.MonkeyPatch
) -> None:
    s, admin = scenario, scenario.admin
    assert s.stack.org is not None
    before = {(m["type"], m["fullName"]): m["sha256"] for m in s.before["metadata"]}
    classes = sorted(n for t, n in before if t == "ApexClass" and n != BROKEN_CLASS)
    field = "Account.Active__c" if ("CustomField", "Account.Active__c") in before else ""
    field = field or sorted(n for t, n in before if t == "CustomField" and n.startswith("Account."))[0]
    chosen = [("ApexClass", n) for n in classes[:3]] + [("CustomField", field)]
    at_t = {c: _backed_up(clients, s, c, s.as_of) for c in chosen}
    for name in classes[:3]:
        admin.change_metadata("ApexClass", name)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_bundle(s.stack.org))  # zeep (simple-salesforce's mdapi) too
    relabel(s.stack.org, field, at_t[("CustomField", field)], "Relabelled after the backup")
    changed = _metadata(admin)
    assert all(changed[c] != before[c] for c in chosen), "the components did not change"

    spec = rs.RestoreSpec(source_org_id="o1", as_of=s.as_of, confirmed=True)
    spec.metadata_components.extend(f"{t}:{n}" for t, n in chosen)
    done = restore(clients, spec, kind=rs.SESSION_KIND_METADATA_RESTORE)
    assert done.status == pb.SESSION_STATUS_SUCCESS, describe_session(done, clients)
    assert done.verification.verified, describe_session(done, clients)
    assert totals(done)["updated"] == len(chosen), describe_session(done, clients)
    # the org holds again what it held at T: the Apex classes byte for byte (the org's own sha256), and each
    # component as the next backup retrieves it equal to the backup at T
    now_ = _metadata(admin)
    assert all(now_[c] == before[c] for c in chosen if c[0] == "ApexClass"), "an Apex class not restored"
    # the custom field as the org describes it: the label it had at T
    label = re.search(r"<(?:\w+:)?label>([^<]*)</", at_t[("CustomField", field)].decode())
    assert label, f"no label in the backed-up definition of {field}"
    obj, _, name = field.partition(".")
    rest = OrgRest(s.stack.org)
    try:
        described = {f["name"]: f["label"] for f in rest.describe(obj)["fields"]}
    finally:
        rest.close()
    assert described[name] == html.unescape(label.group(1)), f"{field}: labelled {described[name]!r}, not as at T"
    backup(clients)
    for c in chosen:
        assert _backed_up(clients, s, c, None) == at_t[c], f"{c} not back to its version at T"

    # the backup's version of BROKEN_CLASS does not compile: with it, nothing of the deploy is deployed
    admin.change_metadata("ApexClass", BROKEN_CLASS, content=f"public class {BROKEN_CLASS} {{\n}}\n")
    other = classes[3]
    admin.change_metadata("ApexClass", other)
    current = _metadata(admin)
    spec = rs.RestoreSpec(source_org_id="o1", as_of=s.as_of, confirmed=True)
    spec.metadata_components.extend([f"ApexClass:{BROKEN_CLASS}", f"ApexClass:{other}"])
    refused = restore(clients, spec, kind=rs.SESSION_KIND_METADATA_RESTORE)
    assert refused.status in (pb.SESSION_STATUS_FAILED, pb.SESSION_STATUS_WARNING), describe_session(refused, clients)
    assert _metadata(admin) == current, "a deploy that failed validation changed the org"
    failed = outcomes(clients, refused.session_id, rs.RECORD_STATE_FAILED)
    assert {o.source_id for o in failed} >= {f"ApexClass:{BROKEN_CLASS}"}, failed
    assert all(o.message for o in failed), failed  # says why
    # why: the org's own compile error for the broken class; the valid one is not reported deployed
    broken = next(o for o in failed if o.source_id == f"ApexClass:{BROKEN_CLASS}")
    assert "Missing '}'" in broken.message, broken.message
    assert totals(refused)["updated"] == 0, describe_session(refused, clients)


def test_the_children_and_files_of_restored_accounts_come_back_each_in_its_state(
    scenario: Scenario, clients: Clients
) -> None:
    """Two Accounts restored by Id with two levels of children and their files: one in the recycle bin, one
    purged, each with an Attachment, a Case holding an Attachment, and a child Account whose ParentId (a
    self-lookup) the delete cleared. The preview and the restore agree; every record comes back (the files of
    the Cases too); each in the state it was in at the start: the binned ones Undeleted, the child Accounts
    Updated (they differed)."""
    s, admin = scenario, scenario.admin
    truth = admin.ground_truth(objects=["Account", "Case"])["objects"]
    cases = {a: sorted(c for c, v in truth["Case"].items() if v.get("AccountId") == a) for a in truth["Account"]}
    kids = {a: sorted(c for c, v in truth["Account"].items() if v.get("ParentId") == a) for a in truth["Account"]}
    chosen = [a for a in sorted(truth["Account"]) if cases[a] and kids[a] and not truth["Account"][a].get("ParentId")]
    assert len(chosen) >= 2, "the org has no two top Accounts with Cases and child Accounts"
    binned_account, purged_account = chosen[:2]
    for account in (binned_account, purged_account):
        for parent in (account, cases[account][0]):
            admin.create("Attachment", values={"ParentId": parent, "Name": f"note of {parent}.txt"})
    admin.advance_clock(15 * 60)  # past the backup's settle margin
    backup(clients)
    before = admin.ground_truth()
    as_of = timestamp(now())

    # an Account with Cases cannot be deleted (restrictedDelete, as in a real org): its Cases go first
    admin.soft_delete("Case", ids=cases[binned_account] + cases[purged_account])
    admin.soft_delete("Account", ids=[binned_account, purged_account])
    admin.purge_recycle_bin(ids=[purged_account, *cases[purged_account]])  # with their families
    binned, everything = binned_since(admin, before), whole_org(admin, before)
    purged = set(admin.ground_truth(objects=["User"], values=False)["purged"].get("Attachment", []))
    purged -= set(before["purged"].get("Attachment", []))
    assert len(binned.get("Attachment", ())) == len(purged) == 2, f"binned {binned.get('Attachment')}, purged {purged}"
    fields = fields_of(s.stack.org or {}, sorted(everything.family))
    children = Damage(accounts=[], changed={"Account": set(kids[binned_account] + kids[purged_account])})
    differences = changed_differences(before, admin.ground_truth(objects=["Account"]), children, fields)
    assert all(differences.values()), f"the delete left the child Accounts as they were: {differences}"
    admin.advance_clock(15 * 60)
    backup(clients)

    selection = rs.RestoreSelection(object_name="Account", ids=[binned_account, purged_account])
    spec = rs.RestoreSpec(
        source_org_id="o1", as_of=as_of, selections=[selection], children=2, files=True, restore_empty=True
    )
    admin.reset_accounting()
    preview = restore(clients, variant(spec, dry_run=True))
    checks = Checks(clients)
    checks.expect(admin.accounting()["writes"] == 0, "the dry run wrote to the org")
    checks.expect(preview.status == pb.SESSION_STATUS_SUCCESS, "the preview did not succeed", preview)
    real = restore(clients, variant(spec, confirmed=True))
    checks.expect(real.status == pb.SESSION_STATUS_SUCCESS, "the restore did not succeed", real)
    checks.expect(counts(real) == counts(preview), f"preview {counts(preview)} != restore {counts(real)}")
    v = real.verification
    checks.expect(v.done and v.verified and v.differing == 0, "the restore is not verified", real)
    # the purged Opportunities' field history cannot come back (Salesforce writes it): said, not silently lost
    said = [j.message for j in clients.session.ListJobs(api.ListJobsRequest(session_id=real.session_id)).jobs]
    checks.expect(
        any("not restored, the org writes them itself" in m and "OpportunityHistory" in m for m in said),
        f"the report does not name the history it could not restore: {said}",
    )

    ids = id_map(clients, s.sf_org, s.sf_org)
    after = admin.ground_truth()
    missing = missing_records(before, after, ids)
    checks.expect(not missing, f"{len(missing)} records of the backup not back: {missing[:10]}")
    problems = check_restored(before, after, everything, ids, fields)
    checks.expect(not problems, f"{len(problems)} records of the backup not as backed up: {problems[:10]}")
    wrong = not_undeleted(clients, real.session_id, binned)
    checks.expect(not wrong, f"{len(wrong)} records in the recycle bin at the start not Undeleted: {wrong[:10]}")
    wrong = wrong_states(clients, real.session_id, differences)
    checks.expect(not wrong, f"{len(wrong)} child Accounts not in the state they were in: {wrong}")
    checks.verdict()


# ---------------------------------------------------------------- helpers


class Checks:
    """Checks made one after the other and their failures reported together at the end: one run of a long
    scenario shows every problem it finds."""

    def __init__(self, clients: Clients) -> None:
        self.clients = clients
        self.failures: list[str] = []

    def expect(self, ok: bool, what: str, session: Any = None) -> None:
        if not ok:
            self.failures.append(what + (f": {describe_session(session, self.clients)}" if session is not None else ""))

    def verdict(self) -> None:
        assert not self.failures, f"{len(self.failures)} failed checks:\n" + "\n".join(self.failures)


def changed_differences(
    before: dict[str, Any], damaged: dict[str, Any], damage: Damage, fields: dict[str, Fields]
) -> dict[tuple[str, str], list[str]]:
    """Per changed record (object, Id), the restored fields on which it differed from the backup after the
    damage (none: the change set a checkbox or a picklist to the value it had)."""
    out = {}
    for obj, ids in damage.changed.items():
        for rid in ids:
            was, now_ = before["objects"][obj][rid], damaged["objects"][obj][rid]
            out[obj, rid] = [n for n in fields[obj].compared if not same(was.get(n), now_.get(n))]
    return out


def wrong_states(c: Clients, session_id: str, differences: dict[tuple[str, str], list[str]]) -> list[str]:
    """Changed records whose outcome is not the state they were in when the restore started: Updated when
    they differed from the backup; when not, Skipped (or not selected: the backup saw no change)."""
    state_of = {(o.object_name, o.source_id): o.state for o in outcomes(c, session_id)}
    wrong = []
    for (obj, rid), names in sorted(differences.items()):
        want = {rs.RECORD_STATE_UPDATED} if names else {rs.RECORD_STATE_SKIPPED, None}
        got = state_of.get((obj, rid))
        if got not in want:
            shown = rs.RecordState.Name(got) if got is not None else "no outcome"
            wrong.append(f"{obj} {rid}: {shown}, differed on {names}")
    return wrong


# not compared field by field as records: users (never restored) and files (their bodies restored apart)
NOT_RECORDS = frozenset({"User", "ContentVersion", "ContentDocument", "ContentDocumentLink", "Attachment", "Document"})
# what the org writes itself and no restore writes (describe: not createable, or a sharing object): field history,
# feeds, the Organization, the owners' sharing rows; a restore's own writes add field history rows, a purged
# record's history is gone for good, a restored record's sharing row is the org's new one
ORG_WRITTEN = frozenset(
    name
    for name, o in build_catalogue().items()
    if o.flags.get("createable") is False or o.flags.get("associateEntityType") == "Share"
)


def whole_org(admin: Admin, before: dict[str, Any]) -> Damage:
    """The whole backed-up state as a Damage for check_restored: every record live at `before` (users and files
    aside) to be back, under its Id, or, when removed for good since (purged or hard-deleted), under the new Id
    the Id map gives it, every lookup on the right record."""
    now_ = admin.ground_truth(values=False)
    objects = [o for o in before["objects"] if o not in NOT_RECORDS | ORG_WRITTEN]
    family = {o: set(before["objects"][o]) for o in objects}
    gone = {o: set(now_["purged"].get(o, [])) | set(now_["hard_deleted"].get(o, [])) for o in objects}
    return Damage(accounts=[], family=family, purged={o: gone[o] & family[o] for o in objects})


def binned_since(admin: Admin, before: dict[str, Any]) -> dict[str, set[str]]:
    """Per object, the records in the org's recycle bin now that were not there at `before` (ground truth)."""
    now_ = admin.ground_truth(values=False)["recycle_bin"]
    # the org's own rows (an owner's sharing row) come back with their record's undelete, never by the restore
    return {o: set(ids) - set(before["recycle_bin"].get(o, [])) for o, ids in now_.items() if o not in ORG_WRITTEN}


def not_undeleted(c: Clients, session_id: str, binned: dict[str, set[str]]) -> list[str]:
    """Records in the recycle bin when the restore started (`binned`: sforg's recycle bin then, per object)
    whose outcome is not Undeleted: their state is the one the restore found, even when their parent's
    undelete brought them back before their own turn."""
    state_of = {(o.object_name, o.source_id): o.state for o in outcomes(c, session_id)}
    wrong = []
    for obj, ids in sorted(binned.items()):
        for rid in sorted(ids):
            got = state_of.get((obj, rid))
            if got != rs.RECORD_STATE_UNDELETED:
                wrong.append(f"{obj} {rid}: {rs.RecordState.Name(got) if got is not None else 'no outcome'}")
    return wrong


def live_counts_differ(admin: Admin, before: dict[str, Any]) -> list[str]:
    """Objects (users aside) with another number of live records in the org now than at `before`: after a
    restore of everything the damage took, a record created twice shows as one too many."""
    now_ = admin.ground_truth(values=False)["objects"]
    return [
        f"{o}: {len(now_.get(o, {}))} live, {len(ids)} at the backup"
        for o, ids in sorted(before["objects"].items())
        if o != "User" and o not in ORG_WRITTEN and len(now_.get(o, {})) != len(ids)
    ]


def missing_records(before: dict[str, Any], after: dict[str, Any], ids: dict[str, str]) -> list[str]:
    """Records live at the backup (every object of the org) that are not live now, under their Id or the
    new Id the restore mapped them to."""
    gone = []
    for obj, records in before["objects"].items():
        if obj in ORG_WRITTEN:
            continue
        live = after["objects"].get(obj, {})
        gone += [f"{obj} {rid}" for rid in sorted(records) if rid not in live and ids.get(rid) not in live]
    return gone


def variant(spec: rs.RestoreSpec, **changes: Any) -> rs.RestoreSpec:
    """The same spec with some fields set."""
    out = rs.RestoreSpec()
    out.CopyFrom(spec)
    for name, value in changes.items():
        setattr(out, name, value)
    return out


def _backed_up(clients: Clients, s: Scenario, component: tuple[str, str], as_of: Any) -> bytes:
    """A component's content in the backup at a point (None: the latest)."""
    request = st.GetMetadataAsOfRequest(org_id=s.sf_org, type=component[0], full_name=component[1])
    if as_of is not None:
        request.as_of.CopyFrom(as_of)
    return bytes(clients.storage.GetMetadataAsOf(request).content)


def relabel(info: dict[str, Any], field: str, backed_up: bytes, label: str) -> None:
    """A custom field changed in the org: its backed-up definition deployed with another label (Metadata API
    deploy through simple-salesforce, as an admin would)."""
    obj, _, _name = field.partition(".")
    definition, n = re.subn(r"<((?:\w+:)?label)>[^<]*</\1>", rf"<\1>{label}</\1>", backed_up.decode(), count=1)
    assert n == 1, f"no label in the backed-up definition of {field}"
    package = (
        f'<?xml version="1.0" encoding="UTF-8"?><Package xmlns="{MD_NS}"><types><members>{obj}</members>'
        f"<name>CustomObject</name></types><version>{info['api_version']}</version></Package>"
    )
    body = f'<?xml version="1.0" encoding="UTF-8"?><CustomObject xmlns="{MD_NS}">{definition}</CustomObject>'
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("package.xml", package)
        zf.writestr(f"objects/{obj}.object", body)
    sf = simple_salesforce(info)
    deploy_id, _state = sf.mdapi.deploy(buffer, sandbox=False, singlePackage=True)
    assert deploy_id, "the deploy was not accepted"
    for _ in range(100):  # sforg deploys at once; a few polls at most
        status, detail, *_rest = sf.mdapi.check_deploy_status(deploy_id)
        if status not in ("Pending", "InProgress", None):
            break
    assert status == "Succeeded", f"relabel deploy: {status} {detail}"


def _holds(value: str, original: str) -> bool:
    """`original` in `value` as a whole word (or words), whatever the case."""
    return re.search(rf"(?<!\w){re.escape(original)}(?!\w)", value, re.IGNORECASE) is not None


def _iso(ts: Any) -> str:
    return str(ts.ToDatetime().isoformat() + "Z")


def _metadata(admin: Admin) -> dict[tuple[str, str], str]:
    return {
        (m["type"], m["fullName"]): m["sha256"] for m in admin.ground_truth(objects=["User"], values=False)["metadata"]
    }


def register_sandbox(c: Clients, info: dict[str, Any], home: Path) -> None:
    """The second org, registered as a sandbox (writes to it need no --yes)."""
    directory = secrets_dir(home)
    directory.mkdir(mode=0o700, exist_ok=True)
    secret = directory / "o2-client-secret"
    secret.touch(mode=0o600)
    secret.write_text(info["client_secret"])
    c.discovery.CreateOrg(
        disc.CreateOrgRequest(
            org_id="o2",
            name="sandbox",
            sandbox=True,
            connection=disc.OrgConnection(
                login_url=info["login_url"],
                auth_flow=disc.AUTH_FLOW_CLIENT_CREDENTIALS,
                client_id=info["client_id"],
                client_secret_ref=f"file:{secret.resolve()}",
                ca_bundle_ref=f"file:{Path(info['ca_file']).resolve()}",
                api_version=info["api_version"],
            ),
        )
    )
