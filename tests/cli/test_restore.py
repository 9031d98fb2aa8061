"""`sfvault restore`: the options -> StartSessionRequest mapping and the `--json` shape (pure), and the commands
on fake services (the production guard refuses before anything starts; a dry run waits, reports and exits by
what it found)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.json_format import MessageToDict
from sfvault.discovery.v1 import discovery_pb2 as disc
from sfvault.events.v1 import events_pb2 as pb
from sfvault.restore.v1 import restore_pb2 as rpb
from sfvault.session.v1 import session_pb2 as api
from sfvault.storage.v1 import storage_pb2 as st

from services.cli import __main__ as cli
from services.cli import restore as rs
from tests.cli.test_main import one_error_line, sfvault

T = dt.datetime(2026, 11, 1, 10, 0, tzinfo=dt.UTC)
ID1, ID2 = "001000000000001AAA", "001000000000002"


def spec_of(request: api.StartSessionRequest) -> dict[str, Any]:
    return MessageToDict(request.restore, preserving_proto_field_name=True)


def test_ids_of_one_object_with_every_option() -> None:
    request = rs.run_request(
        rs.RunOptions(
            org="prod",
            objects=["Account"],
            as_of=T,
            ids=[ID1, ID2],
            fields=["Name,Phone", "Industry"],
            restore_empty=True,
            parents=0,
            children=3,
            to_org="sb1",
            match_on="Ext__c",
            masks=["Contact.Email=email", "Contact.Title=fixed:a=b"],
            files=False,
            owner_map=["005000000000001AAA=005000000000002AAA"],
            dry_run=True,
            yes=True,
        )
    )
    assert request.org_id == "prod" and request.kind == rpb.SESSION_KIND_RESTORE and request.trigger == "manual"
    assert not request.policy_id
    assert spec_of(request) == {
        "source_org_id": "prod",
        "target_org_id": "sb1",
        "as_of": "2026-11-01T10:00:00Z",
        "selections": [{"object_name": "Account", "ids": [ID1, ID2], "fields": ["Name", "Phone", "Industry"]}],
        "restore_empty": True,
        "parents": 0,
        "children": 3,
        "match_on": "Ext__c",
        "masks": [
            {"object_name": "Contact", "field": "Email", "rule": "email"},
            {"object_name": "Contact", "field": "Title", "rule": "fixed:a=b"},
        ],
        "dry_run": True,
        "confirmed": True,
        "owner_map": {"005000000000001AAA": "005000000000002AAA"},
    }


@pytest.mark.parametrize(
    ("given", "selection"),
    [
        ({}, {"all": True}),  # no selection option: the object whole
        ({"all_records": True}, {"all": True}),
        ({"deleted_since": T}, {"deleted_since": "2026-11-01T10:00:00Z"}),
        ({"changed_since": T}, {"changed_since": "2026-11-01T10:00:00Z"}),
    ],
)
def test_a_selection_per_object(given: dict[str, Any], selection: dict[str, Any]) -> None:
    request = rs.run_request(rs.RunOptions(org="o1", objects=["Account", "Contact"], **given))
    spec = spec_of(request)
    assert spec["selections"] == [{"object_name": o} | selection for o in ("Account", "Contact")]
    assert spec["files"] is True and "parents" not in spec and "children" not in spec and "as_of" not in spec
    assert not request.restore.HasField("parents")  # unset: the defaults (1 up, 2 down) are the jobrunner's


def test_the_whole_org() -> None:
    spec = spec_of(rs.run_request(rs.RunOptions(org="o1", whole_org=True)))
    assert spec == {"source_org_id": "o1", "whole_org": True, "files": True}


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ({}, "--object OBJ"),
        ({"objects": ["Account"], "whole_org": True}, "not both"),
        ({"whole_org": True, "ids": [ID1]}, "needs --object"),
        ({"objects": ["Account"], "ids": [ID1], "all_records": True}, "choose one"),
        ({"objects": ["Account"], "deleted_since": T, "changed_since": T}, "choose one"),
        ({"objects": ["Account", "Contact"], "ids": [ID1]}, "one --object"),
        ({"objects": ["Contact"], "masks": ["Email=null"]}, "OBJECT.FIELD=RULE"),
        ({"objects": ["Contact"], "masks": ["Contact.Email"]}, "OBJECT.FIELD=RULE"),
        ({"objects": ["Contact"], "owner_map": ["005000000000001AAA"]}, "OLD_USER_ID=NEW_USER_ID"),
        ({"whole_org": True, "fields": ["Name"]}, "--fields"),
    ],
)
def test_options_that_contradict_each_other(given: dict[str, Any], says: str) -> None:
    with pytest.raises(rs.RestoreOptionError, match=says):
        rs.run_request(rs.RunOptions(org="o1", **given))


def test_ids_from_text_and_a_file(tmp_path: Path) -> None:
    assert rs.split_ids(f" {ID1},{ID2} ;\n") == [ID1, ID2]
    listed = tmp_path / "ids.txt"
    listed.write_text(f"# lost on Monday\n{ID1}\n\n{ID2}  # and this one\n")
    assert rs.read_ids_file(listed) == [ID1, ID2]
    listed.write_text("# nothing\n")
    with pytest.raises(rs.RestoreOptionError, match="no Id"):
        rs.read_ids_file(listed)


def test_a_metadata_restore() -> None:
    request = rs.metadata_request("o1", T, ["ApexClass:Invoice", "CustomField:Account.Tier__c"], True, False)
    assert request.kind == rpb.SESSION_KIND_METADATA_RESTORE and request.org_id == "o1"
    assert spec_of(request) == {
        "source_org_id": "o1",
        "as_of": "2026-11-01T10:00:00Z",
        "metadata_components": ["ApexClass:Invoice", "CustomField:Account.Tier__c"],
        "check_only": True,
    }
    with pytest.raises(rs.RestoreOptionError, match="TYPE:FULLNAME"):
        rs.metadata_request("o1", T, ["Invoice"], False, False)


def finished_restore(
    status: int = pb.SESSION_STATUS_SUCCESS,
    failed: int = 0,
    differing: int = 0,
    dry_run: bool = False,
    done: bool = True,
) -> api.Session:
    return api.Session(
        session_id="r1",
        org_id="o1",
        status=status,  # type: ignore[arg-type]
        kind=rpb.SESSION_KIND_RESTORE,
        restore=rpb.RestoreSpec(
            source_org_id="o1",
            target_org_id="o1",
            dry_run=dry_run,
            confirmed=True,
            requested_by="rita",
            selections=[rpb.RestoreSelection(object_name="Account", all=True)],
        ),
        restore_counts=[
            rpb.ObjectRestoreCounts(object_name="Account", created=2, updated=3, undeleted=4, skipped=5, failed=failed),
            rpb.ObjectRestoreCounts(object_name="Contact", skipped=7, write_calls=3),
        ],
        verification=rpb.Verification(done=done, verified=done and not differing, matching=9, differing=differing),
    )


def test_the_json_shape_scripts_rely_on() -> None:
    assert rs.summary(finished_restore()) == {
        "session_id": "r1",
        "status": "SUCCESS",
        "objects": {
            "Account": {"created": 2, "updated": 3, "undeleted": 4, "skipped": 5, "failed": 0},
            "Contact": {"created": 0, "updated": 0, "undeleted": 0, "skipped": 7, "failed": 0},
        },
        "verified": True,
        "dry_run": False,
    }
    preview = rs.summary(finished_restore(dry_run=True, done=False))
    assert preview["verified"] is False and preview["dry_run"] is True


@pytest.mark.parametrize(
    ("session", "says"),
    [
        (finished_restore(), None),
        (finished_restore(dry_run=True, done=False), None),  # a preview reads nothing back
        (finished_restore(pb.SESSION_STATUS_WARNING, failed=1), "1 records failed"),
        (finished_restore(differing=2), "2 records differ"),
        (finished_restore(done=False), "not verified"),
        (finished_restore(pb.SESSION_STATUS_FAILED), "ended FAILED"),
    ],
)
def test_what_makes_a_restore_exit_non_zero(session: api.Session, says: str | None) -> None:
    found = rs.problems(session)
    assert (found == []) if says is None else any(says in p for p in found), found


def test_a_retry_is_the_same_spec_with_retry_of() -> None:
    request = rs.retry_request(finished_restore(pb.SESSION_STATUS_WARNING, failed=1))
    assert request.kind == rpb.SESSION_KIND_RESTORE and request.org_id == "o1" and request.trigger == "retry"
    original = finished_restore().restore
    assert request.restore.retry_of == "r1" and request.restore.requested_by == ""
    request.restore.retry_of, original.requested_by = "", ""
    assert request.restore == original
    with pytest.raises(rs.RestoreOptionError, match="backup"):
        rs.retry_request(api.Session(session_id="b1", kind=rpb.SESSION_KIND_BACKUP))


def test_production_needs_yes_unless_nothing_is_written() -> None:
    def request(**spec: Any) -> api.StartSessionRequest:
        return api.StartSessionRequest(org_id="o1", restore=rpb.RestoreSpec(**spec))

    assert rs.needs_confirmation(request(), sandbox=False)
    assert not rs.needs_confirmation(request(), sandbox=True)
    assert not rs.needs_confirmation(request(confirmed=True), sandbox=False)
    assert not rs.needs_confirmation(request(dry_run=True), sandbox=False)
    assert not rs.needs_confirmation(request(check_only=True), sandbox=False)
    assert rs.target_org(request(target_org_id="sb1")) == "sb1" and rs.target_org(request()) == "o1"


# ---- the commands on fake services ---------------------------------------------------------------------


class FakeServices:
    """What `clients()` gives the commands: the calls they make, answered from memory."""

    def __init__(self, sandbox: bool, final: api.Session) -> None:
        self.sandbox = sandbox
        self.final = final
        self.started: list[api.StartSessionRequest] = []
        self.listed: list[st.ListRestoreRecordsRequest] = []
        self.discovery, self.session, self.storage = self, self, self

    def GetOrg(self, request: disc.GetOrgRequest) -> disc.Org:
        return disc.Org(org_id=request.org_id, sandbox=self.sandbox)

    def StartSession(self, request: api.StartSessionRequest) -> api.Session:
        self.started.append(request)
        return api.Session(
            session_id="r1", status=pb.SESSION_STATUS_PENDING, kind=request.kind, restore=request.restore
        )

    def WatchSession(self, request: api.WatchSessionRequest) -> Iterator[api.Session]:
        yield self.final

    def GetSession(self, request: api.GetSessionRequest) -> api.Session:
        return self.final

    def ListJobs(self, request: api.ListJobsRequest) -> api.ListJobsResponse:
        return api.ListJobsResponse()

    def ListRestoreRecords(self, request: st.ListRestoreRecordsRequest) -> st.ListRestoreRecordsResponse:
        self.listed.append(request)
        outcomes = [
            rpb.RecordOutcome(
                object_name="Account", source_id=ID1, state=rpb.RECORD_STATE_UPDATED, changed_fields=["Name", "Phone"]
            )
        ]
        if request.page_token:
            return st.ListRestoreRecordsResponse(outcomes=outcomes)
        return st.ListRestoreRecordsResponse(outcomes=outcomes, next_page_token="" if request.page_size < 100 else "2")


def use(monkeypatch: pytest.MonkeyPatch, services: FakeServices) -> FakeServices:
    monkeypatch.setattr(cli, "clients", lambda: services)
    return services


def test_production_without_yes_is_refused_before_anything_starts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = use(monkeypatch, FakeServices(sandbox=False, final=finished_restore()))
    assert cli.run(["restore", "run", "prod", "--object", "Account", "--wait"]) == 2
    assert "production org: give --yes" in capsys.readouterr().err
    assert fake.started == []
    assert cli.run(["restore", "run", "prod", "--object", "Account", "--wait", "--yes", "--json"]) == 0
    [request] = fake.started
    assert request.restore.confirmed
    assert json.loads(capsys.readouterr().out) == rs.summary(finished_restore())


def test_a_dry_run_waits_reports_a_sample_of_differences_and_exits_by_what_it_found(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    preview = finished_restore(dry_run=True, done=False)
    fake = use(monkeypatch, FakeServices(sandbox=False, final=preview))
    assert (
        cli.run(
            ["restore", "run", "prod", "--object", "Account", "--deleted-since", "2026-11-01T00:00:00Z", "--dry-run"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "Would be restored (dry run)" in out and "Account" in out
    assert f"Account {ID1}: Name, Phone" in out  # the sample, from the Updated records
    assert fake.started[0].restore.dry_run and not fake.started[0].restore.confirmed
    assert fake.listed[0].state == rpb.RECORD_STATE_UPDATED
    fake.final = finished_restore(pb.SESSION_STATUS_WARNING, failed=2, dry_run=True, done=False)
    assert cli.run(["restore", "run", "prod", "--object", "Account", "--dry-run", "--json"]) == 3
    assert json.loads(capsys.readouterr().out)["objects"]["Account"]["failed"] == 2
    fake.final = finished_restore(pb.SESSION_STATUS_FAILED, dry_run=True, done=False)
    assert cli.run(["restore", "run", "prod", "--object", "Account", "--dry-run", "--json"]) == 2


def test_records_are_paged_through_and_show_reads_a_restore(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = use(monkeypatch, FakeServices(sandbox=True, final=finished_restore()))
    assert cli.run(["restore", "records", "r1", "--state", "updated", "--object", "Account", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2 and len(fake.listed) == 2
    assert fake.listed[0].object_name == "Account" and fake.listed[1].page_token == "2"
    assert cli.run(["restore", "show", "r1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["session_id"] == "r1"
    assert cli.run(["restore", "show", "r1"]) == 0
    assert "read-back" in capsys.readouterr().out
    assert cli.run(["restore", "retry", "r1", "--json"]) == 0
    assert fake.started[-1].restore.retry_of == "r1"
    assert cli.run(["session", "show", "r1"]) == 0  # a restore shown by `session show` too
    assert "Restored" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args",
    [
        ("restore", "run", "o1"),
        ("restore", "run", "o1", "--object", "Account", "--ids", ID1, "--all"),
        ("restore", "run", "o1", "--object", "Account", "--as-of", "yesterday"),
        ("restore", "run", "o1", "--object", "Contact", "--mask", "Email=null"),
        ("restore", "metadata", "o1", "--as-of", "2026-11-01T00:00:00Z", "--component", "Invoice"),
        ("restore", "records", "r1", "--state", "lost"),
    ],
)
def test_a_restore_the_cli_refuses_itself_is_a_usage_error(args: tuple[str, ...]) -> None:
    one_error_line(sfvault(*args), code=2)


def test_a_restore_with_sfvault_away_and_a_restorer_token() -> None:
    line = one_error_line(sfvault("restore", "run", "o1", "--object", "Account", "--dry-run"))
    assert line.startswith("error (unavailable)")
    minted = sfvault("token", "create", "--name", "rita", "--role", "restorer", "--no-register", SFVAULT_AUTH_KEY="k")
    assert minted.returncode == 0 and minted.stdout.startswith("sfv1.")
    assert "restorer" in one_error_line(
        sfvault("token", "create", "--name", "x", "--role", "root", SFVAULT_AUTH_KEY="k")
    )
