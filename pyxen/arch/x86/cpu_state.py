"""In-place access to the engine's x86 CPU state (QEMU's CPUX86State).

Reading registers through the C API costs ~0.3 µs a call; the hypercall path
needs a handful of them. Instead we locate the engine's CPU state block once
(unicorn_raw.find_cpu_env) and read/write it as memory. The offsets below are
those of unicorn 2.1.4; `verify_layout()` proves each one against the official
API when the first vCPU is created, so a different engine build fails loudly
instead of corrupting guests.

Writes here are only safe from the vCPU's own thread while the engine is
stopped or inside one of our hooks.
"""

from __future__ import annotations

import ctypes
import struct

from unicorn import UC_ARCH_X86, UC_HOOK_INTR, UC_MODE_64, Uc
from unicorn import x86_const as X

from .. import unicorn_raw as raw

# -- CPUX86State offsets (unicorn 2.1.4, x86-64 target) ----------------------
REGS = 0            # 16 x u64: RAX RCX RDX RBX RSP RBP RSI RDI R8..R15
EIP = 128
EFLAGS = 136        # only the non-arithmetic flags live here (IF, TF, AC, ...)
HFLAGS = 176
SEGS = 184          # 6 x SegmentCache(24): selector u32, base u64 @8, limit u32 @16, flags u32 @20
SEG_SIZE = 24
LDT = 328
TR = 352
GDT = 376
IDT = 400
CR = 424            # cr[0..4], u64 each
EFER = 592
ERROR_CODE = 5384   # exception error code (u32)
EXCEPTION_IS_INT = 5388
OLD_EXCEPTION = 5496  # in-flight exception; engine promotes a second fault to #DF if set
STATE_SPAN = 5504   # bytes of the state block we ever touch

# Register indices inside REGS.
RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI = range(8)
R8, R9, R10, R11, R12, R13, R14, R15 = range(8, 16)

# Segment indices (QEMU order).
ES, CS, SS, DS, FS, GS = range(6)

# hflags bits (QEMU's hidden flags).
HF_CPL_MASK = 3
HF_CS32 = 1 << 4
HF_SS32 = 1 << 5
HF_ADDSEG = 1 << 6
HF_PE = 1 << 7
HF_LMA = 1 << 14
HF_CS64 = 1 << 15

# Descriptor flag bits as the engine stores them (the high dword of a descriptor).
DESC_TYPE_SHIFT = 8
DESC_S = 1 << 12
DESC_DPL_SHIFT = 13
DESC_P = 1 << 15
DESC_L = 1 << 21
DESC_B = 1 << 22
DESC_G = 1 << 23

CR0_PE = 1
EFLAGS_VM = 1 << 17

_Q = struct.Struct("<Q")
_I = struct.Struct("<I")
_i = struct.Struct("<i")
_SEG = struct.Struct("<I4xQII")


class CpuState:
    """A view of one engine's CPU state block."""

    __slots__ = ("address", "mem", "regs")

    def __init__(self, address: int):
        self.address = address
        self.mem = (ctypes.c_char * STATE_SPAN).from_address(address)
        # Fast indexed access to the 16 GPRs and RIP (index 16).
        self.regs = (ctypes.c_uint64 * 17).from_address(address)

    # -- scalar fields ------------------------------------------------------
    def u64(self, off: int) -> int:
        return _Q.unpack_from(self.mem, off)[0]

    def set_u64(self, off: int, value: int) -> None:
        _Q.pack_into(self.mem, off, value & 0xFFFF_FFFF_FFFF_FFFF)

    def u32(self, off: int) -> int:
        return _I.unpack_from(self.mem, off)[0]

    def set_u32(self, off: int, value: int) -> None:
        _I.pack_into(self.mem, off, value & 0xFFFF_FFFF)

    @property
    def hflags(self) -> int:
        return _I.unpack_from(self.mem, HFLAGS)[0]

    @property
    def cpl(self) -> int:
        return _I.unpack_from(self.mem, HFLAGS)[0] & HF_CPL_MASK

    def cr(self, n: int) -> int:
        return _Q.unpack_from(self.mem, CR + 8 * n)[0]

    @property
    def efer(self) -> int:
        return _Q.unpack_from(self.mem, EFER)[0]

    def error_code(self) -> int:
        return _I.unpack_from(self.mem, ERROR_CODE)[0]

    def exception_is_int(self) -> bool:
        return _i.unpack_from(self.mem, EXCEPTION_IS_INT)[0] != 0

    def clear_old_exception(self) -> None:
        _i.pack_into(self.mem, OLD_EXCEPTION, -1)

    # -- segments -----------------------------------------------------------
    def segment(self, seg: int) -> tuple[int, int, int, int]:
        """(selector, base, limit, flags) of a segment register."""
        return _SEG.unpack_from(self.mem, SEGS + SEG_SIZE * seg)

    def table(self, off: int) -> tuple[int, int, int, int]:
        """(selector, base, limit, flags) of LDT/TR/GDT/IDT (pass the offset constant)."""
        return _SEG.unpack_from(self.mem, off)

    def set_table(self, off: int, selector: int, base: int, limit: int, flags: int) -> None:
        _SEG.pack_into(self.mem, off, selector, base, limit, flags)

    def load_segment(self, seg: int, selector: int, base: int, limit: int, flags: int) -> None:
        """Load a segment register's hidden cache and recompute the hidden flags.

        Mirrors what the CPU (and the engine's own segment-load path) derives
        from a descriptor: code size from CS.L/CS.D, stack size from SS.B,
        CPL from SS.DPL, and whether non-zero data-segment bases must be added.
        """
        _SEG.pack_into(self.mem, SEGS + SEG_SIZE * seg, selector, base, limit, flags)
        hf = self.hflags
        if seg == CS:
            if (hf & HF_LMA) and (flags & DESC_L):
                hf |= HF_CS32 | HF_SS32 | HF_CS64
            else:
                hf &= ~(HF_CS32 | HF_CS64)
                if flags & DESC_B:
                    hf |= HF_CS32
        elif seg == SS:
            hf = (hf & ~HF_CPL_MASK) | ((flags >> DESC_DPL_SHIFT) & 3)
        ss_flags = _SEG.unpack_from(self.mem, SEGS + SEG_SIZE * SS)[3]
        new = HF_SS32 if ss_flags & DESC_B else 0
        if hf & HF_CS64:
            pass  # long mode ignores DS/ES/SS bases
        elif (not (self.cr(0) & CR0_PE) or (self.u64(EFLAGS) & EFLAGS_VM)
              or not (hf & HF_CS32)):
            new |= HF_ADDSEG
        else:
            bases = (self.segment(DS)[1] | self.segment(ES)[1] | self.segment(SS)[1])
            if bases:
                new |= HF_ADDSEG
        hf = (hf & ~(HF_SS32 | HF_ADDSEG)) | new
        _I.pack_into(self.mem, HFLAGS, hf)

    def set_cpl(self, cpl: int) -> None:
        hf = self.hflags
        _I.pack_into(self.mem, HFLAGS, (hf & ~HF_CPL_MASK) | (cpl & 3))


