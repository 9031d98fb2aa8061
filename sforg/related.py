"""The objects a real org lists beside its data objects: each object's History, Share, Feed and ChangeEvent
(Object Reference, "Associated Objects": StandardObjectNameHistory, …Share, …Feed, …ChangeEvent, whose fields
are documented there), the stage history of opportunities (OpportunityHistory) and standard platform events.

Their describe flags are the real ones of the same family, copied from a real describeGlobal (the CumulusCI
capture in tests/sforg/fixtures/cumulusci_global_describe.json: WorkOrderHistory, WorkOrderShare,
WorkOrderFeed, WorkOrderChangeEvent): history and feed objects are queryable and replicateable but not
createable, share objects queryable and createable but not replicateable, change events and platform events
not queryable at all."""

from __future__ import annotations

from typing import Any

from sforg.schema import FieldDef, ObjectDef, ref
from sforg.standard import documented

_ASSOCIATED = {"feedEnabled": False, "layoutable": False, "mruEnabled": False, "searchable": False}
_READ_ONLY = {"createable": False, "updateable": False, "undeletable": False}
FAMILY_FLAGS: dict[str, dict[str, Any]] = {
    "History": {**_ASSOCIATED, **_READ_ONLY, "deletable": False, "triggerable": False},
    "Share": {**_ASSOCIATED, "replicateable": False, "triggerable": False, "undeletable": False},
    "Feed": {**_ASSOCIATED, **_READ_ONLY, "triggerable": False},
    "ChangeEvent": {**_ASSOCIATED, **_READ_ONLY, "deletable": False, "queryable": False, "replicateable": False},
}
# standard platform events (Platform Events Developer Guide, "Standard Platform Event Objects"): listed, never
# queryable (flags as a change event's)
PLATFORM_EVENTS = ["BatchApexErrorEvent", "FlowExecutionErrorEvent", "PlatformStatusAlertEvent", "LogoutEventStream"]

# Each data object's field history: the history object, its lookup to the record, the fields tracked
# (Setup > Object Manager > Set History Tracking: an org chooses up to 20 per object; these are sforg's choice).
FIELD_HISTORY: dict[str, tuple[str, str, list[str]]] = {
    "Account": ("AccountHistory", "AccountId", ["Name", "Type", "Industry", "Rating", "Phone", "AnnualRevenue"]),
    "Contact": ("ContactHistory", "ContactId", ["LastName", "FirstName", "Email", "Phone", "Title", "AccountId"]),
    "Opportunity": (
        "OpportunityFieldHistory",
        "OpportunityId",
        ["Name", "StageName", "Amount", "CloseDate", "Probability", "NextStep"],
    ),
    "Lead": ("LeadHistory", "LeadId", ["Status", "Rating", "Company", "Email"]),
    "Case": ("CaseHistory", "CaseId", ["Status", "Priority", "Subject", "Origin"]),
    "Campaign": ("CampaignHistory", "CampaignId", ["Name", "Status", "Type"]),
}
# Each object's Share (and the access level fields it carries: AccountShare also the account's children's).
SHARES: dict[str, list[str]] = {
    "Account": ["Account", "Opportunity", "Case", "Contact"],
    "Contact": ["Contact"],
    "Opportunity": ["Opportunity"],
    "Lead": ["Lead"],
    "Case": ["Case"],
    "Campaign": ["Campaign"],
    "User": ["User"],
}
# The owner's row of each record (RowCause Owner): its lookup and access levels. The owner has All on the record
# (a value only Salesforce sets); AccountShare's levels on the account's opportunities, cases and contacts take
# None, Read or Edit (Object Reference, AccountShare), Edit for the owner.
OWNER_SHARES: dict[str, tuple[str, dict[str, str]]] = {
    "Account": (
        "AccountId",
        {
            "AccountAccessLevel": "All",
            "OpportunityAccessLevel": "Edit",
            "CaseAccessLevel": "Edit",
            "ContactAccessLevel": "Edit",
        },
    ),
    "Opportunity": ("OpportunityId", {"OpportunityAccessLevel": "All"}),
    "Case": ("CaseId", {"CaseAccessLevel": "All"}),
    "Lead": ("LeadId", {"LeadAccessLevel": "All"}),
}
# Key prefixes of the share objects that hold rows (Object Reference and real Ids: 00r AccountShare, 00t
# OpportunityShare, 01n CaseShare, 01o LeadShare)
SHARE_PREFIXES = {"Account": "00r", "Opportunity": "00t", "Case": "01n", "Lead": "01o"}
FEEDS = ["Account", "Contact", "Opportunity", "Lead", "Case", "Campaign", "User", "Task", "Event", "ContentDocument"]
CHANGE_EVENTS = [
    "Account",
    "Contact",
    "Opportunity",
    "Lead",
    "Case",
    "Campaign",
    "CampaignMember",
    "Task",
    "Event",
    "User",
    "ContentVersion",
    "OpportunityContactRole",
]
# a change event's copy of a field: read only, no child relationship, no cascade (as the real captures list them)
_COPIED: dict[str, Any] = {
    "createable": False,
    "updateable": False,
    "child_relationship": None,
    "cascade_delete": False,
    "restricted_delete": False,
    "real": {},
}
# The DataType a history row reports for a field type (values of the documented DataType picklist).
DATA_TYPE = {
    "string": "Text",
    "textarea": "TextArea",
    "picklist": "DynamicEnum",
    "currency": "Currency",
    "percent": "Percent",
    "double": "Double",
    "int": "Double",
    "date": "DateOnly",
    "datetime": "DateTime",
    "phone": "Phone",
    "email": "Email",
    "reference": "EntityId",
    "boolean": "Boolean",
}
DATA_TYPES = sorted(set(DATA_TYPE.values()))
READ = "Filter, Group, Sort"
AUDIT = "Defaulted on create, Filter, Group, Sort"


