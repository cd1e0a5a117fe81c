"""The x86 vCPU backend: one guest vCPU, run on its domain's shared engine.

A vCPU's CPU state lives in the engine while it holds the engine's turn and
in its own saved context otherwise (`cpu` points at whichever is current).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...abi.constants import HvmCallbackType, HvmParam
from ...hypervisor.event_channel import upcall_pending
from ...hypervisor.hypercall import VcpuCaller
from .. import unicorn_raw as raw
from ..backend import ExitReason, VcpuBackend
from . import cpu_state as cs
from . import hvm_context
from .cpuid import CpuidPolicy

if TYPE_CHECKING:
    from ...hypervisor.vcpu import Vcpu
    from .engine import DomainEngine

RFLAGS_IF = 1 << 9


class X86Vcpu(VcpuBackend):
    def __init__(self, arch, vcpu: Vcpu, engine: DomainEngine):
        self.arch = arch
        self.vcpu = vcpu
        self.domain = vcpu.domain
        self.engine = engine
        self.cpuid = CpuidPolicy(vcpu.vcpu_id)
        self.caller = VcpuCaller(vcpu, self)
        self.context = raw.CpuContext(engine.handle)
        self.saved_cpu = cs.CpuState(self.context.state_address)
        self.cpu = self.saved_cpu         # the engine's state block while current
        self.started = False              # the context holds this vCPU's state
        self.pending_record = None        # hvm_hw_cpu values to load at the next turn
        self.kick_requested = False
        self.upcall_check = False         # an event arrived: look for an upcall to inject
        self.upcall_blocked = False       # one is pending but RFLAGS.IF forbids it now

    def __repr__(self) -> str:
        return f"X86Vcpu({self.vcpu!r})"

    # -- running --------------------------------------------------------------------
    def run(self, deadline_ns: int | None = None) -> ExitReason:
        eng = self.engine
        asked = self.domain.hv.now()
        if not eng.turns.acquire(self, lambda: self.kick_requested):
            self.kick_requested = False
            return ExitReason.KICKED
        if deadline_ns is not None:
            # The slice starts when guest code can run: waiting for the domain's
            # engine (another of its vCPUs had it) does not use it up.
            deadline_ns += self.domain.hv.now() - asked
        try:
            eng.switch_to(self)
            self.vcpu.entered_guest()
            reason = eng.run_current(deadline_ns)
            self.crash_reason = eng.crash_reason
            self.shutdown_reason = eng.shutdown_reason
            return reason
        finally:
            eng.release_turn()

    def kick(self) -> None:
        self.engine.kick(self)

    def interrupt(self) -> None:
        """An event is pending for this vCPU: stop its guest code so it can be injected."""
        self.upcall_check = True
        if self.engine.current is self:
            self.engine.stop()

    def upcall_vector(self) -> int:
        """The vector event upcalls arrive on (0: the guest has not asked for upcalls)."""
        if self.vcpu.upcall_vector:
            return self.vcpu.upcall_vector
        via = self.domain.params[HvmParam.CALLBACK_IRQ]
        if via >> 56 == HvmCallbackType.VECTOR:
            return via & 0xFF
        return 0

    def upcall_vector_due(self) -> bool:
        """Called by the run loop before each entry (holding the turn and the gate)."""
        self.upcall_check = False
        if not self.upcall_vector():
            self.upcall_blocked = False
            return False
        if not upcall_pending(self.domain, self.vcpu):
            self.upcall_blocked = False
            return False
        return True

    def interrupts_enabled(self) -> bool:
        return bool(self.cpu.u64(cs.EFLAGS) & RFLAGS_IF)

    def event_deliverable(self) -> bool:
        """Whether a pending upcall would be taken now (ends HLT)."""
        return (self.upcall_vector() != 0 and upcall_pending(self.domain, self.vcpu)
                and self.interrupts_enabled())

    # -- guest memory (valid while this vCPU holds the engine) -------------------------
    def copy_from_guest(self, va: int, size: int) -> bytes:
        return self.engine.copy_from_guest(va, size)

    def copy_to_guest(self, va: int, data: bytes) -> None:
        self.engine.copy_to_guest(va, data)

    # -- state ------------------------------------------------------------------------
    def registers(self) -> dict[str, int]:
        cpu = self.cpu
        names = ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
                 "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip"]
        out = {n: cpu.regs[i] for i, n in enumerate(names)}
        out["rflags"] = cpu.u64(cs.EFLAGS)
        for i, n in enumerate(("cr0", "cr1", "cr2", "cr3", "cr4")):
            out[n] = cpu.cr(i)
        out["efer"] = cpu.efer
        for seg, n in ((cs.CS, "cs"), (cs.SS, "ss"), (cs.DS, "ds"), (cs.ES, "es"),
                       (cs.FS, "fs"), (cs.GS, "gs")):
            out[n] = cpu.segment(seg)[0]
        out["cpl"] = cpu.cpl
        return out

    def load_cpu_record(self, rec) -> None:
        """New CPU state (toolstack, VCPUOP_initialise): loaded at the vCPU's next turn."""
        self.pending_record = rec

    def save_cpu_record(self) -> bytes:
        """The vCPU's state as an hvm_hw_cpu record (its domain is paused)."""
        eng = self.engine
        if eng.turns.owner is not None:
            raise RuntimeError(f"{self.vcpu}: CPU state read while the domain runs")
        eng.turns.acquire(self, lambda: False)
        try:
            eng.switch_to(self)
            return hvm_context.capture_record(eng)
        finally:
            eng.release_turn()

    def close(self) -> None:
        pass      # the engine frees the contexts when the domain's engine closes
