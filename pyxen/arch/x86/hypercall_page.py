"""The hypercall page: 128 stubs of 32 bytes the guest calls instead of trapping itself.

Stub i loads the hypercall number and traps: `mov $i, %eax; vmcall; ret`
(or `vmmcall` for AMD-style guests). The iret stub (23) is a `ud2`: that
hypercall is PV-only.
"""

from __future__ import annotations

import struct
from functools import lru_cache

STUBS = 128
STUB_SIZE = 32
IRET = 23


@lru_cache(maxsize=2)
def hypercall_page(vmmcall: bool = False) -> bytes:
    trap = b"\x0f\x01\xd9" if vmmcall else b"\x0f\x01\xc1"
    page = bytearray(STUBS * STUB_SIZE)
    for i in range(STUBS):
        stub = b"\x0f\x0b" if i == IRET else b"\xb8" + struct.pack("<I", i) + trap + b"\xc3"
        page[i * STUB_SIZE:i * STUB_SIZE + len(stub)] = stub
    return bytes(page)
