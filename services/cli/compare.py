"""`sfvault compare` (issue 18): two points of a backup (storage's CompareAsOf), or a point against the org now
(discovery's CompareLive, which reads the org: API calls counted against its budget).

`--json` prints ONE object (the shape scripts rely on):

    {"org": "...", "from": "2026-...Z", "to": "2026-...Z" | "live",
     "objects": {"Account": {"added": [Id, ...], "deleted": [Id, ...], "changed": [Id, ...],
                             "changed_fields": {Id: ["Name", ...]},
                             "values": {Id: {"Name": {"old": ..., "new": ...}}},   (with --values only)
                             "summary": {"added": n, "deleted": n, "changed": n}}},
     "truncated": false}

`added`, `deleted` and `changed` are lists of Ids; `changed_fields` gives, per changed Id, the fields that changed.
`summary` counts are exact even when `--limit` cut the lists (`truncated` says so). A value absent (null or empty)
is null. `--csv FILE` writes one row per change: object, id, change, field, old, new (a changed record: a row per
changed field; values are JSON text, a string as itself; the file is created 0600: it holds backed-up values).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any

import typer
from sfvault.discovery.v1 import discovery_pb2 as disc
from sfvault.storage.v1 import storage_pb2 as st

from services.cli import render
from services.platform import timestamps

HELP = (
    "Compare two points of a backup (--from T1 [--to T2]), or a point with the org now (--live): records added, "
    "deleted and changed per object, with the changed fields (and values with --values). --json prints one object: "
    '{"objects": {OBJ: {"added": [Id], "deleted": [Id], "changed": [Id], "changed_fields": {Id: list of field names}, '
    '"summary": {...}}}}; --csv FILE writes a row per change (object, id, change, field, old, new). --live reads '
    "the org through its API (counted against its budget) and needs --object."
)


def _value(raw: bytes) -> Any:
    return json.loads(raw) if raw else None


def collect(chunks: Iterable[st.CompareChunk], org: str, since: str, until: str, values: bool) -> dict[str, Any]:
    """The one JSON object of a compare's pieces (see the module's docstring)."""
    objects: dict[str, dict[str, Any]] = {}

    def entry(name: str) -> dict[str, Any]:
        if name not in objects:
            objects[name] = {"added": [], "deleted": [], "changed": [], "changed_fields": {}}
            if values:
                objects[name]["values"] = {}
        return objects[name]

    truncated = False
    for chunk in chunks:
        for c in chunk.changes:
            e = entry(c.object_name)
            e[c.change].append(c.record_id)
            if c.change == "changed":
                e["changed_fields"][c.record_id] = [f.field for f in c.fields]
                if values:
                    e["values"][c.record_id] = {
                        f.field: {"old": _value(f.old_json), "new": _value(f.new_json)} for f in c.fields
                    }
        for s in chunk.summaries:
            entry(s.object_name)["summary"] = {"added": s.added, "deleted": s.deleted, "changed": s.changed}
        truncated = truncated or chunk.truncated
    return {"org": org, "from": since, "to": until, "objects": objects, "truncated": truncated}


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)


def csv_bytes(result: dict[str, Any]) -> bytes:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["object", "id", "change", "field", "old", "new"])
    for name, e in result["objects"].items():
        for kind in ("added", "deleted"):
            for rid in e[kind]:
                w.writerow([name, rid, kind, "", "", ""])
        for rid in e["changed"]:
            shown = e.get("values", {}).get(rid, {})
            for field in e["changed_fields"][rid]:
                v = shown.get(field, {})
                w.writerow([name, rid, "changed", field, _cell(v.get("old")), _cell(v.get("new"))])
    return out.getvalue().encode()


def show(result: dict[str, Any]) -> None:
    """Tables for people: the counts per object, then the changes."""
    until = "the org now" if result["to"] == "live" else result["to"]
    render.print_table(
        f"Compare {result['org']}: {result['from']} -> {until}",
        ("object", "added", "deleted", "changed"),
        [
            (name, f"{s.get('added', 0):,}", f"{s.get('deleted', 0):,}", f"{s.get('changed', 0):,}")
            for name, e in result["objects"].items()
            for s in [e.get("summary", {})]
        ],
    )
    rows = []
    for name, e in result["objects"].items():
        rows += [(name, rid, "added", "") for rid in e["added"]]
        rows += [(name, rid, "deleted", "") for rid in e["deleted"]]
        for rid in e["changed"]:
            shown = e.get("values", {}).get(rid)
            if shown:
                detail = "; ".join(f"{f}: {_cell(v['old'])!r} -> {_cell(v['new'])!r}" for f, v in shown.items())
            else:
                detail = ", ".join(e["changed_fields"][rid])
            rows.append((name, rid, "changed", detail))
    if rows:
        render.print_table("Changes", ("object", "id", "change", "fields"), rows)
    else:
        render.console.print("[green]no differences[/]")
    if result["truncated"]:
        render.console.print("[yellow]the list was cut by --limit[/]: the counts above are complete")


def point(cli: ModuleType, text: str) -> dt.datetime:
    """A point of --from / --to: ISO 8601, `now`, or an age (`24h`, `7d`: that long ago)."""
    try:
        return cli.parse_time(text)  # type: ignore[no-any-return]
    except cli.CliError:
        try:
            return dt.datetime.now(dt.UTC) - cli.parse_duration(text)
        except cli.CliError:
            raise cli.CliError(
                f"cannot read time {text!r}: use ISO 8601 (2026-11-27T10:00:00Z), now, or an age such as 24h or 7d"
            ) from None


def register(app: typer.Typer, cli: ModuleType) -> None:
    """Adds `sfvault compare` to the CLI (`cli`: the CLI's main module, for its clients and time parsing)."""

    @app.command("compare", help=HELP)
    def compare(
        org: Annotated[str, typer.Argument(help="the org (sfvault's org id, or its 00D... Id)")],
        from_: Annotated[str, typer.Option("--from", help="the backup's point: ISO 8601, or an age (24h, 7d)")],
        to: Annotated[str, typer.Option("--to", help="the other point (default: now, the latest backup)")] = "",
        live: Annotated[bool, typer.Option("--live", help="compare with the org now (reads it: API calls)")] = False,
        objects: Annotated[list[str] | None, typer.Option("--object", help="an object (repeatable)")] = None,
        fields: Annotated[
            list[str] | None, typer.Option("--field", help="only changes to this field count (repeatable)")
        ] = None,
        values: Annotated[bool, typer.Option("--values", help="old and new values of the changed fields")] = False,
        json_out: Annotated[bool, typer.Option("--json", help="one JSON object (see --help)")] = False,
        csv_file: Annotated[Path | None, typer.Option("--csv", help="write a row per change to this file")] = None,
        limit: Annotated[int, typer.Option("--limit", help="at most N changes listed (counts stay exact)")] = 0,
    ) -> None:
        if live and to:
            raise typer.BadParameter("give --to or --live, not both")
        if live and not objects:
            raise typer.BadParameter("--live reads the org: name the objects with --object")
        if json_out and csv_file:
            raise typer.BadParameter("give --json or --csv, not both")
        if limit < 0:
            raise typer.BadParameter("--limit must be 0 (no limit) or more")
        since = point(cli, from_)
        until = point(cli, to) if to else None
        want_values = values or csv_file is not None
        c = cli.clients()
        if live:
            live_request = disc.CompareLiveRequest(
                org_id=org, objects=objects or [], fields=fields or [], values=want_values, limit=limit
            )
            getattr(live_request, "from").CopyFrom(timestamps.to_pb(since))
            chunks: Iterable[st.CompareChunk] = c.discovery.CompareLive(live_request)
            shown_to = "live"
        else:
            request = st.CompareAsOfRequest(
                org_id=cli.salesforce_org_id(c, org),
                objects=objects or [],
                fields=fields or [],
                values=want_values,
                limit=limit,
            )
            getattr(request, "from").CopyFrom(timestamps.to_pb(since))
            if until is not None:
                request.to.CopyFrom(timestamps.to_pb(until))
            chunks = c.storage.CompareAsOf(request)
            shown_to = (until.isoformat() if until else "now").replace("+00:00", "Z")
        result = collect(chunks, org, since.isoformat().replace("+00:00", "Z"), shown_to, want_values)
        if csv_file is not None:
            size = cli.write_private(csv_file, [csv_bytes(result)])
            render.err_console.print(f"{size:,} bytes written to {csv_file}")
        if json_out:
            render.console.print_json(json.dumps(result))
        elif csv_file is None:
            show(result)
