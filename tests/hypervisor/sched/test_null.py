"""The null scheduler (Xen 4.10): one unit per pCPU, a FIFO waitqueue, soft affinity
first when a pCPU frees up, hard affinity always, and its trace records.

A small driver stands in for the framework: a pCPU calls do_schedule when it is tickled
(null never asks for a timer); units burn CPU time and, when given a (burst, sleep)
pattern, block and wake. Time is ManualEnv's virtual clock.
"""

from __future__ import annotations

from collections import defaultdict

import pytest
from driver_moves import AffinityMoves

from pyxen.hypervisor.sched import null as nl
from pyxen.hypervisor.sched.core import NO_TIMER, ManualEnv, SchedDomain, SchedUnit
from pyxen.hypervisor.sched.null import Null

US = 1_000
MS = 1_000_000
S = 1_000_000_000


class Driver(AffinityMoves):
    """pCPUs and units around a scheduler, in virtual time."""

    def __init__(self, sched, env: ManualEnv):
        self.s = sched
        self.env = env
        self.cpus = sorted(sched.cpus)
        self.cur: dict[int, SchedUnit | None] = {c: None for c in self.cpus}
        self.since: dict[int, int] = {c: 0 for c in self.cpus}
        self.work: dict[SchedUnit, tuple[int, int] | None] = {}
        self.left: dict[SchedUnit, int] = {}
        self.wake_at: dict[SchedUnit, int] = {}
        self.woke: dict[SchedUnit, int] = {}
        self.latency: dict[SchedUnit, list[int]] = defaultdict(list)
        self.ran: dict[SchedUnit, int] = defaultdict(int)
        self.moving: dict[SchedUnit, bool] = {}        # affinity changed: was it runnable
        self.ran_on: dict[tuple[SchedUnit, int], int] = defaultdict(int)
        self.owners: dict[int, set] = defaultdict(set)     # units each pCPU ever ran

    def start(self, unit: SchedUnit, work: tuple[int, int] | None = None) -> None:
        self.work[unit] = work
        if work is not None:
            self.left[unit] = work[0]
        self._wake(unit)

    def block(self, unit: SchedUnit) -> None:
        unit.runnable = False
        self.woke.pop(unit, None)
        self.s.sleep(unit)


    def resched(self, cpu: int) -> None:
        now = self.env.t
        prev = self.cur[cpu]
        d = self.s.do_schedule(cpu, prev, now)
        assert d.time_ns == NO_TIMER                  # null never time-slices
        unit = d.unit
        if unit is not None:
            assert unit.runnable
            assert not unit.running or unit is prev, f"{unit} picked on {cpu} while running"
            hard = unit.hard_affinity
            assert not hard or cpu in hard, f"{unit} on cpu {cpu} outside hard {set(hard)}"
        if prev is not None and prev is not unit:
            prev.running = False
            self.s.context_saved(prev)
            if prev in self.moving:
                self._finish_move(prev)
        if unit is not None and unit is not prev:
            unit.running = True
            unit.processor = cpu
            self.owners[cpu].add(unit)
            if unit in self.woke:
                self.latency[unit].append(now - self.woke.pop(unit))
        self.cur[cpu] = unit

    def _account(self, t: int) -> None:
        for cpu in self.cpus:
            u = self.cur[cpu]
            if u is not None:
                dt = t - self.since[cpu]
                self.ran[u] += dt
                self.ran_on[(u, cpu)] += dt
                if u in self.left:
                    self.left[u] -= dt
            self.since[cpu] = t

    def _next_event(self) -> int | None:
        times = list(self.wake_at.values())
        if self.env.tickled:
            times.append(self.env.t)
        for cpu, u in self.cur.items():
            if u is not None and u in self.left and u.runnable:
                times.append(self.since[cpu] + max(0, self.left[u]))
        return min(times) if times else None

    def run(self, until: int) -> None:
        while True:
            t = self._next_event()
            if t is None or t > until:
                t = until
            self._account(t)
            self.env.advance(t)
            for cpu in self.cpus:
                u = self.cur[cpu]
                if u is not None and u in self.left and self.left[u] <= 0 and u.runnable:
                    self.block(u)
                    burst, sleep = self.work[u]
                    self.left[u] = burst
                    self.wake_at[u] = t + sleep
            for u in [u for u, w in self.wake_at.items() if w <= t]:
                del self.wake_at[u]
                self._wake(u)
            for _ in range(100):
                need = set(self.env.tickled) & set(self.cpus)
                self.env.tickled.clear()
                if not need:
                    break
                for cpu in sorted(need):
                    self.resched(cpu)
            else:
                raise AssertionError("tickle storm")
            if t >= until:
                return


