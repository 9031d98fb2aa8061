"""Start the discovery service: `python -m services.discovery` (settings from SFVAULT_* variables)."""

from __future__ import annotations

import asyncio
import logging
import signal

from services.common import settings as settings_module
from services.common import telemetry
from services.discovery import service
from services.discovery.config import DiscoverySettings


def main() -> None:
    cfg = settings_module.load(DiscoverySettings)
    logging.basicConfig(level=cfg.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(_serve(cfg))


async def _serve(cfg: DiscoverySettings) -> None:
    tel = telemetry.setup("discovery")
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
