"""The restore's pure rules (issue 17): describe -> ObjectInfo on real captures and on sforg's catalogue, what is
written, the order (self-lookups, the Invoice__c <-> Shipment__c cycle), type coercions, 15/18 Ids, nulls and
restore_empty, references through the Id map, masking, the decision, matching creates after a lost answer, the
proof. Milliseconds, no I/O."""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

import pytest

from services.canonical import id_suffix
from services.jobrunner import restore_domain as rd
from services.jobrunner.restore_domain import Decision, FieldInfo, ObjectInfo, State
from sforg import catalogue, schema

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "sforg" / "fixtures"  # copies of ../shared/salesforce/fixtures


def sfid(prefix: str, n: int) -> str:
    """An 18-character Id with its real checksum."""
    id15 = prefix + f"Ab{n:010d}"
    return id15 + id_suffix(id15)


def sforg_infos(cat: dict[str, schema.ObjectDef] | None = None) -> dict[str, ObjectInfo]:
    cat = cat if cat is not None else catalogue.build_catalogue()
    return {name: rd.object_info(schema.describe(o, cat, "62.0", "", set())) for name, o in cat.items()}


def fixture_info(name: str) -> ObjectInfo:
    return rd.object_info(json.loads((FIXTURES / name).read_text()))


INFOS = sforg_infos()
ACCOUNT, CONTACT, INVOICE, SHIPMENT = (INFOS[n] for n in ("Account", "Contact", "Invoice__c", "Shipment__c"))
ACC1, ACC2, ACC3 = sfid("001", 1), sfid("001", 2), sfid("001", 3)
INV1 = sfid("a00", 1)


# ---------------------------------------------------------------- describe -> ObjectInfo


def test_object_info_from_a_real_account_describe() -> None:
    info = fixture_info("cumulusci_account_describe.json")
    assert info.name == "Account" and info.key_prefix == "001"
    parent = info.fields["ParentId"]
    assert (
        parent.sf_type == "reference" and parent.reference_to == ("Account",) and parent.relationship_name == "Parent"
    )
    assert parent.createable and parent.updateable and parent.nillable and not parent.cascade_delete
    assert info.fields["BillingCity"].compound == "BillingAddress"
    assert info.fields["Name"].compound is None  # a real describe names Account.Name its own compound
    assert not info.fields["BillingAddress"].createable and info.fields["BillingAddress"].sf_type == "address"
    assert info.fields["OwnerId"].defaulted_on_create and not info.fields["OwnerId"].nillable
    assert info.field("billingcity") is info.fields["BillingCity"]
    children = {(c.child_object, c.field): c.cascade_delete for c in info.children}
    assert children[("Account", "ParentId")] is False and children[("AccountBrand", "AccountId")] is True


def test_object_info_from_sforg_master_detail_and_children() -> None:
    inv = SHIPMENT.fields["Invoice__c"]
    assert inv.cascade_delete and not inv.nillable and inv.reference_to == ("Invoice__c",)
    assert INVOICE.fields["Total_With_Tax__c"].calculated
    assert SHIPMENT.fields["Tracking__c"].external_id and SHIPMENT.fields["Tracking__c"].unique
    assert ("Shipment__c", "Invoice__c", True) in {
        (c.child_object, c.field, c.cascade_delete) for c in INVOICE.children
    }
    assert ("Contact", "AccountId") in {(c.child_object, c.field) for c in ACCOUNT.children}
    # a lookup that cascades deletes is still optional: not required, deferrable
    assert not rd.required(CONTACT.fields["AccountId"]) and rd.required(inv)
    assert not rd.required(ACCOUNT.fields["OwnerId"])  # defaulted on create: the restoring user
    assert SHIPMENT.fields["Destination__Latitude__s"].compound == "Destination__c"


# ---------------------------------------------------------------- restorable fields


def test_every_written_field_is_writable_and_nothing_writable_is_left_out() -> None:
    for info in [*INFOS.values(), fixture_info("cumulusci_account_describe.json")]:
        written, left_out = rd.restorable_fields(info, None)
        assert set(written).isdisjoint(left_out)
        for name in written:
            f = info.fields[name]
            assert (f.createable or f.updateable) and not f.calculated and f.sf_type not in ("address", "base64")
        assert not {"Id", "CreatedDate", "SystemModstamp", "LastModifiedById"} & set(written)


@pytest.mark.parametrize(
    ("obj", "selected", "written", "left_out"),
    [
        # formula, system, audit fields left out and named; Id never counted
        (
            "Invoice__c",
            ["Name", "Total_With_Tax__c", "Id", "CreatedDate"],
            ["Name"],
            ["Total_With_Tax__c", "CreatedDate"],
        ),
        # a compound parent is written through its components
        (
            "Account",
            ["BillingAddress"],
            [
                f"Billing{c}"
                for c in (
                    "Street",
                    "City",
                    "State",
                    "PostalCode",
                    "Country",
                    "Latitude",
                    "Longitude",
                    "GeocodeAccuracy",
                )
            ],
            [],
        ),
        ("Shipment__c", ["Destination__c"], ["Destination__Latitude__s", "Destination__Longitude__s"], []),
        # names in any case, written in describe's spelling, once; unknown ones (another org) left out as given
        ("Account", ["name", "NAME", "Missing__c"], ["Name"], ["Missing__c"]),
        # computed flags (IsClosed) are not writable
        ("Opportunity", ["IsClosed", "StageName"], ["StageName"], ["IsClosed"]),
        # a person's Name is compound, as a real Contact describe says (its parts' compoundFieldName): its parts
        ("Contact", ["Name", "LastName"], ["LastName", "FirstName", "Salutation"], []),
        # a file body is neither written nor counted: file jobs restore it
        ("Attachment", ["Body", "Name"], ["Name"], []),
    ],
)
def test_restorable_fields(obj: str, selected: list[str], written: list[str], left_out: list[str]) -> None:
    assert rd.restorable_fields(INFOS[obj], selected) == (written, left_out)


