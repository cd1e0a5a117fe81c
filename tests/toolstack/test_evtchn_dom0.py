"""Dom0's event channels (toolstack/evtchn.py) against the hypervisor's 2-level core.

Everything goes through hypercalls issued as Dom0; the bits checked are those
in Dom0's real shared_info page.
"""

from __future__ import annotations

import select
import struct
import threading

import pytest

from pyxen.abi import structs as S
from pyxen.abi.constants import DOMID_SELF, Errno, EvtchnOp, EvtchnStat, Hypercall, Virq
from pyxen.hypervisor.hypervisor import Hypervisor
from pyxen.toolstack.evtchn import EventChannelDevice
from pyxen.toolstack.privcmd import Privcmd, XenError
from pyxen.toolstack.xenctrl import XenCtrl


@pytest.fixture
def host():
    hv = Hypervisor("")
    pc = Privcmd(hv)
    try:
        yield pc, EventChannelDevice.of(pc)
    finally:
        hv.shutdown_host()


def _op(pc, cmd, layout, **fields):
    buf = pc.buffer(layout.pack(**fields))
    try:
        pc.hypercall(Hypercall.event_channel_op, cmd, buf.address)
        return layout.unpack(buf.data)
    finally:
        pc.release(buf)


def _errno(fn) -> int:
    with pytest.raises(XenError) as e:
        fn()
    return e.value.errno


def test_loopback_interdomain_both_ways(host):
    pc, dev = host
    with dev.open() as a, dev.open() as b:
        pa = a.bind_unbound_port(0)
        pb = b.bind_interdomain(0, pa)
        assert (pa, pb) == (1, 2)                    # lowest free ports, port 0 reserved
        # Binding raises one event on the new local port, so nothing sent before is lost.
        assert b.pending(1.0) == pb
        b.unmask(pb)
        b.notify(pb)
        assert a.pending(1.0) == pa
        assert a.pending(0.0) is None                # masked until unmask: no repeat
        a.unmask(pa)
        for i in range(200):                         # ordered, none lost
            a.notify(pa)
            assert b.pending(1.0) == pb, i
            b.unmask(pb)


def test_fileno_becomes_readable(host):
    pc, dev = host
    with dev.open() as a, dev.open() as b:
        pa = a.bind_unbound_port(0)
        pb = b.bind_interdomain(0, pa)
        b.pending(1.0)
        b.unmask(pb)
        assert not select.select([b], [], [], 0)[0]
        threading.Timer(0.05, a.notify, (pa,)).start()
        assert select.select([b], [], [], 2.0)[0] == [b]
        assert b.pending() == pb
        assert not select.select([b], [], [], 0)[0]


def test_status_of_each_kind(host):
    pc, dev = host
    with dev.open() as a, dev.open() as b:
        pa = a.bind_unbound_port(7)
        st = _op(pc, EvtchnOp.status, S.EVTCHN_STATUS, dom=DOMID_SELF, port=pa, status=0,
                 vcpu=0, u=bytes(8))
        assert st.status == EvtchnStat.unbound
        assert S.EVTCHN_STATUS_UNBOUND.unpack(st.u[:2]).dom == 7
        pv = a.bind_virq(Virq.DOM_EXC)
        st = _op(pc, EvtchnOp.status, S.EVTCHN_STATUS, dom=DOMID_SELF, port=pv, status=0,
                 vcpu=0, u=bytes(8))
        assert st.status == EvtchnStat.virq and struct.unpack_from("<I", st.u)[0] == 3
        pu = a.bind_unbound_port(0)
        pi = b.bind_interdomain(0, pu)
        st = _op(pc, EvtchnOp.status, S.EVTCHN_STATUS, dom=DOMID_SELF, port=pi, status=0,
                 vcpu=0, u=bytes(8))
        inter = S.EVTCHN_STATUS_INTERDOMAIN.unpack(st.u)
        assert st.status == EvtchnStat.interdomain and (inter.dom, inter.port) == (0, pu)
        # Closing one end sends the other back to unbound, open to the closer.
        b.unbind(pi)
        st = _op(pc, EvtchnOp.status, S.EVTCHN_STATUS, dom=DOMID_SELF, port=pu, status=0,
                 vcpu=0, u=bytes(8))
        assert st.status == EvtchnStat.unbound
        st = _op(pc, EvtchnOp.status, S.EVTCHN_STATUS, dom=DOMID_SELF, port=pi, status=0,
                 vcpu=0, u=bytes(8))
        assert st.status == EvtchnStat.closed
        # Beyond the allocated bucket: not a valid port at all.
        assert _errno(lambda: _op(pc, EvtchnOp.status, S.EVTCHN_STATUS, dom=DOMID_SELF,
                                  port=5000, status=0, vcpu=0, u=bytes(8))) == Errno.EINVAL


