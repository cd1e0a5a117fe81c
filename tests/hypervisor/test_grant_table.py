"""Grant tables v1 (grant_table_op, hypercall 20): guests through the dispatcher
with FakeGuest callers, Dom0 back-ends through privcmd and toolstack/gnttab."""

from __future__ import annotations

import struct
import threading

import pytest
from hvtest_support import FakeGuest, running_host

from pyxen.abi import constants as C
from pyxen.abi import structs as S
from pyxen.hypervisor.memory import NO_OWNER
from pyxen.hypervisor.p2m import Access, P2MType
from pyxen.toolstack.gnttab import Gnttab, GrantError
from pyxen.toolstack.privcmd import XenError

GT = C.Hypercall.grant_table_op
Op = C.GnttabOp
St = C.GntSt
GT_GFN = 0x100          # where each test guest maps its grant-table frame 0
MAP_GFN = 0x200         # where mappers put foreign pages
INVALID_FRAME = (1 << 64) - 1


def _new_guest(host, pages: int = 16) -> FakeGuest:
    domid = host.new_domain(max_kb=1024)
    host.xc.populate_physmap_exact(domid, list(range(pages)))
    return FakeGuest(host.hv.get_domain(domid), size=0x10000)


@pytest.fixture
def host():
    with running_host() as h:
        yield h


@pytest.fixture
def pair(host):
    """(granter, mapper): two guests with 16 pages each, the granter's table mapped."""
    a, b = _new_guest(host), _new_guest(host)
    assert add_gt_frame(a, 0, GT_GFN) == 0
    return a, b


# -- helpers: what a guest does -------------------------------------------------------------------

def add_gt_frame(g: FakeGuest, idx: int, gfn: int) -> int:
    addr = g.put(0x40, S.XEN_ADD_TO_PHYSMAP.pack(domid=C.DOMID_SELF,
                                                 space=C.MapSpace.grant_table,
                                                 idx=idx, gpfn=gfn))
    return g.call(C.Hypercall.memory_op, C.MemOp.add_to_physmap, addr)


def grant(g: FakeGuest, ref: int, domid: int, gfn: int, *, readonly: bool = False,
          flags: int | None = None) -> None:
    """Fill entry `ref` in the guest's mapped table, flags last (as a guest does)."""
    base = (GT_GFN << 12) + ref * 8
    g.domain.phys.write(base + 2, struct.pack("<HI", domid, gfn))
    if flags is None:
        flags = C.GTF_permit_access | (C.GTF_readonly if readonly else 0)
    g.domain.phys.write(base, struct.pack("<H", flags))


def entry_flags(g: FakeGuest, ref: int) -> int:
    return struct.unpack("<H", g.domain.phys.read((GT_GFN << 12) + ref * 8, 2))[0]


def map_ref(g: FakeGuest, dom: int, ref: int, gfn: int = MAP_GFN,
            flags: int = C.GNTMAP_host_map):
    addr = g.put(0x100, S.GNTTAB_MAP_GRANT_REF.pack(host_addr=gfn << 12, flags=flags,
                                                    ref=ref, dom=dom, handle=0xDEAD))
    rc = g.call(GT, Op.map_grant_ref, addr, 1)
    op = S.GNTTAB_MAP_GRANT_REF.unpack(g.get(addr, 32))
    assert rc == 0
    return op.status, op.handle, op.dev_bus_addr


def unmap(g: FakeGuest, handle: int, gfn: int = MAP_GFN, dev_bus_addr: int = 0) -> int:
    addr = g.put(0x180, S.GNTTAB_UNMAP_GRANT_REF.pack(host_addr=gfn << 12, handle=handle,
                                                      dev_bus_addr=dev_bus_addr))
    assert g.call(GT, Op.unmap_grant_ref, addr, 1) == 0
    return S.GNTTAB_UNMAP_GRANT_REF.unpack(g.get(addr, 24)).status


def copy(g: FakeGuest, *, src, dst, length: int, flags: int) -> int:
    """src/dst: (ref or gfn, domid, offset). Returns the entry's status."""
    addr = g.put(0x200, S.GNTTAB_COPY.pack(
        source__u=src[0], source__domid=src[1], source__offset=src[2],
        dest__u=dst[0], dest__domid=dst[1], dest__offset=dst[2], len=length, flags=flags))
    assert g.call(GT, Op.copy, addr, 1) == 0
    return S.GNTTAB_COPY.unpack(g.get(addr, 40)).status