def test_restorable_fields_of_a_real_describe_leave_out_read_only_standard_fields() -> None:
    written, left_out = rd.restorable_fields(fixture_info("cumulusci_account_describe.json"), None)
    assert {"MasterRecordId", "PhotoUrl", "LastActivityDate", "IsDeleted", "JigsawCompanyId"} <= set(left_out)
    assert {"Name", "ParentId", "BillingCity", "IsPartner", "OwnerId"} <= set(written)
    assert "BillingAddress" not in left_out and "Id" not in left_out


# ---------------------------------------------------------------- order


def _check_parents_first(infos: dict[str, ObjectInfo], order: list[str], deferred: dict[str, set[str]]) -> None:
    assert sorted(order) == sorted(infos)
    pos = {n: i for i, n in enumerate(order)}
    for child, info in infos.items():
        for f in info.fields.values():
            if f.sf_type != "reference" or not rd.writable(f) or f.name in deferred.get(child, set()):
                continue
            for parent in f.reference_to:
                if parent in infos:
                    assert pos[parent] < pos[child], (child, f.name, parent)


def test_sforg_catalogue_order_puts_parents_first_and_defers_only_self_lookups_and_one_cycle() -> None:
    order, deferred = rd.restore_order(INFOS)
    _check_parents_first(INFOS, order, deferred)
    assert deferred == {
        "Account": {"ParentId"},
        "Contact": {"ReportsToId"},
        "Campaign": {"ParentId"},
        "Case": {"ParentId"},
        "UserRole": {"ParentRoleId"},
        # Contact.OwnerId -> User and User.ContactId -> Contact (a portal user): the optional side is patched after
        "User": {"ContactId"},
    }
    assert order.index("Account") < order.index("Contact") < order.index("Task")
    assert order.index("Opportunity") < order.index("Invoice__c") < order.index("Shipment__c")


def _with_invoice_lookup_to_shipment() -> dict[str, ObjectInfo]:
    cat = catalogue.build_catalogue()
    cat["Invoice__c"].fields.append(schema.ref("Last_Shipment__c", ["Shipment__c"], "Last_Shipment__r", "Latest__r"))
    cat["Invoice__c"].reindex()
    return sforg_infos(cat)


@pytest.mark.parametrize("names", [["Invoice__c", "Shipment__c"], ["Shipment__c", "Invoice__c"]])
def test_master_detail_cycle_creates_the_master_first_and_patches_its_lookup(names: list[str]) -> None:
    full = _with_invoice_lookup_to_shipment()
    infos = {n: full[n] for n in names}
    order, deferred = rd.restore_order(infos)
    # Shipment__c.Invoice__c is master-detail (required at create): never deferred, so Invoice__c comes first
    assert order == ["Invoice__c", "Shipment__c"]
    assert deferred == {"Invoice__c": {"Last_Shipment__c"}}
    order, deferred = rd.restore_order(full)
    _check_parents_first(full, order, deferred)
    assert deferred["Invoice__c"] == {"Last_Shipment__c"} and "Shipment__c" not in deferred


def test_a_cycle_of_lookups_is_cut_once_and_self_lookups_with_it() -> None:
    cat = catalogue.build_catalogue()
    # Account.Primary_Contact__c -> Contact, Contact.AccountId -> Account: a lookup cycle (as in the real org)
    cat["Account"].fields.append(schema.ref("Primary_Contact__c", ["Contact"], "PrimaryContact", "Primaries"))
    cat["Account"].reindex()
    full = sforg_infos(cat)
    infos = {n: full[n] for n in ("Contact", "Account")}
    order, deferred = rd.restore_order(infos)
    assert len(order) == 2
    first = order[0]
    cut = {f for fs in deferred.values() for f in fs} - {"ParentId", "ReportsToId"}
    assert len(cut) == 1  # one of the two lookups, on the object created first
    assert deferred[first] >= ({"Primary_Contact__c"} if first == "Account" else {"AccountId"})
    assert deferred["Account"] >= {"ParentId"} and deferred["Contact"] >= {"ReportsToId"}
    _check_parents_first(infos, order, deferred)


def test_real_account_and_contact_describes_cut_their_lookup_cycle() -> None:
    # the real capture: Account.Primary_Contact__c -> Contact and Contact.AccountId -> Account, both lookups;
    # Account.ParentId and Contact.ReportsToId self-lookups
    infos = {
        "Contact": fixture_info("cumulusci_contact_describe.json"),
        "Account": fixture_info("cumulusci_account_describe.json"),
    }
    order, deferred = rd.restore_order(infos)
    assert order == ["Contact", "Account"]  # a tie (one open lookup each): the given order
    assert deferred == {
        "Contact": {"ReportsToId", "AccountId"},
        "Account": {"ParentId", "ns__LinkedAccount__c"},
    }
    _check_parents_first(infos, order, deferred)


