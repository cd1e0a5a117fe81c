"""The trace buffers (sysctl tbuf_op, DOMID_XEN frames, per-pCPU rings) as Dom0 sees them.

The control side goes through `XenCtrl` / raw sysctls on `Privcmd`, the buffers are read
through privcmd foreign maps of DOMID_XEN, as xentrace does. Records are produced by the
schedulers' hook (`hv.sched.trace`), so no pCPU thread runs and the contents are exact.
"""

from __future__ import annotations

import io
import struct

import pytest
from hvtest_support import FakeGuest, running_host

from pyxen.abi import structs as S
from pyxen.abi.constants import (
    DOMID_XEN,
    SYSCTL_INTERFACE_VERSION,
    Errno,
    Hypercall,
    Sysctl,
    TbufOp,
)
from pyxen.hypervisor.sched import trace as T
from pyxen.hypervisor.trace_buffers import LOST_REC_SIZE, T_INFO_FIRST_OFFSET
from pyxen.toolstack.privcmd import XenError
from pyxen.toolstack.xentrace_record import TraceRecorder

PAGE = 4096
SU = S.XEN_SYSCTL_UNION_OFFSET


@pytest.fixture
def host():
    with running_host("nr_cpus=2") as h:
        yield h


@pytest.fixture
def host1():
    with running_host("nr_cpus=1") as h:
        yield h


def _errno(excinfo) -> int:
    return excinfo.value.errno


def _drain(host, **kw) -> T.TraceFile:
    """Drain the buffers with the recorder's copy loop (masks as given) and parse them."""
    out = io.BytesIO()
    rec = TraceRecorder(host.xc, host.privcmd, out, discard=False, **kw)
    rec.start()
    rec.stop()
    return T.parse_trace(out.getvalue())


def test_get_info_before_any_buffer_and_enable_refused(host):
    assert host.xc.tbuf_get_info() == (0, 0, T.TRC_ALL)
    with pytest.raises(XenError) as e:
        host.xc.tbuf_enable()
    assert _errno(e) == Errno.EINVAL
    host.xc.tbuf_disable()                              # always allowed
    with pytest.raises(XenError) as e:
        host.xc.tbuf_set_size(0)
    assert _errno(e) == Errno.EINVAL


