"""`sfvault restore`: the options of a restore turned into a StartSessionRequest, and a restore session turned
into what the CLI shows and what its exit code says. Pure (no calls): the commands are in __main__.py."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sfvault.events.v1 import events_pb2 as pb
from sfvault.restore.v1 import restore_pb2 as rpb
from sfvault.session.v1 import session_pb2 as api

from services.platform import timestamps

STATES = ("created", "updated", "undeleted", "skipped", "failed")  # the counts `--json` shows per object
RECORD_STATES = {s: rpb.RecordState.Value(f"RECORD_STATE_{s.upper()}") for s in STATES}
KINDS = {
    rpb.SESSION_KIND_UNSPECIFIED: "backup",
    rpb.SESSION_KIND_BACKUP: "backup",
    rpb.SESSION_KIND_RESTORE: "restore",
    rpb.SESSION_KIND_METADATA_RESTORE: "metadata restore",
    rpb.SESSION_KIND_PRUNE: "prune",
}
RESTORE_KINDS = (rpb.SESSION_KIND_RESTORE, rpb.SESSION_KIND_METADATA_RESTORE)
_ID_SEPARATORS = re.compile(r"[\s,;]+")


class RestoreOptionError(ValueError):
    """Options that contradict each other or cannot be read: a usage mistake (exit 2)."""


@dataclass
class RunOptions:
    """What `sfvault restore run` was given, times already read."""

    org: str
    objects: Sequence[str] = ()
    whole_org: bool = False
    as_of: dt.datetime | None = None
    ids: Sequence[str] = ()
    deleted_since: dt.datetime | None = None
    changed_since: dt.datetime | None = None
    all_records: bool = False
    fields: Sequence[str] = ()
    restore_empty: bool = False
    parents: int | None = None
    children: int | None = None
    to_org: str = ""
    match_on: str = ""
    masks: Sequence[str] = ()
    files: bool = True
    owner_map: Sequence[str] = ()
    dry_run: bool = False
    yes: bool = False


def split_ids(text: str) -> list[str]:
    """Ids separated by commas, spaces or new lines; a line's `#` starts a comment."""
    kept = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    return [i for i in _ID_SEPARATORS.split(kept) if i]


def read_ids_file(path: Path) -> list[str]:
    ids = split_ids(path.read_text())
    if not ids:
        raise RestoreOptionError(f"--ids-file {path} holds no Id")
    return ids


