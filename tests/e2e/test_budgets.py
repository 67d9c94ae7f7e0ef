"""Budgets with real processes: a default daily budget, a token's claim, an administrator's
override, and a session's cap; each refusal and each stop says which limit it was."""

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest

from gateway.auth import BUDGET_CLAIM, ISSUER, mint_token
from support.client import User, connect, dev_user, frames_until_end, new_session, next_frame
from support.system import System, system_with_own_nats

pytestmark = [pytest.mark.real, pytest.mark.e2e]
DAILY, SESSION_CAP = 300, 1200


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[System]:
    with system_with_own_nats(
        tmp_path_factory.mktemp("budgets"),
        redis_url=redis_url,
        workers=1,
        common_env={
            "TOKENWIRE_DAILY_TOKEN_BUDGET": str(DAILY),
            "TOKENWIRE_SESSION_TOKEN_BUDGET": str(SESSION_CAP),
        },
    ) as running:
        yield running


def claiming(system: System, tokens: int) -> User:
    """A user whose token says their daily budget is `tokens`."""
    user_id, now = f"claim-{uuid.uuid4().hex[:8]}", int(time.time())
    claims = {"sub": user_id, "iss": ISSUER, "iat": now, "exp": now + 600, BUDGET_CLAIM: tokens}
    return User(user_id, jwt.encode(claims, system.secret, "HS256"))


async def reply(system: System, sid: str, user: User, content: str) -> dict[str, Any]:
    """The last frame answering one message: `stream_end`, `stream_error` or `error`."""
    async with await connect(system.ws_url, sid, user) as ws:
        await next_frame(ws)
        mid = uuid.uuid4().hex[:8]
        await ws.send(json.dumps({"type": "message", "message_id": mid, "content": content}))
        first = await next_frame(ws)
        if first["type"] == "error":
            return first
        return (await frames_until_end(ws, timeout_s=30))[-1]


async def test_the_default_a_claim_and_an_override_each_stop_their_user(
    system: System, http: httpx.AsyncClient
) -> None:
    plain, generous = await dev_user(http), claiming(system, 800)
    ends = {}
    for user in (plain, generous):
        sid = await new_session(http, user)
        ends[user.user_id] = await reply(system, sid, user, "[fake tokens=1000 delay_ms=0]")
    for user, budget in ((plain, DAILY), (generous, 800)):
        end = ends[user.user_id]
        assert (end["type"], end["finish_reason"]) == ("stream_end", "budget")
        assert budget - 50 <= end["usage"]["total_tokens"] <= budget + 80
    refused = await reply(system, await new_session(http, plain), plain, "again")
    assert (refused["type"], refused["code"]) == ("error", "budget_exceeded")
    assert f"daily budget of {DAILY} tokens" in refused["detail"]
    admin = User("ops", mint_token("ops", system.secret, 600, role="admin"))
    path = f"/v1/admin/budgets/{plain.user_id}"
    assert (await http.put(path, headers=plain.auth, json={"daily_tokens": 0})).status_code == 403
    set_ = await http.put(path, headers=admin.auth, json={"daily_tokens": 0})  # no limit
    assert set_.status_code == 200, set_.text
    assert set_.json()["daily_tokens"] == 0
    assert set_.json()["spent_today"] >= DAILY - 50
    end = await reply(system, await new_session(http, plain), plain, "[fake tokens=400]")
    assert (end["type"], end["finish_reason"]) == ("stream_end", "stop")
    cleared = await http.put(path, headers=admin.auth, json={"daily_tokens": None})
    assert cleared.json()["daily_tokens"] is None


async def test_a_session_s_cap_stops_a_reply_and_refuses_every_member_after(
    system: System, http: httpx.AsyncClient
) -> None:
    alice, bob = claiming(system, 10_000), claiming(system, 10_000)
    sid = await new_session(http, alice)
    added = await http.post(
        f"/v1/sessions/{sid}/members", headers=alice.auth, json={"user_id": bob.user_id}
    )
    assert added.status_code == 200, added.text
    end = await reply(system, sid, alice, "[fake tokens=2000 delay_ms=0]")
    assert (end["type"], end["finish_reason"]) == ("stream_end", "session_budget")
    assert SESSION_CAP - 50 <= end["usage"]["total_tokens"] <= SESSION_CAP + 80
    refused = await reply(system, sid, bob, "my turn")
    assert (refused["type"], refused["code"]) == ("error", "budget_exceeded")
    assert f"session's cap of {SESSION_CAP} tokens" in refused["detail"]
    assert refused["retry_after_s"] is None
    elsewhere = await reply(system, await new_session(http, bob), bob, "[fake tokens=5]")
    assert elsewhere["finish_reason"] == "stop"  # his own budget is untouched
