"""Scheduling real vCPUs: pCPUs as host threads, cpupools, and the schedulers' environment.

A host has `nr_cpus` pCPUs (boot parameter; default the machine's cores, more
is allowed). Each pCPU is a host thread running Xen's scheduling loop: ask its
pool's scheduler what to run (`do_schedule`), run that vCPU's guest code until
the time limit passes or something asks for a reschedule (a tickle, the vCPU
blocking, a pause), account the time, repeat. An idle pCPU sleeps until it is
tickled or its timer expires. Cpupools partition the pCPUs; each has its own
scheduler instance (Pool-0 gets `sched=`).

Locking: a pool's lock is held around every call into its scheduler (Xen's
scheduler lock). The vCPU's own state lock may be held while taking a pool
lock, never the other way round.
"""

from __future__ import annotations

import threading
import time
import traceback
from typing import TYPE_CHECKING, Any

from ...abi.constants import Errno
from ...arch.backend import ExitReason
from ..log import Level
from . import registry
from .core import NO_TIMER, SchedDomain, Scheduler, SchedUnit
from .trace import DOMID_IDLE, TRC_SCHED_SLEEP, TRC_SCHED_SWITCH, TRC_SCHED_WAKE

if TYPE_CHECKING:
    from ..domain import Domain
    from ..hypervisor import Hypervisor
    from ..vcpu import Vcpu


# Which pCPU a trace record belongs to: a pCPU thread's own number (`cpu`), else, while
# the host calls a scheduler for a unit from another thread, that unit's pCPU (`hint`).
_here = threading.local()


def _trace_cpu() -> int:
    cpu = getattr(_here, "cpu", None)
    if cpu is None:
        cpu = getattr(_here, "hint", None)
    return 0 if cpu is None else cpu


class SchedError(ValueError):
    """A scheduling request Xen refuses: the message, and the errno it returns."""

    def __init__(self, message: str, errno: Errno = Errno.EINVAL):
        super().__init__(message)
        self.errno = errno


def scheduler_class(name: str) -> type[Scheduler]:
    try:
        return registry.get(name)
    except registry.SchedulerUnavailable as e:
        raise SchedError(str(e)) from None


class Pool:
    """A cpupool: its pCPUs, its scheduler instance, its domains' scheduling data.
    (Pool names are the toolstack's, kept in xenstore as libxl does.)"""

    def __init__(self, host: SchedulerHost, poolid: int, sched_name: str, cpus: set[int]):
        self.host = host
        self.poolid = poolid
        self.lock = threading.RLock()
        self.cpus = set(cpus)
        self.env = _WallEnv(host, self)
        self.sched: Scheduler = scheduler_class(sched_name)(self.env, frozenset(cpus))
        self.domains: dict[int, SchedDomain] = {}


class _WallEnv:
    """SchedEnv for real vCPUs: hypervisor system time, hypervisor timers."""

    @property
    def tracing(self) -> bool:
        """Whether records are kept: only while a trace recording runs (tbuf_op)."""
        return self._host.hv.tbuf.on

    def __init__(self, host: SchedulerHost, pool: Pool):
        self._host = host
        self._pool = pool

    def now(self) -> int:
        return self._host.hv.now()

    def timer(self, deadline_ns: int, fn) -> Any:
        pool = self._pool

        def fire() -> None:
            with pool.lock:
                fn()
        t = self._host.hv.timers.new(fire, f"sched pool {pool.poolid}")
        t.set(deadline_ns)
        return _TimerHandle(t)

    def tickle(self, cpu: int) -> None:
        self._host.tickle(cpu)

    def trace(self, event: int, *words: int) -> None:
        self._host.trace(event, words)

    def topology(self, cpu: int) -> tuple[int, int, int]:
        return (cpu, 0, 0)          # one socket, one node; a core per pCPU

    def param(self, name: str, default: Any) -> Any:
        return self._host.hv.params.get(name, default)


