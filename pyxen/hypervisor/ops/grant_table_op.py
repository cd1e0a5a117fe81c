"""grant_table_op (hypercall 20): grant tables v1 (see hypervisor/grant_table.py).

The hypercall works on an array of `count` structs and returns 0; each
entry's outcome is its GNTST_* status. An unreadable or unwritable entry
ends the call with -EFAULT (entries before it stay done), as in Xen.
"""

from __future__ import annotations

import struct

from ...abi import structs as S
from ...abi.constants import (
    DOMID_SELF,
    Errno,
    GNTCOPY_dest_gref,
    GNTCOPY_source_gref,
    GntSt,
    GnttabOp,
    Hypercall,
)
from ..errors import HypercallContinuation, HypercallError
from ..grant_table import INVALID_GFN, CopyEnd, GrantError, grant_copy
from ..memory import PAGE_SHIFT, OutOfMemory

CMD_MASK = (1 << 12) - 1          # the rest of cmd is a continuation argument
BATCH = 256                       # entries handled before the call continues
COUNT_LIMIT = 1 << 31             # count is an int in Xen: negative is -EINVAL


def _lookup(caller, domid: int):
    """(domain, GNTST status) as Xen's "any id" lookup and XSM_TARGET check give them."""
    me = caller.domain
    if domid == DOMID_SELF or domid == me.domid:
        return me, GntSt.okay
    d = me.hv.get_domain(domid)
    if d is None or d.is_dying:
        return None, GntSt.bad_domain
    if not me.is_privileged:
        return None, GntSt.permission_denied
    return d, GntSt.okay


def _status_field(layout, addr: int, status: int) -> tuple[int, bytes]:
    return addr + layout.offsetof("status"), struct.pack("<h", status)


# -- map / unmap ----------------------------------------------------------------------

def _map_grant_ref(caller, uop: int, count: int) -> int:
    L = S.GNTTAB_MAP_GRANT_REF
    me = caller.domain
    for i in range(count):
        addr = uop + i * L.size
        op = L.unpack(caller.copy_from_guest(addr, L.size))
        granter = me.hv.get_domain(op.dom)   # by id: DOMID_SELF names no domain here
        handle, bus = op.handle, op.dev_bus_addr
        try:
            handle, mfn = me.grant_table.map_grant(granter, op.ref, op.flags, op.host_addr)
            status, bus = GntSt.okay, mfn << PAGE_SHIFT
        except GrantError as e:
            status = e.status
        caller.copy_to_guest(addr, L.pack(**{**op._asdict(), "status": status,
                                             "handle": handle, "dev_bus_addr": bus}))
    return 0


def _unmap_grant_ref(caller, uop: int, count: int, *, replace: bool) -> int:
    L = S.GNTTAB_UNMAP_AND_REPLACE if replace else S.GNTTAB_UNMAP_GRANT_REF
    gt = caller.domain.grant_table
    for i in range(count):
        addr = uop + i * L.size
        op = L.unpack(caller.copy_from_guest(addr, L.size))
        try:
            if replace:
                gt.unmap_grant(op.handle, op.host_addr, 0, op.new_addr)
            else:
                gt.unmap_grant(op.handle, op.host_addr, op.dev_bus_addr)
            status = GntSt.okay
        except GrantError as e:
            status = e.status
        caller.copy_to_guest(*_status_field(L, addr, status))
    return 0


# -- table size and frames ------------------------------------------------------------------

def _setup_table(caller, uop: int, count: int) -> int:
    if count != 1:
        raise HypercallError(Errno.EINVAL)
    L = S.GNTTAB_SETUP_TABLE_COMPAT if caller.compat else S.GNTTAB_SETUP_TABLE
    op = read_op(caller, L, uop)
    d, status = _lookup(caller, op.dom)
    if d is not None:
        status = _fill_frame_list(caller, d, op.nr_frames, op.frame_list)
    caller.copy_to_guest(*_status_field(L, uop, status))
    return 0


