"""The PVH (PVHv2) boot layout: guest memory map, special pages, start info.

Pure computations, no hypervisor access: given the kernel image, ramdisk,
command line and memory size, say where everything goes and produce the bytes
of the `hvm_start_info` block, as Xen's toolstack lays them out:

* RAM from 0 up to the low-memory limit (3.75 GiB, below the MMIO hole), the
  rest above 4 GiB;
* the special pages (console, xenstore, ...) at pfn 0xff000 - 8 + i and the
  ioreq-server pages just below them, reserved in the E820 map;
* kernel at its physical addresses, ramdisk after it, then one "start info"
  block holding hvm_start_info (version 1: a superset of 4.10's version 0),
  the command line, the module list and the memory map.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..abi import structs as S
from ..abi.constants import XEN_HVM_START_MAGIC_VALUE, E820Type, SpecialPage, special_pfn
from .elf import KernelImage

PAGE = 4096
MIB = 1 << 20
LOWMEM_LIMIT = 0xF000_0000          # RAM below this; the MMIO hole (256 MiB) above
HIGHMEM_START = 1 << 32
NR_IOREQ_SERVER_PAGES = 8
SPECIAL_FIRST_PFN = special_pfn(0) - NR_IOREQ_SERVER_PAGES    # 0xfeff0
SPECIAL_END_PFN = special_pfn(len(SpecialPage))                # 0xff000
START_INFO_VERSION = 1
MAX_CMDLINE = 1023                  # libxl's limit on the guest command line


class BootLayoutError(Exception):
    pass


def _align(n: int, a: int = PAGE) -> int:
    return (n + a - 1) & ~(a - 1)


@dataclass
class BootLayout:
    memory_bytes: int
    ram: list[tuple[int, int]] = field(default_factory=list)     # (start, size) RAM ranges
    e820: list[tuple[int, int, int]] = field(default_factory=list)
    kernel_start: int = 0
    kernel_end: int = 0
    ramdisk_addr: int = 0
    ramdisk_size: int = 0
    start_info_addr: int = 0
    start_info: bytes = b""
    entry: int = 0

    def ram_pfns(self) -> list[tuple[int, int]]:
        return [(start // PAGE, size // PAGE) for start, size in self.ram]


def plan(image: KernelImage, memory_mib: int, cmdline: str, ramdisk: bytes | None,
         *, flags: int = 0) -> BootLayout:
    """Decide where everything goes; raises BootLayoutError when it does not fit."""
    if memory_mib <= 0:
        raise BootLayoutError("memory must be at least 1 MiB")
    if len(cmdline.encode()) > MAX_CMDLINE:
        raise BootLayoutError(f"command line longer than {MAX_CMDLINE} bytes")
    mem = memory_mib * MIB
    lay = BootLayout(memory_bytes=mem, entry=image.phys32_entry)
    low = min(mem, LOWMEM_LIMIT)
    lay.ram.append((0, low))
    if mem > low:
        lay.ram.append((HIGHMEM_START, mem - low))
    lay.e820.append((0, low, E820Type.RAM))
    lay.e820.append((SPECIAL_FIRST_PFN * PAGE, (SPECIAL_END_PFN - SPECIAL_FIRST_PFN) * PAGE,
                     E820Type.RESERVED))
    if mem > low:
        lay.e820.append((HIGHMEM_START, mem - low, E820Type.RAM))
    lay.kernel_start = image.lowest_paddr
    lay.kernel_end = image.highest_paddr
    if lay.kernel_end > low:
        raise BootLayoutError(
            f"kernel needs memory up to {lay.kernel_end:#x} but the guest has "
            f"{memory_mib} MiB ({low:#x} bytes of low memory)")
    cursor = _align(lay.kernel_end)
    if ramdisk:
        lay.ramdisk_addr = cursor
        lay.ramdisk_size = len(ramdisk)
        cursor = _align(cursor + len(ramdisk))
    lay.start_info_addr = cursor
    lay.start_info = build_start_info(lay, cmdline, flags)
    if lay.start_info_addr + len(lay.start_info) > low:
        raise BootLayoutError(
            f"kernel, ramdisk and start info need {_align(cursor + len(lay.start_info))} "
            f"bytes but the guest has {memory_mib} MiB")
    return lay


def build_start_info(lay: BootLayout, cmdline: str, flags: int) -> bytes:
    """hvm_start_info v1 followed by command line, module list and memory map."""
    base = lay.start_info_addr
    info = S.HVM_START_INFO
    off = _align(info.size, 8)
    cmd = cmdline.encode() + b"\0"
    cmd_addr = base + off
    off = _align(off + len(cmd), 8)
    nr_modules = 1 if lay.ramdisk_size else 0
    modlist_addr = base + off if nr_modules else 0
    mods = b""
    if nr_modules:
        mods = S.HVM_MODLIST_ENTRY.pack(paddr=lay.ramdisk_addr, size=lay.ramdisk_size)
        off += len(mods)
    off = _align(off, 8)
    memmap_addr = base + off
    memmap = b"".join(S.HVM_MEMMAP_TABLE_ENTRY.pack(addr=a, size=s, type=t)
                      for a, s, t in lay.e820)
    header = info.pack(magic=XEN_HVM_START_MAGIC_VALUE, version=START_INFO_VERSION,
                       flags=flags, nr_modules=nr_modules, modlist_paddr=modlist_addr,
                       cmdline_paddr=cmd_addr if cmdline else 0, rsdp_paddr=0,
                       memmap_paddr=memmap_addr, memmap_entries=len(lay.e820))
    out = bytearray(off + len(memmap))
    out[0:len(header)] = header
    out[cmd_addr - base:cmd_addr - base + len(cmd)] = cmd
    if nr_modules:
        out[modlist_addr - base:modlist_addr - base + len(mods)] = mods
    out[memmap_addr - base:memmap_addr - base + len(memmap)] = memmap
    return bytes(out)
