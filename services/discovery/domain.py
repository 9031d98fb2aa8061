"""The rules of discovery: which objects and fields a session backs up, and the jobs it plans.

Pure functions over dataclasses: no gRPC, NATS, PostgreSQL or Salesforce here, and no clock read.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from services.discovery.domain_schedule import InvalidSchedule, next_fire
from services.discovery.domain_split import WHOLE, IdRange, expected_per_range, range_job_id
from services.platform.protect import AnomalySettings as AnomalySettings  # one type: protect.v1.AnomalySettings
from services.platform.secrets import SecretError, SecretRule
from services.sfconnection import AuthFlow as AuthFlow  # the one org connection type, re-exported as the domain's
from services.sfconnection import Connection as Connection

ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")
DEFAULT_RECONCILE_EVERY = dt.timedelta(days=7)
DEFAULT_DAILY_SHARE = 50
FILE_OBJECTS = ("ContentVersion", "Attachment", "Document")

# Fields every data job needs whatever the scope says: the key, the incremental cursor, the delete flag.
SYSTEM_FIELDS = frozenset({"Id", "SystemModstamp", "IsDeleted", "LastModifiedDate", "CreatedDate"})

# Queryable in describeGlobal, yet not readable as a table: they need a filter or are not real tables
# (Airbyte's QUERY_RESTRICTED / QUERY_INCOMPATIBLE lists, see shared/salesforce/EXTRACTION.md 1.6).
UNQUERYABLE_AS_TABLE = frozenset(
    {
        "ActivityHistory",
        "AggregateResult",
        "AttachedContentDocument",
        "CollaborationGroupRecord",
        "ColorDefinition",
        "CombinedAttachment",
        "ContentBody",
        "ContentDocumentLink",
        "ContentFolderItem",
        "ContentFolderMember",
        "DataStatistics",
        "EmailStatus",
        "EntityParticle",
        "EventWhoRelation",
        "FieldDefinition",
        "FlexQueueItem",
        "IconDefinition",
        "IdeaComment",
        "LookedUpFromActivity",
        "NoteAndAttachment",
        "OpenActivity",
        "OwnedContentDocument",
        "PicklistValueInfo",
        "ProcessInstanceHistory",
        "RelationshipDomain",
        "RelationshipInfo",
        "SearchLayout",
        "TaskWhoRelation",
        "UserEntityAccess",
        "UserFieldAccess",
        "UserRecordAccess",
        "Vote",
    }
)
# Queryable, but not through Bulk API 2.0 (Airbyte's UNSUPPORTED_BULK_API_SALESFORCE_OBJECTS).
BULK_UNSUPPORTED = frozenset(
    {
        "AcceptedEventRelation",
        "Attachment",
        "CaseStatus",
        "ContractStatus",
        "DeclinedEventRelation",
        "FieldSecurityClassification",
        "KnowledgeArticle",
        "KnowledgeArticleVersion",
        "KnowledgeArticleVersionHistory",
        "KnowledgeArticleViewStat",
        "KnowledgeArticleVoteStat",
        "LinkedArticle",
        "OrderStatus",
        "OrgLifecycleNotification",
        "OwnerChangeOptionInfo",
        "PartnerRole",
        "RecentlyViewed",
        "ServiceAppointmentStatus",
        "ShiftStatus",
        "SolutionStatus",
        "TaskPriority",
        "TaskStatus",
        "UndecidedEventRelation",
        "WorkOrderLineItemStatus",
        "WorkOrderStatus",
    }
)


class InvalidPolicy(ValueError):
    """A policy or org that breaks a rule; the message says which."""


# ---- orgs and policies ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Org:
    org_id: str
    name: str
    connection: Connection
    salesforce_org_id: str = ""
    instance_url: str = ""
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    sandbox: bool = False  # False: a production org, which a restore writes to only when confirmed (--yes)


@dataclass(frozen=True)
class Scope:
    include_objects: tuple[str, ...] = ()
    exclude_objects: tuple[str, ...] = ()
    exclude_fields: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


# ---- protection settings (issue 18): alerts, anomaly detection, retention, legal hold --------------------

WEBHOOK_FORMATS = ("json", "slack", "teams")
ALERT_KINDS = ("failed", "warning", "anomaly", "stalled", "budget", "verification")


@dataclass(frozen=True)
class Webhook:
    url_ref: str  # an http(s) URL or a secret reference to it ("env:NAME" / "file:/path"): webhook URLs carry tokens
    format: str = "json"


@dataclass(frozen=True)
class AlertSettings:
    webhooks: tuple[Webhook, ...] = ()
    emails: tuple[str, ...] = ()
    on: tuple[str, ...] = ()  # empty: every kind


def restore_alerts(policies: Sequence[AlertSettings]) -> AlertSettings:
    """A restore has no policy of its own: it alerts whoever the source org's policies alert (their webhooks and
    addresses, each once, in the policies' order), on the kinds any of them asks for (every kind when one of them
    names none)."""
    hooks = tuple(dict.fromkeys(h for p in policies for h in p.webhooks))
    emails = tuple(dict.fromkeys(e for p in policies for e in p.emails))
    wanted = [p for p in policies if p.webhooks or p.emails]
    on = () if any(not p.on for p in wanted) else tuple(dict.fromkeys(k for p in wanted for k in p.on))
    return AlertSettings(webhooks=hooks, emails=emails, on=on)


@dataclass(frozen=True)
class RetentionSettings:
    days: int = 0  # 0: forever
    versions: int = 0  # 0: all
    prune_latest: bool = False


@dataclass(frozen=True)
class Policy:
    policy_id: str
    org_id: str
    name: str = ""
    scope: Scope = field(default_factory=Scope)
    auto_add_new_objects: bool = True
    auto_add_new_fields: bool = True
    files: bool = True
    metadata: bool = True
    stall_timeout: dt.timedelta = dt.timedelta(0)  # zero: the session service's default (24 h unless set)
    daily_share_percent: int = 0  # zero: 50
    per_run_cap: int = 0  # zero: no cap beyond the daily share
    reconcile_every: dt.timedelta = dt.timedelta(0)  # zero: 7 days
    schedule: str = ""
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    alerts: AlertSettings = field(default_factory=AlertSettings)
    anomalies: AnomalySettings = field(default_factory=AnomalySettings)
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    legal_hold: bool = False  # nothing of the policy's org is pruned or erased while set
    # "Object.Field" whose values storage keeps encrypted in PostgreSQL (compared by keyed hash)
    sensitive_fields: tuple[str, ...] = ()
    time_zone: str = ""  # the IANA zone the schedule's times of day are in ('': UTC)


_SECRET_REF = re.compile(r"^(env:[A-Za-z_][A-Za-z0-9_]*|file:/\S+)$")
_REQUIRED_BY_FLOW = {
    AuthFlow.CLIENT_CREDENTIALS: ("client_id", "client_secret_ref"),
    AuthFlow.PASSWORD: ("client_id", "client_secret_ref", "username", "password_ref"),
    AuthFlow.REFRESH_TOKEN: ("client_id", "refresh_token_ref"),
    AuthFlow.JWT_BEARER: ("client_id", "username", "private_key_ref"),
}


def check_connection(c: Connection, secrets: SecretRule | None = None) -> Connection:
    """Secrets are references ("env:NAME" or "file:/absolute/path"), not read here, and only where an org's
    secret may come from (services.platform.secrets; `secrets`: the process's rule unless given)."""
    if not re.match(r"^https://[^\s/]+", c.login_url):
        raise InvalidPolicy("connection.login_url must be an https:// URL")
    rule = secrets or SecretRule.from_environment()
    for name, ref in c.secret_refs().items():
        if ref and not _SECRET_REF.match(ref):
            raise InvalidPolicy(f"connection.{name} must be 'env:NAME' or 'file:/absolute/path'")
        if ref and name != "ca_bundle_ref":  # a CA bundle is public: it may live anywhere
            try:
                rule.check(ref, f"connection.{name}")
            except SecretError as exc:
                raise InvalidPolicy(str(exc)) from None
    if c.ca_bundle_ref and not c.ca_bundle_ref.startswith("file:/"):
        raise InvalidPolicy("connection.ca_bundle_ref must be 'file:/absolute/path'")
    missing = [n for n in _REQUIRED_BY_FLOW[c.auth_flow] if not getattr(c, n)]
    if missing:
        raise InvalidPolicy(
            f"connection: the {c.auth_flow.value} flow needs {', '.join('connection.' + m for m in missing)}"
        )
    if c.api_version and not re.match(r"^\d{2,3}\.0$", c.api_version):
        raise InvalidPolicy("connection.api_version must look like '62.0'")
    return c


def check_id(what: str, value: str) -> str:
    if not ID_PATTERN.match(value):
        raise InvalidPolicy(f"{what} {value!r} must be non-empty and use only letters, digits, '_' and '-'")
    return value


_SCHEDULE = re.compile(
    r"^(|hourly|daily@\d{2}:\d{2}|weekly@(MON|TUE|WED|THU|FRI|SAT|SUN)@\d{2}:\d{2}|(\S+\s+){4}\S+)$", re.IGNORECASE
)


def check_policy(policy: Policy) -> Policy:
    check_id("policy_id", policy.policy_id)
    check_id("org_id", policy.org_id)
    if not 0 <= policy.daily_share_percent <= 100:
        raise InvalidPolicy("api_budget.daily_share_percent must be between 1 and 100 (0: the default 50)")
    if policy.per_run_cap < 0:
        raise InvalidPolicy("api_budget.per_run_cap must not be negative")
    if policy.stall_timeout < dt.timedelta(0):
        raise InvalidPolicy("stall_timeout must not be negative")
    if policy.reconcile_every < dt.timedelta(0):
        raise InvalidPolicy("reconcile_every must not be negative")
    if not _SCHEDULE.match(policy.schedule.strip()):
        raise InvalidPolicy(
            f"schedule {policy.schedule!r} is not '', 'hourly', 'daily@HH:MM', 'weekly@DAY@HH:MM' or cron"
        )
    try:  # the shape is not enough: a schedule that can never fire would be accepted and silently never run
        next_fire(policy.schedule, dt.datetime(2000, 1, 1, tzinfo=dt.UTC), policy.time_zone)
    except InvalidSchedule as exc:
        raise InvalidPolicy(f"schedule: {exc}") from None
    both = set(policy.scope.include_objects) & set(policy.scope.exclude_objects)
    if both:
        raise InvalidPolicy(f"objects both included and excluded: {', '.join(sorted(both))}")
    for name in (*policy.scope.include_objects, *policy.scope.exclude_objects, *policy.scope.exclude_fields):
        if not re.match(r"^[A-Za-z][A-Za-z0-9_]*$", name):
            raise InvalidPolicy(f"{name!r} is not an sObject name")
    check_protection(policy)
    check_sensitive_fields(policy.sensitive_fields)
    return policy


_SENSITIVE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*\.[A-Za-z][A-Za-z0-9_]*$")


def check_sensitive_fields(names: tuple[str, ...]) -> None:
    """Each "Object.Field" (API names), listed once (case-insensitively)."""
    seen: set[str] = set()
    for i, name in enumerate(names):
        if not _SENSITIVE.match(name):
            raise InvalidPolicy(f"sensitive_fields[{i}] {name[:80]!r} is not 'Object.Field' (API names)")
        if name.lower() in seen:
            raise InvalidPolicy(f"sensitive_fields[{i}] {name!r} is listed twice")
        seen.add(name.lower())


def sensitive_set(policy: Policy, object_name: str) -> frozenset[str]:
    """The policy's sensitive fields of one object, lower-case field names."""
    prefix = object_name.lower() + "."
    return frozenset(n.lower()[len(prefix) :] for n in policy.sensitive_fields if n.lower().startswith(prefix))


_WEBHOOK_URL = re.compile(r"^https?://[^\s/?#@]+(?:[/?#]\S*)?$")
_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)+$")


