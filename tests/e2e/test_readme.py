"""The README's "Using it", as a newcomer follows it after `make demo`: every block marked `<!-- readme-test: run
-->` runs as written, in order, each in its own shell (what it exports carries to the next), from a directory of
its own holding the checkout's `.venv`, against a local installation with a tiny emulated org in SFVAULT_HOME."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

ROOT = Path(__file__).resolve().parents[2]
MARK = "<!-- readme-test: run -->"


def section(text: str, title: str) -> str:
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def marked_blocks(text: str) -> list[tuple[int, str]]:
    """(line number in the README, code) of each ```sh block right after the marker line."""
    blocks = []
    for m in re.finditer(re.escape(MARK) + r"\n```sh\n(.*?)\n```\n", text, re.S):
        blocks.append((text.count("\n", 0, m.start()) + 1, m.group(1)))
    assert text.count(MARK) == len(blocks), "a marker not followed by a ```sh block"
    return blocks


def test_marked_blocks_are_found_and_prose_examples_are_not() -> None:
    text = f"## Using it\n{MARK}\n```sh\necho one\n```\n\n```\nsfvault org add --id real …\n```\n"
    assert [code for _, code in marked_blocks(text)] == ["echo one"]


def test_the_readmes_using_it_runs_as_written(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    using_it = section(readme, "Using it")
    blocks = marked_blocks(readme)
    assert len(blocks) >= 5 and all(code in using_it for _, code in blocks)
    work = tmp_path / "work"  # a newcomer's directory, the checkout's venv in it: `$PWD/.venv/bin`
    work.mkdir()
    (work / ".venv").symlink_to(ROOT / ".venv")
    home = tmp_path / "home"
    state = tmp_path / "exported.sh"
    state.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SFVAULT_", "SFORG_"))}
    env |= {"SFVAULT_HOME": str(home), "COLUMNS": "120", "PATH": "/usr/local/bin:/usr/bin:/bin"}
    try:
        for line, code in blocks:
            script = f'set -euo pipefail -a\n. "{state}"\n{code}\nexport -p > "{state}"\n'
            run = subprocess.run(["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=600)
            assert run.returncode == 0, (
                f"README.md:{line}: exit {run.returncode}\n{run.stdout[-4000:]}\n{run.stderr[-4000:]}"
            )
            assert "Traceback" not in run.stderr + run.stdout, f"README.md:{line}\n{run.stderr[-4000:]}"
    finally:
        subprocess.run([str(ROOT / ".venv/bin/sfvault"), "services", "down"], env=env, timeout=120, check=False)
    # what the walk wrote is what it says: the exports, the decrypted copy, the file body
    assert len((work / "accounts.csv").read_text().splitlines()) > 10
    contacts = (work / "contacts.csv").read_text()
    assert contacts.startswith("Id,") and len(contacts.splitlines()) > 10
    assert (work / "body.bin").stat().st_size > 0
    assert not (home / "supervisor.pid").exists()  # the last block stopped it
    assert " --org tiny" in (home / "supervisor.log").read_text() or (home / "sforg" / "org.json").exists()


def test_the_demo_points_at_the_walks_first_commands() -> None:
    from services.cli.demo import NEXT

    _, first = marked_blocks((ROOT / "README.md").read_text())[0]
    commands = [line.strip() for line in NEXT.splitlines()[1:]]
    assert commands and all(any(line.startswith(c) for line in first.splitlines()) for c in commands)
