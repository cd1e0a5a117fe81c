"""Scheduler control through the hypercall ABI, as the toolstack issues it: sysctl
sched_id / scheduler_op / cpupool_op and domctl scheduler_op / {set,get}vcpuaffinity,
with Xen's semantics and error numbers."""

from __future__ import annotations

import pytest
from hvtest_support import running_host

from pyxen.abi.constants import Errno
from pyxen.abi.constants import Scheduler as SchedId
from pyxen.toolstack.privcmd import XenError


def _domain(h, vcpus: int = 2) -> int:
    domid = h.xc.domain_create(bytes(16))
    h.xc.domain_max_vcpus(domid, vcpus)
    return domid


def _errno(call, *args, **kw) -> int:
    with pytest.raises(XenError) as e:
        call(*args, **kw)
    return e.value.errno


def test_sched_id_follows_the_boot_option():
    with running_host("nr_cpus=2") as h:
        assert h.xc.sched_id() == SchedId.CREDIT          # 4.10's default
    with running_host("nr_cpus=2 sched=credit2") as h:
        assert h.xc.sched_id() == SchedId.CREDIT2
        assert h.xc.physinfo().nr_cpus == 2


def test_credit2_weight_and_cap():
    with running_host("nr_cpus=2 sched=credit2") as h:
        d = _domain(h, 2)
        C2 = SchedId.CREDIT2
        assert h.xc.sched_domain(d, C2) == (256, 0)
        assert h.xc.sched_domain(d, C2, weight=512, cap=0) == (512, 0)
        assert h.xc.sched_domain(d, C2, weight=0, cap=150) == (512, 150)   # 0: unchanged
        assert _errno(h.xc.sched_domain, d, C2, weight=0, cap=201) == Errno.EINVAL
        assert h.xc.sched_domain(d, C2, weight=0, cap=0) == (512, 0)       # cap 0: none
        assert _errno(h.xc.sched_domain, d, SchedId.CREDIT) == Errno.EINVAL  # not its sched
        assert _errno(h.xc.sched_domain, 99, C2) == Errno.ESRCH


def test_credit_weight_and_cap():
    with running_host("nr_cpus=1") as h:
        d = _domain(h, 1)
        assert h.xc.sched_domain(d, SchedId.CREDIT) == (256, 0)
        assert h.xc.sched_domain(d, SchedId.CREDIT, weight=128, cap=50) == (128, 50)


def test_pool_wide_parameters():
    with running_host("nr_cpus=2 sched=credit2") as h:
        assert h.xc.sched_params(0, SchedId.CREDIT2) == {"ratelimit_us": 1000}
        assert h.xc.sched_params(0, SchedId.CREDIT2, ratelimit_us=500) == {"ratelimit_us": 500}
        assert _errno(h.xc.sched_params, 0, SchedId.CREDIT2, ratelimit_us=50) == Errno.EINVAL
        assert _errno(h.xc.sched_params, 0, SchedId.CREDIT) == Errno.EINVAL
        assert _errno(h.xc.sched_params, 5, SchedId.CREDIT2) == Errno.ESRCH
    with running_host("nr_cpus=2") as h:
        assert h.xc.sched_params(0, SchedId.CREDIT) == {"tslice_ms": 30, "ratelimit_us": 1000}
        assert h.xc.sched_params(0, SchedId.CREDIT, tslice_ms=10) == {
            "tslice_ms": 10, "ratelimit_us": 1000}
        assert _errno(h.xc.sched_params, 0, SchedId.CREDIT, tslice_ms=0) == Errno.EINVAL


def test_vcpu_affinity():
    with running_host("nr_cpus=4 sched=credit2") as h:
        d = _domain(h, 2)
        assert h.xc.vcpu_affinity(d, 0, get=True) == ({0, 1, 2, 3}, {0, 1, 2, 3})
        hard, soft = h.xc.vcpu_affinity(d, 0, hard={1, 2})
        assert hard == {1, 2}
        hard, soft = h.xc.vcpu_affinity(d, 0, soft={2, 3})
        assert soft == {2}                      # effective soft: soft & hard & pool
        assert h.xc.vcpu_affinity(d, 0, get=True) == ({1, 2}, {2, 3})
        assert h.xc.vcpu_affinity(d, 1, get=True)[0] == {0, 1, 2, 3}
        assert _errno(h.xc.vcpu_affinity, d, 0, hard={9}) == Errno.EINVAL   # no such pCPU
        assert _errno(h.xc.vcpu_affinity, d, 0, hard=set()) == Errno.EINVAL
        assert _errno(h.xc.vcpu_affinity, d, 5, hard={1}) == Errno.EINVAL
        assert _errno(h.xc.vcpu_affinity, d, 0) == Errno.EINVAL           # neither flag


def test_cpupools():
    with running_host("nr_cpus=4 sched=credit2") as h:
        xc = h.xc
        d = _domain(h, 1)
        (p0,) = xc.cpupool_list()
        assert (p0.poolid, p0.sched_id, p0.n_dom, p0.cpus) == (0, SchedId.CREDIT2, 2,
                                                               {0, 1, 2, 3})
        assert xc.cpupool_freeinfo() == set()
        p1 = xc.cpupool_create(SchedId.NULL)
        assert p1 == 1
        assert _errno(xc.cpupool_create, SchedId.CREDIT, poolid=1) == Errno.EEXIST
        assert _errno(xc.cpupool_create, 42) == Errno.ENOENT
        assert _errno(xc.cpupool_movedomain, p1, d) == Errno.ENOENT       # no pCPUs yet
        assert _errno(xc.cpupool_addcpu, p1, 3) == Errno.EBUSY            # in Pool-0
        xc.cpupool_removecpu(0, 3)
        xc.cpupool_removecpu(0, 2)
        assert xc.cpupool_freeinfo() == {2, 3}
        xc.cpupool_addcpu(p1)                                              # any: pCPU 2
        xc.cpupool_addcpu(p1, 3)
        assert _errno(xc.cpupool_addcpu, p1, 7) == Errno.EINVAL
        assert [(p.poolid, p.sched_id, p.cpus) for p in xc.cpupool_list()] == [
            (0, SchedId.CREDIT2, {0, 1}), (1, SchedId.NULL, {2, 3})]
        xc.cpupool_movedomain(p1, d)
        assert xc.domain_getinfo(d).cpupool == p1
        assert xc.cpupool_info(1).n_dom == 1
        assert _errno(xc.cpupool_destroy, p1) == Errno.EBUSY
        xc.cpupool_movedomain(0, d)
        xc.cpupool_removecpu(p1)                                           # its last: 3
        xc.cpupool_removecpu(p1)
        xc.cpupool_destroy(p1)
        assert _errno(xc.cpupool_info, 1) == Errno.ENOENT
        assert _errno(xc.cpupool_destroy, 0) == Errno.EBUSY


def test_the_last_pcpu_of_a_pool_with_domains_stays():
    with running_host("nr_cpus=2 sched=credit2") as h:
        xc = h.xc
        d = _domain(h, 1)
        xc.cpupool_removecpu(0, 1)
        p1 = xc.cpupool_create(SchedId.CREDIT)
        xc.cpupool_addcpu(p1, 1)
        xc.cpupool_movedomain(p1, d)
        assert _errno(xc.cpupool_removecpu, p1, 1) == Errno.EBUSY
