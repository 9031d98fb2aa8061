"""`sfvault services up|down|status`: a local installation kept running by a background supervisor.

The supervisor (`python -m services.cli.local SFVAULT_HOME [ORG_SCALE]`) runs `localstack.local_stack`
until SIGTERM, starting again any service whose process exits (with back-off; each restart is logged in
`supervisor.log`); it writes `stack.json` (addresses), an auth key and an admin token into the home directory,
and with an emulated org, what `sfvault org add` needs to register it: `emulated-org.env` (README "Using it").
Started again, everything listens where it did (`ports.json`), so a registered emulated org keeps working.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devstack.localstack import local_stack
from services.platform.auth import mint
from services.platform.tracefile import VARIABLE as TRACE_FILE


def _kept(path: Path, make: Callable[[], str]) -> str:
    """The text of a file readable by its owner only, written with `make()` the first time."""
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(make())
    return path.read_text().strip()


def prepare_auth(home: Path) -> dict[str, str]:
    """A signing key (kept 0600 in home) for the services, and an admin token for the CLI."""
    home.mkdir(parents=True, exist_ok=True)
    key_file = home / "auth.key"
    key = _kept(key_file, lambda: secrets.token_urlsafe(48)).encode()
    _kept(home / "admin.token", lambda: mint(key, "local-admin", "admin", ttl_s=365 * 86400.0))
    return {"SFVAULT_AUTH_KEY": f"file:{key_file.resolve()}"}


STORAGE_KEY = "SFVAULT_STORAGE_ENCRYPTION_KEY_REF"


def prepare_storage_key(home: Path) -> dict[str, str]:
    """The key a local installation's storage encrypts at rest with (file bodies, the values of sensitive fields):
    made once, kept 0600 in home beside the data it opens; a key the environment names instead is kept."""
    if os.environ.get(STORAGE_KEY):
        return {}
    key_file = home / "storage.key"
    _kept(key_file, lambda: secrets.token_hex(32))
    return {STORAGE_KEY: f"file:{key_file.resolve()}"}


def secrets_dir(home: Path) -> Path:
    """Where a local installation keeps its orgs' secrets (its services get it as SFVAULT_SECRETS_DIR)."""
    return (home / "secrets").resolve()


def write_secret(home: Path, name: str, value: str) -> Path:
    """`value` in a file of `home`'s secrets directory readable by its owner only (0700 / 0600): its path."""
    directory = secrets_dir(home)
    directory.mkdir(mode=0o700, exist_ok=True)
    secret = directory / name
    secret.touch(mode=0o600)
    secret.write_text(value)
    return secret


ORG_ENV = "emulated-org.env"


def write_org_env(home: Path, org: dict[str, Any]) -> Path:
    """`home/emulated-org.env`: the emulated org's connection as shell variables, for `sfvault org add` (its
    client secret in the secrets directory, referred to by a `file:` reference; no secret in this file)."""
    values = {
        "SFORG_LOGIN_URL": org["login_url"],
        "SFORG_CLIENT_ID": org["client_id"],
        "SFORG_CLIENT_SECRET_REF": f"file:{write_secret(home, 'emulated-client-secret', org['client_secret'])}",
        "SFORG_CA_BUNDLE_REF": f"file:{Path(org['ca_file']).resolve()}",
    }
    env = home / ORG_ENV
    lines = [f"# the emulated org of {home} (sforg): `. {env}`, then `sfvault org add` (README)"]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in values.items()]
    env.write_text("\n".join(lines) + "\n")
    return env


class AlreadyRunning(RuntimeError):
    """`services up` while a supervisor of the same home directory is alive."""


def supervise(home: Path, org_scale: str | None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    ready = home / "ready"
    ready.unlink(missing_ok=True)
    env = prepare_auth(home) | prepare_storage_key(home)
    # the services' spans in one file for `sfvault session trace` (SFVAULT_TRACE_FILE="" turns it off)
    trace_file = os.environ.get(TRACE_FILE, str(home / "traces.jsonl"))
    if trace_file:
        env[TRACE_FILE] = trace_file
    with local_stack(home, with_org=org_scale, extra_env=env, supervise=True) as stack:
        if stack.org is not None:
            write_org_env(home, stack.org)
        ready.write_text(json.dumps(stack.describe()))
        stop.wait()
    ready.unlink(missing_ok=True)


def up(home: Path, org_scale: str | None, timeout: float = 300.0) -> dict[str, Any]:
    home.mkdir(parents=True, exist_ok=True)
    pid_file = home / "supervisor.pid"
    _claim(pid_file, home)
    log = open(home / "supervisor.log", "ab")
    args = [sys.executable, "-m", "services.cli.local", str(home), org_scale or ""]
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    pid_file.write_text(str(proc.pid))
    deadline = time.monotonic() + timeout
    ready = home / "ready"
    while not ready.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"sfvault did not start (see {home / 'supervisor.log'} and {home / 'logs'})")
        if time.monotonic() > deadline:
            raise RuntimeError(f"sfvault did not start within {timeout:.0f} s")
        time.sleep(0.2)  # waiting for another process's file: no event to await
    return json.loads(ready.read_text())


def down(home: Path, timeout: float = 60.0) -> None:
    pid_file = home / "supervisor.pid"
    pid = _running_pid(pid_file)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)  # waiting for another process to exit
        if _alive(pid):
            # its whole process group (it leads one: start_new_session), so no service is left orphaned
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)


def status(home: Path) -> dict[str, str]:
    stack_file = home / "stack.json"
    if not stack_file.exists():
        return {"sfvault": "NOT STARTED"}
    result: dict[str, str] = {}
    for name, address in json.loads(stack_file.read_text()).get("services", {}).items():
        try:
            with grpc.insecure_channel(address) as ch:
                reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=3)
                result[name] = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        except grpc.RpcError:
            result[name] = "UNREACHABLE"
    return result


def _claim(pid_file: Path, home: Path) -> None:
    """Take the home directory for this `up`: the pid file is created exclusively (holding this process's pid
    until the supervisor's replaces it), so of two `up` at once exactly one starts a supervisor."""
    for _ in range(2):
        running = _running_pid(pid_file)
        if running is not None:
            raise AlreadyRunning(f"sfvault is already running from {home} (pid {running}; `sfvault services down`)")
        try:
            fd = os.open(pid_file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            pid_file.unlink(missing_ok=True)  # stale (checked above): take it over once
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        return
    raise AlreadyRunning(f"another `sfvault services up` is starting from {home}")


def _running_pid(pid_file: Path) -> int | None:
    """The supervisor's pid when one is alive (a missing, garbled or stale pid file: None)."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid > 0 and _alive(pid) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a zombie child of ours counts as gone
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


if __name__ == "__main__":
    supervise(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] else None)
