"""Every Layout against the 4.10 reference sheet (gdb `ptype /o` of the 4.10
public headers), plus the bookkeeping: every sheet struct has a Layout, every
Layout is verified by some source, and C types are not shared by accident."""

import collections

import pytest
import xen_abi_checks as checks

from pyxen.abi import structs

SHEET = checks.load_sheet_4_10()
SHEET_LAYOUTS = [lay for lay in structs.ALL_LAYOUTS
                 if lay.c_name not in checks.SHEET_SKIP and checks.resolve(SHEET, lay.c_type)]


def _bit_range(leaf):
    """[first, last) bit of a sheet leaf, from the top-level struct start."""
    first = leaf.offset * 8 + (leaf.bit or 0)
    return first, first + (leaf.bits if leaf.bits is not None else leaf.size * 8)


def _leaves_within(node, start, end):
    """Sheet leaves (scalars, arrays, bitfields) inside bytes [start, end)."""
    for child in node.walk():
        if child is node or child.children:
            continue
        first, last = _bit_range(child)
        if start * 8 <= first and last <= end * 8:
            yield child


@pytest.mark.parametrize("layout", SHEET_LAYOUTS, ids=[lay.c_name for lay in SHEET_LAYOUTS])
def test_layout_matches_410_sheet(layout):
    node = checks.resolve(SHEET, layout.c_type)
    base = node.offset
    prefix_end = None
    if layout.c_name in checks.PREFIX_LAYOUTS:
        rest = node.find((checks.PREFIX_LAYOUTS[layout.c_name],))
        prefix_end = rest.offset
        assert layout.size == rest.offset - base
    else:
        assert layout.size == node.size, f"size of {layout.c_type}"

    storage = checks.bitfield_storage(layout)
    covered = set()
    for member, offset, code in layout.members:
        width = checks.width_of(code)
        if member in storage:
            start = base + offset
            seen = {}
            for leaf in _leaves_within(node, start, start + width):
                first, last = _bit_range(leaf)
                seen[leaf.name] = (first - start * 8, last - first)
                covered.add(leaf.name)
            named = {k: v for k, v in seen.items() if not k.startswith("_")}
            assert named == storage[member], f"{layout.c_name}.{member} bitfields"
            continue
        path = tuple(checks.c_path(member).split("."))
        field = node.find(path)
        assert field is not None, f"{layout.c_name}.{member} is not in the sheet"
        assert field.bits is None, f"{layout.c_name}.{member} is a bitfield: use BITFIELDS"
        assert (offset, width) == (field.offset - base, field.size), \
            f"{layout.c_name}.{member}: layout (offset, size) vs sheet"
        covered.add(path[0])

    for field in node.members():
        if field.name.startswith("_") or field.name in covered:
            continue
        if field.size == 0:  # flexible array member: Layouts describe the fixed part
            continue
        if prefix_end is not None and field.offset >= prefix_end:
            continue
        pytest.fail(f"{layout.c_name}: sheet member {field.name!r} has no Layout member")


def test_every_sheet_struct_has_a_layout():
    described = {checks.resolve(SHEET, lay.c_type).type for lay in SHEET_LAYOUTS}
    missing = sorted(set(SHEET) - described - set(checks.SHEET_STRUCTS_WITHOUT_LAYOUT))
    assert not missing, f"4.10 sheet structs without a Layout: {missing}"


def test_every_layout_is_verified_somewhere():
    verified = {lay.c_name for lay in checks.header_checked_layouts()}
    verified |= {lay.c_name for lay in SHEET_LAYOUTS}
    verified |= set(checks.SHIM_TYPES)
    unverified = {lay.c_name for lay in structs.ALL_LAYOUTS} - verified
    assert not unverified, f"layouts checked against nothing: {sorted(unverified)}"
    # A layout that differs in 4.17 must be pinned down by the 4.10 sheet or shim.
    for c_name in checks.DIFFERS_IN_4_17:
        assert c_name in {lay.c_name for lay in SHEET_LAYOUTS} | set(checks.SHIM_TYPES), c_name


def test_exception_lists_name_real_layouts():
    names = checks.by_name()
    for table in (checks.DIFFERS_IN_4_17, checks.SHIM_TYPES, checks.PREFIX_LAYOUTS,
                  checks.SHEET_SKIP):
        for c_name in table:
            assert c_name in names, f"unknown layout {c_name}"
    for c_name in checks.ARRAY_TYPEDEF_LAYOUTS:
        assert c_name in names, f"unknown layout {c_name}"


def test_c_types_are_not_shared_by_accident():
    by_type = collections.defaultdict(set)
    for lay in structs.ALL_LAYOUTS:
        by_type[lay.c_type].add(lay.c_name)
    shared = {t: names for t, names in by_type.items() if len(names) > 1}
    assert shared == checks.INTENDED_SHARED_C_TYPES


def test_layout_names_are_unique():
    names = [lay.c_name for lay in structs.ALL_LAYOUTS]
    assert len(names) == len(set(names))


def test_sheet_parser_reads_known_facts():
    """The parser itself: a few facts read off the sheet by hand."""
    shared_info = SHEET["struct shared_info"]
    assert shared_info.size == 3136
    assert shared_info.find(("arch",)).offset == 3088
    assert shared_info.find(("arch", "p2m_generation")).offset == 3128
    status = SHEET["struct evtchn_status"]
    assert status.find(("u", "interdomain", "port")).offset == 20
    assert status.find(("u", "virq")).offset == 16
    ioreq_dir = SHEET["struct ioreq"].find(("dir",))
    assert (ioreq_dir.offset, ioreq_dir.bit, ioreq_dir.bits) == (30, 5, 1)
    t_rec = SHEET["struct t_rec"]
    assert (t_rec.find(("cycles_included",)).offset, t_rec.find(("cycles_included",)).bit) \
        == (3, 7)
    createdomain = checks.resolve(SHEET, "struct xen_domctl_createdomain")
    assert (createdomain.offset, createdomain.size) == (16, 28)
    assert len(SHEET) == 70
