"""Dom0's grant-mapping interface for host-side back-ends, like libxengnttab.

    gnttab = Gnttab(privcmd)
    with gnttab.map_grant_ref(domid, ref, writable=True) as page:
        page.view[0:4] = b"ring"

A mapping is made with GNTTABOP_map_grant_ref issued as Dom0 through
privcmd; the hypervisor records it in Dom0's maptrack and hands out the page
only for a live handle. unmap() issues GNTTABOP_unmap_grant_ref and releases
the view, so a back-end cannot touch the page after it was given back.
"""

from __future__ import annotations

import threading

from ..abi import structs as S
from ..abi.constants import GNTMAP_host_map, GNTMAP_readonly, GntSt, GnttabOp, Hypercall
from .privcmd import Privcmd

# Dom0 has no page tables of its own here: each mapping gets a distinct
# nominal host address, which the unmap names again (Xen requires it non-zero).
HOST_ADDR_BASE = 0x7E00_0000_0000
PAGE_SIZE = 4096


class GrantError(OSError):
    """A grant operation failed with a GNTST_* status."""

    def __init__(self, status: int, what: str):
        try:
            name = GntSt(status).name
        except ValueError:
            name = str(status)
        super().__init__(f"{what}: GNTST_{name}")
        self.status = status


class GrantMapping:
    """One mapped grant: `view` is the 4 KiB page (read-only for read-only maps)."""

    def __init__(self, gnttab: Gnttab, domid: int, ref: int, writable: bool, handle: int,
                 host_addr: int, view: memoryview):
        self._gnttab = gnttab
        self.domid = domid
        self.ref = ref
        self.writable = writable
        self.handle = handle
        self.host_addr = host_addr
        self.view: memoryview | None = view

    def unmap(self) -> None:
        if self.view is None:
            return
        self.view.release()
        self.view = None
        self._gnttab._unmap(self)

    def __enter__(self) -> GrantMapping:
        return self

    def __exit__(self, *exc) -> None:
        self.unmap()


class Gnttab:
    def __init__(self, privcmd: Privcmd):
        self._privcmd = privcmd
        self._lock = threading.Lock()
        self._next_addr = HOST_ADDR_BASE

    def map_grant_ref(self, domid: int, ref: int, *, writable: bool = True) -> GrantMapping:
        """Map grant `ref` of domain `domid`; raises GrantError (or XenError)."""
        with self._lock:
            host_addr = self._next_addr
            self._next_addr += PAGE_SIZE
        flags = GNTMAP_host_map | (0 if writable else GNTMAP_readonly)
        op = self._issue(GnttabOp.map_grant_ref, S.GNTTAB_MAP_GRANT_REF,
                         S.GNTTAB_MAP_GRANT_REF.pack(host_addr=host_addr, flags=flags,
                                                     ref=ref, dom=domid))
        if op.status != GntSt.okay:
            raise GrantError(op.status, f"map grant {ref} of domain {domid}")
        try:
            view = self._privcmd.grant_mapped_frame(op.handle)
        except OSError:
            self._unmap_handle(op.handle, host_addr)
            raise
        return GrantMapping(self, domid, ref, writable, op.handle, host_addr, view)

    def _unmap(self, mapping: GrantMapping) -> None:
        status = self._unmap_handle(mapping.handle, mapping.host_addr)
        if status != GntSt.okay:
            raise GrantError(status, f"unmap grant {mapping.ref} of domain {mapping.domid}")

    def _unmap_handle(self, handle: int, host_addr: int) -> int:
        op = self._issue(GnttabOp.unmap_grant_ref, S.GNTTAB_UNMAP_GRANT_REF,
                         S.GNTTAB_UNMAP_GRANT_REF.pack(host_addr=host_addr, handle=handle))
        return op.status

    def _issue(self, cmd: int, layout, raw: bytes):
        buf = self._privcmd.buffer(raw)
        try:
            self._privcmd.hypercall(Hypercall.grant_table_op, cmd, buf.address, 1,
                                    what="grant_table_op")
            return layout.unpack(buf.data)
        finally:
            self._privcmd.release(buf)
