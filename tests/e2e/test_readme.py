"""The README's "Using it", as a newcomer follows it after `make demo`: every block marked `<!-- readme-test: run
-->` runs as written, in order, each in its own shell (what it exports carries to the next), from a directory of
its own holding the checkout's `.venv`, against a local installation with a tiny emulated org in SFVAULT_HOME
(devstack/readme_walk.py; `.ci/first-hour` walks it on a fresh clone after `make demo`)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from devstack.readme_walk import MARK, marked_blocks, newcomers_env, walk

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

ROOT = Path(__file__).resolve().parents[2]


def section(text: str, title: str) -> str:
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def test_marked_blocks_are_found_and_prose_examples_are_not() -> None:
    text = f"## Using it\n{MARK}\n```sh\necho one\n```\n\n```\nsfvault org add --id real …\n```\n"
    assert marked_blocks(text) == [(2, "echo one")]
    with pytest.raises(ValueError, match="not followed"):
        marked_blocks(f"{MARK}\n```\necho unmarked language\n```\n")


def test_the_demo_points_at_the_walks_first_commands() -> None:
    from services.cli.demo import NEXT

    _, first = marked_blocks((ROOT / "README.md").read_text())[0]
    commands = [line.strip() for line in NEXT.splitlines()[1:]]
    assert commands and all(any(line.startswith(c) for line in first.splitlines()) for c in commands)


@pytest.mark.long  # CI walks it on a fresh clone after `make demo` (.ci/first-hour): not twice in one run
def test_the_readmes_using_it_runs_as_written(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = marked_blocks(readme)
    assert len(blocks) >= 5 and all(code in section(readme, "Using it") for _, code in blocks)
    work = tmp_path / "work"  # a newcomer's directory, the checkout's venv in it: `$PWD/.venv/bin`
    work.mkdir()
    (work / ".venv").symlink_to(ROOT / ".venv")
    home = tmp_path / "home"
    env = newcomers_env(SFVAULT_HOME=str(home))
    try:
        steps = list(walk(ROOT / "README.md", work, env, tmp_path / "exported.sh"))
    finally:
        subprocess.run([str(ROOT / ".venv/bin/sfvault"), "services", "down"], env=env, timeout=120, check=False)
    for step in steps:
        said = f"README.md:{step.line}: exit {step.returncode}\n{step.output[-6000:]}"
        assert step.returncode == 0 and "Traceback" not in step.output, said
    assert len(steps) == len(blocks)
    # what the walk wrote is what it says: the exports, the decrypted copy, the file body
    assert len((work / "accounts.csv").read_text().splitlines()) > 10
    contacts = (work / "contacts.csv").read_text()
    assert contacts.startswith("Id,") and len(contacts.splitlines()) > 10
    assert (work / "body.bin").stat().st_size > 0
    assert not (home / "supervisor.pid").exists()  # the last block stopped it
