"""A whole sfvault on one machine: embedded PostgreSQL and NATS, optionally the sforg emulator, and the
four services as separate processes. Used by `make demo`, `sfvault services up` and the end-to-end tests.

It starts processes (`python -m services.<name>`); it imports no service.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.embedded import free_ports, nats_server, postgres_server

SERVICES = ("storage", "session", "discovery", "jobrunner")


@dataclass
class ServiceProcess:
    name: str
    port: int
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", f"services.{self.name}"], env=self.env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
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
                            return
                except grpc.FutureTimeoutError:
                    continue  # not listening yet: check the process and try again
                except grpc.RpcError:
                    continue


@dataclass
class Stack:
    """Everything a local sfvault needs; use `local_stack()` to start and stop it."""

    state_dir: Path
    database_url: str
    nats_url: str
    services: dict[str, ServiceProcess] = field(default_factory=dict)
    org: dict[str, Any] | None = None

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
            "nats_url": self.nats_url,
            "services": {n: s.address for n, s in self.services.items()},
            "org": {k: v for k, v in (self.org or {}).items() if k in ("instance_url", "login_url", "org_id")},
        }


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
) -> Iterator[Stack]:
    """Start PostgreSQL, NATS, sforg (unless with_org is None) and the services; stop everything on exit."""
    state = Path(state_dir).resolve()  # children and references need absolute paths
    state.mkdir(parents=True, exist_ok=True)
    (state / "logs").mkdir(exist_ok=True)
    with contextlib.ExitStack() as stack:
        database_url = os.environ.get("SFVAULT_DATABASE_URL") or stack.enter_context(postgres_server(str(state / "pg")))
        nats_url = os.environ.get("SFVAULT_NATS_URL") or stack.enter_context(nats_server(str(state / "nats")))
        org = None
        if with_org is not None:
            from sforg.testing import running_org  # the emulator is only needed when it is asked for

            org = stack.enter_context(running_org(state / "sforg", scale=with_org, seed=org_seed))
        ports = dict(zip(SERVICES, free_ports(len(SERVICES)), strict=True))
        result = Stack(state, database_url, nats_url, org=org)
        for name in services:
            env = service_env(
                name, database_url=database_url, nats_url=nats_url, ports=ports, state_dir=state, extra=extra_env
            )
            result.services[name] = ServiceProcess(name, ports[name], env, state / "logs" / f"{name}.log")
        (state / "stack.json").write_text(json.dumps(result.describe(), indent=2))
        try:
            if start:
                for name in services:
                    result.services[name].start()
                for name in services:
                    result.services[name].wait_serving()
            yield result
        finally:
            for svc in reversed(list(result.services.values())):
                svc.stop()
