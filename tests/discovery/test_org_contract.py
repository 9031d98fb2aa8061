"""The org port's rules (services/discovery/ports.py: OrgSession), held against the in-memory FakeOrg
(tests/discovery/fakes.py) and the real adapter (services/discovery/salesforce.py) on the sforg emulator."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sfvault.discovery.v1 import discovery_pb2 as api

from services.discovery import translate
from services.discovery.ports import DescribeFailed, Fetched, OrgSession
from services.discovery.salesforce import SalesforceOrg
from tests.discovery.fakes import FakeOrg


@pytest.fixture(params=["fake", "sforg"])
def org(request: pytest.FixtureRequest) -> Iterator[OrgSession]:
    if request.param == "fake":
        fields: list[dict[str, object]] = [{"name": "Id", "type": "id"}, {"name": "Name", "type": "string"}]
        yield FakeOrg({"Account": fields, "Contact": fields}, {"Account": {"001A", "001B"}, "Contact": {"003A"}})
        return
    connection: api.OrgConnection = request.getfixturevalue("connection")
    yield SalesforceOrg(translate.connection_from_pb(connection))


def test_the_org_says_who_it_is_and_counts_its_calls(org: OrgSession) -> None:
    assert org.salesforce_org_id.startswith("00D")
    assert org.instance_url.startswith("https://")
    before = org.api_calls
    assert org.check_access() == []
    assert org.api_calls > before


def test_describe_global_lists_objects_and_answers_not_modified_since_its_date(org: OrgSession) -> None:
    first = org.describe_global()
    assert first.body is not None and first.date
    names = {o["name"] for o in first.body["sobjects"]}
    assert "Account" in names
    again = org.describe_global(since=first.date)
    assert again == Fetched(None, first.date)  # nothing changed since: 304, no body


def test_describes_come_back_per_object_and_an_unknown_one_fails_alone(org: OrgSession) -> None:
    results = org.describe_many([("Account", ""), ("NoSuchObject__c", "")])
    account = results["Account"]
    assert isinstance(account, Fetched) and account.body is not None
    assert account.body["name"] == "Account"
    assert any(f["name"] == "Id" for f in account.body["fields"])
    assert isinstance(results["NoSuchObject__c"], DescribeFailed)
    unchanged = org.describe_many([("Account", account.date)])["Account"]
    assert isinstance(unchanged, Fetched) and unchanged.body is None


def test_record_counts_agree_with_the_live_ids(org: OrgSession) -> None:
    ids = org.live_ids("Account")
    assert ids
    assert org.record_counts(["Account"]) == {"Account": len(ids)}


def test_edge_ids_are_the_lowest_and_highest_live_ids_one_call_each(org: OrgSession) -> None:
    ids = org.live_ids("Account")
    before = org.api_calls
    assert org.edge_id("Account", highest=False) == min(ids)
    assert org.edge_id("Account", highest=True) == max(ids)
    assert org.api_calls == before + 2
