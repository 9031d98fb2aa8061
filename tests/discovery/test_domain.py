"""Discovery's rules without I/O: scope resolution under both auto-add flags, schema diffs (removed and
hidden fields), job planning and the API budget split."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from services.discovery import domain as d

SYSTEM = ("Id", "IsDeleted", "SystemModstamp", "Name")


def obj(name: str, prefix: str = "a00", queryable: bool = True) -> d.GlobalObject:
    return d.GlobalObject(name, prefix, queryable=queryable)


def desc(name: str, *fields: str) -> d.ObjectDescribe:
    return d.ObjectDescribe(name, tuple(d.FieldInfo(f, "string") for f in (*SYSTEM, *fields)), f"h-{name}")


def policy(**kw: object) -> d.Policy:
    return d.Policy("p1", "o1", **kw)  # type: ignore[arg-type]


def session(
    p: d.Policy, objects: dict[str, tuple[str, ...]], previous: d.Schema | None = None, **unreadable: str
) -> d.Resolution:
    global_objects = [obj(n) for n in objects]
    wanted = d.wanted_objects(p, global_objects, previous)
    describes = {n: desc(n, *objects[n]) for n in wanted if n not in unreadable}
    return d.resolve(p, global_objects, describes, previous, unreadable)


def query(res: d.Resolution, name: str) -> dict[str, bool]:
    state = res.schema.get(name)
    assert state is not None and state.in_scope
    return {f.info.name: f.backfill for f in state.query_fields()}


def test_first_session_takes_every_queryable_object_allowed_by_the_lists() -> None:
    p = policy(auto_add_new_objects=False, scope=d.Scope(exclude_objects=("Lead",)))
    global_objects = [obj("Account"), obj("Lead"), obj("Secret__c", queryable=False), obj("ContentDocumentLink")]
    wanted = d.wanted_objects(p, global_objects, None)
    assert set(wanted) == {"Account"}
    res = d.resolve(p, global_objects, {"Account": desc("Account")}, None)
    assert [o.name for o in res.schema.in_scope()] == ["Account"]
    assert res.schema.get("Account").full  # type: ignore[union-attr]
    assert res.warnings == ()


def test_include_list_limits_the_scope_and_warns_of_missing_objects() -> None:
    p = policy(scope=d.Scope(include_objects=("Account", "Ghost__c")))
    res = session(p, {"Account": (), "Contact": ()})
    assert [o.name for o in res.schema.in_scope()] == ["Account"]
    assert any("Ghost__c" in w for w in res.warnings)


@pytest.mark.parametrize("auto", [True, False])
def test_new_objects_and_fields_follow_the_flags(auto: bool) -> None:
    p = policy(auto_add_new_objects=auto, auto_add_new_fields=auto)
    first = session(p, {"Account": ("Phone",)})
    second = session(p, {"Account": ("Phone", "New__c"), "Gadget__c": ()}, first.schema)
    account = query(second, "Account")
    assert not second.schema.get("Account").full  # type: ignore[union-attr]
    if auto:
        assert account["New__c"] is True and account["Phone"] is False
        assert second.schema.get("Gadget__c").full  # type: ignore[union-attr]
    else:
        assert "New__c" not in account
        assert second.schema.get("Gadget__c").status is d.ObjectStatus.DECLINED  # type: ignore[union-attr]
    # a later session: the field is no longer new, and nothing is backfilled twice
    third = session(p, {"Account": ("Phone", "New__c"), "Gadget__c": ()}, second.schema)
    assert ("New__c" in query(third, "Account")) is auto
    assert not any(query(third, "Account").values())


def test_switching_a_flag_on_adds_what_was_declined() -> None:
    off = policy(auto_add_new_objects=False, auto_add_new_fields=False)
    first = session(off, {"Account": ()})
    second = session(off, {"Account": ("New__c",), "Gadget__c": ()}, first.schema)
    on = dataclasses.replace(off, auto_add_new_objects=True, auto_add_new_fields=True)
    third = session(on, {"Account": ("New__c",), "Gadget__c": ()}, second.schema)
    assert query(third, "Account")["New__c"] is True
    assert third.schema.get("Gadget__c").full  # type: ignore[union-attr]


def test_removed_or_hidden_fields_leave_the_query_and_return_with_a_backfill() -> None:
    p = policy(auto_add_new_fields=False)
    first = session(p, {"Contact": ("Email", "Phone")})
    second = session(p, {"Contact": ("Phone",)}, first.schema)
    assert "Email" not in query(second, "Contact")
    assert any("Email" in w for w in second.warnings)
    gone = second.schema.get("Contact").field("Email")  # type: ignore[union-attr]
    assert gone is not None and gone.status is d.FieldStatus.GONE
    third = session(p, {"Contact": ("Phone",)}, second.schema)
    assert third.warnings == ()  # said once, not every session
    fourth = session(p, {"Contact": ("Email", "Phone")}, third.schema)
    assert query(fourth, "Contact")["Email"] is True


def test_excluded_fields_stay_out_but_system_fields_stay_in() -> None:
    p = policy(scope=d.Scope(exclude_fields={"Account": ("Phone", "SystemModstamp")}))
    res = session(p, {"Account": ("Phone",)})
    assert set(query(res, "Account")) == set(SYSTEM)


def test_unreadable_and_vanished_objects_are_skipped_with_a_warning() -> None:
    p = policy()
    first = session(p, {"Account": (), "Gadget__c": ()})
    second = session(p, {"Account": (), "Gadget__c": ()}, first.schema, Account="describe returned HTTP 403")
    assert second.schema.get("Account").status is d.ObjectStatus.SKIPPED  # type: ignore[union-attr]
    assert any("Account" in w and "403" in w for w in second.warnings)
    third = session(p, {"Account": ()}, second.schema)
    assert not third.schema.get("Account").full  # type: ignore[union-attr]  # skipped is not forgotten
    assert third.schema.get("Gadget__c").status is d.ObjectStatus.GONE  # type: ignore[union-attr]
    assert any("Gadget__c" in w for w in third.warnings)
    fourth = session(dataclasses.replace(p, auto_add_new_objects=False), {"Account": (), "Gadget__c": ()}, third.schema)
    assert fourth.schema.get("Gadget__c").full  # type: ignore[union-attr]  # it returns, read in full


def test_plan_jobs_and_flags() -> None:
    p = policy(files=True, metadata=True)
    res = session(p, {"Account": ("BillingAddress",), "Attachment": (), "ContentVersion": ()})
    jobs = d.plan_jobs(p, res.schema)
    assert [j.job_id for j in jobs] == [
        "metadata",
        "files",
        "data-Account",
        "data-Attachment",
        "data-ContentVersion",
    ]
    files = jobs[1]
    assert isinstance(files, d.PlannedFileJob) and files.attachments and files.content_versions and not files.documents
    account = jobs[2]
    assert isinstance(account, d.PlannedDataJob)
    assert account.full and account.queryall_supported and account.has_system_modstamp and account.bulk_supported
    attachment = jobs[3]
    assert isinstance(attachment, d.PlannedDataJob) and not attachment.bulk_supported
    assert [j.job_id for j in d.plan_jobs(dataclasses.replace(p, files=False, metadata=False), res.schema)] == [
        "data-Account",
        "data-Attachment",
        "data-ContentVersion",
    ]


def test_data_jobs_start_largest_first() -> None:
    p = policy(files=False, metadata=False)
    res = session(p, {"Account": (), "Contact": (), "Lead": (), "Case": ()})
    counts = {"Account": 10, "Contact": 500, "Lead": 10, "Gadget__c": 10**9}  # Case: unknown
    assert [j.job_id for j in d.plan_jobs(p, res.schema, counts)] == [
        "data-Contact",
        "data-Account",
        "data-Lead",
        "data-Case",
    ]
    assert d.largest_first(["b", "a", "c"], {"c": -1}) == ["a", "b", "c"]  # no counts: name order


def test_budget_split() -> None:
    assert d.split_budget(policy(), 5, 10) == d.Budget(0, 50)
    assert d.split_budget(policy(per_run_cap=1000, daily_share_percent=80), 4, 200) == d.Budget(200, 20)
    assert d.split_budget(policy(per_run_cap=10), 4, 50) == d.Budget(1, 50)


def test_policy_and_connection_rules() -> None:
    d.check_policy(policy(schedule="daily@02:30"))
    for bad in (
        policy(daily_share_percent=120),
        policy(per_run_cap=-1),
        policy(stall_timeout=dt.timedelta(seconds=-1)),
        policy(schedule="sometimes"),
        policy(schedule="when the moon is blue"),  # five words: the shape of a cron line, not one
        policy(schedule="daily@25:99"),
        policy(schedule="0 0 31 2 *"),  # never fires
        policy(scope=d.Scope(include_objects=("A",), exclude_objects=("A",))),
        d.Policy("bad id", "o1"),
    ):
        with pytest.raises(d.InvalidPolicy):
            d.check_policy(bad)
    good = d.Connection("https://login.example.com", d.AuthFlow.CLIENT_CREDENTIALS, "cid", "env:SFVAULT_SECRET_SF")
    d.check_connection(good)
    d.check_connection(dataclasses.replace(good, client_secret_ref="file:/var/run/secrets/sfvault/salesforce/sf"))
    for change in (
        {"client_secret_ref": "hunter2"},
        {"client_secret_ref": "file:relative"},
        {"client_secret_ref": "env:SFVAULT_AUTH_KEY"},  # not an org's secret: sfvault's own key
        {"client_secret_ref": "env:SFVAULT_DATABASE_URL"},
        {"client_secret_ref": "file:/etc/passwd"},  # outside the secrets directories
        {"private_key_ref": "file:/var/run/secrets/sfvault/salesforce/../auth/key"},
        {"login_url": "http://insecure"},
        {"ca_bundle_ref": "env:CA"},
        {"auth_flow": d.AuthFlow.PASSWORD},
    ):
        with pytest.raises(d.InvalidPolicy):
            d.check_connection(dataclasses.replace(good, **change))  # type: ignore[arg-type]
    assert d.stall_timeout(policy(), dt.timedelta(0)) == dt.timedelta(0)  # the session service's default
    assert d.stall_timeout(policy(stall_timeout=dt.timedelta(hours=2)), dt.timedelta(0)) == dt.timedelta(hours=2)
    assert d.stall_timeout(policy(stall_timeout=dt.timedelta(hours=2)), dt.timedelta(hours=1)) == dt.timedelta(hours=1)


def test_a_full_read_or_backfill_whose_job_did_not_complete_is_asked_again() -> None:
    p = policy()
    first = session(p, {"Account": (), "Contact": ()})
    objects = [obj("Account"), obj("Contact")]

    def next_session(previous: d.Schema, completed: set[str], *extra: str) -> d.Resolution:
        describes = {"Account": desc("Account", *extra), "Contact": desc("Contact", *extra)}
        return d.resolve(p, objects, describes, previous, completed=completed)

    second = next_session(first.schema, {"Account"})
    assert not second.schema.get("Account").full  # type: ignore[union-attr]
    assert second.schema.get("Contact").full  # type: ignore[union-attr]
    third = next_session(second.schema, {"Account", "Contact"}, "New__c")
    assert query(third, "Account")["New__c"] and query(third, "Contact")["New__c"]
    fourth = next_session(third.schema, {"Contact"}, "New__c")
    assert query(fourth, "Account")["New__c"] and not query(fourth, "Contact")["New__c"]
    assert not fourth.schema.get("Account").full  # type: ignore[union-attr]
