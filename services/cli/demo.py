"""`make demo`: a real backup of the emulated org, start to finish, on this machine.

Starts embedded PostgreSQL and NATS, sforg with a `small` org and the four services as separate processes;
registers the org and a policy; runs an initial backup; changes the org through sforg's admin API; runs an
incremental; prints each session's report; stops everything. The state lives in `.demo/` (recreated).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from sfvault.discovery.v1 import discovery_pb2 as disc
from sfvault.session.v1 import session_pb2 as api

from devstack.localstack import local_stack
from services.cli import local, render
from services.cli.__main__ import watch
from services.cli.client import Clients, Endpoints
from services.cli.local import secrets_dir, write_secret

__all__ = ["main", "register_org", "secrets_dir"]


def register_org(c: Clients, org: dict[str, Any], home: Path, org_id: str, name: str) -> None:
    """Registers a running sforg org (sforg.testing's description of it) with discovery; its client secret
    goes to a file in `home`'s secrets directory readable by its owner only (0700 / 0600), and the
    connection refers to that file."""
    secret = write_secret(home, f"{org_id}-client-secret", org["client_secret"])
    c.discovery.CreateOrg(
        disc.CreateOrgRequest(
            org_id=org_id,
            name=name,
            connection=disc.OrgConnection(
                login_url=org["login_url"],
                auth_flow=disc.AUTH_FLOW_CLIENT_CREDENTIALS,
                client_id=org["client_id"],
                client_secret_ref=f"file:{secret.resolve()}",
                ca_bundle_ref=f"file:{Path(org['ca_file']).resolve()}",
                api_version=org["api_version"],
            ),
        )
    )


def register(c: Clients, org: dict[str, Any], home: Path) -> tuple[str, str]:
    register_org(c, org, home, "demo-org", "sforg demo org")
    policy = disc.Policy(
        policy_id="demo-policy",
        org_id="demo-org",
        name="everything, daily",
        auto_add_new_objects=True,
        auto_add_new_fields=True,
        files=True,
        metadata=True,
        schedule="daily@02:00",
    )
    policy.api_budget.daily_share_percent = 50
    # reconcile Ids at every session, so hard deletes are caught at once (the default is weekly)
    policy.reconcile_every.FromSeconds(60)
    c.discovery.CreatePolicy(disc.CreatePolicyRequest(policy=policy))
    return "demo-org", "demo-policy"


def run_session(c: Clients, org_id: str, policy_id: str) -> tuple[api.Session, list[api.Job]]:
    started = c.session.StartSession(api.StartSessionRequest(policy_id=policy_id, org_id=org_id, trigger="demo"))
    final = watch(c, started.session_id)
    jobs = list(c.session.ListJobs(api.ListJobsRequest(session_id=final.session_id)).jobs)
    render.session_report(final, jobs)
    return final, jobs


def change_org(org: dict[str, Any]) -> dict[str, Any]:
    """What a day in the org looks like: edits, deletes, a new field, metadata and files."""
    from sforg.testing import Admin

    admin = Admin(org)
    changes: dict[str, Any] = {}
    changes["updated"] = sum(
        len(admin.update(obj, fraction=0.01)["ids"]) for obj in ("Account", "Contact", "Opportunity")
    )
    live_before = {o: set(ids) for o, ids in admin.ground_truth(values=False)["objects"].items()}
    changes["soft_deleted"] = len(admin.soft_delete("Case", n=20).get("ids", []))
    changes["hard_deleted"] = len(admin.hard_delete("Lead", n=10).get("ids", []))
    # their activities went with them, as in Salesforce (cascade delete)
    live_after = admin.ground_truth(values=False)["objects"]
    gone = sum(len(ids - set(live_after.get(o, {}))) for o, ids in live_before.items())
    changes["cascade_deleted"] = gone - changes["soft_deleted"] - changes["hard_deleted"]
    admin.add_field("Account", "Loyalty_Tier__c", type="picklist")
    changes["new_field"] = "Account.Loyalty_Tier__c"
    for name in ("AccountService", "InvoiceBuilder", "ShipmentTracker"):
        try:
            admin.change_metadata("ApexClass", name)
        except Exception:  # the small org may name its classes differently: change whatever exists
            break
    for i in range(5):
        admin.add_file_version(f"demo file version {i}\n".encode() * 100, title=f"Demo note {i}")
    changes["file_versions"] = 5
    # the backup reads the org up to "now minus a settle margin": let the org's clock move past it
    admin.advance_clock(15 * 60)
    return changes


# what a newcomer does next: the README's "Using it", against an installation that keeps running
NEXT = """next, the README's "Using it": an installation that keeps running, with an emulated org
  export PATH="$PWD/.venv/bin:$PATH"
  sfvault services up --org tiny"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", default=".demo", help="state directory (recreated)")
    parser.add_argument("--scale", default="small", help="sforg scale: tiny, small, large or a record count")
    parser.add_argument("--json-report", help="also write both sessions' reports as JSON to this file")
    args = parser.parse_args(argv)
    home = Path(args.home)
    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True, mode=0o700)  # it holds the signing key and an admin token
    started = time.monotonic()
    render.console.rule("sfvault demo")
    render.console.print("starting PostgreSQL, NATS, sforg and the four services ...")
    env = {**local.prepare_auth(home), "SFVAULT_SECRETS_DIR": str(secrets_dir(home))}
    with local_stack(home, with_org=args.scale, extra_env=env) as stack:
        assert stack.org is not None
        render.console.print(f"up in {time.monotonic() - started:.0f} s: {stack.describe()['services']}")
        endpoints = Endpoints(
            session=stack.address("session"),
            discovery=stack.address("discovery"),
            storage=stack.address("storage"),
            token=(home / "admin.token").read_text().strip(),
        )
        c = Clients(endpoints)
        try:
            org_id, policy_id = register(c, stack.org, home)
            render.console.print(f"registered org {org_id} and policy {policy_id}")
            render.console.rule("initial backup")
            initial, initial_jobs = run_session(c, org_id, policy_id)
            render.console.rule("changing the org")
            changes = change_org(stack.org)
            render.console.print(changes)
            render.console.rule("incremental backup")
            incremental, incremental_jobs = run_session(c, org_id, policy_id)
        finally:
            c.close()
        if args.json_report:
            Path(args.json_report).write_text(
                json.dumps(
                    {
                        "initial": {
                            "session": render.as_dict(initial),
                            "jobs": [render.as_dict(j) for j in initial_jobs],
                        },
                        "incremental": {
                            "session": render.as_dict(incremental),
                            "jobs": [render.as_dict(j) for j in incremental_jobs],
                        },
                        "changes": changes,
                    },
                    default=str,
                )
            )
        render.console.print("stopping ...")
    render.console.print(f"demo finished in {time.monotonic() - started:.0f} s")
    render.console.print(NEXT, highlight=False)
    ok = all(render.status_name(s.status) == "SUCCESS" for s in (initial, incremental))
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as exc:  # one readable line, not a traceback; the services' logs are in .demo/logs
        render.err_console.print(f"[red]demo failed[/]: {type(exc).__name__}: {exc}", highlight=False)
        sys.exit(1)
