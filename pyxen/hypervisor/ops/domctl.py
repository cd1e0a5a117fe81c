"""domctl (hypercall 36): domain management for the toolstack (Dom0 only).

The argument is one `struct xen_domctl` (4.10 interface version 0x0e) in the
caller's memory: a header naming the command and the domain, and a 128-byte
union with the command's payload, copied back with any results.
"""

from __future__ import annotations

from ...abi import constants as C
from ...abi import structs as S
from ...abi.constants import DOMCTL_INTERFACE_VERSION, DOMID_FIRST_RESERVED, Domctl, Errno
from ..errors import HypercallError
from ..sched.host import SchedError
from .common import read_control_op, read_cpu_bitmap, require_privileged, write_cpu_bitmap

U = S.XEN_DOMCTL_UNION_OFFSET
MAX_VIRT_CPUS = 128    # pyxen's limit on vCPUs per domain (Xen's HVM_MAX_VCPUS)
MAX_PAUSE_COUNT = 255  # toolstack pauses nest up to this many
XEN_INVALID_MAX_VCPU_ID = 0xFFFF_FFFF


def domain_info_flags(d) -> int:
    flags = 0
    if d.is_dying:
        flags |= C.XEN_DOMINF_dying
    if d.is_hvm:
        flags |= C.XEN_DOMINF_hvm_guest
    if d.is_shut_down:
        flags |= C.XEN_DOMINF_shutdown
        flags |= (d.shutdown_reason & C.XEN_DOMINF_shutdownmask) << C.XEN_DOMINF_shutdownshift
    if d.pause_count > 0:
        flags |= C.XEN_DOMINF_paused
    if d.is_xenstore:
        flags |= C.XEN_DOMINF_xs_domain
    running = any(v.runstate == C.RunstateState.running for v in d.vcpus)
    online = [v for v in d.vcpus if v.online]
    if running:
        flags |= C.XEN_DOMINF_running
    elif online and all(v.blocked for v in online):
        flags |= C.XEN_DOMINF_blocked
    return flags


def domain_info(d) -> bytes:
    cpu_time = sum(v.cpu_time_ns() for v in d.vcpus)
    return S.XEN_DOMCTL_GETDOMAININFO.pack(
        domain=d.domid, flags=domain_info_flags(d), tot_pages=d.tot_pages,
        max_pages=d.max_pages, shared_info_frame=_shared_info_frame(d), cpu_time=cpu_time,
        nr_online_vcpus=sum(1 for v in d.vcpus if v.online),
        max_vcpu_id=len(d.vcpus) - 1 if d.vcpus else XEN_INVALID_MAX_VCPU_ID,
        ssidref=d.ssidref, handle=d.handle, cpupool=d.cpupool)


