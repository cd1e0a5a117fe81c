"""HVM save records (XEN_DOMCTL_sethvmcontext / gethvmcontext) for vCPU state.

The toolstack starts a PVH vCPU the way libxc does: it loads a context made
of a HEADER record, one CPU record (struct hvm_hw_cpu) per vCPU and an END
record. Segment attributes use Xen's packed "arbytes" form (type, S, DPL, P in
bits 0-7; AVL, L, D/B, G in bits 8-11); the engine keeps them as the high
dword of a descriptor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...abi import structs as S
from ...abi.constants import Errno
from ...hypervisor.errors import HypercallError
from . import cpu_state as cs
from .cpuid import TSC_KHZ

if TYPE_CHECKING:
    from ...hypervisor.domain import Domain
    from .vcpu import X86Vcpu

MSR_EFER = 0xC000_0080
MSR_STAR, MSR_LSTAR, MSR_CSTAR, MSR_FMASK = 0xC000_0081, 0xC000_0082, 0xC000_0083, 0xC000_0084
MSR_KERNEL_GS_BASE = 0xC000_0102
MSR_SYSENTER_CS, MSR_SYSENTER_ESP, MSR_SYSENTER_EIP = 0x174, 0x175, 0x176

_SEGS = (("cs", cs.CS), ("ds", cs.DS), ("es", cs.ES), ("fs", cs.FS), ("gs", cs.GS),
         ("ss", cs.SS))
_GPRS = ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
         "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")


def arbytes_to_flags(ar: int) -> int:
    return ((ar & 0xFF) << 8) | ((ar & 0xF00) << 12)


def flags_to_arbytes(flags: int) -> int:
    return ((flags >> 8) & 0xFF) | ((flags >> 12) & 0xF00)


def _records(blob: bytes):
    off = 0
    desc = S.HVM_SAVE_DESCRIPTOR
    while off + desc.size <= len(blob):
        h = desc.unpack(blob, off)
        off += desc.size
        if off + h.length > len(blob):
            raise HypercallError(Errno.EINVAL, "truncated HVM record")
        yield h.typecode, h.instance, blob[off:off + h.length]
        off += h.length
        if h.typecode == S.HVM_SAVE_CODE_END:
            return
    raise HypercallError(Errno.EINVAL, "HVM context without END record")


def load(d: Domain, blob: bytes) -> None:
    """Apply a saved context to domain `d` (paused). Raises HypercallError."""
    seen_header = False
    cpus: list[tuple[int, object]] = []
    for code, inst, body in _records(blob):
        if code == S.HVM_SAVE_CODE_HEADER:
            if len(body) != S.HVM_SAVE_HEADER.size:
                raise HypercallError(Errno.EINVAL, "bad HVM header")
            hdr = S.HVM_SAVE_HEADER.unpack(body)
            if hdr.magic != S.HVM_FILE_MAGIC or hdr.version != S.HVM_FILE_VERSION:
                raise HypercallError(Errno.EINVAL, "bad HVM header magic/version")
            seen_header = True
        elif code == S.HVM_SAVE_CODE_CPU:
            if len(body) != S.HVM_HW_CPU.size:
                raise HypercallError(Errno.EINVAL, "bad CPU record size")
            if inst >= len(d.vcpus):
                raise HypercallError(Errno.EINVAL, f"no vCPU {inst}")
            cpus.append((inst, S.HVM_HW_CPU.unpack(body)))
        elif code == S.HVM_SAVE_CODE_END:
            break
        else:
            raise HypercallError(Errno.EINVAL, f"unsupported HVM record type {code}")
    if not seen_header:
        raise HypercallError(Errno.EINVAL, "HVM context without header")
    for inst, rec in cpus:
        v = d.vcpus[inst]
        v.backend.load_cpu_record(rec)
        v.initialised = True
        v.online = True


def save(d: Domain) -> bytes:
    desc = S.HVM_SAVE_DESCRIPTOR
    out = [desc.pack(typecode=S.HVM_SAVE_CODE_HEADER, instance=0,
                     length=S.HVM_SAVE_HEADER.size),
           S.HVM_SAVE_HEADER.pack(magic=S.HVM_FILE_MAGIC, version=S.HVM_FILE_VERSION,
                                  gtsc_khz=TSC_KHZ)]
    for v in d.vcpus:
        out.append(desc.pack(typecode=S.HVM_SAVE_CODE_CPU, instance=v.vcpu_id,
                             length=S.HVM_HW_CPU.size))
        out.append(v.backend.save_cpu_record())
    out.append(desc.pack(typecode=S.HVM_SAVE_CODE_END, instance=0, length=0))
    return b"".join(out)


def apply_record(b: X86Vcpu, rec) -> None:
    """Load one hvm_hw_cpu record into a vCPU's engine (outside emulation)."""
    cpu = b.cpu
    b.write_msr(MSR_EFER, rec.msr_efer)
    from unicorn import x86_const as X
    for reg, value in ((X.UC_X86_REG_CR4, rec.cr4), (X.UC_X86_REG_CR3, rec.cr3),
                       (X.UC_X86_REG_CR0, rec.cr0), (X.UC_X86_REG_CR2, rec.cr2)):
        b.uc.reg_write(reg, value)
    # EFER.LMA follows from CR0.PG and EFER.LME; keep what the record says.
    b.write_msr(MSR_EFER, rec.msr_efer)
    if rec.msr_efer & (1 << 10):
        cpu.set_u32(cs.HFLAGS, cpu.hflags | cs.HF_LMA)
    else:
        cpu.set_u32(cs.HFLAGS, cpu.hflags & ~(cs.HF_LMA | cs.HF_CS64))
    for name, seg in _SEGS:
        cpu.load_segment(seg, getattr(rec, f"{name}_sel"), getattr(rec, f"{name}_base"),
                         getattr(rec, f"{name}_limit"),
                         arbytes_to_flags(getattr(rec, f"{name}_arbytes")))
    # CS last, so that its code size wins over what the data loads derived.
    cpu.load_segment(cs.CS, rec.cs_sel, rec.cs_base, rec.cs_limit,
                     arbytes_to_flags(rec.cs_arbytes))
    cpu.set_table(cs.TR, rec.tr_sel, rec.tr_base, rec.tr_limit,
                  arbytes_to_flags(rec.tr_arbytes))
    cpu.set_table(cs.LDT, rec.ldtr_sel, rec.ldtr_base, rec.ldtr_limit,
                  arbytes_to_flags(rec.ldtr_arbytes))
    cpu.set_table(cs.GDT, 0, rec.gdtr_base, rec.gdtr_limit, 0)
    cpu.set_table(cs.IDT, 0, rec.idtr_base, rec.idtr_limit, 0)
    for i, name in enumerate(_GPRS):
        cpu.regs[i] = getattr(rec, name)
    cpu.regs[16] = rec.rip
    b.write_rflags(rec.rflags | 0x2)
    for msr, value in ((MSR_STAR, rec.msr_star), (MSR_LSTAR, rec.msr_lstar),
                       (MSR_CSTAR, rec.msr_cstar), (MSR_FMASK, rec.msr_syscall_mask),
                       (MSR_KERNEL_GS_BASE, rec.shadow_gs),
                       (MSR_SYSENTER_CS, rec.sysenter_cs),
                       (MSR_SYSENTER_ESP, rec.sysenter_esp),
                       (MSR_SYSENTER_EIP, rec.sysenter_eip)):
        b.write_msr(msr, value)
    cpu.clear_old_exception()


