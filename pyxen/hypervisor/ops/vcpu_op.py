"""vcpu_op (hypercall 24): bring vCPUs up and down, their timers, and the areas
(vcpu_info, runstate, time) the hypervisor keeps up to date in guest memory."""

from __future__ import annotations

import struct

from ...abi import structs as S
from ...abi.constants import Errno, Hypercall, VCPU_SSHOTTMR_future, VcpuOp
from ..errors import HypercallError
from ..event_channel import UPCALL_MASK, UPCALL_PENDING, VCPU_INFO_SIZE
from .common import read_struct

# vcpu_op commands an HVM/PVH guest may use in Xen 4.10; others are -ENOSYS.
HVM_ALLOWED = frozenset({
    VcpuOp.register_runstate_memory_area, VcpuOp.get_runstate_info,
    VcpuOp.set_periodic_timer, VcpuOp.stop_periodic_timer,
    VcpuOp.set_singleshot_timer, VcpuOp.stop_singleshot_timer,
    VcpuOp.register_vcpu_info, VcpuOp.register_vcpu_time_memory_area,
    VcpuOp.initialise, VcpuOp.up, VcpuOp.down, VcpuOp.is_up,
})
MIN_PERIOD_NS = 1_000_000              # Xen refuses periodic timers under 1 ms
STIME_DELTA_MAX = (1 << 62) - 1


def runstate_info(v, compat: bool) -> bytes:
    """struct vcpu_runstate_info for `v`, in the caller's ABI."""
    state, entry, times = v.runstate_snapshot()
    layout = S.VCPU_RUNSTATE_INFO_COMPAT if compat else S.VCPU_RUNSTATE_INFO
    return layout.pack(state=int(state), state_entry_time=entry,
                       time=struct.pack("<4Q", *times))


def _initialise(caller, v, arg):
    d = caller.domain
    if d.vcpu_info_address(v.vcpu_id) is None:
        raise HypercallError(Errno.EINVAL, "vCPU has no vcpu_info")
    ctx = read_struct(caller, S.VCPU_HVM_CONTEXT, arg)
    with d.lock:
        if v.initialised:
            raise HypercallError(Errno.EEXIST)
        rec = d.hv.arch.record_from_vcpu_hvm_context(ctx)   # -EINVAL on a bad state
        v.backend.load_cpu_record(rec)
        v.initialised = True
    return 0


def _up(v):
    if not v.initialised:
        raise HypercallError(Errno.EINVAL, "vCPU not initialised")
    if not v.online:
        with v.domain.lock:
            v.online = True
        v.start()
        v.poke()
    return 0


def _down(v):
    if v.online:
        with v.domain.lock:
            v.online = False
        v.poke()
    return 0


def _register_vcpu_info(caller, v, arg):
    d = caller.domain
    r = read_struct(caller, S.VCPU_REGISTER_VCPU_INFO, arg)
    if r.offset > 4096 - VCPU_INFO_SIZE:
        raise HypercallError(Errno.EINVAL, "vcpu_info crosses the page")
    if v.vcpu_info_ref is not None:
        raise HypercallError(Errno.EINVAL, "vcpu_info already registered")
    if v is not caller.vcpu and v.online:
        raise HypercallError(Errno.EINVAL, "only for yourself or an offline vCPU")
    e = d.p2m.lookup(r.mfn) if 0 <= r.mfn < 1 << 40 else None
    if e is None or not e.rights & 2:
        raise HypercallError(Errno.EINVAL, "not a writable page of the domain")
    mem = d.hv.machine.view
    with d.atomic_update():
        old = d.vcpu_info_address(v.vcpu_id)
        new = (e.mfn << 12) + r.offset
        if old is None:
            mem[new:new + VCPU_INFO_SIZE] = bytes(VCPU_INFO_SIZE)
            mem[new + UPCALL_MASK] = 1
        else:
            mem[new:new + VCPU_INFO_SIZE] = bytes(mem[old:old + VCPU_INFO_SIZE])
        v.vcpu_info_ref = (r.mfn, r.offset)
        # Everything may be pending: the guest rescans all words (a spurious upcall
        # at worst, nothing lost).
        abi = d.shinfo_abi
        abi.word.pack_into(mem, new + abi.sel_offset, abi.all_ones)
        mem[new + UPCALL_PENDING] = 1
    v.event_arrived()
    return 0


