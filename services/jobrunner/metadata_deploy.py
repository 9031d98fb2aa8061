"""Metadata API deploy and checkDeployStatus (shared/salesforce/WRITE.md §9), on MetadataClient's SOAP plumbing
(OrgClient's session, re-authentication, retries of transient faults, API accounting): a deploy of a zip, its
status polled until done, the per-component successes and failures read from the DeployResult.

The parsing is pure (`parse_deploy_result`), so the rules are tested without an org."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, TypeVar
from xml.etree import ElementTree as ET

from services.jobrunner.salesforce import MD_NS, MetadataClient, SalesforceError, _xml

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

    T = TypeVar("T", bound=DataclassInstance)

_N = f"{{{MD_NS}}}"


@dataclass(frozen=True)
class DeployMessage:
    """One DeployMessage of a DeployResult's details (a componentSuccess or a componentFailure)."""

    component_type: str
    full_name: str
    file_name: str
    success: bool
    created: bool = False
    changed: bool = False
    deleted: bool = False
    problem: str = ""
    problem_type: str = ""  # Warning | Error


@dataclass
class DeployResult:
    id: str
    done: bool
    status: str  # Pending | InProgress | Succeeded | SucceededPartial | Failed | Canceling | Canceled
    success: bool
    check_only: bool = False
    error_message: str = ""
    error_status_code: str = ""
    number_component_errors: int = 0
    number_components_deployed: int = 0
    number_components_total: int = 0
    successes: list[DeployMessage] = field(default_factory=list)
    failures: list[DeployMessage] = field(default_factory=list)
    test_failures: list[str] = field(default_factory=list)  # "Class.method: message"

    @property
    def succeeded(self) -> bool:
        return self.done and self.status == "Succeeded" and not self.failures


def _text(el: ET.Element | None, name: str) -> str:
    if el is None:
        return ""
    found = el.find(_N + name)
    if found is None:
        found = el.find(name)  # an answer without the namespace on its children
    return (found.text or "").strip() if found is not None else ""


def _flag(el: ET.Element | None, name: str) -> bool:
    return _text(el, name).lower() == "true"


def _number(el: ET.Element | None, name: str) -> int:
    try:
        return int(_text(el, name) or 0)
    except ValueError:
        return 0


def _children(el: ET.Element | None, name: str) -> list[ET.Element]:
    if el is None:
        return []
    return el.findall(_N + name) + el.findall(name)


_READ: dict[str, Callable[[ET.Element | None, str], object]] = {"str": _text, "bool": _flag, "int": _number}


def _read(cls: type[T], el: ET.Element | None, **given: object) -> T:
    """A result's dataclass from the element's children named as its fields are in camelCase (`problem_type`:
    problemType), each read as its field's type says; `given` holds the fields read otherwise."""
    read = {f.name: _READ[str(f.type)](el, _camel(f.name)) for f in fields(cls) if f.name not in given}
    return cls(**read, **given)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.title() for word in rest)


def _result_element(root: ET.Element) -> ET.Element | None:
    for el in root.iter():
        if el.tag in (_N + "result", "result"):
            return el
    return None


def parse_deploy_started(root: ET.Element) -> str:
    """The async process id of a deployResponse (AsyncResult)."""
    result = _result_element(root)
    async_id = _text(result, "id")
    if not async_id:
        raise SalesforceError(0, "DEPLOY", "deploy returned no id")
    return async_id


