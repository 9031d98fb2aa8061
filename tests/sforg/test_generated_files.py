"""Files whose bodies the org generates as it serves them (`add_generated_file`, a benchmark's way to hold a 2 GB
file without a byte of it on disk): the same (seed, size) always gives the same bytes, the body is served whole over
HTTP in blocks, and its SHA-256 is the one the org's ground truth states; a ContentVersion gets its document."""

from __future__ import annotations

import hashlib
from pathlib import Path

import requests

from sforg.files import BLOCK, BlobStore, fast_blocks
from sforg.org import Org
from sforg.store import table
from sforg.testing import Admin, ca_bundle, running_org


def test_a_fast_body_is_the_same_for_the_same_seed_and_size_and_differs_otherwise(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    size = 3 * BLOCK + 5
    body = b"".join(blobs.open(f"fast:7:{size}"))
    assert len(body) == size == blobs.size(f"fast:7:{size}")
    assert body == b"".join(fast_blocks(7, size))
    assert body.startswith(b"sforg generated file seed=7")
    assert body != b"".join(fast_blocks(8, size))
    assert [len(b) for b in fast_blocks(7, size)] == [BLOCK, BLOCK, BLOCK, 5]


def test_generated_files_are_served_whole_with_the_digest_the_org_states(tmp_path: Path) -> None:
    org = Org(tmp_path / "org", "tiny", 3)
    parent = org.store.conn().execute(f'SELECT "Id" FROM {table("Account")} LIMIT 1').fetchone()[0]
    size = 2 * 1024 * 1024 + 17  # more than a block, and not a multiple of one
    version = org.add_generated_file("ContentVersion", 11, size)
    attachment = org.add_generated_file("Attachment", 12, 1000, parent_id=parent)
    org.store.conn().close()
    with running_org(tmp_path / "org", scale="tiny", seed=3) as info:
        truth = Admin(info).ground_truth(objects=["ContentVersion", "Attachment", "ContentDocument"], values=False)
        http = requests.Session()
        http.trust_env = False  # REQUESTS_CA_BUNDLE would win over `verify`
        http.verify = ca_bundle(info)
        token = http.post(
            f"{info['login_url']}/services/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_id": info["client_id"],
                "client_secret": info["client_secret"],
            },
        ).json()["access_token"]
        base = f"{info['instance_url']}/services/data/v{info['api_version']}/sobjects"
        for rid, obj, field, sha in (
            (version["ContentVersionId"], "ContentVersion", "VersionData", version["sha256"]),
            (attachment["AttachmentId"], "Attachment", "Body", attachment["sha256"]),
        ):
            resp = http.get(f"{base}/{obj}/{rid}/{field}", headers={"Authorization": f"Bearer {token}"}, stream=True)
            assert resp.status_code == 200
            body = b"".join(resp.iter_content(1 << 16))
            assert hashlib.sha256(body).hexdigest() == sha == truth["files"][rid]["sha256"]
        assert truth["files"][version["ContentVersionId"]]["size"] == size
        assert version["ContentDocumentId"] in truth["objects"]["ContentDocument"]
