"""Control operations (domctl, sysctl, memory_op, hvm_op) issued as Dom0 through privcmd.

Every test talks to a fresh `Hypervisor("")` only through `Privcmd` and
`XenCtrl` (or raw structs handed to `privcmd.hypercall`), as the toolstack does.
"""

from __future__ import annotations

import struct

import pytest
from hvtest_support import FakeGuest, running_host

from pyxen.abi import constants as C
from pyxen.abi import structs as S
from pyxen.abi.constants import Domctl, Errno, HvmParam, Hypercall, MemOp, Sysctl, XenVer
from pyxen.toolstack.privcmd import XenError

DU = S.XEN_DOMCTL_UNION_OFFSET
SU = S.XEN_SYSCTL_UNION_OFFSET
PAGE_KB = 4


@pytest.fixture
def host():
    with running_host() as h:
        yield h


def _errno(excinfo) -> int:
    return excinfo.value.errno


# -- domain life cycle ---------------------------------------------------------------------

def test_create_gives_a_paused_hvm_domain_with_the_handle_asked_for(host):
    handle = bytes(range(100, 116))
    domid = host.xc.domain_create(handle)
    assert domid == 1
    info = host.xc.domain_getinfo(domid)
    assert info.domid == 1 and info.hvm and info.paused
    assert not (info.shutdown or info.dying or info.running or info.blocked)
    assert (info.tot_pages, info.max_pages, info.nr_online_vcpus) == (0, 0, 0)
    assert info.handle == handle
    assert host.xc.domain_create(bytes(16)) == 2


def test_create_at_a_requested_domid(host):
    assert host.xc.domain_create(bytes(16), domid=7) == 7
    assert host.xc.domain_create(bytes(16)) == 1
    with pytest.raises(XenError):
        host.xc.domain_create(bytes(16), domid=7)
    assert [i.domid for i in host.xc.domain_getinfolist()] == [0, 1, 7]


def test_create_rejects_unknown_flags_and_pv(host):
    payload = S.XEN_DOMCTL_CREATEDOMAIN.pack(flags=C.XEN_DOMCTL_CDF_hvm_guest | (1 << 9))
    with pytest.raises(XenError) as e:
        host.domctl_raw(Domctl.createdomain, 0, payload)
    assert _errno(e) == Errno.EINVAL
    with pytest.raises(XenError):
        host.xc.domain_create(bytes(16), hvm=False)
    assert [i.domid for i in host.xc.domain_getinfolist()] == [0]


def test_pause_and_unpause_count(host):
    domid = host.new_domain()
    host.xc.domain_unpause(domid)                 # the creation pause
    assert not host.xc.domain_getinfo(domid).paused
    host.xc.domain_pause(domid)
    host.xc.domain_pause(domid)
    host.xc.domain_unpause(domid)
    assert host.xc.domain_getinfo(domid).paused   # two pauses need two unpauses
    host.xc.domain_unpause(domid)
    assert not host.xc.domain_getinfo(domid).paused


def test_unpausing_an_unpaused_domain_is_einval(host):
    domid = host.new_domain()
    host.xc.domain_unpause(domid)
    with pytest.raises(XenError) as e:
        host.xc.domain_unpause(domid)
    assert _errno(e) == Errno.EINVAL


def test_pause_count_is_limited_to_255(host):
    domid = host.new_domain()                     # creation counts as the first pause
    for _ in range(254):
        host.xc.domain_pause(domid)
    with pytest.raises(XenError) as e:
        host.xc.domain_pause(domid)
    assert _errno(e) == Errno.EOVERFLOW


def test_dom0_cannot_pause_or_destroy_itself(host):
    with pytest.raises(XenError) as e:
        host.xc.domain_pause(0)
    assert _errno(e) == Errno.EINVAL
    with pytest.raises(XenError) as e:
        host.xc.domain_destroy(0)
    assert _errno(e) == Errno.EINVAL
    info = host.xc.domain_getinfo(0)
    assert info is not None and not info.hvm and not info.dying


