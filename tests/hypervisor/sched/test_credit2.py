"""Credit2 (Xen 4.10) scheduler: shares, caps, soft/hard affinity, ratelimit, credit reset,
load balancing, parameters and trace layouts.

A small driver plays the framework: pCPUs call do_schedule when tickled or when the time
limit of their Decision runs out; units consume CPU time and, for intermittent ones, block
and wake on a schedule. Everything runs in ManualEnv's virtual time.
"""

from __future__ import annotations

import random
from collections import defaultdict

import pytest

from pyxen.hypervisor.sched import credit2 as c2
from pyxen.hypervisor.sched.core import ManualEnv, SchedDomain, SchedUnit
from pyxen.hypervisor.sched.credit2 import Credit2

US = 1_000
MS = 1_000_000
S = 1_000_000_000


class Driver:
    """The framework, in miniature.

    `work[unit]` is None for a CPU-bound unit, or (burst_ns, sleep_ns): run for burst_ns,
    block for sleep_ns, wake, and so on.
    """

    def __init__(self, sched: Credit2, env: ManualEnv):
        self.s = sched
        self.env = env
        self.cpus = sorted(sched.cpus)
        self.cur: dict[int, SchedUnit | None] = {c: None for c in self.cpus}
        self.deadline: dict[int, int | None] = {c: None for c in self.cpus}
        self.started: dict[int, int] = {c: 0 for c in self.cpus}
        self.work: dict[SchedUnit, tuple[int, int] | None] = {}
        self.burst_left: dict[SchedUnit, int] = {}
        self.wake_at: dict[SchedUnit, int] = {}
        self.run: dict[SchedUnit, int] = defaultdict(int)
        self.run_on: dict[tuple[SchedUnit, int], int] = defaultdict(int)
        self.busy: dict[int, int] = defaultdict(int)
        self.violations: list[str] = []
        self.preemptions: list[tuple[int, int, SchedUnit, int]] = []   # t, cpu, unit, ran
        self.decisions: list[tuple[int, int, SchedUnit | None, int]] = []
        self.moving: dict[SchedUnit, bool] = {}          # affinity change in progress

    # -- units ------------------------------------------------------------------------------
    def start(self, unit: SchedUnit, work: tuple[int, int] | None = None) -> None:
        self.work[unit] = work
        if work is not None:
            self.burst_left[unit] = work[0]
        unit.runnable = True
        self.s.wake(unit)

    def set_affinity(self, unit: SchedUnit, hard=None, soft=None) -> None:
        """xl vcpu-pin, as Xen's vcpu_set_affinity: sleep, switch out, pick, migrate, wake."""
        if hard is not None:
            unit.hard_affinity = frozenset(hard)
        if soft is not None:
            unit.soft_affinity = frozenset(soft)
        self.s.affinity_changed(unit)
        self.moving[unit] = unit.runnable
        if unit.runnable:
            unit.runnable = False
            self.s.sleep(unit)
        if unit not in self.cur.values():
            self._finish_move(unit)

    def _finish_move(self, unit: SchedUnit) -> None:
        wanted = self.moving.pop(unit)
        new = self.s.pick_cpu(unit)
        if new not in self.s.hard_cpus(unit):
            self.violations.append(f"pick_cpu({unit!r}) = {new} outside its hard affinity")
        self.s.migrate(unit, new)
        if wanted:
            unit.runnable = True
            self.s.wake(unit)

    def stop(self, unit: SchedUnit) -> None:
        """The unit blocks for good."""
        self.work[unit] = None
        self.wake_at.pop(unit, None)
        if unit.runnable:
            unit.runnable = False
            self.s.sleep(unit)

    # -- the pCPU side ----------------------------------------------------------------------
    def resched(self, cpu: int) -> None:
        now = self.env.t
        prev = self.cur[cpu]
        d = self.s.do_schedule(cpu, prev, now)
        u = d.unit
        self.decisions.append((now, cpu, u, d.time_ns))
        if u is not None:
            if cpu not in self.s.hard_cpus(u):
                self.violations.append(f"t={now} {u!r} on cpu{cpu} outside {set(u.hard_affinity)}")
            for other, x in self.cur.items():
                if other != cpu and x is u:
                    self.violations.append(f"t={now} {u!r} on cpu{cpu} and cpu{other}")
            if not u.runnable:
                self.violations.append(f"t={now} {u!r} picked while not runnable")
        if u is not prev:
            if prev is not None:
                prev.running = False
                if prev.runnable:
                    self.preemptions.append((now, cpu, prev, now - self.started[cpu]))
            self.cur[cpu] = u
            self.started[cpu] = now
            if u is not None:
                u.running = True
            if prev is not None:
                self.s.context_saved(prev)
                if prev in self.moving:
                    self._finish_move(prev)
        self.deadline[cpu] = now + d.time_ns if d.time_ns >= 0 else None

    def settle(self) -> None:
        for _ in range(1000):
            if not self.env.tickled:
                return
            pending = list(dict.fromkeys(self.env.tickled))
            self.env.tickled.clear()
            for cpu in pending:
                if cpu in self.cur:
                    self.resched(cpu)
        raise AssertionError("tickle storm: the pCPUs never settle")

    def _next_timer(self) -> int | None:
        live = [d for d, _, h in self.env._timers if not h.cancelled]
        return min(live) if live else None

    def run_until(self, t_end: int) -> None:
        while True:
            self.settle()
            now = self.env.t
            if now >= t_end:
                return
            nxt = t_end
            for cpu in self.cpus:
                if self.deadline[cpu] is not None:
                    nxt = min(nxt, self.deadline[cpu])
            t = self._next_timer()
            if t is not None:
                nxt = min(nxt, t)
            for cpu in self.cpus:
                u = self.cur[cpu]
                if u is not None and self.work.get(u) is not None:
                    nxt = min(nxt, now + self.burst_left[u])
            for t in self.wake_at.values():
                nxt = min(nxt, t)
            nxt = max(nxt, now)
            dt = nxt - now
            for cpu in self.cpus:
                u = self.cur[cpu]
                if u is not None:
                    self.run[u] += dt
                    self.run_on[(u, cpu)] += dt
                    self.busy[cpu] += dt
                    if self.work.get(u) is not None:
                        self.burst_left[u] -= dt
            self.env.advance(nxt)
            for cpu in self.cpus:                         # bursts that ended: block
                u = self.cur[cpu]
                if u is not None and self.work.get(u) is not None and self.burst_left[u] <= 0:
                    if u.runnable:
                        u.runnable = False
                        self.s.sleep(u)
                        self.wake_at[u] = nxt + self.work[u][1]
            for u in [u for u, t in self.wake_at.items() if t <= nxt and u not in self.moving]:
                del self.wake_at[u]
                self.burst_left[u] = self.work[u][0]
                u.runnable = True
                self.s.wake(u)
            for cpu in self.cpus:
                if self.deadline[cpu] is not None and self.deadline[cpu] <= nxt:
                    self.resched(cpu)

    # -- measurements ---------------------------------------------------------------------------
    def snapshot(self) -> dict[SchedUnit, int]:
        return dict(self.run)


