"""The README's "Using it" as a script: every ```sh block right after a `<!-- readme-test: run -->` line, in order,
each in its own bash (`set -euo pipefail`; what a block exports or assigns carries to the next), from a directory
given (a newcomer's: the checkout after `make demo`). Prose examples (other blocks) are not run.

`python -m devstack.readme_walk` walks the README of the checkout it runs from, printing each block, its output and
its time, and stops the local installation if a block fails (`.ci/first-hour` runs it on a fresh clone);
`tests/e2e/test_readme.py` walks it from another directory against a temporary SFVAULT_HOME.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MARK = "<!-- readme-test: run -->"
CHECKOUT = Path(__file__).resolve().parents[1]


def marked_blocks(text: str) -> list[tuple[int, str]]:
    """(line number, code) of each ```sh block right after the marker line."""
    blocks = [
        (text.count("\n", 0, m.start()) + 1, m.group(1))
        for m in re.finditer(re.escape(MARK) + r"\n```sh\n(.*?)\n```\n", text, re.S)
    ]
    if text.count(MARK) != len(blocks):
        raise ValueError(f"a {MARK} line not followed by a ```sh block")
    return blocks


@dataclass(frozen=True)
class Step:
    line: int
    code: str
    returncode: int
    seconds: float
    output: str


def walk(readme: Path, cwd: Path, env: dict[str, str], state: Path) -> Iterator[Step]:
    """Run the marked blocks of `readme` from `cwd`, one by one, until one fails; `state` carries the variables."""
    state.write_text("")
    for line, code in marked_blocks(readme.read_text()):
        started = time.monotonic()
        script = f'set -euo pipefail -a\n. "{state}"\n{code}\nexport -p > "{state}"\n'
        run = subprocess.run(["bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
        yield Step(line, code, run.returncode, time.monotonic() - started, run.stdout + run.stderr)
        if run.returncode != 0:
            return


def newcomers_env(**extra: str) -> dict[str, str]:
    """The environment of a shell that never heard of sfvault: no SFVAULT_ / SFORG_ variables, a plain PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SFVAULT_", "SFORG_"))}
    return env | {"PATH": "/usr/local/bin:/usr/bin:/bin", "COLUMNS": "120"} | extra


def main() -> int:
    env = newcomers_env()
    with tempfile.TemporaryDirectory(prefix="sfvault-walk-") as scratch:
        steps = list(walk(CHECKOUT / "README.md", CHECKOUT, env, Path(scratch) / "exported.sh"))
    for step in steps:
        print(f"### README.md:{step.line}: exit {step.returncode} in {step.seconds:.1f} s", flush=True)
        print("$ " + step.code.replace("\n", "\n$ "))
        print(step.output, flush=True)
    failed = [s for s in steps if s.returncode != 0]
    if failed:
        subprocess.run([str(CHECKOUT / ".venv/bin/sfvault"), "services", "down"], env=env, check=False)
    print(f"README walk: {len(steps)} blocks in {sum(s.seconds for s in steps):.0f} s, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