def test_destroy_removes_the_domain_and_returns_its_memory(host):
    free0 = host.xc.physinfo().free_pages
    domid = host.new_domain(max_kb=64 * PAGE_KB)
    # The hypervisor's own frame for the domain (shared_info), as in Xen.
    assert host.xc.physinfo().free_pages == free0 - 1
    assert host.xc.populate_physmap(domid, list(range(64))) == 64
    assert host.xc.physinfo().free_pages == free0 - 65
    host.xc.domain_destroy(domid)
    assert host.xc.physinfo().free_pages == free0
    assert host.xc.domain_getinfo(domid) is None
    assert [i.domid for i in host.xc.domain_getinfolist()] == [0]
    for op in (lambda: host.xc.domain_destroy(domid), lambda: host.xc.domain_pause(domid),
               lambda: host.xc.domain_setmaxmem(domid, 4)):
        with pytest.raises(XenError) as e:
            op()
        assert _errno(e) == Errno.ESRCH


def test_operations_on_a_domain_that_never_existed_are_esrch(host):
    for op in (lambda: host.xc.domain_unpause(42), lambda: host.xc.domain_max_vcpus(42, 1),
               lambda: host.xc.domain_setmaxmem(42, 4), lambda: host.xc.hvm_param_get(42, 1),
               lambda: host.xc.populate_physmap(42, [0]),
               lambda: host.xc.set_memory_map(42, [(0, 4096, 1)])):
        with pytest.raises(XenError) as e:
            op()
        assert _errno(e) == Errno.ESRCH


# -- vCPUs --------------------------------------------------------------------------------

def test_max_vcpus(host):
    domid = host.new_domain()
    host.xc.domain_max_vcpus(domid, 2)
    info = host.xc.domain_getinfo(domid)
    assert info.max_vcpu_id == 1 and info.nr_online_vcpus == 0
    assert not info.running and not info.blocked     # no vCPU online yet
    host.xc.domain_max_vcpus(domid, 2)               # the same value again: fine
    with pytest.raises(XenError) as e:
        host.xc.domain_max_vcpus(domid, 1)           # Xen cannot reduce it
    assert _errno(e) == Errno.EINVAL
    with pytest.raises(XenError) as e:
        host.xc.domain_max_vcpus(host.new_domain(), 129)
    assert _errno(e) == Errno.EINVAL
    host.xc.domain_destroy(domid)
    assert host.xc.domain_getinfo(domid) is None


def test_raising_max_vcpus_is_ebusy(host):
    domid = host.new_domain()
    host.xc.domain_max_vcpus(domid, 1)
    with pytest.raises(XenError) as e:
        host.xc.domain_max_vcpus(domid, 2)
    assert _errno(e) == Errno.EBUSY


def test_max_vcpu_id_of_a_domain_without_vcpus_is_invalid(host):
    domid = host.new_domain()
    assert host.xc.domain_getinfo(domid).max_vcpu_id == 0xFFFF_FFFF


def test_max_vcpus_on_dom0_itself_is_einval(host):
    with pytest.raises(XenError) as e:
        host.xc.domain_max_vcpus(0, 1)
    assert _errno(e) == Errno.EINVAL


# -- memory ---------------------------------------------------------------------------------

def test_populate_physmap_stops_at_the_domain_limit_and_reports_extents_done(host):
    domid = host.new_domain(max_kb=4 * PAGE_KB)
    assert host.xc.populate_physmap(domid, [10, 11, 12, 13, 14, 15]) == 4
    info = host.xc.domain_getinfo(domid)
    assert (info.tot_pages, info.max_pages) == (4, 4)
    assert host.xc.populate_physmap(domid, [20]) == 0
    with pytest.raises(XenError) as e:
        host.xc.populate_physmap_exact(domid, [21])
    assert _errno(e) == Errno.ENOMEM


