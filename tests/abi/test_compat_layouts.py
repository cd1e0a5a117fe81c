"""32-bit guest ("compat") layouts, checked with gcc -m32 against Xen's headers.

No 32-bit C library is needed: the check is a translation unit of static
assertions compiled with -ffreestanding -fsyntax-only.
"""

from __future__ import annotations

import subprocess

import pytest

from pyxen.abi import structs as S

# __XEN_TOOLS__ selects the current interface version (e.g. mem_flags, not address_bits).
GCC32 = ["gcc", "-m32", "-ffreestanding", "-fsyntax-only", "-D__XEN_TOOLS__"]


def _assertions(layout) -> list[str]:
    t = layout.c_type
    out = [f'_Static_assert(sizeof({t}) == {layout.size}, "{t} size");']
    for name in layout.names:
        off, size = layout.offsetof(name), layout.sizeof(name)
        member = name.replace("__", ".")
        out.append(f'_Static_assert(__builtin_offsetof({t}, {member}) == {off}, '
                   f'"{t}.{member} offset");')
        out.append(f'_Static_assert(sizeof((({t} *)0)->{member}) == {size}, '
                   f'"{t}.{member} size");')
    return out


@pytest.mark.parametrize("layout", S.COMPAT_LAYOUTS, ids=lambda x: x.c_name)
def test_compat_layout_matches_32bit_headers(tmp_path, layout):
    src = tmp_path / "compat.c"
    src.write_text("\n".join(["#include <stdint.h>", "#include <xen/xen.h>",
                              f"#include <{layout.header}>", *_assertions(layout),
                              "int unused;", ""]))
    proc = subprocess.run([*GCC32, str(src)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_a_wrong_compat_layout_is_caught(tmp_path):
    from pyxen.abi.layout import Layout
    wrong = Layout("xen_memory_map", 16, [("nr_entries", 0, "I"), ("buffer", 8, "Q")],
                   header="xen/memory.h")   # the x86-64 layout, not the 32-bit one
    src = tmp_path / "wrong.c"
    src.write_text("\n".join(["#include <stdint.h>", "#include <xen/xen.h>",
                              "#include <xen/memory.h>", *_assertions(wrong), ""]))
    proc = subprocess.run([*GCC32, str(src)], capture_output=True, text=True)
    assert proc.returncode != 0