def check_protection(policy: Policy) -> None:
    """Alerts, anomaly and retention settings: InvalidPolicy naming the field. A webhook's URL is never echoed
    (it carries a token)."""
    for i, hook in enumerate(policy.alerts.webhooks):
        if not (_WEBHOOK_URL.match(hook.url_ref) or _SECRET_REF.match(hook.url_ref)):
            raise InvalidPolicy(
                f"alerts.webhooks[{i}].url_ref must be an http(s):// URL or a secret reference"
                " ('env:NAME' or 'file:/absolute/path')"
            )
        if hook.format not in WEBHOOK_FORMATS:
            raise InvalidPolicy(f"alerts.webhooks[{i}].format must be one of {', '.join(WEBHOOK_FORMATS)}")
    for i, address in enumerate(policy.alerts.emails):
        if len(address) > 254 or not _EMAIL.match(address):
            raise InvalidPolicy(f"alerts.emails[{i}] {address[:60]!r} is not an e-mail address")
    for i, kind in enumerate(policy.alerts.on):
        if kind not in ALERT_KINDS:
            raise InvalidPolicy(f"alerts.on[{i}] {kind[:40]!r} is not one of {', '.join(ALERT_KINDS)}")
    a = policy.anomalies
    if not (a.sigma >= 0 and a.sigma == a.sigma and a.sigma < 1000):  # NaN fails the middle test
        raise InvalidPolicy("anomalies.sigma must be more than 0 (0: the default 3)")
    if not 0 <= a.baseline_sessions <= 1000:
        raise InvalidPolicy("anomalies.baseline_sessions must be between 1 and 1000 (0: the default 30)")
    if a.min_records < 0:
        raise InvalidPolicy("anomalies.min_records must not be negative (0: the default 100)")
    for name in ("delete_pct", "change_pct", "create_pct"):
        value = getattr(a, name)
        if not 0 <= value <= 100:
            raise InvalidPolicy(f"anomalies.{name} must be between 0 and 100 (0: the default)")
    if policy.retention.days < 0:
        raise InvalidPolicy("retention.days must not be negative (0: keep forever)")
    if policy.retention.versions < 0:
        raise InvalidPolicy("retention.versions must not be negative (0: keep every version)")


