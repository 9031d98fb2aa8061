"""The CLI through its real entry point (a subprocess of `sfvault`), without a running sfvault: every failure
is one line on stderr and a non-zero exit, never a traceback; what it writes is private (0600 / 0700)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from services.cli.__main__ import private_dir, write_private

SFVAULT = str(Path(sys.executable).parent / "sfvault")
ROOT = Path(__file__).resolve().parents[2]


def sfvault(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SFVAULT_")}
    # nothing listens on port 1: every service is unreachable
    base.update(SFVAULT_SESSION_ADDR="127.0.0.1:1", SFVAULT_DISCOVERY_ADDR="127.0.0.1:1", COLUMNS="200")
    base.update(SFVAULT_STORAGE_ADDR="127.0.0.1:1", SFVAULT_HOME=env.pop("home", "/nonexistent-sfvault-home"))
    result = subprocess.run([SFVAULT, *args], env=base | env, capture_output=True, text=True, timeout=60)
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result.stderr
    return result


def one_error_line(result: subprocess.CompletedProcess[str], code: int = 1) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error"), result.stderr
    return lines[0]


def test_token_create_without_the_signing_key() -> None:
    line = one_error_line(sfvault("token", "create", "--name", "alice"))
    assert "SFVAULT_AUTH_KEY is not set" in line


@pytest.mark.parametrize("days", ["-1", "0", "367", "100000"])
def test_token_lifetime_is_bounded(days: str) -> None:
    result = sfvault("token", "create", "--name", "alice", "--days", days, SFVAULT_AUTH_KEY="k")
    assert "--days must be 1 to 366" in one_error_line(result) and "sfv1." not in result.stdout


def test_a_token_is_not_handed_out_when_it_cannot_be_registered() -> None:
    result = sfvault("token", "create", "--name", "alice", SFVAULT_AUTH_KEY="k")
    assert "unavailable" in one_error_line(result) and "sfv1." not in result.stdout
    offline = sfvault("token", "create", "--name", "alice", "--no-register", SFVAULT_AUTH_KEY="k")
    assert offline.returncode == 0 and offline.stdout.startswith("sfv1.")


@pytest.mark.parametrize(
    "args",
    [
        ("session", "list"),
        ("token", "list"),
        ("audit", "list"),
        ("export", "Account", "-o", "/tmp/never-written.csv"),
        ("files", "get", "ContentVersion", "068000000000001AAA", "-o", "/tmp/never-written.bin"),
    ],
)
def test_an_unreachable_service(args: tuple[str, ...]) -> None:
    line = one_error_line(sfvault(*args))
    assert line.startswith("error (unavailable)") and "sfvault services status" in line
    assert not Path(args[-1]).exists()


@pytest.mark.parametrize(
    "args",
    [
        ("session", "list", "--bogus"),
        ("session", "show"),
        ("session", "list", "--limit", "many"),
        ("no-such-command",),
    ],
)
def test_a_bad_argument_is_a_usage_error(args: tuple[str, ...]) -> None:
    assert "--help" in one_error_line(sfvault(*args), code=2)


def test_bad_values_the_cli_checks_itself() -> None:
    assert "duration" in one_error_line(sfvault("backup", "run", "--policy", "p", "--org", "o", "--stall-timeout", "x"))
    assert "time" in one_error_line(sfvault("audit", "list", "--since", "yesterday"))


def test_services_up_twice(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "supervisor.pid").write_text(str(os.getpid()))  # a live process: "already running"
    (home / "auth.key").write_text("k")
    home.chmod(0o755)  # as an older sfvault left it
    line = one_error_line(sfvault("services", "up", "--home", str(home)))
    assert "already running" in line
    assert stat.S_IMODE(home.stat().st_mode) == 0o700


def test_written_files_are_private_and_directories_too(tmp_path: Path) -> None:
    out = tmp_path / "new" / "deeper" / "body.pdf"
    assert write_private(out, [b"abc", b"def"]) == 6
    assert out.read_bytes() == b"abcdef" and stat.S_IMODE(out.stat().st_mode) == 0o600
    assert stat.S_IMODE(out.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(out.parent.parent.stat().st_mode) == 0o700
    existing = tmp_path / "accounts.csv"
    existing.write_text("old")
    existing.chmod(0o644)
    write_private(existing, [b"new"])
    assert existing.read_text() == "new" and stat.S_IMODE(existing.stat().st_mode) == 0o600
    private_dir(tmp_path / "home")
    assert stat.S_IMODE((tmp_path / "home").stat().st_mode) == 0o700


def test_a_failed_download_leaves_no_file(tmp_path: Path) -> None:
    def parts():  # type: ignore[no-untyped-def]
        yield b"first part"
        raise ConnectionError("the stream broke")

    out = tmp_path / "body.pdf"
    with pytest.raises(ConnectionError):
        write_private(out, parts())
    assert list(tmp_path.iterdir()) == []


def test_a_file_it_cannot_write(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    with pytest.raises(NotADirectoryError):  # an OSError: one line from main()
        write_private(tmp_path / "a-file" / "out.csv", [b"x"])
    assert [p.name for p in tmp_path.iterdir()] == ["a-file"]


def test_the_state_directory_is_ignored_by_git() -> None:
    ignored = {line.strip() for line in (ROOT / ".gitignore").read_text().splitlines()}
    assert ".sfvault/" in ignored


def test_token_register_without_a_token() -> None:
    line = one_error_line(sfvault("token", "register"))
    assert "the token: environment variable SFVAULT_TOKEN is not set" in line


def test_services_up_registers_its_admin_token(tmp_path: Path) -> None:
    """A local installation's admin token is in the registry at once: listed, and revocable like any other."""
    home = tmp_path / "home"
    env = {"home": str(home)}
    try:
        up = sfvault("services", "up", "--home", str(home), **env)
        assert up.returncode == 0, up.stderr
        assert "sfvault is up" in up.stdout and "{" not in up.stdout and " session " in up.stdout  # not a repr
        # (home itself: 0700, unless pgserver running as root opened its path for its own system user)
        assert {stat.S_IMODE((home / f).stat().st_mode) for f in ("auth.key", "admin.token")} == {0o600}
        tokens = json.loads(sfvault("token", "list", "--json", **env, **LOCAL).stdout)
        assert [(t["name"], t["role"]) for t in tokens] == [("local-admin", "admin")]
    finally:
        sfvault("services", "down", "--home", str(home), **env)


LOCAL = {"SFVAULT_SESSION_ADDR": "", "SFVAULT_DISCOVERY_ADDR": "", "SFVAULT_STORAGE_ADDR": ""}  # stack.json's
