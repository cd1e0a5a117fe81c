"""Guest-facing hypercall handlers: permission rules and errors as an HVM/PVH guest sees them.

Calls go through `hv.hypercalls.dispatch` with a fake guest vCPU caller whose
memory is a bytearray (hvtest_support.FakeGuest). The toolstack side (domain
creation, checking domain state) goes through XenCtrl only.
"""

from __future__ import annotations

import struct

import pytest
from hvtest_support import FakeGuest, running_host

from pyxen.abi import constants as C
from pyxen.abi import structs as S
from pyxen.abi.constants import (
    ConsoleIO,
    Domctl,
    HvmOp,
    HvmParam,
    Hypercall,
    MemOp,
    SchedOp,
    ShutdownReason,
    Sysctl,
    VcpuOp,
    XenFeat,
    XenVer,
)

EPERM, ENOENT, ESRCH, EFAULT, EACCES, EINVAL, ENOSYS = (
    -int(e) for e in (C.Errno.EPERM, C.Errno.ENOENT, C.Errno.ESRCH, C.Errno.EFAULT,
                      C.Errno.EACCES, C.Errno.EINVAL, C.Errno.ENOSYS))
BAD = 0xFFFF_8000_DEAD_0000      # outside the fake guest's memory


@pytest.fixture
def host():
    with running_host() as h:
        yield h


@pytest.fixture
def guest(host):
    """An unprivileged HVM guest (domain 1) with a few pages and params set by the toolstack."""
    domid = host.new_domain(max_kb=16 * 4)
    host.xc.hvm_param_set(domid, HvmParam.STORE_PFN, 0xFEFFC)
    host.xc.hvm_param_set(domid, HvmParam.IDENT_PT, 0xFEFFD000)
    return FakeGuest(host.hv.get_domain(domid))


def _domctl(guest: FakeGuest, cmd: int, domid: int, *,
            version: int = C.DOMCTL_INTERFACE_VERSION) -> int:
    raw = bytearray(S.XEN_DOMCTL_SIZE)
    S.XEN_DOMCTL_HEADER.pack_into(raw, 0, cmd=cmd, interface_version=version, domain=domid)
    return guest.call(Hypercall.domctl, guest.put(0x800, bytes(raw)))


def _sysctl(guest: FakeGuest, cmd: int, *, version: int = C.SYSCTL_INTERFACE_VERSION) -> int:
    raw = bytearray(S.XEN_SYSCTL_SIZE)
    S.XEN_SYSCTL_HEADER.pack_into(raw, 0, cmd=cmd, interface_version=version)
    return guest.call(Hypercall.sysctl, guest.put(0x800, bytes(raw)))


# -- domctl / sysctl ---------------------------------------------------------------------------

def test_unprivileged_domctl_and_sysctl_are_eperm(host, guest):
    me = guest.domain.domid
    assert _domctl(guest, Domctl.getdomaininfo, me) == EPERM
    assert _domctl(guest, Domctl.pausedomain, 0) == EPERM
    assert _domctl(guest, Domctl.destroydomain, me) == EPERM
    assert _sysctl(guest, Sysctl.physinfo) == EPERM
    assert _sysctl(guest, Sysctl.readconsole) == EPERM
    assert host.xc.domain_getinfo(me) is not None
    assert not host.xc.domain_getinfo(me).dying


@pytest.mark.parametrize("call, want", [
    (lambda g: g.call(Hypercall.domctl, BAD), EFAULT),
    (lambda g: g.call(Hypercall.sysctl, BAD), EFAULT),
    (lambda g: _domctl(g, Domctl.getdomaininfo, 0, version=0x0D), EACCES),
    (lambda g: _sysctl(g, Sysctl.physinfo, version=0x0F), EACCES),
    (lambda g: _domctl(g, Domctl.pausedomain, 999), ESRCH),
], ids=["domctl-bad-pointer", "sysctl-bad-pointer", "domctl-version", "sysctl-version",
        "domctl-no-such-domain"])
def test_unprivileged_control_ops_check_version_and_domain_first(guest, call, want):
    assert call(guest) == want


def test_a_xenstore_domain_may_read_domain_info(host):
    payload = S.XEN_DOMCTL_CREATEDOMAIN.pack(
        flags=C.XEN_DOMCTL_CDF_hvm_guest | C.XEN_DOMCTL_CDF_xs_domain)
    out = host.domctl_raw(Domctl.createdomain, 0, payload)
    xs = FakeGuest(host.hv.get_domain(S.XEN_DOMCTL_HEADER.unpack(out).domain))
    assert _domctl(xs, Domctl.getdomaininfo, 0) == 0
    assert _domctl(xs, Domctl.pausedomain, 0) == EPERM        # but nothing more


