"""memory_op physmap edits: decrease_reservation, add_to_physmap(_batch),
remove_from_physmap — their effect on the p2m, tot_pages and machine memory."""

from __future__ import annotations

import struct

import pytest
from hvtest_support import FakeGuest, running_host

from pyxen.abi import constants as C
from pyxen.abi import structs as S
from pyxen.hypervisor.p2m import P2MType

MEM = C.Hypercall.memory_op
Space = C.MapSpace
E = C.Errno
INVALID = (1 << 64) - 1


@pytest.fixture
def host():
    with running_host() as h:
        yield h


def _guest(host, pages: int = 16) -> FakeGuest:
    domid = host.new_domain(max_kb=1024)
    host.xc.populate_physmap_exact(domid, list(range(pages)))
    return FakeGuest(host.hv.get_domain(domid), size=0x10000)


@pytest.fixture
def g(host):
    return _guest(host)


def decrease(g: FakeGuest, gfns: list[int], *, order: int = 0, domid: int = C.DOMID_SELF,
             start: int = 0) -> int:
    if g.compat:
        lst = g.put(0x2000, b"".join(struct.pack("<I", x) for x in gfns))
        raw = S.XEN_MEMORY_RESERVATION_COMPAT.pack(extent_start=lst, nr_extents=len(gfns),
                                                   extent_order=order, domid=domid)
    else:
        lst = g.put(0x2000, b"".join(struct.pack("<Q", x) for x in gfns))
        raw = S.XEN_MEMORY_RESERVATION.pack(extent_start=lst, nr_extents=len(gfns),
                                            extent_order=order, domid=domid)
    addr = g.put(0x100, raw)
    return g.call(MEM, C.MemOp.decrease_reservation | start << C.MEMOP_EXTENT_SHIFT, addr)


def add(g: FakeGuest, space: int, idx: int, gpfn: int, *, size: int = 0,
        domid: int = C.DOMID_SELF, start: int = 0) -> int:
    layout = S.XEN_ADD_TO_PHYSMAP_COMPAT if g.compat else S.XEN_ADD_TO_PHYSMAP
    addr = g.put(0x100, layout.pack(domid=domid, size=size, space=space, idx=idx, gpfn=gpfn))
    return g.call(MEM, C.MemOp.add_to_physmap | start << C.MEMOP_EXTENT_SHIFT, addr)


def add_batch(g: FakeGuest, space: int, pairs: list[tuple[int, int]], *,
              domid: int = C.DOMID_SELF, foreign: int = 0):
    """Returns (rc, errs)."""
    size, fmt = (4, "<I") if g.compat else (8, "<Q")
    idxs = g.put(0x1000, b"".join(struct.pack(fmt, i) for i, _ in pairs))
    gpfns = g.put(0x1800, b"".join(struct.pack(fmt, p) for _, p in pairs))
    errs = g.put(0x2000, b"\x55" * 4 * len(pairs))
    layout = S.XEN_ADD_TO_PHYSMAP_BATCH_COMPAT if g.compat else S.XEN_ADD_TO_PHYSMAP_BATCH
    addr = g.put(0x100, layout.pack(domid=domid, space=space, size=len(pairs), u=foreign,
                                    idxs=idxs, gpfns=gpfns, errs=errs))
    rc = g.call(MEM, C.MemOp.add_to_physmap_batch, addr)
    return rc, [struct.unpack("<i", g.get(errs + 4 * k, 4))[0] for k in range(len(pairs))]


def remove(g: FakeGuest, gpfn: int, *, domid: int = C.DOMID_SELF, start: int = 0) -> int:
    layout = S.XEN_REMOVE_FROM_PHYSMAP_COMPAT if g.compat else S.XEN_REMOVE_FROM_PHYSMAP
    addr = g.put(0x100, layout.pack(domid=domid, gpfn=gpfn))
    return g.call(MEM, C.MemOp.remove_from_physmap | start << C.MEMOP_EXTENT_SHIFT, addr)


# -- decrease_reservation ---------------------------------------------------------------------

def test_decrease_reservation_frees_the_pages(host, g):
    free0, tot0 = host.hv.machine.free_frames, g.domain.tot_pages
    assert decrease(g, [2, 3]) == 2
    assert g.domain.p2m.lookup(2) is None and g.domain.p2m.lookup(3) is None
    assert g.domain.tot_pages == tot0 - 2
    assert host.hv.machine.free_frames == free0 + 2


def test_decrease_reservation_stops_at_a_hole(g):
    tot0 = g.domain.tot_pages
    assert decrease(g, [4, 100, 5]) == 1
    assert g.domain.p2m.lookup(5) is not None and g.domain.tot_pages == tot0 - 1
    assert decrease(g, [4]) == 0                        # already gone


