"""One delivery of a user message to a worker, as the responder answers it."""

import uuid
from dataclasses import dataclass, field

from shared.events import UserMessage
from shared.logs import context


@dataclass
class Delivery:
    message: UserMessage
    attempt: int
    """The stream's delivery count, until `Responder.respond` claims the reply: then the
    attempt it claimed (the next one when the broker lost count in a crash)."""
    seq: int
    """Stream sequence of the user message."""
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    """This delivery's own id (its count alone can repeat after a broker crash)."""

    @property
    def place(self) -> int:
        """Its place in the session's line: its stream sequence; 0 in a `parallel` session
        (or outside JetStream)."""
        return 0 if self.message.policy == "parallel" else self.seq

    def log_context(self) -> dict[str, object]:
        message = self.message
        return context(message.session_id, message.message_id, self.attempt)
