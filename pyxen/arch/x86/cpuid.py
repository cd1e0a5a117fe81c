"""The CPUID policy guests see: the engine's CPU model, filtered, plus Xen's leaves.

The base is what the engine's CPU model reports (Skylake-Server, chosen for
1 GiB pages, SMEP and SMAP), read once per process by executing CPUID on a
scratch engine. Features the engine cannot run (AVX and its state
components, protection keys) or pyxen does not emulate yet (the local APIC)
are removed, the hypervisor bit is set, and leaves 0x40000000.. describe Xen
4.10 exactly as Xen does for an HVM/PVH guest.
"""

from __future__ import annotations

import ctypes
from functools import lru_cache

from unicorn import UC_ARCH_X86, UC_MODE_64, Uc
from unicorn import x86_const as X

from ...abi.constants import XEN_VERSION_MAJOR, XEN_VERSION_MINOR

CPU_MODEL = X.UC_CPU_X86_SKYLAKE_SERVER
XEN_CPUID_BASE = 0x4000_0000
XEN_CPUID_MAX_NUM_LEAVES = 5
XEN_HYPERCALL_MSR = 0x4000_0000
TSC_KHZ = 2_400_000            # the guest-visible TSC rate
MAXPHYADDR = 40                # physical address width reported in leaf 0x80000008

# Leaf 0x40000004 (HVM) feature flags.
XEN_HVM_CPUID_IOMMU_MAPPINGS = 1 << 2
XEN_HVM_CPUID_VCPU_ID_PRESENT = 1 << 3

_SUBLEAF_LEAVES = {4: 8, 7: 1, 0xB: 2, 0xD: 4, 0x14: 1}

# Bits removed from the engine model's leaves: (leaf, subleaf, register index) -> mask.
_HIDE = {
    (1, 0, 3): 1 << 9,                  # EDX.APIC: no local APIC emulation yet
    (1, 0, 2): (1 << 28) | (1 << 12) | (1 << 5) | (1 << 3),   # AVX, FMA, VMX, MONITOR
    (7, 0, 1): (1 << 5) | (1 << 16) | (1 << 4) | (1 << 11) | (1 << 14),  # AVX2 AVX512F HLE RTM MPX
    (7, 0, 2): (1 << 3) | (1 << 4),      # PKU, OSPKE: the software walker has no keys
}
OSXSAVE = 1 << 27


@lru_cache(maxsize=1)
def engine_leaves() -> dict[tuple[int, int], tuple[int, int, int, int]]:
    """Every (leaf, subleaf) the engine's CPU model answers, read by running CPUID."""
    uc = Uc(UC_ARCH_X86, UC_MODE_64)
    uc.ctl_set_cpu_model(CPU_MODEL)
    page = ctypes.create_string_buffer(0x2000)
    uc.mem_map_ptr(0, 0x2000, 7, ctypes.addressof(page))
    ctypes.memmove(ctypes.addressof(page) + 0x1000, b"\x0f\xa2", 2)   # cpuid

    def run(leaf: int, sub: int) -> tuple[int, int, int, int]:
        uc.reg_write(X.UC_X86_REG_RAX, leaf)
        uc.reg_write(X.UC_X86_REG_RCX, sub)
        uc.emu_start(0x1000, 0x1002)
        return tuple(uc.reg_read(r) & 0xFFFF_FFFF for r in (
            X.UC_X86_REG_RAX, X.UC_X86_REG_RBX, X.UC_X86_REG_RCX, X.UC_X86_REG_RDX))

    out = {}
    max_basic = run(0, 0)[0]
    for leaf in range(max_basic + 1):
        for sub in range(_SUBLEAF_LEAVES.get(leaf, 1)):
            out[(leaf, sub)] = run(leaf, sub)
    max_ext = run(0x8000_0000, 0)[0]
    for leaf in range(0x8000_0000, max_ext + 1):
        out[(leaf, 0)] = run(leaf, 0)
    return out


@lru_cache(maxsize=1)
def base_policy() -> dict[tuple[int, int], tuple[int, int, int, int]]:
    leaves = {}
    for key, regs in engine_leaves().items():
        regs = list(regs)
        for i in range(4):
            regs[i] &= ~_HIDE.get((key[0], key[1], i), 0)
        leaves[key] = tuple(regs)
    # Leaf 1: hypervisor present; OSXSAVE is filled in per call from CR4.
    a, b, c, d = leaves[(1, 0)]
    leaves[(1, 0)] = (a, b & 0x0000_FFFF, (c | (1 << 31)) & ~OSXSAVE, d)
    # XSAVE: only x87 and SSE state (the engine cannot execute AVX).
    if (0xD, 0) in leaves:
        leaves[(0xD, 0)] = (0x3, 0x240, 0x240, 0)
        a, b, c, d = leaves[(0xD, 1)]
        leaves[(0xD, 1)] = (a & 0x7, 0, 0, 0)
        for sub in (2, 3):
            leaves[(0xD, sub)] = (0, 0, 0, 0)
    # Xen's leaves.
    base = XEN_CPUID_BASE
    sig = (0x566E6558, 0x65584D4D, 0x4D4D566E)       # "XenVMMXenVMM"
    leaves[(base, 0)] = (base + XEN_CPUID_MAX_NUM_LEAVES, *sig)
    leaves[(base + 1, 0)] = ((XEN_VERSION_MAJOR << 16) | XEN_VERSION_MINOR, 0, 0, 0)
    leaves[(base + 2, 0)] = (1, XEN_HYPERCALL_MSR, 0, 0)
    leaves[(base + 3, 0)] = (0, 0, TSC_KHZ, 1)          # tsc_mode default, guest kHz
    leaves[(base + 3, 1)] = (0, 0, 0, 0)
    leaves[(base + 3, 2)] = (TSC_KHZ, 0, 0, 0)
    leaves[(base + 5, 0)] = (0, 0, 0, 0)                # PV only
    return leaves


class CpuidPolicy:
    """Answers CPUID for one vCPU."""

    def __init__(self, vcpu_id: int):
        self.vcpu_id = vcpu_id
        self.leaves = dict(base_policy())
        a, b, c, d = self.leaves[(1, 0)]
        self.leaves[(1, 0)] = (a, b | ((vcpu_id * 2) << 24), c, d)
        self.leaves[(XEN_CPUID_BASE + 4, 0)] = (
            XEN_HVM_CPUID_IOMMU_MAPPINGS | XEN_HVM_CPUID_VCPU_ID_PRESENT, vcpu_id, 0, 0)
        self.max_basic = self.leaves[(0, 0)][0]
        self.max_ext = self.leaves[(0x8000_0000, 0)][0]

    def query(self, leaf: int, subleaf: int, cr4: int) -> tuple[int, int, int, int]:
        leaf &= 0xFFFF_FFFF
        if leaf in _SUBLEAF_LEAVES or (leaf == XEN_CPUID_BASE + 3):
            key = (leaf, subleaf & 0xFFFF_FFFF)
        else:
            key = (leaf, 0)
        regs = self.leaves.get(key)
        if regs is None:
            return (0, 0, 0, 0)
        if leaf == 1 and cr4 & (1 << 18):          # CR4.OSXSAVE mirrors into CPUID
            a, b, c, d = regs
            return (a, b, c | OSXSAVE, d)
        return regs