# -- hvm_op --------------------------------------------------------------------------------------

@pytest.mark.parametrize("as_self", [True, False])
def test_a_guest_reads_its_own_pv_resources_but_not_toolstack_params(guest, as_self):
    me = C.DOMID_SELF if as_self else guest.domain.domid
    assert guest.hvm_param(HvmOp.get_param, HvmParam.STORE_PFN, domid=me) == (0, 0xFEFFC)
    assert guest.hvm_param(HvmOp.get_param, HvmParam.CONSOLE_PFN, domid=me) == (0, 0)
    assert guest.hvm_param(HvmOp.get_param, HvmParam.CALLBACK_IRQ, domid=me) == (0, 0)
    for index in (HvmParam.IDENT_PT, HvmParam.TRIPLE_FAULT_REASON, HvmParam.DM_DOMAIN,
                  HvmParam.IOREQ_PFN, HvmParam.VIRIDIAN):
        rc, value = guest.hvm_param(HvmOp.get_param, index, value=0x5A5A, domid=me)
        assert rc == EPERM, HvmParam(index).name
        assert value == 0x5A5A            # nothing was copied back


def test_a_guest_sets_only_guest_settable_params(host, guest):
    me = guest.domain.domid
    vector_cb = (2 << 56) | 0xF3
    assert guest.hvm_param(HvmOp.set_param, HvmParam.CALLBACK_IRQ, vector_cb)[0] == 0
    assert host.xc.hvm_param_get(me, HvmParam.CALLBACK_IRQ) == vector_cb
    for index in (HvmParam.STORE_PFN, HvmParam.IDENT_PT, HvmParam.ACPI_S_STATE,
                  HvmParam.TRIPLE_FAULT_REASON):
        assert guest.hvm_param(HvmOp.set_param, index, 1)[0] == EPERM, HvmParam(index).name
    assert host.xc.hvm_param_get(me, HvmParam.STORE_PFN) == 0xFEFFC
    assert host.xc.hvm_param_get(me, HvmParam.IDENT_PT) == 0xFEFFD000


def test_hvm_params_of_another_domain(host, guest):
    other = host.new_domain()
    host.xc.hvm_param_set(other, HvmParam.STORE_PFN, 0x1234)
    for op in (HvmOp.get_param, HvmOp.set_param):
        assert guest.hvm_param(op, HvmParam.STORE_PFN, domid=other)[0] == EPERM
        assert guest.hvm_param(op, HvmParam.CALLBACK_IRQ, domid=0)[0] == EPERM
        assert guest.hvm_param(op, HvmParam.STORE_PFN, domid=4321)[0] == ESRCH
        assert guest.hvm_param(op, C.HVM_NR_PARAMS, domid=4321)[0] == EINVAL
        assert guest.hvm_param(op, C.HVM_NR_PARAMS)[0] == EINVAL
    assert host.xc.hvm_param_get(other, HvmParam.STORE_PFN) == 0x1234


def test_unknown_hvm_op_is_enosys(guest):
    assert guest.call(Hypercall.hvm_op, 0x7777, guest.put(0, bytes(16))) == ENOSYS


# -- xen_version -----------------------------------------------------------------------------------

def test_xen_version_basics(guest):
    assert guest.call(Hypercall.xen_version, XenVer.version, 0) == (4 << 16) | 10
    assert guest.call(Hypercall.xen_version, XenVer.pagesize, 0) == 4096
    assert guest.call(Hypercall.xen_version, XenVer.pagesize, guest.put(0, b"\0" * 8)) == EINVAL
    addr = guest.put(0, bytes(16))
    assert guest.call(Hypercall.xen_version, XenVer.guest_handle, addr) == 0
    assert guest.get(addr, 16) == bytes(range(16))
    assert guest.call(Hypercall.xen_version, XenVer.build_id, addr) == EPERM
    assert guest.call(Hypercall.xen_version, 99, addr) == ENOSYS


