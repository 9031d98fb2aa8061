"""Metadata API retrieves that fail as Salesforce's do: a package that does not exist, more files or bytes than the
limits (settings, so a test can lower them), and missing components reported as messages; replays of recorded
checkRetrieveStatus answers (tests/sforg/recorded.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from xml.etree import ElementTree as ET

import pytest
import requests

from sforg.testing import Admin
from tests.sforg.recorded import recorded

MD = "{http://soap.sforce.com/2006/04/metadata}"
XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"


def soap(org: dict[str, Any], sf: Any, body: str) -> ET.Element:
    envelope = (
        '<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">'
        f'<soap:Header><SessionHeader xmlns="http://soap.sforce.com/2006/04/metadata"><sessionId>{sf.session_id}'
        f"</sessionId></SessionHeader></soap:Header><soap:Body>{body}</soap:Body></soap:Envelope>"
    )
    resp = requests.post(
        f"{org['instance_url']}/services/Soap/m/62.0", data=envelope, headers={"Content-Type": "text/xml"}
    )
    assert resp.status_code == 200, resp.text
    return ET.fromstring(resp.content)


def check(org: dict[str, Any], sf: Any, async_id: str) -> ET.Element:
    root = soap(
        org,
        sf,
        '<checkRetrieveStatus xmlns="http://soap.sforce.com/2006/04/metadata">'
        f"<asyncProcessId>{async_id}</asyncProcessId><includeZip>true</includeZip></checkRetrieveStatus>",
    )
    result = root.find(f".//{MD}checkRetrieveStatusResponse/{MD}result")
    assert result is not None
    return result


def retrieve(org: dict[str, Any], sf: Any, inner: str) -> str:
    root = soap(
        org,
        sf,
        '<retrieve xmlns="http://soap.sforce.com/2006/04/metadata"><retrieveRequest><apiVersion>62.0</apiVersion>'
        f"{inner}</retrieveRequest></retrieve>",
    )
    return root.findtext(f".//{MD}retrieveResponse/{MD}result/{MD}id") or ""


def children(el: ET.Element) -> list[tuple[str, str | None]]:
    return [(c.tag.removeprefix(MD), c.text) for c in el]


@pytest.fixture
def limits(admin: Admin) -> Iterator[Admin]:
    yield admin
    admin.settings(retrieve_max_files=10000, retrieve_max_bytes=400 * 1024 * 1024)


def test_replay_a_retrieve_of_a_missing_package_fails(org: dict[str, Any], sf: Any) -> None:
    real = ET.fromstring(recorded("retrieve_missing_package")["body"]).find(f".//{MD}result")
    assert real is not None
    async_id = retrieve(org, sf, "<packageNames>Abacus</packageNames>")
    ours = check(org, sf, async_id)
    assert [t for t, _ in children(ours)] == [t for t, _ in children(real)]
    got = dict(children(ours))
    assert {k: v for k, v in got.items() if k != "id"} == {k: v for k, v in children(real) if k != "id"}
    assert got["id"] == async_id and ours.find(f"{MD}zipFile").get(XSI_NIL) == "true"  # type: ignore[union-attr]


def test_replay_a_retrieve_over_the_file_limit_fails(org: dict[str, Any], sf: Any, limits: Admin) -> None:
    real = recorded("retrieve_too_many_files")["body"]
    limits.settings(retrieve_max_files=3)
    async_id, _ = sf.mdapi.retrieve("x", unpackaged={"ApexClass": ["*"]})
    ours = check(org, sf, async_id)
    assert [t for t, _ in children(ours)] == list(real)
    got = dict(children(ours))
    assert (got["errorStatusCode"], got["status"], got["success"]) == ("LIMIT_EXCEEDED", "Failed", "false")
    assert got["errorMessage"] == real["errorMessage"].replace("10000", "3")
    # simple-salesforce reports it as Salesforce's failure
    assert sf.mdapi.check_retrieve_status(async_id)[:2] == ("Failed", got["errorMessage"])
    # one class (a .cls and its -meta.xml) is within the limit
    name = next(m["fullName"] for m in limits.ground_truth([])["metadata"] if m["type"] == "ApexClass")
    ok_id, _ = sf.mdapi.retrieve("x", unpackaged={"ApexClass": [name]})
    assert sf.mdapi.check_retrieve_status(ok_id)[:2] == ("Succeeded", None)


def test_a_retrieve_over_the_size_limit_fails(org: dict[str, Any], sf: Any, limits: Admin) -> None:
    limits.settings(retrieve_max_bytes=500)
    async_id, _ = sf.mdapi.retrieve("x", unpackaged={"CustomObject": ["Invoice__c"]})
    got = dict(children(check(org, sf, async_id)))
    assert (got["errorStatusCode"], got["status"]) == ("LIMIT_EXCEEDED", "Failed")


def test_missing_components_are_messages_on_a_successful_retrieve(org: dict[str, Any], sf: Any) -> None:
    async_id = retrieve(
        org,
        sf,
        "<unpackaged><types><members>Nope1</members><members>Nope2</members><name>ApexClass</name></types>"
        "<version>62.0</version></unpackaged>",
    )
    result = check(org, sf, async_id)
    assert [t for t, _ in children(result)][-3:] == ["status", "success", "zipFile"]
    assert dict(children(result))["status"] == "Succeeded"
    problems = [(m.findtext(f"{MD}fileName"), m.findtext(f"{MD}problem")) for m in result.findall(f"{MD}messages")]
    assert problems == [
        ("unpackaged/package.xml", f"Entity of type 'ApexClass' named '{n}' cannot be found")
        for n in ("Nope1", "Nope2")
    ]
