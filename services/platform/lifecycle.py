"""Running a service process: logging, telemetry, serve until SIGTERM/SIGINT, then flush telemetry; the wait of
a background loop between its rounds."""

from __future__ import annotations

import asyncio
import ctypes
import functools
import gc
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

from services.platform import metrics, telemetry

S = TypeVar("S")


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")


def tune_malloc() -> None:
    """glibc gives each thread its own malloc arena; with job threads, chunk threads and gRPC's, the freed
    chunk buffers stay spread over many arenas and resident. Two arenas keep the peak RSS near what is in use.
    (A fixed mmap threshold was tried too: mapping and unmapping each chunk's megabyte buffers made the kernel
    zero their pages again every time; storage's CPU per record went from 13 to 20 µs in a benchmark run.)"""
    libc = _libc()
    if libc is not None:
        libc.mallopt(-8, 2)  # M_ARENA_MAX


def release_memory() -> None:
    """Free heap memory given back to the system (glibc's malloc_trim): after a job lets go of a large batch, its
    freed blocks would otherwise stay resident and the next batch be counted on top of them."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """glibc, loaded once (None where there is none: another platform, or a libc without these calls)."""
    if sys.platform != "linux":
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def tune_gc() -> None:
    """Collector settings for services that handle chunks of ten thousand records.

    Each chunk allocates tens of thousands of short-lived containers (rows, tuples, dicts); with the default
    thresholds (700, 10, 10) the cyclic collector runs dozens of times per chunk and walks them all again
    (13 % of the storage service's CPU in a profile of an initial load). A young collection every 10,000
    allocations costs a fraction of that, and the older generations are still collected every 100 and 1,000
    young collections: garbage in reference cycles (HTTP responses, gRPC calls) that holds a chunk's buffers
    is freed within seconds (a collector tuned ten times lazier let a jobrunner grow from 195 to 500 MB).
    What is alive at start-up (modules, settings, compiled patterns) is frozen out of every collection."""
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


def run_until_signal(name: str, serve: Callable[[S, asyncio.Event], Awaitable[None]], settings: S) -> None:
    """Serve until SIGTERM or SIGINT sets the stop event; the service drains itself, then telemetry flushes."""

    async def main() -> None:
        tel = metrics.setup(name, telemetry.setup(name))
        tune_gc()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await serve(settings, stop)
        finally:
            tel.shutdown()  # flush the spans and metrics still buffered

    asyncio.run(main())


async def next_round(wake: asyncio.Event, stop: asyncio.Event, timeout_s: float) -> None:
    """A background loop's wait for its next round: `timeout_s`, or less once `wake` or `stop` is set; `wake` is
    cleared for the round after."""
    waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
    try:
        await asyncio.wait(waits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiting in waits:
            waiting.cancel()
        wake.clear()
