"""Encryption at rest end to end (issue 18), every service a separate process, on a tiny emulated org: storage
runs with a key-encryption key (SFVAULT_STORAGE_ENCRYPTION_KEY_REF, a file reference); a backup of files and
metadata; then no byte of the file repository holds a body's content (scanned), every body is at a random address
with its wrapped key in its row, and GetFile returns each body exactly (decrypted by storage)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sfvault.discovery.v1 import discovery_pb2 as disc
from sfvault.storage.v1 import storage_pb2 as st

from devstack.localstack import Stack, local_stack
from services.cli import local
from services.cli.client import Clients
from services.cli.demo import register_org, secrets_dir
from services.platform.encryption import kek_id_of
from sforg.testing import Admin
from tests.e2e.restore_scenario import backup

pytestmark = pytest.mark.e2e

KEK = os.urandom(32)
MARKER = b"ENCRYPTION-E2E-CONFIDENTIAL"


def encrypted_stack(stack_home: Path, org_seed: int) -> Iterator[Stack]:
    """The local stack on a tiny emulated org, storage with a KEK (a file reference)."""
    key_file = stack_home / "storage.kek"
    key_file.write_text(KEK.hex())
    key_file.chmod(0o600)
    env = {
        **local.prepare_auth(stack_home),
        "SFVAULT_SECRETS_DIR": str(secrets_dir(stack_home)),
        "SFVAULT_STORAGE_ENCRYPTION_KEY_REF": f"file:{key_file}",
    }
    with local_stack(stack_home, with_org="tiny", org_seed=org_seed, extra_env=env) as s:
        yield s


@pytest.fixture(scope="module")
def stack(stack_home: Path) -> Iterator[Stack]:
    yield from encrypted_stack(stack_home, 17)


def test_a_backup_with_encryption_on_leaves_no_readable_body(stack: Stack, clients: Clients, stack_home: Path) -> None:
    assert stack.org is not None
    admin = Admin(stack.org)
    bodies = {
        MARKER + b" small note",
        MARKER + b" large " + os.urandom(3 << 20) + MARKER,  # several 1 MiB segments
    }
    added = {admin.add_file_version(b, title=f"enc{i}")["ContentVersionId"]: b for i, b in enumerate(bodies)}
    register_org(clients, stack.org, stack_home, "o1", "emulated org")
    policy = disc.Policy(
        policy_id="p1", org_id="o1", name="enc", scope=disc.Scope(include_objects=["ContentVersion"]), files=True
    )
    clients.discovery.CreatePolicy(disc.CreatePolicyRequest(policy=policy))
    backup(clients)
    org_id = clients.discovery.GetOrg(disc.GetOrgRequest(org_id="o1")).salesforce_org_id

    root = stack.state_dir / "files"
    stored = [p for p in root.rglob("*") if p.is_file() and ".tmp" not in p.relative_to(root).parts]
    assert stored, "the backup stored no body"
    assert [p for p in stored if MARKER in p.read_bytes()] == []  # no body readable without the key
    assert all(p.relative_to(root).parts[0] == "enc" for p in stored)  # no address names a content's SHA-256
    with psycopg.connect(stack.database_url) as conn:
        rows = conn.execute("SELECT kek_id, location FROM storage.files").fetchall()
    assert rows and {r[0] for r in rows} == {kek_id_of(KEK)} and len(rows) == len(stored)

    for record_id, body in added.items():
        request = st.GetFileRequest(org_id=org_id, object_name="ContentVersion", record_id=record_id)
        assert b"".join(p.data for p in clients.storage.GetFile(request)) == body
