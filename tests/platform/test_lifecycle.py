"""lifecycle.next_round: a background loop's wait ends when woken or stopped, not only at its interval."""

from __future__ import annotations

import asyncio

from services.platform import lifecycle

LONG = 3600.0  # an interval no test waits out: the round must end because of the events


async def test_a_wake_ends_the_wait_and_is_cleared_for_the_next_round() -> None:
    wake, stop = asyncio.Event(), asyncio.Event()
    wake.set()
    await lifecycle.next_round(wake, stop, LONG)
    assert not wake.is_set() and not stop.is_set()


async def test_a_stop_ends_the_wait_and_stays_set() -> None:
    wake, stop = asyncio.Event(), asyncio.Event()
    waiting = asyncio.create_task(lifecycle.next_round(wake, stop, LONG))
    await asyncio.sleep(0)  # the round is waiting
    assert not waiting.done()
    stop.set()
    await waiting
    assert stop.is_set()


async def test_without_events_the_round_comes_at_its_interval() -> None:
    wake, stop = asyncio.Event(), asyncio.Event()
    await lifecycle.next_round(wake, stop, 0.0)
    assert not wake.is_set() and not stop.is_set()
