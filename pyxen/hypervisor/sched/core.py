"""The scheduling framework's interface: what a scheduler sees and what it provides.

Shaped like Xen's `struct scheduler` (xen/include/xen/sched-if.h), in Python and
without Xen's locking: the framework calls a scheduler with its lock held, one
call at a time per cpupool, and a scheduler never blocks.

A scheduler manages `SchedUnit`s (one per vCPU) of `SchedDomain`s on a set of
pCPUs (its cpupool). It never touches guests or threads: the framework runs
the unit it picks on a pCPU for at most the time it asks for, and tells it
when units wake, sleep, yield, or come and go. The same schedulers therefore
drive real guests (pCPU host threads, wall-clock time) and model vCPUs in the
simulator (virtual time, deterministic).

Time is integer nanoseconds of the environment's clock (`env.now()`); credits
in credit2 are nanoseconds too, as in Xen.
"""

from __future__ import annotations

import heapq
import itertools
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

IDLE = None          # do_schedule's "run the idle vCPU"
NO_TIMER = -1        # do_schedule's "no time limit" (the null scheduler)


@dataclass(eq=False)
class SchedDomain:
    domid: int
    units: list[SchedUnit] = field(default_factory=list)
    priv: Any = None                 # the scheduler's per-domain data

    def __repr__(self) -> str:
        return f"d{self.domid}"


@dataclass(eq=False)
class SchedUnit:
    """A vCPU as the scheduler sees it."""
    domain: SchedDomain
    vcpu_id: int
    processor: int = 0               # the pCPU it runs on / last ran on / is queued for
    hard_affinity: frozenset[int] = frozenset()   # empty: every pCPU of the pool
    soft_affinity: frozenset[int] = frozenset()   # empty: no preference
    runnable: bool = False           # wants to run (not blocked, offline or paused)
    running: bool = False            # is on a pCPU right now (framework-maintained)
    yielding: bool = False           # asked to yield (SCHEDOP_yield) since it last ran
    priv: Any = None                 # the scheduler's per-unit data

    @property
    def domid(self) -> int:
        return self.domain.domid

    def __repr__(self) -> str:
        return f"d{self.domain.domid}v{self.vcpu_id}"


@dataclass
class Decision:
    """What a pCPU runs next: `unit` (IDLE for the idle vCPU) for at most `time_ns`
    (NO_TIMER: until something else asks for a reschedule)."""
    unit: SchedUnit | None
    time_ns: int
    migrated: bool = False           # the unit came from another pCPU


class SchedEnv(Protocol):
    """What the framework offers a scheduler.

    Also `tracing`: False while `trace()` records nothing, so a scheduler may skip
    building trace payloads (credit2 looks at it before each record; it may change
    at any time, e.g. when a trace recording starts)."""

    tracing: bool

    def now(self) -> int:
        """Current time, ns."""

    def timer(self, deadline_ns: int, fn: Callable[[], None]) -> Any:
        """Call fn() (with the scheduler's lock held) at deadline; returns a handle
        with .cancel()."""

    def tickle(self, cpu: int) -> None:
        """Ask pCPU `cpu` to call do_schedule soon (Xen's SCHEDULE_SOFTIRQ)."""

    def trace(self, event: int, *words: int) -> None:
        """Record a trace event: xentrace id and up to 7 u32 data words."""

    def topology(self, cpu: int) -> tuple[int, int, int]:
        """(core, socket, node) of a pCPU (for credit2's runqueue arrangement)."""

    def param(self, name: str, default: Any) -> Any:
        """A boot parameter (e.g. credit2_runqueue, sched_ratelimit_us)."""


