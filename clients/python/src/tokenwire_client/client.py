"""tokenwire's REST API for a client: a token (dev sign-in), sessions, history; and the
session's socket (`tokenwire_client.session.Session`)."""

from collections.abc import AsyncIterator
from typing import Any, Self

import httpx

from shared.rpc import HistoryMessage, HistoryPage
from tokenwire_client.session import Session


class ApiError(Exception):
    """The gateway refused a request (`status`, `detail`)."""

    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(f"{status}: {detail}")
        self.status, self.detail = status, detail


class Client:
    """A user of one gateway (any gateway of a deployment serves any session)."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        user_id: str | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.user_id = user_id
        """Who the token is for, when known (a dev sign-in says)."""
        self._http = http or httpx.AsyncClient(base_url=self.base_url, timeout=30)
        self._http.headers["Authorization"] = f"Bearer {token}"

    @classmethod
    async def dev(cls, base_url: str) -> "Client":
        """A new user, signed in with the gateway's dev sign-in (`TOKENWIRE_AUTH=dev` only)."""
        async with httpx.AsyncClient(base_url=base_url) as http:
            minted = _json(await http.post("/v1/auth/dev-token"))
        return cls(base_url, minted["token"], user_id=minted["user_id"])

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def create_session(self, **fields: Any) -> str:
        """A new session (`title`, `model`, `policy`, `system_prompt`…); its id."""
        return str(_json(await self._http.post("/v1/sessions", json=fields))["session_id"])

    async def sessions(self) -> list[dict[str, Any]]:
        """The user's sessions, latest activity first (the first page)."""
        page: list[dict[str, Any]] = _json(await self._http.get("/v1/sessions"))["sessions"]
        return page

    async def history(
        self, session_id: str, *, before: str | None = None, limit: int = 50
    ) -> HistoryPage:
        """One page of history, newest first; `next` is the `before` of the next page."""
        params: dict[str, Any] = {"limit": limit} | ({"before": before} if before else {})
        answer = await self._http.get(f"/v1/sessions/{session_id}/messages", params=params)
        return HistoryPage.model_validate(_json(answer))

    async def all_history(
        self, session_id: str, *, page_size: int = 50
    ) -> AsyncIterator[HistoryMessage]:
        """Every message of the session, newest first, a page at a time."""
        before: str | None = None
        while True:
            page = await self.history(session_id, before=before, limit=page_size)
            for message in page.messages:
                yield message
            if not page.next or not page.messages:
                return
            before = page.next

    def session(self, session_id: str, *, last_seq: int | None = None) -> Session:
        """The session's socket, to open with `async with`; `last_seq` resumes after it."""
        ws_url = self.base_url.replace("http", "ws", 1) + f"/v1/sessions/{session_id}/ws"
        return Session(ws_url, self.token, last_seq=last_seq)


def _json(answer: httpx.Response) -> Any:
    if answer.status_code >= 400:
        try:
            detail = answer.json().get("detail")
        except ValueError:
            detail = answer.text
        raise ApiError(answer.status_code, detail)
    return answer.json()
