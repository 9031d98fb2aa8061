"""A policy's sensitive fields (issue 18): checked ("Object.Field", each once), stored and returned over gRPC, and
a data job's FieldSpec marked sensitive for exactly the policy's fields of its object (any case)."""

from __future__ import annotations

import datetime as dt

import grpc
import pytest
from sfvault.discovery.v1 import discovery_pb2 as api

from services.discovery import domain as d
from services.discovery import translate
from tests.discovery.conftest import Running
from tests.discovery.test_api import CONNECTION


@pytest.mark.parametrize(
    ("names", "why"),
    [(("Contact",), "sensitive_fields[0]"), (("Contact.Email", "contact.email"), "listed twice"), (("A.B.C",), "[0]")],
)
def test_bad_sensitive_fields_are_refused(names: tuple[str, ...], why: str) -> None:
    with pytest.raises(d.InvalidPolicy, match=why.replace("[", r"\[").replace("]", r"\]")):
        d.check_policy(d.Policy("p1", "acme", sensitive_fields=names))


def test_a_data_jobs_fields_are_marked_sensitive_as_the_policy_says() -> None:
    policy = d.check_policy(d.Policy("p1", "acme", sensitive_fields=("contact.EMAIL", "Lead.Email", "Contact.Phone")))
    assert translate.policy_from_pb(translate.policy_to_pb(policy)) == policy
    fields = tuple(
        d.FieldState(d.FieldInfo(name, "string"), d.FieldStatus.IN_SCOPE) for name in ("Id", "Email", "Phone", "Name")
    )
    job = d.PlannedDataJob("data-Contact", "Contact", fields, True, "003", True, True, True, True, "h")
    org = d.Org("acme", "Acme", d.Connection("https://login.example.com", d.AuthFlow.CLIENT_CREDENTIALS))
    spec = translate.job_spec(
        job,
        session_id="s1",
        policy=policy,
        org=org,
        salesforce_org_id="00D000000000001AAA",
        instance_url="https://x.example.com",
        initial=True,
        stall_timeout=dt.timedelta(hours=1),
        budget=d.Budget(0, 10),
    )
    assert {f.name: f.sensitive for f in spec.data.fields} == {
        "Id": False,
        "Email": True,
        "Phone": True,
        "Name": False,
    }


async def test_sensitive_fields_are_stored_and_returned(running: Running) -> None:
    stub = running.stub
    await stub.CreateOrg(api.CreateOrgRequest(org_id="acme", connection=CONNECTION))
    policy = translate.policy_to_pb(d.Policy("p1", "acme", sensitive_fields=("Contact.Email",)))
    created = await stub.CreatePolicy(api.CreatePolicyRequest(policy=policy))
    assert list(created.sensitive_fields) == ["Contact.Email"]
    created.sensitive_fields.append("Lead.Email")
    await stub.UpdatePolicy(api.UpdatePolicyRequest(policy=created))
    fetched = await stub.GetPolicy(api.GetPolicyRequest(policy_id="p1"))
    assert list(fetched.sensitive_fields) == ["Contact.Email", "Lead.Email"]
    fetched.sensitive_fields.append("Lead")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.UpdatePolicy(api.UpdatePolicyRequest(policy=fetched))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "sensitive_fields[2]" in (refused.value.details() or "")