def setup(ncpus):
    env = ManualEnv()
    s = Null(env, frozenset(range(ncpus)))
    return env, s, Driver(s, env)


def add_unit(s, dom, vcpu, hard=None, soft=None):
    u = SchedUnit(dom, vcpu)
    if hard is not None:
        u.hard_affinity = frozenset(hard)
    if soft is not None:
        u.soft_affinity = frozenset(soft)
    dom.units.append(u)
    s.insert_unit(u)
    return u


def new_dom(s, domid):
    d = SchedDomain(domid)
    s.insert_domain(d)
    return d


def records(env, event):
    return [w for _, e, w in env.records if e == event]


def where(drv, unit):
    return next((c for c, u in drv.cur.items() if u is unit), None)


# -- one unit per pCPU ---------------------------------------------------------------------
def test_units_up_to_pcpus_each_own_a_pcpu_and_never_wait():
    env, s, drv = setup(4)
    d1, d2 = new_dom(s, 1), new_dom(s, 2)
    units = [add_unit(s, d1, 0), add_unit(s, d1, 1), add_unit(s, d2, 0), add_unit(s, d2, 1)]
    assert sorted(u.processor for u in units) == [0, 1, 2, 3]
    assert s.cpus_free == set() and s.waitq == []
    patterns = [None, (3 * MS, 1 * MS), (250 * US, 4 * MS), (7 * MS, 7 * MS)]
    for u, w in zip(units, patterns, strict=True):
        drv.start(u, w)
    drv.run(2 * S)
    for cpu in range(4):
        assert len(drv.owners[cpu]) == 1              # only ever its own unit
    for u in units:
        assert all(x == 0 for x in drv.latency[u])    # runs the moment it wakes
        assert len({c for (v, c), t in drv.ran_on.items() if v is u and t}) == 1
    assert drv.ran[units[0]] == 2 * S
    assert len(drv.latency[units[2]]) > 400


def test_a_sleeping_owner_keeps_its_pcpu():
    env, s, drv = setup(1)
    d = new_dom(s, 1)
    a, b = add_unit(s, d, 0), add_unit(s, d, 1)
    assert s.waitq == [b]
    drv.start(a)
    drv.start(b)
    drv.run(1 * MS)
    drv.block(a)
    drv.run(10 * MS)
    assert drv.cur[0] is None and s.waitq == [b]     # idles; b keeps waiting
    drv._wake(a)
    drv.run(11 * MS)
    assert drv.cur[0] is a and drv.latency[a][-1] == 0


# -- the waitqueue -----------------------------------------------------------------------------
def test_extra_units_wait_in_fifo_order_and_take_a_pcpu_when_one_frees():
    env, s, drv = setup(2)
    d = new_dom(s, 1)
    units = [add_unit(s, d, v) for v in range(5)]
    assert [u.processor for u in units[:2]] == [0, 1]
    assert s.waitq == units[2:]
    for u in units:
        drv.start(u)
    drv.run(100 * MS)
    assert drv.ran[units[2]] == drv.ran[units[3]] == drv.ran[units[4]] == 0
    # cpu 0 frees: the head of the queue takes it
    drv.block(units[0])
    drv.run(drv.env.t + 1 * US)
    s.remove_unit(units[0])
    drv.run(drv.env.t + 1 * MS)
    assert drv.cur[0] is units[2] and s.waitq == units[3:]
    # then cpu 1: the next one
    drv.block(units[1])
    drv.run(drv.env.t + 1 * US)
    s.remove_unit(units[1])
    drv.run(drv.env.t + 1 * MS)
    assert drv.cur[1] is units[3] and s.waitq == [units[4]]
    # leaving the waitqueue
    s.remove_unit(units[4])
    assert s.waitq == []


def test_a_freed_pcpu_goes_to_a_soft_affine_waiter_first():
    env, s, drv = setup(3)
    d = new_dom(s, 1)
    a, b, c = add_unit(s, d, 0), add_unit(s, d, 1), add_unit(s, d, 2)
    w1 = add_unit(s, d, 3)                              # no soft affinity, first in line
    w2 = add_unit(s, d, 4, soft={1})                    # prefers cpu 1
    w3 = add_unit(s, d, 5, soft={2})
    assert s.waitq == [w1, w2, w3]
    for u in (a, b, c, w1, w2, w3):
        drv.start(u)
    drv.run(1 * MS)
    assert [drv.cur[i] for i in range(3)] == [a, b, c]
    drv.block(b)
    drv.run(drv.env.t + 1 * US)
    s.remove_unit(b)                                    # cpu 1 frees
    drv.run(drv.env.t + 1 * MS)
    assert drv.cur[1] is w2 and s.waitq == [w1, w3]
    drv.block(a)
    drv.run(drv.env.t + 1 * US)
    s.remove_unit(a)                                    # cpu 0: nobody prefers it
    drv.run(drv.env.t + 1 * MS)
    assert drv.cur[0] is w1 and s.waitq == [w3]


