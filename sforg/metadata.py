"""Metadata API (SOAP /services/Soap/m/{v}): describeMetadata, listMetadata, retrieve, checkRetrieveStatus."""

from __future__ import annotations

import base64
import io
import zipfile
from typing import Any
from xml.etree import ElementTree as ET
from xml.sax.saxutils import escape

from sforg.schema import ObjectDef

MD_NS = "http://soap.sforce.com/2006/04/metadata"
SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"

# xmlName -> (directoryName, suffix, inFolder, metaFile, childXmlNames)
TYPES: dict[str, tuple[str, str, bool, bool, list[str]]] = {
    "ApexClass": ("classes", "cls", False, True, []),
    "ApexTrigger": ("triggers", "trigger", False, True, []),
    "CustomObject": (
        "objects",
        "object",
        False,
        False,
        ["CustomField", "ValidationRule", "ListView", "RecordType", "WebLink"],
    ),
    "Layout": ("layouts", "layout", False, False, []),
    "Flow": ("flows", "flow", False, False, []),
    "PermissionSet": ("permissionsets", "permissionset", False, False, []),
    "Profile": ("profiles", "profile", False, False, []),
}
CHILD_TYPES = {"CustomField": "CustomObject"}
# xmlName -> the key prefix of its components' Ids
ID_PREFIXES = {
    "ApexClass": "01p",
    "ApexTrigger": "01q",
    "Flow": "301",
    "PermissionSet": "0PS",
    "Profile": "00e",
    "Layout": "00h",
    "CustomField": "00N",
    "CustomObject": "01I",
}


def component_xml(mtype: str, full_name: str, revision: int = 1) -> str:
    body = {
        "Layout": "<layoutSections><label>Information</label><style>TwoColumnsTopToBottom</style></layoutSections>",
        "Flow": "<apiVersion>59.0</apiVersion><label>{n}</label><processType>AutoLaunchedFlow</processType>"
        "<status>Active</status>",
        "PermissionSet": "<hasActivationRequired>false</hasActivationRequired><label>{n}</label>",
        "Profile": "<custom>false</custom><userLicense>Salesforce</userLicense>",
    }.get(mtype, "").format(n=escape(full_name))
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<{mtype} xmlns="{MD_NS}">\n    {body}\n'
        f"    <description>revision {revision}</description>\n</{mtype}>\n"
    )


def field_xml(f: Any) -> str:
    parts = [f"<fullName>{escape(f.name)}</fullName>", f"<label>{escape(f.label)}</label>"]
    if f.formula:
        parts.append(f"<formula>{escape(f.formula)}</formula>")
    type_map = {
        "string": "Text",
        "textarea": "LongTextArea" if f.length > 255 else "TextArea",
        "picklist": "Picklist",
        "multipicklist": "MultiselectPicklist",
        "boolean": "Checkbox",
        "int": "Number",
        "double": "Number",
        "currency": "Currency",
        "percent": "Percent",
        "date": "Date",
        "datetime": "DateTime",
        "email": "Email",
        "phone": "Phone",
        "url": "Url",
        "reference": "Lookup",
        "location": "Location",
    }
    parts.append(f"<type>{type_map.get(f.type, 'Text')}</type>")
    if f.type == "reference":
        parts.append(f"<referenceTo>{escape(f.reference_to[0])}</referenceTo>")
    return "<fields>" + "".join(parts) + "</fields>"


def object_xml(obj: ObjectDef, only: list[str] | None = None) -> str:
    fields = [f for f in obj.fields if f.custom and f.compound is None]
    if only is not None:
        fields = [f for f in fields if f.name in only]
    inner = "\n    ".join(field_xml(f) for f in fields)
    head = f"<label>{escape(obj.label)}</label>" if only is None else ""
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<CustomObject xmlns="{MD_NS}">\n    {inner}\n    {head}\n'
        "</CustomObject>\n"
    )


def envelope(body: str) -> str:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="{SOAP_NS}" '
        f'xmlns="{MD_NS}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>{body}'
        "</soapenv:Body></soapenv:Envelope>"
    )


def fault(code: str, message: str) -> str:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="{SOAP_NS}" '
        f'xmlns:sf="{MD_NS}"><soapenv:Body><soapenv:Fault><faultcode>sf:{code}</faultcode>'
        f"<faultstring>{escape(code)}: {escape(message)}</faultstring></soapenv:Fault></soapenv:Body>"
        "</soapenv:Envelope>"
    )


def describe_metadata_xml(version: str) -> str:
    objs = []
    for name, (directory, suffix, in_folder, meta_file, children) in TYPES.items():
        kids = "".join(f"<childXmlNames>{c}</childXmlNames>" for c in children)
        objs.append(
            f"<metadataObjects>{kids}<directoryName>{directory}</directoryName>"
            f"<inFolder>{str(in_folder).lower()}</inFolder><metaFile>{str(meta_file).lower()}</metaFile>"
            f"<suffix>{suffix}</suffix><xmlName>{name}</xmlName></metadataObjects>"
        )
    return envelope(
        "<describeMetadataResponse><result>"
        + "".join(objs)
        + "<organizationNamespace></organizationNamespace><partialSaveAllowed>true"
        "</partialSaveAllowed><testRequired>false</testRequired></result></describeMetadataResponse>"
    )


