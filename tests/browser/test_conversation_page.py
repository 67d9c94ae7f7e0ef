"""The chat page's conversations in headless Chromium against real processes: the sessions
sidebar, the model picker, commands with their menu, regenerated replies with their versions,
a failed send resent, older history, roles and the empty state; reasoning, sources and tool
calls."""

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Dialog, Page

from fake_llm.script import reasoning_pieces, reply_pieces
from support.fake_model import fake_tools
from support.system import System, system_with_own_nats

pytestmark = [pytest.mark.real, pytest.mark.e2e, pytest.mark.browser]
ROOT = Path(__file__).resolve().parents[2]
MODELS = [
    {"id": "small", "name": "tokenwire-fake", "label": "Fake small"},
    {"id": "large", "name": "tokenwire-fake-large", "label": "Fake large"},
]


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[System]:
    with system_with_own_nats(
        tmp_path_factory.mktemp("conversation-page"),
        redis_url=redis_url,
        workers=0,
        common_env={"TOKENWIRE_MODELS": json.dumps(MODELS)},
        gateway_env={"TOKENWIRE_MESSAGE_RATE_PER_MIN": "600"},
    ) as running:
        running.add_worker(  # titles from first messages: the sidebar's titles are known
            TOKENWIRE_RETRIEVAL_URL=f"{running.llm_url}/v1/_fake/retrieve",
            TOKENWIRE_TOOLS=fake_tools(running.llm_url),
            TOKENWIRE_SESSION_TITLES="message",
        )
        yield running


async def signed_in(browser: Browser, system: System) -> Page:
    page = await (await browser.new_context(viewport={"width": 1200, "height": 720})).new_page()
    page.on("dialog", accept)
    await page.goto(system.gateway_url + "/")
    await page.click("#dev-signin")
    await page.wait_for_selector("#lobby:not([hidden])")
    return page


async def accept(dialog: Dialog) -> None:
    await dialog.accept()


async def new_session(page: Page) -> str:
    before = await page.evaluate("state.session")
    await page.click("#new-session")
    await page.wait_for_function(
        "([before]) => state.session && state.session !== before"
        " && document.querySelector('#status').classList.contains('connected')",
        arg=[before],
    )
    return str(await page.evaluate("state.session"))


async def say(page: Page, text: str) -> None:
    await page.fill("#input", text)
    await page.press("#input", "Enter")


async def replied(page: Page) -> str:
    await page.wait_for_selector("li.assistant:not(.streaming)", timeout=15_000)
    return await page.locator("li.assistant .text").last.inner_text()


async def recorded(page: Page, role: str, count: int) -> None:
    """Until history holds `count` messages of `role` (persistence records them a moment after
    they stream)."""
    found = await page.evaluate(
        """async ([role, count]) => {
             for (let i = 0; i < 100; i++) {
               const answer = await fetch(`/v1/sessions/${state.session}/messages?limit=100`,
                 {headers: {authorization: `Bearer ${state.token}`}});
               const page = await answer.json();
               if (page.messages.filter((m) => m.role === role).length >= count) return true;
               await new Promise((resolve) => setTimeout(resolve, 100));
             }
             return false;
           }""",
        [role, count],
    )
    assert found, f"fewer than {count} {role} messages recorded"


def screenshot(name: str) -> str:
    (ROOT / "test-artifacts").mkdir(exist_ok=True)
    return str(ROOT / "test-artifacts" / name)