def query_size(g: FakeGuest, dom: int = C.DOMID_SELF):
    addr = g.put(0x280, S.GNTTAB_QUERY_SIZE.pack(dom=dom))
    assert g.call(GT, Op.query_size, addr, 1) == 0
    return S.GNTTAB_QUERY_SIZE.unpack(g.get(addr, 16))


def setup_table(g: FakeGuest, nr_frames: int, dom: int = C.DOMID_SELF):
    """Returns (status, frame list); 32-bit layout for a compat caller."""
    layout = S.GNTTAB_SETUP_TABLE_COMPAT if g.compat else S.GNTTAB_SETUP_TABLE
    size, fmt = (4, "<I") if g.compat else (8, "<Q")
    frames = g.put(0x1000, b"\xaa" * (size * max(nr_frames, 1)))
    addr = g.put(0x300, layout.pack(dom=dom, nr_frames=nr_frames, frame_list=frames))
    assert g.call(GT, Op.setup_table, addr, 1) == 0
    listing = [struct.unpack(fmt, g.get(frames + i * size, size))[0] for i in range(nr_frames)]
    return layout.unpack(g.get(addr, layout.size)).status, listing


def mfn_of(g: FakeGuest, gfn: int) -> int:
    return g.domain.p2m.lookup(gfn).mfn


# -- sizes and frames -----------------------------------------------------------------------------

def test_query_size_reports_one_frame_of_sixty_four(host):
    g = _new_guest(host)
    q = query_size(g)
    assert (q.nr_frames, q.max_nr_frames, q.status) == (1, 64, St.okay)


def test_gnttab_max_frames_parameter_and_per_domain_limit():
    with running_host("gnttab_max_frames=4") as host:
        g = _new_guest(host)
        assert query_size(g).max_nr_frames == 4
        assert setup_table(g, 5)[0] == St.general_error
        host.domctl_raw(C.Domctl.set_gnttab_limits, g.domain.domid,
                        S.XEN_DOMCTL_SET_GNTTAB_LIMITS.pack(grant_frames=2,
                                                            maptrack_frames=8))
        assert query_size(g).max_nr_frames == 2
        assert setup_table(g, 3)[0] == St.general_error
        assert add_gt_frame(g, 2, 0x50) == -C.Errno.EINVAL
        assert add_gt_frame(g, 1, 0x50) == 0
        assert query_size(g).nr_frames == 2


def test_query_size_of_other_domains(host, pair):
    a, b = pair
    assert query_size(a, b.domain.domid).status == St.permission_denied
    assert query_size(a, 0x7000).status == St.bad_domain


def test_setup_table_gives_translated_guests_their_gfns(host):
    g = _new_guest(host)
    status, frames = setup_table(g, 2)
    assert status == St.okay and frames == [INVALID_FRAME, INVALID_FRAME]
    assert query_size(g).nr_frames == 2
    assert add_gt_frame(g, 1, 0x77) == 0
    assert setup_table(g, 2) == (St.okay, [INVALID_FRAME, 0x77])
    assert setup_table(g, 65)[0] == St.general_error


def test_setup_table_compat_layout(host):
    g = _new_guest(host)
    g.compat = True
    assert setup_table(g, 1)[0] == St.address_too_big    # ~0 does not fit 32 bits
    g.compat = False
    assert add_gt_frame(g, 0, 0x66) == 0
    g.compat = True
    assert setup_table(g, 1) == (St.okay, [0x66])


def test_count_and_command_checks(host, pair):
    a, _ = pair
    addr = a.put(0x300, bytes(64))
    assert a.call(GT, Op.setup_table, addr, 2) == -C.Errno.EINVAL
    assert a.call(GT, Op.query_size, addr, 0) == -C.Errno.EINVAL
    assert a.call(GT, Op.map_grant_ref, addr, 1 << 31) == -C.Errno.EINVAL
    assert a.call(GT, Op.map_grant_ref | (1 << 12), addr, 1) == -C.Errno.EINVAL
    assert a.call(GT, Op.dump_table, addr, 1) == -C.Errno.ENOSYS
    assert a.call(GT, 99, addr, 1) == -C.Errno.ENOSYS
    assert a.call(GT, Op.map_grant_ref, 0x1234, 1) == -C.Errno.EFAULT
    assert a.call(GT, Op.map_grant_ref, addr, 0) == 0


