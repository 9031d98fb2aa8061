"""What a request for a restore session must be before it becomes one, which role it needs, and the line its
start leaves in the audit log. Pure: no I/O; it reads the contract's RestoreSpec (sfvault.restore.v1).

The session service checks the shape of a restore (names, Ids, the one kind of each selection, the masking
rules, the depths); discovery decides what needs the orgs (they exist, the production guard, the point in
time) when it plans the session.
"""

from __future__ import annotations

import re

from google.protobuf.timestamp_pb2 import Timestamp
from sfvault.restore.v1 import restore_pb2 as rpb

from services.platform import events
from services.platform.errors import InvalidArgument
from services.session import domain as d

# An API name as Salesforce writes it: a letter, then letters, digits and single underscores, with at most two
# "__" (a namespace prefix and a suffix: ns__Thing__c); never ending in an underscore.
_API_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)*(?:__[A-Za-z0-9]+(?:_[A-Za-z0-9]+)*){0,2}")
MAX_API_NAME = 120
_RECORD_ID = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")
MASK_RULES = ("null", "email", "phone", "pseudonym")
FIXED = "fixed:"
MAX_DEPTH = 5
MAX_COMPONENT = 255
_MAX_SECONDS = 253402300800  # 9999-12-31


def role_for(kind: d.Kind) -> str:
    """The role a start of this kind needs: restores write to an org, so they are the restorer's (an admin's,
    a service's), never the operator's; a prune deletes backed-up history, so it is an admin's."""
    if kind == d.Kind.PRUNE:
        return "admin"
    return "restorer" if kind in d.RESTORE_KINDS else "operator"


def is_api_name(name: str) -> bool:
    return len(name) <= MAX_API_NAME and _API_NAME.fullmatch(name) is not None


def _api_name(field: str, name: str) -> None:
    if not is_api_name(name):
        raise InvalidArgument(f"{field} {_shown(name)} is not an API name (letters, digits and underscores)")


def _record_id(field: str, value: str) -> None:
    if not _RECORD_ID.fullmatch(value):
        raise InvalidArgument(f"{field} {_shown(value)} is not a 15- or 18-character Salesforce Id")


def _token(field: str, value: str) -> None:
    try:
        events.check_token(field, value)
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from exc


def _time(field: str, value: Timestamp) -> None:
    if not 0 <= value.seconds < _MAX_SECONDS or not 0 <= value.nanos < 1_000_000_000:
        raise InvalidArgument(f"{field} is out of range")


def _shown(value: str) -> str:
    return repr(value[:40]) + ("…" if len(value) > 40 else "")


def check(kind: d.Kind, org_id: str, spec: rpb.RestoreSpec | None) -> rpb.RestoreSpec:
    """The restore spec of a StartSession of `kind`, checked, with its source org filled in (from `org_id` or
    the spec's own; one of them, equal if both). InvalidArgument naming the field otherwise."""
    if spec is None:
        raise InvalidArgument(f"restore is required for a {kind.value} session")
    checked = rpb.RestoreSpec()
    checked.CopyFrom(spec)
    source = spec.source_org_id
    if org_id and source and org_id != source:
        raise InvalidArgument(f"org_id {org_id!r} and restore.source_org_id {source!r} differ: give one, or the same")
    source = source or org_id
    if not source:
        raise InvalidArgument("org_id (or restore.source_org_id) is required: the org whose backup is restored")
    _token("restore.source_org_id", source)
    checked.source_org_id = source
    if spec.target_org_id:
        _token("restore.target_org_id", spec.target_org_id)
    if spec.HasField("as_of"):
        _time("restore.as_of", spec.as_of)
    if spec.retry_of:
        _token("restore.retry_of", spec.retry_of)
    for depth in ("parents", "children"):
        if spec.HasField(depth) and not 0 <= getattr(spec, depth) <= MAX_DEPTH:
            raise InvalidArgument(f"restore.{depth} must be 0 to {MAX_DEPTH}")
    if spec.match_on:
        _api_name("restore.match_on", spec.match_on)
    for i, mask in enumerate(spec.masks):
        where = f"restore.masks[{i}]"
        _api_name(f"{where}.object_name", mask.object_name)
        _api_name(f"{where}.field", mask.field)
        if mask.rule not in MASK_RULES and not (mask.rule.startswith(FIXED) and len(mask.rule) <= 1000):
            raise InvalidArgument(f"{where}.rule must be one of {', '.join(MASK_RULES)} or fixed:VALUE")
    for old, new in spec.owner_map.items():
        _record_id("restore.owner_map key", old)
        _record_id(f"restore.owner_map[{old}]", new)
    if spec.default_owner_id:
        _record_id("restore.default_owner_id", spec.default_owner_id)
    if kind == d.Kind.METADATA_RESTORE:
        _check_metadata(spec)
    else:
        _check_records(spec)
    return checked