def _random_infos(seed: int) -> dict[str, ObjectInfo]:
    import random

    rnd = random.Random(seed)
    names = [f"O{i}__c" for i in range(rnd.randint(2, 7))]
    infos: dict[str, ObjectInfo] = {}
    for name in names:
        fields: dict[str, FieldInfo] = {}
        for j in range(rnd.randint(0, 4)):
            target = rnd.choice(names)
            nillable = rnd.random() < 0.6
            fields[f"R{j}__c"] = FieldInfo(
                f"R{j}__c",
                "reference",
                True,
                nillable,
                nillable,
                False,
                (target,),
                None,
                False,
                False,
                False,
                not nillable,
            )
        infos[name] = ObjectInfo(name, "a00", fields, ())
    return infos


@pytest.mark.parametrize("seed", range(200))
def test_order_of_random_schemas_is_parents_first_and_defers_lookups_before_master_details(seed: int) -> None:
    infos = _random_infos(seed)
    order, deferred = rd.restore_order(infos)
    _check_parents_first(infos, order, deferred)
    pos = {n: i for i, n in enumerate(order)}
    # a master-detail is deferred only in a cycle of master-details alone (which Salesforce does not allow)
    md_edges = {(c, f.reference_to[0]) for c, i in infos.items() for f in i.fields.values() if not f.nillable}
    for child, names in deferred.items():
        for name in names:
            f = infos[child].fields[name]
            parent = f.reference_to[0]
            assert parent == child or pos[parent] > pos[child]  # deferred: self, or a parent placed later
            if not f.nillable and parent != child:
                # only when the master-details of the cycle close on themselves
                assert _reaches(md_edges, parent, child)


def _reaches(edges: set[tuple[str, str]], start: str, goal: str) -> bool:
    seen, todo = {start}, [start]
    while todo:
        node = todo.pop()
        if node == goal:
            return True
        for a, b in edges:
            if a == node and b not in seen:
                seen.add(b)
                todo.append(b)
    return False


def test_order_of_objects_without_references_keeps_the_given_order() -> None:
    infos = {n: INFOS[n] for n in ("Document", "Campaign", "User")}
    order, deferred = rd.restore_order(infos)
    # Document.AuthorId -> User: User first; the others as given
    assert order.index("User") < order.index("Document")
    assert deferred == {"Campaign": {"ParentId"}}


# ---------------------------------------------------------------- values


@pytest.mark.parametrize(
    ("obj", "given", "expected"),
    [
        ("Account", {"NumberOfEmployees": "12"}, {"NumberOfEmployees": 12}),
        ("Account", {"NumberOfEmployees": 12.0}, {"NumberOfEmployees": 12}),
        ("Account", {"AnnualRevenue": "1500.50"}, {"AnnualRevenue": 1500.5}),
        ("Account", {"AnnualRevenue": 2.0}, {"AnnualRevenue": 2}),
        ("Account", {"Discount__c": 12.5}, {"Discount__c": 12.5}),
        ("Account", {"Active__c": "true"}, {"Active__c": True}),
        ("Account", {"Active__c": 0}, {"Active__c": False}),
        ("Account", {"Customer_Since__c": "2024-02-29"}, {"Customer_Since__c": "2024-02-29"}),
        ("Account", {"Customer_Since__c": "2024-02-29T23:00:00.000Z"}, {"Customer_Since__c": "2024-02-29"}),
        ("Invoice__c", {"Due__c": "2024-01-02T04:04:05.1+01:00"}, {"Due__c": "2024-01-02T03:04:05.100Z"}),
        ("Invoice__c", {"Due__c": "2024-01-02T03:04:05.000+0000"}, {"Due__c": "2024-01-02T03:04:05.000Z"}),
        ("Invoice__c", {"Tags__c": ["Urgent", "Export"]}, {"Tags__c": "Urgent;Export"}),
        ("Invoice__c", {"Tags__c": "Urgent;Export"}, {"Tags__c": "Urgent;Export"}),
        ("Account", {"ParentId": ACC1[:15]}, {"ParentId": ACC1}),
        ("Account", {"ParentId": ACC1}, {"ParentId": ACC1}),
        ("Account", {"Name": "Acme", "Phone": ""}, {"Name": "Acme", "Phone": None}),
        ("Account", {"Name": None}, {"Name": None}),
        # names in any case come back in describe's spelling
        ("Account", {"name": "Acme"}, {"Name": "Acme"}),
        # never written: Id, audit, system, formula, compound parents, file bodies, unknown fields
        (
            "Account",
            {
                "Id": ACC1,
                "CreatedDate": "2024-01-01T00:00:00.000Z",
                "SystemModstamp": "x",
                "IsDeleted": False,
                "BillingAddress": {"city": "Paris"},
                "Unknown__c": 1,
                "BillingCity": "Lyon",
            },
            {"BillingCity": "Lyon"},
        ),
        ("Invoice__c", {"Total_With_Tax__c": 3, "Amount__c": 2}, {"Amount__c": 2}),
        ("Attachment", {"Body": "aGVsbG8=", "Name": "a.txt"}, {"Name": "a.txt"}),
        # a component the backup holds only inside its compound value
        (
            "Account",
            {"BillingAddress": {"city": "Paris", "latitude": 48.85}},
            {"BillingCity": "Paris", "BillingLatitude": 48.85},
        ),
        (
            "Shipment__c",
            {"Destination__c": {"latitude": 1.5, "longitude": 2}},
            {"Destination__Latitude__s": 1.5, "Destination__Longitude__s": 2},
        ),
    ],
)
def test_to_salesforce(obj: str, given: dict[str, Any], expected: dict[str, Any]) -> None:
    out = rd.to_salesforce(given, INFOS[obj])
    assert out == expected
    assert [type(v) for v in out.values()] == [type(v) for v in expected.values()]