def test_error_codes(host):
    pc, dev = host
    with dev.open() as a:
        assert _errno(lambda: a.notify(0)) == Errno.EINVAL          # port 0 is reserved
        assert _errno(lambda: a.notify(4096)) == Errno.EINVAL       # beyond 2-level ports
        assert _errno(lambda: a.notify(33)) == Errno.EINVAL         # never bound
        p = a.bind_virq(Virq.DOM_EXC)
        assert _errno(lambda: a.bind_virq(Virq.DOM_EXC)) == Errno.EEXIST
        assert _errno(lambda: a.notify(p)) == Errno.EINVAL          # can't send on a VIRQ
        assert _errno(lambda: _op(pc, EvtchnOp.bind_virq, S.EVTCHN_BIND_VIRQ, virq=24,
                                  vcpu=0, port=0)) == Errno.EINVAL
        assert _errno(lambda: _op(pc, EvtchnOp.bind_virq, S.EVTCHN_BIND_VIRQ,
                                  virq=Virq.CONSOLE, vcpu=1, port=0)) == Errno.EINVAL
        # The remote port must be unbound and offered to us.
        q = a.bind_unbound_port(5)
        assert _errno(lambda: a.bind_interdomain(0, q)) == Errno.EINVAL
        assert _errno(lambda: a.bind_interdomain(0, 3000)) == Errno.EINVAL
        assert _errno(lambda: a.bind_interdomain(77, 1)) == Errno.ESRCH
        for cmd in (EvtchnOp.init_control, EvtchnOp.expand_array, EvtchnOp.set_priority):
            assert _errno(lambda cmd=cmd: _op(pc, cmd, S.EVTCHN_SET_PRIORITY, port=1,
                                              priority=0)) == Errno.ENOSYS
        assert _errno(lambda: _op(pc, 99, S.EVTCHN_SEND, port=1)) == Errno.ENOSYS


def test_send_on_unbound_is_dropped(host):
    pc, dev = host
    with dev.open() as a:
        p = a.bind_unbound_port(9)
        a.notify(p)                           # nobody there yet: 0, nothing pending
        assert a.pending(0.05) is None


def test_port_exhaustion_gives_enospc(host):
    pc, dev = host
    xc = XenCtrl(pc)
    domid = xc.domain_create(bytes(16))
    xc.domain_set_max_evtchn(domid, 40)
    ports = []
    with pytest.raises(XenError) as e:
        for _ in range(100):
            r = _op(pc, EvtchnOp.alloc_unbound, S.EVTCHN_ALLOC_UNBOUND, dom=domid,
                    remote_dom=0, port=0)
            ports.append(r.port)
    assert e.value.errno == Errno.ENOSPC
    assert ports == list(range(1, 41))        # ports 1..max_port, then -ENOSPC
    # A closed port is the next one handed out (Dom0 may close it: EVTCHNOP_reset
    # closes them all).
    _op(pc, EvtchnOp.reset, S.EVTCHN_RESET, dom=domid)
    r = _op(pc, EvtchnOp.alloc_unbound, S.EVTCHN_ALLOC_UNBOUND, dom=domid, remote_dom=0,
            port=0)
    assert r.port == 1
    for _ in range(16):
        _op(pc, EvtchnOp.alloc_unbound, S.EVTCHN_ALLOC_UNBOUND, dom=domid, remote_dom=0,
            port=0)
    r = _op(pc, EvtchnOp.alloc_unbound, S.EVTCHN_ALLOC_UNBOUND, dom=domid, remote_dom=0,
            port=0)
    assert r.port == 18


def test_dom0_virq_delivery(host):
    pc, dev = host
    xc = XenCtrl(pc)
    with dev.open() as a:
        p = a.bind_virq(Virq.DOM_EXC)
        domid = xc.domain_create(bytes(16))
        xc.domain_destroy(domid)                # a domain died: VIRQ_DOM_EXC
        assert a.pending(1.0) == p
