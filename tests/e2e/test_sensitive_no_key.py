"""Sensitive fields without storage's key (issue 18): a policy marks Contact.Email sensitive while storage has no
key-encryption key. The backup does not store the e-mails in clear: the Contact job fails at once (no retries) with
storage's message naming SFVAULT_STORAGE_ENCRYPTION_KEY_REF, and no Contact version is stored."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sfvault.discovery.v1 import discovery_pb2 as disc
from sfvault.events.v1 import events_pb2 as ev
from sfvault.session.v1 import session_pb2 as api

from devstack.localstack import Stack, local_stack
from services.cli import local
from services.cli.client import Clients
from services.cli.demo import secrets_dir
from tests.e2e.conftest import register
from tests.e2e.restore_scenario import watch

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(stack_home: Path) -> Iterator[Stack]:
    env = {**local.prepare_auth(stack_home), "SFVAULT_SECRETS_DIR": str(secrets_dir(stack_home))}
    with local_stack(stack_home, with_org="tiny", org_seed=29, extra_env=env) as s:
        yield s


def test_a_sensitive_field_without_a_key_fails_the_job_naming_the_setting(
    stack: Stack, clients: Clients, stack_home: Path
) -> None:
    assert stack.org is not None
    scope = disc.Scope(include_objects=["Contact", "Account"])
    register(
        clients, stack.org, stack_home, scope=scope, files=False, metadata=False, sensitive_fields=["Contact.Email"]
    )
    started = clients.session.StartSession(api.StartSessionRequest(policy_id="p1", org_id="o1", trigger="test"))
    final, _ = watch(clients, started.session_id, timeout=300)
    jobs = {j.object_name: j for j in clients.session.ListJobs(api.ListJobsRequest(session_id=final.session_id)).jobs}
    contact = jobs["Contact"]
    assert "SFVAULT_STORAGE_ENCRYPTION_KEY_REF" in contact.message and "Contact.Email" in contact.message
    assert contact.outcome == ev.JOB_OUTCOME_ERROR and jobs["Account"].outcome == ev.JOB_OUTCOME_SUCCESS
    assert final.status == ev.SESSION_STATUS_WARNING  # one task with errors, not all
    with psycopg.connect(stack.database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM storage.record_versions v JOIN storage.objects o USING (object_key)"
            " WHERE o.object_name = 'Contact'"
        ).fetchone()
    assert row is not None and row[0] == 0