def test_to_salesforce_without_nulls_decides_alike_and_a_create_writes_the_values_themselves() -> None:
    given = {"Name": "Acme", "Phone": "", "NumberOfEmployees": None, "BillingAddress": {"city": None}}
    full, lean = rd.to_salesforce(given, ACCOUNT), rd.to_salesforce(given, ACCOUNT, keep_null=False)
    assert lean == {"Name": "Acme"} and full["Phone"] is None and "NumberOfEmployees" in full
    fields, _left = rd.restorable_fields(ACCOUNT, None)
    for restore_empty in (False, True):
        how: dict[str, Any] = {"fields": fields, "info": ACCOUNT, "restore_empty": restore_empty}
        a = rd.decide("s", full, None, target_id=None, target_deleted=False, **how)
        b = rd.decide("s", lean, None, target_id=None, target_deleted=False, **how)
        assert (a.state, a.write, set(a.changed_fields)) == (b.state, b.write, set(b.changed_fields))
    made = rd.decide(
        "s", lean, None, target_id=None, target_deleted=False, fields=fields, info=ACCOUNT, restore_empty=False
    )
    assert made.write is lean  # held once


def test_to_salesforce_refuses_a_value_not_of_its_type_without_echoing_it() -> None:
    with pytest.raises(ValueError) as err:
        rd.to_salesforce({"NumberOfEmployees": "secret-words"}, ACCOUNT)
    assert "NumberOfEmployees" in str(err.value) and "secret" not in str(err.value)
    problems: list[str] = []
    out = rd.to_salesforce({"NumberOfEmployees": "secret-words", "Name": "Acme"}, ACCOUNT, problems=problems)
    assert out == {"Name": "Acme"} and problems == ["NumberOfEmployees: the backup's value is not a valid int"]


# ---------------------------------------------------------------- references


def test_rewrite_references_maps_keeps_present_and_drops_missing_lookups() -> None:
    new1 = sfid("001", 901)
    values = {"Name": "Acme", "ParentId": ACC1, "OwnerId": sfid("005", 1)}
    out, reasons = rd.rewrite_references(values, ACCOUNT, {ACC1: new1}, lambda i: i == sfid("005", 1))
    assert out == {"Name": "Acme", "ParentId": new1, "OwnerId": sfid("005", 1)} and reasons == []
    assert values["ParentId"] == ACC1  # the input is left as it was

    out, reasons = rd.rewrite_references(values, ACCOUNT, {}, lambda i: False)
    assert out == {"Name": "Acme"}
    assert reasons == [
        f"ParentId: Account {ACC1} not in the target org, left empty",
        f"OwnerId: User {sfid('005', 1)} not in the target org, left empty",
    ]
    assert rd.record_failure(reasons) is None  # OwnerId is defaulted on create: the restoring user owns it


@pytest.mark.parametrize("as_given", [ACC1, ACC1[:15], ACC1[:15] + ACC1[15:].lower()])
def test_rewrite_references_reads_15_and_18_character_ids_alike(as_given: str) -> None:
    new1 = sfid("001", 901)
    out, reasons = rd.rewrite_references({"ParentId": as_given}, ACCOUNT, {ACC1: new1[:15]}, lambda i: False)
    assert out == {"ParentId": new1} and reasons == []
    seen: list[str] = []

    def present(i: str) -> bool:
        seen.append(i)
        return True

    out, _ = rd.rewrite_references({"ParentId": as_given}, ACCOUNT, {}, present)
    assert out == {"ParentId": ACC1} and seen == [ACC1]


def test_a_master_detail_parent_not_restored_fails_the_record_with_a_clear_reason() -> None:
    values = {"Name": "S-1", "Invoice__c": INV1}
    out, reasons = rd.rewrite_references(values, SHIPMENT, {}, lambda i: False)
    assert "Invoice__c" not in out
    assert reasons == [f"parent Invoice__c {INV1} not restored"]
    assert rd.record_failure(reasons) == f"parent Invoice__c {INV1} not restored"
    out, reasons = rd.rewrite_references(values, SHIPMENT, {INV1: sfid("a00", 9)}, lambda i: False)
    assert out["Invoice__c"] == sfid("a00", 9) and rd.record_failure(reasons) is None


def test_a_polymorphic_parent_is_named_through_key_prefixes() -> None:
    task = INFOS["Task"]
    what = next(f for f in task.fields.values() if len(f.reference_to) > 1)
    _, reasons = rd.rewrite_references({what.name: ACC2}, task, {}, lambda i: False, prefixes={"001": "Account"})
    assert reasons == [f"{what.name}: Account {ACC2} not in the target org, left empty"]
    _, reasons = rd.rewrite_references({what.name: ACC2}, task, {}, lambda i: False)
    assert reasons == [f"{what.name}: record {ACC2} not in the target org, left empty"]


def test_a_reference_that_is_not_an_id_is_left_for_the_org_to_refuse() -> None:
    out, reasons = rd.rewrite_references({"ParentId": "not-an-id"}, ACCOUNT, {}, lambda i: False)
    assert out == {"ParentId": "not-an-id"} and reasons == []


# ---------------------------------------------------------------- masking

