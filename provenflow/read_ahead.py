"""An iterator read in a thread of its own, a few items ahead of the code that consumes them.

For work where the producing call releases the GIL and the consumer has its own to do: a data-run's
source batches (pyarrow parses a CSV block with the GIL released, but in the thread that asks for the
next batch: the pass's profile of one batch then waited for the parse of the next, and on two cores
one core was idle for most of a new partition's pass), and a file's chunks under its hash
(``provenflow.digest``). At most DEPTH items wait in between, so memory stays flat. An exception of
the source reaches the consumer as it would have, at the item where it happened.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")
_END = object()


class ReadAhead(Generic[T]):
    """Iterate ITEMS in a thread, DEPTH items ahead; ``close`` (always call it) stops the thread."""

    def __init__(self, items: Iterator[T], depth: int = 2, name: str = "provenflow-read") -> None:
        self.items = items
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._produce, name=name, daemon=True)
        self.thread.start()

    def __iter__(self) -> Iterator[T]:
        while True:
            item, error = self.queue.get()
            if item is _END:
                self.thread.join()
                if error is not None:
                    raise error
                return
            yield item

    def close(self) -> None:
        """Stop reading (the consumer failed, or is done): the source is closed in its own thread."""
        self.stopping.set()  # a producer waiting on a full queue sees it within its timeout
        self.thread.join()

    def _produce(self) -> None:
        error = None
        try:
            for item in self.items:
                if not self._put((item, None)):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            error = exc
        finally:
            close = getattr(self.items, "close", None)
            if close is not None and self.stopping.is_set():
                close()  # a generator's finally (the open file) runs here, in the thread that opened it
        self._put((_END, error))

    def _put(self, entry: tuple) -> bool:
        while not self.stopping.is_set():
            try:
                self.queue.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False
