"""memory_op (hypercall 12): reservations, the guest memory map, physmap edits.

Physmap edits follow Xen's rules for translated (HVM/PVH) guests: a frame put
at a gfn replaces what was there (the domain's own RAM is freed, hypervisor
frames such as shared_info are only unhooked); frames that other domains
still use through grants are never freed early (see grant_table.py).
"""

from __future__ import annotations

import struct

from ...abi import structs as S
from ...abi.constants import (
    DOMID_SELF,
    MEMOP_CMD_MASK,
    MEMOP_EXTENT_SHIFT,
    Errno,
    Hypercall,
    MapSpace,
    MemOp,
    XENMAPIDX_grant_table_status,
)
from ..errors import HypercallError
from ..grant_table import MAX_GFN, forget_physmap_slot, is_xen_frame_of
from ..memory import PAGE_SHIFT, OutOfMemory
from ..p2m import Access, P2MType
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


def _reservation_target(caller, domid: int):
    """The domain a reservation change names, or None: Xen then does nothing."""
    me = caller.domain
    if domid == DOMID_SELF or domid == me.domid:
        return me
    d = me.hv.get_domain(domid)
    return d if d is not None and not d.is_dying and me.is_privileged else None


def _decrease_reservation(caller, arg, start_extent):
    r = read_struct(caller, S.XEN_MEMORY_RESERVATION_COMPAT if caller.compat
                    else S.XEN_MEMORY_RESERVATION, arg)
    nr = r.nr_extents
    if start_extent >= nr or nr - start_extent > MAX_EXTENTS_PER_CALL:
        return start_extent
    d = _reservation_target(caller, r.domid)
    address_bits = r.mem_flags & 0xFF
    if d is None or 0 < address_bits <= PAGE_SHIFT:
        return start_extent
    if r.extent_order > _max_order(caller.domain):
        return start_extent
    pages = 1 << r.extent_order
    gfn_size, fmt = (4, "<I") if caller.compat else (8, "<Q")
    for i in range(start_extent, nr):
        try:
            gfn = struct.unpack(fmt, caller.copy_from_guest(r.extent_start + i * gfn_size,
                                                            gfn_size))[0]
        except HypercallError:
            return i
        # A page that cannot be removed stops the call; its extent is not counted.
        for j in range(pages):
            if not _remove_page(d, gfn + j):
                return i
    return nr


def _remove_page(d, gfn: int) -> bool:
    """Take one page out of `d`'s physmap as Xen's guest_remove_page does: the
    domain's own frames are freed, hypervisor frames shared with it unhooked.
    Anything else (holes, other domains' frames) is refused."""
    e = d.p2m.lookup(gfn)
    if e is None:
        return False
    if d.hv.machine.owner[e.mfn] == d.domid:
        d.unpopulate(gfn, 1)
        return True
    if is_xen_frame_of(d, e.mfn):
        forget_physmap_slot(d, gfn)
        d.p2m.remove(gfn, 1)
        return True
    return False


# -- physmap edits (add_to_physmap, add_to_physmap_batch, remove_from_physmap) --------

def _any_domain(caller, domid: int):
    me = caller.domain
    if domid == DOMID_SELF or domid == me.domid:
        return me
    d = me.hv.get_domain(domid)
    if d is None or d.is_dying:
        raise HypercallError(Errno.ESRCH)
    return d


def _physmap_permission(caller, d, space: int) -> None:
    """Xen's xatp_permission_check: device MMIO only for the hardware domain
    itself, then XSM_TARGET (self, or a privileged caller)."""
    me = caller.domain
    if space == MapSpace.dev_mmio and (not me.is_privileged or d is not me):
        raise HypercallError(Errno.EACCES)
    if d is not me and not me.is_privileged:
        raise HypercallError(Errno.EPERM)


