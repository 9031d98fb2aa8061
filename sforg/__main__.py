"""Command line.

`python -m sforg serve --port PORT --state-dir DIR [--scale tiny|small|large|xlarge|N] [--seed S]`
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import signal
import sys
from pathlib import Path

from sforg.server import serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sforg", description="A Salesforce org emulator.")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="build (first start) or open an org and serve it over HTTPS")
    s.add_argument("--port", type=int, default=8443, help="TCP port (0 picks a free one; org.json tells)")
    s.add_argument("--state-dir", type=Path, required=True, help="where the org, its CA and org.json live")
    s.add_argument(
        "--scale",
        default="tiny",
        help="tiny (~1k records), small (~50k), large (1M), xlarge (10M, Task 5M: ~12 min, 7 GB) or a number",
    )
    s.add_argument("--seed", type=int, default=1, help="same seed, same org")
    args = parser.parse_args(argv)
    args.state_dir.mkdir(parents=True, exist_ok=True)
    # One server per state directory: SQLite would cope, but two servers would each own tokens and cursors.
    lock = open(args.state_dir / "sforg.lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        print(f"sforg: another server is using {args.state_dir}", file=sys.stderr)
        return 2
    (args.state_dir / "org.json").unlink(missing_ok=True)

    async def run() -> None:
        task = asyncio.ensure_future(serve(args.state_dir, args.port, args.scale, args.seed))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        try:
            await task
        except asyncio.CancelledError:
            pass

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