def _register_runstate_area(caller, v, arg):
    va = struct.unpack("<I" if caller.compat else "<Q",
                       caller.copy_from_guest(arg, 4 if caller.compat else 8))[0]
    v.runstate_area = va or None
    v.runstate_area_compat = caller.compat
    if va:
        data = runstate_info(v, caller.compat)
        try:
            caller.copy_to_guest(va, data)     # through the caller's page tables, as Xen
        except Exception:  # noqa: BLE001 - GuestFault: Xen ignores the failed copy too
            pass
    return 0


def _register_time_area(caller, v, arg):
    va = struct.unpack("<I" if caller.compat else "<Q",
                       caller.copy_from_guest(arg, 4 if caller.compat else 8))[0]
    v.time_area = va or None
    return 0


def _set_singleshot(caller, v, arg):
    if v is not caller.vcpu:
        raise HypercallError(Errno.EINVAL, "only for the calling vCPU")
    t = read_struct(caller, S.VCPU_SET_SINGLESHOT_TIMER_COMPAT if caller.compat
                    else S.VCPU_SET_SINGLESHOT_TIMER, arg)
    if t.flags & VCPU_SSHOTTMR_future and t.timeout_abs_ns < caller.domain.hv.now():
        raise HypercallError(Errno.ETIME)
    v.singleshot_timer.set(t.timeout_abs_ns)
    return 0


def _set_periodic(caller, v, arg):
    t = read_struct(caller, S.VCPU_SET_PERIODIC_TIMER, arg)
    if t.period_ns < MIN_PERIOD_NS or t.period_ns > STIME_DELTA_MAX:
        raise HypercallError(Errno.EINVAL, "bad period")
    v.periodic_period = t.period_ns
    v.periodic_timer.set(caller.domain.hv.now() + t.period_ns)
    return 0


def do_vcpu_op(caller, cmd, vcpuid, arg, *_):
    cmd &= 0xFFFF_FFFF
    vcpuid = struct.unpack("<i", struct.pack("<I", vcpuid & 0xFFFF_FFFF))[0]
    d = caller.domain
    if d.is_hvm and cmd not in HVM_ALLOWED:
        raise HypercallError(Errno.ENOSYS)
    if vcpuid < 0 or vcpuid >= d.max_vcpus or vcpuid >= len(d.vcpus):
        raise HypercallError(Errno.ENOENT)
    v = d.vcpus[vcpuid]
    if cmd == VcpuOp.is_up:
        return 1 if v.online else 0
    if cmd == VcpuOp.get_runstate_info:
        caller.copy_to_guest(arg, runstate_info(v, caller.compat))
        return 0
    if cmd == VcpuOp.initialise:
        return _initialise(caller, v, arg)
    if cmd == VcpuOp.up:
        return _up(v)
    if cmd == VcpuOp.down:
        return _down(v)
    if cmd == VcpuOp.set_singleshot_timer:
        return _set_singleshot(caller, v, arg)
    if cmd == VcpuOp.stop_singleshot_timer:
        if v is not caller.vcpu:
            raise HypercallError(Errno.EINVAL, "only for the calling vCPU")
        v.singleshot_timer.stop()
        return 0
    if cmd == VcpuOp.set_periodic_timer:
        return _set_periodic(caller, v, arg)
    if cmd == VcpuOp.stop_periodic_timer:
        v.periodic_period = 0
        v.periodic_timer.stop()
        return 0
    if cmd == VcpuOp.register_vcpu_info:
        return _register_vcpu_info(caller, v, arg)
    if cmd == VcpuOp.register_runstate_memory_area:
        return _register_runstate_area(caller, v, arg)
    if cmd == VcpuOp.register_vcpu_time_memory_area:
        return _register_time_area(caller, v, arg)
    raise HypercallError(Errno.ENOSYS)


def register(hv) -> None:
    hv.hypercalls.register(Hypercall.vcpu_op, do_vcpu_op)