async def test_the_sidebar_lists_renames_and_deletes_sessions(
    system: System, browser: Browser
) -> None:
    page = await signed_in(browser, system)
    first = await new_session(page)
    assert await page.is_visible("#empty")  # nothing said yet: example prompts
    await page.click("#empty .example >> nth=0")
    assert await page.input_value("#input") == "Explain NATS JetStream in two sentences."
    await say(page, "Plan a weekend in Lisbon [fake tokens=8]")
    await replied(page)
    item = page.locator(f"#session-list li[data-session='{first}']")
    await item.locator(".title:has-text('Plan a weekend in Lisbon')").wait_for()  # its own title
    await page.wait_for_selector("#session-title:has-text('Plan a weekend')")
    second = await new_session(page)
    await say(page, "Recipes for a rainy day [fake tokens=4]")
    await replied(page)
    await page.wait_for_selector(f"#session-list li[data-session='{second}'].current")
    await page.screenshot(path=screenshot("sidebar.png"))

    await item.hover()
    await item.locator(".rename").click()
    await page.fill(".rename-input", "Lisbon")
    await page.press(".rename-input", "Enter")
    await page.wait_for_selector(
        f"#session-list li[data-session='{first}'] .title:text-is('Lisbon')"
    )
    await item.hover()
    await item.locator(".delete").click()  # the confirm dialog is accepted
    await page.wait_for_selector(f"#session-list li[data-session='{first}']", state="detached")
    assert await page.locator("#session-list li[data-session]").count() == 1


async def test_the_model_picker_sets_the_sessions_model_and_parameters(
    system: System, browser: Browser
) -> None:
    page = await signed_in(browser, system)
    await new_session(page)
    assert await page.input_value("#model-select") == "small"
    await page.select_option("#model-select", "large")
    await page.fill("#temperature", "0.4")
    await page.fill("#max-tokens", "3")
    await page.click("#save-settings")
    await page.wait_for_selector("#notice:has-text('Saved')")
    await page.wait_for_selector("#model-name:has-text('Fake large')")
    await say(page, "[fake tokens=9] which model?")
    assert await replied(page) == "".join(reply_pieces(3))
    async with httpx.AsyncClient(base_url=system.llm_url) as llm:
        calls = (await llm.get("/v1/_fake/streams")).json()
    call = next(c for c in calls if c["prompt"] == "[fake tokens=9] which model?")
    assert (call["model"], call["temperature"], call["max_tokens"]) == (
        "tokenwire-fake-large",
        0.4,
        3,
    )


async def test_commands_complete_from_the_menu_and_show_their_results(
    system: System, browser: Browser
) -> None:
    page = await signed_in(browser, system)
    await new_session(page)
    await page.fill("#input", "/")
    await page.press("#input", "Backspace")
    await page.type("#input", "/")
    await page.wait_for_selector("#command-menu:not([hidden]) li[data-command='model']")
    await page.screenshot(path=screenshot("commands.png"))
    await page.type("#input", "ti")
    assert await page.locator("#command-menu li").count() == 1
    await page.press("#input", "Tab")
    assert await page.input_value("#input") == "/title "
    await page.type("#input", "Lisbon trip")
    await page.press("#input", "Enter")
    await page.wait_for_selector("li.command.ok:has-text('renamed the session')")
    await page.wait_for_selector("li.system:has-text('renamed the session to “Lisbon trip”')")
    await page.wait_for_selector("#session-title:has-text('Lisbon trip')")
    await say(page, "/temperature 9")
    await page.wait_for_selector("li.command.failed:has-text('between 0 and 2')")
    await say(page, "/export")
    await page.wait_for_selector("li.command.ok a.download")
    async with page.expect_download() as download:
        await page.click("li.command.ok a.download")
    saved = await (await download.value).path()
    assert (await asyncio.to_thread(Path(saved).read_text)).startswith("# Lisbon trip\n")
    assert await page.locator("li.mine").count() == 0  # commands are not messages


