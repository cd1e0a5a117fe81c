"""The x86 engine of a domain: one Unicorn instance that its vCPUs take turns on.

Memory: the engine's physical address space is the guest-physical space, built
from the domain's p2m (runs of machine frames mapped with mem_map_ptr). Who
walks the guest's page tables is a per-domain choice:

* software TLB (UC_TLB_VIRTUAL): on every TLB miss our fill hook walks the
  guest tables (paging.PageWalker) and composes the result with the p2m's
  per-page rights. Needed whenever the p2m restricts pages (introspection,
  dirty logging, read-only grants).
* engine walk (UC_TLB_CPU): the engine's own walker; ~20x cheaper per miss,
  no per-page control. `vcpu_mmu=auto` uses it while the p2m has no
  restricted pages.

Traps handled inline in engine hooks: VMCALL/VMMCALL (hypercalls, via the
invalid-opcode hook), exceptions and software interrupts (delivered through
the guest IDT), SYSCALL (the engine leaves it to us), CPUID, RDTSC/RDTSCP
(guest time is a function of hypervisor time), port I/O, and the
hypercall-page MSR write (caught by a short-lived code hook, since the engine
cannot trap WRMSR). Event-channel upcalls are injected between runs.
"""

from __future__ import annotations

import ctypes
import functools
import struct
import threading
import time
from collections import deque
from typing import TYPE_CHECKING

import capstone
from unicorn import (
    UC_ARCH_X86,
    UC_HOOK_CODE,
    UC_HOOK_INSN,
    UC_HOOK_INSN_INVALID,
    UC_HOOK_INTR,
    UC_HOOK_MEM_UNMAPPED,
    UC_HOOK_TLB_FILL,
    UC_MODE_64,
    UC_TLB_CPU,
    UC_TLB_VIRTUAL,
    Uc,
)
from unicorn import x86_const as X

from ...abi.constants import Errno, HvmParam
from ...hypervisor.errors import GuestFault
from ...hypervisor.guest_memory import UnbackedGPA
from ...hypervisor.log import Level
from ...hypervisor.p2m import P2MType
from ...hypervisor.sched.vtime import VMEXIT_NS
from .. import unicorn_raw as raw
from ..backend import ExitReason
from . import cpu_state as cs
from . import hvm_context
from .cpuid import CPU_MODEL, MAXPHYADDR, XEN_CPUID_BASE, XEN_HYPERCALL_MSR
from .exceptions import (
    GP,
    PF,
    UD,
    ExceptionDelivery,
    TripleFault,
    UnsupportedDelivery,
    canonical,
    describe,
)
from .hypercall_page import hypercall_page
from .paging import Access, PageFault, PageWalker

if TYPE_CHECKING:
    from ...hypervisor.domain import Domain
    from .vcpu import X86Vcpu

UNTIL = 1 << 63                  # never reached: non-canonical, so RIP can't get there
UNTIL_PAGE = (UNTIL - 1) & ~0xFFF  # the engine probes the page below `until`; we map it
PRIVATE_GPA = 1 << 40            # hypervisor-only engine pages live above guest reach
VMCALL = b"\x0f\x01\xc1"
VMMCALL = b"\x0f\x01\xd9"
MSR_WINDOW_INSNS = 100_000       # how long to watch for the hypercall-page WRMSR
DEBUG_PORT = 0xE9                # Xen's HVM debug console port
SLICE_S = 0.005                  # how long a vCPU keeps the engine while others wait
# Other threads never call uc_emu_stop on a running engine: unicorn 2.1.4 checks
# for a stop request after each memory access *inside* an instruction and then
# restarts the instruction from its beginning, so an asynchronous uc_emu_stop
# can make a `lock xadd`/`xchg`/`cmpxchg` whose store was done run again. They
# set the engine's stop flag instead (raw.StopFlag: the engine stops itself at
# the next translation-block boundary). Runs are not counted (uc_emu_start's
# `count`): that calls a function before every instruction (~20x slower).
HF_INHIBIT_IRQ = 1 << 3          # hflags: the instruction after STI / MOV SS
MSR_TSC_AUX = 0xC000_0103

CR0_PG = 1 << 31
CR4_OSXSAVE = 1 << 18
EFER_SCE = 1 << 0
EFER_LMA = 1 << 10
RFLAGS_IF = 1 << 9
RFLAGS_AC = 1 << 18
RFLAGS_RF = 1 << 16
MSR_STAR, MSR_LSTAR, MSR_CSTAR, MSR_FMASK = 0xC000_0081, 0xC000_0082, 0xC000_0083, 0xC000_0084

_CR5 = struct.Struct("<5Q")
_I = struct.Struct("<I")
_i = struct.Struct("<i")
_EPERM = (-int(Errno.EPERM)) & 0xFFFF_FFFF_FFFF_FFFF
_HYPERCALL_INSNS = (VMCALL, VMMCALL)
_ARG_REGS_64 = (cs.RDI, cs.RSI, cs.RDX, cs.R10, cs.R8, cs.R9)
_ARG_REGS_32 = (cs.RBX, cs.RCX, cs.RDX, cs.RSI, cs.RDI, cs.RBP)
_Q = struct.Struct("<Q")
_ACCESS_OF_MEM_TYPE = (int(Access.READ), int(Access.WRITE), int(Access.FETCH))  # UC_MEM_* - 16
_WRITE = int(Access.WRITE)
_ACCESS_PERM = {int(Access.READ): 1, int(Access.WRITE): 2, int(Access.FETCH): 4}
_FLAGS = struct.Struct("<Q32xI")      # EFLAGS (non-arithmetic part) ... HFLAGS


@functools.lru_cache(maxsize=3)
def _disassembler(bits: int) -> capstone.Cs:
    mode = {64: capstone.CS_MODE_64, 32: capstone.CS_MODE_32, 16: capstone.CS_MODE_16}[bits]
    return capstone.Cs(capstone.CS_ARCH_X86, mode)


