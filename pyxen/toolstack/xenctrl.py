"""libxc-style wrappers: each function builds the public ABI structure and issues the hypercall.

The toolstack above this (domain builder, xl, daemons) never sees a raw
struct; the hypervisor below only sees hypercalls with buffers, exactly as
with Xen's libxenctrl.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ..abi import constants as C
from ..abi import structs as S
from ..abi.constants import Domctl, EvtchnOp, HvmOp, Hypercall, MemOp, Sysctl, XenVer
from .privcmd import Privcmd, XenError

DU = S.XEN_DOMCTL_UNION_OFFSET
SU = S.XEN_SYSCTL_UNION_OFFSET


@dataclass(frozen=True)
class DomainInfo:
    domid: int
    flags: int
    tot_pages: int
    max_pages: int
    cpu_time_ns: int
    nr_online_vcpus: int
    max_vcpu_id: int
    handle: bytes
    cpupool: int

    @property
    def dying(self) -> bool:
        return bool(self.flags & C.XEN_DOMINF_dying)

    @property
    def shutdown(self) -> bool:
        return bool(self.flags & C.XEN_DOMINF_shutdown)

    @property
    def shutdown_reason(self) -> int:
        return (self.flags >> C.XEN_DOMINF_shutdownshift) & C.XEN_DOMINF_shutdownmask

    @property
    def paused(self) -> bool:
        return bool(self.flags & C.XEN_DOMINF_paused)

    @property
    def running(self) -> bool:
        return bool(self.flags & C.XEN_DOMINF_running)

    @property
    def blocked(self) -> bool:
        return bool(self.flags & C.XEN_DOMINF_blocked)

    @property
    def hvm(self) -> bool:
        return bool(self.flags & C.XEN_DOMINF_hvm_guest)


def _info_from(raw: bytes, off: int = 0) -> DomainInfo:
    i = S.XEN_DOMCTL_GETDOMAININFO.unpack(raw, off)
    return DomainInfo(i.domain, i.flags, i.tot_pages, i.max_pages, i.cpu_time,
                      i.nr_online_vcpus, i.max_vcpu_id, i.handle, i.cpupool)


class XenCtrl:
    def __init__(self, privcmd: Privcmd):
        self.privcmd = privcmd

    # -- plumbing ---------------------------------------------------------------------
    def _domctl(self, cmd: int, domid: int, payload: bytes = b"") -> bytes:
        raw = bytearray(S.XEN_DOMCTL_SIZE)
        S.XEN_DOMCTL_HEADER.pack_into(raw, 0, cmd=cmd,
                                      interface_version=C.DOMCTL_INTERFACE_VERSION,
                                      domain=domid)
        raw[DU:DU + len(payload)] = payload
        buf = self.privcmd.buffer(raw)
        try:
            self.privcmd.hypercall(Hypercall.domctl, buf.address,
                                   what=f"domctl {Domctl(cmd).name}")
            return bytes(buf.data)
        finally:
            self.privcmd.release(buf)

    def _sysctl(self, cmd: int, payload: bytes = b"") -> bytes:
        raw = bytearray(S.XEN_SYSCTL_SIZE)
        S.XEN_SYSCTL_HEADER.pack_into(raw, 0, cmd=cmd,
                                      interface_version=C.SYSCTL_INTERFACE_VERSION)
        raw[SU:SU + len(payload)] = payload
        buf = self.privcmd.buffer(raw)
        try:
            self.privcmd.hypercall(Hypercall.sysctl, buf.address,
                                   what=f"sysctl {Sysctl(cmd).name}")
            return bytes(buf.data)
        finally:
            self.privcmd.release(buf)

    # -- domains ------------------------------------------------------------------------
    def domain_create(self, handle: bytes, *, hvm: bool = True, hap: bool = True,
                      domid: int = 0, emulation_flags: int = 0) -> int:
        flags = (C.XEN_DOMCTL_CDF_hvm_guest if hvm else 0) | (C.XEN_DOMCTL_CDF_hap if hap
                                                               else 0)
        payload = S.XEN_DOMCTL_CREATEDOMAIN.pack(handle=handle, flags=flags,
                                                 config__emulation_flags=emulation_flags)
        out = self._domctl(Domctl.createdomain, domid, payload)
        return S.XEN_DOMCTL_HEADER.unpack(out).domain

    def domain_max_vcpus(self, domid: int, n: int) -> None:
        self._domctl(Domctl.max_vcpus, domid, S.XEN_DOMCTL_MAX_VCPUS.pack(max=n))

    def domain_set_max_evtchn(self, domid: int, max_port: int) -> None:
        self._domctl(Domctl.set_max_evtchn, domid,
                     S.XEN_DOMCTL_SET_MAX_EVTCHN.pack(max_port=max_port))

    def domain_setmaxmem(self, domid: int, max_kb: int) -> None:
        self._domctl(Domctl.max_mem, domid, S.XEN_DOMCTL_MAX_MEM.pack(max_memkb=max_kb))

    def domain_pause(self, domid: int) -> None:
        self._domctl(Domctl.pausedomain, domid)

    def domain_unpause(self, domid: int) -> None:
        self._domctl(Domctl.unpausedomain, domid)

    def domain_destroy(self, domid: int) -> None:
        self._domctl(Domctl.destroydomain, domid)

    def domain_getinfo(self, domid: int) -> DomainInfo | None:
        """Info for exactly `domid`, or None when it does not exist."""
        try:
            out = self._domctl(Domctl.getdomaininfo, domid)
        except XenError as e:
            if e.errno == C.Errno.ESRCH:
                return None
            raise
        info = _info_from(out, DU)
        return info if info.domid == domid else None

    def domain_getvcpuinfo(self, domid: int, vcpu: int):
        out = self._domctl(Domctl.getvcpuinfo, domid,
                           S.XEN_DOMCTL_GETVCPUINFO.pack(vcpu=vcpu))
        return S.XEN_DOMCTL_GETVCPUINFO.unpack(out, DU)

    def domain_getinfolist(self, first: int = 0, max_domains: int = 1024) -> list[DomainInfo]:
        size = S.XEN_DOMCTL_GETDOMAININFO.size
        buf = self.privcmd.buffer(size * max_domains)
        try:
            out = self._sysctl(Sysctl.getdomaininfolist, S.XEN_SYSCTL_GETDOMAININFOLIST.pack(
                first_domain=first, max_domains=max_domains, buffer=buf.address))
            n = S.XEN_SYSCTL_GETDOMAININFOLIST.unpack(out, SU).num_domains
            return [_info_from(buf.data, i * size) for i in range(n)]
        finally:
            self.privcmd.release(buf)

    def domain_getinfo_all(self, batch: int = 256) -> list[DomainInfo]:
        """Every domain, in batches of getdomaininfolist."""
        out: list[DomainInfo] = []
        first = 0
        while True:
            chunk = self.domain_getinfolist(first, batch)
            out.extend(chunk)
            if len(chunk) < batch:
                return out
            first = chunk[-1].domid + 1

    def domain_hvm_setcontext(self, domid: int, blob: bytes) -> None:
        buf = self.privcmd.buffer(blob)
        try:
            self._domctl(Domctl.sethvmcontext, domid,
                         S.XEN_DOMCTL_HVMCONTEXT.pack(size=len(blob), buffer=buf.address))
        finally:
            self.privcmd.release(buf)

    def domain_hvm_getcontext(self, domid: int) -> bytes:
        out = self._domctl(Domctl.gethvmcontext, domid, S.XEN_DOMCTL_HVMCONTEXT.pack())
        size = S.XEN_DOMCTL_HVMCONTEXT.unpack(out, DU).size
        buf = self.privcmd.buffer(size)
        try:
            self._domctl(Domctl.gethvmcontext, domid,
                         S.XEN_DOMCTL_HVMCONTEXT.pack(size=size, buffer=buf.address))
            return bytes(buf.data)
        finally:
            self.privcmd.release(buf)

    # -- memory --------------------------------------------------------------------------
    def populate_physmap(self, domid: int, gfns: list[int], order: int = 0) -> int:
        """Populate extents of 2**order frames at each gfn; returns how many succeeded."""
        if not gfns:
            return 0
        lst = self.privcmd.buffer(struct.pack(f"<{len(gfns)}Q", *gfns))
        res = self.privcmd.buffer(S.XEN_MEMORY_RESERVATION.pack(
            extent_start=lst.address, nr_extents=len(gfns), extent_order=order, domid=domid))
        try:
            return self.privcmd.hypercall(Hypercall.memory_op, MemOp.populate_physmap,
                                          res.address, what="populate_physmap")
        finally:
            self.privcmd.release(lst)
            self.privcmd.release(res)

    def maximum_gpfn(self, domid: int) -> int:
        buf = self.privcmd.buffer(struct.pack("<H", domid))
        try:
            return self.privcmd.hypercall(Hypercall.memory_op, MemOp.maximum_gpfn, buf.address,
                                          what="maximum_gpfn")
        finally:
            self.privcmd.release(buf)

    def populate_physmap_exact(self, domid: int, gfns: list[int], order: int = 0) -> None:
        done = self.populate_physmap(domid, gfns, order)
        if done != len(gfns):
            raise XenError(C.Errno.ENOMEM, f"populate_physmap: {done} of {len(gfns)} extents")

    def set_memory_map(self, domid: int, entries: list[tuple[int, int, int]]) -> None:
        data = b"".join(S.E820_ENTRY.pack(addr=a, size=s, type=t) for a, s, t in entries)
        lst = self.privcmd.buffer(data)
        req = self.privcmd.buffer(S.XEN_FOREIGN_MEMORY_MAP.pack(
            domid=domid, map__nr_entries=len(entries), map__buffer=lst.address))
        try:
            self.privcmd.hypercall(Hypercall.memory_op, MemOp.set_memory_map, req.address,
                                   what="set_memory_map")
        finally:
            self.privcmd.release(lst)
            self.privcmd.release(req)

    def map_foreign(self, domid: int, gfns: list[int], writable: bool = True):
        return self.privcmd.map_foreign(domid, gfns, writable=writable)

    # -- HVM parameters ----------------------------------------------------------------
    def evtchn_alloc_unbound(self, domid: int, remote_domid: int) -> int:
        """A port in `domid` that only `remote_domid` may bind (xc_evtchn_alloc_unbound)."""
        buf = self.privcmd.buffer(S.EVTCHN_ALLOC_UNBOUND.pack(dom=domid, remote_dom=remote_domid,
                                                              port=0))
        try:
            self.privcmd.hypercall(Hypercall.event_channel_op, EvtchnOp.alloc_unbound,
                                   buf.address, what="EVTCHNOP_alloc_unbound")
            return S.EVTCHN_ALLOC_UNBOUND.unpack(buf.data).port
        finally:
            self.privcmd.release(buf)

    def hvm_param_set(self, domid: int, index: int, value: int) -> None:
        buf = self.privcmd.buffer(S.XEN_HVM_PARAM.pack(domid=domid, index=index, value=value))
        try:
            self.privcmd.hypercall(Hypercall.hvm_op, HvmOp.set_param, buf.address,
                                   what="hvm set_param")
        finally:
            self.privcmd.release(buf)

    def hvm_param_get(self, domid: int, index: int) -> int:
        buf = self.privcmd.buffer(S.XEN_HVM_PARAM.pack(domid=domid, index=index))
        try:
            self.privcmd.hypercall(Hypercall.hvm_op, HvmOp.get_param, buf.address,
                                   what="hvm get_param")
            return S.XEN_HVM_PARAM.unpack(buf.data).value
        finally:
            self.privcmd.release(buf)

    # -- host ------------------------------------------------------------------------------
    def readconsole(self, *, clear: bool = False, index: int | None = None,
                    count: int = 1 << 16) -> tuple[bytes, int]:
        buf = self.privcmd.buffer(count)
        try:
            out = self._sysctl(Sysctl.readconsole, S.XEN_SYSCTL_READCONSOLE.pack(
                clear=int(clear), incremental=int(index is not None), index=index or 0,
                buffer=buf.address, count=count))
            rc = S.XEN_SYSCTL_READCONSOLE.unpack(out, SU)
            return bytes(buf.data[:rc.count]), rc.index
        finally:
            self.privcmd.release(buf)

    def set_parameters(self, text: str) -> None:
        data = text.encode() + b"\0"
        buf = self.privcmd.buffer(data)
        try:
            self._sysctl(Sysctl.set_parameter, S.XEN_SYSCTL_SET_PARAMETER.pack(
                params=buf.address, size=len(data)))
        finally:
            self.privcmd.release(buf)

    def physinfo(self):
        out = self._sysctl(Sysctl.physinfo)
        return S.XEN_SYSCTL_PHYSINFO.unpack(out, SU)

    def xen_version(self) -> tuple[int, int]:
        v = self.privcmd.hypercall(Hypercall.xen_version, XenVer.version)
        return v >> 16, v & 0xFFFF

    def xen_version_string(self, cmd: int, size: int) -> str:
        buf = self.privcmd.buffer(size)
        try:
            self.privcmd.hypercall(Hypercall.xen_version, cmd, buf.address)
            return bytes(buf.data).split(b"\0", 1)[0].decode(errors="replace")
        finally:
            self.privcmd.release(buf)

