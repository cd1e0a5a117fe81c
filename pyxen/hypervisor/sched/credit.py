"""The credit scheduler, credit1 (Xen 4.10's default; `sched=credit`, XEN_SCHEDULER_CREDIT = 5).

Model
-----
Every pCPU has its own runqueue, ordered by priority: BOOST (0) before UNDER (-1)
before OVER (-2); the idle vCPU (-64) is what runs when the queue is empty. Within
a priority, units queue in arrival order.

Credits: running costs 10 credits per ms (charged at every tick and every
reschedule, with the sub-credit remainder carried in `residual`). Every pCPU has a
tick (tslice/3, 10 ms by default); a master timer runs the accounting every tslice
(30 ms). The accounting hands the pool's credit (10 * tslice_ms per pCPU, plus any
negative balance left over from the last period) to the *active* units in
proportion to their domain's weight, limited per domain by its peak (tslice worth
of credit per active unit, more when the balance is negative) and by its cap.
Credit left unused by a domain flows to the domains after it in the list.
After the hand-out: credit < 0 → OVER, otherwise UNDER. A unit with more than a
tslice worth of credit leaves the active set (stops earning) with its credit
halved; credit is floored at minus a tslice worth. A unit becomes active again
when a tick finds it running.

Caps: a unit of a capped domain whose credit falls below minus its share of the
cap is parked (Xen pauses it: it is not runnable, whatever the framework says) and
is unparked when an accounting leaves it with credit >= 0.

Boost: a unit waking with UNDER priority (and not parked, and not merely being
moved between pCPUs) gets BOOST, queues ahead of everyone and may preempt the
running unit at once. It loses BOOST when a tick finds it running, or at the
next accounting.

Scheduling a pCPU (`do_schedule`):
  * ratelimit: a unit that has run less than `ratelimit_us` since it was switched
    in, and is still runnable and not yielding, keeps the pCPU for the rest of it
    (never less than 100 µs);
  * otherwise the current unit goes back on the queue, and the head runs for a
    tslice;
  * if the head is OVER (or there is none), the pCPU first tries to steal a
    higher-priority unit from the queue of a busy pCPU: soft-affine work first,
    then hard-affine, peers walked node by node starting at this pCPU's node and,
    within a node, round-robin from where the last steal happened; a peer with at
    most one runnable unit is skipped.

Waking (`__runq_tickle`): if the unit's pCPU runs idle, or no pCPU is idle and the
unit outranks the one running there, that pCPU is tickled; otherwise an idle pCPU
in the unit's soft (then hard) affinity is tickled; if none is suitable but the
newcomer outranks the running unit, its pCPU is tickled and the running unit is
sent to an idle pCPU if its hard affinity allows. Tickled pCPUs stop counting as
idle.

Moving a unit that runs (kicked away by a waker, found better placed elsewhere by
a tick, pCPU leaving the pool) is done as Xen's vcpu_migrate: the unit is not
runnable until it has stopped; `context_saved` then places it with `pick_cpu` and
wakes it there (without boost). An affinity change is the framework's sequence
(sleep, switch out, pick_cpu, migrate, wake): there is no 4.10 hook for it.

Trace records: TRC_SCHED_CLASS_EVT(CSCHED, n) = 0x000220nn:
  1 SCHED_TASKLET (never: no tasklets here)
  2 ACCOUNT_START dom, vcpu, active_units      3 ACCOUNT_STOP  dom, vcpu, active_units
  4 STOLEN_VCPU   peer_cpu, dom, vcpu          5 PICKED_CPU    dom, vcpu, cpu
  6 TICKLE        cpu                          7 BOOST_START   dom, vcpu
  8 BOOST_END     dom, vcpu
  9 SCHEDULE      cpu | tasklet << 16 | idle << 24 (idle: the idle vCPU was running)
 10 RATELIMIT     vcpu | dom << 16, runtime_ns (u32)
 11 STEAL_CHECK   peer_cpu, checked (0: skipped, 1: looked at its queue)

Boot parameters read through env.param: sched_credit_tslice_ms (30; 1..1000, reset
to 30 when outside), sched_ratelimit_us (1000; 0 or 100..500000, reset to 1000 when
outside; limited to the tslice), vcpu_migration_delay (µs, 0), tickle_one_idle_cpu
(true), sched_smt_power_savings (false).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .core import IDLE, NO_TIMER, Decision, SchedDomain, Scheduler, SchedUnit

# -- constants ---------------------------------------------------------------------------------
DEFAULT_WEIGHT = 256
TICKS_PER_TSLICE = 3
DEFAULT_TSLICE_MS = 30
CREDITS_PER_MSEC = 10
TSLICE_MIN_MS = 1                  # XEN_SYSCTL_CSCHED_TSLICE_MIN
TSLICE_MAX_MS = 1000               # XEN_SYSCTL_CSCHED_TSLICE_MAX
RATELIMIT_MIN_US = 100             # XEN_SYSCTL_SCHED_RATELIMIT_MIN
RATELIMIT_MAX_US = 500_000         # XEN_SYSCTL_SCHED_RATELIMIT_MAX
DEFAULT_RATELIMIT_US = 1000
MIN_TIMER_NS = RATELIMIT_MIN_US * 1000

MS = 1_000_000
US = 1_000

PRI_BOOST = 0
PRI_UNDER = -1
PRI_OVER = -2
PRI_IDLE = -64

_U32 = 0xFFFF_FFFF

TRC_CSCHED_SCHED_TASKLET = 0x00022001
TRC_CSCHED_ACCOUNT_START = 0x00022002
TRC_CSCHED_ACCOUNT_STOP = 0x00022003
TRC_CSCHED_STOLEN_VCPU = 0x00022004
TRC_CSCHED_PICKED_CPU = 0x00022005
TRC_CSCHED_TICKLE = 0x00022006
TRC_CSCHED_BOOST_START = 0x00022007
TRC_CSCHED_BOOST_END = 0x00022008
TRC_CSCHED_SCHEDULE = 0x00022009
TRC_CSCHED_RATELIMIT = 0x0002200A
TRC_CSCHED_STEAL_CHECK = 0x0002200B

_FAR = 1 << 30                     # "nr_cpu_ids - 1": cycling from it starts at the lowest


def _cycle(after: int, cpus: Iterable[int]) -> int | None:
    """cpumask_cycle: the next cpu after `after`, wrapping around; None if empty."""
    best_after = None
    lowest = None
    for c in cpus:
        if lowest is None or c < lowest:
            lowest = c
        if c > after and (best_after is None or c < best_after):
            best_after = c
    return best_after if best_after is not None else lowest


def _uint_field(params: dict, key: str, default: int, bits: int) -> int:
    v = params.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or v < 0 or v >= (1 << bits):
        raise ValueError(f"{key}={v!r} out of range")
    return v


# -- per-object data -----------------------------------------------------------------------------
@dataclass(eq=False)
class _CUnit:
    pri: int = PRI_UNDER
    credit: int = 0
    residual: int = 0
    start_time: int = 0            # while running: when credit was last charged up to
    run_start: int = 0             # when it was last switched in (ratelimit)
    last_ran: int = -(1 << 62)     # when it was last switched out (migration delay)
    active: bool = False           # on its domain's active list (earning credit)
    queued_on: int | None = None   # the pCPU whose runqueue holds it
    parked: bool = False           # CSCHED_FLAG_VCPU_PARKED (over its cap: paused)
    yielding: bool = False         # CSCHED_FLAG_VCPU_YIELD
    migrating: bool = False        # CSCHED_FLAG_VCPU_MIGRATING (no boost on next wake)
    move: bool = False             # _VPF_migrating: move it once it has stopped


@dataclass(eq=False)
class _CDom:
    weight: int = DEFAULT_WEIGHT
    cap: int = 0
    active: list[SchedUnit] = field(default_factory=list)


@dataclass(eq=False)
class _CPcpu:
    runq: list[SchedUnit] = field(default_factory=list)
    runq_sort_last: int = 0
    tick: int = 0
    idle_bias: int = _FAR
    ticker: object = None


class Credit(Scheduler):
    name = "credit"
    sched_id = 5

    def __init__(self, env, cpus: frozenset[int]):
        super().__init__(env, cpus)
        self.pcpu: dict[int, _CPcpu] = {}
        self.curr: dict[int, SchedUnit | None] = {}      # what each pCPU runs
        self.idlers: set[int] = set()
        self.domains: list[SchedDomain] = []
        self.active_doms: list[SchedDomain] = []
        self.weight = 0                # sum of weights of the active units' domains
        self.credit = 0                # credits_per_tslice * ncpus
        self.credit_balance = 0
        self.runq_sort = 0
        self.ncpus = 0
        self.master: int | None = None
        self.master_timer = None
        self.balance_bias: dict[int, int] = {}
        self.last_tickle_cpu = 0

        tslice = self._int_param("sched_credit_tslice_ms", DEFAULT_TSLICE_MS)
        if not TSLICE_MIN_MS <= tslice <= TSLICE_MAX_MS:
            tslice = DEFAULT_TSLICE_MS
        ratelimit = self._int_param("sched_ratelimit_us", DEFAULT_RATELIMIT_US)
        if ratelimit and not RATELIMIT_MIN_US <= ratelimit <= RATELIMIT_MAX_US:
            ratelimit = DEFAULT_RATELIMIT_US
        self.tslice_ms = tslice
        self.ticks_per_tslice = TICKS_PER_TSLICE
        self.tick_period_us = 0
        self.credits_per_tslice = 0
        self._set_tslice(tslice)
        self.ratelimit_us = 1000 * tslice if ratelimit * US > tslice * MS else ratelimit
        self.migration_delay_ns = self._int_param("vcpu_migration_delay", 0) * US
        self.tickle_one_idle = bool(env.param("tickle_one_idle_cpu", True))
        self.smt_power_savings = bool(env.param("sched_smt_power_savings", False))

        for cpu in sorted(self.cpus):
            self._init_pdata(cpu)

    def _int_param(self, name: str, default: int) -> int:
        v = self.env.param(name, default)
        try:
            return int(v)
        except (TypeError, ValueError):
            return default

    def _set_tslice(self, tslice_ms: int) -> None:
        self.tslice_ms = tslice_ms
        self.ticks_per_tslice = TICKS_PER_TSLICE if tslice_ms >= TICKS_PER_TSLICE else 1
        self.tick_period_us = tslice_ms * 1000 // self.ticks_per_tslice
        self.credits_per_tslice = CREDITS_PER_MSEC * tslice_ms
        self.credit = self.credits_per_tslice * self.ncpus

    # -- accessors ------------------------------------------------------------
    @staticmethod
    def _cu(unit: SchedUnit) -> _CUnit:
        if not isinstance(unit.priv, _CUnit):
            unit.priv = _CUnit()
        return unit.priv

    @staticmethod
    def _cd(dom: SchedDomain) -> _CDom:
        if not isinstance(dom.priv, _CDom):
            dom.priv = _CDom()
        return dom.priv

    def _pri(self, unit: SchedUnit | None) -> int:
        return PRI_IDLE if unit is None else self._cu(unit).pri

    def _runnable(self, unit: SchedUnit) -> bool:
        """Xen's vcpu_runnable: not blocked, not parked, not waiting to be moved."""
        cu = self._cu(unit)
        return unit.runnable and not cu.parked and not cu.move

    def _trace(self, event: int, *words: int) -> None:
        self.env.trace(event, *(w & _U32 for w in words))

    def _node(self, cpu: int) -> int:
        return self.env.topology(cpu)[2]

    def _siblings(self, cpu: int) -> set[int]:
        """Threads of cpu's core (cpu_sibling_mask), within the pool."""
        core, socket, _ = self.env.topology(cpu)
        return {c for c in self.cpus if self.env.topology(c)[:2] == (core, socket)} | {cpu}

    def _socket(self, cpu: int) -> set[int]:
        """pCPUs of cpu's socket (cpu_core_mask), within the pool."""
        socket = self.env.topology(cpu)[1]
        return {c for c in self.cpus if self.env.topology(c)[1] == socket} | {cpu}

    def _steps(self, unit: SchedUnit):
        """(is_soft, mask) for each balance step that applies; masks are ∩ pool."""
        soft = self.soft_cpus(unit)
        if soft is not None:
            yield True, soft
        yield False, self.hard_cpus(unit)

    # -- runqueues ------------------------------------------------------------
    def _runq_insert(self, unit: SchedUnit, cpu: int) -> None:
        cu = self._cu(unit)
        assert cu.queued_on is None, f"{unit} already queued"
        runq = self.pcpu[cpu].runq
        pos = len(runq)
        for i, other in enumerate(runq):
            if cu.pri > self._cu(other).pri:
                pos = i
                break
        if cu.yielding and pos < len(runq):
            pos += 1                 # behind one lower-priority unit, if there is one
        runq.insert(pos, unit)
        cu.queued_on = cpu

    def _runq_remove(self, unit: SchedUnit) -> None:
        cu = self._cu(unit)
        if cu.queued_on is None:
            return
        p = self.pcpu.get(cu.queued_on)
        if p is not None:
            p.runq = [u for u in p.runq if u is not unit]
        cu.queued_on = None

    def _runq_idle(self, cpu: int) -> bool:
        p = self.pcpu.get(cpu)
        return p is None or not p.runq

    def _nr_runnable(self, cpu: int) -> int:
        p = self.pcpu.get(cpu)
        if p is None:
            return 0
        return len(p.runq) + (1 if self.curr.get(cpu) is not None else 0)

    def _runq_sort(self, cpu: int) -> None:
        p = self.pcpu[cpu]
        if p.runq_sort_last == self.runq_sort:
            return
        p.runq_sort_last = self.runq_sort
        first = [u for u in p.runq if self._cu(u).pri >= PRI_UNDER]
        rest = [u for u in p.runq if self._cu(u).pri < PRI_UNDER]
        p.runq = first + rest

    # -- credit ------------------------------------------------------------
    def _burn_credits(self, unit: SchedUnit, now: int) -> None:
        cu = self._cu(unit)
        delta = now - cu.start_time
        if delta <= 0:
            return
        val = delta * CREDITS_PER_MSEC + cu.residual
        credits, cu.residual = divmod(val, MS)
        cu.credit -= credits
        # As in Xen, start_time advances by the whole credits only; the remainder
        # is in `residual` as well (so a sub-credit slice is counted again later).
        cu.start_time += credits * MS // CREDITS_PER_MSEC

    def _acct_start(self, unit: SchedUnit) -> None:
        cu = self._cu(unit)
        dom = unit.domain
        cd = self._cd(dom)
        if not cu.active:
            cu.active = True
            cd.active.insert(0, unit)
            self.weight += cd.weight
            if all(d is not dom for d in self.active_doms):
                self.active_doms.insert(0, dom)
        self._trace(TRC_CSCHED_ACCOUNT_START, unit.domid, unit.vcpu_id, len(cd.active))

    def _acct_stop(self, unit: SchedUnit) -> None:
        cu = self._cu(unit)
        dom = unit.domain
        cd = self._cd(dom)
        if not cu.active:
            return
        cu.active = False
        cd.active = [u for u in cd.active if u is not unit]
        self.weight -= cd.weight
        if not cd.active:
            self.active_doms = [d for d in self.active_doms if d is not dom]
        self._trace(TRC_CSCHED_ACCOUNT_STOP, unit.domid, unit.vcpu_id, len(cd.active))

    def _acct(self) -> None:
        """csched_acct: the master's periodic credit hand-out."""
        self.master_timer = None
        cpt = self.credits_per_tslice
        weight_total = self.weight
        credit_total = self.credit
        if self.credit_balance < 0:
            credit_total -= self.credit_balance
        if weight_total == 0:
            self.credit_balance = 0
        else:
            weight_left = weight_total
            balance = 0
            credit_xtra = False
            credit_cap = 0
            for dom in list(self.active_doms):
                cd = self._cd(dom)
                n = len(cd.active)
                if n == 0:
                    continue
                weight_left -= cd.weight * n
                # uint32 arithmetic, as in Xen
                credit_peak = n * cpt
                if self.credit_balance < 0:
                    credit_peak += (((-self.credit_balance * cd.weight * n)
                                     + (weight_total - 1)) & _U32) // weight_total
                    credit_peak &= _U32
                if cd.cap:
                    credit_cap = (cd.cap * cpt + 99) // 100
                    if credit_cap < credit_peak:
                        credit_peak = credit_cap
                    credit_cap = (credit_cap + n - 1) // n
                credit_fair = (((credit_total * cd.weight * n) & _U32)
                               + (weight_total - 1)) & _U32
                credit_fair //= weight_total
                if credit_fair < credit_peak:
                    credit_xtra = True
                else:
                    if weight_left != 0:
                        credit_total += ((((credit_fair - credit_peak) * weight_total) & _U32)
                                         + (weight_left - 1)) // weight_left
                        credit_total &= _U32
                    if credit_xtra:
                        # keep domains with spare credit at the head of the list
                        self.active_doms = [d for d in self.active_doms if d is not dom]
                        self.active_doms.insert(0, dom)
                    credit_fair = credit_peak
                credit_fair = (credit_fair + n - 1) // n

                for unit in list(cd.active):
                    cu = self._cu(unit)
                    cu.credit += credit_fair
                    credit = cu.credit
                    if credit < 0:
                        cu.pri = PRI_OVER
                        if cd.cap and credit < -credit_cap and not cu.parked:
                            self._park(unit)
                        if credit < -cpt:
                            credit = cu.credit = -cpt
                    else:
                        cu.pri = PRI_UNDER
                        if cu.parked:
                            self._unpark(unit)
                        if credit > cpt:
                            self._acct_stop(unit)
                            credit = cu.credit = credit // 2
                    balance += credit
            self.credit_balance = balance
            self.runq_sort += 1
        if self.ncpus > 0:
            self.master_timer = self.env.timer(self.env.now() + self.tslice_ms * MS, self._acct)

    def _park(self, unit: SchedUnit) -> None:
        """vcpu_pause_nosync on a unit over its cap."""
        cu = self._cu(unit)
        cu.parked = True
        if cu.queued_on is not None:
            self._runq_remove(unit)
        elif unit.running:
            self.env.tickle(unit.processor)

    def _unpark(self, unit: SchedUnit) -> None:
        """vcpu_unpause: the unit wakes while still flagged parked (so: no boost)."""
        if unit.runnable and not self._cu(unit).move:
            self._wake(unit)
        self._cu(unit).parked = False

    def _tick(self, cpu: int) -> None:
        p = self.pcpu.get(cpu)
        if p is None:
            return
        p.ticker = None
        p.tick += 1
        cur = self.curr.get(cpu)
        if cur is not None:
            self._unit_acct(cpu, cur)
        self._runq_sort(cpu)
        p.ticker = self.env.timer(self.env.now() + self.tick_period_us * US,
                                  self._ticker_fn(cpu))

    def _ticker_fn(self, cpu: int) -> Callable[[], None]:
        return lambda: self._tick(cpu)

    def _unit_acct(self, cpu: int, unit: SchedUnit) -> None:
        """csched_vcpu_acct: the tick's accounting of the running unit."""
        cu = self._cu(unit)
        if cu.pri == PRI_BOOST:
            cu.pri = PRI_UNDER
            self._trace(TRC_CSCHED_BOOST_END, unit.domid, unit.vcpu_id)
        self._burn_credits(unit, self.env.now())
        if not cu.active:
            self._acct_start(unit)
            return
        new_cpu = self._cpu_pick(unit, commit=False)
        if new_cpu != cpu:
            cu.move = True             # better placed elsewhere: move once it stops
            self.env.tickle(cpu)

    # -- domains and units -------------------------------------------------------------------------
    def insert_domain(self, dom: SchedDomain) -> None:
        self._cd(dom)
        if all(d is not dom for d in self.domains):
            self.domains.append(dom)

    def remove_domain(self, dom: SchedDomain) -> None:
        self.domains = [d for d in self.domains if d is not dom]
        self.active_doms = [d for d in self.active_doms if d is not dom]

    def insert_unit(self, unit: SchedUnit) -> None:
        cu = self._cu(unit)
        cu.pri = PRI_UNDER
        self._cd(unit.domain)
        unit.processor = self.pick_cpu(unit)
        if (cu.queued_on is None and self._runnable(unit) and not unit.running
                and unit.processor in self.pcpu and unit.processor in self.hard_cpus(unit)):
            self._runq_insert(unit, unit.processor)
            self._runq_tickle(unit)

    def remove_unit(self, unit: SchedUnit) -> None:
        cu = self._cu(unit)
        self._runq_remove(unit)
        cu.parked = False
        cu.move = False
        for cpu, cur in self.curr.items():
            if cur is unit:
                self.curr[cpu] = None
        self._acct_stop(unit)

    # -- state changes -----------------------------------------------------------------------------
    def wake(self, unit: SchedUnit) -> None:
        if not self._runnable(unit):
            return                     # parked or waiting to be moved: Xen won't wake it
        self._wake(unit)

    def _wake(self, unit: SchedUnit) -> None:
        """csched_vcpu_wake."""
        cu = self._cu(unit)
        if unit.running or cu.queued_on is not None:
            return
        if unit.processor not in self.pcpu or unit.processor not in self.hard_cpus(unit):
            if not self.hard_cpus(unit):
                return                 # nowhere it may run
            unit.processor = self.pick_cpu(unit)
        migrating, cu.migrating = cu.migrating, False
        if not migrating and cu.pri == PRI_UNDER and not cu.parked:
            self._trace(TRC_CSCHED_BOOST_START, unit.domid, unit.vcpu_id)
            cu.pri = PRI_BOOST
        self._runq_insert(unit, unit.processor)
        self._runq_tickle(unit)

    def sleep(self, unit: SchedUnit) -> None:
        cu = self._cu(unit)
        if unit.running:
            self.env.tickle(unit.processor)
        elif cu.queued_on is not None:
            self._runq_remove(unit)

    def yield_(self, unit: SchedUnit) -> None:
        unit.yielding = True
        self._cu(unit).yielding = True

    def _runq_tickle(self, new: SchedUnit) -> None:
        """__runq_tickle: whom to interrupt for a newly queued unit."""
        cpu = new.processor
        cur = self.curr.get(cpu)
        cur_pri = self._pri(cur)
        new_pri = self._cu(new).pri
        idle_mask = self.idlers & self.cpus
        mask: list[int] = []
        if cur_pri == PRI_IDLE or (not idle_mask and new_pri > cur_pri):
            mask = [cpu]
        elif idle_mask:
            for is_soft, step_mask in self._steps(new):
                cands = step_mask & idle_mask
                if not cands and is_soft:
                    continue
                if not cands and new_pri > cur_pri:
                    if cur is not None and self.hard_cpus(cur) & idle_mask:
                        self._cu(cur).move = True     # kick cur to an idle pCPU
                    mask = [cpu]
                elif cands:
                    if self.tickle_one_idle:
                        self.last_tickle_cpu = _cycle(self.last_tickle_cpu, cands)
                        mask = [self.last_tickle_cpu]
                    else:
                        mask = sorted(cands)
                if mask:
                    break
        for c in mask:
            self._trace(TRC_CSCHED_TICKLE, c)
            self.idlers.discard(c)
            self.env.tickle(c)

    # -- scheduling ------------------------------------------------------------
    def do_schedule(self, cpu: int, prev: SchedUnit | None, now: int) -> Decision:
        scurr = prev
        self._trace(TRC_CSCHED_SCHEDULE, (cpu & 0xFFFF) | ((1 if scurr is None else 0) << 24))

        if scurr is None:
            # Robustness: a unit we chose that the framework did not run.
            lost = self.curr.get(cpu)
            if lost is not None and not lost.running:
                self.curr[cpu] = None
                lcu = self._cu(lost)
                lcu.start_time -= now
                if lcu.move:
                    self.context_saved(lost)
                elif self._runnable(lost) and lcu.queued_on is None and cpu in self.pcpu:
                    self._runq_insert(lost, cpu)

        if cpu not in self.pcpu:
            # This pCPU has left the pool: hand its unit back for placement.
            if scurr is not None:
                self._burn_credits(scurr, now)
                cu = self._cu(scurr)
                cu.start_time -= now
                cu.last_ran = now
                cu.move = True
            self.curr.pop(cpu, None)
            return Decision(IDLE, NO_TIMER)

        runtime = 0
        if scurr is not None:
            cu = self._cu(scurr)
            runtime = max(0, now - cu.run_start)
            self._burn_credits(scurr, now)
            cu.start_time -= now

            if (not cu.yielding and self.ratelimit_us and self._runnable(scurr)
                    and runtime < self.ratelimit_us * US):
                cu.start_time += now
                tslice = self.ratelimit_us * US - runtime
                if runtime < MIN_TIMER_NS:
                    tslice = MIN_TIMER_NS
                self._trace(TRC_CSCHED_RATELIMIT, (scurr.vcpu_id & 0xFFFF)
                            | ((scurr.domid & 0xFFFF) << 16), runtime)
                self.curr[cpu] = scurr
                return Decision(scurr, tslice)

            if self._runnable(scurr) and cu.queued_on is None:
                self._runq_insert(scurr, cpu)
            cu.yielding = False

        tslice = self.tslice_ms * MS
        runq = self.pcpu[cpu].runq
        snext = runq[0] if runq else None
        migrated = False
        if snext is not None and self._cu(snext).pri > PRI_OVER:
            self._runq_remove(snext)
        else:
            stolen = self._load_balance(cpu, self._pri(snext))
            if stolen is not None:
                snext = stolen
                migrated = True
            elif snext is not None:
                self._runq_remove(snext)

        if snext is None:
            self.idlers.add(cpu)
        else:
            self.idlers.discard(cpu)
            self._cu(snext).start_time += now

        if snext is not scurr:
            if scurr is not None:
                self._cu(scurr).last_ran = now
            if snext is not None:
                self._cu(snext).run_start = now
        self.curr[cpu] = snext
        if snext is None:
            return Decision(IDLE, NO_TIMER)
        snext.processor = cpu
        return Decision(snext, tslice, migrated)

    def context_saved(self, unit: SchedUnit) -> None:
        cu = self._cu(unit)
        for cpu, cur in list(self.curr.items()):
            if cur is unit and not unit.running:
                self.curr[cpu] = None
        if cu.move and not unit.running:
            # vcpu_migrate: place it again, then wake it there (without boost)
            cu.move = False
            self._runq_remove(unit)
            unit.processor = self.pick_cpu(unit)
            if self._runnable(unit):
                self._wake(unit)

    def _load_balance(self, cpu: int, pri: int) -> SchedUnit | None:
        """csched_load_balance: steal a unit of priority > pri from a busy peer."""
        if cpu not in self.cpus:
            return None
        node = self._node(cpu)
        nodes = sorted({self._node(c) for c in self.cpus} | {node})
        i = nodes.index(node)
        order = nodes[i:] + nodes[:i]
        for soft_step in (True, False):
            for peer_node in order:
                workers = sorted(c for c in self.cpus if c not in self.idlers and c != cpu
                                 and self._node(c) == peer_node)
                if not workers:
                    continue
                first = _cycle(self.balance_bias.get(peer_node, 0), workers)
                j = workers.index(first)
                for peer in workers[j:] + workers[:j]:
                    if self._nr_runnable(peer) <= 1:
                        self._trace(TRC_CSCHED_STEAL_CHECK, peer, 0)
                        continue
                    self._trace(TRC_CSCHED_STEAL_CHECK, peer, 1)
                    speer = self._runq_steal(peer, cpu, pri, soft_step)
                    if speer is not None:
                        self.balance_bias[peer_node] = peer
                        return speer
        return None

    def _runq_steal(self, peer: int, cpu: int, pri: int, soft_step: bool) -> SchedUnit | None:
        if self.curr.get(peer) is None:
            return None                # an idle peer picks its own work up
        now = self.env.now()
        for unit in list(self.pcpu[peer].runq):
            cu = self._cu(unit)
            if cu.pri <= pri:
                break
            soft = self.soft_cpus(unit)
            if unit.running or (soft_step and soft is None):
                continue
            mask = soft if soft_step else self.hard_cpus(unit)
            hot = now - cu.last_ran < self.migration_delay_ns
            if not hot and cpu in mask:
                self._trace(TRC_CSCHED_STOLEN_VCPU, peer, unit.domid, unit.vcpu_id)
                self._runq_remove(unit)
                unit.processor = cpu
                return unit
        return None

    # -- placement ------------------------------------------------------------
    def pick_cpu(self, unit: SchedUnit) -> int:
        """csched_cpu_pick: also marks the unit as moving (its next wake is no boost)."""
        self._cu(unit).migrating = True
        return self._cpu_pick(unit, commit=True)

    def _cpu_pick(self, unit: SchedUnit, commit: bool) -> int:
        cpu = unit.processor
        bias_cpu: int | None = None
        if not self.hard_cpus(unit):
            self._trace(TRC_CSCHED_PICKED_CPU, unit.domid, unit.vcpu_id, cpu)
            return cpu
        for _is_soft, mask in self._steps(unit):
            cpus = set(mask)
            cpu = unit.processor if unit.processor in cpus else _cycle(unit.processor, cpus)
            idlers = set(self.idlers)
            if unit.processor == cpu and self._runq_idle(cpu):
                idlers.add(cpu)        # discount the unit itself on its own pCPU
            cpus &= idlers
            if cpu not in cpus and cpus:
                cpu = _cycle(cpu, cpus)
            cpus.discard(cpu)
            # Prefer the idle pCPU with the most idle neighbours.
            while cpus:
                nxt = _cycle(cpu, cpus)
                if self.env.topology(nxt)[1] == self.env.topology(cpu)[1]:
                    factor = 1
                    cpu_idlers = idlers & self._siblings(cpu)
                    nxt_idlers = idlers & self._siblings(nxt)
                else:
                    factor = 2
                    cpu_idlers = idlers & self._socket(cpu)
                    nxt_idlers = idlers & self._socket(nxt)
                wc, wn = len(cpu_idlers), len(nxt_idlers)
                better = wc > wn if self.smt_power_savings else wc * factor < wn
                if better:
                    nxt_idlers &= cpus
                    bias_cpu = nxt
                    cpu = _cycle(self.pcpu[nxt].idle_bias, nxt_idlers)
                    cpus -= self._siblings(cpu)
                else:
                    cpus -= nxt_idlers
            if cpu in idlers:
                break
        if commit and bias_cpu is not None and bias_cpu in self.pcpu:
            self.pcpu[bias_cpu].idle_bias = cpu
        self._trace(TRC_CSCHED_PICKED_CPU, unit.domid, unit.vcpu_id, cpu)
        return cpu

    def migrate(self, unit: SchedUnit, new_cpu: int) -> None:
        cu = self._cu(unit)
        if cu.queued_on is not None and cu.queued_on != new_cpu:
            self._runq_remove(unit)
            unit.processor = new_cpu
            if new_cpu in self.pcpu and new_cpu in self.hard_cpus(unit):
                self._runq_insert(unit, new_cpu)
                self._runq_tickle(unit)
            return
        unit.processor = new_cpu

    def affinity_changed(self, unit: SchedUnit) -> None:
        """Nothing to do here: Xen 4.10 has no affinity hook. The framework re-places the
        unit as vcpu_set_affinity does: sleep, (switch out,) pick_cpu, migrate, wake."""

    # -- parameters ------------------------------------------------------------
    def adjust(self, dom: SchedDomain, put: bool, params: dict) -> dict:
        """csched_dom_cntl. putinfo: weight 0 leaves the weight alone; cap 0xFFFF (or
        absent) leaves the cap alone, cap 0 removes it. Both are u16 in the ABI;
        credit1 checks nothing else (a cap is a percentage of one pCPU, per domain)."""
        cd = self._cd(dom)
        if put:
            weight = _uint_field(params, "weight", 0, 16)
            cap = _uint_field(params, "cap", 0xFFFF, 16)
            if weight != 0:
                if any(d is dom for d in self.active_doms):
                    n = len(cd.active)
                    self.weight += (weight - cd.weight) * n
                cd.weight = weight
            if cap != 0xFFFF:
                cd.cap = cap
        return {"weight": cd.weight, "cap": cd.cap}

    def adjust_global(self, put: bool, params: dict) -> dict:
        """csched_sys_cntl: tslice_ms in 1..1000; ratelimit_us 0 (off) or 100..500000
        and not longer than the tslice. Absent keys keep their current values."""
        if put:
            tslice = _uint_field(params, "tslice_ms", self.tslice_ms, 32)
            ratelimit = _uint_field(params, "ratelimit_us", self.ratelimit_us, 32)
            if (tslice > TSLICE_MAX_MS or tslice < TSLICE_MIN_MS
                    or (ratelimit and (ratelimit > RATELIMIT_MAX_US
                                       or ratelimit < RATELIMIT_MIN_US))
                    or ratelimit * US > tslice * MS):
                raise ValueError(f"invalid tslice_ms={tslice} ratelimit_us={ratelimit}")
            self._set_tslice(tslice)
            self.ratelimit_us = ratelimit
        return {"tslice_ms": self.tslice_ms, "ratelimit_us": self.ratelimit_us}

    # -- pCPUs ------------------------------------------------------------
    def _init_pdata(self, cpu: int) -> None:
        now = self.env.now()
        self.credit += self.credits_per_tslice
        self.ncpus += 1
        if self.ncpus == 1:
            self.master = cpu
            self.master_timer = self.env.timer(now + self.tslice_ms * MS, self._acct)
        node = self._node(cpu)
        if sum(1 for c in self.pcpu if self._node(c) == node) == 0:
            self.balance_bias[node] = cpu
        p = _CPcpu(runq_sort_last=self.runq_sort)
        self.pcpu[cpu] = p
        p.ticker = self.env.timer(now + self.tick_period_us * US, self._ticker_fn(cpu))
        self.curr.setdefault(cpu, None)
        self.idlers.add(cpu)

    def add_cpu(self, cpu: int) -> None:
        if cpu in self.pcpu:
            return
        super().add_cpu(cpu)
        self._init_pdata(cpu)
        self.env.tickle(cpu)           # let it look for work to steal

    def remove_cpu(self, cpu: int) -> None:
        p = self.pcpu.get(cpu)
        if p is None:
            return
        super().remove_cpu(cpu)
        self.credit -= self.credits_per_tslice
        self.ncpus -= 1
        self.idlers.discard(cpu)
        del self.pcpu[cpu]
        if p.ticker is not None:
            p.ticker.cancel()
        if self.master == cpu and self.ncpus > 0:
            self.master = min(self.pcpu)
        if self.ncpus == 0:
            self.master = None
            if self.master_timer is not None:
                self.master_timer.cancel()
                self.master_timer = None
        node = self._node(cpu)
        if self.balance_bias.get(node) == cpu:
            same = sorted(c for c in self.pcpu if self._node(c) == node)
            if same:
                self.balance_bias[node] = same[0]
        # Its queued units go elsewhere; the one it runs moves once it stopped.
        for unit in list(p.runq):
            cu = self._cu(unit)
            cu.queued_on = None
            unit.processor = self.pick_cpu(unit)
            if self._runnable(unit):
                self._wake(unit)
        cur = self.curr.get(cpu)
        if cur is not None:
            self._cu(cur).move = True
            self.env.tickle(cpu)

    # -- dump ------------------------------------------------------------
    def _dump_unit(self, unit: SchedUnit) -> str:
        cu = self._cu(unit)
        cd = self._cd(unit.domain)
        flags = (1 if cu.parked else 0) | (2 if cu.yielding else 0) | (4 if cu.migrating else 0)
        return (f"[{unit.domid}.{unit.vcpu_id}] pri={cu.pri} flags={flags:x} "
                f"cpu={unit.processor} credit={cu.credit} [w={cd.weight},cap={cd.cap}]")

    def dump(self) -> str:
        from .null import cpulist
        lines = [
            "info:",
            f"\tncpus              = {self.ncpus}",
            f"\tmaster             = {self.master if self.master is not None else -1}",
            f"\tcredit             = {self.credit}",
            f"\tcredit balance     = {self.credit_balance}",
            f"\tweight             = {self.weight}",
            f"\trunq_sort          = {self.runq_sort}",
            f"\tdefault-weight     = {DEFAULT_WEIGHT}",
            f"\ttslice             = {self.tslice_ms}ms",
            f"\tratelimit          = {self.ratelimit_us}us",
            f"\tcredits per msec   = {CREDITS_PER_MSEC}",
            f"\tticks per tslice   = {self.ticks_per_tslice}",
            f"\tmigration delay    = {self.migration_delay_ns // US}us",
            f"idlers: {cpulist(self.idlers)}",
            "active vcpus:",
        ]
        n = 0
        for dom in self.active_doms:
            for unit in self._cd(dom).active:
                n += 1
                lines.append(f"\t{n:3d}: {self._dump_unit(unit)}")
        for cpu in sorted(self.pcpu):
            p = self.pcpu[cpu]
            lines.append(f"CPU[{cpu:02d}] nr_run={self._nr_runnable(cpu)}, "
                         f"sort={p.runq_sort_last}")
            cur = self.curr.get(cpu)
            if cur is not None:
                lines.append(f"\trun: {self._dump_unit(cur)}")
            for i, unit in enumerate(p.runq, 1):
                lines.append(f"\t{i:3d}: {self._dump_unit(unit)}")
        return "\n".join(lines)


__all__ = ["Credit"]