def make(cpus, params=None, topology=None) -> tuple[Credit2, ManualEnv, Driver]:
    env = ManualEnv(params=params, topology=topology)
    s = Credit2(env, frozenset(cpus))
    return s, env, Driver(s, env)


def add_domain(s: Credit2, domid: int, nr: int = 1, weight: int | None = None,
               hard=frozenset(), soft=frozenset()) -> tuple[SchedDomain, list[SchedUnit]]:
    d = SchedDomain(domid)
    s.insert_domain(d)
    units = []
    for v in range(nr):
        u = SchedUnit(d, v, hard_affinity=frozenset(hard), soft_affinity=frozenset(soft))
        d.units.append(u)
        s.insert_unit(u)
        units.append(u)
    if weight is not None:
        s.adjust(d, True, {"weight": weight, "cap": 0})
    return d, units


def records(env: ManualEnv, event: int) -> list[tuple[int, ...]]:
    return [w for _, e, w in env.records if e == event]


# -- fair share by weight ------------------------------------------------------------------------
def test_weights_256_512_share_one_pcpu_1_to_2():
    s, env, drv = make([0])
    _, (a,) = add_domain(s, 1, weight=256)
    _, (b,) = add_domain(s, 2, weight=512)
    drv.start(a)
    drv.start(b)
    drv.run_until(10 * S)
    assert not drv.violations
    assert drv.run[a] + drv.run[b] == 10 * S
    ratio = drv.run[b] / drv.run[a]
    assert 2 * 0.95 <= ratio <= 2 * 1.05, ratio


def test_equal_weights_share_equally_and_weight_change_applies_at_run_time():
    s, env, drv = make([0])
    da, (a,) = add_domain(s, 1)
    _, (b,) = add_domain(s, 2)
    drv.start(a)
    drv.start(b)
    drv.run_until(2 * S)
    assert abs(drv.run[a] - drv.run[b]) <= 0.05 * S
    s.adjust(da, True, {"weight": 768, "cap": 0})         # a: 3x b
    before = drv.snapshot()
    drv.run_until(6 * S)
    ra, rb = drv.run[a] - before[a], drv.run[b] - before[b]
    assert 3 * 0.95 <= ra / rb <= 3 * 1.05, ra / rb


def test_weight_burns_credit_with_residual():
    s, env, drv = make([0])
    _, (a,) = add_domain(s, 1, weight=300)
    _, (b,) = add_domain(s, 2, weight=700)
    svc = a.priv
    rqd = s._c2rqd(0)
    assert rqd.max_weight == 700
    svc.start_time = 0
    svc.credit = c2.CREDIT_INIT
    s.curr[0] = svc
    for t in range(1, 1001):                       # 1000 slices of 1 ns: nothing is lost
        s._burn_credits(rqd, svc, t)
    assert c2.CREDIT_INIT - svc.credit == 1000 * 700 // 300
    assert svc.residual == 1000 * 700 % 300