def stall_timeout(policy: Policy, requested: dt.timedelta) -> dt.timedelta:
    """The one rule, decided once per session: the request's timeout wins, then the policy's; zero leaves it
    to the session service's default (SFVAULT_STALL_TIMEOUT_S), which only that service knows."""
    return requested if requested > dt.timedelta(0) else policy.stall_timeout


# ---- what Salesforce says -----------------------------------------------------------------------------


@dataclass(frozen=True)
class GlobalObject:
    """One entry of describeGlobal."""

    name: str
    key_prefix: str = ""
    queryable: bool = True
    replicateable: bool = True
    retrieveable: bool = True
    custom: bool = False
    deprecated_and_hidden: bool = False

    @classmethod
    def from_describe(cls, entry: Mapping[str, object]) -> GlobalObject:
        return cls(
            name=str(entry["name"]),
            key_prefix=str(entry.get("keyPrefix") or ""),
            queryable=bool(entry.get("queryable", False)),
            replicateable=bool(entry.get("replicateable", False)),
            retrieveable=bool(entry.get("retrieveable", False)),
            custom=bool(entry.get("custom", False)),
            deprecated_and_hidden=bool(entry.get("deprecatedAndHidden", False)),
        )


@dataclass(frozen=True)
class FieldInfo:
    name: str
    sf_type: str
    calculated: bool = False
    nillable: bool = True
    label: str = ""

    @classmethod
    def from_describe(cls, entry: Mapping[str, object]) -> FieldInfo:
        return cls(
            name=str(entry["name"]),
            sf_type=str(entry.get("type", "")),
            calculated=bool(entry.get("calculated", False)),
            nillable=bool(entry.get("nillable", True)),
            label=str(entry.get("label", "")),
        )


