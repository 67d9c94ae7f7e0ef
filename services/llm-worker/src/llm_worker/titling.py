"""Titles from the model: once the first reply of an untitled session ends (its message says
`name_session`), the worker asks a model for a short title of the exchange and stores it as a
`SessionTitled` event, with the call's usage, so that it is billed and metered like a reply.
It runs beside the next work, never holding a reply or a delivery up; a call that fails
leaves the session with its first message's title."""

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from llm_worker.completions import ChatMessage, complete
from llm_worker.coordination import Coordinator
from llm_worker.pricing import cost_usd
from llm_worker.progress import counted
from llm_worker.providers import Providers, Served
from llm_worker.publisher import ReplyPublisher
from llm_worker.upstream import UpstreamError
from shared import titles
from shared.events import ReplyEnd, SessionTitled, Usage, UserMessage

log = logging.getLogger(__name__)
MAX_AT_ONCE = 64
"""Title calls in flight per worker; beyond, a session keeps its first message's title."""


@dataclass(frozen=True, slots=True)
class Said:
    text: str
    usage: Usage


class Titler:
    def __init__(
        self,
        providers: Providers,
        publisher: Callable[[], ReplyPublisher],
        coordinator: Coordinator,
        *,
        model: str | None = None,
        daily_budget: int = 0,
        session_cap: int = 0,
    ) -> None:
        self._providers = providers
        self._publisher = publisher
        self._coord = coordinator
        self._model = model
        """The catalogue id of the model that titles (None: the one that answered)."""
        self._daily_budget, self._session_cap = daily_budget, session_cap
        """The deployment's budgets: with these, a title's tokens are spent as a reply's are."""
        self._running: set[asyncio.Task[SessionTitled | None]] = set()

    def after(self, message: UserMessage, attempt: int, terminal: ReplyEnd) -> None:
        """Title `message`'s session in the background, if it asks for it and its reply
        answered (a stopped or cut reply is no exchange to name)."""
        if not message.name_session or terminal.finish_reason not in ("stop", "length"):
            return
        if len(self._running) >= MAX_AT_ONCE:
            log.info("%s keeps its first message's title: too many calls", message.session_id)
            return
        task = asyncio.create_task(self.title(message, attempt, terminal.text))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def drain(self, timeout_s: float) -> None:
        """Let the title calls in flight end, for at most `timeout_s` (a stopping worker)."""
        if self._running:
            await asyncio.wait(set(self._running), timeout=timeout_s)

    async def title(self, message: UserMessage, attempt: int, answer: str) -> SessionTitled | None:
        """Ask for the title and store it; None when the model failed. An answer with nothing
        usable in it keeps the first message's title, and is stored and billed all the same."""
        served = self._providers.of(self._model or message.model)
        if served is None:
            log.warning("no title: this worker does not serve %r", self._model or message.model)
            return None
        try:
            said = await ask(served, titles.title_request(message.content, answer))
        except UpstreamError as exc:
            log.info("no title for session %s: %s", message.session_id, exc)
            return None
        replaces = titles.title_from(message.content)
        event = SessionTitled(
            session_id=message.session_id,
            message_id=message.message_id,
            attempt=attempt,
            title=titles.cleaned(said.text) or replaces or "Untitled",
            replaces=replaces,
            model=served.model.name,
            usage=said.usage,
            cost_usd=cost_usd(self._providers.prices, served.model.name, said.usage),
            requested_by=message.participant,
        )
        try:
            await self._publisher().titled(event)
            budgets = await self._coord.budgets(
                message, default_daily=self._daily_budget, session_cap=self._session_cap
            )
            if budgets.any:
                await self._coord.spend(message, said.usage.total_tokens)
        except Exception as exc:  # a broker or Redis gone: the session keeps its title
            log.warning("title of session %s not stored: %s", message.session_id, exc)
            return None
        return event


async def ask(served: Served, request: list[dict[str, str]]) -> Said:
    """One short completion, not streamed: its text and usage (counted when the server
    reports none)."""
    messages = [
        ChatMessage(role="system" if m["role"] == "system" else "user", content=m["content"])
        for m in request
    ]
    text, usage = await complete(
        served.server,
        model=served.model.name,
        messages=messages,
        max_tokens=titles.TITLE_MAX_TOKENS,
        temperature=0.2,
    )
    return Said(text, usage or counted(served.counter, messages, text))
