"""Start the jobrunner (`python -m services.jobrunner`): takes jobs from JOBS until SIGTERM, then drains."""

from __future__ import annotations

import asyncio
import ctypes
import logging
import signal
import sys

from services.common import settings as settings_module
from services.common import telemetry
from services.jobrunner import service
from services.jobrunner.config import JobrunnerSettings


def _fewer_malloc_arenas() -> None:
    """glibc gives each thread its own malloc arena; with job threads, chunk threads and gRPC's, the freed
    chunk buffers stay spread over many arenas and resident. Two arenas keep the peak RSS near what is in use."""
    if sys.platform != "linux":
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-8, 2)  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass


def main() -> None:
    _fewer_malloc_arenas()
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
