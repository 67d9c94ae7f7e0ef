"""What gateways relay to each other over core NATS, never stored: typing and presence."""

from typing import Literal

from pydantic import BaseModel, ConfigDict


class TypingRelay(BaseModel):
    """`chat.<sid>.typing` (core NATS, not stored): relayed by every gateway holding the session
    to its connections, except the one it came from (`origin`)."""

    model_config = ConfigDict(frozen=True)

    v: Literal[1] = 1
    participant: str
    state: bool
    origin: str


class PresenceChange(BaseModel):
    """`chat.<sid>.presence` (core NATS, not stored): a participant's first connection to the
    session opened (`joined`) or their last one closed (`left`); relayed to every connection
    of the session but `origin`, the one that caused it."""

    model_config = ConfigDict(frozen=True)

    v: Literal[1] = 1
    participant: str
    state: Literal["joined", "left"]
    origin: str = ""
