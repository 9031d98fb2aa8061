"""Shared fixtures: real PostgreSQL and NATS JetStream servers, unless URLs are given in the environment.

- `postgres_url`: one pgserver for the whole run (or SFVAULT_DATABASE_URL).
- `database_url`: a fresh, empty database per test on that server (`fresh_database`, also for a module's stack).
- `nats_url`: a fresh nats-server (JetStream, temporary store, free port) per test, or SFVAULT_NATS_URL; the
  embedded one requires a user (services.platform.natsauth): the URL carries the admin's credentials.
- `nats_credentials(service)`: the settings that make a component connect as its own NATS user
  (`nats_user`, `nats_password`), with that service's permissions; empty for an external NATS.
- `bus_namespace`: a unique prefix for stream names and subjects, so tests sharing one external NATS
  never see each other's messages.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest

# gRPC's fork handlers abort a child forked (not vforked: pgserver's pg_ctl as its own user, when root) while
# a channel is polling in another thread; the tests' children all exec at once, so they need none of it
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

from devstack.embedded import NatsServer, nats_process, postgres_server


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    external = os.environ.get("SFVAULT_DATABASE_URL")
    if external:
        yield external
        return
    with postgres_server() as url:
        yield url


@pytest.fixture
def database_url(postgres_url: str) -> Iterator[str]:
    with fresh_database(postgres_url) as url:
        yield url


@contextlib.contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the server of `server_url`, dropped afterwards (its connections cut)."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_dbname(server_url, name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _with_dbname(url: str, name: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(url)
    info["dbname"] = name
    return psycopg.conninfo.make_conninfo(**{k: v for k, v in info.items() if v is not None})


@pytest.fixture
def embedded_nats() -> Iterator[NatsServer | None]:
    """The embedded nats-server of this test (None when SFVAULT_NATS_URL names an external one)."""
    if os.environ.get("SFVAULT_NATS_URL"):
        yield None
        return
    with nats_process() as server:
        yield server


@pytest.fixture
def nats_url(embedded_nats: NatsServer | None) -> str:
    return embedded_nats.url if embedded_nats is not None else os.environ["SFVAULT_NATS_URL"]


@pytest.fixture
def nats_credentials(embedded_nats: NatsServer | None) -> Callable[[str], dict[str, str]]:
    def of(service: str) -> dict[str, str]:
        if embedded_nats is None:
            return {}
        return {"nats_user": service, "nats_password": embedded_nats.passwords[service]}

    return of


@pytest.fixture
def bus_namespace() -> str:
    return f"t{uuid.uuid4().hex[:8]}" if os.environ.get("SFVAULT_NATS_URL") else ""
