"""Deterministic generation of an org (records, files, metadata components) from a seed and a scale."""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable, Iterator
from typing import Any

from sforg.clock import iso_date, parse_datetime, stamp
from sforg.files import digests, generated_blocks
from sforg.ids import make_id
from sforg.schema import ObjectDef
from sforg.store import Store

SCALES = {"tiny": 1000, "small": 50_000, "large": 1_000_000, "xlarge": 10_000_000}
# The ten data objects and their share of the records, up to `large`; files and users come on top.
WEIGHTS = [
    ("Account", 0.10),
    ("Contact", 0.20),
    ("Campaign", 0.01),
    ("Opportunity", 0.10),
    ("Lead", 0.10),
    ("Case", 0.10),
    ("Task", 0.15),
    ("CampaignMember", 0.08),
    ("Invoice__c", 0.08),
    ("Shipment__c", 0.08),
]
# Beyond `large` an org grows in its activities, as real ones do: Task holds half the records (`xlarge`: 5,000,000
# of 10,000,000), Account, Contact and Opportunity keep their 40 % (bench/restore.py sizes its org by that share)
# and the other six share the last tenth.
WEIGHTS_BEYOND_LARGE = [
    ("Account", 0.10),
    ("Contact", 0.20),
    ("Campaign", 0.005),
    ("Opportunity", 0.10),
    ("Lead", 0.03),
    ("Case", 0.03),
    ("Task", 0.50),
    ("CampaignMember", 0.015),
    ("Invoice__c", 0.01),
    ("Shipment__c", 0.01),
]
DAY = 86400.0