@dataclass(frozen=True)
class ObjectDescribe:
    """The parts of an sObject describe that discovery decides on; `describe_hash` names the full JSON."""

    name: str
    fields: tuple[FieldInfo, ...]
    describe_hash: str = ""

    @classmethod
    def from_describe(cls, body: Mapping[str, object], describe_hash: str = "") -> ObjectDescribe:
        fields = body.get("fields") or []
        assert isinstance(fields, list)
        return cls(str(body["name"]), tuple(FieldInfo.from_describe(f) for f in fields), describe_hash)


# ---- the schema seen at a session ------------------------------------------------------------------------


class ObjectStatus(StrEnum):
    IN_SCOPE = "IN_SCOPE"  # backed up this session
    SKIPPED = "SKIPPED"  # in scope, but could not be read this session (warning); stays in scope
    GONE = "GONE"  # was in scope and is no longer in the org (or visible); rejoins with a full read
    DECLINED = "DECLINED"  # new, and the policy does not add new objects automatically
    EXCLUDED = "EXCLUDED"  # the policy's include/exclude lists leave it out, or it cannot be read as a table


class FieldStatus(StrEnum):
    IN_SCOPE = "IN_SCOPE"
    GONE = "GONE"  # was in scope; removed or hidden (FLS): out of the query, rejoins with a backfill
    DECLINED = "DECLINED"  # new, and the policy does not add new fields automatically
    EXCLUDED = "EXCLUDED"


@dataclass(frozen=True)
class FieldState:
    info: FieldInfo
    status: FieldStatus
    backfill: bool = False  # joins the query this session: every record must be read again for it

    @property
    def name_lower(self) -> str:
        return self.info.name.lower()


@dataclass(frozen=True)
class ObjectState:
    name: str
    status: ObjectStatus
    info: GlobalObject | None = None
    fields: tuple[FieldState, ...] = ()
    describe_hash: str = ""
    full: bool = False  # read every record: the object's first backup in this policy, or it rejoins
    reason: str = ""

    @property
    def in_scope(self) -> bool:
        return self.status is ObjectStatus.IN_SCOPE

    def query_fields(self) -> tuple[FieldState, ...]:
        return tuple(f for f in self.fields if f.status is FieldStatus.IN_SCOPE)

    def field(self, name: str) -> FieldState | None:
        for f in self.fields:
            if f.name_lower == name.lower():
                return f
        return None


@dataclass(frozen=True)
class Schema:
    """Every object discovery has an opinion about, at one session. Objects absent from the org stay in it
    (GONE) so that the policy remembers them."""

    objects: tuple[ObjectState, ...] = ()

    def get(self, name: str) -> ObjectState | None:
        for o in self.objects:
            if o.name == name:
                return o
        return None

    def in_scope(self) -> tuple[ObjectState, ...]:
        return tuple(o for o in self.objects if o.in_scope)