def test_versions(host, pair):
    a, b = pair
    addr = a.put(0x300, S.GNTTAB_SET_VERSION.pack(version=1))
    assert a.call(GT, Op.set_version, addr, 1) == 0
    a.put(0x300, S.GNTTAB_SET_VERSION.pack(version=2))
    assert a.call(GT, Op.set_version, addr, 1) == -C.Errno.ENOSYS
    assert S.GNTTAB_SET_VERSION.unpack(a.get(addr, 4)).version == 1
    a.put(0x300, S.GNTTAB_SET_VERSION.pack(version=3))
    assert a.call(GT, Op.set_version, addr, 1) == -C.Errno.EINVAL
    a.put(0x300, S.GNTTAB_GET_VERSION.pack(dom=C.DOMID_SELF))
    assert a.call(GT, Op.get_version, addr, 1) == 0
    assert S.GNTTAB_GET_VERSION.unpack(a.get(addr, 8)).version == 1
    a.put(0x300, S.GNTTAB_GET_VERSION.pack(dom=b.domain.domid))
    assert a.call(GT, Op.get_version, addr, 1) == -C.Errno.EPERM
    a.put(0x300, S.GNTTAB_GET_VERSION.pack(dom=0x7000))
    assert a.call(GT, Op.get_version, addr, 1) == -C.Errno.ESRCH
    a.put(0x300, S.GNTTAB_GET_STATUS_FRAMES.pack(dom=C.DOMID_SELF, nr_frames=1))
    assert a.call(GT, Op.get_status_frames, addr, 1) == 0
    assert S.GNTTAB_GET_STATUS_FRAMES.unpack(a.get(addr, 16)).status == St.general_error


# -- map / unmap ----------------------------------------------------------------------------------

def test_map_write_read_and_unmap(host, pair):
    a, b = pair
    grant(a, 8, b.domain.domid, 3)
    status, handle, bus = map_ref(b, a.domain.domid, 8)
    assert status == St.okay
    mfn = mfn_of(a, 3)
    e = b.domain.p2m.lookup(MAP_GFN)
    assert (e.mfn, e.type, e.access) == (mfn, P2MType.GRANT_MAP_RW, Access.RWX)
    assert bus == mfn << 12
    assert entry_flags(a, 8) == C.GTF_permit_access | C.GTF_reading | C.GTF_writing
    b.domain.phys.write((MAP_GFN << 12) + 0x10, b"hello from B")
    assert a.domain.phys.read((3 << 12) + 0x10, 12) == b"hello from B"
    assert unmap(b, handle) == St.okay
    assert b.domain.p2m.lookup(MAP_GFN) is None
    assert entry_flags(a, 8) == C.GTF_permit_access
    assert unmap(b, handle) == St.bad_handle
    assert unmap(b, 12345) == St.bad_handle


def test_map_replaces_and_frees_what_was_at_the_gfn(host, pair):
    a, b = pair
    grant(a, 8, b.domain.domid, 3)
    before = b.domain.tot_pages
    status, handle, _ = map_ref(b, a.domain.domid, 8, gfn=5)     # gfn 5 is B's RAM
    assert status == St.okay and b.domain.tot_pages == before - 1
    assert map_ref(b, a.domain.domid, 8, gfn=5)[0] == St.general_error   # not over a grant
    assert unmap(b, handle, gfn=5) == St.okay


def test_readonly_mapping_refuses_writes(host, pair):
    a, b = pair
    a.domain.phys.write(3 << 12, b"original")
    grant(a, 9, b.domain.domid, 3, readonly=True)
    assert map_ref(b, a.domain.domid, 9)[0] == St.general_error     # RO grant, RW map
    assert entry_flags(a, 9) == C.GTF_permit_access | C.GTF_readonly
    status, handle, _ = map_ref(b, a.domain.domid, 9,
                                flags=C.GNTMAP_host_map | C.GNTMAP_readonly)
    assert status == St.okay
    e = b.domain.p2m.lookup(MAP_GFN)
    assert (e.type, e.access) == (P2MType.GRANT_MAP_RO, Access.RX)
    assert entry_flags(a, 9) == C.GTF_permit_access | C.GTF_readonly | C.GTF_reading
    b.domain.phys.write(MAP_GFN << 12, b"scribble")           # dropped: read-only
    assert a.domain.phys.read(3 << 12, 8) == b"original"
    assert b.domain.phys.read(MAP_GFN << 12, 8) == b"original"
    assert unmap(b, handle) == St.okay
    assert entry_flags(a, 9) == C.GTF_permit_access | C.GTF_readonly


