"""Worker-side merging of a reply's deltas into fewer token events.

A delta that arrives at least `window_s` after the reply's previous token event is published
at once (no added latency for a model that streams slower than the window); deltas that come
faster are joined and published together when the window since the previous event ends. So
each reply publishes at most one token event per window, whatever the model's pace, and
nothing is dropped or reordered: the texts of the events joined are the deltas joined.

A window ends on the next tick of a clock shared by every reply of the worker (ticks
`window_s / 2` apart, on the monotonic clock's multiples): the token events of all replies
whose windows end on one tick are published in the same turn of the event loop, and the NATS
client writes them to its socket at once, one write for all instead of one per reply. A
joined delta waits at most half a window longer; two events of a reply stay at least a
window apart.

Time comes from the `clock` and the timer (`sleep`) it is given: tests give it their own,
and need no real waiting.
"""

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable

Send = Callable[[int, str, int], Awaitable[None]]
"""Publishes one token event: its index (counting events of the reply from 0), its text and
how many deltas that text joins."""
Sleep = Callable[[float], Awaitable[None]]


class Coalescer:
    def __init__(
        self,
        send: Send,
        window_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._send = send
        self._window_s = window_s
        self._clock = clock
        self._sleep = sleep
        self._pending: list[str] = []
        self._flusher: asyncio.Task[None] | None = None
        self._last: float | None = None
        """When the previous event was published."""
        self._publishing = False
        self.events = 0
        """Token events published so far."""

    async def add(self, text: str) -> None:
        """Publish `text` now, or queue it for the end of the current window.

        Raises the error of an earlier, deferred publish.
        """
        if self._flusher is not None and self._flusher.done():
            self._flusher.result()  # a deferred publish failed: surface it here
            self._flusher = None
        last = self._last
        if self._flusher is None and (last is None or self._clock() - last >= self._window_s):
            await self._publish(text, 1)
            return
        self._pending.append(text)
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_later())

    async def close(self) -> None:
        """Publish whatever is queued now; raises a deferred publish's error."""
        flusher, self._flusher = self._flusher, None
        if flusher is not None:
            if not self._publishing:
                flusher.cancel()  # what it waits to publish is still pending
            with contextlib.suppress(asyncio.CancelledError):
                await flusher  # mid-publish: let that publish finish, in order
        if self._pending:
            await self._publish_pending()

    def abandon(self) -> None:
        """Stop without publishing what is queued (the reply was fenced off)."""
        if self._flusher is not None:
            self._flusher.cancel()
            self._flusher = None
        self._pending.clear()

    async def _flush_later(self) -> None:
        while self._pending:
            assert self._last is not None
            await self._sleep(
                max(0.0, self._tick_after(self._last + self._window_s) - self._clock())
            )
            self._publishing = True
            try:
                await self._publish_pending()
            finally:
                self._publishing = False

    def _tick_after(self, moment: float) -> float:
        """The first tick of the shared clock at or after `moment`."""
        tick = self._window_s / 2
        return math.ceil(moment / tick - 1e-6) * tick

    async def _publish_pending(self) -> None:
        deltas = len(self._pending)
        text = "".join(self._pending)
        self._pending.clear()
        await self._publish(text, deltas)

    async def _publish(self, text: str, deltas: int) -> None:
        index = self.events
        self.events += 1
        self._last = self._clock()
        await self._send(index, text, deltas)
