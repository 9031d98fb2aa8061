"""Running a service process: logging, telemetry, serve until SIGTERM/SIGINT, then flush telemetry."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import TypeVar

from services.common import telemetry

S = TypeVar("S")


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")


def run_until_signal(name: str, serve: Callable[[S, asyncio.Event], Awaitable[None]], settings: S) -> None:
    """Serve until SIGTERM or SIGINT sets the stop event; the service drains itself, then telemetry flushes."""

    async def main() -> None:
        tel = telemetry.setup(name)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await serve(settings, stop)
        finally:
            tel.shutdown()  # flush the spans and metrics still buffered

    asyncio.run(main())
