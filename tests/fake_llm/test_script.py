from fake_llm import script
from fake_llm.settings import FakeLLMSettings

SETTINGS = FakeLLMSettings(reply_tokens=10, ttft_ms=100, token_delay_ms=20)


def test_plan_follows_settings_without_a_directive() -> None:
    plan = script.plan_for([{"role": "user", "content": "hi"}], SETTINGS, roll=0.5)
    assert (plan.tokens, plan.ttft_ms, plan.delay_ms, plan.fail) == (10, 100, 20, "none")


def test_directive_in_last_user_message_overrides() -> None:
    messages = [
        {"role": "user", "content": "[fake tokens=99]"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "again [fake tokens=3 delay_ms=0 fail=drop fail_after=1]"},
    ]
    plan = script.plan_for(messages, SETTINGS, roll=0.5)
    assert (plan.tokens, plan.delay_ms, plan.fail, plan.fail_after) == (3, 0.0, "drop", 1)


def test_unknown_fail_mode_is_ignored() -> None:
    plan = script.plan_for([{"role": "user", "content": "[fake fail=boom]"}], SETTINGS, roll=0)
    assert plan.fail == "none"


def test_reply_pieces_join_into_words() -> None:
    assert "".join(script.reply_pieces(3)) == "tokenwire streams every"
    assert len(script.reply_pieces(100)) == 100


def test_token_counts_are_stable() -> None:
    assert script.count_tokens("") == 0
    assert script.count_tokens("abcd") == 1
    assert script.prompt_tokens([{"role": "user", "content": "abcdefgh"}]) == 2 + 4 + 3


def test_pieces_can_be_padded_to_a_size() -> None:
    pieces = script.reply_pieces(3, chars=20)
    assert all(len(p) >= 20 for p in pieces)
    assert pieces[0].split() == ["tokenwire"] * 3