def _fill_frame_list(caller, d, nr_frames: int, frame_list: int) -> int:
    gt = d.grant_table
    if nr_frames > d.max_grant_frames or not gt.grow(nr_frames):
        return GntSt.general_error
    size, fmt = (4, "<I") if caller.compat else (8, "<Q")
    for i in range(nr_frames):
        if d.is_hvm:
            gfn = gt.frame_gfn(i)     # translated guests learn where they mapped it
            frame = INVALID_GFN if gfn is None else gfn
        else:
            try:
                frame = gt.frame_mfn(i)
            except OutOfMemory:
                return GntSt.general_error
        if caller.compat and frame >> 32:
            return GntSt.address_too_big
        try:
            caller.copy_to_guest(frame_list + i * size, struct.pack(fmt, frame))
        except HypercallError:
            return GntSt.bad_virt_addr
    return GntSt.okay


def _query_size(caller, uop: int, count: int) -> int:
    if count != 1:
        raise HypercallError(Errno.EINVAL)
    L = S.GNTTAB_QUERY_SIZE
    op = read_op(caller, L, uop)
    d, status = _lookup(caller, op.dom)
    nr, most = op.nr_frames, op.max_nr_frames
    if d is not None:
        nr, most = d.grant_table.nr_frames, d.max_grant_frames
    caller.copy_to_guest(uop, L.pack(dom=op.dom, nr_frames=nr, max_nr_frames=most,
                                     status=status))
    return 0


def _get_status_frames(caller, uop: int, count: int) -> int:
    if count != 1:
        raise HypercallError(Errno.EINVAL)
    L = S.GNTTAB_GET_STATUS_FRAMES_COMPAT if caller.compat else S.GNTTAB_GET_STATUS_FRAMES
    op = read_op(caller, L, uop)
    d, status = _lookup(caller, op.dom)
    if d is not None:
        status = GntSt.general_error       # status frames exist in version 2 only
    caller.copy_to_guest(*_status_field(L, uop, status))
    return 0


# -- versions ----------------------------------------------------------------------------------

def _set_version(caller, uop: int) -> int:
    L = S.GNTTAB_SET_VERSION
    op = read_op(caller, L, uop)
    gt = caller.domain.grant_table
    if op.version not in (1, 2):
        result = -int(Errno.EINVAL)
    elif op.version == 2:
        result = -int(Errno.ENOSYS)      # as Xen with gnttab=max-ver:1
    else:
        result = 0
    caller.copy_to_guest(uop, L.pack(version=gt.version))
    return result


def _get_version(caller, uop: int, count: int) -> int:
    if count != 1:
        raise HypercallError(Errno.EINVAL)
    L = S.GNTTAB_GET_VERSION
    op = read_op(caller, L, uop)
    d, status = _lookup(caller, op.dom)
    if status == GntSt.bad_domain:
        raise HypercallError(Errno.ESRCH)
    if status != GntSt.okay:
        raise HypercallError(Errno.EPERM)
    caller.copy_to_guest(uop, L.pack(dom=op.dom, version=d.grant_table.version))
    return 0


# -- copy, swap, transfer ------------------------------------------------------------------

def _copy(caller, uop: int, count: int) -> int:
    L = S.GNTTAB_COPY_COMPAT if caller.compat else S.GNTTAB_COPY
    me = caller.domain
    for i in range(count):
        addr = uop + i * L.size
        op = L.unpack(caller.copy_from_guest(addr, L.size))
        src = CopyEnd(op.source__domid, bool(op.flags & GNTCOPY_source_gref), op.source__u,
                      op.source__offset)
        dst = CopyEnd(op.dest__domid, bool(op.flags & GNTCOPY_dest_gref), op.dest__u,
                      op.dest__offset)
        try:
            grant_copy(me, src, dst, op.len)
            status = GntSt.okay
        except GrantError as e:
            status = e.status
        caller.copy_to_guest(*_status_field(L, addr, status))
    return 0


