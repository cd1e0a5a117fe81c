"""The scheduler simulator: model vCPUs on model pCPUs, in deterministic virtual time.

The simulator drives the same `Scheduler` classes as the real host (see
core.py) but instead of guests it runs *model* vCPUs whose behaviour is a
workload (always busy, periodic, bursty, idle), on pCPUs that only exist as
numbers with a topology. Time is integer nanoseconds of a virtual clock that
jumps from event to event, so a minute of a 64-pCPU host takes seconds, and the
same scenario with the same seed gives identical statistics and an identical
trace file, byte for byte.

What it does, like Xen's schedule.c does for real vCPUs: it implements the
SchedEnv (`now`, `timer`, `tickle`, `trace`, `topology`, `param`), calls a
pCPU's `do_schedule` when the pCPU is tickled or its time slice ends, switches
units, keeps every unit's runstate (running / runnable / blocked / offline),
and writes the generic scheduler trace records a xentrace file has (runstate
changes, SWITCH / SWITCH_INFPREV / SWITCH_INFNEXT / SWITCH_INFCONT /
CONTINUE_RUNNING, WAKE / SLEEP / BLOCK / YIELD, DOM_ADD, ADJDOM) next to
whatever the scheduler traces itself. A trace record goes to the buffer of the
pCPU whose code would have produced it on a real host: the pCPU that
reschedules, the unit's pCPU for its wake-ups and blocks, the pCPU a timer
was armed from, the pool's first pCPU for toolstack actions.

Framework conventions (what a host running real vCPUs must do too):
- a unit that stops being runnable (blocks, is paused, has its affinity
  changed) gets `sleep()`; a unit that becomes runnable while not running gets
  `wake()`;
- the unit a pCPU picks gets `processor = cpu`, `running = True` and
  `yielding = False`; `context_saved(prev)` follows every switch;
- an affinity change is Xen's sleep / `pick_cpu` / `migrate` / wake sequence
  (after the unit has been switched out if it was running);
- in strict mode (the default) a pick that is not runnable, already running
  elsewhere, or outside the unit's hard affinity raises SimError.

Scenario file (TOML)
--------------------
Durations are integers with a unit suffix on the key: `_ns`, `_us`, `_ms`
or `_s` (`duration_ms = 2000`, `period_us = 500`). pCPU lists are strings in
xl syntax ("0-3,6", "all", "^2" removes, "node:1" means the pCPUs of node 1)
or arrays of integers.

    name = "weights"                 # optional
    duration_ms = 2000               # virtual time to simulate (required)
    seed = 1                         # randomness of workloads (default 0)

    [host]
    pcpus = 8                        # required
    threads_per_core = 2             # SMT siblings per core (default 1)
    cores_per_socket = 4             # default: every core in one socket
    sockets_per_node = 1             # default 1

    [boot]                           # boot parameters the schedulers read with env.param:
    sched_ratelimit_us = 1000        # sched_ratelimit_us, credit2_runqueue, credit2_cap_period_ms,
    credit2_runqueue = "socket"      # sched_credit2_migrate_resist, sched_credit_tslice_ms, ...
    sched = "credit2"                # the scheduler of a pool that names none

    [[pools]]                        # default: "Pool-0", every pCPU, boot.sched (else credit2)
    name = "Pool-0"
    scheduler = "credit2"            # credit2 | null | credit (pyxen.hypervisor.sched.registry)
    cpus = "0-7"
    params = { ratelimit_us = 500 }  # given to scheduler.adjust_global(put=True)

    [[domains]]
    name = "web"
    pool = "Pool-0"                  # default: the first pool
    weight = 512                     # given to scheduler.adjust(put=True) with cap;
    cap = 50                         #   left out: the scheduler's defaults
    count = 1                        # N > 1: N such domains named web-0 .. web-(N-1)
    vcpus = 2                        # N vCPUs like the defaults below, or an array of
    hard_affinity = "all"            #   tables, one per vCPU, each overriding the
    soft_affinity = "0-3"            #   domain's hard_affinity / soft_affinity / workload
    workload = { type = "hog" }

    [[events]]                       # changes while the scenario runs
    at_ms = 500
    action = "adjust"                # adjust: weight / cap (scheduler.adjust)
    domain = "web"                   # pin: vcpu = N or "all", hard / soft ("-": unchanged)
    cap = 0                          # pause, unpause: the whole domain
                                     # pool_params: pool = NAME, params = {...}
                                     # move: domain = NAME, pool = NAME (xl
                                     #   cpupool-migrate; the new scheduler's
                                     #   defaults apply there)

Workloads (`type`):
- `hog`: always runnable. `yield_us = N`: calls SCHEDOP_yield after every N
  µs of run time (a spinning guest).
- `periodic`: a job of `run_us` CPU time released every `period_us` (phase
  `phase_us`, default random within the period). Measures wake-up to run
  latency, response time (release to job done) and deadline misses (response
  longer than the period); a job released before the last one is done is an
  overrun and queues.
- `bursty`: bursts of CPU time (mean `run_us`) separated by sleeps (mean
  `sleep_us`), `distribution = "exp"` (default) or `"fixed"`; `start = "run"`
  (default) or `"sleep"`.
- `idle`: never runnable (blocked throughout).

Run one with `python -m pyxen.toolstack.xentrace_tools simulate FILE`.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import time
import tomllib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from heapq import heappop, heappush
from pathlib import Path
from typing import Any, BinaryIO

from . import registry
from .core import SchedDomain, Scheduler, SchedUnit
from .trace import (
    DOMID_IDLE,
    RUNSTATE_BLOCKED,
    RUNSTATE_NAMES,
    RUNSTATE_OFFLINE,
    RUNSTATE_RUNNABLE,
    RUNSTATE_RUNNING,
    TRC_ALL,
    TRC_SCHED_ADJDOM,
    TRC_SCHED_BLOCK,
    TRC_SCHED_CONTINUE_RUNNING,
    TRC_SCHED_DOM_ADD,
    TRC_SCHED_SLEEP,
    TRC_SCHED_SWITCH,
    TRC_SCHED_SWITCH_INFCONT,
    TRC_SCHED_SWITCH_INFNEXT,
    TRC_SCHED_SWITCH_INFPREV,
    TRC_SCHED_WAKE,
    TRC_SCHED_YIELD,
    TraceWriter,
    ns_to_tsc,
    runstate_event,
    unit_word,
)

INF = 1 << 62                     # "no end": a hog's work
META_SUFFIX = ".meta.json"        # side-car of a trace: names, topology, affinities


class ScenarioError(ValueError):
    """A scenario is malformed."""


class SimError(RuntimeError):
    """The scheduler under simulation broke a rule of the framework."""


# -- scenario ---------------------------------------------------------------------------------
_UNITS = (("_ns", 1), ("_us", 1_000), ("_ms", 1_000_000), ("_s", 1_000_000_000))


def duration(table: dict, base: str, default: int | None = None, where: str = "") -> int:
    """`base` with a unit suffix in `table` (period_us = 10 → 10_000 ns)."""
    found = [(base + suf, mult) for suf, mult in _UNITS if base + suf in table]
    if len(found) > 1:
        raise ScenarioError(f"{where}: give only one of {', '.join(k for k, _ in found)}")
    if not found:
        if default is None:
            raise ScenarioError(f"{where}: {base}_us (or _ns/_ms/_s) is required")
        return default
    key, mult = found[0]
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ScenarioError(f"{where}: {key} must be a non-negative number")
    return int(round(value * mult))


@dataclass(frozen=True)
class Topology:
    nr_cpus: int
    threads_per_core: int = 1
    cores_per_socket: int = 0         # 0: all cores in one socket
    sockets_per_node: int = 1

    def of(self, cpu: int) -> tuple[int, int, int]:
        """(core, socket, node); core numbers are unique across the host."""
        core = cpu // self.threads_per_core
        cps = self.cores_per_socket or max(1, -(-self.nr_cpus // self.threads_per_core))
        socket = core // cps
        return core, socket, socket // self.sockets_per_node

    def node_cpus(self, node: int) -> frozenset[int]:
        return frozenset(c for c in range(self.nr_cpus) if self.of(c)[2] == node)


def parse_cpus(spec: Any, topo: Topology, where: str = "") -> frozenset[int]:
    """An xl-style pCPU list ("0-3,^2", "all", "node:1") or an array of ints."""
    nr = topo.nr_cpus
    if spec is None:
        return frozenset()
    if isinstance(spec, int) and not isinstance(spec, bool):
        spec = [spec]
    if isinstance(spec, list):
        out = set()
        for item in spec:
            out |= parse_cpus(str(item), topo, where)
        return frozenset(out)
    if not isinstance(spec, str):
        raise ScenarioError(f"{where}: a pCPU list is a string or an array, not {spec!r}")
    cpus: set[int] = set()
    for item in (p.strip() for p in spec.split(",")):
        if not item:
            continue
        remove = item.startswith("^")
        body = item[1:] if remove else item
        if body == "all":
            chosen = set(range(nr))
        elif body.startswith(("node:", "nodes:")):
            chosen = set()
            for n in _range(body.partition(":")[2], where):
                chosen |= topo.node_cpus(n)
        else:
            chosen = set(_range(body, where))
        bad = [c for c in chosen if not 0 <= c < nr]
        if bad:
            raise ScenarioError(f"{where}: pCPU {bad[0]} does not exist ({nr} pCPUs)")
        if remove:
            cpus -= chosen
        else:
            cpus |= chosen
    return frozenset(cpus)


def _range(text: str, where: str) -> range:
    first, dash, last = text.partition("-")
    try:
        a = int(first)
        b = int(last) if dash else a
    except ValueError:
        raise ScenarioError(f"{where}: bad pCPU range {text!r}") from None
    if b < a:
        raise ScenarioError(f"{where}: bad pCPU range {text!r}")
    return range(a, b + 1)


WORKLOADS = ("hog", "periodic", "bursty", "idle")
_HOG, _PERIODIC, _BURSTY, _IDLE = range(4)


@dataclass(frozen=True)
class WorkloadSpec:
    kind: str = "hog"
    run_ns: int = 0                 # periodic: job size; bursty: mean burst
    period_ns: int = 0              # periodic
    phase_ns: int | None = None     # periodic: None = random within the period
    sleep_ns: int = 0               # bursty: mean sleep
    distribution: str = "exp"       # bursty: exp | fixed
    start: str = "run"              # bursty: run | sleep
    yield_ns: int = 0               # hog: yield after this much run time (0: never)

    @classmethod
    def from_table(cls, t: Any, where: str) -> WorkloadSpec:
        if t is None:
            return cls()
        if isinstance(t, str):
            t = {"type": t}
        if not isinstance(t, dict):
            raise ScenarioError(f"{where}: workload must be a table")
        kind = t.get("type", "hog")
        if kind not in WORKLOADS:
            raise ScenarioError(f"{where}: workload type {kind!r} (expected "
                                f"{', '.join(WORKLOADS)})")
        if kind == "hog":
            return cls("hog", yield_ns=duration(t, "yield", 0, where))
        if kind == "idle":
            return cls("idle")
        if kind == "periodic":
            period = duration(t, "period", None, where)
            run = duration(t, "run", None, where)
            if period <= 0 or run <= 0:
                raise ScenarioError(f"{where}: periodic needs period and run > 0")
            phase = None
            if any("phase" + s in t for s, _ in _UNITS):
                phase = duration(t, "phase", 0, where)
            return cls("periodic", run_ns=run, period_ns=period, phase_ns=phase)
        run = duration(t, "run", None, where)
        sleep = duration(t, "sleep", None, where)
        dist = t.get("distribution", "exp")
        start = t.get("start", "run")
        if run <= 0 or sleep <= 0:
            raise ScenarioError(f"{where}: bursty needs run and sleep > 0")
        if dist not in ("exp", "fixed"):
            raise ScenarioError(f"{where}: distribution must be exp or fixed")
        if start not in ("run", "sleep"):
            raise ScenarioError(f"{where}: start must be run or sleep")
        return cls("bursty", run_ns=run, sleep_ns=sleep, distribution=dist, start=start)

    def describe(self) -> str:
        us = 1000
        if self.kind == "hog":
            return f"hog yield={self.yield_ns // us}us" if self.yield_ns else "hog"
        if self.kind == "periodic":
            return f"periodic {self.run_ns // us}us/{self.period_ns // us}us"
        if self.kind == "bursty":
            return f"bursty run~{self.run_ns // us}us sleep~{self.sleep_ns // us}us"
        return self.kind


@dataclass
class VcpuSpec:
    hard: frozenset[int]
    soft: frozenset[int]
    workload: WorkloadSpec


@dataclass
class DomainSpec:
    name: str
    domid: int
    pool: str
    weight: int | None
    cap: int | None
    vcpus: list[VcpuSpec]


@dataclass
class PoolSpec:
    name: str
    scheduler: str
    cpus: frozenset[int]
    params: dict


@dataclass
class EventSpec:
    at_ns: int
    action: str
    args: dict


ACTIONS = ("adjust", "pin", "pause", "unpause", "pool_params", "move")


@dataclass
class Scenario:
    duration_ns: int
    topology: Topology
    pools: list[PoolSpec]
    domains: list[DomainSpec]
    events: list[EventSpec] = field(default_factory=list)
    boot: dict = field(default_factory=dict)
    seed: int = 0
    name: str = ""

    @property
    def nr_cpus(self) -> int:
        return self.topology.nr_cpus

    @classmethod
    def load(cls, path: str | Path) -> Scenario:
        p = Path(path)
        try:
            text = p.read_text()
        except OSError as e:
            raise ScenarioError(f"{path}: {e.strerror or e}") from None
        sc = cls.loads(text, where=str(path))
        if not sc.name:
            sc.name = p.stem
        return sc

    @classmethod
    def loads(cls, text: str, where: str = "scenario") -> Scenario:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ScenarioError(f"{where}: {e}") from None
        return cls.from_dict(data, where)

    @classmethod
    def from_dict(cls, d: dict, where: str = "scenario") -> Scenario:
        known = {"name", "seed", "host", "boot", "pools", "domains", "events"} | {
            "duration" + s for s, _ in _UNITS}
        extra = sorted(set(d) - known)
        if extra:
            raise ScenarioError(f"{where}: unknown key {extra[0]!r}")
        dur = duration(d, "duration", None, where)
        if dur <= 0:
            raise ScenarioError(f"{where}: duration must be > 0")
        host = d.get("host") or {}
        nr = host.get("pcpus")
        if not isinstance(nr, int) or isinstance(nr, bool) or not 1 <= nr <= 4096:
            raise ScenarioError(f"{where}: host.pcpus must be an integer 1..4096")
        tpc = int(host.get("threads_per_core", 1))
        cps = int(host.get("cores_per_socket", 0))
        spn = int(host.get("sockets_per_node", 1))
        if tpc < 1 or cps < 0 or spn < 1:
            raise ScenarioError(f"{where}: bad topology")
        topo = Topology(nr, tpc, cps, spn)
        boot = dict(d.get("boot") or {})
        _check_boot(boot, where)
        seed = d.get("seed", 0)
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ScenarioError(f"{where}: seed must be an integer")

        pools: list[PoolSpec] = []
        for i, p in enumerate(d.get("pools") or []):
            w = f"{where}: pools[{i}]"
            name = str(p.get("name", f"Pool-{i}"))
            sched = str(p.get("scheduler", boot.get("sched", "credit2")))
            cpus = parse_cpus(p.get("cpus", "all"), topo, w)
            if not cpus:
                raise ScenarioError(f"{w}: no pCPUs")
            params = p.get("params") or {}
            if not isinstance(params, dict):
                raise ScenarioError(f"{w}: params must be a table")
            pools.append(PoolSpec(name, sched, cpus, dict(params)))
        if not pools:
            pools = [PoolSpec("Pool-0", str(boot.get("sched", "credit2")),
                              frozenset(range(nr)), {})]
        seen: set[int] = set()
        for p in pools:
            if p.cpus & seen:
                raise ScenarioError(f"{where}: pool {p.name} shares pCPUs with another pool")
            seen |= p.cpus
        if len({p.name for p in pools}) != len(pools):
            raise ScenarioError(f"{where}: two pools with the same name")
        by_pool = {p.name: p for p in pools}

        domains: list[DomainSpec] = []
        next_domid = 1
        for i, dt in enumerate(d.get("domains") or []):
            w = f"{where}: domains[{i}]"
            if not isinstance(dt, dict):
                raise ScenarioError(f"{w}: must be a table")
            name = str(dt.get("name", f"d{i + 1}"))
            pool = str(dt.get("pool", pools[0].name))
            if pool not in by_pool:
                raise ScenarioError(f"{w}: no pool {pool!r}")
            pool_cpus = by_pool[pool].cpus
            count = int(dt.get("count", 1))
            if count < 1:
                raise ScenarioError(f"{w}: count must be >= 1")
            weight, cap = dt.get("weight"), dt.get("cap")
            for key, v in (("weight", weight), ("cap", cap)):
                if v is not None and (not isinstance(v, int) or isinstance(v, bool)):
                    raise ScenarioError(f"{w}: {key} must be an integer")
            base_hard = parse_cpus(dt.get("hard_affinity"), topo, w)
            base_soft = parse_cpus(dt.get("soft_affinity"), topo, w)
            base_wl = WorkloadSpec.from_table(dt.get("workload"), w)
            raw = dt.get("vcpus", 1)
            if isinstance(raw, int) and not isinstance(raw, bool):
                if not 1 <= raw <= 1024:
                    raise ScenarioError(f"{w}: vcpus must be 1..1024")
                raw = [{} for _ in range(raw)]
            if not isinstance(raw, list) or not raw:
                raise ScenarioError(f"{w}: vcpus must be a count or an array of tables")
            vcpus = []
            for j, vt in enumerate(raw):
                wv = f"{w}.vcpus[{j}]"
                if not isinstance(vt, dict):
                    raise ScenarioError(f"{wv}: must be a table")
                hard = parse_cpus(vt["hard_affinity"], topo, wv) if "hard_affinity" in vt \
                    else base_hard
                soft = parse_cpus(vt["soft_affinity"], topo, wv) if "soft_affinity" in vt \
                    else base_soft
                wl = WorkloadSpec.from_table(vt["workload"], wv) if "workload" in vt \
                    else base_wl
                if hard and not hard & pool_cpus:
                    raise ScenarioError(f"{wv}: hard affinity has no pCPU of pool {pool}")
                vcpus.append(VcpuSpec(hard, soft, wl))
            base_domid = int(dt.get("domid", next_domid))
            for k in range(count):
                dname = f"{name}-{k}" if count > 1 else name
                domid = base_domid + k
                next_domid = max(next_domid, domid + 1)
                domains.append(DomainSpec(dname, domid, pool, weight, cap,
                                          [VcpuSpec(v.hard, v.soft, v.workload)
                                           for v in vcpus]))
        names = [x.name for x in domains]
        if len(set(names)) != len(names):
            raise ScenarioError(f"{where}: two domains with the same name")
        if len({x.domid for x in domains}) != len(domains):
            raise ScenarioError(f"{where}: two domains with the same domid")
        if any(not 0 < x.domid < DOMID_IDLE for x in domains):
            raise ScenarioError(f"{where}: domids must be 1..32766")
        by_name = {x.name: x for x in domains}

        events = []
        for i, et in enumerate(d.get("events") or []):
            w = f"{where}: events[{i}]"
            at = duration(et, "at", None, w)
            action = et.get("action")
            if action not in ACTIONS:
                raise ScenarioError(f"{w}: action must be one of {', '.join(ACTIONS)}")
            args = {k: v for k, v in et.items()
                    if k != "action" and not any(k == "at" + s for s, _ in _UNITS)}
            if action in ("pool_params", "move"):
                if args.get("pool") not in by_pool:
                    raise ScenarioError(f"{w}: no pool {args.get('pool')!r}")
            if action != "pool_params" and args.get("domain") not in by_name:
                raise ScenarioError(f"{w}: no domain {args.get('domain')!r}")
            if action == "pin":
                for key in ("hard", "soft"):
                    if key in args and args[key] != "-":
                        args[key] = parse_cpus(args[key], topo, w)
            events.append(EventSpec(at, action, args))
        events.sort(key=lambda e: e.at_ns)
        return cls(dur, topo, pools, domains, events, boot, seed, str(d.get("name", "")))


def _check_boot(boot: dict, where: str) -> None:
    """Boot parameters pyxen knows are checked with its own parsers; others pass through."""
    from ..params import PARAMS, ParamError
    for name, value in list(boot.items()):
        p = PARAMS.get(name)
        if p is None:
            continue
        text = ("1" if value else "0") if isinstance(value, bool) else str(value)
        try:
            boot[name] = p.parse(text)
        except ParamError as e:
            raise ScenarioError(f"{where}: boot.{name}: {e}") from None


# -- statistics helpers ----------------------------------------------------------------------
def percentile(sorted_values: list[int], p: float) -> int:
    """Nearest-rank percentile of an ascending list (0 for an empty one)."""
    n = len(sorted_values)
    if not n:
        return 0
    return sorted_values[min(n - 1, max(0, math.ceil(p / 100 * n) - 1))]


def latency_summary(values: list[int]) -> dict:
    """count, mean, p50/p90/p99/max of ns samples, in µs."""
    v = sorted(values)
    if not v:
        return {"count": 0}
    return {"count": len(v), "mean_us": round(sum(v) / len(v) / 1000, 3),
            "p50_us": percentile(v, 50) / 1000, "p90_us": percentile(v, 90) / 1000,
            "p99_us": percentile(v, 99) / 1000, "max_us": v[-1] / 1000}


# -- the simulation ---------------------------------------------------------------------------
_RESCHED, _SLICE, _DONE, _WAKE, _RELEASE, _TIMER, _EVENT = range(7)
_RS_FROM_RUNNING = [runstate_event(RUNSTATE_RUNNING, new) for new in range(4)]
_RS_TO_RUNNING = [runstate_event(old, RUNSTATE_RUNNING) for old in range(4)]


class _SimTimer:
    __slots__ = ("deadline", "fn", "cancelled", "cpu")

    def __init__(self, deadline: int, fn: Callable[[], None], cpu: int):
        self.deadline = deadline
        self.fn = fn
        self.cancelled = False
        self.cpu = cpu

    def cancel(self) -> None:
        self.cancelled = True


class _PCpu:
    __slots__ = ("cpu", "pool", "sched", "curr", "pending", "gen", "entry_t", "busy_ns",
                 "idle_ns", "switches", "decisions")

    def __init__(self, cpu: int):
        self.cpu = cpu
        self.pool: SimPool | None = None
        self.sched: Scheduler | None = None
        self.curr: SimVcpu | None = None
        self.pending = False           # a reschedule is queued
        self.gen = 0                   # slice timers of older generations are stale
        self.entry_t = 0               # when curr (or idle) started running
        self.busy_ns = 0
        self.idle_ns = 0
        self.switches = 0
        self.decisions = 0


class SimPool:
    def __init__(self, spec: PoolSpec, sched: Scheduler):
        self.spec = spec
        self.name = spec.name
        self.sched = sched
        self.cpus = sorted(spec.cpus)


class SimDomain:
    def __init__(self, spec: DomainSpec, pool: SimPool):
        self.spec = spec
        self.name = spec.name
        self.pool = pool
        self.sdom = SchedDomain(spec.domid)
        self.vcpus: list[SimVcpu] = []
        self.paused = False
        self.moving_to: SimPool | None = None   # cpupool-migrate waiting for switch-outs
        self.paused_before_move = False


class SimVcpu(SchedUnit):
    """A model vCPU: a SchedUnit plus its workload and statistics."""

    def __init__(self, sdom: SimDomain, vcpu_id: int, wl: WorkloadSpec, rng: random.Random):
        super().__init__(sdom.sdom, vcpu_id)
        self.sim_domain = sdom
        self.sched: Scheduler = sdom.pool.sched
        self.wl = wl
        self.kind = WORKLOADS.index(wl.kind)
        self.rng = rng
        self.word = unit_word(sdom.spec.domid, vcpu_id)
        self.hard_ok: frozenset[int] = frozenset()   # effective hard affinity
        self.eff_soft: frozenset[int] | None = None  # effective soft affinity
        # model state
        self.blocked = False
        self.paused = False
        self.migrating = False
        self.work = 0                  # CPU time left in the current burst / job
        self.work_t = 0                # ... as of this time (when running)
        self.done_gen = 0
        self.jobs: deque[int] = deque()   # periodic: release times of pending jobs
        # runstate
        self.state = RUNSTATE_OFFLINE
        self.state_t = 0
        self.rs = [0, 0, 0, 0]
        # statistics
        self.wake_t = -1
        self.latencies: list[int] = []
        self.responses: list[int] = []
        self.releases = self.overruns = self.misses = 0
        self.wakeups = self.blocks = self.yields = 0
        self.runs = self.preemptions = self.migrations = 0
        self.last_cpu = -1
        self.soft_in = self.soft_out = 0

    @property
    def name(self) -> str:
        return f"d{self.domain.domid}v{self.vcpu_id}"

    def __repr__(self) -> str:
        return self.name

    def sample_run(self) -> int:
        wl = self.wl
        if wl.distribution == "fixed":
            return wl.run_ns
        return max(1, int(self.rng.expovariate(1.0 / wl.run_ns)))

    def sample_sleep(self) -> int:
        wl = self.wl
        if wl.distribution == "fixed":
            return wl.sleep_ns
        return max(1, int(self.rng.expovariate(1.0 / wl.sleep_ns)))


def _noop_trace(event: int, *words: int) -> None:
    return None


class Simulator:
    """Runs a Scenario; implements SchedEnv for the schedulers of its pools.

    `trace`: a path or binary file to write a xentrace file to (a path also
    gets a side-car `<path>.meta.json` with names, topology and affinities).
    `schedulers`: extra name → Scheduler class entries, looked up before the
    registry (tests use this for their own schedulers).
    """

    def __init__(self, scenario: Scenario, *, trace: str | Path | BinaryIO | None = None,
                 trace_mask: int = TRC_ALL, schedulers: dict[str, type[Scheduler]] | None = None,
                 strict: bool = True, tickle_latency_ns: int = 0, chunk_bytes: int = 1 << 16):
        self.scenario = scenario
        self.strict = strict
        self.tickle_latency_ns = max(0, int(tickle_latency_ns))
        self.t = 0
        self._cur = 0
        self._heap: list = []
        self._seq = itertools.count()
        self.end_ns = scenario.duration_ns
        self.events_processed = 0
        self.wall_s = 0.0
        self._finished = False
        self.meta_changes: list[dict] = []
        topo = scenario.topology
        self._topo = [topo.of(c) for c in range(topo.nr_cpus)]
        self._params = dict(scenario.boot)

        extra = schedulers or {}
        classes = []
        for ps in scenario.pools:
            cls = extra.get(ps.scheduler)
            if cls is None:
                try:
                    cls = registry.get(ps.scheduler)
                except registry.SchedulerUnavailable as e:
                    raise ScenarioError(str(e)) from None
            classes.append(cls)

        # tracing
        self._trace_file: BinaryIO | None = None
        self._own_file = False
        self.trace_path: Path | None = None
        self.writer: TraceWriter | None = None
        if trace is not None:
            if isinstance(trace, str | Path):
                self.trace_path = Path(trace)
                self._trace_file = open(self.trace_path, "wb")  # noqa: SIM115 - closed in finish
                self._own_file = True
            else:
                self._trace_file = trace
            self.writer = TraceWriter(self._trace_file, topo.nr_cpus, chunk_bytes=chunk_bytes,
                                      threadsafe=False, event_mask=trace_mask)
        # Not in the SchedEnv protocol: lets a scheduler skip building trace payloads.
        self.tracing = self.writer is not None
        if self.writer is None:
            self.trace = _noop_trace                # type: ignore[method-assign]

        # pCPUs, pools, schedulers
        self.pcpus = [_PCpu(c) for c in range(topo.nr_cpus)]
        self.pools: list[SimPool] = []
        for ps, cls in zip(scenario.pools, classes, strict=True):
            self._cur = min(ps.cpus)
            sched = cls(self, frozenset(ps.cpus))
            pool = SimPool(ps, sched)
            self.pools.append(pool)
            for c in pool.cpus:
                self.pcpus[c].pool = pool
                self.pcpus[c].sched = sched
            if ps.params:
                try:
                    sched.adjust_global(True, dict(ps.params))
                except (ValueError, NotImplementedError) as e:
                    raise ScenarioError(f"pool {ps.name}: params {ps.params}: {e}") from None
        pools = {p.name: p for p in self.pools}

        # domains and vCPUs (Xen: domain_create, max_vcpus, toolstack settings, unpause)
        self.domains: list[SimDomain] = []
        self.vcpus: list[SimVcpu] = []
        for ds in scenario.domains:
            pool = pools[ds.pool]
            sched = pool.sched
            dom = SimDomain(ds, pool)
            self.domains.append(dom)
            self._cur = pool.cpus[0]
            self._rec(TRC_SCHED_DOM_ADD, ds.domid)
            sched.insert_domain(dom.sdom)
            pool_set = frozenset(pool.cpus)
            for vid, vs in enumerate(ds.vcpus):
                rng = random.Random((scenario.seed * 1_000_003 + ds.domid) * 4099 + vid)
                sv = SimVcpu(dom, vid, vs.workload, rng)
                sv.hard_affinity = vs.hard
                sv.soft_affinity = vs.soft
                self._update_affinity(sv, pool_set)
                allowed = sorted(sv.hard_ok)
                sv.processor = allowed[(ds.domid + vid) % len(allowed)]
                dom.vcpus.append(sv)
                dom.sdom.units.append(sv)
                self.vcpus.append(sv)
                sched.insert_unit(sv)
            params = {k: v for k, v in (("weight", ds.weight), ("cap", ds.cap)) if v is not None}
            if params:
                try:
                    sched.adjust(dom.sdom, True, params)
                except (ValueError, NotImplementedError) as e:
                    raise ScenarioError(f"domain {ds.name}: {params}: {e}") from None
        self._by_name = {d.name: d for d in self.domains}
        for ev in scenario.events:
            self._push(ev.at_ns, _EVENT, ev, 0)

        # t = 0: every idle vCPU runs; the domains are unpaused
        for pc in self.pcpus:
            self._cur = pc.cpu
            self._rec(runstate_event(RUNSTATE_RUNNABLE, RUNSTATE_RUNNING),
                      unit_word(DOMID_IDLE, pc.cpu))
        for sv in self.vcpus:
            self._start(sv)

    # -- SchedEnv --------------------------------------------------------------------------
    def now(self) -> int:
        return self.t

    def timer(self, deadline_ns: int, fn: Callable[[], None]) -> _SimTimer:
        handle = _SimTimer(deadline_ns, fn, self._cur)
        heappush(self._heap, (max(deadline_ns, self.t), next(self._seq), _TIMER,
                                    handle, 0))
        return handle

    def tickle(self, cpu: int) -> None:
        pc = self.pcpus[cpu]
        if not pc.pending:
            pc.pending = True
            heappush(self._heap, (self.t + self.tickle_latency_ns, next(self._seq),
                                        _RESCHED, pc, 0))

    def trace(self, event: int, *words: int) -> None:
        writer = self.writer
        if writer.all_events or writer.wants(event):
            writer._append(self._cur, ns_to_tsc(self.t), event, words)

    def topology(self, cpu: int) -> tuple[int, int, int]:
        return self._topo[cpu]

    def param(self, name: str, default: Any) -> Any:
        return self._params.get(name, default)

    # -- internals ---------------------------------------------------------------------------
    def _push(self, t: int, kind: int, a: Any, b: Any) -> None:
        heappush(self._heap, (t, next(self._seq), kind, a, b))

    def _rec(self, event: int, *words: int) -> None:
        writer = self.writer
        if writer is not None and (writer.all_events or writer.wants(event)):
            writer._append(self._cur, ns_to_tsc(self.t), event, words)

    def _update_affinity(self, sv: SimVcpu, pool_set: frozenset[int]) -> None:
        hard = pool_set & sv.hard_affinity if sv.hard_affinity else pool_set
        if not hard:
            raise ScenarioError(f"{sv.name}: hard affinity has no pCPU of its pool")
        sv.hard_ok = hard
        soft = hard & sv.soft_affinity if sv.soft_affinity else frozenset()
        sv.eff_soft = soft if soft and soft != hard else None

    def _runstate(self, sv: SimVcpu, new: int) -> None:
        t = self.t
        old = sv.state
        sv.rs[old] += t - sv.state_t
        sv.state = new
        sv.state_t = t
        if self.writer is not None:
            self._rec(runstate_event(old, new), sv.word)

    def _start(self, sv: SimVcpu) -> None:
        kind = sv.kind
        if kind == _HOG:
            sv.work = sv.wl.yield_ns or INF
            self._wake(sv, workload=True)
        elif kind == _PERIODIC:
            wl = sv.wl
            phase = wl.phase_ns if wl.phase_ns is not None else sv.rng.randrange(wl.period_ns)
            self._block_offline(sv)
            self._push(phase, _RELEASE, sv, 0)
        elif kind == _BURSTY:
            if sv.wl.start == "run":
                sv.work = sv.sample_run()
                self._wake(sv, workload=True)
            else:
                self._block_offline(sv)
                self._push(sv.sample_sleep(), _WAKE, sv, sv.sample_run())
        else:
            self._block_offline(sv)

    def _block_offline(self, sv: SimVcpu) -> None:
        """A vCPU that is up but starts blocked (its guest waits for an event)."""
        sv.blocked = True
        self._cur = sv.processor
        self._runstate(sv, RUNSTATE_BLOCKED)

    def _wake(self, sv: SimVcpu, workload: bool) -> None:
        """Xen's vcpu_wake: `workload` when the guest itself woke (event, timer)."""
        t = self.t
        self._cur = sv.processor
        if workload:
            sv.blocked = False
            sv.wakeups += 1
        if self.writer is not None:
            self._rec(TRC_SCHED_WAKE, sv.domain.domid, sv.vcpu_id)
        if sv.blocked or sv.paused or sv.migrating:
            if not sv.blocked and sv.state == RUNSTATE_BLOCKED:
                self._runstate(sv, RUNSTATE_OFFLINE)
            return
        if sv.running:
            # blocked (or paused) but not switched out yet: it simply carries on
            if not sv.runnable:
                sv.runnable = True
            if workload and sv.work < INF:
                sv.work_t = t
                sv.done_gen += 1
                self._push(t + sv.work, _DONE, sv, sv.done_gen)
            return
        if sv.runnable:
            return
        sv.runnable = True
        if sv.state >= RUNSTATE_BLOCKED:
            self._runstate(sv, RUNSTATE_RUNNABLE)
            if sv.wake_t < 0:
                sv.wake_t = t
        sv.sched.wake(sv)

    def _unrunnable(self, sv: SimVcpu, event: int) -> None:
        """The unit stops being runnable (block, pause, migration): trace, sleep()."""
        self._cur = sv.processor
        if self.writer is not None:
            self._rec(event, sv.domain.domid, sv.vcpu_id)
        if not sv.runnable:
            return
        sv.runnable = False
        if not sv.running and sv.state == RUNSTATE_RUNNABLE:
            self._runstate(sv, RUNSTATE_OFFLINE)
            sv.wake_t = -1
        sv.sched.sleep(sv)
        if sv.running:
            self.tickle(sv.processor)

    def _done(self, sv: SimVcpu) -> None:
        """The running vCPU finished its burst / job / yield interval."""
        t = self.t
        kind = sv.kind
        sv.work = 0
        sv.work_t = t
        if kind == _HOG:                      # a yield interval is over
            sv.work = sv.wl.yield_ns
            sv.done_gen += 1
            self._push(t + sv.work, _DONE, sv, sv.done_gen)
            self.yield_unit(sv)
            return
        if kind == _PERIODIC:
            released = sv.jobs.popleft()
            resp = t - released
            sv.responses.append(resp)
            if resp > sv.wl.period_ns:
                sv.misses += 1
            if sv.jobs:                       # an overrun job is waiting: go on
                sv.work = sv.wl.run_ns
                sv.done_gen += 1
                self._push(t + sv.work, _DONE, sv, sv.done_gen)
                return
        elif kind == _BURSTY:
            self._push(t + sv.sample_sleep(), _WAKE, sv, sv.sample_run())
        sv.blocked = True
        sv.blocks += 1
        self._unrunnable(sv, TRC_SCHED_BLOCK)

    def _release(self, sv: SimVcpu) -> None:
        t = self.t
        self._push(t + sv.wl.period_ns, _RELEASE, sv, 0)
        sv.releases += 1
        sv.jobs.append(t)
        if len(sv.jobs) > 1:
            sv.overruns += 1
            return
        sv.work = sv.wl.run_ns
        if sv.blocked:
            self._wake(sv, workload=True)
        elif sv.running:
            sv.work_t = t
            sv.done_gen += 1
            self._push(t + sv.work, _DONE, sv, sv.done_gen)

    def yield_unit(self, sv: SimVcpu) -> None:
        """SCHEDOP_yield from the (running) vCPU."""
        self._cur = sv.processor
        sv.yields += 1
        sv.sched.yield_(sv)
        self._rec(TRC_SCHED_YIELD, sv.domain.domid, sv.vcpu_id)
        self.tickle(sv.processor)

    def _schedule(self, pc: _PCpu) -> None:
        """Xen's schedule() on one pCPU (the simulator's hot path: kept inline)."""
        t = self.t
        cpu = pc.cpu
        pc.pending = False
        pc.gen += 1
        self._cur = cpu
        prev = pc.curr
        sched = pc.sched
        if sched is None:                     # a pCPU outside every pool stays idle
            return
        pc.decisions += 1
        dec = sched.do_schedule(cpu, prev, t)
        nxt = dec.unit
        tns = dec.time_ns
        if tns >= 0:
            heappush(self._heap, (t + (tns or 1), next(self._seq), _SLICE, pc, pc.gen))
        writer = self.writer
        if nxt is prev:
            if nxt is not None:
                if not nxt.runnable and self.strict:
                    raise SimError(f"{sched.name}: pCPU {cpu} keeps running {nxt!r}, which "
                                   f"is not runnable (t={t})")
                nxt.yielding = False
            if writer is not None:
                if prev is None:
                    self._rec(TRC_SCHED_SWITCH_INFCONT, DOMID_IDLE, cpu, t - pc.entry_t, tns)
                    self._rec(TRC_SCHED_CONTINUE_RUNNING, unit_word(DOMID_IDLE, cpu))
                else:
                    self._rec(TRC_SCHED_SWITCH_INFCONT, prev.domain.domid, prev.vcpu_id,
                              t - pc.entry_t, tns)
                    self._rec(TRC_SCHED_CONTINUE_RUNNING, prev.word)
            return
        if nxt is not None and self.strict and (
                nxt.running or not nxt.runnable or cpu not in nxt.hard_ok):
            self._check_pick(pc, nxt)
        ran = t - pc.entry_t
        if writer is not None:
            if prev is None:
                pd, pv = DOMID_IDLE, cpu
            else:
                pd, pv = prev.domain.domid, prev.vcpu_id
            if nxt is None:
                nd, nv, waited = DOMID_IDLE, cpu, ran
            else:
                nd, nv = nxt.domain.domid, nxt.vcpu_id
                waited = t - nxt.state_t if nxt.state == RUNSTATE_RUNNABLE else 0
            self._rec(TRC_SCHED_SWITCH_INFPREV, pd, pv, ran)
            self._rec(TRC_SCHED_SWITCH_INFNEXT, nd, nv, waited, tns)
            self._rec(TRC_SCHED_SWITCH, pd, pv, nd, nv)
        # prev out (runstate running -> blocked / runnable / offline)
        if prev is not None:
            prev.running = False
            pc.busy_ns += ran
            es = prev.eff_soft
            if es is not None:
                if cpu in es:
                    prev.soft_in += ran
                else:
                    prev.soft_out += ran
            if prev.work < INF:
                prev.work -= t - prev.work_t
                prev.done_gen += 1
            if prev.blocked:
                new = RUNSTATE_BLOCKED
            elif prev.runnable:
                prev.preemptions += 1
                new = RUNSTATE_RUNNABLE
            else:
                new = RUNSTATE_OFFLINE
            prev.rs[RUNSTATE_RUNNING] += t - prev.state_t
            prev.state = new
            prev.state_t = t
            if writer is not None:
                self._rec(_RS_FROM_RUNNING[new], prev.word)
        else:
            pc.idle_ns += ran
            if writer is not None:
                self._rec(_RS_FROM_RUNNING[RUNSTATE_RUNNABLE], unit_word(DOMID_IDLE, cpu))
        # next in (runstate runnable -> running)
        if nxt is not None:
            nxt.running = True
            nxt.processor = cpu
            nxt.yielding = False
            if nxt.last_cpu != cpu:
                if nxt.last_cpu >= 0:
                    nxt.migrations += 1
                nxt.last_cpu = cpu
            nxt.runs += 1
            if nxt.wake_t >= 0:
                nxt.latencies.append(t - nxt.wake_t)
                nxt.wake_t = -1
            old = nxt.state
            nxt.rs[old] += t - nxt.state_t
            nxt.state = RUNSTATE_RUNNING
            nxt.state_t = t
            if writer is not None:
                self._rec(_RS_TO_RUNNING[old], nxt.word)
            if nxt.work < INF:
                nxt.work_t = t
                heappush(self._heap, (t + nxt.work, next(self._seq), _DONE, nxt,
                                      nxt.done_gen))
        elif writer is not None:
            self._rec(_RS_TO_RUNNING[RUNSTATE_RUNNABLE], unit_word(DOMID_IDLE, cpu))
        pc.curr = nxt
        pc.entry_t = t
        pc.switches += 1
        if prev is not None:
            sched.context_saved(prev)
            if prev.migrating:
                self._finish_migrate(prev)
            if prev.sim_domain.moving_to is not None:
                self._finish_move(prev.sim_domain)

    def _check_pick(self, pc: _PCpu, nxt: SchedUnit) -> None:
        name = pc.sched.name or type(pc.sched).__name__
        if not isinstance(nxt, SimVcpu) or nxt.sim_domain.pool is not pc.pool:
            raise SimError(f"{name}: pCPU {pc.cpu} picked {nxt!r}, not a unit of its pool")
        if nxt.running:
            raise SimError(f"{name}: pCPU {pc.cpu} picked {nxt!r}, which runs on pCPU "
                           f"{nxt.processor} (t={self.t})")
        if not nxt.runnable:
            raise SimError(f"{name}: pCPU {pc.cpu} picked {nxt!r}, which is not runnable "
                           f"(t={self.t})")
        if pc.cpu not in nxt.hard_ok:
            raise SimError(f"{name}: pCPU {pc.cpu} picked {nxt!r} outside its hard affinity "
                           f"(t={self.t})")

    # -- toolstack actions ------------------------------------------------------------------
    def _apply_event(self, ev: EventSpec) -> None:
        a = ev.args
        if ev.action == "pool_params":
            pool = next(p for p in self.pools if p.name == a["pool"])
            self._cur = pool.cpus[0]
            pool.sched.adjust_global(True, dict(a.get("params") or {}))
            return
        dom = self._by_name[a["domain"]]
        sched = dom.pool.sched
        self._cur = dom.pool.cpus[0]
        if ev.action == "adjust":
            params = {k: v for k, v in a.items() if k not in ("domain",)}
            sched.adjust(dom.sdom, True, params)
            self._rec(TRC_SCHED_ADJDOM, dom.spec.domid)
            self.meta_changes.append({"t_ns": self.t, "domid": dom.spec.domid, **params})
        elif ev.action == "pin":
            which = a.get("vcpu", "all")
            targets = dom.vcpus if which == "all" else [dom.vcpus[int(which)]]
            for sv in targets:
                self.set_affinity(sv, a.get("hard", "-"), a.get("soft", "-"))
        elif ev.action == "pause":
            self.pause(dom)
        elif ev.action == "unpause":
            self.unpause(dom)
        elif ev.action == "move":
            self.move_domain(dom, next(p for p in self.pools if p.name == a["pool"]))

    def move_domain(self, dom: SimDomain, pool: SimPool) -> None:
        """xl cpupool-migrate (Xen's sched_move_domain): the domain is paused, and once
        none of its vCPUs is on a pCPU any more they leave the old pool's scheduler
        and join the new one (with its default parameters); then it is unpaused."""
        if pool is dom.pool or dom.moving_to is not None:
            return
        dom.moving_to = pool
        dom.paused_before_move = dom.paused
        self.pause(dom)
        self._finish_move(dom)

    def _finish_move(self, dom: SimDomain) -> None:
        pool = dom.moving_to
        if pool is None or any(sv.running for sv in dom.vcpus):
            return
        dom.moving_to = None
        old = dom.pool.sched
        self._cur = dom.pool.cpus[0]
        for sv in dom.vcpus:
            old.remove_unit(sv)
        old.remove_domain(dom.sdom)
        dom.pool = pool
        new = pool.sched
        self._cur = pool.cpus[0]
        new.insert_domain(dom.sdom)
        pool_set = frozenset(pool.cpus)
        for sv in dom.vcpus:
            sv.sched = new
            if sv.hard_affinity and not sv.hard_affinity & pool_set:
                sv.hard_affinity = frozenset()      # Xen resets an affinity the pool
                sv.soft_affinity = frozenset()      # cannot honour to "all"
            self._update_affinity(sv, pool_set)
            allowed = sorted(sv.hard_ok)
            sv.processor = allowed[(dom.spec.domid + sv.vcpu_id) % len(allowed)]
            new.insert_unit(sv)
        self.meta_changes.append({"t_ns": self.t, "domid": dom.spec.domid,
                                  "pool": pool.name})
        if not dom.paused_before_move:
            self.unpause(dom)

    def set_affinity(self, sv: SimVcpu, hard: Any = "-", soft: Any = "-") -> None:
        """xl vcpu-pin: new hard and/or soft affinity ("-" leaves one unchanged)."""
        if hard != "-":
            sv.hard_affinity = frozenset(hard)
        if soft != "-":
            sv.soft_affinity = frozenset(soft)
        self._update_affinity(sv, frozenset(sv.sim_domain.pool.cpus))
        self.meta_changes.append({"t_ns": self.t, "domid": sv.domain.domid,
                                  "vcpu": sv.vcpu_id, "hard": sorted(sv.hard_affinity),
                                  "soft": sorted(sv.soft_affinity)})
        sv.sched.affinity_changed(sv)
        sv.migrating = True
        self._unrunnable(sv, TRC_SCHED_SLEEP)
        if not sv.running:
            self._finish_migrate(sv)

    def _finish_migrate(self, sv: SimVcpu) -> None:
        """Xen's vcpu_migrate once the unit is off its pCPU: pick_cpu, migrate, wake."""
        sv.migrating = False
        sched = sv.sched
        new = sched.pick_cpu(sv)
        if self.strict and new not in sv.hard_ok:
            raise SimError(f"{sched.name}: pick_cpu({sv!r}) = {new}, outside its hard "
                           f"affinity")
        sched.migrate(sv, new)
        self._wake(sv, workload=False)

    def pause(self, dom: SimDomain) -> None:
        dom.paused = True
        for sv in dom.vcpus:
            sv.paused = True
            self._unrunnable(sv, TRC_SCHED_SLEEP)

    def unpause(self, dom: SimDomain) -> None:
        dom.paused = False
        for sv in dom.vcpus:
            sv.paused = False
            self._wake(sv, workload=False)

    # -- running -----------------------------------------------------------------------------
    def run(self, until_ns: int | None = None) -> dict:
        """Simulate up to `until_ns` (default: the scenario's end); returns stats()
        once the scenario's end is reached."""
        end = self.end_ns if until_ns is None else min(until_ns, self.end_ns)
        heap = self._heap
        pop = heappop
        schedule = self._schedule
        started = time.perf_counter()
        n = 0
        last_t, same = -1, 0
        while heap:
            t = heap[0][0]
            if t >= end:                      # [start, end): the end instant is not run
                break
            _, _, kind, a, b = pop(heap)
            n += 1
            if t == last_t:
                same += 1
                if same > 1_000_000:
                    raise SimError(f"no progress: a million events at t={t} ns")
            else:
                last_t, same = t, 0
            self.t = t
            if kind == _SLICE:
                if b == a.gen:
                    schedule(a)
            elif kind == _RESCHED:
                if a.pending:
                    schedule(a)
            elif kind == _DONE:
                if b == a.done_gen and a.running:
                    self._done(a)
            elif kind == _WAKE:
                a.work = b
                self._wake(a, workload=True)
            elif kind == _RELEASE:
                self._release(a)
            elif kind == _TIMER:
                if not a.cancelled:
                    self._cur = a.cpu
                    a.fn()
            else:
                self._apply_event(a)
        self.events_processed += n
        self.t = max(self.t, end)
        self.wall_s += time.perf_counter() - started
        if end >= self.end_ns:
            self.finish()
        return self.stats()

    def finish(self) -> None:
        """Close the books at the end time and the trace file (idempotent)."""
        if self._finished:
            return
        self._finished = True
        t = self.t = self.end_ns
        for pc in self.pcpus:
            ran = t - pc.entry_t
            sv = pc.curr
            if sv is None:
                pc.idle_ns += ran
            else:
                pc.busy_ns += ran
                if sv.eff_soft is not None:
                    if pc.cpu in sv.eff_soft:
                        sv.soft_in += ran
                    else:
                        sv.soft_out += ran
            pc.entry_t = t
        for sv in self.vcpus:
            sv.rs[sv.state] += t - sv.state_t
            sv.state_t = t
        if self.writer is not None:
            self.writer.close()
            if self._own_file and self._trace_file is not None:
                self._trace_file.close()
            if self.trace_path is not None:
                Path(str(self.trace_path) + META_SUFFIX).write_text(
                    json.dumps(self.meta(), indent=1, sort_keys=True) + "\n")

    # -- results -----------------------------------------------------------------------------
    def meta(self) -> dict:
        """What a trace alone does not say: names, topology, pools, affinities."""
        sc = self.scenario
        return {
            "format": "pyxen-trace-meta/1",
            "source": "simulator",
            "scenario": sc.name,
            "seed": sc.seed,
            "duration_ns": sc.duration_ns,
            "tsc_khz": 2_400_000,
            "pcpus": sc.nr_cpus,
            "topology": [list(x) for x in self._topo],
            "pools": [{"name": p.name, "scheduler": p.spec.scheduler, "cpus": p.cpus}
                      for p in self.pools],
            "domains": [{"domid": d.spec.domid, "name": d.name, "pool": d.pool.name,
                         "weight": d.spec.weight, "cap": d.spec.cap,
                         "vcpus": [{"vcpu": i, "hard": sorted(v.hard),
                                    "soft": sorted(v.soft), "workload": v.workload.describe()}
                                   for i, v in enumerate(d.spec.vcpus)]}
                        for d in self.domains],
            "changes": self.meta_changes,
        }

    def stats(self) -> dict:
        sc = self.scenario
        dur = max(1, self.t)
        vcpus = []
        for sv in self.vcpus:
            rs = list(sv.rs)
            if not self._finished:
                rs[sv.state] += self.t - sv.state_t
            v = {"name": sv.name, "domain": sv.sim_domain.name, "domid": sv.domain.domid,
                 "vcpu": sv.vcpu_id, "workload": sv.wl.describe(),
                 **{f"{RUNSTATE_NAMES[i]}_ns": rs[i] for i in range(4)},
                 "cpu_share": round(rs[RUNSTATE_RUNNING] / dur, 6),
                 "wakeups": sv.wakeups, "blocks": sv.blocks, "yields": sv.yields,
                 "runs": sv.runs, "preemptions": sv.preemptions,
                 "migrations": sv.migrations, "latency": latency_summary(sv.latencies)}
            if sv.eff_soft is not None or sv.soft_in or sv.soft_out:
                v["soft_in_ns"] = sv.soft_in
                v["soft_out_ns"] = sv.soft_out
            if sv.kind == _PERIODIC:
                v["periodic"] = {"releases": sv.releases, "overruns": sv.overruns,
                                 "deadline_misses": sv.misses,
                                 "response": latency_summary(sv.responses)}
            vcpus.append(v)
        domains = []
        for d in self.domains:
            mine = [v for v in vcpus if v["domid"] == d.spec.domid]
            domains.append({"name": d.name, "domid": d.spec.domid, "pool": d.pool.name,
                            "weight": d.spec.weight, "cap": d.spec.cap,
                            "vcpus": len(mine),
                            "running_ns": sum(v["running_ns"] for v in mine),
                            "cpu_share": round(sum(v["running_ns"] for v in mine) / dur, 6),
                            "latency": latency_summary(
                                [x for sv in d.vcpus for x in sv.latencies])})
        return {
            "scenario": sc.name, "seed": sc.seed, "duration_ns": self.t,
            "pcpus": [{"cpu": pc.cpu, "pool": pc.pool.name if pc.pool else None,
                       "busy_ns": pc.busy_ns, "idle_ns": pc.idle_ns,
                       "switches": pc.switches, "decisions": pc.decisions}
                      for pc in self.pcpus],
            "pools": [{"name": p.name, "scheduler": p.spec.scheduler, "cpus": p.cpus}
                      for p in self.pools],
            "domains": domains,
            "vcpus": vcpus,
            "events": self.events_processed,
            "decisions": sum(pc.decisions for pc in self.pcpus),
            "wall_s": round(self.wall_s, 3),
            "trace_records": self.writer.records if self.writer is not None else 0,
        }


