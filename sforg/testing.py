"""Test helpers: start an org in a subprocess (`running_org`), drive it with `Admin`, connect a client."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from ssl import SSLContext, create_default_context
from typing import Any

from sforg.admin_calls import Fault, RecordUpdate


class OrgStartError(RuntimeError):
    """The sforg process exited or did not write org.json in time."""


@contextlib.contextmanager
def running_org(
    state_dir: str | os.PathLike[str],
    scale: str | int = "tiny",
    seed: int = 1,
    port: int = 0,
    timeout: float = 300.0,
) -> Iterator[dict[str, Any]]:
    """Start `python -m sforg serve` on state_dir and yield the org.json values; stop it on exit.

    The dict carries instance_url, login_url, client_id, client_secret, username, password, security_token,
    refresh_token, admin_token, api_version, ca_file, org_id, user_id, port and state_dir.
    """
    state = Path(state_dir)
    state.mkdir(parents=True, exist_ok=True)
    info_file = state / "org.json"
    info_file.unlink(missing_ok=True)
    log = open(state / "sforg.log", "ab")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sforg",
            "serve",
            "--port",
            str(port),
            "--state-dir",
            str(state),
            "--scale",
            str(scale),
            "--seed",
            str(seed),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + timeout
        while not info_file.exists():
            if proc.poll() is not None:
                raise OrgStartError(f"sforg exited with {proc.returncode}; see {state / 'sforg.log'}")
            if time.monotonic() > deadline:
                raise OrgStartError(f"sforg did not start within {timeout} s; see {state / 'sforg.log'}")
            time.sleep(0.05)  # polling a file the server writes once it listens
        info = json.loads(info_file.read_text())
        info["pid"] = proc.pid
        yield info
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


class AdminError(RuntimeError):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"{status}: {body}")
        self.status, self.body = status, body


class Admin:
    """Python functions for a running org's /_sforg admin API: changes, clock, adversity, faults, truth."""

    def __init__(self, info: dict[str, Any]) -> None:
        self.base = info["instance_url"].rstrip("/") + "/_sforg/"
        self.token = info["admin_token"]
        self.ssl: SSLContext = create_default_context(cafile=info["ca_file"])

    def call(self, _op: str, _method: str = "POST", **kwargs: Any) -> Any:
        """Call one admin operation by name with keyword arguments (see ADMIN_METHODS in sforg.api.admin)."""
        url, method = self.base + _op, _method
        data = None
        if method == "GET":
            if kwargs:
                url += "?" + urllib.parse.urlencode({k: v for k, v in kwargs.items() if v is not None})
        else:
            data = json.dumps(kwargs).encode()
        req = urllib.request.Request(
            url,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, context=self.ssl, timeout=600) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raise AdminError(exc.code, exc.read().decode()) from exc

    # ---------------------------------------------------------------- changes
    def update(self, obj: str, **kw: Any) -> dict[str, Any]:
        """Update records (the arguments of admin_calls.RecordUpdate: n, fraction, ids, values, fields,
        same_modstamp, seed); returns {"ids", "modstamp"}."""
        return self.call("update_records", obj=obj, **asdict(RecordUpdate(**kw)))

    def mass_update(self, obj: str, **kw: Any) -> dict[str, Any]:
        """Every updated row gets one shared SystemModstamp (a data load or a picklist rename)."""
        return self.update(obj, same_modstamp=True, **kw)

    def create(self, obj: str, n: int = 1, values: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.call("create_records", obj=obj, n=n, values=values)

    def soft_delete(self, obj: str, n: int | None = None, ids: list[str] | None = None) -> dict[str, Any]:
        return self.call("soft_delete", obj=obj, n=n, ids=ids)

    def hard_delete(self, obj: str, n: int | None = None, ids: list[str] | None = None) -> dict[str, Any]:
        return self.call("hard_delete", obj=obj, n=n, ids=ids)

    def undelete(self, obj: str, ids: list[str] | None = None, n: int | None = None) -> dict[str, Any]:
        return self.call("undelete", obj=obj, ids=ids, n=n)

    def purge_recycle_bin(self, obj: str | None = None, ids: list[str] | None = None) -> dict[str, Any]:
        """Empty the recycle bin (of one object, or of given Ids with their cascade families)."""
        return self.call("purge_recycle_bin", obj=obj, ids=ids)

    def validation_rules(self) -> dict[str, Any]:
        """{rule name: {"object", "field", "message", "active"}} of the org's validation rules."""
        return self.call("validation_rules")

    def validation_rule(self, name: str, active: bool) -> dict[str, Any]:
        """Turn a validation rule on or off (e.g. "Opportunity.Amount_Not_Negative")."""
        return self.call("set_validation_rule", name=name, active=active)

    def add_field(self, obj: str, name: str, type: str = "string", **kw: Any) -> dict[str, Any]:
        return self.call("add_field", obj=obj, name=name, type=type, **kw)

    def remove_field(self, obj: str, name: str) -> dict[str, Any]:
        return self.call("remove_field", obj=obj, name=name)

    def add_object(self, name: str, label: str | None = None, records: int = 0) -> dict[str, Any]:
        return self.call("add_object", name=name, label=label, records=records)

    def remove_object(self, name: str) -> dict[str, Any]:
        return self.call("remove_object", name=name)

    def change_metadata(self, type: str, full_name: str, content: str | None = None) -> dict[str, Any]:
        return self.call("change_metadata", type=type, full_name=full_name, content=content)

    def add_file_version(
        self, content: bytes, content_document_id: str | None = None, title: str | None = None
    ) -> dict[str, Any]:
        return self.call(
            "add_file_version",
            content_b64=base64.b64encode(content).decode(),
            content_document_id=content_document_id,
            title=title,
        )

    # ---------------------------------------------------------------- clock
    def clock(self) -> dict[str, Any]:
        return self.call("clock_info")

    def set_clock(self, when: str | float, freeze: bool = False) -> dict[str, Any]:
        return self.call("clock_set", when=when, freeze=freeze)

    def advance_clock(self, seconds: float) -> dict[str, Any]:
        return self.call("clock_advance", seconds=seconds)

    def reset_clock(self) -> dict[str, Any]:
        return self.call("clock_reset")

    # ---------------------------------------------------------------- adversity and settings
    def settings(self, **kw: Any) -> dict[str, Any]:
        """token_ttl, locator_ttl, late_commit_delay, formula_drift, hidden_fields, api_max, concurrent_limit,
        long_running_seconds."""
        return self.call("set_settings", **kw)

    def late_commits(self, delay_seconds: float) -> dict[str, Any]:
        return self.settings(late_commit_delay=delay_seconds)

    def formula_drift(self, on: bool = True) -> dict[str, Any]:
        return self.settings(formula_drift=on)

    def hide_fields(self, hidden: dict[str, list[str]]) -> dict[str, Any]:
        return self.settings(hidden_fields=hidden)

    # ---------------------------------------------------------------- faults
    def fault(self, endpoint: str = "*", **kw: Any) -> dict[str, Any]:
        """Arm a fault (the arguments of admin_calls.Fault: endpoint, error_rate, error, latency, hang,
        stall_after, count)."""
        return self.call("set_fault", **asdict(Fault(endpoint, **kw)))

    def clear_faults(self) -> dict[str, Any]:
        return self.call("clear_faults")

    def revoke_tokens(self) -> Any:
        return self.call("revoke_tokens")

    def expire_locators(self) -> dict[str, Any]:
        return self.call("expire_locators")

    def api_usage(
        self, used: int | None = None, max: int | None = None, bulk_jobs: int | None = None
    ) -> dict[str, Any]:
        """Set the daily API counter and maximum, and the number of Bulk 2.0 query jobs run today."""
        return self.call("set_api_usage", used=used, max=max, bulk_jobs=bulk_jobs)

    def concurrency_limit(self, limit: int, long_running_seconds: float = 20.0) -> dict[str, Any]:
        return self.settings(concurrent_limit=limit, long_running_seconds=long_running_seconds)

    # ---------------------------------------------------------------- accounting and truth
    def accounting(self) -> dict[str, Any]:
        return self.call("get_accounting")

    def reset_accounting(self) -> dict[str, Any]:
        return self.call("reset_accounting")

    def ground_truth(self, objects: list[str] | None = None, values: bool = True) -> dict[str, Any]:
        return self.call("ground_truth", objects=objects, values=values)

    def info(self) -> dict[str, Any]:
        return self.call("info", "GET")


def ca_bundle(info: dict[str, Any]) -> str:
    """A CA bundle file holding the system roots plus the org's CA, for REQUESTS_CA_BUNDLE.

    requests lets REQUESTS_CA_BUNDLE override session.verify, and zeep (mdapi) uses its own session, so the
    environment variable is the one switch that reaches every client; keeping the system roots in the bundle
    keeps other HTTPS calls working.
    """
    import ssl

    bundle = Path(info["state_dir"]) / "ca-bundle.pem"
    system = ""
    for candidate in (
        os.environ.get("SSL_CERT_FILE"),
        ssl.get_default_verify_paths().cafile,
        "/etc/ssl/certs/ca-certificates.crt",
    ):
        if candidate and Path(candidate).is_file():
            system = Path(candidate).read_text()
            break
    bundle.write_text(system + "\n" + Path(info["ca_file"]).read_text())
    return str(bundle)


def simple_salesforce(info: dict[str, Any], version: str | None = None) -> Any:
    """A simple_salesforce.Salesforce logged in with client credentials (set REQUESTS_CA_BUNDLE first)."""
    from simple_salesforce import Salesforce

    host = info["login_url"].removeprefix("https://")
    return Salesforce(
        consumer_key=info["client_id"],
        consumer_secret=info["client_secret"],
        domain=f"{host}/sforg",
        version=version or info["api_version"],
    )