def _add_to_physmap(caller, arg, start_extent):
    if start_extent > 0xFFFF:             # must fit xatp.size
        raise HypercallError(Errno.EDOM)
    x = read_struct(caller, S.XEN_ADD_TO_PHYSMAP_COMPAT if caller.compat
                    else S.XEN_ADD_TO_PHYSMAP, arg)
    if x.space == MapSpace.gmfn_foreign:
        raise HypercallError(Errno.ENOSYS)    # only through add_to_physmap_batch
    d = _any_domain(caller, x.domid)
    _physmap_permission(caller, d, x.space)
    if x.space != MapSpace.gmfn_range:
        _add_one(caller, d, x.space, x.idx, x.gpfn)
        return 0
    if x.size < start_extent:
        raise HypercallError(Errno.EILSEQ)
    for k in range(start_extent, x.size):
        _add_one(caller, d, x.space, x.idx + k, x.gpfn + k)
    return 0


def _add_to_physmap_batch(caller, arg, start_extent):
    if start_extent > 0xFFFF:
        raise HypercallError(Errno.EDOM)
    x = read_struct(caller, S.XEN_ADD_TO_PHYSMAP_BATCH_COMPAT if caller.compat
                    else S.XEN_ADD_TO_PHYSMAP_BATCH, arg)
    if x.space == MapSpace.gmfn_range:
        raise HypercallError(Errno.EOPNOTSUPP)
    d = _any_domain(caller, x.domid)
    _physmap_permission(caller, d, x.space)
    if x.size < start_extent:
        raise HypercallError(Errno.EILSEQ)
    size, fmt = (4, "<I") if caller.compat else (8, "<Q")
    for k in range(start_extent, x.size):
        idx = struct.unpack(fmt, caller.copy_from_guest(x.idxs + k * size, size))[0]
        gpfn = struct.unpack(fmt, caller.copy_from_guest(x.gpfns + k * size, size))[0]
        try:
            _add_one(caller, d, x.space, idx, gpfn, foreign_domid=x.u)
            rc = 0
        except HypercallError as e:
            rc = -e.errno
        caller.copy_to_guest(x.errs + k * 4, struct.pack("<i", rc))
    return 0


def _add_one(caller, d, space: int, idx: int, gpfn: int, foreign_domid: int | None = None):
    """One xenmem_add_to_physmap_one: put frame `idx` of `space` at `d`'s `gpfn`."""
    if space == MapSpace.gmfn_foreign and foreign_domid is not None:
        return _add_foreign(caller, d, idx, gpfn, foreign_domid)
    if not d.is_hvm or gpfn >= MAX_GFN:
        raise HypercallError(Errno.EINVAL)    # only translated guests have a physmap
    if space == MapSpace.shared_info:
        if idx != 0 or d.shared_info_mfn is None:
            raise HypercallError(Errno.EINVAL)
        old = d.shared_info_gfn
        _hook_xen_frame(d, d.shared_info_mfn, old, gpfn)
        d.shared_info_gfn = gpfn
    elif space == MapSpace.grant_table:
        gt = d.grant_table
        if idx & XENMAPIDX_grant_table_status:
            raise HypercallError(Errno.EINVAL)    # status frames exist in version 2 only
        if idx >= gt.nr_frames and idx < d.max_grant_frames:
            gt.grow(idx + 1)
        if idx >= gt.nr_frames:
            raise HypercallError(Errno.EINVAL)
        try:
            mfn = gt.frame_mfn(idx)
        except OutOfMemory:
            raise HypercallError(Errno.ENOMEM) from None
        _hook_xen_frame(d, mfn, gt.frame_gfn(idx), gpfn)
        gt.set_frame_gfn(idx, gpfn)
    elif space in (MapSpace.gmfn, MapSpace.gmfn_range):
        _move_page(d, idx, gpfn)
    else:
        raise HypercallError(Errno.EINVAL)


def _clear_slot(d, gpfn: int) -> None:
    """Remove what `gpfn` holds before something else goes there."""
    if d.p2m.lookup(gpfn) is not None and not _remove_page(d, gpfn):
        raise HypercallError(Errno.ENXIO)     # another domain's frame: not ours to drop