def test_flags_stay_while_any_mapping_of_their_kind_remains(host, pair):
    a, b = pair
    grant(a, 8, b.domain.domid, 3)
    ro = C.GNTMAP_host_map | C.GNTMAP_readonly
    _, h_ro, _ = map_ref(b, a.domain.domid, 8, gfn=0x300, flags=ro)
    _, h_rw, _ = map_ref(b, a.domain.domid, 8, gfn=0x301)
    busy = C.GTF_permit_access | C.GTF_reading
    assert entry_flags(a, 8) == busy | C.GTF_writing
    assert unmap(b, h_rw, gfn=0x301) == St.okay
    assert entry_flags(a, 8) == busy
    assert unmap(b, h_ro, gfn=0x300) == St.okay
    assert entry_flags(a, 8) == C.GTF_permit_access


def test_map_error_statuses(host, pair):
    a, b = pair
    dom_a, dom_b = a.domain.domid, b.domain.domid
    grant(a, 8, dom_b, 3)
    assert map_ref(b, dom_a, 8, flags=0)[0] == St.bad_gntref
    assert map_ref(b, dom_a, 8, flags=C.GNTMAP_device_map)[0] == St.general_error
    assert map_ref(b, dom_a, 8, flags=C.GNTMAP_host_map | 1 << 5)[0] == St.general_error
    assert map_ref(b, 0x7000, 8)[0] == St.bad_domain
    assert map_ref(b, C.DOMID_SELF, 8)[0] == St.bad_domain
    assert map_ref(b, dom_a, 512)[0] == St.bad_gntref           # table has 1 frame
    assert map_ref(b, dom_a, 9)[0] == St.general_error          # GTF_invalid
    grant(a, 10, dom_a, 3)                                      # granted to someone else
    assert map_ref(b, dom_a, 10)[0] == St.general_error
    grant(a, 11, dom_b, 3, flags=C.GTF_accept_transfer)
    assert map_ref(b, dom_a, 11)[0] == St.general_error
    grant(a, 12, dom_b, 3, flags=C.GTF_permit_access | C.GTF_sub_page)
    assert map_ref(b, dom_a, 12)[0] == St.general_error
    grant(a, 13, dom_b, 0x40)                                   # not populated
    assert map_ref(b, dom_a, 13)[0] == St.bad_page
    assert entry_flags(a, 13) == C.GTF_permit_access           # flags undone
    grant(a, 14, dom_b, GT_GFN)                                 # the table itself
    assert map_ref(b, dom_a, 14)[0] == St.bad_page
    assert map_ref(b, dom_a, 8, gfn=1 << 36)[0] == St.general_error
    assert entry_flags(a, 8) == C.GTF_permit_access
    status, handle, bus = map_ref(b, dom_a, 8)
    assert status == St.okay
    assert unmap(b, handle, gfn=MAP_GFN + 1) == St.general_error   # not where it is
    assert unmap(b, handle, dev_bus_addr=bus + 0x1000) == St.general_error
    assert unmap(b, handle, gfn=0) == St.okay      # host_addr 0: nothing to undo...
    assert unmap(b, handle) == St.okay             # ...the mapping is still there
    assert b.domain.grant_table.maptrack == {}