def do_domctl(caller, arg, *_):
    me = caller.domain
    raw, hdr = read_control_op(caller, arg, S.XEN_DOMCTL_SIZE, S.XEN_DOMCTL_HEADER,
                               DOMCTL_INTERFACE_VERSION)
    hv = me.hv
    cmd = hdr.cmd
    copy_back = False
    if cmd == Domctl.getdomaininfo:
        # The xenstore domain may watch the others (Xen's XSM_XS_PRIV).
        if not (me.is_privileged or me.is_xenstore):
            raise HypercallError(Errno.EPERM)
    elif cmd == Domctl.createdomain:
        require_privileged(caller)

    if cmd == Domctl.createdomain:
        cd = S.XEN_DOMCTL_CREATEDOMAIN.unpack(raw, U)
        known = (C.XEN_DOMCTL_CDF_hvm_guest | C.XEN_DOMCTL_CDF_hap | C.XEN_DOMCTL_CDF_s3_integrity
                 | C.XEN_DOMCTL_CDF_oos_off | C.XEN_DOMCTL_CDF_xs_domain)
        if cd.flags & ~known:
            raise HypercallError(Errno.EINVAL)
        if not cd.flags & C.XEN_DOMCTL_CDF_hvm_guest:
            raise HypercallError(Errno.EOPNOTSUPP)   # PV guests: not supported yet
        want = hdr.domain if 0 < hdr.domain < DOMID_FIRST_RESERVED else None
        if want is not None and hv.get_domain(want) is not None:
            raise HypercallError(Errno.EEXIST)
        d = hv.create_domain(want, handle=cd.handle, hvm=True)
        d.ssidref = cd.ssidref
        d.is_xenstore = bool(cd.flags & C.XEN_DOMCTL_CDF_xs_domain)
        S.XEN_DOMCTL_HEADER.write(raw, 0, "domain", d.domid)
        copy_back = True
    elif cmd == Domctl.getdomaininfo:
        if hdr.domain >= DOMID_FIRST_RESERVED:
            raise HypercallError(Errno.EINVAL)
        # Xen returns the first existing domain whose id is >= the one asked for.
        found = sorted(x for x in hv.domains if x >= hdr.domain)
        if not found:
            raise HypercallError(Errno.ESRCH)
        d = hv.domains[found[0]]
        raw[U:U + S.XEN_DOMCTL_GETDOMAININFO.size] = domain_info(d)
        S.XEN_DOMCTL_HEADER.write(raw, 0, "domain", d.domid)
        copy_back = True
    else:
        d = hv.get_domain(hdr.domain)
        if d is None:
            raise HypercallError(Errno.ESRCH)
        require_privileged(caller)
        if cmd == Domctl.destroydomain:
            if d.domid == 0:
                raise HypercallError(Errno.EINVAL)
            hv.destroy_domain(d)
        elif cmd == Domctl.pausedomain:
            if d is me:
                raise HypercallError(Errno.EINVAL)
            if d.pause_count >= MAX_PAUSE_COUNT:
                raise HypercallError(Errno.EOVERFLOW)
            d.pause()
        elif cmd == Domctl.unpausedomain:
            if d.is_dying or d.pause_count == 0:
                raise HypercallError(Errno.EINVAL)
            d.unpause()
        elif cmd == Domctl.max_mem:
            # Below current use is fine: the domain then just cannot grow (Xen).
            d.max_pages = S.XEN_DOMCTL_MAX_MEM.unpack(raw, U).max_memkb >> 2
        elif cmd == Domctl.max_vcpus:
            n = S.XEN_DOMCTL_MAX_VCPUS.unpack(raw, U).max
            if d is me or n > MAX_VIRT_CPUS:
                raise HypercallError(Errno.EINVAL)
            if d.vcpus and n != d.max_vcpus:
                raise HypercallError(Errno.EBUSY if n > d.max_vcpus else Errno.EINVAL)
            d.max_vcpus = n
            d.create_vcpus()
        elif cmd == Domctl.setdomainhandle:
            d.handle = S.XEN_DOMCTL_SETDOMAINHANDLE.unpack(raw, U).handle
        elif cmd == Domctl.sethvmcontext:
            ctx = S.XEN_DOMCTL_HVMCONTEXT.unpack(raw, U)
            if d is me or not d.is_hvm:
                raise HypercallError(Errno.EINVAL)
            blob = caller.copy_from_guest(ctx.buffer, ctx.size)
            d.pause()
            try:
                hv.arch.load_hvm_context(d, blob)
            finally:
                d.unpause()
        elif cmd == Domctl.gethvmcontext:
            ctx = S.XEN_DOMCTL_HVMCONTEXT.unpack(raw, U)
            if d is me or not d.is_hvm:
                raise HypercallError(Errno.EINVAL)
            blob = hv.arch.save_hvm_context(d)
            if ctx.buffer:
                if ctx.size < len(blob):
                    raise HypercallError(Errno.ENOSPC)
                caller.copy_to_guest(ctx.buffer, blob)
            S.XEN_DOMCTL_HVMCONTEXT.write(raw, U, "size", len(blob))
            copy_back = True
        elif cmd == Domctl.getvcpuinfo:
            info = S.XEN_DOMCTL_GETVCPUINFO.unpack(raw, U)
            if info.vcpu >= len(d.vcpus):
                raise HypercallError(Errno.ESRCH if info.vcpu < d.max_vcpus else Errno.EINVAL)
            v = d.vcpus[info.vcpu]
            raw[U:U + S.XEN_DOMCTL_GETVCPUINFO.size] = S.XEN_DOMCTL_GETVCPUINFO.pack(
                vcpu=info.vcpu, online=int(v.online), blocked=int(v.blocked),
                running=int(v.runstate == C.RunstateState.running),
                cpu_time=v.cpu_time_ns(), cpu=hv.sched.processor_of(v))
            copy_back = True
        elif cmd == Domctl.set_max_evtchn:
            d.max_evtchn_port = S.XEN_DOMCTL_SET_MAX_EVTCHN.unpack(raw, U).max_port
        elif cmd == Domctl.set_gnttab_limits:
            lim = S.XEN_DOMCTL_SET_GNTTAB_LIMITS.unpack(raw, U)
            if not lim.grant_frames or not lim.maptrack_frames:
                raise HypercallError(Errno.EINVAL)
            d.max_grant_frames = lim.grant_frames
            d.max_maptrack_frames = lim.maptrack_frames
        elif cmd == Domctl.scheduler_op:
            copy_back = _scheduler_op(hv, d, raw)
        elif cmd in (Domctl.setvcpuaffinity, Domctl.getvcpuaffinity):
            _vcpu_affinity(caller, hv, d, raw, cmd == Domctl.setvcpuaffinity)
            copy_back = True
        else:
            raise HypercallError(Errno.ENOSYS)
    if copy_back:
        caller.copy_to_guest(arg, bytes(raw))
    return 0


