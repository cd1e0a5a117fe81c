"""Recording a running host's trace as xentrace does (sysctl tbuf_op, DOMID_XEN frames
mapped through privcmd, per-pCPU chunks) while two CPU-bound guests run under credit2 on
two pCPUs, and analysing the file as `pyxen-trace analyze` does."""

from __future__ import annotations

import io

import pytest
from multidomain import MultiHost

from pyxen.hypervisor.sched import trace as T
from pyxen.toolstack.xenctrl import XenCtrl
from pyxen.toolstack.xentrace_record import TraceRecorder
from pyxen.toolstack.xentrace_tools import analyze_trace


@pytest.fixture
def host():
    h = MultiHost("nr_cpus=2 sched=credit2")
    yield h
    h.close()


def test_record_two_hogs_on_two_pcpus_under_credit2(host):
    guests = [host.start("hog", f'name="hog{i}"') for i in range(2)]
    for g in guests:
        host.wait_line(g, r"hog: spinning")
    xc = XenCtrl(host.privcmd)
    out = io.BytesIO()
    reports = []
    stats = TraceRecorder(xc, host.privcmd, out).record(
        1.0, progress=lambda t, s: reports.append(s.records), progress_every=0.3)
    assert not host.hv.tbuf.on                          # stop() disabled tracing
    assert reports and reports == sorted(reports)
    data = out.getvalue()
    tf = T.parse_trace(data)
    assert stats.bytes == len(data) and stats.lost == 0
    assert stats.records == sum(1 for r in tf.records() if r.event != T.TRC_TRACE_WRAP_BUFFER)
    assert set(tf.cpus) <= {0, 1} and tf.cpus          # per-pCPU records on pCPUs 0-1 only
    for cpu, recs in tf.per_cpu.items():                # each pCPU's records in time order
        tscs = [r.tsc for r in recs]
        assert tscs == sorted(tscs), cpu
    events = {r.event for r in tf.records()}
    assert T.TRC_CSCHED2_CREDIT_BURN in events
    assert T.runstate_event(T.RUNSTATE_RUNNABLE, T.RUNSTATE_RUNNING) in events
    r = analyze_trace(tf).result()
    assert 0.8e9 < r["span_ns"] < 1.5e9
    assert r["credit2_burn_records"]
    vcpus = {(v["domid"], v["vcpu"]): v for v in r["vcpus"]}
    domids = [g.domid for g in guests]
    assert set(vcpus) == {(d, 0) for d in domids}
    for d in domids:
        v = vcpus[(d, 0)]
        assert v["running_ns"] > 0.5 * r["span_ns"], v   # a hog on its own pCPU
        assert v["runnable_ns"] > 0, v                    # between stints on its pCPU
    assert {p["cpu"] for p in r["pcpus"]} <= {0, 1}
    # the records are where the vCPUs ran: a runstate change lands on the vCPU's pCPU
    ran_on = {}
    for rec in tf.records():
        if T.is_runstate_change(rec.event) and T.runstate_states(rec.event)[1] == 0:
            ran_on.setdefault(T.split_unit_word(rec.words[0])[0], set()).add(rec.cpu)
    assert set(ran_on) == set(domids)