# -- caps ---------------------------------------------------------------------------------------
def test_cap_50_holds_one_unit_to_half_a_pcpu_and_parks_it():
    s, env, drv = make([0, 1, 2])
    d, (u,) = add_domain(s, 1)
    assert s.adjust(d, True, {"weight": 0, "cap": 50}) == {"weight": 256, "cap": 50}
    drv.start(u)
    parked_seen = False
    for step in range(1, 2001):                       # 2 s in 1 ms steps
        drv.run_until(step * MS)
        parked_seen |= s.is_parked(u)
    assert not drv.violations
    share = drv.run[u] / (2 * S)
    assert 0.48 <= share <= 0.52, share
    assert parked_seen
    # the trace shows the budget running out (CREDIT_BURN's budget word <= 0)
    dv = (u.vcpu_id & 0xFFFF) | (1 << 16)
    budgets = [w[2] for w in records(env, c2.TRC_CSCHED2_CREDIT_BURN) if w[0] == dv]
    assert budgets and all(b != 0x8000_0000 for b in budgets)     # capped: not INT_MIN
    assert any(b == 0 or b >= 0x8000_0000 for b in budgets)       # <= 0 as s32


def test_cap_removed_at_run_time_lifts_it_at_once():
    s, env, drv = make([0, 1])
    d, (u,) = add_domain(s, 1)
    s.adjust(d, True, {"weight": 0, "cap": 25})
    drv.start(u)
    drv.run_until(500 * MS)
    assert 0.23 <= drv.run[u] / (500 * MS) <= 0.27
    t = 500 * MS
    while not s.is_parked(u):                         # wait until it is held back
        t += 100 * US
        drv.run_until(t)
    assert u not in drv.cur.values()
    s.adjust(d, True, {"weight": 0, "cap": 0})        # cap 0 removes the cap
    assert s.adjust(d, False, {}) == {"weight": 256, "cap": 0}
    drv.settle()
    assert u in drv.cur.values()                      # running again straight away
    assert not s.is_parked(u)
    before = drv.run[u]
    drv.run_until(t + 1 * S)
    assert drv.run[u] - before >= 0.99 * S
    assert not drv.violations


