"""Scheduler simulator benchmarks.

`sim_512vcpu_60s_wall_s()`: wall seconds to simulate 60 s of virtual time of a
64-pCPU host (2 threads per core, 8 cores per socket, 2 sockets per node)
running 512 model vCPUs in 128 domains of 4 vCPUs: a few CPU-bound "batch"
domains, "web" domains (bursts of ~5 ms every ~50 ms, exponential) and "rt"
domains (2 ms of work every 50 ms). The default mix, "consolidated", keeps
the host about 80 % busy; "overcommitted" asks for ~95 pCPUs' worth, which
makes credit2 switch about every millisecond on every pCPU (its ratelimit).
Credit2 when it can be imported, else a minimal round-robin scheduler (then
the figure is mostly the simulator's own cost). No trace is written.

`decision_us_p50()`: credit2's do_schedule cost inside the simulator, median µs
per call, on the same host and mix for 2 s of virtual time.

`vcpu_switch_us_p50()`: two real guests (guests/hog yield=1) on one pCPU under
credit2, each calling SCHEDOP_yield in a loop: the median time until a vCPU
runs again is two vCPU switches. Baseline in the same run: one such guest
alone (its yield finds nobody to switch to).

Run standalone: `python bench/bench_sched.py [--seconds N] [--mix NAME]`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import deque
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pyxen.hypervisor.sched import registry  # noqa: E402
from pyxen.hypervisor.sched.core import IDLE, Decision, Scheduler  # noqa: E402
from pyxen.hypervisor.sched.sim import Scenario, Simulator  # noqa: E402


class _RoundRobin(Scheduler):
    """The stand-in when credit2 is missing: one FIFO, 10 ms slices, no preemption."""
    name = "rr"

    def __init__(self, env, cpus):
        super().__init__(env, cpus)
        self.queue: deque = deque()
        self.idle = set(cpus)

    def insert_domain(self, dom):
        pass

    def remove_domain(self, dom):
        pass

    def insert_unit(self, unit):
        pass

    def remove_unit(self, unit):
        pass

    def wake(self, unit):
        self.queue.append(unit)
        if self.idle:
            cpu = unit.processor if unit.processor in self.idle else min(self.idle)
            self.idle.discard(cpu)
            self.env.tickle(cpu)

    def sleep(self, unit):
        if unit.running:
            self.env.tickle(unit.processor)
        elif unit in self.queue:
            self.queue.remove(unit)

    def do_schedule(self, cpu, prev, now):
        if prev is not None and prev.runnable:
            self.queue.append(prev)
        if self.queue:
            self.idle.discard(cpu)
            return Decision(self.queue.popleft(), 10_000_000)
        self.idle.add(cpu)
        return Decision(IDLE, -1)

    def pick_cpu(self, unit):
        return unit.processor


def scheduler_name() -> str:
    try:
        registry.get("credit2")
        return "credit2"
    except registry.SchedulerUnavailable:
        return "rr"


MIXES = {
    # a consolidated host, ~80 % busy on average (bursts overlap at times)
    "consolidated": [
        {"name": "batch", "count": 4, "vcpus": 4, "workload": {"type": "hog"}},
        {"name": "web", "count": 62, "vcpus": 4,
         "workload": {"type": "bursty", "run_ms": 5, "sleep_ms": 45}},
        {"name": "rt", "count": 62, "vcpus": 4,
         "workload": {"type": "periodic", "period_ms": 50, "run_ms": 2}},
    ],
    # overcommitted (~95 pCPUs of demand): the batch vCPUs soak up the rest
    "overcommitted": [
        {"name": "batch", "count": 16, "vcpus": 4, "workload": {"type": "hog"}},
        {"name": "web", "count": 56, "vcpus": 4,
         "workload": {"type": "bursty", "run_ms": 5, "sleep_ms": 45}},
        {"name": "rt", "count": 56, "vcpus": 4,
         "workload": {"type": "periodic", "period_ms": 50, "run_ms": 2}},
    ],
}


def scenario(seconds: float = 60, scheduler: str | None = None,
             mix: str = "consolidated") -> Scenario:
    return Scenario.from_dict({
        "name": f"512vcpu-64pcpu-{mix}",
        "duration_ms": int(seconds * 1000),
        "seed": 1,
        "host": {"pcpus": 64, "threads_per_core": 2, "cores_per_socket": 8,
                 "sockets_per_node": 2},
        "pools": [{"name": "Pool-0", "scheduler": scheduler or scheduler_name(),
                   "cpus": "all"}],
        "domains": MIXES[mix],
    })


def _simulator(sc: Scenario) -> Simulator:
    extra = {"rr": _RoundRobin}
    return Simulator(sc, schedulers=extra)


def sim_512vcpu_60s_wall_s(seconds: float = 60, details: dict | None = None,
                           mix: str = "consolidated", scheduler: str | None = None) -> float:
    """Wall seconds to simulate `seconds` (default 60) of the 512-vCPU host."""
    sim = _simulator(scenario(seconds, scheduler, mix))
    t0 = time.perf_counter()
    st = sim.run()
    wall = time.perf_counter() - t0
    if details is not None:
        details.update(scheduler=sim.pools[0].spec.scheduler, decisions=st["decisions"],
                       events=st["events"], virtual_s=seconds, mix=mix,
                       busy=round(sum(p["busy_ns"] for p in st["pcpus"]) /
                                  (64 * st["duration_ns"]), 4))
    return wall


def decision_us_p50(seconds: float = 2, details: dict | None = None,
                    mix: str = "consolidated") -> float | None:
    """Median µs of one credit2 do_schedule call in the simulator (None without credit2)."""
    if scheduler_name() != "credit2":
        return None
    sim = _simulator(scenario(seconds, "credit2", mix))
    sched = sim.pools[0].sched
    inner = sched.do_schedule
    samples: list[int] = []
    clock = time.perf_counter_ns

    def timed(cpu, prev, now):
        t0 = clock()
        d = inner(cpu, prev, now)
        samples.append(clock() - t0)
        return d

    sched.do_schedule = timed
    t0 = time.perf_counter()
    sim.run()
    wall = time.perf_counter() - t0
    if details is not None:
        details.update(decisions=len(samples), wall_s=round(wall, 3),
                       p90_us=round(statistics.quantiles(samples, n=10)[-1] / 1000, 2),
                       share_of_wall=round(sum(samples) / 1e9 / wall, 3))
    return round(statistics.median(samples) / 1000, 2)


def _run_hogs(xen_cmdline: str, cmdlines: list[str], timeout: float) -> tuple[list[str], float]:
    """Boot one hog guest per guest command line on a host with `xen_cmdline`, wait
    until all have powered off; their console text and the wall seconds it took."""
    import io
    import os

    from pyxen.hypervisor.hypervisor import Hypervisor
    from pyxen.toolstack.privcmd import Privcmd
    from pyxen.toolstack.runner import DomainRunner
    from pyxen.toolstack.xlcfg import build_domain_config, load_config

    root = Path(__file__).resolve().parent.parent
    cwd = os.getcwd()
    os.chdir(root)
    hv = Hypervisor(f"{xen_cmdline} loglvl=error guest_loglvl=all")
    runners, outs = [], []
    try:
        pc = Privcmd(hv)
        t0 = time.perf_counter()
        for i, cmdline in enumerate(cmdlines):
            dc = build_domain_config(load_config(
                root / "guests/hog/hog.cfg", (f'name="hog{i}"', f"cmdline='{cmdline}'")))
            out = io.StringIO()
            r = DomainRunner(pc, dc, out=out, err=io.StringIO(), quiet=True)
            r.start()
            runners.append(r)
            outs.append(out)
        for r in runners:
            r.wait(time.monotonic() + timeout)
        wall = time.perf_counter() - t0
    finally:
        for r in runners:
            r.close()
        hv.shutdown_host()
        os.chdir(cwd)
    return [o.getvalue() for o in outs], wall


def _yield_p50_ns(n_domains: int, seconds: float = 2.0) -> list[int]:
    """Run n hog guests in yield mode on one credit2 pCPU; each one's median ns."""
    import re
    outs, _wall = _run_hogs("nr_cpus=1 sched=credit2",
                            [f"yield=1 seconds={seconds:g}"] * n_domains, seconds + 60)
    found = [re.search(r"yields (\d+) p50 (\d+) ns", o) for o in outs]
    if not all(found):
        raise RuntimeError("a yield guest did not report: " + repr([o[-300:] for o in outs]))
    return [int(m.group(2)) for m in found]


