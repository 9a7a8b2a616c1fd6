"""Throttle, the pure per-topic rate limit and pending frames of both publishers (time given)."""

from __future__ import annotations

import pytest

from elog_stream.throttle import Throttle


def test_a_frame_too_soon_is_held_and_due_when_the_interval_has_passed() -> None:
    throttle: Throttle[str, str] = Throttle(max_rate=5)  # one per 0.2 s
    assert throttle.send_now("a", 10.0)
    assert not throttle.send_now("a", 10.1)
    assert throttle.hold("a", "a1") == []
    assert throttle.hold("a", "a2") == [("a", "a1")]  # the newest wins
    assert throttle.send_now("b", 10.1)  # other topics are not held back
    assert throttle.next_due(10.1) == pytest.approx(0.1)
    assert throttle.take(10.15) is None
    assert not throttle.send_now("a", 10.2)  # a held frame must not be overtaken
    assert throttle.take(10.2) == ("a", "a2")
    assert throttle.next_due(10.2) is None
    assert not throttle.send_now("a", 10.25)  # in flight until done
    throttle.done("a")
    assert not throttle.send_now("a", 10.3)  # the take counted as a send
    assert throttle.send_now("a", 10.4)


def test_pending_topics_are_bounded_and_the_longest_waiting_goes_first() -> None:
    throttle: Throttle[str, int] = Throttle(max_keys=2)
    assert throttle.hold("a", 1) == []
    assert throttle.hold("b", 1) == []
    assert throttle.hold("a", 2) == [("a", 1)]  # keeps its place in line
    assert throttle.hold("c", 1) == [("a", 2)]  # evicts the longest-waiting topic
    assert len(throttle) == 2
    assert [throttle.take(0.0), throttle.take(0.0), throttle.take(0.0)] == [
        ("b", 1),
        ("c", 1),
        None,
    ]


def test_a_failed_frame_is_restored_unless_a_newer_one_came() -> None:
    throttle: Throttle[str, str] = Throttle()
    throttle.hold("a", "old")
    assert throttle.take(0.0) == ("a", "old")
    throttle.done("a")
    assert throttle.restore("a", "old") == []
    assert throttle.take(0.0) == ("a", "old")
    throttle.hold("a", "new")
    throttle.done("a")
    assert throttle.restore("a", "old") == [("a", "old")]
    assert throttle.pop_all() == [("a", "new")]


def test_release_all_makes_held_frames_due_at_once() -> None:
    throttle: Throttle[str, str] = Throttle(max_rate=0.01)
    assert throttle.send_now("a", 0.0)
    throttle.hold("a", "a1")
    assert throttle.take(1.0) is None
    throttle.release_all()
    assert throttle.take(1.0) == ("a", "a1")


@pytest.mark.parametrize(("rate", "keys"), [(0, 10), (-1.0, 10), (None, 0)])
def test_invalid_limits_are_refused(rate: float | None, keys: int) -> None:
    with pytest.raises(ValueError, match="must be"):
        Throttle(rate, keys)
