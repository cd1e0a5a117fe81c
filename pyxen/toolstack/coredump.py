"""Core dumps of a domain (xl.cfg's coredump-destroy / coredump-restart actions).

An ELF64 core file: one PT_LOAD segment per run of populated guest frames
(p_paddr = guest-physical address, p_vaddr = the same, since the dump knows
nothing of the guest's page tables), and one PT_NOTE holding the domain's
HVM context (the save records of every vCPU, as XEN_DOMCTL_gethvmcontext
returns them) under the note name "Xen". Frames are read through checked
foreign mappings, as libxc's dumpcore does; a gfn that is not populated is
simply absent from the dump. The ranges to look at are the domain's memory
map (the toolstack set it at build time).
"""

from __future__ import annotations

import os
import struct

from .privcmd import Privcmd, XenError
from .xenctrl import XenCtrl

PAGE = 4096
ET_CORE, EM_X86_64, PT_LOAD, PT_NOTE = 4, 62, 1, 4
PF_R, PF_W, PF_X = 4, 2, 1
NOTE_HVM_CONTEXT = 0x2000       # pyxen's note type for the HVM context blob
_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_PHDR = struct.Struct("<IIQQQQQQ")


def _runs(xc: XenCtrl, domid: int, ranges) -> list[tuple[int, int]]:
    """(first gfn, count) of every run of populated frames within `ranges`
    ((address, size) pairs: the domain's memory map)."""
    runs: list[tuple[int, int]] = []
    for addr, size in ranges:
        for gfn in range(addr // PAGE, (addr + size + PAGE - 1) // PAGE):
            try:
                xc.map_foreign(domid, [gfn], writable=False)
            except XenError:
                continue
            if runs and runs[-1][0] + runs[-1][1] == gfn:
                runs[-1] = (runs[-1][0], runs[-1][1] + 1)
            else:
                runs.append((gfn, 1))
    return runs


def write_core(privcmd: Privcmd, domid: int, path: str, ranges) -> None:
    xc = XenCtrl(privcmd)
    runs = _runs(xc, domid, ranges)
    try:
        context = xc.domain_hvm_getcontext(domid)
    except XenError:
        context = b""
    name = b"Xen\0"
    note = struct.pack("<III", len(name), len(context), NOTE_HVM_CONTEXT) + name + context
    note += bytes(-len(note) % 4)
    phnum = 1 + len(runs)
    offset = _EHDR.size + phnum * _PHDR.size
    note_off = offset
    data_off = (note_off + len(note) + PAGE - 1) // PAGE * PAGE
    phdrs = [_PHDR.pack(PT_NOTE, 0, note_off, 0, 0, len(note), 0, 4)]
    pos = data_off
    for gfn, count in runs:
        size = count * PAGE
        phdrs.append(_PHDR.pack(PT_LOAD, PF_R | PF_W | PF_X, pos, gfn * PAGE, gfn * PAGE,
                                size, size, PAGE))
        pos += size
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    ehdr = _EHDR.pack(ident, ET_CORE, EM_X86_64, 1, 0, _EHDR.size, 0, 0, _EHDR.size,
                      _PHDR.size, phnum, 64, 0, 0)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "wb") as f:
        f.write(ehdr)
        f.write(b"".join(phdrs))
        f.write(note)
        f.write(bytes(data_off - f.tell()))
        for gfn, count in runs:
            for g in range(gfn, gfn + count):
                (view,) = xc.map_foreign(domid, [g], writable=False)
                f.write(view)
