"""The engine ticker: stops engines while a reason lasts, and its thread does not
outlive the need (a process that makes many hosts must not collect threads)."""

from __future__ import annotations

import threading
import time

from pyxen.arch.x86 import ticker as ticker_mod


class FakeEngine:
    def __init__(self, polls_wanted: int):
        self.left = polls_wanted
        self.polls = 0

    def ticker_poll(self) -> bool:
        self.polls += 1
        self.left -= 1
        return self.left > 0


def _ticker_threads() -> int:
    return sum(t.name == "engine-ticker" for t in threading.enumerate())


def test_polls_while_wanted_then_its_thread_ends(monkeypatch):
    monkeypatch.setattr(ticker_mod, "IDLE_EXIT_S", 0.05)
    before = _ticker_threads()
    t = ticker_mod.Ticker()
    e = FakeEngine(polls_wanted=5)
    t.watch(e)
    deadline = time.monotonic() + 5
    while e.polls < 5 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert e.polls == 5
    while _ticker_threads() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _ticker_threads() == before and t._thread is None
    time.sleep(0.02)
    assert e.polls == 5                     # not polled once it said it was done
    e2 = FakeEngine(polls_wanted=2)         # a later watch starts a new thread
    t.watch(e2)
    while e2.polls < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert e2.polls == 2
