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
