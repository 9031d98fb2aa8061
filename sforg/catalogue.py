"""The standard catalogue: every object of a freshly generated org, one function per object (grouped by family:
people, sales, service, files, custom), with the picklist values the generator draws from."""

from __future__ import annotations

from typing import Any

from sforg.ids import make_id
from sforg.listed import listed_objects
from sforg.related import associated_objects
from sforg.schema import (
    READ_ONLY,
    SYSTEM,
    F,
    FieldDef,
    ObjectDef,
    address,
    custom_object,
    location,
    ref,
    system_fields,
)
from sforg.standard import ALIGNED, align_with_capture, documented, documented_fields, standard_fields

PICK = {
    "AccountType": [
        "Prospect",
        "Customer - Direct",
        "Customer - Channel",
        "Channel Partner / Reseller",
        "Installation Partner",
        "Technology Partner",
        "Other",
    ],
    "Industry": [
        "Agriculture",
        "Banking",
        "Biotechnology",
        "Chemicals",
        "Communications",
        "Construction",
        "Consulting",
        "Education",
        "Electronics",
        "Energy",
        "Engineering",
        "Finance",
        "Healthcare",
        "Insurance",
        "Manufacturing",
        "Media",
        "Retail",
        "Technology",
        "Transportation",
        "Utilities",
    ],
    "Rating": ["Hot", "Warm", "Cold"],
    "LeadSource": ["Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other"],
    "Salutation": ["Mr.", "Ms.", "Mrs.", "Dr.", "Prof."],
    "Stage": [
        "Prospecting",
        "Qualification",
        "Needs Analysis",
        "Value Proposition",
        "Id. Decision Makers",
        "Perception Analysis",
        "Proposal/Price Quote",
        "Negotiation/Review",
        "Closed Won",
        "Closed Lost",
    ],
    "LeadStatus": [
        "Open - Not Contacted",
        "Working - Contacted",
        "Closed - Converted",
        "Closed - Not Converted",
    ],
    "CaseStatus": ["New", "Working", "Escalated", "Closed"],
    "Priority": ["High", "Medium", "Low"],
    "Origin": ["Phone", "Email", "Web"],
    "TaskStatus": ["Not Started", "In Progress", "Completed", "Waiting on someone else", "Deferred"],
    "TaskPriority": ["High", "Normal", "Low"],
    "CampaignType": [
        "Conference",
        "Webinar",
        "Trade Show",
        "Public Relations",
        "Partners",
        "Referral Program",
        "Advertisement",
        "Banner Ads",
        "Direct Mail",
        "Email",
        "Telemarketing",
        "Other",
    ],
    "CampaignStatus": ["Planned", "In Progress", "Completed", "Aborted"],
    "MemberStatus": ["Sent", "Responded"],
    "Region": ["EMEA", "AMER", "APAC", "LATAM"],
    "InvoiceStatus": ["Draft", "Sent", "Paid", "Void"],
    "Tags": ["urgent", "recurring", "disputed", "export", "partner"],
    "Carrier": ["DHL", "UPS", "FedEx", "USPS", "Maersk"],
    "TimeZone": ["Europe/Paris", "America/New_York", "America/Los_Angeles", "Asia/Tokyo"],
}


def full_name() -> FieldDef:
    """Name of a person (Contact, Lead, User): FirstName and LastName joined, never written."""
    return F("Name", "string", length=121, name_field=True, **READ_ONLY, label="Full Name")


def computed_flag(name: str, label: str) -> FieldDef:
    """A checkbox Salesforce sets itself (IsClosed, IsWon, HasResponded)."""
    return F(name, "boolean", label=label, nillable=False, **READ_ONLY, defaulted=True)


def long_text(name: str, length: int = 32000, **kw: Any) -> FieldDef:
    """A long text area (plain text)."""
    return F(name, "textarea", length=length, extra_type_info="plaintextarea", **kw)


def activity_dates() -> list[FieldDef]:
    """LastActivityDate, LastViewedDate, LastReferencedDate: set by Salesforce (Object Reference of each object)."""
    return [
        documented("LastActivityDate", "date", "Filter, Group, Nillable, Sort", label="Last Activity"),
        documented("LastViewedDate", "datetime", "Filter, Nillable, Sort"),
        documented("LastReferencedDate", "datetime", "Filter, Nillable, Sort"),
    ]


