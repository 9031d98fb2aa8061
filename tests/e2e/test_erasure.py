"""Erasure end to end (issue 18, GDPR Article 17), every service a separate process, on a tiny emulated org: a
Contact's e-mail (two backed-up versions) also on a Lead; `sfvault erase --value --fields Contact.Email,Lead.Email`
as an admin; then no stored version (scanned with SQL), no export (ExportObjectAsOf) and no byte of the file
repository holds it, `sfvault erase verify` says clean, the audit row keeps no value; the Contact soft-deleted (the
Lead hard-deleted) in the org and backed up again: neither comes back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sfvault.discovery.v1 import discovery_pb2 as disc
from sfvault.storage.v1 import storage_pb2 as st

from devstack.localstack import Stack, local_stack
from services.cli import local
from services.cli.client import Clients
from services.cli.demo import register_org, secrets_dir
from services.platform.auth import load_key, mint
from sforg.testing import Admin
from tests.e2e.restore_scenario import backup

pytestmark = pytest.mark.e2e
SFVAULT = str(Path(sys.executable).parent / "sfvault")
OBJECTS = ["Contact", "Lead"]
SCOPE = [*OBJECTS, "ContentVersion"]
MAIL = "Erase.Me.E2E@Example.org"


@pytest.fixture(scope="module")
def stack(stack_home: Path, stack_database: str) -> Iterator[Stack]:
    env = {
        **local.prepare_auth(stack_home),
        "SFVAULT_STORAGE_CANONICAL_CHECK_EVERY": "1",
        "SFVAULT_SECRETS_DIR": str(secrets_dir(stack_home)),
    }
    with local_stack(stack_home, with_org="tiny", org_seed=13, extra_env=env, database_url=stack_database) as s:
        yield s


def sfvault(home: Path, stack: Stack, *args: str, expect: int = 0, role: str = "admin") -> Any:
    """`sfvault ARGS --json` as the admin (erasure is an admin's act; or another role), its output parsed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SFVAULT_")}
    env.update(
        SFVAULT_HOME=str(home / "cli"),
        SFVAULT_SESSION_ADDR=stack.address("session"),
        SFVAULT_DISCOVERY_ADDR=stack.address("discovery"),
        SFVAULT_STORAGE_ADDR=stack.address("storage"),
        SFVAULT_TOKEN=(home / "admin.token").read_text().strip()
        if role == "admin"
        else mint(load_key(f"file:{home / 'auth.key'}"), "olga", role),
        COLUMNS="200",
    )
    result = subprocess.run([SFVAULT, *args, "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == expect, f"sfvault {args[0]}: {result.stdout[-2000:]} {result.stderr[-2000:]}"
    return json.loads(result.stdout) if result.stdout.strip() else result.stderr


def versions_holding(stack: Stack, needle: str, ids: list[str]) -> tuple[int, int]:
    """(versions whose values hold the needle in any case, versions or heads of these Ids), by SQL."""
    with psycopg.connect(stack.database_url) as conn:
        holding = conn.execute(
            "SELECT count(*) FROM storage.record_versions WHERE strpos(lower(data::text), %s) > 0", (needle,)
        ).fetchone()
        left = conn.execute(
            "SELECT (SELECT count(*) FROM storage.record_versions WHERE record_id = ANY(%s))"
            " + (SELECT count(*) FROM storage.record_head WHERE record_id = ANY(%s))",
            (ids, ids),
        ).fetchone()
        assert holding is not None and left is not None
        return int(holding[0]), int(left[0])


def repository_holding(stack: Stack, needle: bytes) -> list[Path]:
    """The file repository's bodies whose bytes hold the needle (any ASCII case)."""
    root = stack.state_dir / "files"
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes().lower()]


def exported(c: Clients, org_id: str, obj: str) -> bytes:
    request = st.ExportObjectAsOfRequest(org_id=org_id, object_name=obj, include_deleted=True)
    return b"".join(piece.data for piece in c.storage.ExportObjectAsOf(request))


def test_a_contacts_email_erased_across_contact_and_lead_does_not_come_back(
    stack: Stack, clients: Clients, stack_home: Path
) -> None:
    assert stack.org is not None
    admin = Admin(stack.org)
    truth = admin.ground_truth(objects=["Contact"])["objects"]["Contact"]
    contact = sorted(rid for rid, v in truth.items() if not v.get("IsDeleted"))[0]
    admin.update("Contact", ids=[contact], values={"Email": MAIL})
    [lead] = admin.create("Lead", n=1, values={"LastName": "Erasable", "Company": "Erase Inc", "Email": MAIL.upper()})[
        "ids"
    ]
    # a file whose body holds the e-mail (notes about the person), and one that does not
    leak = admin.add_file_version(b"Call notes: write to " + MAIL.encode() + b" about the renewal.", title="notes")
    kept = admin.add_file_version(b"Quarterly figures, no personal data " + os.urandom(32).hex().encode(), title="q")
    register_org(clients, stack.org, stack_home, "o1", "emulated org")
    policy = disc.Policy(policy_id="p1", org_id="o1", name="erase", scope=disc.Scope(include_objects=SCOPE), files=True)
    clients.discovery.CreatePolicy(disc.CreatePolicyRequest(policy=policy))
    first = backup(clients)
    org_id = clients.discovery.GetOrg(disc.GetOrgRequest(org_id="o1")).salesforce_org_id
    admin.update("Contact", ids=[contact], values={"Title": "Second version, same e-mail"})
    admin.advance_clock(15 * 60)  # past the backup's settle margin
    backup(clients)
    needle = MAIL.lower()
    assert versions_holding(stack, needle, [contact, lead]) == (3, 5)  # 2 + 1 versions, 2 heads

    # an operator (or a service) may not erase, nor probe for a value
    refused = sfvault(stack_home, stack, "erase", "o1", "--object", "Contact", "--ids", contact, "--reason", "r",
                      "--yes", expect=1, role="operator")  # fmt: skip
    assert "permission" in refused.lower()
    sfvault(stack_home, stack, "erase", "verify", "o1", "--value", MAIL, expect=1, role="operator")
    preview = sfvault(stack_home, stack, "erase", "o1", "--value", MAIL, "--fields", "Contact.Email,Lead.Email",
                      "--reason", "GDPR art. 17 request #e2e", "--dry-run")  # fmt: skip
    assert preview["dry_run"] and {r["id"] for r in preview["records"]} == {contact, lead}
    assert versions_holding(stack, needle, [contact, lead])[0] == 3  # a dry run erases nothing
    done = sfvault(stack_home, stack, "erase", "o1", "--value", MAIL.lower(), "--fields", "Contact.Email,Lead.Email",
                   "--reason", "GDPR art. 17 request #e2e", "--yes")  # fmt: skip
    assert {(r["object"], r["id"], r["versions"]) for r in done["records"]} == {
        ("Contact", contact, 2),
        ("Lead", lead, 1),
    }
    assert done["erasure_id"].startswith("er-") and done["versions"] == 3

    # nothing holds it: the database, the exports, the repository's bytes, the verification
    assert versions_holding(stack, needle, [contact, lead]) == (0, 0)
    for obj in OBJECTS:
        body = exported(clients, org_id, obj).lower()
        assert needle.encode() not in body and contact.encode() not in body and lead.encode() not in body
        assert body.count(b"\n") > 1  # the other records are all there
    # the file body still holds it (it was in no field looked in): verify says where, never what
    leaked = sfvault(stack_home, stack, "erase", "verify", "o1", "--value", MAIL, expect=1)
    cv = leak["ContentVersionId"]
    assert leaked == {"clean": False, "versions_holding": 0, "file_bodies_holding": 1,
                      "samples": [f"ContentVersion:{cv}"]}  # fmt: skip
    assert len(repository_holding(stack, needle.encode())) == 1
    files = sfvault(stack_home, stack, "erase", "o1", "--object", "ContentVersion", "--ids", cv, "--reason", "notes",
                    "--yes")  # fmt: skip
    assert [(r["id"], r["file_bodies"]) for r in files["records"]] == [(cv, 1)]
    assert repository_holding(stack, needle.encode()) == []
    assert [p.name for p in (stack.state_dir / "files").rglob(kept["sha256"])] == [kept["sha256"]]  # stays
    assert sfvault(stack_home, stack, "erase", "verify", "o1", "--value", MAIL) == {
        "clean": True, "versions_holding": 0, "file_bodies_holding": 0, "samples": []
    }  # fmt: skip
    assert sfvault(stack_home, stack, "erase", "verify", "o1", "--erasure", done["erasure_id"])["clean"]
    with psycopg.connect(stack.database_url) as conn:
        row = conn.execute("SELECT t::text, reason, erased_by FROM storage.erasures t ORDER BY erasure_seq").fetchone()
    assert row is not None and needle not in row[0].lower() and row[1] == "GDPR art. 17 request #e2e"
    assert contact in row[0] and row[2]

    # the org deletes them too; the next backup (queryAll's IsDeleted rows, getDeleted) does not bring them back
    admin.soft_delete("Contact", ids=[contact])
    admin.hard_delete("Lead", ids=[lead])
    admin.hard_delete("ContentDocument", ids=[leak["ContentDocumentId"]])
    admin.advance_clock(15 * 60)
    last = backup(clients)
    assert last.session_id != first.session_id
    assert versions_holding(stack, needle, [contact, lead]) == (0, 0)
    assert sfvault(stack_home, stack, "erase", "verify", "o1", "--value", MAIL)["clean"]
    assert repository_holding(stack, needle.encode()) == []
    # neither the database (any table of any schema, by SQL) nor a service's log holds the value
    with psycopg.connect(stack.database_url) as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE'"
            " AND table_schema NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
        for schema, table in tables:
            found = conn.execute(
                f'SELECT count(*) FROM "{schema}"."{table}" t WHERE strpos(lower(t::text), %s) > 0', (needle,)
            ).fetchone()
            assert found == (0,), f"{schema}.{table}"
    assert len(tables) > 10
    for log in (stack.state_dir / "logs").glob("*.log"):
        assert needle.encode() not in log.read_bytes().lower(), log.name
