"""A session as Markdown: its history read page by page (`read`), then written out
(`markdown`, pure) — for `/export` and `GET /v1/sessions/{sid}/export`."""

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from gateway.bus import Bus
from shared import rpc, subjects

MAX_MESSAGES = 5000
"""The newest this many messages are exported (the text says when there were more)."""
PAGE = 200
Progress = Callable[[int, int], Awaitable[None]]
"""Called after each page with the messages read so far and how many there are to read."""


async def read(
    bus: Bus, session_id: str, progress: Progress | None = None
) -> tuple[list[rpc.HistoryMessage], int]:
    """The session's newest `MAX_MESSAGES` messages, oldest first, and how many it has.
    Raises `gateway.bus.Unavailable`, or `LookupError` for a refusal."""
    messages: list[rpc.HistoryMessage] = []
    before: str | None = None
    total = 0
    while len(messages) < MAX_MESSAGES:
        request = rpc.HistoryRequest(
            session_id=session_id, before=before, limit=PAGE, count=before is None
        )
        page = await bus.request(subjects.SVC_HISTORY, request, rpc.HistoryPage)
        if page.error is not None:
            raise LookupError(page.error.detail)
        total = page.total if page.total is not None else total
        messages.extend(page.messages)
        if progress is not None:
            await progress(len(messages), min(total, MAX_MESSAGES))
        if page.next is None:
            break
        before = page.next
    return messages[:MAX_MESSAGES][::-1], total


def markdown(session: rpc.SessionInfo, messages: list[rpc.HistoryMessage], total: int) -> str:
    """The session's title, who was in it, then each message: its author, time and text (a
    system message in italics; a reply that did not finish says how it ended)."""
    title = session.title or "Untitled session"
    lines = [f"# {title}", ""]
    count = f"{len(messages)} messages"
    if total > len(messages):
        count += f" (the newest of {total})"
    lines.append(f"Exported {_when(datetime.now(UTC))} · {count}")
    lines += ["", f"Members: {', '.join(session.members)}", ""]
    for message in messages:
        lines += ["---", "", _heading(message), "", _body(message), ""]
    return "\n".join(lines).rstrip() + "\n"


def filename(session: rpc.SessionInfo) -> str:
    stem = "".join(c if c.isalnum() else "-" for c in (session.title or session.session_id))
    return f"{'-'.join(part for part in stem.split('-') if part)[:60] or 'session'}.md"


def _heading(message: rpc.HistoryMessage) -> str:
    who = message.participant
    if message.role == "assistant" and message.model:
        who = f"{who} ({message.model})"
    return f"**{who}** · {_when(message.created_at)}"


def _body(message: rpc.HistoryMessage) -> str:
    if message.role == "system":
        return f"_{message.content}_"
    if message.role == "assistant" and message.status != "complete":
        return f"{message.content}\n\n_[{message.status}]_"
    return message.content


def _when(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