def _user() -> ObjectDef:
    return ObjectDef(
        "User",
        "005",
        "User",
        "Users",
        [
            *system_fields(owner=False, deletable=False),
            F("Username", "string", length=80, nillable=False, unique=True, id_lookup=True),
            F("LastName", "string", length=80, nillable=False),
            F("FirstName", "string", length=40),
            full_name(),
            F("Email", "email", nillable=False, id_lookup=True),
            F("Alias", "string", length=8, nillable=False),
            F("IsActive", "boolean", label="Active", nillable=False, defaulted=True),
            F("TimeZoneSidKey", "picklist", length=40, picklist=PICK["TimeZone"], nillable=False),
            *documented_fields("User"),
        ],
    )


def _account() -> ObjectDef:
    return ObjectDef(
        "Account",
        "001",
        "Account",
        "Accounts",
        [
            # the captured org has person accounts, where Name is a compound of the contact's name; sforg has none
            *standard_fields("Account", Name={"compoundFieldName": None, "extraTypeInfo": None}),
            F("Region__c", "multipicklist", picklist=PICK["Region"]),
            F("Customer_Since__c", "date"),
            F("Active__c", "boolean", nillable=False, defaulted=True),
            F("Discount__c", "percent", precision=5, scale=2),
            F("External_Id__c", "string", length=40, external_id=True, unique=True, id_lookup=True),
            *location("Headquarters__c"),
        ],
    )


def _contact() -> ObjectDef:
    # the capture's user could not see the contact's opt-out flags (field-level security): as the Object
    # Reference documents them
    return ObjectDef(
        "Contact",
        "003",
        "Contact",
        "Contacts",
        [
            *standard_fields("Contact"),
            *documented_fields("Contact"),
        ],
    )


def _campaign() -> ObjectDef:
    return ObjectDef(
        "Campaign",
        "701",
        "Campaign",
        "Campaigns",
        [
            *system_fields(),
            F("Name", "string", length=80, nillable=False, name_field=True),
            ref("ParentId", ["Campaign"], "Parent", "ChildCampaigns", label="Parent Campaign ID"),
            F("Type", "picklist", length=40, picklist=PICK["CampaignType"]),
            F("Status", "picklist", length=40, picklist=PICK["CampaignStatus"]),
            F("StartDate", "date"),
            F("EndDate", "date"),
            F("BudgetedCost", "currency", precision=18, scale=0),
            F("IsActive", "boolean", label="Active", nillable=False, defaulted=True),
        ],
    )


def _opportunity() -> ObjectDef:
    return ObjectDef(
        "Opportunity",
        "006",
        "Opportunity",
        "Opportunities",
        [
            *system_fields(),
            ref("AccountId", ["Account"], "Account", "Opportunities", cascade_delete=True, label="Account ID"),
            F("Name", "string", length=120, nillable=False, name_field=True),
            F("StageName", "picklist", length=40, picklist=PICK["Stage"], nillable=False, label="Stage"),
            F("Amount", "currency", precision=18, scale=2),
            F("Probability", "percent", precision=3, scale=0, label="Probability (%)"),
            F("CloseDate", "date", nillable=False),
            F("LeadSource", "picklist", length=40, picklist=PICK["LeadSource"]),
            computed_flag("IsClosed", "Closed"),
            computed_flag("IsWon", "Won"),
            ref("CampaignId", ["Campaign"], "Campaign", "Opportunities", label="Campaign ID"),
            F("NextStep", "string", length=255),
            long_text("Description"),
            *activity_dates(),
            *documented_fields("Opportunity"),
        ],
    )


def _lead() -> ObjectDef:
    return ObjectDef(
        "Lead",
        "00Q",
        "Lead",
        "Leads",
        [
            *system_fields(),
            F("LastName", "string", length=80, nillable=False),
            F("FirstName", "string", length=40),
            full_name(),
            F("Company", "string", nillable=False),
            F(
                "Status",
                "picklist",
                length=40,
                picklist=PICK["LeadStatus"],
                nillable=False,
                label="Lead Status",
            ),
            F("Email", "email", id_lookup=True),
            F("Phone", "phone"),
            *address(""),
            F("Rating", "picklist", length=40, picklist=PICK["Rating"]),
            F("LeadSource", "picklist", length=40, picklist=PICK["LeadSource"]),
            F("IsConverted", "boolean", label="Converted", nillable=False, defaulted=True),
            F("AnnualRevenue", "currency", precision=18, scale=0),
            F("NumberOfEmployees", "int", digits=8, label="Employees"),
            *activity_dates(),
            *documented_fields("Lead"),
        ],
    )