def test_xen_version_features_of_a_pvh_guest(guest):
    addr = guest.put(0, S.XEN_FEATURE_INFO.pack(submap_idx=0))
    assert guest.call(Hypercall.xen_version, XenVer.get_features, addr) == 0
    bits = S.XEN_FEATURE_INFO.unpack(guest.get(addr, 8)).submap
    for f in (XenFeat.auto_translated_physmap, XenFeat.hvm_callback_vector,
              XenFeat.hvm_safe_pvclock, XenFeat.memory_op_vnode_supported):
        assert bits & (1 << f), f.name
    assert not bits & (1 << XenFeat.dom0)
    guest.put(0, S.XEN_FEATURE_INFO.pack(submap_idx=1))
    assert guest.call(Hypercall.xen_version, XenVer.get_features, addr) == EINVAL


def test_commandline_is_denied_to_an_unprivileged_guest():
    with running_host("loglvl=all") as host:
        g = FakeGuest(host.hv.get_domain(host.new_domain()))
        addr = g.put(0, b"\xAA" * 64)
        assert g.call(Hypercall.xen_version, XenVer.commandline, addr) == 0
        # Only "<denied>" and its NUL are copied, the rest of the buffer is untouched.
        assert g.get(addr, 12) == b"<denied>\0\xAA\xAA\xAA"
        assert host.xc.xen_version_string(XenVer.commandline, 1024) == "loglvl=all"


# -- sched_op ----------------------------------------------------------------------------------

def test_shutdown_reason_is_reported_to_the_toolstack(host, guest):
    me = guest.domain.domid
    assert not host.xc.domain_getinfo(me).shutdown
    assert guest.sched_shutdown(SchedOp.shutdown, ShutdownReason.suspend) == 0
    info = host.xc.domain_getinfo(me)
    assert info.shutdown and info.shutdown_reason == ShutdownReason.suspend


def test_recorded_shutdown_code_wins_over_the_shutdown_reason(host, guest):
    me = guest.domain.domid
    assert guest.sched_shutdown(SchedOp.shutdown_code, ShutdownReason.reboot) == 0
    assert not host.xc.domain_getinfo(me).shutdown          # recording alone does nothing
    assert guest.sched_shutdown(SchedOp.shutdown, ShutdownReason.poweroff) == 0
    info = host.xc.domain_getinfo(me)
    assert info.shutdown and info.shutdown_reason == ShutdownReason.reboot
    # A later shutdown or crash does not change the reason either.
    assert guest.sched_shutdown(SchedOp.shutdown, ShutdownReason.crash) == 0
    assert host.xc.domain_getinfo(me).shutdown_reason == ShutdownReason.reboot


def test_the_first_recorded_shutdown_code_wins(host, guest):
    assert guest.sched_shutdown(SchedOp.shutdown_code, ShutdownReason.reboot) == 0
    assert guest.sched_shutdown(SchedOp.shutdown_code, ShutdownReason.watchdog) == 0
    assert guest.sched_shutdown(SchedOp.shutdown, ShutdownReason.poweroff) == 0
    assert host.xc.domain_getinfo(guest.domain.domid).shutdown_reason == ShutdownReason.reboot


def test_remote_shutdown_needs_privilege(host, guest):
    other = host.new_domain()
    addr = guest.put(0, S.SCHED_REMOTE_SHUTDOWN.pack(domain_id=other, reason=0))
    assert guest.call(Hypercall.sched_op, SchedOp.remote_shutdown, addr) == EPERM
    guest.put(0, S.SCHED_REMOTE_SHUTDOWN.pack(domain_id=guest.domain.domid, reason=0))
    assert guest.call(Hypercall.sched_op, SchedOp.remote_shutdown, addr) == EPERM
    guest.put(0, S.SCHED_REMOTE_SHUTDOWN.pack(domain_id=555, reason=0))
    assert guest.call(Hypercall.sched_op, SchedOp.remote_shutdown, addr) == ESRCH
    assert not host.xc.domain_getinfo(other).shutdown
    assert not host.xc.domain_getinfo(guest.domain.domid).shutdown


def test_remote_shutdown_of_dom0_by_a_guest_is_eperm(guest):
    addr = guest.put(0, S.SCHED_REMOTE_SHUTDOWN.pack(domain_id=0, reason=0))
    assert guest.call(Hypercall.sched_op, SchedOp.remote_shutdown, addr) == EPERM


def test_other_sched_ops(guest):
    assert guest.call(Hypercall.sched_op, SchedOp.yield_, 0) == 0
    assert guest.call(Hypercall.sched_op, SchedOp.pin_override, guest.put(0, bytes(4))) == EPERM
    assert guest.call(Hypercall.sched_op, 0x55, 0) == ENOSYS