def test_populate_physmap_with_order_counts_extents_not_pages(host):
    domid = host.new_domain(max_kb=8 * PAGE_KB)
    assert host.xc.populate_physmap(domid, [0, 2, 4, 6, 8], order=1) == 4
    assert host.xc.domain_getinfo(domid).tot_pages == 8
    # maximum_gpfn: the highest populated frame
    arg = host.privcmd.buffer(struct.pack("<H", domid))
    try:
        assert host.privcmd.hypercall(Hypercall.memory_op, MemOp.maximum_gpfn,
                                      arg.address) == 7
    finally:
        host.privcmd.release(arg)


def test_populate_physmap_stops_when_the_host_runs_out():
    with running_host("mem=1M") as host:
        free0 = host.xc.physinfo().free_pages
        assert free0 == 254            # frame 0 is never handed out; Dom0's shared_info
        domid = host.new_domain(max_kb=1 << 20)
        assert host.xc.populate_physmap(domid, list(range(300))) == 253
        assert host.xc.physinfo().free_pages == 0
        assert host.xc.domain_getinfo(domid).tot_pages == 253
        host.xc.domain_destroy(domid)
        assert host.xc.physinfo().free_pages == 254


def test_setmaxmem_is_reported_in_pages(host):
    domid = host.new_domain(max_kb=1024)
    assert host.xc.domain_getinfo(domid).max_pages == 256
    host.xc.domain_setmaxmem(domid, 4096 + 3)     # the kB below a page are dropped
    assert host.xc.domain_getinfo(domid).max_pages == 1024


def test_setmaxmem_below_current_use_is_accepted(host):
    domid = host.new_domain(max_kb=8 * PAGE_KB)
    assert host.xc.populate_physmap(domid, list(range(8))) == 8
    host.xc.domain_setmaxmem(domid, 2 * PAGE_KB)
    info = host.xc.domain_getinfo(domid)
    assert (info.tot_pages, info.max_pages) == (8, 2)
    assert host.xc.populate_physmap(domid, [100]) == 0


def test_a_new_domain_never_sees_a_destroyed_domains_data(host):
    a = host.new_domain(max_kb=4 * PAGE_KB)
    assert host.xc.populate_physmap(a, [5]) == 1
    (view,) = host.xc.map_foreign(a, [5])
    view[:8] = b"secret!!"
    assert bytes(host.xc.map_foreign(a, [5], writable=False)[0][:8]) == b"secret!!"
    host.xc.domain_destroy(a)
    b = host.new_domain(max_kb=4 * PAGE_KB)
    assert host.xc.populate_physmap(b, [5]) == 1
    assert bytes(host.xc.map_foreign(b, [5])[0]) == bytes(4096)


def test_map_foreign_is_checked(host):
    domid = host.new_domain(max_kb=4 * PAGE_KB)
    host.xc.populate_physmap(domid, [1])
    with pytest.raises(XenError) as e:
        host.xc.map_foreign(domid, [2])               # not populated
    assert _errno(e) == Errno.EINVAL
    with pytest.raises(XenError) as e:
        host.xc.map_foreign(99, [1])
    assert _errno(e) == Errno.ESRCH
    ro = host.xc.map_foreign(domid, [1], writable=False)[0]
    with pytest.raises(TypeError):
        ro[0] = 1


def test_set_memory_map_limits(host):
    domid = host.new_domain()
    host.xc.set_memory_map(domid, [(0, 0x9F000, 1), (0x100000, 0x700000, 1)])
    with pytest.raises(XenError) as e:
        host.xc.set_memory_map(domid, [(i << 12, 4096, 1) for i in range(1025)])
    assert _errno(e) == Errno.EINVAL


# -- HVM parameters --------------------------------------------------------------------------

