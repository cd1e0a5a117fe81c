"""Exception and interrupt delivery through the guest's IDT, as the CPU does it.

The engine reports exceptions but never enters the guest's handlers itself, so
the hypervisor does what the processor's microcode would: read the gate,
check it, pick the stack (TSS.RSPn, IST), push the frame, load CS/SS/RIP and
the flags. A fault raised while doing that is combined with the first one by
the architectural rules (benign / contributory / page fault): a second
contributory fault or a page fault during a page fault becomes #DF, and a
fault while delivering #DF is a triple fault (the domain's problem, never the
host's).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from . import cpu_state as cs
from .paging import PageFault

if TYPE_CHECKING:
    from .vcpu import X86Vcpu

DE, DB, NMI, BP, OF, BR, UD, NM, DF, TS, NP, SS, GP, PF, MF, AC, MC, XM = (
    0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 16, 17, 18, 19)

# Vectors that push an error code.
HAS_ERROR_CODE = frozenset({DF, TS, NP, SS, GP, PF, AC, 21})
CONTRIBUTORY = frozenset({DE, TS, NP, SS, GP})

NAMES = {DE: "#DE", DB: "#DB", NMI: "NMI", BP: "#BP", OF: "#OF", BR: "#BR", UD: "#UD",
         NM: "#NM", DF: "#DF", TS: "#TS", NP: "#NP", SS: "#SS", GP: "#GP", PF: "#PF",
         MF: "#MF", AC: "#AC", MC: "#MC", XM: "#XM"}

RFLAGS_TF = 1 << 8
RFLAGS_IF = 1 << 9
RFLAGS_NT = 1 << 14
RFLAGS_RF = 1 << 16
RFLAGS_VM = 1 << 17

_Q = struct.Struct("<Q")
_GATE64 = struct.Struct("<HHBBHI4x")
_GATE32 = struct.Struct("<HHBBH")


class Fault(Exception):
    """An architectural exception raised by the hypervisor's emulation."""

    def __init__(self, vector: int, error_code: int | None = None, cr2: int | None = None):
        super().__init__(NAMES.get(vector, f"vector {vector}"))
        self.vector = vector
        self.error_code = error_code
        self.cr2 = cr2


class TripleFault(Exception):
    pass


class UnsupportedDelivery(Exception):
    """A delivery path pyxen does not emulate (task gates, real mode, ...)."""


def canonical(va: int) -> bool:
    top = va >> 47
    return top == 0 or top == 0x1FFFF


def describe(vector: int) -> str:
    return NAMES.get(vector, f"vector {vector}")


