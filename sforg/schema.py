"""The org's object catalogue (standard and custom sObjects, their fields) and describe rendering."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
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
    "anyType": "xsd:anyType",
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
    "anyType",
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
    restricted_delete: bool = False  # the parent cannot be deleted while a live record points at it
    extra_type_info: str | None = None
    system: bool = False
    # The field's describe entry as a real org reports it (standard fields captured from orgs, see
    # standard_fields.json): it overrides the attributes field_describe derives from the ones above.
    real: dict[str, Any] = field(default_factory=dict)

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
    # describe flags that differ from a data object's (queryable, replicateable, createable, ... as the real
    # object describes itself: a history object is neither createable nor updateable, a change event not
    # queryable)
    flags: dict[str, Any] = field(default_factory=dict)
    # record types besides Master: [recordTypeId, developerName, name], the first the default
    record_types: list[list[str]] = field(default_factory=list)

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


# What the API never writes (computed or maintained by Salesforce).
READ_ONLY: dict[str, Any] = {"createable": False, "updateable": False}
# What Salesforce maintains itself on every record: required, never written by the API, always set.
SYSTEM: dict[str, Any] = {"nillable": False, **READ_ONLY, "defaulted": True, "system": True}


def system_fields(owner: bool = True, deletable: bool = True, created: bool = True) -> list[FieldDef]:
    out = [F("Id", "id", id_lookup=True, **SYSTEM)]
    if deletable:
        out.append(F("IsDeleted", "boolean", label="Deleted", **SYSTEM))
    if owner:
        out.append(ref("OwnerId", ["User"], "Owner", nillable=False, defaulted=True, label="Owner ID"))
    if created:
        out += [
            F("CreatedDate", "datetime", **SYSTEM),
            ref("CreatedById", ["User"], "CreatedBy", label="Created By ID", **SYSTEM),
        ]
    out += [
        F("LastModifiedDate", "datetime", **SYSTEM),
        ref("LastModifiedById", ["User"], "LastModifiedBy", label="Last Modified By ID", **SYSTEM),
        F("SystemModstamp", "datetime", label="System Modstamp", **SYSTEM),
    ]
    return out


def custom_object(
    name: str, prefix: str, label: str, fields: list[FieldDef], owner: bool = True, name_label: str | None = None
) -> ObjectDef:
    """A custom object: its system fields, the Name every custom object has (text, 80), then its own fields."""
    name_field = F("Name", "string", length=80, nillable=False, name_field=True, label=name_label or f"{label} Name")
    return ObjectDef(name, prefix, label, label + "s", [*system_fields(owner=owner), name_field, *fields])


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
    d.update(f.real)
    return d


# A real describeGlobal's objects (global_describe.json: every flag of each object's entry and the names of its
# urls, from a capture): an object listed there describes itself with those flags, whatever sforg's defaults say.
GLOBAL_DESCRIBE = Path(__file__).with_name("global_describe.json")
# where each url of an object's entry points, under /services/data/vXX.X/sobjects/{name}
URL_PATHS = {
    "compactLayouts": "/describe/compactLayouts",
    "rowTemplate": "/{ID}",
    "approvalLayouts": "/describe/approvalLayouts",
    "listviews": "/listviews",
    "describe": "/describe",
    "quickActions": "/quickActions",
    "layouts": "/describe/layouts",
    "namedLayouts": "/describe/namedLayouts/{LayoutName}",
    "passwordUtilities": "/{ID}/password",
    "eventSchema": "/eventSchema",
    "sobject": "",
}
DATA_URLS = ["compactLayouts", "rowTemplate", "approvalLayouts", "listviews", "describe", "quickActions", "layouts"]
# associated objects (history, share, feed) and setup objects list these; events also their eventSchema
PLAIN_URLS = ["rowTemplate", "describe", "sobject"]
EVENT_URLS = ["rowTemplate", "eventSchema", "describe", "sobject"]


@cache
def captured_global() -> dict[str, dict[str, Any]]:
    """The captured describeGlobal's entries by object name (flags, and `urls`: the names of its urls)."""
    return {o["name"]: o for o in json.loads(GLOBAL_DESCRIBE.read_text())["objects"]}


def _url_path(key: str) -> str:
    if key.endswith("RowArticleSuggestions"):
        return "/{ID}/suggestedArticles"
    if key.endswith("ArticleSuggestions"):
        return "/suggestedArticles"
    return URL_PATHS[key]