def test_set_size_is_one_shot_and_refused_while_enabled(host):
    host.xc.tbuf_set_size(3)
    mfn, size, _ = host.xc.tbuf_get_info()
    words = T_INFO_FIRST_OFFSET + 2 * 3                 # header + two pCPUs' lists
    assert mfn != 0 and size == PAGE * ((4 * words + PAGE - 1) // PAGE)
    with pytest.raises(XenError) as e:
        host.xc.tbuf_set_size(4)                        # another size: not implemented
    assert _errno(e) == Errno.EINVAL
    host.xc.tbuf_enable()
    assert host.hv.tbuf.on
    with pytest.raises(XenError) as e:
        host.xc.tbuf_set_size(3)                        # buffers exist (and are in use)
    assert _errno(e) == Errno.EBUSY
    host.xc.tbuf_disable()
    assert not host.hv.tbuf.on
    assert host.xc.tbuf_get_info()[0] == mfn            # the buffers stay


def test_unknown_command_and_unprivileged_caller(host):
    with pytest.raises(XenError) as e:
        host.sysctl_raw(Sysctl.tbuf_op, S.XEN_SYSCTL_TBUF_OP.pack(cmd=9))
    assert _errno(e) == Errno.EINVAL
    domid = host.new_domain()
    g = FakeGuest(host.hv.get_domain(domid))
    raw = bytearray(S.XEN_SYSCTL_SIZE)
    S.XEN_SYSCTL_HEADER.pack_into(raw, 0, cmd=Sysctl.tbuf_op,
                                  interface_version=SYSCTL_INTERFACE_VERSION)
    g.copy_to_guest(g.base, bytes(raw))
    assert host.hv.hypercalls.dispatch(g, Hypercall.sysctl, g.base, 0, 0, 0, 0, 0) == -Errno.EPERM


def test_t_info_layout_and_what_dom0_may_map(host):
    host.xc.tbuf_set_size(2)
    mfn, size, _ = host.xc.tbuf_get_info()
    pages = host.privcmd.map_foreign(DOMID_XEN, list(range(mfn, mfn + size // PAGE)),
                                     writable=False)
    info = b"".join(bytes(p) for p in pages)
    assert struct.unpack_from("<H", info, 0)[0] == 2                       # tbuf_size
    offsets = struct.unpack_from("<2H", info, 2)                            # mfn_offset[]
    assert offsets == (T_INFO_FIRST_OFFSET, T_INFO_FIRST_OFFSET + 2)
    lists = [struct.unpack_from("<2I", info, 4 * off) for off in offsets]
    all_mfns = [m for lst in lists for m in lst]
    assert len(set(all_mfns)) == 4 and mfn not in all_mfns
    for lst in lists:
        bufs = host.privcmd.map_foreign(DOMID_XEN, list(lst), writable=True)
        assert S.T_BUF.unpack(bytes(bufs[0][:8])) == (0, 0)                # cons, prod
    # t_info is shared read-only; nothing else of the hypervisor is reachable
    with pytest.raises(XenError) as e:
        host.privcmd.map_foreign(DOMID_XEN, [mfn], writable=True)
    assert _errno(e) == Errno.EPERM
    dom0_shared_info = host.hv.dom0.shared_info_mfn
    for bad in (dom0_shared_info, 1, max(all_mfns) + 1, -1, 1 << 60):
        with pytest.raises(XenError) as e:
            host.privcmd.map_foreign(DOMID_XEN, [bad], writable=False)
        assert _errno(e) == Errno.EPERM


def test_records_go_to_their_pcpu_with_tsc_and_words(host):
    host.xc.tbuf_set_size(1)
    host.xc.tbuf_enable()
    host.hv.sched.trace(T.TRC_CSCHED2_CREDIT_BURN, (T.unit_word(3, 1), 100, 0x8000_0000, 7))
    host.hv.tbuf.trace(1, T.TRC_SCHED_WAKE, (3, 1))
    host.xc.tbuf_disable()
    host.hv.sched.trace(T.TRC_SCHED_SLEEP, (3, 1))     # disabled: dropped
    tf = _drain(host)
    (burn,) = tf.per_cpu[0]
    (wake,) = tf.per_cpu[1]
    assert burn.event == T.TRC_CSCHED2_CREDIT_BURN
    assert burn.words == (T.unit_word(3, 1), 100, 0x8000_0000, 7)
    assert wake.words == (3, 1) and wake.tsc >= burn.tsc > 0
    assert T.tsc_to_ns(wake.tsc) <= host.hv.now()


def test_event_and_cpu_masks_filter(host):
    xc = host.xc
    xc.tbuf_set_size(1)
    xc.tbuf_set_evt_mask(T.TRC_SCHED_VERBOSE)          # class SCHED, subclass verbose only
    assert xc.tbuf_get_info()[2] == T.TRC_SCHED_VERBOSE
    xc.tbuf_enable()
    tb = host.hv.tbuf
    tb.trace(0, T.TRC_SCHED_WAKE, (1, 0))               # 0x28004: kept
    tb.trace(0, T.TRC_CSCHED2_CREDIT_BURN, (0, 0, 0))   # subclass 2: dropped
    tb.trace(0, T.runstate_event(1, 0), (0,))           # subclass 1: dropped
    tb.trace(0, T.TRC_HVM | 0x1, ())                    # another class: dropped
    xc.tbuf_set_cpu_mask({1})
    tb.trace(0, T.TRC_SCHED_SLEEP, (1, 0))              # pCPU 0 masked out
    tb.trace(1, T.TRC_SCHED_SLEEP, (1, 0))
    tf = _drain(host, event_mask=T.TRC_SCHED_VERBOSE, cpus={1})
    assert [r.event for r in tf.per_cpu[0]] == [T.TRC_SCHED_WAKE]
    assert [r.event for r in tf.per_cpu[1]] == [T.TRC_SCHED_SLEEP]


def test_full_buffer_loses_records_then_wraps_and_reports_them(host1):
    xc, tb = host1.xc, host1.hv.tbuf
    xc.tbuf_set_size(1)                                 # 4088 data bytes
    xc.tbuf_enable()
    for i in range(300):                                # 16 bytes each: 255 fit
        tb.trace(0, T.TRC_SCHED_WAKE | 0x100, (i,))
    out = io.BytesIO()
    rec = TraceRecorder(xc, host1.privcmd, out, discard=False)
    rec.start()
    first = T.parse_trace(out.getvalue() or b"")       # nothing copied yet
    assert len(first) == 0
    rec.poll()
    got = T.parse_trace(out.getvalue()).per_cpu[0]
    assert [r.words[0] for r in got] == list(range(255))
    # prod is 8 bytes short of the end: the lost-records record (28 bytes) does not
    # fit, so a wrap record pads to the end, then LOST_RECORDS, then the record.
    tb.trace(0, T.TRC_SCHED_WAKE | 0x100, (1000,))
    stats = rec.stop()
    recs = T.parse_trace(out.getvalue()).per_cpu[0][255:]
    assert [r.event for r in recs] == [T.TRC_TRACE_WRAP_BUFFER, T.TRC_LOST_RECORDS,
                                       T.TRC_SCHED_WAKE | 0x100]
    wrap, lost, last = recs
    assert wrap.tsc is None and wrap.words == (0,)      # 8 bytes: header + one word
    assert lost.words[0] == 45 and lost.words[1] == T.DOMID_IDLE  # {lost, dom, vcpu}
    first_tsc = lost.words[2] | lost.words[3] << 32
    assert got[-1].tsc <= first_tsc <= lost.tsc <= last.tsc
    assert last.words == (1000,)
    assert stats.lost == 45 and stats.records == 257
    assert LOST_REC_SIZE == 28


def test_wrap_padding_with_tsc_and_disable_forgets_losses(host1):
    xc, tb = host1.xc, host1.hv.tbuf
    xc.tbuf_set_size(1)
    xc.tbuf_enable()
    out = io.BytesIO()
    rec = TraceRecorder(xc, host1.privcmd, out, discard=False)
    rec.start()
    # 4088 data bytes = 100 records of 40 bytes (TSC + 7 words) + 88
    for _ in range(100):
        tb.trace(0, T.TRC_SCHED_SWITCH, (1,) * 7)
    rec.poll()
    tb.trace(0, T.TRC_SCHED_SWITCH, (2,) * 7)            # 40 bytes: 48 left to the end
    tb.trace(0, T.TRC_SCHED_SWITCH, ())                  # 12: 36 left
    tb.trace(0, T.TRC_SCHED_SWITCH, (4,) * 7)            # needs a 36-byte pad
    rec.poll()
    recs = T.parse_trace(out.getvalue()).per_cpu[0][100:]
    assert [r.event for r in recs] == [T.TRC_SCHED_SWITCH] * 2 + [
        T.TRC_TRACE_WRAP_BUFFER, T.TRC_SCHED_SWITCH]
    pad = recs[2]
    assert pad.tsc is not None and pad.words == (0,) * 6  # 4 + 8 + 24 = 36 bytes
    assert recs[3].words == (4,) * 7
    # losses pending at disable are forgotten (no phantom LOST_RECORDS next time)
    for _ in range(200):
        tb.trace(0, T.TRC_SCHED_SWITCH, (5,) * 7)
    xc.tbuf_disable()
    rec.poll()
    xc.tbuf_enable()
    tb.trace(0, T.TRC_SCHED_WAKE, (6, 0))
    rec.stop()
    events = [r.event for r in T.parse_trace(out.getvalue()).per_cpu[0]]
    assert T.TRC_LOST_RECORDS not in events and events[-1] == T.TRC_SCHED_WAKE


def test_cpu_mask_from_a_bad_handle_faults_and_raw_get_info(host):
    with pytest.raises(XenError) as e:
        host.sysctl_raw(Sysctl.tbuf_op, S.XEN_SYSCTL_TBUF_OP.pack(
            cmd=TbufOp.set_cpu_mask, cpu_mask__bitmap=0x1234, cpu_mask__nr_bits=8))
    assert _errno(e) == Errno.EFAULT
    host.xc.tbuf_set_evt_mask(0x0002_F000)
    raw = host.sysctl_raw(Sysctl.tbuf_op, S.XEN_SYSCTL_TBUF_OP.pack(cmd=TbufOp.get_info))
    op = S.XEN_SYSCTL_TBUF_OP.unpack(raw, SU)
    assert (op.evt_mask, op.buffer_mfn, op.size) == (0x0002_F000, 0, 0)
