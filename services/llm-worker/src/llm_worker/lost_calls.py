"""Model calls of attempts lost with their worker (SIGKILL, a crash, a machine gone): nobody
is left to say what they cost, but the provider bills them.

The attempt that ends a reply after others began (attempt > 1) reads the session's stored
reply events since the user message, and for each earlier attempt that started and left no
record of its own — no reply end, no error, no `ModelCall` — publishes an estimate
(`ModelCall` with outcome `lost`): the deltas that attempt published, and the prompt of this
one (the same message, the same context). It misses what the lost attempt received but had
not yet published (at most one coalescing window) and what the model sent after; an
attempt's own record, should it come later (a worker that was only frozen), replaces it.
"""

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from nats.js import JetStreamContext

from llm_worker.attempt import ReplyJob
from llm_worker.publisher import ReplyPublisher
from llm_worker.settings import Price
from llm_worker.tokens import TokenCounter
from shared.events import (
    BusEvent,
    ModelCall,
    ReplyEnd,
    ReplyError,
    ReplyStart,
    ReplyToken,
    Usage,
    UserMessage,
    parse_event,
)
from shared.stream_reader import stored_events

log = logging.getLogger(__name__)


@dataclass
class EarlierAttempts:
    """What the stream holds of one message's attempts before a given one."""

    started: set[int] = field(default_factory=set)
    recorded: set[int] = field(default_factory=set)
    deltas: Counter[int] = field(default_factory=Counter)

    def add(self, event: BusEvent, message_id: str, before: int) -> None:
        if isinstance(event, UserMessage) or event.message_id != message_id:
            return
        attempt = event.attempt
        if not 0 < attempt < before:
            return
        match event:
            case ReplyStart():
                self.started.add(attempt)
            case ReplyToken():
                self.deltas[attempt] += event.deltas
            case ReplyEnd() | ReplyError() | ModelCall():
                self.recorded.add(attempt)

    def lost(self) -> dict[int, int]:
        """Attempts that started and recorded nothing, with the deltas each published."""
        return {a: self.deltas[a] for a in sorted(self.started - self.recorded)}


def tally(events: Iterable[BusEvent], message_id: str, before: int) -> EarlierAttempts:
    earlier = EarlierAttempts()
    for event in events:
        earlier.add(event, message_id, before)
    return earlier


class LostCalls:
    def __init__(
        self,
        js: Callable[[], JetStreamContext],
        publisher: Callable[[], ReplyPublisher],
        counter: TokenCounter,
        prices: dict[str, Price],
        *,
        timeout_s: float = 5.0,
    ) -> None:
        self._js = js
        self._publisher = publisher
        self._counter = counter
        self._prices = prices
        self._timeout_s = timeout_s

    async def account(self, seq: int, job: ReplyJob, terminal: ReplyEnd | ReplyError) -> None:
        """Publish an estimate for each earlier attempt at `job`'s message that was lost;
        `seq` is the user message's stream sequence. Best effort: a failure is logged."""
        message = job.message
        try:
            earlier = await self._read(message.session_id, seq, message.message_id, job.attempt)
            lost = earlier.lost()
            if not lost:
                return
            prompt = _prompt_tokens(terminal) or self._counter.count_messages(job.prompt)
            for attempt, deltas in lost.items():
                usage = Usage(
                    prompt_tokens=prompt,
                    completion_tokens=deltas,
                    total_tokens=prompt + deltas,
                    estimated=True,
                )
                await self._publisher().call(job.call("lost", usage, self._prices, attempt))
        except Exception as exc:
            log.warning("lost model calls of %s not estimated: %s", message.message_id, exc)

    async def _read(
        self, session_id: str, seq: int, message_id: str, before: int
    ) -> EarlierAttempts:
        earlier = EarlierAttempts()
        async for _, data in stored_events(self._js(), f"chat.{session_id}.out.>", seq):
            earlier.add(parse_event(data), message_id, before)
        return earlier


def _prompt_tokens(terminal: ReplyEnd | ReplyError) -> int:
    """The prompt as the provider counted it for the attempt that ended the reply."""
    if isinstance(terminal, ReplyEnd) and not terminal.usage.estimated:
        return terminal.usage.prompt_tokens
    return 0