def file_properties(row: dict[str, Any], user_id: str, user_name: str) -> str:
    return (
        f"<createdById>{user_id}</createdById><createdByName>{escape(user_name)}</createdByName>"
        f"<createdDate>{row['created_date']}</createdDate><fileName>{escape(row['file_name'])}</fileName>"
        f"<fullName>{escape(row['full_name'])}</fullName><id>{row['id']}</id>"
        f"<lastModifiedById>{user_id}</lastModifiedById><lastModifiedByName>{escape(user_name)}"
        f"</lastModifiedByName><lastModifiedDate>{row['last_modified_date']}</lastModifiedDate>"
        f"<manageableState>unmanaged</manageableState><type>{row['type']}</type>"
    )


def list_metadata_xml(rows: list[dict[str, Any]], user_id: str, user_name: str) -> str:
    if not rows:
        return envelope("<listMetadataResponse/>")
    results = "".join(f"<result>{file_properties(r, user_id, user_name)}</result>" for r in rows)
    return envelope(f"<listMetadataResponse>{results}</listMetadataResponse>")


def build_zip(
    rows: list[dict[str, Any]],
    requested: dict[str, list[str]],
    version: str,
    single_package: bool,
    catalogue: dict[str, ObjectDef],
) -> bytes:
    """A retrieve zip: package.xml plus one file per component (custom fields grouped into their object)."""
    prefix = "" if single_package else "unpackaged/"
    types_xml = "".join(
        "<types>" + "".join(f"<members>{escape(m)}</members>" for m in members) + f"<name>{t}</name></types>"
        for t, members in sorted(requested.items())
    )
    package = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Package xmlns="{MD_NS}">{types_xml}'
        f"<version>{version}</version></Package>\n"
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(prefix + "package.xml", package)
        fields_by_object: dict[str, list[str]] = {}
        for r in rows:
            if r["type"] == "CustomField":
                obj, _, fname = r["full_name"].partition(".")
                fields_by_object.setdefault(obj, []).append(fname)
                continue
            if r["type"] == "CustomObject" and r["full_name"] in catalogue:
                content = object_xml(catalogue[r["full_name"]])
            else:
                content = r["content"]
            zf.writestr(prefix + r["file_name"], content)
            if r["type"] in ("ApexClass", "ApexTrigger"):
                zf.writestr(
                    prefix + r["file_name"] + "-meta.xml",
                    f'<?xml version="1.0" encoding="UTF-8"?>\n<{r["type"]} xmlns="{MD_NS}">'
                    f"<apiVersion>{version}</apiVersion><status>Active</status></{r['type']}>\n",
                )
        for obj, names in fields_by_object.items():
            name = f"objects/{obj}.object"
            if prefix + name in zf.namelist() or obj not in catalogue:
                continue
            zf.writestr(prefix + name, object_xml(catalogue[obj], only=names))
    return buf.getvalue()


def zip_names(data: bytes) -> list[str]:
    return zipfile.ZipFile(io.BytesIO(data)).namelist()


def retrieve_result_xml(job: dict[str, Any], include_zip: bool, user_id: str, user_name: str) -> str:
    """A RetrieveResult in WSDL order; a failed retrieve carries errorMessage and errorStatusCode and a nil zipFile
    (SFDO-Tooling/CumulusCI cumulusci/tasks/salesforce/tests/test_UninstallPackaged.py)."""
    if job.get("error"):
        code, message = job["error"]
        return envelope(
            f"<checkRetrieveStatusResponse><result><done>true</done><errorMessage>{escape(message)}</errorMessage>"
            f"<errorStatusCode>{code}</errorStatusCode><id>{job['id']}</id><status>Failed</status>"
            '<success>false</success><zipFile xsi:nil="true"/></result></checkRetrieveStatusResponse>'
        )
    props = "".join(f"<fileProperties>{file_properties(r, user_id, user_name)}</fileProperties>" for r in job["rows"])
    messages = "".join(
        f"<messages><fileName>unpackaged/package.xml</fileName><problem>{escape(p)}</problem></messages>"
        for p in job["problems"]
    )
    zip_b64 = base64.b64encode(job["zip"]).decode() if include_zip else ""
    return envelope(
        f"<checkRetrieveStatusResponse><result><done>true</done>{props}<id>{job['id']}</id>{messages}"
        f"<status>Succeeded</status><success>true</success><zipFile>{zip_b64}</zipFile></result>"
        "</checkRetrieveStatusResponse>"
    )


def retrieve_started_xml(async_id: str) -> str:
    return envelope(
        f"<retrieveResponse><result><done>false</done><id>{async_id}</id><state>Queued</state>"
        "</result></retrieveResponse>"
    )


