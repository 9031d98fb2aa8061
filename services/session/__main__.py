"""Start the session service (`python -m services.session`) or rebuild its projection
(`python -m services.session rebuild [--schema NAME]`)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from services.common import settings as settings_module
from services.common import telemetry
from services.session import service
from services.session.config import SessionSettings


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m services.session", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="run the service (the default)")
    rb = sub.add_parser("rebuild", help="replay the whole EVENTS stream into an empty projection")
    rb.add_argument("--schema", help="rebuild into this schema instead of the live one")
    args = parser.parse_args()
    cfg = settings_module.load(SessionSettings)
    logging.basicConfig(level=cfg.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if args.command == "rebuild":
        count = asyncio.run(service.rebuild(cfg, args.schema))
        print(f"rebuilt the projection from {count} events")
        return
    asyncio.run(_serve(cfg))


async def _serve(cfg: SessionSettings) -> None:
    tel = telemetry.setup("session")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await service.serve(cfg, stop)
    finally:
        tel.shutdown()  # flush the spans and metrics still buffered


if __name__ == "__main__":
    main()
