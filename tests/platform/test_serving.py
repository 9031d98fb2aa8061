"""The start-up helper's loop rules: serve until stop, or until a loop fails (its error raised), then stop all."""

from __future__ import annotations

import asyncio

import pytest

from services.platform import serving


async def test_a_failing_loop_raises_its_error_and_stops_the_others() -> None:
    stop = asyncio.Event()

    async def fails() -> None:
        raise RuntimeError("consumer died")

    other = asyncio.create_task(stop.wait())
    with pytest.raises(RuntimeError, match="consumer died"):
        await serving.until_stopped(stop, [asyncio.create_task(fails()), other])
    assert stop.is_set()
    await asyncio.wait_for(other, 1)


async def test_stop_ends_the_wait_and_cancel_leaves_no_task_running() -> None:
    stop = asyncio.Event()
    forever = asyncio.create_task(asyncio.Event().wait())
    asyncio.get_running_loop().call_soon(stop.set)
    await serving.until_stopped(stop, [forever])
    assert not forever.done()
    await serving.cancel(forever)
    assert forever.cancelled()


async def test_a_ready_hook_may_be_a_coroutine_or_not() -> None:
    seen: list[str] = []

    async def hook_async(name: str) -> None:
        seen.append(f"async {name}")

    await serving.announce_ready(hook_async, "a")
    await serving.announce_ready(lambda name: seen.append(f"sync {name}"), "b")
    await serving.announce_ready(None, "c")
    assert seen == ["async a", "sync b"]
