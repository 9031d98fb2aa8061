"""One state location for the CLI and `sfvault services`, whatever the current directory: SFVAULT_HOME, else the
checkout's `.sfvault/` (sfvault run from a checkout), else the user's data directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.cli import client

ROOT = Path(__file__).resolve().parents[2]
SFVAULT = str(Path(sys.executable).parent / "sfvault")


def test_sfvault_home_wins_and_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SFVAULT_HOME", "state")
    assert client.default_home() == tmp_path / "state"
    monkeypatch.setenv("SFVAULT_HOME", "~/sfv")
    assert client.default_home() == Path.home() / "sfv"


def test_from_a_checkout_the_default_is_its_sfvault_directory_from_any_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SFVAULT_HOME", raising=False)
    for cwd in (tmp_path, ROOT / "services"):
        monkeypatch.chdir(cwd)
        assert client.default_home() == ROOT / ".sfvault"


def test_outside_a_checkout_the_default_is_the_users_data_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SFVAULT_HOME", raising=False)
    monkeypatch.setattr(client, "CHECKOUT", tmp_path / "site-packages")  # an installed sfvault: no pyproject.toml
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert client.default_home() == tmp_path / "data" / "sfvault"  # platformdirs' answer, and the fallback's
    monkeypatch.setitem(sys.modules, "platformdirs", None)  # without platformdirs: the same place
    assert client.default_home() == tmp_path / "data" / "sfvault"


def test_the_cli_finds_its_local_stack_from_another_directory(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "stack.json").write_text(json.dumps({"services": {"storage": "127.0.0.1:1", "session": "127.0.0.1:1"}}))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SFVAULT_")}
    status = subprocess.run(
        [SFVAULT, "services", "status", "--json"],
        env={**env, "SFVAULT_HOME": "../home"},  # relative to where it is run
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert json.loads(status.stdout) == {"storage": "UNREACHABLE", "session": "UNREACHABLE"}, status.stderr
    assert client.Endpoints.load(home).storage == "127.0.0.1:1"


def test_a_local_installation_has_a_storage_key_of_its_own_kept_across_restarts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`sfvault services up` encrypts at rest (file bodies, sensitive fields) with a key made once in its home, so a
    policy marking fields sensitive works as the README shows, after a restart too; a key the environment names
    is used instead."""
    from services.cli import local
    from services.platform.encryption import Keyring

    monkeypatch.delenv(local.STORAGE_KEY, raising=False)
    env = local.prepare_storage_key(tmp_path)
    key_file = tmp_path / "storage.key"
    assert env == {local.STORAGE_KEY: f"file:{key_file.resolve()}"}
    assert key_file.stat().st_mode & 0o777 == 0o600
    first = key_file.read_text()
    assert local.prepare_storage_key(tmp_path) == env and key_file.read_text() == first  # the same key again
    Keyring.from_refs(env[local.STORAGE_KEY], [])  # a key storage takes (32 bytes)
    monkeypatch.setenv(local.STORAGE_KEY, "env:MY_KEK")
    assert local.prepare_storage_key(tmp_path) == {}