def test_decrease_reservation_extents_and_limits(host, g):
    assert decrease(g, [6], order=1) == 1
    assert g.domain.p2m.lookup(6) is None and g.domain.p2m.lookup(7) is None
    assert decrease(g, [8], order=10) == 0              # above a domU's largest order
    assert decrease(g, [9, 10], start=1) == 2           # continuation: from extent 1
    assert g.domain.p2m.lookup(9) is not None and g.domain.p2m.lookup(10) is None
    assert decrease(g, [9], start=1) == 1               # nothing left to do
    other = _guest(host)
    assert decrease(g, [1], domid=other.domain.domid) == 0   # not privileged: no effect
    assert other.domain.p2m.lookup(1) is not None
    assert decrease(g, [1], domid=0x7000) == 0


def test_decrease_reservation_stops_at_a_grant_mapping(host, g):
    granter = _guest(host)
    gt = granter.domain.grant_table
    gt.frame_mfn(0)
    view = host.hv.machine.frame(gt.frames[0])
    struct.pack_into("<HHI", view, 8 * 8, C.GTF_permit_access, g.domain.domid, 3)
    addr = g.put(0x300, S.GNTTAB_MAP_GRANT_REF.pack(host_addr=0x200 << 12, ref=8,
                                                    flags=C.GNTMAP_host_map,
                                                    dom=granter.domain.domid))
    assert g.call(C.Hypercall.grant_table_op, C.GnttabOp.map_grant_ref, addr, 1) == 0
    assert decrease(g, [0x200]) == 0                    # not the domain's own page
    assert remove(g, 0x200) == -E.ENOENT


def test_dom0_decreases_a_guest_and_compat_layout(host, g):
    lst = host.privcmd.buffer(struct.pack("<Q", 1))
    arg = host.privcmd.buffer(S.XEN_MEMORY_RESERVATION.pack(
        extent_start=lst.address, nr_extents=1, domid=g.domain.domid))
    assert host.privcmd.hypercall(MEM, C.MemOp.decrease_reservation, arg.address) == 1
    assert g.domain.p2m.lookup(1) is None
    g.compat = True
    assert decrease(g, [11, 12]) == 2
    assert g.domain.p2m.lookup(11) is None and g.domain.p2m.lookup(12) is None


def test_increase_reservation_is_not_provided(g):
    addr = g.put(0x100, S.XEN_MEMORY_RESERVATION.pack(domid=C.DOMID_SELF))
    assert g.call(MEM, C.MemOp.increase_reservation, addr) == -E.ENOSYS


# -- add_to_physmap ----------------------------------------------------------------------------

def test_shared_info_moves_and_replaces_ram(host, g):
    d = g.domain
    free0, tot0 = host.hv.machine.free_frames, d.tot_pages
    assert add(g, Space.shared_info, 0, 5) == 0          # gfn 5 held RAM: freed
    e = d.p2m.lookup(5)
    assert (e.mfn, e.type) == (d.shared_info_mfn, P2MType.SPECIAL)
    assert d.shared_info_gfn == 5
    assert d.tot_pages == tot0 - 1 and host.hv.machine.free_frames == free0 + 1
    assert add(g, Space.shared_info, 0, 0x80) == 0
    assert d.p2m.lookup(5) is None and d.p2m.lookup(0x80).mfn == d.shared_info_mfn
    assert d.shared_info_gfn == 0x80
    assert add(g, Space.shared_info, 1, 0x81) == -E.EINVAL
    assert add(g, Space.shared_info, 0, 1 << 40) == -E.EINVAL


def test_grant_table_frames_grow_the_table(host, g):
    d = g.domain
    assert add(g, Space.grant_table, 0, 0x90) == 0
    assert d.p2m.lookup(0x90).type == P2MType.SPECIAL
    assert d.p2m.lookup(0x90).mfn == d.grant_table.frames[0]
    assert add(g, Space.grant_table, 5, 0x95) == 0
    assert d.grant_table.nr_frames == 6
    assert add(g, Space.grant_table, 0, 0x91) == 0       # moves: old slot emptied
    assert d.p2m.lookup(0x90) is None and d.grant_table.frame_gfn(0) == 0x91
    assert add(g, Space.grant_table, 64, 0x96) == -E.EINVAL
    assert add(g, Space.grant_table, C.XENMAPIDX_grant_table_status, 0x97) == -E.EINVAL
    free0 = host.hv.machine.free_frames
    host.xc.domain_destroy(d.domid)                      # table frames go with the domain
    assert host.hv.machine.free_frames >= free0 + 2


