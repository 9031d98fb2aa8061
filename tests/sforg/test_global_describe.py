"""describeGlobal lists every object a real org's does (the CumulusCI capture: 110 objects) with the real flags;
each listed object has a describe, and a query of it answers as a real org's: an empty result for a queryable one
sforg holds no records of, INVALID_TYPE for a change or platform event."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from simple_salesforce.exceptions import SalesforceMalformedRequest

FIXTURES = Path(__file__).parent / "fixtures"
# the capture's update script left Event's and Lead's key prefix out; their own captured describes say 00U, 00Q
ELIDED = {("Event", "keyPrefix"): "00U", ("Lead", "keyPrefix"): "00Q"}


def captured() -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = json.loads((FIXTURES / "cumulusci_global_describe.json").read_text())["sobjects"]
    return objects


def test_every_captured_object_is_listed_as_captured(sf: Any) -> None:
    ours = {o["name"]: o for o in sf.describe()["sobjects"]}
    assert len(ours) >= 150
    version = sf.sf_version
    for real in captured():
        entry = ours[real["name"]]
        for key, value in real.items():
            if key == "urls":
                want = {k: v.replace("/v52.0/", f"/v{version}/") for k, v in value.items()}
                assert entry["urls"] == want, real["name"]
            else:
                assert entry[key] == ELIDED.get((real["name"], key), value), (real["name"], key)


@pytest.mark.parametrize("name", [o["name"] for o in captured()])
def test_each_listed_object_describes_and_queries_as_a_real_org(sf: Any, name: str) -> None:
    real = next(o for o in captured() if o["name"] == name)
    d = getattr(sf, name).describe()
    for key in ("queryable", "retrieveable", "replicateable", "createable", "layoutable", "keyPrefix"):
        assert d[key] == ELIDED.get((name, key), real[key]), key
    fields = {f["name"] for f in d["fields"]}
    assert "Id" in fields or not real["queryable"]
    if real["queryable"]:
        first = "Id" if "Id" in fields else sorted(fields)[0]
        answer = sf.query(f"SELECT {first} FROM {name}")
        assert answer["done"] is True and answer["totalSize"] == len(answer["records"])
    else:
        with pytest.raises(SalesforceMalformedRequest) as err:
            sf.query(f"SELECT Id FROM {name}")
        assert err.value.content[0]["errorCode"] == "INVALID_TYPE"
        assert f"sObject type '{name}' is not supported." in err.value.content[0]["message"]


def test_associated_objects_of_unmodelled_objects_carry_their_familys_fields(sf: Any) -> None:
    assert {"WorkOrderId", "Field", "OldValue", "NewValue"} <= {
        f["name"] for f in sf.WorkOrderHistory.describe()["fields"]
    }
    share = {f["name"]: f for f in sf.WorkOrderShare.describe()["fields"]}
    assert share["ParentId"]["referenceTo"] == ["WorkOrder"] and "AccessLevel" in share and "RowCause" in share
    children = {c["childSObject"]: c for c in sf.WorkOrder.describe()["childRelationships"]}
    assert children["WorkOrderShare"]["relationshipName"] == "Shares"
    assert children["WorkOrderHistory"]["cascadeDelete"] is True
    event = {f["name"] for f in sf.WorkOrderChangeEvent.describe()["fields"]}
    assert "WorkOrderNumber" in event and "ReplayId" in event


def test_bulk_refuses_what_a_real_org_refuses(sf: Any) -> None:
    with pytest.raises(Exception) as err:
        list(sf.bulk2.WorkOrderStatus.query("SELECT Id FROM WorkOrderStatus"))
    assert "INVALIDENTITY" in str(err.value)
