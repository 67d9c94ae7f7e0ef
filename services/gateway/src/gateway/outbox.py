"""Per-connection send queue with lossless merging of token frames under backpressure.

The fan-out puts `Outgoing` items into each connection's `Outbox` without ever waiting. The
connection's sender drains everything queued at once; when more than one item waits (the client
is behind), `coalesce` merges consecutive deltas of one reply into one `stream_token` frame
carrying the `index` of the first and the `seq` of the last. Only past `max_items` is the
connection marked overflowed and closed with 1013, after which the client resumes by `seq`.
"""

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from shared.events import BusEvent, ReplyStart, ReplyToken, SystemMessage, UserMessage
from shared.frames import StreamTokenFrame


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One frame for a client: its serialised `text`, once for every connection that gets it."""

    text: str
    seq: int | None = None
    """Stream sequence of a stored event; None for relays (typing, presence)."""
    event: BusEvent | None = None
    """The stored event the frame shows; None for relays."""
    ts: str | None = None
    """When the stream stored it."""


class AttemptFilter:
    """Drops events of a reply attempt older than the newest one seen: a worker that stalled
    and woke up after its message went to another worker must not interleave its tokens."""

    def __init__(self, remember: int = 1024) -> None:
        self._newest: OrderedDict[str, int] = OrderedDict()
        self._remember = remember

    def admit(self, item: Outgoing) -> bool:
        event = item.event
        if event is None or isinstance(event, UserMessage | SystemMessage):
            return True
        message_id, attempt, starts = event.message_id, event.attempt, isinstance(event, ReplyStart)
        newest = self._newest.get(message_id, 0)
        if attempt < newest:
            return False
        if starts and attempt > newest:
            self._newest[message_id] = attempt
            self._newest.move_to_end(message_id)
            if len(self._newest) > self._remember:
                self._newest.popitem(last=False)
        return True


def coalesce(items: list[Outgoing]) -> list[str]:
    """The frames to send for `items`, in order, merging each run of contiguous deltas of one
    reply into one frame. Nothing is dropped: the merged text is the run's texts joined."""
    frames: list[str] = []
    run: list[tuple[Outgoing, ReplyToken]] = []

    def flush() -> None:
        if len(run) == 1:
            frames.append(run[0][0].text)
        elif run:
            (_, first), (last, _) = run[0], run[-1]
            assert last.seq is not None
            frames.append(
                StreamTokenFrame.model_construct(
                    seq=last.seq,
                    ts=last.ts,
                    message_id=first.message_id,
                    index=first.index,
                    text="".join(token.text for _, token in run),
                ).model_dump_json()
            )
        run.clear()

    for item in items:
        token = item.event if isinstance(item.event, ReplyToken) else None
        if token is not None and run:
            previous = run[-1][1]
            if previous.message_id == token.message_id and previous.index + 1 == token.index:
                run.append((item, token))
                continue
        flush()
        if token is not None and item.seq is not None:
            run.append((item, token))
        else:
            frames.append(item.text)
    flush()
    return frames


class Outbox:
    """What waits to be sent to one connection. It never blocks and owns no task: `on_ready`
    is called when something arrives (or a mark is set), and the connection then `drain`s it
    from a sender of its own that lives only while there is something to send."""

    def __init__(
        self, max_items: int, owner: str = "", on_ready: Callable[[], None] | None = None
    ) -> None:
        self.owner = owner
        """The connection it belongs to: relays are not echoed to their origin."""
        self._max_items = max_items
        self._items: list[Outgoing] = []  # lighter than a deque for an idle connection
        self._on_ready = on_ready
        self.overflowed = False
        self.interrupted = False
        """Events after this point may be missing (the broker connection dropped): what is
        queued is still sent, nothing more, and the client is told to resume."""

    def offer(self, item: Outgoing) -> None:
        """Queue `item`; never blocks. Past `max_items`, marks the outbox overflowed instead."""
        if self.overflowed or self.interrupted:
            return
        if len(self._items) >= self._max_items:
            self.overflowed = True
        else:
            self._items.append(item)
        if self._on_ready is not None:
            self._on_ready()

    def interrupt(self) -> None:
        """Accept nothing more; the connection sends what is queued, then closes (1013)."""
        self.interrupted = True
        if self._on_ready is not None:
            self._on_ready()

    def drain(self) -> list[Outgoing]:
        """Everything queued (possibly nothing), oldest first."""
        items, self._items = self._items, []
        return items