class ExceptionDelivery:
    def __init__(self, vcpu: X86Vcpu):
        self.vcpu = vcpu
        self.cpu = vcpu.cpu

    # -- public entry --------------------------------------------------------------
    def deliver(self, vector: int, error_code: int | None = None, *, software: bool = False,
                cr2: int | None = None) -> None:
        """Deliver `vector` now. Raises TripleFault (the domain must be shut down)."""
        first = None
        ext = 0 if software else 1
        while True:
            try:
                if cr2 is not None:
                    self.cpu.set_u64(cs.CR + 16, cr2)   # CR2, written before delivery
                self._deliver_once(vector, error_code, software, ext)
                self.cpu.clear_old_exception()
                return
            except Fault as f:
                second = f.vector
                if software:
                    # The INT instruction itself faulted: report it, not the next one.
                    self._rewind_software_int(vector)
                if first is None:
                    first = vector
                if vector == DF:
                    raise TripleFault(f"{describe(second)} while delivering #DF") from None
                if _makes_double_fault(vector, second):
                    vector, error_code, cr2 = DF, 0, None
                else:
                    vector, error_code, cr2 = second, f.error_code, f.cr2
                software = False
                ext = 1

    def _rewind_software_int(self, vector: int) -> None:
        """Point RIP back at the INT n / INT3 / INTO that the engine had stepped over."""
        regs = self.cpu.regs
        rip = regs[16]
        try:
            before = self._read(rip - 2, 2)
        except Fault:
            before = b""
        regs[16] = rip - (2 if before[:1] == b"\xcd" and before[1:2] == bytes([vector]) else 1)

    # -- memory helpers (implicit supervisor accesses at linear addresses) ----------
    def _read(self, va: int, size: int, *, user: bool = False) -> bytes:
        try:
            return self.vcpu.read_linear(va, size, cpl=3 if user else 0, implicit=not user)
        except PageFault as pf:
            raise Fault(PF, pf.error_code, pf.address) from None

    def _write(self, va: int, data: bytes) -> None:
        try:
            self.vcpu.write_linear(va, data, cpl=0, implicit=True)
        except PageFault as pf:
            raise Fault(PF, pf.error_code, pf.address) from None

    def _descriptor(self, selector: int, ext: int) -> int:
        """The 8-byte descriptor for `selector` from the GDT or LDT."""
        table = cs.LDT if selector & 4 else cs.GDT
        _sel, base, limit, _fl = self.cpu.table(table)
        index = selector & ~7
        if index + 7 > limit:
            raise Fault(GP, (selector & 0xFFFC) | ext)
        return _Q.unpack(self._read(base + index, 8))[0]

    # -- one attempt ----------------------------------------------------------------
    def _deliver_once(self, vector: int, error_code: int | None, software: bool,
                      ext: int) -> None:
        cpu = self.cpu
        hf = cpu.hflags
        if not cpu.cr(0) & cs.CR0_PE:
            raise UnsupportedDelivery("real-mode interrupt delivery")
        if hf & cs.HF_LMA:
            self._deliver_long(vector, error_code, software, ext)
        else:
            self._deliver_protected(vector, error_code, software, ext)

    def _gate_fault(self, vector: int, ext: int) -> Fault:
        return Fault(GP, (vector << 3) | 2 | ext)

    def _deliver_long(self, vector, error_code, software, ext):
        cpu = self.cpu
        cpl = cpu.cpl
        _s, idt_base, idt_limit, _f = cpu.table(cs.IDT)
        if vector * 16 + 15 > idt_limit:
            raise self._gate_fault(vector, ext)
        lo, sel, ist, attr, mid, hi = _GATE64.unpack(self._read(idt_base + vector * 16, 16))
        gtype = attr & 0xF
        dpl = (attr >> 5) & 3
        if gtype not in (0xE, 0xF):
            raise self._gate_fault(vector, ext)
        if software and dpl < cpl:
            raise self._gate_fault(vector, 0)
        if not attr & 0x80:
            raise Fault(NP, (vector << 3) | 2 | ext)
        target = lo | (mid << 16) | (hi << 32)
        if sel & 0xFFFC == 0:
            raise Fault(GP, ext)
        desc = self._descriptor(sel, ext)
        flags = (desc >> 32) & 0x00F0FF00
        if not (flags & cs.DESC_S) or not (flags & (8 << cs.DESC_TYPE_SHIFT)):
            raise Fault(GP, (sel & 0xFFFC) | ext)        # not a code segment
        if not (flags & cs.DESC_L) or (flags & cs.DESC_B):
            raise Fault(GP, (sel & 0xFFFC) | ext)        # must be a 64-bit code segment
        cs_dpl = (flags >> cs.DESC_DPL_SHIFT) & 3
        conforming = flags & (4 << cs.DESC_TYPE_SHIFT)
        if cs_dpl > cpl:
            raise Fault(GP, (sel & 0xFFFC) | ext)
        if not flags & cs.DESC_P:
            raise Fault(NP, (sel & 0xFFFC) | ext)
        new_cpl = cpl if conforming else cs_dpl
        regs = cpu.regs
        old_rsp = regs[cs.RSP]
        if ist:
            rsp = self._tss_stack(36 + 8 * (ist - 1), ext)
        elif new_cpl < cpl:
            rsp = self._tss_stack(4 + 8 * new_cpl, ext)
        else:
            rsp = old_rsp
        if not canonical(rsp):
            raise Fault(SS, ext)
        if not canonical(target):
            raise Fault(GP, ext)
        rsp &= ~0xF
        rflags = self.vcpu.read_rflags()
        old_ss = cpu.segment(cs.SS)[0]
        old_cs = cpu.segment(cs.CS)[0]
        rip = regs[16]
        frame = [old_ss, old_rsp, rflags, old_cs, rip]
        if error_code is not None and vector in HAS_ERROR_CODE:
            frame.append(error_code & 0xFFFF_FFFF)
        frame.reverse()   # lowest address first
        rsp -= 8 * len(frame)
        self._write(rsp, struct.pack(f"<{len(frame)}Q", *frame))
        # Commit: nothing below can fault.
        if new_cpl != cpl:
            cpu.load_segment(cs.SS, new_cpl, 0, 0, new_cpl << cs.DESC_DPL_SHIFT)
        base, limit = _base_limit(desc, flags)
        new_cs = (sel & 0xFFFC) | new_cpl
        if new_cpl != cpl or cpu.segment(cs.CS) != (new_cs, base, limit, flags):
            cpu.load_segment(cs.CS, new_cs, base, limit, flags)
        regs[cs.RSP] = rsp
        regs[16] = target
        new_flags = rflags & ~(RFLAGS_TF | RFLAGS_NT | RFLAGS_RF | RFLAGS_VM)
        if gtype == 0xE:
            new_flags &= ~RFLAGS_IF
        self.vcpu.write_rflags(new_flags)

    def _tss_stack(self, offset: int, ext: int) -> int:
        tr_sel, tr_base, tr_limit, _f = self.cpu.table(cs.TR)
        if offset + 7 > tr_limit:
            raise Fault(TS, (tr_sel & 0xFFFC) | ext)
        return _Q.unpack(self._read(tr_base + offset, 8))[0]

    def _deliver_protected(self, vector, error_code, software, ext):
        """Legacy (non-long-mode) protected mode with 32-bit interrupt/trap gates."""
        cpu = self.cpu
        cpl = cpu.cpl
        _s, idt_base, idt_limit, _f = cpu.table(cs.IDT)
        if vector * 8 + 7 > idt_limit:
            raise self._gate_fault(vector, ext)
        lo, sel, _zero, attr, hi = _GATE32.unpack(self._read(idt_base + vector * 8, 8))
        gtype = attr & 0xF
        dpl = (attr >> 5) & 3
        if gtype == 0x5:
            raise UnsupportedDelivery("task gates")
        if gtype not in (0xE, 0xF):
            raise UnsupportedDelivery(f"gate type {gtype:#x}") if gtype in (6, 7) \
                else self._gate_fault(vector, ext)
        if software and dpl < cpl:
            raise self._gate_fault(vector, 0)
        if not attr & 0x80:
            raise Fault(NP, (vector << 3) | 2 | ext)
        target = lo | (hi << 16)
        if sel & 0xFFFC == 0:
            raise Fault(GP, ext)
        desc = self._descriptor(sel, ext)
        flags = (desc >> 32) & 0x00F0FF00
        if not (flags & cs.DESC_S) or not (flags & (8 << cs.DESC_TYPE_SHIFT)):
            raise Fault(GP, (sel & 0xFFFC) | ext)
        cs_dpl = (flags >> cs.DESC_DPL_SHIFT) & 3
        conforming = flags & (4 << cs.DESC_TYPE_SHIFT)
        if cs_dpl > cpl:
            raise Fault(GP, (sel & 0xFFFC) | ext)
        if not flags & cs.DESC_P:
            raise Fault(NP, (sel & 0xFFFC) | ext)
        new_cpl = cpl if conforming else cs_dpl
        regs = cpu.regs
        rflags = self.vcpu.read_rflags()
        old_ss, ss_base, _l, ss_flags = cpu.segment(cs.SS)
        old_cs = cpu.segment(cs.CS)[0]
        esp = regs[cs.RSP] & 0xFFFF_FFFF
        frame = []
        new_ss = None
        if new_cpl < cpl:
            tr_sel, tr_base, tr_limit, _f = cpu.table(cs.TR)
            off = 4 + 8 * new_cpl
            if off + 5 > tr_limit:
                raise Fault(TS, (tr_sel & 0xFFFC) | ext)
            new_esp, ss_sel = struct.unpack("<IH", self._read(tr_base + off, 6))
            if ss_sel & 0xFFFC == 0 or (ss_sel & 3) != new_cpl:
                raise Fault(TS, (ss_sel & 0xFFFC) | ext)
            ss_desc = self._descriptor(ss_sel, ext)
            nss_flags = (ss_desc >> 32) & 0x00F0FF00
            if not nss_flags & cs.DESC_P:
                raise Fault(SS, (ss_sel & 0xFFFC) | ext)
            nss_base, nss_limit = _base_limit(ss_desc, nss_flags)
            new_ss = (ss_sel, nss_base, nss_limit, nss_flags)
            frame += [old_ss, esp]
            esp, ss_base = new_esp, nss_base
        frame += [rflags & 0xFFFF_FFFF, old_cs, regs[16] & 0xFFFF_FFFF]
        if error_code is not None and vector in HAS_ERROR_CODE:
            frame.append(error_code & 0xFFFF_FFFF)
        frame.reverse()
        esp = (esp - 4 * len(frame)) & 0xFFFF_FFFF
        self._write((ss_base + esp) & 0xFFFF_FFFF, struct.pack(f"<{len(frame)}I", *frame))
        if new_ss is not None:
            cpu.load_segment(cs.SS, *new_ss)
        base, limit = _base_limit(desc, flags)
        cpu.load_segment(cs.CS, (sel & 0xFFFC) | new_cpl, base, limit, flags)
        regs[cs.RSP] = esp if (ss_flags & cs.DESC_B or new_ss) else (
            (regs[cs.RSP] & ~0xFFFF) | (esp & 0xFFFF))
        regs[16] = target
        new_flags = rflags & ~(RFLAGS_TF | RFLAGS_NT | RFLAGS_RF | RFLAGS_VM)
        if gtype == 0xE:
            new_flags &= ~RFLAGS_IF
        self.vcpu.write_rflags(new_flags)


def _base_limit(desc: int, flags: int) -> tuple[int, int]:
    """Base and byte-granular limit of an 8-byte segment descriptor."""
    base = ((desc >> 16) & 0xFFFFFF) | (((desc >> 56) & 0xFF) << 24)
    limit = (desc & 0xFFFF) | ((desc >> 32) & 0xF0000)
    if flags & cs.DESC_G:
        limit = (limit << 12) | 0xFFF
    return base, limit


def _makes_double_fault(first: int, second: int) -> bool:
    if first in CONTRIBUTORY and second in CONTRIBUTORY:
        return True
    if first == PF and (second in CONTRIBUTORY or second == PF):
        return True
    return False
