"""Sensitive fields end to end (issue 18), every service a separate process, on a tiny emulated org: the policy
marks Contact.Email sensitive (`sfvault policy update --sensitive`; discovery -> the data job's FieldSpec ->
storage's schema) and storage runs with a key-encryption key; after a backup no table of storage's schema holds any
of the org's e-mail addresses, the export gives them back exactly, an incremental that reads a Contact again with
the same e-mail stores no new version and one with a new e-mail stores exactly one; an export encrypted on request
(`--encrypt-to`) holds none of them and `sfvault decrypt` gives it back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sfvault.discovery.v1 import discovery_pb2 as disc
from sfvault.storage.v1 import storage_pb2 as st

from devstack.localstack import Stack
from services.cli.client import Clients
from sforg.testing import Admin
from tests.e2e.conftest import register
from tests.e2e.restore_scenario import backup
from tests.e2e.test_encryption import encrypted_stack

pytestmark = pytest.mark.e2e

SFVAULT = str(Path(sys.executable).parent / "sfvault")


@pytest.fixture(scope="module")
def stack(stack_home: Path) -> Iterator[Stack]:
    yield from encrypted_stack(stack_home, 23)


def _cli_env(stack: Stack, stack_home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SFVAULT_")}
    return env | {
        "SFVAULT_HOME": str(stack_home / "cli-home"),
        "SFVAULT_SESSION_ADDR": stack.address("session"),
        "SFVAULT_DISCOVERY_ADDR": stack.address("discovery"),
        "SFVAULT_STORAGE_ADDR": stack.address("storage"),
        "SFVAULT_TOKEN": (stack_home / "admin.token").read_text().strip(),
    }


def _sfvault(env: dict[str, str], *args: str) -> None:
    result = subprocess.run([SFVAULT, *args], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"sfvault {' '.join(args)}: {result.stdout[-2000:]} {result.stderr[-2000:]}"


def _storage_text(stack: Stack) -> str:
    with psycopg.connect(stack.database_url) as conn:
        tables = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'storage' AND tablename <> 'schema_migrations'"
        ).fetchall()
        return "\n".join(r[0] for (t,) in tables for r in conn.execute(f"SELECT x::text FROM storage.{t} x").fetchall())


def _versions(stack: Stack) -> int:
    with psycopg.connect(stack.database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM storage.record_versions v JOIN storage.objects o USING (object_key)"
            " WHERE o.object_name = 'Contact'"
        ).fetchone()
        return int(row[0]) if row else 0


def _export(clients: Clients, org_id: str) -> dict[str, dict[str, object]]:
    request = st.ExportObjectAsOfRequest(org_id=org_id, object_name="Contact", format=st.EXPORT_FORMAT_JSONL)
    data = b"".join(c.data for c in clients.storage.ExportObjectAsOf(request))
    return {r["Id"]: r for r in map(json.loads, data.splitlines()) if r}


def test_a_sensitive_field_is_stored_sealed_and_read_back(stack: Stack, clients: Clients, stack_home: Path) -> None:
    assert stack.org is not None
    admin = Admin(stack.org)
    register(clients, stack.org, stack_home, scope=disc.Scope(include_objects=["Contact"]), files=False, metadata=False)
    cli = _cli_env(stack, stack_home)
    _sfvault(cli, "policy", "update", "p1", "--sensitive", "contact.email")
    assert list(clients.discovery.GetPolicy(disc.GetPolicyRequest(policy_id="p1")).sensitive_fields) == [
        "contact.email"
    ]
    truth = admin.ground_truth(objects=["Contact"])["objects"]["Contact"]
    emails = {rid: v["Email"] for rid, v in truth.items() if v.get("Email")}
    assert len(emails) >= 5, "the org's Contacts have e-mail addresses"

    same, changed = sorted(emails)[:2]
    for rid in (same, changed):  # last modified by the admin already: an update by it changes no LastModifiedById
        admin.update("Contact", ids=[rid], values={"Email": emails[rid]})
    backup(clients)
    org_id = clients.discovery.GetOrg(disc.GetOrgRequest(org_id="o1")).salesforce_org_id
    stored = _storage_text(stack)
    assert [e for e in emails.values() if e in stored] == []
    exported = _export(clients, org_id)
    assert {rid: exported[rid]["Email"] for rid in emails} == emails

    before = _versions(stack)
    admin.update("Contact", ids=[same], values={"Email": emails[same]})  # read again, the same value
    admin.update("Contact", ids=[changed], values={"Email": "new.sensitive.e2e@example.org"})
    admin.advance_clock(15 * 60)  # past the backup's settle margin
    backup(clients)
    assert _versions(stack) == before + 1  # only the changed e-mail is a new version
    assert "new.sensitive.e2e" not in _storage_text(stack)
    assert _export(clients, org_id)[changed]["Email"] == "new.sensitive.e2e@example.org"

    # an export encrypted on request, read back with the key
    key = stack_home / "export.key"
    key.write_text(os.urandom(32).hex())
    sealed, plain = stack_home / "contacts.csv.sfv", stack_home / "contacts.csv"
    _sfvault(cli, "export", "Contact", "--org", "o1", "--encrypt-to", f"file:{key}", "-o", str(sealed))
    assert b"new.sensitive.e2e" not in sealed.read_bytes() and b"Email" not in sealed.read_bytes()
    _sfvault(cli, "decrypt", str(sealed), "--key", f"file:{key}", "-o", str(plain))
    text = plain.read_text()
    assert "Email" in text.splitlines()[0].split(",")  # the CSV's header
    assert "new.sensitive.e2e@example.org" in text and all(e in text for rid, e in emails.items() if rid != changed)
