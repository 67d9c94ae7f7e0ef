"""Runs the chat commands `gateway.commands` parses, for the connection that sent one: its
sender gets a `command_result` (after `progress` frames for a long one), and a command that
changes the session posts a system message that every member sees and history keeps.

Anyone in the session may look (a command without argument, `/help`, `/usage`, `/members`,
`/export`); members may `/clear`; only the owner changes the session.
"""

import logging
from collections.abc import Awaitable, Callable

from redis.exceptions import RedisError

from gateway import commands, export, session_changes
from gateway.auth import Principal
from gateway.bus import Unavailable
from gateway.commands import Change, Help, Invite, Request, Show, Simple
from gateway.deps import Resources
from gateway.refusal import Refusal
from gateway.regenerate import last_asked, regenerate
from shared import rpc, subjects
from shared.events import SystemMessage
from shared.frames import MessageFrame

log = logging.getLogger(__name__)
Send = Callable[[str], Awaitable[None]]
MAX_INLINE_EXPORT = 512 * 1024
"""An export larger than this is not sent in the result: the client downloads it instead."""


async def run(
    resources: Resources,
    session: rpc.SessionInfo,
    principal: Principal,
    frame: MessageFrame,
    send: Send,
) -> None:
    """Run the command `frame` carries and send its result; a dependency that does not answer
    makes it fail with a message saying so (nothing was changed, or the change stands)."""
    invocation = commands.parse(frame.content)
    command = _Command(resources, session, principal, frame.message_id, invocation.name)
    try:
        await command.run(invocation.request, send)
    except (Unavailable, RedisError) as exc:
        log.warning("command /%s failed: %s", invocation.name, exc)
        text = "the session's services did not answer; try again in a moment"
        await send(commands.result(frame.message_id, invocation.name, False, text))