def _family(parent: ObjectDef, family: str, name: str, prefix: str, fields: list[FieldDef]) -> ObjectDef:
    flags = FAMILY_FLAGS[family] | {"associateEntityType": family, "associateParentEntity": parent.name}
    label = f"{parent.label} {family.replace('ChangeEvent', 'Change Event')}"
    return ObjectDef(name, prefix, label, label, fields, flags=flags | {"keyPrefix": None})


def _created() -> list[FieldDef]:
    return [
        documented("Id", "id", "Defaulted on create, Filter, Group, Sort, idLookup", system=True, label="ID"),
        documented("IsDeleted", "boolean", "Defaulted on create, Filter", system=True, label="Deleted"),
        documented(
            "CreatedById",
            "reference",
            AUDIT,
            reference_to=["User"],
            relationship_name="CreatedBy",
            system=True,
            label="Created By ID",
        ),
        documented("CreatedDate", "datetime", "Defaulted on create, Filter, Sort", system=True),
    ]


def history(parent: ObjectDef) -> ObjectDef:
    name, key, tracked = FIELD_HISTORY[parent.name]
    return history_object(parent, name, key, tracked)


def history_object(parent: ObjectDef, name: str, key: str, tracked: list[str]) -> ObjectDef:
    """A field history object: its lookup `key` to the record and the fields it tracks."""
    return _family(
        parent,
        "History",
        name,
        "017",
        [
            *_created(),
            documented(
                key,
                "reference",
                READ,
                reference_to=[parent.name],
                relationship_name=parent.name,
                child_relationship="Histories",
                cascade_delete=True,
            ),
            documented("Field", "picklist", READ + ", Restricted picklist", length=255, picklist=["created", *tracked]),
            documented(
                "DataType", "picklist", READ + ", Nillable, Restricted picklist", length=40, picklist=DATA_TYPES
            ),
            documented("OldValue", "anyType", "Nillable, Sort", length=255, label="Old Value"),
            documented("NewValue", "anyType", "Nillable, Sort", length=255, label="New Value"),
        ],
    )


def opportunity_history(parent: ObjectDef) -> ObjectDef:
    """OpportunityHistory: the stage history (Object Reference, OpportunityHistory)."""
    stage = parent.field("StageName")
    assert stage is not None
    nil = "Filter, Nillable, Sort"
    out = _family(
        parent,
        "History",
        "OpportunityHistory",
        "008",
        [
            *_created(),
            documented(
                "OpportunityId",
                "reference",
                READ,
                reference_to=["Opportunity"],
                relationship_name="Opportunity",
                child_relationship="OpportunityHistories",
                cascade_delete=True,
            ),
            documented("StageName", "picklist", READ, length=255, picklist=stage.picklist, label="Stage Name"),
            documented("Amount", "currency", nil, precision=18, scale=2),
            documented("ExpectedRevenue", "currency", nil, precision=18, scale=2),
            documented("CloseDate", "date", "Filter, Group, Nillable, Sort"),
            documented("Probability", "percent", nil, precision=3, scale=0),
            documented("PrevAmount", "currency", nil, precision=18, scale=2),
            documented("PrevCloseDate", "date", "Filter, Group, Nillable, Sort"),
            documented("SystemModstamp", "datetime", "Defaulted on create, Filter, Sort", system=True),
        ],
    )
    out.label = out.label_plural = "Opportunity History"
    return out


def share(parent: ObjectDef) -> ObjectDef:
    key = "UserId" if parent.name == "User" else f"{parent.name}Id"
    out = share_object(parent, key, [f"{level}AccessLevel" for level in SHARES[parent.name]])
    prefix = SHARE_PREFIXES.get(parent.name)
    if prefix:
        out.key_prefix = prefix
        out.flags["keyPrefix"] = prefix
    return out


