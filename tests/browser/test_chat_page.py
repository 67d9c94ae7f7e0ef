"""The chat page in headless Chromium against real processes: a person's view of tokenwire."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page

from fake_llm.script import reply_pieces
from shared import titles
from support.system import System, system_with_own_nats

pytestmark = [pytest.mark.real, pytest.mark.e2e, pytest.mark.browser]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[System]:
    with system_with_own_nats(
        tmp_path_factory.mktemp("chat"), redis_url=redis_url, workers=2
    ) as running:
        yield running


async def signed_in_page(browser: Browser, system: System, path: str = "/") -> Page:
    page = await (await browser.new_context(viewport={"width": 1100, "height": 700})).new_page()
    await page.goto(system.gateway_url + path)
    await page.click("#dev-signin")
    return page


async def new_session(page: Page) -> None:
    await page.click("#new-session")
    await page.wait_for_selector("#status.connected")


async def say(page: Page, text: str) -> None:
    await page.fill("#input", text)
    await page.press("#input", "Enter")


def expected(tokens: int) -> str:
    return "".join(reply_pieces(tokens))


async def last_reply_text(page: Page) -> str:
    return await page.locator("li.assistant .text").last.inner_text()


async def test_a_message_streams_its_reply_token_by_token(system: System, browser: Browser) -> None:
    page = await signed_in_page(browser, system)
    await new_session(page)
    await say(page, "Hello [fake tokens=40 delay_ms=25]")
    await page.wait_for_selector("li.mine:has-text('Hello')", timeout=2000)  # shown at once
    await page.wait_for_selector("li.assistant.streaming")
    partial = await last_reply_text(page)
    await page.wait_for_selector("li.assistant:not(.streaming)", timeout=15_000)
    assert len(partial) < len(expected(40))  # seen while it streamed
    assert await last_reply_text(page) == expected(40)
    assert "completion tokens" in (
        await page.locator("li.assistant").last.get_attribute("title") or ""
    )
    await page.wait_for_selector("#presence li:has-text('(you)')")
    (ROOT / "test-artifacts").mkdir(exist_ok=True)
    await page.screenshot(path=str(ROOT / "test-artifacts" / "chat.png"))


async def test_the_model_names_a_new_session_after_its_first_reply(
    system: System, browser: Browser
) -> None:
    page = await signed_in_page(browser, system)
    await new_session(page)
    await say(page, "Plan a weekend in Lisbon [fake tokens=4]")
    await page.wait_for_selector("li.assistant:not(.streaming)", timeout=15_000)
    named = titles.cleaned(expected(titles.TITLE_MAX_TOKENS))
    await page.wait_for_selector(f"#session-title:text-is('{named}')")
    sid = await page.evaluate("state.session")
    listed = f"#session-list li[data-session='{sid}'] .title:text-is('{named}')"
    await page.wait_for_selector(listed)


async def test_stop_ends_the_reply_where_it_is(system: System, browser: Browser) -> None:
    page = await signed_in_page(browser, system)
    await new_session(page)
    await say(page, "[fake tokens=400 delay_ms=20]")
    await page.wait_for_selector("#stop:not([hidden])")
    await page.wait_for_function(
        "document.querySelector('li.assistant .text')?.textContent.length > 20"
    )
    await page.click("#stop")
    await page.wait_for_selector("li.assistant:not(.streaming)", timeout=5000)
    assert "stopped" in await page.locator("li.assistant .by").last.inner_text()
    text = await last_reply_text(page)
    assert 0 < len(text) < len(expected(400))
    assert expected(400).startswith(text)
    assert await page.is_hidden("#stop")


async def test_a_dropped_socket_resumes_with_the_whole_reply_once(
    system: System, browser: Browser
) -> None:
    page = await signed_in_page(browser, system)
    await new_session(page)
    await say(page, "[fake tokens=120 delay_ms=20]")
    await page.wait_for_function(
        "document.querySelector('li.assistant .text')?.textContent.length > 30"
    )
    await page.evaluate("state.ws.close(4000, 'network dropped')")
    await page.wait_for_selector("#status.reconnecting", timeout=2000)
    await page.wait_for_selector("#status.connected", timeout=10_000)
    await page.wait_for_selector("li.assistant:not(.streaming)", timeout=15_000)
    assert await last_reply_text(page) == expected(120)
    assert await page.locator("li.assistant").count() == 1
    assert await page.locator("li.mine").count() == 1


async def test_two_people_share_a_session(system: System, browser: Browser) -> None:
    alice = await signed_in_page(browser, system)
    await new_session(alice)
    bob = await signed_in_page(browser, system)
    await bob.wait_for_selector("#lobby:not([hidden])")
    bob_id = (await bob.inner_text("#who")).removeprefix("signed in as ")
    await alice.fill("#invite-input", bob_id)
    await alice.click("#invite-form button")
    await alice.wait_for_selector("#notice:has-text('Added')")
    await bob.fill("#join-input", alice.url)
    await bob.click("#join-form button")
    await bob.wait_for_selector("#status.connected")
    await alice.wait_for_selector(f"#presence li:has-text('{bob_id}')", timeout=5000)
    await bob.fill("#input", "thinking…")  # typing reaches alice
    await alice.wait_for_selector(f"#typing:has-text('{bob_id} is typing')", timeout=5000)
    await say(alice, "Hi Bob [fake tokens=10 delay_ms=10]")
    for page in (alice, bob):
        await page.wait_for_selector("li:has-text('Hi Bob')")
        await page.wait_for_selector("li.assistant:not(.streaming)", timeout=10_000)
        assert await last_reply_text(page) == expected(10)
    assert await bob.locator("li.them .by").first.inner_text() != "you"


async def test_html_in_a_message_is_shown_as_text(system: System, browser: Browser) -> None:
    page = await signed_in_page(browser, system)
    await new_session(page)
    dangers: list[str] = []
    page.on("dialog", lambda dialog: dangers.append(dialog.message))
    await say(page, "<img src=x onerror=alert(1)><b>bold</b> [fake tokens=2]")
    bubble = page.locator("li.mine").last
    await bubble.wait_for()
    assert "<b>bold</b>" in await bubble.inner_text()
    assert await bubble.locator("b, img").count() == 0
    await page.wait_for_selector("li.assistant:not(.streaming)")
    assert dangers == []


DROP_AND_RESUME = """async ([tokens]) => {
  const { SessionSocket } = await import("/static/client.js");
  const minted = await (await fetch("/v1/auth/dev-token", { method: "POST" })).json();
  const headers = { authorization: `Bearer ${minted.token}`, "content-type": "application/json" };
  const made = await (await fetch("/v1/sessions", { method: "POST", headers, body: "{}" })).json();
  const frames = [];
  return await new Promise((resolve, reject) => {
    let dropped = false;
    const socket = new SessionSocket({
      url: `ws://${location.host}/v1/sessions/${made.session_id}/ws`,
      token: minted.token,
      onFrame: (frame) => {
        frames.push(frame);
        const content = `[fake tokens=${tokens} delay_ms=15]`;
        if (frame.type === "ready" && frames.length === 1) {
          socket.send({ type: "message", message_id: "m1", content });
        }
        if (frame.type === "stream_token" && frame.index >= 5 && !dropped) {
          dropped = true;
          socket.drop();
        }
        if (frame.type === "stream_end") {
          socket.close();
          resolve({ frames, reconnects: socket.reconnects });
        }
      },
      onClosed: (code) => reject(new Error(`closed ${code}`)),
    }).open();
    setTimeout(() => reject(new Error("no stream_end in 20 s")), 20000);
  });
}"""

CURSOR = """async () => {
  const { Cursor, backoffMs } = await import("/static/client.js");
  const cursor = new Cursor();
  const seen = [cursor.accept({ type: "ready", last_seq: 10, recovered: null })];
  for (const seq of [11, 12, 12, 11, 13]) seen.push(cursor.accept({ type: "stream_token", seq }));
  cursor.accept({ type: "ready", last_seq: 99, recovered: false });
  return { seen, query: new Cursor(7).query(), head: cursor.lastSeq,
           pauses: [0, 1, 5, 9].map((a) => backoffMs(a, () => 0.5)) };
}"""


async def test_the_client_module_resumes_a_dropped_reply_without_gap_or_duplicate(
    system: System, browser: Browser
) -> None:
    page = await (await browser.new_context()).new_page()
    await page.goto(system.gateway_url + "/")
    checked = await page.evaluate(CURSOR)
    assert checked == {
        "seen": [True, True, True, False, False, True],
        "query": "?last_seq=7",
        "head": 99,  # a cursor the stream could not serve moves to its head
        "pauses": [500, 1000, 10000, 10000],
    }
    result = await page.evaluate(DROP_AND_RESUME, [120])
    frames = result["frames"]
    assert result["reconnects"] == 1
    assert [f["type"] for f in frames].count("ready") == 2
    seqs = [f["seq"] for f in frames if "seq" in f]
    assert seqs == sorted(set(seqs))  # none twice, in order
    text = "".join(f["text"] for f in frames if f["type"] == "stream_token")
    assert text == frames[-1]["text"] == expected(120)
