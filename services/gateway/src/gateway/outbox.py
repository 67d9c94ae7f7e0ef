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

from shared.frames import StreamTokenFrame


@dataclass(frozen=True, slots=True)
class TokenPart:
    message_id: str
    index: int
    text: str
    deltas: int = 1
    """The model's deltas the text joins (for metrics)."""


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One frame for a client: its serialised `text`, and for a token its parts for merging."""

    text: str
    seq: int | None = None
    """Stream sequence of a stored event; None for relays (typing, presence)."""
    token: TokenPart | None = None
    attempt: tuple[str, int, bool] | None = None
    """For reply events: (message id, attempt, whether it is the attempt's start)."""
    kind: str = "relay"
    """`message`, `start`, `token`, `end`, `error` (stored events) or `relay`."""
    outcome: str | None = None
    """For `end` and `error`: the finish reason or the error code."""


class AttemptFilter:
    """Drops events of a reply attempt older than the newest one seen: a worker that stalled
    and woke up after its message went to another worker must not interleave its tokens."""

    def __init__(self, remember: int = 1024) -> None:
        self._newest: OrderedDict[str, int] = OrderedDict()
        self._remember = remember

    def admit(self, item: Outgoing) -> bool:
        if item.attempt is None:
            return True
        message_id, attempt, starts = item.attempt
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
    run: list[Outgoing] = []

    def flush() -> None:
        if len(run) == 1:
            frames.append(run[0].text)
        elif run:
            first, last = run[0], run[-1]
            assert first.token is not None
            assert last.seq is not None
            frames.append(
                StreamTokenFrame(
                    seq=last.seq,
                    message_id=first.token.message_id,
                    index=first.token.index,
                    text="".join(item.token.text for item in run if item.token),
                ).model_dump_json()
            )
        run.clear()

    for item in items:
        token = item.token
        if token is not None and run:
            previous = run[-1].token
            assert previous is not None
            if previous.message_id == token.message_id and previous.index + 1 == token.index:
                run.append(item)
                continue
        flush()
        if token is not None and item.seq is not None:
            run.append(item)
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