SECRET = b"k" * 32
MASKS = [
    ("Contact", "Email", "email"),
    ("Contact", "Phone", "phone"),
    ("contact", "lastname", "pseudonym"),
    ("Contact", "Title", "fixed:Tester"),
    ("Contact", "Description", "null"),
    ("Account", "Name", "pseudonym"),  # another object's: not applied to a Contact
]
PERSON = {
    "LastName": "Grønberg",
    "FirstName": "Ada",
    "Email": "ada.gronberg@bank.example",
    "Phone": "+33 6 12 34 56 78",
    "Title": "CFO",
    "Description": "likes sailing",
    "Name": "Ada Grønberg",
}


def test_masking_rules() -> None:
    out = rd.mask_values("Contact", PERSON, MASKS, secret=SECRET)
    assert out["FirstName"] == "Ada" and out["Name"] == "Ada Grønberg"  # not masked: kept
    assert out["Title"] == "Tester" and out["Description"] is None
    assert out["Email"].endswith("@example.com") and out["Email"] != PERSON["Email"]
    assert out["Phone"].startswith("+1555") and len(out["Phone"]) == 12 and out["Phone"][1:].isdigit()
    assert out["LastName"].startswith("LastName ") and len(out["LastName"]) == len("LastName ") + 6
    assert PERSON["LastName"] == "Grønberg"  # the input is left as it was


def test_masking_is_deterministic_for_a_secret_and_differs_across_secrets() -> None:
    a = rd.mask_values("Contact", PERSON, MASKS, secret=SECRET)
    assert rd.mask_values("Contact", dict(PERSON), MASKS, secret=SECRET) == a
    b = rd.mask_values("Contact", PERSON, MASKS, secret=b"another secret")
    assert all(a[k] != b[k] for k in ("Email", "Phone", "LastName"))
    # one address masks alike whatever its case or record; two addresses do not collide
    upper = rd.mask_values("Contact", {"Email": PERSON["Email"].upper()}, MASKS, secret=SECRET)
    assert upper["Email"] == a["Email"]
    other = rd.mask_values("Contact", {"Email": "someone@else.example"}, MASKS, secret=SECRET)
    assert other["Email"] != a["Email"]


@pytest.mark.parametrize("n", range(30))
def test_no_original_value_survives_a_masked_field(n: int) -> None:
    record = {
        "Email": f"person{n}@corp{n}.test",
        "Phone": f"+44 20 7946 {n:04d}",
        "LastName": f"Surname{n}x",
        "Title": f"Title {n}",
        "Description": f"secret {n}",
    }
    out = rd.mask_values("Contact", record, MASKS, secret=SECRET)
    for field, original in record.items():
        masked = str(out[field])
        assert original not in masked
        for token in original.replace("@", " ").replace(".", " ").split():
            if len(token) >= 4:
                assert token not in masked, (field, token)


def test_masking_leaves_nulls_and_absent_fields() -> None:
    out = rd.mask_values("Contact", {"Email": None, "FirstName": "Ada"}, MASKS, secret=SECRET)
    assert out == {"Email": None, "FirstName": "Ada"}


def test_a_mask_on_a_compound_field_masks_its_components_and_the_compound_value() -> None:
    record = {
        "MailingStreet": "1 Rue de Rivoli",
        "MailingCity": "Paris",
        "MailingLatitude": 48.86,
        "MailingAddress": {"street": "1 Rue de Rivoli", "city": "Paris", "latitude": 48.86},
        "LastName": "X",
    }
    masks = [("Contact", "MailingAddress", "pseudonym")]
    out = rd.mask_values("Contact", record, masks, secret=SECRET, info=CONTACT)
    assert out["MailingAddress"] is None and out["MailingLatitude"] is None and out["LastName"] == "X"
    assert out["MailingStreet"].startswith("MailingStreet ") and out["MailingCity"].startswith("MailingCity ")
    assert "Paris" not in repr(out) and "Rivoli" not in repr(out)
    # a mask on one component empties the compound value that also holds it
    out = rd.mask_values("Contact", record, [("Contact", "MailingCity", "null")], secret=SECRET, info=CONTACT)
    assert out["MailingCity"] is None and out["MailingAddress"] is None and out["MailingStreet"] == "1 Rue de Rivoli"
    # masked after to_salesforce (the pipeline's order), nothing of the address is written either
    written = rd.to_salesforce(rd.mask_values("Contact", record, masks, secret=SECRET, info=CONTACT), CONTACT)
    assert "Paris" not in repr(written) and "Rivoli" not in repr(written)
    written = rd.mask_values("Contact", rd.to_salesforce(record, CONTACT), masks, secret=SECRET, info=CONTACT)
    assert "Paris" not in repr(written) and "Rivoli" not in repr(written)


@pytest.mark.parametrize("rule", ["hash", "", "Email", "fixed", "NULL"])
def test_an_unknown_mask_rule_is_refused(rule: str) -> None:
    with pytest.raises(ValueError, match="mask rule"):
        rd.mask_values("Account", {"Name": "x"}, [("Contact", "Email", rule)], secret=SECRET)


# ---------------------------------------------------------------- equality


def _f(sf_type: str) -> FieldInfo:
    return FieldInfo("F", sf_type, True, True, True, False, (), None, False, False, False)


