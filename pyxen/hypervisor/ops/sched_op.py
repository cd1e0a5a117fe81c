"""sched_op (hypercall 29): yield, block, shutdown and friends."""

from __future__ import annotations

import os

from ...abi import structs as S
from ...abi.constants import Errno, Hypercall, SchedOp
from ..errors import HypercallError
from .common import read_struct


def do_sched_op(caller, cmd, arg, *_):
    cmd &= 0xFFFF_FFFF
    d = caller.domain
    if cmd == SchedOp.yield_:
        os.sched_yield()
        return 0
    if cmd == SchedOp.block:
        v = caller.vcpu
        if v is not None and not d.event_pending(v):
            v.block()
        return 0
    if cmd == SchedOp.shutdown:
        reason = read_struct(caller, S.SCHED_SHUTDOWN, arg).reason & 0xFF
        d.shutdown(reason)
        return 0
    if cmd == SchedOp.shutdown_code:
        reason = read_struct(caller, S.SCHED_SHUTDOWN, arg).reason & 0xFF
        with d.lock:
            if d.shutdown_code == -1:      # the first code recorded stays
                d.shutdown_code = reason
        return 0
    if cmd == SchedOp.remote_shutdown:
        req = read_struct(caller, S.SCHED_REMOTE_SHUTDOWN, arg)
        target = d.hv.get_domain(req.domain_id)
        if target is None:
            raise HypercallError(Errno.ESRCH)
        if not d.is_privileged:
            raise HypercallError(Errno.EPERM)
        if not target.vcpus:       # Dom0 is the host process: nothing to shut down here
            raise HypercallError(Errno.EINVAL)
        target.shutdown(req.reason & 0xFF)
        return 0
    if cmd == SchedOp.pin_override:
        raise HypercallError(Errno.EPERM)   # hardware domain only; the host has no vCPUs
    # poll and watchdog need event channels and timers (core ABI issue).
    raise HypercallError(Errno.ENOSYS)


def register(hv) -> None:
    hv.hypercalls.register(Hypercall.sched_op, do_sched_op)