# -- memory_op ---------------------------------------------------------------------------------

def test_reservation_queries(host, guest):
    me = guest.domain.domid
    assert guest.call(Hypercall.memory_op, MemOp.populate_physmap, guest.put(
        0x400, S.XEN_MEMORY_RESERVATION.pack(extent_start=guest.put(0x500, struct.pack(
            "<3Q", 0x10, 0x11, 0x40)), nr_extents=3, domid=C.DOMID_SELF))) == 3
    for domid in (C.DOMID_SELF, me):
        arg = guest.domid_arg(domid)
        assert guest.call(Hypercall.memory_op, MemOp.current_reservation, arg) == 3
        assert guest.call(Hypercall.memory_op, MemOp.maximum_reservation, arg) == 16
        assert guest.call(Hypercall.memory_op, MemOp.maximum_gpfn, arg) == 0x40
    assert host.xc.domain_getinfo(me).tot_pages == 3
    other = host.new_domain()
    for op in (MemOp.current_reservation, MemOp.maximum_reservation, MemOp.maximum_gpfn):
        assert guest.call(Hypercall.memory_op, op, guest.domid_arg(other)) == EPERM
        assert guest.call(Hypercall.memory_op, op, guest.domid_arg(0)) == EPERM
        assert guest.call(Hypercall.memory_op, op, guest.domid_arg(999)) == ESRCH
        # a continuation start extent makes no sense for these
        assert guest.call(Hypercall.memory_op, op | (1 << C.MEMOP_EXTENT_SHIFT),
                          guest.domid_arg(C.DOMID_SELF)) == EINVAL
    assert guest.call(Hypercall.memory_op, MemOp.maximum_ram_page, 0) == \
        host.xc.physinfo().total_pages - 1


def test_populate_physmap_for_another_domain_is_refused(host, guest):
    other = host.new_domain(max_kb=64)
    lst = guest.put(0x500, struct.pack("<Q", 0x20))
    for domid, rc in ((other, EPERM), (777, ESRCH)):
        arg = guest.put(0x400, S.XEN_MEMORY_RESERVATION.pack(
            extent_start=lst, nr_extents=1, domid=domid))
        assert guest.call(Hypercall.memory_op, MemOp.populate_physmap, arg) == rc
    assert host.xc.domain_getinfo(other).tot_pages == 0
    # A guest may not use extents above 2 MiB (order 9): nothing is done.
    arg = guest.put(0x400, S.XEN_MEMORY_RESERVATION.pack(
        extent_start=lst, nr_extents=1, extent_order=10, domid=C.DOMID_SELF))
    assert guest.call(Hypercall.memory_op, MemOp.populate_physmap, arg) == 0


def test_memory_map_before_and_after_the_toolstack_stores_one(host, guest):
    req = guest.put(0x400, S.XEN_MEMORY_MAP.pack(nr_entries=8, buffer=guest.base + 0x600))
    assert guest.call(Hypercall.memory_op, MemOp.memory_map, req) == ENOSYS
    e820 = [(0, 0x9F000, 1), (0x9F000, 0x1000, 2), (0x100000, 0x3F00000, 1)]
    host.xc.set_memory_map(guest.domain.domid, e820)
    assert guest.call(Hypercall.memory_op, MemOp.memory_map, req) == 0
    assert S.XEN_MEMORY_MAP.unpack(guest.get(req, 16)).nr_entries == 3
    got = [S.E820_ENTRY.unpack(guest.get(guest.base + 0x600 + 20 * i, 20)) for i in range(3)]
    assert [(e.addr, e.size, e.type) for e in got] == e820
    # A buffer for one entry gets one entry, and the count says so.
    guest.put(0x600, b"\xEE" * 60)
    guest.put(0x400, S.XEN_MEMORY_MAP.pack(nr_entries=1, buffer=guest.base + 0x600))
    assert guest.call(Hypercall.memory_op, MemOp.memory_map, req) == 0
    assert S.XEN_MEMORY_MAP.unpack(guest.get(req, 16)).nr_entries == 1
    assert S.E820_ENTRY.unpack(guest.get(guest.base + 0x600, 20)).size == 0x9F000
    assert guest.get(guest.base + 0x600 + 20, 20) == b"\xEE" * 20


