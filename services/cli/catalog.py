"""`sfvault org update`, `sfvault org remove` and `sfvault policy delete` (issue 20, the missing verbs).

- `org update ORG [--name N] [--login-url U] [--client-id C] [--client-secret-ref R] ... [--sandbox|--production]`:
  only the options given change; the connection's other fields stay (secrets are references, never values).
- `org remove ORG --yes` and `policy delete POLICY --yes`: asked on a terminal without --yes, refused (exit 2)
  elsewhere. Removing an org or a policy keeps what was backed up (storage's restore points stay readable).
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Annotated, Any

import typer
from sfvault.discovery.v1 import discovery_pb2 as disc

from services import sfconnection as sfc
from services.cli import render

YesOpt = Annotated[bool, typer.Option("--yes", help="do it without asking")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


def update_request(org: disc.Org, changes: dict[str, Any]) -> disc.UpdateOrgRequest:
    """The UpdateOrg request changing only what `changes` gives (None: unchanged). The connection is sent whole
    (UpdateOrg replaces it): the org's current one with the given fields changed."""
    request = disc.UpdateOrgRequest(org_id=org.org_id, name=changes.get("name") or "")
    given = {f: changes[f] for f in sfc.CONNECTION_FIELDS if changes.get(f) is not None}
    if given or changes.get("flow") is not None:
        request.connection.CopyFrom(org.connection)
        for field, value in given.items():
            setattr(request.connection, field, value)
        if changes.get("flow") is not None:
            try:
                request.connection.auth_flow = sfc.auth_flow_to_pb(changes["flow"])  # type: ignore[assignment]
            except ValueError:
                raise typer.BadParameter(
                    f"unknown flow {changes['flow']!r}: one of {', '.join(sfc.AUTH_FLOWS)}"
                ) from None
    if changes.get("sandbox") is not None:
        request.sandbox = changes["sandbox"]
    if not (request.name or request.HasField("connection") or request.HasField("sandbox")):
        raise typer.BadParameter("nothing to change: give at least one option (see --help)")
    return request


def confirmed(question: str, yes: bool, refusal: str) -> None:
    """--yes, or a yes on a terminal; else a usage error (exit 2) and nothing is done."""
    if yes:
        return
    if sys.stdin.isatty() and sys.stdout.isatty() and typer.confirm(question, default=False):
        return
    raise typer.BadParameter(refusal)


def register(cli: ModuleType) -> None:
    """Adds the verbs to the CLI's `org` and `policy` groups (`cli`: the CLI's main module)."""

    @cli.group["org"].command("update")
    def org_update(
        org_id: Annotated[str, typer.Argument(metavar="ORG", help="sfvault's id of the org")],
        name: Annotated[str | None, typer.Option()] = None,
        login_url: Annotated[str | None, typer.Option()] = None,
        client_id: Annotated[str | None, typer.Option()] = None,
        client_secret_ref: Annotated[str | None, typer.Option(help="env:NAME or file:/path")] = None,
        flow: Annotated[str | None, typer.Option(help=", ".join(sfc.AUTH_FLOWS))] = None,
        username: Annotated[str | None, typer.Option()] = None,
        password_ref: Annotated[str | None, typer.Option()] = None,
        refresh_token_ref: Annotated[str | None, typer.Option()] = None,
        private_key_ref: Annotated[str | None, typer.Option()] = None,
        ca_bundle_ref: Annotated[str | None, typer.Option(help="file:/path of a PEM CA bundle")] = None,
        api_version: Annotated[str | None, typer.Option()] = None,
        sandbox: Annotated[bool | None, typer.Option("--sandbox/--production")] = None,
        json_out: JsonFlag = False,
    ) -> None:
        """Change an org connection (only the options given; e.g. the emulator's new login URL)."""
        c = cli.clients()
        request = update_request(c.discovery.GetOrg(disc.GetOrgRequest(org_id=org_id)), dict(locals()))
        org = c.discovery.UpdateOrg(request)
        render.print_result(org, json_out, f"org [bold]{org.org_id}[/] updated")

    @cli.group["org"].command("remove")
    def org_remove(
        org_id: Annotated[str, typer.Argument(metavar="ORG", help="sfvault's id of the org")], yes: YesOpt = False
    ) -> None:
        """Remove an org connection (what was backed up stays readable)."""
        confirmed(f"remove org {org_id}?", yes, f"give --yes to remove org {org_id}")
        cli.clients().discovery.DeleteOrg(disc.DeleteOrgRequest(org_id=org_id))
        render.console.print(f"org [bold]{org_id}[/] removed")

    @cli.group["policy"].command("delete")
    def policy_delete(policy_id: Annotated[str, typer.Argument(metavar="POLICY")], yes: YesOpt = False) -> None:
        """Delete a backup policy: no more scheduled backups (its restore points stay readable)."""
        confirmed(f"delete policy {policy_id}?", yes, f"give --yes to delete policy {policy_id}")
        cli.clients().discovery.DeletePolicy(disc.DeletePolicyRequest(policy_id=policy_id))
        render.console.print(f"policy [bold]{policy_id}[/] deleted")