FIRST = [
    "James",
    "Mary",
    "Zoë",
    "Łukasz",
    "José",
    "Aiko",
    "Olivia",
    "Liam",
    "Noah",
    "Emma",
    "Chloé",
    "Søren",
    "Priya",
    "Mateo",
    "Fatima",
    "Hiroshi",
    "Anna",
    "Björn",
    "Nadia",
    "Omar",
]
LAST = [
    "Smith",
    "O'Brien",
    "García",
    "Müller",
    "Tanaka",
    "Nguyen",
    "Kowalski",
    "Dubois",
    "Johnson",
    "Rossi",
    "Andersson",
    "Patel",
    "Kim",
    "Silva",
    "Novak",
    "Cohen",
    "Ivanova",
    "Brown",
    "Lee",
    "Martin",
]
WORDS = [
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Stark",
    "Wayne",
    "Wonka",
    "Tyrell",
    "Cyberdyne",
    "Soylent",
    "Hooli",
    "Vandelay",
    "Prestige",
    "Oscorp",
    "Gringotts",
    "Nakatomi",
    "Massive",
    "Dynamic",
    "Blue",
    "Nordic",
]
SUFFIX = ["Inc.", "Ltd", "GmbH", "S.A.", "LLC", "& Co.", "Group", "Holdings", "Partners", "日本"]
# Fields whose generated value is the row's number in a fixed format.
NUMBERED: dict[str, Callable[[random.Random, int], Any]] = {
    "Username": lambda r, i: f"user{i}@sforg.example.com",
    "Alias": lambda r, i: f"u{i}",
    "CaseNumber": lambda r, i: f"{i + 1:08d}",
    "External_Id__c": lambda r, i: f"EXT-{i:08d}",
    "Tracking__c": lambda r, i: f"TRK{i:09d}",
    "DeveloperName": lambda r, i: f"Doc_{i}",
    # company identifiers in their real formats (Account)
    "YearStarted": lambda r, i: str(1900 + int(r.random() * 124)),
    "Sic": lambda r, i: f"{int(r.random() * 9000) + 1000}",
    "NaicsCode": lambda r, i: f"{int(r.random() * 900000) + 100000}",
    "DunsNumber": lambda r, i: f"{int(r.random() * 900000000) + 100000000}",
    "TickerSymbol": lambda r, i: WORDS[i % 20][:4].upper(),
}
# The Organization record's values: a real one's (cumulusci_organization.json; Name and Id are this org's).
ORGANIZATION: dict[str, Any] = {
    "Name": "sforg",
    "Country": "US",
    "PrimaryContact": "Admin User",
    "DefaultLocaleSidKey": "en_US",
    "TimeZoneSidKey": "America/Los_Angeles",
    "LanguageLocaleKey": "en_US",
    "ReceivesInfoEmails": 1,
    "ReceivesAdminInfoEmails": 1,
    "PreferencesRequireOpportunityProducts": 0,
    "PreferencesTransactionSecurityPolicy": 0,
    "PreferencesTerminateOldestSession": 0,
    "PreferencesConsentManagementEnabled": 1,
    "PreferencesAutoSelectIndividualOnMerge": 0,
    "PreferencesLightningLoginEnabled": 1,
    "PreferencesOnlyLLPermUserAllowed": 0,
    "FiscalYearStartMonth": 1,
    "UsesStartDateAsFiscalYearName": 0,
    "DefaultAccountAccess": "Edit",
    "DefaultContactAccess": "ControlledByParent",
    "DefaultOpportunityAccess": "Edit",
    "DefaultLeadAccess": "ReadEditTransfer",
    "DefaultCaseAccess": "ReadEditTransfer",
    "DefaultCalendarAccess": "HideDetailsInsert",
    "DefaultPricebookAccess": "ReadSelect",
    "DefaultCampaignAccess": "All",
    "UiSkin": "Theme3",
    "SignupCountryIsoCode": "US",
    "OrganizationType": "Developer Edition",
    "InstanceName": "CS420",
    "IsSandbox": 0,
    "IsReadOnly": 0,
    "NumKnowledgeService": 2,
    "WebToCaseDefaultOrigin": "Web",
    "MonthlyPageViewsUsed": 0,
    "MonthlyPageViewsEntitlement": 0,
}
# Standard fields a generated org leaves empty (or false): set by merges, record types, Data.com, portals and
# email bounces, none of which the generator plays; the rest of the standard fields are filled by type.
UNSET = frozenset(
    {
        "MasterRecordId",
        "PhotoUrl",
        "Jigsaw",
        "JigsawCompanyId",
        "JigsawContactId",
        "ChannelProgramName",
        "ChannelProgramLevelName",
        "LastCURequestDate",
        "LastCUUpdateDate",
        "EmailBouncedReason",
        "EmailBouncedDate",
    }
)
# The captured standard fields the aligned objects gained (standard.align_with_capture), of features the generator
# does not play: assets, Data.com, individuals, recurring and group events, reminders, the opportunity's
# last-change history rows. Per object: Account and Contact fill some of the same names, and their values (so
# the org a seed makes) stay what they were.
UNSET_BY_OBJECT = {
    "Case": frozenset({"AssetId"}),
    "Lead": frozenset(
        {"PhotoUrl", "Jigsaw", "JigsawContactId", "CleanStatus", "CompanyDunsNumber", "DandbCompanyId", "IndividualId"}
    ),
    "Opportunity": frozenset({"LastAmountChangedHistoryId", "LastCloseDateChangedHistoryId"}),
    "Event": frozenset(
        {
            "GroupEventType",
            "RecurrenceActivityId",
            "RecurrenceStartDateTime",
            "RecurrenceEndDateOnly",
            "RecurrenceTimeZoneSidKey",
            "RecurrenceType",
            "RecurrenceInterval",
            "RecurrenceDayOfWeekMask",
            "RecurrenceDayOfMonth",
            "RecurrenceInstance",
            "RecurrenceMonthOfYear",
            "ReminderDateTime",
            "Recurrence2PatternText",
            "Recurrence2PatternVersion",
            "Recurrence2PatternStartDate",
            "Recurrence2PatternTimeZone",
        }
    ),
}
FALSE_FLAGS = frozenset(
    {
        "IsPartner",
        "IsCustomerPortal",
        "IsEmailBounced",
        "HasOpportunityLineItem",
        "IsPrivate",
        "IsArchived",
        "IsChild",
        "IsGroupEvent",
        "IsRecurrence",
        "IsReminderSet",
        "IsRecurrence2",
        "IsRecurrence2Exclusion",
        "IsRecurrence2Exception",
    }
)


def fiscal(values: dict[str, Any]) -> None:
    """An Opportunity's fields Salesforce computes: its fiscal period (calendar fiscal year, the org's default)
    from CloseDate and ExpectedRevenue = Amount x Probability."""
    close = values.get("CloseDate")
    if close:
        year, quarter = int(close[:4]), (int(close[5:7]) - 1) // 3 + 1
        values.update(FiscalYear=year, FiscalQuarter=quarter, Fiscal=f"{year} {quarter}")
    amount, probability = values.get("Amount"), values.get("Probability")
    values["ExpectedRevenue"] = None if amount is None or probability is None else round(amount * probability / 100, 2)


def event_times(values: dict[str, Any]) -> None:
    """An Event's times hang together: it ends DurationInMinutes after it starts (Object Reference, Event)."""
    start = values.get("StartDateTime")
    minutes = values.get("DurationInMinutes")
    if start is None or minutes is None:
        values.update(StartDateTime=None, EndDateTime=None, ActivityDateTime=None, DurationInMinutes=None)
        return
    minutes = 15 * (1 + minutes % 16)
    begin = parse_datetime(start).timestamp()
    values.update(DurationInMinutes=minutes, ActivityDateTime=start, EndDateTime=stamp(begin + 60 * minutes))
    values.update(ActivityDate=start[:10], EndDate=stamp(begin + 60 * minutes)[:10])
    what = values.get("WhatId") or ""
    values["AccountId"] = what if what.startswith("001") else None


