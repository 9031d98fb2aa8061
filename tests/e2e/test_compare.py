"""Compare end to end (issue 18), every service a separate process, on a tiny emulated org: a backup, known changes
made through sforg's admin API, a second backup -- `sfvault compare --from T1 --to T2` lists exactly those
changes; then more changes, and `sfvault compare --from T2 --live` lists exactly those (the org read through its
API by discovery). The CLI runs with a viewer's token: compare needs no more."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sfvault.discovery.v1 import discovery_pb2 as disc

from devstack.localstack import Stack, local_stack
from services.cli import local
from services.cli.client import Clients
from services.cli.demo import register_org, secrets_dir
from services.platform.auth import load_key, mint
from sforg.testing import Admin
from tests.e2e.restore_scenario import backup, now

pytestmark = pytest.mark.e2e
SFVAULT = str(Path(sys.executable).parent / "sfvault")
OBJECTS = ["Account", "Contact"]


@pytest.fixture(scope="module")
def stack(stack_home: Path, stack_database: str) -> Iterator[Stack]:
    env = {
        **local.prepare_auth(stack_home),
        "SFVAULT_STORAGE_CANONICAL_CHECK_EVERY": "1",
        "SFVAULT_SECRETS_DIR": str(secrets_dir(stack_home)),
    }
    with local_stack(stack_home, with_org="tiny", org_seed=11, extra_env=env, database_url=stack_database) as s:
        yield s


def sfvault(home: Path, stack: Stack, *args: str) -> Any:
    """`sfvault ARGS --json` as a viewer (compare needs no more), its output parsed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SFVAULT_")}
    env.update(
        SFVAULT_HOME=str(home / "cli"),
        SFVAULT_SESSION_ADDR=stack.address("session"),
        SFVAULT_DISCOVERY_ADDR=stack.address("discovery"),
        SFVAULT_STORAGE_ADDR=stack.address("storage"),
        SFVAULT_TOKEN=mint(load_key(f"file:{home / 'auth.key'}"), "vera", "viewer"),
        COLUMNS="200",
    )
    result = subprocess.run([SFVAULT, *args], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"sfvault {' '.join(args)}: {result.stdout[-2000:]} {result.stderr[-2000:]}"
    return json.loads(result.stdout)


def kinds(result: dict[str, Any], obj: str) -> dict[str, set[str]]:
    e = result["objects"].get(obj, {"added": [], "deleted": [], "changed": []})
    return {k: set(e[k]) for k in ("added", "deleted", "changed")}


def check_fields(result: dict[str, Any], obj: str, field: str) -> None:
    """Each changed record changed in `field`, and otherwise only in who saved it (the update's own trace)."""
    for rid, fields in result["objects"][obj]["changed_fields"].items():
        assert field in fields and set(fields) <= {field, "LastModifiedById"}, (rid, fields)


def test_two_points_then_the_org_now_exactly_the_changes_made(stack: Stack, clients: Clients, stack_home: Path) -> None:
    assert stack.org is not None
    admin = Admin(stack.org)
    register_org(clients, stack.org, stack_home, "o1", "emulated org")
    policy = disc.Policy(
        policy_id="p1", org_id="o1", name="compare", scope=disc.Scope(include_objects=OBJECTS), files=False
    )
    clients.discovery.CreatePolicy(disc.CreatePolicyRequest(policy=policy))
    backup(clients)
    t1 = now()
    truth = admin.ground_truth(objects=OBJECTS)["objects"]
    accounts = sorted(truth["Account"])
    # contacts nobody reports to: deleting one clears ReportsToId on those who do (a change of theirs too)
    bosses = {v.get("ReportsToId") for v in truth["Contact"].values()}
    contacts = sorted(set(truth["Contact"]) - bosses)

    renamed = admin.update("Account", ids=accounts[:3], values={"Name": "Renamed by compare"})["ids"]
    gone = contacts[:2]
    admin.soft_delete("Contact", ids=gone)
    created = admin.create("Account", n=1, values={"Name": "Created for compare"})["ids"]
    admin.advance_clock(15 * 60)  # past the backup's settle margin: the next backup reads these changes
    backup(clients)
    t2 = now()

    at = [t.isoformat().replace("+00:00", "Z") for t in (t1, t2)]
    result = sfvault(stack_home, stack, "compare", "o1", "--from", at[0], "--to", at[1], "--json", "--values")
    assert kinds(result, "Account") == {"added": set(created), "deleted": set(), "changed": set(renamed)}
    assert kinds(result, "Contact") == {"added": set(), "deleted": set(gone), "changed": set()}
    check_fields(result, "Account", "Name")
    assert {v["Name"]["new"] for v in result["objects"]["Account"]["values"].values()} == {"Renamed by compare"}
    assert result["objects"]["Account"]["summary"] == {"added": 1, "deleted": 0, "changed": 3}
    # the fields filter: only Name changes count (the added and deleted records stay)
    only = sfvault(stack_home, stack, "compare", "o1", "--from", at[0], "--to", at[1], "--field", "Phone", "--json")
    assert kinds(only, "Account")["changed"] == set()

    # more changes, then the backup at T2 against the org now
    rephoned = admin.update("Contact", ids=contacts[5:7], values={"Title": "Retitled by compare"})["ids"]
    admin.hard_delete("Contact", ids=contacts[8:9])
    added = admin.create("Contact", n=2, values={"LastName": "Comparison"})["ids"]
    live = sfvault(
        stack_home, stack, "compare", "o1", "--from", at[1], "--live", *("--object", "Account", "--object", "Contact"),
        "--json",
    )  # fmt: skip
    assert live["to"] == "live"
    assert kinds(live, "Account") == {"added": set(), "deleted": set(), "changed": set()}
    assert kinds(live, "Contact") == {"added": set(added), "deleted": set(contacts[8:9]), "changed": set(rephoned)}
    check_fields(live, "Contact", "Title")