def test_hard_affinity_is_respected_by_waiters():
    env, s, drv = setup(2)
    d = new_dom(s, 1)
    a, b = add_unit(s, d, 0), add_unit(s, d, 1)
    w1 = add_unit(s, d, 2, hard={1})                    # first in line, but only cpu 1
    w2 = add_unit(s, d, 3)
    assert s.waitq == [w1, w2]
    for u in (a, b, w1, w2):
        drv.start(u)
    drv.run(1 * MS)
    drv.block(a)
    drv.run(drv.env.t + 1 * US)
    s.remove_unit(a)                                    # cpu 0 frees: w1 may not use it
    drv.run(drv.env.t + 1 * MS)
    assert drv.cur[0] is w2 and s.waitq == [w1]
    drv.run(drv.env.t + 1 * S)
    assert drv.ran_on[(w1, 0)] == 0 and drv.ran[w1] == 0
    drv.block(b)
    drv.run(drv.env.t + 1 * US)
    s.remove_unit(b)
    drv.run(drv.env.t + 1 * MS)
    assert drv.cur[1] is w1


def test_insert_places_by_soft_then_hard_affinity():
    env, s, drv = setup(4)
    d = new_dom(s, 1)
    u0 = add_unit(s, d, 0, soft={2})
    assert u0.processor == 2                            # free and preferred
    u1 = add_unit(s, d, 1, soft={2})
    assert u1.processor == 0                            # 2 is taken: first free of hard
    u2 = add_unit(s, d, 2, hard={2, 3})
    assert u2.processor == 3
    u3 = add_unit(s, d, 3, hard={2, 3})                 # nothing free for it: waits
    assert s.waitq == [u3] and u3.processor == 2        # nominally on min(hard)
    u4 = add_unit(s, d, 4, soft={0, 1, 2, 3})           # soft covering hard: no soft step
    assert u4.processor == 1
    assert s.cpus_free == set()


def test_hard_affinity_outside_the_pool_never_runs():
    env, s, drv = setup(2)
    d = new_dom(s, 1)
    u = add_unit(s, d, 0, hard={5})
    assert s.waitq == [u] and s.cpus_free == {0, 1}
    drv.start(u)
    drv.run(10 * MS)
    assert drv.ran[u] == 0


# -- moving units -----------------------------------------------------------------------------
def test_affinity_change_moves_a_running_unit_and_frees_its_pcpu():
    env, s, drv = setup(3)
    d = new_dom(s, 1)
    a, b = add_unit(s, d, 0), add_unit(s, d, 1)         # cpus 0, 1; cpu 2 free
    for u in (a, b):
        drv.start(u)
    drv.run(1 * MS)
    drv.set_affinity(a, hard={2})
    drv.run(drv.env.t + 1 * MS)
    assert drv.cur[2] is a and drv.cur[0] is None and s.cpus_free == {0}
    assert records(env, nl.TRC_SNULL_MIGRATE)[-1] == (1 << 16 | 0, 0 | 2 << 16)
    # to a busy pCPU: it waits, and its old pCPU is free again
    drv.set_affinity(a, hard={1})
    drv.run(drv.env.t + 1 * MS)
    assert s.waitq == [a] and drv.cur[2] is None and s.cpus_free == {0, 2}
    # a waiting unit whose affinity now allows a free pCPU takes it
    drv.set_affinity(a, hard={0, 1})
    drv.run(drv.env.t + 1 * MS)
    assert drv.cur[0] is a and s.waitq == []


def test_removing_and_adding_pcpus():
    env, s, drv = setup(2)
    d = new_dom(s, 1)
    a, b, c = add_unit(s, d, 0), add_unit(s, d, 1), add_unit(s, d, 2)
    for u in (a, b, c):
        drv.start(u)
    drv.run(1 * MS)
    s.remove_cpu(1)                                     # b runs there: it must go
    drv.run(drv.env.t + 1 * MS)
    drv.cpus = [0]
    assert drv.cur[1] is None and s.waitq == [c, b]
    assert 1 not in s.cpus_free
    s.add_cpu(2)
    drv.cpus = [0, 2]
    drv.cur[2] = None
    drv.since[2] = drv.env.t
    drv.run(drv.env.t + 1 * MS)
    assert drv.cur[2] is c and s.waitq == [b]          # FIFO: c had waited longer


def test_remove_idle_assigned_unit_on_removed_pcpu_goes_elsewhere():
    env, s, drv = setup(3)
    d = new_dom(s, 1)
    a = add_unit(s, d, 0)
    s.remove_cpu(0)                                     # a is bound to 0 but not running
    assert a.processor == 1 and s.assigned[1] is a and s.cpus_free == {2}


