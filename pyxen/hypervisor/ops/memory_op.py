"""memory_op (hypercall 12): reservations, the guest memory map, physmap population."""

from __future__ import annotations

import struct

from ...abi import structs as S
from ...abi.constants import MEMOP_CMD_MASK, MEMOP_EXTENT_SHIFT, Errno, Hypercall, MemOp
from ..errors import HypercallError
from .common import read_struct, target_domain

E820MAX = 1024              # most entries a domain's memory map may have
DOMU_MAX_ORDER = 9          # largest extent an ordinary domain may populate (2 MiB)
CTLDOM_MAX_ORDER = 12       # the control domain (toolstack) may use larger extents
MAX_EXTENTS_PER_CALL = 1 << 20   # guard against absurd counts (Xen would preempt)


_ARCH_OPS = (MemOp.memory_map, MemOp.set_memory_map, MemOp.machine_memory_map,
             MemOp.machphys_mapping)


def _max_order(d) -> int:
    return CTLDOM_MAX_ORDER if d.is_privileged else DOMU_MAX_ORDER


def _populate_physmap(caller, arg, start_extent):
    r = read_struct(caller, S.XEN_MEMORY_RESERVATION_COMPAT if caller.compat
                    else S.XEN_MEMORY_RESERVATION, arg)
    d = target_domain(caller, r.domid)
    nr = r.nr_extents
    if start_extent >= nr:
        return start_extent
    if r.extent_order > _max_order(caller.domain) or nr - start_extent > MAX_EXTENTS_PER_CALL:
        return start_extent
    pages = 1 << r.extent_order
    gfn_size = 4 if caller.compat else 8
    fmt = "<I" if caller.compat else "<Q"
    done = start_extent
    for i in range(start_extent, nr):
        raw = caller.copy_from_guest(r.extent_start + i * gfn_size, gfn_size)
        gfn = struct.unpack(fmt, raw)[0]
        if gfn & (pages - 1) or gfn + pages > (1 << 36):
            break
        try:
            d.populate(gfn, pages)
        except HypercallError:
            break
        done = i + 1
    return done


def _reservation_query(caller, arg, maximum: bool):
    domid = struct.unpack("<H", caller.copy_from_guest(arg, 2))[0]
    d = target_domain(caller, domid)
    return d.max_pages if maximum else d.tot_pages


def _memory_map(caller, arg):
    d = caller.domain
    if not d.e820:
        raise HypercallError(Errno.ENOSYS)     # "backwards compatibility": no map stored
    layout = S.XEN_MEMORY_MAP_COMPAT if caller.compat else S.XEN_MEMORY_MAP
    req = read_struct(caller, layout, arg)
    n = min(req.nr_entries, len(d.e820))
    data = b"".join(S.E820_ENTRY.pack(addr=a, size=s, type=t) for a, s, t in d.e820[:n])
    caller.copy_to_guest(req.buffer, data)
    caller.copy_to_guest(arg + layout.offsetof("nr_entries"), struct.pack("<I", n))
    return 0


def _set_memory_map(caller, arg):
    fm = read_struct(caller, S.XEN_FOREIGN_MEMORY_MAP, arg)
    if fm.map__nr_entries > E820MAX:
        raise HypercallError(Errno.EINVAL)
    d = target_domain(caller, fm.domid)
    raw = caller.copy_from_guest(fm.map__buffer, fm.map__nr_entries * S.E820_ENTRY.size)
    entries = []
    for i in range(fm.map__nr_entries):
        e = S.E820_ENTRY.unpack(raw, i * S.E820_ENTRY.size)
        entries.append((e.addr, e.size, e.type))
    d.e820 = entries
    return 0


def do_memory_op(caller, cmd, arg, *_):
    cmd &= 0xFFFF_FFFF
    op = cmd & MEMOP_CMD_MASK
    start_extent = cmd >> MEMOP_EXTENT_SHIFT
    d = caller.domain
    if op == MemOp.populate_physmap:
        return _populate_physmap(caller, arg, start_extent)
    if start_extent and op in (MemOp.maximum_ram_page, MemOp.current_reservation,
                               MemOp.maximum_reservation, MemOp.maximum_gpfn):
        raise HypercallError(Errno.EINVAL)
    if start_extent and op in _ARCH_OPS:
        raise HypercallError(Errno.ENOSYS)   # arch ops match the whole cmd word
    if op == MemOp.maximum_ram_page:
        return d.hv.machine.nr_frames - 1
    if op == MemOp.current_reservation:
        return _reservation_query(caller, arg, maximum=False)
    if op == MemOp.maximum_reservation:
        return _reservation_query(caller, arg, maximum=True)
    if op == MemOp.maximum_gpfn:
        domid = struct.unpack("<H", caller.copy_from_guest(arg, 2))[0]
        return target_domain(caller, domid).p2m.max_gfn()
    if op == MemOp.memory_map:
        return _memory_map(caller, arg)
    if op in (MemOp.machine_memory_map, MemOp.machphys_mapping) and d.is_hvm:
        raise HypercallError(Errno.ENOSYS)
    if op == MemOp.set_memory_map:
        return _set_memory_map(caller, arg)
    # Reservation changes and physmap edits belong to the core-ABI issue.
    raise HypercallError(Errno.ENOSYS)


def register(hv) -> None:
    hv.hypercalls.register(Hypercall.memory_op, do_memory_op)
