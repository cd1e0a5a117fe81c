"""Dom0's handle on the hypervisor, like Linux's /dev/xen/privcmd.

Everything the toolstack and the back-ends do to the hypervisor goes through
here: hypercalls issued as Dom0 (their pointer arguments address hypercall
buffers allocated from this handle, as libxc's bounce buffers do), mappings
of another domain's frames (checked by the hypervisor, like privcmd's mmap of
foreign frames), and VIRQs delivered to Dom0. Nothing here hands out
hypervisor objects.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..abi.constants import Errno, Virq
from ..hypervisor.errors import GuestFault

if TYPE_CHECKING:
    from ..hypervisor.hypervisor import Hypervisor

BUFFER_BASE = 0x7F00_0000_0000   # where hypercall buffers appear in "Dom0 memory"


class XenError(OSError):
    """A hypercall failed: `errno` is Xen's error number."""

    def __init__(self, errno: int, what: str = ""):
        try:
            name = Errno(errno).name
        except ValueError:
            name = str(errno)
        super().__init__(errno, f"{what}: {name}" if what else name)


class HypercallBuffer:
    """Memory Dom0 lends to a hypercall; `address` is what the hypercall is given."""

    def __init__(self, address: int, size: int):
        self.address = address
        self.data = bytearray(size)

    def __len__(self) -> int:
        return len(self.data)


class _Dom0Caller:
    """How the hypervisor sees a hypercall made through this handle."""

    def __init__(self, privcmd: Privcmd, domain):
        self._privcmd = privcmd
        self.domain = domain
        self.vcpu = None
        self.compat = False

    def _locate(self, addr: int, size: int) -> tuple[bytearray, int]:
        buf = self._privcmd._buffer_at(addr, size)
        if buf is None:
            raise GuestFault(addr)
        return buf.data, addr - buf.address

    def copy_from_guest(self, addr: int, size: int) -> bytes:
        data, off = self._locate(addr, size)
        return bytes(data[off:off + size])

    def copy_to_guest(self, addr: int, data: bytes) -> None:
        buf, off = self._locate(addr, len(data))
        buf[off:off + len(data)] = data


class Privcmd:
    def __init__(self, hv: Hypervisor):
        self._hv = hv
        self._caller = _Dom0Caller(self, hv.dom0)
        self._lock = threading.Lock()
        self._buffers: dict[int, HypercallBuffer] = {}
        self._next = BUFFER_BASE

    # -- hypercalls ------------------------------------------------------------------
    def hypercall(self, nr: int, *args: int, what: str = "") -> int:
        args = tuple(args) + (0,) * (6 - len(args))
        ret = self._hv.hypercalls.dispatch(self._caller, nr, *args)
        if ret < 0:
            raise XenError(-ret, what or f"hypercall {nr}")
        return ret

    def buffer(self, size_or_data) -> HypercallBuffer:
        """A hypercall buffer (released with `release`), optionally filled with bytes."""
        data = None
        if isinstance(size_or_data, (bytes, bytearray, memoryview)):
            data = bytes(size_or_data)
            size = len(data)
        else:
            size = int(size_or_data)
        with self._lock:
            addr = self._next
            self._next += (max(size, 1) + 0xFFF) & ~0xFFF
            buf = HypercallBuffer(addr, size)
            self._buffers[addr] = buf
        if data is not None:
            buf.data[:] = data
        return buf

    def release(self, buf: HypercallBuffer) -> None:
        with self._lock:
            self._buffers.pop(buf.address, None)

    def _buffer_at(self, addr: int, size: int) -> HypercallBuffer | None:
        with self._lock:
            for base, buf in self._buffers.items():
                if base <= addr and addr + size <= base + len(buf.data):
                    return buf
        return None

    # -- foreign memory ----------------------------------------------------------------
    def map_foreign(self, domid: int, gfns: list[int], *, writable: bool = True):
        """Map frames of another domain (Dom0 privilege, checked by the hypervisor).
        For DOMID_XEN `gfns` are MFNs, and only the frames the hypervisor shares with
        Dom0 (its trace buffers; t_info read-only) map."""
        try:
            return self._hv.map_foreign_frames(self._hv.dom0, domid, gfns, writable)
        except PermissionError:
            raise XenError(Errno.EPERM, "map foreign") from None
        except LookupError:
            raise XenError(Errno.ESRCH, "map foreign") from None
        except ValueError:
            raise XenError(Errno.EINVAL, "map foreign") from None

    def grant_mapped_frame(self, handle: int) -> memoryview:
        """The page of Dom0's live grant mapping `handle` (checked by the hypervisor)."""
        try:
            return self._hv.grant_mapped_frame(self._hv.dom0, handle)
        except PermissionError:
            raise XenError(Errno.EPERM, "grant mapping") from None
        except LookupError:
            raise XenError(Errno.EINVAL, "grant mapping") from None

    # -- Dom0's event upcall (for the event channel device, toolstack/evtchn.py) --------
    def event_page(self):
        """Dom0's shared_info page and its atomic-update context manager."""
        return self._hv.dom0_event_page()

    def set_event_upcall(self, handler: Callable[[], None] | None) -> None:
        self._hv.set_dom0_upcall(handler)

    # -- virtual IRQs for Dom0 ------------------------------------------------------------
    def bind_virq(self, virq: Virq, handler: Callable[[], None]) -> Callable[[], None]:
        """Call `handler` (on a hypervisor thread) whenever `virq` fires; returns an unbind."""
        self._hv.bind_dom0_virq(virq, handler)
        return lambda: self._hv.unbind_dom0_virq(virq, handler)