class _Command:
    def __init__(
        self,
        r: Resources,
        session: rpc.SessionInfo,
        principal: Principal,
        message_id: str,
        name: str,
    ) -> None:
        self.r, self.session, self.principal = r, session, principal
        self.user = principal.user_id
        self.message_id, self.name = message_id, name

    def result(self, ok: bool, text: str, data: dict[str, object] | None = None) -> str:
        return commands.result(self.message_id, self.name, ok, text, data)

    async def run(self, request: Request | str, send: Send) -> None:
        match request:
            case str():
                await send(self.result(False, request))
            case Help():
                await send(self.result(True, commands.help_text(), commands.help_data()))
            case Show(setting):
                text, data = self._show(setting)
                await send(self.result(True, text, data))
            case Change() | Invite() if self.user != self.session.owner:
                await send(self.result(False, f"only the session's owner can /{self.name}"))
            case Change():
                await send(await self._change(request))
            case Invite(user_id, role):
                await send(await self._invite(user_id, role))
            case Simple("export"):
                await self._export(send)
            case Simple("retry"):
                await send(await self._retry())
            case Simple("clear"):
                await send(await self._clear())
            case Simple("usage"):
                await send(await self._usage())
            case Simple("members"):
                await send(await self._members())

    def _show(self, setting: str) -> tuple[str, dict[str, object]]:
        s, models = self.session, self.r.models
        model = models.get(s.model) or models.default
        match setting:
            case "model":
                listed = [{"id": m.id, "label": m.label} for m in models.models]
                others = ", ".join(m.id for m in models.models)
                text = f"the model is {model.label} ({model.id}); the models: {others}"
                return text, {"model": model.id, "models": listed}
            case "system":
                text = s.system_prompt or "this session uses the default system prompt"
                return text, {"system_prompt": s.system_prompt}
            case "temperature":
                shown = s.temperature if s.temperature is not None else "the model's default"
                return f"the temperature is {shown}", {"temperature": s.temperature}
            case "max_tokens":
                shown = s.max_tokens or f"the model's default, {model.max_tokens}"
                return f"a reply has at most {shown} tokens", {"max_tokens": s.max_tokens}
        return f"the title is “{s.title}”" if s.title else "untitled", {"title": s.title}

    async def _change(self, change: Change) -> str:
        problem = self.r.models.check(*_after(self.session, change))
        if problem is not None:
            return self.result(False, problem)
        answer = await session_changes.change(self.r, _update(self.session, self.user, change))
        if answer.session is None:
            return self.result(False, answer.error.detail if answer.error else "not changed")
        self.session = answer.session
        chosen = self.r.models.get(answer.session.model) or self.r.models.default
        note = commands.note(change, self.user, f"{chosen.label} ({chosen.id})")
        await self._post(note)
        return self.result(True, note, answer.session.model_dump(mode="json"))

    async def _invite(self, user_id: str, role: rpc.MemberRole) -> str:
        answer = await session_changes.invite(
            self.r, self.session.session_id, user_id, self.user, role
        )
        if answer.session is None:
            return self.result(False, answer.error.detail if answer.error else "not invited")
        note = f"{self.user} invited {user_id}" + (" as a viewer" if role == "viewer" else "")
        await self._post(note)
        return self.result(True, note, {"user_id": user_id, "role": role})

    async def _retry(self) -> str:
        sid = self.session.session_id
        recent = rpc.HistoryRequest(session_id=sid, limit=50)
        page = await self.r.bus.request(subjects.SVC_HISTORY, recent, rpc.HistoryPage)
        asked = await last_asked(self.r.redis, sid, page.messages)
        if asked is None:
            return self.result(False, "there is no reply to regenerate yet")
        made = await regenerate(self.r.bus, self.r.submissions, self.session, self.principal, asked)
        if isinstance(made, Refusal):
            return self.result(False, made.detail)
        text = f"regenerating the reply to {asked} (version {made.version})"
        data: dict[str, object] = {
            "message_id": made.message_id,
            "version": made.version,
            "regenerates": asked,
        }
        return self.result(True, text, data)

    async def _clear(self) -> str:
        if self.user in self.session.viewers:
            return self.result(False, "a viewer cannot /clear")
        await session_changes.clear_context(self.r, self.session.session_id)
        note = f"{self.user} cleared the context: replies from here on do not see what came before"
        await self._post(note)
        return self.result(True, note)

    async def _usage(self) -> str:
        request = rpc.UsageRequest(user_id=None, session_id=self.session.session_id)
        report = await self.r.bus.request(subjects.SVC_USAGE, request, rpc.UsageReport)
        if report.error is not None:
            return self.result(False, report.error.detail)
        t, b = report.totals, report.billed
        text = (
            f"this session: {t.replies} replies, {t.total_tokens} tokens "
            f"({t.prompt_tokens} prompt, {t.completion_tokens} completion), "
            f"${t.cost_usd:.6f}; billed: {b.calls} model calls, {b.total_tokens} tokens, "
            f"${b.cost_usd:.6f}"
        )
        data: dict[str, object] = {"totals": t.model_dump(), "billed": b.model_dump()}
        return self.result(True, text, data)

    async def _members(self) -> str:
        s = self.session
        try:
            here = set(await self.r.presence.who(s.session_id))
        except RedisError:
            here = set()
        listed = [
            {"user_id": user, "role": _role(s, user), "online": user in here} for user in s.members
        ]
        text = "; ".join(
            f"{m['user_id']} ({m['role']}{', here' if m['online'] else ''})" for m in listed
        )
        return self.result(True, text, {"members": listed})

    async def _export(self, send: Send) -> None:
        async def progress(read: int, total: int) -> None:
            percent = 100 * read // total if total else 100
            label = f"read {read} of {total} messages"
            await send(commands.progress(self.message_id, self.name, min(percent, 99), label))

        try:
            messages, total = await export.read(self.r.bus, self.session.session_id, progress)
        except LookupError as exc:
            await send(self.result(False, str(exc)))
            return
        text = export.markdown(self.session, messages, total)
        name = export.filename(self.session)
        await send(commands.progress(self.message_id, self.name, 100, "written"))
        data: dict[str, object] = {"filename": name, "messages": len(messages)}
        if len(text.encode()) > MAX_INLINE_EXPORT:
            data["url"] = f"/v1/sessions/{self.session.session_id}/export"
            summary = f"{len(messages)} messages: too large to send here, download {data['url']}"
        else:
            data["markdown"] = text
            summary = f"{len(messages)} messages as Markdown ({name})"
        await send(self.result(True, summary, data))

    async def _post(self, content: str) -> None:
        await self.r.bus.post_system(
            SystemMessage(
                session_id=self.session.session_id,
                message_id=self.message_id,
                participant=self.user,
                command=self.name,
                content=content,
            ),
        )


def _update(session: rpc.SessionInfo, user: str, change: Change) -> rpc.SessionUpdate:
    fields: dict[str, object] = {"session_id": session.session_id, "by": user}
    if change.setting == "system":
        fields["system_prompt"] = "" if change.value is None else change.value
    elif change.value is None:
        fields["reset"] = [change.setting]
    else:
        fields[change.setting] = change.value
    return rpc.SessionUpdate.model_validate(fields)


def _after(session: rpc.SessionInfo, change: Change) -> tuple[str | None, float | None, int | None]:
    """The session's model and parameters as they would be after `change`."""
    values: dict[str, object] = {
        "model": session.model,
        "temperature": session.temperature,
        "max_tokens": session.max_tokens,
    }
    if change.setting in values:
        values[change.setting] = change.value
    model, temperature, max_tokens = values.values()
    return (
        model if isinstance(model, str) else None,
        temperature if isinstance(temperature, int | float) else None,
        max_tokens if isinstance(max_tokens, int) else None,
    )


def _role(session: rpc.SessionInfo, user: str) -> str:
    if user == session.owner:
        return "owner"
    return "viewer" if user in session.viewers else "member"
