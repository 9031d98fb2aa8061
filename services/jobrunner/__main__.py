"""Start the jobrunner (`python -m services.jobrunner`): takes jobs from JOBS until SIGTERM, then drains."""

from __future__ import annotations

import asyncio
import logging
import signal

from services.common import settings as settings_module
from services.common import telemetry
from services.jobrunner import service
from services.jobrunner.config import JobrunnerSettings


def main() -> None:
    cfg = settings_module.load(JobrunnerSettings)
    logging.basicConfig(level=cfg.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(_serve(cfg))


async def _serve(cfg: JobrunnerSettings) -> None:
    tel = telemetry.setup("jobrunner")
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
