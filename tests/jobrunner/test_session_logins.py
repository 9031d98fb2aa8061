"""One login per session and org in a jobrunner process (SessionLogins), against sforg: a session's jobs share it
and its reading of the org's clock; another session logs in afresh; a refused login is replaced for the jobs
after it."""

from __future__ import annotations

from typing import Any

from sfvault.jobs.v1 import jobs_pb2

from services.jobrunner.salesforce import JobOrgClient, SessionLogins
from sforg.testing import Admin
from tests.jobrunner.conftest import connection


def _spec(org: dict[str, Any], session: str) -> jobs_pb2.JobSpec:
    return jobs_pb2.JobSpec(session_id=session, job_id="data-Account", connection=connection(org))


def _logins(admin: Admin) -> int:
    return int(admin.accounting()["calls"].get("oauth", 0))


def test_the_jobs_of_a_session_share_one_login(org: dict[str, Any], admin: Admin) -> None:
    logins = SessionLogins()
    admin.reset_accounting()
    first = JobOrgClient.for_job(_spec(org, "s1"), timeout=30, logins=logins)
    clients = [JobOrgClient.for_job(_spec(org, "s1"), timeout=30, logins=logins) for _ in range(3)]
    assert _logins(admin) == 1
    for client in clients:
        assert client.token == first.token
        # the org's clock as the login read it: the same instant for every job of the session
        assert abs((client.org_now() - first.org_now()).total_seconds()) < 1.0
        client.reads(0).query_page("SELECT Id FROM Account LIMIT 1")
        assert client.api_calls == 1  # each job counts its own calls
    assert _logins(admin) == 1


def test_another_session_logs_in_and_reads_the_moved_clock(org: dict[str, Any], admin: Admin) -> None:
    logins = SessionLogins()
    before = JobOrgClient.for_job(_spec(org, "s2"), timeout=30, logins=logins).org_now()
    admin.advance_clock(3600)
    admin.reset_accounting()
    same = JobOrgClient.for_job(_spec(org, "s2"), timeout=30, logins=logins)
    later = JobOrgClient.for_job(_spec(org, "s3"), timeout=30, logins=logins)
    assert _logins(admin) == 1  # s3's own
    assert (same.org_now() - before).total_seconds() < 600
    assert (later.org_now() - before).total_seconds() > 3000


def test_a_refused_login_is_replaced_for_the_next_jobs(org: dict[str, Any], admin: Admin) -> None:
    logins = SessionLogins()
    first = JobOrgClient.for_job(_spec(org, "s4"), timeout=30, logins=logins)
    admin.revoke_tokens()
    second = JobOrgClient.for_job(_spec(org, "s4"), timeout=30, logins=logins)
    assert second.token == first.token  # kept: nobody knows yet it was revoked
    second.reads(0).query_page("SELECT Id FROM Account LIMIT 1")  # refused, logs in again, answered
    assert second.token != first.token
    admin.reset_accounting()
    third = JobOrgClient.for_job(_spec(org, "s4"), timeout=30, logins=logins)
    third.reads(0).query_page("SELECT Id FROM Account LIMIT 1")
    assert third.token == second.token
    assert _logins(admin) == 0
