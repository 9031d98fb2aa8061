"""What people and scripts see, on fake services: tables in 80 columns, short reports instead of Python reprs,
no colour codes off a terminal, `--json` with numbers as numbers and record values decoded, schedules with their
time zone, and the file-writing commands (`-o -`, `--force`, Parquet, a point with no data)."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console
from sfvault.discovery.v1 import discovery_pb2 as disc
from sfvault.events.v1 import events_pb2 as pb
from sfvault.session.v1 import session_pb2 as api
from sfvault.storage.v1 import storage_pb2 as st

from services.cli import __main__ as cli
from services.cli import render

SF_ORG = "00D000000000001AAA"
SESSION = "5e551011000000000000000000000001"


def ts(text: str) -> object:
    from google.protobuf.timestamp_pb2 import Timestamp

    t = Timestamp()
    t.FromJsonString(text)
    return t


def job(name: str, received: int, outcome: int = pb.JOB_OUTCOME_SUCCESS) -> api.Job:
    counts = pb.Counts(received=received, new_versions=received, unchanged=1_000_000, files=12, api_calls=1234)
    return api.Job(
        session_id=SESSION,
        job_id=f"data-{name}",
        object_name=name,
        state=api.JOB_STATE_FINISHED,
        outcome=outcome,  # type: ignore[arg-type]
        counts=counts,
        message="Salesforce reported 1,000 records, 999 were received; the next session reads the object again",
    )


class Fake:
    def __init__(self) -> None:
        self.discovery, self.session, self.storage = self, self, self
        self.policy = disc.Policy(policy_id="nightly", org_id="prod", name="Nightly", schedule="daily@02:00")
        self.keeps_time_zone = True
        self.exports: list[st.ExportObjectAsOfRequest] = []
        self.first_capture = "2026-12-01T02:00:00Z"

    def GetOrg(self, request: disc.GetOrgRequest) -> disc.Org:
        return disc.Org(org_id=request.org_id, salesforce_org_id=SF_ORG)

    def GetPolicy(self, request: disc.GetPolicyRequest) -> disc.Policy:
        return self.policy

    def UpdatePolicy(self, request: disc.UpdatePolicyRequest) -> disc.Policy:
        self.policy = disc.Policy()
        self.policy.CopyFrom(request.policy)
        if not self.keeps_time_zone:
            self.policy.time_zone = ""
        return self.policy

    def ListPolicies(self, request: disc.ListPoliciesRequest) -> disc.ListPoliciesResponse:
        return disc.ListPoliciesResponse(policies=[self.policy])

    def GetSession(self, request: api.GetSessionRequest) -> api.Session:
        return api.Session(session_id=SESSION, policy_id="nightly", org_id="prod", status=pb.SESSION_STATUS_SUCCESS)

    def ListSessions(self, request: api.ListSessionsRequest) -> api.ListSessionsResponse:
        return api.ListSessionsResponse(sessions=[self.GetSession(api.GetSessionRequest())])

    def ListJobs(self, request: api.ListJobsRequest) -> api.ListJobsResponse:
        names = ("Account", "Contact", "OpportunityLineItem", "ContentVersion")
        return api.ListJobsResponse(jobs=[job(n, 1_234_567) for n in names])

    def GetRecordHistory(self, request: st.GetRecordHistoryRequest) -> st.GetRecordHistoryResponse:
        v = st.RecordVersion(version_id=7, session_id=SESSION, values_json=b'{"Id": "001A", "Name": "Acme"}')
        v.captured_at.FromJsonString("2026-12-01T02:00:00Z")
        return st.GetRecordHistoryResponse(versions=[v])

    def GetRecordAsOf(self, request: st.GetRecordAsOfRequest) -> st.RecordVersion:
        return self.GetRecordHistory(st.GetRecordHistoryRequest()).versions[0]

    def GetMetadataAsOf(self, request: st.GetMetadataAsOfRequest) -> st.MetadataVersion:
        return st.MetadataVersion(
            type="ApexClass",
            full_name="Invoices",
            version_id=3,
            size=29,
            content=b"public class Invoices { } // \xc3\xa9",
        )

    def GetFile(self, request: st.GetFileRequest) -> Iterator[st.GetFileResponse]:
        yield st.GetFileResponse(file=st.FileVersion(file_name="q3.pdf", size=6, sha256="ab" * 32))
        yield st.GetFileResponse(data=b"%PDF-1")

    def ListRestorePoints(self, request: st.ListRestorePointsRequest) -> st.ListRestorePointsResponse:
        if request.object_name == "Never":
            return st.ListRestorePointsResponse()
        point = st.RestorePoint(session_id=SESSION)
        point.first_capture.FromJsonString(self.first_capture)
        point.last_capture.FromJsonString(self.first_capture)
        return st.ListRestorePointsResponse(restore_points=[point])

    def ExportObjectAsOf(self, request: st.ExportObjectAsOfRequest) -> Iterator[st.ExportChunk]:
        self.exports.append(request)
        rows = [{"Id": "001A", "Name": "Acme", "NumberOfEmployees": 5}, {"Id": "001B", "Name": "Globex"}]
        yield st.ExportChunk(data=b"".join(json.dumps(r).encode() + b"\n" for r in rows), records=2)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[Fake]:
    services = Fake()
    monkeypatch.setattr(cli, "clients", lambda: services)
    yield services


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """An 80-column colour terminal as the CLI's console."""
    out = io.StringIO()
    monkeypatch.setattr(render, "console", Console(file=out, width=80, force_terminal=True, color_system="standard"))
    return out


