import pytest

from shared import subjects


def test_builders_spell_the_design_subjects() -> None:
    assert subjects.chat_in("s1") == "chat.s1.in"
    assert subjects.out_token("s1") == "chat.s1.out.token"
    assert subjects.out_end("s1") == "chat.s1.out.end"
    assert subjects.cancel("s1") == "chat.s1.cancel"
    assert subjects.live("s1") == "live.s1.>"
    assert subjects.session_stored("s1") == "chat.s1.>"


def test_split_reads_session_and_kind() -> None:
    assert subjects.split("live.abc.out.token") == ("abc", "out.token")
    assert subjects.split("chat.abc.in") == ("abc", "in")
    with pytest.raises(ValueError, match="not a session subject"):
        subjects.split("svc.history")


@pytest.mark.parametrize("value", ["a", "A-b_9", "x" * 64])
def test_session_ids_that_are_one_subject_token(value: str) -> None:
    assert subjects.is_session_id(value)


@pytest.mark.parametrize("value", ["", "a.b", "a*", "a>", "a b", "x" * 65, "é"])
def test_session_ids_that_would_break_subjects(value: str) -> None:
    assert not subjects.is_session_id(value)


def test_a_family_is_a_subject_without_its_session() -> None:
    assert subjects.family("chat.s1.in") == "chat.*.in"
    assert subjects.family("live.s1.out.token") == "live.*.out.token"
    assert subjects.family("svc.sessions.get") == "svc.sessions.get"
    assert subjects.family("chat.s1") == "chat.s1"  # not a session subject: as it is


def test_each_model_but_the_default_has_a_queue_of_its_own() -> None:
    assert subjects.chat_in("s1", "") == "chat.s1.in"
    assert subjects.chat_in("s1", "local") == "chat.s1.in.local"
    assert subjects.pool_in("") == subjects.ALL_IN
    assert subjects.pool_in("local") == "chat.*.in.local"
    assert subjects.split("chat.s1.in.local") == ("s1", "in.local")