def register(hv) -> None:
    hv.hypercalls.register(C.Hypercall.domctl, do_domctl)


def _shared_info_frame(d) -> int:
    """The gfn where the guest mapped shared_info; Xen reports ~0 (no M2P entry) before."""
    return 0xFFFF_FFFF_FFFF_FFFF if d.shared_info_gfn is None else d.shared_info_gfn


def _scheduler_op(hv, d, raw: bytearray) -> bool:
    """XEN_DOMCTL_scheduler_op: a domain's weight and cap (credit, credit2)."""
    op = S.XEN_DOMCTL_SCHEDULER_OP.unpack(raw, U)
    pool = hv.sched.pool_of(d)
    if op.sched_id != pool.sched.sched_id:
        raise HypercallError(Errno.EINVAL)
    if op.cmd not in (C.DomctlSchedOp.putinfo, C.DomctlSchedOp.getinfo):
        raise HypercallError(Errno.EINVAL)
    put = op.cmd == C.DomctlSchedOp.putinfo
    arm = U + 8                       # the union after sched_id and cmd
    params = {}
    if put and op.sched_id in (C.Scheduler.CREDIT, C.Scheduler.CREDIT2):
        w = S.XEN_DOMCTL_SCHED_CREDIT2.unpack(raw, arm)
        params = {"weight": w.weight, "cap": w.cap}
    try:
        got = hv.sched.adjust(d, put, params)
    except SchedError as e:
        raise HypercallError(e.errno) from None
    if put or op.sched_id not in (C.Scheduler.CREDIT, C.Scheduler.CREDIT2):
        return False
    raw[arm:arm + 4] = S.XEN_DOMCTL_SCHED_CREDIT2.pack(weight=got["weight"], cap=got["cap"])
    return True


def _vcpu_affinity(caller, hv, d, raw: bytearray, put: bool) -> None:
    """XEN_DOMCTL_{set,get}vcpuaffinity: hard and/or soft affinity of one vCPU; a set
    reports back the effective masks (hard within the pool, soft within hard)."""
    L = S.XEN_DOMCTL_VCPUAFFINITY
    aff = L.unpack(raw, U)
    if aff.vcpu >= max(d.max_vcpus, len(d.vcpus)):
        raise HypercallError(Errno.EINVAL)
    if aff.vcpu >= len(d.vcpus):
        raise HypercallError(Errno.ESRCH)
    if not aff.flags & (C.XEN_VCPUAFFINITY_HARD | C.XEN_VCPUAFFINITY_SOFT):
        raise HypercallError(Errno.EINVAL)
    v = d.vcpus[aff.vcpu]
    n = hv.sched.nr_cpus
    want_hard = bool(aff.flags & C.XEN_VCPUAFFINITY_HARD)
    want_soft = bool(aff.flags & C.XEN_VCPUAFFINITY_SOFT)
    if put:
        hard = (read_cpu_bitmap(caller, aff.cpumap_hard__bitmap, aff.cpumap_hard__nr_bits, n)
                if want_hard else None)
        soft = (read_cpu_bitmap(caller, aff.cpumap_soft__bitmap, aff.cpumap_soft__nr_bits, n)
                if want_soft else None)
        try:
            hv.sched.set_affinity(v, hard, soft)
        except SchedError as e:
            raise HypercallError(e.errno) from None
    hard_now, soft_now = hv.sched.effective_affinity(v)
    if put:
        pool_cpus = set(hv.sched.pool_of(d).cpus)
        hard_now &= pool_cpus
        soft_now &= hard_now
    if want_hard:
        write_cpu_bitmap(caller, aff.cpumap_hard__bitmap, aff.cpumap_hard__nr_bits, hard_now)
    if want_soft:
        write_cpu_bitmap(caller, aff.cpumap_soft__bitmap, aff.cpumap_soft__nr_bits, soft_now)
