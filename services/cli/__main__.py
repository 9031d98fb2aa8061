"""`sfvault`: the command line of sfvault (typer + rich). Errors are one readable line and a non-zero exit."""

from __future__ import annotations

import datetime as dt
import os
import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated, Any, NoReturn

import grpc
import typer
from sfvault.discovery.v1 import access_pb2 as acc
from sfvault.discovery.v1 import discovery_pb2 as disc
from sfvault.events.v1 import events_pb2 as pb
from sfvault.session.v1 import session_pb2 as api
from sfvault.storage.v1 import storage_pb2 as st
from typer._click import exceptions as click_errors  # typer vendors click: what it raises lives here

from services import sfconnection as sfc
from services.cli import catalog, exporting, keep, points, policies, progress, protect, render, sealed_export, sessions
from services.cli import compare as compare_command
from services.cli import erase as erase_command
from services.cli import restore as rs
from services.cli import trace as trace_command
from services.cli.client import DEFAULT_HOME, Clients, Endpoints
from services.cli.errors import CodedError
from services.platform import timestamps

EXIT_CODES = (
    (0, "done"),
    (
        1,
        "an error, one line on standard error (`error (CODE): ...`): a service refused or failed; also `org test` "
        "with problems, `services status` with a service down, `erase verify` finding the value still held",
    ),
    (
        2,
        "a usage mistake (an option or argument), a refusal before anything is done (e.g. --yes needed), or a "
        "followed session (--wait) that failed or was stopped",
    ),
    (
        3,
        "done, and differences found: `verify` (the backup vs the org), a restore with failed records or a "
        "read-back that differs",
    ),
    (130, "interrupted (Ctrl-C)"),
)
EXIT_HELP = "Exit codes:\n\n" + "\n\n".join(f"{code}: {meaning}" for code, meaning in EXIT_CODES)

app = typer.Typer(
    help="sfvault: backup for Salesforce orgs.",
    epilog=EXIT_HELP,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _version(shown: bool) -> None:
    if shown:
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"sfvault {version('sfvault')}")
        except PackageNotFoundError:
            print("sfvault (not installed as a package)")
        raise typer.Exit(0)


@app.callback()
def _root(
    shown: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print sfvault's version and exit.")
    ] = False,
) -> None:
    """sfvault: backup for Salesforce orgs. `sfvault --install-completion` adds tab completion to your shell."""


def _groups(helps: dict[str, str]) -> dict[str, typer.Typer]:
    """The command groups `sfvault NAME ...` by name, added to the app; `@group[NAME].command(...)` adds to one."""
    groups = {name: typer.Typer(help=help, no_args_is_help=True) for name, help in helps.items()}
    for name, commands in groups.items():
        app.add_typer(commands, name=name)
    return groups


