"""Stopping a reply that is streaming: by cancel, by budget, or because it was fenced off."""

import asyncio
import time
from typing import Literal

StopReason = Literal["cancelled", "budget", "fenced"]


class StopSignal:
    """Set once, with the first reason; `wait` returns when it is."""

    def __init__(self) -> None:
        self.reason: StopReason | None = None
        self.at: float | None = None
        """When it was set (`time.monotonic()`)."""
        self._event = asyncio.Event()

    def set(self, reason: StopReason) -> None:
        if self.reason is None:
            self.reason = reason
            self.at = time.monotonic()
            self._event.set()

    async def wait(self) -> None:
        await self._event.wait()


class CancelRegistry:
    """The replies this worker holds, by (session, message), so a cancel finds its reply."""

    def __init__(self) -> None:
        self._held: dict[tuple[str, str], StopSignal] = {}

    def __len__(self) -> int:
        return len(self._held)

    def hold(self, session_id: str, message_id: str) -> StopSignal:
        signal = self._held.setdefault((session_id, message_id), StopSignal())
        return signal

    def release(self, session_id: str, message_id: str) -> None:
        self._held.pop((session_id, message_id), None)

    def cancel(self, session_id: str, message_id: str) -> bool:
        """Stop the reply if this worker holds it; True when it did."""
        signal = self._held.get((session_id, message_id))
        if signal is None:
            return False
        signal.set("cancelled")
        return True