@dataclass(frozen=True)
class Resolution:
    schema: Schema
    warnings: tuple[str, ...]


def wanted_objects(
    policy: Policy, global_objects: Iterable[GlobalObject], previous: Schema | None
) -> dict[str, GlobalObject]:
    """The objects present in the org that will be in scope if their describe can be read."""
    scope = policy.scope
    include, exclude = set(scope.include_objects), set(scope.exclude_objects)
    wanted: dict[str, GlobalObject] = {}
    for obj in global_objects:
        decision = _object_decision(policy, obj, previous, include, exclude)
        if decision is ObjectStatus.IN_SCOPE:
            wanted[obj.name] = obj
    return wanted


def _object_decision(
    policy: Policy, obj: GlobalObject, previous: Schema | None, include: set[str], exclude: set[str]
) -> ObjectStatus:
    if obj.name in exclude or (include and obj.name not in include):
        return ObjectStatus.EXCLUDED
    if not obj.queryable or obj.name in UNQUERYABLE_AS_TABLE or obj.deprecated_and_hidden:
        return ObjectStatus.EXCLUDED
    if obj.name in include or previous is None:
        return ObjectStatus.IN_SCOPE
    before = previous.get(obj.name)
    if before is not None and before.status in _KEPT:
        return ObjectStatus.IN_SCOPE
    # new to the policy (or declined before: the flag is read again, so switching it on adds them now)
    return ObjectStatus.IN_SCOPE if policy.auto_add_new_objects else ObjectStatus.DECLINED


def resolve(
    policy: Policy,
    global_objects: Iterable[GlobalObject],
    describes: Mapping[str, ObjectDescribe],
    previous: Schema | None,
    unreadable: Mapping[str, str] | None = None,
    completed: AbstractSet[str] | None = None,
) -> Resolution:
    """Compare what the org shows now with the previous session's schema, under the policy's rules.

    `describes` holds the describe of each wanted object that could be read; `unreadable` the reason for
    each that could not. On the first session (`previous` None) every queryable object allowed by the
    include/exclude lists is in scope; later, new objects and fields join only if the policy's flags say so,
    and join with a full read (objects) or a backfill (fields). Fields that disappeared or became hidden
    leave the query; objects that cannot be read are skipped with a warning.

    `completed` names the objects whose data job of the previous session completed (None: all did). A full
    read or a backfill whose job did not complete is asked for again, so a failed job never loses it.
    """
    unreadable = unreadable or {}
    scope = policy.scope
    include, exclude = set(scope.include_objects), set(scope.exclude_objects)
    warnings: list[str] = []
    states: dict[str, ObjectState] = {}
    present = {o.name: o for o in global_objects}
    for name in sorted(present):
        obj = present[name]
        before = previous.get(name) if previous else None
        was_kept = before is not None and before.status in _KEPT
        decision = _object_decision(policy, obj, previous, include, exclude)
        allowed = name not in exclude and (not include or name in include)
        if decision is ObjectStatus.EXCLUDED and allowed:
            # the policy wants it but the org will not serve it as a table
            if name in include or (before is not None and before.status in _BACKED_UP):
                warnings.append(f"{name} cannot be queried; it is skipped")
            if was_kept:
                states[name] = ObjectState(name, ObjectStatus.GONE, obj, _carry(before), reason="not queryable")
                continue
        if decision is not ObjectStatus.IN_SCOPE:
            states[name] = ObjectState(name, decision, obj)
            continue
        describe = describes.get(name)
        if describe is None:
            reason = unreadable.get(name, "its describe could not be read")
            warnings.append(f"{name} is skipped: {reason}")
            # backed up before: it stays in scope and a later session reads it incrementally, not in full
            status = ObjectStatus.SKIPPED if before is not None and before.status in _BACKED_UP else ObjectStatus.GONE
            # a skipped object keeps what it still owes (a full read, backfills) for the next session
            states[name] = ObjectState(
                name,
                status,
                obj,
                before.fields if before is not None and status is ObjectStatus.SKIPPED else _carry(before),
                before.describe_hash if before else "",
                full=before is not None and status is ObjectStatus.SKIPPED and before.full,
                reason=reason,
            )
            continue
        owed = before is not None and before.status in _BACKED_UP and completed is not None and name not in completed
        states[name] = _resolve_fields(policy, obj, describe, before, warnings, owed)
    for name in sorted(include - set(present) - exclude):
        warnings.append(f"{name} is in the policy's objects but does not exist in the org or is not visible")
    if previous is not None:
        for before in previous.objects:
            if before.name in present or before.status not in _KEPT:
                continue
            if before.status in _BACKED_UP and before.name not in include:
                warnings.append(f"{before.name} is no longer in the org (or not visible); it is not backed up")
            states[before.name] = dataclasses.replace(
                before, status=ObjectStatus.GONE, fields=_carry(before), full=False, reason="absent from the org"
            )
    ordered = tuple(states[n] for n in sorted(states))
    return Resolution(Schema(ordered), tuple(warnings))


