"""The CLI driven as a user would (subprocesses of `sfvault`) against the services running as processes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from sfvault.discovery.v1 import discovery_pb2 as disc
from sfvault.session.v1 import session_pb2 as ses
from sfvault.storage.v1 import storage_pb2 as sto

from devstack.localstack import Stack
from services.cli.client import Clients, Endpoints
from services.cli.demo import secrets_dir
from services.platform.auth import load_key, mint
from sforg.testing import Admin

pytestmark = pytest.mark.e2e
SFVAULT = str(Path(sys.executable).parent / "sfvault")


@pytest.fixture(scope="module")
def env(stack: Stack, stack_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    home = tmp_path_factory.mktemp("cli-home")
    e = {k: v for k, v in os.environ.items() if not k.startswith("SFVAULT_")}
    e.update(
        SFVAULT_HOME=str(home),
        SFVAULT_SESSION_ADDR=stack.address("session"),
        SFVAULT_DISCOVERY_ADDR=stack.address("discovery"),
        SFVAULT_STORAGE_ADDR=stack.address("storage"),
        SFVAULT_TOKEN=(stack_home / "admin.token").read_text().strip(),
        COLUMNS="200",
    )
    yield e


def sfvault(env: dict[str, str], *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([SFVAULT, *args], env=env, capture_output=True, text=True, timeout=300)
    if ok:
        assert result.returncode == 0, f"sfvault {' '.join(args)}: {result.stdout[-2000:]} {result.stderr[-2000:]}"
    assert "Traceback" not in result.stderr
    return result


def test_a_user_session_with_the_cli(stack: Stack, env: dict[str, str], tmp_path: Path, stack_home: Path) -> None:
    assert stack.org is not None
    org = stack.org
    secret = secrets_dir(stack_home) / "acme-secret"  # an org's secret is read only from the secrets directory
    secret.parent.mkdir(mode=0o700, exist_ok=True)
    secret.write_text(org["client_secret"])
    sfvault(
        env,
        "org",
        "add",
        "--id",
        "acme",
        "--name",
        "Acme",
        "--login-url",
        org["login_url"],
        "--client-id",
        org["client_id"],
        "--client-secret-ref",
        f"file:{secret}",
        "--ca-bundle-ref",
        f"file:{Path(org['ca_file']).resolve()}",
        "--api-version",
        org["api_version"],
    )
    assert "ok" in sfvault(env, "org", "test", "acme").stdout
    orgs = json.loads(sfvault(env, "org", "list", "--json").stdout)
    assert [o["org_id"] for o in orgs] == ["acme"] and org["client_secret"] not in json.dumps(orgs)

    sfvault(
        env,
        "policy",
        "create",
        "--org",
        "acme",
        "--id",
        "daily",
        "--no-metadata",
        "--include",
        "Account",
        "--include",
        "Contact",
        "--no-auto-add-objects",
    )
    sfvault(env, "policy", "update", "daily", "--schedule", "daily@02:00")
    shown = json.loads(sfvault(env, "policy", "show", "daily", "--json").stdout)
    assert shown["schedule"] == "daily@02:00" and shown.get("metadata", False) is False

    run = json.loads(sfvault(env, "backup", "run", "--policy", "daily", "--wait", "--json").stdout)
    assert run["session"]["status"] == "SESSION_STATUS_SUCCESS"
    session_id = run["session"]["session_id"]
    assert {j["object_name"] for j in run["jobs"] if j.get("object_name")} == {"Account", "Contact"}

    listed = json.loads(sfvault(env, "session", "list", "--policy", "daily", "--json").stdout)
    assert [s["session_id"] for s in listed] == [session_id]
    assert "SUCCESS" in sfvault(env, "session", "show", session_id).stdout
    assert len(json.loads(sfvault(env, "jobs", "list", session_id, "--json").stdout)) >= 2

    truth = Admin(org).ground_truth(objects=["Account"])["objects"]["Account"]
    some_id = sorted(truth)[0]
    history = json.loads(sfvault(env, "records", "history", "Account", some_id, "--org", "acme", "--json").stdout)
    assert len(history) == 1
    as_of = json.loads(
        sfvault(env, "records", "as-of", "Account", some_id, "--at", "now", "--org", "acme", "--json").stdout
    )
    assert as_of["values"]["Id"] == some_id and as_of["values"]["Name"] == truth[some_id]["Name"]
    verified = json.loads(sfvault(env, "verify", "--org", "acme", "--json").stdout)
    assert {o["object_name"] for o in verified["objects"]} == {"Account", "Contact"}
    assert all(int(o.get("missing", 0)) == int(o.get("phantom", 0)) == 0 for o in verified["objects"])
    out = tmp_path / "accounts.jsonl"
    sfvault(env, "export", "Account", "--format", "jsonl", "-o", str(out), "--org", "acme")
    assert len(out.read_text().splitlines()) == len(truth)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600  # backed-up data is the owner's only
    audit = json.loads(sfvault(env, "audit", "list", "--since", "1h", "--json").stdout)
    reads = [(e["action"], e["what"]) for e in audit if e["kind"] == "read"]
    assert ("GetRecordHistory", f"Account {some_id}") in reads and ("ExportObjectAsOf", "Account") in reads
    changes = [e["action"] for e in audit if e["kind"] == "change"]
    assert {"CreateOrg", "CreatePolicy", "UpdatePolicy", "StartSession"} <= set(changes)
    assert [e["at"] for e in audit] == sorted(e["at"] for e in audit)  # one list, by time
    (tmp_path / "a-file").write_text("")
    unwritable = sfvault(env, "export", "Account", "-o", str(tmp_path / "a-file" / "x.csv"), "--org", "acme", ok=False)
    assert unwritable.returncode == 1 and len(unwritable.stderr.strip().splitlines()) == 1
    bad = sfvault(env, "policy", "create", "--org", "acme", "--api-share", "500", ok=False)
    assert bad.returncode == 1 and bad.stderr.startswith("error (invalid_argument)")


def test_the_verbs_a_person_needs(stack: Stack, env: dict[str, str], stack_home: Path) -> None:
    """After the first test's backup of acme (issue 20): session ls filters and ids by prefix, a record's restore
    points, export to stdout and a point with no data, org update / remove, policy delete, and a followed backup's
    plain progress lines (no terminal here)."""
    assert stack.org is not None
    [first] = json.loads(sfvault(env, "session", "ls", "--org", "acme", "--status", "success", "--json").stdout)
    session_id = first["session_id"]
    assert json.loads(sfvault(env, "session", "ls", "--org", "nobody", "--json").stdout) == []
    assert json.loads(sfvault(env, "session", "list", "--since", "2000-01-01T00:00:00Z", "--json").stdout)
    shown = sfvault(env, "session", "show", session_id[:6]).stdout
    assert session_id in shown and "SUCCESS" in shown
    jobs = json.loads(sfvault(env, "jobs", "list", session_id[:8], "--json").stdout)
    assert all(isinstance(j["counts"]["received"], int) for j in jobs if j.get("counts", {}).get("received"))
    none = sfvault(env, "session", "show", "ffffffffffff", ok=False)
    assert none.returncode == 1 and none.stderr.startswith("error (not_found)")

    some_id = sorted(Admin(stack.org).ground_truth(objects=["Account"])["objects"]["Account"])[0]
    points = json.loads(sfvault(env, "records", "restore-points", "Account", some_id, "--org", "acme", "--json").stdout)
    assert [p["session_id"] for p in points] == [session_id] and points[0]["state"] == "live"
    at = points[0]["at"]
    as_of = json.loads(
        sfvault(env, "records", "as-of", "Account", some_id, "--at", at, "--org", "acme", "--json").stdout
    )
    assert as_of["values"]["Id"] == some_id

    lines = sfvault(env, "export", "Account", "--format", "jsonl", "-o", "-", "--include-deleted", "--org", "acme")
    assert some_id in lines.stdout and all(json.loads(line) for line in lines.stdout.splitlines())
    early = sfvault(env, "export", "Account", "--at", "2001-01-01T00:00:00Z", "--org", "acme", ok=False)
    assert early.returncode == 1 and "no backup of Account as of 2001-01-01" in early.stderr
    assert early.stdout == ""

    sfvault(env, "org", "update", "acme", "--name", "Acme Inc")
    assert [o["name"] for o in json.loads(sfvault(env, "org", "list", "--json").stdout)] == ["Acme Inc"]
    org = stack.org
    secret = f"file:{secrets_dir(stack_home) / 'acme-secret'}"  # the first test's
    sfvault(
        env,
        "org",
        "add",
        "--id",
        "spare",
        "--login-url",
        org["login_url"],
        "--client-id",
        org["client_id"],
        "--client-secret-ref",
        secret,
    )
    refused = sfvault(env, "org", "remove", "spare", ok=False)
    assert refused.returncode == 2 and "--yes" in refused.stderr
    sfvault(env, "org", "remove", "spare", "--yes")
    assert [o["org_id"] for o in json.loads(sfvault(env, "org", "list", "--json").stdout)] == ["acme"]
    sfvault(env, "policy", "create", "--org", "acme", "--id", "spare-policy", "--include", "Account")
    sfvault(env, "policy", "delete", "spare-policy", "--yes")
    assert "spare-policy" not in sfvault(env, "policy", "list").stdout

    followed = sfvault(env, "backup", "run", "--policy", "daily", "--wait")
    assert "Account: success" in followed.stderr and "Contact: success" in followed.stderr
    assert "\x1b[" not in followed.stderr + followed.stdout  # no terminal: no colour codes, no redrawn bars
    assert "status SUCCESS" in followed.stdout and "Jobs" in followed.stdout


def test_errors_are_one_line_and_non_zero(env: dict[str, str]) -> None:
    missing = sfvault(env, "session", "show", "nope", ok=False)
    assert missing.returncode == 1
    assert missing.stderr.strip().startswith("error (not_found)") and len(missing.stderr.strip().splitlines()) == 1
    bad = sfvault(env, "backup", "run", "--policy", "p", "--org", "o", "--stall-timeout", "soon", ok=False)
    assert bad.returncode == 1 and "duration" in bad.stderr
    unknown_org = sfvault(env, "policy", "create", "--org", "no-such-org", ok=False)
    assert unknown_org.returncode == 1 and "no-such-org" in unknown_org.stderr


def test_roles_reach_the_cli(env: dict[str, str], stack_home: Path) -> None:
    key = load_key(f"file:{stack_home / 'auth.key'}")
    viewer = dict(env, SFVAULT_TOKEN=mint(key, "victor", "viewer"))
    assert sfvault(viewer, "session", "list", "--json").returncode == 0
    denied = sfvault(viewer, "backup", "run", "--policy", "daily", "--org", "acme", ok=False)
    assert denied.returncode == 1 and "permission_denied" in denied.stderr
    nobody = dict(env, SFVAULT_TOKEN="")
    refused = sfvault(nobody, "session", "list", ok=False)
    assert refused.returncode == 1 and "unauthenticated" in refused.stderr


def test_a_restore_preview_and_the_production_guard(stack: Stack, env: dict[str, str], stack_home: Path) -> None:
    """After the backup of the first test: a restorer previews a restore of Account (acme is a production org:
    a dry run needs no --yes, a real restore does and is refused before anything starts); an operator may not."""
    assert stack.org is not None
    key = load_key(f"file:{stack_home / 'auth.key'}")
    rita = dict(env, SFVAULT_TOKEN=mint(key, "rita", "restorer"))
    otto = dict(env, SFVAULT_TOKEN=mint(key, "otto", "operator"))
    denied = sfvault(otto, "restore", "run", "acme", "--object", "Account", "--dry-run", ok=False)
    assert denied.returncode == 1 and "permission_denied" in denied.stderr
    guarded = sfvault(rita, "restore", "run", "acme", "--object", "Account", ok=False)
    assert guarded.returncode == 2 and "--yes" in guarded.stderr
    assert json.loads(sfvault(rita, "session", "list", "--kind", "restore", "--json").stdout) == []

    preview = json.loads(sfvault(rita, "restore", "run", "acme", "--object", "Account", "--dry-run", "--json").stdout)
    truth = Admin(stack.org).ground_truth(objects=["Account"])["objects"]["Account"]
    assert set(preview) == {"session_id", "status", "objects", "verified", "dry_run"}
    assert preview["status"] == "SUCCESS" and preview["dry_run"] is True
    account = preview["objects"]["Account"]
    assert account["failed"] == 0 and account["skipped"] == len(truth)  # nothing changed since the backup
    assert account["created"] == account["updated"] == account["undeleted"] == 0
    shown = json.loads(sfvault(rita, "restore", "show", preview["session_id"], "--json").stdout)
    assert shown == preview
    listed = json.loads(sfvault(rita, "session", "list", "--kind", "restore", "--json").stdout)
    assert [s["session_id"] for s in listed] == [preview["session_id"]]
    assert "restore (dry run)" in sfvault(rita, "session", "list").stdout


def refused_everywhere(stack: Stack, token: str) -> dict[str, grpc.StatusCode]:
    """A viewer's call to each service with `token`: OK, or the refusal's code (storage: INVALID_ARGUMENT is
    its answer to an empty org id, past authentication)."""
    c = Clients(Endpoints(stack.address("session"), stack.address("discovery"), stack.address("storage"), token))
    calls = {
        "session": lambda: c.session.ListSessions(ses.ListSessionsRequest(), timeout=10),
        "discovery": lambda: c.discovery.ListOrgs(disc.ListOrgsRequest(), timeout=10),
        "storage": lambda: c.storage.ListRestorePoints(sto.ListRestorePointsRequest(), timeout=10),
    }
    codes = {}
    try:
        for name, call in calls.items():
            try:
                call()
                codes[name] = grpc.StatusCode.OK
            except grpc.RpcError as exc:
                codes[name] = exc.code()
    finally:
        c.close()
    return codes


def test_tokens_are_listed_revoked_and_refused_by_every_service_at_once(
    stack: Stack, env: dict[str, str], stack_home: Path
) -> None:
    with_key = dict(env, SFVAULT_AUTH_KEY=f"file:{stack_home / 'auth.key'}")
    dora = sfvault(with_key, "token", "create", "--name", "dora", "--role", "viewer", "--days", "1").stdout.strip()
    listed = {t["name"]: t for t in json.loads(sfvault(env, "token", "list", "--json").stdout)}
    assert listed["dora"]["role"] == "viewer" and "revoked_at" not in listed["dora"]
    assert dora not in json.dumps(listed)  # the registry never shows a token
    token_id = listed["dora"]["token_id"]
    before = refused_everywhere(stack, dora)
    assert grpc.StatusCode.UNAUTHENTICATED not in before.values(), before

    sfvault(env, "token", "revoke", token_id)
    deadline = time.monotonic() + 15
    while set(codes := refused_everywhere(stack, dora).values()) != {grpc.StatusCode.UNAUTHENTICATED}:
        assert time.monotonic() < deadline, f"a revoked token still accepted: {codes}"
        time.sleep(0.1)  # polling other processes: no event to await
    refused = sfvault(dict(env, SFVAULT_TOKEN=dora), "session", "list", ok=False)
    assert refused.returncode == 1 and "token revoked" in refused.stderr
    shown = {t["name"]: t for t in json.loads(sfvault(env, "token", "list", "--json").stdout)}
    assert shown["dora"]["revoked_at"] and shown["dora"]["revoked_by"] == "local-admin"
    unknown = sfvault(env, "token", "revoke", "0123456789abcdef", ok=False)
    assert unknown.returncode == 1 and unknown.stderr.startswith("error (not_found)")

    audit = json.loads(sfvault(env, "audit", "list", "--since", "1h", "--actor", "local-admin", "--json").stdout)
    changes = [(e["action"], e["what"]) for e in audit if e["kind"] == "change"]
    assert ("RegisterToken", "") in changes and ("RevokeToken", token_id) in changes
    assert [e["at"] for e in audit] == sorted(e["at"] for e in audit)
    assert all(e["actor"] == "local-admin" for e in audit)
    assert "RevokeToken" in sfvault(env, "audit", "list").stdout
