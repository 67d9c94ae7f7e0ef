"""REST routes over a user's sessions as a whole: listing them, changing one's settings, and
its members leaving or removed (the rest of the sessions' routes: `gateway.api`)."""

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response, status
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field, model_validator

from gateway import export, session_changes
from gateway.bus import Unavailable
from gateway.deps import ResourcesDep, UserDep, ask, member_session, refused
from gateway.model_routes import checked
from shared import rpc, subjects
from shared.events import Policy

router = APIRouter(tags=["sessions"])


class Sessions(BaseModel):
    sessions: list[rpc.SessionSummary]
    next: str | None


@router.get("/v1/sessions")
async def list_sessions(
    resources: ResourcesDep,
    user: UserDep,
    before: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Sessions:
    """Your sessions, latest activity first: title, owner, your role, member count, when it
    was created and last written to. Pass `next` back as `before` for the next page."""
    page = await ask(
        resources,
        subjects.SVC_SESSION_LIST,
        rpc.SessionList(user_id=user, before=before, limit=limit),
        rpc.SessionPage,
    )
    if page.error is not None:
        raise refused(page.error)
    return Sessions(sessions=page.sessions, next=page.next)


class SessionChange(BaseModel):
    title: str | None = Field(default=None, max_length=200)
    policy: Policy | None = None
    system_prompt: str | None = Field(default=None, max_length=20_000)
    """The session's own system prompt; null removes it (the workers' default applies)."""
    model: str | None = None
    """An id from `GET /v1/models`; null: the default model."""
    temperature: float | None = None
    """0 to 2; null: the model server's default."""
    max_tokens: int | None = None
    """A reply's length at most; null: the model's default."""

    @model_validator(mode="after")
    def _something(self) -> "SessionChange":
        if not self.model_fields_set:
            raise ValueError(f"give at least one of {', '.join(SessionChange.model_fields)}")
        return self

    def update(self, session_id: str, by: str) -> rpc.SessionUpdate:
        given = self.model_fields_set
        prompt = (self.system_prompt or "") if "system_prompt" in given else None
        reset: list[rpc.Resettable] = [
            name
            for name in ("model", "temperature", "max_tokens")
            if name in given and getattr(self, name) is None
        ]
        return rpc.SessionUpdate(
            session_id=session_id,
            by=by,
            title=self.title,
            policy=self.policy,
            system_prompt=prompt,
            model=self.model,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            reset=reset,
        )


@router.patch("/v1/sessions/{session_id}")
async def update_session(
    session_id: str, body: SessionChange, resources: ResourcesDep, user: UserDep
) -> rpc.SessionInfo:
    """Change the session's title, policy, system prompt, model or parameters: its owner
    only. Every gateway applies them to the next message; the workers use a new prompt from
    the next reply."""
    await _check_settings(resources, session_id, user, body)
    try:
        answer = await session_changes.change(resources, body.update(session_id, user))
    except Unavailable:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "sessions unavailable") from None
    return _session(answer)


@router.delete("/v1/sessions/{session_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_session(session_id: str, resources: ResourcesDep, user: UserDep) -> None:
    """Delete the session: its owner only. Its history and stored stream events go, every
    socket on it closes with 4403, and replies in flight stop; its usage stays on the account."""
    await member_session(resources, session_id, user)
    try:
        answer = await session_changes.delete(resources, session_id, user)
    except Unavailable:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "sessions unavailable") from None
    _session(answer)


@router.delete("/v1/sessions/{session_id}/members/{user_id}")
async def remove_member(
    session_id: str, user_id: str, resources: ResourcesDep, user: UserDep
) -> rpc.SessionInfo:
    """The owner removes a member, or a member leaves (`user_id` their own). Their open
    sockets on the session close with 4403 on every gateway; the owner cannot leave."""
    request = rpc.MemberRemove(session_id=session_id, user_id=user_id, by=user)
    session = _session(await ask(resources, subjects.SVC_MEMBER_REMOVE, request, rpc.SessionReply))
    await resources.membership.removed(session_id, user_id, session)
    return session


async def _check_settings(
    resources: ResourcesDep, session_id: str, user: str, change: SessionChange
) -> None:
    """422 for a model or parameters the catalogue cannot take, as they would be after the
    change (a new `max_tokens` is held to the session's model, new or not)."""
    given = change.model_fields_set
    if not {"model", "temperature", "max_tokens"} & given:
        return
    current = await member_session(resources, session_id, user)
    model = change.model if "model" in given else current.model
    max_tokens = change.max_tokens if "max_tokens" in given else current.max_tokens
    checked(resources.models, model, change.temperature, max_tokens)


@router.get(
    "/v1/sessions/{session_id}/export",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/markdown": {}}}},
)
async def export_session(session_id: str, resources: ResourcesDep, user: UserDep) -> Response:
    """The session as Markdown (its newest 5,000 messages), for any member: what `/export`
    sends, as a download."""
    session = await member_session(resources, session_id, user)
    try:
        messages, total = await export.read(resources.bus, session_id)
    except Unavailable:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "history unavailable") from None
    except LookupError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    name = export.filename(session)
    return Response(
        export.markdown(session, messages, total),
        media_type="text/markdown; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def _session(answer: rpc.SessionReply) -> rpc.SessionInfo:
    """The session persistence answered with, or its refusal as an HTTP error."""
    if answer.session is None:
        raise refused(answer.error)
    return answer.session
