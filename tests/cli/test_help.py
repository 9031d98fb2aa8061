"""`sfvault --version`, the exit codes documented in `sfvault --help`, and shell completion (typer's), through
the real entry point."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from services.cli import __main__ as cli

SFVAULT = str(Path(sys.executable).parent / "sfvault")


def test_version() -> None:
    result = subprocess.run([SFVAULT, "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and re.fullmatch(r"sfvault \d+\.\d+\.\d+\S*\n", result.stdout), result


def test_the_help_documents_every_exit_code() -> None:
    result = subprocess.run([SFVAULT, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "Exit codes:" in text
    for code, meaning in cli.EXIT_CODES:
        assert f"{code}: {' '.join(meaning.split())}" in text
    assert {code for code, _ in cli.EXIT_CODES} == {0, 1, 2, 3, 130}  # every code the CLI exits with
    assert "--install-completion" in text and "--version" in text


def test_shell_completion_completes_commands_and_verbs() -> None:
    def complete(words: str) -> list[str]:
        env = dict(
            os.environ, _SFVAULT_COMPLETE="complete_bash", COMP_WORDS=words, COMP_CWORD=str(len(words.split()) - 1)
        )
        return subprocess.run([SFVAULT], env=env, capture_output=True, text=True, timeout=60).stdout.split()

    assert complete("sfvault sess") == ["session"]
    assert complete("sfvault org re") == ["remove"]
    assert "restore-points" in complete("sfvault records r")


def test_the_cli_readme_lists_the_same_exit_codes() -> None:
    readme = (Path(__file__).resolve().parents[2] / "services" / "cli" / "README.md").read_text()
    rows = dict(re.findall(r"^\| (\d+) \| (.+?) \|$", readme, flags=re.MULTILINE))
    assert {
        int(code): meaning.replace("`--yes`", "--yes").replace("`--wait`", "--wait") for code, meaning in rows.items()
    } == dict(cli.EXIT_CODES)