def _url_keys(obj: ObjectDef, flags: dict[str, Any]) -> list[str]:
    captured = captured_global().get(obj.name)
    if captured is not None:
        keys: list[str] = captured["urls"]
        return keys
    if flags["associateEntityType"] == "ChangeEvent" or not (flags["queryable"] or flags["retrieveable"]):
        return EVENT_URLS
    if not flags["layoutable"]:
        return PLAIN_URLS
    return [*DATA_URLS, "sobject"]


def _urls(obj: ObjectDef, version: str, base: str, full: bool) -> dict[str, str]:
    """The urls of the object's describeGlobal entry; a full describe of a layoutable object adds the UI templates
    (as the captured describes do, after approvalLayouts and describe)."""
    p = f"/services/data/v{version}/sobjects/{obj.name}"
    flags = _flags(obj)
    ui = full and flags["layoutable"]
    urls: dict[str, str] = {}
    for k in _url_keys(obj, flags):
        urls[k] = p + _url_path(k)
        if ui and k == "rowTemplate":
            urls["uiDetailTemplate"] = f"{base}/{{ID}}"
            urls["uiEditTemplate"] = f"{base}/{{ID}}/e"
            urls["defaultValues"] = f"{p}/defaultValues?recordTypeId&fields"
        if ui and k == "describe":
            urls["uiNewRecord"] = f"{base}/{obj.key_prefix}/e"
    return urls


def _flags(obj: ObjectDef) -> dict[str, Any]:
    user = obj.name == "User"
    return (
        {
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
        | obj.flags
        | _captured_flags(obj.name)
    )


def _captured_flags(name: str) -> dict[str, Any]:
    entry = captured_global().get(name)
    return {} if entry is None else {k: v for k, v in entry.items() if k != "urls"}


def global_entry(obj: ObjectDef, version: str) -> dict[str, Any]:
    out = _flags(obj)
    out["urls"] = _urls(obj, version, "", full=False)
    return out


MASTER_RECORD_TYPE = "012000000000000AAA"


def record_type_infos(obj: ObjectDef, version: str) -> list[dict[str, Any]]:
    """The object's record types then Master, as a real describe lists them (the Account capture): the default
    one maps by default; Master alone when the object has none."""
    types = [*obj.record_types, [MASTER_RECORD_TYPE, "Master", "Master"]]
    return [
        {
            "active": True,
            "available": True,
            "defaultRecordTypeMapping": i == 0,
            "developerName": developer,
            "master": rt_id == MASTER_RECORD_TYPE,
            "name": name,
            "recordTypeId": rt_id,
            "urls": {"layout": f"/services/data/v{version}/sobjects/{obj.name}/describe/layouts/{rt_id}"},
        }
        for i, (rt_id, developer, name) in enumerate(types)
    ]


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
                        "restrictedDelete": f.restricted_delete,
                    }
                )
    flags = _flags(obj)
    d: dict[str, Any] = {
        "actionOverrides": [],
        "activateable": flags["activateable"],
        "associateEntityType": flags["associateEntityType"],
        "associateParentEntity": flags["associateParentEntity"],
        "childRelationships": children,
        "compactLayoutable": flags["layoutable"],
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
        "keyPrefix": flags["keyPrefix"],
        "label": obj.label,
        "labelPlural": obj.label_plural,
        "layoutable": flags["layoutable"],
        "listviewable": None,
        "lookupLayoutable": None,
        "mergeable": flags["mergeable"],
        "mruEnabled": flags["mruEnabled"],
        "name": obj.name,
        "namedLayoutInfos": [],
        "networkScopeFieldName": None,
        "queryable": flags["queryable"],
        "recordTypeInfos": record_type_infos(obj, version),
        "replicateable": flags["replicateable"],
        "retrieveable": flags["retrieveable"],
        "searchLayoutable": flags["layoutable"],
        "searchable": flags["searchable"],
        "sobjectDescribeOption": "FULL",
        "supportedScopes": [{"label": "All " + obj.label_plural.lower(), "name": "everything"}],
        "triggerable": flags["triggerable"],
        "undeletable": flags["undeletable"],
        "updateable": flags["updateable"],
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
                "flags": o.flags,
                "record_types": o.record_types,
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