def test_maptrack_full_and_pin_limit(host, pair):
    a, b = pair
    b.domain.max_maptrack_frames = 1                 # 256 handles
    ro = C.GNTMAP_host_map | C.GNTMAP_readonly
    for ref in range(3):
        grant(a, ref + 20, b.domain.domid, ref + 1, readonly=True)
    handles = []
    for i in range(256):
        status, handle, _ = map_ref(b, a.domain.domid, 20 + i // 100, gfn=0x400 + i, flags=ro)
        assert status == St.okay
        handles.append(handle)
    assert len(set(handles)) == 256
    assert map_ref(b, a.domain.domid, 22, gfn=0x600, flags=ro)[0] == St.no_device_space
    assert unmap(b, handles[0], gfn=0x400) == St.okay
    b.domain.max_maptrack_frames = 4
    for i in range(28):       # ref 20 has 99 read-only pins left; 128 is refused
        assert map_ref(b, a.domain.domid, 20, gfn=0x700 + i, flags=ro)[0] == St.okay
    assert map_ref(b, a.domain.domid, 20, gfn=0x800, flags=ro)[0] == St.okay
    assert map_ref(b, a.domain.domid, 20, gfn=0x801, flags=ro)[0] == St.general_error


def test_unmap_and_replace_without_a_replacement(host, pair):
    a, b = pair
    grant(a, 8, b.domain.domid, 3)
    _, handle, _ = map_ref(b, a.domain.domid, 8)
    layout = S.GNTTAB_UNMAP_AND_REPLACE
    addr = b.put(0x180, layout.pack(host_addr=MAP_GFN << 12, new_addr=0x5000, handle=handle))
    assert b.call(GT, Op.unmap_and_replace, addr, 1) == 0
    assert layout.unpack(b.get(addr, 24)).status == St.general_error
    b.put(0x180, layout.pack(host_addr=MAP_GFN << 12, new_addr=0, handle=handle))
    assert b.call(GT, Op.unmap_and_replace, addr, 1) == 0
    assert layout.unpack(b.get(addr, 24)).status == St.okay
    assert entry_flags(a, 8) == C.GTF_permit_access


def test_several_entries_in_one_call_and_efault_midway(host, pair):
    a, b = pair
    grant(a, 8, b.domain.domid, 3)
    grant(a, 9, b.domain.domid, 4)
    L = S.GNTTAB_MAP_GRANT_REF
    ops = (L.pack(host_addr=0x300 << 12, flags=C.GNTMAP_host_map, ref=8, dom=a.domain.domid)
           + L.pack(host_addr=0x301 << 12, flags=C.GNTMAP_host_map, ref=99,
                    dom=a.domain.domid))
    addr = b.put(len(b.mem) - 2 * L.size, ops)
    assert b.call(GT, Op.map_grant_ref, addr, 2) == 0
    first, second = L.unpack(b.get(addr, 32)), L.unpack(b.get(addr + 32, 32))
    assert (first.status, second.status) == (St.okay, St.general_error)
    assert b.call(GT, Op.map_grant_ref, addr + 32, 2) == -C.Errno.EFAULT   # 2nd unreadable


def test_swap_grant_ref(host, pair):
    a, b = pair
    grant(a, 8, b.domain.domid, 3)
    grant(a, 9, b.domain.domid, 4, readonly=True)
    L = S.GNTTAB_SWAP_GRANT_REF

    def swap(x, y):
        addr = a.put(0x380, L.pack(ref_a=x, ref_b=y))
        assert a.call(GT, Op.swap_grant_ref, addr, 1) == 0
        return L.unpack(a.get(addr, 12)).status

    assert swap(8, 9) == St.okay
    assert entry_flags(a, 8) == C.GTF_permit_access | C.GTF_readonly
    assert a.domain.grant_table.read_entry(9)[2] == 3
    assert swap(8, 512) == St.bad_gntref
    _, handle, _ = map_ref(b, a.domain.domid, 9)
    assert swap(8, 9) == St.eagain
    assert unmap(b, handle) == St.okay
    assert swap(9, 9) == St.okay


def test_transfer_is_refused_per_entry(host, pair):
    a, b = pair
    L = S.GNTTAB_TRANSFER
    addr = b.put(0x380, L.pack(mfn=3, domid=a.domain.domid, ref=8))
    assert b.call(GT, Op.transfer, addr, 1) == 0
    assert L.unpack(b.get(addr, L.size)).status == St.general_error


# -- copy -----------------------------------------------------------------------------------------

def test_copy_in_every_direction(host, pair):
    a, b = pair
    dom_a, self_ = a.domain.domid, C.DOMID_SELF
    a.domain.phys.write((3 << 12) + 0x100, b"granted bytes")
    grant(a, 8, b.domain.domid, 3)
    grant(a, 9, b.domain.domid, 4)
    src, dst = C.GNTCOPY_source_gref, C.GNTCOPY_dest_gref
    # gref -> own frame
    assert copy(b, src=(8, dom_a, 0x100), dst=(7, self_, 0x20), length=13, flags=src) == 0
    assert b.domain.phys.read((7 << 12) + 0x20, 13) == b"granted bytes"
    # own frame -> gref
    b.domain.phys.write(6 << 12, b"from B")
    assert copy(b, src=(6, self_, 0), dst=(9, dom_a, 0xFFA), length=6, flags=dst) == 0
    assert a.domain.phys.read((4 << 12) + 0xFFA, 6) == b"from B"
    # gref -> gref
    assert copy(b, src=(8, dom_a, 0x100), dst=(9, dom_a, 0), length=7, flags=src | dst) == 0
    assert a.domain.phys.read(4 << 12, 7) == b"granted"
    # own frame -> own frame
    assert copy(b, src=(6, self_, 0), dst=(2, self_, 8), length=6, flags=0) == 0
    assert b.domain.phys.read((2 << 12) + 8, 6) == b"from B"
    assert entry_flags(a, 8) == entry_flags(a, 9) == C.GTF_permit_access


def test_copy_errors(host, pair):
    a, b = pair
    dom_a, dom_b, self_ = a.domain.domid, b.domain.domid, C.DOMID_SELF
    src, dst = C.GNTCOPY_source_gref, C.GNTCOPY_dest_gref
    grant(a, 8, dom_b, 3)
    grant(a, 9, dom_b, 4, readonly=True)
    assert copy(b, src=(3, dom_b, 0), dst=(2, self_, 0), length=4, flags=0) \
        == St.permission_denied                       # a frame must be named by DOMID_SELF
    assert copy(b, src=(8, dom_a, 4000), dst=(2, self_, 0), length=100, flags=src) \
        == St.bad_copy_arg
    assert copy(b, src=(2, self_, 0), dst=(8, dom_a, 4090), length=7, flags=dst) \
        == St.bad_copy_arg
    assert copy(b, src=(2, self_, 0), dst=(9, dom_a, 0), length=4, flags=dst) \
        == St.general_error                           # read-only grant
    assert copy(b, src=(9, dom_a, 0), dst=(2, self_, 0), length=4, flags=src) == St.okay
    assert copy(b, src=(8, 0x7000, 0), dst=(2, self_, 0), length=4, flags=src) \
        == St.bad_domain
    assert copy(b, src=(600, dom_a, 0), dst=(2, self_, 0), length=4, flags=src) \
        == St.bad_gntref
    assert copy(b, src=(8, dom_a, 0), dst=(0x55, self_, 0), length=4, flags=src) \
        == St.bad_page
    assert copy(a, src=(8, dom_a, 0), dst=(2, self_, 0), length=4, flags=src) \
        == St.general_error                           # not granted to A itself
    for ref in (8, 9):
        assert entry_flags(a, ref) & (C.GTF_reading | C.GTF_writing) == 0


def test_copy_keeps_the_flags_of_a_mapped_grant(host, pair):
    a, b = pair
    grant(a, 8, b.domain.domid, 3)
    _, handle, _ = map_ref(b, a.domain.domid, 8, flags=C.GNTMAP_host_map | C.GNTMAP_readonly)
    assert copy(b, src=(2, C.DOMID_SELF, 0), dst=(8, a.domain.domid, 0), length=4,
                flags=C.GNTCOPY_dest_gref) == St.okay
    assert entry_flags(a, 8) == C.GTF_permit_access | C.GTF_reading
    assert unmap(b, handle) == St.okay


def test_copy_compat_layout(host, pair):
    a, b = pair
    b.compat = True
    a.domain.phys.write(3 << 12, b"compat")
    grant(a, 8, b.domain.domid, 3)
    addr = b.put(0x200, S.GNTTAB_COPY_COMPAT.pack(
        source__u=8, source__domid=a.domain.domid, dest__u=5, dest__domid=C.DOMID_SELF,
        dest__offset=1, len=6, flags=C.GNTCOPY_source_gref))
    assert b.call(GT, Op.copy, addr, 1) == 0
    assert S.GNTTAB_COPY_COMPAT.unpack(b.get(addr, 24)).status == St.okay
    assert b.domain.phys.read((5 << 12) + 1, 6) == b"compat"


# -- frame lifetime -------------------------------------------------------------------------------

def _decrease(g: FakeGuest, gfns: list[int]) -> int:
    lst = g.put(0x2000, b"".join(struct.pack("<Q", x) for x in gfns))
    addr = g.put(0x380, S.XEN_MEMORY_RESERVATION.pack(extent_start=lst, nr_extents=len(gfns),
                                                      domid=C.DOMID_SELF))
    return g.call(C.Hypercall.memory_op, C.MemOp.decrease_reservation, addr)


def test_ballooned_out_grant_frame_lives_until_unmapped(host, pair):
    a, b = pair
    hv = host.hv
    grant(a, 8, b.domain.domid, 3)
    a.domain.phys.write(3 << 12, b"still here")
    _, handle, _ = map_ref(b, a.domain.domid, 8)
    mfn = mfn_of(a, 3)
    free0, tot0 = hv.machine.free_frames, a.domain.tot_pages
    assert _decrease(a, [3]) == 1
    assert a.domain.tot_pages == tot0 - 1 and a.domain.p2m.lookup(3) is None
    assert hv.machine.free_frames == free0                  # kept for B
    assert hv.machine.owner[mfn] == C.DOMID_XEN
    assert b.domain.phys.read(MAP_GFN << 12, 10) == b"still here"
    # No new use of a frame its owner gave up.
    assert copy(b, src=(8, a.domain.domid, 0), dst=(2, C.DOMID_SELF, 0), length=4,
                flags=C.GNTCOPY_source_gref) == St.bad_domain
    assert unmap(b, handle) == St.okay
    assert hv.machine.free_frames == free0 + 1
    assert hv.machine.owner[mfn] == NO_OWNER


def test_destroyed_granter_frames_live_until_unmapped(host, pair):
    a, b = pair
    hv = host.hv
    grant(a, 8, b.domain.domid, 3)
    _, handle, _ = map_ref(b, a.domain.domid, 8)
    mfn = mfn_of(a, 3)
    free0 = hv.machine.free_frames
    pages_a = a.domain.tot_pages
    host.xc.domain_destroy(a.domain.domid)
    # All of A's pages, its shared_info and its grant frame went, but the mapped one.
    assert hv.machine.free_frames == free0 + pages_a - 1 + 2
    assert hv.machine.owner[mfn] == C.DOMID_XEN
    b.domain.phys.write(MAP_GFN << 12, b"safe")
    assert unmap(b, handle) == St.okay
    assert hv.machine.free_frames == free0 + pages_a + 2
    assert hv.machine.owner[mfn] == NO_OWNER


def test_destroyed_mapper_releases_its_mappings(host, pair):
    a, b = pair
    hv = host.hv
    grant(a, 8, b.domain.domid, 3)
    assert map_ref(b, a.domain.domid, 8)[0] == St.okay
    assert entry_flags(a, 8) & C.GTF_writing
    host.xc.domain_destroy(b.domain.domid)
    assert entry_flags(a, 8) == C.GTF_permit_access
    assert a.domain.grant_table.active == {}
    free0 = hv.machine.free_frames
    assert _decrease(a, [3]) == 1
    assert hv.machine.free_frames == free0 + 1             # no longer pinned


# -- Dom0 back-ends (privcmd + toolstack/gnttab) --------------------------------------------------

def test_dom0_maps_through_gnttab(host, pair):
    a, _ = pair
    dom0 = host.hv.dom0.domid
    grant(a, 8, dom0, 3)
    grant(a, 9, dom0, 4, readonly=True)
    a.domain.phys.write(4 << 12, b"read me")
    gnttab = Gnttab(host.privcmd)
    with gnttab.map_grant_ref(a.domain.domid, 8) as page:
        assert len(page.view) == 4096
        page.view[0:5] = b"dom0!"
        assert entry_flags(a, 8) == C.GTF_permit_access | C.GTF_reading | C.GTF_writing
        handle = page.handle
    assert page.view is None
    assert a.domain.phys.read(3 << 12, 5) == b"dom0!"
    assert entry_flags(a, 8) == C.GTF_permit_access
    with pytest.raises(XenError):
        host.privcmd.grant_mapped_frame(handle)            # gone with the unmap
    ro = gnttab.map_grant_ref(a.domain.domid, 9, writable=False)
    assert bytes(ro.view[:7]) == b"read me"
    with pytest.raises(TypeError):
        ro.view[0:1] = b"x"
    ro.unmap()
    with pytest.raises(GrantError) as err:
        gnttab.map_grant_ref(a.domain.domid, 9)            # RO grant, RW map
    assert err.value.status == St.general_error
    with pytest.raises(GrantError) as err:
        gnttab.map_grant_ref(0x7000, 9)
    assert err.value.status == St.bad_domain


def test_dom0_mapping_outlives_the_granter(host, pair):
    a, _ = pair
    hv = host.hv
    grant(a, 8, hv.dom0.domid, 3)
    page = Gnttab(host.privcmd).map_grant_ref(a.domain.domid, 8)
    mfn = mfn_of(a, 3)
    host.xc.domain_destroy(a.domain.domid)
    assert hv.machine.owner[mfn] == C.DOMID_XEN
    page.view[0:2] = b"ok"                                  # still our (kept) frame
    free0 = hv.machine.free_frames
    page.unmap()
    assert hv.machine.free_frames == free0 + 1 and hv.machine.owner[mfn] == NO_OWNER


def test_a_guest_cannot_reach_the_host_entry_point(host, pair):
    a, b = pair
    grant(a, 8, b.domain.domid, 3)
    _, handle, _ = map_ref(b, a.domain.domid, 8)
    with pytest.raises(PermissionError):
        host.hv.grant_mapped_frame(b.domain, handle)
    with pytest.raises(XenError):
        host.privcmd.grant_mapped_frame(handle)            # Dom0 has no such handle


# -- concurrency ----------------------------------------------------------------------------------

def test_concurrent_maps_copies_and_unmaps_leave_no_trace(host, pair):
    a, b = pair
    c = _new_guest(host)
    gnttab = Gnttab(host.privcmd)
    for i in range(4):
        grant(a, 30 + i, b.domain.domid, 1 + i)
        grant(a, 40 + i, c.domain.domid, 1 + i)
        grant(a, 50 + i, host.hv.dom0.domid, 1 + i)
    errors: list = []

    def guest_worker(g: FakeGuest, ref0: int, lane: int) -> None:
        own = FakeGuest(g.domain, size=0x10000)            # one caller per thread
        for n in range(40):
            ref = ref0 + n % 4
            st, h, _ = map_ref(own, a.domain.domid, ref, gfn=0x900 + lane)
            st2 = copy(own, src=(ref, a.domain.domid, 0), dst=(8 + lane, C.DOMID_SELF, 0),
                       length=64, flags=C.GNTCOPY_source_gref)
            st3 = unmap(own, h, gfn=0x900 + lane) if st == 0 else -99
            if (st, st2, st3) != (0, 0, 0):
                errors.append((g.domain.domid, n, st, st2, st3))

    def dom0_worker() -> None:
        for n in range(40):
            with gnttab.map_grant_ref(a.domain.domid, 50 + n % 4) as page:
                page.view[0] = n

    threads = [threading.Thread(target=guest_worker, args=(b, 30, 0)),
               threading.Thread(target=guest_worker, args=(b, 30, 1)),
               threading.Thread(target=guest_worker, args=(c, 40, 2)),
               threading.Thread(target=dom0_worker)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert a.domain.grant_table.active == {}
    for ref in (30, 40, 50):
        for i in range(4):
            assert entry_flags(a, ref + i) == C.GTF_permit_access
    for g in (b, c):
        assert g.domain.grant_table.maptrack == {}
    assert host.hv.dom0.grant_table.maptrack == {}


def test_long_batches_continue_in_chunks(host, pair):
    """More than one batch: the call stops after 256 entries and asks to be re-issued
    with the rest (Xen's hypercall continuation); Dom0's privcmd re-issues at once."""
    a, b = pair
    L = S.GNTTAB_SWAP_GRANT_REF
    n = 300
    addr = a.put(0x1000, b"".join(L.pack(ref_a=8, ref_b=9, status=1) for _ in range(n)))
    assert a.call(GT, Op.swap_grant_ref, addr, n) == GT       # RAX: re-issue this call
    assert a.continuation == (Op.swap_grant_ref, addr + 256 * L.size, n - 256)
    done = [L.unpack(a.get(addr + i * L.size, L.size)).status for i in range(n)]
    assert done[:256] == [St.okay] * 256 and done[256:] == [1] * (n - 256)
    a.continuation = None
    assert a.call(GT, Op.swap_grant_ref, addr + 256 * L.size, n - 256) == 0
    assert all(L.unpack(a.get(addr + i * L.size, L.size)).status == St.okay
               for i in range(n))


def test_a_hosts_machine_memory_is_freed_with_it():
    """The grant pin registry must not keep a machine's memory alive after its host."""
    import gc
    import weakref

    from pyxen.hypervisor.grant_table import frame_pins
    from pyxen.hypervisor.memory import MachineMemory
    m = MachineMemory(64 * 4096)
    assert frame_pins(m) is frame_pins(m)
    ref = weakref.ref(m)
    del m
    gc.collect()
    assert ref() is None
