"""Metadata restore: components put back as they were at a point through deploy. On an in-memory org that
retrieves and deploys as Salesforce does (fields inside objects/X.object, code with its -meta.xml, a deploy
that fails validation changes nothing): changed classes and a field come back, unchanged ones are Skipped, a
component the backup lacks Fails alone, a validation failure deploys nothing and says why, check-only writes
nothing, a resumed job polls its deploy instead of deploying again. The SOAP answers are parsed from
Salesforce's shapes (WRITE.md §9). Milliseconds; the sforg test at the end runs when sforg deploys."""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from typing import Any
from xml.etree import ElementTree as ET

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from sfvault.events.v1 import events_pb2 as ev
from sfvault.jobs.v1 import jobs_pb2
from sfvault.restore.v1 import restore_pb2 as rpb
from sfvault.storage.v1 import storage_pb2 as spb

from services.jobrunner.job_run import JobControl, JobRun, JobStopped, Tuning
from services.jobrunner.metadata_deploy import DeployMessage, DeployResult, deploy_body, parse_deploy_result
from services.jobrunner.metadata_job import _custom_field, _unzip
from services.jobrunner.metadata_restore import (
    Component,
    InvalidComponent,
    MetadataRestoreJob,
    build_deploy_zip,
    failures_of,
    fingerprint,
    parse_components,
)
from services.jobrunner.salesforce import MD_NS, FileProperties
from tests.jobrunner.fakes import FakeStorage, FakeTables

ORG = "00Dxx0000001"
V = "62.0"


def _cls(name: str, body: str) -> bytes:
    return f"public class {name} {{ {body} }}\n".encode()


def _field(name: str, label: str) -> str:
    return f"<fields><fullName>{name}</fullName><label>{label}</label><type>Text</type><length>80</length></fields>"


@dataclass
class FakeMetadataOrg:
    """Components as an org holds them: code and XML files by path, custom fields by object (retrieved and
    deployed inside objects/X.object, as Salesforce does). A file holding "SYNTAX ERROR" fails validation."""

    files: dict[str, bytes] = field(default_factory=dict)  # path -> content (classes/X.cls, ...)
    fields: dict[str, dict[str, str]] = field(default_factory=dict)  # object -> field name -> <fields> XML
    deploys: list[bool] = field(default_factory=list)  # check_only of each deploy
    results: dict[str, DeployResult] = field(default_factory=dict)
    retrieves: int = 0
    api_calls: int = 0

    def path(self, mtype: str, name: str) -> str:
        return {"ApexClass": f"classes/{name}.cls", "Layout": f"layouts/{name}.layout"}[mtype]

    def retrieve(self, members: dict[str, list[str]], *, should_stop: Any = None) -> bytes:
        self.retrieves += 1
        self.api_calls += 2
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("package.xml", "<Package/>")
            objects: dict[str, list[str]] = {}
            for mtype, names in members.items():
                for name in names:
                    if mtype == "CustomField":
                        obj, _, fname = name.partition(".")
                        if fname in self.fields.get(obj, {}):
                            objects.setdefault(obj, []).append(self.fields[obj][fname])
                        continue
                    p = self.path(mtype, name)
                    if p in self.files:
                        zf.writestr(p, self.files[p])
                        if mtype == "ApexClass":
                            zf.writestr(p + "-meta.xml", "<ApexClass><apiVersion>58.0</apiVersion></ApexClass>")
            for obj, xml in objects.items():
                zf.writestr(f"objects/{obj}.object", f'<CustomObject xmlns="{MD_NS}">{"".join(xml)}</CustomObject>')
        return buf.getvalue()

    def deploy(self, zipped: bytes, *, check_only: bool, test_level: str = "") -> str:
        self.api_calls += 1
        self.deploys.append(check_only)
        files = _unzip(zipped)
        package = ET.fromstring(files.pop("package.xml"))
        named = {
            (t.findtext(f"{{{MD_NS}}}name"), m.text)
            for t in package.iter(f"{{{MD_NS}}}types")
            for m in t.iter(f"{{{MD_NS}}}members")
        }
        failures, successes = [], []
        for path, content in files.items():
            if path.endswith("-meta.xml"):
                assert path.removesuffix("-meta.xml") in files, path
                continue
            if b"SYNTAX ERROR" in content:
                name = path.rpartition("/")[2].partition(".")[0]
                failures.append(DeployMessage("ApexClass", name, path, False, problem="Unexpected token 'ERROR'."))
            else:
                successes.append(DeployMessage("", "", path, True))
        if path_types := {t for t, _ in named} - {"ApexClass", "Layout", "CustomField", "CustomObject"}:
            raise AssertionError(path_types)
        result = DeployResult(
            id=f"0Af{len(self.deploys)}",
            done=True,
            status="Failed" if failures else "Succeeded",
            success=not failures,
            check_only=check_only,
            failures=failures,
            successes=successes,
        )
        if not failures and not check_only:
            for path, content in files.items():
                if path.startswith("objects/"):
                    obj = path.removeprefix("objects/").removesuffix(".object")
                    root = ET.fromstring(content)
                    assert root.tag == f"{{{MD_NS}}}CustomObject", content
                    for el in root:
                        name = el.findtext(f"{{{MD_NS}}}fullName") or ""
                        assert ("CustomField", f"{obj}.{name}") in named
                        inner = "".join(
                            ET.tostring(c, encoding="unicode").replace(f' xmlns:ns0="{MD_NS}"', "").replace("ns0:", "")
                            for c in el
                        )
                        self.fields.setdefault(obj, {})[name] = f"<fields>{inner}</fields>"
                elif not path.endswith("-meta.xml"):
                    self.files[path] = content
        self.results[result.id] = result
        return result.id

    def wait_deploy(self, async_id: str, *, should_stop: Any = None) -> DeployResult:
        self.api_calls += 1
        return self.results[async_id]


