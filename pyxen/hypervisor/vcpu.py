"""A virtual CPU as the core sees it: scheduling state, runstate accounting, events.

A vCPU is runnable unless it is offline, blocked (HLT, SCHEDOP_block/poll) or
its domain is paused, shutting down or dying. Every change of that is passed
to the scheduler (`hv.sched`), whose pCPU threads run the vCPU's guest code
(sched/host.py; the engine releases the GIL while guest code runs).
"""

from __future__ import annotations

import struct
import threading
import time
import traceback
from typing import TYPE_CHECKING

from ..abi import structs as S
from ..abi.constants import RunstateState, ShutdownReason, Virq
from ..arch.backend import ExitReason, VcpuBackend
from . import pvclock
from .errors import GuestFault
from .log import Level
from .sched.trace import runstate_event, unit_word

if TYPE_CHECKING:
    from .domain import Domain


class Vcpu:
    def __init__(self, domain: Domain, vcpu_id: int):
        self.domain = domain
        self.vcpu_id = vcpu_id
        self.backend: VcpuBackend | None = None
        self.initialised = False
        self.online = False          # VCPUOP_up / down
        self.blocked = False         # waiting for an event
        self._cond = threading.Condition()
        self._in_guest = False       # a pCPU is inside backend.run() for it
        self.unit = None             # its SchedUnit (sched/core.py), set by the scheduler
        # Runstate accounting (ns of hypervisor system time).
        self.runstate = RunstateState.offline
        self.runstate_entry = domain.hv.now()
        self.runstate_time = [0, 0, 0, 0]
        self.hypercalls = 0
        # Events and time (see event_channel.py, pvclock.py).
        self.upcall_vector = 0                       # HVMOP_set_evtchn_upcall_vector
        self.vcpu_info_ref: tuple[int, int] | None = None   # (gfn, offset) if registered
        self.runstate_area: int | None = None        # guest-virtual address
        self.runstate_area_compat = False            # registered by 32-bit code
        self.time_area: int | None = None            # a second vcpu_time_info (GVA)
        self.poll_port: int | None = None            # SCHEDOP_poll: 0 = any port
        timers = domain.hv.timers
        self.singleshot_timer = timers.new(self._singleshot_fired, f"{self} singleshot",
                                           guest=True)
        self.periodic_timer = timers.new(self._periodic_fired, f"{self} periodic",
                                         guest=True)
        self.periodic_period = 0
        self.poll_timer = timers.new(self.poll_done, f"{self} poll", guest=True)

    def __repr__(self) -> str:
        return f"d{self.domain.domid}v{self.vcpu_id}"

    # -- state -----------------------------------------------------------------
    def runnable(self) -> bool:
        d = self.domain
        return (self.online and not self.blocked and d.pause_count == 0
                and not d.is_shutting_down and not d.is_dying)

    def _set_runstate(self, state: RunstateState) -> None:
        hv = self.domain.hv
        # Never backwards: under virtual time another pCPU's clock may be behind.
        now = max(hv.now(), self.runstate_entry)
        old = self.runstate
        self.runstate_time[old] += now - self.runstate_entry
        self.runstate = state
        self.runstate_entry = now
        if hv.tbuf.on and state != old:
            # TRC_SCHED_RUNSTATE_CHANGE {vcpu:16, dom:16}, on the pCPU it is/was on
            unit = self.unit
            hv.tbuf.trace(unit.processor if unit is not None else 0,
                          runstate_event(old, state), (unit_word(self.domain.domid,
                                                                 self.vcpu_id),))

    def runstate_snapshot(self) -> tuple[RunstateState, int, list[int]]:
        with self._cond:
            now = max(self.domain.hv.now(), self.runstate_entry)
            times = list(self.runstate_time)
            times[self.runstate] += now - self.runstate_entry
            return self.runstate, self.runstate_entry, times

    def cpu_time_ns(self) -> int:
        return self.runstate_snapshot()[2][RunstateState.running]

    # -- control from other threads --------------------------------------------
    def _reevaluate(self) -> None:
        """Tell the scheduler whether the vCPU can run now (call with _cond held)."""
        runnable = self.runnable()
        if not self._in_guest:
            state = self._state_off_cpu()
            if state != self.runstate and self.runstate != RunstateState.running:
                self._set_runstate(state)
        self.domain.hv.sched.set_runnable(self, runnable)
        self._cond.notify_all()

    def poke(self) -> None:
        """Re-evaluate runnability (pause, shutdown, up/down): the scheduler hears of
        it, and guest code that must stop is stopped."""
        with self._cond:
            self._reevaluate()
            stop = self._in_guest and not self.runnable()
        if stop and self.backend is not None:
            self.backend.kick()

    def wake(self) -> None:
        """An event arrived: unblock."""
        with self._cond:
            self.blocked = False
            self._reevaluate()

    def block(self) -> None:
        """Called from this vCPU's own hypercall or HLT: stop until woken."""
        with self._cond:
            self.blocked = True
            self._reevaluate()
        if self.backend is not None:
            self.backend.kick()

    def block_unless(self, wake_now) -> None:
        """Block (SCHEDOP_block/poll) unless `wake_now()` — checked after blocking, so
        an event arriving in between is not lost."""
        with self._cond:
            self.blocked = True
            self._reevaluate()
        if wake_now():
            self.wake()
        elif self.backend is not None:
            self.backend.kick()

    def event_arrived(self) -> None:
        """The upcall became pending: wake from HLT/block, interrupt guest code."""
        self.wake()
        if self.backend is not None:
            self.backend.interrupt()

    def poll_done(self) -> None:
        """A polled port became pending, or the poll timed out."""
        if self.poll_port is not None:
            self.poll_port = None
            self.poll_timer.stop()
            self.wake()

    # -- timers (fire on the timer thread) ---------------------------------------------
    def _singleshot_fired(self) -> None:
        self.domain.evtchn.send_virq(Virq.TIMER, self.vcpu_id)

    def _periodic_fired(self) -> None:
        period = self.periodic_period
        if period:
            now = self.domain.hv.now()
            deadline = (self.periodic_timer.deadline or now) + period
            self.periodic_timer.set(deadline if deadline > now else now + period)
        self.domain.evtchn.send_virq(Virq.TIMER, self.vcpu_id)

    def stop_timers(self) -> None:
        self.singleshot_timer.stop()
        self.periodic_timer.stop()
        self.poll_timer.stop()

    # -- guest-visible areas (called on this vCPU's thread, its state in the engine) ---
    def entered_guest(self) -> None:
        """The vCPU got the CPU: account it and refresh its time and runstate areas."""
        with self._cond:
            self._set_runstate(RunstateState.running)
        d = self.domain
        info = d.vcpu_info_address(self.vcpu_id)
        if info is not None:
            now = d.hv.now()
            pvclock.write_time_info(d.hv.machine.view, info + pvclock.TIME_INFO,
                                    tsc=d.guest_tsc(now), now=now, khz=d.tsc_khz)
        if self.time_area is not None:
            self.write_time_area()
        if self.runstate_area is not None:
            self.write_runstate_area()

    def write_time_area(self) -> None:
        d = self.domain
        buf = bytearray(32)
        now = d.hv.now()
        pvclock.write_time_info(buf, 0, tsc=d.guest_tsc(now), now=now, khz=d.tsc_khz)
        try:
            self.backend.copy_to_guest(self.time_area, bytes(buf))
        except GuestFault:
            pass

    def write_runstate_area(self) -> None:
        state, entry, times = self.runstate_snapshot()
        layout = S.VCPU_RUNSTATE_INFO_COMPAT if self.runstate_area_compat else \
            S.VCPU_RUNSTATE_INFO
        data = layout.pack(state=int(state), state_entry_time=entry,
                           time=struct.pack("<4Q", *times))
        try:
            self.backend.copy_to_guest(self.runstate_area, data)
        except GuestFault:
            pass          # Xen ignores an area the guest has unmapped

    def wait_stopped(self, timeout: float = 5.0) -> bool:
        """Wait until the vCPU is out of guest code (after making it non-runnable)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._in_guest:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def take_offline(self) -> None:
        d = self.domain
        with self._cond:
            self.online = False
            self._reevaluate()
        if not any(v.online for v in d.vcpus):
            d.hv.log.printk(Level.INFO, f"{d}: all vCPUs offline -- powering off")
            d.shutdown(ShutdownReason.poweroff)

    # -- running on a pCPU (called by the pCPU thread, sched/host.py) ------------
    def start(self) -> None:
        """Make sure the scheduler knows the vCPU (idempotent)."""
        with self._cond:
            self._reevaluate()

    def join(self, timeout: float | None = None) -> None:
        self.wait_stopped(timeout or 5.0)

    def run_on_pcpu(self, deadline_ns: int | None,
                    round_end: int | None = None) -> ExitReason | None:
        """Run guest code until an exit or `deadline_ns`; None if it could not run.
        `round_end`: the end of the virtual-time driver's round, if it is one."""
        d = self.domain
        with self._cond:
            if not self.runnable() or d.is_dying:
                return None
            self._in_guest = True
            if self.runstate != RunstateState.running:
                self._set_runstate(RunstateState.runnable)
        try:
            return self.backend.run(deadline_ns)
        except Exception:  # noqa: BLE001 - a hypervisor bug must not take the host down
            d.hv.log.printk(Level.ERR, f"{self}: internal error, crashing the domain\n"
                            + traceback.format_exc().rstrip())
            d.crash(f"{self}: internal error")
            return None
        finally:
            with self._cond:
                self._in_guest = False
                # Virtual time stops a vCPU at the end of each round, not only of its
                # slice: that pause is no change of runstate (it stays `running`
                # until its pCPU continues it, or switches it out: descheduled).
                if not (round_end is not None and self.runnable()
                        and self.domain.hv.now() >= round_end):
                    self._set_runstate(self._state_off_cpu())
                self._cond.notify_all()

    def _state_off_cpu(self) -> RunstateState:
        return (RunstateState.runnable if self.runnable()
                else RunstateState.offline if not self.online else RunstateState.blocked)

    def descheduled(self) -> None:
        """Its pCPU switched to something else (sched/host.py)."""
        with self._cond:
            if not self._in_guest and self.runstate == RunstateState.running:
                self._set_runstate(self._state_off_cpu())

    def after_run(self, reason: ExitReason | None) -> None:
        """What a vCPU's exit means for its state (on the pCPU thread)."""
        d = self.domain
        if reason is ExitReason.HALTED:
            if not self.backend.interrupts_enabled():
                # Nothing can wake a vCPU halted with interrupts off: Xen takes it
                # offline, and powers the domain off once no vCPU is left.
                self.take_offline()
            else:
                # Block first, then look: an event arriving in between wakes us.
                with self._cond:
                    self.blocked = True
                    self._reevaluate()
                if d.event_pending(self):
                    self.wake()
        elif reason is ExitReason.SHUTDOWN:
            d.shutdown(self.backend.shutdown_reason, why=self.backend.crash_reason)
        elif reason is ExitReason.CRASHED:
            d.crash(f"{self}: {self.backend.crash_reason}")
