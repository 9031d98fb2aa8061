"""Who may do what on NATS: one user per service, each allowed to publish only the events it owns and to
read only what it consumes, plus an admin (tests, benchmarks, operators). The nats-server authorization
block of the embedded server and the Kubernetes Secret are both written from this table.

The table follows the code: `Bus.emit`/`enqueue_job`/`dead_letter` (what is published), the durable consumers
(`consume_events`, `pull_subscription`), the jobrunner's watcher (ordered consumers, last-message reads), the
access plumbing of services.platform.auth (the AUDIT stream each service appends to under its own subject, the
REVOKED_TOKENS key-value bucket every service follows and only discovery writes) and each connection's own
reply inbox (`_INBOX.<user>.>`, see `inbox_prefix`).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

SERVICES = ("storage", "session", "discovery", "jobrunner")
ADMIN = "admin"

# the events each service announces: nobody else may publish them
PUBLISHES: dict[str, tuple[str, ...]] = {
    "storage": ("ChunkUploaded",),
    "session": ("SessionRequested", "SessionCancelled", "JobTerminated", "SessionFailed", "SessionFinished"),
    "discovery": ("SessionStarted", "JobsPlanned", "SessionFailed"),
    "jobrunner": ("JobStarted", "JobFinished"),
}
# the durable consumers each service runs, by stream ("events" / "jobs" / "deadletter")
CONSUMES: dict[str, tuple[tuple[str, str], ...]] = {
    "storage": (),
    "session": (("events", "session-projection"),),
    "discovery": (("events", "discovery"), ("events", "discovery-outcomes")),
    "jobrunner": (("jobs", "jobrunner"),),
}


def inbox_prefix(user: str) -> str:
    """Each connection's replies arrive under its own prefix, so no user reads another's replies."""
    return f"_INBOX.{user}"


@dataclass(frozen=True)
class Permissions:
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]

    def as_config(self) -> dict[str, dict[str, list[str]]]:
        return {"publish": {"allow": list(self.publish)}, "subscribe": {"allow": list(self.subscribe)}}


def permissions(service: str, namespace: str = "") -> Permissions:
    """The subjects `service` may publish to and subscribe to, for streams and subjects under `namespace`."""
    ns = namespace
    streams = {"events": f"{ns.upper()}EVENTS", "jobs": f"{ns.upper()}JOBS", "deadletter": f"{ns.upper()}DEADLETTER"}
    api = "$JS.API"
    publish: list[str] = [f"{api}.INFO", f"{api}.STREAM.NAMES"]  # NAMES: which stream holds a subject
    for stream in streams.values():  # every service declares the streams at start-up (Bus.ensure_streams)
        publish += [f"{api}.STREAM.CREATE.{stream}", f"{api}.STREAM.UPDATE.{stream}", f"{api}.STREAM.INFO.{stream}"]
    publish += [f"{ns}sfvault.events.*.{kind}" for kind in PUBLISHES[service]]
    publish += _access(service, ns)
    for kind, durable in CONSUMES[service]:
        stream = streams[kind]
        publish += [
            f"{api}.CONSUMER.CREATE.{stream}.{durable}",
            f"{api}.CONSUMER.CREATE.{stream}.{durable}.>",
            f"{api}.CONSUMER.DURABLE.CREATE.{stream}.{durable}",
            f"{api}.CONSUMER.INFO.{stream}.{durable}",
            f"{api}.CONSUMER.MSG.NEXT.{stream}.{durable}",
            f"$JS.ACK.{stream}.{durable}.>",
            f"{ns}sfvault.dlq.{durable}",  # Bus.dead_letter
        ]
    events = streams["events"]
    if service == "discovery":
        publish.append(f"{ns}sfvault.jobs.>")  # the JOBS work queue
        # the last JobFinished's sequence (consumers.outcomes_caught_up: its outcomes recorded before planning)
        publish.append(f"{api}.STREAM.MSG.GET.{events}")
    if service == "session":  # `rebuild` reads the whole stream through a consumer of its own, then deletes it
        publish += [
            f"{api}.CONSUMER.CREATE.{events}.>",
            f"{api}.CONSUMER.INFO.{events}.*",
            f"{api}.CONSUMER.DELETE.{events}.*",
            f"{api}.CONSUMER.MSG.NEXT.{events}.*",
        ]
    if service == "jobrunner":  # the watcher: ordered consumers and the last closing events of a session
        publish += [
            f"{ns}sfvault.jobs.>",  # fair scheduling: a job deferred to the back of the JOBS work queue
            f"{api}.CONSUMER.CREATE.{events}",
            f"{api}.CONSUMER.CREATE.{events}.>",
            f"{api}.CONSUMER.INFO.{events}.*",
            f"{api}.CONSUMER.DELETE.{events}.*",
            f"{api}.CONSUMER.MSG.NEXT.{events}.*",
            f"{api}.STREAM.MSG.GET.{events}",
            f"{api}.DIRECT.GET.{events}.>",
            f"$JS.FC.{events}.>",
        ]
    return Permissions(tuple(publish), (f"{inbox_prefix(service)}.>",))


def _access(service: str, ns: str) -> list[str]:
    """services.platform.auth: the AUDIT stream and the REVOKED_TOKENS bucket (a stream KV_<bucket>)."""
    api = "$JS.API"
    audit, bucket = f"{ns.upper()}AUDIT", f"{ns.upper()}REVOKED_TOKENS"
    kv = f"KV_{bucket}"
    allowed = [f"{api}.STREAM.{op}.{stream}" for stream in (audit, kv) for op in ("CREATE", "UPDATE", "INFO")]
    allowed += [
        f"{ns}sfvault.audit.{service}",  # its own audit entries only
        # following the bucket: an ordered consumer (created, flow-controlled, deleted when re-watched)
        f"{api}.CONSUMER.CREATE.{kv}",
        f"{api}.CONSUMER.CREATE.{kv}.>",
        f"{api}.CONSUMER.INFO.{kv}.*",
        f"{api}.CONSUMER.DELETE.{kv}.*",
        f"$JS.FC.{kv}.>",
        f"{api}.DIRECT.GET.{kv}.>",
        f"{api}.STREAM.MSG.GET.{kv}",
    ]
    if service == "discovery":  # revokes tokens, and reads the audit back (ListAudit)
        allowed += [
            f"$KV.{bucket}.>",
            f"{api}.CONSUMER.CREATE.{audit}",
            f"{api}.CONSUMER.CREATE.{audit}.>",
            f"{api}.CONSUMER.INFO.{audit}.*",
            f"{api}.CONSUMER.DELETE.{audit}.*",
            f"{api}.CONSUMER.MSG.NEXT.{audit}.*",
        ]
    return allowed


def new_passwords(users: Iterable[str] = (*SERVICES, ADMIN)) -> dict[str, str]:
    return {user: secrets.token_urlsafe(24) for user in users}


def authorization_block(passwords: Mapping[str, str], namespace: str = "", *, from_environment: bool = False) -> str:
    """The nats-server `authorization` block: the admin may do anything, each service what `permissions`
    says. (NATS configuration accepts JSON: quoting keeps `$JS...` from being read as a variable.) With
    `from_environment`, each password is the server's environment variable of that name (left unquoted, so
    nats-server substitutes it): the Kubernetes manifests take them from a Secret that way."""
    users = []
    for user, password in passwords.items():
        entry: dict[str, object] = {"user": user, "password": password}
        if user != ADMIN:
            entry["permissions"] = permissions(user, namespace).as_config()
        users.append(entry)
    text = json.dumps({"users": users}, indent=2)
    if from_environment:
        for variable in passwords.values():
            text = text.replace(json.dumps(variable), f"${variable}")
    return "authorization: " + text + "\n"


def password_variable(user: str) -> str:
    """The nats-server environment variable holding `user`'s password in the Kubernetes manifests."""
    return f"NATS_PASSWORD_{user.upper()}"


def kubernetes_auth_conf() -> str:
    """k8s/components/nats/auth.conf: `python -m services.platform.natsauth > k8s/components/nats/auth.conf`
    (tests/k8s checks the committed file is this)."""
    header = (
        "# Generated by `python -m services.platform.natsauth` from services/platform/natsauth.py: do not edit.\n"
        "# One user per service with its permissions, and an admin; the passwords are the server's environment\n"
        "# variables, from the Secret sfvault-nats-users (one key per user, the same keys the services read).\n"
    )
    return header + authorization_block(
        {user: password_variable(user) for user in (*SERVICES, ADMIN)}, from_environment=True
    )


if __name__ == "__main__":
    print(kubernetes_auth_conf(), end="")