@dataclass
class FakeRestoreStorage:
    """What the backup holds (the backup job's extraction of a retrieve) and the outcomes put."""

    held: dict[tuple[str, str], spb.MetadataVersion] = field(default_factory=dict)
    puts: list[spb.PutRestoreOutcomesRequest] = field(default_factory=list)
    asked: list[Timestamp | None] = field(default_factory=list)

    def back_up(self, org: FakeMetadataOrg, members: dict[str, list[str]]) -> None:
        files = _unzip(org.retrieve(members))
        for mtype, names in members.items():
            for name in names:
                if mtype == "CustomField":
                    p = FileProperties(mtype, name, f"objects/{name.partition('.')[0]}.object", "")
                    content = _custom_field(files, p)
                else:
                    p = FileProperties(mtype, name, org.path(mtype, name), "")
                    content = files[p.file_name]
                self.held[(mtype, name)] = spb.MetadataVersion(
                    org_id=ORG, type=mtype, full_name=name, content=content, file_name=p.file_name
                )

    def metadata_as_of(self, org_id: str, mtype: str, full_name: str, as_of: Timestamp | None) -> Any:
        assert org_id == ORG
        self.asked.append(as_of)
        return self.held.get((mtype, full_name))

    def put_restore_outcomes(self, request: spb.PutRestoreOutcomesRequest) -> spb.ChunkResult:
        self.puts.append(request)
        return spb.ChunkResult(counts=ev.Counts(received=len(request.outcomes)))


def _org() -> FakeMetadataOrg:
    org = FakeMetadataOrg()
    for name in ("Alpha", "Beta", "Gamma", "Delta"):
        org.files[org.path("ApexClass", name)] = _cls(name, "Integer v = 1;")
    org.files[org.path("Layout", "Account-Layout")] = f'<Layout xmlns="{MD_NS}"><x>1</x></Layout>'.encode()
    org.fields["Account"] = {"Tier__c": _field("Tier__c", "Tier"), "Other__c": _field("Other__c", "Other")}
    return org


ALL = {
    "ApexClass": ["Alpha", "Beta", "Gamma", "Delta"],
    "Layout": ["Account-Layout"],
    "CustomField": ["Account.Tier__c", "Account.Other__c"],
}


def _run(
    components: list[str], tables: FakeTables | None = None, target: str = "", **restore: Any
) -> tuple[JobRun, FakeTables, JobControl]:
    at = Timestamp(seconds=1_790_000_000)
    spec = jobs_pb2.JobSpec(
        session_id="r1",
        job_id="metadata",
        type=ev.JOB_TYPE_METADATA_RESTORE,
        org_id="o1",
        salesforce_org_id=ORG,
        restore=jobs_pb2.RestoreJob(
            spec=rpb.RestoreSpec(metadata_components=components, as_of=at, **restore), target_salesforce_org_id=target
        ),
    )
    tables = tables or FakeTables()
    control = JobControl()

    class Clock:
        api_calls = 0

        def org_now(self) -> Any:
            raise AssertionError("not asked")

    return JobRun(spec, FakeStorage(), tables, control, Tuning(), Clock()), tables, control


def _outcomes(storage: FakeRestoreStorage) -> dict[str, tuple[int, str]]:
    assert len(storage.puts) == 1
    return {o.source_id: (o.state, o.message) for o in storage.puts[0].outcomes}


def _damage(org: FakeMetadataOrg) -> None:
    for name in ("Alpha", "Beta", "Gamma"):
        org.files[org.path("ApexClass", name)] = _cls(name, "Integer v = 2; // changed")
    org.fields["Account"]["Tier__c"] = _field("Tier__c", "Tier (renamed)")


