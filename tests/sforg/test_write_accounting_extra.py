"""Two facts of sforg that every restore test leans on: the API user every client logs in as is active (a
restore falls back to it as owner), and a validating deploy (checkOnly) is no write."""

from __future__ import annotations

import base64
import io
import zipfile
from pathlib import Path

import requests

from sforg.testing import Admin, ca_bundle, running_org


def test_the_api_user_is_active_whatever_the_seed(tmp_path: Path) -> None:
    for seed in (1, 5, 11):
        with running_org(tmp_path / f"org{seed}", scale=300, seed=seed) as info:
            users = Admin(info).ground_truth(["User"])["objects"]["User"]
            assert users[info["user_id"]]["IsActive"] is True, seed


def _deploy_body(token: str, check_only: bool) -> str:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(
            "package.xml",
            '<?xml version="1.0" encoding="UTF-8"?><Package xmlns="http://soap.sforce.com/2006/04/metadata">'
            "<types><members>Hello</members><name>ApexClass</name></types><version>62.0</version></Package>",
        )
        z.writestr("classes/Hello.cls", "public class Hello { }")
        z.writestr(
            "classes/Hello.cls-meta.xml",
            '<?xml version="1.0" encoding="UTF-8"?><ApexClass xmlns="http://soap.sforce.com/2006/04/metadata">'
            "<apiVersion>62.0</apiVersion><status>Active</status></ApexClass>",
        )
    zipped = base64.b64encode(buf.getvalue()).decode()
    return (
        '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"'
        ' xmlns:met="http://soap.sforce.com/2006/04/metadata"><soapenv:Header><met:SessionHeader>'
        f"<met:sessionId>{token}</met:sessionId></met:SessionHeader></soapenv:Header><soapenv:Body><met:deploy>"
        f"<met:ZipFile>{zipped}</met:ZipFile><met:DeployOptions><met:checkOnly>{str(check_only).lower()}"
        "</met:checkOnly><met:singlePackage>true</met:singlePackage></met:DeployOptions></met:deploy>"
        "</soapenv:Body></soapenv:Envelope>"
    )


def test_a_validating_deploy_is_no_write_and_a_real_one_is(tmp_path: Path) -> None:
    with running_org(tmp_path / "org", scale=300, seed=1) as info:
        admin = Admin(info)
        token = requests.post(
            info["login_url"] + "/services/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_id": info["client_id"],
                "client_secret": info["client_secret"],
            },
            verify=ca_bundle(info),
            timeout=30,
        ).json()["access_token"]
        url = f"{info['instance_url']}/services/Soap/m/{info['api_version']}"
        headers = {"Content-Type": "text/xml", "SOAPAction": "deploy"}
        admin.reset_accounting()
        for check_only, writes in ((True, 0), (False, 1)):
            answer = requests.post(
                url, data=_deploy_body(token, check_only), headers=headers, verify=ca_bundle(info), timeout=30
            )
            assert answer.status_code == 200, answer.text[:500]
            assert admin.accounting()["writes"] == writes, check_only