def internal_user(values: dict[str, Any]) -> None:
    """The org's users are internal: no portal Contact or Account."""
    values.update(ContactId=None, AccountId=None)


def no_hierarchy(values: dict[str, Any]) -> None:
    """A generated Case has no parent case (an org's case hierarchies are rare and made by hand)."""
    values["ParentId"] = None


def converted(values: dict[str, Any]) -> None:
    """A Lead's conversion fields are set only on a converted lead."""
    if not values.get("IsConverted"):
        values.update(ConvertedDate=None, ConvertedAccountId=None, ConvertedContactId=None, ConvertedOpportunityId=None)


def activity(values: dict[str, Any]) -> None:
    """A Task's fields Salesforce computes: AccountId from an Account WhatId (Object Reference: "If the value of
    WhatId is ... Account ... Salesforce uses that object's AccountId"), IsHighPriority from Priority, and
    CompletedDateTime only once completed."""
    what = values.get("WhatId") or ""
    values["AccountId"] = what if what.startswith("001") else None
    values["IsHighPriority"] = 1 if values.get("Priority") == "High" else 0
    if values.get("Status") != "Completed":
        values["CompletedDateTime"] = None


DERIVED: dict[str, Callable[[dict[str, Any]], None]] = {
    "Opportunity": fiscal,
    "Lead": converted,
    "Task": activity,
    "Event": event_times,
    "Case": no_hierarchy,
    "User": internal_user,
}
CITIES = [
    ("Paris", "IDF", "France", "75001"),
    ("New York", "NY", "USA", "10001"),
    ("Tokyo", "Tokyo", "Japan", "100-0001"),
    ("Berlin", "BE", "Germany", "10115"),
    ("São Paulo", "SP", "Brazil", "01000-000"),
    ("Toronto", "ON", "Canada", "M5H 2N2"),
]
SENTENCES = [
    "Renewal due next quarter.",
    'Customer asked for a "quote", see notes.',
    "Call back, after 5pm; ask for Ana.",
    "Line one\nLine two of the note.",
    "Prefers email — not phone.",
    "VIP: handle with care, 100% priority.",
    "Legacy import, values may be 'odd'.",
    "Ça va, merci.",
]


# The audit columns of generated rows, and the internal columns of rows holding a file body.
AUDIT_COLS = ["CreatedDate", "CreatedById", "LastModifiedDate", "LastModifiedById", "SystemModstamp"]
OWNED_COLS = ["Id", "IsDeleted", "OwnerId", *AUDIT_COLS]
BLOB_COLS = ["_deleted_at", "_blob", "_sha256"]


def audited(user: str, created: str, modified: str) -> list[str]:
    """Values of AUDIT_COLS: created and last modified by the same user."""
    return [created, user, modified, user, modified]


def owned(owner: str, created: str, modified: str) -> list[str]:
    """Values of OwnerId and AUDIT_COLS."""
    return [owner, *audited(owner, created, modified)]


def blob_cells(content: tuple[int, int], sha: str) -> list[Any]:
    """Values of BLOB_COLS for a generated body (seed, size): bodies are generated on the fly when read."""
    return [None, f"gen:{content[0]}:{content[1]}", sha]


# Activities and roles on top of the ten (a share of the total each).
EXTRA = [("Event", 0.03), ("OpportunityContactRole", 0.02)]
# Setup records: the profiles and roles users hold, the record types of Account and Opportunity.
PROFILES = [
    ("System Administrator", "Standard"),
    ("Standard User", "Standard"),
    ("Read Only", "Standard"),
    ("Integration User", "Standard"),
]
ROLES = [("CEO", "CEO"), ("VP Sales", "VP_Sales"), ("Sales Manager", "Sales_Manager"), ("Support", "Support")]


def weights(total: int) -> list[tuple[str, float]]:
    """The ten data objects' shares of an org of `total` records."""
    return WEIGHTS if total <= SCALES["large"] else WEIGHTS_BEYOND_LARGE


