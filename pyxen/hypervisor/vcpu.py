"""A virtual CPU as the core sees it: scheduling state, runstate accounting, its thread.

Each vCPU runs guest code on its own host thread (the engine releases the GIL
while guest code runs). The thread sleeps while the vCPU is not runnable —
offline, blocked (HLT, SCHEDOP_block), or its domain paused or shut down —
and wakes on `wake()` or when the condition that stopped it clears.
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
        self._thread: threading.Thread | None = None
        self._in_guest = False       # between entering and leaving backend.run()
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
        self.singleshot_timer = timers.new(self._singleshot_fired, f"{self} singleshot")
        self.periodic_timer = timers.new(self._periodic_fired, f"{self} periodic")
        self.periodic_period = 0
        self.poll_timer = timers.new(self.poll_done, f"{self} poll")

    def __repr__(self) -> str:
        return f"d{self.domain.domid}v{self.vcpu_id}"

    # -- state -----------------------------------------------------------------
    def runnable(self) -> bool:
        d = self.domain
        return (self.online and not self.blocked and d.pause_count == 0
                and not d.is_shutting_down and not d.is_dying)

    def _set_runstate(self, state: RunstateState) -> None:
        now = self.domain.hv.now()
        self.runstate_time[self.runstate] += now - self.runstate_entry
        self.runstate = state
        self.runstate_entry = now

    def runstate_snapshot(self) -> tuple[RunstateState, int, list[int]]:
        with self._cond:
            now = self.domain.hv.now()
            times = list(self.runstate_time)
            times[self.runstate] += now - self.runstate_entry
            return self.runstate, self.runstate_entry, times

    def cpu_time_ns(self) -> int:
        return self.runstate_snapshot()[2][RunstateState.running]

    # -- control from other threads --------------------------------------------
    def poke(self) -> None:
        """Re-evaluate runnability: wake the thread, or stop the engine."""
        with self._cond:
            self._cond.notify_all()
        if self._in_guest and self.backend is not None and not self.runnable():
            self.backend.kick()

    def wake(self) -> None:
        """An event arrived: unblock."""
        with self._cond:
            self.blocked = False
            self._cond.notify_all()

    def block(self) -> None:
        """Called from this vCPU's own hypercall or HLT: stop until woken."""
        with self._cond:
            self.blocked = True
        if self.backend is not None:
            self.backend.kick()

    def block_unless(self, wake_now) -> None:
        """Block (SCHEDOP_block/poll) unless `wake_now()` — checked after blocking, so
        an event arriving in between is not lost."""
        with self._cond:
            self.blocked = True
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
        if not any(v.online for v in d.vcpus):
            d.hv.log.printk(Level.INFO, f"{d}: all vCPUs offline -- powering off")
            d.shutdown(ShutdownReason.poweroff)

    # -- the thread ------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=repr(self), daemon=True)
            self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _loop(self) -> None:
        d = self.domain
        hv = d.hv
        try:
            while True:
                with self._cond:
                    while not self.runnable() and not d.is_dying:
                        state = (RunstateState.offline if not self.online
                                 else RunstateState.blocked if self.blocked
                                 else RunstateState.runnable)
                        if state != self.runstate:
                            self._set_runstate(state)
                        self._cond.wait()        # every state change notifies
                    if d.is_dying:
                        break
                    if self.runstate != RunstateState.runnable:
                        self._set_runstate(RunstateState.runnable)
                    self._in_guest = True
                try:
                    reason = self.backend.run()
                finally:
                    with self._cond:
                        self._in_guest = False
                        self._set_runstate(RunstateState.runnable)
                        self._cond.notify_all()
                if reason is ExitReason.HALTED:
                    if not self.backend.interrupts_enabled():
                        # Nothing can wake a vCPU halted with interrupts off: Xen takes it
                        # offline, and powers the domain off once no vCPU is left.
                        self.take_offline()
                    else:
                        # Block first, then look: an event arriving in between wakes us.
                        with self._cond:
                            self.blocked = True
                        if d.event_pending(self):
                            self.wake()
                elif reason is ExitReason.SHUTDOWN:
                    d.shutdown(self.backend.shutdown_reason, why=self.backend.crash_reason)
                elif reason is ExitReason.CRASHED:
                    d.crash(f"{self}: {self.backend.crash_reason}")
        except Exception:  # noqa: BLE001 - a hypervisor bug must not take the host down
            hv.log.printk(Level.ERR, f"{self}: internal error, crashing the domain\n"
                          + traceback.format_exc().rstrip())
            d.crash(f"{self}: internal error")
        finally:
            with self._cond:
                self._in_guest = False
                self._cond.notify_all()
