"""Shared helpers for tests/hypervisor: a host reached through privcmd, and a fake guest caller.

The control-operation tests talk to the hypervisor only through `Privcmd` and
`XenCtrl`, as the toolstack does. Guest-facing handler tests call
`hv.hypercalls.dispatch` with `FakeGuest`, a caller whose pointers address a
bytearray the test controls (anything outside it faults like an unmapped
guest address).
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from types import SimpleNamespace

from pyxen.abi import constants as C
from pyxen.abi import structs as S
from pyxen.hypervisor.errors import GuestFault
from pyxen.hypervisor.hypervisor import Hypervisor
from pyxen.toolstack.privcmd import Privcmd
from pyxen.toolstack.xenctrl import XenCtrl


@dataclass
class Host:
    hv: Hypervisor
    privcmd: Privcmd
    xc: XenCtrl

    # -- raw control operations (for what XenCtrl does not wrap) --------------------
    def domctl_raw(self, cmd: int, domid: int, payload: bytes = b"", *,
                   version: int = C.DOMCTL_INTERFACE_VERSION) -> bytes:
        """Issue one domctl; returns the struct as copied back (raises XenError)."""
        raw = bytearray(S.XEN_DOMCTL_SIZE)
        S.XEN_DOMCTL_HEADER.pack_into(raw, 0, cmd=cmd, interface_version=version,
                                      domain=domid)
        raw[S.XEN_DOMCTL_UNION_OFFSET:S.XEN_DOMCTL_UNION_OFFSET + len(payload)] = payload
        buf = self.privcmd.buffer(raw)
        try:
            self.privcmd.hypercall(C.Hypercall.domctl, buf.address)
            return bytes(buf.data)
        finally:
            self.privcmd.release(buf)

    def sysctl_raw(self, cmd: int, payload: bytes = b"", *,
                   version: int = C.SYSCTL_INTERFACE_VERSION) -> bytes:
        raw = bytearray(S.XEN_SYSCTL_SIZE)
        S.XEN_SYSCTL_HEADER.pack_into(raw, 0, cmd=cmd, interface_version=version)
        raw[S.XEN_SYSCTL_UNION_OFFSET:S.XEN_SYSCTL_UNION_OFFSET + len(payload)] = payload
        buf = self.privcmd.buffer(raw)
        try:
            self.privcmd.hypercall(C.Hypercall.sysctl, buf.address)
            return bytes(buf.data)
        finally:
            self.privcmd.release(buf)

    def new_domain(self, *, max_kb: int | None = None) -> int:
        domid = self.xc.domain_create(bytes(range(16)))
        if max_kb is not None:
            self.xc.domain_setmaxmem(domid, max_kb)
        return domid

    def console_text(self) -> str:
        data, _ = self.xc.readconsole()
        return data.decode()


@contextlib.contextmanager
def running_host(cmdline: str = "") -> Iterator[Host]:
    hv = Hypervisor(cmdline)
    try:
        privcmd = Privcmd(hv)
        yield Host(hv, privcmd, XenCtrl(privcmd))
    finally:
        hv.shutdown_host()


class FakeGuest:
    """A hypercall caller standing for one vCPU of `domain`.

    Guest memory is a bytearray mapped at [base, base + size); copies that
    leave it raise GuestFault, as an unmapped guest-virtual address does.
    """

    def __init__(self, domain, *, base: int = 0x10_0000, size: int = 0x4000):
        self.domain = domain
        self.vcpu = SimpleNamespace(name=f"fake vcpu of {domain}", backend=None)  # a guest
        self.compat = False
        self.base = base
        self.mem = bytearray(size)

    def _offset(self, addr: int, size: int) -> int:
        off = addr - self.base
        if off < 0 or off + size > len(self.mem):
            raise GuestFault(addr)
        return off

    def copy_from_guest(self, addr: int, size: int) -> bytes:
        off = self._offset(addr, size)
        return bytes(self.mem[off:off + size])

    def copy_to_guest(self, addr: int, data: bytes) -> None:
        off = self._offset(addr, len(data))
        self.mem[off:off + len(data)] = data

    # -- test conveniences ------------------------------------------------------------
    def put(self, offset: int, data: bytes) -> int:
        """Write `data` at base+offset; returns its guest address."""
        self.mem[offset:offset + len(data)] = data
        return self.base + offset

    def get(self, addr: int, size: int) -> bytes:
        off = addr - self.base
        return bytes(self.mem[off:off + size])

    def call(self, nr: int, *args: int) -> int:
        return self.domain.hv.hypercalls.dispatch(self, nr, *args)

    # -- common hypercalls ------------------------------------------------------------
    def hvm_param(self, op: int, index: int, value: int = 0,
                  domid: int = C.DOMID_SELF) -> tuple[int, int]:
        """hvm_op set/get_param; returns (rc, value read back from the struct)."""
        addr = self.put(0x100, S.XEN_HVM_PARAM.pack(domid=domid, index=index, value=value))
        rc = self.call(C.Hypercall.hvm_op, op, addr)
        return rc, S.XEN_HVM_PARAM.unpack(self.get(addr, S.XEN_HVM_PARAM.size)).value

    def sched_shutdown(self, cmd: int, reason: int) -> int:
        addr = self.put(0x200, S.SCHED_SHUTDOWN.pack(reason=reason))
        return self.call(C.Hypercall.sched_op, cmd, addr)

    def domid_arg(self, domid: int) -> int:
        return self.put(0x300, struct.pack("<H", domid))
