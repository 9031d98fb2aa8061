"""The local stack (devstack.localstack) as `sfvault services up` runs it: a service killed -9 comes
back and serves again, restarts back off, and a second `up` says sfvault is already running."""

from __future__ import annotations

import json
import os
import shlex
import socket
import stat
import subprocess
from pathlib import Path

import pytest

from devstack.embedded import kept_ports
from devstack.localstack import RestartPolicy, local_stack
from services.cli import local


def test_restart_back_off_doubles_up_to_its_cap_and_resets_after_a_healthy_run() -> None:
    policy = RestartPolicy(initial_s=1.0, cap_s=8.0, healthy_s=60.0)
    delays = []
    delay = 0.0
    for _ in range(6):
        delay = policy.next_delay(delay, ran_s=2.0)  # crashing soon after each start
        delays.append(delay)
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert policy.next_delay(8.0, ran_s=61.0) == 1.0  # it had run healthy: start over


def test_a_service_killed_9_is_started_again_and_serves(tmp_path: Path, database_url: str) -> None:
    home = tmp_path / "stack"
    with local_stack(
        home,
        with_org=None,
        services=("storage",),
        extra_env=local.prepare_auth(home),
        database_url=database_url,
        supervise=True,
        restart_policy=RestartPolicy(initial_s=0.1, cap_s=1.0),
    ) as stack:
        assert stack.supervisor is not None
        storage = stack.services["storage"]
        for n in (1, 2):
            first = storage.proc
            storage.kill9()
            stack.supervisor.wait_restarted(storage, n)
            assert storage.proc is not first
            storage.wait_serving()
        log = storage.log_path.read_text()
        assert "storage exited with code -9; restart 1" in log and "restart 2" in log


def test_a_service_stopped_on_purpose_stays_stopped(tmp_path: Path, database_url: str) -> None:
    home = tmp_path / "stack"
    with local_stack(
        home,
        with_org=None,
        services=("storage",),
        extra_env=local.prepare_auth(home),
        database_url=database_url,
        supervise=True,
        restart_policy=RestartPolicy(initial_s=0.0),
    ) as stack:
        storage = stack.services["storage"]
        storage.stop()
        assert stack.supervisor is not None
        with pytest.raises(TimeoutError):
            stack.supervisor.wait_restarted(storage, 1, timeout=1.0)


def test_services_up_twice_says_it_is_already_running(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from services.cli.__main__ import run

    home = tmp_path / "home"
    home.mkdir()
    (home / "supervisor.pid").write_text(str(os.getpid()))  # a live supervisor of this home
    with pytest.raises(local.AlreadyRunning, match="already running"):
        local.up(home, None)
    assert run(["services", "up", "--home", str(home)]) == 1
    err = capsys.readouterr().err
    assert "already running" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    (home / "supervisor.pid").write_text("not a pid")  # a garbled pid file is not a running sfvault
    assert local._running_pid(home / "supervisor.pid") is None


def test_of_two_ups_at_once_one_claims_the_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    local._claim(home / "supervisor.pid", home)  # the first `up` holds it (with its own, live, pid)
    with pytest.raises(local.AlreadyRunning):
        local._claim(home / "supervisor.pid", home)
    (home / "supervisor.pid").write_text("999999999")  # a supervisor long gone: taken over
    local._claim(home / "supervisor.pid", home)
    assert (home / "supervisor.pid").read_text() == str(os.getpid())


def test_down_with_a_garbled_pid_file_just_cleans_up(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "supervisor.pid").write_text("")
    local.down(home)
    assert not (home / "supervisor.pid").exists()


def test_kept_ports_are_the_recorded_ones_while_free(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    record = tmp_path / "ports.json"
    first = kept_ports(record, ("a", "b"))
    assert len(set(first.values())) == 2
    assert kept_ports(record, ("a", "b")) == first
    with socket.socket() as busy:  # someone else took b's port meanwhile: b gets another, a keeps its own
        busy.bind(("127.0.0.1", first["b"]))
        busy.listen()
        again = kept_ports(record, ("a", "b", "c"))
    assert again["a"] == first["a"] and again["b"] != first["b"]
    assert f"b's port {first['b']} is taken" in caplog.text
    assert len(set(again.values())) == 3
    assert json.loads(record.read_text()) == again
    record.write_text("garbled")
    assert set(kept_ports(record, ("a",))) == {"a"}


def test_a_stack_started_again_listens_where_it_did(tmp_path: Path, database_url: str) -> None:
    """`sfvault services down` / `up`: the emulator's login URL (registered with the org) and the services'
    addresses stay what they were."""
    home = tmp_path / "stack"
    seen = []
    for _ in range(2):
        with local_stack(
            home, with_org="tiny", services=("storage",), extra_env=local.prepare_auth(home), database_url=database_url
        ) as stack:
            assert stack.org is not None
            seen.append((stack.org["login_url"], stack.address("storage"), stack.nats_url))
            assert local.status(home) == {"storage": "SERVING"}
    assert seen[0] == seen[1]


def test_the_emulated_orgs_env_file_names_its_secret_and_holds_none(tmp_path: Path) -> None:
    home = tmp_path / "home with space"
    home.mkdir()
    org = {
        "login_url": "https://localhost:8443",
        "client_id": "3MVG9 'quoted'",
        "client_secret": "s3cr3t-value",
        "ca_file": str(tmp_path / "sforg" / "ca.pem"),
    }
    env_file = local.write_org_env(home, org)
    assert org["client_secret"] not in env_file.read_text()
    shown = subprocess.run(
        [
            "bash",
            "-c",
            f'. {shlex.quote(str(env_file))} && printf "%s\\n" "$SFORG_CLIENT_ID" "$SFORG_CLIENT_SECRET_REF"'
            ' "$SFORG_CA_BUNDLE_REF" "$SFORG_LOGIN_URL"',
        ],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": os.environ["PATH"]},
    ).stdout.splitlines()
    secret = home / "secrets" / "emulated-client-secret"
    assert shown == [org["client_id"], f"file:{secret}", f"file:{org['ca_file']}", org["login_url"]]
    assert secret.read_text() == org["client_secret"]
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600 and stat.S_IMODE(secret.parent.stat().st_mode) == 0o700