group = _groups(
    {
        "org": "Org connections.",
        "policy": "Backup policies.",
        "backup": "Run backups.",
        "session": "Sessions: backups and restores.",
        "restore": "Restore backed-up records, files and metadata into an org.",
        "jobs": "The jobs of a session.",
        "records": "Backed-up records.",
        "files": "Backed-up files.",
        "metadata": "Backed-up metadata.",
        "services": "A local installation.",
        "token": "API tokens.",
        "audit": "Who changed and who read what.",
        "alerts": "Alerts: failed and warning sessions, anomalies, stalls, budgets.",
    }
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


class CliError(Exception):
    pass


def clients() -> Clients:
    return Clients(Endpoints.load())


def parse_duration(text: str) -> dt.timedelta:
    """'90s', '15m', '24h', '7d' or plain seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not match:
        raise CliError(f"cannot read duration {text!r}: use e.g. 90s, 15m, 24h, 7d")
    factor = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    return dt.timedelta(seconds=float(match.group(1)) * factor)


def parse_time(text: str) -> dt.datetime:
    if text == "now":
        return dt.datetime.now(dt.UTC)
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise CliError(f"cannot read time {text!r}: use ISO 8601, e.g. 2026-11-27T10:00:00Z") from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def parse_since(text: str) -> dt.datetime:
    """An ISO 8601 time, or a duration back from now (e.g. 24h, 7d)."""
    if re.fullmatch(r"\s*\d+(?:\.\d+)?\s*[smhd]?\s*", text):
        return dt.datetime.now(dt.UTC) - parse_duration(text)
    return parse_time(text)


def session_id_of(c: Clients, text: str) -> str:
    """The session a user's id names: the whole id or a unique prefix of it (services/cli/sessions.py)."""
    return sessions.resolve(c, text)


def private_dir(path: Path) -> None:
    """Create `path` and its missing parents 0700 (a directory that exists is left as it is)."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for directory in reversed(missing):
        directory.mkdir(mode=0o700)


def write_private(path: Path, parts: Iterable[bytes]) -> int:
    """Write `parts` to `path`, created 0600 (backed-up data is nobody else's): into a new file beside it,
    renamed over `path` once complete, so a failed download leaves no partial or empty file. Bytes written."""
    private_dir(path.parent if str(path.parent) else Path("."))
    partial = path.with_name(f".{path.name}.{os.getpid()}.part")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    size = 0
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                out.write(part)
                size += len(part)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return size


def as_of(c: Clients, org: str, at: str) -> dict[str, Any]:
    """The org (storage's key for it) and the time of a read as of a time."""
    return {"org_id": salesforce_org_id(c, org), "as_of": timestamps.to_pb(parse_time(at))}


def salesforce_org_id(c: Clients, org_id: str) -> str:
    """Storage keys everything by the Salesforce org id; accept either ours or theirs (none: the only org)."""
    org_id = org_id or _only_org(c)
    if org_id.startswith("00D") and len(org_id) in (15, 18):
        return org_id
    org = c.discovery.GetOrg(disc.GetOrgRequest(org_id=org_id))
    if not org.salesforce_org_id:
        raise CliError(f"org {org_id!r} has not been logged in to yet (run `sfvault org test {org_id}`)")
    return org.salesforce_org_id


# ---- orgs -----------------------------------------------------------------------------------------------


@group["org"].command("add")
def org_add(
    login_url: Annotated[str, typer.Option(help="https://login.salesforce.com, a My Domain, or sforg's login_url")],
    client_id: Annotated[str, typer.Option(help="The connected app's consumer key")],
    client_secret_ref: Annotated[str, typer.Option(help="env:NAME or file:/path holding the consumer secret")] = "",
    name: Annotated[str, typer.Option()] = "",
    org_id: Annotated[str, typer.Option("--id", help="sfvault's id for the org (generated if empty)")] = "",
    flow: Annotated[str, typer.Option(help=", ".join(sfc.AUTH_FLOWS))] = "client_credentials",
    username: str = "",
    password_ref: str = "",
    refresh_token_ref: str = "",
    private_key_ref: str = "",
    ca_bundle_ref: Annotated[str, typer.Option(help="file:/path of a PEM CA bundle (sforg's CA)")] = "",
    api_version: str = "",
    sandbox: Annotated[
        bool, typer.Option("--sandbox/--production", help="a sandbox (a restore into production needs --yes)")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Register an org connection (secrets are references, never values)."""
    try:
        auth_flow = sfc.auth_flow_to_pb(flow)
    except ValueError:
        raise CliError(f"unknown flow {flow!r}: one of {', '.join(sfc.AUTH_FLOWS)}") from None
    options = locals()  # the options are named as the connection's fields
    connection = disc.OrgConnection(auth_flow=auth_flow, **{f: options[f] for f in sfc.CONNECTION_FIELDS})  # type: ignore[arg-type]
    org = clients().discovery.CreateOrg(
        disc.CreateOrgRequest(org_id=org_id, name=name, connection=connection, sandbox=sandbox)
    )
    render.print_result(org, json_out, f"org [bold]{org.org_id}[/] added")


@group["org"].command("list")
def org_list(json_out: JsonOpt = False) -> None:
    """The registered orgs."""
    render.print_listing(
        clients().discovery.ListOrgs(disc.ListOrgsRequest()).orgs,
        json_out,
        "Orgs",
        ("org", "name", "login URL", "Salesforce org", "instance", "kind"),
        lambda o: (
            o.org_id,
            o.name,
            o.connection.login_url,
            o.salesforce_org_id or "-",
            o.instance_url or "-",
            "sandbox" if o.sandbox else "production",
        ),
    )


@group["org"].command("test")
def org_test(org_id: str, json_out: JsonOpt = False) -> None:
    """Log in and check the permissions a backup needs."""
    result = clients().discovery.TestOrg(disc.TestOrgRequest(org_id=org_id))
    if json_out:
        render.print_json(result)
    elif result.ok:
        render.console.print(
            f"[green]ok[/]: Salesforce org {result.salesforce_org_id} at {result.instance_url}; "
            f"API requests {result.api_requests_used:,}/{result.api_requests_max:,} used today"
        )
    else:
        for problem in result.problems:
            render.err_console.print(f"[red]problem[/]: {problem}")
    if not result.ok:
        raise typer.Exit(1)


# ---- policies -------------------------------------------------------------------------------------------


def _policy_from_options(policy: disc.Policy, opts: dict[str, Any]) -> disc.Policy:
    if opts.get("name") is not None:
        policy.name = opts["name"]
    if opts.get("include") is not None:
        del policy.scope.include_objects[:]
        policy.scope.include_objects.extend(opts["include"])
    if opts.get("exclude") is not None:
        del policy.scope.exclude_objects[:]
        policy.scope.exclude_objects.extend(opts["exclude"])
    for flag in ("auto_add_new_objects", "auto_add_new_fields", "files", "metadata"):
        if opts.get(flag) is not None:
            setattr(policy, flag, opts[flag])
    if opts.get("schedule") is not None:
        policy.schedule = opts["schedule"]
    if opts.get("time_zone") is not None:
        policy.time_zone = policies.time_zone(opts["time_zone"])
    if opts.get("stall_timeout"):
        policy.stall_timeout.CopyFrom(timestamps.duration_to_pb(parse_duration(opts["stall_timeout"])))
    if opts.get("reconcile_every"):
        policy.reconcile_every.CopyFrom(timestamps.duration_to_pb(parse_duration(opts["reconcile_every"])))
    if opts.get("api_share") is not None:
        policy.api_budget.daily_share_percent = opts["api_share"]
    if opts.get("api_cap") is not None:
        policy.api_budget.per_run_cap = opts["api_cap"]
    return policy


def _show_policy(p: disc.Policy, json_out: bool) -> None:
    if json_out:
        render.print_json(protect.policy_dict(p))  # webhook URLs by their host: they carry tokens
        return
    render.print_fields(f"Policy {p.policy_id}", policies.report(p))


@group["policy"].command("create")
def policy_create(
    org: Annotated[str, typer.Option(help="the org's sfvault id")],
    name: Annotated[str, typer.Option()] = "",
    policy_id: Annotated[str, typer.Option("--id")] = "",
    include: Annotated[list[str] | None, typer.Option(help="objects to back up (default: all)")] = None,
    exclude: Annotated[list[str] | None, typer.Option(help="objects never to back up")] = None,
    auto_add_new_objects: Annotated[bool, typer.Option("--auto-add-objects/--no-auto-add-objects")] = True,
    auto_add_new_fields: Annotated[bool, typer.Option("--auto-add-fields/--no-auto-add-fields")] = True,
    files: Annotated[bool, typer.Option("--files/--no-files")] = True,
    metadata: Annotated[bool, typer.Option("--metadata/--no-metadata")] = True,
    schedule: Annotated[str, typer.Option(help="hourly, daily@HH:MM, weekly@mon@HH:MM or a cron line")] = "",
    time_zone: Annotated[str, typer.Option(help="the schedule's IANA time zone, e.g. Europe/Paris")] = "UTC",
    stall_timeout: Annotated[str, typer.Option(help="e.g. 24h")] = "24h",
    reconcile_every: Annotated[str, typer.Option(help="e.g. 7d")] = "7d",
    api_share: Annotated[int, typer.Option(help="% of the org's daily API limit sfvault may use")] = 50,
    api_cap: Annotated[int, typer.Option(help="API calls per session at most (0: no cap)")] = 0,
    json_out: JsonOpt = False,
) -> None:
    """Create a backup policy."""
    policy = _policy_from_options(disc.Policy(policy_id=policy_id, org_id=org), dict(locals()))
    created = clients().discovery.CreatePolicy(disc.CreatePolicyRequest(policy=policy))
    policies.check_kept(policy.time_zone, created)
    render.print_result(created, json_out, f"policy [bold]{created.policy_id}[/] created for org {created.org_id}")


@group["policy"].command("update")
def policy_update(
    policy_id: str,
    name: Annotated[str | None, typer.Option()] = None,
    include: Annotated[list[str] | None, typer.Option()] = None,
    exclude: Annotated[list[str] | None, typer.Option()] = None,
    auto_add_new_objects: Annotated[bool | None, typer.Option("--auto-add-objects/--no-auto-add-objects")] = None,
    auto_add_new_fields: Annotated[bool | None, typer.Option("--auto-add-fields/--no-auto-add-fields")] = None,
    files: Annotated[bool | None, typer.Option("--files/--no-files")] = None,
    metadata: Annotated[bool | None, typer.Option("--metadata/--no-metadata")] = None,
    schedule: Annotated[str | None, typer.Option()] = None,
    time_zone: Annotated[str | None, typer.Option(help="the schedule's IANA time zone, e.g. Europe/Paris")] = None,
    stall_timeout: Annotated[str | None, typer.Option()] = None,
    reconcile_every: Annotated[str | None, typer.Option()] = None,
    api_share: Annotated[int | None, typer.Option()] = None,
    api_cap: Annotated[int | None, typer.Option()] = None,
    alert_webhook: Annotated[
        list[str] | None,
        typer.Option(help="URL[,json|slack|teams] or a secret ref env:NAME / file:/path (repeatable; replaces)"),
    ] = None,
    alert_email: Annotated[list[str] | None, typer.Option(help="an e-mail recipient (repeatable; replaces)")] = None,
    alert_on: Annotated[
        list[str] | None, typer.Option(help="failed,warning,anomaly,stalled,budget,verification (default: all)")
    ] = None,
    retention_days: Annotated[int | None, typer.Option(help="keep restore points N days (0: forever)")] = None,
    retention_versions: Annotated[int | None, typer.Option(help="keep N versions per record (0: all)")] = None,
    anomaly_delete_pct: Annotated[float | None, typer.Option(help="% of an object's records deleted (10)")] = None,
    anomaly_change_pct: Annotated[float | None, typer.Option(help="% of an object's records changed (50)")] = None,
    anomaly_create_pct: Annotated[float | None, typer.Option(help="% of an object's records created (50)")] = None,
    anomaly_min_records: Annotated[int | None, typer.Option(help="records at least, to be an anomaly (100)")] = None,
    anomaly_sigma: Annotated[float | None, typer.Option(help="standard deviations over the baseline (3)")] = None,
    anomalies: Annotated[bool | None, typer.Option("--anomalies/--no-anomalies", help="detect anomalies")] = None,
    legal_hold: Annotated[bool | None, typer.Option("--legal-hold/--no-legal-hold")] = None,
    sensitive: Annotated[
        list[str] | None,
        typer.Option(help="OBJ.FIELD,... stored encrypted (repeatable; replaces; '' for none)"),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Change a policy (only the options given)."""
    c = clients()
    current = c.discovery.GetPolicy(disc.GetPolicyRequest(policy_id=policy_id))
    options = dict(locals())
    changed = protect.apply_options(_policy_from_options(current, options), options)
    updated = c.discovery.UpdatePolicy(disc.UpdatePolicyRequest(policy=changed))
    policies.check_kept(changed.time_zone, updated)
    _show_policy(updated, json_out)


@group["policy"].command("show")
def policy_show(policy_id: str, json_out: JsonOpt = False) -> None:
    """One policy."""
    _show_policy(clients().discovery.GetPolicy(disc.GetPolicyRequest(policy_id=policy_id)), json_out)


@group["policy"].command("list")
def policy_list(org: Annotated[str, typer.Option()] = "", json_out: JsonOpt = False) -> None:
    """The policies (of one org)."""
    found = clients().discovery.ListPolicies(disc.ListPoliciesRequest(org_id=org)).policies
    if json_out:
        render.print_json([protect.policy_dict(p) for p in found])
        return
    render.print_table("Policies", policies.LIST_COLUMNS, map(policies.row, found))


# ---- backups and sessions -------------------------------------------------------------------------------


def watch(c: Clients, session_id: str) -> api.Session:
    """Live progress until the session ends, on standard error (services/cli/progress.py)."""
    return progress.follow(c, session_id, render.err_console)


@group["backup"].command("run")
def backup_run(
    policy: Annotated[str, typer.Option(help="the policy to run")],
    org: Annotated[str, typer.Option(help="the policy's org (looked up when omitted)")] = "",
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="follow the session to its end")] = False,
    stall_timeout: Annotated[str, typer.Option(help="override the policy's stall timeout")] = "",
    json_out: JsonOpt = False,
) -> None:
    """Start a backup session now."""
    c = clients()
    org_id = org or c.discovery.GetPolicy(disc.GetPolicyRequest(policy_id=policy)).org_id
    request = api.StartSessionRequest(policy_id=policy, org_id=org_id, trigger="manual")
    if stall_timeout:
        request.stall_timeout.CopyFrom(timestamps.duration_to_pb(parse_duration(stall_timeout)))
    session = c.session.StartSession(request)
    if not wait:
        render.print_result(session, json_out, f"session [bold]{session.session_id}[/] started")
        return
    final = watch(c, session.session_id)
    _session_report(c, final, json_out)
    if final.status in (pb.SESSION_STATUS_FAILED, pb.SESSION_STATUS_STOPPED):
        raise typer.Exit(2)


def _session_report(c: Clients, s: api.Session, json_out: bool) -> None:
    """A session with its jobs: as JSON for scripts (`--json`), else its report."""
    jobs = list(c.session.ListJobs(api.ListJobsRequest(session_id=s.session_id)).jobs)
    if json_out:
        render.print_json({"session": render.as_dict(s), "jobs": [render.as_dict(j) for j in jobs]})
    else:
        render.session_report(s, jobs)


SESSION_KINDS = {
    "backup": rs.rpb.SESSION_KIND_BACKUP,
    "restore": rs.rpb.SESSION_KIND_RESTORE,
    "metadata-restore": rs.rpb.SESSION_KIND_METADATA_RESTORE,
    "prune": rs.rpb.SESSION_KIND_PRUNE,
}


@group["session"].command("list")
@group["session"].command("ls", hidden=True)
def session_list(
    policy: Annotated[str, typer.Option()] = "",
    org: Annotated[str, typer.Option(help="only this org's sessions (sfvault's org id)")] = "",
    status: Annotated[str, typer.Option(help="success, warning, failed, stopped, running, pending")] = "",
    kind: Annotated[str, typer.Option(help="backup, restore or metadata-restore (default: every kind)")] = "",
    since: Annotated[str, typer.Option(help="requested since: ISO 8601, or a duration back (24h, 7d)")] = "",
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    json_out: JsonOpt = False,
) -> None:
    """Sessions, newest first (`session ls` too)."""
    if kind and kind not in SESSION_KINDS:
        raise CliError(f"unknown kind {kind!r}: one of {', '.join(SESSION_KINDS)}")
    request = api.ListSessionsRequest(policy_id=policy, kind=SESSION_KINDS.get(kind, rs.rpb.SESSION_KIND_UNSPECIFIED))
    if status:
        try:
            request.status = pb.SessionStatus.Value(f"SESSION_STATUS_{status.upper()}")
        except ValueError:
            raise CliError(f"unknown status {status!r}: success, warning, failed, stopped, running, pending") from None
    if since:
        request.requested_after.CopyFrom(timestamps.to_pb(parse_since(since)))
    found = sessions.listed(clients(), request, limit, sessions.of_org(org))
    render.print_result(found, json_out, render.sessions_table(found))


@group["session"].command("show")
def session_show(session_id: str, json_out: JsonOpt = False) -> None:
    """A session's report: status, per-job outcome and counts."""
    c = clients()
    _session_report(c, c.session.GetSession(api.GetSessionRequest(session_id=session_id_of(c, session_id))), json_out)


@group["session"].command("watch")
def session_watch(session_id: str, json_out: JsonOpt = False) -> None:
    """Follow a session until it ends."""
    c = clients()
    _session_report(c, watch(c, session_id_of(c, session_id)), json_out)


@group["session"].command("cancel")
def session_cancel(session_id: str, reason: Annotated[str, typer.Option()] = "", json_out: JsonOpt = False) -> None:
    """Stop a session gracefully: queued jobs are dropped, running ones finish their chunk."""
    c = clients()
    session_id = session_id_of(c, session_id)
    cancelled = c.session.CancelSession(api.CancelSessionRequest(session_id=session_id, reason=reason))
    render.print_result(cancelled, json_out, f"session {session_id}: cancellation requested")


@group["jobs"].command("list")
def jobs_list(session_id: str, json_out: JsonOpt = False) -> None:
    """The jobs of a session."""
    c = clients()
    jobs = list(c.session.ListJobs(api.ListJobsRequest(session_id=session_id_of(c, session_id))).jobs)
    render.print_result(jobs, json_out, render.jobs_table(jobs))


# ---- restores -------------------------------------------------------------------------------------------


def _restore_usage(message: str) -> NoReturn:
    """A restore refused before anything is called: one line, exit 2."""
    _error(message)
    raise typer.Exit(2)


def _confirm_production(c: Clients, request: api.StartSessionRequest) -> None:
    """A restore that writes to a production org (Org.sandbox false) needs --yes: asked on a terminal, refused
    otherwise, before anything is started."""
    target = rs.target_org(request)
    org = c.discovery.GetOrg(disc.GetOrgRequest(org_id=target))
    if not rs.needs_confirmation(request, org.sandbox):
        return
    question = f"org {target} is a production org: write the restore into it?"
    if sys.stdin.isatty() and sys.stdout.isatty():
        if typer.confirm(question, default=False):
            request.restore.confirmed = True
            return
        _restore_usage(f"not confirmed: nothing was written to {target}")
    _restore_usage(f"org {target} is a production org: give --yes to restore into it (or --dry-run to preview)")


def _start_restore(c: Clients, request: api.StartSessionRequest, wait: bool, json_out: bool) -> None:
    """Start the restore once a production target is confirmed; with --wait (a dry run always waits) follow it,
    report it, and exit non-zero unless it ended clean: 2 when it failed or stopped, 3 when records failed or
    differ."""
    _confirm_production(c, request)
    session = c.session.StartSession(request)
    if not (wait or request.restore.dry_run):
        render.print_result(rs.summary(session), json_out, f"restore session [bold]{session.session_id}[/] started")
        return
    final = watch(c, session.session_id)
    _restore_report(c, final, json_out)
    found = rs.problems(final)
    if found:
        if not json_out:
            for problem in found:
                render.err_console.print(f"[red]problem[/]: {_one_line(problem)}", highlight=False)
        raise typer.Exit(2 if final.status in (pb.SESSION_STATUS_FAILED, pb.SESSION_STATUS_STOPPED) else 3)


def _difference_sample(c: Clients, session_id: str, size: int = 5) -> list[str]:
    """A few Updated records' changed fields (a preview's sample of field differences), or a note why not."""
    request = st.ListRestoreRecordsRequest(session_id=session_id, state=rs.RECORD_STATES["updated"], page_size=size)
    try:
        outcomes = list(c.storage.ListRestoreRecords(request).outcomes)[:size]
    except grpc.RpcError as exc:
        return [f"(no sample: storage answered {exc.code().name.lower()})"]  # type: ignore[attr-defined]
    return [rs.difference_line(o) for o in outcomes]


def _restore_report(c: Clients, s: api.Session, json_out: bool) -> None:
    if json_out:
        render.print_json(rs.summary(s))
        return
    render.restore_report(s)
    if s.restore.dry_run and s.kind == rs.rpb.SESSION_KIND_RESTORE:
        sample = _difference_sample(c, s.session_id)
        if sample:
            render.console.print("sample of field differences (records that would be Updated):")
            for line in sample:
                render.console.print(f"  {_one_line(line)}", highlight=False)


WaitOpt = Annotated[bool, typer.Option("--wait/--no-wait", help="follow the session to its end")]


@group["restore"].command("run")
def restore_run(
    org: Annotated[str, typer.Argument(help="the org whose backup is restored (sfvault's org id)")],
    objects: Annotated[list[str] | None, typer.Option("--object", help="an object to restore (repeatable)")] = None,
    whole_org: Annotated[bool, typer.Option("--whole-org", help="every backed-up object, all records")] = False,
    as_of: Annotated[str, typer.Option("--as-of", help="the point in time, ISO 8601 (default: latest)")] = "",
    ids: Annotated[str, typer.Option("--ids", help="ID,… of the records (of one --object)")] = "",
    ids_file: Annotated[Path | None, typer.Option("--ids-file", help="a file of Ids, one a line")] = None,
    deleted_since: Annotated[str, typer.Option("--deleted-since", help="records deleted since then")] = "",
    changed_since: Annotated[str, typer.Option("--changed-since", help="records changed since then")] = "",
    all_records: Annotated[bool, typer.Option("--all", help="every record of the object (the default)")] = False,
    fields: Annotated[list[str] | None, typer.Option("--fields", help="F,… only these fields (default: all)")] = None,
    restore_empty: Annotated[bool, typer.Option("--restore-empty", help="write empty values too")] = False,
    parents: Annotated[int | None, typer.Option("--parents", help="levels of missing parents (default 1)")] = None,
    children: Annotated[int | None, typer.Option("--children", help="levels of children (default 2)")] = None,
    to_org: Annotated[str, typer.Option("--to-org", help="restore into another org (e.g. a sandbox)")] = "",
    match_on: Annotated[str, typer.Option("--match-on", help="external-Id field matching records there")] = "",
    masks: Annotated[
        list[str] | None, typer.Option("--mask", help="OBJ.FIELD=RULE: null, email, phone, pseudonym, fixed:V")
    ] = None,
    files: Annotated[bool, typer.Option("--files/--no-files", help="the files of the restored records")] = True,
    owner_map: Annotated[list[str] | None, typer.Option("--owner-map", help="OLD_USER=NEW_USER (repeatable)")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="decide everything, write nothing; waits")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="confirm a restore into a production org")] = False,
    wait: WaitOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Restore records (and their files) as they were backed up. With --wait or --dry-run: exit 0 only when the
    session ended Success with nothing Failed and the read-back matching (2: failed or stopped, 3: records
    failed or differ)."""
    try:
        listed = rs.split_ids(ids) + (rs.read_ids_file(ids_file) if ids_file is not None else [])
        request = rs.run_request(
            rs.RunOptions(
                org=org,
                objects=objects or [],
                whole_org=whole_org,
                as_of=parse_time(as_of) if as_of else None,
                ids=listed,
                deleted_since=parse_time(deleted_since) if deleted_since else None,
                changed_since=parse_time(changed_since) if changed_since else None,
                all_records=all_records,
                fields=fields or [],
                restore_empty=restore_empty,
                parents=parents,
                children=children,
                to_org=to_org,
                match_on=match_on,
                masks=masks or [],
                files=files,
                owner_map=owner_map or [],
                dry_run=dry_run,
                yes=yes,
            )
        )
    except (rs.RestoreOptionError, CliError) as exc:
        _restore_usage(str(exc))
    _start_restore(clients(), request, wait, json_out)


@group["restore"].command("metadata")
def restore_metadata(
    org: Annotated[str, typer.Argument(help="the org whose backed-up metadata is restored")],
    as_of: Annotated[str, typer.Option("--as-of", help="the point in time, ISO 8601")],
    components: Annotated[list[str], typer.Option("--component", help="TYPE:FULLNAME (repeatable)")],
    check_only: Annotated[bool, typer.Option("--check-only", help="validate the deploy, deploy nothing")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="confirm a deploy into a production org")] = False,
    wait: WaitOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Restore metadata components as they were at a time (a validated deploy)."""
    try:
        request = rs.metadata_request(org, parse_time(as_of), components, check_only, yes)
    except (rs.RestoreOptionError, CliError) as exc:
        _restore_usage(str(exc))
    _start_restore(clients(), request, wait, json_out)


@group["restore"].command("show")
def restore_show(session_id: str, json_out: JsonOpt = False) -> None:
    """A restore's report: per object Created / Updated / Undeleted / Skipped / Failed, and the read-back."""
    c = clients()
    session = c.session.GetSession(api.GetSessionRequest(session_id=session_id_of(c, session_id)))
    if session.kind not in rs.RESTORE_KINDS:
        raise CliError(f"session {session_id} is a backup: `sfvault session show {session_id}`")
    _restore_report(c, session, json_out)


@group["restore"].command("records")
def restore_records(
    session_id: str,
    state: Annotated[str, typer.Option(help=", ".join(rs.STATES))] = "",
    object_name: Annotated[str, typer.Option("--object", help="only this object")] = "",
    json_out: JsonOpt = False,
) -> None:
    """Each record's outcome in a restore (e.g. --state failed: Salesforce's error code and message)."""
    if state and state.lower() not in rs.RECORD_STATES:
        _restore_usage(f"unknown state {state!r}: one of {', '.join(rs.STATES)}")
    c = clients()
    session_id = session_id_of(c, session_id)
    request = st.ListRestoreRecordsRequest(
        session_id=session_id,
        state=rs.RECORD_STATES.get(state.lower(), rs.rpb.RECORD_STATE_UNSPECIFIED),
        object_name=object_name,
        page_size=1000,
    )
    outcomes: list[Any] = []
    while True:
        page = c.storage.ListRestoreRecords(request)
        outcomes.extend(page.outcomes)
        if not page.next_page_token:
            break
        request.page_token = page.next_page_token
    render.print_listing(
        outcomes,
        json_out,
        f"Restore {session_id}",
        ("object", "backup Id", "org Id", "state", "error", "message", "changed fields", "note"),
        lambda o: (
            o.object_name,
            o.source_id,
            o.target_id or "-",
            render.record_state_name(o.state),
            o.error_code or "-",
            o.message[:120],
            ", ".join(o.changed_fields),
            o.note,
        ),
    )


@group["restore"].command("retry")
def restore_retry(session_id: str, wait: WaitOpt = False, json_out: JsonOpt = False) -> None:
    """Re-run only the Failed records of a restore (once their cause is fixed): a new session, the same spec."""
    c = clients()
    try:
        request = rs.retry_request(c.session.GetSession(api.GetSessionRequest(session_id=session_id_of(c, session_id))))
    except rs.RestoreOptionError as exc:
        _restore_usage(str(exc))
    _start_restore(c, request, wait, json_out)


@group["restore"].command("run-draft")
def restore_run_draft(
    draft_session: Annotated[str, typer.Argument(help="the restore draft an anomaly prepared (its session id)")],
    yes: Annotated[bool, typer.Option("--yes", help="confirm a restore into a production org")] = False,
    wait: WaitOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Run a restore draft for real: a new restore session with the draft's spec (after reviewing its preview
    with `sfvault restore show` / `restore records`). With --wait: exit as `restore run` does."""
    c = clients()
    try:
        draft = c.session.GetSession(api.GetSessionRequest(session_id=session_id_of(c, draft_session)))
        request = protect.draft_request(draft, yes)
    except protect.ProtectOptionError as exc:
        _restore_usage(str(exc))
    _start_restore(c, request, wait, json_out)


# ---- alerts ---------------------------------------------------------------------------------------------


@group["alerts"].command("list")
def alerts_list(
    policy: Annotated[str, typer.Option()] = "",
    session: Annotated[str, typer.Option()] = "",
    kind: Annotated[str, typer.Option(help="failed, warning, anomaly, stalled, budget or verification")] = "",
    limit: Annotated[int, typer.Option()] = 50,
    json_out: JsonOpt = False,
) -> None:
    """Alerts, newest first, with what became of each delivery (webhook hosts, e-mail addresses)."""
    c = clients()
    session = session_id_of(c, session) if session else ""
    request = api.ListAlertsRequest(policy_id=policy, session_id=session, kind=kind, page_size=limit)
    found = list(c.session.ListAlerts(request).alerts)
    if json_out:
        render.print_json(protect.alerts_json(found))
        return
    render.print_table("Alerts", ("at", "kind", "session", "message", "deliveries"), map(protect.alert_row, found))


# ---- reading the backup ---------------------------------------------------------------------------------


@group["records"].command("history")
def records_history(
    object_name: str, record_id: str, org: Annotated[str, typer.Option()] = "", json_out: JsonOpt = False
) -> None:
    """Every backed-up version of a record."""
    c = clients()
    sf_org = salesforce_org_id(c, org)
    history = c.storage.GetRecordHistory(
        st.GetRecordHistoryRequest(org_id=sf_org, object_name=object_name, record_id=record_id)
    )
    render.print_listing(
        history.versions,
        json_out,
        f"{object_name} {record_id}",
        ("version", "captured", "session", "SystemModstamp", "deleted", "hash"),
        lambda v: (
            str(v.version_id),
            render.ts(v.captured_at),
            v.session_id[:12],
            render.ts(v.system_modstamp),
            st.DeletedState.Name(v.deleted).removeprefix("DELETED_STATE_").lower(),
            v.hash[:12],
        ),
    )


@group["records"].command("restore-points")
def records_restore_points(
    object_name: str, record_id: str, org: Annotated[str, typer.Option()] = "", json_out: JsonOpt = False
) -> None:
    """The points a record can be read or restored at (newest first): pass one as --at / --as-of."""
    c = clients()
    request = st.GetRecordHistoryRequest(org_id=salesforce_org_id(c, org), object_name=object_name, record_id=record_id)
    found = points.restore_points(c.storage.GetRecordHistory(request).versions)
    if not found:
        raise CodedError(f"{object_name} {record_id} has never been backed up", "not_found")
    if json_out:
        render.print_json(found)
    else:
        render.print_table(f"{object_name} {record_id}", points.COLUMNS, map(points.row, found))


@group["records"].command("as-of")
def records_as_of(
    object_name: str,
    record_id: str,
    at: Annotated[str, typer.Option("--at", help="ISO 8601 time, or now")],
    org: Annotated[str, typer.Option()] = "",
    json_out: JsonOpt = False,
) -> None:
    """A record as it was backed up at a time."""
    import json

    c = clients()
    version = c.storage.GetRecordAsOf(
        st.GetRecordAsOfRequest(object_name=object_name, record_id=record_id, **as_of(c, org, at))
    )
    values = json.loads(version.values_json or b"{}")
    if json_out:
        shown = {k: v for k, v in render.as_dict(version).items() if k != "values_json"}
        render.print_json({"version": shown, "values": values})
    else:
        title = f"{object_name} {record_id}: version {version.version_id}, captured {render.ts(version.captured_at)}"
        render.print_fields(title, [(k, "-" if v is None else str(v)) for k, v in sorted(values.items())])


OutputOpt = Annotated[
    Path | None, typer.Option("-o", "--output", help="a file, or - for the standard output (the default)")
]
ForceOpt = Annotated[bool, typer.Option("--force", help="overwrite the output file if it exists")]


def write_output(output: Path | None, parts: Iterable[bytes], force: bool = True) -> int | None:
    """`parts` to the standard output (no -o, or -o -), else to the file (private; an existing file only with
    --force). Bytes written to a file; None for the standard output."""
    if output is None or str(output) == "-":
        for part in parts:
            sys.stdout.buffer.write(part)
        sys.stdout.buffer.flush()
        return None
    if not force and output.exists():
        raise CodedError(f"{output} exists: give --force to overwrite it", "already_exists")
    return write_private(output, parts)


@app.command("export")
def export(
    object_name: str,
    at: Annotated[str, typer.Option("--at", help="ISO 8601 time, or now")] = "now",
    fmt: Annotated[str, typer.Option("--format", help="csv, jsonl or parquet")] = "csv",
    output: OutputOpt = None,
    org: Annotated[str, typer.Option()] = "",
    include_deleted: Annotated[
        bool, typer.Option("--include-deleted", help="records in the recycle bin then too (JSON Lines: _deleted)")
    ] = False,
    encrypt_to: Annotated[
        str, typer.Option("--encrypt-to", help="env:NAME / file:/path of a 32-byte key: the export encrypted with it")
    ] = "",
) -> None:
    """Every record of an object as it was backed up at a time (encrypted with --encrypt-to: `sfvault decrypt`)."""
    storage_format = exporting.storage_format(fmt)
    keyring = sealed_export.keyring_of(encrypt_to, "--encrypt-to") if encrypt_to else None
    c = clients()
    point = as_of(c, org, at)
    found = c.storage.ListRestorePoints(st.ListRestorePointsRequest(org_id=point["org_id"], object_name=object_name))
    exporting.check_point(object_name, point["as_of"].ToDatetime(dt.UTC), found.restore_points)
    request = st.ExportObjectAsOfRequest(
        object_name=object_name, format=storage_format, include_deleted=include_deleted, **point
    )
    count = 0

    def data() -> Iterator[bytes]:
        nonlocal count
        for chunk in c.storage.ExportObjectAsOf(request):
            count += chunk.records
            yield chunk.data

    parts = exporting.parquet(data()) if fmt == "parquet" else data()
    if keyring is not None:
        parts = sealed_export.seal(parts, keyring)
    if write_output(output, parts) is not None:
        render.err_console.print(f"{count:,} records written to {output}{' (encrypted)' if keyring else ''}")


@app.command("decrypt")
def decrypt(
    source: Path,
    key: Annotated[str, typer.Option("--key", help="env:NAME / file:/path of the key given to --encrypt-to")],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="file (default: standard output)")] = None,
) -> None:
    """An export encrypted with `sfvault export --encrypt-to`, decrypted (a wrong key or an altered file: an error)."""
    keyring = sealed_export.keyring_of(key, "--key")

    def data() -> Iterator[bytes]:
        with source.open("rb") as f:
            yield from iter(lambda: f.read(1 << 20), b"")

    try:
        parts = sealed_export.open_sealed(data(), keyring, str(source))
        if output is None:
            # the plaintext is held until it is known whole: nothing partial reaches the standard output
            sys.stdout.buffer.write(b"".join(parts))
            return
        size = write_private(output, parts)  # a failure leaves no file
    except sealed_export.KeyUnavailable:
        raise CliError(f"{source} is not encrypted with the key in {key}") from None
    render.err_console.print(f"{size:,} bytes written to {output}")


@group["files"].command("get")
def files_get(
    object_name: str,
    record_id: str,
    output: Annotated[Path, typer.Option("-o", "--output", help="a file, or - for the standard output")],
    at: Annotated[str, typer.Option("--at")] = "now",
    org: Annotated[str, typer.Option()] = "",
    force: ForceOpt = False,
    json_out: Annotated[bool, typer.Option("--json", help="print the file's version as JSON")] = False,
) -> None:
    """Download a backed-up file body (ContentVersion, Attachment, Document)."""
    c = clients()
    if str(output) != "-" and not force and output.exists():  # before anything is read
        raise CodedError(f"{output} exists: give --force to overwrite it", "already_exists")
    request = st.GetFileRequest(object_name=object_name, record_id=record_id, **as_of(c, org, at))
    version = st.FileVersion()

    def parts() -> Iterator[bytes]:
        for part in c.storage.GetFile(request):
            if part.HasField("file"):
                version.CopyFrom(part.file)
            else:
                yield part.data

    size = write_output(output, parts(), force)
    if size is None:
        return
    if json_out:
        render.print_json(render.as_dict(version) | {"path": str(output), "bytes": size})
    else:
        render.console.print(
            f"{size:,} bytes written to {output}" + (f" ({version.file_name})" if version.file_name else "")
        )


@group["metadata"].command("list")
def metadata_list(
    type_: Annotated[str, typer.Option("--type")] = "",
    org: Annotated[str, typer.Option()] = "",
    json_out: JsonOpt = False,
) -> None:
    """Backed-up metadata component versions."""
    c = clients()
    render.print_listing(
        c.storage.ListMetadataVersions(
            st.ListMetadataVersionsRequest(org_id=salesforce_org_id(c, org), type=type_)
        ).versions,
        json_out,
        "Metadata",
        ("type", "full name", "version", "captured", "last modified", "deleted"),
        lambda v: (
            v.type,
            v.full_name,
            str(v.version_id),
            render.ts(v.captured_at),
            render.ts(v.last_modified_date),
            "deleted" if v.deleted else "-",
        ),
    )


@group["metadata"].command("get")
def metadata_get(
    type_: Annotated[str, typer.Argument(metavar="TYPE")],
    full_name: str,
    at: Annotated[str, typer.Option("--at")] = "now",
    org: Annotated[str, typer.Option()] = "",
    output: OutputOpt = None,
    force: ForceOpt = False,
    json_out: Annotated[
        bool, typer.Option("--json", help="the version as JSON, its content as text (UTF-8) in `content`")
    ] = False,
) -> None:
    """A metadata component's content as backed up at a time."""
    c = clients()
    version = c.storage.GetMetadataAsOf(st.GetMetadataAsOfRequest(type=type_, full_name=full_name, **as_of(c, org, at)))
    if json_out:
        content = version.content.decode("utf-8", errors="replace")
        render.print_json(render.as_dict(version) | {"content": content})
        return
    if write_output(output, [version.content], force) is not None:
        render.err_console.print(f"{len(version.content):,} bytes written to {output}")


@app.command("verify")
def verify(
    org: Annotated[str, typer.Option(help="the org (default: the only one)")] = "",
    objects: Annotated[
        list[str] | None, typer.Option("--object", help="objects to check (default: all backed up)")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Reconcile the latest backup against the org now: counts and Ids, and what differs."""
    c = clients()
    result = c.discovery.VerifyOrg(disc.VerifyOrgRequest(org_id=org or _only_org(c), objects=objects or []))
    differs = [o for o in result.objects if o.missing or o.phantom]
    if json_out:
        render.print_json(result)
    else:
        render.print_table(
            f"Backup vs org {result.salesforce_org_id}",
            ("object", "in org", "in backup", "missing from backup", "gone from org", "examples"),
            [
                (
                    o.object_name,
                    f"{o.org_records:,}",
                    f"{o.backup_records:,}",
                    f"[{style}]{o.missing:,}[/]",
                    f"[{style}]{o.phantom:,}[/]",
                    ", ".join([*o.missing_sample[:3], *o.phantom_sample[:3]]),
                )
                for o in result.objects
                for style in ["red" if o.missing or o.phantom else "green"]
            ],
        )
        render.console.print(
            "[green]the backup matches the org[/]"
            if not differs
            else f"[yellow]{len(differs)} object(s) differ[/]: changes made since the last session, or a problem "
            "worth a look; the next session's Id reconciliation catches them"
        )
    if differs:
        raise typer.Exit(3)


def _only_org(c: Clients) -> str:
    orgs = list(c.discovery.ListOrgs(disc.ListOrgsRequest()).orgs)
    if len(orgs) != 1:
        raise CliError(f"{len(orgs)} orgs are registered: say which with --org")
    return orgs[0].org_id


# ---- tokens and local services --------------------------------------------------------------------------


MAX_TOKEN_DAYS = 366
PEOPLE_ROLES = ("viewer", "operator", "restorer", "admin")  # the services' own role is minted by the services


@group["token"].command("create")
def token_create(
    name: Annotated[str, typer.Option(help="who the token is for")],
    role: Annotated[str, typer.Option(help="viewer, operator, restorer or admin")] = "viewer",
    days: Annotated[int, typer.Option(help=f"lifetime, 1 to {MAX_TOKEN_DAYS} days")] = 90,
    key_ref: Annotated[str, typer.Option(help="the signing key: env:NAME or file:/path")] = "env:SFVAULT_AUTH_KEY",
    register: Annotated[
        bool, typer.Option("--register/--no-register", help="record it in sfvault's token registry (needs admin)")
    ] = True,
) -> None:
    """Mint a token (needs the signing key: an admin's task) and register it, so it can be listed and revoked."""
    from services.platform.auth import mint, read_key

    if role not in PEOPLE_ROLES:
        raise CliError(f"role must be {', '.join(PEOPLE_ROLES[:-1])} or {PEOPLE_ROLES[-1]}")
    if not 1 <= days <= MAX_TOKEN_DAYS:
        raise CliError(f"--days must be 1 to {MAX_TOKEN_DAYS}")
    token = mint(read_key(key_ref), name, role, ttl_s=days * 86400.0)
    if register:  # before it is shown: a token nobody can list or revoke is never handed out
        clients().access.RegisterToken(acc.RegisterTokenRequest(token=token))
    else:
        render.err_console.print("not registered: `sfvault token register` records it later", highlight=False)
    print(token)


@group["token"].command("register")
def token_register(
    token_ref: Annotated[
        str, typer.Option("--token-ref", help="the token: env:NAME or file:/path (e.g. .sfvault/admin.token)")
    ] = "env:SFVAULT_TOKEN",
    json_out: JsonOpt = False,
) -> None:
    """Record an existing token (minted earlier, or with --no-register) in the registry."""
    from services.platform.auth import read_key

    token = read_key(token_ref, "the token", "--token-ref").decode()
    info = clients().access.RegisterToken(acc.RegisterTokenRequest(token=token))
    render.print_result(info, json_out, f"token [bold]{info.token_id}[/] ({info.name}, {info.role}) registered")


@group["token"].command("list")
def token_list(
    include_expired: Annotated[bool, typer.Option("--all", help="expired tokens too")] = False,
    json_out: JsonOpt = False,
) -> None:
    """The registered tokens (never the tokens themselves)."""

    def row(t: acc.TokenInfo) -> tuple[str, ...]:
        revoked = t.HasField("revoked_at")
        return (
            t.token_id,
            t.name,
            t.role,
            render.ts(t.issued_at),
            render.ts(t.expires_at),
            f"[red]{render.ts(t.revoked_at)}[/]" if revoked else "-",
            t.revoked_by if revoked else t.registered_by,
        )

    tokens = clients().access.ListTokens(acc.ListTokensRequest(include_expired=include_expired)).tokens
    render.print_listing(tokens, json_out, "Tokens", ("id", "name", "role", "issued", "expires", "revoked", "by"), row)


@group["token"].command("revoke")
def token_revoke(token_id: str, json_out: JsonOpt = False) -> None:
    """Revoke a token: every service refuses it within seconds."""
    info = clients().access.RevokeToken(acc.RevokeTokenRequest(token_id=token_id))
    render.print_result(info, json_out, f"token {info.token_id} ({info.name}) revoked at {render.ts(info.revoked_at)}")


# ---- audit ----------------------------------------------------------------------------------------------


def _changes(c: Clients, since: dt.datetime | None, actor: str) -> Iterator[dict[str, Any]]:
    request = acc.ListAuditRequest(actor=actor, page_size=1000)
    if since is not None:
        request.since.CopyFrom(timestamps.to_pb(since))
    while True:
        page = c.access.ListAudit(request)
        for e in page.entries:
            yield {
                "at": e.at.ToDatetime(dt.UTC),
                "kind": "change",
                "actor": e.actor,
                "role": e.role,
                "token_id": e.token_id,
                "service": e.service,
                "action": e.method,
                "what": f"{e.target} ({e.detail})" if e.detail else e.target,
                "outcome": e.outcome,
            }
        if not page.next_page_token:
            return
        request.page_token = page.next_page_token


def _reads(c: Clients, since: dt.datetime | None, actor: str) -> Iterator[dict[str, Any]]:
    """Storage's audit of reads (ListReadAudit). A storage without it: a note on stderr, no reads."""
    request_type = getattr(st, "ListReadAuditRequest", None)
    if request_type is None:
        return
    request = request_type(actor=actor, page_size=1000)
    if since is not None:
        request.since.CopyFrom(timestamps.to_pb(since))
    while True:
        try:
            page = c.storage.ListReadAudit(request)  # type: ignore[attr-defined,unused-ignore]
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.UNIMPLEMENTED:  # type: ignore[attr-defined]
                raise
            render.err_console.print("note: this storage does not audit reads yet; changes only", highlight=False)
            return
        for e in page.entries:
            what = " ".join(part for part in (e.object_name, e.target) if part)
            yield {
                "at": e.at.ToDatetime(dt.UTC),
                "kind": "read",
                "actor": e.actor,
                "role": e.role,
                "token_id": e.token_id,
                "service": "storage",
                "action": e.method,
                "what": what + (f" as of {render.ts(e.as_of)}" if e.HasField("as_of") else ""),
                "outcome": e.outcome,
            }
        if not page.next_page_token:
            return
        request.page_token = page.next_page_token


@group["audit"].command("list")
def audit_list(
    since: Annotated[str, typer.Option(help="ISO 8601 time, or a duration back from now (e.g. 24h, 7d)")] = "",
    actor: Annotated[str, typer.Option(help="only this token name")] = "",
    json_out: JsonOpt = False,
) -> None:
    """The audit: changes (every service) and reads (storage), merged by time, oldest first."""
    start = parse_since(since) if since else None
    c = clients()
    entries = sorted([*_changes(c, start, actor), *_reads(c, start, actor)], key=lambda e: e["at"])
    if json_out:
        render.print_json([e | {"at": e["at"].isoformat()} for e in entries])
        return
    render.print_table(
        "Audit",
        ("time", "kind", "actor", "role", "service", "action", "what", "outcome"),
        [
            (
                e["at"].strftime("%Y-%m-%d %H:%M:%S"),
                e["kind"],
                e["actor"],
                e["role"],
                e["service"],
                e["action"],
                e["what"],
                e["outcome"] if e["outcome"] == "OK" else f"[red]{e['outcome']}[/]",
            )
            for e in entries
        ],
    )


@group["services"].command("up")
def services_up(
    home: Annotated[Path, typer.Option(help="state directory")] = DEFAULT_HOME,
    org: Annotated[str, typer.Option(help="start sforg with this scale (tiny, small, large), or none")] = "none",
) -> None:
    """Start a local installation (PostgreSQL, NATS, the four services) in the background."""
    from services.cli import local

    private_dir(home)  # the state directory holds the signing key and an admin token
    if (home / "auth.key").exists():  # one an older sfvault left 0755 (only ours: never e.g. --home /tmp)
        home.chmod(0o700)
    info = local.up(home, None if org == "none" else org)
    listening = ", ".join(f"{name} {address}" for name, address in info["services"].items())
    render.console.print(f"sfvault is up (state in {home}): {listening}", highlight=False)
    addresses = info["services"]  # the installation just started, whatever SFVAULT_*_ADDR say
    token = (home / "admin.token").read_text().strip()
    c = Clients(Endpoints(addresses["session"], addresses["discovery"], addresses["storage"], token))
    try:  # the installation's admin token is listed and revocable like any other
        c.access.RegisterToken(acc.RegisterTokenRequest(token=c.endpoints.token))
    except grpc.RpcError as exc:
        render.err_console.print(f"note: the admin token is not registered ({exc.code().name.lower()})")
    finally:
        c.close()


@group["services"].command("down")
def services_down(home: Annotated[Path, typer.Option()] = DEFAULT_HOME) -> None:
    """Stop the local installation."""
    from services.cli import local

    local.down(home)
    render.console.print("sfvault is down")


@group["services"].command("status")
def services_status(home: Annotated[Path, typer.Option()] = DEFAULT_HOME, json_out: JsonOpt = False) -> None:
    """Health of each local service."""
    from services.cli import local

    status = local.status(home)
    if json_out:
        render.print_json(status)
        return
    for name, state in status.items():
        style = "green" if state == "SERVING" else "red"
        render.console.print(f"{name:10} [{style}]{state}[/]")
    if any(s != "SERVING" for s in status.values()):
        raise typer.Exit(1)


def _one_line(text: str) -> str:
    from rich.markup import escape

    return escape(" ".join(str(text).split()))


def _error(message: str, code: str = "") -> None:
    label = f"error ({code})" if code else "error"
    render.err_console.print(f"[red]{label}[/]: {_one_line(message)}", highlight=False, soft_wrap=True)


def run(argv: list[str] | None = None) -> int:
    """The CLI with every failure turned into one line on stderr and an exit code: 1 for an error, 2 for a
    usage mistake, 130 when interrupted. No traceback, ever."""
    try:
        result = app(args=argv, prog_name="sfvault", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except click_errors.NoArgsIsHelpError as exc:
        exc.show()  # the help text, as `sfvault GROUP` with nothing else asks for
        return 2
    except click_errors.UsageError as exc:
        hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
        _error(exc.format_message() + hint)
        return 2
    except click_errors.ClickException as exc:
        _error(exc.format_message())
        return exc.exit_code
    except typer.Abort:
        _error("aborted")
        return 1
    except grpc.RpcError as exc:
        code = exc.code().name if hasattr(exc, "code") and exc.code() is not None else "ERROR"
        details = (exc.details() if hasattr(exc, "details") else "") or str(exc)
        if code == "UNAVAILABLE":
            details = f"{details} (is sfvault running? `sfvault services status`)"
        _error(details, code.lower())
        return 1
    except (KeyboardInterrupt, typer.Exit) as exc:
        return 130 if isinstance(exc, KeyboardInterrupt) else exc.exit_code
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        _error(f"{exc.strerror or type(exc).__name__}{where}" if exc.strerror else str(exc) or type(exc).__name__)
        return 1
    except Exception as exc:  # CliError, AuthError, ValueError, RuntimeError, ...: the message, one line
        code = getattr(exc, "code", "")
        _error(str(exc) or type(exc).__name__, code if isinstance(code, str) else "")
        return 1


compare_command.register(app, sys.modules[__name__])  # `sfvault compare` (services/cli/compare.py)
keep.register(app, sys.modules[__name__])  # `sfvault prune`, `sfvault hold` (services/cli/keep.py)
erase_command.register(app, sys.modules[__name__])  # `sfvault erase` (services/cli/erase.py)
catalog.register(sys.modules[__name__])  # `org update`, `org remove`, `policy delete` (services/cli/catalog.py)
trace_command.register(sys.modules[__name__])  # `session trace` (services/cli/trace.py)


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
