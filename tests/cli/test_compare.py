"""`sfvault compare`: the pieces -> one JSON object, the CSV rows, the requests made (storage for two points,
discovery for --live), and usage mistakes refused before anything is called. Fake services."""

from __future__ import annotations

import csv
import io
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from sfvault.discovery.v1 import discovery_pb2 as disc
from sfvault.storage.v1 import storage_pb2 as st

from services.cli import __main__ as cli
from services.cli import compare as cmp

ID1, ID2, ID3 = "001000000000001AAA", "001000000000002AAA", "001000000000003AAA"


def pieces() -> list[st.CompareChunk]:
    return [
        st.CompareChunk(
            changes=[
                st.RecordChange(object_name="Account", record_id=ID1, change="added"),
                st.RecordChange(
                    object_name="Account",
                    record_id=ID2,
                    change="changed",
                    fields=[
                        st.FieldChange(field="Name", old_json=b'"Old"', new_json=b'"New"'),
                        st.FieldChange(field="NumberOfEmployees", old_json=b"5", new_json=b""),
                    ],
                ),
            ]
        ),
        st.CompareChunk(
            changes=[st.RecordChange(object_name="Account", record_id=ID3, change="deleted")],
            summaries=[
                st.ObjectCompareSummary(object_name="Account", added=1, deleted=1, changed=1),
                st.ObjectCompareSummary(object_name="Contact"),
            ],
        ),
    ]


class FakeServices:
    def __init__(self) -> None:
        self.storage = self
        self.discovery = self
        self.asked: list[Any] = []

    def CompareAsOf(self, request: st.CompareAsOfRequest) -> list[st.CompareChunk]:
        self.asked.append(request)
        return pieces()

    def CompareLive(self, request: disc.CompareLiveRequest) -> list[st.CompareChunk]:
        self.asked.append(request)
        return pieces()


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeServices:
    services = FakeServices()
    monkeypatch.setattr(cli, "clients", lambda: services)
    return services


def test_json_is_one_object_with_lists_of_ids_and_the_changed_fields(
    fake: FakeServices, capsys: pytest.CaptureFixture[str]
) -> None:
    org = "00D000000000062EAA"
    code = cli.run(["compare", org, "--from", "2026-11-01T00:00:00Z", "--to", "2026-11-02T00:00:00Z", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {
        "org": org,
        "from": "2026-11-01T00:00:00Z",
        "to": "2026-11-02T00:00:00Z",
        "objects": {
            "Account": {
                "added": [ID1],
                "deleted": [ID3],
                "changed": [ID2],
                "changed_fields": {ID2: ["Name", "NumberOfEmployees"]},
                "summary": {"added": 1, "deleted": 1, "changed": 1},
            },
            "Contact": {
                "added": [],
                "deleted": [],
                "changed": [],
                "changed_fields": {},
                "summary": {"added": 0, "deleted": 0, "changed": 0},
            },
        },
        "truncated": False,
    }
    [request] = fake.asked
    assert isinstance(request, st.CompareAsOfRequest) and request.org_id == org and not request.values
    assert getattr(request, "from").seconds and request.to.seconds - getattr(request, "from").seconds == 86400


def test_live_goes_to_discovery_and_needs_objects(fake: FakeServices, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.run(["compare", "prod", "--from", "2026-11-01T00:00:00Z", "--live"]) == 2
    assert "--object" in capsys.readouterr().err and not fake.asked
    assert cli.run(["compare", "prod", "--from", "2026-11-01T00:00:00Z", "--live", "--to", "now"]) == 2
    args = ["compare", "prod", "--from", "2026-11-01T00:00:00Z", "--live", "--object", "Account"]
    assert cli.run([*args, "--field", "Name", "--values", "--limit", "5", "--json"]) == 0
    [request] = fake.asked
    assert isinstance(request, disc.CompareLiveRequest)
    assert (request.org_id, list(request.objects), list(request.fields), request.values, request.limit) == (
        "prod",
        ["Account"],
        ["Name"],
        True,
        5,
    )
    out = json.loads(capsys.readouterr().out)
    assert out["to"] == "live"
    assert out["objects"]["Account"]["values"][ID2] == {
        "Name": {"old": "Old", "new": "New"},
        "NumberOfEmployees": {"old": 5, "new": None},
    }


def test_csv_writes_a_row_per_change_with_values_privately(
    fake: FakeServices, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "out" / "changes.csv"
    org = "00D000000000062EAA"
    assert cli.run(["compare", org, "--from", "2026-11-01T00:00:00Z", "--csv", str(target)]) == 0
    rows = list(csv.reader(io.StringIO(target.read_text())))
    assert rows == [
        ["object", "id", "change", "field", "old", "new"],
        ["Account", ID1, "added", "", "", ""],
        ["Account", ID3, "deleted", "", "", ""],
        ["Account", ID2, "changed", "Name", "Old", "New"],
        ["Account", ID2, "changed", "NumberOfEmployees", "5", ""],
    ]
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    assert fake.asked[0].values  # a CSV carries the values


def test_the_table_for_people(fake: FakeServices, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.run(["compare", "00D000000000062EAA", "--from", "2026-11-01T00:00:00Z"]) == 0
    out = capsys.readouterr().out
    assert "Account" in out and ID2 in out and "Name, NumberOfEmployees" in out
    assert cmp.collect([], "o", "a", "b", False)["objects"] == {}


def test_a_point_may_be_an_age(fake: FakeServices, capsys: pytest.CaptureFixture[str]) -> None:
    import time

    assert cli.run(["compare", "00D000000000062EAA", "--from", "2d", "--to", "1h", "--json"]) == 0
    [request] = fake.asked
    assert abs(getattr(request, "from").seconds - (time.time() - 2 * 86400)) < 60
    assert abs(request.to.seconds - (time.time() - 3600)) < 60
    assert cli.run(["compare", "00D000000000062EAA", "--from", "yesterday"]) == 1
    assert "cannot read time 'yesterday'" in capsys.readouterr().err
