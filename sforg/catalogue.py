"""The standard catalogue: every object of a freshly generated org, one function per object (grouped by family:
people, sales, service, files, custom), with the picklist values the generator draws from."""

from __future__ import annotations

from typing import Any

from sforg.ids import make_id
from sforg.related import associated_objects
from sforg.schema import READ_ONLY, SYSTEM, F, FieldDef, ObjectDef, address, location, ref, system_fields
from sforg.standard import documented, standard_fields

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
    # a new org's Opportunity Type values, and the forecast categories of the Object Reference (ForecastingFact's
    # ForecastCategoryName: "Pipeline, Best Case, Commit, Omitted, and Closed"; OpportunityHistory's ForecastCategory)
    "OpportunityType": [
        "Existing Customer - Upgrade",
        "Existing Customer - Replacement",
        "Existing Customer - Downgrade",
        "New Customer",
    ],
    "ForecastName": ["Pipeline", "Best Case", "Commit", "Omitted", "Closed"],
    # values the Object Reference names: Case.Type ("Feature Request or Question"), Case.Reason ("Instructions not
    # clear, or User didn't attend training"), Task.CallType and Task.TaskSubtype
    "CaseType": ["Feature Request", "Question"],
    "CaseReason": ["Instructions not clear", "User didn't attend training"],
    "CallType": ["Internal", "Inbound", "Outbound"],
    "TaskSubtype": ["Task", "Email", "ListEmail", "Cadence", "Call", "LinkedIn"],
    # OpportunityContactRole.Role, a new org's values
    "ContactRole": [
        "Business User",
        "Decision Maker",
        "Economic Buyer",
        "Economic Decision Maker",
        "Evaluator",
        "Executive Sponsor",
        "Influencer",
        "Technical Buyer",
        "Other",
    ],
    "Forecast": ["BestCase", "Closed", "Forecast", "MostLikely", "Omitted", "Pipeline"],
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
            documented(
                "ProfileId",
                "reference",
                "Create, Filter, Group, Sort, Update",
                reference_to=["Profile"],
                relationship_name="Profile",
                child_relationship="Users",
                label="Profile ID",
            ),
            documented(
                "UserRoleId",
                "reference",
                WRITE,
                reference_to=["UserRole"],
                relationship_name="UserRole",
                child_relationship="Users",
                label="Role ID",
            ),
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
    opt_out = "Create, Defaulted on create, Filter, Group, Sort, Update"
    return ObjectDef(
        "Contact",
        "003",
        "Contact",
        "Contacts",
        [
            *standard_fields("Contact"),
            documented("HasOptedOutOfEmail", "boolean", opt_out, label="Email Opt Out"),
            documented("HasOptedOutOfFax", "boolean", opt_out, label="Fax Opt Out"),
            documented("DoNotCall", "boolean", opt_out),
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


# Object Reference, Opportunity (Properties) and Field Reference, Opportunity (types, lengths; API v51+):
# developer.salesforce.com/docs/atlas.en-us.api.meta/api/sforce_api_objects_opportunity.htm,
# developer.salesforce.com/docs/platform/field-reference/ (salesforce-field-reference-opportunity.html)
READ = "Filter, Group, Nillable, Sort"
WRITE = "Create, Filter, Group, Nillable, Sort, Update"


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
            documented(
                "ContactId",
                "reference",
                WRITE,
                reference_to=["Contact"],
                relationship_name="Contact",
                child_relationship="Opportunities",
                label="Contact ID",
            ),
            documented(
                "Type", "picklist", WRITE, length=255, picklist=PICK["OpportunityType"], label="Opportunity Type"
            ),
            documented(
                "IsPrivate", "boolean", "Create, Defaulted on create, Filter, Group, Sort, Update", label="Private"
            ),
            documented(
                "Pricebook2Id",
                "reference",
                WRITE,
                reference_to=["Pricebook2"],
                relationship_name="Pricebook2",
                label="Price Book ID",
            ),
            documented("ExpectedRevenue", "currency", "Filter, Nillable, Sort", precision=18, scale=2),
            documented(
                "TotalOpportunityQuantity", "double", "Create, Filter, Nillable, Sort, Update", label="Quantity"
            ),
            documented(
                "ForecastCategory", "picklist", READ + ", Restricted picklist", length=40, picklist=PICK["Forecast"]
            ),
            documented(
                "ForecastCategoryName",
                "picklist",
                WRITE + ", Restricted picklist",
                length=255,
                picklist=PICK["ForecastName"],
                label="Forecast Category",
            ),
            documented("Fiscal", "string", READ, length=6, label="Fiscal Period"),
            documented("FiscalQuarter", "int", READ, digits=8, label="Fiscal Quarter"),
            documented("FiscalYear", "int", READ, digits=8, label="Fiscal Year"),
            documented("HasOpenActivity", "boolean", "Defaulted on create, Filter, Group, Sort"),
            documented(
                "HasOpportunityLineItem", "boolean", "Defaulted on create, Filter, Group, Sort", label="Has Line Item"
            ),
            documented("HasOverdueTask", "boolean", "Defaulted on create, Filter, Group, Sort"),
            *activity_dates(),
            documented("LastStageChangeDate", "datetime", "Filter, Nillable, Sort"),
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
            # Object Reference, Lead (api.meta/api/sforce_api_objects_lead.htm) and Field Reference, Lead
            documented(
                "MasterRecordId",
                "reference",
                "Filter, Group, Nillable, Sort",
                reference_to=["Lead"],
                relationship_name="MasterRecord",
                label="Master Record ID",
            ),
            documented("Salutation", "picklist", WRITE, length=40, picklist=PICK["Salutation"]),
            documented("Title", "string", WRITE, length=128),
            documented("MobilePhone", "phone", WRITE, length=40, label="Mobile Phone"),
            documented("Fax", "phone", WRITE, length=40),
            documented("Website", "url", WRITE, length=255),
            documented("Industry", "picklist", WRITE, length=40, picklist=PICK["Industry"]),
            documented(
                "Description", "textarea", "Create, Nillable, Update", length=32000, extra_type_info="plaintextarea"
            ),
            documented("DoNotCall", "boolean", "Create, Defaulted on create, Filter, Group, Sort, Update"),
            documented(
                "HasOptedOutOfEmail",
                "boolean",
                "Create, Defaulted on create, Filter, Group, Sort, Update",
                label="Email Opt Out",
            ),
            documented(
                "HasOptedOutOfFax",
                "boolean",
                "Create, Defaulted on create, Filter, Group, Sort, Update",
                label="Fax Opt Out",
            ),
            documented(
                "IsUnreadByOwner",
                "boolean",
                "Create, Defaulted on create, Filter, Group, Sort, Update",
                label="Unread By Owner",
            ),
            documented("ConvertedDate", "date", READ),
            documented(
                "ConvertedAccountId",
                "reference",
                READ,
                reference_to=["Account"],
                relationship_name="ConvertedAccount",
                label="Converted Account ID",
            ),
            documented(
                "ConvertedContactId",
                "reference",
                READ,
                reference_to=["Contact"],
                relationship_name="ConvertedContact",
                label="Converted Contact ID",
            ),
            documented(
                "ConvertedOpportunityId",
                "reference",
                READ,
                reference_to=["Opportunity"],
                relationship_name="ConvertedOpportunity",
                label="Converted Opportunity ID",
            ),
            documented("EmailBouncedReason", "string", "Create, Filter, Group, Nillable, Sort, Update", length=255),
            documented("EmailBouncedDate", "datetime", "Create, Filter, Nillable, Sort, Update"),
            *activity_dates(),
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
            ref("AccountId", ["Account"], "Account", "Cases", cascade_delete=True, label="Account ID"),
            # a Contact with Cases cannot be deleted (restrictedDelete in the real Contact describe)
            ref("ContactId", ["Contact"], "Contact", "Cases", label="Contact ID", restricted_delete=True),
            F("Subject", "string", length=255),
            long_text("Description"),
            F("Status", "picklist", length=40, picklist=PICK["CaseStatus"]),
            F("Priority", "picklist", length=40, picklist=PICK["Priority"]),
            F("Origin", "picklist", length=40, picklist=PICK["Origin"], label="Case Origin"),
            computed_flag("IsClosed", "Closed"),
            F("ClosedDate", "datetime", **READ_ONLY),
            F("Days_Open__c", "double", precision=18, scale=0, formula="TODAY() - DATEVALUE(CreatedDate)", **READ_ONLY),
            # Object Reference, Case (api.meta/api/sforce_api_objects_case.htm) and Field Reference, Case (v51+)
            documented(
                "MasterRecordId",
                "reference",
                "Filter, Group, Nillable, Sort",
                reference_to=["Case"],
                relationship_name="MasterRecord",
                label="Master Record ID",
            ),
            documented(
                "ParentId",
                "reference",
                WRITE,
                reference_to=["Case"],
                relationship_name="Parent",
                child_relationship="Cases",
                label="Parent Case ID",
            ),
            documented("Type", "picklist", WRITE, length=255, picklist=PICK["CaseType"], label="Case Type"),
            documented("Reason", "picklist", WRITE, length=255, picklist=PICK["CaseReason"], label="Case Reason"),
            documented("SuppliedName", "string", WRITE, length=80, label="Name"),
            documented("SuppliedEmail", "email", WRITE, length=80, label="Email Address"),
            documented("SuppliedPhone", "string", WRITE, length=40, label="Phone"),
            documented("SuppliedCompany", "string", WRITE, length=80, label="Company"),
            documented("ContactPhone", "phone", READ, length=40),
            documented("ContactMobile", "phone", READ, length=40),
            documented("ContactEmail", "email", READ, length=80),
            documented("ContactFax", "phone", READ, length=40),
            documented(
                "IsEscalated", "boolean", "Create, Defaulted on create, Filter, Group, Sort, Update", label="Escalated"
            ),
            documented(
                "Comments", "textarea", "Create, Nillable, Sort, Update", length=4000, label="Internal Comments"
            ),
            documented("LastViewedDate", "datetime", "Filter, Nillable, Sort"),
            documented("LastReferencedDate", "datetime", "Filter, Nillable, Sort"),
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
            # Object Reference, Task (api.meta/api/sforce_api_objects_task.htm) and Field Reference, Task
            documented(
                "AccountId",
                "reference",
                READ,
                reference_to=["Account"],
                relationship_name="Account",
                label="Account ID",
            ),
            documented("IsHighPriority", "boolean", "Filter, Group, Sort", label="High Priority"),
            documented("IsArchived", "boolean", "Defaulted on create, Filter, Group, Sort", label="Archived"),
            documented(
                "CallDurationInSeconds",
                "int",
                "Create, Filter, Group, Nillable, Sort, Update",
                digits=8,
                label="Call Duration",
            ),
            documented(
                "CallType",
                "picklist",
                "Create, Filter, Group, Nillable, Restricted picklist, Sort, Update",
                length=40,
                picklist=PICK["CallType"],
            ),
            documented("CallDisposition", "string", WRITE, length=255, label="Call Result"),
            documented("CallObject", "string", WRITE, length=255, label="Call Object Identifier"),
            documented("CompletedDateTime", "datetime", "Filter, Nillable, Sort", label="Completed Date/Time"),
            documented(
                "TaskSubtype",
                "picklist",
                "Create, Filter, Group, Nillable, Restricted picklist, Sort",
                length=40,
                picklist=PICK["TaskSubtype"],
            ),
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
    return ObjectDef(
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
    return ObjectDef(
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
WRITE_REQUIRED = "Create, Filter, Group, Sort, Update"
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
            documented("AccountId", "reference", READ, reference_to=["Account"], relationship_name="Account"),
            F("Subject", "combobox", length=255),
            documented("Location", "string", WRITE, length=255),
            documented("IsAllDayEvent", "boolean", "Create, Defaulted on create, Filter, Group, Sort, Update"),
            documented("ActivityDateTime", "datetime", "Create, Filter, Nillable, Sort, Update", label="Due Date Time"),
            documented("ActivityDate", "date", WRITE, label="Due Date Only"),
            documented("DurationInMinutes", "int", "Create, Filter, Group, Nillable, Sort, Update", digits=8),
            documented("StartDateTime", "datetime", "Create, Filter, Nillable, Sort, Update"),
            documented("EndDateTime", "datetime", "Create, Filter, Nillable, Sort, Update"),
            documented("EndDate", "date", "Filter, Group, Nillable, Sort"),
            long_text("Description"),
            documented("IsPrivate", "boolean", "Create, Defaulted on create, Filter, Group, Sort, Update"),
            documented(
                "ShowAs",
                "picklist",
                "Create, Filter, Group, Nillable, Restricted picklist, Sort, Update",
                length=40,
                picklist=["Busy", "OutOfOffice", "Free"],
                label="Show Time As",
            ),
            documented("IsArchived", "boolean", "Defaulted on create, Filter, Group, Sort", label="Archived"),
            documented(
                "EventSubtype",
                "picklist",
                "Create, Filter, Group, Nillable, Restricted picklist, Sort",
                length=40,
                picklist=["Event"],
            ),
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
            documented(
                "OpportunityId",
                "reference",
                "Create, Filter, Group, Sort",
                reference_to=["Opportunity"],
                relationship_name="Opportunity",
                child_relationship="OpportunityContactRoles",
                cascade_delete=True,
                label="Opportunity ID",
            ),
            documented(
                "ContactId",
                "reference",
                WRITE_REQUIRED,
                reference_to=["Contact"],
                relationship_name="Contact",
                child_relationship="OpportunityContactRoles",
                cascade_delete=True,
                label="Contact ID",
            ),
            documented("Role", "picklist", WRITE, length=40, picklist=PICK["ContactRole"]),
            documented(
                "IsPrimary", "boolean", "Create, Defaulted on create, Filter, Group, Sort, Update", label="Primary"
            ),
        ],
        flags={"feedEnabled": False, "mruEnabled": False, "searchable": False, "undeletable": False},
    )


def _profile() -> ObjectDef:
    return ObjectDef(
        "Profile",
        "00e",
        "Profile",
        "Profile",
        [
            *system_fields(owner=False, deletable=False),
            documented("Name", "string", WRITE_REQUIRED, length=255, name_field=True),
            documented("Description", "string", WRITE, length=255),
            documented(
                "UserType",
                "picklist",
                "Filter, Group, Nillable, Restricted picklist, Sort",
                length=40,
                picklist=["Standard", "PowerPartner", "CsnOnly", "Guest"],
            ),
            *activity_dates()[1:],
        ],
        flags=SETUP_FLAGS,
    )


def _permission_set() -> ObjectDef:
    return ObjectDef(
        "PermissionSet",
        "0PS",
        "Permission Set",
        "Permission Sets",
        [
            *system_fields(owner=False, deletable=False),
            documented("Name", "string", WRITE_REQUIRED, length=80),
            documented("Label", "string", WRITE_REQUIRED, length=80, name_field=True),
            documented("Description", "textarea", "Create, Nillable, Update", length=255),
            documented("IsOwnedByProfile", "boolean", "Defaulted on create, Filter, Group, Sort"),
            documented("ProfileId", "reference", READ, reference_to=["Profile"], relationship_name="Profile"),
            documented("NamespacePrefix", "string", READ, length=15),
        ],
        flags=SETUP_FLAGS,
    )


def _user_role() -> ObjectDef:
    return ObjectDef(
        "UserRole",
        "00E",
        "Role",
        "Role",
        [
            F("Id", "id", id_lookup=True, **SYSTEM),
            documented("Name", "string", WRITE_REQUIRED, length=80, name_field=True),
            documented("DeveloperName", "string", WRITE_REQUIRED, length=80),
            documented("ParentRoleId", "reference", WRITE, reference_to=["UserRole"], relationship_name="ParentRole"),
            documented("RollupDescription", "string", WRITE, length=80),
            F("LastModifiedDate", "datetime", **SYSTEM),
            ref("LastModifiedById", ["User"], "LastModifiedBy", label="Last Modified By ID", **SYSTEM),
            F("SystemModstamp", "datetime", label="System Modstamp", **SYSTEM),
        ],
        flags=SETUP_FLAGS,
    )


def _record_type() -> ObjectDef:
    return ObjectDef(
        "RecordType",
        "012",
        "Record Type",
        "Record Types",
        [
            *system_fields(owner=False, deletable=False),
            documented("Name", "string", WRITE_REQUIRED, length=80, name_field=True, label="Record Type Name"),
            documented("DeveloperName", "string", WRITE_REQUIRED, length=80, label="Record Type Name"),
            documented("NamespacePrefix", "string", READ, length=15),
            documented("Description", "string", WRITE, length=255),
            documented(
                "SobjectType",
                "picklist",
                "Create, Filter, Group, Restricted picklist, Sort",
                length=40,
                picklist=list(RECORD_TYPES),
            ),
            documented("IsActive", "boolean", "Create, Defaulted on create, Filter, Group, Sort, Update"),
        ],
        flags=SETUP_FLAGS,
    )


def _organization() -> ObjectDef:
    """Organization: the fields of a real record (cumulusci_organization.json, the CumulusCI capture), typed as
    the Object Reference types them; read only through the API here."""
    ro = "Filter, Group, Nillable, Sort"
    pick = "Filter, Group, Restricted picklist, Sort"
    flag = "Defaulted on create, Filter, Group, Sort"
    return ObjectDef(
        "Organization",
        "00D",
        "Organization",
        "Organizations",
        [
            F("Id", "id", id_lookup=True, **SYSTEM),
            documented("Name", "string", "Filter, Group, Sort", length=80, name_field=True),
            documented("Division", "string", ro, length=80),
            *[FieldDef(**{**f.__dict__, **READ_ONLY}) for f in address("")],
            documented("Phone", "phone", ro, length=40),
            documented("Fax", "phone", ro, length=40),
            documented("PrimaryContact", "string", ro, length=80),
            *[
                documented(n, "picklist", pick, length=40, picklist=v)
                for n, v in (
                    ("DefaultLocaleSidKey", ["en_US", "en_GB", "fr_FR", "de_DE", "ja_JP"]),
                    ("TimeZoneSidKey", PICK["TimeZone"]),
                    ("LanguageLocaleKey", ["en_US", "fr", "de", "ja"]),
                )
            ],
            *[documented(n, "boolean", flag) for n in ORG_FLAGS],
            documented("FiscalYearStartMonth", "int", ro, digits=9),
            documented("UsesStartDateAsFiscalYearName", "boolean", flag),
            *[
                documented(n, "picklist", pick, length=40, picklist=ACCESS_LEVELS)
                for n in (
                    "DefaultAccountAccess",
                    "DefaultContactAccess",
                    "DefaultOpportunityAccess",
                    "DefaultLeadAccess",
                    "DefaultCaseAccess",
                    "DefaultCalendarAccess",
                    "DefaultPricebookAccess",
                    "DefaultCampaignAccess",
                )
            ],
            documented("UiSkin", "picklist", pick, length=40, picklist=["Theme1", "Theme2", "Theme3", "Theme4d"]),
            documented("SignupCountryIsoCode", "string", ro, length=2),
            documented("TrialExpirationDate", "datetime", "Filter, Nillable, Sort"),
            documented("OrganizationType", "picklist", pick, length=40, picklist=ORG_TYPES),
            documented("NamespacePrefix", "string", ro, length=15),
            documented("InstanceName", "string", ro, length=5),
            documented("IsSandbox", "boolean", flag),
            documented("DelegatedAuthenticationServiceUrl", "url", ro, length=1000),
            documented("ComplianceBccEmail", "email", ro, length=80),
            documented("NumKnowledgeService", "int", ro, digits=9),
            documented("WebToCaseDefaultOrigin", "string", ro, length=40),
            documented("MonthlyPageViewsUsed", "int", ro, digits=9),
            documented("MonthlyPageViewsEntitlement", "int", ro, digits=9),
            documented("IsReadOnly", "boolean", flag),
            F("CreatedDate", "datetime", **SYSTEM),
            ref("CreatedById", ["User"], "CreatedBy", label="Created By ID", **SYSTEM),
            F("LastModifiedDate", "datetime", **SYSTEM),
            ref("LastModifiedById", ["User"], "LastModifiedBy", label="Last Modified By ID", **SYSTEM),
            F("SystemModstamp", "datetime", label="System Modstamp", **SYSTEM),
        ],
        flags={**SETUP_FLAGS, "createable": False, "deletable": False, "searchable": False},
    )


ORG_FLAGS = [
    "ReceivesInfoEmails",
    "ReceivesAdminInfoEmails",
    "PreferencesRequireOpportunityProducts",
    "PreferencesTransactionSecurityPolicy",
    "PreferencesTerminateOldestSession",
    "PreferencesConsentManagementEnabled",
    "PreferencesAutoSelectIndividualOnMerge",
    "PreferencesLightningLoginEnabled",
    "PreferencesOnlyLLPermUserAllowed",
]
ACCESS_LEVELS = [
    "None",
    "Read",
    "Edit",
    "ReadEditTransfer",
    "ControlledByParent",
    "All",
    "ReadSelect",
    "HideDetailsInsert",
]
ORG_TYPES = ["Developer Edition", "Enterprise Edition", "Professional Edition", "Unlimited Edition"]


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
        _profile(),
        _permission_set(),
        _user_role(),
        _record_type(),
    ]
    cat = {o.name: o for o in objs}
    for name, rts in record_type_ids().items():
        cat[name].record_types = [[rt_id, dev, label] for rt_id, dev, label in rts]
    cat.update((o.name, o) for o in associated_objects(cat))
    return cat
