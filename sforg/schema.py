"""The org's object catalogue (standard and custom sObjects, their fields) and describe rendering."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

SOAP_TYPES = {
    "id": "tns:ID",
    "reference": "tns:ID",
    "string": "xsd:string",
    "textarea": "xsd:string",
    "picklist": "xsd:string",
    "multipicklist": "xsd:string",
    "combobox": "xsd:string",
    "boolean": "xsd:boolean",
    "int": "xsd:int",
    "double": "xsd:double",
    "currency": "xsd:double",
    "percent": "xsd:double",
    "date": "xsd:date",
    "datetime": "xsd:dateTime",
    "email": "xsd:string",
    "phone": "xsd:string",
    "url": "xsd:string",
    "address": "urn:address",
    "location": "urn:location",
    "base64": "xsd:base64Binary",
}
TEXT_TYPES = {
    "id",
    "reference",
    "string",
    "textarea",
    "picklist",
    "multipicklist",
    "combobox",
    "email",
    "phone",
    "url",
}
NUMBER_TYPES = {"double", "currency", "percent"}
SQL_TYPES = {"int": "INTEGER", "boolean": "INTEGER", "double": "REAL", "currency": "REAL", "percent": "REAL"}


@dataclass
class FieldDef:
    """One field of an sObject, with the attributes describe reports."""

    name: str
    type: str
    label: str = ""
    length: int = 0
    precision: int = 0
    scale: int = 0
    digits: int = 0
    reference_to: list[str] = field(default_factory=list)
    relationship_name: str | None = None
    child_relationship: str | None = None
    nillable: bool = True
    createable: bool = True
    updateable: bool = True
    picklist: list[str] = field(default_factory=list)
    formula: str | None = None
    compound: str | None = None
    name_field: bool = False
    external_id: bool = False
    unique: bool = False
    id_lookup: bool = False
    defaulted: bool = False
    auto_number: bool = False
    cascade_delete: bool = False
    extra_type_info: str | None = None
    system: bool = False

    @property
    def custom(self) -> bool:
        return self.name.endswith(("__c", "__s"))

    @property
    def stored(self) -> bool:
        """Whether the field has its own column (compound and formula fields are derived)."""
        return self.type not in ("address", "location") and self.formula is None

    @property
    def sql_type(self) -> str:
        return SQL_TYPES.get(self.type, "TEXT")


@dataclass
class ObjectDef:
    """An sObject: name, key prefix, fields, and the behaviours that differ between objects."""

    name: str
    key_prefix: str
    label: str
    label_plural: str
    fields: list[FieldDef]
    hard_delete: bool = False  # junctions such as CampaignMember skip the recycle bin
    blob_field: str | None = None
    bulk_supported: bool = True

    def __post_init__(self) -> None:
        self.by_lower = {f.name.lower(): f for f in self.fields}

    @property
    def custom(self) -> bool:
        return self.name.endswith("__c")

    def field(self, name: str) -> FieldDef | None:
        return self.by_lower.get(name.lower())

    def reindex(self) -> None:
        self.by_lower = {f.name.lower(): f for f in self.fields}

    def stored_fields(self) -> list[FieldDef]:
        return [f for f in self.fields if f.stored]


def _label(name: str) -> str:
    base = name.removesuffix("__c").removesuffix("__s").replace("_", " ")
    out = []
    for i, ch in enumerate(base):
        if i and ch.isupper() and base[i - 1].islower():
            out.append(" ")
        out.append(ch)
    return "".join(out)


def F(name: str, type_: str, **kw: Any) -> FieldDef:
    if type_ in ("string", "textarea", "picklist", "multipicklist", "email", "phone", "url", "combobox"):
        kw.setdefault(
            "length",
            {
                "picklist": 255,
                "multipicklist": 4099,
                "email": 80,
                "phone": 40,
                "url": 255,
                "textarea": 255,
            }.get(type_, 255),
        )
    if type_ in ("id", "reference"):
        kw.setdefault("length", 18)
    if type_ in NUMBER_TYPES:
        kw.setdefault("precision", 18)
        kw.setdefault("scale", 2)
    if type_ == "int":
        kw.setdefault("digits", 9)
    return FieldDef(name=name, type=type_, label=kw.pop("label", None) or _label(name), **kw)


def ref(name: str, targets: list[str], rel: str, child: str | None = None, **kw: Any) -> FieldDef:
    return F(name, "reference", reference_to=targets, relationship_name=rel, child_relationship=child, **kw)


def address(prefix: str) -> list[FieldDef]:
    comp = f"{prefix}Address"
    return [
        F(f"{prefix}Street", "textarea", compound=comp, extra_type_info="plaintextarea"),
        F(f"{prefix}City", "string", length=40, compound=comp),
        F(f"{prefix}State", "string", length=80, compound=comp),
        F(f"{prefix}PostalCode", "string", length=20, compound=comp),
        F(f"{prefix}Country", "string", length=80, compound=comp),
        F(f"{prefix}Latitude", "double", precision=18, scale=15, compound=comp),
        F(f"{prefix}Longitude", "double", precision=18, scale=15, compound=comp),
        F(
            f"{prefix}GeocodeAccuracy",
            "picklist",
            length=40,
            compound=comp,
            picklist=[
                "Address",
                "NearAddress",
                "Block",
                "Street",
                "ExtendedZip",
                "Zip",
                "City",
                "County",
                "State",
                "Unknown",
            ],
        ),
        F(comp, "address", createable=False, updateable=False),
    ]


def location(name: str) -> list[FieldDef]:
    stem = name.removesuffix("__c")
    return [
        F(f"{stem}__Latitude__s", "double", precision=18, scale=15, compound=name),
        F(f"{stem}__Longitude__s", "double", precision=18, scale=15, compound=name),
        F(name, "location", createable=False, updateable=False),
    ]


def system_fields(owner: bool = True, deletable: bool = True) -> list[FieldDef]:
    out = [
        F(
            "Id",
            "id",
            nillable=False,
            createable=False,
            updateable=False,
            id_lookup=True,
            defaulted=True,
            system=True,
        )
    ]
    if deletable:
        out.append(
            F(
                "IsDeleted",
                "boolean",
                label="Deleted",
                nillable=False,
                createable=False,
                updateable=False,
                defaulted=True,
                system=True,
            )
        )
    if owner:
        out.append(ref("OwnerId", ["User"], "Owner", nillable=False, defaulted=True, label="Owner ID"))
    out += [
        F(
            "CreatedDate",
            "datetime",
            nillable=False,
            createable=False,
            updateable=False,
            defaulted=True,
            system=True,
        ),
        ref(
            "CreatedById",
            ["User"],
            "CreatedBy",
            nillable=False,
            createable=False,
            updateable=False,
            defaulted=True,
            system=True,
            label="Created By ID",
        ),
        F(
            "LastModifiedDate",
            "datetime",
            nillable=False,
            createable=False,
            updateable=False,
            defaulted=True,
            system=True,
        ),
        ref(
            "LastModifiedById",
            ["User"],
            "LastModifiedBy",
            nillable=False,
            createable=False,
            updateable=False,
            defaulted=True,
            system=True,
            label="Last Modified By ID",
        ),
        F(
            "SystemModstamp",
            "datetime",
            label="System Modstamp",
            nillable=False,
            createable=False,
            updateable=False,
            defaulted=True,
            system=True,
        ),
    ]
    return out


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


def build_catalogue() -> dict[str, ObjectDef]:
    """Every object of a freshly generated org, keyed by name."""
    objs = [
        ObjectDef(
            "User",
            "005",
            "User",
            "Users",
            [
                *system_fields(owner=False, deletable=False),
                F("Username", "string", length=80, nillable=False, unique=True, id_lookup=True),
                F("LastName", "string", length=80, nillable=False),
                F("FirstName", "string", length=40),
                F(
                    "Name",
                    "string",
                    length=121,
                    name_field=True,
                    createable=False,
                    updateable=False,
                    label="Full Name",
                ),
                F("Email", "email", nillable=False, id_lookup=True),
                F("Alias", "string", length=8, nillable=False),
                F("IsActive", "boolean", label="Active", nillable=False, defaulted=True),
                F("TimeZoneSidKey", "picklist", length=40, picklist=PICK["TimeZone"], nillable=False),
            ],
        ),
        ObjectDef(
            "Account",
            "001",
            "Account",
            "Accounts",
            [
                *system_fields(),
                F("Name", "string", nillable=False, name_field=True, label="Account Name"),
                F("Type", "picklist", length=40, picklist=PICK["AccountType"], label="Account Type"),
                ref("ParentId", ["Account"], "Parent", "ChildAccounts", label="Parent Account ID"),
                *address("Billing"),
                *address("Shipping"),
                F("Phone", "phone", label="Account Phone"),
                F("Website", "url"),
                F("Industry", "picklist", length=40, picklist=PICK["Industry"]),
                F("AnnualRevenue", "currency", precision=18, scale=0),
                F("NumberOfEmployees", "int", digits=8, label="Employees"),
                F(
                    "Description",
                    "textarea",
                    length=32000,
                    label="Account Description",
                    extra_type_info="plaintextarea",
                ),
                F("Rating", "picklist", length=40, picklist=PICK["Rating"], label="Account Rating"),
                F("AccountNumber", "string", length=40),
                F("Region__c", "multipicklist", picklist=PICK["Region"]),
                F("Customer_Since__c", "date"),
                F("Active__c", "boolean", nillable=False, defaulted=True),
                F("Discount__c", "percent", precision=5, scale=2),
                F("External_Id__c", "string", length=40, external_id=True, unique=True, id_lookup=True),
                *location("Headquarters__c"),
            ],
        ),
        ObjectDef(
            "Contact",
            "003",
            "Contact",
            "Contacts",
            [
                *system_fields(),
                ref("AccountId", ["Account"], "Account", "Contacts", label="Account ID"),
                F("LastName", "string", length=80, nillable=False),
                F("FirstName", "string", length=40),
                F("Salutation", "picklist", length=40, picklist=PICK["Salutation"]),
                F(
                    "Name",
                    "string",
                    length=121,
                    name_field=True,
                    createable=False,
                    updateable=False,
                    label="Full Name",
                ),
                *address("Mailing"),
                F("Phone", "phone", label="Business Phone"),
                F("Email", "email", id_lookup=True),
                F("Title", "string", length=128),
                F("Birthdate", "date"),
                F("LeadSource", "picklist", length=40, picklist=PICK["LeadSource"]),
                F("HasOptedOutOfEmail", "boolean", label="Email Opt Out", nillable=False, defaulted=True),
                ref("ReportsToId", ["Contact"], "ReportsTo", "ReportsTo", label="Reports To ID"),
                F(
                    "Description",
                    "textarea",
                    length=32000,
                    label="Contact Description",
                    extra_type_info="plaintextarea",
                ),
            ],
        ),
        ObjectDef(
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
        ),
        ObjectDef(
            "Opportunity",
            "006",
            "Opportunity",
            "Opportunities",
            [
                *system_fields(),
                ref("AccountId", ["Account"], "Account", "Opportunities", label="Account ID"),
                F("Name", "string", length=120, nillable=False, name_field=True),
                F("StageName", "picklist", length=40, picklist=PICK["Stage"], nillable=False, label="Stage"),
                F("Amount", "currency", precision=18, scale=2),
                F("Probability", "percent", precision=3, scale=0, label="Probability (%)"),
                F("CloseDate", "date", nillable=False),
                F("LeadSource", "picklist", length=40, picklist=PICK["LeadSource"]),
                F(
                    "IsClosed",
                    "boolean",
                    label="Closed",
                    nillable=False,
                    createable=False,
                    updateable=False,
                    defaulted=True,
                ),
                F(
                    "IsWon",
                    "boolean",
                    label="Won",
                    nillable=False,
                    createable=False,
                    updateable=False,
                    defaulted=True,
                ),
                ref("CampaignId", ["Campaign"], "Campaign", "Opportunities", label="Campaign ID"),
                F("NextStep", "string", length=255),
                F("Description", "textarea", length=32000, extra_type_info="plaintextarea"),
            ],
        ),
        ObjectDef(
            "Lead",
            "00Q",
            "Lead",
            "Leads",
            [
                *system_fields(),
                F("LastName", "string", length=80, nillable=False),
                F("FirstName", "string", length=40),
                F(
                    "Name",
                    "string",
                    length=121,
                    name_field=True,
                    createable=False,
                    updateable=False,
                    label="Full Name",
                ),
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
            ],
        ),
        ObjectDef(
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
                    createable=False,
                    updateable=False,
                    name_field=True,
                    auto_number=True,
                    id_lookup=True,
                    defaulted=True,
                    label="Case Number",
                ),
                ref("AccountId", ["Account"], "Account", "Cases", label="Account ID"),
                ref("ContactId", ["Contact"], "Contact", "Cases", label="Contact ID"),
                F("Subject", "string", length=255),
                F("Description", "textarea", length=32000, extra_type_info="plaintextarea"),
                F("Status", "picklist", length=40, picklist=PICK["CaseStatus"]),
                F("Priority", "picklist", length=40, picklist=PICK["Priority"]),
                F("Origin", "picklist", length=40, picklist=PICK["Origin"], label="Case Origin"),
                F(
                    "IsClosed",
                    "boolean",
                    label="Closed",
                    nillable=False,
                    createable=False,
                    updateable=False,
                    defaulted=True,
                ),
                F("ClosedDate", "datetime", createable=False, updateable=False),
                F(
                    "Days_Open__c",
                    "double",
                    precision=18,
                    scale=0,
                    formula="TODAY() - DATEVALUE(CreatedDate)",
                    createable=False,
                    updateable=False,
                ),
            ],
        ),
        ObjectDef(
            "Task",
            "00T",
            "Task",
            "Tasks",
            [
                *system_fields(),
                ref("WhoId", ["Contact", "Lead"], "Who", None, label="Name ID"),
                ref("WhatId", ["Account", "Opportunity", "Case"], "What", None, label="Related To ID"),
                F("Subject", "combobox", length=255),
                F("ActivityDate", "date", label="Due Date Only"),
                F("Status", "picklist", length=40, picklist=PICK["TaskStatus"], nillable=False),
                F("Priority", "picklist", length=40, picklist=PICK["TaskPriority"], nillable=False),
                F(
                    "IsClosed",
                    "boolean",
                    label="Closed",
                    nillable=False,
                    createable=False,
                    updateable=False,
                    defaulted=True,
                ),
                F(
                    "Description",
                    "textarea",
                    length=32000,
                    label="Description",
                    extra_type_info="plaintextarea",
                ),
            ],
        ),
        ObjectDef(
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
                F(
                    "HasResponded",
                    "boolean",
                    label="Responded",
                    nillable=False,
                    createable=False,
                    updateable=False,
                    defaulted=True,
                ),
            ],
            hard_delete=True,
        ),
        ObjectDef(
            "ContentDocument",
            "069",
            "Content Document",
            "Content Documents",
            [
                *system_fields(),
                F("Title", "string", nillable=False, name_field=True),
                F("FileType", "string", length=20, createable=False, updateable=False),
                F("FileExtension", "string", length=40, createable=False, updateable=False),
                F("ContentSize", "int", label="Size", createable=False, updateable=False),
                ref(
                    "LatestPublishedVersionId",
                    ["ContentVersion"],
                    "LatestPublishedVersion",
                    None,
                    createable=False,
                    updateable=False,
                    label="Latest Published Version ID",
                ),
            ],
        ),
        ObjectDef(
            "ContentDocumentLink",
            "06A",
            "Content Document Link",
            "Content Document Link",
            [
                F(
                    "Id",
                    "id",
                    nillable=False,
                    createable=False,
                    updateable=False,
                    id_lookup=True,
                    defaulted=True,
                    system=True,
                ),
                ref(
                    "LinkedEntityId",
                    ["Account", "Opportunity", "Case", "User"],
                    "LinkedEntity",
                    None,
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
                F(
                    "IsDeleted",
                    "boolean",
                    label="Is Deleted",
                    nillable=False,
                    createable=False,
                    updateable=False,
                    defaulted=True,
                    system=True,
                ),
                F(
                    "SystemModstamp",
                    "datetime",
                    label="System Modstamp",
                    nillable=False,
                    createable=False,
                    updateable=False,
                    defaulted=True,
                    system=True,
                ),
                F("ShareType", "picklist", length=40, picklist=["V", "C", "I"], label="Share Type"),
                F("Visibility", "picklist", length=40, picklist=["AllUsers", "InternalUsers", "SharedUsers"]),
            ],
            hard_delete=True,
        ),
        ObjectDef(
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
                    label="ContentDocument ID",
                ),
                F("Title", "string", nillable=False, name_field=True),
                F("PathOnClient", "string", length=500),
                F("VersionData", "base64", label="Version Data", nillable=False),
                F("ContentSize", "int", label="Size", createable=False, updateable=False),
                F("FileType", "string", length=20, createable=False, updateable=False),
                F("FileExtension", "string", length=40, createable=False, updateable=False),
                F("VersionNumber", "string", length=20, createable=False, updateable=False),
                F("IsLatest", "boolean", nillable=False, createable=False, updateable=False, defaulted=True),
                F("Checksum", "string", length=50, createable=False, updateable=False),
                F("ReasonForChange", "string", length=1000),
            ],
            blob_field="VersionData",
        ),
        ObjectDef(
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
                    label="Parent ID",
                ),
                F("Name", "string", nillable=False, name_field=True, label="File Name"),
                F("ContentType", "string", length=120),
                F("BodyLength", "int", label="Body Length", createable=False, updateable=False),
                F("Body", "base64", nillable=False),
                F("IsPrivate", "boolean", label="Private", nillable=False, defaulted=True),
                F("Description", "textarea", length=500),
            ],
            blob_field="Body",
            bulk_supported=False,
        ),
        ObjectDef(
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
                F("BodyLength", "int", label="Body Length", createable=False, updateable=False),
                F("Body", "base64", label="Body"),
                F("Description", "textarea", length=255),
                F("Keywords", "string", length=255),
                ref("AuthorId", ["User"], "Author", None, label="Author ID"),
            ],
            blob_field="Body",
        ),
        ObjectDef(
            "Invoice__c",
            "a00",
            "Invoice",
            "Invoices",
            [
                *system_fields(),
                F("Name", "string", length=80, nillable=False, name_field=True, label="Invoice Name"),
                ref("Account__c", ["Account"], "Account__r", "Invoices__r", label="Account"),
                ref("Opportunity__c", ["Opportunity"], "Opportunity__r", "Invoices__r", label="Opportunity"),
                F("Amount__c", "currency", precision=16, scale=2),
                F("Tax_Rate__c", "percent", precision=5, scale=2),
                F("Status__c", "picklist", picklist=PICK["InvoiceStatus"]),
                F("Issued_On__c", "date"),
                F("Due__c", "datetime"),
                F("Paid__c", "boolean", nillable=False, defaulted=True),
                F("Lines__c", "int", digits=6),
                F("Notes__c", "textarea", length=32768, extra_type_info="plaintextarea"),
                F("Billing_Email__c", "email"),
                F("Contact_Phone__c", "phone"),
                F("Portal__c", "url"),
                F("Tags__c", "multipicklist", picklist=PICK["Tags"]),
                F(
                    "Total_With_Tax__c",
                    "currency",
                    precision=18,
                    scale=2,
                    createable=False,
                    updateable=False,
                    formula="Amount__c * (1 + Tax_Rate__c)",
                ),
            ],
        ),
        ObjectDef(
            "Shipment__c",
            "a01",
            "Shipment",
            "Shipments",
            [
                *system_fields(owner=False),
                F("Name", "string", length=80, nillable=False, name_field=True, label="Shipment Name"),
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
        ),
    ]
    return {o.name: o for o in objs}


def copy_catalogue(cat: dict[str, ObjectDef]) -> dict[str, ObjectDef]:
    return copy.deepcopy(cat)


# ---------------------------------------------------------------- describe rendering


def field_describe(f: FieldDef, obj: ObjectDef) -> dict[str, Any]:
    """One entry of describe()['fields'], with every property key of a real describe."""
    t = f.type
    is_text = t in TEXT_TYPES
    length = f.length if is_text else 0
    long_text = t == "textarea" and f.length > 255
    groupable = t in (
        "id",
        "reference",
        "string",
        "picklist",
        "boolean",
        "int",
        "date",
        "email",
        "phone",
        "url",
        "combobox",
    ) or (t == "textarea" and not long_text)
    sortable = t not in ("address", "location", "multipicklist", "base64") and not long_text
    filterable = t != "base64" and not long_text
    is_formula = f.formula is not None
    d: dict[str, Any] = {
        "aggregatable": t not in ("boolean", "address", "location", "base64", "multipicklist") and not long_text,
        "aiPredictionField": False,
        "autoNumber": f.auto_number,
        "byteLength": length * 3 if t not in ("id", "reference") else 18,
        "calculated": is_formula or (f.name == "Name" and not f.createable and t == "string"),
        "calculatedFormula": f.formula,
        "cascadeDelete": f.cascade_delete,
        "caseSensitive": False,
        "compoundFieldName": f.compound,
        "controllerName": None,
        "createable": f.createable and not is_formula,
        "custom": f.custom,
        "defaultValue": False if t == "boolean" and f.defaulted and not f.system else None,
        "defaultValueFormula": None,
        "defaultedOnCreate": f.defaulted,
        "dependentPicklist": False,
        "deprecatedAndHidden": False,
        "digits": f.digits if t == "int" else 0,
        "displayLocationInDecimal": t == "location",
        "encrypted": False,
        "externalId": f.external_id,
        "extraTypeInfo": f.extra_type_info if t == "textarea" else None,
        "filterable": filterable,
        "filteredLookupInfo": None,
        "formulaTreatNullNumberAsZero": False,
        "groupable": groupable,
        "highScaleNumber": False,
        "htmlFormatted": False,
        "idLookup": f.id_lookup,
        "inlineHelpText": None,
        "label": f.label,
        "length": length,
        "mask": None,
        "maskType": None,
        "name": f.name,
        "nameField": f.name_field,
        "namePointing": len(f.reference_to) > 1,
        "nillable": f.nillable and t != "boolean",
        "permissionable": f.nillable and not f.system and f.type not in ("id",) and not f.auto_number,
        "picklistValues": [
            {"active": True, "defaultValue": False, "label": v, "validFor": None, "value": v} for v in f.picklist
        ],
        "polymorphicForeignKey": len(f.reference_to) > 1,
        "precision": f.precision if t in NUMBER_TYPES else 0,
        "queryByDistance": t in ("address", "location"),
        "referenceTargetField": None,
        "referenceTo": list(f.reference_to),
        "relationshipName": f.relationship_name,
        "relationshipOrder": (0 if f.cascade_delete and f.custom else None) if t == "reference" else None,
        "restrictedDelete": False,
        "restrictedPicklist": t in ("picklist", "multipicklist") and f.custom,
        "scale": f.scale if t in NUMBER_TYPES else 0,
        "searchPrefilterable": t == "reference",
        "soapType": SOAP_TYPES[t],
        "sortable": sortable,
        "type": t,
        "unique": f.unique,
        "updateable": f.updateable and not is_formula,
        "writeRequiresMasterRead": False,
    }
    if t == "base64":
        d["length"] = 104857600 if obj.name == "ContentVersion" else 5242880
        d["byteLength"] = 0
    return d


def _urls(obj: ObjectDef, version: str, base: str, full: bool) -> dict[str, str]:
    p = f"/services/data/v{version}/sobjects/{obj.name}"
    urls = {
        "compactLayouts": f"{p}/describe/compactLayouts",
        "rowTemplate": f"{p}/{{ID}}",
        "approvalLayouts": f"{p}/describe/approvalLayouts",
    }
    if full:
        urls["uiDetailTemplate"] = f"{base}/{{ID}}"
        urls["uiEditTemplate"] = f"{base}/{{ID}}/e"
        urls["defaultValues"] = f"{p}/defaultValues?recordTypeId&fields"
    urls["listviews"] = f"{p}/listviews"
    urls["describe"] = f"{p}/describe"
    if full:
        urls["uiNewRecord"] = f"{base}/{obj.key_prefix}/e"
    urls["quickActions"] = f"{p}/quickActions"
    urls["layouts"] = f"{p}/describe/layouts"
    urls["sobject"] = p
    return urls


def _flags(obj: ObjectDef) -> dict[str, Any]:
    user = obj.name == "User"
    return {
        "activateable": False,
        "associateEntityType": None,
        "associateParentEntity": None,
        "createable": True,
        "custom": obj.custom,
        "customSetting": False,
        "deepCloneable": obj.name in ("Opportunity",),
        "deletable": not user,
        "deprecatedAndHidden": False,
        "feedEnabled": obj.name in ("Account", "Contact", "Opportunity", "Lead", "Case", "User"),
        "hasSubtypes": False,
        "isInterface": False,
        "isSubtype": False,
        "keyPrefix": obj.key_prefix,
        "label": obj.label,
        "labelPlural": obj.label_plural,
        "layoutable": True,
        "mergeable": obj.name in ("Account", "Contact", "Lead", "Case"),
        "mruEnabled": True,
        "name": obj.name,
        "queryable": True,
        "replicateable": True,
        "retrieveable": True,
        "searchable": not obj.hard_delete,
        "triggerable": True,
        "undeletable": not user and not obj.hard_delete,
        "updateable": True,
    }


def global_entry(obj: ObjectDef, version: str) -> dict[str, Any]:
    out = _flags(obj)
    out["urls"] = _urls(obj, version, "", full=False)
    return out


def describe(
    obj: ObjectDef, catalogue: dict[str, ObjectDef], version: str, base: str, hidden: set[str]
) -> dict[str, Any]:
    """The full describe of one sObject, shaped like the real captures."""
    children = []
    for other in catalogue.values():
        for f in other.fields:
            if f.type == "reference" and obj.name in f.reference_to and f.name.lower() not in hidden:
                children.append(
                    {
                        "cascadeDelete": f.cascade_delete,
                        "childSObject": other.name,
                        "deprecatedAndHidden": False,
                        "field": f.name,
                        "junctionIdListNames": [],
                        "junctionReferenceTo": [],
                        "relationshipName": f.child_relationship,
                        "restrictedDelete": False,
                    }
                )
    flags = _flags(obj)
    d: dict[str, Any] = {
        "actionOverrides": [],
        "activateable": flags["activateable"],
        "associateEntityType": None,
        "associateParentEntity": None,
        "childRelationships": children,
        "compactLayoutable": True,
        "createable": flags["createable"],
        "custom": flags["custom"],
        "customSetting": False,
        "deepCloneable": flags["deepCloneable"],
        "defaultImplementation": None,
        "deletable": flags["deletable"],
        "deprecatedAndHidden": False,
        "extendedBy": None,
        "extendsInterfaces": None,
        "feedEnabled": flags["feedEnabled"],
        "fields": [field_describe(f, obj) for f in obj.fields if f.name.lower() not in hidden],
        "hasSubtypes": False,
        "implementedBy": None,
        "implementsInterfaces": None,
        "isInterface": False,
        "isSubtype": False,
        "keyPrefix": obj.key_prefix,
        "label": obj.label,
        "labelPlural": obj.label_plural,
        "layoutable": True,
        "listviewable": None,
        "lookupLayoutable": None,
        "mergeable": flags["mergeable"],
        "mruEnabled": True,
        "name": obj.name,
        "namedLayoutInfos": [],
        "networkScopeFieldName": None,
        "queryable": True,
        "recordTypeInfos": [
            {
                "active": True,
                "available": True,
                "defaultRecordTypeMapping": True,
                "developerName": "Master",
                "master": True,
                "name": "Master",
                "recordTypeId": "012000000000000AAA",
                "urls": {
                    "layout": f"/services/data/v{version}/sobjects/{obj.name}/describe/layouts/012000000000000AAA"
                },
            }
        ],
        "replicateable": True,
        "retrieveable": True,
        "searchLayoutable": True,
        "searchable": flags["searchable"],
        "sobjectDescribeOption": "FULL",
        "supportedScopes": [{"label": "All " + obj.label_plural.lower(), "name": "everything"}],
        "triggerable": True,
        "undeletable": flags["undeletable"],
        "updateable": True,
        "urls": _urls(obj, version, base, full=True),
    }
    return d


# ---------------------------------------------------------------- catalogue (de)serialisation


def catalogue_to_json(cat: dict[str, ObjectDef]) -> list[dict[str, Any]]:
    out = []
    for o in cat.values():
        out.append(
            {
                "name": o.name,
                "key_prefix": o.key_prefix,
                "label": o.label,
                "label_plural": o.label_plural,
                "hard_delete": o.hard_delete,
                "blob_field": o.blob_field,
                "bulk_supported": o.bulk_supported,
                "fields": [f.__dict__.copy() for f in o.fields],
            }
        )
    return out


def catalogue_from_json(data: list[dict[str, Any]]) -> dict[str, ObjectDef]:
    cat = {}
    for o in data:
        fields = [FieldDef(**f) for f in o.pop("fields")]
        obj = ObjectDef(fields=fields, **o)
        cat[obj.name] = obj
    return cat