CHOSEN = ["ApexClass:Alpha", "ApexClass:Beta", "ApexClass:Gamma", "ApexClass:Delta", "CustomField:Account.Tier__c"]


def test_changed_classes_and_a_field_come_back_unchanged_ones_skipped() -> None:
    org = _org()
    storage = FakeRestoreStorage()
    storage.back_up(org, ALL)
    before = dict(org.files), {k: dict(v) for k, v in org.fields.items()}
    _damage(org)
    run, _tables, _ = _run(CHOSEN)
    job = MetadataRestoreJob(run, org, storage)
    summary = job.execute()

    assert (org.files, org.fields) == before, summary
    assert org.deploys == [True, False]  # validated, then deployed
    got = _outcomes(storage)
    assert {k: s for k, (s, _m) in got.items()} == {
        "ApexClass:Alpha": rpb.RECORD_STATE_UPDATED,
        "ApexClass:Beta": rpb.RECORD_STATE_UPDATED,
        "ApexClass:Gamma": rpb.RECORD_STATE_UPDATED,
        "ApexClass:Delta": rpb.RECORD_STATE_SKIPPED,
        "CustomField:Account.Tier__c": rpb.RECORD_STATE_UPDATED,
    }
    put = storage.puts[0]
    assert (put.source_org_id, put.target_org_id, put.chunk_seq, put.dry_run) == (ORG, ORG, 1, False)
    assert {o.object_name for o in put.outcomes} == {"metadata:ApexClass", "metadata:CustomField"}
    assert all(o.target_id == o.source_id for o in put.outcomes)
    assert storage.asked == [Timestamp(seconds=1_790_000_000)] * 5  # read as of the point
    assert job.verification.done and job.verification.verified, job.verification
    assert job.verification.matching == 5
    counts = {c.object_name: (c.updated, c.skipped) for c in job.restore_counts()}
    assert counts == {"metadata:ApexClass": (3, 1), "metadata:CustomField": (1, 0)}
    assert not job.warnings, summary

    # a second identical restore is all Skipped, and deploys nothing
    run, _tables, _ = _run(CHOSEN)
    storage.puts.clear()
    MetadataRestoreJob(run, org, storage).execute()
    assert {s for s, _m in _outcomes(storage).values()} == {rpb.RECORD_STATE_SKIPPED}
    assert org.deploys == [True, False]


def test_a_validation_failure_deploys_nothing_and_says_why() -> None:
    org = _org()
    storage = FakeRestoreStorage()
    org.files[org.path("ApexClass", "Beta")] = _cls("Beta", "SYNTAX ERROR")
    storage.back_up(org, ALL)  # the backup holds a Beta that does not compile
    org.files[org.path("ApexClass", "Beta")] = _cls("Beta", "fixed")
    _damage(org)
    after_damage = dict(org.files), {k: dict(v) for k, v in org.fields.items()}
    run, _, _ = _run(CHOSEN)
    job = MetadataRestoreJob(run, org, storage)
    summary = job.execute()

    assert (org.files, org.fields) == after_damage  # nothing deployed
    assert org.deploys == [True]  # validation only
    got = _outcomes(storage)
    assert got["ApexClass:Beta"] == (rpb.RECORD_STATE_FAILED, "Unexpected token 'ERROR'.")
    for key in ("ApexClass:Alpha", "ApexClass:Gamma", "CustomField:Account.Tier__c"):
        state, message = got[key]
        assert state == rpb.RECORD_STATE_FAILED and "validation failed" in message, (key, message)
    assert got["ApexClass:Delta"][0] == rpb.RECORD_STATE_SKIPPED
    assert {o.error_code for o in storage.puts[0].outcomes if o.state == rpb.RECORD_STATE_FAILED} == {
        "DEPLOY_VALIDATION_FAILED"
    }
    assert job.warnings and "4 of 5 components failed" in summary
    assert job.verification.done and not job.verification.verified and job.verification.differing == 4


def test_a_component_not_in_the_backup_fails_alone() -> None:
    org = _org()
    storage = FakeRestoreStorage()
    storage.back_up(org, ALL)
    _damage(org)
    run, _, _ = _run(["ApexClass:Alpha", "ApexClass:Nowhere"])
    MetadataRestoreJob(run, org, storage).execute()
    got = _outcomes(storage)
    assert got["ApexClass:Nowhere"][0] == rpb.RECORD_STATE_FAILED
    assert "not in the backup at 2026-" in got["ApexClass:Nowhere"][1]
    assert got["ApexClass:Alpha"][0] == rpb.RECORD_STATE_UPDATED
    assert org.files[org.path("ApexClass", "Alpha")] == _cls("Alpha", "Integer v = 1;")