def check_status_xml(results: list[tuple[str, tuple[str, str] | None]]) -> str:
    """checkStatus: an AsyncResult per Id asked (API 29.0/30.0 fields in WSDL order: done, id, message, state,
    statusCode). sforg completes a retrieve or deploy at once, so each is done: Completed, or Error with the
    failure's status code and message."""
    out = []
    for async_id, error in results:
        if error is None:
            out.append(f"<result><done>true</done><id>{async_id}</id><state>Completed</state></result>")
        else:
            code, message = error
            out.append(
                f"<result><done>true</done><id>{async_id}</id><message>{escape(message)}</message>"
                f"<state>Error</state><statusCode>{code}</statusCode></result>"
            )
    return envelope(f"<checkStatusResponse>{''.join(out)}</checkStatusResponse>")


def deploy_started_xml(async_id: str) -> str:
    return envelope(
        f"<deployResponse><result><done>false</done><id>{async_id}</id><state>Queued</state></result></deployResponse>"
    )


def _bool(v: Any) -> str:
    return "true" if v else "false"


def deploy_message_xml(m: dict[str, Any], created_date: str) -> str:
    """A DeployMessage, elements in WSDL order."""
    out = f"<changed>{_bool(m['changed'])}</changed>"
    if m["componentType"]:
        out += f"<componentType>{escape(m['componentType'])}</componentType>"
    out += (
        f"<created>{_bool(m['created'])}</created><createdDate>{created_date}</createdDate>"
        f"<deleted>false</deleted><fileName>{escape(m['fileName'])}</fileName>"
        f"<fullName>{escape(m['fullName'])}</fullName>"
    )
    if m["problem"] is not None:
        out += f"<problem>{escape(m['problem'])}</problem><problemType>Error</problemType>"
    return out + f"<success>{_bool(m['success'])}</success>"


def deploy_result_xml(r: dict[str, Any], user_id: str, user_name: str, details: bool = True) -> str:
    """checkDeployStatus's DeployResult, elements in WSDL (alphabetical) order."""
    failures, successes = r["failures"], r["successes"]
    detail = ""
    if details:
        detail = "".join(
            f"<componentFailures>{deploy_message_xml(m, r['createdDate'])}</componentFailures>" for m in failures
        ) + "".join(
            f"<componentSuccesses>{deploy_message_xml(m, r['createdDate'])}</componentSuccesses>" for m in successes
        )
    status = "Succeeded" if r["success"] else "Failed"
    deployed = len(successes) if r["success"] else 0
    error = ""
    if r.get("errorMessage"):
        error = (
            f"<errorMessage>{escape(r['errorMessage'])}</errorMessage>"
            f"<errorStatusCode>{escape(r.get('errorStatusCode') or 'UNKNOWN_EXCEPTION')}</errorStatusCode>"
        )
    return envelope(
        "<checkDeployStatusResponse><result>"
        f"<checkOnly>{_bool(r['checkOnly'])}</checkOnly><completedDate>{r['completedDate']}</completedDate>"
        f"<createdBy>{user_id[:15]}</createdBy><createdByName>{escape(user_name)}</createdByName>"
        f"<createdDate>{r['createdDate']}</createdDate><details>{detail}</details><done>true</done>{error}"
        f"<id>{r['id']}</id><ignoreWarnings>false</ignoreWarnings>"
        f"<lastModifiedDate>{r['lastModifiedDate']}</lastModifiedDate>"
        f"<numberComponentErrors>{len(failures)}</numberComponentErrors>"
        f"<numberComponentsDeployed>{deployed}</numberComponentsDeployed>"
        f"<numberComponentsTotal>{len(failures) + len(successes)}</numberComponentsTotal>"
        "<numberTestErrors>0</numberTestErrors><numberTestsCompleted>0</numberTestsCompleted>"
        "<numberTestsTotal>0</numberTestsTotal><rollbackOnError>true</rollbackOnError>"
        f"<runTestsEnabled>false</runTestsEnabled><startDate>{r['startDate']}</startDate>"
        f"<status>{status}</status><success>{_bool(r['success'])}</success>"
        "</result></checkDeployStatusResponse>"
    )


def local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse_request(body: bytes) -> tuple[str | None, ET.Element | None, str | None]:
    """(operation name, operation element, session id) of a SOAP request, whatever its prefixes."""
    root = ET.fromstring(body)
    session = None
    op = None
    op_el = None
    for el in root.iter():
        if local(el.tag) == "sessionId" and el.text:
            session = el.text.strip()
    for child in root:
        if local(child.tag) == "Body":
            for op_candidate in child:
                op, op_el = local(op_candidate.tag), op_candidate
                break
    return op, op_el, session


def children(el: ET.Element, name: str) -> list[ET.Element]:
    return [c for c in el.iter() if local(c.tag) == name]


def text_of(el: ET.Element, name: str) -> str | None:
    for c in el.iter():
        if local(c.tag) == name:
            return (c.text or "").strip()
    return None
