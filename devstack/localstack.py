"""A whole sfvault on one machine: embedded PostgreSQL and NATS, optionally the sforg emulator, and the
four services as separate processes. Used by `make demo`, `sfvault services up` and the end-to-end tests.

It starts processes (`python -m services.<name>`); it imports no service. Each service connects to NATS as
its own user (services.platform.natsauth). With `supervise=True` a service whose process exits is started
again, as Kubernetes would: after an exponential back-off (capped), reset once it has run healthy a while.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devstack.embedded import (
    NatsServer,
    cluster_url,
    kept_ports,
    nats_process,
    postgres_server,
    restart_postgres,
)

SERVICES = ("storage", "session", "discovery", "jobrunner")
log = logging.getLogger("sfvault.localstack")


@dataclass(frozen=True)
class RestartPolicy:
    """Kubernetes' CrashLoopBackOff, scaled down: initial_s, doubled at each exit up to cap_s, back to
    initial_s once a process has run healthy_s without exiting."""

    initial_s: float = 1.0
    cap_s: float = 60.0
    healthy_s: float = 120.0

    def next_delay(self, previous_s: float, ran_s: float) -> float:
        if previous_s <= 0 or ran_s >= self.healthy_s:
            return self.initial_s
        return min(previous_s * 2, self.cap_s)


@dataclass
class ServiceProcess:
    name: str
    port: int
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0  # how many times the supervisor started it again
    serving: bool = False  # SERVING was seen since the process started
    exits: list[tuple[int, bool]] = field(default_factory=list)  # (exit code, whether it was serving then)
    _log: IO[bytes] | None = None
    _started_at: float = 0.0
    _stopping: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        with self._lock:
            self._stopping = False
            if self._log is None:
                self._log = open(self.log_path, "ab")
            self._started_at = time.monotonic()
            self.serving = False
            self.proc = subprocess.Popen(
                [sys.executable, "-m", f"services.{self.name}"],
                env=self.env,
                stdout=self._log,
                stderr=subprocess.STDOUT,
            )

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def terminate(self) -> None:
        """SIGTERM, not waiting: a stack asks every service to drain at once, then waits for each (stop)."""
        self._stopping = True  # the supervisor leaves a process stopped on purpose alone
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 30.0) -> int | None:
        self.terminate()
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.proc.returncode

    def wait_serving(self, timeout: float = 60.0) -> None:
        """Wait for SERVING on the health Watch stream (an event, not a poll); fail if the process dies."""
        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(self.address) as channel:
            while True:
                if not self.running():
                    raise RuntimeError(
                        f"{self.name} exited with {self.proc.returncode if self.proc else '?'}; see {self.log_path}"
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{self.name} not SERVING within {timeout} s; see {self.log_path}")
                try:
                    grpc.channel_ready_future(channel).result(timeout=min(1.0, remaining))
                    stub = health_pb2_grpc.HealthStub(channel)
                    for update in stub.Watch(health_pb2.HealthCheckRequest(service=""), timeout=min(5.0, remaining)):
                        if update.status == health_pb2.HealthCheckResponse.SERVING:
                            self.serving = True
                            return
                except grpc.FutureTimeoutError:
                    continue  # not listening yet: check the process and try again
                except grpc.RpcError:
                    continue


class Supervisor:
    """Starts a service again when its process exits (kill -9, a crash, an exit on a lost dependency): one
    thread per service waits for its process (no polling), backs off by the RestartPolicy and logs each
    restart, to the supervisor's log and to the service's."""

    def __init__(self, services: list[ServiceProcess], policy: RestartPolicy | None = None) -> None:
        self.services = services
        self.policy = policy or RestartPolicy()
        self._stop = threading.Event()
        self._restarted = threading.Condition()
        self._threads = [
            threading.Thread(target=self._watch, args=(svc,), name=f"supervise-{svc.name}", daemon=True)
            for svc in services
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for svc in self.services:
            svc._stopping = True

    def join(self, timeout: float = 30.0) -> None:
        """Wait for the watching threads (after the services stopped): none may outlive the stack, least of
        all in a gRPC call while the interpreter shuts down."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            if thread.is_alive():
                thread.join(max(0.0, deadline - time.monotonic()))

    def _watch(self, svc: ServiceProcess) -> None:
        delay = 0.0
        while not self._stop.is_set():
            proc = svc.proc
            if proc is None:
                return
            code = proc.wait()
            if self._stop.is_set() or svc._stopping:
                return
            if svc.proc is not proc:  # started again by someone else meanwhile: watch that one
                continue
            svc.exits.append((code, svc.serving))
            delay = self.policy.next_delay(delay, time.monotonic() - svc._started_at)
            svc.restarts += 1
            message = f"{svc.name} exited with code {code}; restart {svc.restarts} in {delay:.1f} s"
            log.warning(message)
            if svc._log is not None:
                with contextlib.suppress(OSError):
                    svc._log.write(f"--- supervisor: {message}\n".encode())
                    svc._log.flush()
            if self._stop.wait(delay):
                return
            if not svc._stopping and svc.proc is proc:
                svc.start()
                with self._restarted:
                    self._restarted.notify_all()
                # it counts as serving again once it says so (an exit before that is a failed start)
                with contextlib.suppress(RuntimeError, TimeoutError):
                    svc.wait_serving()

    def wait_restarted(self, svc: ServiceProcess, restarts: int, timeout: float = 60.0) -> None:
        """Wait until `svc` was started again `restarts` times in all (then `svc.wait_serving()`)."""
        with self._restarted:
            if not self._restarted.wait_for(lambda: svc.restarts >= restarts and svc.running(), timeout):
                raise TimeoutError(f"{svc.name} was not restarted within {timeout} s")