def test_hvm_params_round_trip(host):
    domid = host.new_domain()
    # pyxen's documented default: a triple fault crashes the domain.
    assert host.xc.hvm_param_get(domid, HvmParam.TRIPLE_FAULT_REASON) == \
        C.ShutdownReason.crash
    host.xc.hvm_param_set(domid, HvmParam.STORE_PFN, 0xFEFFC)
    host.xc.hvm_param_set(domid, HvmParam.TRIPLE_FAULT_REASON, C.ShutdownReason.reboot)
    host.xc.hvm_param_set(domid, HvmParam.MCA_CAP, 1)
    assert host.xc.hvm_param_get(domid, HvmParam.STORE_PFN) == 0xFEFFC
    assert host.xc.hvm_param_get(domid, HvmParam.TRIPLE_FAULT_REASON) == 1
    assert host.xc.hvm_param_get(domid, HvmParam.MCA_CAP) == 1
    assert host.xc.hvm_param_get(domid, HvmParam.CONSOLE_PFN) == 0
    other = host.new_domain()
    assert host.xc.hvm_param_get(other, HvmParam.STORE_PFN) == 0     # per domain


@pytest.mark.parametrize("index", [C.HVM_NR_PARAMS, 40, 0xFFFF_FFFF])
def test_hvm_param_index_out_of_range_is_einval_before_the_domain_lookup(host, index):
    domid = host.new_domain()
    for call in (lambda d: host.xc.hvm_param_get(d, index),
                 lambda d: host.xc.hvm_param_set(d, index, 1)):
        for d in (domid, 4242):
            with pytest.raises(XenError) as e:
                call(d)
            assert _errno(e) == Errno.EINVAL


def test_hvm_params_of_an_unknown_or_non_hvm_domain(host):
    with pytest.raises(XenError) as e:
        host.xc.hvm_param_get(77, HvmParam.STORE_PFN)
    assert _errno(e) == Errno.ESRCH
    with pytest.raises(XenError) as e:
        host.xc.hvm_param_set(0, HvmParam.STORE_PFN, 1)   # Dom0 is not an HVM domain
    assert _errno(e) == Errno.EINVAL


# -- getdomaininfo / getdomaininfolist -------------------------------------------------------

def _raw_getdomaininfo(host, domid):
    out = host.domctl_raw(Domctl.getdomaininfo, domid)
    return S.XEN_DOMCTL_HEADER.unpack(out).domain, S.XEN_DOMCTL_GETDOMAININFO.unpack(out, DU)


def test_getdomaininfo_returns_the_first_domain_at_or_after_the_id(host):
    d1, d2, d3 = host.new_domain(), host.new_domain(max_kb=8), host.new_domain(max_kb=12)
    host.xc.domain_destroy(d2)
    hdr_dom, info = _raw_getdomaininfo(host, d2)
    assert hdr_dom == d3 and info.domain == d3 and info.max_pages == 3
    assert host.xc.domain_getinfo(d2) is None          # libxc checks the id it got back
    hdr_dom, info = _raw_getdomaininfo(host, 0)
    assert hdr_dom == 0 and not info.flags & C.XEN_DOMINF_hvm_guest
    assert _raw_getdomaininfo(host, d1)[0] == d1
    with pytest.raises(XenError) as e:
        _raw_getdomaininfo(host, d3 + 1)                # past the last domain
    assert _errno(e) == Errno.ESRCH


def test_getdomaininfo_of_a_reserved_id_is_einval(host):
    host.new_domain()
    with pytest.raises(XenError) as e:
        _raw_getdomaininfo(host, C.DOMID_SELF)
    assert _errno(e) == Errno.EINVAL


def test_xenstore_domain_flag_is_reported(host):
    payload = S.XEN_DOMCTL_CREATEDOMAIN.pack(
        flags=C.XEN_DOMCTL_CDF_hvm_guest | C.XEN_DOMCTL_CDF_xs_domain)
    out = host.domctl_raw(Domctl.createdomain, 0, payload)
    domid = S.XEN_DOMCTL_HEADER.unpack(out).domain
    assert host.xc.domain_getinfo(domid).flags & C.XEN_DOMINF_xs_domain


