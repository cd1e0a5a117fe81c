"""vcpu_op (hypercall 24): per-vCPU operations (those of the foundation issue)."""

from __future__ import annotations

import struct

from ...abi import structs as S
from ...abi.constants import Errno, Hypercall, VcpuOp
from ..errors import HypercallError

# vcpu_op commands an HVM/PVH guest may use in Xen 4.10; others are -ENOSYS.
HVM_ALLOWED = frozenset({
    VcpuOp.register_runstate_memory_area, VcpuOp.get_runstate_info,
    VcpuOp.set_periodic_timer, VcpuOp.stop_periodic_timer,
    VcpuOp.set_singleshot_timer, VcpuOp.stop_singleshot_timer,
    VcpuOp.register_vcpu_info, VcpuOp.register_vcpu_time_memory_area,
    VcpuOp.initialise, VcpuOp.up, VcpuOp.down, VcpuOp.is_up,
})


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
        state, entry, times = v.runstate_snapshot()
        caller.copy_to_guest(arg, S.VCPU_RUNSTATE_INFO.pack(
            state=int(state), state_entry_time=entry, time=struct.pack("<4Q", *times)))
        return 0
    # initialise/up/down, timers, vcpu_info and runstate areas: core-ABI issue.
    raise HypercallError(Errno.ENOSYS)


def register(hv) -> None:
    hv.hypercalls.register(Hypercall.vcpu_op, do_vcpu_op)