def _case() -> ObjectDef:
    return ObjectDef(
        "Case",
        "500",
        "Case",
        "Cases",
        [
            *system_fields(),
            F(
                "CaseNumber",
                "string",
                length=30,
                nillable=False,
                **READ_ONLY,
                name_field=True,
                auto_number=True,
                id_lookup=True,
                defaulted=True,
                label="Case Number",
            ),
            # an Account or a Contact with Cases cannot be deleted (restrictedDelete in the real Account and
            # Contact describes: DELETE_FAILED); an admin delete clears the lookup
            ref("AccountId", ["Account"], "Account", "Cases", label="Account ID", restricted_delete=True),
            ref("ContactId", ["Contact"], "Contact", "Cases", label="Contact ID", restricted_delete=True),
            F("Subject", "string", length=255),
            long_text("Description"),
            F("Status", "picklist", length=40, picklist=PICK["CaseStatus"]),
            F("Priority", "picklist", length=40, picklist=PICK["Priority"]),
            F("Origin", "picklist", length=40, picklist=PICK["Origin"], label="Case Origin"),
            computed_flag("IsClosed", "Closed"),
            F("ClosedDate", "datetime", **READ_ONLY),
            F("Days_Open__c", "double", precision=18, scale=0, formula="TODAY() - DATEVALUE(CreatedDate)", **READ_ONLY),
            *documented_fields("Case"),
        ],
    )


def who_and_what(children: str) -> list[FieldDef]:
    """An activity's polymorphic lookups: WhoId to a person, WhatId to a record (Tasks, Events of both)."""
    return [
        ref("WhoId", ["Contact", "Lead"], "Who", children, cascade_delete=True, label="Name ID"),
        ref(
            "WhatId",
            ["Account", "Opportunity", "Case"],
            "What",
            children,
            cascade_delete=True,
            label="Related To ID",
        ),
    ]


def _task() -> ObjectDef:
    return ObjectDef(
        "Task",
        "00T",
        "Task",
        "Tasks",
        [
            *system_fields(),
            *who_and_what("Tasks"),
            F("Subject", "combobox", length=255),
            F("ActivityDate", "date", label="Due Date Only"),
            F("Status", "picklist", length=40, picklist=PICK["TaskStatus"], nillable=False),
            F("Priority", "picklist", length=40, picklist=PICK["TaskPriority"], nillable=False),
            computed_flag("IsClosed", "Closed"),
            long_text("Description", label="Description"),
            *documented_fields("Task"),
        ],
    )


def _campaign_member() -> ObjectDef:
    return ObjectDef(
        "CampaignMember",
        "00v",
        "Campaign Member",
        "Campaign Members",
        [
            *system_fields(owner=False),
            ref(
                "CampaignId",
                ["Campaign"],
                "Campaign",
                "CampaignMembers",
                nillable=False,
                cascade_delete=True,
                label="Campaign ID",
            ),
            ref(
                "ContactId",
                ["Contact"],
                "Contact",
                "CampaignMembers",
                cascade_delete=True,
                label="Contact ID",
            ),
            ref("LeadId", ["Lead"], "Lead", "CampaignMembers", cascade_delete=True, label="Lead ID"),
            F("Status", "picklist", length=40, picklist=PICK["MemberStatus"]),
            computed_flag("HasResponded", "Responded"),
        ],
        hard_delete=True,
    )


def _content_document() -> ObjectDef:
    return ObjectDef(
        "ContentDocument",
        "069",
        "Content Document",
        "Content Documents",
        [
            *system_fields(),
            F("Title", "string", nillable=False, name_field=True),
            F("FileType", "string", length=20, **READ_ONLY),
            F("FileExtension", "string", length=40, **READ_ONLY),
            F("ContentSize", "int", label="Size", **READ_ONLY),
            ref(
                "LatestPublishedVersionId",
                ["ContentVersion"],
                "LatestPublishedVersion",
                None,
                **READ_ONLY,
                label="Latest Published Version ID",
            ),
        ],
    )


def _content_document_link() -> ObjectDef:
    return ObjectDef(
        "ContentDocumentLink",
        "06A",
        "Content Document Link",
        "Content Document Link",
        [
            F("Id", "id", id_lookup=True, **SYSTEM),
            ref(
                "LinkedEntityId",
                ["Account", "Contact", "Opportunity", "Case", "User"],
                "LinkedEntity",
                "ContentDocumentLinks",
                nillable=False,
                updateable=False,
                label="Linked Entity ID",
            ),
            ref(
                "ContentDocumentId",
                ["ContentDocument"],
                "ContentDocument",
                "ContentDocumentLinks",
                nillable=False,
                updateable=False,
                cascade_delete=True,
                label="ContentDocument ID",
            ),
            F("IsDeleted", "boolean", label="Is Deleted", **SYSTEM),
            F("SystemModstamp", "datetime", label="System Modstamp", **SYSTEM),
            F("ShareType", "picklist", length=40, picklist=["V", "C", "I"], label="Share Type"),
            F("Visibility", "picklist", length=40, picklist=["AllUsers", "InternalUsers", "SharedUsers"]),
        ],
        hard_delete=True,
    )


