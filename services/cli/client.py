"""Where the CLI finds sfvault: service addresses and the token, from the environment or a local stack."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import grpc
from sfvault.discovery.v1 import access_pb2_grpc, discovery_pb2_grpc
from sfvault.session.v1 import session_pb2_grpc
from sfvault.storage.v1 import storage_pb2_grpc

from services.platform.auth import channel
from services.platform.settings import channel_credentials

DEFAULT_HOME = Path(os.environ.get("SFVAULT_HOME", ".sfvault"))


@dataclass
class Endpoints:
    session: str
    discovery: str
    storage: str
    token: str

    @classmethod
    def load(cls, home: Path = DEFAULT_HOME) -> Endpoints:
        """SFVAULT_*_ADDR and SFVAULT_TOKEN win; otherwise the local stack started by `sfvault services up`."""
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


class Clients:
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

    @property
    def session(self) -> session_pb2_grpc.SessionServiceStub:
        return session_pb2_grpc.SessionServiceStub(self._channel(self.endpoints.session))

    @property
    def discovery(self) -> discovery_pb2_grpc.DiscoveryServiceStub:
        return discovery_pb2_grpc.DiscoveryServiceStub(self._channel(self.endpoints.discovery))

    @property
    def access(self) -> access_pb2_grpc.AccessServiceStub:
        """Tokens and the audit of changes: served by discovery."""
        return access_pb2_grpc.AccessServiceStub(self._channel(self.endpoints.discovery))

    @property
    def storage(self) -> storage_pb2_grpc.StorageServiceStub:
        return storage_pb2_grpc.StorageServiceStub(self._channel(self.endpoints.storage))

    def close(self) -> None:
        for ch in self._channels:
            ch.close()
