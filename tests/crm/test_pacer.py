"""amoCRM's 7 requests a second, kept on the pacer's own clock: a virtual clock is never spun on."""

from __future__ import annotations

from portal.seats.crm.amocrm import Pacer
from tests.crm.conftest import FakeClock


def test_fifty_requests_wait_seven_virtual_seconds_in_seven_sleeps() -> None:
    clock = FakeClock()
    start = clock()
    pacer = Pacer(7, clock=clock, sleep=clock.sleep)
    sent = []
    for _ in range(50):
        pacer.acquire()
        sent.append(clock() - start)
    # Seven in each second of the clock the pacer was given, and one wait per full window: no busy loop.
    assert [round(t) for t in sent[::7]] == [0, 1, 2, 3, 4, 5, 6, 7]
    assert all(sum(1 for t in sent if int(t + 1e-3) == second) <= 7 for second in range(8))
    assert len(clock.sleeps) == 7
    assert 7.0 <= clock() - start < 7.001


def test_a_request_after_a_quiet_second_does_not_wait() -> None:
    clock = FakeClock()
    pacer = Pacer(7, clock=clock, sleep=clock.sleep)
    for _ in range(7):
        pacer.acquire()
    clock.now += 1.0
    pacer.acquire()
    assert clock.sleeps == []