def _content_version() -> ObjectDef:
    return ObjectDef(
        "ContentVersion",
        "068",
        "Content Version",
        "Content Versions",
        [
            *system_fields(),
            ref(
                "ContentDocumentId",
                ["ContentDocument"],
                "ContentDocument",
                "ContentVersions",
                cascade_delete=True,
                label="ContentDocument ID",
            ),
            F("Title", "string", nillable=False, name_field=True),
            F("PathOnClient", "string", length=500),
            F("VersionData", "base64", label="Version Data", nillable=False),
            F("ContentSize", "int", label="Size", **READ_ONLY),
            F("FileType", "string", length=20, **READ_ONLY),
            F("FileExtension", "string", length=40, **READ_ONLY),
            F("VersionNumber", "string", length=20, **READ_ONLY),
            F("IsLatest", "boolean", nillable=False, **READ_ONLY, defaulted=True),
            F("Checksum", "string", length=50, **READ_ONLY),
            F("ReasonForChange", "string", length=1000),
        ],
        blob_field="VersionData",
    )


def _attachment() -> ObjectDef:
    return ObjectDef(
        "Attachment",
        "00P",
        "Attachment",
        "Attachments",
        [
            *system_fields(),
            ref(
                "ParentId",
                ["Account", "Opportunity", "Case", "Contact"],
                "Parent",
                "Attachments",
                nillable=False,
                cascade_delete=True,
                label="Parent ID",
            ),
            F("Name", "string", nillable=False, name_field=True, label="File Name"),
            F("ContentType", "string", length=120),
            F("BodyLength", "int", label="Body Length", **READ_ONLY),
            F("Body", "base64", nillable=False),
            F("IsPrivate", "boolean", label="Private", nillable=False, defaulted=True),
            F("Description", "textarea", length=500),
        ],
        blob_field="Body",
        bulk_supported=False,
    )


def _document() -> ObjectDef:
    return ObjectDef(
        "Document",
        "015",
        "Document",
        "Documents",
        [
            *system_fields(owner=False),
            ref("FolderId", ["User"], "Folder", None, nillable=False, label="Folder ID"),
            F("Name", "string", nillable=False, name_field=True, label="Document Name"),
            F("DeveloperName", "string", length=80, nillable=False, label="Document Unique Name"),
            F("ContentType", "string", length=120, label="MIME Type"),
            F("Type", "string", length=40, label="File Extension"),
            F("IsPublic", "boolean", label="Externally Available", nillable=False, defaulted=True),
            F("BodyLength", "int", label="Body Length", **READ_ONLY),
            F("Body", "base64", label="Body"),
            F("Description", "textarea", length=255),
            F("Keywords", "string", length=255),
            ref("AuthorId", ["User"], "Author", None, label="Author ID"),
        ],
        blob_field="Body",
    )


def _invoice() -> ObjectDef:
    return custom_object(
        "Invoice__c",
        "a00",
        "Invoice",
        [
            ref("Account__c", ["Account"], "Account__r", "Invoices__r", label="Account"),
            ref("Opportunity__c", ["Opportunity"], "Opportunity__r", "Invoices__r", label="Opportunity"),
            F("Amount__c", "currency", precision=16, scale=2),
            F("Tax_Rate__c", "percent", precision=5, scale=2),
            F("Status__c", "picklist", picklist=PICK["InvoiceStatus"]),
            F("Issued_On__c", "date"),
            F("Due__c", "datetime"),
            F("Paid__c", "boolean", nillable=False, defaulted=True),
            F("Lines__c", "int", digits=6),
            long_text("Notes__c", length=32768),
            F("Billing_Email__c", "email"),
            F("Contact_Phone__c", "phone"),
            F("Portal__c", "url"),
            F("Tags__c", "multipicklist", picklist=PICK["Tags"]),
            F(
                "Total_With_Tax__c",
                "currency",
                precision=18,
                scale=2,
                **READ_ONLY,
                formula="Amount__c * (1 + Tax_Rate__c)",
            ),
        ],
    )