class Scheduler(ABC):
    """One scheduler instance serves one cpupool."""

    name: str = ""              # "credit", "credit2", "null" (sched= boot option)
    sched_id: int = 0           # XEN_SCHEDULER_*

    def __init__(self, env: SchedEnv, cpus: frozenset[int]):
        self.env = env
        self.cpus = set(cpus)   # the pool's pCPUs

    # -- domains and units ------------------------------------------------------------
    @abstractmethod
    def insert_domain(self, dom: SchedDomain) -> None: ...

    @abstractmethod
    def remove_domain(self, dom: SchedDomain) -> None: ...

    @abstractmethod
    def insert_unit(self, unit: SchedUnit) -> None:
        """A new unit (offline/not runnable until woken); set unit.processor."""

    @abstractmethod
    def remove_unit(self, unit: SchedUnit) -> None:
        """The unit leaves (domain destroyed or moved to another pool); it is not
        running when this is called."""

    # -- state changes --------------------------------------------------------------------
    @abstractmethod
    def wake(self, unit: SchedUnit) -> None:
        """The unit became runnable (it is not running): queue it, tickle a pCPU."""

    @abstractmethod
    def sleep(self, unit: SchedUnit) -> None:
        """The unit is no longer runnable (it may be running: tickle its pCPU)."""

    def yield_(self, unit: SchedUnit) -> None:
        unit.yielding = True

    @abstractmethod
    def do_schedule(self, cpu: int, prev: SchedUnit | None, now: int) -> Decision:
        """pCPU `cpu` reschedules; `prev` is what ran on it (None: idle). Account
        prev's run time up to `now` and choose what runs next."""

    def context_saved(self, unit: SchedUnit) -> None:  # noqa: B027 - optional hook
        """`unit` has stopped running on its pCPU (after do_schedule switched away)."""

    @abstractmethod
    def pick_cpu(self, unit: SchedUnit) -> int:
        """The pCPU a unit should move to (on wake, affinity change, pool move)."""

    def migrate(self, unit: SchedUnit, new_cpu: int) -> None:
        unit.processor = new_cpu

    # -- parameters -------------------------------------------------------------------------
    def adjust(self, dom: SchedDomain, put: bool, params: dict) -> dict:
        """XEN_DOMCTL_scheduler_op: get (put=False) or set the domain's parameters
        (weight, cap, ...). Returns the current values; raises ValueError (→ -EINVAL)."""
        raise NotImplementedError

    def adjust_global(self, put: bool, params: dict) -> dict:
        """XEN_SYSCTL_scheduler_op: the pool's parameters (ratelimit_us, tslice_ms)."""
        raise NotImplementedError

    def affinity_changed(self, unit: SchedUnit) -> None:  # noqa: B027 - optional hook
        """Hard or soft affinity changed (the framework has updated the unit)."""

    # -- pCPUs ----------------------------------------------------------------------------
    def add_cpu(self, cpu: int) -> None:
        self.cpus.add(cpu)

    def remove_cpu(self, cpu: int) -> None:
        self.cpus.discard(cpu)

    def dump(self) -> str:
        return f"{self.name}: {len(self.cpus)} pCPUs"

    # -- helpers every scheduler uses ------------------------------------------------------
    def hard_cpus(self, unit: SchedUnit) -> frozenset[int]:
        """Effective hard affinity: hard ∩ pool (the whole pool when unset)."""
        pool = frozenset(self.cpus)
        return pool & unit.hard_affinity if unit.hard_affinity else pool

    def soft_cpus(self, unit: SchedUnit) -> frozenset[int] | None:
        """Effective soft affinity, or None when it does not count: soft ∩ hard ∩ pool,
        only if non-empty and a proper subset of hard ∩ pool (Xen's has_soft_affinity)."""
        if not unit.soft_affinity:
            return None
        hard = self.hard_cpus(unit)
        soft = hard & unit.soft_affinity
        if not soft or soft == hard:
            return None
        return soft


# -- a deterministic environment for unit tests --------------------------------------------
class ManualEnv:
    """A SchedEnv with a clock the test advances; timers fire in deadline order as it
    advances; tickles and trace records are collected for inspection."""

    tracing = True

    def __init__(self, params: dict | None = None, topology: Callable[[int], tuple] | None = None):
        self.t = 0
        self.params = dict(params or {})
        self._topology = topology or (lambda cpu: (cpu, 0, 0))
        self._timers: list = []
        self._seq = itertools.count()
        self.tickled: list[int] = []
        self.records: list[tuple[int, int, tuple[int, ...]]] = []

    def now(self) -> int:
        return self.t

    def timer(self, deadline_ns: int, fn: Callable[[], None]):
        handle = _ManualTimer(deadline_ns, fn)
        heapq.heappush(self._timers, (deadline_ns, next(self._seq), handle))
        return handle

    def tickle(self, cpu: int) -> None:
        self.tickled.append(cpu)

    def trace(self, event: int, *words: int) -> None:
        self.records.append((self.t, event, tuple(w & 0xFFFF_FFFF for w in words)))

    def topology(self, cpu: int) -> tuple[int, int, int]:
        return self._topology(cpu)

    def param(self, name: str, default: Any) -> Any:
        return self.params.get(name, default)

    def advance(self, to_ns: int) -> None:
        """Move the clock to `to_ns`, firing due timers on the way."""
        while self._timers and self._timers[0][0] <= to_ns:
            deadline, _, handle = heapq.heappop(self._timers)
            if handle.cancelled:
                continue
            self.t = max(self.t, deadline)
            handle.fn()
        self.t = max(self.t, to_ns)


class _ManualTimer:
    __slots__ = ("deadline", "fn", "cancelled")

    def __init__(self, deadline: int, fn):
        self.deadline = deadline
        self.fn = fn
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True
