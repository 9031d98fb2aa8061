"""`sfvault prune` and `sfvault hold` (issue 18, keep).

- `sfvault prune ORG [--dry-run] [--wait] [--json]`: a PRUNE session (admins) -- discovery applies the most keeping
  of the org's policies' retention; the prune job deletes old versions, metadata versions and file bodies no
  longer referenced. `--dry-run` says what would go (and always waits). `--json` prints one object:
  {"session_id", "status", "reason", "dry_run", "record_versions", "metadata_versions", "file_versions",
   "file_bodies", "bytes_freed", "message", "warnings"}.
- `sfvault hold set|release|list ORG [--policy P] [--object O] [--reason R]`: a legal hold in storage on the org
  (or one object of it); with --policy, the policy's org is held and the policy shows `legal_hold` (discovery's
  UpdatePolicy); release clears both. Nothing held is pruned (or erased) until released.
"""

from __future__ import annotations

import datetime as dt
from types import ModuleType
from typing import Annotated, Any

import typer
from sfvault.discovery.v1 import discovery_pb2 as disc
from sfvault.events.v1 import events_pb2 as pb
from sfvault.restore.v1 import restore_pb2 as rpb
from sfvault.session.v1 import session_pb2 as api
from sfvault.storage.v1 import storage_pb2 as st

from services.cli import render
from services.platform import timestamps

HeldOrgArg = Annotated[str, typer.Argument(help="the org (sfvault's org id, or its 00D... Id)")]
JsonFlag = Annotated[bool, typer.Option("--json")]

PRUNE_HELP = (
    "Delete what the org's retention no longer keeps: record versions, metadata versions and file bodies no longer "
    "referenced (the most keeping of the org's policies' --retention-days / --retention-versions; the latest "
    "version of every record, pinned points and legal holds are always kept). Admins only. --dry-run says what "
    "would go. --json prints one object: session_id, status, reason, dry_run, record_versions, metadata_versions, "
    "file_versions, file_bodies, bytes_freed, message, warnings."
)
HOLD_HELP = "Legal holds: nothing of a held org (or object) is pruned or erased until the hold is released."


def prune_summary(s: api.Session, jobs: list[api.Job], dry_run: bool) -> dict[str, Any]:
    """What `prune --json` prints (the prune job's counts: see services/jobrunner/prune_job.py)."""
    counts = s.totals
    files = counts.received - counts.deleted - counts.metadata_components
    return {
        "session_id": s.session_id,
        "status": pb.SessionStatus.Name(s.status).removeprefix("SESSION_STATUS_"),
        "reason": s.reason,
        "dry_run": dry_run,
        "record_versions": counts.deleted,
        "metadata_versions": counts.metadata_components,
        "file_versions": max(0, files),
        "file_bodies": counts.files,
        "bytes_freed": counts.bytes,
        "message": "; ".join(j.message for j in jobs if j.message),
        "warnings": list(s.warnings),
    }


def _iso(when: dt.datetime | None) -> str:
    return when.isoformat().replace("+00:00", "Z") if when is not None else ""


def hold_dict(h: st.LegalHold) -> dict[str, Any]:
    return {
        "hold_id": h.hold_id,
        "org_id": h.org_id,
        "object": h.object_name or "*",
        "reason": h.reason,
        "policy_id": h.policy_id,
        "set_by": h.set_by,
        "set_at": _iso(timestamps.from_pb(h, "set_at")),
        "released_at": _iso(timestamps.from_pb(h, "released_at")),
        "released_by": h.released_by,
    }


