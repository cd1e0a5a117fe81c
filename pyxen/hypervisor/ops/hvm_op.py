"""hvm_op (hypercall 34): HVM parameters (what a PVH guest reads at boot)."""

from __future__ import annotations

import struct

from ...abi import structs as S
from ...abi.constants import HVM_NR_PARAMS, Errno, HvmOp, HvmParam, Hypercall
from ..errors import HypercallError
from .common import read_struct, target_domain

# Xen 4.10's x86 policy for a guest acting on its own parameters; everything
# else is for the toolstack (or device model) only.
GUEST_SETTABLE = frozenset({
    HvmParam.CALLBACK_IRQ, HvmParam.VM86_TSS, HvmParam.VM86_TSS_SIZED,
    HvmParam.ACPI_IOPORTS_LOCATION, HvmParam.VM_GENERATION_ID_ADDR,
    HvmParam.STORE_EVTCHN, HvmParam.CONSOLE_EVTCHN, HvmParam.X87_FIP_WIDTH,
})
GUEST_READABLE = GUEST_SETTABLE | {HvmParam.STORE_PFN, HvmParam.CONSOLE_PFN, HvmParam.ALTP2M}
SET_ONCE = frozenset({HvmParam.VIRIDIAN, HvmParam.IOREQ_SERVER_PFN,
                      HvmParam.NR_IOREQ_SERVER_PAGES, HvmParam.ALTP2M, HvmParam.MCA_CAP})


def _param_target(caller, p):
    if p.index >= HVM_NR_PARAMS:
        raise HypercallError(Errno.EINVAL)
    d = target_domain(caller, p.domid)
    if not d.is_hvm:
        raise HypercallError(Errno.EINVAL)
    return d


def _set_param(caller, arg):
    p = read_struct(caller, S.XEN_HVM_PARAM, arg)
    d = _param_target(caller, p)
    own = d is caller.domain
    if own and p.index not in GUEST_SETTABLE:
        raise HypercallError(Errno.EPERM)
    old = d.params[p.index]
    if p.index in SET_ONCE and old != 0 and p.value != old:
        raise HypercallError(Errno.EEXIST)
    d.set_hvm_param(p.index, p.value)
    if p.index == HvmParam.CALLBACK_IRQ:
        if own:
            d.latch_shared_info_abi(caller.compat)
        # Events may already be pending: deliver them through the new callback.
        for v in d.vcpus:
            if v.online:
                v.event_arrived()
    return 0


def _get_param(caller, arg):
    p = read_struct(caller, S.XEN_HVM_PARAM, arg)
    d = _param_target(caller, p)
    if d is caller.domain and p.index not in GUEST_READABLE:
        raise HypercallError(Errno.EPERM)
    caller.copy_to_guest(arg, S.XEN_HVM_PARAM.pack(domid=p.domid, index=p.index,
                                                   value=d.params[p.index]))
    return 0


MIN_UPCALL_VECTOR = 0x10     # vectors below are exceptions


def _set_evtchn_upcall_vector(caller, arg):
    op = read_struct(caller, S.XEN_HVM_EVTCHN_UPCALL_VECTOR, arg)
    if op.vector < MIN_UPCALL_VECTOR:
        raise HypercallError(Errno.EINVAL)
    d = caller.domain
    if op.vcpu >= len(d.vcpus):
        raise HypercallError(Errno.ENOENT)
    v = d.vcpus[op.vcpu]
    v.upcall_vector = op.vector
    v.event_arrived()
    return 0


def _get_time(caller, arg):
    caller.copy_to_guest(arg, struct.pack("<Q", caller.domain.hv.now()))
    return 0


def do_hvm_op(caller, op, arg, *_):
    op &= 0xFFFF_FFFF
    if op == HvmOp.set_param:
        return _set_param(caller, arg)
    if op == HvmOp.get_param:
        return _get_param(caller, arg)
    if op == HvmOp.set_evtchn_upcall_vector:
        return _set_evtchn_upcall_vector(caller, arg)
    if op == HvmOp.get_time:
        return _get_time(caller, arg)
    # altp2m and the rest arrive with their issues.
    raise HypercallError(Errno.ENOSYS)


def register(hv) -> None:
    hv.hypercalls.register(Hypercall.hvm_op, do_hvm_op)
