"""What the stream holds of a message's earlier attempts, for the attempt that retries it: which
started, which recorded their model call (a reply end, or a `ModelCall`), what each recorded,
and how many deltas each published. Pure: `earlier_reader` reads the events, `replies` bills
what this tells."""

from collections import Counter
from dataclasses import dataclass, field

from shared.events import (
    BusEvent,
    ModelCall,
    ReplyEnd,
    ReplyError,
    ReplyReasoning,
    ReplyStart,
    ReplyToken,
    SystemMessage,
    Usage,
    UserMessage,
)


@dataclass
class EarlierAttempts:
    started: set[int] = field(default_factory=set)
    ended: set[int] = field(default_factory=set)
    """Attempts that left a record of their own: a reply end, an error, a model call."""
    usage: dict[int, Usage] = field(default_factory=dict)
    """What the records of their own say they cost (an error says nothing)."""
    cost_usd: dict[int, float | None] = field(default_factory=dict)
    deltas: Counter[int] = field(default_factory=Counter)

    def add(self, event: BusEvent, message_id: str, before: int) -> None:
        """Take one stored event into account, if it is of `message_id` before `before`."""
        if isinstance(event, UserMessage | SystemMessage) or event.message_id != message_id:
            return
        attempt = event.attempt
        if not 0 < attempt < before:
            return
        match event:
            case ReplyStart():
                self.started.add(attempt)
            case ReplyToken() | ReplyReasoning():
                self.deltas[attempt] += event.deltas
            case ReplyError():
                self.ended.add(attempt)
            case ReplyEnd() | ModelCall() if not _estimate(event):
                self.ended.add(attempt)
                self.usage[attempt] = event.usage
                self.cost_usd[attempt] = event.cost_usd
            case _:
                pass  # another attempt's estimate of a lost one: made again if still lost

    def lost(self) -> dict[int, int]:
        """Attempts that started and recorded nothing, with the deltas each published."""
        return {a: self.deltas[a] for a in sorted(self.started - self.ended)}


def _estimate(event: ReplyEnd | ModelCall) -> bool:
    return isinstance(event, ModelCall) and event.outcome == "lost"
