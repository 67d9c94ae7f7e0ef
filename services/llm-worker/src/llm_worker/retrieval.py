"""The retrieval hook: with `TOKENWIRE_RETRIEVAL_URL` set, a reply first POSTs
`{session_id, message_id, query, history}` there and gets `{context, sources}`; the context
goes into the prompt, the sources to the clients and to history. It has
`TOKENWIRE_RETRIEVAL_TIMEOUT_S`; when it fails, the reply goes on without it and its end says
so (`warnings`)."""

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import httpx2
from pydantic import BaseModel, Field, ValidationError

from llm_worker.context import Turn
from shared.events import Source, UserMessage

log = logging.getLogger(__name__)
MAX_SOURCES = 20


class _Found(BaseModel):
    context: str = Field(default="", max_length=100_000)
    sources: list[Source] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Retrieved:
    context: str
    sources: tuple[Source, ...]


class Retrieval:
    def __init__(self, url: str, *, timeout_s: float, http: httpx2.AsyncClient | None = None):
        self._url = url
        self._timeout_s = timeout_s
        self._http = http or httpx2.AsyncClient(timeout=timeout_s)

    async def find(self, message: UserMessage, turns: Sequence[Turn]) -> Retrieved | str:
        """What the hook found for `message`, or why there is nothing (a warning for the
        reply's end)."""
        body = {
            "session_id": message.session_id,
            "message_id": message.message_id,
            "query": message.content,
            "history": [{"role": t.role, "content": t.content} for t in turns],
        }
        try:
            answer = await self._http.post(self._url, json=body, timeout=self._timeout_s)
            answer.raise_for_status()
            found = _Found.model_validate_json(answer.content)
        except httpx2.TimeoutException:
            return f"retrieval timed out after {self._timeout_s:g} s; answered without it"
        except (httpx2.HTTPError, ValidationError) as exc:
            log.warning("retrieval failed: %s", exc)
            return f"retrieval failed ({type(exc).__name__}); answered without it"
        return Retrieved(found.context, tuple(found.sources[:MAX_SOURCES]))

    async def close(self) -> None:
        await self._http.aclose()


def with_context(system_prompt: str, context: str) -> str:
    """The system prompt with what retrieval found after it."""
    if not context:
        return system_prompt
    return f"{system_prompt}\n\nUse these sources where they help:\n{context}"