def test_a_field_the_backup_holds_empty_fails_alone() -> None:
    org = _org()
    storage = FakeRestoreStorage()
    storage.back_up(org, ALL)
    _damage(org)
    held = storage.held[("CustomField", "Account.Tier__c")]
    held.content = b""  # what the backup job stores when the field was not in its object's file
    run, _, _ = _run(["ApexClass:Alpha", "CustomField:Account.Tier__c"])
    MetadataRestoreJob(run, org, storage).execute()
    got = _outcomes(storage)
    assert got["CustomField:Account.Tier__c"][0] == rpb.RECORD_STATE_FAILED
    assert "no usable content" in got["CustomField:Account.Tier__c"][1]
    assert got["ApexClass:Alpha"][0] == rpb.RECORD_STATE_UPDATED


def test_into_another_org_the_job_and_its_outcomes_are_the_target_org_s() -> None:
    org = _org()  # the sandbox: what it holds is compared and deployed to
    storage = FakeRestoreStorage()
    storage.back_up(org, ALL)  # (the source's backup)
    _damage(org)
    run, _, _ = _run(["ApexClass:Alpha"], target="00Dsandbox0001")
    begun: list[str] = []
    begin = run.storage.begin_job

    def spy(org_id: str, *args: Any) -> Any:
        begun.append(org_id)
        return begin(org_id, *args)

    run.storage.begin_job = spy  # type: ignore[method-assign]
    job = MetadataRestoreJob(run, org, storage)
    job.execute()
    assert begun == ["00Dsandbox0001"]
    put = storage.puts[0]
    assert (put.source_org_id, put.target_org_id) == (ORG, "00Dsandbox0001")
    assert not job.all_failed() and job.restore_counts()[0].updated == 1


def test_a_component_gone_from_the_org_is_created() -> None:
    org = _org()
    storage = FakeRestoreStorage()
    storage.back_up(org, ALL)
    del org.files[org.path("ApexClass", "Gamma")]
    del org.fields["Account"]["Other__c"]
    run, _, _ = _run(["ApexClass:Gamma", "CustomField:Account.Other__c"])
    MetadataRestoreJob(run, org, storage).execute()
    assert {k: s for k, (s, _m) in _outcomes(storage).items()} == {
        "ApexClass:Gamma": rpb.RECORD_STATE_CREATED,
        "CustomField:Account.Other__c": rpb.RECORD_STATE_CREATED,
    }
    assert org.fields["Account"]["Other__c"] == _field("Other__c", "Other")


@pytest.mark.parametrize("option", ["check_only", "dry_run"])
def test_check_only_and_dry_run_validate_and_write_nothing(option: str) -> None:
    org = _org()
    storage = FakeRestoreStorage()
    storage.back_up(org, ALL)
    _damage(org)
    damaged = dict(org.files)
    run, _, _ = _run(CHOSEN, **{option: True})
    job = MetadataRestoreJob(run, org, storage)
    job.execute()
    assert org.files == damaged
    assert org.deploys == [True]
    got = _outcomes(storage)
    assert got["ApexClass:Alpha"][0] == rpb.RECORD_STATE_UPDATED  # what would happen
    assert got["ApexClass:Delta"][0] == rpb.RECORD_STATE_SKIPPED
    assert storage.puts[0].dry_run and storage.puts[0].write_calls == 0
    assert not job.verification.done


def test_a_resumed_job_polls_its_deploy_instead_of_deploying_again() -> None:
    org = _org()
    storage = FakeRestoreStorage()
    storage.back_up(org, ALL)
    _damage(org)

    class StopAfterDeploy:
        """The attempt dies while polling the real deploy (the org applied it)."""

        def __init__(self, inner: FakeMetadataOrg) -> None:
            self.inner = inner

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        def wait_deploy(self, async_id: str, *, should_stop: Any = None) -> DeployResult:
            result = self.inner.wait_deploy(async_id)
            if not result.check_only:
                raise JobStopped("shutdown")
            return result

    run, tables, _ = _run(CHOSEN)
    with pytest.raises(JobStopped):
        MetadataRestoreJob(run, StopAfterDeploy(org), storage).execute()
    assert org.deploys == [True, False] and not storage.puts

    run, _, _ = _run(CHOSEN, tables=tables)
    MetadataRestoreJob(run, org, storage).execute()
    assert org.deploys == [True, False]  # not deployed again
    got = _outcomes(storage)
    assert got["ApexClass:Alpha"][0] == rpb.RECORD_STATE_UPDATED  # the deploy's, not "equal now"
    assert got["ApexClass:Delta"][0] == rpb.RECORD_STATE_SKIPPED