_BACKED_UP = (ObjectStatus.IN_SCOPE, ObjectStatus.SKIPPED)
_KEPT = (ObjectStatus.IN_SCOPE, ObjectStatus.SKIPPED, ObjectStatus.GONE)


def _carry(before: ObjectState | None) -> tuple[FieldState, ...]:
    """The fields an object had, remembered while it is out of reach, with no backfill pending."""
    if before is None:
        return ()
    return tuple(dataclasses.replace(f, backfill=False) for f in before.fields)


def _resolve_fields(
    policy: Policy,
    obj: GlobalObject,
    describe: ObjectDescribe,
    before: ObjectState | None,
    warnings: list[str],
    owed: bool = False,
) -> ObjectState:
    """`owed`: the previous session's job for the object did not complete; its full read and backfills are
    carried over."""
    excluded = {f.lower() for f in policy.scope.exclude_fields.get(obj.name, ())}
    joins_fresh = before is None or before.status not in _BACKED_UP
    full = joins_fresh or (owed and before is not None and before.full)
    states: list[FieldState] = []
    seen: set[str] = set()
    for info in describe.fields:
        lower = info.name.lower()
        seen.add(lower)
        prior = before.field(info.name) if before is not None else None
        if lower in excluded and info.name not in SYSTEM_FIELDS:
            states.append(FieldState(info, FieldStatus.EXCLUDED))
        elif joins_fresh or info.name in SYSTEM_FIELDS:
            states.append(FieldState(info, FieldStatus.IN_SCOPE))
        elif prior is not None and prior.status is FieldStatus.IN_SCOPE:
            states.append(FieldState(info, FieldStatus.IN_SCOPE, backfill=owed and prior.backfill))
        elif prior is not None and prior.status is FieldStatus.GONE:
            # it was backed up, then left (hidden or removed): changes made meanwhile were not read
            states.append(FieldState(info, FieldStatus.IN_SCOPE, backfill=True))
        elif policy.auto_add_new_fields:
            states.append(FieldState(info, FieldStatus.IN_SCOPE, backfill=True))
        else:
            states.append(FieldState(info, FieldStatus.DECLINED))
    left_out: list[str] = []
    if before is not None:
        for prior in before.fields:
            if prior.name_lower in seen or prior.status not in (FieldStatus.IN_SCOPE, FieldStatus.GONE):
                continue
            if prior.status is FieldStatus.IN_SCOPE and not joins_fresh:
                left_out.append(prior.info.name)
            states.append(dataclasses.replace(prior, status=FieldStatus.GONE, backfill=False))
    if left_out:
        warnings.append(
            f"{obj.name}: fields removed or hidden since the last session leave the query: {', '.join(left_out)}"
        )
    return ObjectState(obj.name, ObjectStatus.IN_SCOPE, obj, tuple(states), describe.describe_hash, full=full)


# ---- jobs ------------------------------------------------------------------------------------------------


class JobKind(StrEnum):
    DATA = "DATA"
    FILE = "FILE"
    METADATA = "METADATA"


@dataclass(frozen=True)
class PlannedDataJob:
    job_id: str
    object_name: str
    fields: tuple[FieldState, ...]
    full: bool
    key_prefix: str
    bulk_supported: bool
    queryall_supported: bool
    has_system_modstamp: bool
    replicateable: bool
    describe_hash: str
    expected_records: int = 0  # the org's approximate count at planning (0: unknown), of its range when split
    id_from: str = ""  # a split object's range (domain_split): [id_from, id_to), "" open
    id_to: str = ""


@dataclass(frozen=True)
class PlannedFileJob:
    job_id: str
    content_versions: bool
    attachments: bool
    documents: bool


@dataclass(frozen=True)
class PlannedMetadataJob:
    job_id: str


PlannedJob = PlannedDataJob | PlannedFileJob | PlannedMetadataJob


@dataclass(frozen=True)
class Budget:
    api_call_cap: int  # per job; 0: no cap
    api_reserve_percent: int


