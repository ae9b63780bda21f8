"""The call gate (drains/runner/pacing.py ``CallGate``) on its own: no database, no settings, a
clock the test moves. Each test ends in well under a second."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime, timedelta

from drains.runner.pacing import CallGate

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def gate(concurrency=4, *, halted=lambda: False, clock=None, repeats=3, recover=2):
    return CallGate(
        concurrency=concurrency, halted=halted, max_wait=60.0, repeats=repeats,
        recover_calls=recover, rng=random.Random(0), clock=clock or Clock(),
    )


def enter_in_thread(g: CallGate) -> threading.Event:
    entered = threading.Event()

    def go():
        if g.enter():
            entered.set()

    threading.Thread(target=go, daemon=True).start()
    return entered


def test_enter__admits_concurrency_calls_and_the_next_waits_for_a_leave():
    g = gate(2)
    assert g.enter() and g.enter()
    third = enter_in_thread(g)
    assert not third.wait(0.25)  # two in flight: the third waits
    g.leave()
    assert third.wait(0.5)
    assert g.active_calls == 2


def test_enter__refused_at_once_when_halted():
    stop = threading.Event()
    g = gate(1, halted=stop.is_set)
    assert g.enter()
    waiting = threading.Event()
    result = []

    def go():
        waiting.set()
        result.append(g.enter())

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    waiting.wait(0.5)
    stop.set()
    thread.join(0.5)
    assert result == [False] and g.active_calls == 1


def test_pause__halves_the_calls_in_flight_and_holds_every_call_until_it_ends():
    clock = Clock()
    g = gate(4, clock=clock)
    pace = g.pause(reset_at=NOW + timedelta(seconds=5), now=NOW)
    assert pace is not None and (pace.before, pace.after, pace.in_a_row) == (4, 2, 1)
    assert 5.0 <= pace.wait <= 5.0 * 1.25 and not pace.stop
    held = enter_in_thread(g)
    assert not held.wait(0.25)  # paused: no call starts, though none is in flight
    clock.now += pace.wait
    assert held.wait(0.5)
    assert g.enter()  # the slowed limit is 2: a second call may go
    third = enter_in_thread(g)
    assert not third.wait(0.25)


def test_pause__a_limit_during_a_pause_is_the_same_episode():
    g = gate(8)
    assert g.pause(reset_at=NOW + timedelta(seconds=3), now=NOW) is not None
    assert g.pause(reset_at=NOW + timedelta(seconds=3), now=NOW) is None
    assert (g.in_flight_limit, g.limits_in_a_row) == (4, 1)


def test_pause__the_limits_in_a_row_say_stop_at_the_repeat_count():
    clock = Clock()
    g = gate(8, clock=clock, repeats=3)
    paces = []
    for _ in range(3):
        paces.append(g.pause(reset_at=NOW + timedelta(seconds=1), now=NOW))
        clock.now += 100  # the pause is over: the next limit is a new one
    assert [p.stop for p in paces] == [False, False, True]
    assert [p.after for p in paces] == [4, 2, 1]


def test_went_through__recovers_one_call_per_recover_calls_back_to_concurrency():
    clock = Clock()
    g = gate(4, clock=clock, recover=2)
    g.pause(reset_at=NOW + timedelta(seconds=1), now=NOW)
    assert g.in_flight_limit == 2
    g.went_through()
    assert g.in_flight_limit == 2 and g.limits_in_a_row == 0
    g.went_through()
    assert g.in_flight_limit == 3
    g.went_through()
    g.went_through()
    assert g.in_flight_limit is None  # back to --concurrency: not slowed down any more
