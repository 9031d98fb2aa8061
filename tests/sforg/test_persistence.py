"""The org lives in its state directory: a restart serves it, changes included; same seed, same org."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from sforg.testing import Admin, ca_bundle, running_org, simple_salesforce


def strip_volatile(truth: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in truth.items() if k != "generated_at"}


def test_restart_serves_the_same_org_with_changes(tmp_path: Path, monkeypatch: Any) -> None:
    state = tmp_path / "org"
    with running_org(state, scale=400, seed=5) as info:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_bundle(info))
        admin = Admin(info)
        changed = admin.update("Account", n=3, values={"Name": "Persisted"})["ids"]
        admin.add_field("Contact", "Nickname")
        admin.set_clock("2030-01-01T00:00:00Z", freeze=True)
        before = admin.ground_truth()
        token = simple_salesforce(info).session_id
    with running_org(state, scale=400, seed=5) as again:
        assert {k: again[k] for k in ("client_id", "client_secret", "admin_token", "ca_file")} == {
            k: info[k] for k in ("client_id", "client_secret", "admin_token", "ca_file")
        }
        admin = Admin(again)
        assert strip_volatile(admin.ground_truth()) == strip_volatile(before)
        assert admin.clock()["now"] == "2030-01-01T00:00:00.000Z"
        from simple_salesforce import Salesforce

        sf = Salesforce(instance_url=again["instance_url"], session_id=token)
        names = sf.query_all("SELECT Id, Name FROM Account WHERE Name = 'Persisted'")["records"]
        assert {r["Id"] for r in names} == set(changed)
        assert "Nickname__c" in {f["name"] for f in sf.Contact.describe()["fields"]}
    assert json.loads((state / "org.json").read_text())["port"] == again["port"]
    assert os.environ["REQUESTS_CA_BUNDLE"].endswith("ca-bundle.pem")


def test_same_seed_same_org(tmp_path: Path) -> None:
    truths = []
    for name in ("a", "b"):
        with running_org(tmp_path / name, scale=300, seed=42) as info:
            truths.append(Admin(info).ground_truth())
    a, b = (strip_volatile(t) for t in truths)
    assert a["objects"] == b["objects"]
    assert a["files"] == b["files"]
    assert [m["fullName"] for m in a["metadata"]] == [m["fullName"] for m in b["metadata"]]