def _check_records(spec: rpb.RestoreSpec) -> None:
    if spec.metadata_components:
        raise InvalidArgument("restore.metadata_components is for a METADATA_RESTORE session")
    if spec.check_only:
        raise InvalidArgument(
            "restore.check_only is for a METADATA_RESTORE session (a record restore previews with dry_run)"
        )
    if spec.whole_org and spec.selections:
        raise InvalidArgument("restore.whole_org restores every object: give it or restore.selections, not both")
    if not spec.whole_org and not spec.selections:
        raise InvalidArgument("restore.selections is empty: select at least one object (or set restore.whole_org)")
    for i, selection in enumerate(spec.selections):
        where = f"restore.selections[{i}]"
        _api_name(f"{where}.object_name", selection.object_name)
        chosen = [
            name
            for name, given in (
                ("ids", bool(selection.ids)),
                ("deleted_since", selection.HasField("deleted_since")),
                ("changed_since", selection.HasField("changed_since")),
                ("all", selection.all),
            )
            if given
        ]
        if len(chosen) != 1:
            said = ", ".join(chosen) if chosen else "none"
            raise InvalidArgument(f"{where} must choose exactly one of ids, deleted_since, changed_since, all ({said})")
        for j, record_id in enumerate(selection.ids):
            _record_id(f"{where}.ids[{j}]", record_id)
        for name in ("deleted_since", "changed_since"):
            if selection.HasField(name):
                _time(f"{where}.{name}", getattr(selection, name))
        for j, field in enumerate(selection.fields):
            _api_name(f"{where}.fields[{j}]", field)


def _check_metadata(spec: rpb.RestoreSpec) -> None:
    if spec.selections or spec.whole_org:
        raise InvalidArgument("a METADATA_RESTORE session restores components: restore.selections must be empty")
    if not spec.metadata_components:
        raise InvalidArgument('restore.metadata_components is empty: name at least one "Type:FullName"')
    for i, component in enumerate(spec.metadata_components):
        where = f"restore.metadata_components[{i}]"
        kind, sep, full_name = component.partition(":")
        if not sep or not full_name.strip() or not is_api_name(kind):
            raise InvalidArgument(f'{where} {_shown(component)} is not "Type:FullName"')
        if len(full_name) > MAX_COMPONENT or any(ord(c) < 32 for c in full_name):
            raise InvalidArgument(f"{where}: the full name is 1 to {MAX_COMPONENT} printable characters")


def _when(value: Timestamp) -> str:
    return value.ToDatetime().strftime("%Y-%m-%dT%H:%M:%SZ") if 0 <= value.seconds < _MAX_SECONDS else "?"


def _name(value: str) -> str:
    return value if is_api_name(value) else "?"


def audit_scope(kind: d.Kind, org_id: str, spec: rpb.RestoreSpec) -> str:
    """The restore's scope for the audit log: who is in the entry already; here what (objects, the kind of each
    selection, how many Ids, fields named or all), which point, source and target org, dry run. Names, times and
    counts only, never a value (no Id, no masking value)."""
    source = spec.source_org_id or org_id
    parts = [
        f"kind={kind.value}",
        f"source={source or '?'}",
        f"target={spec.target_org_id or source or '?'}",
        f"as_of={_when(spec.as_of) if spec.HasField('as_of') else 'latest'}",
        f"dry_run={str(spec.dry_run).lower()}",
    ]
    if kind == d.Kind.METADATA_RESTORE:
        types = sorted({_name(c.partition(":")[0]) for c in spec.metadata_components})
        parts.append(f"components={len(spec.metadata_components)} ({', '.join(types)})")
        parts.append(f"check_only={str(spec.check_only).lower()}")
    elif spec.whole_org:
        parts.append("objects=whole org")
    else:
        objects = []
        for s in spec.selections[:50]:
            if s.ids:
                what = f"ids:{len(s.ids)}"
            elif s.HasField("deleted_since"):
                what = f"deleted_since:{_when(s.deleted_since)}"
            elif s.HasField("changed_since"):
                what = f"changed_since:{_when(s.changed_since)}"
            else:
                what = "all"
            fields = f",fields:{len(s.fields)}" if s.fields else ""
            objects.append(f"{_name(s.object_name)}({what}{fields})")
        more = f" +{len(spec.selections) - 50} more" if len(spec.selections) > 50 else ""
        parts.append(f"objects={' '.join(objects)}{more}")
    if spec.retry_of:
        parts.append(f"retry_of={spec.retry_of[:64]}")
    if spec.masks:
        parts.append(f"masks={len(spec.masks)}")
    if spec.match_on:
        parts.append(f"match_on={_name(spec.match_on)}")
    if spec.confirmed:
        parts.append("confirmed=true")
    return " ".join(parts)
