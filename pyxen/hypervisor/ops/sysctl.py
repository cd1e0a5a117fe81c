"""sysctl (hypercall 35): host-wide queries and settings for the toolstack (Dom0 only)."""

from __future__ import annotations

from ...abi import structs as S
from ...abi.constants import (
    SYSCTL_INTERFACE_VERSION,
    CpupoolOp,
    Errno,
    Hypercall,
    Scheduler,
    Sysctl,
    TbufOp,
)
from ..errors import HypercallError
from ..params import ParamError, parse_runtime_assignments
from ..sched.host import SchedError
from ..trace_buffers import NR_CPUS, TraceBufferError
from .common import read_control_op, read_cpu_bitmap, require_privileged, write_cpu_bitmap
from .domctl import domain_info

U = S.XEN_SYSCTL_UNION_OFFSET
MAX_PARAM_STRING = 1023     # bytes a set_parameter string may have
XEN_SYSCTL_PHYSCAP_hvm = 1 << 0
CPUPOOL_PAR_ANY = 0xFFFF_FFFF
XEN_SYSCTL_SCHEDOP_putinfo = 0
XEN_SYSCTL_SCHEDOP_getinfo = 1


def do_sysctl(caller, arg, *_):
    me = caller.domain
    raw, hdr = read_control_op(caller, arg, S.XEN_SYSCTL_SIZE, S.XEN_SYSCTL_HEADER,
                               SYSCTL_INTERFACE_VERSION)
    require_privileged(caller)
    hv = me.hv
    cmd = hdr.cmd
    if cmd == Sysctl.readconsole:
        rc = S.XEN_SYSCTL_READCONSOLE.unpack(raw, U)
        data, nxt = hv.log.read(clear=bool(rc.clear),
                                index=rc.index if rc.incremental else None,
                                max_bytes=rc.count)
        if data:
            caller.copy_to_guest(rc.buffer, data)
        S.XEN_SYSCTL_READCONSOLE.write(raw, U, "count", len(data))
        S.XEN_SYSCTL_READCONSOLE.write(raw, U, "index", nxt & 0xFFFF_FFFF)
    elif cmd == Sysctl.physinfo:
        ncpu = hv.sched.nr_cpus
        m = hv.machine
        raw[U:U + S.XEN_SYSCTL_PHYSINFO.size] = S.XEN_SYSCTL_PHYSINFO.pack(
            threads_per_core=1, cores_per_socket=ncpu, nr_cpus=ncpu, max_cpu_id=ncpu - 1,
            nr_nodes=1, max_node_id=0, cpu_khz=hv.arch.cpu_khz,
            capabilities=XEN_SYSCTL_PHYSCAP_hvm, total_pages=m.nr_frames,
            free_pages=m.free_frames)
    elif cmd == Sysctl.sched_id:
        raw[U:U + 4] = int(hv.sched.sched_id).to_bytes(4, "little")
    elif cmd == Sysctl.getdomaininfolist:
        q = S.XEN_SYSCTL_GETDOMAININFOLIST.unpack(raw, U)
        ids = sorted(x for x in hv.domains if x >= q.first_domain)[:q.max_domains]
        blob = b"".join(domain_info(hv.domains[i]) for i in ids)
        if blob:
            caller.copy_to_guest(q.buffer, blob)
        S.XEN_SYSCTL_GETDOMAININFOLIST.write(raw, U, "num_domains", len(ids))
    elif cmd == Sysctl.set_parameter:
        sp = S.XEN_SYSCTL_SET_PARAMETER.unpack(raw, U)
        if sp.pad != b"\0" * 6:
            raise HypercallError(Errno.EINVAL)
        if sp.size > MAX_PARAM_STRING:
            raise HypercallError(Errno.E2BIG)
        text = caller.copy_from_guest(sp.params, sp.size).split(b"\0", 1)[0]
        # Like Xen: every valid word takes effect; any bad one makes the call fail.
        failed = False
        for word in text.decode("ascii", "replace").split():
            try:
                ((p, value),) = parse_runtime_assignments(word)
            except ParamError as e:
                hv.log.warning(f"set_parameter: {e}")
                failed = True
                continue
            hv.params[p.name] = value
            if p.apply:
                p.apply(hv, value)
        if failed:
            raise HypercallError(Errno.EINVAL)
    elif cmd == Sysctl.scheduler_op:
        _scheduler_op(hv, raw)
    elif cmd == Sysctl.cpupool_op:
        _cpupool_op(caller, hv, raw)
    elif cmd == Sysctl.tbuf_op:
        _tbuf_op(caller, hv, raw)
    else:
        raise HypercallError(Errno.ENOSYS)
    caller.copy_to_guest(arg, bytes(raw))
    return 0


def register(hv) -> None:
    hv.hypercalls.register(Hypercall.sysctl, do_sysctl)


