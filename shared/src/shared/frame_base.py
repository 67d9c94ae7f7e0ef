"""What every server frame of `tokenwire.v1` is built on (see `shared.frames`)."""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Frame(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def unless_none(description: str) -> Any:
    """An optional field left out of a frame that has none (one built without the stream)."""
    return Field(default=None, exclude_if=lambda value: value is None, description=description)


TURN = unless_none("The message's turn in its session (1, 2…), and its reply's.")
STORED_AT = unless_none("When the stream stored the event (ISO 8601, UTC, milliseconds).")
