"""A domain: its memory (p2m), vCPUs, HVM parameters, and life cycle.

Life cycle as in Xen: created paused by the toolstack, unpaused to run; a
guest ends itself with SCHEDOP_shutdown (reason recorded, vCPUs stop), the
hypervisor crashes it on fatal errors; the toolstack destroys it (dying, then
gone: its memory returns to the host).
"""

from __future__ import annotations

import threading
import uuid
from typing import TYPE_CHECKING

from ..abi.constants import (
    DOMID_XEN,
    HVM_NR_PARAMS,
    XEN_LEGACY_MAX_VCPUS,
    Errno,
    HvmParam,
    ShutdownReason,
)
from . import pvclock
from .errors import HypercallError
from .event_channel import COMPAT_ABI, NATIVE_ABI, VCPU_INFO_SIZE, EventChannels
from .grant_table import GrantTable
from .guest_gate import GuestCodeGate
from .guest_memory import DomainPhysMemory
from .log import Level
from .memory import PAGE_SHIFT, OutOfMemory
from .p2m import P2M, Access, P2MType
from .vcpu import Vcpu

if TYPE_CHECKING:
    from .hypervisor import Hypervisor


class Domain:
    def __init__(self, hv: Hypervisor, domid: int, *, handle: bytes | None = None,
                 privileged: bool = False, hvm: bool = True, max_vcpus: int = 0):
        self.hv = hv
        self.domid = domid
        self.handle = handle or uuid.uuid4().bytes
        self.is_privileged = privileged
        self.is_hvm = hvm
        self.ssidref = 0
        self.lock = threading.RLock()
        self.p2m = P2M()
        self.phys = DomainPhysMemory(self.p2m, hv.machine)
        self.tot_pages = 0
        self.max_pages = 0
        self.max_vcpus = max_vcpus
        self.vcpus: list[Vcpu] = []
        self.params = [0] * HVM_NR_PARAMS
        self.params[HvmParam.TRIPLE_FAULT_REASON] = hv.triple_fault_reason
        self.e820: list[tuple[int, int, int]] = []   # set by the toolstack (set_memory_map)
        self.pause_count = 0
        self.is_shutting_down = False
        self.is_shut_down = False
        self.shutdown_reason: int | None = None
        self.shutdown_code = -1
        self.is_dying = False
        self.crash_reason = ""
        self.created_ns = hv.now()
        self.console_line = bytearray()          # partial console_io line
        self.console_listeners: list = []        # callables(domid, bytes) for whole output
        self.arch_state: dict = {}               # per-arch domain data (e.g. hypercall page)
        self.is_xenstore = False
        self.max_evtchn_port = (1 << 17) - 1     # until the toolstack lowers it
        self.max_grant_frames = hv.params["gnttab_max_frames"]
        self.max_maptrack_frames = hv.params["gnttab_max_maptrack_frames"]
        # Words the guest and the hypervisor both update (event bits, grant flags):
        # see atomic_update().
        self.guest_gate = GuestCodeGate()
        # shared_info lives in a hypervisor-owned frame from creation on; the guest
        # maps it into its physmap with XENMAPSPACE_shared_info.
        self.shared_info_mfn = hv.machine.alloc(1, owner=DOMID_XEN)[0][0]
        hv.machine.frame(self.shared_info_mfn)[:] = bytes(4096)
        self.shared_info_gfn: int | None = None
        self.tsc_epoch_ns = self.created_ns       # guest TSC counts from creation
        self.tsc_khz = hv.arch.cpu_khz
        self.shinfo_abi = NATIVE_ABI               # 32-bit guests latch COMPAT_ABI
        pvclock.write_wallclock(hv.machine.frame(self.shared_info_mfn),
                                hv.wallclock_at_boot, NATIVE_ABI.wc_offset)
        self.evtchn = EventChannels(self)
        self.grant_table = GrantTable(self)
        self.host_upcall = None                   # Dom0: the host's event handler
        self.watchdogs: list = [None, None]       # SCHEDOP_watchdog timers (Xen has 2)
        self.cpupool = 0                          # Pool-0 until the toolstack moves it
        hv.sched.add_domain(self)

    def __repr__(self) -> str:
        return f"d{self.domid}"

    def atomic_update(self):
        """Hold while read-modify-writing a word of this domain's memory that its
        vCPUs may also update (event pending/mask/selector bits, upcall_pending,
        grant entry flags). The CPU engine does not make the guest's locked
        instructions atomic against other threads, so no guest code of this
        domain runs while this is held (see guest_gate.py). Never hold two
        domains' at once.
        """
        return self.guest_gate.update()

    def latch_shared_info_abi(self, compat: bool) -> None:
        """Fix shared_info's layout from the guest's mode, as Xen does when the guest
        sets up its event callback (32-bit guests get 32-bit event words)."""
        abi = COMPAT_ABI if compat else NATIVE_ABI
        if abi is not self.shinfo_abi:
            self.shinfo_abi = abi
            pvclock.write_wallclock(self.hv.machine.frame(self.shared_info_mfn),
                                    self.hv.wallclock_at_boot, abi.wc_offset)

    # -- time ----------------------------------------------------------------------
    def guest_tsc(self, now: int | None = None) -> int:
        """The guest's TSC: a fixed-rate function of hypervisor system time."""
        if now is None:
            now = self.hv.now()
        return pvclock.ns_to_tsc(now - self.tsc_epoch_ns, self.tsc_khz)

    # -- events ------------------------------------------------------------------------
    def vcpu_info_address(self, vcpu_id: int) -> int | None:
        """Machine byte address of a vCPU's vcpu_info (None: it has none)."""
        if self.vcpus:
            if not 0 <= vcpu_id < len(self.vcpus):
                return None
            reg = self.vcpus[vcpu_id].vcpu_info_ref
            if reg is not None:
                gfn, offset = reg
                e = self.p2m.lookup(gfn)
                if e is None or not e.rights & 2:
                    return None        # ballooned out or made read-only since
                return (e.mfn << 12) + offset
        elif vcpu_id != 0:
            return None                # the host domain: one event "vCPU"
        if vcpu_id >= XEN_LEGACY_MAX_VCPUS or self.shared_info_mfn is None:
            return None
        return (self.shared_info_mfn << 12) + vcpu_id * VCPU_INFO_SIZE

    def upcall_raised(self, vcpu_id: int) -> None:
        """A vCPU's evtchn_upcall_pending went from 0 to 1: interrupt it."""
        if self.vcpus:
            if 0 <= vcpu_id < len(self.vcpus):
                self.vcpus[vcpu_id].event_arrived()
        elif self.host_upcall is not None:
            self.host_upcall()

    def check_pollers(self, port: int) -> None:
        """Wake vCPUs in SCHEDOP_poll on `port` (or on any port)."""
        for v in self.vcpus:
            p = v.poll_port
            if p is not None and (p == 0 or p == port):
                v.poll_done()

    def set_hvm_param(self, index: int, value: int) -> None:
        self.params[index] = value

    # -- vCPUs -------------------------------------------------------------------
    def create_vcpus(self) -> None:
        for i in range(len(self.vcpus), self.max_vcpus):
            v = Vcpu(self, i)
            v.backend = self.hv.arch.create_vcpu_backend(v)
            self.vcpus.append(v)
            self.hv.sched.add_vcpu(v)

    def event_pending(self, vcpu: Vcpu) -> bool:
        """Whether an upcall is waiting that `vcpu` would take now (ends HLT/block)."""
        return vcpu.backend is not None and vcpu.backend.event_deliverable()

    # -- memory --------------------------------------------------------------------
    def populate(self, gfn: int, count: int, type_: P2MType = P2MType.RAM_RW,
                 access: Access = Access.RWX) -> None:
        """Back `count` frames from `gfn` with fresh machine frames (counts towards tot_pages).

        Whatever was mapped at those gfns before is released first.
        """
        with self.lock:
            self.unpopulate(gfn, count)
            if self.tot_pages + count > self.max_pages:
                raise HypercallError(Errno.ENOMEM, "over the domain's memory limit")
            try:
                extents = self.hv.machine.alloc(count, owner=self.domid)
            except OutOfMemory:
                raise HypercallError(Errno.ENOMEM, "host out of memory") from None
            g = gfn
            for mfn, nr in extents:
                self.p2m.set_range(g, mfn, nr, type_, access)
                g += nr
            self.tot_pages += count

    def unpopulate(self, gfn: int, count: int) -> int:
        """Remove gfns from the physmap, freeing the frames this domain owns. Returns freed."""
        # Under the gate: no guest code of this domain runs until its engine has
        # dropped the mappings (the run loop syncs inside the gate), so a frame
        # freed here is never reachable by this domain once someone else gets it.
        with self.atomic_update(), self.lock:
            owner = self.hv.machine.owner
            mine = [(mfn, n) for mfn, n in self.p2m.removed_extents(gfn, count)
                    if owner[mfn] == self.domid]
            if mine:
                # Frames still grant-mapped elsewhere stay allocated until unmapped.
                self.grant_table.pins.free_unless_pinned(mine)
                self.tot_pages -= sum(n for _, n in mine)
            return sum(n for _, n in mine)

    def release_memory(self) -> None:
        for v in self.vcpus:
            v.stop_timers()
            if v.backend is not None:
                v.backend.close()
        self.hv.arch.release_domain(self)
        self.grant_table.release()
        owner = self.hv.machine.owner
        mine = [(mfn, n) for mfn, n in self.p2m.backing() if owner[mfn] == self.domid]
        self.p2m.clear()
        self.grant_table.pins.free_unless_pinned(_coalesce(mine))
        self.tot_pages = 0
        if self.shared_info_mfn is not None:
            self.hv.machine.free([(self.shared_info_mfn, 1)])
            self.shared_info_mfn = None

    def gpa_to_machine(self, gpa: int) -> int | None:
        e = self.p2m.lookup(gpa >> PAGE_SHIFT)
        return None if e is None else (e.mfn << PAGE_SHIFT) | (gpa & 0xFFF)

    # -- life cycle ----------------------------------------------------------------
    def pause(self) -> None:
        with self.lock:
            self.pause_count += 1
        for v in self.vcpus:
            v.poke()
        for v in self.vcpus:
            v.wait_stopped()

    def unpause(self) -> None:
        with self.lock:
            if self.pause_count > 0:
                self.pause_count -= 1
        for v in self.vcpus:
            v.start()
            v.poke()

    def shutdown(self, reason: int, why: str = "") -> None:
        """Shut the domain down. A code recorded earlier (SCHEDOP_shutdown_code,
        or a previous shutdown) takes precedence over `reason`, as in Xen."""
        with self.lock:
            if self.shutdown_code == -1:
                self.shutdown_code = int(reason) & 0xFF
            reason = self.shutdown_code
            if self.is_shutting_down:
                return
            self.is_shutting_down = True
            if why:
                self.crash_reason = why
            self.shutdown_reason = int(reason)
            self.is_shut_down = True
        try:
            name = ShutdownReason(reason).name
        except ValueError:
            name = str(reason)
        self.hv.log.printk(Level.INFO, f"Domain {self.domid} shutdown: reason {name}")
        for v in self.vcpus:
            v.poke()
        self.hv.domain_state_changed(self)

    def crash(self, why: str) -> None:
        with self.lock:
            if self.is_shutting_down:
                return
        self.hv.log.printk(Level.ERR, f"Domain {self.domid} crashed: {why}")
        self.shutdown(ShutdownReason.crash, why)

    def destroy(self) -> None:
        with self.lock:
            if self.is_dying:
                return
            self.is_dying = True
        for v in self.vcpus:
            v.stop_timers()
            v.poke()
        for t in self.watchdogs:
            if t is not None:
                t.stop()
        for v in self.vcpus:
            v.join(5.0)
        self.hv.sched.remove_domain(self)
        self.evtchn.close_all()
        self.release_memory()

    # -- console_io output ---------------------------------------------------------
    def console_write(self, data: bytes) -> None:
        """Guest console output (console_io or the 0xE9 debug port)."""
        for fn in list(self.console_listeners):
            fn(self.domid, data)
        for b in data:
            if b == 0x0A:
                line = self.console_line.decode("utf-8", "replace")
                self.console_line.clear()
                self.hv.log.guest(Level.DEBUG, self.domid, line)
            elif b != 0x0D:
                self.console_line.append(b)
                if len(self.console_line) >= 1024:
                    self.hv.log.guest(Level.DEBUG, self.domid,
                                      self.console_line.decode("utf-8", "replace"))
                    self.console_line.clear()


def _coalesce(frames: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for mfn, nr in sorted(frames):
        if out and out[-1][0] + out[-1][1] == mfn:
            out[-1][1] += nr
        else:
            out.append([mfn, nr])
    return [(a, b) for a, b in out]