def test_getdomaininfolist_window(host):
    ids = [host.new_domain() for _ in range(5)]
    assert ids == [1, 2, 3, 4, 5]
    host.xc.domain_destroy(3)
    assert [i.domid for i in host.xc.domain_getinfolist()] == [0, 1, 2, 4, 5]
    assert [i.domid for i in host.xc.domain_getinfolist(first=2, max_domains=2)] == [2, 4]
    assert [i.domid for i in host.xc.domain_getinfolist(first=3)] == [4, 5]
    assert host.xc.domain_getinfolist(first=6) == []
    assert all(i.hvm for i in host.xc.domain_getinfolist(first=1))


# -- interface versions and raw-call errors ------------------------------------------------------

def test_wrong_interface_versions_are_eacces(host):
    for version in (C.DOMCTL_INTERFACE_VERSION - 1, C.DOMCTL_INTERFACE_VERSION + 1, 0x15):
        with pytest.raises(XenError) as e:
            host.domctl_raw(Domctl.getdomaininfo, 0, version=version)
        assert _errno(e) == Errno.EACCES
        with pytest.raises(XenError) as e:
            host.domctl_raw(Domctl.createdomain, 0, S.XEN_DOMCTL_CREATEDOMAIN.pack(
                flags=C.XEN_DOMCTL_CDF_hvm_guest), version=version)
        assert _errno(e) == Errno.EACCES
    with pytest.raises(XenError) as e:
        host.sysctl_raw(Sysctl.physinfo, version=C.SYSCTL_INTERFACE_VERSION + 1)
    assert _errno(e) == Errno.EACCES
    assert [i.domid for i in host.xc.domain_getinfolist()] == [0]    # nothing was created


def test_bad_buffers_and_unknown_numbers(host):
    with pytest.raises(XenError) as e:
        host.privcmd.hypercall(Hypercall.domctl, 0xDEAD_0000)
    assert _errno(e) == Errno.EFAULT
    short = host.privcmd.buffer(8)                   # shorter than struct xen_domctl
    try:
        with pytest.raises(XenError) as e:
            host.privcmd.hypercall(Hypercall.domctl, short.address)
        assert _errno(e) == Errno.EFAULT
    finally:
        host.privcmd.release(short)
    for nr in (11, 39, 42, 60, 1000):
        with pytest.raises(XenError) as e:
            host.privcmd.hypercall(nr)
        assert _errno(e) == Errno.ENOSYS
    with pytest.raises(XenError) as e:
        host.domctl_raw(0xFFFF, 0)                  # unknown domctl on an existing domain
    assert _errno(e) == Errno.ENOSYS


# -- console ring and run-time parameters ---------------------------------------------------------

def test_readconsole_incremental_and_clear(host):
    host.xc.set_parameters("loglvl=all")
    host.new_domain()
    data, idx = host.xc.readconsole()
    assert b"(XEN) Created domain 1\n" in data
    host.new_domain()
    new, idx2 = host.xc.readconsole(index=idx)
    assert new == b"(XEN) Created domain 2\n"
    assert idx2 == idx + len(new)
    head, idx3 = host.xc.readconsole(count=10)
    assert head == data[:10]
    data, idx = host.xc.readconsole(clear=True)
    assert data.endswith(b"(XEN) Created domain 2\n")
    assert host.xc.readconsole() == (b"", idx)
    host.new_domain()
    assert host.xc.readconsole() == (b"(XEN) Created domain 3\n", idx + 23)


def test_set_parameters_loglvl_all_takes_effect(host):
    host.new_domain()
    assert b"Created domain" not in host.xc.readconsole()[0]   # INFO: dropped by default
    host.xc.set_parameters("loglvl=all")
    host.new_domain()
    assert b"(XEN) Created domain 2\n" in host.xc.readconsole()[0]


