"""`python -m services.storage`: read the settings, start the service, serve until SIGTERM/SIGINT, then drain.
`python -m services.storage rewrap`: re-wrap the encrypted bodies' data keys under the current KEK (rewrap.py).
`python -m services.storage reseal`: seal the values stored before their field was marked sensitive (rewrap.py)."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from services.platform import lifecycle, metrics, serving, telemetry
from services.storage import config, service


async def main() -> None:
    settings = config.load()
    tel = metrics.setup("storage", telemetry.setup("storage"))
    lifecycle.tune_gc()
    try:
        await _serve(settings)
    finally:
        tel.shutdown()  # flush the spans and metrics still buffered


async def _serve(settings: config.StorageSettings) -> None:
    running = await service.start(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def database_answers() -> bool:
        async with running.pool.connection() as conn:
            await conn.execute("SELECT 1")
        return True

    health = serving.watch_dependencies(running.server, stop, database_answers, running.bus)
    await stop.wait()
    health.cancel()
    logging.getLogger("services.storage").info("stopping: draining in-flight calls")
    await running.stop(settings.storage_drain_seconds)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if sys.argv[1:] == ["rewrap"]:
        from services.storage import rewrap

        sys.exit(asyncio.run(rewrap.main()))
    if sys.argv[1:] == ["reseal"]:
        from services.storage import rewrap

        sys.exit(asyncio.run(rewrap.reseal_main()))
    if sys.argv[1:]:
        sys.exit(f"usage: python -m services.storage [rewrap | reseal]; got {' '.join(sys.argv[1:])!r}")
    lifecycle.tune_malloc()
    asyncio.run(main())