def register(app: typer.Typer, cli: ModuleType) -> None:
    """Adds `sfvault prune` and `sfvault hold` to the CLI (`cli`: the CLI's main module, for its clients)."""

    @app.command("prune", help=PRUNE_HELP)
    def prune(
        org: Annotated[str, typer.Argument(help="the org (sfvault's org id)")],
        dry_run: Annotated[bool, typer.Option("--dry-run", help="say what would go, delete nothing")] = False,
        wait: Annotated[bool, typer.Option("--wait/--no-wait", help="follow the session to its end")] = False,
        json_out: Annotated[bool, typer.Option("--json", help="one JSON object (see --help)")] = False,
    ) -> None:
        c = cli.clients()
        session = c.session.StartSession(
            api.StartSessionRequest(org_id=org, kind=rpb.SESSION_KIND_PRUNE, dry_run=dry_run, trigger="manual")
        )
        if not (wait or dry_run):
            shown = {"session_id": session.session_id, "status": "STARTED", "dry_run": dry_run}
            render.print_result(shown, json_out, f"prune session [bold]{session.session_id}[/] started")
            return
        final = cli.watch(c, session.session_id)
        jobs = list(c.session.ListJobs(api.ListJobsRequest(session_id=session.session_id)).jobs)
        summary = prune_summary(final, jobs, dry_run)
        if json_out:
            render.print_json(summary)
        else:
            render.console.print(
                f"prune session [bold]{final.session_id}[/]: {summary['status'].lower()}"
                + (f" ({final.reason})" if final.reason else "")
            )
            for line in [summary["message"], *summary["warnings"]]:
                if line:
                    render.console.print(f"  {line}", highlight=False)
        if final.status in (pb.SESSION_STATUS_FAILED, pb.SESSION_STATUS_STOPPED):
            raise typer.Exit(2)

    hold_app = typer.Typer(help=HOLD_HELP, no_args_is_help=True)
    app.add_typer(hold_app, name="hold")

    def _org_of(c: Any, org: str, policy: str) -> tuple[str, disc.Policy | None]:
        """(the org's 00D Id, the policy) -- with --policy, the policy's org (which ORG must be, if given)."""
        found = None
        if policy:
            found = c.discovery.GetPolicy(disc.GetPolicyRequest(policy_id=policy))
            if org and org != found.org_id:
                raise typer.BadParameter(f"policy {policy} belongs to org {found.org_id}, not {org}")
            org = found.org_id
        return cli.salesforce_org_id(c, org), found

    def _mark_policy(c: Any, policy: disc.Policy | None, held: bool) -> None:
        if policy is not None and policy.legal_hold != held:
            changed = disc.Policy()
            changed.CopyFrom(policy)
            changed.legal_hold = held
            c.discovery.UpdatePolicy(disc.UpdatePolicyRequest(policy=changed))

    @hold_app.command("set")
    def hold_set(
        org: HeldOrgArg = "",
        policy: Annotated[str, typer.Option("--policy", help="hold the org of this policy (and mark it)")] = "",
        object_name: Annotated[str, typer.Option("--object", help="only this object (default: the org)")] = "",
        reason: Annotated[str, typer.Option("--reason", help="why (required: a matter, a ticket)")] = "",
        json_out: JsonFlag = False,
    ) -> None:
        """Put an org (or one object of it) on legal hold. Admins only."""
        if not reason.strip():
            raise typer.BadParameter("--reason is required: why the data is held")
        c = cli.clients()
        sf_org, found = _org_of(c, org, policy)
        hold = c.storage.SetLegalHold(
            st.SetLegalHoldRequest(org_id=sf_org, object_name=object_name, reason=reason, policy_id=policy)
        )
        _mark_policy(c, found, True)
        render.print_result(hold_dict(hold), json_out, f"legal hold [bold]{hold.hold_id}[/] set on {sf_org}")

    @hold_app.command("release")
    def hold_release(
        org: HeldOrgArg = "",
        policy: Annotated[str, typer.Option("--policy", help="release the holds set through this policy")] = "",
        object_name: Annotated[str, typer.Option("--object", help="only the hold on this object")] = "",
        hold_id: Annotated[str, typer.Option("--id", help="only this hold")] = "",
        json_out: JsonFlag = False,
    ) -> None:
        """Release the org's active holds (or the one on --object, or --id). Admins only."""
        c = cli.clients()
        sf_org, found = _org_of(c, org, policy)
        holds = c.storage.ListLegalHolds(st.ListLegalHoldsRequest(org_id=sf_org)).holds
        chosen = [
            h
            for h in holds
            if (not hold_id or h.hold_id == hold_id)
            and (not object_name or h.object_name.lower() == object_name.lower())
            and (not policy or h.policy_id == policy)
        ]
        if not chosen:
            raise typer.BadParameter(f"no active legal hold of {sf_org} matches")
        released = [c.storage.ReleaseLegalHold(st.ReleaseLegalHoldRequest(hold_id=h.hold_id)) for h in chosen]
        _mark_policy(c, found, False)
        render.print_result(
            [hold_dict(h) for h in released],
            json_out,
            f"released {len(released)} legal hold(s) of {sf_org}",
        )

    @hold_app.command("list")
    def hold_list(
        org: HeldOrgArg = "",
        policy: Annotated[str, typer.Option("--policy", help="the org of this policy")] = "",
        released: Annotated[bool, typer.Option("--released", help="released holds too")] = False,
        json_out: JsonFlag = False,
    ) -> None:
        """The legal holds of an org."""
        c = cli.clients()
        sf_org, _found = _org_of(c, org, policy)
        holds = c.storage.ListLegalHolds(st.ListLegalHoldsRequest(org_id=sf_org, include_released=released)).holds
        rows = [hold_dict(h) for h in holds]
        if json_out:
            render.print_json(rows)
            return
        if not rows:
            render.console.print(f"no {'' if released else 'active '}legal hold on {sf_org}")
        for r in rows:
            state = f"released {r['released_at']} by {r['released_by']}" if r["released_at"] else "active"
            render.console.print(
                f"{r['hold_id']}  {r['object']}  {state}  set {r['set_at']} by {r['set_by']}: {r['reason']}",
                highlight=False,
            )
