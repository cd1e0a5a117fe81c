"""Guest-physical memory of a domain, reached through its p2m.

This is what the page walker, the domain builder (through privcmd foreign
mappings) and copy_to/from_guest use. An unbacked guest frame raises
UnbackedGPA; writes to read-only RAM are dropped, as Xen does for emulated
writes to p2m_ram_ro.
"""

from __future__ import annotations

import struct

from .memory import PAGE_SHIFT, PAGE_SIZE, MachineMemory
from .p2m import P2M

_Q = struct.Struct("<Q")
_I = struct.Struct("<I")
OFFSET_MASK = PAGE_SIZE - 1


class UnbackedGPA(Exception):
    def __init__(self, gpa: int):
        super().__init__(f"guest-physical address {gpa:#x} is not backed")
        self.gpa = gpa


class DomainPhysMemory:
    """Reads and writes guest-physical addresses of one domain."""

    __slots__ = ("p2m", "machine", "view", "_lookup")

    def __init__(self, p2m: P2M, machine: MachineMemory):
        self.p2m = p2m
        self.machine = machine
        self.view = machine.view
        self._lookup = p2m.lookup

    def machine_offset(self, gpa: int, write: bool = False) -> int | None:
        """Byte offset in machine memory for `gpa`, or None for a dropped write."""
        e = self._lookup(gpa >> PAGE_SHIFT)
        if e is None:
            raise UnbackedGPA(gpa)
        if write and not e.rights & 2:
            return None
        return (e.mfn << PAGE_SHIFT) | (gpa & OFFSET_MASK)

    # -- the page walker's interface -----------------------------------------
    def read_u64(self, gpa: int) -> int:
        e = self._lookup(gpa >> PAGE_SHIFT)
        if e is None:
            raise UnbackedGPA(gpa)
        return _Q.unpack_from(self.view, (e.mfn << PAGE_SHIFT) | (gpa & OFFSET_MASK))[0]

    def read_u32(self, gpa: int) -> int:
        e = self._lookup(gpa >> PAGE_SHIFT)
        if e is None:
            raise UnbackedGPA(gpa)
        return _I.unpack_from(self.view, (e.mfn << PAGE_SHIFT) | (gpa & OFFSET_MASK))[0]

    def cmpxchg_u64(self, gpa: int, old: int, new: int) -> bool:
        off = self.machine_offset(gpa, write=True)
        if off is None:
            return True  # A/D update on read-only memory: silently not recorded
        if _Q.unpack_from(self.view, off)[0] != old:
            return False
        _Q.pack_into(self.view, off, new)
        return True

    def cmpxchg_u32(self, gpa: int, old: int, new: int) -> bool:
        off = self.machine_offset(gpa, write=True)
        if off is None:
            return True
        if _I.unpack_from(self.view, off)[0] != old:
            return False
        _I.pack_into(self.view, off, new)
        return True

    def fast_view(self, gpa: int):
        """(buffer, offset) for reading at `gpa` within its page, or raises UnbackedGPA."""
        e = self._lookup(gpa >> PAGE_SHIFT)
        if e is None:
            raise UnbackedGPA(gpa)
        return self.view, (e.mfn << PAGE_SHIFT) | (gpa & OFFSET_MASK)

    # -- bulk access -----------------------------------------------------------
    def read(self, gpa: int, size: int) -> bytes:
        out = bytearray()
        while size > 0:
            chunk = min(size, PAGE_SIZE - (gpa & OFFSET_MASK))
            off = self.machine_offset(gpa)
            out += self.view[off:off + chunk]
            gpa += chunk
            size -= chunk
        return bytes(out)

    def write(self, gpa: int, data: bytes) -> None:
        data = memoryview(data).cast("B")
        pos = 0
        while pos < len(data):
            chunk = min(len(data) - pos, PAGE_SIZE - (gpa & OFFSET_MASK))
            off = self.machine_offset(gpa, write=True)
            if off is not None:
                self.view[off:off + chunk] = data[pos:pos + chunk]
            gpa += chunk
            pos += chunk