@dataclass
class Stack:
    """Everything a local sfvault needs; use `local_stack()` to start and stop it.

    `nats_url` carries the admin's credentials when the stack runs its own NATS (`nats`): for tests and
    tools; the services get their own users. `pg_dir` is the data directory of its own PostgreSQL."""

    state_dir: Path
    database_url: str
    nats_url: str
    services: dict[str, ServiceProcess] = field(default_factory=dict)
    org: dict[str, Any] | None = None
    nats: NatsServer | None = None
    pg_dir: Path | None = None
    supervisor: Supervisor | None = None

    def restart_nats(self, *, kill: bool = True) -> None:
        """Stop (SIGKILL by default) and start the stack's NATS again on its port and store."""
        if self.nats is None:
            raise RuntimeError("this stack uses an external NATS (SFVAULT_NATS_URL)")
        self.nats.restart(kill=kill)

    def restart_postgres(self, *, immediate: bool = True) -> None:
        """Restart the stack's PostgreSQL (immediate: no checkpoint, every connection cut, as a crash)."""
        if self.pg_dir is None:
            raise RuntimeError("this stack uses an external PostgreSQL (SFVAULT_DATABASE_URL)")
        restart_postgres(self.pg_dir, immediate=immediate)

    def address(self, name: str) -> str:
        return self.services[name].address

    def start_service(self, name: str) -> ServiceProcess:
        svc = self.services[name]
        svc.start()
        svc.wait_serving()
        return svc

    def describe(self) -> dict[str, Any]:
        return {
            "state_dir": str(self.state_dir),
            "database_url": self.database_url,
            "nats_url": _without_credentials(self.nats_url),
            "services": {n: s.address for n, s in self.services.items()},
            "org": {k: v for k, v in (self.org or {}).items() if k in ("instance_url", "login_url", "org_id")},
        }


