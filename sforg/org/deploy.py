"""Metadata API deploy: a zip (package.xml and component files) validated component by component, then applied
only when every component passes (nothing is deployed when one fails), unless `checkOnly`.

What "compiles" here (a documented stand-in for Salesforce's compilers):
* ApexClass `classes/Name.cls`: braces balance (outside comments and string literals) and the first
  `class <Identifier>` declaration names the file (case-insensitively).
* ApexTrigger `triggers/Name.trigger`: balanced braces and `trigger Name on <Object>` naming the file and an
  existing object.
* CustomObject `objects/X.object`: well-formed XML; each `<fields>` has a `fullName` ending in `__c` and a
  `type` among the field types sforg knows (Text, TextArea, LongTextArea, Picklist, MultiselectPicklist,
  Checkbox, Number, Currency, Percent, Date, DateTime, Email, Phone, Url, Lookup with an existing
  `referenceTo`); an existing field keeps its type family (a Text field cannot become a Number). A new field is
  added to the object (describe, SOQL and records follow); an existing one takes the new label.
* Layout, Flow, PermissionSet, Profile: well-formed XML whose root element is the type's name.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import secrets
import zipfile
from typing import Any
from xml.etree import ElementTree as ET

from sforg import metadata as md
from sforg.ids import make_id
from sforg.org.schema_changes import SchemaChanges

FIELD_TYPES = {
    "Text": "string",
    "TextArea": "textarea",
    "LongTextArea": "textarea",
    "Picklist": "picklist",
    "MultiselectPicklist": "multipicklist",
    "Checkbox": "boolean",
    "Number": "double",
    "Currency": "currency",
    "Percent": "percent",
    "Date": "date",
    "DateTime": "datetime",
    "Email": "email",
    "Phone": "phone",
    "Url": "url",
    "Lookup": "reference",
    "Location": "location",
}
BY_DIR = {spec[0]: (mtype, spec[1]) for mtype, spec in md.TYPES.items()}
_COMMENTS = re.compile(r"//[^\n]*|/\*.*?\*/|'(?:\\.|[^'\\])*'", re.S)


def braces_balance(source: str) -> bool:
    depth = 0
    for ch in _COMMENTS.sub("", source):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth < 0:
                return False
    return depth == 0


class Deploy(SchemaChanges):
    def deploy(self, zip_b64: str, check_only: bool = False) -> dict[str, Any]:
        """Validate (and unless check_only, apply) a deploy zip; the DeployResult as a dict."""
        now = self._stamp_now()
        result: dict[str, Any] = {
            "id": make_id("0Af", secrets.randbelow(62**9), pod="Dx"),
            "checkOnly": check_only,
            "createdDate": now,
            "startDate": now,
            "completedDate": now,
            "lastModifiedDate": now,
            "failures": [],
            "successes": [],
            "errorMessage": None,
        }
        try:
            zf = zipfile.ZipFile(io.BytesIO(base64.b64decode(zip_b64, validate=False)))
            names = zf.namelist()
        except (binascii.Error, zipfile.BadZipFile, ValueError):
            result.update(errorMessage="The zip file is not valid", errorStatusCode="INVALID_ZIP", success=False)
            return self._deploys(result)
        package = next((n for n in names if n.rsplit("/", 1)[-1] == "package.xml"), None)
        if package is None:
            result["failures"].append(self._message("", "package.xml", "package.xml", "No package.xml found"))
            result["success"] = False
            return self._deploys(result)
        root = package[: -len("package.xml")]
        plan: list[tuple[str, str, str, str]] = []  # type, fullName, fileName, content
        for name in sorted(names):
            if not name.startswith(root) or name.endswith("/") or name == package or name.endswith("-meta.xml"):
                continue
            rel = name[len(root) :]
            directory, _, file_name = rel.partition("/")
            if directory not in BY_DIR or "." not in file_name:
                continue
            mtype, suffix = BY_DIR[directory]
            full_name = file_name[: -len(suffix) - 1] if file_name.endswith("." + suffix) else file_name
            content = zf.read(name).decode("utf-8", "replace")
            problem = self._check(mtype, full_name, content)
            if problem:
                result["failures"].append(self._message(mtype, rel, full_name, problem))
            else:
                plan.append((mtype, full_name, rel, content))
        result["success"] = not result["failures"]
        if result["success"] and not check_only:
            # Validated above, so applying cannot fail half-way; not one transaction: a new field alters its table
            # on a connection of its own.
            for mtype, full_name, rel, content in plan:
                result["successes"].extend(self._apply(mtype, full_name, rel, content))
        else:
            for mtype, full_name, rel, _content in plan:
                result["successes"].append(self._message(mtype, rel, full_name, None, changed=True))
        return self._deploys(result)

    def _deploys(self, result: dict[str, Any]) -> dict[str, Any]:
        deploys: dict[str, dict[str, Any]] = self.__dict__.setdefault("deploys", {})
        deploys[result["id"]] = result
        return result

    @staticmethod
    def _message(
        mtype: str,
        file_name: str,
        full_name: str,
        problem: str | None,
        changed: bool = False,
        created: bool = False,
    ) -> dict[str, Any]:
        return {
            "componentType": mtype,
            "fileName": file_name,
            "fullName": full_name,
            "problem": problem,
            "success": problem is None,
            "changed": changed,
            "created": created,
        }

    def _check(self, mtype: str, full_name: str, content: str) -> str | None:
        if mtype == "ApexClass":
            if not braces_balance(content):
                return "Missing '}' at '<EOF>'" if content.count("{") > content.count("}") else "Unexpected token '}'."
            m = re.search(r"\bclass\s+([A-Za-z_]\w*)", _COMMENTS.sub("", content), re.I)
            if not m:
                return f"No class declaration found in {full_name}"
            if m.group(1).lower() != full_name.lower():
                return f"Invalid class name: {m.group(1)} does not match the file name {full_name}"
            return None
        if mtype == "ApexTrigger":
            if not braces_balance(content):
                return "Missing '}' at '<EOF>'"
            m = re.search(r"\btrigger\s+([A-Za-z_]\w*)\s+on\s+(\w+)", _COMMENTS.sub("", content), re.I)
            if not m or m.group(1).lower() != full_name.lower():
                return f"Invalid trigger declaration in {full_name}"
            if not any(o.lower() == m.group(2).lower() for o in self.catalogue):
                return f"Invalid type: {m.group(2)}"
            return None
        try:
            doc = ET.fromstring(content)
        except ET.ParseError as exc:
            return f"Error parsing file: {exc}"
        if md.local(doc.tag) != mtype:
            return f"Error parsing file: the root element is {md.local(doc.tag)}, not {mtype}"
        if mtype == "CustomObject":
            if full_name not in self.catalogue:
                return f"Cannot create the custom object {full_name} (sforg deploys fields of existing objects)"
            o = self.catalogue[full_name]
            for fel in [c for c in doc if md.local(c.tag) == "fields"]:
                name = md.text_of(fel, "fullName") or ""
                ftype = md.text_of(fel, "type") or ""
                if not name.endswith("__c"):
                    return f"Invalid field name: {name or '(none)'}: a custom field name ends in __c"
                if ftype not in FIELD_TYPES:
                    return f"Error parsing file: '{ftype}' is not a valid value for the enum 'FieldType'"
                existing = o.field(name)
                if ftype == "Lookup":
                    target = md.text_of(fel, "referenceTo") or ""
                    if target not in self.catalogue:
                        return f"Field {name}: referenceTo {target or '(none)'} is not a valid object"
                if existing is not None and existing.sql_type != _sql(FIELD_TYPES[ftype]):
                    return (
                        f"Cannot change which kind of value the custom field {name} stores ({existing.type} to {ftype})"
                    )
                if existing is None and ftype == "Location":
                    return f"Field {name}: sforg does not create Location fields by deploy"
        return None

    def _apply(self, mtype: str, full_name: str, rel: str, content: str) -> list[dict[str, Any]]:
        row = (
            self.store.conn()
            .execute("SELECT content FROM metadata WHERE type=? AND full_name=?", (mtype, full_name))
            .fetchone()
        )
        out = []
        if mtype == "CustomObject":
            o = self.catalogue[full_name]
            doc = ET.fromstring(content)
            for fel in [c for c in doc if md.local(c.tag) == "fields"]:
                name = md.text_of(fel, "fullName") or ""
                ftype = FIELD_TYPES[md.text_of(fel, "type") or ""]
                label = md.text_of(fel, "label") or name.removesuffix("__c").replace("_", " ")
                existing = o.field(name)
                fxml = ET.tostring(fel, encoding="unicode")
                if existing is None:
                    kw: dict[str, Any] = {"label": label}
                    if ftype == "reference":
                        target = md.text_of(fel, "referenceTo") or ""
                        kw.update(reference_to=[target], relationship_name=name.removesuffix("__c") + "__r")
                    if ftype in ("picklist", "multipicklist"):
                        kw["picklist"] = [
                            (md.text_of(v, "fullName") or "") for v in fel.iter() if md.local(v.tag) == "value"
                        ]
                    self.add_field(o.name, name, ftype, **kw)
                    created = True
                else:
                    existing.label = label
                    created = False
                self._metadata_upsert("CustomField", f"{o.name}.{name}", f"objects/{o.name}.object", fxml, "00N")
                out.append(self._message("CustomField", rel, f"{o.name}.{name}", None, changed=True, created=created))
            self.save_catalogue(o.name)
        self._metadata_upsert(mtype, full_name, rel, content, md.ID_PREFIXES.get(mtype, ""))
        out.append(
            self._message(mtype, rel, full_name, None, changed=row is None or row[0] != content, created=row is None)
        )
        return out

    def deploy_status(self, deploy_id: str) -> dict[str, Any] | None:
        deploys: dict[str, dict[str, Any]] = self.__dict__.setdefault("deploys", {})
        return deploys.get(deploy_id)


def _sql(sforg_type: str) -> str:
    from sforg.schema import SQL_TYPES

    return SQL_TYPES.get(sforg_type, "TEXT")