def test_memory_ops_an_hvm_guest_may_not_use(guest):
    for op in (MemOp.machine_memory_map, MemOp.machphys_mapping, MemOp.exchange, 63):
        assert guest.call(Hypercall.memory_op, op, guest.put(0, bytes(32))) == ENOSYS


def test_a_guest_cannot_set_its_own_memory_map_for_another_domain(host, guest):
    other = host.new_domain()
    entry = guest.put(0x600, S.E820_ENTRY.pack(addr=0, size=4096, type=1))
    arg = guest.put(0x400, S.XEN_FOREIGN_MEMORY_MAP.pack(
        domid=other, map__nr_entries=1, map__buffer=entry))
    assert guest.call(Hypercall.memory_op, MemOp.set_memory_map, arg) == EPERM


# -- console_io, vcpu_op, refused and unknown hypercalls ------------------------------------------

def test_console_io_rules(guest):
    assert guest.call(Hypercall.console_io, ConsoleIO.write, 3, guest.put(0, b"hi\n")) == 0
    assert guest.call(Hypercall.console_io, ConsoleIO.read, 16, guest.put(0, bytes(16))) == EPERM
    assert guest.call(Hypercall.console_io, 7, 0, 0) == ENOSYS


def test_vcpu_op_on_a_vcpu_that_does_not_exist(guest):
    assert guest.call(Hypercall.vcpu_op, VcpuOp.is_up, 0, 0) == ENOENT
    assert guest.call(Hypercall.vcpu_op, VcpuOp.is_up, 0xFFFF_FFFF, 0) == ENOENT
    assert guest.call(Hypercall.vcpu_op, 11, 0, 0) == ENOSYS       # send_nmi: not for HVM


@pytest.mark.parametrize("nr", [0, 1, 6, 11, 13, 14, 16, 21, 23, 25, 28, 30, 31, 37, 39, 42,
                                48, 50, 55, 56, 60, 64, 1000, 0xFFFF_FFFF])
def test_hypercalls_outside_the_hvm_table_are_enosys(guest, nr):
    assert guest.call(nr, 0, 0, 0) == ENOSYS


def test_refused_hypercalls(guest):
    assert guest.call(Hypercall.platform_op, guest.put(0, bytes(128))) == EPERM
    assert guest.call(Hypercall.xsm_op, 0, 0) == ENOSYS


# -- bad pointers ------------------------------------------------------------------------------

def test_bad_pointers_give_efault_and_do_not_harm_the_domain(host, guest):
    me = guest.domain.domid
    calls = [
        (Hypercall.hvm_op, HvmOp.get_param, BAD),
        (Hypercall.hvm_op, HvmOp.set_param, BAD),
        (Hypercall.sched_op, SchedOp.shutdown, BAD),
        (Hypercall.sched_op, SchedOp.shutdown_code, BAD),
        (Hypercall.memory_op, MemOp.current_reservation, BAD),
        (Hypercall.memory_op, MemOp.populate_physmap, BAD),
        (Hypercall.xen_version, XenVer.get_features, BAD),
        (Hypercall.xen_version, XenVer.extraversion, BAD),
        (Hypercall.xen_version, XenVer.commandline, BAD),
        (Hypercall.console_io, ConsoleIO.write, 10, BAD),
    ]
    for nr, *args in calls:
        assert guest.call(nr, *args) == EFAULT, (nr, args)
    # A struct that starts inside guest memory but runs off its end faults too.
    end = guest.base + len(guest.mem) - 8
    assert guest.call(Hypercall.hvm_op, HvmOp.get_param, end) == EFAULT
    info = host.xc.domain_getinfo(me)
    assert not info.shutdown and not info.dying


def test_a_handler_bug_crashes_the_calling_guest_not_the_host(host, guest):
    def broken(caller, *args):
        raise KeyError("handler bug")

    host.hv.hypercalls.register(Hypercall.dm_op, broken)     # in the HVM table, unused
    assert guest.call(Hypercall.dm_op, 1, 2) == EFAULT
    info = host.xc.domain_getinfo(guest.domain.domid)
    assert info.shutdown and info.shutdown_reason == ShutdownReason.crash
    assert "BUG: hypercall 41" in host.console_text()
    # The same bug reached through Dom0 fails the call and crashes nothing.
    with pytest.raises(OSError) as e:
        host.privcmd.hypercall(Hypercall.dm_op, 1, 2)
    assert e.value.errno == -EFAULT
    assert host.xc.domain_getinfo(0) is not None and not host.xc.domain_getinfo(0).shutdown
