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
from ...abi.constants import VCPU_HVM_MODE_32B, VCPU_HVM_MODE_64B, Errno
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


# -- VCPUOP_initialise: struct vcpu_hvm_context -----------------------------------------
CR0_PE, CR0_ET, CR0_PG = 1 << 0, 1 << 4, 1 << 31
CR4_PAE = 1 << 5
EFER_LME, EFER_LMA = 1 << 8, 1 << 10
AR_PRESENT, AR_S, AR_CODE, AR_WRITABLE = 1 << 7, 1 << 4, 1 << 3, 1 << 1
TSS_BUSY_32 = 0xB
# What Xen loads in 64-bit mode: flat 64-bit code, flat data, a busy TSS.
FLAT_CODE64_AR, FLAT_DATA_AR, TSS_AR = 0xA9B, 0xC93, 0x8B


def _check_segment_32(name: str, base: int, limit: int, ar: int) -> None:
    def bad(why: str):
        raise HypercallError(Errno.EINVAL, f"{name}: {why}")

    if name == "tr":
        if ar & AR_S or ar & 0xF != TSS_BUSY_32 or not ar & AR_PRESENT:
            bad("not a present busy TSS")
        return
    if name in ("ds", "es") and ar == 0:
        return                                   # null selector: allowed
    if not ar & AR_PRESENT or not ar & AR_S:
        bad("not a present code/data segment")
    if name == "cs" and not ar & AR_CODE:
        bad("not a code segment")
    if name == "ss" and (ar & AR_CODE or not ar & AR_WRITABLE):
        bad("not a writable data segment")
    if name in ("ds", "es") and ar & AR_CODE and not ar & AR_WRITABLE:
        bad("execute-only code segment")


def record_from_vcpu_hvm_context(ctx):
    """The hvm_hw_cpu values a vcpu_hvm_context describes (raises -EINVAL as Xen)."""
    rec = S.HVM_HW_CPU.unpack(bytes(S.HVM_HW_CPU.size))
    if ctx.mode == VCPU_HVM_MODE_64B:
        r = S.VCPU_HVM_X86_64.unpack(ctx.cpu_regs)
        top = r.rip >> 47
        if top not in (0, 0x1FFFF):
            raise HypercallError(Errno.EINVAL, "RIP not canonical")
        if not r.cr0 & CR0_PG or not r.cr0 & CR0_PE:
            raise HypercallError(Errno.EINVAL, "64-bit mode needs paging")
        if not r.cr4 & CR4_PAE:
            raise HypercallError(Errno.EINVAL, "64-bit mode needs CR4.PAE")
        if not r.efer & EFER_LME:
            raise HypercallError(Errno.EINVAL, "64-bit mode needs EFER.LME")
        gprs = {g: getattr(r, g) for g in ("rax", "rcx", "rdx", "rbx", "rsp", "rbp",
                                           "rsi", "rdi")}
        segs = {"cs": (0, 0xFFFF_FFFF, FLAT_CODE64_AR)}
        for name in ("ds", "es", "ss", "fs", "gs"):
            segs[name] = (0, 0xFFFF_FFFF, FLAT_DATA_AR)
        tr = (0, 0x67, TSS_AR)
        rip, rflags, cr0, cr3, cr4, efer = r.rip, r.rflags, r.cr0, r.cr3, r.cr4, r.efer
    elif ctx.mode == VCPU_HVM_MODE_32B:
        r = S.VCPU_HVM_X86_32.unpack(ctx.cpu_regs)
        if r.pad1 or any(r.pad2):
            raise HypercallError(Errno.EINVAL, "padding not zero")
        for name in ("cs", "ds", "ss", "es", "tr"):
            _check_segment_32(name, getattr(r, f"{name}_base"), getattr(r, f"{name}_limit"),
                              getattr(r, f"{name}_ar"))
        gprs = {g: getattr(r, "e" + g[1:]) for g in ("rax", "rcx", "rdx", "rbx", "rsp",
                                                     "rbp", "rsi", "rdi")}
        segs = {n: (getattr(r, f"{n}_base"), getattr(r, f"{n}_limit"), getattr(r, f"{n}_ar"))
                for n in ("cs", "ds", "ss", "es")}
        segs["fs"] = segs["gs"] = segs["ds"]
        tr = (r.tr_base, r.tr_limit, r.tr_ar)
        rip, rflags, cr0, cr3, cr4, efer = r.eip, r.eflags, r.cr0, r.cr3, r.cr4, r.efer
        if efer & EFER_LME:
            raise HypercallError(Errno.EINVAL, "32-bit mode with EFER.LME")
    else:
        raise HypercallError(Errno.EINVAL, f"unknown vCPU mode {ctx.mode}")
    if cr0 & CR0_PG and not cr0 & CR0_PE:
        raise HypercallError(Errno.EINVAL, "CR0.PG without CR0.PE")
    if efer & EFER_LME and cr0 & CR0_PG:
        efer |= EFER_LMA
    values = dict(gprs, rip=rip, rflags=rflags | 2, cr0=cr0 | CR0_ET, cr3=cr3, cr4=cr4,
                  msr_efer=efer, tr_sel=0, tr_base=tr[0], tr_limit=tr[1], tr_arbytes=tr[2],
                  gdtr_limit=0xFFFF, idtr_limit=0xFFFF)
    for name, (base, limit, ar) in segs.items():
        values.update({f"{name}_sel": 0, f"{name}_base": base, f"{name}_limit": limit,
                       f"{name}_arbytes": ar})
    return rec._replace(**values)
