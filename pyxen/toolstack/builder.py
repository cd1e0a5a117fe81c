"""The PVH domain builder: turn a domain configuration into a paused, ready domain.

The steps libxl and libxc take, through the hypercall interface only:
create the domain, set its limits, populate its memory, load the kernel and
ramdisk through foreign mappings, write the start info, publish the special
pages in HVM parameters, load the boot vCPU's state, and leave it paused.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from ..abi import structs as S
from ..abi.constants import HvmParam, SpecialPage, special_pfn
from ..boot.elf import KernelImage, KernelImageError, load_kernel_image
from ..boot.pvh import PAGE, BootLayout, BootLayoutError, plan
from .privcmd import XenError
from .xenctrl import XenCtrl

MAXMEM_SLACK_KB = 1024           # libxl gives every domain 1 MiB over its memory target
SUPERPAGE_ORDER = 9
# PVH vCPU start state (docs/misc/pvh.markdown), segment attributes as libxc packs them.
CS_ARBYTES = 0xC9B               # 32-bit flat code, present, DPL0
DS_ARBYTES = 0xC93               # 32-bit flat data
TR_ARBYTES = 0x8B                # 32-bit busy TSS
CR0_PE_ET = 0x11
BUILT_SPECIAL_PAGES = (SpecialPage.XENSTORE, SpecialPage.CONSOLE)


class BuildError(Exception):
    """A domain could not be built: one line that says why."""


@dataclass
class BuildSpec:
    name: str
    kernel: str
    memory_mib: int
    vcpus: int = 1
    maxvcpus: int | None = None
    maxmem_mib: int | None = None
    cmdline: str = ""
    ramdisk: str | None = None
    handle: bytes | None = None
    # Called with the new domid right after the domain is created, before it has vCPUs
    # or memory (libxl moves a domain to its cpupool there).
    on_created: Callable[[int], None] | None = None


@dataclass
class BuiltDomain:
    domid: int
    image: KernelImage
    layout: BootLayout
    store_gfn: int = 0
    store_port: int = 0
    console_gfn: int = 0
    console_port: int = 0


def load_inputs(spec: BuildSpec) -> tuple[KernelImage, bytes | None]:
    try:
        image = load_kernel_image(spec.kernel)
    except KernelImageError as e:
        raise BuildError(str(e)) from None
    ramdisk = None
    if spec.ramdisk:
        try:
            with open(spec.ramdisk, "rb") as f:
                ramdisk = f.read()
        except OSError as e:
            raise BuildError(f"{spec.ramdisk}: {e.strerror}") from None
    return image, ramdisk


def build_pvh(xc: XenCtrl, spec: BuildSpec) -> BuiltDomain:
    image, ramdisk = load_inputs(spec)
    try:
        layout = plan(image, spec.memory_mib, spec.cmdline, ramdisk)
    except BootLayoutError as e:
        raise BuildError(f"{spec.kernel}: {e}") from None
    handle = spec.handle or uuid.uuid4().bytes
    domid = xc.domain_create(handle, hvm=True, hap=True)
    built = BuiltDomain(domid, image, layout)
    try:
        _build(xc, built, spec, image, ramdisk, layout)
    except BaseException:
        try:
            xc.domain_destroy(domid)
        except XenError:
            pass
        raise
    return built


def _build(xc, built, spec, image, ramdisk, layout):
    domid = built.domid
    if spec.on_created is not None:
        spec.on_created(domid)
    maxvcpus = spec.maxvcpus or spec.vcpus
    xc.domain_max_vcpus(domid, maxvcpus)
    maxmem_kb = (spec.maxmem_mib or spec.memory_mib) * 1024 + MAXMEM_SLACK_KB
    xc.domain_setmaxmem(domid, maxmem_kb)
    xc.set_memory_map(domid, layout.e820)
    # Guest RAM: 2 MiB extents where aligned, single pages around them.
    try:
        for first, count in layout.ram_pfns():
            _populate_range(xc, domid, first, count)
        xc.populate_physmap_exact(domid, [special_pfn(p) for p in BUILT_SPECIAL_PAGES])
    except XenError as e:
        raise BuildError(f"cannot allocate {spec.memory_mib} MiB for the guest: {e}") from None
    # Kernel, ramdisk, start info.
    for seg in image.segments:
        _write(xc, domid, seg.paddr, seg.data)
        if seg.memsz > len(seg.data):
            _write(xc, domid, seg.paddr + len(seg.data), bytes(seg.memsz - len(seg.data)))
    if ramdisk:
        _write(xc, domid, layout.ramdisk_addr, ramdisk)
    _write(xc, domid, layout.start_info_addr, layout.start_info)
    # Special pages and their event channels (unbound in the guest, for the Dom0
    # services: xenstored and the console daemon), as libxl publishes them.
    built.store_gfn = special_pfn(SpecialPage.XENSTORE)
    built.console_gfn = special_pfn(SpecialPage.CONSOLE)
    built.store_port = xc.evtchn_alloc_unbound(domid, 0)
    built.console_port = xc.evtchn_alloc_unbound(domid, 0)
    xc.hvm_param_set(domid, HvmParam.STORE_PFN, built.store_gfn)
    xc.hvm_param_set(domid, HvmParam.CONSOLE_PFN, built.console_gfn)
    xc.hvm_param_set(domid, HvmParam.STORE_EVTCHN, built.store_port)
    xc.hvm_param_set(domid, HvmParam.CONSOLE_EVTCHN, built.console_port)
    # The boot vCPU.
    xc.domain_hvm_setcontext(domid, boot_context(layout.entry, layout.start_info_addr))


def _populate_range(xc: XenCtrl, domid: int, first: int, count: int) -> None:
    step = 1 << SUPERPAGE_ORDER
    pfn, end = first, first + count
    singles: list[int] = []
    supers: list[int] = []
    while pfn < end:
        if pfn % step == 0 and pfn + step <= end:
            supers.append(pfn)
            pfn += step
        else:
            singles.append(pfn)
            pfn += 1
    xc.populate_physmap_exact(domid, supers, SUPERPAGE_ORDER)
    xc.populate_physmap_exact(domid, singles, 0)


def _write(xc: XenCtrl, domid: int, gpa: int, data: bytes) -> None:
    """Copy bytes into guest-physical memory through foreign mappings."""
    pos = 0
    while pos < len(data):
        page = (gpa + pos) // PAGE
        off = (gpa + pos) % PAGE
        chunk = min(len(data) - pos, PAGE - off)
        (view,) = xc.map_foreign(domid, [page])
        view[off:off + chunk] = data[pos:pos + chunk]
        pos += chunk


def boot_context(entry: int, start_info: int) -> bytes:
    """HVM context (HEADER, CPU, END) for a PVH vCPU at PHYS32_ENTRY."""
    desc = S.HVM_SAVE_DESCRIPTOR
    flat = 0xFFFF_FFFF
    cpu = S.HVM_HW_CPU.pack(
        rip=entry, rbx=start_info, rflags=0x2, cr0=CR0_PE_ET,
        cs_limit=flat, ds_limit=flat, es_limit=flat, ss_limit=flat, fs_limit=flat,
        gs_limit=flat, cs_arbytes=CS_ARBYTES, ds_arbytes=DS_ARBYTES, es_arbytes=DS_ARBYTES,
        ss_arbytes=DS_ARBYTES, fs_arbytes=DS_ARBYTES, gs_arbytes=DS_ARBYTES,
        tr_limit=0x67, tr_arbytes=TR_ARBYTES, ldtr_arbytes=0x82)
    return b"".join([
        desc.pack(typecode=S.HVM_SAVE_CODE_HEADER, instance=0, length=S.HVM_SAVE_HEADER.size),
        S.HVM_SAVE_HEADER.pack(magic=S.HVM_FILE_MAGIC, version=S.HVM_FILE_VERSION),
        desc.pack(typecode=S.HVM_SAVE_CODE_CPU, instance=0, length=S.HVM_HW_CPU.size),
        cpu,
        desc.pack(typecode=S.HVM_SAVE_CODE_END, instance=0, length=0),
    ])


def resolve_path(path: str, config_dir: str | None) -> str:
    """xl resolves relative paths against the working directory; fall back to the
    config file's directory so configs can sit next to their kernels."""
    if os.path.isabs(path) or os.path.exists(path) or not config_dir:
        return path
    alt = os.path.join(config_dir, path)
    return alt if os.path.exists(alt) else path