def test_cap_shared_by_the_units_of_a_domain():
    s, env, drv = make([0, 1, 2, 3])
    d, units = add_domain(s, 1, nr=4)
    s.adjust(d, True, {"weight": 0, "cap": 150})      # 1.5 pCPUs for 4 busy vCPUs
    assert all(u.priv.budget_quota == max(15 * MS // 4, c2.MIN_TIMER) for u in units)
    for u in units:
        drv.start(u)
    drv.run_until(2 * S)
    total = sum(drv.run[u] for u in units)
    assert 1.45 <= total / (2 * S) <= 1.55, total / (2 * S)
    assert all(drv.run[u] > 0.2 * S for u in units)
    assert not drv.violations


def test_cap_enabled_while_running():
    s, env, drv = make([0, 1])
    d, (u,) = add_domain(s, 1)
    drv.start(u)
    drv.run_until(300 * MS)
    assert drv.run[u] == 300 * MS
    s.adjust(d, True, {"cap": 30})
    drv.run_until(2300 * MS)
    share = (drv.run[u] - 300 * MS) / (2 * S)
    assert 0.28 <= share <= 0.32, share


# -- soft affinity --------------------------------------------------------------------------------
def test_soft_affinity_preferred_when_its_pcpus_are_free():
    s, env, drv = make([0, 1, 2, 3])
    _, (a, b) = add_domain(s, 1, nr=2, hard={0, 1})   # keep 0 and 1 busy
    _, (x,) = add_domain(s, 2, hard={0})              # starts on cpu 0
    drv.start(a)
    drv.start(b)
    drv.start(x, (3 * MS, 1 * MS))                    # intermittent: wakes often
    drv.run_until(200 * MS)
    assert drv.run_on[(x, 0)] > 0
    drv.set_affinity(x, hard=(), soft={2, 3})
    before = {cpu: drv.run_on[(x, cpu)] for cpu in range(4)}
    drv.run_until(3 * S)
    ran = {cpu: drv.run_on[(x, cpu)] - before[cpu] for cpu in range(4)}
    inside = ran[2] + ran[3]
    assert inside >= 0.95 * sum(ran.values()), ran
    assert sum(ran.values()) >= 0.7 * 2.8 * S          # burst 3 ms of every 4 ms
    assert not drv.violations


def test_soft_affinity_busy_still_runs_elsewhere():
    s, env, drv = make([0, 1, 2, 3])
    _, (p2,) = add_domain(s, 1, hard={2})
    _, (p3,) = add_domain(s, 2, hard={3})
    _, (x,) = add_domain(s, 3, soft={2, 3})
    for u in (p2, p3, x):
        drv.start(u)
    drv.run_until(2 * S)
    assert drv.run[x] >= 0.9 * 2 * S                  # never starved
    assert drv.run_on[(x, 0)] + drv.run_on[(x, 1)] >= 0.8 * 2 * S
    assert drv.run[p2] >= 0.8 * 2 * S and drv.run[p3] >= 0.8 * 2 * S
    assert not drv.violations


def test_soft_affinity_pcpus_freed_are_taken_back():
    s, env, drv = make([0, 1, 2, 3])
    _, (p2,) = add_domain(s, 1, hard={2})
    _, (p3,) = add_domain(s, 2, hard={3})
    _, (x,) = add_domain(s, 3, soft={2, 3})           # CPU-bound
    _, (y,) = add_domain(s, 4, soft={2, 3})           # intermittent
    for u in (p2, p3, x):
        drv.start(u)
    drv.start(y, (2 * MS, 1 * MS))
    drv.run_until(1 * S)                              # soft pCPUs busy: run elsewhere
    assert drv.run[x] >= 0.9 * S
    assert drv.run_on[(x, 0)] + drv.run_on[(x, 1)] >= 0.8 * S
    assert drv.run_on[(y, 0)] + drv.run_on[(y, 1)] >= 0.5 * S
    drv.stop(p2)
    drv.stop(p3)                                      # now they are free
    before = dict(drv.run_on)
    drv.run_until(3 * S)
    for u in (x, y):
        ran = {cpu: drv.run_on[(u, cpu)] - before.get((u, cpu), 0) for cpu in range(4)}
        assert ran[2] + ran[3] >= 0.95 * sum(ran.values()), (u, ran)
    assert not drv.violations


def test_pick_cpu_prefers_the_soft_runqueue():
    topo = lambda cpu: (cpu, cpu // 2, cpu // 2)      # noqa: E731 - sockets {0,1} {2,3}
    s, env, drv = make([0, 1, 2, 3], topology=topo)
    assert [s.runqueue_of(c) for c in range(4)] == [0, 0, 1, 1]
    _, (x,) = add_domain(s, 1, soft={3})
    assert s.runqueue_of(x.processor) == 1 and x.processor in (2, 3)
    _, (y,) = add_domain(s, 2, soft={0, 1})
    assert y.processor in (0, 1)


# -- hard affinity ---------------------------------------------------------------------------------
@pytest.mark.parametrize("seed,arrangement", [(1, "socket"), (2, "cpu"), (3, "all"),
                                              (4, "core")])
def test_hard_affinity_never_violated_randomised(seed, arrangement):
    rng = random.Random(seed)
    topo = lambda cpu: (cpu // 2, cpu // 4, 0)        # noqa: E731 - 2 threads/core
    ncpu = 8
    s, env, drv = make(range(ncpu), {"credit2_runqueue": arrangement}, topo)
    units = []
    for domid in range(1, 6):
        nr = rng.randint(1, 3)
        d, us = add_domain(s, domid, nr=nr, weight=rng.choice([64, 256, 512, 1000]))
        for u in us:
            drv.set_affinity(u, hard=rng.sample(range(ncpu), rng.randint(1, 4)),
                             soft=(rng.sample(range(ncpu), rng.randint(1, 3))
                                   if rng.random() < 0.5 else ()))
            units.append(u)
        if rng.random() < 0.4:
            s.adjust(d, True, {"weight": 0, "cap": rng.randint(10, 100 * nr)})
    for u in units:
        work = None if rng.random() < 0.4 else (rng.randint(100, 5000) * US,
                                                 rng.randint(100, 5000) * US)
        drv.start(u, work)
    t = 0
    for _ in range(6):
        t += 150 * MS
        drv.run_until(t)
        for u in rng.sample(units, 3):                # change affinities under load
            drv.set_affinity(u, hard=rng.sample(range(ncpu), rng.randint(1, 5)),
                             soft=rng.sample(range(ncpu), 2) if rng.random() < 0.5 else ())
    drv.run_until(t + 300 * MS)
    assert not drv.violations, drv.violations[:5]
    before = drv.snapshot()
    drv.run_until(t + 800 * MS)
    assert not drv.violations, drv.violations[:5]
    for u in units:                                   # nobody starves
        assert drv.run[u] > before.get(u, 0), u
    assert "Runqueue" in s.dump()


def test_pinned_units_stay_on_their_pcpus():
    s, env, drv = make([0, 1, 2, 3], {"credit2_runqueue": "all"})
    _, us = add_domain(s, 1, nr=4, hard={1})
    _, (free,) = add_domain(s, 2)
    for u in us + [free]:
        drv.start(u)
    drv.run_until(1 * S)
    assert not drv.violations
    assert sum(drv.run_on[(u, 1)] for u in us) == sum(drv.run[u] for u in us) == 1 * S
    assert all(drv.run[u] > 0.2 * S for u in us)


# -- ratelimit ------------------------------------------------------------------------------------
def _ratelimit_run(params):
    s, env, drv = make([0], params)
    _, (a,) = add_domain(s, 1)
    _, (b,) = add_domain(s, 2, weight=1024)
    drv.start(a)
    drv.start(b, (200 * US, 300 * US))                # wakes every 0.5 ms, lots of credit
    drv.run_until(1 * S)
    return s, env, drv, a


def test_ratelimit_no_preemption_before_it():
    s, env, drv, a = _ratelimit_run({})
    assert s.ratelimit_us == 1000
    runs = [ran for _, _, u, ran in drv.preemptions if u is a]
    assert runs and min(runs) >= 1000 * US


def test_ratelimit_keeps_current_when_asked_early():
    s, env, drv = make([0])
    _, (a,) = add_domain(s, 1)
    _, (b,) = add_domain(s, 2)
    drv.start(a)
    drv.start(b)
    drv.settle()
    first = drv.cur[0]
    first.priv.credit = 1 * MS                       # far less credit than the waiting one
    env.advance(100 * US)
    env.records.clear()
    drv.resched(0)                                   # e.g. an unrelated tickle
    assert drv.cur[0] is first
    dv = first.vcpu_id | (first.domid << 16)
    assert records(env, c2.TRC_CSCHED2_RATELIMIT) == [(dv, 100 * US)]
    assert drv.decisions[-1][3] == 900 * US          # the rest of the ratelimit


def test_ratelimit_disabled_allows_early_preemption():
    s, env, drv, a = _ratelimit_run({"sched_ratelimit_us": 0})
    assert s.ratelimit_us == 0
    runs = [ran for _, _, u, ran in drv.preemptions if u is a]
    assert runs and min(runs) < 1000 * US
    assert not records(env, c2.TRC_CSCHED2_RATELIMIT)


def test_ratelimit_adjust_global():
    s, env, drv = make([0])
    assert s.adjust_global(False, {}) == {"ratelimit_us": 1000}
    assert s.adjust_global(True, {"ratelimit_us": 5000}) == {"ratelimit_us": 5000}
    assert s.adjust_global(True, {"ratelimit_us": 0}) == {"ratelimit_us": 0}
    for bad in (1, 99, 500_001):
        with pytest.raises(ValueError):
            s.adjust_global(True, {"ratelimit_us": bad})
    assert s.ratelimit_us == 0


def test_yield_gives_way_despite_ratelimit():
    s, env, drv = make([0])
    _, (a,) = add_domain(s, 1)
    _, (b,) = add_domain(s, 2)
    drv.start(a)
    drv.start(b)
    drv.settle()
    first = drv.cur[0]
    other = b if first is a else a
    env.advance(100 * US)
    s.yield_(first)
    drv.resched(0)
    assert drv.cur[0] is other


# -- credit reset ---------------------------------------------------------------------------------
def test_credit_reset_adds_init_and_clips_at_carryover():
    s, env, drv = make([0])
    _, (a,) = add_domain(s, 1)
    _, (b,) = add_domain(s, 2)
    drv.start(a)
    drv.start(b)
    drv.run_until(100 * MS)
    resets = records(env, c2.TRC_CSCHED2_CREDIT_RESET)
    assert resets
    for _dv, start, end, m in resets:
        start, end = _s32(start), _s32(end)
        assert m == 1
        assert end == min(start + c2.CREDIT_INIT, c2.CREDIT_INIT + c2.CARRYOVER_MAX)
    # every epoch, both got about the same time
    assert abs(drv.run[a] - drv.run[b]) <= 2 * MS


def test_credit_reset_multiplier_for_deep_negative_credit():
    s, env, drv = make([0], {"sched_ratelimit_us": 0})
    _, (a,) = add_domain(s, 1)
    _, (b,) = add_domain(s, 2)
    _, (c,) = add_domain(s, 3)                        # asleep, plenty of credit
    drv.start(a)
    drv.start(b)
    drv.settle()
    running = drv.cur[0]
    waiting = b if running is a else a
    running.priv.credit = -30 * MS
    waiting.priv.credit = -25 * MS
    c.priv.credit = 8 * MS
    env.records.clear()
    drv.resched(0)
    assert drv.cur[0] is waiting
    resets = {w[0]: w for w in records(env, c2.TRC_CSCHED2_CREDIT_RESET)}
    assert len(resets) == 3
    assert all(w[3] == 3 for w in resets.values())    # m = 1 + 25 ms // 10 ms
    dvc = c.vcpu_id | (3 << 16)
    assert _s32(resets[dvc][2]) == c2.CREDIT_INIT + c2.CARRYOVER_MAX   # clipped
    assert c.priv.credit == c2.CREDIT_INIT + c2.CARRYOVER_MAX
    assert waiting.priv.credit == -25 * MS + 30 * MS
    assert running.priv.credit == -30 * MS + 30 * MS


def test_no_reset_while_a_unit_was_skipped():
    s, env, drv = make([0, 1], {"credit2_runqueue": "all"})
    _, (a,) = add_domain(s, 1, hard={1})
    _, (b,) = add_domain(s, 2, hard={0})
    b.runnable = True
    a.runnable = True
    a.priv.credit = 5 * MS
    b.priv.credit = -1 * MS
    rqd = s._c2rqd(0)
    s._update_load(rqd, a.priv, 1, 0)
    s._runq_insert(a.priv)
    s._update_load(rqd, b.priv, 1, 0)
    s._runq_insert(b.priv)
    env.records.clear()
    d = s.do_schedule(0, None, 0)                      # a is skipped (hard affinity)
    assert d.unit is b
    assert not records(env, c2.TRC_CSCHED2_CREDIT_RESET)
    cand = records(env, c2.TRC_CSCHED2_RUNQ_CANDIDATE)[-1]
    assert cand[2] == 1                                # one skipped


# -- load balancing --------------------------------------------------------------------------------
def test_load_balancing_moves_work_between_runqueues():
    s, env, drv = make([0, 1], {"credit2_runqueue": "cpu"})
    assert s.runqueue_of(0) != s.runqueue_of(1)
    units = []
    for domid in range(1, 5):
        _, (u,) = add_domain(s, domid, hard={0})
        units.append(u)
    assert all(u.processor == 0 for u in units)
    for u in units:
        u.hard_affinity = frozenset()                # widened behind the scheduler's back:
        drv.start(u)                                 # only balance_load can move them
    drv.run_until(1 * S)
    assert records(env, c2.TRC_CSCHED2_LOAD_BALANCE)
    assert records(env, c2.TRC_CSCHED2_MIGRATE)
    busy1 = drv.busy[1]
    before = drv.snapshot()
    drv.run_until(3 * S)
    assert drv.busy[1] - busy1 >= 0.95 * 2 * S
    for u in units:
        assert drv.run[u] - before[u] >= 0.35 * 2 * S, u
    per_rq = defaultdict(int)
    for u in units:
        per_rq[s.runqueue_of(u.processor)] += 1
    assert sorted(per_rq.values()) == [2, 2]
    assert not drv.violations


def test_load_balancing_respects_hard_affinity():
    s, env, drv = make([0, 1], {"credit2_runqueue": "cpu"})
    units = [add_domain(s, domid, hard={0})[1][0] for domid in range(1, 4)]
    for u in units:
        drv.start(u)
    drv.run_until(1 * S)
    assert drv.busy[1] == 0
    assert all(u.processor == 0 for u in units)
    assert not drv.violations


def test_runqueue_arrangements():
    topo = lambda cpu: (cpu // 2, cpu // 4, cpu // 8)  # noqa: E731
    expect = {"cpu": 16, "core": 8, "socket": 4, "node": 2, "all": 1}
    for arr, n in expect.items():
        s, _, _ = make(range(16), {"credit2_runqueue": arr}, topo)
        assert len({s.runqueue_of(c) for c in range(16)}) == n, arr
    s, _, _ = make(range(4))
    assert len({s.runqueue_of(c) for c in range(4)}) == 1   # default socket, one socket


# -- parameters ------------------------------------------------------------------------------------
def test_adjust_semantics_and_invalid_parameters():
    s, env, drv = make([0, 1])
    d, _ = add_domain(s, 1, nr=2)
    assert s.adjust(d, False, {}) == {"weight": 256, "cap": 0}
    assert s.adjust(d, True, {"weight": 512, "cap": 0}) == {"weight": 512, "cap": 0}
    assert s.adjust(d, True, {"weight": 0, "cap": 150}) == {"weight": 512, "cap": 150}
    assert s.adjust(d, True, {"weight": 0, "cap": 200}) == {"weight": 512, "cap": 200}
    with pytest.raises(ValueError):
        s.adjust(d, True, {"weight": 0, "cap": 201})   # > 100 x 2 vCPUs
    assert s.adjust(d, True, {"weight": 100, "cap": 0}) == {"weight": 100, "cap": 0}
    for bad in ({"weight": 65536}, {"weight": -1}, {"cap": -5}, {"cap": 70000}):
        with pytest.raises(ValueError):
            s.adjust(d, True, {"weight": 0, "cap": 0} | bad)
    assert s.adjust(d, True, {"weight": 65535, "cap": 0})["weight"] == 65535
    assert s.adjust(d, True, {"weight": 1, "cap": 0})["weight"] == 1
    with pytest.raises(ValueError):
        make([0], {"credit2_runqueue": "bogus"})


def test_boot_parameters():
    s, _, _ = make([0], {"sched_ratelimit_us": 50})        # out of range: default
    assert s.ratelimit_us == 1000
    s, _, _ = make([0], {"sched_credit2_migrate_resist": 100, "credit2_cap_period_ms": 20})
    assert s.migrate_resist == 100 * US and s.cap_period == 20 * MS
    s, _, _ = make([0], {"credit2_cap_period_ms": 0})
    assert s.cap_period == 10 * MS


# -- traces ---------------------------------------------------------------------------------
def test_trace_ids_and_payload_layouts():
    assert c2.TRC_CSCHED2_TICK == 0x00022201
    assert c2.TRC_CSCHED2_RUNQ_POS == 0x00022202
    assert c2.TRC_CSCHED2_CREDIT_BURN == 0x00022203
    assert c2.TRC_CSCHED2_CREDIT_ADD == 0x00022204
    assert c2.TRC_CSCHED2_TICKLE_CHECK == 0x00022205
    assert c2.TRC_CSCHED2_TICKLE == 0x00022206
    assert c2.TRC_CSCHED2_CREDIT_RESET == 0x00022207
    assert c2.TRC_CSCHED2_UPDATE_LOAD == 0x00022209
    assert c2.TRC_CSCHED2_RUNQ_ASSIGN == 0x0002220A
    assert c2.TRC_CSCHED2_MIGRATE == 0x0002220F
    assert c2.TRC_CSCHED2_LOAD_BALANCE == 0x00022211
    assert c2.TRC_CSCHED2_PICKED_CPU == 0x00022213
    assert c2.TRC_CSCHED2_RUNQ_CANDIDATE == 0x00022214
    assert c2.TRC_CSCHED2_SCHEDULE == 0x00022215
    assert c2.TRC_CSCHED2_RATELIMIT == 0x00022216
    assert c2.TRC_CSCHED2_RUNQ_CAND_CHECK == 0x00022217

    s, env, drv = make([0, 1])
    _, (u0, u1) = add_domain(s, 7, nr=2)
    dv1 = 1 | (7 << 16)                                # {vcpu:16, dom:16}: vcpu low
    assign = [w for w in records(env, c2.TRC_CSCHED2_RUNQ_ASSIGN) if w[0] == dv1]
    assert assign == [(dv1, 0)]
    picked = [w for w in records(env, c2.TRC_CSCHED2_PICKED_CPU) if w[2] == dv1]
    assert len(picked) == 1 and len(picked[0]) == 4
    assert picked[0][3] == (0 | (u1.processor << 16))  # {rq_id:16, new_cpu:16}
    env.records.clear()
    drv.start(u1)
    pos = records(env, c2.TRC_CSCHED2_RUNQ_POS)
    assert pos == [(dv1, 0)]
    tickle = records(env, c2.TRC_CSCHED2_TICKLE)
    assert tickle == [(u1.processor,)]
    drv.settle()
    sched = records(env, c2.TRC_CSCHED2_SCHEDULE)
    cpu = u1.processor
    # {cpu:16, rq_id:16}, {tasklet:8, idle:8, smt_idle:8, tickled:8}: the tickled bit is
    # cleared before the record, so this idle core counts as fully idle again
    assert sched[0] == (cpu | (0 << 16), (1 << 8) | (1 << 16) | (1 << 24))
    cand = records(env, c2.TRC_CSCHED2_RUNQ_CANDIDATE)
    assert cand[-1][0] == dv1 and cand[-1][2] == 0 and _s32(cand[-1][3]) == c2.CREDIT_INIT
    load = records(env, c2.TRC_CSCHED2_UPDATE_RUNQ_LOAD)
    assert load and all(len(w) == 5 and (w[4] >> 24) == 18 for w in load)
    drv.run_until(15 * MS)
    burn = [w for w in records(env, c2.TRC_CSCHED2_CREDIT_BURN) if w[0] == dv1]
    assert burn and burn[-1][2] == 0x8000_0000        # uncapped: INT_MIN
    assert all(len(w) == 4 for w in burn)
    assert not records(env, c2.TRC_CSCHED2_CREDIT_ADD)   # 4.10 never emits it


def test_dump_is_readable():
    s, env, drv = make([0, 1])
    d, (u,) = add_domain(s, 3)
    s.adjust(d, True, {"weight": 0, "cap": 40})
    drv.start(u)
    drv.run_until(20 * MS)
    text = s.dump()
    assert "Runqueue 0:" in text and "max_weight" in text
    assert "Domain: 3 w 256 c 40 v 1" in text
    assert "[3.0]" in text


def test_remove_unit_and_domain():
    s, env, drv = make([0])
    d, (u,) = add_domain(s, 1)
    _, (v,) = add_domain(s, 2)
    s.adjust(d, True, {"cap": 50})
    drv.start(u)
    drv.start(v)
    drv.run_until(50 * MS)
    u.runnable = False
    s.sleep(u)
    drv.settle()
    s.remove_unit(u)
    s.remove_domain(d)
    drv.run_until(100 * MS)
    assert u not in drv.cur.values()
    assert s._c2rqd(0).svc == [v.priv]
    assert not drv.violations


def _s32(w: int) -> int:
    return w - (1 << 32) if w & 0x8000_0000 else w


# -- more corners ------------------------------------------------------------------------------
def test_load_average_arithmetic():
    s, env, drv = make([0])
    rqd = s._c2rqd(0)
    P, W = s.load_precision_shift, s.load_window_shift
    assert (P, W) == (18, 20)
    rqd.load, rqd.avgload, rqd.b_avgload, rqd.load_last_update = 2, 0, 0, 0
    s._update_runq_load(rqd, 0, (1 << 19) << 10)       # half a window at load 2
    assert rqd.avgload == 1 << 18                      # = 1.0 in Q18
    s._update_runq_load(rqd, +1, ((1 << 19) + (1 << 18)) << 10)
    assert rqd.avgload == (1 << 18) + (((1 << 18) * (2 << 18)) >> 20) - (((1 << 18) << 18) >> 20)
    assert rqd.load == 3
    s._update_runq_load(rqd, 0, 10 * S)                # more than a window later: reset
    assert rqd.avgload == rqd.b_avgload == 3 << 18


def test_replenishment_waits_out_a_big_overrun():
    s, env, drv = make([0])
    d, (u,) = add_domain(s, 1)
    s.adjust(d, True, {"cap": 50})                     # 5 ms every 10 ms
    drv.start(u)
    t = 0
    while not s.is_parked(u):
        t += 100 * US
        drv.run_until(t)
    sdom = d.priv
    sdom.budget = -7 * MS                              # as if it had overrun a lot
    drv.run_until(sdom.next_repl)                      # -7 + 5 <= 0: still parked
    assert s.is_parked(u) and sdom.budget == -2 * MS
    drv.run_until(sdom.next_repl)                      # -2 + 5 > 0: back
    assert not s.is_parked(u)
    assert u in drv.cur.values()


def test_smt_idle_and_power_savings():
    topo = lambda cpu: (cpu // 2, 0, 0)                # noqa: E731 - cores {0,1} {2,3}
    for power_savings, expect in ((False, {2, 3}), (True, {1})):
        s, env, drv = make([0, 1, 2, 3], {"sched_smt_power_savings": power_savings}, topo)
        _, (a,) = add_domain(s, 1, hard={0})
        _, (b,) = add_domain(s, 2)
        drv.start(a)
        drv.settle()
        assert drv.cur[0] is a
        assert s._c2rqd(0).smt_idle == {2, 3}
        b.processor = 0
        drv.start(b)
        drv.settle()
        assert b.processor in expect, (power_savings, b.processor)


def test_wake_while_being_switched_out_is_delayed():
    s, env, drv = make([0])
    _, (a,) = add_domain(s, 1)
    a.runnable = True
    s.wake(a)
    d = s.do_schedule(0, None, 0)
    assert d.unit is a
    a.runnable = False
    s.sleep(a)                                        # blocks: its pCPU is tickled
    d = s.do_schedule(0, a, 10 * US)
    assert d.unit is None
    a.runnable = True
    s.wake(a)                                         # before context_saved: delayed
    assert not a.priv.on_runq and a.priv.delayed_runq_add
    s.context_saved(a)
    assert a.priv.on_runq
    assert s.do_schedule(0, None, 20 * US).unit is a


def test_pool_cpus_come_and_go():
    s, env, drv = make([0, 1, 2], {"credit2_runqueue": "cpu"})
    assert [s.runqueue_of(c) for c in (0, 1, 2)] == [0, 1, 2]
    s.remove_cpu(1)
    assert s.rqd[1].id == -1 and 1 not in s.cpus
    s.add_cpu(5)                                      # first free slot is reused
    assert s.runqueue_of(5) == 1
    _, (u,) = add_domain(s, 1, hard={5})
    assert u.processor == 5
    drv.cpus = sorted(s.cpus)
    drv.cur = {c: None for c in drv.cpus}
    drv.deadline = {c: None for c in drv.cpus}
    drv.started = {c: 0 for c in drv.cpus}
    drv.start(u)
    drv.run_until(50 * MS)
    assert drv.run_on[(u, 5)] == 50 * MS


def test_a_pick_the_framework_did_not_run_is_not_lost():
    s, env, drv = make([0])
    _, (a,) = add_domain(s, 1)
    a.runnable = True
    s.wake(a)
    assert s.do_schedule(0, None, 0).unit is a
    # the framework ran idle instead (e.g. it saw the pick as stale) and asks again
    assert s.do_schedule(0, None, 10 * US).unit is a
    assert s._c2rqd(0).load == 1
