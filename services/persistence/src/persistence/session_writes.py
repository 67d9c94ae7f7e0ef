"""The updates a batch of events makes to sessions' rows (`persistence.records`): titles,
the newest activity, and where a cleared context starts."""

from sqlalchemy import bindparam, update
from sqlmodel import col

from persistence.models import ChatSession

TITLE = (
    update(ChatSession)
    .where(col(ChatSession.id) == bindparam("sid"), col(ChatSession.title) == "")
    .values(title=bindparam("title"))
)
"""An untitled session takes the title of its first message; a titled one keeps its own."""

MODEL_TITLE = (
    update(ChatSession)
    .where(
        col(ChatSession.id) == bindparam("sid"),
        col(ChatSession.title) == bindparam("replaces"),
        col(ChatSession.deleted_at).is_(None),
    )
    .values(title=bindparam("title"))
)
"""The model's title replaces the first message's, unless the session was renamed since."""

CLEARED = (
    update(ChatSession)
    .where(col(ChatSession.id) == bindparam("sid"))
    .values(context_since=bindparam("at"))
)

TOUCH = (
    update(ChatSession)
    .where(
        col(ChatSession.id) == bindparam("sid"),
        col(ChatSession.last_active_at) < bindparam("at"),
    )
    .values(last_active_at=bindparam("at"))
)
