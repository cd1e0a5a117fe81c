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


CPUPOOL_PAR_ANY = 0xFFFF_FFFF


@dataclass(frozen=True)
class CpupoolInfo:
    poolid: int
    sched_id: int
    n_dom: int
    cpus: set[int]


def _bitmap(cpus: set[int], nbytes: int) -> bytes:
    return sum(1 << c for c in cpus if c < nbytes * 8).to_bytes(nbytes, "little")


def _bits(data: bytes) -> set[int]:
    value = int.from_bytes(data, "little")
    return {i for i in range(len(data) * 8) if value >> i & 1}


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

    # -- scheduling (libxc's xc_sched_*, xc_vcpu_*affinity, xc_cpupool_*) --------------------
    def sched_id(self) -> int:
        return S.XEN_SYSCTL_SCHED_ID.unpack(self._sysctl(Sysctl.sched_id), SU).sched_id

    def sched_domain(self, domid: int, sched_id: int, weight: int | None = None,
                     cap: int | None = None) -> tuple[int, int]:
        """credit / credit2 weight and cap: get (both None) or put; returns (weight, cap).
        As with libxc, a put sends both words: weight 0 keeps the weight, and cap 0
        removes the cap (credit: 0xFFFF keeps it)."""
        put = weight is not None or cap is not None
        arm = S.XEN_DOMCTL_SCHED_CREDIT2.pack(weight=weight or 0, cap=cap or 0)
        payload = S.XEN_DOMCTL_SCHEDULER_OP.pack(
            sched_id=sched_id,
            cmd=C.DomctlSchedOp.putinfo if put else C.DomctlSchedOp.getinfo,
            u=arm.ljust(16, b"\0"))
        out = self._domctl(Domctl.scheduler_op, domid, payload)
        if put:
            return self.sched_domain(domid, sched_id)
        got = S.XEN_DOMCTL_SCHED_CREDIT2.unpack(out, DU + 8)
        return got.weight, got.cap

    def sched_params(self, poolid: int, sched_id: int, *, tslice_ms: int | None = None,
                     ratelimit_us: int | None = None) -> dict:
        """A pool's scheduler-wide parameters (credit: tslice_ms, ratelimit_us; credit2:
        ratelimit_us): get, or put the ones given (the rest stay as they are)."""
        cur = self._sched_params(poolid, sched_id, None)
        if tslice_ms is None and ratelimit_us is None:
            return cur
        new = dict(cur)
        if tslice_ms is not None:
            new["tslice_ms"] = tslice_ms
        if ratelimit_us is not None:
            new["ratelimit_us"] = ratelimit_us
        self._sched_params(poolid, sched_id, new)
        return self._sched_params(poolid, sched_id, None)

    def _sched_params(self, poolid: int, sched_id: int, put: dict | None) -> dict:
        L = S.XEN_SYSCTL_SCHEDULER_OP
        if sched_id == C.Scheduler.CREDIT2:
            w0, w1 = (put or {}).get("ratelimit_us", 0), 0
        else:
            w0, w1 = (put or {}).get("tslice_ms", 0), (put or {}).get("ratelimit_us", 0)
        out = self._sysctl(Sysctl.scheduler_op, L.pack(
            cpupool_id=poolid, sched_id=sched_id, cmd=0 if put else 1,
            u__sched_credit__tslice_ms=w0, u__sched_credit__ratelimit_us=w1))
        r = L.unpack(out, SU)
        if sched_id == C.Scheduler.CREDIT2:
            return {"ratelimit_us": r.u__sched_credit__tslice_ms}
        if sched_id == C.Scheduler.CREDIT:
            return {"tslice_ms": r.u__sched_credit__tslice_ms,
                    "ratelimit_us": r.u__sched_credit__ratelimit_us}
        return {}

    def vcpu_affinity(self, domid: int, vcpu: int, hard: set[int] | None = None,
                      soft: set[int] | None = None, *, get: bool = False,
                      nr_bits: int = 1024) -> tuple[set[int], set[int]]:
        """xc_vcpu_setaffinity / getaffinity: set the masks given (None: leave alone),
        or get both; returns the (effective, after a set) hard and soft masks."""
        flags = (C.XEN_VCPUAFFINITY_HARD | C.XEN_VCPUAFFINITY_SOFT if get else
                 (C.XEN_VCPUAFFINITY_HARD if hard is not None else 0)
                 | (C.XEN_VCPUAFFINITY_SOFT if soft is not None else 0))
        nbytes = (nr_bits + 7) // 8
        hb = self.privcmd.buffer(_bitmap(hard or set(), nbytes))
        sb = self.privcmd.buffer(_bitmap(soft or set(), nbytes))
        try:
            self._domctl(Domctl.getvcpuaffinity if get else Domctl.setvcpuaffinity, domid,
                         S.XEN_DOMCTL_VCPUAFFINITY.pack(
                             vcpu=vcpu, flags=flags,
                             cpumap_hard__bitmap=hb.address, cpumap_hard__nr_bits=nr_bits,
                             cpumap_soft__bitmap=sb.address, cpumap_soft__nr_bits=nr_bits))
            return _bits(bytes(hb.data)), _bits(bytes(sb.data))
        finally:
            self.privcmd.release(hb)
            self.privcmd.release(sb)

    def _cpupool(self, op: int, *, poolid: int = 0, sched_id: int = 0, domid: int = 0,
                 cpu: int = 0, nr_bits: int = 0):
        buf = self.privcmd.buffer(max(1, (nr_bits + 7) // 8))
        try:
            out = self._sysctl(Sysctl.cpupool_op, S.XEN_SYSCTL_CPUPOOL_OP.pack(
                op=op, cpupool_id=poolid, sched_id=sched_id, domid=domid, cpu=cpu,
                cpumap__bitmap=buf.address, cpumap__nr_bits=nr_bits))
            return S.XEN_SYSCTL_CPUPOOL_OP.unpack(out, SU), _bits(bytes(buf.data))
        finally:
            self.privcmd.release(buf)

    def cpupool_create(self, sched_id: int, poolid: int | None = None) -> int:
        r, _ = self._cpupool(C.CpupoolOp.create, sched_id=sched_id,
                             poolid=CPUPOOL_PAR_ANY if poolid is None else poolid)
        return r.cpupool_id

    def cpupool_destroy(self, poolid: int) -> None:
        self._cpupool(C.CpupoolOp.destroy, poolid=poolid)

    def cpupool_info(self, poolid: int) -> CpupoolInfo:
        """The first pool whose id is >= poolid (ENOENT past the last)."""
        r, cpus = self._cpupool(C.CpupoolOp.info, poolid=poolid, nr_bits=1024)
        return CpupoolInfo(r.cpupool_id, r.sched_id, r.n_dom, cpus)

    def cpupool_list(self) -> list[CpupoolInfo]:
        out, poolid = [], 0
        while True:
            try:
                info = self.cpupool_info(poolid)
            except XenError as e:
                if e.errno == C.Errno.ENOENT:
                    return out
                raise
            out.append(info)
            poolid = info.poolid + 1

    def cpupool_addcpu(self, poolid: int, cpu: int | None = None) -> None:
        self._cpupool(C.CpupoolOp.addcpu, poolid=poolid,
                      cpu=CPUPOOL_PAR_ANY if cpu is None else cpu)

    def cpupool_removecpu(self, poolid: int, cpu: int | None = None) -> None:
        self._cpupool(C.CpupoolOp.rmcpu, poolid=poolid,
                      cpu=CPUPOOL_PAR_ANY if cpu is None else cpu)

    def cpupool_movedomain(self, poolid: int, domid: int) -> None:
        self._cpupool(C.CpupoolOp.movedomain, poolid=poolid, domid=domid)

    def cpupool_freeinfo(self) -> set[int]:
        return self._cpupool(C.CpupoolOp.freeinfo, nr_bits=1024)[1]

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

    # -- trace buffers (libxc's xc_tbuf_*) ------------------------------------------------------
    def _tbuf(self, cmd: int, *, evt_mask: int = 0, size: int = 0,
              cpus: set[int] | None = None, nr_bits: int = 0):
        buf = self.privcmd.buffer(max(1, (nr_bits + 7) // 8))
        if cpus is not None:
            buf.data[:] = _bitmap(cpus, len(buf.data))
        try:
            out = self._sysctl(Sysctl.tbuf_op, S.XEN_SYSCTL_TBUF_OP.pack(
                cmd=cmd, evt_mask=evt_mask, size=size,
                cpu_mask__bitmap=buf.address, cpu_mask__nr_bits=nr_bits))
            return S.XEN_SYSCTL_TBUF_OP.unpack(out, SU)
        finally:
            self.privcmd.release(buf)

    def tbuf_get_info(self) -> tuple[int, int, int]:
        """(t_info's first MFN, or 0 before set_size; t_info's size in bytes; evt_mask)."""
        r = self._tbuf(C.TbufOp.get_info)
        return r.buffer_mfn, r.size, r.evt_mask

    def tbuf_set_size(self, pages: int) -> None:
        """Allocate the trace buffers, `pages` per pCPU (once per host)."""
        self._tbuf(C.TbufOp.set_size, size=pages)

    def tbuf_set_evt_mask(self, mask: int) -> None:
        self._tbuf(C.TbufOp.set_evt_mask, evt_mask=mask & 0xFFFF_FFFF)

    def tbuf_set_cpu_mask(self, cpus: set[int], nr_bits: int = 1024) -> None:
        self._tbuf(C.TbufOp.set_cpu_mask, cpus=cpus, nr_bits=nr_bits)

    def tbuf_enable(self) -> None:
        self._tbuf(C.TbufOp.enable)

    def tbuf_disable(self) -> None:
        self._tbuf(C.TbufOp.disable)

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