def _without_credentials(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = [urlsplit(u) for u in url.split(",")]
    return ",".join(
        urlunsplit(p._replace(netloc=p.hostname + (f":{p.port}" if p.port else ""))) for p in parts if p.hostname
    )


def service_env(
    name: str,
    *,
    database_url: str,
    nats_url: str,
    ports: dict[str, int],
    state_dir: Path,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SFVAULT_")}
    env.update(
        SFVAULT_DATABASE_URL=database_url,
        SFVAULT_NATS_URL=nats_url,
        SFVAULT_STORAGE_ADDR=f"127.0.0.1:{ports['storage']}",
        SFVAULT_SESSION_ADDR=f"127.0.0.1:{ports['session']}",
        SFVAULT_DISCOVERY_ADDR=f"127.0.0.1:{ports['discovery']}",
        SFVAULT_FILE_REPOSITORY=f"file://{state_dir / 'files'}",
        SFVAULT_SECRETS_DIR=str(state_dir / "secrets"),  # the only place its orgs' secret files are read from
        PYTHONUNBUFFERED="1",
    )
    for svc, port in ports.items():
        env[f"SFVAULT_{svc.upper()}_PORT"] = str(port)
    env.update(extra or {})
    return env


@contextlib.contextmanager
def local_stack(
    state_dir: str | os.PathLike[str],
    *,
    with_org: str | int | None = "small",
    org_seed: int = 1,
    services: tuple[str, ...] = SERVICES,
    extra_env: dict[str, str] | None = None,
    start: bool = True,
    supervise: bool = False,
    restart_policy: RestartPolicy | None = None,
    database_url: str | None = None,
    nats_cluster: list[NatsServer] | None = None,
) -> Iterator[Stack]:
    """Start PostgreSQL (unless `database_url` or SFVAULT_DATABASE_URL names one), NATS (unless
    SFVAULT_NATS_URL does, or `nats_cluster` gives the servers of a cluster the caller runs), sforg (unless
    with_org is None) and the services; stop everything on exit. Started again on the same state directory, each
    listens on the port it had (`ports.json`) while that port is free."""
    state = Path(state_dir).resolve()  # children and references need absolute paths
    state.mkdir(parents=True, exist_ok=True)
    ports = kept_ports(state / "ports.json", (*SERVICES, "nats", "sforg"))
    (state / "logs").mkdir(exist_ok=True)
    (state / "secrets").mkdir(mode=0o700, exist_ok=True)
    with contextlib.ExitStack() as stack:
        pg_dir = None
        database_url = database_url or os.environ.get("SFVAULT_DATABASE_URL")
        if not database_url:
            pg_dir = state / "pg"
            database_url = stack.enter_context(postgres_server(str(pg_dir)))
        nats = None
        services_nats_url = nats_url = os.environ.get("SFVAULT_NATS_URL") or ""
        if nats_cluster:
            nats = nats_cluster[0]  # the users are the cluster's (one set for all its servers)
            nats_url, services_nats_url = cluster_url(nats_cluster), cluster_url(nats_cluster, with_admin=False)
        elif not nats_url:
            nats = stack.enter_context(nats_process(str(state / "nats"), ports["nats"]))
            nats_url, services_nats_url = nats.url, nats.address
        org = None
        if with_org is not None:
            from sforg.testing import running_org  # the emulator is only needed when it is asked for

            org = stack.enter_context(running_org(state / "sforg", scale=with_org, seed=org_seed, port=ports["sforg"]))
        result = Stack(state, database_url, nats_url, org=org, nats=nats, pg_dir=pg_dir)
        for name in services:
            own_nats = nats.service_env(name) if nats is not None else {}
            env = service_env(
                name,
                database_url=database_url,
                nats_url=services_nats_url,
                ports={n: ports[n] for n in SERVICES},
                state_dir=state,
                extra={**own_nats, **(extra_env or {})},
            )
            result.services[name] = ServiceProcess(name, ports[name], env, state / "logs" / f"{name}.log")
        (state / "stack.json").write_text(json.dumps(result.describe(), indent=2))
        try:
            if start:
                for name in services:
                    result.services[name].start()
                for name in services:
                    result.services[name].wait_serving()
                if supervise:
                    result.supervisor = Supervisor(list(result.services.values()), restart_policy)
                    result.supervisor.start()
            yield result
        finally:
            if result.supervisor is not None:
                result.supervisor.stop()
            for svc in reversed(list(result.services.values())):
                svc.terminate()  # every service drains at once (a stack stops in the time of its slowest)
            for svc in reversed(list(result.services.values())):
                svc.stop()
            if result.supervisor is not None:
                result.supervisor.join()