def test_a_malformed_component_fails_alone() -> None:
    org = _org()
    storage = FakeRestoreStorage()
    storage.back_up(org, ALL)
    _damage(org)
    run, _, _ = _run(["ApexClass:Alpha", "not a component"])
    MetadataRestoreJob(run, org, storage).execute()
    got = {o.source_id: (o.object_name, o.state, o.error_code) for o in storage.puts[0].outcomes}
    assert got == {
        "ApexClass:Alpha": ("metadata:ApexClass", rpb.RECORD_STATE_UPDATED, ""),
        "not a component": ("metadata:invalid", rpb.RECORD_STATE_FAILED, "INVALID_COMPONENT"),
    }
    run, _, _ = _run([])
    with pytest.raises(InvalidComponent):
        MetadataRestoreJob(run, org, storage).execute()


def test_component_names_are_checked() -> None:
    assert parse_components(["ApexClass:A", " CustomField:Account.X__c ", "ApexClass:A"]) == [
        ("ApexClass", "A"),
        ("CustomField", "Account.X__c"),
    ]
    for bad in (["ApexClass"], [":A"], ["Apex Class:A"], ["ApexClass:"], []):
        with pytest.raises(InvalidComponent):
            parse_components(bad)


def test_the_deploy_zip_holds_package_files_meta_and_fields_in_their_object() -> None:
    stored_field = ET.tostring(ET.fromstring(f'<CustomObject xmlns="{MD_NS}">{_field("A__c", "A")}</CustomObject>')[0])
    assert stored_field.startswith(b"<ns0:fields")  # how the backup job keeps a field
    obj = f'<CustomObject xmlns="{MD_NS}"><label>Thing</label>{_field("A__c", "old")}</CustomObject>'.encode()
    components = [
        Component("ApexClass", "Alpha", _cls("Alpha", ""), "classes/Alpha.cls"),
        Component("ApexTrigger", "T1", b"trigger T1 on Account (before insert) {}", ""),
        Component("CustomField", "Account.A__c", stored_field, "objects/Account.object"),
        Component("CustomField", "Thing__c.A__c", stored_field, "objects/Thing__c.object"),
        Component("CustomObject", "Thing__c", obj, "objects/Thing__c.object"),
    ]
    org_meta = {"classes/Alpha.cls-meta.xml": b"<ApexClass>org's own</ApexClass>"}
    files = _unzip(build_deploy_zip(components, V, org_meta))
    assert set(files) == {
        "package.xml",
        "classes/Alpha.cls",
        "classes/Alpha.cls-meta.xml",
        "triggers/T1.trigger",
        "triggers/T1.trigger-meta.xml",
        "objects/Account.object",
        "objects/Thing__c.object",
    }
    assert files["classes/Alpha.cls-meta.xml"] == org_meta["classes/Alpha.cls-meta.xml"]
    trigger_meta = ET.fromstring(files["triggers/T1.trigger-meta.xml"])
    assert trigger_meta.findtext(f"{{{MD_NS}}}apiVersion") == V
    assert trigger_meta.findtext(f"{{{MD_NS}}}status") == "Active"
    package = ET.fromstring(files["package.xml"])
    assert package.findtext(f"{{{MD_NS}}}version") == V
    members = {
        t.findtext(f"{{{MD_NS}}}name"): sorted(m.text or "" for m in t.iter(f"{{{MD_NS}}}members"))
        for t in package.iter(f"{{{MD_NS}}}types")
    }
    assert members == {
        "ApexClass": ["Alpha"],
        "ApexTrigger": ["T1"],
        "CustomField": ["Account.A__c", "Thing__c.A__c"],
        "CustomObject": ["Thing__c"],
    }
    account = ET.fromstring(files["objects/Account.object"])
    assert account.tag == f"{{{MD_NS}}}CustomObject"
    assert [el.findtext(f"{{{MD_NS}}}label") for el in account.iter(f"{{{MD_NS}}}fields")] == ["A"]
    # the retrieve of what is deployed extracts to the very bytes the backup holds (so hashes compare)
    props = FileProperties("CustomField", "Account.A__c", "objects/Account.object", "")
    assert fingerprint("CustomField", _custom_field(files, props)) == fingerprint("CustomField", stored_field)
    assert fingerprint("CustomField", _custom_field(files, props)) != fingerprint(
        "CustomField", _field("A__c", "B").encode()
    )
    thing = ET.fromstring(files["objects/Thing__c.object"])
    assert thing.findtext(f"{{{MD_NS}}}label") == "Thing"  # the object's own elements kept
    assert [el.findtext(f"{{{MD_NS}}}label") for el in thing.iter(f"{{{MD_NS}}}fields")] == ["A"]  # the field's