def plan(total: int) -> dict[str, int]:
    """Record counts per object for a total; users and files scale with it."""
    counts = {name: max(2, int(total * w)) for name, w in [*weights(total), *EXTRA]}
    counts["User"] = max(5, min(200, total // 5000))
    counts.update(Profile=len(PROFILES), UserRole=len(ROLES), RecordType=4, PermissionSet=2, Organization=1)
    return counts


def file_count(total: int) -> int:
    if total >= 1_000_000:
        return 2000
    if total >= 50_000:
        return 300
    return max(12, min(2000, total // 80))


class Generator:
    """Builds every table of a new org into a Store."""

    def __init__(
        self,
        store: Store,
        catalogue: dict[str, ObjectDef],
        seed: int,
        total: int,
        anchor: float,
        progress: Callable[[str], None] | None = None,
        org_id: str = "00D000000000000AAA",
    ) -> None:
        self.store, self.cat, self.seed, self.total = store, catalogue, seed, total
        self.org_id = org_id
        self.anchor = anchor
        self.counts = plan(total)
        self.progress = progress or (lambda _m: None)
        self.next_counter: dict[str, int] = {}
        # (deleted at, object, Id) of the records generated live that the org deletes once built (oldest first)
        self.to_bin: list[tuple[str, str, str]] = []
        # every Id of an object's records, made once for the object's rows and the lookups to them (making an Id is
        # half the cost of a row otherwise: a row holds its own Id, its owner's and two or three lookups)
        self._ids: dict[str, list[str]] = {}

    # ------------------------------------------------------------ helpers
    def rid(self, obj: str, index: int) -> str:
        return make_id(self.cat[obj].key_prefix, index + 1)

    def ids(self, obj: str) -> list[str]:
        """The Ids of obj's generated records, in order: `rid(obj, i)` is `ids(obj)[i]`."""
        made = self._ids.get(obj)
        if made is None:
            prefix = self.cat[obj].key_prefix
            made = self._ids[obj] = [make_id(prefix, n) for n in range(1, self.counts[obj] + 1)]
        return made

    def pick(self, rng: random.Random, obj: str) -> str:
        return self.ids(obj)[int(rng.random() * self.counts[obj])]

    def times(self, rng: random.Random) -> tuple[str, str, float]:
        """CreatedDate, SystemModstamp (as stored text) and the modstamp epoch."""
        created = self.anchor - 5 * DAY - rng.random() * 725 * DAY
        r = rng.random()
        if r < 0.06:  # a few rows changed in the last week, so windows have something to find
            modified = self.anchor - rng.random() * 7 * DAY
        elif r < 0.5:
            modified = created + rng.random() * (self.anchor - 8 * DAY - created)
        else:
            modified = created
        modified = max(modified, created)
        return stamp(created), stamp(modified), modified

    def field_gen(self, obj: ObjectDef, fname: str, ftype: str, f: Any) -> Callable[[random.Random, int], Any]:
        """A fast value generator for one stored column."""
        name = fname
        nillable = f.nillable and not f.system
        null_rate = 0.1 if nillable else 0.0
        gen: Callable[[random.Random, int], Any]
        if name in UNSET or name in UNSET_BY_OBJECT.get(obj.name, ()):
            return lambda r, i: None
        if name in FALSE_FLAGS:
            return lambda r, i: 0
        if name == "RecordTypeId":
            types = [rt[0] for rt in obj.record_types]
            return lambda r, i: types[int(r.random() * len(types))] if types else None
        if name in ("Name",) and obj.name in ("Account",):

            def gen(r: random.Random, i: int) -> Any:
                return f"{WORDS[int(r.random() * 20)]} {WORDS[int(r.random() * 20)]} {SUFFIX[i % 10]} {i}"
        elif name == "Name" and obj.name in ("Contact", "Lead", "User"):
            return lambda r, i: None  # filled from FirstName/LastName by the row builder
        elif name == "Name":
            label = obj.label
            return lambda r, i: f"{label} {i + 1:06d}"
        elif name == "FirstName":
            return lambda r, i: FIRST[int(r.random() * 20)]
        elif name == "LastName":
            return lambda r, i: LAST[int(r.random() * 20)]
        elif name == "Company":
            return lambda r, i: f"{WORDS[int(r.random() * 20)]} {SUFFIX[i % 10]}"
        elif name in NUMBERED:
            return NUMBERED[name]
        elif name.endswith("City"):
            return lambda r, i: CITIES[i % 6][0]
        elif name.endswith("State") and ftype == "string":
            return lambda r, i: CITIES[i % 6][1]
        elif name.endswith("Country"):
            return lambda r, i: CITIES[i % 6][2]
        elif name.endswith("PostalCode"):
            return lambda r, i: CITIES[i % 6][3]
        elif name.endswith("Street"):

            def gen(r: random.Random, i: int) -> Any:
                return f"{int(r.random() * 900) + 1} Main Street" + ("\nSuite 4" if i % 7 == 0 else "")
        elif ftype == "email":
            return lambda r, i: f"{FIRST[i % 20].lower()}.{i}@example.com" if r.random() > null_rate else None
        elif ftype == "phone":
            # an exchange per field: a record's Phone, Fax and MobilePhone are different numbers, as in an org
            exchange = 100 + zlib.crc32(f"{obj.name}.{name}".encode()) % 900
            return lambda r, i: f"(555) {exchange}-{i % 10000:04d}" if r.random() > null_rate else None
        elif ftype == "url":
            return lambda r, i: f"https://www.{WORDS[i % 20].lower()}.example.com" if r.random() > null_rate else None
        elif ftype == "textarea":
            short = f.length <= 255

            def gen(r: random.Random, i: int) -> Any:
                if r.random() < 0.3:
                    return None
                n = 1 if short else 1 + int(r.random() * 3)
                return " ".join(SENTENCES[int(r.random() * 8)] for _ in range(n))
        elif ftype in ("string", "combobox"):
            maxlen = f.length

            def gen(r: random.Random, i: int) -> Any:
                return None if r.random() < null_rate else f"{fname} {i}"[:maxlen]
        elif ftype == "picklist":
            values = f.picklist
            n = len(values)
            return lambda r, i: values[int(r.random() * n)] if r.random() >= null_rate else None
        elif ftype == "multipicklist":
            values = f.picklist
            n = len(values)

            def gen(r: random.Random, i: int) -> Any:
                if r.random() < 0.2:
                    return None
                picked = sorted({values[int(r.random() * n)] for _ in range(1 + int(r.random() * 3))}, key=values.index)
                return ";".join(picked)
        elif ftype == "boolean":
            return lambda r, i: 1 if r.random() < 0.5 else 0
        elif ftype == "int":
            top = 10 ** min(f.digits, 6)
            return lambda r, i: int(r.random() * top) if r.random() >= null_rate else None
        elif ftype in ("double", "currency", "percent"):
            if "Latitude" in name:
                return lambda r, i: round(-60 + r.random() * 120, 6) if r.random() >= 0.2 else None
            if "Longitude" in name:
                return lambda r, i: round(-170 + r.random() * 340, 6) if r.random() >= 0.2 else None
            top = 100.0 if ftype == "percent" else min(10.0 ** (f.precision - f.scale), 5_000_000.0)
            scale = f.scale
            return lambda r, i: round(r.random() * top, scale) if r.random() >= null_rate else None
        elif ftype == "date":
            anchor = self.anchor

            def gen(r: random.Random, i: int) -> Any:
                return None if r.random() < null_rate else iso_date(anchor - (r.random() * 900 - 90) * DAY)
        elif ftype == "datetime":
            anchor = self.anchor

            def gen(r: random.Random, i: int) -> Any:
                return None if r.random() < null_rate else stamp(anchor - r.random() * 400 * DAY)
        elif ftype == "reference":
            targets = [t for t in f.reference_to if t in self.counts]
            if not targets:
                return lambda r, i: None
            nt = len(targets)
            required = not f.nillable

            def gen(r: random.Random, i: int) -> Any:
                if not required and r.random() < 0.15:
                    return None
                return self.pick(r, targets[int(r.random() * nt)])
        elif ftype == "base64":
            return lambda r, i: None
        else:
            return lambda r, i: None
        return gen

    # ------------------------------------------------------------ records
    def rows(self, obj: ObjectDef, count: int) -> tuple[list[str], Iterator[list[Any]]]:
        system = [
            "Id",
            "IsDeleted",
            "OwnerId",
            "CreatedDate",
            "CreatedById",
            "LastModifiedDate",
            "LastModifiedById",
            "SystemModstamp",
        ]
        present = [c for c in system if obj.field(c)]
        others = [f for f in obj.stored_fields() if f.name not in system]
        columns = present + [f.name for f in others] + ["_deleted_at"]
        gens = [self.field_gen(obj, f.name, f.type, f) for f in others]
        names = [f.name for f in others]
        full_name = "Name" in names and "FirstName" in names and "LastName" in names
        ni, fi, li = (
            (names.index("Name"), names.index("FirstName"), names.index("LastName")) if full_name else (0, 0, 0)
        )
        has_deleted = "IsDeleted" in present
        can_soft_delete = has_deleted and not obj.hard_delete and obj.name != "User"
        users = self.counts["User"]
        user_ids = self.ids("User")
        own_ids = self.ids(obj.name) if count == self.counts.get(obj.name) else None
        active_at = names.index("IsActive") if obj.name == "User" and "IsActive" in names else None
        rng = random.Random(f"{self.seed}:{obj.name}")
        derive = DERIVED.get(obj.name)

        def it() -> Iterator[list[Any]]:
            for i in range(count):
                created, sms, _ = self.times(rng)
                owner = user_ids[int(rng.random() * users)]
                base: dict[str, Any] = {
                    "Id": own_ids[i] if own_ids is not None else make_id(obj.key_prefix, i + 1),
                    "IsDeleted": 0,
                    "OwnerId": owner,
                    "CreatedDate": created,
                    "CreatedById": owner,
                    "LastModifiedDate": sms,
                    "LastModifiedById": owner,
                    "SystemModstamp": sms,
                }
                values = [g(rng, i) for g in gens]
                if i == 0 and active_at is not None:
                    values[active_at] = 1  # the org's API user (005…1, who every client logs in as) is active
                    values[names.index("ProfileId")] = self.rid("Profile", 0)  # and a System Administrator
                if full_name:
                    first = values[fi]
                    values[ni] = f"{first} {values[li]}" if first else values[li]
                if derive is not None:
                    by_name = dict(zip(names, values, strict=True))
                    derive(by_name)
                    values = [by_name[n] for n in names]
                if can_soft_delete and rng.random() < 0.01:
                    # deleted after the build through the org's own delete (`to_bin`): its cascade family goes
                    # to the recycle bin with it and the lookups to it are cleared, as Salesforce does
                    # in the last 5 days: after every generated record's creation (its family's and referrers')
                    deleted_at = max(stamp(self.anchor - rng.random() * 5 * DAY), sms)
                    self.to_bin.append((deleted_at, obj.name, str(base["Id"])))
                yield [base[c] for c in present] + values + [None]

        return columns, it()

    def build_records(self) -> None:
        order = ["User"] + [name for name, _ in [*weights(self.total), *EXTRA]]
        for name in order:
            obj = self.cat[name]
            count = self.counts[name]
            columns, rows = self.rows(obj, count)
            self.store.insert_many(name, columns, rows)
            self.next_counter[name] = count + 1
            self.progress(f"{name}: {count} records")

    # ------------------------------------------------------------ files
    def file_sizes(self, rng: random.Random, n: int) -> list[tuple[int, int]]:
        """(content seed, size) per file; about one in ten repeats an earlier file's content."""
        big = self.total >= 1_000_000
        out: list[tuple[int, int]] = []
        for k in range(n):
            if out and rng.random() < 0.1:
                out.append(out[int(rng.random() * len(out))])
                continue
            r = rng.random()
            if r < 0.85:
                size = 1024 + int(rng.random() * 63 * 1024)
            elif r < 0.97 or not big:
                size = 65536 + int(rng.random() * (2 * 1024 * 1024 - 65536))
            else:
                size = 2 * 1024 * 1024 + int(rng.random() * 48 * 1024 * 1024)
            out.append((self.seed * 100_000 + k, size))
        if big:
            out[0] = (self.seed * 100_000 + n + 1, 1024)
            out[-1] = (self.seed * 100_000 + n + 2, 50 * 1024 * 1024)
        return out

    def build_files(self) -> None:
        n = file_count(self.total)
        rng = random.Random(f"{self.seed}:files")
        contents = self.file_sizes(rng, n)
        digest_cache: dict[tuple[int, int], tuple[str, str, int]] = {}

        def digest(c: tuple[int, int]) -> tuple[str, str, int]:
            if c not in digest_cache:
                digest_cache[c] = digests(generated_blocks(*c))
            return digest_cache[c]

        exts = [
            ("pdf", "PDF", "application/pdf"),
            ("png", "PNG", "image/png"),
            ("txt", "TEXT", "text/plain"),
            ("csv", "CSV", "text/csv"),
            ("docx", "WORD_X", "application/octet-stream"),
        ]
        n_cv = int(n * 0.6)
        n_att = int(n * 0.3)
        n_doc = n - n_cv - n_att
        # ContentDocument + ContentVersion: one to three versions per document.
        docs: list[list[Any]] = []
        versions: list[list[Any]] = []
        k = 0
        di = 0
        while k < n_cv:
            nver = min(n_cv - k, 1 + (1 if rng.random() < 0.25 else 0) + (1 if rng.random() < 0.1 else 0))
            doc_id = make_id(self.cat["ContentDocument"].key_prefix, di + 1)
            ext, ftype, _ = exts[di % 5]
            title = f'File {di + 1} - report, "final"'
            owner = self.pick(rng, "User")
            created, sms, _ = self.times(rng)
            latest = ""
            latest_size = 0
            for v in range(nver):
                content = contents[k]
                sha, md5, size = digest(content)
                vid = make_id(self.cat["ContentVersion"].key_prefix, k + 1)
                vstamp = sms if v == nver - 1 else created
                versions.append(
                    [
                        vid,
                        0,
                        *owned(owner, vstamp, vstamp),
                        doc_id,
                        title,
                        f"file_{di + 1}.{ext}",
                        None,
                        size,
                        ftype,
                        ext,
                        str(v + 1),
                        1 if v == nver - 1 else 0,
                        md5,
                        None if v == 0 else "Revised",
                        *blob_cells(content, sha),
                    ]
                )
                latest, latest_size = vid, size
                k += 1
            docs.append(
                [
                    doc_id,
                    0,
                    *owned(owner, created, sms),
                    title,
                    ftype,
                    ext,
                    latest_size,
                    latest,
                    None,
                ]
            )
            di += 1
        self.store.insert_many(
            "ContentDocument",
            [
                *OWNED_COLS,
                "Title",
                "FileType",
                "FileExtension",
                "ContentSize",
                "LatestPublishedVersionId",
                "_deleted_at",
            ],
            docs,
        )
        self.store.insert_many(
            "ContentVersion",
            [
                *OWNED_COLS,
                "ContentDocumentId",
                "Title",
                "PathOnClient",
                "VersionData",
                "ContentSize",
                "FileType",
                "FileExtension",
                "VersionNumber",
                "IsLatest",
                "Checksum",
                "ReasonForChange",
                *BLOB_COLS,
            ],
            versions,
        )
        self.next_counter["ContentDocument"] = di + 1
        # Each document is linked to its owner and to one record (the files' parents a backup must find).
        links = []
        parents = ["Account", "Opportunity", "Case"]
        for n, doc in enumerate(docs):
            links.append([make_id("06A", 2 * n + 1), 0, doc[7], doc[2], doc[0], "I", "AllUsers"])
            links.append(
                [
                    make_id("06A", 2 * n + 2),
                    0,
                    doc[7],
                    self.pick(rng, parents[n % 3]),
                    doc[0],
                    "V",
                    "AllUsers",
                ]
            )
        self.store.insert_many(
            "ContentDocumentLink",
            [
                "Id",
                "IsDeleted",
                "SystemModstamp",
                "LinkedEntityId",
                "ContentDocumentId",
                "ShareType",
                "Visibility",
            ],
            links,
        )
        self.next_counter["ContentDocumentLink"] = len(links) + 1
        self.next_counter["ContentVersion"] = k + 1

        def body_and_author(index: int, n: int) -> tuple[tuple[int, int], str, int, str, str, str, str, str]:
            """The index-th body (its digest, size, extension and MIME type by n), a user and its times."""
            content = contents[index]
            sha, _md5, size = digest(content)
            ext, _, mime = exts[n % 5]
            return content, sha, size, ext, mime, self.pick(rng, "User"), *self.times(rng)[:2]

        # Attachments on accounts, opportunities and cases.
        atts = []
        parents = ["Account", "Opportunity", "Case"]
        for a in range(n_att):
            content, sha, size, ext, mime, owner, created, sms = body_and_author(n_cv + a, a)
            atts.append(
                [
                    make_id(self.cat["Attachment"].key_prefix, a + 1),
                    0,
                    *owned(owner, created, sms),
                    self.pick(rng, parents[a % 3]),
                    f"attachment_{a + 1}.{ext}",
                    mime,
                    size,
                    None,
                    a % 4 == 0,
                    None,
                    *blob_cells(content, sha),
                ]
            )
        self.store.insert_many(
            "Attachment",
            [
                *OWNED_COLS,
                "ParentId",
                "Name",
                "ContentType",
                "BodyLength",
                "Body",
                "IsPrivate",
                "Description",
                *BLOB_COLS,
            ],
            atts,
        )
        self.next_counter["Attachment"] = n_att + 1
        documents = []
        for d in range(n_doc):
            content, sha, size, ext, mime, user, created, sms = body_and_author(n_cv + n_att + d, d)
            documents.append(
                [
                    make_id(self.cat["Document"].key_prefix, d + 1),
                    0,
                    *audited(user, created, sms),
                    user,
                    f"Document {d + 1}",
                    f"Doc_{d + 1}",
                    mime,
                    ext,
                    d % 2,
                    size,
                    None,
                    "Shared document",
                    "shared",
                    user,
                    *blob_cells(content, sha),
                ]
            )
        self.store.insert_many(
            "Document",
            [
                "Id",
                "IsDeleted",
                *AUDIT_COLS,
                "FolderId",
                "Name",
                "DeveloperName",
                "ContentType",
                "Type",
                "IsPublic",
                "BodyLength",
                "Body",
                "Description",
                "Keywords",
                "AuthorId",
                *BLOB_COLS,
            ],
            documents,
        )
        self.next_counter["Document"] = n_doc + 1
        self.progress(f"files: {n} ({len(docs)} documents, {n_att} attachments, {n_doc} documents)")

    # ------------------------------------------------------------ metadata
    def build_metadata(self) -> None:
        rng = random.Random(f"{self.seed}:metadata")
        per_type = 3 if self.total < 10_000 else (12 if self.total < 500_000 else 40)
        rows: list[tuple[str, str, str, str, str, str, str]] = []
        counter = [0]

        def add(mtype: str, full_name: str, file_name: str, content: str, prefix: str) -> None:
            counter[0] += 1
            created = stamp(self.anchor - (30 + rng.random() * 600) * DAY)
            modified = stamp(self.anchor - rng.random() * 30 * DAY)
            rows.append(
                (
                    mtype,
                    full_name,
                    make_id(prefix, counter[0]) if prefix else "",
                    file_name,
                    content,
                    created,
                    modified,
                )
            )

        from sforg.metadata import component_xml, object_xml

        for name, obj in self.cat.items():
            if obj.flags:
                continue  # setup and associated objects (history, share, feed, change event): no layout or object file
            add("CustomObject", name, f"objects/{name}.object", object_xml(obj), "01I" if obj.custom else "")
            for f in obj.fields:
                if f.custom and f.compound is None:
                    add("CustomField", f"{name}.{f.name}", f"objects/{name}.object", "", "00N")
            add(
                "Layout",
                f"{name}-{obj.label} Layout",
                f"layouts/{name}-{obj.label} Layout.layout",
                component_xml("Layout", f"{name}-{obj.label} Layout"),
                "00h",
            )
        for i in range(per_type * 2):
            nm = f"InvoiceService{i}" if i % 2 == 0 else f"AccountHelper{i}"
            add(
                "ApexClass",
                nm,
                f"classes/{nm}.cls",
                f"public with sharing class {nm} {{\n    // v1\n}}\n",
                "01p",
            )
        for i in range(per_type):
            nm = f"InvoiceTrigger{i}"
            add(
                "ApexTrigger",
                nm,
                f"triggers/{nm}.trigger",
                f"trigger {nm} on Invoice__c (before insert) {{\n}}\n",
                "01q",
            )
        for i in range(per_type):
            nm = f"Invoice_Approval_{i}"
            add("Flow", nm, f"flows/{nm}.flow", component_xml("Flow", nm), "301")
        for i in range(max(2, per_type // 2)):
            nm = f"Invoice_Access_{i}"
            add(
                "PermissionSet",
                nm,
                f"permissionsets/{nm}.permissionset",
                component_xml("PermissionSet", nm),
                "0PS",
            )
        for nm in ["Admin", "Standard", "ReadOnly", "Integration"][: max(2, min(4, per_type))]:
            add("Profile", nm, f"profiles/{nm}.profile", component_xml("Profile", nm), "00e")
        while len(rows) < (300 if self.total >= 1_000_000 else 0):
            i = len(rows)
            nm = f"Generated{i}"
            add("ApexClass", nm, f"classes/{nm}.cls", f"public class {nm} {{}}\n", "01p")
        with self.store.write_lock:
            c = self.store.conn()
            c.execute("BEGIN")
            c.executemany("INSERT OR REPLACE INTO metadata VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            c.execute("COMMIT")
        self.progress(f"metadata: {len(rows)} components")

    # ------------------------------------------------------------ setup
    def build_setup(self) -> None:
        """The org's setup records: Organization (the values of a real one, cumulusci_organization.json, with
        this org's Id and users), profiles, roles, record types and permission sets."""
        admin = self.rid("User", 0)
        created = stamp(self.anchor - 800 * DAY)

        def insert(obj: str, columns: list[str], rows: list[list[Any]]) -> None:
            self.store.insert_many(obj, columns, rows)
            self.next_counter[obj] = len(rows) + 1

        audit = audited(admin, created, created)
        insert("Organization", ["Id", *AUDIT_COLS, *ORGANIZATION], [[self.org_id, *audit, *ORGANIZATION.values()]])
        insert(
            "Profile",
            ["Id", *AUDIT_COLS, "Name", "UserType"],
            [[self.rid("Profile", i), *audit, name, kind] for i, (name, kind) in enumerate(PROFILES)],
        )
        roles = []
        for i, (name, dev) in enumerate(ROLES):
            parent = self.rid("UserRole", 0 if i < 3 else 1) if i else None
            roles.append([self.rid("UserRole", i), created, admin, created, name, dev, parent])
        insert(
            "UserRole",
            ["Id", "LastModifiedDate", "LastModifiedById", "SystemModstamp", "Name", "DeveloperName", "ParentRoleId"],
            roles,
        )
        insert(
            "RecordType",
            ["Id", *AUDIT_COLS, "Name", "DeveloperName", "SobjectType", "IsActive"],
            [
                [rt_id, *audit, label, dev, obj, 1]
                for obj in ("Account", "Opportunity")
                for rt_id, dev, label in self.cat[obj].record_types
            ],
        )
        insert(
            "PermissionSet",
            ["Id", *AUDIT_COLS, "Name", "Label", "IsOwnedByProfile"],
            [
                [self.rid("PermissionSet", 0), *audit, "Invoice_Access_0", "Invoice Access 0", 0],
                # the permission set a profile owns is named after the profile's Id
                [self.rid("PermissionSet", 1), *audit, f"X{self.rid('Profile', 0)}", "System Administrator", 1],
            ],
        )
        self.progress("setup: organization, profiles, roles, record types, permission sets")

    def build(self) -> dict[str, int]:
        for obj in self.cat.values():
            self.store.create_object(obj)
        self.build_setup()
        self.build_records()
        self.build_files()
        self._ids.clear()
        self.build_metadata()
        return self.next_counter
