"""The metadata restore job (JOB_TYPE_METADATA_RESTORE): chosen components put back as they were at a point in
time through the Metadata API deploy.

For each "Type:FullName" of spec.restore.spec.metadata_components: its content at as_of from storage
(GetMetadataAsOf; not held, or deleted then: Failed "not in the backup at T"); the org's current content
retrieved, so a component already equal to the backup (same SHA-256, extracted as the backup job extracts it)
is Skipped; the rest packed in one deploy zip (package.xml, each file at its backed-up path, custom fields inside
objects/X.object, the -meta.xml of code the org's own or made), validated first (checkOnly): a validation
that fails deploys nothing, and every component Fails with the problem Salesforce gave. Then, unless check_only
or dry_run, deployed for real and polled; each component Updated (it existed), Created (it did not) or Failed.
Finally the deployed components are retrieved again and their hashes compared with the backup's (the
verification). The outcomes go to storage in one PutRestoreOutcomes chunk: object_name "metadata:<Type>",
source_id = target_id = "<Type>:<FullName>".

Resume: the real deploy's id is checkpointed before it is polled; an attempt resumed after that polls the same
deploy instead of deploying again (a second deploy would find the org equal and call everything Skipped)."""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol
from xml.etree import ElementTree as ET
from xml.sax.saxutils import escape, quoteattr

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from sfvault.restore.v1 import restore_pb2 as rpb
from sfvault.storage.v1 import storage_pb2 as spb

from services.jobrunner.job_run import JobRun
from services.jobrunner.metadata_deploy import DeployMessage, DeployResult, MetadataDeployClient
from services.jobrunner.metadata_job import _custom_field, _unzip
from services.jobrunner.salesforce import MD_NS, FileProperties
from services.platform.errors import InvalidArgument

# xmlName -> "directory/suffix": where a component lives in a deploy zip when storage holds no file name for it
# (components backed up before file names were kept), with a -meta.xml beside it or not. Any other type: its name in
# lower case, in a directory of that name plus "s" (Layout: layouts/x.layout; Flow, Profile, Workflow alike).
_WITH_META = {
    "ApexClass": "classes/cls",
    "ApexTrigger": "triggers/trigger",
    "ApexPage": "pages/page",
    "ApexComponent": "components/component",
    "StaticResource": "staticresources/resource",
}
_WITHOUT_META = {"CustomObject": "objects/object", "CustomField": "objects/object", "CustomLabels": "labels/labels"}
# xmlName -> (directory, suffix, has a -meta.xml)
LAYOUT: dict[str, tuple[str, str, bool]] = {
    name: (where.partition("/")[0], where.partition("/")[2], meta)
    for meta, table in ((True, _WITH_META), (False, _WITHOUT_META))
    for name, where in table.items()
}
STATUS_TYPES = {"ApexClass", "ApexTrigger"}  # their -meta.xml carries <status>


class InvalidComponent(InvalidArgument):
    """A "Type:FullName" that is not one."""


def parse_components(items: Iterable[str]) -> list[tuple[str, str]]:
    """("Type", "FullName") of each "Type:FullName", in order, each once."""
    out: list[tuple[str, str]] = []
    for item in items:
        mtype, sep, name = item.strip().partition(":")
        if not sep or not mtype.strip() or not name.strip() or not mtype.strip().isidentifier():
            raise InvalidComponent(f"{item!r} is not Type:FullName (e.g. ApexClass:MyClass)")
        key = (mtype.strip(), name.strip())
        if key not in out:
            out.append(key)
    if not out:
        raise InvalidComponent("no metadata component to restore")
    return out


def sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def fingerprint(mtype: str, content: bytes) -> str:
    """What decides that two contents of a component are the same: the SHA-256 of its bytes; of a custom field
    (an element cut out of its object's file, whitespace around it included) that of its elements without the
    indentation between them."""
    if mtype == "CustomField":
        try:
            return sha256(_normal(ET.fromstring(content)).encode())
        except ET.ParseError:
            pass
    return sha256(content)


def _normal(el: ET.Element) -> str:
    text = (el.text or "").strip() if len(el) else (el.text or "")
    return f"<{_local(el.tag)}>{escape(text)}" + "".join(_normal(c) for c in el) + f"</{_local(el.tag)}>"