CHECK_DEPLOY_STATUS = f"""<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns="{MD_NS}"><soapenv:Body>
<checkDeployStatusResponse><result><checkOnly>true</checkOnly><createdBy>005</createdBy><createdByName>A</createdByName>
<createdDate>2026-12-07T00:00:00.000Z</createdDate>
<details>
<componentFailures><changed>false</changed><componentType>ApexClass</componentType><created>false</created>
<deleted>false</deleted><fileName>classes/Beta.cls</fileName><fullName>Beta</fullName>
<problem>Unexpected token 'ERROR'.</problem><problemType>Error</problemType><success>false</success></componentFailures>
<componentFailures><changed>false</changed><componentType></componentType><created>false</created><deleted>false</deleted>
<fileName>objects/Account.object</fileName><fullName>Account</fullName><problem>Field Tier__c: bad length</problem>
<problemType>Error</problemType><success>false</success></componentFailures>
<componentFailures><changed>false</changed><created>false</created><deleted>false</deleted><fileName>x</fileName>
<fullName>Gamma</fullName><componentType>ApexClass</componentType><problem>just a warning</problem>
<problemType>Warning</problemType><success>false</success></componentFailures>
<componentSuccesses><changed>true</changed><componentType>ApexClass</componentType><created>false</created>
<deleted>false</deleted><fileName>classes/Alpha.cls</fileName><fullName>Alpha</fullName><success>true</success>
</componentSuccesses>
</details>
<done>true</done><id>0Af000000000001</id><ignoreWarnings>true</ignoreWarnings><numberComponentErrors>2</numberComponentErrors>
<numberComponentsDeployed>1</numberComponentsDeployed><numberComponentsTotal>3</numberComponentsTotal>
<numberTestErrors>0</numberTestErrors><numberTestsCompleted>0</numberTestsCompleted><numberTestsTotal>0</numberTestsTotal>
<rollbackOnError>true</rollbackOnError><runTestsEnabled>false</runTestsEnabled><status>Failed</status>
<success>false</success></result></checkDeployStatusResponse></soapenv:Body></soapenv:Envelope>"""


def test_check_deploy_status_is_read_and_failures_reach_their_components() -> None:
    result = parse_deploy_result(ET.fromstring(CHECK_DEPLOY_STATUS))
    assert (result.id, result.done, result.status, result.success, result.check_only) == (
        "0Af000000000001",
        True,
        "Failed",
        False,
        True,
    )
    assert (result.number_component_errors, result.number_components_total) == (2, 3)
    assert [f.full_name for f in result.failures] == ["Beta", "Account"]  # the warning is not a failure
    assert [(s.full_name, s.changed) for s in result.successes] == [("Alpha", True)]
    assert not result.succeeded
    pending = [
        Component("ApexClass", "Alpha", b"x", "classes/Alpha.cls"),
        Component("ApexClass", "Beta", b"x", "classes/Beta.cls"),
        Component("CustomField", "Account.Tier__c", b"x", "objects/Account.object"),
    ]
    problems = failures_of(result, pending)
    assert problems == {
        "ApexClass:Beta": "Unexpected token 'ERROR'.",
        "CustomField:Account.Tier__c": "Field Tier__c: bad length",
    }


def test_the_deploy_request_carries_the_zip_and_check_only() -> None:
    body = deploy_body(b"PK\x03\x04zip", check_only=True)
    root = ET.fromstring(f'<r xmlns:met="{MD_NS}">{body}</r>')
    deploy = root.find(f"{{{MD_NS}}}deploy")
    assert deploy is not None
    assert deploy.findtext(f"{{{MD_NS}}}ZipFile") == "UEsDBHppcA=="
    options = deploy.find(f"{{{MD_NS}}}DeployOptions")
    assert options is not None
    assert options.findtext(f"{{{MD_NS}}}checkOnly") == "true"
    assert options.findtext(f"{{{MD_NS}}}rollbackOnError") == "true"
    assert options.findtext(f"{{{MD_NS}}}singlePackage") == "true"