# -- parameters, dump, traces ----------------------------------------------------------------
def test_adjust_has_no_parameters():
    env, s, drv = setup(1)
    d = new_dom(s, 1)
    assert s.adjust(d, False, {}) == {}
    assert s.adjust(d, True, {"weight": 5}) == {}
    assert s.adjust_global(True, {}) == {}
    assert (s.name, s.sched_id) == ("null", 9)


def test_dump():
    env, s, drv = setup(2)
    d = new_dom(s, 3)
    units = [add_unit(s, d, v) for v in range(3)]
    out = s.dump()
    assert "cpus_free = \n" in out or "cpus_free = " in out
    assert "[3.0] pcpu=0" in out and "[3.2] pcpu=-1" in out
    assert out.endswith("Waitqueue: d3v2")
    s.remove_unit(units[0])
    assert "cpus_free = " in s.dump()
    assert nl.cpulist({0, 1, 2, 5, 7, 8}) == "0-2,5,7-8"


def test_trace_records_decode():
    env, s, drv = setup(2)
    d = new_dom(s, 0x1234)
    a = add_unit(s, d, 3)                               # -> cpu 0
    b = add_unit(s, d, 0x105)                           # -> cpu 1
    w = add_unit(s, d, 7)                               # waits

    def decode(words, fmt):
        out, w16 = [], []
        for word in words:
            w16 += [word & 0xFFFF, word >> 16]
        i = 0
        for f in fmt:
            if f == "u32":
                out.append(w16[i] | w16[i + 1] << 16)
                i += 2
            else:
                v = w16[i]
                out.append(v - 0x10000 if f == "s16" and v & 0x8000 else v)
                i += 1
        return out

    picked = records(env, nl.TRC_SNULL_PICKED_CPU)
    assert [decode(p, ("u16", "u16", "u32")) for p in picked] == [
        [3, 0x1234, 0], [0x105, 0x1234, 1], [7, 0x1234, 0]]
    assigns = records(env, nl.TRC_SNULL_VCPU_ASSIGN)
    assert [decode(p, ("u16", "u16", "u32")) for p in assigns] == [
        [3, 0x1234, 0], [0x105, 0x1234, 1]]
    for u in (a, b, w):
        drv.start(u)
    drv.run(1 * MS)
    sched = [decode(p, ("u16", "u16", "s16", "s16")) for p in
             records(env, nl.TRC_SNULL_SCHEDULE)]
    assert sched[0] == [0, 0, 3, 0x1234]             # tasklet 0, cpu 0, d0x1234v3
    assert [0, 1, 0x105, 0x1234] in sched
    drv.block(a)
    drv.run(drv.env.t + 1 * US)
    s.remove_unit(a)
    deassign = records(env, nl.TRC_SNULL_VCPU_DEASSIGN)
    assert [decode(p, ("u16", "u16", "u32")) for p in deassign] == [[3, 0x1234, 0]]
    assert decode(records(env, nl.TRC_SNULL_VCPU_ASSIGN)[-1], ("u16", "u16", "u32")) == [
        7, 0x1234, 0]
    # a pCPU with nothing bound traces vcpu = dom = -1
    s2env = ManualEnv()
    s2 = Null(s2env, frozenset({4}))
    s2.do_schedule(4, None, 0)
    (rec,) = records(s2env, nl.TRC_SNULL_SCHEDULE)
    assert decode(rec, ("u16", "u16", "s16", "s16")) == [0, 4, -1, -1]
    assert rec == (4 << 16, 0xFFFF_FFFF)
    # migrate: {u16 vcpu, u16 dom, u16 cpu, u16 new_cpu}
    drv.run(drv.env.t + 1 * MS)
    s.remove_cpu(1)
    drv.run(drv.env.t + 1 * MS)
    assert decode(records(env, nl.TRC_SNULL_MIGRATE)[-1], ("u16",) * 4) == [
        0x105, 0x1234, 1, 0]
    ids = {e for _, e, _ in env.records}
    assert ids <= {0x00022A01, 0x00022A02, 0x00022A03, 0x00022A04, 0x00022A05}


@pytest.mark.parametrize("n", [1, 3])
def test_deterministic(n):
    def once():
        env, s, drv = setup(n)
        d = new_dom(s, 1)
        units = [add_unit(s, d, v, soft={v % n}) for v in range(n + 2)]
        for i, u in enumerate(units):
            drv.start(u, (MS * (i + 1), 2 * MS))
        drv.run(100 * MS)
        return env.records, [drv.ran[u] for u in units]
    assert once() == once()