class _TimerHandle:
    __slots__ = ("_t",)

    def __init__(self, t):
        self._t = t

    def cancel(self) -> None:
        self._t.stop()


class Pcpu:
    def __init__(self, host: SchedulerHost, cpu: int, pool: Pool | None):
        self.host = host
        self.cpu = cpu
        self.pool = pool
        self.cond = threading.Condition(threading.Lock())
        self.tickled = False
        self.current: SchedUnit | None = None     # the unit whose guest code it runs
        self.thread: threading.Thread | None = None
        self.stopping = False
        self.prev: SchedUnit | None = None        # the unit the last schedule() picked
        self.idle_ns = 0
        self._leave: threading.Event | None = None   # asked to leave its pool

    def leave(self, done: threading.Event) -> None:
        """Leave the pool between two runs (the pCPU's own thread does it)."""
        with self.cond:
            self._leave = done
        self.tickle()

    def start(self) -> None:
        self.thread = threading.Thread(target=self._loop, name=f"pcpu{self.cpu}", daemon=True)
        self.thread.start()

    def tickle(self) -> None:
        with self.cond:
            self.tickled = True
            unit = self.current
            self.cond.notify()
        if self.host.vdriver is not None:
            self.host.vdriver.poke()
        if unit is not None:
            v = unit.vcpu
            if v.backend is not None:
                v.backend.kick()            # back to this pCPU's scheduling loop

    # -- the scheduling loop --------------------------------------------------------------
    def _loop(self) -> None:
        _here.cpu = self.cpu
        while not self.stopping:
            if self.pool is None:            # not in any pool: a free pCPU
                with self.cond:
                    self.cond.wait_for(lambda: self.tickled or self.stopping)
                    self.tickled = False
                continue
            picked = self.schedule()
            if picked is None:
                continue
            unit, deadline = picked
            if unit is None:
                self._idle(deadline)
            else:
                self._run(unit, deadline)

    def schedule(self) -> tuple[SchedUnit | None, int | None] | None:
        """One pass of Xen's schedule() on this pCPU: switch out `prev` if another unit
        (or idle) is picked, and return (unit or None for idle, deadline or None), or
        None if the pCPU just left its pool. Called by the pCPU's own thread (or the
        virtual-time driver standing in for it)."""
        pool = self.pool
        prev = self.prev
        hv = self.host.hv
        with pool.lock:
            with self.cond:
                self.tickled = False
                leave, self._leave = self._leave, None
            if leave is not None:
                unit = None
            else:
                now = hv.now()
                try:
                    decision = pool.sched.do_schedule(self.cpu, prev, now)
                except Exception:  # noqa: BLE001 - a scheduler bug must not kill the pCPU
                    hv.log.printk(Level.ERR, f"BUG: {pool.sched.name} do_schedule on "
                                  f"pCPU {self.cpu}:\n" + traceback.format_exc().rstrip())
                    decision = None
                unit = decision.unit if decision else None
                if unit is not None and (not unit.runnable
                                         or (unit.running and unit is not prev)):
                    unit = None              # a stale pick: run idle and look again
            if prev is not None and prev is not unit:
                prev.running = False
                pool.sched.context_saved(prev)
                self._after_switch_out(pool, prev)
            if leave is not None:
                pool.cpus.discard(self.cpu)
                pool.sched.remove_cpu(self.cpu)
                self.pool = None
            else:
                if unit is not None:
                    unit.running = True
                    unit.processor = self.cpu
                    unit.yielding = False
                time_ns = decision.time_ns if decision else 1_000_000
                if hv.tbuf.on and unit is not prev:
                    self._trace_switch(prev, unit)
        self.prev = unit
        if prev is not None and prev is not unit:
            prev.vcpu.descheduled()          # (takes the vCPU's lock: not under a pool's)
        if leave is not None:
            leave.set()
            return None
        return unit, (None if time_ns == NO_TIMER else now + max(time_ns, 0))

    def _trace_switch(self, prev: SchedUnit | None, nxt: SchedUnit | None) -> None:
        """TRC_SCHED_SWITCH {prev dom, prev vcpu, next dom, next vcpu} (idle: its vCPU)."""
        pd, pv = (DOMID_IDLE, self.cpu) if prev is None else (prev.domid, prev.vcpu_id)
        nd, nv = (DOMID_IDLE, self.cpu) if nxt is None else (nxt.domid, nxt.vcpu_id)
        self.host.hv.tbuf.trace(self.cpu, TRC_SCHED_SWITCH, (pd, pv, nd, nv))

    def _after_switch_out(self, pool: Pool, unit: SchedUnit) -> None:
        if getattr(unit, "pending_migrate", False):
            self.host._replace(pool, unit)

    def _idle(self, deadline: int | None) -> None:
        hv = self.host.hv
        t0 = hv.now()
        with self.cond:
            while not self.tickled and not self.stopping:
                if deadline is None:
                    self.cond.wait()
                else:
                    left = deadline - hv.now()
                    if left <= 0:
                        break
                    self.cond.wait(left / 1e9)
        self.idle_ns += hv.now() - t0

    def _run(self, unit: SchedUnit, deadline: int | None, round_end: int | None = None) -> None:
        v: Vcpu = unit.vcpu
        with self.cond:
            if self.tickled:                 # a tickle came while we decided
                return
            self.current = unit
        try:
            reason = v.run_on_pcpu(deadline, round_end)
        finally:
            with self.cond:
                self.current = None
        v.after_run(reason)


