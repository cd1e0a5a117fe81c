"""Every Layout against gcc's view of the installed Xen (4.17) public headers.

Layouts whose 4.10 layout differs from 4.17 are listed, with the reason, in
xen_abi_checks.DIFFERS_IN_4_17 and are checked by test_layouts_reference.py
against the 4.10 sheet instead; the few 4.10-only structs missing from that
sheet are compiled from our own 4.10 declarations in xen410_only.h.
"""

import pytest
import xen_abi_checks as checks


def _ids(layouts):
    return [lay.c_name for lay in layouts]


HEADER_LAYOUTS = checks.header_checked_layouts()
SHIM_LAYOUTS = checks.shim_checked_layouts()


def _check_against_probe(layout, probe):
    name = layout.c_name
    if name in checks.PREFIX_LAYOUTS:
        assert layout.size == probe.prefixes[name], "prefix layout must end where the rest begins"
    else:
        assert layout.size == probe.sizes[name], f"sizeof({layout.c_type})"
    if name in checks.ARRAY_TYPEDEF_LAYOUTS:
        assert [(m[1], checks.width_of(m[2])) for m in layout.members] == [(0, layout.size)]
        return
    storage = checks.bitfield_storage(layout)
    for member, offset, code in layout.members:
        if member in storage:
            for bitfield, (shift, width) in storage[member].items():
                raw = probe.bitfields[(name, member, bitfield)]
                expected = ((1 << width) - 1) << (shift + 8 * offset)
                assert int.from_bytes(raw, "little") == expected, f"{name}.{bitfield} bits"
            continue
        c_offset, c_size = probe.members[(name, member)]
        assert (offset, checks.width_of(code)) == (c_offset, c_size), \
            f"{name}.{member}: layout (offset, size) vs C"


@pytest.mark.parametrize("layout", HEADER_LAYOUTS, ids=_ids(HEADER_LAYOUTS))
def test_layout_matches_installed_headers(layout, xen_header_probe):
    _check_against_probe(layout, xen_header_probe)


@pytest.mark.parametrize("layout", SHIM_LAYOUTS, ids=_ids(SHIM_LAYOUTS))
def test_layout_matches_410_declaration(layout, xen_header_probe):
    _check_against_probe(layout, xen_header_probe)