def largest_first(names: Iterable[str], counts: Mapping[str, int]) -> list[str]:
    """Object names in the order their data jobs should start: most records first (the longest jobs start
    first, so the session does not end with one large object read alone while the other workers idle), then
    by name; an object whose count is unknown counts as empty."""
    return sorted(names, key=lambda name: (-max(counts.get(name, 0), 0), name))


def plan_jobs(
    policy: Policy,
    schema: Schema,
    counts: Mapping[str, int] | None = None,
    splits: Mapping[str, Sequence[IdRange]] | None = None,
) -> list[PlannedJob]:
    """A metadata job, a file job, then one data job per object in scope: largest first by `counts` (the
    org's approximate record counts; largest_first), in name order without them. An object `splits` names
    has one data job per Id range (domain_split), its ranges in Id order."""
    jobs: list[PlannedJob] = []
    if policy.metadata:
        jobs.append(PlannedMetadataJob("metadata"))
    if policy.files:
        readable = {
            o.name
            for o in schema.objects
            if o.name in FILE_OBJECTS and o.status in (ObjectStatus.IN_SCOPE, ObjectStatus.DECLINED)
        }
        if readable:
            jobs.append(
                PlannedFileJob(
                    "files",
                    content_versions="ContentVersion" in readable,
                    attachments="Attachment" in readable,
                    documents="Document" in readable,
                )
            )
    objects = {o.name: o for o in schema.in_scope()}
    for name in largest_first(objects, counts or {}):
        obj = objects[name]
        fields = obj.query_fields()
        names = {f.info.name for f in fields}
        if obj.full:
            fields = tuple(dataclasses.replace(f, backfill=False) for f in fields)
        info = obj.info or GlobalObject(obj.name)
        ranges = (splits or {}).get(name) or WHOLE
        jobs.extend(
            PlannedDataJob(
                job_id=range_job_id(obj.name, i, len(ranges)),
                object_name=obj.name,
                fields=fields,
                # a backfilled field must be read for every record: the job reads the object in full
                full=obj.full or any(f.backfill for f in fields),
                key_prefix=info.key_prefix,
                bulk_supported=obj.name not in BULK_UNSUPPORTED,
                queryall_supported="IsDeleted" in names,
                has_system_modstamp="SystemModstamp" in names,
                replicateable=info.replicateable,
                describe_hash=obj.describe_hash,
                expected_records=expected_per_range(counts or {}, obj.name, len(ranges)),
                id_from=r.id_from,
                id_to=r.id_to,
            )
            for i, r in enumerate(ranges)
        )
    return jobs


