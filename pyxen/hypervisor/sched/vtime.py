"""Deterministic virtual time (boot option clock=virtual).

System time stops being the host's clock and becomes guest progress: every
byte of guest code the engine starts executing advances it by 1 ns (about 4 ns
per instruction, a 250 MIPS CPU: near what the engine runs at), and each
hypercall by VMEXIT_NS (the exit, the hypervisor's work, the entry). The engine
counts those bytes exactly at translation-block starts, with no call into
Python (raw.StopFlag's counting stub), and stops a run when a budget is used
up, so a time slice ends at the same instruction on every run.

One thread, the driver, stands in for all pCPU threads and steps the pCPUs in
a fixed order, in rounds of `vtime_quantum_us` of virtual time: every pCPU of
a pool runs [T, end) in turn (schedule, run the picked vCPU until its slice,
the round or an exit ends, schedule again), then timers due by `end` fire and
the next round starts at `end`. So pCPUs run in parallel in virtual time, and
what one pCPU does to another (a tickle, a wake-up) is seen by the other at
most one quantum late. Timers never fire while guest code runs, nothing else
calls the schedulers, and the same guests and configuration give the same
instructions, decisions and trace records, byte for byte, on every run.

When nothing is runnable, time jumps to the next timer; with no timer armed
it stands still until something from outside (the toolstack, a Dom0 service)
makes a vCPU runnable. Inputs from outside are the one thing this cannot make
deterministic: they arrive at whatever virtual time it is when they come. A
harness that wants them at fixed times holds the clock (`hold`), does its
set-up, and runs it to given times (`run_until`).

Skew: within a round each pCPU starts at T, so a pCPU stepped later can see a
time earlier than one an earlier pCPU reached (as with per-CPU clocks in Xen).
Accounting that subtracts times from different pCPUs clamps at zero.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from ...arch.unicorn_raw import NO_LIMIT
from .host import _here

if TYPE_CHECKING:
    from .host import Pcpu, SchedulerHost

VIRTUAL_EPOCH_NS = 1_767_225_600 * 10**9   # guests' wallclock at boot: 2026-01-01 00:00 UTC
VMEXIT_NS = 500            # what a hypercall costs in virtual time (exit, work, entry)
UPCALL_RETRY_NS = 1_000     # an upcall blocked by IF=0 is tried again this much later
_HELD = -1                  # run_until target meaning "hold where you are"


class VirtualClock:
    """System time in ns: `t` plus the guest-code bytes the running engine has
    started since it entered (its StopFlag counter)."""

    __slots__ = ("t", "_arm", "_c0")

    def __init__(self) -> None:
        self.t = 0
        self._arm = None
        self._c0 = 0

    def now(self) -> int:
        arm = self._arm
        if arm is None:
            return self.t
        return self.t + (arm.count - self._c0)

    def enter(self, arm) -> None:
        """An engine starts running guest code (on the driver's thread)."""
        self._c0 = arm.count
        self._arm = arm

    def leave(self) -> None:
        arm, self._arm = self._arm, None
        if arm is not None:
            self.t += arm.count - self._c0

    def budget_limit(self, arm, deadline_ns: int | None, upcall_blocked: bool) -> int:
        """The counter value at which the engine must stop to end at `deadline_ns`."""
        limit = NO_LIMIT if deadline_ns is None else arm.count + max(0, deadline_ns - self.t)
        if upcall_blocked:
            limit = min(limit, arm.count + UPCALL_RETRY_NS)
        return limit


class _PcpuState:
    __slots__ = ("deadline", "needs_schedule")

    def __init__(self) -> None:
        self.deadline: int | None = None     # end of the current slice (or idle timer)
        self.needs_schedule = True


class VirtualTimeDriver:
    """Steps every pCPU of the host on one thread, in virtual time (see module doc)."""

    def __init__(self, host: SchedulerHost):
        self.host = host
        hv = host.hv
        self.clock: VirtualClock = hv.vclock
        self.timers = hv.timers
        self.quantum = max(1, int(hv.params.get("vtime_quantum_us", 100))) * 1000
        self.rounds = 0
        self._state = [_PcpuState() for _ in host.pcpus]
        self._input = threading.Event()
        self._cv = threading.Condition()
        self._until: int | None = None       # None: free running; _HELD: held
        self._parked = False                 # the driver waits at a round boundary
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.timers.on_arm = self.poke

    # -- control ---------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="vtime", daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._stopping = True
        self.poke()
        with self._cv:
            self._cv.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5.0)

    def poke(self) -> None:
        """Something may have become runnable, or a timer was armed (any thread)."""
        self._input.set()

    def hold(self, timeout: float = 10.0) -> None:
        """Stop virtual time at the next round boundary and wait until it is there."""
        with self._cv:
            self._until = _HELD
            self._cv.notify_all()
        self.poke()
        self._wait_parked(timeout)

    def release(self) -> None:
        """Let virtual time run freely again."""
        with self._cv:
            self._until = None
            self._parked = False
            self._cv.notify_all()
        self.poke()

    def run_until(self, t_ns: int, timeout: float | None = None) -> int:
        """Run virtual time up to `t_ns` (idle time included), then hold there.
        Returns the virtual time reached; raises TimeoutError after `timeout` s of
        wall time."""
        with self._cv:
            self._until = t_ns
            self._parked = False
            self._cv.notify_all()
        self.poke()
        self.start()
        self._wait_parked(timeout)
        return self.clock.t

    def _wait_parked(self, timeout: float | None) -> None:
        if self._thread is None:
            return                            # not started: time stands still anyway
        with self._cv:
            if not self._cv.wait_for(lambda: self._parked or self._stopping, timeout):
                raise TimeoutError(f"virtual time did not reach its target within "
                                   f"{timeout} s (it is at {self.clock.t} ns)")

    # -- the loop ----------------------------------------------------------------------
    def _loop(self) -> None:
        _here.cpu = None                     # timers fire for no pCPU in particular
        while not self._stopping:
            with self._cv:
                until = self._until
                if until is not None and self.clock.t >= until:
                    self._parked = True
                    self._cv.notify_all()
                    self._cv.wait_for(lambda: self._stopping or (
                        self._until is None or self.clock.t < self._until))
                    self._parked = False
                    continue
            self._input.clear()
            if not self._round(until):
                self._input.wait(0.5)        # all idle, no timer: wait for an input

    def _round(self, until: int | None) -> bool:
        """One round; False if nothing can happen until an input arrives."""
        clock, timers = self.clock, self.timers
        t0 = clock.t
        timers.fire_due(t0)
        pcpus = [p for p in self.host.pcpus if p.pool is not None]
        state = self._state
        busy = any(p.prev is not None or p.tickled or state[p.cpu].needs_schedule
                   for p in pcpus)
        if busy or self._any_runnable():
            # Someone runs or waits for a pCPU: every timer and idle pCPU's deadline counts.
            next_event = timers.next_deadline()
            for p in pcpus:
                d = state[p.cpu].deadline
                if p.prev is None and d is not None:
                    next_event = d if next_event is None else min(next_event, d)
        else:
            # Every vCPU is blocked, paused or offline: only a guest's own timer (or an
            # input from outside) can change that; Xen's periodic work is skipped over.
            next_event = timers.next_deadline(guest_only=True)
        if until is not None:
            next_event = until if next_event is None else min(next_event, until)
        if not busy:
            if next_event is None:
                return False
            t1 = max(t0, next_event)         # idle: jump to the next thing that happens
            for p in pcpus:
                p.idle_ns += t1 - t0
                st = state[p.cpu]
                if st.deadline is not None and st.deadline <= t1:
                    st.needs_schedule = True
            clock.t = t1
            self.rounds += 1
            return True
        end = t0 + self.quantum
        if next_event is not None and next_event > t0:
            end = min(end, next_event)
        for p in pcpus:
            self._step(p, state[p.cpu], t0, end)
        clock.t = end
        self.rounds += 1
        return True

    def _any_runnable(self) -> bool:
        for pool in list(self.host.pools.values()):
            for sd in list(pool.domains.values()):
                if any(u.runnable for u in sd.units):
                    return True
        return False

    def _step(self, p: Pcpu, st: _PcpuState, t0: int, end: int) -> None:
        """Run pCPU `p` from virtual time t0 to `end`."""
        clock = self.clock
        clock.t = t0
        _here.cpu = p.cpu
        stalled = 0
        try:
            while not self._stopping:
                now = clock.t
                if now >= end:
                    return
                if p.pool is None:
                    with p.cond:
                        p.tickled = False
                    st.needs_schedule = True
                    return
                unit = p.prev
                if (st.needs_schedule or p.tickled
                        or (st.deadline is not None and now >= st.deadline)
                        or (unit is not None and (not unit.runnable or unit.yielding))):
                    st.needs_schedule = False
                    picked = p.schedule()
                    if picked is None:       # it left its pool
                        st.deadline = None
                        st.needs_schedule = True
                        return
                    unit, st.deadline = picked
                limit = end if st.deadline is None else min(end, st.deadline)
                if unit is None:
                    if st.deadline is None:  # idle until tickled: the rest of the round
                        p.idle_ns += end - now
                        clock.t = end
                        return
                    p.idle_ns += limit - now
                    clock.t = limit
                    continue
                p._run(unit, limit, end)
                if clock.t >= end and unit.runnable and not unit.yielding and not p.tickled:
                    return                   # the round is over, not the slice
                if clock.t == now:
                    # Nothing ran (the vCPU could not enter, or was kicked at once):
                    # decide again, and give up this round if that keeps happening.
                    stalled += 1
                    if stalled >= 3:
                        p.idle_ns += end - now
                        clock.t = end
                        st.needs_schedule = True
                        return
                st.needs_schedule = True
        finally:
            _here.cpu = None
