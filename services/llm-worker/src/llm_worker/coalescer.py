"""Worker-side merging of a reply's deltas into fewer token events.

A delta that arrives at least `window_s` after the reply's previous token event is published
at once (no added latency for a model that streams slower than the window); deltas that come
faster are joined and published together when the window since the previous event ends. So
each reply publishes at most one token event per window, whatever the model's pace, and
nothing is dropped or reordered: the texts of the events joined are the deltas joined.

The coalescer reads no clock: each delta comes with the time it arrived, and a window's end
is computed from those times (a deferred event is published by a timer, `sleep`).
"""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

Send = Callable[[int, str, int], Awaitable[None]]
"""Publishes one token event: its index (counting events of the reply from 0), its text and
how many deltas that text joins."""
Sleep = Callable[[float], Awaitable[None]]


class Coalescer:
    def __init__(self, send: Send, window_s: float, *, sleep: Sleep = asyncio.sleep) -> None:
        self._send = send
        self._window_s = window_s
        self._sleep = sleep
        self._pending: list[str] = []
        self._flusher: asyncio.Task[None] | None = None
        self._last: float | None = None
        """When the previous event was published (or due to be)."""
        self._sleeping = False
        self.events = 0
        """Token events published so far."""

    async def add(self, text: str, now: float) -> None:
        """Publish `text`, which arrived at `now`, at once, or queue it for the end of the
        current window.

        Raises the error of an earlier, deferred publish.
        """
        if self._flusher is not None and self._flusher.done():
            self._flusher.result()  # a deferred publish failed: surface it here
            self._flusher = None
        if self._flusher is None and (self._last is None or now - self._last >= self._window_s):
            await self._publish(text, 1, now)
            return
        self._pending.append(text)
        if self._flusher is None:
            assert self._last is not None
            self._flusher = asyncio.create_task(self._flush_later(now))

    async def close(self) -> None:
        """Publish whatever is queued now; raises a deferred publish's error."""
        flusher, self._flusher = self._flusher, None
        if flusher is not None:
            if self._sleeping:
                flusher.cancel()  # what it waited to publish is still pending
            with contextlib.suppress(asyncio.CancelledError):
                await flusher  # mid-publish: let that publish finish, in order
        if self._pending:
            await self._publish_pending(self._last or 0.0)

    def abandon(self) -> None:
        """Stop without publishing what is queued (the reply was fenced off)."""
        if self._flusher is not None:
            self._flusher.cancel()
            self._flusher = None
        self._pending.clear()

    async def _flush_later(self, now: float) -> None:
        """Publish what is pending at the end of each window, starting from `now`."""
        while self._pending:
            assert self._last is not None
            due = self._last + self._window_s
            self._sleeping = True
            try:
                await self._sleep(max(0.0, due - now))
            finally:
                self._sleeping = False
            now = due
            await self._publish_pending(due)

    async def _publish_pending(self, at: float) -> None:
        deltas = len(self._pending)
        text = "".join(self._pending)
        self._pending.clear()
        await self._publish(text, deltas, at)

    async def _publish(self, text: str, deltas: int, at: float) -> None:
        index = self.events
        self.events += 1
        self._last = at
        await self._send(index, text, deltas)
