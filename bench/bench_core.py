"""Core-ABI benchmarks (event channels, grant copy, timers, SMP) with guests/bench-ev.

Same method as run.py: the guest writes a marker byte between batches, the
host timestamps the markers, a batch's time / its size is the cost of one
operation; each figure is printed next to a baseline measured in this run.
"""

from __future__ import annotations

import re
import statistics
import threading
import time
from pathlib import Path

from pyxen.hypervisor.hypervisor import Hypervisor
from pyxen.toolstack.builder import BuildSpec, build_pvh
from pyxen.toolstack.privcmd import Privcmd
from pyxen.toolstack.xenctrl import XenCtrl

ROOT = Path(__file__).resolve().parent.parent
BENCH_EV = ROOT / "guests" / "out" / "bench-ev.elf"


class Host:
    """One hypervisor running bench-ev domains; collects markers and console lines."""

    def __init__(self):
        self.hv = Hypervisor("loglvl=error guest_loglvl=all")
        self.xc = XenCtrl(Privcmd(self.hv))
        self.stamps: dict[int, list[float]] = {}
        self.text: dict[int, bytearray] = {}

    def start(self, cmdline: str, *, vcpus: int = 1) -> int:
        built = build_pvh(self.xc, BuildSpec(name="bench-ev", kernel=str(BENCH_EV),
                                             memory_mib=32, cmdline=cmdline, vcpus=vcpus))
        domid = built.domid
        self.stamps[domid] = []
        self.text[domid] = bytearray()
        d = self.hv.get_domain(domid)       # measurement plumbing: console bytes as they come
        d.console_listeners.append(self._listener(domid))
        self.xc.domain_unpause(domid)
        return domid

    def _listener(self, domid: int):
        stamps, text = self.stamps[domid], self.text[domid]

        def on_console(_domid, data: bytes) -> None:
            now = time.perf_counter()
            stamps.extend([now] * data.count(1))
            text.extend(data.replace(b"\x01", b""))
        return on_console

    def wait_text(self, domid: int, pattern: str, timeout: float = 60.0) -> re.Match:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            m = re.search(pattern, self.text[domid].decode(errors="replace"))
            if m:
                return m
            time.sleep(0.005)
        raise RuntimeError(f"bench-ev d{domid}: no /{pattern}/:\n{self.text[domid].decode()}")

    def wait_done(self, domids: list[int], timeout: float = 600.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            infos = [self.xc.domain_getinfo(d) for d in domids]
            if all(i.shutdown for i in infos):
                bad = [(d, i.shutdown_reason) for d, i in zip(domids, infos, strict=True)
                       if i.shutdown_reason != 0]
                if bad:
                    raise RuntimeError(f"bench-ev ended badly {bad}: "
                                       + " | ".join(self.text[d].decode() for d, _ in bad))
                return
            time.sleep(0.02)
        raise RuntimeError("bench-ev did not finish")

    def batch_times(self, domid: int) -> list[float]:
        s = self.stamps[domid]
        return [b - a for a, b in zip(s, s[1:], strict=False)]

    def close(self) -> None:
        self.hv.shutdown_host()


def _one(cmdline: str, *, vcpus: int = 1) -> tuple[list[float], str]:
    host = Host()
    try:
        domid = host.start(cmdline, vcpus=vcpus)
        host.wait_done([domid])
        return host.batch_times(domid), host.text[domid].decode()
    finally:
        host.close()


def evtchn_roundtrip(wait: str, batches: int = 20, size: int = 200) -> float:
    """µs per ping/pong between two domains (p50 over batches)."""
    host = Host()
    try:
        server_id = max(host.hv.domains) + 1
        client_id = server_id + 1
        s = host.start(f"mode=1 role=server peer={client_id} batches={batches} size={size} "
                       f"wait={wait}")
        assert s == server_id
        port = host.wait_text(s, r"READY port=(\d+)").group(1)
        c = host.start(f"mode=1 role=client peer={s} port={port} batches={batches} "
                       f"size={size} wait={wait}")
        host.wait_done([s, c])
        return statistics.median(t / size * 1e6 for t in host.batch_times(c)[1:])
    finally:
        host.close()


def grant_copy_per_s(batches: int = 20, size: int = 500) -> float:
    times, _ = _one(f"mode=2 batches={batches} size={size}")
    return size / statistics.median(times[1:])


def timer_lateness_us(n: int = 300, delay_us: int = 500) -> dict[str, float]:
    _, text = _one(f"mode=3 batches=1 size={n} delay_us={delay_us}")
    m = re.search(r"timer lateness: n=(\d+) min=(-?\d+) avg=(-?\d+) p99=(-?\d+) max=(-?\d+)",
                  text)
    if not m:
        raise RuntimeError(f"no lateness line: {text[-500:]}")
    n_, lo, avg, p99, hi = (int(x) for x in m.groups())
    return {"n": n_, "min": lo, "avg": avg, "p99": p99, "max": hi}


def host_sleep_lateness_us(n: int = 300, delay_us: int = 500) -> float:
    """Baseline: p99 lateness of a plain host thread sleeping on a condition
    (the floor any timer built on host threads starts from)."""
    cv = threading.Condition()
    late = []
    with cv:
        for _ in range(n):
            deadline = time.perf_counter() + delay_us / 1e6
            cv.wait(delay_us / 1e6)
            late.append((time.perf_counter() - deadline) * 1e6)
    late.sort()
    return late[int(len(late) * 0.99) - 1]


def smp_scaling(batches: int = 6, size: int = 5_000_000) -> dict[str, float]:
    """4 × t(1 vCPU) / t(4 vCPUs) for the same per-vCPU work (ideal: 4)."""
    t1, _ = _one(f"mode=4 cpus=1 batches={batches} size={size}", vcpus=4)
    t4, _ = _one(f"mode=4 cpus=4 batches={batches} size={size}", vcpus=4)
    one, four = min(t1[1:]), min(t4[1:])
    return {"smp_scaling": 4 * one / four, "smp_t1_s": one, "smp_t4_s": four}


def host_parallelism(size: int = 5_000_000) -> float:
    """Baseline: how much two bare engines in two threads beat one (this machine's
    usable parallelism for guest code; 2.0 on two free cores)."""
    from run import bare_compute_runner

    runners = [bare_compute_runner(size) for _ in range(2)]
    for r in runners:        # warm the translation caches
        r()
    single = min(runners[0]() for _ in range(3))
    threads = [threading.Thread(target=r) for r in runners]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    double = time.perf_counter() - t
    return 2 * single / double