def _scheduler_op(hv, raw: bytearray) -> None:
    """XEN_SYSCTL_scheduler_op: a pool's scheduler-wide parameters."""
    L = S.XEN_SYSCTL_SCHEDULER_OP
    op = L.unpack(raw, U)
    pool = hv.sched.pools.get(op.cpupool_id)
    if pool is None:
        raise HypercallError(Errno.ESRCH)
    if op.sched_id != pool.sched.sched_id or op.cmd not in (XEN_SYSCTL_SCHEDOP_putinfo,
                                                           XEN_SYSCTL_SCHEDOP_getinfo):
        raise HypercallError(Errno.EINVAL)
    put = op.cmd == XEN_SYSCTL_SCHEDOP_putinfo
    params = {}
    if op.sched_id == Scheduler.CREDIT:
        params = {"tslice_ms": op.u__sched_credit__tslice_ms,
                  "ratelimit_us": op.u__sched_credit__ratelimit_us}
    elif op.sched_id == Scheduler.CREDIT2:
        params = {"ratelimit_us": op.u__sched_credit__tslice_ms}   # the credit2 arm's only word
    try:
        got = hv.sched.adjust_global(op.cpupool_id, put, params if put else {})
    except SchedError as e:
        raise HypercallError(e.errno) from None
    if put:
        return
    if op.sched_id == Scheduler.CREDIT:
        L.write(raw, U, "u__sched_credit__tslice_ms", got["tslice_ms"])
        L.write(raw, U, "u__sched_credit__ratelimit_us", got["ratelimit_us"])
    elif op.sched_id == Scheduler.CREDIT2:
        L.write(raw, U, "u__sched_credit__tslice_ms", got["ratelimit_us"])


def _cpupool_op(caller, hv, raw: bytearray) -> None:
    """XEN_SYSCTL_cpupool_op: create, destroy, info, add/remove a pCPU, move a domain,
    the free pCPUs."""
    L = S.XEN_SYSCTL_CPUPOOL_OP
    op = L.unpack(raw, U)
    sched = hv.sched
    any_ = CPUPOOL_PAR_ANY
    try:
        if op.op == CpupoolOp.create:
            poolid = sched.pool_create(None if op.cpupool_id == any_ else op.cpupool_id,
                                       op.sched_id)
            L.write(raw, U, "cpupool_id", poolid)
        elif op.op == CpupoolOp.destroy:
            sched.pool_destroy(op.cpupool_id)
        elif op.op == CpupoolOp.info:
            poolid, sched_id, n_dom, cpus = sched.pool_info(op.cpupool_id)
            L.write(raw, U, "cpupool_id", poolid)
            L.write(raw, U, "sched_id", sched_id)
            L.write(raw, U, "n_dom", n_dom)
            write_cpu_bitmap(caller, op.cpumap__bitmap, op.cpumap__nr_bits, cpus)
        elif op.op == CpupoolOp.addcpu:
            sched.pool_add_cpu(op.cpupool_id, None if op.cpu == any_ else op.cpu)
        elif op.op == CpupoolOp.rmcpu:
            sched.pool_remove_cpu(op.cpupool_id, None if op.cpu == any_ else op.cpu)
        elif op.op == CpupoolOp.movedomain:
            d = hv.get_domain(op.domid)
            if d is None:
                raise HypercallError(Errno.ESRCH)
            if d is caller.domain:
                raise HypercallError(Errno.EPERM)
            sched.move_domain(d, op.cpupool_id)
        elif op.op == CpupoolOp.freeinfo:
            write_cpu_bitmap(caller, op.cpumap__bitmap, op.cpumap__nr_bits, sched.free_cpus())
        else:
            raise HypercallError(Errno.ENOSYS)
    except SchedError as e:
        raise HypercallError(e.errno) from None


def _tbuf_op(caller, hv, raw: bytearray) -> None:
    """XEN_SYSCTL_tbuf_op: size, masks and on/off of the trace buffers (trace_buffers.py)."""
    L = S.XEN_SYSCTL_TBUF_OP
    op = L.unpack(raw, U)
    tb = hv.tbuf
    try:
        if op.cmd == TbufOp.get_info:
            evt_mask, mfn, size = tb.get_info()
            L.write(raw, U, "evt_mask", evt_mask)
            L.write(raw, U, "buffer_mfn", mfn)
            L.write(raw, U, "size", size)
        elif op.cmd == TbufOp.set_cpu_mask:
            tb.set_cpu_mask(read_cpu_bitmap(caller, op.cpu_mask__bitmap,
                                            op.cpu_mask__nr_bits, NR_CPUS))
        elif op.cmd == TbufOp.set_evt_mask:
            tb.set_evt_mask(op.evt_mask)
        elif op.cmd == TbufOp.set_size:
            tb.set_size(op.size)
        elif op.cmd == TbufOp.enable:
            tb.enable()
        elif op.cmd == TbufOp.disable:
            tb.disable()
        else:
            raise HypercallError(Errno.EINVAL)
    except TraceBufferError as e:
        raise HypercallError(e.errno) from None