def test_the_jobs_and_sessions_tables_fit_80_columns(fake: Fake, terminal: io.StringIO) -> None:
    assert cli.run(["jobs", "list", SESSION]) == 0
    assert cli.run(["session", "list"]) == 0
    from rich.text import Text

    lines = Text.from_ansi(terminal.getvalue()).plain.splitlines()
    assert max(len(line) for line in lines) <= 80, "\n".join(lines)
    words = {w for line in lines for w in line.split()}
    assert {"OpportunityLineItem", "ContentVersion", "1,234,567", "1,000,000", "success", "records", "API"} <= words
    assert SESSION[:12] in words and "nightly" in words
    assert " ".join(lines).count("Salesforce reported") == 1  # one message, said by four jobs: once
    assert "\x1b[" in terminal.getvalue()  # colours on a terminal


def test_no_colour_codes_off_a_terminal(fake: Fake, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.run(["jobs", "list", SESSION]) == 0
    assert cli.run(["policy", "show", "nightly"]) == 0
    out = capsys.readouterr().out
    assert "success" in out and "\x1b[" not in out


def test_json_numbers_are_numbers_and_values_are_decoded(fake: Fake, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.run(["jobs", "list", SESSION, "--json"]) == 0
    counts = json.loads(capsys.readouterr().out)[0]["counts"]
    assert counts["received"] == 1_234_567 and counts["api_calls"] == 1234  # not "1234567"
    assert cli.run(["records", "history", "Account", "001A", "--org", "prod", "--json"]) == 0
    [v] = json.loads(capsys.readouterr().out)
    assert v["version_id"] == 7 and v["values_json"] == {"Id": "001A", "Name": "Acme"}  # not base64
    assert v["captured_at"] == "2026-12-01T02:00:00Z"
    assert cli.run(["records", "as-of", "Account", "001A", "--at", "now", "--org", "prod", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["values"] == {"Id": "001A", "Name": "Acme"} and "values_json" not in shown["version"]


def test_reports_are_not_python_reprs(fake: Fake, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.run(["policy", "show", "nightly"]) == 0
    out = capsys.readouterr().out
    assert "{" not in out and "'" not in out
    assert "daily@02:00 UTC" in out and "every object; files and metadata" not in out  # a default Policy: neither
    assert cli.run(["records", "as-of", "Account", "001A", "--at", "now", "--org", "prod"]) == 0
    out = capsys.readouterr().out
    assert "{" not in out and "Name" in out and "Acme" in out and "version 7" in out


def test_schedules_take_and_show_a_time_zone(fake: Fake, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.run(["policy", "update", "nightly", "--time-zone", "Europe/Paris"]) == 0
    assert fake.policy.time_zone == "Europe/Paris"
    assert "daily@02:00 Europe/Paris" in capsys.readouterr().out
    assert cli.run(["policy", "list"]) == 0
    assert "Europe/Paris" in capsys.readouterr().out
    assert cli.run(["policy", "update", "nightly", "--time-zone", "Mars/Olympus"]) == 1
    assert "unknown time zone 'Mars/Olympus'" in capsys.readouterr().err
    fake.keeps_time_zone = False  # a discovery without time zones: said, not silently UTC
    assert cli.run(["policy", "update", "nightly", "--time-zone", "Asia/Tokyo"]) == 1
    assert "did not keep the time zone 'Asia/Tokyo'" in capsys.readouterr().err


def test_files_get_refuses_to_overwrite_without_force(
    fake: Fake, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = tmp_path / "q3.pdf"
    body.write_bytes(b"mine")
    assert cli.run(["files", "get", "ContentVersion", "068A", "-o", str(body), "--org", "prod"]) == 1
    assert "exists: give --force" in capsys.readouterr().err and body.read_bytes() == b"mine"
    assert (
        cli.run(["files", "get", "ContentVersion", "068A", "-o", str(body), "--org", "prod", "--force", "--json"]) == 0
    )
    shown = json.loads(capsys.readouterr().out)
    assert body.read_bytes() == b"%PDF-1" and shown["bytes"] == 6 and shown["file_name"] == "q3.pdf"
    assert shown["size"] == 6 and shown["path"] == str(body)


def test_metadata_get_json_and_stdout(fake: Fake, capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    assert cli.run(["metadata", "get", "ApexClass", "Invoices", "--org", "prod", "--json"]) == 0
    shown = json.loads(capfdbinary.readouterr().out)
    assert shown["content"] == "public class Invoices { } // é" and shown["version_id"] == 3
    assert cli.run(["metadata", "get", "ApexClass", "Invoices", "--org", "prod", "-o", "-"]) == 0
    assert capfdbinary.readouterr().out == b"public class Invoices { } // \xc3\xa9"


def test_export_to_stdout_with_deleted_records(fake: Fake, capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    assert cli.run(["export", "Account", "--format", "jsonl", "-o", "-", "--include-deleted", "--org", "prod"]) == 0
    assert len(capfdbinary.readouterr().out.splitlines()) == 2
    assert fake.exports[-1].include_deleted and fake.exports[-1].format == st.EXPORT_FORMAT_JSONL


def test_export_when_the_point_has_no_data(fake: Fake, capsys: pytest.CaptureFixture[str]) -> None:
    at = "2026-11-01T00:00:00Z"
    assert cli.run(["export", "Account", "--at", at, "--org", "prod", "-o", "-"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error (not_found): no backup of Account as of 2026-11-01T00:00:00+00:00")
    assert "first restore point is 2026-12-01T02:00:00+00:00" in err
    assert cli.run(["export", "Never", "--org", "prod"]) == 1
    assert "Never has never been backed up" in capsys.readouterr().err and fake.exports == []


def test_parquet_without_pyarrow_says_what_to_install(
    fake: Fake, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as when it is not installed
    assert cli.run(["export", "Account", "--format", "parquet", "-o", "-", "--org", "prod"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error (failed_precondition)") and "pip install pyarrow" in err and fake.exports == []
    assert cli.run(["export", "Account", "--format", "xlsx", "--org", "prod"]) == 1
    assert "--format must be csv, jsonl or parquet" in capsys.readouterr().err


def test_the_restore_table_fits_80_columns(terminal: io.StringIO) -> None:
    from rich.text import Text
    from sfvault.restore.v1 import restore_pb2 as rpb

    s = api.Session(session_id=SESSION, kind=rpb.SESSION_KIND_RESTORE)
    s.restore_counts.add(object_name="Opportunity", created=12_345, updated=1_234, skipped=123_456, write_calls=99)
    render.console.print(render.restore_counts_table(s))
    lines = Text.from_ansi(terminal.getvalue()).plain.splitlines()
    assert max(len(line) for line in lines) <= 80
    words = {w for line in lines for w in line.split()}
    assert {"Opportunity", "undeleted", "12,345", "123,456", "calls", "99"} <= words


def test_parquet_export(fake: Fake, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With pyarrow (the optional dependency) a Parquet file of the records; without it, what to install."""
    out = tmp_path / "accounts.parquet"
    code = cli.run(["export", "Account", "--format", "parquet", "-o", str(out), "--org", "prod"])
    try:
        import pyarrow.parquet as pq
    except ImportError:
        assert code == 1 and "pip install pyarrow" in capsys.readouterr().err and not out.exists()
        return
    assert code == 0 and "2 records written" in capsys.readouterr().err
    table = pq.read_table(out)
    assert table.to_pylist() == [
        {"Id": "001A", "Name": "Acme", "NumberOfEmployees": 5},
        {"Id": "001B", "Name": "Globex", "NumberOfEmployees": None},
    ]
    assert fake.exports[-1].format == st.EXPORT_FORMAT_JSONL  # storage is asked for JSON Lines
