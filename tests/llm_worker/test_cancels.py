"""The registry of reply attempts a worker holds: cancels reach every attempt of a message,
fencing only the one fenced off."""

from llm_worker.cancels import CancelRegistry


def test_fencing_stops_one_attempt_and_a_cancel_stops_them_all() -> None:
    registry = CancelRegistry()
    older, newer = registry.hold("s", "m", 1), registry.hold("s", "m", 2)
    assert registry.hold("s", "m", 2) is newer
    assert len(registry) == 2
    registry.fence("s", "m", 1)
    assert (older.reason, newer.reason) == ("fenced", None)
    assert registry.cancel("s", "m")
    assert newer.reason == "cancelled"
    assert older.reason == "fenced"  # the first reason stays


def test_released_attempts_are_forgotten() -> None:
    registry = CancelRegistry()
    registry.hold("s", "m", 1)
    registry.release("s", "m", 1)
    registry.release("s", "m", 1)  # twice is harmless
    registry.fence("s", "m", 1)  # no longer held: nothing is created
    assert len(registry) == 0
    assert not registry.cancel("s", "m")
