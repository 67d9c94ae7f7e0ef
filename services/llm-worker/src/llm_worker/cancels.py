"""Stopping a reply that is streaming: by cancel, by a budget (the sender's daily budget or
the session's cap), or because it was fenced off."""

import asyncio
import time
from typing import Literal

from shared import subjects

StopReason = Literal["cancelled", "budget", "session_budget", "fenced"]


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
    """The reply attempts this worker holds, by (session, message), so a cancel finds them.

    One worker can hold two attempts of one message (the stream redelivered it to the same
    worker after its ack wait): each has its own signal, so fencing off the older one leaves
    the newer one streaming.
    """

    def __init__(self) -> None:
        self._held: dict[tuple[str, str], dict[int, StopSignal]] = {}

    def __len__(self) -> int:
        return sum(len(attempts) for attempts in self._held.values())

    def hold(self, session_id: str, message_id: str, attempt: int) -> StopSignal:
        attempts = self._held.setdefault((session_id, message_id), {})
        return attempts.setdefault(attempt, StopSignal())

    def release(self, session_id: str, message_id: str, attempt: int) -> None:
        attempts = self._held.get((session_id, message_id))
        if attempts is None:
            return
        attempts.pop(attempt, None)
        if not attempts:
            del self._held[(session_id, message_id)]

    def fence(self, session_id: str, message_id: str, attempt: int) -> None:
        """Stop `attempt` (a newer one has the reply), if this worker still holds it."""
        signal = self._held.get((session_id, message_id), {}).get(attempt)
        if signal is not None:
            signal.set("fenced")

    def cancel(self, session_id: str, message_id: str) -> bool:
        """Stop every attempt at the reply this worker holds (`*`: at every reply of the
        session, which was deleted); True when it held one."""
        if message_id == subjects.EVERY_REPLY:
            held = [attempts for (sid, _), attempts in self._held.items() if sid == session_id]
        else:
            held = [self._held.get((session_id, message_id), {})]
        for attempts in held:
            for signal in attempts.values():
                signal.set("cancelled")
        return any(held)