def file_name_of(mtype: str, full_name: str, stored: str = "") -> str:
    """The component's path in a deploy zip (its backed-up file name, else the type's layout)."""
    if stored:
        return stored
    if mtype == "CustomField":
        return f"objects/{full_name.partition('.')[0]}.object"
    directory, suffix, _meta = LAYOUT.get(mtype, (mtype.lower() + "s", mtype.lower(), False))
    return f"{directory}/{full_name}.{suffix}"


def has_meta_file(mtype: str, file_name: str) -> bool:
    return LAYOUT.get(mtype, ("", "", False))[2] or mtype in STATUS_TYPES


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def plain_xml(el: ET.Element) -> str:
    """An element with every tag in the default namespace (what a metadata file writes), whatever prefixes the
    stored form carries (the backup keeps a custom field as ElementTree wrote it: `<ns0:fields xmlns:ns0=…>`)."""
    attrs = "".join(f" {_local(k)}={quoteattr(v)}" for k, v in el.attrib.items() if not k.startswith("{"))
    inner = escape(el.text or "") + "".join(plain_xml(c) + escape(c.tail or "") for c in el)
    tag = _local(el.tag)
    return f"<{tag}{attrs}>{inner}</{tag}>"


def object_file(fields: list[bytes], base: bytes | None = None) -> bytes:
    """objects/X.object holding these <fields> (each as the backup stored it); `base`, the object's own backed-up
    file when the CustomObject is restored too, keeps its other elements (a field named in both is the field's)."""
    parsed = [ET.fromstring(f) for f in fields]
    names = {next((c.text for c in p if _local(c.tag) == "fullName"), None) for p in parsed}
    kept: list[ET.Element] = []
    if base is not None:
        root = ET.fromstring(base)
        for child in root:
            is_field = _local(child.tag) == "fields"
            full = next((c.text for c in child if _local(c.tag) == "fullName"), None) if is_field else None
            if not (is_field and full in names):
                kept.append(child)
    body = "".join("\n    " + plain_xml(e) for e in [*parsed, *kept])
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<CustomObject xmlns="{MD_NS}">{body}\n</CustomObject>\n'.encode()


def package_xml(members: dict[str, list[str]], version: str) -> bytes:
    types = "".join(
        "\n    <types>"
        + "".join(f"\n        <members>{escape(m)}</members>" for m in sorted(names))
        + f"\n        <name>{escape(t)}</name>\n    </types>"
        for t, names in sorted(members.items())
    )
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Package xmlns="{MD_NS}">{types}\n'
        f"    <version>{escape(version)}</version>\n</Package>\n"
    ).encode()


def meta_xml(mtype: str, version: str) -> bytes:
    status = "<status>Active</status>" if mtype in STATUS_TYPES else ""
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<{mtype} xmlns="{MD_NS}">'
        f"<apiVersion>{escape(version)}</apiVersion>{status}</{mtype}>\n"
    ).encode()


@dataclass
class Component:
    """One component to restore: what the backup holds and what the org holds now."""

    type: str
    full_name: str
    content: bytes | None = None  # the backup's at as_of; None: not in the backup then
    file_name: str = ""
    current: bytes | None = None  # the org's now; None: the org has none
    state: int = rpb.RECORD_STATE_UNSPECIFIED
    error_code: str = ""
    message: str = ""
    note: str = ""

    @property
    def key(self) -> str:
        return f"{self.type}:{self.full_name}" if self.type else self.full_name

    @property
    def path(self) -> str:
        return file_name_of(self.type, self.full_name, self.file_name)


def build_deploy_zip(components: list[Component], version: str, org_files: dict[str, bytes] | None = None) -> bytes:
    """The deploy zip of these components: package.xml naming each, each file at its path; custom fields grouped
    into their object's file (merged with the object's own content when the CustomObject is deployed too); code's
    -meta.xml taken from the org's retrieve when it has one (its apiVersion and status kept), else made."""
    org_files = org_files or {}
    members: dict[str, list[str]] = {}
    files: dict[str, bytes] = {}
    fields: dict[str, list[bytes]] = {}
    objects: dict[str, bytes] = {}
    for c in components:
        assert c.content is not None
        members.setdefault(c.type, []).append(c.full_name)
        if c.type == "CustomField":
            fields.setdefault(c.full_name.partition(".")[0], []).append(c.content)
            continue
        if c.type == "CustomObject":
            objects[c.full_name] = c.content
            continue
        files[c.path] = c.content
        if has_meta_file(c.type, c.path):
            files[c.path + "-meta.xml"] = org_files.get(c.path + "-meta.xml") or meta_xml(c.type, version)
    for name in sorted(set(fields) | set(objects)):
        path = f"objects/{name}.object"
        if name in fields:
            files[path] = object_file(fields[name], objects.get(name))
        else:
            files[path] = objects[name]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("package.xml", package_xml(members, version))
        for path in sorted(files):
            zf.writestr(path, files[path])
    return buf.getvalue()


