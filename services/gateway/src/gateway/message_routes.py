"""Sending and cancelling over REST, for clients of the event stream (`gateway.sse`) and any
other: the same admission, limits and rights as a socket's `message` and `cancel` frames."""

import json
import re
from typing import Any

from fastapi import APIRouter, HTTPException, Response, status
from pydantic import BaseModel, Field

from gateway import command_runner, commands
from gateway.bus import Unavailable
from gateway.deps import PrincipalDep, ResourcesDep, member_session, refusal_http
from gateway.refusal import Refusal
from shared.events import MAX_CONTENT_CHARS
from shared.frames import MESSAGE_ID_PATTERN, MessageFrame
from shared.versions import REPLY_ID_PATTERN

router = APIRouter(tags=["sessions"])


class NewMessage(BaseModel):
    message_id: str = Field(pattern=MESSAGE_ID_PATTERN)
    """Yours, unique in the session: sending it again within two minutes stores it once."""
    content: str = Field(min_length=1, max_length=MAX_CONTENT_CHARS)
    reply: bool = True
    """False: post without asking the assistant."""


class Accepted(BaseModel):
    seq: int
    """The message's stream sequence (its `message` event on the stream has it too)."""
    waiting: str | None = None
    """Set when no worker serves the session's model now: the message waits for one, for a
    while, then its reply ends with `stream_error` `no_worker`."""


@router.post(
    "/v1/sessions/{session_id}/messages",
    status_code=status.HTTP_202_ACCEPTED,
    responses={200: {"description": "a command's `command_result`"}},
)
async def send_message(
    session_id: str,
    body: NewMessage,
    resources: ResourcesDep,
    principal: PrincipalDep,
    response: Response,
) -> Any:
    """Send a message: `202 {seq}` once the stream stores it; the reply streams to every
    client of the session. A content that starts with `/` is a command: `200` with its
    `command_result`. Refused: 403 (a viewer), 429 (a limit, with `Retry-After`), 409 (a
    `reject` session while a reply streams), 503 (not stored: send it again)."""
    session = await member_session(resources, session_id, principal.user_id)
    frame = MessageFrame(
        type="message", message_id=body.message_id, content=body.content, reply=body.reply
    )
    if commands.is_command(body.content):
        results: list[str] = []

        async def keep(frame_text: str) -> None:
            results.append(frame_text)

        await command_runner.run(resources, session, principal, frame, keep)
        response.status_code = status.HTTP_200_OK
        return json.loads(results[-1])
    frame = frame.model_copy(update={"content": commands.unescaped(body.content)})
    try:
        stored = await resources.submissions.submit(session, principal, frame)
    except Unavailable:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "not stored; send it again"
        ) from None
    if isinstance(stored, Refusal):
        raise refusal_http(stored)
    return Accepted(seq=stored.seq, waiting=stored.waiting.detail if stored.waiting else None)


@router.post(
    "/v1/sessions/{session_id}/messages/{message_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
)
async def cancel_reply(
    session_id: str, message_id: str, resources: ResourcesDep, principal: PrincipalDep
) -> None:
    """Stop the reply to `message_id` (or a version's, `<id>~v<n>`): the sender, the session's
    owner or an administrator; 403 for anyone else."""
    if not _reply_id(message_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such message")
    session = await member_session(resources, session_id, principal.user_id)
    denied = await resources.submissions.cancel(session, principal, message_id)
    if denied is not None:
        raise refusal_http(denied)


def _reply_id(message_id: str) -> bool:
    return _REPLY_ID.fullmatch(message_id) is not None


_REPLY_ID = re.compile(REPLY_ID_PATTERN)