def _shipment() -> ObjectDef:
    return custom_object(
        "Shipment__c",
        "a01",
        "Shipment",
        [
            ref(
                "Invoice__c",
                ["Invoice__c"],
                "Invoice__r",
                "Shipments__r",
                nillable=False,
                cascade_delete=True,
                label="Invoice",
            ),
            F("Carrier__c", "picklist", picklist=PICK["Carrier"]),
            F("Weight__c", "double", precision=10, scale=3),
            F("Shipped_At__c", "datetime"),
            F("Delivered__c", "boolean", nillable=False, defaulted=True),
            F("Tracking__c", "string", length=40, external_id=True, unique=True, id_lookup=True),
            *location("Destination__c"),
        ],
        owner=False,
    )


# ---------------------------------------------------------------- activities and roles, setup objects
# Object Reference: Event, OpportunityContactRole, Profile, PermissionSet, UserRole, RecordType, Organization
# (developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference/sforce_api_objects_*.htm);
# object flags as the real describeGlobal capture lists them (cumulusci_global_describe.json).
SETUP_FLAGS: dict[str, Any] = {
    "feedEnabled": False,
    "layoutable": False,
    "mruEnabled": False,
    "triggerable": False,
    "undeletable": False,
}
# Record types of Account and Opportunity: (developer name, label); their Ids are 012… in this order.
RECORD_TYPES = {
    "Account": [("Customer", "Customer Account"), ("Partner", "Partner Account")],
    "Opportunity": [("New_Business", "New Business"), ("Renewal", "Renewal")],
}


def record_type_ids() -> dict[str, list[tuple[str, str, str]]]:
    """RECORD_TYPES with their Ids (012…1, 012…2, … in order)."""
    out: dict[str, list[tuple[str, str, str]]] = {}
    n = 0
    for obj, types in RECORD_TYPES.items():
        for dev, label in types:
            n += 1
            out.setdefault(obj, []).append((make_id("012", n), dev, label))
    return out


def _event() -> ObjectDef:
    return ObjectDef(
        "Event",
        "00U",
        "Event",
        "Events",
        [
            *system_fields(),
            *who_and_what("Events"),
            F("Subject", "combobox", length=255),
            long_text("Description"),
            *documented_fields("Event"),
        ],
        flags={"mergeable": True},
    )


def _opportunity_contact_role() -> ObjectDef:
    return ObjectDef(
        "OpportunityContactRole",
        "00K",
        "Opportunity Contact Role",
        "Opportunity Contact Role",
        [
            *system_fields(owner=False),
            *documented_fields("OpportunityContactRole"),
        ],
        flags={"feedEnabled": False, "mruEnabled": False, "searchable": False, "undeletable": False},
    )


def _setup(
    name: str, prefix: str, label: str, plural: str, *extra: FieldDef, created: bool = True, **flags: Any
) -> ObjectDef:
    """A setup object: Id and audit fields (a role has no Created…), its documented fields (documented_fields.json)
    and the setup flags."""
    fields = [*system_fields(owner=False, deletable=False, created=created), *extra, *documented_fields(name)]
    return ObjectDef(name, prefix, label, plural, fields, flags={**SETUP_FLAGS, **flags})


def _organization() -> ObjectDef:
    """Organization: the fields of a real record (cumulusci_organization.json, the CumulusCI capture), typed as
    the Object Reference types them; read only through the API here."""
    address_fields = [FieldDef(**{**f.__dict__, **READ_ONLY}) for f in address("")]
    read_only = {"createable": False, "deletable": False, "searchable": False}
    return _setup("Organization", "00D", "Organization", "Organizations", *address_fields, **read_only)


def build_catalogue() -> dict[str, ObjectDef]:
    """Every object of a freshly generated org, keyed by name (in this order: describeGlobal and the generator
    follow it)."""
    objs = [
        _user(),
        _account(),
        _contact(),
        _campaign(),
        _opportunity(),
        _lead(),
        _case(),
        _task(),
        _campaign_member(),
        _content_document(),
        _content_document_link(),
        _content_version(),
        _attachment(),
        _document(),
        _invoice(),
        _shipment(),
        _event(),
        _opportunity_contact_role(),
        _organization(),
        _setup("Profile", "00e", "Profile", "Profile", *activity_dates()[1:]),
        _setup("PermissionSet", "0PS", "Permission Set", "Permission Sets"),
        _setup("UserRole", "00E", "Role", "Role", created=False),
        _setup("RecordType", "012", "Record Type", "Record Types"),
    ]
    cat = {o.name: o for o in objs}
    for name in ALIGNED:
        align_with_capture(cat[name])
    for name, rts in record_type_ids().items():
        cat[name].record_types = [[rt_id, dev, label] for rt_id, dev, label in rts]
    cat.update((o.name, o) for o in associated_objects(cat))
    cat.update((o.name, o) for o in listed_objects(cat))
    return cat
