"""`make bench`: pyxen's foundation benchmarks.

Every figure is measured in this run next to a baseline measured in the same
run (the bare engine doing the same thing without a hypervisor around it, or
the other MMU mode), and printed as a ratio. Results go to bench/results.json.

Timing method: the bench guest (guests/bench) writes a marker byte to the
debug port between batches of operations; the host timestamps each marker
as it arrives, so a batch's time divided by its size is the cost of one
operation as the guest sees it (trap, handler, return). Reaching into the
domain object for the marker timestamps is measurement plumbing only.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from unicorn import UC_ARCH_X86, UC_HOOK_INSN_INVALID, UC_MODE_64, Uc  # noqa: E402
from unicorn import x86_const as X  # noqa: E402

from pyxen.arch import unicorn_raw as raw  # noqa: E402
from pyxen.hypervisor.hypervisor import Hypervisor  # noqa: E402
from pyxen.toolstack.builder import BuildSpec, build_pvh  # noqa: E402
from pyxen.toolstack.privcmd import Privcmd  # noqa: E402
from pyxen.toolstack.xenctrl import XenCtrl  # noqa: E402

OUT = ROOT / "guests" / "out"
BENCH_ELF = OUT / "bench.elf"
console = Console(stderr=True)


# -- running a guest with marker timestamps ---------------------------------------------
class MarkedRun:
    def __init__(self, kernel: Path, cmdline: str, mmu: str, memory: int = 64):
        self.stamps: list[float] = []
        self.hv = Hypervisor(f"vcpu_mmu={mmu} loglvl=error guest_loglvl=all")
        self.xc = XenCtrl(Privcmd(self.hv))
        self.kernel = kernel
        self.cmdline = cmdline
        self.memory = memory

    def _on_console(self, _domid, data: bytes) -> None:
        now = time.perf_counter()
        self.stamps.extend([now] * data.count(1))

    def run(self, timeout: float = 300.0) -> int:
        t0 = time.perf_counter()
        built = build_pvh(self.xc, BuildSpec(name="bench", kernel=str(self.kernel),
                                             memory_mib=self.memory, cmdline=self.cmdline))
        self.build_s = time.perf_counter() - t0
        d = self.hv.get_domain(built.domid)
        d.console_listeners.append(self._on_console)
        done = threading.Event()
        from pyxen.abi.constants import Virq
        self.xc.privcmd.bind_virq(Virq.DOM_EXC, done.set)
        self.start = time.perf_counter()
        self.xc.domain_unpause(built.domid)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            done.wait(0.05)
            info = self.xc.domain_getinfo(built.domid)
            if info.shutdown:
                self.end = time.perf_counter()
                reason = info.shutdown_reason
                self.log = self.hv.log.read()[0].decode(errors="replace")
                self.hv.shutdown_host()
                return reason
        self.hv.shutdown_host()
        raise RuntimeError("bench guest did not finish")

    def batch_times(self) -> list[float]:
        s = self.stamps
        return [b - a for a, b in zip(s, s[1:], strict=False)]


def bench_guest(mode: int, batches: int, size: int, mmu: str) -> MarkedRun:
    r = MarkedRun(BENCH_ELF, f"mode={mode} batches={batches} size={size}", mmu)
    reason = r.run()
    if reason != 0:
        raise RuntimeError(f"bench guest mode {mode} ended with reason {reason}:\n{r.log}")
    return r


def p50(values):
    return statistics.median(values)


# -- bare-engine baselines ----------------------------------------------------------------
def _bare_engine(code: bytes, mem_size: int = 1 << 20):
    uc = Uc(UC_ARCH_X86, UC_MODE_64)
    buf = ctypes.create_string_buffer(mem_size)
    uc.mem_map_ptr(0, mem_size, 7, ctypes.addressof(buf))
    ctypes.memmove(ctypes.addressof(buf) + 0x1000, code, len(code))
    return uc, buf


def bare_trap_floor_us(batches: int, size: int) -> float:
    """vmcall loop on a bare engine whose hook only steps over the instruction."""
    # loop: vmcall; dec %rcx; jnz loop; hlt
    code = bytes.fromhex("0f01c1" "48ffc9" "75f8" "f4")
    uc, _buf = _bare_engine(code)
    rip = ctypes.c_uint64()

    def hook(h, _ud):
        raw.uc_reg_read(h, X.UC_X86_REG_RIP, ctypes.addressof(rip))
        rip.value += 3
        raw.uc_reg_write(h, X.UC_X86_REG_RIP, ctypes.addressof(rip))
        return True

    hooks = raw.HookSet(uc._uch)
    hooks.add(UC_HOOK_INSN_INVALID, raw.HOOK_INSN_INVALID_CB, hook)
    times = []
    for _ in range(batches):
        uc.reg_write(X.UC_X86_REG_RCX, size)
        t = time.perf_counter()
        raw.uc_emu_start(uc._uch, 0x1000, 1 << 63, 0, 0)
        times.append((time.perf_counter() - t) / size * 1e6)
    return p50(times)


def bare_compute_runner(size: int):
    """A bare engine (no hypervisor) loaded with the bench ELF; the returned function
    runs bench_compute_kernel(size) once and returns its wall time."""
    from elftools.elf.elffile import ELFFile

    with open(BENCH_ELF, "rb") as f:
        elf = ELFFile(f)
        sym = elf.get_section_by_name(".symtab").get_symbol_by_name("bench_compute_kernel")[0]
        entry = sym["st_value"]
        segs = [(s["p_paddr"], s.data(), s["p_memsz"]) for s in elf.iter_segments()
                if s["p_type"] == "PT_LOAD"]
    mem = 8 << 20
    uc = Uc(UC_ARCH_X86, UC_MODE_64)
    buf = ctypes.create_string_buffer(mem)
    uc.mem_map_ptr(0, mem, 7, ctypes.addressof(buf))
    for paddr, data, _memsz in segs:
        ctypes.memmove(ctypes.addressof(buf) + paddr, data, len(data))
    stop = 0x7000                     # return address: a hlt
    ctypes.memmove(ctypes.addressof(buf) + stop, b"\xf4", 1)
    rsp = mem - 0x1000

    def run_once(_keep=buf) -> float:
        ctypes.memmove(ctypes.addressof(buf) + rsp, stop.to_bytes(8, "little"), 8)
        uc.reg_write(X.UC_X86_REG_RSP, rsp)
        uc.reg_write(X.UC_X86_REG_RDI, size)
        t = time.perf_counter()
        # Runs until the hlt at the return address; an `until` inside mapped code would
        # make the engine check every block (twice as slow), so it is unreachable here.
        uc.emu_start(entry, 1 << 63)
        return time.perf_counter() - t
    return run_once


def bare_compute_s(size: int) -> float:
    """bench_compute_kernel from the bench ELF, run on a bare engine (no hypervisor)."""
    run_once = bare_compute_runner(size)
    return min(run_once() for _ in range(6))      # warm runs, like the guest's later batches


# -- the benchmarks -------------------------------------------------------------------------
def bench_hypercall(res):
    floor = bare_trap_floor_us(200, 1000)
    for mmu in ("engine", "software"):
        r = bench_guest(1, 200, 1000, mmu)
        res[f"hypercall_us_p50_{mmu}"] = p50([t / 1000 * 1e6 for t in r.batch_times()])
    res["hypercall_us_p50"] = res["hypercall_us_p50_engine"]
    res["engine_trap_floor_us"] = floor


def bench_exception(res):
    for mmu in ("engine", "software"):
        r = bench_guest(2, 50, 200, mmu)
        res[f"exception_us_p50_{mmu}"] = p50([t / 200 * 1e6 for t in r.batch_times()])
    res["exception_us_p50"] = res["exception_us_p50_engine"]


def bench_tlb(res):
    pages = 2048
    for mmu in ("engine", "software"):
        r = bench_guest(3, 20, pages, mmu)
        t = r.batch_times()
        # Per batch: [cr3 reload + mark], miss pass, hit pass, repeated.
        misses = t[1::3]
        hits = t[2::3]
        fills = [(m - h) / pages * 1e6 for m, h in zip(misses, hits, strict=False)]
        res[f"tlb_fill_us_{mmu}"] = p50(fills)
    res["tlb_fill_us"] = res["tlb_fill_us_software"]


def bench_compute(res):
    size = 20_000_000
    bare = bare_compute_s(size)
    res["compute_bare_s"] = bare
    for mmu in ("engine", "software"):
        r = bench_guest(4, 8, size, mmu)
        # Best batch after the first (translation warm-up), like the bare runs.
        res[f"compute_ratio_{mmu}"] = bare / min(r.batch_times()[1:])
    res["compute_ratio"] = min(res["compute_ratio_engine"], res["compute_ratio_software"])


def bench_create(res):
    firsts = []
    hv = Hypervisor("")
    xc = XenCtrl(Privcmd(hv))
    try:
        for _ in range(20):
            seen = threading.Event()
            stamp = []
            t0 = time.perf_counter()
            built = build_pvh(xc, BuildSpec(name="first", kernel=str(OUT / "bench-first-insn.elf"),
                                            memory_mib=16))
            d = hv.get_domain(built.domid)
            d.console_listeners.append(
                lambda _d, _b, stamp=stamp, seen=seen: (stamp.append(time.perf_counter()),
                                                        seen.set()))
            xc.domain_unpause(built.domid)
            seen.wait(10)
            firsts.append((stamp[0] - t0) * 1e3)
            xc.domain_destroy(built.domid)
    finally:
        hv.shutdown_host()
    res["create_to_first_insn_ms"] = p50(firsts[2:])   # the first runs warm the caches


def bench_hello(res):
    times = {}
    for mmu in ("engine", "software"):
        runs = []
        for _ in range(7):
            r = MarkedRun(OUT / "hello.elf", "", mmu, memory=16)
            t0 = time.perf_counter()
            r.run()
            runs.append((r.end - t0) * 1e3)
        times[mmu] = p50(runs)
        res[f"hello_boot_to_poweroff_ms_{mmu}"] = times[mmu]
    res["hello_boot_to_poweroff_ms"] = times["engine"]


def _rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def bench_overhead(res):
    n = 8
    hv = Hypervisor("")
    xc = XenCtrl(Privcmd(hv))
    try:
        # Warm-up domain: one-time costs (engine library, CPUID policy) are not per domain.
        warm = build_pvh(xc, BuildSpec(name="w", kernel=str(OUT / "test-hlt.elf"), memory_mib=16))
        xc.domain_unpause(warm.domid)
        time.sleep(0.3)
        rss0 = _rss_bytes()
        ram0 = hv.machine.used_bytes_resident()
        ids = []
        for i in range(n):
            b = build_pvh(xc, BuildSpec(name=f"idle{i}", kernel=str(OUT / "test-hlt.elf"),
                                        memory_mib=16))
            xc.domain_unpause(b.domid)
            ids.append(b.domid)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(xc.domain_getinfo(i).blocked for i in ids):
            time.sleep(0.05)
        rss1 = _rss_bytes()
        ram1 = hv.machine.used_bytes_resident()
        per_domain = ((rss1 - rss0) - (ram1 - ram0)) / n
        res["domain_overhead_mb"] = per_domain / (1 << 20)
        res["domain_guest_ram_touched_mb"] = (ram1 - ram0) / n / (1 << 20)
    finally:
        hv.shutdown_host()


TARGETS = {
    "evtchn_roundtrip_us_p50": ("<=", 10.0),
    "xenstored_ops_per_s": (">=", 30000.0),
    "xenstored_ops_per_s_pipelined": (">=", 30000.0),
    "timer_wakeup_latency_us_p99": ("<=", 1000.0),
    "compute_ratio": (">=", 0.90),
    "hypercall_us_p50": ("<=", 3.0),
    "exception_us_p50": ("<=", 20.0),
    "tlb_fill_us": ("<=", 3.0),
    "create_to_first_insn_ms": ("<=", 5.0),
    "sched_sim_512vcpu_60s_wall_s": ("<=", 30.0),
    "sched_decision_us_p50": ("<=", 5.0),
}


# -- core ABI (issue 3): events, grants, timers, SMP --------------------------------------
def bench_evtchn(res):
    import bench_core
    res["evtchn_roundtrip_us_p50"] = bench_core.evtchn_roundtrip("halt")
    res["evtchn_roundtrip_us_p50_poll"] = bench_core.evtchn_roundtrip("poll")


def bench_grant_copy(res):
    import bench_core
    res["grant_copy_4k_per_s"] = bench_core.grant_copy_per_s()
    res["null_hypercalls_per_s"] = 1e6 / res["hypercall_us_p50"]


def bench_timers(res):
    import bench_core
    late = bench_core.timer_lateness_us()
    res["timer_wakeup_latency_us_p99"] = float(late["p99"])
    res["timer_wakeup_latency_us_avg"] = float(late["avg"])
    res["timer_wakeup_latency_us_max"] = float(late["max"])
    res["host_sleep_lateness_us_p99"] = bench_core.host_sleep_lateness_us()


def bench_smp(res):
    import bench_core
    res.update(bench_core.smp_scaling())
    res["host_parallelism_2_threads"] = bench_core.host_parallelism()


# -- toolstack (issue 4): xenstored, creation with many domains running ----------------------
def bench_xenstored(res):
    import bench_xenstored
    res["socket_round_trips_per_s"] = bench_xenstored.baseline_round_trips_per_s()
    res["xenstored_ops_per_s"] = bench_xenstored.ops_per_s_single()
    res["xenstored_ops_per_s_pipelined"] = bench_xenstored.ops_per_s_pipelined()


def bench_create_with_running(res):
    import bench_toolstack
    res.update(bench_toolstack.create_ms_with_n_running(
        progress=lambda msg: console.print(f"    {msg}")))


def bench_sched(res):
    import bench_sched
    info: dict = {}
    res["sched_sim_512vcpu_60s_wall_s"] = bench_sched.sim_512vcpu_60s_wall_s(details=info)
    console.print(f"    credit2: {info}")
    res["sched_sim_512vcpu_60s_wall_s_rr"] = bench_sched.sim_512vcpu_60s_wall_s(
        scheduler="rr")
    res["sched_decision_us_p50"] = bench_sched.decision_us_p50()
    sw: dict = {}
    res["vcpu_switch_us_p50"] = bench_sched.vcpu_switch_us_p50(details=sw)
    res["yield_alone_us_p50"] = sw["yield_alone_us"]
    res["vtime_wall_per_virtual_1pcpu"] = bench_sched.vtime_wall_per_virtual(pcpus=1)
    res["vtime_wall_per_virtual_2pcpus"] = bench_sched.vtime_wall_per_virtual(pcpus=2)


def main() -> int:
    if not BENCH_ELF.exists():
        console.print("[red]guests are not built: run `make -C guests` first[/red]")
        return 2
    steps = [("hypercalls", bench_hypercall), ("exceptions", bench_exception),
             ("TLB fills", bench_tlb), ("compute", bench_compute),
             ("domain creation", bench_create), ("hello boot", bench_hello),
             ("domain overhead", bench_overhead), ("event channels", bench_evtchn),
             ("grant copy", bench_grant_copy), ("timers", bench_timers), ("SMP", bench_smp),
             ("xenstored", bench_xenstored),
             ("creation with running domains", bench_create_with_running),
             ("scheduler simulator", bench_sched)]
    res: dict[str, float] = {}
    with console.status("benchmarking") as status:
        for label, fn in steps:
            status.update(f"benchmarking {label}")
            t = time.perf_counter()
            fn(res)
            console.print(f"  {label}: done in {time.perf_counter() - t:.1f} s")
    table = Table(title="pyxen foundation benchmarks")
    for col in ("metric", "value", "baseline (same run)", "ratio", "target", "ok"):
        table.add_column(col)
    rows = [
        ("hypercall_us_p50", res["hypercall_us_p50"], "engine trap floor",
         res["engine_trap_floor_us"]),
        ("hypercall_us_p50_software", res["hypercall_us_p50_software"], "engine trap floor",
         res["engine_trap_floor_us"]),
        ("exception_us_p50", res["exception_us_p50"], "engine trap floor",
         res["engine_trap_floor_us"]),
        ("exception_us_p50_software", res["exception_us_p50_software"], "engine trap floor",
         res["engine_trap_floor_us"]),
        ("tlb_fill_us", res["tlb_fill_us"], "engine's own walk", res["tlb_fill_us_engine"]),
        ("compute_ratio", res["compute_ratio"], "bare engine (s)", res["compute_bare_s"]),
        ("compute_ratio_engine", res["compute_ratio_engine"], "bare engine (s)",
         res["compute_bare_s"]),
        ("compute_ratio_software", res["compute_ratio_software"], "bare engine (s)",
         res["compute_bare_s"]),
        ("create_to_first_insn_ms", res["create_to_first_insn_ms"], "", None),
        ("hello_boot_to_poweroff_ms", res["hello_boot_to_poweroff_ms"], "software MMU",
         res["hello_boot_to_poweroff_ms_software"]),
        ("domain_overhead_mb", res["domain_overhead_mb"], "guest RAM touched (MB)",
         res["domain_guest_ram_touched_mb"]),
        ("evtchn_roundtrip_us_p50", res["evtchn_roundtrip_us_p50"], "2 null hypercalls",
         2 * res["hypercall_us_p50"]),
        ("evtchn_roundtrip_us_p50_poll", res["evtchn_roundtrip_us_p50_poll"],
         "2 null hypercalls", 2 * res["hypercall_us_p50"]),
        ("grant_copy_4k_per_s", res["grant_copy_4k_per_s"], "null hypercalls/s",
         res["null_hypercalls_per_s"]),
        ("timer_wakeup_latency_us_p99", res["timer_wakeup_latency_us_p99"],
         "host thread sleep p99", res["host_sleep_lateness_us_p99"]),
        ("smp_scaling", res["smp_scaling"], "host parallelism (2 engines)",
         res["host_parallelism_2_threads"]),
        ("xenstored_ops_per_s", res["xenstored_ops_per_s"],
         "bare socket round trips/s (2 threads)", res["socket_round_trips_per_s"]),
        ("xenstored_ops_per_s_pipelined", res["xenstored_ops_per_s_pipelined"], "", None),
        ("create_ms_with_0_running", res["create_ms_with_0_running"], "", None),
        ("create_ms_with_100_running", res["create_ms_with_100_running"], "0 running",
         res["create_ms_with_0_running"]),
        ("create_ms_with_500_running", res["create_ms_with_500_running"], "0 running",
         res["create_ms_with_0_running"]),
        ("sched_sim_512vcpu_60s_wall_s", res["sched_sim_512vcpu_60s_wall_s"],
         "simulator with round-robin", res["sched_sim_512vcpu_60s_wall_s_rr"]),
        ("sched_decision_us_p50", res["sched_decision_us_p50"], "", None),
        ("vcpu_switch_us_p50", res["vcpu_switch_us_p50"], "a yield with nobody to switch to",
         res["yield_alone_us_p50"]),
        ("vtime_wall_per_virtual_2pcpus", res["vtime_wall_per_virtual_2pcpus"],
         "one pCPU", res["vtime_wall_per_virtual_1pcpu"]),
    ]
    for key, value, base_name, base in rows:
        ratio = ("" if base in (None, 0) or key.startswith(("compute", "smp"))
                 else f"{value / base:.2f}x")
        tgt = TARGETS.get(key)
        ok = ""
        if tgt:
            ok = "yes" if (value >= tgt[1] if tgt[0] == ">=" else value <= tgt[1]) else "NO"
        table.add_row(key, f"{value:.3f}", f"{base_name} {base:.3f}" if base is not None else "",
                      ratio, f"{tgt[0]} {tgt[1]}" if tgt else "", ok)
    Console().print(table)
    res["_meta"] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"), "python": platform.python_version(),
        "machine": platform.machine(), "cpus": os.cpu_count(),
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                 capture_output=True, text=True).stdout.strip(),
    }
    (ROOT / "bench" / "results.json").write_text(json.dumps(res, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
