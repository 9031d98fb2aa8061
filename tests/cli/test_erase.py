"""`sfvault erase` and `sfvault erase verify`: the requests made, the preview-then-ask rule (refused off a terminal
without --yes), the JSON shapes, usage mistakes refused before anything is called. Fake services."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sfvault.storage.v1 import storage_pb2 as st

from services.cli import __main__ as cli

ORG = "00D000000000062EAA"
C1, L1 = "003000000000001AAA", "00Q000000000001AAA"


class FakeStorage:
    def __init__(self, *, matches: bool = True, clean: bool = True) -> None:
        self.storage = self
        self.asked: list[Any] = []
        self.matches = matches
        self.clean = clean

    def Erase(self, request: st.EraseRequest) -> st.EraseResponse:
        self.asked.append(st.EraseRequest.FromString(request.SerializeToString()))
        records = (
            [
                st.ErasedRecord(object_name="Contact", record_id=C1, versions=2, file_bodies=1),
                st.ErasedRecord(object_name="Lead", record_id=L1, versions=1),
            ]
            if self.matches
            else []
        )
        return st.EraseResponse(
            erasure_id="" if request.dry_run else "er-1",
            records=records,
            versions=3 if self.matches else 0,
            file_bodies=1 if self.matches else 0,
            dry_run=request.dry_run,
        )

    def VerifyErasure(self, request: st.VerifyErasureRequest) -> st.VerifyErasureResponse:
        self.asked.append(request)
        if self.clean:
            return st.VerifyErasureResponse(clean=True)
        return st.VerifyErasureResponse(clean=False, versions_holding=2, samples=[f"Contact:{C1}"])


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeStorage:
    services = FakeStorage()
    monkeypatch.setattr(cli, "clients", lambda: services)
    return services


def test_erase_by_value_with_yes_sends_one_request_and_prints_one_json_object(
    fake: FakeStorage, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["erase", ORG, "--value", "jane@x.org", "--fields", "Contact.Email, Lead.Email", "--reason", "GDPR #4"]
    assert cli.run([*argv, "--yes", "--json"]) == 0
    [request] = fake.asked
    assert (request.org_id, request.value, list(request.fields), request.reason) == (
        ORG,
        "jane@x.org",
        ["Contact.Email", "Lead.Email"],
        "GDPR #4",
    )
    assert not request.dry_run and not request.object_name and not request.ids
    out = capsys.readouterr().out
    assert json.loads(out) == {
        "erasure_id": "er-1",
        "dry_run": False,
        "versions": 3,
        "file_bodies": 1,
        "records": [
            {"object": "Contact", "id": C1, "versions": 2, "file_bodies": 1},
            {"object": "Lead", "id": L1, "versions": 1, "file_bodies": 0},
        ],
    }
    assert "jane@x.org" not in out


def test_without_yes_it_previews_and_off_a_terminal_refuses(
    fake: FakeStorage, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.run(["erase", ORG, "--object", "Contact", "--ids", f"{C1},{C1[:15]}", "--reason", "asked"])
    assert code == 2
    [preview] = fake.asked
    assert preview.dry_run and preview.object_name == "Contact" and list(preview.ids) == [C1, C1[:15]]
    captured = capsys.readouterr()
    assert "Would erase" in captured.out and "--yes" in captured.err


def test_dry_run_only_previews(fake: FakeStorage, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.run(["erase", ORG, "--object", "Contact", "--ids", C1, "--reason", "r", "--dry-run", "--json"]) == 0
    [request] = fake.asked
    assert request.dry_run
    assert json.loads(capsys.readouterr().out)["dry_run"] is True


def test_nothing_matching_erases_nothing(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    services = FakeStorage(matches=False)
    monkeypatch.setattr(cli, "clients", lambda: services)
    assert cli.run(["erase", ORG, "--value", "x@y.z", "--fields", "Lead.Email", "--reason", "r"]) == 0
    assert [r.dry_run for r in services.asked] == [True]
    assert "nothing to erase" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args",
    [
        ["--value", "x@y.z", "--reason", "r"],  # no fields
        ["--fields", "Contact.Email", "--reason", "r"],  # no value
        ["--ids", C1, "--reason", "r"],  # no object
        ["--object", "Contact", "--reason", "r"],  # no ids
        ["--object", "Contact", "--ids", C1, "--value", "x", "--fields", "Lead.Email", "--reason", "r"],  # both
        ["--object", "Contact", "--ids", C1],  # no reason
        ["--reason", "r"],  # nothing
    ],
)
def test_usage_mistakes_are_refused_before_any_call(fake: FakeStorage, args: list[str]) -> None:
    assert cli.run(["erase", ORG, *args, "--yes"]) == 2
    assert fake.asked == []


def test_verify_says_clean_or_not_with_samples_and_exit_code(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clean = FakeStorage()
    monkeypatch.setattr(cli, "clients", lambda: clean)
    assert cli.run(["erase", "verify", ORG, "--value", "x@y.z", "--fields", "Contact.Email", "--json"]) == 0
    [request] = clean.asked
    assert (request.org_id, request.value, list(request.fields)) == (ORG, "x@y.z", ["Contact.Email"])
    assert json.loads(capsys.readouterr().out)["clean"] is True
    dirty = FakeStorage(clean=False)
    monkeypatch.setattr(cli, "clients", lambda: dirty)
    assert cli.run(["erase", "verify", ORG, "--value", "x@y.z"]) == 1
    out = capsys.readouterr().out
    assert "not clean" in out and f"Contact:{C1}" in out and "x@y.z" not in out
    assert cli.run(["erase", "verify", ORG]) == 2  # neither --value nor --erasure
    assert cli.run(["erase", "verify", ORG, "--erasure", "er-1", "--yes"]) == 2
    assert cli.run(["erase", "verify", ORG, "--erasure", "er-1"]) == 1
    assert dirty.asked[-1].erasure_id == "er-1"