async def test_a_reply_is_regenerated_and_its_versions_switched(
    system: System, browser: Browser
) -> None:
    page = await signed_in(browser, system)
    await new_session(page)
    await say(page, "Tell me a story [fake tokens=6]")
    first = await replied(page)
    await page.fill("#max-tokens", "2")
    await page.click("#save-settings")
    await page.wait_for_selector("#notice:has-text('Saved')")
    await page.click("li.assistant .regenerate")
    await page.wait_for_selector("li.assistant .versions:not([hidden]) .count:text-is('2/2')")
    second = await replied(page)
    assert second == "".join(reply_pieces(2))
    assert first == "".join(reply_pieces(6))
    await page.screenshot(path=screenshot("regenerated.png"))
    await page.click("li.assistant .prev")
    assert await page.locator("li.assistant .text").inner_text() == first
    await recorded(page, "assistant", 2)
    await page.reload()  # history keeps both, the newest current
    await page.wait_for_selector("#status.connected")
    await page.wait_for_selector("li.assistant .count:text-is('2/2')")
    assert await page.locator("li.assistant .text").inner_text() == second
    assert await page.locator("li.assistant").count() == 1


async def test_a_failed_send_is_shown_and_resent(system: System, browser: Browser) -> None:
    page = await signed_in(browser, system)
    await new_session(page)
    await page.evaluate("state.ws.close(4000, 'network dropped')")  # it reconnects soon
    await say(page, "Are you there? [fake tokens=2]")
    await page.wait_for_selector("li.mine.failed .resend")
    await page.wait_for_selector("#status.connected", timeout=10_000)
    await page.click("li.mine .resend")
    await page.wait_for_selector("li.mine:not(.failed):not(.pending)")
    await replied(page)


async def test_older_history_loads_roles_show_and_a_group_can_post_without_a_reply(
    system: System, browser: Browser
) -> None:
    alice = await signed_in(browser, system)
    sid = await new_session(alice)
    await alice.evaluate(
        """for (let i = 0; i < 55; i++) state.ws.send(JSON.stringify(
             {type: "message", message_id: `n${i}`, content: `note ${i}`, reply: false}))"""
    )
    await alice.wait_for_selector("li.mine[data-message='n54']")
    await recorded(alice, "user", 55)
    await alice.reload()
    await alice.wait_for_selector("#status.connected")
    assert await alice.locator("li.mine").count() == 50
    await alice.click("#load-older")
    await alice.wait_for_selector("li.mine[data-message='n0']")
    assert await alice.locator("li.mine").count() == 55
    assert await alice.locator("#messages li").first.get_attribute("data-message") == "n0"
    assert await alice.is_hidden("#load-older")
    assert await alice.is_hidden("#ask-row")  # alone: every message asks the assistant

    bob = await signed_in(browser, system)
    bob_id = (await bob.inner_text("#who")).removeprefix("signed in as ")
    await alice.fill("#invite-input", bob_id)
    await alice.click("#invite-form button")
    await alice.wait_for_selector("#ask-row:not([hidden])")
    await bob.fill("#join-input", sid)
    await bob.click("#join-form button")
    await bob.wait_for_selector("#status.connected")
    await alice.wait_for_selector(f"#presence li:has-text('{bob_id}') .role:text-is('member')")
    assert await alice.locator("#presence li:has-text('(you)') .role").inner_text() == "owner"
    await alice.uncheck("#ask")
    await say(alice, "Just between us")
    await bob.wait_for_selector("li.them:has-text('Just between us')")
    await bob.wait_for_timeout(1000)
    assert await bob.locator("li.assistant").count() == 0  # nobody asked the assistant
    stamp = await bob.locator("li.them time").last.inner_text()
    assert re.fullmatch(r"\d{1,2}:\d{2}( [AP]M)?", stamp), stamp  # when it was said

    mine = bob.locator(f"#session-list li[data-session='{sid}']")
    await mine.hover()
    await mine.locator(".leave").click()  # the confirm dialog is accepted
    await bob.wait_for_selector("#notice:has-text('not a member')")
    await bob.wait_for_selector(f"#session-list li[data-session='{sid}']", state="detached")
    await alice.wait_for_selector(f"#presence li:has-text('{bob_id}')", state="detached")


