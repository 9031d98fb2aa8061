"""OAuth 2.0 token endpoint, SOAP partner login and the identity URL."""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import Any
from xml.sax.saxutils import escape

from aiohttp import web

from sforg import metadata as md
from sforg.api.http import Api, json_response, xml_response


class AuthApi(Api):
    def token_body(self, token: str) -> dict[str, Any]:
        ident = self.org.identity
        issued = str(int(self.org.now() * 1000))
        sig = base64.b64encode(
            hmac.new(ident["client_secret"].encode(), (token + issued).encode(), "sha256").digest()
        ).decode()
        return {
            "access_token": token,
            "instance_url": self.base_url,
            "id": f"https://login.salesforce.com/id/{ident['org_id']}/{ident['user_id']}",
            "token_type": "Bearer",
            "issued_at": issued,
            "signature": sig,
        }

    async def oauth(self, request: web.Request) -> web.Response:
        form = await request.post()
        grant = str(form.get("grant_type", ""))
        ident = self.org.identity
        client_id, client_secret = str(form.get("client_id", "")), str(form.get("client_secret", ""))
        auth = request.headers.get("Authorization", "")
        if auth.lower().startswith("basic "):
            try:
                client_id, _, client_secret = base64.b64decode(auth[6:]).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return json_response(
                    {"error": "invalid_client", "error_description": "invalid client credentials"}, 400
                )

        def oauth_error(code: str, desc: str) -> web.Response:
            return json_response({"error": code, "error_description": desc}, 400)

        if grant == "client_credentials":
            if client_id != ident["client_id"] or client_secret != ident["client_secret"]:
                return oauth_error("invalid_client", "invalid client credentials")
            body = self.token_body(self.org.issue_token())
            body["scope"] = "api"
            return json_response(body)
        if grant == "password":
            if client_id != ident["client_id"] or client_secret != ident["client_secret"]:
                return oauth_error("invalid_client", "invalid client credentials")
            password = str(form.get("password", ""))
            if form.get("username") != ident["username"] or password not in (
                ident["password"],
                ident["password"] + ident["security_token"],
            ):
                return oauth_error("invalid_grant", "authentication failure")
            return json_response(self.token_body(self.org.issue_token()))
        if grant == "refresh_token":
            if client_id != ident["client_id"] or (client_secret and client_secret != ident["client_secret"]):
                return oauth_error("invalid_client", "invalid client credentials")
            if form.get("refresh_token") != ident["refresh_token"]:
                return oauth_error("invalid_grant", "expired access/refresh token")
            return json_response(self.token_body(self.org.issue_token()))
        return oauth_error("unsupported_grant_type", "grant type not supported")

    async def soap_login(self, request: web.Request, path: str) -> web.Response:
        body = await request.read()
        version = path.split("/services/Soap/u/")[1].split("/")[0]
        try:
            _, op_el, _ = md.parse_request(body)
        except Exception:
            op_el = None
        ident = self.org.identity
        username = md.text_of(op_el, "username") if op_el is not None else None
        password = md.text_of(op_el, "password") if op_el is not None else None
        if username != ident["username"] or password not in (
            ident["password"],
            ident["password"] + ident["security_token"],
        ):
            msg = "Invalid username, password, security token; or user locked out."
            return xml_response(
                '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/'
                'soap/envelope/" xmlns:sf="urn:fault.partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/'
                f'XMLSchema-instance"><soapenv:Body><soapenv:Fault><faultcode>sf:INVALID_LOGIN</faultcode>'
                f"<faultstring>INVALID_LOGIN: {msg}</faultstring><detail>"
                '<sf:LoginFault xsi:type="sf:LoginFault">'
                f"<sf:exceptionCode>INVALID_LOGIN</sf:exceptionCode><sf:exceptionMessage>{msg}"
                "</sf:exceptionMessage></sf:LoginFault></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>",
                500,
            )
        token = self.org.issue_token()
        org15 = ident["org_id"][:15]
        return xml_response(
            '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/'
            'soap/envelope/" xmlns="urn:partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-'
            'instance"><soapenv:Body><loginResponse><result>'
            f"<metadataServerUrl>{self.base_url}/services/Soap/m/{version}/{org15}</metadataServerUrl>"
            "<passwordExpired>false</passwordExpired><sandbox>false</sandbox>"
            f"<serverUrl>{self.base_url}/services/Soap/u/{version}/{org15}</serverUrl>"
            f"<sessionId>{escape(token)}</sessionId><userId>{ident['user_id']}</userId><userInfo>"
            "<accessibilityMode>false</accessibilityMode><currencySymbol>$</currencySymbol>"
            "<orgDefaultCurrencyIsoCode>USD</orgDefaultCurrencyIsoCode><organizationId>"
            f"{ident['org_id']}</organizationId><organizationName>sforg</organizationName>"
            f"<userEmail>{ident['username']}</userEmail><userFullName>Admin User</userFullName>"
            f"<userId>{ident['user_id']}</userId><userName>{ident['username']}</userName>"
            "<userTimeZone>Europe/Paris</userTimeZone></userInfo></result></loginResponse></soapenv:Body>"
            "</soapenv:Envelope>"
        )

    async def identity(self, request: web.Request) -> web.Response:
        token = request.query.get("oauth_token") or self.bearer(request)
        if not self.org.check_token(token):
            return json_response({"error": "Bad_OAuth_Token"}, 403)
        ident = self.org.identity
        return json_response(
            {
                "id": f"https://login.salesforce.com/id/{ident['org_id']}/{ident['user_id']}",
                "user_id": ident["user_id"],
                "organization_id": ident["org_id"],
                "username": ident["username"],
                "active": True,
            }
        )