def test_gmfn_and_gmfn_range_move_pages(host, g):
    d = g.domain
    d.phys.write(3 << 12, b"page three")
    tot0, mfn = d.tot_pages, d.p2m.lookup(3).mfn
    assert add(g, Space.gmfn, 3, 0x40) == 0
    assert d.p2m.lookup(3) is None and d.p2m.lookup(0x40).mfn == mfn
    assert d.phys.read(0x40 << 12, 10) == b"page three"
    assert d.tot_pages == tot0
    assert add(g, Space.gmfn, 3, 0x41) == -E.EINVAL      # nothing at gfn 3 any more
    assert add(g, Space.gmfn_range, 4, 0x50, size=3) == 0
    assert [d.p2m.lookup(0x50 + i) is not None for i in range(3)] == [True] * 3
    assert d.p2m.lookup(4) is None and d.p2m.lookup(6) is None
    assert add(g, Space.gmfn_range, 8, 0x60, size=2, start=3) == -E.EILSEQ
    assert add(g, Space.gmfn, 9, 9) == -E.EXDEV            # onto itself: it is freed
    assert d.p2m.lookup(9) is None and d.tot_pages == tot0 - 1


def test_add_to_physmap_checks(host, g):
    other = _guest(host)
    assert add(g, Space.gmfn_foreign, 1, 0x40) == -E.ENOSYS
    assert add(g, Space.shared_info, 0, 0x40, domid=other.domain.domid) == -E.EPERM
    assert add(g, Space.shared_info, 0, 0x40, domid=0x7000) == -E.ESRCH
    assert add(g, Space.dev_mmio, 0, 0x40) == -E.EACCES
    assert add(g, 17, 0, 0x40) == -E.EINVAL
    assert add(g, Space.shared_info, 0, 0x40, start=1 << 16) == -E.EDOM
    # Dom0 may edit a guest's physmap.
    arg = host.privcmd.buffer(S.XEN_ADD_TO_PHYSMAP.pack(
        domid=other.domain.domid, space=Space.shared_info, idx=0, gpfn=0x70))
    assert host.privcmd.hypercall(MEM, C.MemOp.add_to_physmap, arg.address) == 0
    assert other.domain.shared_info_gfn == 0x70


def test_add_to_physmap_compat_layout(g):
    g.compat = True
    assert add(g, Space.shared_info, 0, 0x44) == 0
    assert g.domain.shared_info_gfn == 0x44
    assert remove(g, 0x44) == 0
    assert g.domain.shared_info_gfn is None


def test_add_to_physmap_batch(host, g):
    d = g.domain
    rc, errs = add_batch(g, Space.grant_table, [(0, 0xA0), (1, 0xA1), (99, 0xA2)])
    assert rc == 0 and errs == [0, 0, -E.EINVAL]
    assert d.grant_table.frame_gfn(1) == 0xA1
    rc, errs = add_batch(g, Space.gmfn_foreign, [(1, 0xB0)], foreign=0)
    assert rc == 0 and errs == [-E.EPERM]               # only the hardware domain
    assert add_batch(g, Space.gmfn_range, [(1, 0xB0)])[0] == -E.EOPNOTSUPP
    g.compat = True
    rc, errs = add_batch(g, Space.gmfn, [(2, 0xC0), (0x300, 0xC1)])
    assert rc == 0 and errs == [0, -E.EINVAL]
    assert d.p2m.lookup(0xC0) is not None and d.p2m.lookup(2) is None


# -- remove_from_physmap -------------------------------------------------------------------------

def test_remove_from_physmap(host, g):
    d = g.domain
    free0, tot0 = host.hv.machine.free_frames, d.tot_pages
    assert remove(g, 2) == 0
    assert d.p2m.lookup(2) is None
    assert d.tot_pages == tot0 - 1 and host.hv.machine.free_frames == free0 + 1
    assert remove(g, 2) == -E.ENOENT
    assert add(g, Space.shared_info, 0, 0x30) == 0
    free1 = host.hv.machine.free_frames
    assert remove(g, 0x30) == 0                          # unhooked, never freed
    assert d.shared_info_gfn is None and host.hv.machine.free_frames == free1
    assert add(g, Space.shared_info, 0, 0x31) == 0       # and can be mapped again
    assert remove(g, 3, start=1) == -E.EINVAL
    other = _guest(host)
    assert remove(g, 3, domid=other.domain.domid) == -E.EPERM
    assert remove(g, 3, domid=0x7000) == -E.ESRCH


def test_new_compat_layouts_are_checked_against_the_headers():
    # tests/abi compiles every COMPAT_LAYOUTS member with gcc -m32.
    for layout in (S.GNTTAB_SETUP_TABLE_COMPAT, S.GNTTAB_TRANSFER_COMPAT,
                   S.GNTTAB_COPY_COMPAT, S.GNTTAB_GET_STATUS_FRAMES_COMPAT,
                   S.XEN_ADD_TO_PHYSMAP_COMPAT, S.XEN_ADD_TO_PHYSMAP_BATCH_COMPAT,
                   S.XEN_REMOVE_FROM_PHYSMAP_COMPAT):
        assert layout in S.COMPAT_LAYOUTS