_verified = False


def verify_layout() -> None:
    """Check every offset above against the engine's official API (once per process)."""
    global _verified
    if _verified:
        return
    uc = Uc(UC_ARCH_X86, UC_MODE_64)
    buf = ctypes.create_string_buffer(0x10000)
    uc.mem_map_ptr(0, 0x10000, 7, ctypes.addressof(buf))
    env = raw.find_cpu_env(uc, [X.UC_X86_REG_RAX, X.UC_X86_REG_RCX, X.UC_X86_REG_RDX,
                                X.UC_X86_REG_RBX])
    st = CpuState(env)
    problems = []

    def expect(what, got, want):
        if got != want:
            problems.append(f"{what}: got {got:#x}, want {want:#x}")

    uc.reg_write(X.UC_X86_REG_R13, 0x1313_1313_0000)
    expect("r13", st.regs[R13], 0x1313_1313_0000)
    uc.reg_write(X.UC_X86_REG_RIP, 0x4242_4000)
    expect("rip", st.regs[16], 0x4242_4000)
    uc.reg_write(X.UC_X86_REG_FS_BASE, 0xF5_0000)
    expect("fs.base", st.segment(FS)[1], 0xF5_0000)
    uc.reg_write(X.UC_X86_REG_GDTR, (0, 0x5000, 0x17, 0))
    expect("gdt.base", st.table(GDT)[1], 0x5000)
    expect("gdt.limit", st.table(GDT)[2], 0x17)
    uc.reg_write(X.UC_X86_REG_IDTR, (0, 0x6000, 0xFFF, 0))
    expect("idt.base", st.table(IDT)[1], 0x6000)
    uc.reg_write(X.UC_X86_REG_TR, (0x28, 0x7000, 0x67, 0x8900))
    expect("tr", st.table(TR)[0] << 32 | st.table(TR)[1], 0x28 << 32 | 0x7000)
    uc.reg_write(X.UC_X86_REG_CR3, 0x9000)
    expect("cr3", st.cr(3), 0x9000)
    uc.reg_write(X.UC_X86_REG_CR2, 0x2222_0000)
    expect("cr2", st.cr(2), 0x2222_0000)
    uc.reg_write(X.UC_X86_REG_MSR, (0xC000_0080, 0xD01))
    expect("efer", st.efer, 0xD01)
    expect("hflags.lma", st.hflags & HF_LMA, HF_LMA)
    expect("hflags.cs64", st.hflags & HF_CS64, HF_CS64)
    # A #GP with a selector error code proves the exception fields.
    code = bytes.fromhex("66b878008ed8")  # mov $0x78,%ax; mov %ax,%ds  (GDT limit 0x17)
    ctypes.memmove(ctypes.addressof(buf) + 0x1000, code, len(code))
    seen = {}

    def on_intr(handle, intno, _ud):
        seen["intno"] = intno
        seen["err"] = st.error_code()
        seen["old"] = _i.unpack_from(st.mem, OLD_EXCEPTION)[0]
        seen["is_int"] = st.exception_is_int()
        raw.uc_emu_stop(handle)

    hooks = raw.HookSet(uc._uch)
    hooks.add(UC_HOOK_INTR, raw.HOOK_INTR_CB, on_intr)
    uc.reg_write(X.UC_X86_REG_RSP, 0x8000)
    try:
        uc.emu_start(0x1000, 0x1000 + len(code), count=4)
    except Exception:  # noqa: BLE001 - stopping inside the hook may surface as an error
        pass
    expect("#GP vector", seen.get("intno", -1), 13)
    expect("error_code", seen.get("err", -1), 0x78)
    expect("old_exception", seen.get("old", -1), 13)
    expect("exception_is_int", int(seen.get("is_int", True)), 0)
    if problems:
        raise raw.EngineError(
            f"unicorn {raw.engine_version()} CPU state layout differs from what pyxen "
            f"expects ({raw.SUPPORTED_UNICORN}): " + "; ".join(problems))
    _verified = True
