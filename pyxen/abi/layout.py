"""Declarative little-endian struct layouts for Xen's public ABI.

A `Layout` is built from the facts of a C header (each member's offset and
width, the total size) and compiles them into one `struct.Struct`, so that
decoding a guest's argument is a single `unpack_from`. Every layout names the
C type it mirrors; tests/abi compiles a C program against Xen's headers and
checks every offset and size.
"""

from __future__ import annotations

import struct
from collections import namedtuple

# struct-module codes allowed for scalar members: width in bytes.
_SCALARS = {"B": 1, "b": 1, "H": 2, "h": 2, "I": 4, "i": 4, "Q": 8, "q": 8}


class Layout:
    """One C struct: `Layout("hvm_xen_param", 16, [("domid", 0, "H"), ...])`.

    Members are (name, offset, code) where code is a struct-module scalar code
    ("B", "H", "I", "Q" and signed variants) or "<n>s" for a byte array.
    Gaps between members become padding; the packed size equals `size`.
    """

    def __init__(self, c_name: str, size: int, members: list[tuple[str, int, str]],
                 header: str | None = None, c_type: str | None = None):
        self.c_name = c_name
        self.c_type = c_type or f"struct {c_name}"
        self.header = header
        self.size = size
        self.members = sorted(members, key=lambda m: m[1])
        self._offsets: dict[str, tuple[int, str]] = {}
        fmt = ["<"]
        pos = 0
        for name, off, code in self.members:
            width = _width(code)
            if off < pos:
                raise ValueError(f"{c_name}.{name}: overlaps the previous member")
            if off > pos:
                fmt.append(f"{off - pos}x")
            fmt.append(code)
            pos = off + width
            self._offsets[name] = (off, code)
        if pos > size:
            raise ValueError(f"{c_name}: members end at {pos}, beyond size {size}")
        if size > pos:
            fmt.append(f"{size - pos}x")
        self.struct = struct.Struct("".join(fmt))
        assert self.struct.size == size
        self.names = [m[0] for m in self.members]
        self.Value = namedtuple(_camel(c_name), self.names)
        self._fields_structs = {n: struct.Struct("<" + c) for n, (_, c) in self._offsets.items()}

    def __repr__(self) -> str:
        return f"<Layout {self.c_type} size={self.size}>"

    def offsetof(self, name: str) -> int:
        return self._offsets[name][0]

    def sizeof(self, name: str) -> int:
        return _width(self._offsets[name][1])

    def unpack(self, buf, offset: int = 0):
        """Decode into a namedtuple; `buf` may be any buffer of enough bytes."""
        return self.Value._make(self.struct.unpack_from(buf, offset))

    def pack(self, **values) -> bytes:
        return self.struct.pack(*self._ordered(values))

    def pack_into(self, buf, offset: int = 0, **values) -> None:
        self.struct.pack_into(buf, offset, *self._ordered(values))

    def read(self, buf, offset: int, name: str):
        off, _ = self._offsets[name]
        return self._fields_structs[name].unpack_from(buf, offset + off)[0]

    def write(self, buf, offset: int, name: str, value) -> None:
        off, _ = self._offsets[name]
        self._fields_structs[name].pack_into(buf, offset + off, value)

    def _ordered(self, values: dict) -> list:
        unknown = set(values) - set(self.names)
        if unknown:
            raise KeyError(f"{self.c_name} has no member {sorted(unknown)}")
        out = []
        for name in self.names:
            v = values.get(name, 0)
            if v == 0 and self._offsets[name][1].endswith("s"):
                v = b""
            out.append(v)
        return out


def _width(code: str) -> int:
    if code.endswith("s"):
        return int(code[:-1] or 1)
    return _SCALARS[code]


def _camel(name: str) -> str:
    return "".join(p.capitalize() for p in name.split("_")) or "Value"
