"""Chat commands without I/O: what each command's words mean, what is refused and why, the
help, the system messages' words, the pace, and a session written out as Markdown."""

from datetime import UTC, datetime

import pytest

from gateway import commands, export
from gateway.commands import Change, Help, Invite, Show, Simple
from shared import rpc


@pytest.mark.parametrize(
    ("content", "asked"),
    [
        ("/help", Help()),
        ("/HELP", Help()),
        ("/model", Show("model")),
        ("/model large", Change("model", "large")),
        ("/model default", Change("model", None)),
        ("/system  Be brief.  ", Change("system", "Be brief.")),
        ("/system default", Change("system", None)),
        ("/temperature 0.7", Change("temperature", 0.7)),
        ("/temperature 2", Change("temperature", 2.0)),
        ("/max_tokens 300", Change("max_tokens", 300)),
        ("/max_tokens default", Change("max_tokens", None)),
        ("/title Trip to Lisbon", Change("title", "Trip to Lisbon")),
        ("/title", Show("title")),
        ("/retry", Simple("retry")),
        ("/clear", Simple("clear")),
        ("/usage", Simple("usage")),
        ("/members", Simple("members")),
        ("/export", Simple("export")),
        ("/invite bob", Invite("bob", "member")),
        ("/invite bob viewer", Invite("bob", "viewer")),
    ],
)
def test_each_command_means_what_it_says(content: str, asked: commands.Request) -> None:
    assert commands.is_command(content)
    assert commands.parse(content).request == asked


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("/frobnicate", "unknown command /frobnicate; /help lists them"),
        ("/temperature hot", "'hot' is not a number; usage: /temperature [0-2 | default]"),
        (
            "/temperature 2.5",
            "the temperature is between 0 and 2; usage: /temperature [0-2 | default]",
        ),
        (
            "/max_tokens -3",
            "'-3' is not a whole number of tokens; usage: /max_tokens [n | default]",
        ),
        ("/max_tokens 0", "'0' is not a whole number of tokens; usage: /max_tokens [n | default]"),
        ("/invite", "name one user; usage: /invite <user_id> [viewer]"),
        (
            "/invite bob admin",
            "the role is member or viewer, not 'admin'; usage: /invite <user_id> [viewer]",
        ),
        ("/clear everything", "/clear takes no argument; usage: /clear"),
        ("/title " + "x" * 201, "a title has at most 200 characters; usage: /title [text]"),
    ],
)
def test_bad_arguments_say_what_would_work(content: str, why: str) -> None:
    assert commands.parse(content).request == why


def test_a_double_slash_is_a_message_that_starts_with_one() -> None:
    assert not commands.is_command("//etc/hosts")
    assert commands.unescaped("//etc/hosts") == "/etc/hosts"
    assert commands.unescaped("hello /x") == "hello /x"
    assert not commands.is_command("hello")


def test_help_lists_every_command_with_one_line_each() -> None:
    lines = commands.help_text().splitlines()
    names = [spec.name for spec in commands.SPECS]
    assert len(lines) == len(names) + 1
    for name, line in zip(names, lines, strict=False):
        assert line.startswith(f"/{name}")
        assert " — " in line
    listed = commands.help_data()["commands"]
    assert [c["name"] for c in listed] == names  # type: ignore[attr-defined]


def test_system_messages_say_who_changed_what() -> None:
    assert commands.note(Change("model", "large"), "alice", "Large (large)") == (
        "alice switched the model to Large (large)"
    )
    assert commands.note(Change("temperature", 0.2), "alice", "") == (
        "alice set the temperature to 0.2"
    )
    assert commands.note(Change("max_tokens", None), "alice", "") == (
        "alice set the max tokens to the default"
    )
    assert commands.note(Change("system", None), "bob", "") == "bob removed the system prompt"
    assert (
        commands.note(Change("title", "Lisbon"), "bob", "") == "bob renamed the session to “Lisbon”"
    )


def test_a_connection_runs_at_most_so_many_commands_a_minute() -> None:
    pace = commands.Pace(limit=2, window_s=60)
    assert pace.allow(0.0)
    assert pace.allow(1.0)
    assert not pace.allow(2.0)
    assert pace.allow(60.5)  # the first has left the window


def message(mid: str, role: str, content: str, **more: object) -> rpc.HistoryMessage:
    return rpc.HistoryMessage.model_validate(
        {
            "message_id": mid,
            "role": role,
            "participant": more.pop("participant", "alice"),
            "content": content,
            "status": more.pop("status", "complete"),
            "in_reply_to": None,
            "attempt": None,
            "model": more.pop("model", None),
            "usage": None,
            "seq": 1,
            "created_at": datetime(2026, 12, 4, 9, 30, tzinfo=UTC),
        }
    )


def test_a_session_as_markdown() -> None:
    session = rpc.SessionInfo(
        session_id="s1",
        owner="alice",
        title="Trip to Lisbon",
        members=["alice", "bob"],
        created_at=datetime.now(UTC),
    )
    messages = [
        message("m1", "user", "Where should we eat?"),
        message(
            "m1/reply",
            "assistant",
            "Try Cervejaria Ramiro.",
            participant="assistant",
            model="gpt-4o",
        ),
        message("c1", "system", "alice switched the model to GPT-4o (gpt-4o)"),
        message("m2/reply", "assistant", "Half a", participant="assistant", status="cancelled"),
    ]
    text = export.markdown(session, messages, total=6)
    assert text.startswith("# Trip to Lisbon\n\nExported ")
    assert "· 4 messages (the newest of 6)\n\nMembers: alice, bob\n" in text
    assert "**alice** · 2026-12-04 09:30 UTC\n\nWhere should we eat?\n" in text
    assert "**assistant (gpt-4o)** · 2026-12-04 09:30 UTC\n\nTry Cervejaria Ramiro.\n" in text
    assert "_alice switched the model to GPT-4o (gpt-4o)_" in text
    assert "Half a\n\n_[cancelled]_\n" in text
    assert export.filename(session) == "Trip-to-Lisbon.md"