def _swap_grant_ref(caller, uop: int, count: int) -> int:
    L = S.GNTTAB_SWAP_GRANT_REF
    gt = caller.domain.grant_table
    for i in range(count):
        addr = uop + i * L.size
        op = L.unpack(caller.copy_from_guest(addr, L.size))
        status = gt.swap_entries(op.ref_a, op.ref_b)
        caller.copy_to_guest(*_status_field(L, addr, status))
    return 0


def _transfer(caller, uop: int, count: int) -> int:
    # Page transfer is not supported: every entry fails (it needs a PV-style
    # frame hand-over that pyxen's guests never use).
    L = S.GNTTAB_TRANSFER_COMPAT if caller.compat else S.GNTTAB_TRANSFER
    for i in range(count):
        addr = uop + i * L.size
        caller.copy_from_guest(addr, L.size)
        caller.copy_to_guest(*_status_field(L, addr, GntSt.general_error))
    return 0


def read_op(caller, layout, addr: int):
    return layout.unpack(caller.copy_from_guest(addr, layout.size))


def do_grant_table_op(caller, cmd, uop, count, *_):
    cmd &= 0xFFFF_FFFF
    count &= 0xFFFF_FFFF
    if count >= COUNT_LIMIT:
        raise HypercallError(Errno.EINVAL)
    op = cmd & CMD_MASK
    if op != GnttabOp.cache_flush and cmd & ~CMD_MASK:
        raise HypercallError(Errno.EINVAL)
    batch = _BATCH_OPS.get(op)
    if batch is not None:
        fn, native, compat = batch
        if count <= BATCH:
            return fn(caller, uop, count)
        rc = fn(caller, uop, BATCH)
        if rc == 0:     # the rest later, so that no single call runs for long
            size = (compat if caller.compat else native).size
            raise HypercallContinuation(cmd, uop + BATCH * size, count - BATCH)
        return rc
    if op == GnttabOp.setup_table:
        return _setup_table(caller, uop, count)
    if op == GnttabOp.query_size:
        return _query_size(caller, uop, count)
    if op == GnttabOp.set_version:
        return _set_version(caller, uop)
    if op == GnttabOp.get_version:
        return _get_version(caller, uop, count)
    if op == GnttabOp.get_status_frames:
        return _get_status_frames(caller, uop, count)
    # dump_table is gone from 4.10; cache_flush only does something on ARM.
    raise HypercallError(Errno.ENOSYS)


_BATCH_OPS = {
    GnttabOp.map_grant_ref: (_map_grant_ref, S.GNTTAB_MAP_GRANT_REF, S.GNTTAB_MAP_GRANT_REF),
    GnttabOp.unmap_grant_ref: (lambda c, u, n: _unmap_grant_ref(c, u, n, replace=False),
                               S.GNTTAB_UNMAP_GRANT_REF, S.GNTTAB_UNMAP_GRANT_REF),
    GnttabOp.unmap_and_replace: (lambda c, u, n: _unmap_grant_ref(c, u, n, replace=True),
                                 S.GNTTAB_UNMAP_AND_REPLACE, S.GNTTAB_UNMAP_AND_REPLACE),
    GnttabOp.copy: (_copy, S.GNTTAB_COPY, S.GNTTAB_COPY_COMPAT),
    GnttabOp.transfer: (_transfer, S.GNTTAB_TRANSFER, S.GNTTAB_TRANSFER_COMPAT),
    GnttabOp.swap_grant_ref: (_swap_grant_ref, S.GNTTAB_SWAP_GRANT_REF,
                              S.GNTTAB_SWAP_GRANT_REF),
}


def register(hv) -> None:
    hv.hypercalls.register(Hypercall.grant_table_op, do_grant_table_op)