@pytest.mark.integration
def test_on_sforg_three_classes_and_a_field_restored_and_a_failing_validation_deploys_nothing(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The acceptance's metadata case against sforg: the backup as the backup job extracts a retrieve; three
    classes changed through the admin API and an Account custom field's label changed by a deploy; all four
    restored (Updated) and read back equal to the backup; then a backup holding a class that does not compile
    deploys nothing and says why."""
    from services.jobrunner.metadata_deploy import MetadataDeployClient
    from services.jobrunner.salesforce import JobOrgClient
    from sforg.testing import Admin, running_org
    from tests.jobrunner.conftest import SECRET_ENV, org_client

    with running_org(tmp_path, scale="tiny", seed=7) as info:
        monkeypatch.setenv(SECRET_ENV, info["client_secret"])
        client = org_client(info)
        md = MetadataDeployClient(JobOrgClient(client.creds, token=client.token))
        admin = Admin(info)
        listed = md.list_components(["ApexClass", "CustomField"])
        classes = [p for p in listed if p.type == "ApexClass"][:3]
        field_ = next(p for p in listed if p.type == "CustomField" and p.full_name.startswith("Account."))
        chosen = [*classes, field_]
        members: dict[str, list[str]] = {}
        for p in chosen:
            members.setdefault(p.type, []).append(p.full_name)
        files = _unzip(md.retrieve(members))
        storage = FakeRestoreStorage()
        for p in chosen:
            content = _custom_field(files, p) if p.type == "CustomField" else files[p.file_name]
            storage.held[(p.type, p.full_name)] = spb.MetadataVersion(
                type=p.type, full_name=p.full_name, content=content, file_name=p.file_name
            )
        for p in classes:
            admin.change_metadata(p.type, p.full_name)
        # the field changed as an admin would change it (its label, through a deploy of its own)
        held = storage.held[(field_.type, field_.full_name)].content
        renamed = ET.fromstring(held)
        label = next(el for el in renamed if el.tag.endswith("label"))
        label.text = f"{label.text} (renamed)"
        damage = Component(field_.type, field_.full_name, ET.tostring(renamed), field_.file_name)
        assert md.wait_deploy(md.deploy(build_deploy_zip([damage], V), check_only=False)).succeeded
        current = _custom_field(_unzip(md.retrieve(members)), field_)
        assert fingerprint(field_.type, current) != fingerprint(field_.type, held)
        keys = [f"{p.type}:{p.full_name}" for p in chosen]
        # check only first: validated, predicted, nothing deployed
        damaged = _unzip(md.retrieve(members))
        run, _, _ = _run(keys, check_only=True)
        MetadataRestoreJob(run, md, storage).execute()
        assert {s for s, _m in _outcomes(storage).values()} == {rpb.RECORD_STATE_UPDATED}
        assert storage.puts[0].dry_run
        assert _unzip(md.retrieve(members)) == damaged
        storage.puts.clear()
        run, _, _ = _run(keys)
        job = MetadataRestoreJob(run, md, storage)
        job.execute()
        got = _outcomes(storage)
        changed = [k for k in keys if got[k][0] == rpb.RECORD_STATE_UPDATED]
        assert len([k for k in changed if k.startswith("ApexClass:")]) == 3, got
        assert got[keys[-1]][0] == rpb.RECORD_STATE_UPDATED, got
        assert job.verification.verified and job.verification.matching == 4, job.verification
        after = _unzip(md.retrieve(members))
        for p in classes:
            assert after[p.file_name] == storage.held[(p.type, p.full_name)].content
        assert fingerprint(field_.type, _custom_field(after, field_)) == fingerprint(field_.type, held)

        # a backup holding a class that does not compile: nothing deployed, the reason given
        bad = classes[0]
        storage.held[(bad.type, bad.full_name)] = spb.MetadataVersion(
            type=bad.type, full_name=bad.full_name, content=b"public class {{{ not apex", file_name=bad.file_name
        )
        admin.change_metadata(classes[1].type, classes[1].full_name)
        before = _unzip(md.retrieve(members))
        storage.puts.clear()
        run, _, _ = _run(keys[:2])
        MetadataRestoreJob(run, md, storage).execute()
        got = _outcomes(storage)
        assert all(state == rpb.RECORD_STATE_FAILED for state, _m in got.values()), got
        assert got[keys[0]][1] and "validation failed" not in got[keys[0]][1]  # its own problem
        assert _unzip(md.retrieve(members)) == before


def test_the_deploy_client_speaks_soap_deploy_and_polls_check_deploy_status() -> None:
    """MetadataDeployClient over HTTP (a local server answering as Salesforce does): deploy with the session,
    SOAPAction and zip; checkDeployStatus polled until done; the answer read."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from services.jobrunner.metadata_deploy import MetadataDeployClient
    from services.sfclient import Credentials, OrgClient, Token

    seen: list[tuple[str, bytes]] = []
    polls = iter(["InProgress", "Succeeded"])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            action = self.headers.get("SOAPAction", "")
            seen.append((action, body))
            if action == "deploy":
                inner = (
                    "<deployResponse><result><done>false</done><id>0Af9</id><state>Queued</state></result>"
                    "</deployResponse>"
                )
            else:
                status = next(polls)
                done = "true" if status == "Succeeded" else "false"
                inner = (
                    "<checkDeployStatusResponse><result><checkOnly>false</checkOnly><details><componentSuccesses>"
                    "<componentType>ApexClass</componentType><fullName>Alpha</fullName><fileName>classes/Alpha.cls"
                    "</fileName><changed>true</changed><success>true</success></componentSuccesses></details>"
                    f"<done>{done}</done><id>0Af9</id><status>{status}</status><success>{done}</success></result>"
                    "</checkDeployStatusResponse>"
                )
            answer = (
                '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/'
                f'envelope/" xmlns="{MD_NS}"><soapenv:Body>{inner}</soapenv:Body></soapenv:Envelope>'
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        token = Token(access_token="SESSION-1", instance_url=url, salesforce_org_id=ORG, user_id="005x")
        client = OrgClient(Credentials(login_url=url, auth_flow="client_credentials", api_version=V), token=token)
        md = MetadataDeployClient(client)
        async_id = md.deploy(b"PKzip", check_only=False)
        result = md.wait_deploy(async_id)
    finally:
        server.shutdown()
        server.server_close()
    assert async_id == "0Af9"
    assert result.succeeded and [s.full_name for s in result.successes] == ["Alpha"]
    assert [a for a, _b in seen] == ["deploy", "checkDeployStatus", "checkDeployStatus"]
    deploy = ET.fromstring(seen[0][1])
    assert deploy.findtext(f".//{{{MD_NS}}}sessionId") == "SESSION-1"
    assert deploy.findtext(f".//{{{MD_NS}}}ZipFile") == "UEt6aXA="  # b"PKzip"
    assert deploy.findtext(f".//{{{MD_NS}}}checkOnly") == "false"
    assert ET.fromstring(seen[1][1]).findtext(f".//{{{MD_NS}}}asyncProcessId") == "0Af9"
    assert client.api_calls == 3


@pytest.mark.integration
async def test_with_storage_the_backup_is_read_as_of_and_the_outcomes_stored(stack: Any, org: Any, admin: Any) -> None:
    """The real path to storage: the metadata job backs the org up; a metadata restore of components the org
    still holds unchanged reads them as of that point (GetMetadataAsOf), retrieves the org's, finds them equal
    (Skipped, no deploy), and its outcomes are stored and listed (PutRestoreOutcomes, ListRestoreRecords)."""
    import asyncio

    from services.jobrunner.metadata_deploy import MetadataDeployClient
    from services.jobrunner.metadata_restore import GrpcRestoreStorage
    from services.jobrunner.salesforce import JobOrgClient
    from services.jobrunner.storage_client import StorageClient
    from tests.jobrunner.conftest import metadata_spec, org_client

    await stack.start_jobrunner()
    done = await stack.run(metadata_spec(org, "s1", "md"))
    assert done.outcome == ev.JOB_OUTCOME_SUCCESS, done.message
    truth = admin.ground_truth(objects=["Account"], values=False)["metadata"]
    classes = sorted(m["fullName"] for m in truth if m["type"] == "ApexClass")[:2]
    field_ = next(m["fullName"] for m in truth if m["type"] == "CustomField" and m["fullName"].startswith("Account."))
    keys = [*(f"ApexClass:{c}" for c in classes), f"CustomField:{field_}", "ApexClass:NeverBackedUp"]
    client = StorageClient(f"127.0.0.1:{stack.storage.port}")
    sf = org_client(org)
    md = MetadataDeployClient(JobOrgClient(sf.creds, token=sf.token))

    def restore() -> MetadataRestoreJob:
        spec = jobs_pb2.JobSpec(
            session_id="r1",
            job_id="metadata",
            type=ev.JOB_TYPE_METADATA_RESTORE,
            org_id="o1",
            salesforce_org_id=org["org_id"],
            restore=jobs_pb2.RestoreJob(spec=rpb.RestoreSpec(metadata_components=keys)),
        )
        run = JobRun(spec, client, FakeTables(), JobControl(), Tuning(), md.client)
        job = MetadataRestoreJob(run, md, GrpcRestoreStorage(client))
        job.execute()
        return job

    try:
        job = await asyncio.to_thread(restore)
        held = await asyncio.to_thread(
            GrpcRestoreStorage(client).metadata_as_of, org["org_id"], "ApexClass", classes[0], None
        )
    finally:
        client.close()
    assert held is not None and held.content and held.file_name == f"classes/{classes[0]}.cls"
    states = {o.source_id: (o.state, o.error_code) for o in job.outcomes}
    assert states == {
        **{k: (rpb.RECORD_STATE_SKIPPED, "") for k in keys[:3]},
        "ApexClass:NeverBackedUp": (rpb.RECORD_STATE_FAILED, "NOT_IN_BACKUP"),
    }
    listed = await stack.stub.ListRestoreRecords(spb.ListRestoreRecordsRequest(session_id="r1"))
    assert {o.source_id: o.state for o in listed.outcomes} == {k: s for k, (s, _c) in states.items()}
