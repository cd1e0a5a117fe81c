"""Helpers shared by hypercall handlers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...abi.constants import DOMID_SELF, Errno
from ...abi.layout import Layout
from ..errors import HypercallError

if TYPE_CHECKING:
    from ..domain import Domain
    from ..hypercall import Caller


def read_struct(caller: Caller, layout: Layout, addr: int):
    return layout.unpack(caller.copy_from_guest(addr, layout.size))


def write_struct(caller: Caller, layout: Layout, addr: int, **values) -> None:
    caller.copy_to_guest(addr, layout.pack(**values))


def c_string(text: str, size: int) -> bytes:
    """A NUL-terminated, NUL-padded fixed-size C string."""
    raw = text.encode()[: size - 1]
    return raw + b"\0" * (size - len(raw))


def target_domain(caller: Caller, domid: int, *, privileged: bool = True) -> Domain:
    """The domain a call names: DOMID_SELF/own id, or another one if allowed.

    Xen looks the domain up first (-ESRCH) and then asks the security policy
    (-EPERM) — in that order.
    """
    if domid == DOMID_SELF or domid == caller.domain.domid:
        return caller.domain
    d = caller.domain.hv.get_domain(domid)
    if d is None or d.is_dying:
        raise HypercallError(Errno.ESRCH)
    if not (privileged and caller.domain.is_privileged):
        raise HypercallError(Errno.EPERM)
    return d


def require_privileged(caller: Caller) -> None:
    if not caller.domain.is_privileged:
        raise HypercallError(Errno.EPERM)


def errno(e: Errno) -> int:
    return -int(e)


def read_control_op(caller: Caller, arg: int, size: int, header: Layout, version: int):
    """Read a domctl/sysctl argument of the interface version we speak (-EFAULT,
    -EACCES); the caller then looks up the domain and checks privilege, in
    Xen's order.

    Returns (the whole struct as a bytearray to edit and copy back, its header).
    """
    raw = bytearray(caller.copy_from_guest(arg, size))
    hdr = header.unpack(raw)
    if hdr.interface_version != version:
        raise HypercallError(Errno.EACCES)
    return raw, hdr


# Xen's bitmaps in control ops (struct xenctl_bitmap: a guest handle + nr_bits). Bits
# beyond the host's pCPUs are ignored on input and written as zero on output.
MAX_BITMAP_BITS = 1 << 16


def read_cpu_bitmap(caller: Caller, handle: int, nr_bits: int, nr_cpus: int) -> set[int]:
    if nr_bits > MAX_BITMAP_BITS:
        raise HypercallError(Errno.EINVAL)
    data = caller.copy_from_guest(handle, (nr_bits + 7) // 8) if nr_bits else b""
    bits = int.from_bytes(data, "little") & ((1 << nr_bits) - 1)
    return {c for c in range(min(nr_bits, nr_cpus)) if bits >> c & 1}


def write_cpu_bitmap(caller: Caller, handle: int, nr_bits: int, cpus: set[int]) -> None:
    if nr_bits > MAX_BITMAP_BITS:
        raise HypercallError(Errno.EINVAL)
    if not nr_bits:
        return
    value = sum(1 << c for c in cpus if c < nr_bits)
    caller.copy_to_guest(handle, value.to_bytes((nr_bits + 7) // 8, "little"))
