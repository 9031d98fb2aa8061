"""`sfvault erase` (issue 18, GDPR Article 17): erase records from every version, export and file body of the backup
(storage's Erase; admin), and prove it (`sfvault erase verify`, storage's VerifyErasure).

    sfvault erase ORG (--object OBJ --ids ID,... | --value V --fields OBJ.FIELD,...) --reason TEXT
                  [--yes] [--dry-run] [--json]
    sfvault erase verify ORG (--value V [--fields OBJ.FIELD,...] | --erasure ID) [--json]

Without --yes the erasure is previewed first (a dry run: the records and counts) and asked for on a terminal;
elsewhere it is refused (exit 2): an erasure cannot be undone. `--json` prints one object: {"erasure_id", "dry_run",
"versions", "file_bodies", "records": [{"object", "id", "versions", "file_bodies"}]}; verify's: {"clean",
"versions_holding", "file_bodies_holding", "samples": ["Object:Id", ...]} (exit 1 when not clean). The value is
personal data: it is sent to storage only, never printed.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Annotated, Any

import typer
from sfvault.storage.v1 import storage_pb2 as st

from services.cli import render

HELP = (
    "Erase records from the backup (GDPR Article 17): by Id (--object OBJ --ids ID,...) or every record holding a "
    "value in given fields (--value V --fields Contact.Email,Lead.Email), from every version, export and file body; "
    "--reason is required (kept in the audit, the value never is). Previews and asks unless --yes; --dry-run only "
    "previews. `sfvault erase verify ORG --value V [--fields ...]` (or --erasure ID) proves nothing holds it any more."
)


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def erase_request(
    org_id: str, object_name: str, ids: str, value: str, fields: str, reason: str, dry_run: bool
) -> st.EraseRequest:
    """The request, with the CLI's own usage checks (storage checks again)."""
    if (object_name or ids) and (value or fields):
        raise typer.BadParameter("give --object with --ids, or --value with --fields; not both")
    if not (object_name or ids or value or fields):
        raise typer.BadParameter("say what to erase: --object OBJ --ids ID,... or --value V --fields OBJ.FIELD,...")
    if ids and not object_name:
        raise typer.BadParameter("--ids needs --object")
    if object_name and not ids:
        raise typer.BadParameter("--object needs --ids")
    if value and not fields:
        raise typer.BadParameter("--value needs --fields (e.g. Contact.Email,Lead.Email)")
    if fields and not value:
        raise typer.BadParameter("--fields needs --value")
    if not reason.strip():
        raise typer.BadParameter("--reason is required (why: it is kept in the audit)")
    return st.EraseRequest(
        org_id=org_id,
        object_name=object_name,
        ids=_split(ids),
        value=value,
        fields=_split(fields),
        reason=reason,
        dry_run=dry_run,
    )


def as_json(resp: st.EraseResponse) -> dict[str, Any]:
    return {
        "erasure_id": resp.erasure_id,
        "dry_run": resp.dry_run,
        "versions": resp.versions,
        "file_bodies": resp.file_bodies,
        "records": [
            {"object": r.object_name, "id": r.record_id, "versions": r.versions, "file_bodies": r.file_bodies}
            for r in resp.records
        ],
    }


def show(resp: st.EraseResponse) -> None:
    title = "Would erase" if resp.dry_run else f"Erased ({resp.erasure_id})"
    render.print_table(
        f"{title}: {len(resp.records):,} records, {resp.versions:,} versions, {resp.file_bodies:,} file bodies",
        ("object", "id", "versions", "file bodies"),
        [(r.object_name, r.record_id, f"{r.versions:,}", f"{r.file_bodies:,}") for r in resp.records],
    )


def verification_json(resp: st.VerifyErasureResponse) -> dict[str, Any]:
    return {
        "clean": resp.clean,
        "versions_holding": resp.versions_holding,
        "file_bodies_holding": resp.file_bodies_holding,
        "samples": list(resp.samples),
    }


def _usage(message: str) -> None:
    render.err_console.print(f"[red]error:[/] {message}", highlight=False)
    raise typer.Exit(2)


def register(app: typer.Typer, cli: ModuleType) -> None:
    """Adds `sfvault erase` (and `sfvault erase verify`) to the CLI (`cli`: its main module, for the clients)."""

    @app.command("erase", help=HELP)
    def erase(
        target: Annotated[list[str], typer.Argument(help="ORG (sfvault's org id or its 00D... Id), or: verify ORG")],
        object_name: Annotated[str, typer.Option("--object", help="the object of --ids")] = "",
        ids: Annotated[str, typer.Option("--ids", help="record Ids, comma-separated")] = "",
        value: Annotated[str, typer.Option("--value", help="the personal data looked for (e.g. an e-mail)")] = "",
        fields: Annotated[str, typer.Option("--fields", help="Object.Field,... where --value is looked for")] = "",
        reason: Annotated[str, typer.Option("--reason", help="why (kept in the audit)")] = "",
        erasure: Annotated[str, typer.Option("--erasure", help="verify: the erasure's records are gone")] = "",
        yes: Annotated[bool, typer.Option("--yes", help="erase without previewing and asking")] = False,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="only say what would be erased")] = False,
        json_out: Annotated[bool, typer.Option("--json", help="one JSON object (see --help)")] = False,
    ) -> None:
        if target[:1] == ["verify"]:
            if len(target) != 2:
                raise typer.BadParameter("usage: sfvault erase verify ORG --value V [--fields OBJ.FIELD,...]")
            if object_name or ids or reason or yes or dry_run:
                raise typer.BadParameter("verify takes --value [--fields] or --erasure (and --json) only")
            if not value and not erasure:
                raise typer.BadParameter("verify needs --value V (and optionally --fields) or --erasure ID")
            if fields and not value:
                raise typer.BadParameter("--fields needs --value")
            c = cli.clients()
            resp = c.storage.VerifyErasure(
                st.VerifyErasureRequest(
                    org_id=cli.salesforce_org_id(c, target[1]), value=value, fields=_split(fields), erasure_id=erasure
                )
            )
            if json_out:
                render.print_json(verification_json(resp))
            elif resp.clean:
                render.console.print("[green]clean[/]: no stored version or file body holds it")
            else:
                render.console.print(
                    f"[red]not clean[/]: {resp.versions_holding:,} versions and {resp.file_bodies_holding:,} file "
                    f"bodies hold it (e.g. {', '.join(resp.samples) or '-'})"
                )
            if not resp.clean:
                raise typer.Exit(1)
            return
        if len(target) != 1:
            raise typer.BadParameter("give one ORG (or: sfvault erase verify ORG ...)")
        if erasure:
            raise typer.BadParameter("--erasure is for `sfvault erase verify`")
        c = cli.clients()
        request = erase_request(cli.salesforce_org_id(c, target[0]), object_name, ids, value, fields, reason, dry_run)
        if not dry_run and not yes:
            request.dry_run = True
            preview = c.storage.Erase(request)
            if not preview.records:
                render.print_result(as_json(preview), json_out, "nothing in the backup matches: nothing to erase")
                return
            show(preview)
            if not (sys.stdin.isatty() and sys.stdout.isatty()):
                _usage("an erasure cannot be undone: give --yes to erase (or --dry-run to preview)")
            if not typer.confirm("erase these records from the backup for good?", default=False):
                _usage("not confirmed: nothing was erased")
            request.dry_run = False
        resp = c.storage.Erase(request)
        if json_out:
            render.print_json(as_json(resp))
        else:
            show(resp)