class _TlbEntry(ctypes.Structure):
    _fields_ = [("paddr", ctypes.c_uint64), ("perms", ctypes.c_int)]


class _Msr(ctypes.Structure):
    _fields_ = [("rid", ctypes.c_uint32), ("value", ctypes.c_uint64)]


def _merge_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """(first, count) ranges → sorted, merged [lo, hi) ranges."""
    out: list[list[int]] = []
    for lo, hi in sorted((g, g + n) for g, n in ranges):
        if out and lo <= out[-1][1]:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return [(lo, hi) for lo, hi in out]


def _env_of(uc: Uc) -> int:
    return raw.find_cpu_env(uc, [X.UC_X86_REG_RAX, X.UC_X86_REG_RCX, X.UC_X86_REG_RDX,
                                 X.UC_X86_REG_RBX])


def _bare_engine() -> Uc:
    uc = Uc(UC_ARCH_X86, UC_MODE_64)
    uc.ctl_set_cpu_model(CPU_MODEL)
    return uc


def new_engine() -> tuple[Uc, int]:
    """A ready x86-64 engine with pyxen's CPU model, and the address of its CPU state."""
    cs.verify_layout()
    raw.find_halted_offset(_bare_engine, _env_of)
    uc = _bare_engine()
    return uc, _env_of(uc)


class TurnQueue:
    """The vCPUs of a domain take turns on its engine, first come first served."""

    def __init__(self):
        self._cv = threading.Condition(threading.Lock())
        self._queue: deque = deque()
        self.owner = None

    def acquire(self, who, give_up) -> bool:
        """Wait for the engine; False (without it) if `give_up()` turns true meanwhile."""
        with self._cv:
            if self.owner is None and not self._queue:
                self.owner = who
                return True
            self._queue.append(who)
            try:
                while self.owner is not None or self._queue[0] is not who:
                    if give_up():
                        return False
                    self._cv.wait(0.05)
                self.owner = who
                return True
            finally:
                self._queue.remove(who)
                self._cv.notify_all()

    def release(self) -> None:
        with self._cv:
            self.owner = None
            if self._queue:
                self._cv.notify_all()

    def wake_waiters(self) -> None:
        with self._cv:
            self._cv.notify_all()

    @property
    def waiting(self) -> int:
        return len(self._queue)