def current_content(files: dict[str, bytes], c: Component) -> bytes | None:
    """The org's content of a component in a retrieve, extracted exactly as the backup job extracts it (so equal
    contents hash alike)."""
    if c.type == "CustomField":
        found = _custom_field(files, FileProperties(c.type, c.full_name, c.path, ""))
        return found or None
    return files.get(c.path, files.get("unpackaged/" + c.path))


def failures_of(result: DeployResult, components: list[Component]) -> dict[str, str]:
    """Component key -> the problem Salesforce gave for it: by type and name, else by its file (a custom field's
    error may name only objects/X.object), else a package-wide error for all."""
    out: dict[str, str] = {}
    by_name: dict[tuple[str, str], list[DeployMessage]] = {}
    by_file: dict[str, list[DeployMessage]] = {}
    general: list[str] = []
    for f in result.failures:
        text = f.problem or "failed"
        if f.full_name and f.component_type:
            by_name.setdefault((f.component_type, f.full_name), []).append(f)
        elif f.file_name and f.file_name.rpartition("/")[2] != "package.xml":
            by_file.setdefault(f.file_name.removeprefix("unpackaged/"), []).append(f)
        else:
            general.append(text)
        if f.file_name and f.full_name and not f.component_type:
            by_file.setdefault(f.file_name.removeprefix("unpackaged/"), []).append(f)
    if result.error_message:
        general.append(result.error_message)
    general.extend(result.test_failures[:3])
    for c in components:
        own = by_name.get((c.type, c.full_name))
        if own is None and c.type == "CustomField":
            own = by_name.get(("CustomField", c.full_name.partition(".")[2])) or None
        if own is None:
            own = by_file.get(c.path)
        if own:
            out[c.key] = "; ".join(dict.fromkeys(f.problem or "failed" for f in own))
        elif general:
            out[c.key] = "; ".join(dict.fromkeys(general))
    return out


class DeployPort(Protocol):
    """The Metadata API calls a metadata restore makes (MetadataDeployClient)."""

    def retrieve(self, members: dict[str, list[str]], *, should_stop: Any = None) -> bytes: ...

    def deploy(self, zipped: bytes, *, check_only: bool, test_level: str = "") -> str: ...

    def wait_deploy(self, async_id: str, *, should_stop: Callable[[], None] | None = None) -> DeployResult: ...


class MetadataStorageReads(Protocol):
    """Storage as a metadata restore reads and writes it."""

    def metadata_as_of(
        self, org_id: str, mtype: str, full_name: str, as_of: Timestamp | None
    ) -> spb.MetadataVersion | None: ...

    def put_restore_outcomes(self, request: spb.PutRestoreOutcomesRequest) -> spb.ChunkResult: ...


class GrpcRestoreStorage:
    """MetadataStorageReads (and the file restore's reads) on the jobrunner's StorageClient: its stub, with its
    retries of UNAVAILABLE (every call here is a read, or a write idempotent by chunk_seq); NOT_FOUND is None."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.stub = client.stub

    def _call(self, fn: Callable[[], Any]) -> Any:
        call = getattr(self.client, "_call", None)
        return call(fn) if call is not None else fn()

    def metadata_as_of(
        self, org_id: str, mtype: str, full_name: str, as_of: Timestamp | None
    ) -> spb.MetadataVersion | None:
        req = spb.GetMetadataAsOfRequest(org_id=org_id, type=mtype, full_name=full_name)
        if as_of is not None:
            req.as_of.CopyFrom(as_of)

        def get() -> spb.MetadataVersion | None:
            try:
                return self.stub.GetMetadataAsOf(req, timeout=120)
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.NOT_FOUND:
                    return None
                raise

        result: spb.MetadataVersion | None = self._call(get)
        return result

    def put_restore_outcomes(self, request: spb.PutRestoreOutcomesRequest) -> spb.ChunkResult:
        own = getattr(self.client, "put_restore_outcomes", None)
        if own is not None and callable(own):
            try:
                result: spb.ChunkResult = own(request)
                return result
            except TypeError:
                pass  # another signature: the stub directly
        result = self._call(lambda: self.stub.PutRestoreOutcomes(request, timeout=300))
        return result


def restore_storage(storage: Any) -> Any:
    """The job's storage as a MetadataStorageReads: itself when it has the reads (a fake, or a StorageClient that
    grew them), else its gRPC stub wrapped."""
    if hasattr(storage, "metadata_as_of"):
        return storage
    return GrpcRestoreStorage(storage)


def deploy_client(md: Any) -> Any:
    """The job's MetadataClient as a DeployPort."""
    return md if hasattr(md, "deploy") else MetadataDeployClient.of(md)