@pytest.mark.parametrize(
    ("sf_type", "a", "b", "equal"),
    [
        ("double", 1, 1.0, True),
        ("currency", "1.00", 1, True),
        ("percent", 0.1, "0.10", True),
        ("double", 1, 1.01, False),
        ("int", 3, "3", True),
        ("datetime", "2024-01-02T03:04:05.000Z", "2024-01-02T03:04:05.000+0000", True),
        ("datetime", "2024-01-02T03:04:05Z", "2024-01-02T04:04:05.000+01:00", True),
        ("datetime", "2024-01-02T03:04:05.000Z", "2024-01-02T03:04:06.000Z", False),
        ("date", "2024-01-02", "2024-01-02", True),
        ("date", "2024-01-02", "2024-01-03", False),
        ("time", "03:04:05.000Z", "03:04:05", True),
        ("reference", ACC1, ACC1[:15], True),
        ("reference", ACC1, ACC1[:15] + ACC1[15:].lower(), True),
        ("reference", ACC1, ACC2, False),
        ("reference", ACC1.lower(), ACC1, False),  # the first 15 characters are case-sensitive
        ("id", ACC1[:15], ACC1, True),
        ("multipicklist", "A;B", "B;A", True),
        ("multipicklist", "A;B", ["B", "A"], True),
        ("multipicklist", "A;B", "A", False),
        ("multipicklist", "", None, True),
        ("string", "", None, True),
        ("string", "a", "A", False),
        ("string", "x", None, False),
        ("textarea", "line\nnext", "line\nnext", True),
        ("boolean", None, False, True),
        ("boolean", True, "true", True),
        ("boolean", True, False, False),
        ("address", {"city": "Paris", "street": None}, {"city": "Paris"}, True),
        ("string", 1, "1", False),
    ],
)
def test_same(sf_type: str, a: Any, b: Any, equal: bool) -> None:
    assert rd.same(a, b, _f(sf_type)) is equal
    assert rd.same(b, a, _f(sf_type)) is equal


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        (1, 1.0, True),
        (ACC1, ACC1[:15], True),
        ("2024-01-02T03:04:05.000Z", "2024-01-02T03:04:05.000+0000", True),
        ("", None, True),
        (True, 1, False),
        ("1", 1, False),
        ("abc", "abc", True),
    ],
)
def test_same_without_a_type(a: Any, b: Any, equal: bool) -> None:
    assert rd.same(a, b, None) is equal


# ---------------------------------------------------------------- the decision

FIELDS, _ = rd.restorable_fields(
    ACCOUNT, ["Name", "Phone", "NumberOfEmployees", "ParentId", "Active__c", "Customer_Since__c"]
)
BACKUP = {"Name": "Acme", "Phone": "+1 555", "NumberOfEmployees": 10, "ParentId": ACC2, "Active__c": True}


def decide(
    target: dict[str, Any] | None,
    *,
    deleted: bool = False,
    restore_empty: bool = False,
    backup: dict[str, Any] | None = None,
    info: ObjectInfo = ACCOUNT,
    fields: list[str] | None = None,
) -> Decision:
    return rd.decide(
        ACC1,
        BACKUP if backup is None else backup,
        target,
        target_id=None if target is None else ACC3,
        target_deleted=deleted,
        fields=FIELDS if fields is None else fields,
        info=info,
        restore_empty=restore_empty,
    )


@pytest.mark.parametrize(
    ("target", "restore_empty", "state", "write", "changed"),
    [
        # equal with Salesforce's equality: numbers, 15-char Ids, "" and null, fields not compared
        (
            {
                "Name": "Acme",
                "Phone": "+1 555",
                "NumberOfEmployees": 10.0,
                "ParentId": ACC2[:15],
                "Active__c": True,
                "Customer_Since__c": "2020-01-01",
                "Website": "x",
            },
            False,
            State.SKIPPED,
            {},
            (),
        ),
        # a backup null leaves the org's value without restore_empty ...
        (
            {
                "Name": "Acme",
                "Phone": "+1 555",
                "NumberOfEmployees": 10,
                "ParentId": ACC2,
                "Active__c": True,
                "Customer_Since__c": "2020-01-01",
            },
            False,
            State.SKIPPED,
            {},
            (),
        ),
        # ... and is written as null with it
        (
            {
                "Name": "Acme",
                "Phone": "+1 555",
                "NumberOfEmployees": 10,
                "ParentId": ACC2,
                "Active__c": True,
                "Customer_Since__c": "2020-01-01",
            },
            True,
            State.UPDATED,
            {"Customer_Since__c": None},
            ("Customer_Since__c",),
        ),
        # only the differing fields are written
        (
            {"Name": "Acme Corp", "Phone": "+1 555", "NumberOfEmployees": 11, "ParentId": ACC2, "Active__c": False},
            False,
            State.UPDATED,
            {"Name": "Acme", "NumberOfEmployees": 10, "Active__c": True},
            ("Name", "NumberOfEmployees", "Active__c"),
        ),
        (
            {"Name": "Acme", "Phone": "+1 555", "NumberOfEmployees": 10, "ParentId": None, "Active__c": True},
            False,
            State.UPDATED,
            {"ParentId": ACC2},
            ("ParentId",),
        ),
    ],
)
def test_decide_existing(
    target: dict[str, Any], restore_empty: bool, state: State, write: dict[str, Any], changed: tuple[str, ...]
) -> None:
    d = decide(target, restore_empty=restore_empty)
    assert (d.state, d.write, d.changed_fields, d.undelete) == (state, write, changed, False)
    assert d.source_id == ACC1 and d.target_id == ACC3