def test_set_parameters_guest_loglvl_and_timestamps_take_effect(host):
    domid = host.new_domain()
    guest = FakeGuest(host.hv.get_domain(domid))
    addr = guest.put(0, b"hello\nworld\n")
    assert guest.call(Hypercall.console_io, C.ConsoleIO.write, 6, addr) == 0
    assert b"hello" not in host.xc.readconsole()[0]            # guest DEBUG: dropped
    host.xc.set_parameters("guest_loglvl=all console_timestamps=boot")
    assert guest.call(Hypercall.console_io, C.ConsoleIO.write, 6, addr + 6) == 0
    text = host.xc.readconsole()[0].decode()
    assert text.startswith(f"(d{domid}) [") and text.endswith("] world\n")


@pytest.mark.parametrize("text", [
    "sched=credit2", "mem=1G", "bogus=1", "loglvl", "loglvl=loud", "=", "\xe9t\xe9=1",
])
def test_set_parameters_rejects_with_einval(host, text):
    with pytest.raises(XenError) as e:
        host.xc.set_parameters(text)
    assert _errno(e) == Errno.EINVAL
    assert b"(XEN) set_parameter: " in host.xc.readconsole()[0]     # a WARNING says why
    host.new_domain()
    assert b"Created domain" not in host.xc.readconsole()[0]       # loglvl unchanged


def test_set_parameters_applies_the_valid_words_and_still_fails(host):
    # Xen parses word by word: loglvl=all takes effect, the whole call is -EINVAL.
    with pytest.raises(XenError) as e:
        host.xc.set_parameters("loglvl=all sched=credit")
    assert _errno(e) == Errno.EINVAL
    host.new_domain()
    assert b"Created domain" in host.xc.readconsole()[0]


def _set_parameter_raw(host, data: bytes, size: int, pad: bytes = b""):
    buf = host.privcmd.buffer(data or b"\0")
    try:
        return host.sysctl_raw(Sysctl.set_parameter, S.XEN_SYSCTL_SET_PARAMETER.pack(
            params=buf.address, size=size, pad=pad))
    finally:
        host.privcmd.release(buf)


def test_set_parameter_struct_checks(host):
    _set_parameter_raw(host, b"loglvl=all", 10)
    with pytest.raises(XenError) as e:
        _set_parameter_raw(host, b"loglvl=all", 10, pad=b"\0\0\0\0\x01\0")
    assert _errno(e) == Errno.EINVAL
    with pytest.raises(XenError) as e:
        _set_parameter_raw(host, b"loglvl=all", 500)      # beyond the buffer
    assert _errno(e) == Errno.EFAULT


def test_set_parameter_longer_than_1023_bytes_is_e2big(host):
    text = b"loglvl=all" + b" " * 1100
    with pytest.raises(XenError) as e:
        _set_parameter_raw(host, text, len(text))
    assert _errno(e) == Errno.E2BIG


def test_boot_command_line_warnings_reach_the_console():
    with running_host("bogus loglvl=all mem=lots") as host:
        text = host.console_text()
        assert '(XEN) parameter "bogus" unknown!\n' in text
        assert '(XEN) parameter "mem" has invalid value "lots"' in text
        assert "(XEN) Command line: bogus loglvl=all mem=lots\n" in text
        assert host.xc.xen_version_string(XenVer.commandline, 1024) == \
            "bogus loglvl=all mem=lots"
        assert host.xc.physinfo().total_pages == (4 << 30) >> 12     # mem= default kept


def test_physinfo_and_version(host):
    pi = host.xc.physinfo()
    assert pi.total_pages == host.hv.machine.nr_frames
    assert pi.free_pages == pi.total_pages - 2     # frame 0, and Dom0's shared_info
    assert host.xc.xen_version() == (4, 10)
