"""pyxen.abi.constants against the macro values of the installed Xen headers.

The headers are 4.17's; names they dropped and values they changed since 4.10
are listed (with the reason) in xen_abi_checks.ABSENT_IN_4_17 and
DIFFERENT_IN_4_17.
"""

import pytest
import xen_abi_checks as checks

from pyxen.abi import constants

EXPECTED = checks.constant_c_names()


def _as_u64(value: int) -> int:
    return value & (2**64 - 1)


@pytest.mark.parametrize("c_name", sorted(EXPECTED))
def test_constant_matches_header(c_name, xen_header_probe):
    found = xen_header_probe.constants
    if c_name in checks.ABSENT_IN_4_17:
        assert c_name not in found, f"{c_name} exists in 4.17 after all: drop it from the list"
        return
    assert c_name in found, f"{c_name} is not defined by the installed headers"
    if c_name in checks.DIFFERENT_IN_4_17:
        assert _as_u64(found[c_name]) != _as_u64(EXPECTED[c_name])
        return
    assert _as_u64(found[c_name]) == _as_u64(EXPECTED[c_name])


def test_exception_lists_name_real_constants():
    for c_name in list(checks.ABSENT_IN_4_17) + list(checks.DIFFERENT_IN_4_17):
        assert c_name in EXPECTED, f"{c_name} does not correspond to any constant"


def test_4_10_errno_list_is_complete(xen_header_probe):
    """Every XEN_E* in 4.17 is in our enum except the three added after 4.10."""
    added_after_4_10 = {"XEN_ENOTDIR", "XEN_EMSGSIZE", "XEN_ECONNREFUSED"}
    header_errnos = set(xen_header_probe.errnos)
    ours = {f"XEN_{name}" for name in constants.Errno.__members__}
    assert header_errnos - ours == added_after_4_10
    assert ours <= header_errnos
    for name in ours:
        assert xen_header_probe.errnos[name] == constants.Errno[name[4:]]


def test_special_pages_follow_libxc_placement():
    assert constants.SPECIALPAGE_BASE_PFN == 0xFEFF8
    assert constants.special_pfn(constants.SpecialPage.PAGING) == 0xFEFF8
    assert constants.special_pfn(constants.SpecialPage.XENSTORE) == 0xFEFFC
    assert constants.special_pfn(constants.SpecialPage.CONSOLE) == 0xFEFFF
    assert constants.IOREQ_SERVER_BASE_PFN == 0xFEFF0


def test_enum_lookups_used_by_dispatch():
    assert constants.Hypercall(48) is constants.Hypercall.arch_0
    assert constants.Hypercall.mca == constants.Hypercall.arch_0
    assert constants.SchedOp(0) is constants.SchedOp.yield_
    assert constants.Errno.EWOULDBLOCK is constants.Errno.EAGAIN
    assert constants.MEMOP_CMD_MASK == 0x3F
    assert (0x1234 << constants.MEMOP_EXTENT_SHIFT | 6) & constants.MEMOP_CMD_MASK == 6