class DomainEngine:
    """One engine per domain; its vCPUs take turns on it (`current` is running).

    Why not one engine per vCPU: the engine compiles locked instructions
    without atomicity between instances, and keeps translated code per
    instance with no coherency between them. Sharing one engine makes a
    guest's `lock xadd` exact and code written by one vCPU visible to the
    others; the price is that a domain's vCPUs do not run in parallel.
    """

    def __init__(self, arch, domain: Domain, engine: tuple[Uc, int] | None = None):
        self.arch = arch
        self.domain = d = domain
        self.hv = d.hv
        self.phys = d.phys
        self.uc, env = engine or new_engine()
        self.handle = self.uc._uch
        self.cpu = cs.CpuState(env)
        # The engine's "CPU halted" flag: set by HLT, cleared when a run starts.
        self._halted = ctypes.c_int32.from_address(
            env + raw.find_halted_offset(_bare_engine, _env_of))
        self._env = self.cpu.mem
        self.regs = self.cpu.regs
        self.walker = PageWalker(self.phys, maxphyaddr=MAXPHYADDR)
        self._walk_state: tuple | None = None
        self._walk_cr3 = self._walk_cr0 = self._walk_cr4 = -1
        self._translate = self.walker.translate
        self.delivery = ExceptionDelivery(self)
        self._dispatch = self.hv.hypercalls.dispatch
        self._machine_view = self.hv.machine.view
        self._p2m_lookup = d.p2m.lookup
        self._vmcall_sites: dict[int, int] = {}
        self.current: X86Vcpu | None = None      # whose state the engine holds
        self.reset_context = raw.CpuContext(self.handle)   # a CPU just out of reset
        self.reset_context.save(self.handle)
        self.turns = TurnQueue()
        self.gate = d.guest_gate
        self.gate.stop_guest = self.stop_for_update
        self.crash_reason = ""
        self.shutdown_reason = 0
        self._crash: str | None = None
        self._shutdown_on_exit: int | None = None
        self._in_emu = False
        self._emu_thread = 0                        # the thread inside emu_start
        self._run_lock = threading.Lock()
        self._slice_start = 0.0
        self._deadline: int | None = None          # end of the current time slice
        self._fill_fault: tuple[int, int, int] | None = None
        self._ro_grant_write = False
        self._replaying = False
        self._replay_pf: tuple[int, int] | None = None
        self._replay_other: int | None = None

        self._msr_hook: int | None = None
        self._msr_budget = 0
        self._u64 = ctypes.c_uint64()
        self._u64_ptr = ctypes.addressof(self._u64)
        self._msr = _Msr()
        self._tlb_entry_ptr = 0
        self._tlb_entry: _TlbEntry | None = None
        # Engine memory: guest-physical runs, and one private page for the `until` probe.
        self._regions: dict[int, int] = {}          # gpa -> size mapped in the engine
        self._remap_all = True
        self._remap = False                          # some ranges are dirty
        self._dirty: list[tuple[int, int]] = []      # gfn ranges changed since the last sync
        self._dirty_lock = threading.Lock()
        # Before any code is translated: blocks translated earlier would not stop.
        # Under virtual time it also counts guest code and ends slices (vtime.py).
        self._vclock = self.hv.vclock
        self._stop_flag = raw.StopFlag(self.handle, counting=self._vclock is not None)
        raw.flush_all_code(self.handle)
        self._private = ctypes.create_string_buffer(4096)
        self.uc.mem_map_ptr(PRIVATE_GPA, 4096, 5, ctypes.addressof(self._private))
        self._mmu_mode = None
        self._choose_mmu()
        d.p2m.subscribe(self._p2m_changed)
        self._install_hooks()

    # -- engine set-up ------------------------------------------------------------
    def _install_hooks(self) -> None:
        hooks = self.hooks = raw.HookSet(self.handle)
        hooks.add(UC_HOOK_INSN_INVALID, raw.HOOK_INSN_INVALID_CB, self._on_invalid_opcode)
        hooks.add(UC_HOOK_INTR, raw.HOOK_INTR_CB, self._on_interrupt)
        hooks.add(UC_HOOK_INSN, raw.HOOK_INSN_SKIP_CB, self._on_cpuid, insn=X.UC_X86_INS_CPUID)
        hooks.add(UC_HOOK_INSN, raw.HOOK_INSN_SKIP_CB, self._on_rdtsc, insn=X.UC_X86_INS_RDTSC)
        hooks.add(UC_HOOK_INSN, raw.HOOK_INSN_SKIP_CB, self._on_rdtscp,
                  insn=X.UC_X86_INS_RDTSCP)
        hooks.add(UC_HOOK_INSN, raw.HOOK_INSN_VOID_CB, self._on_syscall,
                  insn=X.UC_X86_INS_SYSCALL)
        hooks.add(UC_HOOK_INSN, _OUT_CB, self._on_out, insn=X.UC_X86_INS_OUT)
        hooks.add(UC_HOOK_INSN, _IN_CB, self._on_in, insn=X.UC_X86_INS_IN)
        hooks.add(UC_HOOK_MEM_UNMAPPED, raw.HOOK_MEM_INVALID_CB, self._on_unmapped)
        hooks.add(UC_HOOK_TLB_FILL, raw.HOOK_TLB_FILL_CB, self._on_tlb_fill)

    def _choose_mmu(self) -> None:
        want = self.hv.params["vcpu_mmu"]
        if want == "auto":
            want = "software" if self.domain.p2m.restricted_pages else "engine"
        mode = UC_TLB_VIRTUAL if want == "software" else UC_TLB_CPU
        if mode != self._mmu_mode:
            raw.set_tlb_mode(self.handle, mode)
            raw.flush_tlb(self.handle)
            self._mmu_mode = mode

    @property
    def software_mmu(self) -> bool:
        return self._mmu_mode == UC_TLB_VIRTUAL

    def _p2m_changed(self, gfn: int, count: int) -> None:
        with self._dirty_lock:
            self._dirty.append((gfn, count))
        self._remap = True
        self._vmcall_sites.clear()
        self.walker.invalidate_gfns(gfn, count)
        if self._in_emu:
            self.stop()

    def _sync_memory(self) -> None:
        """Bring the engine's guest-physical mappings in line with the p2m.

        Only the ranges that changed are unmapped and mapped again (a balloon
        driver changes a few pages at a time; remapping everything would cost
        tens of milliseconds per change in a fragmented physmap).
        """
        if self._remap_all:
            self._remap_all = False
            with self._dirty_lock:
                self._dirty.clear()
            self._remap = False
            for gpa, size in list(self._regions.items()):
                self.uc.mem_unmap(gpa, size)
            self._regions.clear()
            self._map_runs(self.domain.p2m.runs())
        elif self._remap:
            self._remap = False
            with self._dirty_lock:
                dirty, self._dirty = self._dirty, []
            for lo, hi in _merge_ranges(dirty):
                self._unmap_range(lo << 12, hi << 12)
                self._map_runs(self.domain.p2m.runs(lo, hi - 1))
        else:
            return
        raw.flush_tlb(self.handle)
        self._choose_mmu()

    def _map_runs(self, runs) -> None:
        host = self.hv.machine.host_address
        for run in runs:
            gpa = run.gfn << 12
            size = run.count << 12
            self.uc.mem_map_ptr(gpa, size, 7, host(run.mfn))
            self._regions[gpa] = size

    def _unmap_range(self, lo: int, hi: int) -> None:
        """Unmap whatever the engine maps in [lo, hi), splitting regions at the ends."""
        for start, size in list(self._regions.items()):
            end = start + size
            if end <= lo or start >= hi:
                continue
            cut_lo, cut_hi = max(start, lo), min(end, hi)
            self.uc.mem_unmap(cut_lo, cut_hi - cut_lo)
            del self._regions[start]
            if start < cut_lo:
                self._regions[start] = cut_lo - start
            if cut_hi < end:
                self._regions[cut_hi] = end - cut_hi

    # -- taking turns -----------------------------------------------------------------
    def switch_to(self, v: X86Vcpu) -> None:
        """Load `v`'s CPU state into the engine (the caller holds the turn)."""
        cur = self.current
        if cur is not v:
            if cur is not None:
                cur.context.save(self.handle)
                cur.cpu = cur.saved_cpu
            (v.context if v.started else self.reset_context).restore(self.handle)
            self.current = v
            v.cpu = self.cpu
            raw.flush_tlb(self.handle)
            self._walk_state = None
            self._walk_cr3 = -1
        if v.pending_record is not None:
            rec, v.pending_record = v.pending_record, None
            hvm_context.apply_record(self, rec)
            raw.flush_tlb(self.handle)
        v.started = True

    def release_turn(self) -> None:
        self.turns.release()

    # -- the run loop ---------------------------------------------------------------
    def _stop_reason(self) -> ExitReason:
        self.crash_reason, self._crash = self._crash or "", None
        if self._shutdown_on_exit is not None:
            self.shutdown_reason, self._shutdown_on_exit = self._shutdown_on_exit, None
            return ExitReason.SHUTDOWN
        return ExitReason.CRASHED

    def run_current(self, deadline_ns: int | None = None) -> ExitReason:
        """Run the current vCPU until an exit, or until system time `deadline_ns`
        (the caller holds the turn)."""
        v = self.current
        h = self.handle
        gate = self.gate
        now = self.hv.now
        vclock = self._vclock
        if vclock is not None:
            # Virtual time: the engine's budget ends the slice, exactly; no ticker.
            arm = self._stop_flag.arm
            self._deadline = None
        else:
            self._deadline = deadline_ns
            if deadline_ns is not None:
                self.arch.ticker.watch(self)  # it stops the engine when the slice ends
        while True:
            if deadline_ns is not None and now() >= deadline_ns:
                return ExitReason.KICKED
            with self._run_lock:
                if v.kick_requested:
                    v.kick_requested = False
                    return ExitReason.KICKED
                self._in_emu = True
                self._emu_thread = threading.get_ident()
                # Requests from now on stop this run; older ones were for past runs
                # (kicks are looked at just above; the ticker repeats the others).
                self._stop_flag.clear()
            gate.enter_guest()
            try:
                # Inside the gate: a p2m change made by an updater holding it is in
                # the engine's mappings before any guest instruction runs.
                if self._remap_all or self._remap:
                    self._sync_memory()
                self._fill_fault = None
                self._ro_grant_write = False
                if v.upcall_vector_due():
                    self._inject_upcall(v)
                # The engine keeps the last contributory exception to build #DF, and
                # its own end-of-run probe of `until` raises one (#GP, non-canonical):
                # left alone, two exits in a row turn the next guest exception into a
                # "triple fault" inside the engine. We deliver exceptions ourselves.
                self.cpu.clear_old_exception()
                self._slice_start = time.monotonic()
                if vclock is not None:
                    arm.limit = vclock.budget_limit(arm, deadline_ns, v.upcall_blocked)
                    vclock.enter(arm)
                err = 0 if self._crash is not None else raw.uc_emu_start(
                    h, self.regs[16], UNTIL, 0, 0)
            finally:
                if vclock is not None:
                    vclock.leave()
                gate.leave_guest()
                with self._run_lock:
                    self._in_emu = False
            if self._crash is not None:
                return self._stop_reason()
            if err == 0:
                # Stopped (stop flag, or one of our hooks), or the guest executed HLT
                # (the engine returns after it; the flag is cleared by any other exit).
                if self._halted.value:
                    return ExitReason.HALTED
                if self.turns.waiting:
                    return ExitReason.KICKED      # let another vCPU have the engine
                continue
            if self._fill_fault is not None:
                self._resolve_fill_fault()
                if self._crash is not None:
                    return self._stop_reason()
                continue
            if self._ro_grant_write:
                self._ro_grant_write = False
                self._deliver(GP, 0)
                continue
            self.crash_reason = (f"engine stopped: {raw.uc_strerror(err).decode()} "
                                 f"at rip {self.regs[16]:#x}")
            return ExitReason.CRASHED

    def _inject_upcall(self, v: X86Vcpu) -> None:
        """Deliver the event-channel upcall vector if the guest can take it now."""
        vector = v.upcall_vector()
        mem = self._env
        if (not _Q.unpack_from(mem, cs.EFLAGS)[0] & RFLAGS_IF
                or _I.unpack_from(mem, cs.HFLAGS)[0] & HF_INHIBIT_IRQ):
            v.upcall_blocked = True      # the ticker looks again shortly
            if self._vclock is None:     # (virtual time: the run's budget is cut short)
                self.arch.ticker.watch(self)
            return
        v.upcall_blocked = False
        self._deliver(vector)

    def _stop_here(self) -> None:
        """Make the running engine return (the caller holds _run_lock).

        From one of our hooks (the thread running guest code) it stops at once;
        from any other thread at the next block boundary, through the stop flag
        (never uc_emu_stop from another thread: see raw.StopFlag).
        """
        if self._in_emu:
            if threading.get_ident() == self._emu_thread:
                raw.uc_emu_stop(self.handle)
            else:
                self._stop_flag.request()

    def stop(self) -> None:
        """Make the running guest code return soon (any thread)."""
        with self._run_lock:
            self._stop_here()
        self.arch.ticker.watch(self)

    def stop_for_update(self) -> None:
        """The gate: the hypervisor waits to update this domain's shared words."""
        self.stop()

    def kick(self, v: X86Vcpu) -> None:
        with self._run_lock:
            v.kick_requested = True
            if self.current is v:
                self._stop_here()
        self.turns.wake_waiters()
        self.arch.ticker.watch(self)

    def ticker_poll(self) -> bool:
        """For the ticker (every millisecond): stop the engine if someone waits for it.

        Returns whether to keep watching. A request made just before a run
        starts is cleared by it, hence the repeats.
        """
        v = self.current
        deadline = self._deadline
        with self._run_lock:
            wants = (self.gate.waiting
                     or (v is not None and v.kick_requested)
                     # Under virtual time the run's budget does these, at exact points.
                     or (self._vclock is None
                         and ((deadline is not None and self._in_emu
                               and self.hv.now() >= deadline)
                              or (v is not None and v.upcall_blocked)
                              or (self.turns.waiting
                                  and time.monotonic() - self._slice_start >= SLICE_S))))
            if wants and self._in_emu:
                self._stop_flag.request()
            return bool(wants or self.turns.waiting
                        or (deadline is not None and self._in_emu))

    def interrupts_enabled(self) -> bool:
        return bool(self.cpu.u64(cs.EFLAGS) & RFLAGS_IF)

    # -- register helpers ------------------------------------------------------------
    def read_rflags(self) -> int:
        raw.uc_reg_read(self.handle, X.UC_X86_REG_RFLAGS, self._u64_ptr)
        return self._u64.value

    def write_rflags(self, value: int) -> None:
        self._u64.value = value
        raw.uc_reg_write(self.handle, X.UC_X86_REG_RFLAGS, self._u64_ptr)

    def read_msr(self, index: int) -> int:
        self._msr.rid = index
        raw.uc_reg_read(self.handle, X.UC_X86_REG_MSR, ctypes.addressof(self._msr))
        return self._msr.value

    def write_msr(self, index: int, value: int) -> None:
        self._msr.rid = index
        self._msr.value = value
        raw.uc_reg_write(self.handle, X.UC_X86_REG_MSR, ctypes.addressof(self._msr))

    def registers(self) -> dict[str, int]:
        names = ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
                 "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip"]
        out = {n: self.regs[i] for i, n in enumerate(names)}
        out["rflags"] = self.read_rflags()
        for i, n in enumerate(("cr0", "cr1", "cr2", "cr3", "cr4")):
            out[n] = self.cpu.cr(i)
        out["efer"] = self.cpu.efer
        for seg, n in ((cs.CS, "cs"), (cs.SS, "ss"), (cs.DS, "ds"), (cs.ES, "es"),
                       (cs.FS, "fs"), (cs.GS, "gs")):
            out[n] = self.cpu.segment(seg)[0]
        out["cpl"] = self.cpu.cpl
        return out

    # -- guest memory through the guest's page tables --------------------------------
    def linear_to_gpa(self, va: int, access: Access, cpl: int, implicit: bool = False) -> int:
        """Translate one address (raises PageFault / UnbackedGPA)."""
        mem = self.cpu.mem
        cr0, _cr1, _cr2, cr3, cr4 = _CR5.unpack_from(mem, cs.CR)
        if not cr0 & CR0_PG:
            return va & 0xFFFF_FFFF
        state = (cr0, cr3, cr4, _Q.unpack_from(mem, cs.EFER)[0])
        if state != self._walk_state:
            self._resync_walker()
        if not _I.unpack_from(mem, cs.HFLAGS)[0] & cs.HF_LMA:
            va &= 0xFFFF_FFFF
        ac = bool(_Q.unpack_from(mem, cs.EFLAGS)[0] & RFLAGS_AC)
        r = self.walker.translate(va, access, cpl, implicit_supervisor=implicit, ac_flag=ac)
        return r.gpa_page | (va & 0xFFF)

    def _machine_offset(self, gpa: int, write: bool) -> int | None:
        """Offset in machine memory (None: a write the p2m drops). Raises UnbackedGPA."""
        e = self._p2m_lookup(gpa >> 12)
        if e is None:
            raise UnbackedGPA(gpa)
        if write and not e.rights & 2:
            return None
        return (e.mfn << 12) | (gpa & 0xFFF)

    def read_linear(self, va: int, size: int, *, cpl: int = 0, implicit: bool = False,
                    fetch: bool = False) -> bytes:
        access = Access.FETCH if fetch else Access.READ
        if (va & 0xFFF) + size <= 0x1000:          # one page: the common case
            off = self._machine_offset(self.linear_to_gpa(va, access, cpl, implicit), False)
            return bytes(self._machine_view[off:off + size])
        out = bytearray()
        while size > 0:
            chunk = min(size, 0x1000 - (va & 0xFFF))
            gpa = self.linear_to_gpa(va, access, cpl, implicit)
            out += self.phys.read(gpa, chunk)
            va = (va + chunk) & 0xFFFF_FFFF_FFFF_FFFF
            size -= chunk
        return bytes(out)

    def write_linear(self, va: int, data: bytes, *, cpl: int = 0,
                     implicit: bool = False) -> None:
        if (va & 0xFFF) + len(data) <= 0x1000:
            off = self._machine_offset(self.linear_to_gpa(va, Access.WRITE, cpl, implicit), True)
            if off is not None:
                self._machine_view[off:off + len(data)] = data
            return
        pos = 0
        gpas = []
        while pos < len(data):   # translate every page first: a fault writes nothing
            chunk = min(len(data) - pos, 0x1000 - (va & 0xFFF))
            gpas.append((self.linear_to_gpa(va, Access.WRITE, cpl, implicit), chunk))
            va = (va + chunk) & 0xFFFF_FFFF_FFFF_FFFF
            pos += chunk
        pos = 0
        for gpa, chunk in gpas:
            self.phys.write(gpa, data[pos:pos + chunk])
            pos += chunk

    def copy_from_guest(self, va: int, size: int) -> bytes:
        if size < 0:
            raise GuestFault(va)
        if self.cpu.hflags & cs.HF_LMA:
            if not canonical(va) or not canonical((va + max(size, 1) - 1) & (2**64 - 1)):
                raise GuestFault(va)
        try:
            return self.read_linear(va, size, cpl=self.cpu.cpl)
        except (PageFault, UnbackedGPA):
            raise GuestFault(va) from None

    def copy_to_guest(self, va: int, data: bytes) -> None:
        if self.cpu.hflags & cs.HF_LMA:
            if not canonical(va) or not canonical((va + max(len(data), 1) - 1) & (2**64 - 1)):
                raise GuestFault(va)
        try:
            self.write_linear(va, data, cpl=self.cpu.cpl)
        except (PageFault, UnbackedGPA):
            raise GuestFault(va) from None

    # -- exceptions -----------------------------------------------------------------
    def _deliver(self, vector: int, error_code: int | None = None, *, software: bool = False,
                 cr2: int | None = None) -> None:
        try:
            self.delivery.deliver(vector, error_code, software=software, cr2=cr2)
        except TripleFault as e:
            self._triple_fault(str(e))
        except UnsupportedDelivery as e:
            self._fatal(f"{describe(vector)}: {e} not supported")
        except UnbackedGPA as e:
            self._fatal(f"{describe(vector)} delivery touched unbacked memory ({e})")

    def _triple_fault(self, why: str) -> None:
        d = self.domain
        self.hv.log.printk(Level.INFO, f"{self.current.vcpu}: Triple fault ({why}) - invoking HVM "
                                       f"shutdown action {d.params[HvmParam.TRIPLE_FAULT_REASON]}")
        self._shutdown_on_exit = d.params[HvmParam.TRIPLE_FAULT_REASON]
        self._fatal(f"triple fault ({why})")

    def _fatal(self, why: str) -> None:
        """Stop this vCPU; the core crashes (or shuts down) the domain."""
        if self._crash is None:
            self._crash = why
        raw.uc_emu_stop(self.handle)

    def _on_interrupt(self, _uc, intno: int, _ud) -> None:
        cpu = self.cpu
        if self._replaying:
            if intno == PF:
                self._replay_pf = (cpu.cr(2), cpu.error_code())
            raw.uc_emu_stop(self.handle)
            cpu.clear_old_exception()
            if intno != PF:
                self._replay_other = intno
            return
        mem = cpu.mem
        software = _i.unpack_from(mem, cs.EXCEPTION_IS_INT)[0] != 0
        error_code = None if software else _I.unpack_from(mem, cs.ERROR_CODE)[0]
        self._deliver(intno, error_code, software=software)

    def _resolve_fill_fault(self) -> None:
        """A guest #PF seen by the software walker: get the exact CR2, then deliver it.

        The fill hook only learns the page, not the byte address. So the one
        faulting instruction is replayed on the engine's own walker, which raises
        the same #PF with the exact address (both walkers implement the same
        rules): the interrupt hook records it and stops the engine before any
        further instruction runs. `until` is the next instruction, so that if the
        walkers ever disagreed the instruction would simply complete.
        """
        page, _access, error_code = self._fill_fault
        self._fill_fault = None
        rip = self.regs[16]
        length = self._instruction_length(rip)
        self._replaying = True
        self._replay_pf = None
        self._replay_other = None
        try:
            # The faulting access is not in the TLB (that is why it was filled), so the
            # engine walks for it; nothing needs flushing first.
            raw.set_tlb_mode(self.handle, UC_TLB_CPU)
            self.cpu.clear_old_exception()
            if length:
                raw.uc_emu_start(self.handle, rip, rip + length, 0, 0)
            else:   # undecodable: let the engine count one instruction (slow but exact)
                raw.uc_emu_start(self.handle, rip, UNTIL, 0, 1)
        finally:
            self._replaying = False
            raw.set_tlb_mode(self.handle, UC_TLB_VIRTUAL)
            # Entries the engine's walk made (the instruction's own fetch) lack the p2m's
            # restrictions: drop them when the p2m restricts anything.
            if self.domain.p2m.restricted_pages:
                raw.flush_tlb(self.handle)
        if self._replay_pf is not None:
            cr2, err = self._replay_pf
        elif self._replay_other is None:
            # The engine's walk did not fault, so the instruction has completed.
            self.hv.log.printk(Level.DEBUG, f"{self.current.vcpu}: walkers disagree at {page:#x}")
            return
        else:
            self._deliver(self._replay_other, self.cpu.error_code())
            return
        self._deliver(PF, err, cr2=cr2)

    def _instruction_length(self, rip: int) -> int | None:
        """Length of the instruction at RIP (capstone), or None if it cannot be read."""
        hf = self.cpu.hflags
        md = _disassembler(64 if hf & cs.HF_CS64 else 32 if hf & cs.HF_CS32 else 16)
        code = b""
        for n in (15, 0x1000 - (rip & 0xFFF)):
            try:
                code = self.read_linear(rip, min(n, 15), cpl=self.cpu.cpl, fetch=True)
                break
            except (PageFault, UnbackedGPA):
                continue
        for _addr, size, _mn, _op in md.disasm_lite(code, rip, 1):
            return size
        return None

    # -- hooks ----------------------------------------------------------------------
    def _on_tlb_fill(self, _uc, va: int, mem_type: int, entry: int, _ud,
                     _cr=_CR5.unpack_from, _flags=_FLAGS.unpack_from,
                     _access_of=_ACCESS_OF_MEM_TYPE, _perm_of=(1, 2, 4)) -> bool:
        """Software TLB miss: guest page walk composed with the p2m.

        The hottest path of the software MMU (budget: 3 µs a miss, ~1 µs of which
        is the engine's call into Python), hence the bound locals.
        """
        if va == UNTIL_PAGE:
            self._set_tlb(entry, PRIVATE_GPA, 5)
            return True
        access = _access_of[mem_type - 16]
        mem = self._env
        cr0, _cr1, _cr2, cr3, cr4 = _cr(mem, 424)          # cpu_state.CR
        if not cr0 & CR0_PG:
            gpa = va & 0xFFFF_F000
            perms = 7
        else:
            if cr3 != self._walk_cr3 or cr0 != self._walk_cr0 or cr4 != self._walk_cr4:
                self._resync_walker()
            eflags, hflags = _flags(mem, 136)                # cpu_state.EFLAGS, HFLAGS
            try:
                gpa, writable, _user, executable, dirty, _size, _g = self._translate(
                    va, access, hflags & 3, ac_flag=(eflags & RFLAGS_AC) != 0)
            except PageFault as pf:
                if self._fill_fault is None:
                    self._fill_fault = (va, access, pf.error_code)
                return False
            except UnbackedGPA as e:
                self._fatal(f"guest page table in unbacked memory ({e})")
                return False
            # Write only once D is set (so the first write comes back to set it); read
            # only for data walks (SMAP may allow a fetch where it forbids a read).
            perms = ((access != 2) | (2 if (writable and dirty) else 0)
                     | (4 if executable else 0))
        e = self._p2m_lookup(gpa >> 12)
        if e is not None:
            perms &= e.rights
            if not perms & _perm_of[access]:
                if e.type == P2MType.GRANT_MAP_RO and access == _WRITE:
                    # Xen injects #GP(0) for a write through a read-only grant mapping.
                    self._ro_grant_write = True
                    return False
                self._fatal(f"p2m refuses {Access(access).name.lower()} of gfn "
                            f"{gpa >> 12:#x} ({e.type.name})")
                return False
        if entry != self._tlb_entry_ptr:
            self._tlb_entry = _TlbEntry.from_address(entry)
            self._tlb_entry_ptr = entry
        t = self._tlb_entry
        t.paddr = gpa
        t.perms = perms
        return True

    def _resync_walker(self) -> None:
        mem = self.cpu.mem
        cr0, _cr1, _cr2, cr3, cr4 = _CR5.unpack_from(mem, cs.CR)
        efer = _Q.unpack_from(mem, cs.EFER)[0]
        self.walker.set_state(cr0, cr3, cr4, efer)
        self._walk_state = (cr0, cr3, cr4, efer)
        self._walk_cr3 = cr3
        self._walk_cr0 = cr0
        self._walk_cr4 = cr4
        self._translate = self.walker.translate

    def _set_tlb(self, entry: int, paddr: int, perms: int) -> None:
        if entry != self._tlb_entry_ptr:
            self._tlb_entry = _TlbEntry.from_address(entry)
            self._tlb_entry_ptr = entry
        e = self._tlb_entry
        e.paddr = paddr
        e.perms = perms

    def _on_unmapped(self, _uc, mem_type: int, address: int, size: int, value: int,
                     _ud) -> bool:
        kind = {19: "read", 20: "write", 21: "fetch"}.get(mem_type, "access")
        self._fatal(f"{kind} of unbacked guest-physical address {address:#x} "
                    f"(no device model)")
        return False

    def _instruction_bytes(self, rip: int, n: int) -> bytes | None:
        try:
            return self.read_linear(rip, n, cpl=self.cpu.cpl, implicit=True, fetch=True)
        except (PageFault, UnbackedGPA):
            return None

    def _on_invalid_opcode(self, _uc, _ud) -> bool:
        """#UD from the engine: a hypercall (VMCALL/VMMCALL) or a real invalid opcode.

        The hot path: the machine-memory offset of each hypercall site is cached
        by RIP and its bytes re-checked on every call, so a call costs one dict
        lookup and a 3-byte compare instead of a guest page walk. (A guest that
        remaps its code under the same RIP could confuse the cache only about its
        own #UDs.)
        """
        regs = self.regs
        rip = regs[16]
        off = self._vmcall_sites.get(rip)
        if off is None or self._machine_view[off:off + 3] not in _HYPERCALL_INSNS:
            off = self._locate_hypercall(rip)
            if off is None:
                self._deliver(UD)
                return True
        if self._vclock is not None:
            self._stop_flag.arm.count += VMEXIT_NS    # virtual time: the exit's cost
        hf = _I.unpack_from(self.cpu.mem, cs.HFLAGS)[0]
        if hf & cs.HF_CPL_MASK and hf & cs.HF_PE:
            regs[cs.RAX] = _EPERM
        elif hf & cs.HF_CS64:
            caller = self.current.caller
            caller.compat = False
            args = (regs[0], regs[7], regs[6], regs[2], regs[10], regs[8], regs[9])
            gate = self.gate
            gate.leave_guest()       # the guest is in the hypervisor: others may update
            try:
                regs[cs.RAX] = self._dispatch(caller, *args) & 0xFFFF_FFFF_FFFF_FFFF
            finally:
                gate.enter_guest()
            if caller.continuation is not None:
                self._continue_hypercall(caller, _ARG_REGS_64, 0xFFFF_FFFF_FFFF_FFFF)
                return True
        else:
            m = 0xFFFF_FFFF
            caller = self.current.caller
            caller.compat = True
            args = (regs[0] & m, regs[3] & m, regs[1] & m, regs[2] & m, regs[6] & m,
                    regs[7] & m, regs[5] & m)
            gate = self.gate
            gate.leave_guest()
            try:
                regs[cs.RAX] = self._dispatch(caller, *args) & m
            finally:
                gate.enter_guest()
            if caller.continuation is not None:
                self._continue_hypercall(caller, _ARG_REGS_32, m)
                return True
        regs[16] = rip + 3
        # The hypercall completed: like an instruction emulated on VM exit, it ends
        # any STI/MOV SS interrupt shadow, and a pending upcall is taken now (as on
        # Xen's VM entry), before the guest's next instruction.
        hf = _I.unpack_from(self.cpu.mem, cs.HFLAGS)[0]
        if hf & HF_INHIBIT_IRQ:
            _I.pack_into(self.cpu.mem, cs.HFLAGS, hf & ~HF_INHIBIT_IRQ)
        v = self.current
        if (v.upcall_check or v.upcall_blocked) and v.upcall_vector_due():
            self._inject_upcall(v)
        return True

    def _continue_hypercall(self, caller, arg_regs, mask: int) -> None:
        """Leave RIP on the hypercall instruction with the continuation's arguments
        (RAX already holds the hypercall number): the guest re-issues it when it
        runs next, after any pending event or preemption."""
        args, caller.continuation = caller.continuation, None
        regs = self.regs
        for reg, value in zip(arg_regs, args, strict=False):
            regs[reg] = value & mask

    def _locate_hypercall(self, rip: int) -> int | None:
        """Machine offset of a VMCALL/VMMCALL at `rip`, or None (then it is a real #UD)."""
        if (rip & 0xFFF) > 0xFFD:
            insn = self._instruction_bytes(rip, 3)   # straddles a page: no caching
            return -1 if insn in _HYPERCALL_INSNS else None
        # Our own walk, not the engine's translate API: a failed probe inside the
        # engine unwinds with longjmp, which must never cross Python frames.
        try:
            gpa = self.linear_to_gpa(rip, Access.FETCH, self.cpu.cpl, True)
        except (PageFault, UnbackedGPA):
            return None
        try:
            off = self.phys.machine_offset(gpa)
        except UnbackedGPA:
            return None
        if self._machine_view[off:off + 3] not in _HYPERCALL_INSNS:
            return None
        if len(self._vmcall_sites) > 4096:
            self._vmcall_sites.clear()
        self._vmcall_sites[rip] = off
        return off

    def _on_cpuid(self, _uc, _ud) -> int:
        regs = self.regs
        leaf = regs[cs.RAX] & 0xFFFF_FFFF
        a, b, c, d = self.current.cpuid.query(leaf, regs[cs.RCX] & 0xFFFF_FFFF, self.cpu.cr(4))
        regs[cs.RAX], regs[cs.RBX], regs[cs.RCX], regs[cs.RDX] = a, b, c, d
        if leaf == XEN_CPUID_BASE + 2 and self._msr_hook is None:
            self._watch_for_hypercall_msr()
        return 1

    def _on_rdtsc(self, _uc, _ud) -> int:
        tsc = self.domain.guest_tsc()
        regs = self.regs
        regs[cs.RAX] = tsc & 0xFFFF_FFFF
        regs[cs.RDX] = tsc >> 32
        return 1

    def _on_rdtscp(self, _uc, _ud) -> int:
        tsc = self.domain.guest_tsc()
        regs = self.regs
        regs[cs.RAX] = tsc & 0xFFFF_FFFF
        regs[cs.RDX] = tsc >> 32
        regs[cs.RCX] = self.read_msr(MSR_TSC_AUX) & 0xFFFF_FFFF
        return 1

    # The hypercall-page MSR: the engine cannot trap WRMSR, so once the guest has
    # asked CPUID for the MSR index we single-step-watch for the `wrmsr` for a while.
    def _watch_for_hypercall_msr(self) -> None:
        self._msr_budget = MSR_WINDOW_INSNS
        self._msr_hook = self.hooks.add(UC_HOOK_CODE, raw.HOOK_CODE_CB, self._on_code_msr)
        # Re-enter at the next instruction so the rest of this block is retranslated
        # with the watch in place.
        raw.uc_reg_write(self.handle, X.UC_X86_REG_RIP, ctypes.byref(ctypes.c_uint64(
            self.regs[16] + 2)))

    def _on_code_msr(self, _uc, address: int, size: int, _ud) -> None:
        self._msr_budget -= 1
        regs = self.regs
        if size == 2 and (regs[cs.RCX] & 0xFFFF_FFFF) == XEN_HYPERCALL_MSR:
            if self._instruction_bytes(address, 2) == b"\x0f\x30":
                value = (regs[cs.RAX] & 0xFFFF_FFFF) | ((regs[cs.RDX] & 0xFFFF_FFFF) << 32)
                self._hypercall_msr_write(value)
                self._stop_msr_watch()
                return
        if self._msr_budget <= 0:
            self._stop_msr_watch()

    def _stop_msr_watch(self) -> None:
        if self._msr_hook is not None:
            self.hooks.remove(self._msr_hook)
            self._msr_hook = None
            # Code translated while the watch was on calls into it for every
            # instruction: drop it now. (Stopping the engine from inside a code hook
            # and resuming is not safe with this engine; flushing here is.)
            raw.flush_all_code(self.handle)

    def _hypercall_msr_write(self, value: int) -> None:
        if self.cpu.cpl != 0:
            return      # WRMSR at CPL>0 faults natively before reaching here
        index = value & 0xFFF
        gpa = value & ~0xFFF
        if index != 0:
            self.hv.log.printk(Level.WARNING, f"{self.current.vcpu}: hypercall page index {index} "
                                              "ignored (only page 0 exists)")
            return
        try:
            self.phys.write(gpa, hypercall_page(vmmcall=False))
        except UnbackedGPA:
            self.hv.log.printk(Level.WARNING, f"{self.current.vcpu}: hypercall page at unbacked "
                                              f"gpa {gpa:#x}")
            return
        self.domain.arch_state["hypercall_page_gpa"] = gpa
        raw.flush_all_code(self.handle)

    def _on_syscall(self, _uc, _ud) -> None:
        cpu = self.cpu
        efer = cpu.efer
        regs = self.regs
        rip = regs[16]
        if not (efer & EFER_SCE) or not (efer & EFER_LMA):
            self._deliver(UD)
            return
        star = self.read_msr(MSR_STAR)
        target = self.read_msr(MSR_LSTAR if cpu.hflags & cs.HF_CS64 else MSR_CSTAR)
        fmask = self.read_msr(MSR_FMASK)
        rflags = self.read_rflags()
        next_rip = rip + 2
        regs[cs.RCX] = next_rip
        regs[cs.R11] = rflags & ~RFLAGS_RF
        sel = (star >> 32) & 0xFFFC
        cpu.load_segment(cs.CS, sel, 0, 0xFFFF_FFFF, 0x00AF9B00)     # 64-bit code, DPL0
        cpu.load_segment(cs.SS, sel + 8, 0, 0xFFFF_FFFF, 0x00CF9300)  # data, DPL0 → CPL0
        self.write_rflags(rflags & ~fmask & ~RFLAGS_RF)
        # The engine adds the instruction length to RIP after this hook returns (and
        # a RIP write through its API would restart the instruction): write in place.
        regs[16] = (target - 2) & 0xFFFF_FFFF_FFFF_FFFF

    def _on_out(self, _uc, port: int, size: int, value: int, _ud) -> None:
        if port == DEBUG_PORT:
            self.domain.console_write(bytes([value & 0xFF]))

    def _on_in(self, _uc, port: int, size: int, _ud) -> int:
        return (1 << (8 * size)) - 1   # no device behind any port: all ones

    # -- life cycle -----------------------------------------------------------------
    def close(self) -> None:
        self.domain.p2m.unsubscribe(self._p2m_changed)
        self.arch.ticker.forget(self)
        for v in self.domain.vcpus:
            b = v.backend
            if b is not None and getattr(b, "context", None) is not None:
                b.context.free()
        self.reset_context.free()


_OUT_CB = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint32,
                           ctypes.c_void_p)
_IN_CB = ctypes.CFUNCTYPE(ctypes.c_uint32, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                          ctypes.c_void_p)