def share_object(parent: ObjectDef, key: str = "ParentId", levels: tuple[str, ...] | list[str] = ()) -> ObjectDef:
    """A share object: the record (`key`), who it is shared with, the access levels, why. The objects Salesforce
    added later (and custom objects' __Share) name the record ParentId and the level AccessLevel."""
    access = "Create, Filter, Group, Restricted picklist, Sort, Update"
    return _family(
        parent,
        "Share",
        f"{parent.name}Share",
        "",
        [
            documented("Id", "id", "Defaulted on create, Filter, Group, Sort, idLookup", system=True, label="ID"),
            documented(
                key,
                "reference",
                "Create, Filter, Group, Sort",
                reference_to=[parent.name],
                relationship_name="Parent" if key == "ParentId" else parent.name,
                child_relationship="Shares",
                cascade_delete=True,
            ),
            documented(
                "UserOrGroupId",
                "reference",
                "Create, Filter, Group, Sort",
                reference_to=["User"],
                relationship_name="UserOrGroup",
            ),
            *[
                # the record's own level reaches All; the levels on an account's children stop at Edit
                documented(level, "picklist", access, length=40, picklist=["Read", "Edit", "All"])
                if i == 0
                else documented(level, "picklist", access, length=40, picklist=["None", "Read", "Edit"])
                for i, level in enumerate(levels or ["AccessLevel"])
            ],
            documented(
                "RowCause",
                "picklist",
                "Create, Defaulted on create, Filter, Group, Nillable, Restricted picklist, Sort",
                length=40,
                picklist=["Owner", "Manual", "Rule", "ImplicitChild", "ImplicitParent", "Team", "Territory"],
            ),
            documented("LastModifiedDate", "datetime", "Defaulted on create, Filter, Sort", system=True),
            ref("LastModifiedById", ["User"], "LastModifiedBy", nillable=False, createable=False, updateable=False),
            documented("IsDeleted", "boolean", "Defaulted on create, Filter", system=True, label="Deleted"),
        ],
    )


def feed(parent: ObjectDef) -> ObjectDef:
    nil = "Filter, Group, Nillable, Sort"
    return _family(
        parent,
        "Feed",
        f"{parent.name}Feed",
        "",
        [
            *_created(),
            documented(
                "ParentId",
                "reference",
                READ,
                reference_to=[parent.name],
                relationship_name="Parent",
                child_relationship="Feeds",
                cascade_delete=True,
            ),
            documented(
                "Type",
                "picklist",
                nil + ", Restricted picklist",
                length=40,
                picklist=["TextPost", "LinkPost", "ContentPost", "TrackedChange", "CreateRecordEvent"],
            ),
            documented("LastModifiedDate", "datetime", "Defaulted on create, Filter, Sort", system=True),
            documented("SystemModstamp", "datetime", "Defaulted on create, Filter, Sort", system=True),
            documented("CommentCount", "int", READ, digits=9),
            documented("LikeCount", "int", READ, digits=9),
            documented("Title", "string", nil, length=255),
            documented("Body", "textarea", "Nillable, Sort", length=10000),
            documented("LinkUrl", "url", "Filter, Nillable, Sort", length=1000),
            documented("IsRichText", "boolean", AUDIT),
            documented(
                "RelatedRecordId",
                "reference",
                nil,
                reference_to=["ContentVersion"],
                relationship_name="RelatedRecord",
            ),
            documented("InsertedById", "reference", READ, reference_to=["User"], relationship_name="InsertedBy"),
        ],
    )


def change_event(parent: ObjectDef, name: str | None = None) -> ObjectDef:
    """A change event carries its object's fields (read only) and ReplayId; it is never queried."""
    fields = [
        FieldDef(**{**f.__dict__, **_COPIED})
        for f in parent.fields
        if f.type != "base64" and f.formula is None and f.name != "IsDeleted"
    ]
    fields.append(documented("ReplayId", "string", "Nillable", length=90))
    return _family(parent, "ChangeEvent", name or f"{parent.name}ChangeEvent", "", fields)


def platform_event(name: str) -> ObjectDef:
    label = name.removesuffix("Stream")
    ev = ObjectDef(
        name,
        "",
        label,
        label,
        [
            documented("ReplayId", "string", "Nillable", length=90),
            documented("CreatedDate", "datetime", "Filter, Sort"),
            documented("CreatedById", "reference", READ, reference_to=["User"], relationship_name="CreatedBy"),
            documented("EventUuid", "string", "Filter, Group, Nillable, Sort", length=36),
        ],
    )
    ev.flags = FAMILY_FLAGS["ChangeEvent"] | {"keyPrefix": None}
    return ev


def associated_objects(catalogue: dict[str, ObjectDef]) -> list[ObjectDef]:
    """The History, Share, Feed and ChangeEvent objects of the catalogue's objects, OpportunityHistory and the
    standard platform events, in the order describeGlobal lists them after the data objects."""
    out: list[ObjectDef] = []
    for name in FIELD_HISTORY:
        out.append(history(catalogue[name]))
    out.append(opportunity_history(catalogue["Opportunity"]))
    out += [share(catalogue[name]) for name in SHARES]
    out += [feed(catalogue[name]) for name in FEEDS if name in catalogue]
    out += [change_event(catalogue[name]) for name in CHANGE_EVENTS if name in catalogue]
    out += [platform_event(name) for name in PLATFORM_EVENTS]
    return out