def capture_record(b: X86Vcpu) -> bytes:
    cpu = b.cpu
    vals = {name: cpu.regs[i] for i, name in enumerate(_GPRS)}
    vals.update(rip=cpu.regs[16], rflags=b.read_rflags(), cr0=cpu.cr(0), cr2=cpu.cr(2),
                cr3=cpu.cr(3), cr4=cpu.cr(4), msr_efer=cpu.efer,
                msr_star=b.read_msr(MSR_STAR), msr_lstar=b.read_msr(MSR_LSTAR),
                msr_cstar=b.read_msr(MSR_CSTAR), msr_syscall_mask=b.read_msr(MSR_FMASK),
                shadow_gs=b.read_msr(MSR_KERNEL_GS_BASE))
    for name, seg in _SEGS:
        sel, base, limit, flags = cpu.segment(seg)
        vals.update({f"{name}_sel": sel, f"{name}_base": base, f"{name}_limit": limit,
                     f"{name}_arbytes": flags_to_arbytes(flags)})
    for name, off in (("tr", cs.TR), ("ldtr", cs.LDT)):
        sel, base, limit, flags = cpu.table(off)
        vals.update({f"{name}_sel": sel, f"{name}_base": base, f"{name}_limit": limit,
                     f"{name}_arbytes": flags_to_arbytes(flags)})
    for name, off in (("gdtr", cs.GDT), ("idtr", cs.IDT)):
        _sel, base, limit, _fl = cpu.table(off)
        vals.update({f"{name}_base": base, f"{name}_limit": limit})
    return S.HVM_HW_CPU.pack(**vals)
