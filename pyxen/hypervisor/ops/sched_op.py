"""sched_op (hypercall 29) and set_timer_op (hypercall 15): yield, block, poll,
shutdown, watchdogs, and the single-shot timer."""

from __future__ import annotations

import os
import struct

from ...abi import structs as S
from ...abi.constants import Errno, Hypercall, SchedOp, ShutdownReason
from ..errors import HypercallError
from .common import read_struct

MAX_POLL_PORTS = 128
HUGE_TIMEOUT_NS = 1 << 50              # ~13 days: treated as a wrapped guest clock
WRAPPED_TIMEOUT_DELAY_NS = 100_000_000


def _upcall_mask_clear(d, v) -> None:
    info = d.vcpu_info_address(v.vcpu_id)
    if info is not None:
        d.hv.machine.view[info + 1] = 0      # vcpu_info.evtchn_upcall_mask


def _block(caller):
    v, d = caller.vcpu, caller.domain
    if v is None:
        return 0
    _upcall_mask_clear(d, v)
    v.block_unless(lambda: d.event_pending(v))
    return 0


def _poll(caller, arg):
    v, d = caller.vcpu, caller.domain
    p = read_struct(caller, S.SCHED_POLL_COMPAT if caller.compat else S.SCHED_POLL, arg)
    ports_addr, nr_ports, timeout = p.ports, p.nr_ports, p.timeout
    if nr_ports > MAX_POLL_PORTS:
        raise HypercallError(Errno.EINVAL, "too many ports")
    if v is None:
        raise HypercallError(Errno.EINVAL, "only a vCPU can poll")
    raw = caller.copy_from_guest(ports_addr, 4 * nr_ports)
    ports = struct.unpack(f"<{nr_ports}I", raw)
    limit = d.evtchn.port_limit()
    for port in ports:
        if port >= limit:
            raise HypercallError(Errno.EINVAL, f"port {port} out of range")
    # Ask to be woken first, then look: an event arriving in between is not lost.
    v.poll_port = ports[0] if nr_ports == 1 else 0
    if d.event_pending(v) or any(d.evtchn.is_pending(p) for p in ports):
        v.poll_port = None
        return 0
    if timeout:
        v.poll_timer.set(timeout)
    v.block_unless(lambda: v.poll_port is None)
    return 0


def _watchdog(caller, arg):
    d = caller.domain
    w = read_struct(caller, S.SCHED_WATCHDOG, arg)
    dogs = d.watchdogs
    if w.id == 0:
        for i, t in enumerate(dogs):
            if t is None:
                t = dogs[i] = d.hv.timers.new(
                    lambda i=i: d.shutdown(ShutdownReason.watchdog,
                                           f"watchdog {i + 1} expired"), f"{d} watchdog")
                t.set(d.hv.now() + w.timeout * 1_000_000_000)
                return i + 1
        raise HypercallError(Errno.ENOSPC, "no free watchdog")
    i = w.id - 1
    if not 0 <= i < len(dogs) or dogs[i] is None:
        raise HypercallError(Errno.EINVAL, "no such watchdog")
    if w.timeout == 0:
        dogs[i].stop()
        dogs[i] = None
    else:
        dogs[i].set(d.hv.now() + w.timeout * 1_000_000_000)
    return 0


def do_sched_op(caller, cmd, arg, *_):
    cmd &= 0xFFFF_FFFF
    d = caller.domain
    if cmd == SchedOp.yield_:
        v = caller.vcpu
        if v is not None and getattr(v, "backend", None) is not None:
            d.hv.sched.yield_(v)
            v.backend.kick()                # back to the scheduler: others may run first
        os.sched_yield()
        return 0
    if cmd == SchedOp.block:
        return _block(caller)
    if cmd == SchedOp.poll:
        return _poll(caller, arg)
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
    if cmd == SchedOp.watchdog:
        return _watchdog(caller, arg)
    if cmd == SchedOp.pin_override:
        raise HypercallError(Errno.EPERM)   # hardware domain only; the host has no vCPUs
    raise HypercallError(Errno.ENOSYS)


def do_set_timer_op(caller, a1, a2, *_):
    """Arm (or with 0, stop) the calling vCPU's single-shot timer."""
    v = caller.vcpu
    if v is None:
        return 0
    # The 32-bit ABI passes the 64-bit time in two registers, low half first.
    timeout = ((a2 << 32) | a1) if caller.compat else a1
    timeout &= 0xFFFF_FFFF_FFFF_FFFF
    if timeout == 0:
        v.singleshot_timer.stop()
        return 0
    now = caller.domain.hv.now()
    if timeout >= 1 << 63 or timeout - now >= HUGE_TIMEOUT_NS:
        # A negative or absurdly distant time comes from a wrapped guest clock; Xen
        # fires after 100 ms rather than never (or at once).
        v.singleshot_timer.set(now + WRAPPED_TIMEOUT_DELAY_NS)
    else:
        v.singleshot_timer.set(timeout)
    return 0


def register(hv) -> None:
    hv.hypercalls.register(Hypercall.sched_op, do_sched_op)
    hv.hypercalls.register(Hypercall.set_timer_op, do_set_timer_op)
