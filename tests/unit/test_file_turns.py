"""FileTurns: one holder per key at a time, a bounded wait, nothing left behind."""

from __future__ import annotations

import threading

from openimm.pipeline.file_turns import FileTurns


def test_a_key_is_held_by_one_at_a_time_and_forgotten_after() -> None:
    turns = FileTurns()
    order: list[str] = []
    holding = threading.Event()
    release = threading.Event()

    def first() -> None:
        with turns.turn("a", timeout=10) as ours:
            assert ours
            order.append("first in")
            holding.set()
            release.wait(10)
            order.append("first out")

    thread = threading.Thread(target=first)
    thread.start()
    assert holding.wait(10)
    with turns.turn("b", timeout=0) as other:  # another file is not held up
        assert other
    release.set()
    with turns.turn("a", timeout=10) as ours:
        assert ours
        order.append("second in")
    thread.join(10)
    assert order == ["first in", "first out", "second in"]
    assert len(turns) == 0


def test_a_turn_that_does_not_come_in_time_says_so() -> None:
    turns = FileTurns()
    with turns.turn("a", timeout=10):
        outcome: list[bool] = []

        def late() -> None:
            with turns.turn("a", timeout=0.05) as ours:
                outcome.append(ours)

        thread = threading.Thread(target=late)
        thread.start()
        thread.join(10)
        assert outcome == [False]
    assert len(turns) == 0
