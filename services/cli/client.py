"""Where the CLI finds sfvault: service addresses and the token, from the environment or a local stack, whose
state lives in one place, `default_home()`."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar, overload

import grpc
from sfvault.discovery.v1 import access_pb2_grpc, discovery_pb2_grpc
from sfvault.session.v1 import session_pb2_grpc
from sfvault.storage.v1 import storage_pb2_grpc

from services.platform.auth import channel
from services.platform.settings import channel_credentials

CHECKOUT = Path(__file__).resolve().parents[2]


def default_home() -> Path:
    """The one state directory of a local installation (`sfvault services up`) and of the CLI, an absolute path
    whatever the current directory: SFVAULT_HOME when set; else the checkout's `.sfvault/` when sfvault runs from
    a checkout (as `make` installs it); else the user's data directory (platformdirs' when installed, else
    $XDG_DATA_HOME/sfvault, by default ~/.local/share/sfvault)."""
    if home := os.environ.get("SFVAULT_HOME"):
        return Path(home).expanduser().resolve()
    if (CHECKOUT / "pyproject.toml").is_file() and (CHECKOUT / "services" / "cli").is_dir():
        return CHECKOUT / ".sfvault"
    try:
        import platformdirs
    except ImportError:
        data = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
        return Path(data).expanduser().resolve() / "sfvault"
    return Path(platformdirs.user_data_dir("sfvault", appauthor=False))


DEFAULT_HOME = default_home()


@dataclass
class Endpoints:
    session: str
    discovery: str
    storage: str
    token: str

    @classmethod
    def load(cls, home: Path | None = None) -> Endpoints:
        """SFVAULT_*_ADDR and SFVAULT_TOKEN win; otherwise the local stack started by `sfvault services up`."""
        home = home or default_home()
        stack: dict[str, str] = {}
        token = os.environ.get("SFVAULT_TOKEN", "")
        stack_file = home / "stack.json"
        if stack_file.exists():
            stack = json.loads(stack_file.read_text()).get("services", {})
            token_file = home / "admin.token"
            if not token and token_file.exists():
                token = token_file.read_text().strip()
        return cls(
            session=os.environ.get("SFVAULT_SESSION_ADDR") or stack.get("session", "127.0.0.1:50054"),
            discovery=os.environ.get("SFVAULT_DISCOVERY_ADDR") or stack.get("discovery", "127.0.0.1:50051"),
            storage=os.environ.get("SFVAULT_STORAGE_ADDR") or stack.get("storage", "127.0.0.1:50053"),
            token=token,
        )


Stub = TypeVar("Stub")


class _StubOf(Generic[Stub]):
    """A gRPC stub on a new channel to one of the endpoints, each time the attribute is read."""

    def __init__(self, stub: Callable[[grpc.Channel], Stub], endpoint: str) -> None:
        self.stub, self.endpoint = stub, endpoint

    @overload
    def __get__(self, clients: None, owner: Any) -> _StubOf[Stub]: ...
    @overload
    def __get__(self, clients: Clients, owner: Any) -> Stub: ...
    def __get__(self, clients: Clients | None, owner: Any) -> _StubOf[Stub] | Stub:
        if clients is None:
            return self
        return self.stub(clients._channel(getattr(clients.endpoints, self.endpoint)))


class Clients:
    session = _StubOf(session_pb2_grpc.SessionServiceStub, "session")
    discovery = _StubOf(discovery_pb2_grpc.DiscoveryServiceStub, "discovery")
    access = _StubOf(access_pb2_grpc.AccessServiceStub, "discovery")  # tokens and the audit: served by discovery
    storage = _StubOf(storage_pb2_grpc.StorageServiceStub, "storage")

    def __init__(self, endpoints: Endpoints) -> None:
        self.endpoints = endpoints
        self._channels: list[grpc.Channel] = []

    def _channel(self, address: str) -> grpc.Channel:
        ch = channel(
            address,
            self.endpoints.token,
            channel_credentials(os.environ.get("SFVAULT_TLS_CA_FILE", "")),
            options=[("grpc.max_receive_message_length", 64 << 20)],
        )
        self._channels.append(ch)
        return ch

    def close(self) -> None:
        for ch in self._channels:
            ch.close()