class SchedulerHost:
    """The pCPUs and cpupools of a host, and the glue between vCPUs and schedulers.

    The cpupool and affinity operations have Xen's semantics and error numbers
    (sysctl cpupool_op, domctl scheduler_op / setvcpuaffinity): they raise
    SchedError(errno) and ops/ turns that into the hypercall's return value.
    """

    def __init__(self, hv: Hypervisor):
        self.hv = hv
        self.nr_cpus = max(1, int(hv.params.get("nr_cpus", 1)))
        self.pools: dict[int, Pool] = {}
        self._lock = threading.RLock()       # pool membership (Xen's cpupool_lock)
        self.tb = hv.tbuf                    # the trace buffers (records when tb.on)
        pool0 = Pool(self, 0, hv.params.get("sched", "credit"), set(range(self.nr_cpus)))
        self.pools[0] = pool0
        self.pcpus = [Pcpu(self, cpu, pool0) for cpu in range(self.nr_cpus)]
        self._started = False
        # clock=virtual: one driver thread steps all pCPUs in virtual time (vtime.py).
        self.vdriver = None
        if hv.vclock is not None:
            from .vtime import VirtualTimeDriver
            self.vdriver = VirtualTimeDriver(self)

    def start(self) -> None:
        with self._lock:
            if not self._started:
                self._started = True
                if self.vdriver is not None:
                    self.vdriver.start()
                    return
                for p in self.pcpus:
                    p.start()

    def close(self) -> None:
        if self.vdriver is not None:
            self.vdriver.close()
        for p in self.pcpus:
            p.stopping = True
            with p.cond:
                p.cond.notify()
        for p in self.pcpus:
            if p.thread is not None:
                p.thread.join(2.0)

    # -- pools --------------------------------------------------------------------------
    def pool_of(self, d: Domain) -> Pool:
        return self.pools[d.cpupool]

    @property
    def sched_id(self) -> int:
        return self.pools[0].sched.sched_id

    def free_cpus(self) -> set[int]:
        return {p.cpu for p in self.pcpus if p.pool is None}

    def pool_create(self, poolid: int | None, sched_id: int) -> int:
        """A new, empty pool (poolid None: the next free id after the highest)."""
        with self._lock:
            if poolid is None:
                poolid = max(self.pools) + 1
            elif poolid in self.pools:
                raise SchedError("pool id in use", Errno.EEXIST)
            name = next((n for n, entry in registry.SCHEDULERS.items()
                         if _sched_id_of(n) == sched_id), None)
            if name is None:
                raise SchedError(f"no scheduler with id {sched_id}", Errno.ENOENT)
            self.pools[poolid] = Pool(self, poolid, name, set())
            return poolid

    def pool_destroy(self, poolid: int) -> None:
        with self._lock:
            pool = self._pool(poolid)
            if self.pool_domains(pool) or pool.cpus:
                raise SchedError("pool has domains or pCPUs", Errno.EBUSY)
            del self.pools[poolid]

    def pool_info(self, poolid: int) -> tuple[int, int, int, set[int]]:
        """(id, sched_id, n_dom, cpus) of the first pool whose id is >= poolid."""
        with self._lock:
            ids = sorted(i for i in self.pools if i >= poolid)
            if not ids:
                raise SchedError("no such pool", Errno.ENOENT)
            pool = self.pools[ids[0]]
            return pool.poolid, pool.sched.sched_id, len(self.pool_domains(pool)), set(pool.cpus)

    def pool_domains(self, pool: Pool) -> list[Domain]:
        return [d for d in list(self.hv.domains.values()) if d.cpupool == pool.poolid]

    def pool_add_cpu(self, poolid: int, cpu: int | None) -> None:
        """Give a free pCPU (None: the first free one) to a pool."""
        with self._lock:
            free = self.free_cpus()
            if cpu is None:
                cpu = min(free) if free else self.nr_cpus
            if cpu >= self.nr_cpus:
                raise SchedError(f"no pCPU {cpu}", Errno.EINVAL)
            if cpu not in free:
                raise SchedError(f"pCPU {cpu} is in a pool", Errno.EBUSY)
            pool = self._pool(poolid)
            pcpu = self.pcpus[cpu]
            with pool.lock:
                pool.cpus.add(cpu)
                pool.sched.add_cpu(cpu)
                pcpu.pool = pool
            pcpu.tickle()

    def pool_remove_cpu(self, poolid: int, cpu: int | None) -> None:
        """Take a pCPU (None: the pool's last) out of a pool; it becomes free."""
        with self._lock:
            pool = self._pool(poolid)
            if cpu is None:
                cpu = max(pool.cpus) if pool.cpus else self.nr_cpus
            if cpu >= self.nr_cpus:
                raise SchedError(f"no pCPU {cpu}", Errno.EINVAL)
            if cpu not in pool.cpus:
                return                        # Xen: nothing to do, success
            if len(pool.cpus) == 1 and any(not d.is_dying for d in self.pool_domains(pool)):
                raise SchedError("the pool's last pCPU and it has domains", Errno.EBUSY)
            pcpu = self.pcpus[cpu]
            if not self._started:             # nothing can run on it yet
                with pool.lock:
                    pool.cpus.discard(cpu)
                    pool.sched.remove_cpu(cpu)
                    pcpu.pool = None
                return
            # The pCPU's own thread (or the virtual-time driver) leaves the pool
            # between two runs (nothing of the pool runs on it afterwards); wait.
            done = threading.Event()
            pcpu.leave(done)
            if not done.wait(10.0):
                raise SchedError(f"pCPU {cpu} did not leave its pool", Errno.EBUSY)

    def move_domain(self, d: Domain, poolid: int) -> None:
        """cpupool-migrate (Xen's sched_move_domain): the domain's vCPUs leave the old
        pool's scheduler once off their pCPUs and join the new one, with its defaults."""
        with self._lock:
            if poolid == d.cpupool:
                return
            new = self.pools.get(poolid)
            if new is None or not new.cpus:
                raise SchedError("no such pool, or it has no pCPUs", Errno.ENOENT)
            old = self.pool_of(d)
            d.pause()
            try:
                self._wait_descheduled(d)
                with old.lock:
                    sd = old.domains.pop(d.domid, None)
                    if sd is not None:
                        for unit in sd.units:
                            if unit.runnable:
                                unit.runnable = False
                                old.sched.sleep(unit)
                            old.sched.remove_unit(unit)
                        old.sched.remove_domain(sd)
                d.cpupool = poolid
                if sd is not None:
                    with new.lock:
                        new.domains[d.domid] = sd
                        sd.priv = None
                        new.sched.insert_domain(sd)
                        for unit in sd.units:
                            unit.priv = None
                            if unit.hard_affinity and not unit.hard_affinity & new.cpus:
                                # Xen resets an affinity the new pool cannot honour
                                unit.hard_affinity = frozenset()
                                unit.soft_affinity = frozenset()
                            new.sched.insert_unit(unit)
            finally:
                d.unpause()

    def _wait_descheduled(self, d: Domain, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout      # wall time, whatever the clock mode
        while any(v.unit is not None and v.unit.running for v in d.vcpus):
            if time.monotonic() > deadline:
                raise SchedError(f"{d}: vCPUs did not leave their pCPUs", Errno.EBUSY)
            for v in d.vcpus:
                if v.unit is not None and v.unit.running:
                    self.tickle(v.unit.processor)
            threading.Event().wait(0.001)

    def _pool(self, poolid: int) -> Pool:
        pool = self.pools.get(poolid)
        if pool is None:
            raise SchedError("no such pool", Errno.ENOENT)
        return pool

    # -- scheduler parameters --------------------------------------------------------------
    def adjust(self, d: Domain, put: bool, params: dict) -> dict:
        pool = self.pool_of(d)
        with pool.lock:
            sd = pool.domains.get(d.domid)
            if sd is None:
                raise SchedError(f"{d} is not scheduled", Errno.ESRCH)
            try:
                return pool.sched.adjust(sd, put, params)
            except ValueError as e:
                raise SchedError(str(e), Errno.EINVAL) from None

    def adjust_global(self, poolid: int, put: bool, params: dict) -> dict:
        pool = self._pool(poolid)
        with pool.lock:
            try:
                return pool.sched.adjust_global(put, params)
            except ValueError as e:
                raise SchedError(str(e), Errno.EINVAL) from None

    def set_affinity(self, v: Vcpu, hard: frozenset[int] | None,
                     soft: frozenset[int] | None) -> None:
        """New hard and/or soft affinity (None: unchanged); empty means all pCPUs.
        Xen's vcpu_set_affinity + vcpu_migrate: a queued vCPU is re-placed now, a
        running one when it next leaves its pCPU."""
        unit = v.unit
        if unit is None:
            raise SchedError(f"{v} is not scheduled", Errno.EINVAL)
        pool = self.pool_of(v.domain)
        with pool.lock:
            if hard is not None:
                hard = frozenset(hard) & frozenset(range(self.nr_cpus))
                if not hard & pool.cpus:
                    raise SchedError("no pCPU of the pool in the hard affinity",
                                     Errno.EINVAL)
                unit.hard_affinity = frozenset() if hard >= pool.cpus else hard
            if soft is not None:
                unit.soft_affinity = frozenset(soft)
            pool.sched.affinity_changed(unit)
            # Off the runqueues until re-placed (Xen's _VPF_migrating + sleep).
            unit.pending_migrate = True
            if unit.runnable:
                unit.runnable = False
                pool.sched.sleep(unit)
            if unit.running:
                self.tickle(unit.processor)   # re-placed when it leaves that pCPU
            else:
                self._replace(pool, unit)

    def _replace(self, pool: Pool, unit: SchedUnit) -> None:
        """vcpu_migrate's second half (pool lock held, unit not on a pCPU)."""
        unit.pending_migrate = False
        pool.sched.migrate(unit, pool.sched.pick_cpu(unit))
        v = unit.vcpu
        if v.runnable() and not v.domain.is_dying and not unit.runnable:
            unit.runnable = True
            pool.sched.wake(unit)

    def effective_affinity(self, v: Vcpu) -> tuple[set[int], set[int]]:
        """(hard, soft) as Xen reports them: hard within the host, soft as set."""
        unit = v.unit
        every = set(range(self.nr_cpus))
        if unit is None:
            return every, every
        return (set(unit.hard_affinity) or every, set(unit.soft_affinity) or every)

    # -- domains and vCPUs ------------------------------------------------------------------
    def add_domain(self, d: Domain) -> None:
        """A new domain joins its pool's scheduler (Xen's sched_init_domain): it has
        scheduling parameters before it has vCPUs."""
        pool = self.pool_of(d)
        with pool.lock:
            if d.domid not in pool.domains:
                sd = pool.domains[d.domid] = SchedDomain(d.domid)
                pool.sched.insert_domain(sd)

    def add_vcpu(self, v: Vcpu) -> None:
        d = v.domain
        self.add_domain(d)
        pool = self.pool_of(d)
        with pool.lock:
            sd = pool.domains[d.domid]
            unit = SchedUnit(sd, v.vcpu_id)
            unit.vcpu = v
            unit.pending_migrate = False
            sd.units.append(unit)
            v.unit = unit
            pool.sched.insert_unit(unit)
        self.start()

    def remove_domain(self, d: Domain) -> None:
        pool = self.pool_of(d)
        with pool.lock:
            sd = pool.domains.pop(d.domid, None)
            if sd is None:
                return
            for unit in sd.units:
                if unit.runnable:
                    unit.runnable = False
                    pool.sched.sleep(unit)
                pool.sched.remove_unit(unit)
            pool.sched.remove_domain(sd)

    def set_runnable(self, v: Vcpu, runnable: bool) -> None:
        """The vCPU became runnable or stopped being so (its state lock is held)."""
        unit = v.unit
        if unit is None or unit.runnable == runnable:
            return
        pool = self.pool_of(v.domain)
        with pool.lock:
            if unit.pending_migrate or unit.domain.domid not in pool.domains:
                return                        # re-read when it is re-placed
            unit.runnable = runnable
            if self.tb.on:
                self._set_runnable_traced(pool, unit, runnable)
            elif runnable:
                pool.sched.wake(unit)
            else:
                pool.sched.sleep(unit)

    def _set_runnable_traced(self, pool: Pool, unit: SchedUnit, runnable: bool) -> None:
        """set_runnable's scheduler call with TRC_SCHED_WAKE/SLEEP {dom, vcpu}; the
        scheduler's own records go to the unit's pCPU unless a pCPU thread calls."""
        hint = getattr(_here, "hint", None)
        _here.hint = unit.processor
        try:
            self.tb.trace(_trace_cpu(), TRC_SCHED_WAKE if runnable else TRC_SCHED_SLEEP,
                          (unit.domid, unit.vcpu_id))
            if runnable:
                pool.sched.wake(unit)
            else:
                pool.sched.sleep(unit)
        finally:
            _here.hint = hint

    def yield_(self, v: Vcpu) -> None:
        unit = v.unit
        if unit is not None:
            pool = self.pool_of(v.domain)
            with pool.lock:
                pool.sched.yield_(unit)

    def tickle(self, cpu: int) -> None:
        if 0 <= cpu < len(self.pcpus):
            self.pcpus[cpu].tickle()

    def trace(self, event: int, words) -> None:
        """A scheduler's record: into the trace buffer of the pCPU it belongs to."""
        if self.tb.on:
            self.tb.trace(_trace_cpu(), event, words)

    # -- what toolstack queries see ----------------------------------------------------------
    def processor_of(self, v: Vcpu) -> int:
        return v.unit.processor if v.unit is not None else 0


def _sched_id_of(name: str) -> int | None:
    try:
        return registry.get(name).sched_id
    except registry.SchedulerUnavailable:
        return None


__all__ = ["SchedulerHost", "SchedError", "Pool", "Pcpu", "ExitReason"]
