"""Metadata API (SOAP): describeMetadata, listMetadata, retrieve and checkRetrieveStatus."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from aiohttp import web

from sforg import metadata as md
from sforg.api.http import Api, xml_response
from sforg.ids import make_id


class MetadataApi(Api):
    async def handle(self, request: web.Request, path: str) -> web.Response:
        org = self.org
        body = await request.read()
        version = path.split("/services/Soap/m/")[1].split("/")[0]
        try:
            op, op_el, session = md.parse_request(body)
        except Exception:
            return xml_response(md.fault("INVALID_XML", "could not parse the request"), 500)
        session = session or self.bearer(request)
        if not org.check_token(session):
            return xml_response(
                md.fault("INVALID_SESSION_ID", "Invalid Session ID found in SessionHeader: Illegal Session"),
                500,
            )
        assert op_el is not None
        user_id, user_name = org.identity["user_id"], "Admin User"
        if op == "describeMetadata":
            return xml_response(md.describe_metadata_xml(version))
        if op == "listMetadata":
            types = [md.text_of(q, "type") for q in md.children(op_el, "queries")]
            rows = self.metadata_rows([t for t in types if t])
            return xml_response(md.list_metadata_xml(rows, user_id, user_name))
        if op == "retrieve":
            requested: dict[str, list[str]] = {}
            for t in md.children(op_el, "types"):
                name = md.text_of(t, "name") or ""
                requested.setdefault(name, []).extend(
                    (m.text or "").strip() for m in t.iter() if md.local(m.tag) == "members"
                )
            single = (md.text_of(op_el, "singlePackage") or "false").lower() == "true"
            rows, problems = [], []
            unretrievable = set(org.settings["unretrievable_metadata"])
            for mtype, members in requested.items():
                available = {
                    r["full_name"]: r
                    for r in self.metadata_rows([mtype])
                    if f"{mtype}:{r['full_name']}" not in unretrievable
                }
                for member in members:
                    if member == "*":
                        rows.extend(available.values())
                    elif member in available:
                        rows.append(available[member])
                    else:
                        problems.append(f"Entity of type '{mtype}' named '{member}' cannot be found")
            async_id = make_id("09S", secrets.randbelow(62**9), pod="Dx")
            job: dict[str, Any] = {"id": async_id, "rows": rows, "problems": problems, "single": single}
            packages = [(p.text or "").strip() for p in md.children(op_el, "packageNames") if (p.text or "").strip()]
            if packages:
                # sforg's org has no packages: Salesforce ends such a retrieve Failed (SFDO-Tooling/CumulusCI
                # cumulusci/tasks/salesforce/tests/test_UninstallPackaged.py).
                job["error"] = (
                    "UNKNOWN_EXCEPTION",
                    f"INVALID_CROSS_REFERENCE_KEY: No package named '{packages[0]}' found",
                )
            else:
                zip_bytes = md.build_zip(rows, requested, version, single, org.catalogue)
                files = len(md.zip_names(zip_bytes)) - 1  # package.xml aside
                if files > org.settings["retrieve_max_files"]:
                    # tprouvot/Salesforce-Inspector-reloaded issue 741 (a real checkRetrieveStatus answer)
                    limit = org.settings["retrieve_max_files"]
                    job["error"] = (
                        "LIMIT_EXCEEDED",
                        f"LIMIT_EXCEEDED: Too many files in retrieve call, limit is: {limit}",
                    )
                elif len(zip_bytes) > org.settings["retrieve_max_bytes"]:
                    limit = org.settings["retrieve_max_bytes"]
                    job["error"] = (
                        "LIMIT_EXCEEDED",
                        f"LIMIT_EXCEEDED: Retrieve result size exceeds the limit: {limit} bytes",
                    )
                else:
                    job["zip"] = zip_bytes
            org.retrieves[async_id] = job
            return xml_response(md.retrieve_started_xml(async_id))
        if op == "checkStatus":
            # removed from the WSDL in API 31.0, yet CumulusCI's retrieve still polls it after retrieve(), and
            # Salesforce answers it: an AsyncResult per asyncProcessId
            asked = [(m.text or "").strip() for m in md.children(op_el, "asyncProcessId")]
            results: list[tuple[str, tuple[str, str] | None]] = []
            for async_id in asked:
                started = org.retrieves.get(async_id)
                if started is None and org.deploy_status(async_id) is None:
                    return xml_response(md.fault("INVALID_ID_FIELD", f"Invalid id: {async_id}"), 500)
                results.append((async_id, started.get("error") if started else None))
            return xml_response(md.check_status_xml(results))
        if op == "checkRetrieveStatus":
            async_id = md.text_of(op_el, "asyncProcessId") or ""
            found = org.retrieves.get(async_id)
            if found is None:
                return xml_response(md.fault("INVALID_ID_FIELD", f"Invalid id: {async_id}"), 500)
            include = (md.text_of(op_el, "includeZip") or "true").lower() == "true"
            return xml_response(md.retrieve_result_xml(found, include, user_id, user_name))
        if op == "deploy":
            zip_b64 = md.text_of(op_el, "ZipFile") or ""
            check_only = (md.text_of(op_el, "checkOnly") or "false").lower() == "true"
            result = await asyncio.get_running_loop().run_in_executor(None, org.deploy, zip_b64, check_only)
            return xml_response(md.deploy_started_xml(result["id"]))
        if op == "checkDeployStatus":
            async_id = md.text_of(op_el, "asyncProcessId") or md.text_of(op_el, "id") or ""
            deployed = org.deploy_status(async_id)
            if deployed is None:
                return xml_response(md.fault("INVALID_ID_FIELD", f"Invalid id: {async_id}"), 500)
            details = (md.text_of(op_el, "includeDetails") or "true").lower() == "true"
            return xml_response(md.deploy_result_xml(deployed, user_id, user_name, details))
        return xml_response(md.fault("UNKNOWN_EXCEPTION", f"sforg does not emulate the {op} call"), 500)

    def metadata_rows(self, types: list[str]) -> list[dict[str, Any]]:
        out = []
        for t in types:
            for r in self.org.store.conn().execute(
                "SELECT type, full_name, id, file_name, content, created_date, last_modified_date "
                "FROM metadata WHERE type=? ORDER BY full_name",
                (t,),
            ):
                out.append(
                    dict(
                        zip(
                            [
                                "type",
                                "full_name",
                                "id",
                                "file_name",
                                "content",
                                "created_date",
                                "last_modified_date",
                            ],
                            r,
                            strict=True,
                        )
                    )
                )
        return out