def _hook_xen_frame(d, mfn: int, old_gfn: int | None, gpfn: int) -> None:
    _clear_slot(d, gpfn)
    if old_gfn is not None and old_gfn != gpfn:
        e = d.p2m.lookup(old_gfn)
        if e is not None and e.mfn == mfn:
            d.p2m.remove(old_gfn, 1)
    d.p2m.set_range(gpfn, mfn, 1, P2MType.SPECIAL, Access.RWX)


def _move_page(d, gfn: int, gpfn: int) -> None:
    """XENMAPSPACE_gmfn: the domain's own page at `gfn` moves to `gpfn`."""
    owner = d.hv.machine.owner
    e = d.p2m.lookup(gfn) if gfn < MAX_GFN else None
    if e is None or owner[e.mfn] != d.domid:
        raise HypercallError(Errno.EINVAL)
    _clear_slot(d, gpfn)
    with d.lock:
        now = d.p2m.lookup(gfn)
        if now is None or now.mfn != e.mfn:
            raise HypercallError(Errno.EXDEV)     # it was the page at gpfn itself
        d.p2m.remove(gfn, 1)
        d.p2m.set_range(gpfn, e.mfn, 1, e.type, e.access)


def _add_foreign(caller, d, fgfn: int, gpfn: int, foreign_domid: int) -> None:
    """XENMAPSPACE_gmfn_foreign: the hardware domain maps another domain's page."""
    if not d.is_privileged:
        raise HypercallError(Errno.EPERM)
    f = d.hv.get_domain(foreign_domid) if foreign_domid != DOMID_SELF else caller.domain
    if f is None or f.is_dying:
        raise HypercallError(Errno.ESRCH)
    if f is d or not d.is_hvm or gpfn >= MAX_GFN:
        raise HypercallError(Errno.EINVAL)
    e = f.p2m.lookup(fgfn)
    if e is None or e.type not in (P2MType.RAM_RW, P2MType.RAM_RO):
        raise HypercallError(Errno.EINVAL)
    if d.p2m.lookup(gpfn) is not None:
        _remove_page(d, gpfn)                 # as Xen: a failure here is ignored
    try:
        mfn = d.grant_table.pin_foreign(f, fgfn, gpfn)
    except LookupError:
        raise HypercallError(Errno.EINVAL) from None
    d.p2m.set_range(gpfn, mfn, 1, P2MType.FOREIGN, Access.RWX)


def _remove_from_physmap(caller, arg, start_extent):
    if start_extent:
        raise HypercallError(Errno.EINVAL)
    x = read_struct(caller, S.XEN_REMOVE_FROM_PHYSMAP_COMPAT if caller.compat
                    else S.XEN_REMOVE_FROM_PHYSMAP, arg)
    d = target_domain(caller, x.domid)
    e = d.p2m.lookup(x.gpfn) if x.gpfn < MAX_GFN else None
    if e is None:
        raise HypercallError(Errno.ENOENT)
    if e.type == P2MType.FOREIGN and d.grant_table.foreign.get(x.gpfn) == e.mfn:
        d.p2m.remove(x.gpfn, 1)
        d.grant_table.unpin_foreign(x.gpfn)
        return 0
    # Xen leaves a removed RAM page allocated to the domain; pyxen frees it, as
    # a frame outside the physmap could never be given back.
    if not _remove_page(d, x.gpfn):
        raise HypercallError(Errno.ENOENT)     # e.g. a grant mapping: not the domain's page
    return 0


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
    if op == MemOp.decrease_reservation:
        return _decrease_reservation(caller, arg, start_extent)
    if op == MemOp.add_to_physmap:
        return _add_to_physmap(caller, arg, start_extent)
    if op == MemOp.add_to_physmap_batch:
        return _add_to_physmap_batch(caller, arg, start_extent)
    if op == MemOp.remove_from_physmap:
        return _remove_from_physmap(caller, arg, start_extent)
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
    # increase_reservation (pages outside the physmap) and the rest: not provided.
    raise HypercallError(Errno.ENOSYS)


def register(hv) -> None:
    hv.hypercalls.register(Hypercall.memory_op, do_memory_op)
