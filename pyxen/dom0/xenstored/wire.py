"""The xenstore wire format: the 16-byte xsd_sockmsg header, payload strings, error names."""

from __future__ import annotations

import errno as _errno
import re

from ...abi import structs as S
from ...abi.constants import XENSTORE_PAYLOAD_MAX, XSD_ERRORS, XsType

HEADER = S.XSD_SOCKMSG.struct            # type, req_id, tx_id, len (little-endian u32s)
HEADER_SIZE = HEADER.size
assert HEADER_SIZE == 16
PAYLOAD_MAX = XENSTORE_PAYLOAD_MAX
OK = b"OK\0"

_ATOI = re.compile(rb"\s*([+-]?\d+)")


class XsError(Exception):
    """A request failed; `name` is the error string xenstored sends (e.g. "ENOENT")."""

    def __init__(self, name: str, detail: str = ""):
        if name not in XSD_ERRORS:
            name = XSD_ERRORS[0]          # xenstored sends names it cannot translate as EINVAL
        self.name = name
        self.errno = getattr(_errno, name)
        super().__init__(f"{name}: {detail}" if detail else name)


def frame(mtype: int, req_id: int, tx_id: int, payload: bytes) -> bytes:
    return HEADER.pack(mtype, req_id, tx_id, len(payload)) + payload


def error_payload(name: str) -> bytes:
    return name.encode() + b"\0"


def strings(payload: bytes) -> list[bytes]:
    """The NUL-terminated strings of a payload (an unterminated tail is not one)."""
    parts = payload.split(b"\0")
    parts.pop()
    return parts


def one_arg(payload: bytes) -> bytes:
    """The single argument: the payload must hold exactly one NUL, at its end."""
    if not payload or payload.find(b"\0") != len(payload) - 1:
        raise XsError("EINVAL", "expected one string")
    return payload[:-1]


def atoi(raw: bytes) -> int:
    """C atoi: leading decimal digits, 0 when there are none."""
    m = _ATOI.match(raw)
    return int(m.group(1)) if m else 0


def type_name(mtype: int) -> str:
    try:
        return XsType(mtype).name
    except ValueError:
        return f"type {mtype}"
