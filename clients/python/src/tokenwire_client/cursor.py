"""Where a client is in its session's stream, and when it tries again: no I/O.

Every stored frame carries its stream sequence `seq`. A client keeps the newest it has seen,
reconnects with it (`?last_seq=`), and drops any frame at or below it: a resume repeats nothing
and, while the stream still holds what was missed, skips nothing. When it no longer does, the
`ready` frame says `recovered: false` and the cursor moves to the stream's head: what came in
between is in history, not in the stream.
"""

import random
from collections.abc import Callable
from dataclasses import dataclass

from shared.frames import ReadyFrame, ServerFrame


@dataclass
class Cursor:
    last_seq: int | None = None
    """The newest stored frame seen (None: none yet; the stream's head once ready)."""

    def query(self) -> str:
        """The resume query of the socket's URL."""
        return "" if self.last_seq is None else f"?last_seq={self.last_seq}"

    def accept(self, frame: ServerFrame) -> bool:
        """Whether `frame` is new (False: a stored frame already seen); moves the cursor."""
        if isinstance(frame, ReadyFrame):
            if self.last_seq is None or frame.recovered is False:
                self.last_seq = frame.last_seq
            return True
        seq: int | None = getattr(frame, "seq", None)
        if seq is None:
            return True  # not stored: typing, presence, pongs, errors, command results
        if self.last_seq is not None and seq <= self.last_seq:
            return False
        self.last_seq = seq
        return True


def backoff_s(attempt: int, draw: Callable[[], float] = random.random) -> float:
    """The pause before reconnection `attempt` (0, 1, …): 0.5 s doubling up to 10 s, ±20 %
    so that the clients of a gateway that went away do not all come back at once."""
    pause: float = min(0.5 * 2.0**attempt, 10.0)
    return pause * (0.8 + 0.4 * draw())