@pytest.mark.parametrize("restore_empty", [False, True])
def test_decide_created_writes_createable_fields_with_values_and_nulls_only_with_restore_empty(
    restore_empty: bool,
) -> None:
    d = decide(None, restore_empty=restore_empty)
    assert d.state is State.CREATED and d.target_id is None and not d.undelete
    expected = dict(BACKUP) | ({"Customer_Since__c": None} if restore_empty else {})
    assert d.write == expected and set(d.changed_fields) == set(expected)


def test_decide_created_never_sends_a_null_to_a_checkbox_or_a_required_field() -> None:
    d = decide(None, restore_empty=True, backup={"Name": None, "Active__c": None, "Phone": None})
    # with restore_empty every compared field without a value is written null, but never Name (required)
    # nor Active__c (a checkbox)
    assert d.write == {"Phone": None, "NumberOfEmployees": None, "ParentId": None, "Customer_Since__c": None}


def test_decide_undeleted_with_and_without_the_deleted_values() -> None:
    d = decide(
        {"Name": "Acme", "Phone": "+1 555", "NumberOfEmployees": 10, "ParentId": ACC2, "Active__c": True}, deleted=True
    )
    assert (d.state, d.undelete, d.write, d.changed_fields) == (State.UNDELETED, True, {}, ())
    d = decide(
        {"Name": "Old", "Phone": "+1 555", "NumberOfEmployees": 10, "ParentId": ACC2, "Active__c": True}, deleted=True
    )
    assert (d.state, d.write, d.changed_fields) == (State.UNDELETED, {"Name": "Acme"}, ("Name",))
    d = decide(None, deleted=True)
    assert d.state is State.UNDELETED and d.write == BACKUP and d.target_id is None


def test_decide_writes_only_updateable_fields_and_says_which_differ_otherwise() -> None:
    fields, _ = rd.restorable_fields(SHIPMENT, None)
    info = ObjectInfo(
        SHIPMENT.name,
        SHIPMENT.key_prefix,
        {
            **SHIPMENT.fields,
            "Invoice__c": FieldInfo(
                "Invoice__c",
                "reference",
                True,
                False,
                False,
                False,
                ("Invoice__c",),
                "Invoice__r",
                False,
                False,
                False,
                True,
            ),
        },
        SHIPMENT.children,
    )
    backup = {"Name": "S-1", "Invoice__c": INV1}
    d = decide({"Name": "S-1", "Invoice__c": sfid("a00", 2)}, backup=backup, info=info, fields=fields)
    assert d.state is State.SKIPPED and d.write == {} and d.changed_fields == ("Invoice__c",)
    assert d.note == "cannot be updated: Invoice__c"
    d = decide({"Name": "S-2", "Invoice__c": sfid("a00", 2)}, backup=backup, info=info, fields=fields)
    assert d.state is State.UPDATED and d.write == {"Name": "S-1"} and d.changed_fields == ("Name", "Invoice__c")
    d = decide(None, backup=backup, info=info, fields=fields)
    assert d.write == backup  # createable: sent on create


def test_restore_empty_never_empties_a_checkbox_or_a_required_field() -> None:
    target = {"Name": "Acme", "Phone": "1", "Active__c": True, "NumberOfEmployees": 3}
    d = decide(target, restore_empty=True, backup={"Phone": "1"})
    assert d.state is State.UPDATED and d.write == {"NumberOfEmployees": None}
    assert rd.differences({"Phone": "1"}, target, FIELDS, info=ACCOUNT, restore_empty=True) == ["NumberOfEmployees"]


def test_split_deferred_sends_self_lookups_in_a_patch() -> None:
    _, deferred = rd.restore_order({"Account": ACCOUNT})
    d = decide(None)
    first, patch = rd.split_deferred(d.write, deferred["Account"])
    assert "ParentId" not in first and patch == {"ParentId": ACC2} and first["Name"] == "Acme"
    assert rd.split_deferred({"Name": "A", "ParentId": None}, {"parentid"}) == ({"Name": "A"}, {})


def test_a_deferred_reference_that_differs_makes_an_existing_record_updated_and_is_named() -> None:
    # ParentId is deferred: left out of the values decided, the org's value cleared (its parent was deleted)
    backup = {k: v for k, v in BACKUP.items() if k != "ParentId"}
    equal = decide({"Name": "Acme", "Phone": "+1 555", "NumberOfEmployees": 10, "Active__c": True}, backup=backup)
    assert equal.state is State.SKIPPED
    d = rd.with_deferred(equal, ["ParentId"])
    assert (d.state, d.write, d.changed_fields, d.undelete) == (State.UPDATED, {}, ("ParentId",), False)
    changed = decide({"Name": "Old", "Phone": "+1 555", "NumberOfEmployees": 10, "Active__c": True}, backup=backup)
    d = rd.with_deferred(changed, ["ParentId", "Name"])
    assert (d.state, d.write, d.changed_fields) == (State.UPDATED, {"Name": "Acme"}, ("Name", "ParentId"))
    binned = rd.with_deferred(decide(None, deleted=True, backup=backup), ["ParentId"])
    assert binned.state is State.UNDELETED and binned.undelete and "ParentId" in binned.changed_fields
    created = decide(None, backup=backup)
    assert rd.with_deferred(created, ["ParentId"]) is created  # written whole: no fields listed
    assert rd.with_deferred(equal, []) is equal


def test_decide_compares_only_the_given_fields() -> None:
    d = decide({"Name": "Other", "Phone": "x"}, fields=["Phone"], backup={"Name": "Acme", "Phone": "x"})
    assert d.state is State.SKIPPED


