"""sysctl (hypercall 35): host-wide queries and settings for the toolstack (Dom0 only)."""

from __future__ import annotations

import os

from ...abi import structs as S
from ...abi.constants import SYSCTL_INTERFACE_VERSION, Errno, Hypercall, Scheduler, Sysctl
from ..errors import HypercallError
from ..params import ParamError, parse_runtime_assignments
from .common import read_control_op, require_privileged
from .domctl import domain_info

U = S.XEN_SYSCTL_UNION_OFFSET
MAX_PARAM_STRING = 1023     # bytes a set_parameter string may have
XEN_SYSCTL_PHYSCAP_hvm = 1 << 0


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
        ncpu = os.cpu_count() or 1
        m = hv.machine
        raw[U:U + S.XEN_SYSCTL_PHYSINFO.size] = S.XEN_SYSCTL_PHYSINFO.pack(
            threads_per_core=1, cores_per_socket=ncpu, nr_cpus=ncpu, max_cpu_id=ncpu - 1,
            nr_nodes=1, max_node_id=0, cpu_khz=hv.arch.cpu_khz,
            capabilities=XEN_SYSCTL_PHYSCAP_hvm, total_pages=m.nr_frames,
            free_pages=m.free_frames)
    elif cmd == Sysctl.sched_id:
        raw[U:U + 4] = int(Scheduler[hv.params["sched"].upper()]).to_bytes(4, "little")
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
    else:
        raise HypercallError(Errno.ENOSYS)
    caller.copy_to_guest(arg, bytes(raw))
    return 0


def register(hv) -> None:
    hv.hypercalls.register(Hypercall.sysctl, do_sysctl)
