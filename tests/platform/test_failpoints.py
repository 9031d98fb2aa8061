"""Failpoints: an armed one kills its process with SIGKILL exactly once per marker directory; unarmed, nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from services.platform import failpoints

PROGRAM = (
    "from services.platform.failpoints import failpoint\n"
    "print('before', flush=True)\n"
    "failpoint('demo.point')\n"
    "print('after', flush=True)\n"
)


def _run(tmp_path: Path, armed: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SFVAULT_FAILPOINTS": armed, "SFVAULT_FAILPOINT_DIR": str(tmp_path)}
    return subprocess.run([sys.executable, "-c", PROGRAM], env=env, capture_output=True, text=True, timeout=60)


def test_an_armed_failpoint_kills_the_process_once_then_lets_it_through(tmp_path: Path) -> None:
    first = _run(tmp_path, "other.point, demo.point")
    assert first.returncode == -signal.SIGKILL
    assert first.stdout == "before\n"
    assert (tmp_path / "demo.point.fired").exists()
    again = _run(tmp_path, "demo.point")
    assert again.returncode == 0 and again.stdout == "before\nafter\n"


def test_an_unarmed_failpoint_does_nothing(tmp_path: Path) -> None:
    run = _run(tmp_path, "other.point")
    assert run.returncode == 0 and run.stdout == "before\nafter\n"
    assert not list(tmp_path.iterdir())


def test_the_environment_is_read_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SFVAULT_FAILPOINTS", "")
    failpoints.reset()
    failpoints.failpoint("demo.point")
    monkeypatch.setenv("SFVAULT_FAILPOINTS", "demo.point")
    monkeypatch.setenv("SFVAULT_FAILPOINT_DIR", str(tmp_path))
    failpoints.failpoint("demo.point")  # still the set read first: no kill
    assert failpoints.armed() == frozenset()
    failpoints.reset()
    assert failpoints.armed() == frozenset({"demo.point"})
    failpoints.reset()