def vtime_wall_per_virtual(ms: int = 500, pcpus: int = 1) -> float:
    """Deterministic virtual time: wall seconds per virtual second while `pcpus` hog
    guests keep `pcpus` pCPUs busy (one thread steps them all, so it grows with
    them). The same guests in wall-clock mode take 1.0 by definition."""
    outs, wall = _run_hogs(f"clock=virtual nr_cpus={pcpus} sched=credit2",
                           [f"ms={ms}"] * pcpus, 600)
    if not all("hog: done" in o for o in outs):
        raise RuntimeError("a hog did not finish: " + repr([o[-300:] for o in outs]))
    return round(wall / (ms / 1000), 2)


def vcpu_switch_us_p50(seconds: float = 2.0, details: dict | None = None) -> float:
    """µs per vCPU switch between two real guests' vCPUs on one pCPU (median)."""
    pair = _yield_p50_ns(2, seconds)
    alone = _yield_p50_ns(1, seconds)
    if details is not None:
        details.update(yield_alone_us=round(alone[0] / 1000, 2))
    return round(statistics.median(pair) / 2 / 1000, 2)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60, help="virtual seconds (default 60)")
    ap.add_argument("--mix", choices=sorted(MIXES), default="consolidated")
    ap.add_argument("--scheduler", default=None, help="credit2 (default if available) or rr")
    args = ap.parse_args()
    info: dict = {}
    wall = sim_512vcpu_60s_wall_s(args.seconds, info, args.mix, args.scheduler)
    print(f"sim 512 vCPUs / 64 pCPUs / {args.seconds:g} s virtual ({args.mix}): "
          f"{wall:.2f} s wall  {info}")
    sw: dict = {}
    print(f"vCPU switch p50 (two real guests, one pCPU, credit2): "
          f"{vcpu_switch_us_p50(details=sw)} µs  (a yield alone: {sw['yield_alone_us']} µs)")
    dinfo: dict = {}
    p50 = decision_us_p50(details=dinfo, mix=args.mix)
    if p50 is None:
        print("credit2 do_schedule: credit2 not available")
    else:
        print(f"credit2 do_schedule p50: {p50} µs  {dinfo}")
