"""An iterator read ahead by a thread of its own: the next storage chunks of a restore while a batch is decided,
the next pieces of a file body while the one before goes to storage."""

from __future__ import annotations

import contextlib
import contextvars
import queue
import threading
from collections.abc import Generator, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class _End(Generic[T]):
    """What the reading thread leaves last in the queue: the end of the items, or why it stopped."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


def read_ahead(items: Iterator[T], depth: int) -> Generator[T, None, None]:
    """`items`, read by a thread of their own up to `depth` items ahead of the consumer; an error of the reading
    is raised where its item would have come. The consumer ending early (closing the generator: storage refused a
    body, the job stops) stops the reader, which closes `items` in its own thread (the one reading it), and is
    waited for a few seconds."""
    ahead: queue.Queue[T | _End[T]] = queue.Queue(max(depth, 1))
    stop = threading.Event()

    def read() -> None:
        try:
            for item in items:
                ahead.put(item)  # never blocks for good: a consumer that stops empties the queue first
                if stop.is_set():
                    return
            ahead.put(_End())
        except BaseException as exc:  # handed to the consumer
            ahead.put(_End(exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()

    reader = threading.Thread(target=contextvars.copy_context().run, args=(read,), name="read-ahead", daemon=True)
    reader.start()
    try:
        while not isinstance(item := ahead.get(), _End):
            yield item
        if item.error is not None:
            raise item.error
    finally:
        stop.set()
        with contextlib.suppress(queue.Empty):
            while True:  # a reader blocked on a full queue goes on, sees `stop` and ends
                ahead.get_nowait()
        reader.join(timeout=5)