def split_list(values: Iterable[str]) -> list[str]:
    """`--fields A,B --fields C` -> [A, B, C]."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _pair(text: str, option: str, shape: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise RestoreOptionError(f"{option} {text!r}: use {shape}")
    return key.strip(), value.strip()


def mask_rule(text: str) -> rpb.MaskRule:
    """`OBJ.FIELD=RULE` (RULE: null, email, phone, pseudonym, fixed:VALUE)."""
    target, rule = _pair(text, "--mask", "OBJECT.FIELD=RULE, e.g. Contact.Email=email")
    object_name, dot, field_name = target.partition(".")
    if not dot or not object_name or not field_name:
        raise RestoreOptionError(f"--mask {text!r}: use OBJECT.FIELD=RULE, e.g. Contact.Email=email")
    return rpb.MaskRule(object_name=object_name, field=field_name, rule=rule)


def _selection_choice(o: RunOptions) -> str:
    chosen = [
        name
        for name, given in (
            ("--ids/--ids-file", bool(o.ids)),
            ("--deleted-since", o.deleted_since is not None),
            ("--changed-since", o.changed_since is not None),
            ("--all", o.all_records),
        )
        if given
    ]
    if len(chosen) > 1:
        raise RestoreOptionError(
            f"choose one of --ids, --ids-file, --deleted-since, --changed-since, --all (given: {', '.join(chosen)})"
        )
    return chosen[0] if chosen else "--all"


def run_request(o: RunOptions) -> api.StartSessionRequest:
    """The StartSession of `sfvault restore run`. Without a selection option an object is restored whole (--all)."""
    objects = split_list(o.objects)
    if o.whole_org and objects:
        raise RestoreOptionError("--whole-org restores every object: give it or --object, not both")
    if not o.whole_org and not objects:
        raise RestoreOptionError("say what to restore: --object OBJ (repeatable) or --whole-org")
    choice = _selection_choice(o)
    if o.whole_org and choice != "--all":
        raise RestoreOptionError(f"--whole-org restores all records: {choice} needs --object")
    if choice == "--ids/--ids-file" and len(objects) > 1:
        raise RestoreOptionError("--ids name records of one object: give one --object with them")
    spec = rpb.RestoreSpec(
        source_org_id=o.org,
        target_org_id=o.to_org,
        whole_org=o.whole_org,
        restore_empty=o.restore_empty,
        match_on=o.match_on,
        masks=[mask_rule(m) for m in o.masks],
        dry_run=o.dry_run,
        confirmed=o.yes,
        files=o.files,
        owner_map=dict(_pair(m, "--owner-map", "OLD_USER_ID=NEW_USER_ID") for m in o.owner_map),
    )
    if o.as_of is not None:
        spec.as_of.CopyFrom(timestamps.to_pb(o.as_of))
    if o.parents is not None:
        spec.parents = o.parents
    if o.children is not None:
        spec.children = o.children
    fields = split_list(o.fields)
    if fields and o.whole_org:
        raise RestoreOptionError("--fields names fields of the objects given with --object")
    for object_name in objects:
        selection = rpb.RestoreSelection(object_name=object_name, fields=fields)
        if o.ids:
            selection.ids.extend(o.ids)
        elif o.deleted_since is not None:
            selection.deleted_since.CopyFrom(timestamps.to_pb(o.deleted_since))
        elif o.changed_since is not None:
            selection.changed_since.CopyFrom(timestamps.to_pb(o.changed_since))
        else:
            selection.all = True
        spec.selections.append(selection)
    return api.StartSessionRequest(org_id=o.org, kind=rpb.SESSION_KIND_RESTORE, restore=spec, trigger="manual")


def metadata_request(
    org: str, as_of: dt.datetime, components: Sequence[str], check_only: bool, yes: bool
) -> api.StartSessionRequest:
    """The StartSession of `sfvault restore metadata`."""
    named = split_list(components)
    if not named:
        raise RestoreOptionError('name at least one component: --component TYPE:FULLNAME (e.g. "ApexClass:Invoice")')
    for component in named:
        kind, sep, full_name = component.partition(":")
        if not sep or not kind or not full_name:
            raise RestoreOptionError(f"--component {component!r}: use TYPE:FULLNAME, e.g. ApexClass:Invoice")
    spec = rpb.RestoreSpec(
        source_org_id=org,
        metadata_components=named,
        check_only=check_only,
        confirmed=yes,
        as_of=timestamps.to_pb(as_of),
    )
    return api.StartSessionRequest(org_id=org, kind=rpb.SESSION_KIND_METADATA_RESTORE, restore=spec, trigger="manual")


def retry_request(failed: api.Session) -> api.StartSessionRequest:
    """A new restore session re-running the Failed records of `failed`: its spec, with retry_of set."""
    if failed.kind not in RESTORE_KINDS:
        raise RestoreOptionError(f"session {failed.session_id} is a backup: only a restore can be retried")
    spec = rpb.RestoreSpec()
    spec.CopyFrom(failed.restore)
    spec.retry_of = failed.session_id
    spec.requested_by = ""  # the session service sets who asks now
    org = spec.source_org_id or failed.org_id
    spec.source_org_id = org
    return api.StartSessionRequest(org_id=org, kind=failed.kind, restore=spec, trigger="retry")


def target_org(request: api.StartSessionRequest) -> str:
    return request.restore.target_org_id or request.restore.source_org_id or request.org_id


def needs_confirmation(request: api.StartSessionRequest, sandbox: bool) -> bool:
    """A restore that would write to a production org without --yes (a dry run or a check-only deploy writes
    nothing)."""
    spec = request.restore
    return not sandbox and not spec.dry_run and not spec.check_only and not spec.confirmed


def status_name(status: int) -> str:
    return pb.SessionStatus.Name(status).removeprefix("SESSION_STATUS_")  # type: ignore[arg-type]


def summary(session: api.Session) -> dict[str, Any]:
    """The one JSON object of `sfvault restore ... --json`: what scripts rely on."""
    return {
        "session_id": session.session_id,
        "status": status_name(session.status),
        "objects": {c.object_name: {s: int(getattr(c, s)) for s in STATES} for c in session.restore_counts},
        "verified": bool(session.verification.verified),
        "dry_run": bool(session.restore.dry_run),
    }


def problems(session: api.Session) -> list[str]:
    """Why a finished restore is not clean (empty: it is): anything Failed, a read-back that differs or did not
    run (a real restore must prove itself), or a status other than Success."""
    found = []
    if session.status != pb.SESSION_STATUS_SUCCESS:
        found.append(
            f"the session ended {status_name(session.status)}" + (f": {session.reason}" if session.reason else "")
        )
    failed = sum(c.failed for c in session.restore_counts)
    if failed:
        found.append(f"{failed:,} records failed (`sfvault restore records {session.session_id} --state failed`)")
    v = session.verification
    if v.done and not v.verified:
        found.append(f"{v.differing:,} records differ from the backup after the restore")
    elif not v.done and not session.restore.dry_run and not session.restore.check_only:
        found.append("the restore was not verified (the read-back did not run)")
    return found


def difference_line(outcome: rpb.RecordOutcome) -> str:
    """One line of a preview's sample of field differences: names, never values."""
    return f"{outcome.object_name} {outcome.source_id}: {', '.join(outcome.changed_fields) or '(fields not named)'}"