async def test_a_viewer_reads_along_and_cannot_send(system: System, browser: Browser) -> None:
    alice = await signed_in(browser, system)
    sid = await new_session(alice)
    vera = await signed_in(browser, system)
    vera_id = (await vera.inner_text("#who")).removeprefix("signed in as ")
    await say(alice, f"/invite {vera_id} viewer")
    await alice.wait_for_selector(f"#messages li.system:has-text('{vera_id}')")
    await vera.fill("#join-input", sid)
    await vera.click("#join-form button")
    await vera.wait_for_selector("#status.connected")
    assert await vera.is_disabled("#input")
    placeholder = await vera.get_attribute("#input", "placeholder")
    assert placeholder == "You are a viewer: you read, you do not send."
    await alice.wait_for_selector(f"#presence li:has-text('{vera_id}') .role:text-is('viewer')")
    await vera.wait_for_selector("#presence li:has-text('(you)') .role:text-is('viewer')")
    await say(alice, "Hello, reader [fake tokens=2]")
    await vera.wait_for_selector("li.them:has-text('Hello, reader')")  # the stream reaches her
    await vera.wait_for_selector("li.assistant:not(.streaming)")


async def test_reasoning_shows_collapsed_above_the_reply(system: System, browser: Browser) -> None:
    page = await signed_in(browser, system)
    await new_session(page)
    await say(page, "Why is the sky blue? [fake reasoning=40 tokens=4 delay_ms=20]")
    await page.wait_for_selector(
        "li.assistant .reasoning:not([hidden]) summary:text-is('Thinking…')"
    )
    assert await page.locator("li.assistant .reasoning").get_attribute("open") is None  # collapsed
    assert await replied(page) == "".join(reply_pieces(4))
    details = page.locator("li.assistant .reasoning")
    await page.wait_for_selector("li.assistant .reasoning summary:text-is('Reasoning')")
    await details.locator("summary").click()
    assert await details.locator(".thought").inner_text() == "".join(reasoning_pieces(40))
    await page.screenshot(path=screenshot("reasoning.png"))
    await recorded(page, "assistant", 1)
    await page.reload()  # from history, collapsed again
    await page.wait_for_selector("#status.connected")
    await page.wait_for_selector("li.assistant .reasoning:not([hidden])")
    assert await page.locator("li.assistant .reasoning").get_attribute("open") is None


async def test_sources_show_as_citations_under_the_reply(system: System, browser: Browser) -> None:
    page = await signed_in(browser, system)
    await new_session(page)
    await say(page, "What does NATS do? [fake sources=2 tokens=5]")
    await replied(page)
    citations = page.locator("li.assistant .sources:not([hidden]) li")
    assert await citations.count() == 2
    link = citations.first.locator("a")
    assert (await link.inner_text(), await link.get_attribute("href")) == (
        "Source 1",
        "https://docs.example/1",
    )
    assert await link.get_attribute("rel") == "noopener noreferrer"
    await page.screenshot(path=screenshot("sources.png"))


async def test_a_tool_call_shows_as_a_collapsible_step(system: System, browser: Browser) -> None:
    page = await signed_in(browser, system)
    await new_session(page)
    await say(page, "Any news? [fake tool=lookup tool_delay_ms=1500 tokens=4 delay_ms=20]")
    await page.wait_for_selector("li.assistant .steps li.step.running:has-text('lookup')")
    assert await replied(page) == "".join(reply_pieces(4))
    step = page.locator("li.assistant .steps li.step.done")
    assert await step.locator(".state").inner_text() == "done"
    assert await step.locator("details").get_attribute("open") is None  # collapsed
    await step.locator("summary").click()
    assert json.loads(await step.locator(".arguments").inner_text())["query"] == "step 1"
    assert "3 results for step 1" in await step.locator(".result").inner_text()
    await page.screenshot(path=screenshot("tools.png"))
    await recorded(page, "assistant", 1)
    await page.reload()  # from history
    await page.wait_for_selector("#status.connected")
    await page.wait_for_selector("li.assistant .steps li.step.done:has-text('lookup')")