def simulate(scenario: Scenario | str | Path, **kwargs) -> dict:
    """Run a scenario (object or TOML file) to its end; returns the statistics."""
    if not isinstance(scenario, Scenario):
        scenario = Scenario.load(scenario)
    return Simulator(scenario, **kwargs).run()


def soft_in_text(v: dict) -> str:
    """A vCPU's share of run time inside its soft affinity, in %, or "-"."""
    if "soft_in_ns" not in v:
        return "-"
    tot = v["soft_in_ns"] + v["soft_out_ns"]
    return f"{100 * v['soft_in_ns'] / tot:.1f}" if tot else "-"


def format_stats(st: dict) -> str:
    """The statistics as text tables."""
    dur = st["duration_ns"]
    lines = [f"scenario {st['scenario'] or '-'}: {dur / 1e9:.3f} s virtual, seed {st['seed']}, "
             f"{st['decisions']} decisions, {st['events']} events, {st['wall_s']:.2f} s wall"]
    lines.append("")
    lines.append(f"{'domain':<16} {'id':>4} {'pool':<10} {'weight':>6} {'cap':>4} "
                 f"{'vcpus':>5} {'cpu%':>8} {'lat p50us':>10} {'p99us':>9}")
    for d in st["domains"]:
        lat = d["latency"]
        lines.append(
            f"{d['name'][:16]:<16} {d['domid']:>4} {d['pool'][:10]:<10} "
            f"{'-' if d['weight'] is None else d['weight']:>6} "
            f"{'-' if d['cap'] is None else d['cap']:>4} {d['vcpus']:>5} "
            f"{100 * d['cpu_share']:>8.2f} "
            f"{lat.get('p50_us', 0):>10.1f} {lat.get('p99_us', 0):>9.1f}")
    lines.append("")
    lines.append(f"{'vcpu':<10} {'run%':>7} {'runnable%':>9} {'blocked%':>8} {'wakes':>6} "
                 f"{'lat p50us':>10} {'p99us':>9} {'maxus':>9} {'migr':>5} {'soft-in%':>8}  "
                 f"workload")
    for v in st["vcpus"]:
        lat = v["latency"]
        soft = soft_in_text(v)
        lines.append(
            f"{v['name']:<10} {100 * v['running_ns'] / dur:>7.2f} "
            f"{100 * v['runnable_ns'] / dur:>9.2f} {100 * v['blocked_ns'] / dur:>8.2f} "
            f"{v['wakeups']:>6} {lat.get('p50_us', 0):>10.1f} {lat.get('p99_us', 0):>9.1f} "
            f"{lat.get('max_us', 0):>9.1f} {v['migrations']:>5} {soft:>8}  {v['workload']}")
    lines.append("")
    lines.append(f"{'pcpu':<5} {'pool':<10} {'busy%':>7} {'switches':>9}")
    for p in st["pcpus"]:
        lines.append(f"{p['cpu']:<5} {(p['pool'] or '-')[:10]:<10} "
                     f"{100 * p['busy_ns'] / max(1, dur):>7.2f} {p['switches']:>9}")
    return "\n".join(lines)
