"""Reading a message's earlier attempts back from the stream, for an attempt that retries it
(attempt > 1): what they recorded and what those lost with their worker (SIGKILL, a crash, a
machine gone) had published. Nobody is left to say what a lost call cost, but the provider
bills it: `replies` publishes an estimate of each (`ModelCall` with outcome `lost`) from
this, when the reply ends.
"""

import asyncio
import logging
from collections.abc import Callable

from nats.js import JetStreamContext

from llm_worker.earlier import EarlierAttempts
from shared.events import UserMessage, parse_event
from shared.stream_reader import stored_events

log = logging.getLogger(__name__)


class EarlierReader:
    def __init__(
        self, js: Callable[[], JetStreamContext], *, timeout_s: float = 5.0, tries: int = 3
    ) -> None:
        self._js = js
        self._timeout_s = timeout_s
        self._tries = tries

    async def read(self, message: UserMessage, seq: int, attempt: int) -> EarlierAttempts | None:
        """The stored reply events of `message` (stream sequence `seq`) before `attempt`,
        tried `tries` times a second apart (a retry often follows a broker's failover);
        None when the stream could not be read (no estimate is made then)."""
        subject = f"chat.{message.session_id}.out.>"
        for tries_left in range(self._tries - 1, -1, -1):
            earlier = EarlierAttempts()
            try:
                async for _, data, _ in stored_events(
                    self._js(), subject, seq, timeout_s=self._timeout_s
                ):
                    earlier.add(parse_event(data), message.message_id, attempt)
                return earlier
            except Exception as exc:
                if not tries_left:
                    log.warning("earlier attempts of %s not read: %s", message.message_id, exc)
                    return None
            await asyncio.sleep(1.0)
        return None