# ---------------------------------------------------------------- match after a lost answer


def test_match_created_pairs_each_source_with_its_own_row() -> None:
    new = [sfid("001", 100 + i) for i in range(4)]
    expected: dict[str, dict[str, Any]] = {
        "s1": {"Name": "A", "NumberOfEmployees": 1},
        "s2": {"Name": "B", "NumberOfEmployees": 2, "ParentId": ACC1},
        "s3": {"Name": "C"},
    }
    candidates: list[dict[str, Any]] = [
        {"Id": new[0], "Name": "B", "NumberOfEmployees": 2.0, "ParentId": ACC1[:15], "Website": "set by a flow"},
        {"Id": new[1][:15], "Name": "A", "NumberOfEmployees": 1},
        {"Id": new[2], "Name": "Z"},  # someone else's
    ]
    fields = ["Name", "NumberOfEmployees", "ParentId", "Phone"]
    assert rd.match_created(expected, candidates, fields, info=ACCOUNT) == {"s1": new[1], "s2": new[0]}
    assert rd.match_created(expected, candidates, fields) == {"s1": new[1], "s2": new[0]}  # without types too


def test_match_created_with_duplicates_uses_each_row_once() -> None:
    new = [sfid("001", 200 + i) for i in range(3)]
    expected = {"s1": {"Name": "Same"}, "s2": {"Name": "Same"}, "s3": {"Name": "Same"}}
    # two of the three identical records were created before the answer was lost
    candidates = [{"Id": new[0], "Name": "Same"}, {"Id": new[1], "Name": "Same"}]
    got = rd.match_created(expected, candidates, ["Name"])
    assert got == {"s1": new[0], "s2": new[1]}  # s3 is created again: no record twice
    assert len(set(got.values())) == len(got)
    assert rd.match_created(expected, [], ["Name"]) == {}


def test_match_created_compares_a_written_null_and_ignores_a_field_not_written() -> None:
    new = sfid("001", 300)
    # Phone was written as null (restore_empty): a row with a phone is not ours
    assert (
        rd.match_created(
            {"s": {"Name": "A", "Phone": None}}, [{"Id": new, "Name": "A", "Phone": "1"}], ["Name", "Phone"]
        )
        == {}
    )
    # Rating was not written: the org's default there does not matter
    assert rd.match_created({"s": {"Name": "A"}}, [{"Id": new, "Name": "A", "Rating": "Hot"}], ["Name", "Rating"]) == {
        "s": new
    }


def test_match_created_at_bulk_size_pairs_every_source_once() -> None:
    n = 10_000
    expected: dict[str, dict[str, Any]] = {}
    candidates: list[dict[str, Any]] = []
    for i in range(n):
        row: dict[str, Any] = {"Name": f"R{i % 2500}", "NumberOfEmployees": i % 7}
        for j, field in enumerate(("Phone", "Website", "Rating", "Industry", "AccountNumber", "Description")):
            if (i >> j) & 1:
                row[field] = f"{field}{i % 3}"  # 64 different sets of fields written
        expected[f"s{i}"] = row
        candidates.append({"Id": sfid("001", 10_000 + i), **row, "Site": "set by a trigger"})
    candidates.reverse()
    got = rd.match_created(
        expected, candidates, [*FIELDS, "Website", "Rating", "Industry", "AccountNumber", "Description"], info=ACCOUNT
    )
    assert len(got) == n and len(set(got.values())) == n
    by_id = {c["Id"]: c for c in candidates}
    assert all(rd.differences(expected[s], by_id[new], list(expected[s])) == [] for s, new in got.items())


# ---------------------------------------------------------------- proof and samples


def test_differences_name_the_fields_that_differ_with_decides_equality() -> None:
    expected = {"Name": "Acme", "NumberOfEmployees": 10, "ParentId": ACC2, "Phone": None}
    actual = {"Name": "Acme", "NumberOfEmployees": 10.0, "ParentId": ACC2[:15], "Phone": "123"}
    assert rd.differences(expected, actual, FIELDS, info=ACCOUNT) == []
    assert rd.differences(expected, actual, FIELDS, info=ACCOUNT, restore_empty=True) == ["Phone"]
    actual["Name"] = "Acme Inc"
    assert rd.differences(expected, actual, FIELDS, info=ACCOUNT) == ["Name"]
    assert rd.differences(expected, {}, ["Name", "NumberOfEmployees"]) == ["Name", "NumberOfEmployees"]


def test_sample_line_names_fields_never_values() -> None:
    line = rd.sample_line("Account", ACC1, ["Name", "Phone"], "differs after restore")
    assert line == f"Account {ACC1} [Name, Phone]: differs after restore"
    assert rd.sample_line("Account", ACC1, [], "parent Account x not restored").endswith("not restored")


def test_state_values_are_the_record_states_of_the_contract() -> None:
    from sfvault.restore.v1 import restore_pb2

    for state in State:
        assert restore_pb2.RecordState.Value(f"RECORD_STATE_{state.name}") == state.value


def test_with_write_is_the_decision_with_other_values_to_send() -> None:
    d = Decision("001A", "001B", State.CREATED, {"Name": "x"}, True, ("Name",), "a note")
    assert rd.with_write(d, {"Name": "y"}) == dataclasses.replace(d, write={"Name": "y"})
    # a field Decision gains must be carried by with_write too
    fields = {f.name for f in dataclasses.fields(Decision)}
    assert fields == {"source_id", "target_id", "state", "write", "undelete", "changed_fields", "note"}