def _parses(content: bytes) -> bool:
    try:
        ET.fromstring(content)
    except ET.ParseError:
        return False
    return True


def _when(ts: Timestamp | None) -> str:
    return ts.ToJsonString() if ts is not None else "the latest backup"


@dataclass
class Plan:
    components: list[Component]
    org_files: dict[str, bytes] = field(default_factory=dict)


class MetadataRestoreJob:
    """Restores chosen metadata components to their state at a point in time (module docstring)."""

    def __init__(self, run: JobRun, metadata_client: Any, storage_reads: Any) -> None:
        self.run = run
        self.md: DeployPort = deploy_client(metadata_client)
        self.storage: MetadataStorageReads = restore_storage(storage_reads)
        self.warnings: list[str] = []
        self.verification = rpb.Verification()
        self._counts: list[rpb.ObjectRestoreCounts] = []
        self.outcomes: list[rpb.RecordOutcome] = []
        self.write_calls = 0

    @property
    def spec(self) -> rpb.RestoreSpec:
        return self.run.spec.restore.spec

    def execute(self) -> str:
        run, spec = self.run, self.spec
        self._begin()
        if run.seq > 0 and run.checkpoint.get("seq") == run.seq:
            # the outcomes are stored: an attempt that ended after that has nothing left to do
            self.warnings.extend(run.checkpoint.get("warnings") or [])
            return str(run.checkpoint.get("summary") or "metadata restore already recorded")
        refs: list[tuple[str, str]] = []
        malformed: list[str] = []
        for item in spec.metadata_components:
            try:
                refs.extend(r for r in parse_components([item]) if r not in refs)
            except InvalidComponent:
                malformed.append(item)
        if not refs and not malformed:
            raise InvalidComponent("no metadata component to restore")
        as_of = spec.as_of if spec.HasField("as_of") else None
        dry = bool(spec.dry_run or spec.check_only)
        plan = self._plan(refs, as_of)
        for item in malformed:  # refused alone: the others are restored
            plan.components.append(
                Component(
                    "",
                    item,
                    state=rpb.RECORD_STATE_FAILED,
                    error_code="INVALID_COMPONENT",
                    message=f"{item!r} is not Type:FullName (e.g. ApexClass:MyClass)",
                )
            )
        planned = run.checkpoint.get("planned") or {}
        if run.checkpoint.get("deploy_id"):
            # resumed after the real deploy started: its components are judged by that deploy, not found equal now
            for c in plan.components:
                if c.key in planned and c.state == rpb.RECORD_STATE_SKIPPED:
                    c.state, c.note = rpb.RECORD_STATE_UNSPECIFIED, ""
        run.control.check()
        pending = [c for c in plan.components if c.state == rpb.RECORD_STATE_UNSPECIFIED]
        deployed = False
        if pending:
            zipped = build_deploy_zip(pending, self._version(), plan.org_files)
            deploy_id = str(run.checkpoint.get("deploy_id") or "")
            if not deploy_id:
                check = self.md.wait_deploy(self.md.deploy(zipped, check_only=True), should_stop=run.control.check)
                if not check.succeeded:
                    self._failed(pending, check, "DEPLOY_VALIDATION_FAILED", "validation failed; nothing deployed")
                elif dry:
                    why = "check only" if spec.check_only else "dry run"
                    for c in pending:
                        c.state = rpb.RECORD_STATE_CREATED if c.current is None else rpb.RECORD_STATE_UPDATED
                        c.note = f"validated, not deployed ({why})"
                else:
                    deploy_id = self.md.deploy(zipped, check_only=False)
                    run.save_state(deploy_id=deploy_id, planned={c.key: c.current is None for c in pending})
            if deploy_id:
                created = run.checkpoint.get("planned") or planned
                self.write_calls += 1
                result = self.md.wait_deploy(deploy_id, should_stop=run.control.check)
                if result.succeeded:
                    deployed = True
                    for c in pending:
                        new = bool(created.get(c.key, c.current is None))
                        c.state = rpb.RECORD_STATE_CREATED if new else rpb.RECORD_STATE_UPDATED
                else:
                    self._failed(pending, result, "DEPLOY_FAILED", "the deploy failed; nothing deployed")
        if deployed:
            self._verify(plan.components)
        elif not dry:
            skipped = [c for c in plan.components if c.state == rpb.RECORD_STATE_SKIPPED]
            self.verification = rpb.Verification(
                done=True,
                verified=len(skipped) == len(plan.components),
                matching=len(skipped),
                differing=len(plan.components) - len(skipped),
                samples=[f"{c.key}: {c.message}"[:300] for c in plan.components if c.state == rpb.RECORD_STATE_FAILED][
                    :20
                ],
            )
        summary = self._store(plan.components, dry)
        return summary

    @property
    def target(self) -> str:
        return self.run.spec.restore.target_salesforce_org_id or self.run.org

    def restore_counts(self) -> list[rpb.ObjectRestoreCounts]:
        """Totals per "metadata:<Type>" (JobFinished.restore)."""
        return list(self._counts)

    def all_failed(self) -> bool:
        return bool(self.outcomes) and all(o.state == rpb.RECORD_STATE_FAILED for o in self.outcomes)

    # ------------------------------------------------------------------ steps

    def _begin(self) -> None:
        """JobRun.begin for the target org: a restore job's chunks are keyed by the org it writes to."""
        run = self.run
        resp = run.storage.begin_job(self.target, run.spec.session_id, run.spec.job_id, run.spec.type, "")
        run.seq = int(resp.last_chunk_seq)
        run.received = int(resp.counts.received)
        run.checkpoint = run.store.checkpoint(run.spec.session_id, run.spec.job_id) or {}

    def _version(self) -> str:
        md = self.md
        client = getattr(md, "client", None)
        creds = getattr(client, "creds", None)
        return str(getattr(creds, "api_version", "") or getattr(md, "api_version", "") or "59.0")

    def _plan(self, refs: list[tuple[str, str]], as_of: Timestamp | None) -> Plan:
        run = self.run
        components = [Component(t, n) for t, n in refs]
        for c in components:
            run.control.check()
            version = self.storage.metadata_as_of(run.org, c.type, c.full_name, as_of)
            if version is None or version.deleted:
                c.state, c.error_code = rpb.RECORD_STATE_FAILED, "NOT_IN_BACKUP"
                c.message = f"not in the backup at {_when(as_of)}" + (" (deleted then)" if version is not None else "")
                continue
            content = bytes(version.content)
            if not content or (c.type in ("CustomField", "CustomObject") and not _parses(content)):
                # a field the backup could not cut out of its object's file is stored empty
                c.state, c.error_code = rpb.RECORD_STATE_FAILED, "NOT_IN_BACKUP"
                c.message = f"the backup at {_when(as_of)} holds no usable content for it"
                continue
            c.content, c.file_name = content, version.file_name
        held = [c for c in components if c.content is not None]
        org_files: dict[str, bytes] = {}
        if held:
            members: dict[str, list[str]] = {}
            for c in held:
                members.setdefault(c.type, []).append(c.full_name)
            org_files = _unzip(self.md.retrieve(members, should_stop=run.control.check))
            for c in held:
                c.current = current_content(org_files, c)
                assert c.content is not None
                if c.current is not None and fingerprint(c.type, c.current) == fingerprint(c.type, c.content):
                    c.state = rpb.RECORD_STATE_SKIPPED
                    c.note = "unchanged: the org's content equals the backup's"
        return Plan(components, org_files)

    @staticmethod
    def _failed(pending: list[Component], result: DeployResult, code: str, fallback: str) -> None:
        problems = failures_of(result, pending)
        for c in pending:
            c.state, c.error_code = rpb.RECORD_STATE_FAILED, code
            own = problems.get(c.key)
            c.message = (own if own else f"not deployed: {fallback} (other components' errors)")[:1000]

    def _verify(self, components: list[Component]) -> None:
        """The restored components read back from the org and compared with the backup's content."""
        changed = [c for c in components if c.state in (rpb.RECORD_STATE_UPDATED, rpb.RECORD_STATE_CREATED)]
        members: dict[str, list[str]] = {}
        for c in changed:
            members.setdefault(c.type, []).append(c.full_name)
        files = _unzip(self.md.retrieve(members, should_stop=self.run.control.check)) if members else {}
        matching = differing = 0
        samples: list[str] = []
        for c in components:
            if c.state == rpb.RECORD_STATE_SKIPPED:
                matching += 1
                continue
            if c.state == rpb.RECORD_STATE_FAILED:
                differing += 1
                samples.append(f"{c.key}: failed ({c.error_code})")
                continue
            now = current_content(files, c)
            assert c.content is not None
            if now is not None and fingerprint(c.type, now) == fingerprint(c.type, c.content):
                matching += 1
            else:
                differing += 1
                samples.append(f"{c.key}: " + ("missing after the deploy" if now is None else "content differs"))
        self.verification = rpb.Verification(
            done=True, verified=differing == 0, matching=matching, differing=differing, samples=samples[:20]
        )
        if differing:
            self.warnings.append(f"verification: {differing} of {len(components)} components differ from the backup")

    def _store(self, components: list[Component], dry: bool) -> str:
        run, spec = self.run, self.spec
        self.outcomes = [
            rpb.RecordOutcome(
                object_name=f"metadata:{c.type or 'invalid'}",
                source_id=c.key,
                target_id=c.key,
                state=c.state,  # type: ignore[arg-type]
                error_code=c.error_code,
                message=c.message,
                note=c.note,
            )
            for c in components
        ]
        self._counts = tally(self.outcomes, self.write_calls)
        failed = sum(1 for c in components if c.state == rpb.RECORD_STATE_FAILED)
        if failed:
            self.warnings.append(f"{failed} of {len(components)} components failed")
        counts = {
            s: sum(1 for c in components if c.state == v)
            for s, v in (
                ("created", rpb.RECORD_STATE_CREATED),
                ("updated", rpb.RECORD_STATE_UPDATED),
                ("skipped", rpb.RECORD_STATE_SKIPPED),
                ("failed", rpb.RECORD_STATE_FAILED),
            )
        }
        what = "would be" if dry else "were"
        summary = f"{len(components)} metadata components: " + ", ".join(f"{n} {s}" for s, n in counts.items())
        summary += f" ({what} restored from {_when(spec.as_of if spec.HasField('as_of') else None)})"
        if self.verification.done:
            summary += f"; verification: {self.verification.matching} matching, {self.verification.differing} differing"
        summary = "; ".join([summary, *(f"warning: {w}" for w in self.warnings)])
        target = self.target
        seq = run.announce({"phase": "outcomes"}, {"summary": summary, "warnings": self.warnings})
        request = spb.PutRestoreOutcomesRequest(
            source_org_id=run.org,
            target_org_id=target,
            session_id=run.spec.session_id,
            job_id=run.spec.job_id,
            chunk_seq=seq,
            outcomes=self.outcomes,
            dry_run=dry,
            write_calls=self.write_calls,
            api_calls=int(run.client.api_calls),
        )
        result = self.storage.put_restore_outcomes(request)
        if result.restore:
            self._counts = list(result.restore)
        run.committed(seq, result)
        run.save_state(phase="done")
        return summary


def tally(outcomes: Iterable[rpb.RecordOutcome], write_calls: int = 0) -> list[rpb.ObjectRestoreCounts]:
    """Counts per object_name and state (what storage's ChunkResult.restore says of a chunk), sorted by name;
    restore_files adds the bodies it wrote to them."""
    by: dict[str, rpb.ObjectRestoreCounts] = {}
    names = {
        rpb.RECORD_STATE_CREATED: "created",
        rpb.RECORD_STATE_UPDATED: "updated",
        rpb.RECORD_STATE_UNDELETED: "undeleted",
        rpb.RECORD_STATE_SKIPPED: "skipped",
        rpb.RECORD_STATE_FAILED: "failed",
    }
    for o in outcomes:
        counts = by.setdefault(o.object_name, rpb.ObjectRestoreCounts(object_name=o.object_name))
        name = names.get(o.state)
        if name:
            setattr(counts, name, getattr(counts, name) + 1)
    out = [by[k] for k in sorted(by)]
    if out and write_calls:
        out[0].write_calls = write_calls
    return out


__all__ = [
    "Component",
    "GrpcRestoreStorage",
    "InvalidComponent",
    "MetadataRestoreJob",
    "build_deploy_zip",
    "parse_components",
    "restore_storage",
]
