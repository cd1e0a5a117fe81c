"""event_channel_op (hypercall 32): the 2-level event channel ABI.

The FIFO sub-ops are not implemented: they fail with -ENOSYS, which is what
a guest sees on a Xen without the FIFO ABI, and guests (Linux) then stay on
2-level. No physical IRQs exist, so bind_pirq fails with -EINVAL.
"""

from __future__ import annotations

import struct

from ...abi import structs as S
from ...abi.constants import DOMID_SELF, Errno, EvtchnOp, EvtchnStat, Hypercall
from ..errors import HypercallError
from .common import read_struct, target_domain, write_struct


def _alloc_unbound(caller, arg):
    a = read_struct(caller, S.EVTCHN_ALLOC_UNBOUND, arg)
    d = target_domain(caller, a.dom)
    port = d.evtchn.alloc_unbound(a.remote_dom, caller.domain.domid)
    # A failed copy-back leaves the port allocated, as in Xen.
    write_struct(caller, S.EVTCHN_ALLOC_UNBOUND, arg, dom=a.dom, remote_dom=a.remote_dom,
                 port=port)
    return 0


def _bind_interdomain(caller, arg):
    b = read_struct(caller, S.EVTCHN_BIND_INTERDOMAIN, arg)
    me = caller.domain
    rdom = me.domid if b.remote_dom == DOMID_SELF else b.remote_dom
    remote = me.hv.get_domain(rdom)
    if remote is None or remote.is_dying:
        raise HypercallError(Errno.ESRCH)
    port = me.evtchn.bind_interdomain(remote, b.remote_port)
    write_struct(caller, S.EVTCHN_BIND_INTERDOMAIN, arg, remote_dom=b.remote_dom,
                 remote_port=b.remote_port, local_port=port)
    return 0


def _bind_virq(caller, arg):
    b = read_struct(caller, S.EVTCHN_BIND_VIRQ, arg)
    port = caller.domain.evtchn.bind_virq(b.virq, b.vcpu)
    write_struct(caller, S.EVTCHN_BIND_VIRQ, arg, virq=b.virq, vcpu=b.vcpu, port=port)
    return 0


def _bind_ipi(caller, arg):
    b = read_struct(caller, S.EVTCHN_BIND_IPI, arg)
    port = caller.domain.evtchn.bind_ipi(b.vcpu)
    write_struct(caller, S.EVTCHN_BIND_IPI, arg, vcpu=b.vcpu, port=port)
    return 0


def _bind_pirq(caller, arg):
    read_struct(caller, S.EVTCHN_BIND_PIRQ, arg)
    raise HypercallError(Errno.EINVAL, "no physical IRQs")


def _status(caller, arg):
    st = read_struct(caller, S.EVTCHN_STATUS, arg)
    d = target_domain(caller, st.dom)
    status, vcpu, a, b = d.evtchn.status(st.port)
    if status == EvtchnStat.unbound:
        u = S.EVTCHN_STATUS_UNBOUND.pack(dom=a).ljust(8, b"\0")
    elif status == EvtchnStat.interdomain:
        u = S.EVTCHN_STATUS_INTERDOMAIN.pack(dom=a, port=b)
    elif status == EvtchnStat.virq:
        u = struct.pack("<I4x", a)
    else:
        u = bytes(8)
    write_struct(caller, S.EVTCHN_STATUS, arg, dom=st.dom, port=st.port, status=int(status),
                 vcpu=vcpu, u=u)
    return 0


def _port_op(layout, method):
    def op(caller, arg):
        req = read_struct(caller, layout, arg)
        getattr(caller.domain.evtchn, method)(req.port)
        return 0
    return op


def _bind_vcpu(caller, arg):
    b = read_struct(caller, S.EVTCHN_BIND_VCPU, arg)
    caller.domain.evtchn.bind_vcpu(b.port, b.vcpu)
    return 0


def _reset(caller, arg):
    r = read_struct(caller, S.EVTCHN_RESET, arg)
    d = target_domain(caller, r.dom)
    d.evtchn.close_all()
    return 0


def _fifo_unavailable(caller, arg):
    raise HypercallError(Errno.ENOSYS, "FIFO event channels are not implemented")


_OPS = {
    EvtchnOp.alloc_unbound: _alloc_unbound,
    EvtchnOp.bind_interdomain: _bind_interdomain,
    EvtchnOp.bind_virq: _bind_virq,
    EvtchnOp.bind_pirq: _bind_pirq,
    EvtchnOp.bind_ipi: _bind_ipi,
    EvtchnOp.close: _port_op(S.EVTCHN_CLOSE, "close"),
    EvtchnOp.send: _port_op(S.EVTCHN_SEND, "send"),
    EvtchnOp.status: _status,
    EvtchnOp.bind_vcpu: _bind_vcpu,
    EvtchnOp.unmask: _port_op(S.EVTCHN_UNMASK, "unmask"),
    EvtchnOp.reset: _reset,
    EvtchnOp.init_control: _fifo_unavailable,
    EvtchnOp.expand_array: _fifo_unavailable,
    EvtchnOp.set_priority: _fifo_unavailable,
}


def do_event_channel_op(caller, cmd, arg, *_):
    op = _OPS.get(cmd & 0xFFFF_FFFF)
    if op is None:
        raise HypercallError(Errno.ENOSYS)
    return op(caller, arg)


def register(hv) -> None:
    hv.hypercalls.register(Hypercall.event_channel_op, do_event_channel_op)