def split_budget(policy: Policy, jobs: int, spent_by_discovery: int) -> Budget:
    """The per-run cap, less what discovery spent, shared equally by the jobs (at least one call each)."""
    share = policy.daily_share_percent or DEFAULT_DAILY_SHARE
    reserve = 100 - share
    if not policy.per_run_cap or jobs == 0:
        return Budget(0, reserve)
    left = max(policy.per_run_cap - spent_by_discovery, 0)
    return Budget(max(left // jobs, 1), reserve)


def canonical(body: Any) -> tuple[str, bytes]:
    """A describe as stable bytes and their hash, so an unchanged describe is stored once."""
    data = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(data).hexdigest(), data


# ---- restore sessions ------------------------------------------------------------------------------------
#
# A restore is planned without describing anything (the jobrunner describes the target itself) and without a
# policy: the source and target orgs are resolved among the registered ones, a production target is written to
# only when the restore is confirmed (or is a dry run, which writes nothing), and the point in time is fixed
# here once, so every replica of the job and the report read the same point.


class SessionKind(StrEnum):
    BACKUP = "BACKUP"
    RESTORE = "RESTORE"  # records (and their files)
    METADATA_RESTORE = "METADATA_RESTORE"  # components deployed
    PRUNE = "PRUNE"  # retention (issue 18): one prune job, storage's PruneStep until done


class RestoreRefused(Exception):
    """A restore that cannot be planned: the session fails with this reason."""


@dataclass(frozen=True)
class RestoreAsk:
    """What a SessionRequested of a restore asks, as far as planning it goes."""

    kind: SessionKind
    org_id: str  # the event's org id: the source when the spec names none
    source_org_id: str = ""
    target_org_id: str = ""
    as_of: dt.datetime | None = None
    dry_run: bool = False
    confirmed: bool = False
    selections: int = 0
    whole_org: bool = False
    components: int = 0
    retry_of: str = ""


@dataclass(frozen=True)
class RestorePlan:
    job_id: str
    kind: SessionKind
    source: Org
    target: Org
    as_of: dt.datetime


RESTORE_JOB_ID = {SessionKind.RESTORE: "restore", SessionKind.METADATA_RESTORE: "metadata-restore"}


def plan_restore(ask: RestoreAsk, orgs: Mapping[str, Org], now: dt.datetime) -> RestorePlan:
    """The one job of a restore session: source (the spec's, else the event's org), target (the spec's, else
    the source), the point in time (unset: `now`). Raises RestoreRefused naming what is wrong."""
    source_id = ask.source_org_id or ask.org_id
    if not source_id:
        raise RestoreRefused("a restore names its source org (restore.source_org_id or org_id)")
    if ask.source_org_id and ask.org_id and ask.source_org_id != ask.org_id:
        raise RestoreRefused(f"org {ask.org_id!r} and restore.source_org_id {ask.source_org_id!r} differ")
    source = orgs.get(source_id)
    if source is None:
        raise RestoreRefused(f"source org {source_id!r} does not exist")
    target_id = ask.target_org_id or source_id
    target = orgs.get(target_id)
    if target is None:
        raise RestoreRefused(f"target org {target_id!r} does not exist")
    if ask.kind is SessionKind.METADATA_RESTORE and not ask.components:
        raise RestoreRefused("a metadata restore names its components (Type:FullName)")
    if ask.kind is SessionKind.RESTORE and not (ask.selections or ask.whole_org or ask.retry_of):
        raise RestoreRefused("a restore selects records: at least one selection, or the whole org")
    if not target.sandbox and not ask.dry_run and not ask.confirmed:
        raise RestoreRefused(f"target org {target.org_id} is a production org: confirm the restore (--yes)")
    return RestorePlan(RESTORE_JOB_ID[ask.kind], ask.kind, source, target, ask.as_of or now)


def restore_budget() -> Budget:
    """A restore has no policy: no per-run cap, the default daily share."""
    return Budget(0, 100 - DEFAULT_DAILY_SHARE)


# ---- a session's plan as recorded ------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionRecord:
    session_id: str
    policy_id: str
    org_id: str
    planned: bool
    failure_reason: str = ""
    initial: bool = False
    warnings: tuple[str, ...] = ()
    global_hash: str = ""
    describe_date: str = ""
    full_describe_at: dt.datetime | None = None
    api_calls: int = 0
    published: bool = False
    planned_at: dt.datetime | None = None
    stall_timeout: dt.timedelta = dt.timedelta(0)  # the request's, else the policy's; zero: the service default
    kind: SessionKind = field(default_factory=lambda: SessionKind.BACKUP)
    # a restore session: its RestoreSpec as resolved (serialized sfvault.restore.v1.RestoreSpec), re-published as is
    restore_spec: bytes = b""


@dataclass(frozen=True)
class StoredJob:
    job_id: str
    job_type: str
    object_name: str
    spec: bytes


@dataclass(frozen=True)
class SessionDecision:
    """What deciding a session records at once: its record, the schema it was planned from, its jobs and the
    describes it read that are not stored yet (a failed or jobless session: the record alone)."""

    record: SessionRecord
    schema: Schema | None = None
    jobs: tuple[StoredJob, ...] = ()
    describes: Mapping[str, bytes] = field(default_factory=dict)


# ---- tokens as registered (claims only, never the token) ----------------------------------------------------


@dataclass(frozen=True)
class TokenRecord:
    token_id: str
    name: str
    role: str
    issued_at: dt.datetime
    expires_at: dt.datetime
    registered_by: str = ""
    revoked_at: dt.datetime | None = None
    revoked_by: str = ""


# --- keep (issue 18) --------------------------------------------------------------------------------------------

PRUNE_JOB_ID = "prune"


def prune_retention(policies: Sequence[Policy]) -> RetentionSettings | None:
    """The retention a prune of an org applies: the most keeping of its policies' settings -- the most days and
    the most versions, where 0 (keep forever, keep all) wins; prune_latest only when every policy says so. None
    when nothing is to be pruned: no policy, or one keeps everything (no days and no versions)."""
    if not policies:
        return None
    days = 0 if any(p.retention.days == 0 for p in policies) else max(p.retention.days for p in policies)
    versions = 0 if any(p.retention.versions == 0 for p in policies) else max(p.retention.versions for p in policies)
    if days == 0 and versions == 0:
        return None
    latest = days > 0 and all(p.retention.prune_latest for p in policies)
    return RetentionSettings(days, versions, latest)


def nothing_to_prune(org_id: str, policies: Sequence[Policy]) -> str:
    if not policies:
        return f"nothing to prune: org {org_id} has no policy, so no retention"
    keeping = [p.policy_id for p in policies if p.retention.days == 0 and p.retention.versions == 0]
    return (
        f"nothing to prune: policy {keeping[0]} of org {org_id} keeps every restore point (no retention set)"
        if keeping
        else f"nothing to prune: the policies of org {org_id} keep every restore point"
    )