def parse_deploy_result(root: ET.Element) -> DeployResult:
    """A checkDeployStatusResponse's DeployResult (WRITE.md §9.3)."""
    result = _result_element(root)
    if result is None:
        raise SalesforceError(0, "DEPLOY", "checkDeployStatus returned no result")
    details = _children(result, "details")
    successes: list[DeployMessage] = []
    failures: list[DeployMessage] = []
    tests: list[str] = []
    for d in details:
        successes.extend(_read(DeployMessage, m) for m in _children(d, "componentSuccesses"))
        failures.extend(_read(DeployMessage, m) for m in _children(d, "componentFailures"))
        for run in _children(d, "runTestResult"):
            for f in _children(run, "failures"):
                tests.append(f"{_text(f, 'name')}.{_text(f, 'methodName')}: {_text(f, 'message')}")
    return _read(
        DeployResult,
        result,
        successes=successes,
        failures=[f for f in failures if f.problem_type != "Warning"],
        test_failures=tests,
    )


def deploy_body(zipped: bytes, *, check_only: bool, test_level: str = "", run_tests: tuple[str, ...] = ()) -> str:
    """The <met:deploy> element: the zip in base64 and the DeployOptions, booleans written the way
    simple-salesforce writes them (sforg and Salesforce accept both)."""

    def b(value: bool) -> str:
        return "true" if value else "false"

    options = (
        "<met:allowMissingFiles>false</met:allowMissingFiles><met:autoUpdatePackage>false</met:autoUpdatePackage>"
        f"<met:checkOnly>{b(check_only)}</met:checkOnly><met:ignoreWarnings>true</met:ignoreWarnings>"
        "<met:performRetrieve>false</met:performRetrieve><met:purgeOnDelete>false</met:purgeOnDelete>"
        "<met:rollbackOnError>true</met:rollbackOnError>"
        + "".join(f"<met:runTests>{_xml(t)}</met:runTests>" for t in run_tests)
        + "<met:singlePackage>true</met:singlePackage>"
        + (f"<met:testLevel>{_xml(test_level)}</met:testLevel>" if test_level else "")
    )
    return (
        f"<met:deploy><met:ZipFile>{base64.b64encode(zipped).decode()}</met:ZipFile>"
        f"<met:DeployOptions>{options}</met:DeployOptions></met:deploy>"
    )


class MetadataDeployClient(MetadataClient):
    """MetadataClient (describe, list, retrieve) plus deploy and checkDeployStatus."""

    @classmethod
    def of(cls, md: MetadataClient) -> MetadataDeployClient:
        """The deploy client on the same org connection as a MetadataClient (JobOrgClient.metadata(...))."""
        return cls(md.client, reserve_percent=md.reserve_percent)

    def deploy(self, zipped: bytes, *, check_only: bool, test_level: str = "") -> str:
        """Starts a deploy; returns its async process id."""
        return parse_deploy_started(
            self._call("deploy", deploy_body(zipped, check_only=check_only, test_level=test_level))
        )

    def check_deploy_status(self, async_id: str) -> DeployResult:
        root = self._call(
            "checkDeployStatus",
            f"<met:checkDeployStatus><met:asyncProcessId>{_xml(async_id)}</met:asyncProcessId>"
            "<met:includeDetails>true</met:includeDetails></met:checkDeployStatus>",
        )
        return parse_deploy_result(root)

    def wait_deploy(
        self, async_id: str, *, should_stop: Callable[[], None] | None = None, max_wait_s: float = 3600.0
    ) -> DeployResult:
        """checkDeployStatus until done (polling Salesforce's asynchronous deploy, with back-off)."""
        delay, waited = 0.2, 0.0
        while True:
            result = self.check_deploy_status(async_id)
            if result.done or result.status in ("Succeeded", "SucceededPartial", "Failed", "Canceled"):
                return result
            if waited > max_wait_s:
                raise SalesforceError(
                    0, "DEPLOY_TIMEOUT", f"deploy {async_id} still {result.status} after {waited:.0f} s"
                )
            if should_stop is not None:
                should_stop()
            time.sleep(delay)  # polling the org's asynchronous deploy, not a wait for our own work
            waited += delay
            delay = min(delay * 2, 10.0)


__all__ = ["DeployMessage", "DeployResult", "MetadataDeployClient", "deploy_body", "parse_deploy_result"]
