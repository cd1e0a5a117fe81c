"""Credit2, the Xen 4.10 credit2 scheduler (sched_id 6), with 4.10's soft affinity and caps.

Written from the facts in the project's reference sheet (xen-abi.md, section G.2);
behaviour, constants, trace ids and payload layouts follow Xen 4.10.

How it works, in short:

* pCPUs are grouped into runqueues (`credit2_runqueue` = cpu|core|socket|node|all,
  default socket). Each runqueue keeps its runnable-but-not-running units in a list
  ordered by credit (highest first; a new entry goes after those with equal credit).
* Credits are nanoseconds. Running for t ns costs t * max_weight / weight credits
  (max_weight: the largest weight on the runqueue), with the remainder of the
  division carried over in `residual`.
* An epoch ends when the unit chosen to run has no credit left (and was the first
  eligible one): everyone on the runqueue gets CREDIT_INIT (times a multiplier if the
  chosen one is deeply negative), clipped at CREDIT_INIT + CARRYOVER_MAX; then the
  runqueue loads are balanced.
* Waking units are placed by `runq_tickle` (idle pCPUs first, soft affinity before
  hard, else preempt the best-scoring busy pCPU); units move between runqueues through
  `pick_cpu` (least loaded runqueue, preferring those that meet the soft affinity) and
  `balance_load` (push, pull or swap).
* Caps: a capped domain has a budget pool, refilled every `credit2_cap_period_ms`.
  A capped unit must grab a quota from the pool before it runs; when there is none it
  is parked (taken off the runqueue) until budget comes back.

Contract with the framework (as in Xen's schedule.c): after `do_schedule` switched a pCPU
from unit A to something else, the framework calls `context_saved(A)`; only then is A
queued again. An affinity change is the framework's sleep / (switch out) / pick_cpu /
migrate / wake sequence. When load balancing wants a *running* unit elsewhere, credit2
asks it off its pCPU (Xen's _VPF_migrating) and re-places it itself in `context_saved`
(pick_cpu, migrate, wake), which is what Xen's framework does for that flag.

Everything is integer arithmetic in ns and deterministic: masks are sets of pCPU
numbers always walked in ascending order, lists keep insertion order.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Any

from .core import NO_TIMER, Decision, SchedDomain, SchedEnv, Scheduler, SchedUnit

# -- constants (ns) ------------------------------------------------------------------------
US = 1_000
MS = 1_000_000

CREDIT_INIT = 10 * MS
MIN_TIMER = 500 * US
MAX_TIMER = CREDIT_INIT
CARRYOVER_MAX = MIN_TIMER
CREDIT_RESET = 0
MIGRATE_COMPENSATION = 50 * US
RATELIMIT_TICKLE_TOLERANCE = 50 * US
DEFAULT_WEIGHT = 256
IDLE_CREDIT = -(1 << 30)
STIME_MAX = (1 << 63) - 1          # "no budget limit": the unit is not capped

DEFAULT_RATELIMIT_US = 1000
RATELIMIT_MIN_US = 100
RATELIMIT_MAX_US = 500_000
DEFAULT_MIGRATE_RESIST_US = 500
DEFAULT_CAP_PERIOD_MS = 10

# load tracking
LOADAVG_GRANULARITY_SHIFT = 10
LOADAVG_WINDOW_SHIFT = 30
LOADAVG_PRECISION_SHIFT = 18
LOADAVG_PRECISION_SHIFT_MIN = 4
MAX_LOAD = STIME_MAX

RUNQUEUE_ARRANGEMENTS = ("cpu", "core", "socket", "node", "all")

DOMID_IDLE = 0x7FFF

# -- trace event ids: TRC_SCHED_CLASS_EVT(CSCHED2, n) = 0x00022000 | (1 << 9) | n ----------
_TRC_CSCHED2 = 0x00022000 | (1 << 9)
TRC_CSCHED2_TICK = _TRC_CSCHED2 | 1
TRC_CSCHED2_RUNQ_POS = _TRC_CSCHED2 | 2
TRC_CSCHED2_CREDIT_BURN = _TRC_CSCHED2 | 3
TRC_CSCHED2_CREDIT_ADD = _TRC_CSCHED2 | 4          # defined by 4.10, never emitted by it
TRC_CSCHED2_TICKLE_CHECK = _TRC_CSCHED2 | 5
TRC_CSCHED2_TICKLE = _TRC_CSCHED2 | 6
TRC_CSCHED2_CREDIT_RESET = _TRC_CSCHED2 | 7
TRC_CSCHED2_SCHED_TASKLET = _TRC_CSCHED2 | 8       # no tasklets here: never emitted
TRC_CSCHED2_UPDATE_LOAD = _TRC_CSCHED2 | 9
TRC_CSCHED2_RUNQ_ASSIGN = _TRC_CSCHED2 | 10
TRC_CSCHED2_UPDATE_VCPU_LOAD = _TRC_CSCHED2 | 11
TRC_CSCHED2_UPDATE_RUNQ_LOAD = _TRC_CSCHED2 | 12
TRC_CSCHED2_TICKLE_NEW = _TRC_CSCHED2 | 13
TRC_CSCHED2_RUNQ_MAX_WEIGHT = _TRC_CSCHED2 | 14
TRC_CSCHED2_MIGRATE = _TRC_CSCHED2 | 15
TRC_CSCHED2_LOAD_CHECK = _TRC_CSCHED2 | 16
TRC_CSCHED2_LOAD_BALANCE = _TRC_CSCHED2 | 17
TRC_CSCHED2_PICKED_CPU = _TRC_CSCHED2 | 19
TRC_CSCHED2_RUNQ_CANDIDATE = _TRC_CSCHED2 | 20
TRC_CSCHED2_SCHEDULE = _TRC_CSCHED2 | 21
TRC_CSCHED2_RATELIMIT = _TRC_CSCHED2 | 22
TRC_CSCHED2_RUNQ_CAND_CHECK = _TRC_CSCHED2 | 23

_U32 = 0xFFFF_FFFF


def _pair16(lo: int, hi: int) -> int:
    """Two 16-bit fields in one word, the first in the low half (GCC bitfield order)."""
    return (lo & 0xFFFF) | ((hi & 0xFFFF) << 16)


def _u64(v: int) -> tuple[int, int]:
    """A 64-bit field as two words, low word first (little-endian)."""
    return v & _U32, (v >> 32) & _U32


def _cycle(n: int, mask) -> int:
    """The first pCPU of `mask` after `n`, wrapping around (cpumask_cycle); -1 if empty."""
    if not mask:
        return -1
    ordered = sorted(mask)
    for c in ordered:
        if c > n:
            return c
    return ordered[0]


def _test_or_cycle(n: int, mask) -> int:
    """`n` if it is in `mask`, else the next one after it (cpumask_test_or_cycle)."""
    return n if n in mask else _cycle(n, mask)


# -- per-object scheduler data -------------------------------------------------------------
class _RunQueue:
    def __init__(self, rqi: int):
        self.id = -1                     # -1: slot not in use
        self.rqi = rqi
        self.active: set[int] = set()    # pCPUs of this runqueue
        self.idle: set[int] = set()
        self.smt_idle: set[int] = set()
        self.tickled: set[int] = set()
        self.runq: list[_Unit] = []      # by credit, highest first
        self.svc: list[_Unit] = []       # every unit assigned here, insertion order
        self.max_weight = 1
        self.pick_bias = 0
        self.load = 0
        self.load_last_update = 0
        self.avgload = 0
        self.b_avgload = 0


class _Dom:
    def __init__(self, dom: SchedDomain):
        self.dom = dom
        self.weight = DEFAULT_WEIGHT
        self.cap = 0
        self.nr_units = 0
        self.tot_budget = 0
        self.budget = 0
        self.next_repl = 0
        self.repl_timer: Any = None
        self.parked: list[_Unit] = []    # newest first, like Xen's list_add
        self.units: list[_Unit] = []     # the domain's units, insertion order


class _Unit:
    def __init__(self, unit: SchedUnit | None, sdom: _Dom | None, idle_cpu: int = -1):
        self.unit = unit
        self.is_idle = unit is None      # an idle unit (one per pCPU), never changes
        self.sdom = sdom
        self.idle_cpu = idle_cpu
        self.rqd: _RunQueue | None = None
        self.credit = IDLE_CREDIT if unit is None else CREDIT_INIT
        self.weight = 0 if sdom is None else sdom.weight
        self.residual = 0
        self.budget = STIME_MAX
        self.budget_quota = 0
        self.start_time = 0              # last time credits were burnt up to
        self.run_since = 0               # when it started running (runstate entry time)
        self.load_last_update = 0
        self.avgload = 0
        self.tickled_cpu = -1
        self.on_runq = False
        # flags (CSFLAG_*)
        self.scheduled = False           # running, or being switched away from
        self.delayed_runq_add = False    # queue it in context_saved
        self.migrate_request = False     # balance_load wants it on migrate_rqd
        self.migrate_rqd: _RunQueue | None = None
        self.yield_flag = False
        # pause flags
        self.parked = False              # _VPF_parked: out of budget
        self.migrating = False           # _VPF_migrating: re-place when switched away
        # effective affinity masks (see Credit2._masks), valid while the unit's raw masks
        # are these very objects and the pool has not changed
        self.masks_of: tuple[Any, Any, int] | None = None
        self.hard: frozenset[int] = frozenset()
        self.soft: frozenset[int] | None = None

    @property
    def domid(self) -> int:
        return DOMID_IDLE if self.unit is None else self.unit.domain.domid

    @property
    def vcpu_id(self) -> int:
        return self.idle_cpu if self.unit is None else self.unit.vcpu_id

    @property
    def dv(self) -> int:
        """The {vcpu:16, dom:16} trace word."""
        return _pair16(self.vcpu_id, self.domid)

    def __repr__(self) -> str:
        return "idle" if self.unit is None else repr(self.unit)


class Credit2(Scheduler):
    name = "credit2"
    sched_id = 6

    def __init__(self, env: SchedEnv, cpus: frozenset[int]):
        super().__init__(env, frozenset())
        arrangement = env.param("credit2_runqueue", "socket")
        if arrangement not in RUNQUEUE_ARRANGEMENTS:
            raise ValueError(f"credit2_runqueue: expected one of "
                             f"{', '.join(RUNQUEUE_ARRANGEMENTS)}, got {arrangement!r}")
        self.runqueue_arrangement = arrangement

        ratelimit = int(env.param("sched_ratelimit_us", DEFAULT_RATELIMIT_US))
        if ratelimit and not RATELIMIT_MIN_US <= ratelimit <= RATELIMIT_MAX_US:
            ratelimit = DEFAULT_RATELIMIT_US     # out of range: Xen resets to the default
        self.ratelimit_us = ratelimit            # also sets _ratelimit_ns

        self.migrate_resist = int(env.param("sched_credit2_migrate_resist",
                                            DEFAULT_MIGRATE_RESIST_US)) * US
        cap_period = int(env.param("credit2_cap_period_ms", DEFAULT_CAP_PERIOD_MS)) * MS
        if cap_period < MIN_TIMER:
            cap_period = DEFAULT_CAP_PERIOD_MS * MS
        self.cap_period = cap_period

        p_shift = int(env.param("credit2_load_precision_shift", LOADAVG_PRECISION_SHIFT))
        self.load_precision_shift = max(p_shift, LOADAVG_PRECISION_SHIFT_MIN)
        w_shift = int(env.param("credit2_load_window_shift", LOADAVG_WINDOW_SHIFT))
        if w_shift <= LOADAVG_GRANULARITY_SHIFT:
            w_shift = LOADAVG_WINDOW_SHIFT
        self.load_window_shift = w_shift - LOADAVG_GRANULARITY_SHIFT
        self.balance_under = int(env.param("credit2_balance_under", 0))
        self.balance_over = int(env.param("credit2_balance_over", -3))
        self.smt_power_savings = bool(env.param("sched_smt_power_savings", False))

        self.rqd: list[_RunQueue] = []          # runqueue slots, indexed by id
        self.runq_map: dict[int, int] = {}      # pCPU -> runqueue id
        self._rqd_of: dict[int, _RunQueue] = {}  # pCPU -> its runqueue (runq_map, resolved)
        self._pool_gen = 0                       # bumped when pCPUs come or go (mask cache)
        self.curr: dict[int, _Unit] = {}        # what each pCPU runs (its idle unit if none)
        self.idle_units: dict[int, _Unit] = {}
        self.doms: list[_Dom] = []
        self._siblings: dict[int, frozenset[int]] = {}
        for cpu in sorted(cpus):
            self.add_cpu(cpu)

    # -- small helpers ---------------------------------------------------------------------
    def _trace(self, event: int, *words: int) -> None:
        """Record an event; callers check `self.env.tracing` first (payloads cost)."""
        self.env.trace(event, *[w & _U32 for w in words])

    def _c2rqd(self, cpu: int) -> _RunQueue:
        return self._rqd_of[cpu]

    def _active_queues(self) -> list[_RunQueue]:
        return [r for r in self.rqd if r.id >= 0]

    @property
    def ratelimit_us(self) -> int:
        return self._ratelimit_us

    @ratelimit_us.setter
    def ratelimit_us(self, value: int) -> None:
        self._ratelimit_us = value
        self._ratelimit_ns = value * US

    @staticmethod
    def _has_cap(svc: _Unit) -> bool:
        return svc.budget != STIME_MAX

    @staticmethod
    def _runnable(svc: _Unit) -> bool:
        """vcpu_runnable(): wants to run and is not held back by a pause flag."""
        return (svc.unit is not None and svc.unit.runnable
                and not svc.parked and not svc.migrating)

    @staticmethod
    def _in_hard(unit: SchedUnit, cpu: int) -> bool:
        return not unit.hard_affinity or cpu in unit.hard_affinity

    @staticmethod
    def _in_soft(unit: SchedUnit, cpu: int) -> bool:
        """cpu ∈ the raw soft mask (an unset soft affinity means every pCPU)."""
        return not unit.soft_affinity or cpu in unit.soft_affinity

    def _masks(self, svc: _Unit) -> tuple[frozenset[int], frozenset[int] | None]:
        """(hard_cpus, soft_cpus) of the unit, cached on it: recomputed when its raw
        masks are replaced (frozensets, so the same object means the same mask; this
        also covers changes behind the scheduler's back) or pCPUs come or go."""
        unit = svc.unit
        key = svc.masks_of
        if (key is None or key[0] is not unit.hard_affinity
                or key[1] is not unit.soft_affinity or key[2] != self._pool_gen):
            hard = super().hard_cpus(unit)
            # Scheduler.soft_cpus, without its call back into (this) hard_cpus
            soft = hard & unit.soft_affinity if unit.soft_affinity else None
            svc.hard = hard
            svc.soft = soft if soft and soft != hard else None
            svc.masks_of = (unit.hard_affinity, unit.soft_affinity, self._pool_gen)
        return svc.hard, svc.soft

    def hard_cpus(self, unit: SchedUnit) -> frozenset[int]:
        svc = unit.priv
        if isinstance(svc, _Unit) and svc.unit is unit:
            return self._masks(svc)[0]
        return super().hard_cpus(unit)

    def soft_cpus(self, unit: SchedUnit) -> frozenset[int] | None:
        svc = unit.priv
        if isinstance(svc, _Unit) and svc.unit is unit:
            return self._masks(svc)[1]
        return super().soft_cpus(unit)

    def _balance_masks(self, svc: _Unit) -> tuple[frozenset[int], ...]:
        """The SOFT then HARD balance-step masks (∩ pool); SOFT only when it counts."""
        hard, soft = self._masks(svc)
        return (soft, hard) if soft is not None else (hard,)

    def _svc(self, unit: SchedUnit) -> _Unit:
        svc = unit.priv
        if not isinstance(svc, _Unit):
            raise ValueError(f"{unit!r} is not a credit2 unit")
        return svc

    # -- SMT idle tracking -----------------------------------------------------------------
    def _compute_siblings(self) -> None:
        topo = {c: self.env.topology(c) for c in sorted(self.cpus)}
        self._siblings = {
            c: frozenset(o for o in topo if topo[o][0] == topo[c][0] and topo[o][1] == topo[c][1])
            for c in topo}

    def _smt_idle_mask_set(self, cpu: int, idlers: set[int], mask: set[int]) -> None:
        sib = self._siblings.get(cpu) or frozenset((cpu,))
        if sib <= idlers:
            mask |= sib

    def _smt_idle_mask_clear(self, cpu: int, mask: set[int]) -> None:
        sib = self._siblings.get(cpu) or frozenset((cpu,))
        if sib <= mask:
            mask -= sib

    def _tickle_cpu(self, cpu: int, rqd: _RunQueue) -> None:
        rqd.tickled.add(cpu)
        self._smt_idle_mask_clear(cpu, rqd.smt_idle)
        self.env.tickle(cpu)

    # -- pCPUs and runqueues ---------------------------------------------------------------
    def _same(self, a: int, b: int) -> bool:
        ta, tb = self.env.topology(a), self.env.topology(b)
        arr = self.runqueue_arrangement
        if arr == "all":
            return True
        if arr == "core":
            return ta[1] == tb[1] and ta[0] == tb[0]
        if arr == "socket":
            return ta[1] == tb[1]
        if arr == "node":
            return ta[2] == tb[2]
        return False                                    # "cpu": never share

    def _cpu_to_runqueue(self, cpu: int) -> int:
        rqi = 0
        while True:
            if rqi == len(self.rqd):
                self.rqd.append(_RunQueue(rqi))
            rqd = self.rqd[rqi]
            if rqd.id == -1:                            # first free slot: use it
                return rqi
            if self._same(min(rqd.active), cpu):
                return rqi
            rqi += 1

    def add_cpu(self, cpu: int) -> None:
        if cpu in self.cpus:
            return
        self.cpus.add(cpu)
        self._pool_gen += 1
        self._compute_siblings()
        rqi = self._cpu_to_runqueue(cpu)
        rqd = self.rqd[rqi]
        if rqd.id == -1:                                # activate_runqueue
            rqd.id = rqi
            rqd.max_weight = 1
            rqd.runq, rqd.svc = [], []
        self.runq_map[cpu] = rqi
        self._rqd_of[cpu] = rqd
        rqd.idle.add(cpu)
        rqd.active.add(cpu)
        rqd.smt_idle.add(cpu)
        if len(rqd.active) == 1:
            rqd.pick_bias = cpu
        idle = _Unit(None, None, idle_cpu=cpu)
        self.idle_units[cpu] = idle
        self.curr[cpu] = idle

    def remove_cpu(self, cpu: int) -> None:
        """The pCPU leaves the pool (the framework has moved its units away)."""
        if cpu not in self.cpus:
            return
        rqd = self._c2rqd(cpu)
        rqd.idle.discard(cpu)
        rqd.smt_idle.discard(cpu)
        rqd.active.discard(cpu)
        rqd.tickled.discard(cpu)
        if not rqd.active:
            rqd.id = -1                                 # deactivate_runqueue
        elif rqd.pick_bias == cpu:
            rqd.pick_bias = min(rqd.active)
        del self.runq_map[cpu]
        del self._rqd_of[cpu]
        del self.curr[cpu]
        del self.idle_units[cpu]
        self.cpus.discard(cpu)
        self._pool_gen += 1
        self._compute_siblings()

    # -- weights and runqueue assignment ---------------------------------------------------
    def _update_max_weight(self, rqd: _RunQueue, new_weight: int, old_weight: int) -> None:
        if new_weight > rqd.max_weight:
            rqd.max_weight = new_weight
        elif old_weight == rqd.max_weight:
            rqd.max_weight = max([1] + [s.weight for s in rqd.svc])
        if self.env.tracing:
            self._trace(TRC_CSCHED2_RUNQ_MAX_WEIGHT, _pair16(rqd.id, rqd.max_weight))

    def _runq_assign(self, svc: _Unit, rqd: _RunQueue) -> None:
        svc.rqd = rqd
        rqd.svc.append(svc)
        self._update_max_weight(rqd, svc.weight, 0)
        rqd.b_avgload += svc.avgload          # the load we expect after adding it
        if self.env.tracing:
            self._trace(TRC_CSCHED2_RUNQ_ASSIGN, svc.dv, rqd.id & 0xFFFF)

    def _runq_deassign(self, svc: _Unit) -> None:
        rqd = svc.rqd
        if rqd is None:
            return
        rqd.svc.remove(svc)
        self._update_max_weight(rqd, 0, svc.weight)
        rqd.b_avgload = max(rqd.b_avgload - svc.avgload, 0)
        svc.rqd = None

    # -- load tracking ---------------------------------------------------------------------
    def _update_runq_load(self, rqd: _RunQueue, change: int, now: int) -> None:
        W, P = self.load_window_shift, self.load_precision_shift
        now >>= LOADAVG_GRANULARITY_SHIFT
        load = rqd.load
        if rqd.load_last_update + (1 << W) < now:
            rqd.avgload = load << P
            rqd.b_avgload = load << P
        else:
            delta = max(now - rqd.load_last_update, 0)
            rqd.avgload = (rqd.avgload + ((delta * (load << P)) >> W)
                           - ((delta * rqd.avgload) >> W))
            rqd.b_avgload = (rqd.b_avgload + ((delta * (load << P)) >> W)
                             - ((delta * rqd.b_avgload) >> W))
        rqd.load += change
        rqd.load_last_update = now
        if self.env.tracing:
            self._trace(TRC_CSCHED2_UPDATE_RUNQ_LOAD, *_u64(rqd.avgload), *_u64(rqd.b_avgload),
                        (rqd.load & 0xFFFF) | ((rqd.id & 0xFF) << 16) | ((P & 0xFF) << 24))

    def _update_svc_load(self, svc: _Unit, change: int, now: int) -> None:
        if change == -1:
            vcpu_load = 1
        elif change == 1:
            vcpu_load = 0
        else:
            vcpu_load = 1 if self._runnable(svc) else 0
        W, P = self.load_window_shift, self.load_precision_shift
        now >>= LOADAVG_GRANULARITY_SHIFT
        if svc.load_last_update + (1 << W) < now:
            svc.avgload = vcpu_load << P
        else:
            delta = max(now - svc.load_last_update, 0)
            svc.avgload = (svc.avgload + ((delta * (vcpu_load << P)) >> W)
                           - ((delta * svc.avgload) >> W))
        svc.load_last_update = now
        if self.env.tracing:
            self._trace(TRC_CSCHED2_UPDATE_VCPU_LOAD, *_u64(svc.avgload), svc.dv, P)

    def _update_load(self, rqd: _RunQueue, svc: _Unit | None, change: int, now: int) -> None:
        if self.env.tracing:
            self._trace(TRC_CSCHED2_UPDATE_LOAD)
        self._update_runq_load(rqd, change, now)
        if svc is not None:
            self._update_svc_load(svc, change, now)

    # -- the runqueue list -----------------------------------------------------------------
    def _runq_insert(self, svc: _Unit) -> None:
        rqd = svc.rqd
        assert rqd is not None and not svc.on_runq and not svc.scheduled
        pos = 0
        for other in rqd.runq:
            if svc.credit > other.credit:
                break
            pos += 1
        rqd.runq.insert(pos, svc)
        svc.on_runq = True
        if self.env.tracing:
            self._trace(TRC_CSCHED2_RUNQ_POS, svc.dv, pos)

    def _runq_remove(self, svc: _Unit) -> None:
        svc.rqd.runq.remove(svc)
        svc.on_runq = False

    # -- credits ---------------------------------------------------------------------------
    def _burn_credits(self, rqd: _RunQueue, svc: _Unit, now: int) -> None:
        if svc.is_idle:
            return
        delta = now - svc.start_time
        capped = svc.budget != STIME_MAX                  # _has_cap, inlined (hot path)
        if delta > 0:
            weight = svc.weight
            val = delta * rqd.max_weight + svc.residual
            svc.residual = val % weight
            svc.credit -= val // weight
            if capped:
                svc.budget -= delta
            svc.start_time = now
        if self.env.tracing:
            budget = svc.budget if capped else -(1 << 31)   # INT_MIN: uncapped
            self._trace(TRC_CSCHED2_CREDIT_BURN, svc.dv, svc.credit, budget, delta)

    @staticmethod
    def _c2t(rqd: _RunQueue, credit: int, svc: _Unit) -> int:
        return credit * svc.weight // rqd.max_weight

    def _reset_credit(self, cpu: int, now: int, snext: _Unit) -> None:
        rqd = self._c2rqd(cpu)
        m = 1
        if snext.credit < -CREDIT_INIT:
            m += (-snext.credit) // CREDIT_INIT
        curr = self.curr
        tracing = self.env.tracing
        for svc in rqd.svc:
            svc_cpu = svc.unit.processor
            if curr.get(svc_cpu) is svc:
                # running: account what it has used so far; out of budget → off it goes
                self._burn_credits(rqd, svc, now)
                if svc.budget <= 0:
                    self._tickle_cpu(svc_cpu, rqd)
            start_credit = svc.credit
            svc.credit += m * CREDIT_INIT
            if svc.credit > CREDIT_INIT + CARRYOVER_MAX:
                svc.credit = CREDIT_INIT + CARRYOVER_MAX
            svc.start_time = now
            if tracing:
                self._trace(TRC_CSCHED2_CREDIT_RESET, svc.dv, start_credit, svc.credit, m)
        # no re-sort needed: everyone's relative order is unchanged

    # -- budget (caps) ---------------------------------------------------------------------
    def _park(self, svc: _Unit) -> None:
        svc.parked = True
        if svc.on_runq:
            self._runq_remove(svc)
            self._update_load(svc.rqd, svc, -1, self.env.now())
        svc.sdom.parked.insert(0, svc)

    def _grab_budget(self, svc: _Unit) -> bool:
        if svc.budget > 0:
            return True
        sdom = svc.sdom
        sdom.budget += svc.budget             # charge any overrun to the pool
        if sdom.budget > 0:
            take = svc.budget_quota if sdom.budget >= svc.budget_quota else sdom.budget
            svc.budget = take
            sdom.budget -= take
        else:
            svc.budget = 0
            self._park(svc)
        return svc.budget > 0

    def _return_budget(self, svc: _Unit) -> list[_Unit]:
        sdom = svc.sdom
        sdom.budget += svc.budget
        svc.budget = 0
        if sdom.budget > 0:
            parked, sdom.parked = sdom.parked, []
            return parked
        return []

    def _unpark(self, units: list[_Unit]) -> None:
        for svc in units:
            svc.parked = False
            if svc.scheduled:
                # budget came back between do_schedule and context_saved
                svc.delayed_runq_add = True
            elif self._runnable(svc) and svc.rqd is not None:
                now = self.env.now()
                self._update_load(svc.rqd, svc, 1, now)
                self._runq_insert(svc)
                self._runq_tickle(svc, now)

    def _arm_repl_timer(self, sdom: _Dom) -> None:
        if sdom.repl_timer is not None:
            sdom.repl_timer.cancel()
        sdom.repl_timer = self.env.timer(sdom.next_repl, lambda: self._replenish(sdom))

    def _replenish(self, sdom: _Dom) -> None:
        sdom.repl_timer = None
        if sdom.cap == 0 or sdom not in self.doms:
            return
        now = self.env.now()
        sdom.next_repl += self.cap_period
        sdom.budget += sdom.tot_budget
        while sdom.next_repl <= now:          # late by more than a period: catch up
            sdom.next_repl += self.cap_period
            sdom.budget += sdom.tot_budget
        if sdom.budget > 0:
            sdom.budget = min(sdom.budget, sdom.tot_budget)
            parked, sdom.parked = sdom.parked, []
            self._unpark(parked)
        self._arm_repl_timer(sdom)

    # -- domains and units -----------------------------------------------------------------
    def insert_domain(self, dom: SchedDomain) -> None:
        sdom = _Dom(dom)
        dom.priv = sdom
        self.doms.append(sdom)

    def remove_domain(self, dom: SchedDomain) -> None:
        sdom = dom.priv
        if not isinstance(sdom, _Dom):
            return
        if sdom.repl_timer is not None:
            sdom.repl_timer.cancel()
            sdom.repl_timer = None
        if sdom in self.doms:
            self.doms.remove(sdom)

    def insert_unit(self, unit: SchedUnit) -> None:
        sdom = unit.domain.priv
        if not isinstance(sdom, _Dom):
            raise ValueError(f"{unit.domain!r} is not a credit2 domain")
        svc = _Unit(unit, sdom)
        svc.avgload = 1 << (self.load_precision_shift - 1)     # start at 50%
        svc.load_last_update = self.env.now() >> LOADAVG_GRANULARITY_SHIFT
        unit.priv = svc
        sdom.units.append(svc)
        unit.processor = self.pick_cpu(unit)
        self._runq_assign(svc, self._c2rqd(unit.processor))
        sdom.nr_units += 1

    def remove_unit(self, unit: SchedUnit) -> None:
        svc = self._svc(unit)
        now = self.env.now()
        if svc.on_runq:
            self._runq_remove(svc)
            self._update_load(svc.rqd, svc, -1, now)
        if svc in svc.sdom.parked:
            svc.sdom.parked.remove(svc)
        svc.delayed_runq_add = svc.migrate_request = svc.migrating = False
        svc.parked = False
        svc.scheduled = False
        for cpu, cur in self.curr.items():
            if cur is svc:                      # should not happen: it is not running
                self.curr[cpu] = self.idle_units[cpu]
        self._runq_deassign(svc)
        if svc in svc.sdom.units:
            svc.sdom.units.remove(svc)
        svc.sdom.nr_units -= 1

    # -- state changes ---------------------------------------------------------------------
    def wake(self, unit: SchedUnit) -> None:
        svc = self._svc(unit)
        if self.curr.get(unit.processor) is svc:
            return                              # already running
        if svc.on_runq:
            return
        if not self._runnable(svc):
            return                              # parked / being moved: picked up later
        if svc.scheduled:
            svc.delayed_runq_add = True         # still being switched away from
            return
        if svc.rqd is None:
            self._runq_assign(svc, self._c2rqd(unit.processor))
        now = self.env.now()
        self._update_load(svc.rqd, svc, 1, now)
        self._runq_insert(svc)
        self._runq_tickle(svc, now)

    def sleep(self, unit: SchedUnit) -> None:
        svc = self._svc(unit)
        if self.curr.get(unit.processor) is svc:
            self._tickle_cpu(unit.processor, svc.rqd)
        elif svc.on_runq:
            self._update_load(svc.rqd, svc, -1, self.env.now())
            self._runq_remove(svc)
        elif svc.delayed_runq_add:
            svc.delayed_runq_add = False

    def yield_(self, unit: SchedUnit) -> None:
        unit.yielding = True
        self._svc(unit).yield_flag = True

    def context_saved(self, unit: SchedUnit) -> None:
        svc = unit.priv
        if not isinstance(svc, _Unit) or not svc.scheduled:
            return
        if self.curr.get(unit.processor) is svc:
            return                              # it is running (again): nothing to save
        now = self.env.now()
        svc.scheduled = False
        were_parked: list[_Unit] = []
        if self._has_cap(svc) and svc.budget > 0:
            were_parked = self._return_budget(svc)
        delayed, svc.delayed_runq_add = svc.delayed_runq_add, False
        if delayed and self._runnable(svc):
            self._runq_insert(svc)
            self._runq_tickle(svc, now)
        elif svc.rqd is not None:
            self._update_load(svc.rqd, svc, -1, now)
        self._unpark(were_parked)
        if svc.migrating:
            # what Xen's vcpu_migrate() does once the unit is off its pCPU
            svc.migrating = False
            self.migrate(unit, self.pick_cpu(unit))
            if self._runnable(svc):
                self.wake(unit)

    def affinity_changed(self, unit: SchedUnit) -> None:
        """Nothing to do: credit2 4.10 has no affinity hook. The framework re-places the
        unit as Xen's vcpu_set_affinity does: sleep, (switch out,) pick_cpu, migrate, wake."""

    # -- tickling --------------------------------------------------------------------------
    def _is_preemptable(self, svc: _Unit, now: int) -> bool:
        rl = self._ratelimit_ns
        if rl <= RATELIMIT_TICKLE_TOLERANCE:
            return True
        return now - svc.run_since > rl - RATELIMIT_TICKLE_TOLERANCE

    def _tickle_score(self, now: int, new: _Unit, cpu: int, rqd: _RunQueue) -> int:
        """How much `new` should preempt what runs on `cpu` (of runqueue `rqd`)."""
        cur = self.curr.get(cpu)
        if cur is None or cur.is_idle or not self._is_preemptable(cur, now):
            return -1
        self._burn_credits(rqd, cur, now)
        score = new.credit - cur.credit
        if new.unit.processor != cpu:
            score -= self.migrate_resist
        if score > 0:
            if self._in_soft(new.unit, cpu):
                score += CREDIT_INIT
            if not self._in_soft(cur.unit, cpu):
                score += CREDIT_INIT
        if self.env.tracing:
            self._trace(TRC_CSCHED2_TICKLE_CHECK, cur.dv, cur.credit, score)
        return score

    def _runq_tickle(self, new: _Unit, now: int) -> None:
        unit = new.unit
        cpu = unit.processor
        rqd = self._rqd_of[cpu]
        if self.env.tracing:
            self._trace(TRC_CSCHED2_TICKLE_NEW, new.dv, cpu, new.credit)
        ipid = -1
        # (the balance masks are ∩ pool already, and so are the runqueue's masks: no
        # need to intersect with the online pCPUs as Xen does)
        for aff in self._balance_masks(new):
            # fully idle cores first (or half-busy ones, with sched_smt_power_savings)
            if self.smt_power_savings:
                mask = (rqd.idle - rqd.smt_idle) & aff
            else:
                mask = rqd.smt_idle & aff
            if mask:
                ipid = _test_or_cycle(cpu, mask)
                break
            # then any idle pCPU that nobody has tickled yet
            mask = (rqd.idle - rqd.tickled) & aff
            if mask:
                ipid = _test_or_cycle(cpu, mask)
                break
        else:
            # nobody idle: preempt the busy pCPU with the best score
            hard = self._masks(new)[0]
            mask = (rqd.active - rqd.idle - rqd.tickled) & hard
            best = 0
            take_now = False
            if cpu in mask:
                mask = mask - {cpu}
                score = self._tickle_score(now, new, cpu, rqd)
                if score > best:
                    best, ipid = score, cpu
                    take_now = self._in_soft(unit, cpu)
            if not take_now:
                for i in sorted(mask):
                    score = self._tickle_score(now, new, i, rqd)
                    if score > best:
                        best, ipid = score, i
            if ipid == -1:
                return
        if self.env.tracing:
            self._trace(TRC_CSCHED2_TICKLE, ipid & 0xFFFF)
        self._tickle_cpu(ipid, rqd)
        new.tickled_cpu = ipid

    # -- placement -------------------------------------------------------------------------
    def _get_fallback_cpu(self, svc: _Unit) -> int:
        unit = svc.unit
        cpu = unit.processor
        masks = self._balance_masks(svc)
        for step, aff in enumerate(masks):
            if cpu in aff:
                return cpu
            if svc.rqd is not None and aff & svc.rqd.active:
                return min(aff & svc.rqd.active)
            if step == len(masks) - 1 and aff:   # HARD step: any valid pCPU
                return min(aff)
        return min(self.cpus)                    # hard ∩ pool empty: nothing valid exists

    def pick_cpu(self, unit: SchedUnit) -> int:
        svc = self._svc(unit)
        hard = self.hard_cpus(unit)
        min_rqi = min_s_rqi = -1
        min_avgload = min_s_avgload = MAX_LOAD
        new_cpu = -1

        if svc.migrate_request:
            # balance_load asked for this unit to go to migrate_rqd
            svc.migrate_request = False
            trqd = svc.migrate_rqd
            if trqd is not None and trqd.id >= 0 and hard & trqd.active:
                new_cpu = _cycle(trqd.pick_bias, hard & trqd.active)
                trqd.pick_bias = new_cpu
                self._trace_picked(svc, min_rqi, min_avgload, new_cpu)
                return new_cpu

        soft = self.soft_cpus(unit)
        for rqd in self._active_queues():
            if not hard & rqd.active:
                continue
            if rqd is svc.rqd:
                load = max(rqd.b_avgload - svc.avgload, 0)
            else:
                load = rqd.b_avgload
            if soft is not None and load < min_s_avgload and soft & rqd.active:
                min_s_avgload, min_s_rqi = load, rqd.id
            if load < min_avgload:
                min_avgload, min_rqi = load, rqd.id

        if soft is not None and min_s_rqi != -1:
            mask = soft & self.rqd[min_s_rqi].active
        elif min_rqi != -1:
            mask = hard & self.rqd[min_rqi].active
        else:
            new_cpu = self._get_fallback_cpu(svc)
            if new_cpu in self.runq_map:
                min_rqi = self.runq_map[new_cpu]
                min_avgload = self.rqd[min_rqi].b_avgload
            self._trace_picked(svc, min_rqi, min_avgload, new_cpu)
            return new_cpu
        # As in Xen 4.10, the round-robin bias used (and advanced) is the one of the
        # least loaded runqueue overall, even when the soft-affinity one was chosen.
        new_cpu = _cycle(self.rqd[min_rqi].pick_bias, mask)
        self.rqd[min_rqi].pick_bias = new_cpu
        self._trace_picked(svc, min_rqi, min_avgload, new_cpu)
        return new_cpu

    def _trace_picked(self, svc: _Unit, rqi: int, avgload: int, new_cpu: int) -> None:
        if self.env.tracing:
            self._trace(TRC_CSCHED2_PICKED_CPU, *_u64(avgload), svc.dv, _pair16(rqi, new_cpu))

    def _migrate_to(self, svc: _Unit, trqd: _RunQueue, now: int) -> None:
        """Move a unit to runqueue `trqd` (or, if it is running, ask it to move)."""
        unit = svc.unit
        cpu = unit.processor
        if self.env.tracing:
            self._trace(TRC_CSCHED2_MIGRATE, svc.dv, _pair16(svc.rqd.id, trqd.id))
        if svc.scheduled:
            svc.migrate_rqd = trqd
            svc.migrating = True
            svc.migrate_request = True
            self._tickle_cpu(cpu, svc.rqd)
            return
        on_runq = svc.on_runq
        if on_runq:
            self._runq_remove(svc)
            self._update_load(svc.rqd, None, -1, now)
        self._runq_deassign(svc)
        unit.processor = _cycle(trqd.pick_bias, self._masks(svc)[0] & trqd.active)
        trqd.pick_bias = unit.processor
        self._runq_assign(svc, trqd)
        if on_runq:
            self._update_load(svc.rqd, None, 1, now)
            self._runq_insert(svc)
            self._runq_tickle(svc, now)

    def migrate(self, unit: SchedUnit, new_cpu: int) -> None:
        svc = self._svc(unit)
        if new_cpu not in self.runq_map:
            raise ValueError(f"pCPU {new_cpu} is not in this credit2 pool")
        trqd = self._c2rqd(new_cpu)
        if svc.rqd is None:
            unit.processor = new_cpu
            self._runq_assign(svc, trqd)
        elif trqd is not svc.rqd:
            self._migrate_to(svc, trqd, self.env.now())
        else:
            unit.processor = new_cpu

    # -- load balancing --------------------------------------------------------------------
    def _migrateable(self, svc: _Unit, rqd: _RunQueue) -> bool:
        return not svc.migrate_request and not self._masks(svc)[0].isdisjoint(rqd.active)

    def _balance_load(self, cpu: int, now: int) -> None:
        lrqd = self._c2rqd(cpu)
        self._update_runq_load(lrqd, 0, now)
        load_delta = 0
        max_delta_rqd: _RunQueue | None = None
        last_seen: _RunQueue | None = None
        for orqd in self._active_queues():
            last_seen = orqd
            if orqd is lrqd:
                continue
            self._update_runq_load(orqd, 0, now)
            delta = abs(lrqd.b_avgload - orqd.b_avgload)
            if delta > load_delta:
                load_delta, max_delta_rqd = delta, orqd
        if max_delta_rqd is None:
            return

        P = self.load_precision_shift
        # Xen 4.10 judges the threshold against the last runqueue its scan visited, not
        # necessarily the one with the largest difference; kept as is.
        load_max = max(lrqd.b_avgload, last_seen.b_avgload)
        cpus_max = max(len(lrqd.active), len(last_seen.active))
        if self.env.tracing:
            self._trace(TRC_CSCHED2_LOAD_CHECK, _pair16(lrqd.id, last_seen.id), load_delta)
        if load_max < (cpus_max << P):
            if load_delta < _pow2(P + self.balance_under):
                return
        elif load_delta < _pow2(P + self.balance_over):
            return

        orqd = max_delta_rqd
        if self.env.tracing:
            self._trace(TRC_CSCHED2_LOAD_BALANCE, *_u64(lrqd.b_avgload), *_u64(orqd.b_avgload),
                        _pair16(lrqd.id, orqd.id))

        # Xen tries every (push, pull) pair, then every push alone, then every pull alone,
        # and keeps the first one that makes |lrqd load - orqd load| strictly smaller than
        # the best so far. The loads after a swap differ by
        #     |diff - 2 * push.avgload + 2 * pull.avgload|    (diff = lrqd - orqd load)
        # so for one push the best pull is the one whose avgload is closest to
        # push.avgload - diff / 2: found by bisection in the pulls' sorted loads instead
        # of trying them all, with ties going to the earliest pull as in Xen's scan.
        # Same choice, same _update_svc_load calls in the same order.
        diff = lrqd.b_avgload - orqd.b_avgload
        best_delta = load_delta
        best_push: _Unit | None = None
        best_pull: _Unit | None = None

        pulls: list[_Unit] | None = None         # orqd's units that could come here
        pull_loads: list[int] = []               # their distinct avgloads, ascending
        first_pull: dict[int, int] = {}          # avgload -> index of its first pull
        for push in lrqd.svc:
            self._update_svc_load(push, 0, now)
            if not self._migrateable(push, orqd):
                continue
            if pulls is None:
                # Xen refreshes the loads of orqd's units during its first inner loop
                for pull in orqd.svc:
                    self._update_svc_load(pull, 0, now)
                pulls = [u for u in orqd.svc if self._migrateable(u, lrqd)]
                for i, pull in enumerate(pulls):
                    first_pull.setdefault(pull.avgload, i)
                pull_loads = sorted(first_pull)
            k = diff - 2 * push.avgload            # swapping costs |k + 2 * pull.avgload|
            if pull_loads:
                # the loads on either side of -k / 2: the minimum is at one of them
                j = bisect_right(pull_loads, (-k) // 2)
                best_here = -1
                d_here = 0
                for load in pull_loads[max(j - 1, 0):j + 1]:
                    d = abs(k + 2 * load)
                    i = first_pull[load]
                    if best_here < 0 or d < d_here or (d == d_here and i < best_here):
                        best_here, d_here = i, d
                if d_here < best_delta:
                    best_delta, best_push, best_pull = d_here, push, pulls[best_here]
            d = abs(k)                               # push alone
            if d < best_delta:
                best_delta, best_push, best_pull = d, push, None
        if pulls is None:
            pulls = [u for u in orqd.svc if self._migrateable(u, lrqd)]
        for pull in pulls:                           # pull alone
            d = abs(diff + 2 * pull.avgload)
            if d < best_delta:
                best_delta, best_push, best_pull = d, None, pull

        if best_push is not None:
            self._migrate_to(best_push, orqd, now)
        if best_pull is not None:
            self._migrate_to(best_pull, lrqd, now)

    # -- scheduling ------------------------------------------------------------------------
    def _runtime(self, rqd: _RunQueue, snext: _Unit, now: int, continuing: bool) -> int:
        if snext.is_idle:
            return NO_TIMER
        min_time = MIN_TIMER
        ratelimit = self._ratelimit_ns
        if ratelimit:
            ratelimit_min = ratelimit
            if continuing:
                ratelimit_min = snext.run_since + ratelimit - now
            min_time = max(min_time, ratelimit_min)
        rt_credit = snext.credit
        if rqd.runq:
            swait = rqd.runq[0]
            if swait.credit > 0:
                rt_credit = snext.credit - swait.credit
        time = self._c2t(rqd, rt_credit, snext) if rt_credit > 0 else 0
        if snext.budget != STIME_MAX:                # _has_cap
            time = min(time, snext.budget)
        if time < min_time:
            time = min_time
        elif time > MAX_TIMER:
            time = MAX_TIMER
        return time

    def _runq_candidate(self, rqd: _RunQueue, scurr: _Unit, cpu: int,
                        now: int) -> tuple[_Unit, int]:
        skipped = 0
        yielding = False
        if scurr.is_idle:
            snext = scurr
        else:
            unit = scurr.unit
            yielding = scurr.yield_flag or unit.yielding
            scurr.yield_flag = False
            unit.yielding = False
            runnable = self._runnable(scurr)
            # ratelimit: keep the current unit if it has not run long enough
            ratelimit = self._ratelimit_ns
            if (not yielding and ratelimit and runnable
                    and now - scurr.run_since < ratelimit):
                if self.env.tracing:
                    self._trace(TRC_CSCHED2_RATELIMIT, scurr.dv, now - scurr.run_since)
                return scurr, 0
            # running outside its soft affinity while a soft-affine pCPU idles? let it go
            # (soft is ∩ pool already)
            soft_aff_preempt = False
            soft = self._masks(scurr)[1]
            if soft is not None and cpu not in soft:
                soft_aff_preempt = not soft.isdisjoint(rqd.idle - rqd.tickled)
            snext = scurr if runnable and not soft_aff_preempt else self.idle_units[cpu]

        tracing = self.env.tracing
        # no copy of the list needed: it only changes (a unit parked) right before `break`
        for svc in rqd.runq:
            if tracing:
                self._trace(TRC_CSCHED2_RUNQ_CAND_CHECK, svc.dv)
            hard = svc.unit.hard_affinity            # _in_hard, inlined (hot loop)
            if hard and cpu not in hard:
                skipped += 1
                continue
            if (svc.tickled_cpu != -1 and svc.tickled_cpu != cpu
                    and svc.tickled_cpu in rqd.tickled):
                skipped += 1                     # left for the pCPU tickled for it
                continue
            if (svc.unit.processor != cpu
                    and snext.credit + self.migrate_resist > svc.credit):
                skipped += 1                     # not worth migrating
                continue
            if ((yielding or svc.credit > snext.credit)
                    and (svc.budget == STIME_MAX or self._grab_budget(svc))):
                snext = svc
            break                                # only the first eligible entry counts

        if self.env.tracing:
            self._trace(TRC_CSCHED2_RUNQ_CANDIDATE, snext.dv, snext.tickled_cpu, skipped,
                        snext.credit)
        return snext, skipped

    def do_schedule(self, cpu: int, prev: SchedUnit | None, now: int) -> Decision:
        rqd = self._rqd_of[cpu]
        scurr = None if prev is None else prev.priv
        if not isinstance(scurr, _Unit) or scurr.rqd is None:
            scurr = self.idle_units[cpu]          # idle, or a unit removed while running
        mine = self.curr.get(cpu)
        if mine is not None and not mine.is_idle and mine is not scurr:
            # The framework did not run what this pCPU picked last time: put it back.
            self.curr[cpu] = self.idle_units[cpu]
            if mine.rqd is not None and mine.scheduled:
                mine.delayed_runq_add = self._runnable(mine)
                self.context_saved(mine.unit)

        tickled = cpu in rqd.tickled
        if tickled:
            rqd.tickled.discard(cpu)
            self._smt_idle_mask_set(cpu, rqd.idle - rqd.tickled, rqd.smt_idle)
        if self.env.tracing:
            self._trace(TRC_CSCHED2_SCHEDULE, _pair16(cpu, rqd.id),
                        (1 if scurr.is_idle else 0) << 8
                        | (1 if cpu in rqd.smt_idle else 0) << 16
                        | (1 if tickled else 0) << 24)

        self._burn_credits(rqd, scurr, now)
        if not scurr.is_idle and scurr.budget <= 0:
            self._grab_budget(scurr)             # overrun: more budget, or be parked

        snext, skipped = self._runq_candidate(rqd, scurr, cpu, now)

        if snext is not scurr and not scurr.is_idle and self._runnable(scurr):
            scurr.delayed_runq_add = True        # queued again in context_saved

        migrated = False
        if not snext.is_idle:
            if snext is not scurr:
                self._runq_remove(snext)
                snext.scheduled = True
            if skipped == 0 and snext.credit <= CREDIT_RESET:
                self._reset_credit(cpu, now, snext)
                self._balance_load(cpu, now)
            if cpu in rqd.idle:
                rqd.idle.discard(cpu)
                self._smt_idle_mask_clear(cpu, rqd.smt_idle)
            snext.start_time = now
            snext.tickled_cpu = -1
            if snext.unit.processor != cpu:
                snext.credit += MIGRATE_COMPENSATION
                snext.unit.processor = cpu
                migrated = True
        else:
            if cpu not in rqd.idle:
                rqd.idle.add(cpu)
                self._smt_idle_mask_set(cpu, rqd.idle - rqd.tickled, rqd.smt_idle)
            self._update_load(rqd, None, 0, now)   # keep the average moving while idle

        continuing = snext is scurr and not snext.is_idle
        time = self._runtime(rqd, snext, now, continuing)
        if not continuing and not snext.is_idle:
            snext.run_since = now
        self.curr[cpu] = snext
        return Decision(snext.unit, time, migrated)

    # -- parameters ------------------------------------------------------------------------
    def adjust(self, dom: SchedDomain, put: bool, params: dict) -> dict:
        """Get or set {"weight", "cap"}. As XEN_DOMCTL_scheduler_op putinfo: weight 0 keeps
        the weight, cap 0 (or a missing cap) removes the cap."""
        sdom = dom.priv
        if not isinstance(sdom, _Dom):
            raise ValueError(f"{dom!r} is not a credit2 domain")
        if put:
            weight = int(params.get("weight", 0) or 0)
            cap = int(params.get("cap", 0) or 0)
            if not 0 <= weight <= 0xFFFF:
                raise ValueError(f"weight {weight} out of range 1..65535")
            if not 0 <= cap <= 0xFFFF:
                raise ValueError(f"cap {cap} out of range")
            if weight:
                self._set_weight(sdom, weight)
            if cap:
                if cap > 100 * sdom.nr_units:
                    raise ValueError(f"cap {cap} exceeds 100 x {sdom.nr_units} vCPUs")
                self._set_cap(sdom, cap)
            elif sdom.cap:
                self._remove_cap(sdom)
        return {"weight": sdom.weight, "cap": sdom.cap}

    @staticmethod
    def _units_of(sdom: _Dom) -> list[_Unit]:
        return list(sdom.units)

    def _set_weight(self, sdom: _Dom, weight: int) -> None:
        old = sdom.weight
        sdom.weight = weight
        for svc in self._units_of(sdom):
            svc.weight = weight
            if svc.rqd is not None:
                self._update_max_weight(svc.rqd, weight, old)

    def _set_cap(self, sdom: _Dom, cap: int) -> None:
        now = self.env.now()
        sdom.tot_budget = self.cap_period * cap // 100
        units = self._units_of(sdom)
        for svc in units:
            svc.budget_quota = max(sdom.tot_budget // sdom.nr_units, MIN_TIMER)
        if sdom.cap == 0:
            sdom.budget = sdom.tot_budget
            sdom.next_repl = now + self.cap_period
            self._arm_repl_timer(sdom)
            # every unit must now grab budget before running; running ones are
            # accounted (still uncapped) and sent through the scheduler
            for svc in units:
                cpu = svc.unit.processor
                if self.curr.get(cpu) is svc:
                    rqd = self._c2rqd(cpu)
                    self._burn_credits(rqd, svc, now)
                    rqd.tickled.add(cpu)
                    self.env.tickle(cpu)
                svc.budget = 0
        sdom.cap = cap

    def _remove_cap(self, sdom: _Dom) -> None:
        if sdom.repl_timer is not None:
            sdom.repl_timer.cancel()
            sdom.repl_timer = None
        for svc in self._units_of(sdom):
            svc.budget = STIME_MAX
            svc.budget_quota = 0
        sdom.cap = 0
        parked, sdom.parked = sdom.parked, []
        self._unpark(parked)

    def adjust_global(self, put: bool, params: dict) -> dict:
        if put and "ratelimit_us" in params:
            rl = int(params["ratelimit_us"])
            if rl and not RATELIMIT_MIN_US <= rl <= RATELIMIT_MAX_US:
                raise ValueError(f"ratelimit_us {rl} outside "
                                 f"{RATELIMIT_MIN_US}..{RATELIMIT_MAX_US} (0 disables)")
            self.ratelimit_us = rl
        return {"ratelimit_us": self.ratelimit_us}

    # -- introspection ---------------------------------------------------------------------
    def is_parked(self, unit: SchedUnit) -> bool:
        return self._svc(unit).parked

    def credit_of(self, unit: SchedUnit) -> int:
        return self._svc(unit).credit

    def runqueue_of(self, cpu: int) -> int:
        return self.runq_map[cpu]

    def _dump_unit(self, svc: _Unit) -> str:
        P = self.load_precision_shift
        s = (f"[{svc.domid}.{svc.vcpu_id}] cpu={svc.unit.processor} credit={svc.credit} "
             f"[w={svc.weight}]")
        if self._has_cap(svc):
            s += f" budget={svc.budget}"
        if svc.parked:
            s += " parked"
        s += f" load={svc.avgload} (~{(svc.avgload * 100) >> P}%)"
        return s

    def dump(self) -> str:
        P = self.load_precision_shift
        active = self._active_queues()
        out = [f"Scheduler: SMP Credit Scheduler rev2 ({self.name})",
               f"Active queues: {len(active)}",
               f"\tdefault-weight     = {DEFAULT_WEIGHT}",
               f"\tratelimit_us       = {self.ratelimit_us}",
               f"\trunqueues          = {self.runqueue_arrangement}"]
        for rqd in active:
            out += [f"Runqueue {rqd.id}:",
                    f"\tncpus              = {len(rqd.active)}",
                    f"\tcpus               = {_cpulist(rqd.active)}",
                    f"\tmax_weight         = {rqd.max_weight}",
                    f"\tpick_bias          = {rqd.pick_bias}",
                    f"\tinstload           = {rqd.load}",
                    f"\taveload            = {rqd.avgload} (~{(rqd.avgload * 100) >> P}%)",
                    f"\tidlers: {_cpulist(rqd.idle)}",
                    f"\ttickled: {_cpulist(rqd.tickled)}",
                    f"\tfully idle cores: {_cpulist(rqd.smt_idle)}"]
        out.append("Domain info:")
        n = 0
        for sdom in self.doms:
            line = (f"\tDomain: {sdom.dom.domid} w {sdom.weight} c {sdom.cap} "
                    f"v {sdom.nr_units}")
            if sdom.cap:
                line += f" budget {sdom.budget}/{sdom.tot_budget} parked {len(sdom.parked)}"
            out.append(line)
            for svc in self._units_of(sdom):
                n += 1
                out.append(f"\t{n:3d}: {self._dump_unit(svc)}")
        for rqd in active:
            out.append(f"Runqueue {rqd.id}:")
            for cpu in sorted(rqd.active):
                cur = self.curr.get(cpu)
                run = "" if cur is None or cur.is_idle else f" run: {self._dump_unit(cur)}"
                out.append(f"CPU[{cpu:02d}] runq={rqd.id}{run}")
            out.append("RUNQ:")
            for i, svc in enumerate(rqd.runq):
                out.append(f"\t{i:3d}: {self._dump_unit(svc)}")
        return "\n".join(out)


def _pow2(shift: int) -> int:
    """1 << shift, allowing a negative shift (balance tolerances go below the unit)."""
    return 1 << shift if shift >= 0 else 0


def _cpulist(cpus) -> str:
    return ",".join(str(c) for c in sorted(cpus)) or "-"
