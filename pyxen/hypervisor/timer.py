"""Hypervisor timers: callbacks at absolute system times (Xen's set_timer/stop_timer).

One thread sleeps until the earliest deadline and runs the callbacks that
are due, in deadline order. Callbacks must be short and must not block on a
vCPU (they send events, which never wait for guest code for long).
Under deterministic virtual time (boot option clock=virtual) there is no such
thread: the virtual-time driver fires due timers itself, between bursts of
guest code (`next_deadline`, `fire_due`).
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING

from .log import Level

SPIN_NS = 200_000          # wait the last 200 µs before a deadline without sleeping

if TYPE_CHECKING:
    from .hypervisor import Hypervisor


class Timer:
    """A one-shot timer that can be re-armed (set) and disarmed (stop) any time."""

    __slots__ = ("_service", "callback", "deadline", "_seq", "name", "guest")

    def __init__(self, service: TimerService, callback: Callable[[], None], name: str = "",
                 guest: bool = False):
        self._service = service
        self.guest = guest        # armed by a guest (its vCPU timers), not by Xen itself
        self.callback = callback
        self.deadline: int | None = None     # absolute system time (ns), None: not armed
        self._seq = -1
        self.name = name

    @property
    def active(self) -> bool:
        return self.deadline is not None

    def set(self, deadline_ns: int) -> None:
        self._service._arm(self, deadline_ns)

    def stop(self) -> None:
        self._service._disarm(self)


class TimerService:
    def __init__(self, hv: Hypervisor, *, driven: bool = False):
        self._hv = hv
        self.driven = driven           # fired by the virtual-time driver, no thread
        self.on_arm: Callable[[], None] | None = None   # driven: told of new deadlines
        self._heap: list[tuple[int, int, Timer]] = []
        self._cv = threading.Condition(threading.Lock())
        self._counter = itertools.count()
        self._closed = False
        self._thread: threading.Thread | None = None
        self.fired = 0

    def new(self, callback: Callable[[], None], name: str = "", *,
            guest: bool = False) -> Timer:
        return Timer(self, callback, name, guest)

    def _arm(self, t: Timer, deadline: int) -> None:
        with self._cv:
            t.deadline = deadline
            t._seq = next(self._counter)
            heapq.heappush(self._heap, (deadline, t._seq, t))
            if not self.driven:
                if self._thread is None and not self._closed:
                    self._thread = threading.Thread(target=self._loop, name="xen-timers",
                                                     daemon=True)
                    self._thread.start()
                if self._heap[0][2] is t:
                    self._cv.notify()
        if self.driven and self.on_arm is not None:
            self.on_arm()

    def _disarm(self, t: Timer) -> None:
        with self._cv:
            t.deadline = None
            t._seq = -1        # its heap entry is now stale and will be skipped

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._heap.clear()
            self._cv.notify()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(2.0)

    def _loop(self) -> None:
        now = self._hv.now
        while True:
            with self._cv:
                while True:
                    if self._closed:
                        return
                    self._drop_stale()
                    if not self._heap:
                        self._cv.wait()
                        continue
                    wait_ns = self._heap[0][0] - now()
                    if wait_ns <= 0:
                        break
                    if wait_ns > SPIN_NS:
                        # Sleep until just before the deadline: a sleeping thread
                        # wakes up to ~100 µs late, which guests would see.
                        self._cv.wait((wait_ns - SPIN_NS) / 1e9)
                    else:
                        self._cv.release()      # the last stretch: yield, don't sleep
                        try:
                            time.sleep(0)
                        finally:
                            self._cv.acquire()
                t = self._pop()
            self._fire(t)

    def _drop_stale(self) -> None:
        """Pop heap entries of timers stopped or re-armed since they were pushed
        (the lock held)."""
        while self._heap and self._heap[0][1] != self._heap[0][2]._seq:
            heapq.heappop(self._heap)

    def _pop(self) -> Timer:
        """Take the earliest timer off the heap, disarmed (the lock held)."""
        _, _, t = heapq.heappop(self._heap)
        t.deadline = None
        t._seq = -1
        return t

    def _fire(self, t: Timer) -> None:
        self.fired += 1
        try:
            t.callback()
        except Exception:  # noqa: BLE001 - one bad callback must not stop all timers
            self._hv.log.printk(Level.ERR, f"BUG: timer {t.name or t.callback} raised:\n"
                                + traceback.format_exc().rstrip())

    # -- driven mode (virtual time) -----------------------------------------------------
    def next_deadline(self, *, guest_only: bool = False) -> int | None:
        """The earliest armed deadline (of a guest's timer only), or None."""
        with self._cv:
            self._drop_stale()
            if not guest_only:
                return self._heap[0][0] if self._heap else None
            return min((d for d, seq, t in self._heap if t.guest and seq == t._seq),
                       default=None)

    def fire_due(self, now: int) -> None:
        """Run the callbacks of timers due at `now`, in deadline (then arming) order,
        including ones they arm for `now` or earlier."""
        while True:
            with self._cv:
                self._drop_stale()
                if self._closed or not self._heap or self._heap[0][0] > now:
                    return
                t = self._pop()
            self._fire(t)
