"""The schedulers running real guests' vCPUs on pCPU threads (guests/hog spins on
every vCPU): shares by weight, caps, null's ownership, hard affinity; the toolstack
side through the hypercall ABI (XenCtrl), as pyxl does it."""

from __future__ import annotations

import time

import pytest
from multidomain import MultiHost

from pyxen.abi.constants import Scheduler as SchedId
from pyxen.toolstack.xenctrl import XenCtrl


def _cpu_time(xc: XenCtrl, domid: int) -> int:
    return xc.domain_getinfo(domid).cpu_time_ns


def _shares(xc: XenCtrl, domids: list[int], seconds: float) -> list[float]:
    """Fraction of one pCPU each domain got over `seconds` of wall time."""
    t0 = time.monotonic_ns()
    c0 = [_cpu_time(xc, d) for d in domids]
    time.sleep(seconds)
    c1 = [_cpu_time(xc, d) for d in domids]
    span = time.monotonic_ns() - t0
    return [(b - a) / span for a, b in zip(c0, c1, strict=True)]


@pytest.fixture
def host(request):
    h = MultiHost(request.param)
    yield h
    h.close()


def _hogs(h: MultiHost, n: int, *overrides: str) -> list[int]:
    out = []
    for i in range(n):
        g = h.start("hog", f'name="hog{i}"', *overrides)
        h.wait_line(g, r"hog: spinning")
        out.append(g.domid)
    return out


@pytest.mark.parametrize("host", ["nr_cpus=1 sched=credit2"], indirect=True)
def test_credit2_weights_256_512_share_one_pcpu_1_to_2(host):
    xc = XenCtrl(host.privcmd)
    a, b = _hogs(host, 2)
    xc.sched_domain(a, SchedId.CREDIT2, weight=256, cap=0)
    xc.sched_domain(b, SchedId.CREDIT2, weight=512, cap=0)
    time.sleep(0.3)                                   # credits settle
    sa, sb = _shares(xc, [a, b], 3.0)
    assert sa + sb > 0.9, (sa, sb)                    # the pCPU is kept busy
    assert sb / sa == pytest.approx(2.0, rel=0.08), (sa, sb)


@pytest.mark.parametrize("host", ["nr_cpus=2 sched=credit2"], indirect=True)
def test_credit2_cap_50_holds_with_an_idle_pcpu_and_lifts_at_once(host):
    xc = XenCtrl(host.privcmd)
    (a,) = _hogs(host, 1)
    xc.sched_domain(a, SchedId.CREDIT2, weight=0, cap=50)
    time.sleep(0.2)
    (share,) = _shares(xc, [a], 2.0)
    assert share == pytest.approx(0.5, abs=0.04), share
    xc.sched_domain(a, SchedId.CREDIT2, weight=0, cap=0)      # cap 0 removes it
    (share,) = _shares(xc, [a], 1.0)
    assert share > 0.9, share


@pytest.mark.parametrize("host", ["nr_cpus=2 sched=null"], indirect=True)
def test_null_gives_each_vcpu_its_own_pcpu_and_extra_ones_wait(host):
    xc = XenCtrl(host.privcmd)
    a, b = _hogs(host, 2)
    sa, sb = _shares(xc, [a, b], 1.0)
    assert sa > 0.9 and sb > 0.9, (sa, sb)            # nobody waits behind another
    owners = {xc.domain_getvcpuinfo(d, 0).cpu for d in (a, b)}
    assert owners == {0, 1}
    g = host.start("hog", 'name="hog-waits"')
    time.sleep(0.5)
    assert _cpu_time(xc, g.domid) == 0                # in the waitqueue: never ran
    xc.domain_destroy(a)                              # a pCPU frees: the waiter takes it
    host.wait_line(g, r"hog: spinning", timeout=10)
    (sc,) = _shares(xc, [g.domid], 0.5)
    assert sc > 0.9, sc


@pytest.mark.parametrize("host", ["nr_cpus=2 sched=credit"], indirect=True)
def test_hard_affinity_is_never_violated(host):
    xc = XenCtrl(host.privcmd)
    a, b = _hogs(host, 2)
    xc.vcpu_affinity(a, 0, hard={1})
    xc.vcpu_affinity(b, 0, hard={1})
    time.sleep(0.1)          # a running vCPU moves when it next leaves its pCPU (as in Xen)
    seen = set()
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        for d in (a, b):
            vi = xc.domain_getvcpuinfo(d, 0)
            if vi.running:
                seen.add(vi.cpu)
        time.sleep(0.005)
    assert seen == {1}, seen
    sa, sb = _shares(xc, [a, b], 1.0)
    assert sa + sb < 1.1 and min(sa, sb) > 0.3, (sa, sb)   # both share pCPU 1


@pytest.mark.parametrize("host", ["nr_cpus=1 sched=credit2"], indirect=True)
def test_two_yielding_guests_on_one_pcpu_take_turns(host):
    """SCHEDOP_yield hands the pCPU to the other domain: both make progress at about
    the same rate (what bench_sched's vcpu_switch_us_p50 measures)."""
    import re
    for i in range(2):
        host.start("hog", f'name="y{i}"', "cmdline='yield=1 seconds=1'")
    counts = []
    for run in host.wait_all(30):
        m = next(re.search(r"yields (\d+) p50 (\d+) ns", line) for line in run.console
                 if "yields" in line)
        counts.append(int(m.group(1)))
    assert min(counts) > 1000 and max(counts) / min(counts) < 1.5, counts
