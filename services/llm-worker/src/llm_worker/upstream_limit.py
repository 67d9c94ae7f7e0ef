"""How many model calls a worker makes at once: as many as it holds replies, until the model
server says it is overloaded (HTTP 429): then half as many, growing back by one call for
every call's worth of successes (additive increase, multiplicative decrease, as TCP does).

`Aimd` is the arithmetic, with no I/O; `UpstreamLimit` gates the calls with it.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass


@dataclass(slots=True)
class Aimd:
    ceiling: int
    """Never more than this: the replies a worker holds."""
    limit: float = 0.0
    """Calls allowed at once (starts at `ceiling`)."""

    def __post_init__(self) -> None:
        self.limit = self.limit or float(self.ceiling)

    def overloaded(self) -> None:
        self.limit = max(1.0, self.limit / 2)

    def succeeded(self) -> None:
        self.limit = min(float(self.ceiling), self.limit + 1 / self.limit)

    @property
    def allowed(self) -> int:
        return int(self.limit)


class UpstreamLimit:
    def __init__(self, ceiling: int) -> None:
        self.aimd = Aimd(ceiling)
        self.running = 0
        self._changed = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def call(self) -> AsyncIterator[None]:
        """Hold one of the allowed calls while the block runs (waiting for one if needed)."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.running < self.aimd.allowed)
            self.running += 1
        try:
            yield
        finally:
            async with self._changed:
                self.running -= 1
                self._changed.notify_all()

    async def report(self, *, overloaded: bool) -> None:
        """How a call ended: the model server refused it as overloaded, or not."""
        async with self._changed:
            if overloaded:
                self.aimd.overloaded()
            else:
                self.aimd.succeeded()
            self._changed.notify_all()
