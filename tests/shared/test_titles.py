"""Session titles (pure): the first message's line, the request for the model's title, and
what is kept of its answer."""

from shared import titles


def test_a_title_is_the_first_line_cut_at_a_word() -> None:
    assert titles.title_from("  How do  I bake\nbread?") == "How do I bake"
    long = "Explain how the Raft consensus algorithm elects a leader when the network splits"
    title = titles.title_from(long)
    assert title == "Explain how the Raft consensus algorithm elects a leader…"
    assert len(title) <= titles.TITLE_CHARS
    assert titles.title_from("x" * 100) == "x" * 59 + "…"


def test_the_exchange_goes_to_the_system_message_and_is_bounded() -> None:
    system, user = titles.title_request("q" * 5000, "How to bake bread: knead, rest, bake.")
    assert (system["role"], user["role"]) == ("system", "user")
    assert system["content"].startswith(titles.INSTRUCTION)
    assert "q" * titles.EXCHANGE_CHARS + "\n</question>" in system["content"]
    assert "q" * (titles.EXCHANGE_CHARS + 1) not in system["content"]
    assert "<answer>\nHow to bake bread: knead, rest, bake.\n</answer>" in system["content"]
    assert user["content"] == "Title this conversation."  # directives in a message stay out


def test_a_models_answer_becomes_a_plain_title() -> None:
    assert titles.cleaned('"Baking Bread at Home."') == "Baking Bread at Home"
    assert titles.cleaned("\n\nTitle: **Raft leader election**\nMore text") == (
        "Raft leader election"
    )
    assert titles.cleaned("\u201cLisbon in two days\u201d") == "Lisbon in two days"
    assert titles.cleaned("# Weekend plans") == "Weekend plans"
    assert titles.cleaned("   \n ") == ""
    assert len(titles.cleaned("word " * 40)) <= titles.TITLE_CHARS
