"""Failpoints: named places where a chaos test may kill the process (`kill -9` exactly there).

`SFVAULT_FAILPOINTS` (comma-separated names) arms them; each fires once per `SFVAULT_FAILPOINT_DIR`: the
first process to reach an armed point creates `<dir>/<name>.fired` and kills itself with SIGKILL, so the
process started again after it runs through. Unarmed (production), a failpoint is one set lookup; the
environment is read once.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

_armed: frozenset[str] | None = None


def armed() -> frozenset[str]:
    global _armed
    if _armed is None:
        _armed = frozenset(n.strip() for n in os.environ.get("SFVAULT_FAILPOINTS", "").split(",") if n.strip())
    return _armed


def reset() -> None:
    """Read the environment again at the next failpoint (tests)."""
    global _armed
    _armed = None


def failpoint(name: str) -> None:
    """Kill this process with SIGKILL here if `name` is armed and has not fired yet."""
    if name not in (_armed if _armed is not None else armed()):
        return
    marker = Path(os.environ.get("SFVAULT_FAILPOINT_DIR", ".")) / f"{name}.fired"
    try:
        # O_EXCL: of several processes reaching it at once, exactly one fires
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        return
    os.kill(os.getpid(), signal.SIGKILL)
