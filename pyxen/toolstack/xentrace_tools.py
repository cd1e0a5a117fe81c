"""`pyxen-trace`: simulate scheduler scenarios and analyse xentrace files.

    pyxen-trace simulate SCENARIO.toml [--trace FILE] [--json]
    pyxen-trace analyze TRACEFILE [--json] [--plot-dir DIR] [--meta FILE]
    pyxen-trace dump TRACEFILE [--limit N]
    pyxen-trace record OUTFILE [--seconds N] [--mask HEX]

`record` asks the running host daemon (`pyxen-host`, over its control socket)
to record its trace buffers into OUTFILE for N seconds, as xentrace does on
Xen (trace_record op; the daemon writes the file), showing progress, then a
summary (records, bytes, lost records).

`analyze` works like xenalyze's scheduler summary, from the generic scheduler
records every xentrace file has: per vCPU the time spent running / runnable /
blocked / offline, wake-up-to-run latency percentiles (a wake-up is a
runstate change blocked|offline -> runnable; its latency lasts until the
vCPU next runs), migrations (the vCPU starts running on another pCPU than
last time), per pCPU the busy time and context switches. With a side-car
`TRACEFILE.meta.json` (the simulator writes one; `--meta` names another) it
adds domain names and the run time spent inside vs outside each vCPU's
effective soft affinity. Credit2 cap parking is reported when the trace has
credit2 CREDIT_BURN records (0x00022203: {vcpu:16, dom:16}, credit, budget,
delta; budget INT_MIN when uncapped): a capped vCPU whose budget is used up is
parked from when it leaves its pCPU until it runs again (or blocks). A vCPU
that goes running -> offline without a SLEEP record is counted as parked too
(how Xen itself shows parking).

Records at the same TSC on different pCPUs have no order in a trace file;
the analysis orders each vCPU's runstate changes at one TSC into a chain
(old state of one = new state of the previous) before applying them.

`--plot-dir` writes PNGs (matplotlib, optional dependency `pyxen[plot]`):
pcpu_timeline.png (what ran where, within `--window-ms`), latency_hist.png,
runstates.png.
"""

from __future__ import annotations

import json
import os
import re
import sys
import traceback
from collections import defaultdict
from pathlib import Path

import click

from ..hypervisor.sched.sim import (
    META_SUFFIX,
    Scenario,
    ScenarioError,
    SimError,
    Simulator,
    format_stats,
    latency_summary,
    soft_in_text,
)
from ..hypervisor.sched.trace import (
    DOMID_IDLE,
    RUNSTATE_BLOCKED,
    RUNSTATE_NAMES,
    RUNSTATE_OFFLINE,
    RUNSTATE_RUNNABLE,
    RUNSTATE_RUNNING,
    TRC_ALL,
    TRC_CSCHED2_CREDIT_BURN,
    TRC_SCHED_BLOCK,
    TRC_SCHED_RUNSTATE_CHANGE,
    TRC_SCHED_SLEEP,
    TRC_SCHED_SWITCH,
    TRC_SCHED_WAKE,
    TRC_SCHED_YIELD,
    TSC_KHZ,
    Record,
    TraceFile,
    TraceFormatError,
    event_name,
    read_trace,
    split_unit_word,
    tsc_to_ns,
)

EXIT_BAD_INPUT = 2
INT_MIN_U32 = 0x8000_0000


class Fail(click.ClickException):
    """One error line and exit status 2 (bad input)."""
    exit_code = EXIT_BAD_INPUT


def _s32(w: int) -> int:
    return w - (1 << 32) if w & 0x8000_0000 else w


# -- analysis ---------------------------------------------------------------------------------
class _V:
    """What the analysis knows about one vCPU."""
    __slots__ = ("dom", "vcpu", "state", "state_t", "times", "first_t", "wake_t", "latencies",
                 "runs", "preemptions", "migrations", "last_cpu", "run_cpu", "run_start",
                 "soft_in", "soft_out", "eff_soft", "exhausted", "parked_since", "parks",
                 "sleep_seen", "wakes", "blocks", "yields", "sleeps")

    def __init__(self, dom: int, vcpu: int):
        self.dom = dom
        self.vcpu = vcpu
        self.state: int | None = None
        self.state_t = 0
        self.times = [0, 0, 0, 0]
        self.first_t = 0
        self.wake_t = -1
        self.latencies: list[int] = []
        self.runs = self.preemptions = self.migrations = 0
        self.last_cpu = -1
        self.run_cpu = -1
        self.run_start = 0
        self.soft_in = self.soft_out = 0
        self.eff_soft: frozenset[int] | None = None
        self.exhausted = False
        self.parked_since = -1
        self.parks: list[int] = []
        self.sleep_seen = False
        self.wakes = self.blocks = self.yields = self.sleeps = 0


def _effective_soft(pool: frozenset[int], hard: list[int], soft: list[int]):
    h = pool & frozenset(hard) if hard else pool
    s = h & frozenset(soft) if soft else frozenset()
    return s if s and s != h else None


class TraceAnalysis:
    """Feed it a trace's records (time order); `result()` gives the summary."""

    def __init__(self, meta: dict | None = None, keep_intervals: bool = False,
                 tsc_khz: int | None = None):
        self.meta = meta or {}
        self.keep_intervals = keep_intervals
        khz = tsc_khz or int(self.meta.get("tsc_khz", TSC_KHZ))
        if khz <= 0:
            raise ValueError("the TSC rate must be positive")
        self._to_ns = tsc_to_ns if khz == TSC_KHZ else (lambda tsc: tsc * 1_000_000 // khz)
        self.v: dict[tuple[int, int], _V] = {}
        self.cpu_busy: dict[int, int] = defaultdict(int)
        self.cpu_switches: dict[int, int] = defaultdict(int)
        self.intervals: list[tuple[int, int, int, int, int]] = []   # cpu, start, end, dom, vcpu
        self.events: dict[int, int] = defaultdict(int)
        self.records = 0
        self.first_t: int | None = None
        self.last_t = 0
        self.reordered = 0
        self.inconsistent = 0
        self.has_credit2_burn = False
        self._soft: dict[tuple[int, int], frozenset[int] | None] = {}
        self._changes: list[dict] = []
        self._pools: dict[int, frozenset[int]] = {}
        self._meta_setup()

    def _meta_setup(self) -> None:
        m = self.meta
        pools = {p["name"]: frozenset(p["cpus"]) for p in m.get("pools", [])}
        all_cpus = frozenset(range(int(m.get("pcpus", 0))))
        self._hard: dict[tuple[int, int], list[int]] = {}
        self._softraw: dict[tuple[int, int], list[int]] = {}
        for d in m.get("domains", []):
            pool = pools.get(d.get("pool"), all_cpus)
            self._pools[d["domid"]] = pool
            for vc in d.get("vcpus", []):
                key = (d["domid"], vc["vcpu"])
                self._hard[key] = vc.get("hard", [])
                self._softraw[key] = vc.get("soft", [])
                self._soft[key] = _effective_soft(pool, self._hard[key], self._softraw[key])
        self._changes = sorted((c for c in m.get("changes", []) if "vcpu" in c),
                               key=lambda c: c["t_ns"])
        self._ci = 0

    def _vcpu(self, dom: int, vcpu: int, t: int) -> _V:
        key = (dom, vcpu)
        st = self.v.get(key)
        if st is None:
            st = self.v[key] = _V(dom, vcpu)
            st.first_t = t
            st.state_t = t
            st.eff_soft = self._soft.get(key)
        return st

    def _apply_changes(self, t: int) -> None:
        ch = self._changes
        while self._ci < len(ch) and ch[self._ci]["t_ns"] <= t:
            c = ch[self._ci]
            self._ci += 1
            key = (c["domid"], c["vcpu"])
            pool = self._pools.get(c["domid"], frozenset(range(int(self.meta.get("pcpus", 0)))))
            eff = _effective_soft(pool, c.get("hard", []), c.get("soft", []))
            self._soft[key] = eff
            if key in self.v:
                self.v[key].eff_soft = eff

    # -- feeding -----------------------------------------------------------------------------
    def feed(self, records) -> None:
        group: list[Record] = []
        gt = None
        for rec in records:
            if rec.tsc != gt:
                if group:
                    self._group(group)
                group = [rec]
                gt = rec.tsc
            else:
                group.append(rec)
        if group:
            self._group(group)

    def _group(self, group: list[Record]) -> None:
        t = self._to_ns(group[0].tsc)
        if self.first_t is None:
            self.first_t = t
        self.last_t = t
        if self._changes:
            self._apply_changes(t)
        if len(group) == 1:
            self._one(group[0], t)
            return
        per_unit: dict[tuple[int, int], list[Record]] = {}
        for rec in group:
            if rec.event & ~0x330 == TRC_SCHED_RUNSTATE_CHANGE and rec.words:
                per_unit.setdefault(split_unit_word(rec.words[0]), []).append(rec)
        chains = {}
        for key, recs in per_unit.items():
            if len(recs) > 1:
                chain = self._chain(key, recs)
                if chain != recs:
                    self.reordered += 1
                chains[key] = iter(chain)
        for rec in group:
            if chains and rec.event & ~0x330 == TRC_SCHED_RUNSTATE_CHANGE and rec.words:
                it = chains.get(split_unit_word(rec.words[0]))
                if it is not None:
                    rec = next(it)
            self._one(rec, t)

    def _chain(self, key: tuple[int, int], recs: list[Record]) -> list[Record]:
        """A vCPU's runstate changes at one TSC, ordered so each starts where the last
        ended (starting from the state known so far, or from the change nothing leads to)."""
        st = self.v.get(key)
        cur = st.state if st is not None else None
        left = list(recs)
        out = []
        while left:
            pick = None
            if cur is not None:
                pick = next((r for r in left if (r.event >> 8) & 3 == cur), None)
            if pick is None:
                ends = {(r.event >> 4) & 3 for r in left}
                pick = next((r for r in left if (r.event >> 8) & 3 not in ends), left[0])
            left.remove(pick)
            out.append(pick)
            cur = (pick.event >> 4) & 3
        return out

    def _one(self, rec: Record, t: int) -> None:
        ev = rec.event
        self.records += 1
        self.events[ev] += 1
        w = rec.words
        if ev & ~0x330 == TRC_SCHED_RUNSTATE_CHANGE:
            if w:
                dom, vcpu = split_unit_word(w[0])
                self._runstate(rec.cpu, dom, vcpu, (ev >> 8) & 3, (ev >> 4) & 3, t)
        elif ev == TRC_SCHED_SWITCH:
            self.cpu_switches[rec.cpu] += 1
        elif ev in (TRC_SCHED_WAKE, TRC_SCHED_SLEEP, TRC_SCHED_BLOCK, TRC_SCHED_YIELD):
            if len(w) >= 2:
                st = self._vcpu(w[0], w[1], t)
                if ev == TRC_SCHED_WAKE:
                    st.wakes += 1
                elif ev == TRC_SCHED_BLOCK:
                    st.blocks += 1
                elif ev == TRC_SCHED_YIELD:
                    st.yields += 1
                else:
                    st.sleeps += 1
                    st.sleep_seen = True
        elif ev == TRC_CSCHED2_CREDIT_BURN:
            if len(w) >= 3:
                self.has_credit2_burn = True
                dom, vcpu = split_unit_word(w[0])
                st = self._vcpu(dom, vcpu, t)
                budget = w[2]
                if budget != INT_MIN_U32 and _s32(budget) <= 0:
                    if st.state == RUNSTATE_RUNNING:
                        st.exhausted = True
                    elif st.parked_since < 0 and st.state in (RUNSTATE_RUNNABLE, None):
                        st.parked_since = t
                else:
                    st.exhausted = False

    def _runstate(self, cpu: int, dom: int, vcpu: int, old: int, new: int, t: int) -> None:
        if dom == DOMID_IDLE:
            return
        st = self._vcpu(dom, vcpu, t)
        if st.state is None:
            st.state = old
            st.state_t = t
        elif st.state != old:
            self.inconsistent += 1
        cur = st.state
        st.times[cur] += t - st.state_t
        if cur == RUNSTATE_RUNNING and st.run_cpu >= 0:
            ran = t - st.run_start
            self.cpu_busy[st.run_cpu] += ran
            es = st.eff_soft
            if es is not None:
                if st.run_cpu in es:
                    st.soft_in += ran
                else:
                    st.soft_out += ran
            if self.keep_intervals:
                self.intervals.append((st.run_cpu, st.run_start, t, dom, vcpu))
            st.run_cpu = -1
            if new == RUNSTATE_RUNNABLE:
                st.preemptions += 1
            if new in (RUNSTATE_RUNNABLE, RUNSTATE_OFFLINE) and st.parked_since < 0 and (
                    st.exhausted or (new == RUNSTATE_OFFLINE and not st.sleep_seen)):
                st.parked_since = t
            st.exhausted = False
        if new == RUNSTATE_RUNNABLE and old in (RUNSTATE_BLOCKED, RUNSTATE_OFFLINE):
            if st.wake_t < 0:
                st.wake_t = t
        elif new == RUNSTATE_OFFLINE and old == RUNSTATE_RUNNABLE:
            st.wake_t = -1
        if new == RUNSTATE_RUNNING:
            if st.wake_t >= 0:
                st.latencies.append(t - st.wake_t)
                st.wake_t = -1
            st.runs += 1
            if st.last_cpu >= 0 and st.last_cpu != cpu:
                st.migrations += 1
            st.last_cpu = cpu
            st.run_cpu = cpu
            st.run_start = t
            st.sleep_seen = False
        if st.parked_since >= 0 and new in (RUNSTATE_RUNNING, RUNSTATE_BLOCKED):
            st.parks.append(t - st.parked_since)
            st.parked_since = -1
        st.state = new
        st.state_t = t

    # -- results -----------------------------------------------------------------------------
    def result(self) -> dict:
        m = self.meta
        start = self.first_t or 0
        end = self.last_t
        if m.get("duration_ns") is not None and self.first_t is not None:
            end = max(end, int(m["duration_ns"]))
        span = max(1, end - start)
        names = {d["domid"]: d.get("name", f"d{d['domid']}") for d in m.get("domains", [])}
        workloads = {(d["domid"], vc["vcpu"]): vc.get("workload", "")
                     for d in m.get("domains", []) for vc in d.get("vcpus", [])}
        vcpus = []
        busy = dict(self.cpu_busy)
        for key in sorted(self.v):
            st = self.v[key]
            times = list(st.times)
            if st.state is not None:
                times[st.state] += end - st.state_t
            soft_in, soft_out = st.soft_in, st.soft_out
            parks = list(st.parks)
            if st.state == RUNSTATE_RUNNING and st.run_cpu >= 0:
                ran = end - st.run_start
                busy[st.run_cpu] = busy.get(st.run_cpu, 0) + ran
                if st.eff_soft is not None:
                    if st.run_cpu in st.eff_soft:
                        soft_in += ran
                    else:
                        soft_out += ran
            if st.parked_since >= 0:
                parks.append(end - st.parked_since)
            observed = max(1, end - st.first_t)
            v = {"name": f"d{st.dom}v{st.vcpu}", "domid": st.dom, "vcpu": st.vcpu,
                 "domain": names.get(st.dom, f"d{st.dom}"),
                 **{f"{RUNSTATE_NAMES[i]}_ns": times[i] for i in range(4)},
                 "observed_ns": observed,
                 "cpu_share": round(times[RUNSTATE_RUNNING] / observed, 6),
                 "wakes": st.wakes, "blocks": st.blocks, "yields": st.yields,
                 "runs": st.runs, "preemptions": st.preemptions,
                 "migrations": st.migrations,
                 "latency": latency_summary(st.latencies)}
            if key in workloads:
                v["workload"] = workloads[key]
            if st.eff_soft is not None or soft_in or soft_out:
                v["soft_in_ns"] = soft_in
                v["soft_out_ns"] = soft_out
            if parks:
                v["parked"] = {"periods": len(parks), "total_ns": sum(parks),
                               "max_ns": max(parks), "mean_ns": sum(parks) // len(parks)}
            vcpus.append(v)
        doms: dict[int, list[dict]] = defaultdict(list)
        for v in vcpus:
            doms[v["domid"]].append(v)
        lat_by_dom: dict[int, list[int]] = defaultdict(list)
        for st in self.v.values():
            lat_by_dom[st.dom].extend(st.latencies)
        domains = []
        for domid in sorted(doms):
            mine = doms[domid]
            run = sum(v["running_ns"] for v in mine)
            d = {"domid": domid, "name": names.get(domid, f"d{domid}"), "vcpus": len(mine),
                 "running_ns": run, "cpu_share": round(run / span, 6),
                 "latency": latency_summary(lat_by_dom[domid])}
            parked = [v["parked"] for v in mine if "parked" in v]
            if parked:
                d["parked"] = {"periods": sum(p["periods"] for p in parked),
                               "total_ns": sum(p["total_ns"] for p in parked)}
            domains.append(d)
        cpus = sorted(set(busy) | set(self.cpu_switches) | set(range(int(m.get("pcpus", 0)))))
        pcpus = [{"cpu": c, "busy_ns": busy.get(c, 0),
                  "busy_share": round(busy.get(c, 0) / span, 6),
                  "switches": self.cpu_switches.get(c, 0)} for c in cpus]
        return {
            "records": self.records, "start_ns": start, "end_ns": end, "span_ns": span,
            "reordered_records": self.reordered, "inconsistent_records": self.inconsistent,
            "credit2_burn_records": self.has_credit2_burn,
            "domains": domains, "vcpus": vcpus, "pcpus": pcpus,
            "events": {event_name(e): n for e, n in sorted(self.events.items())},
        }

    def latencies_by_domain(self) -> dict[int, list[int]]:
        out: dict[int, list[int]] = defaultdict(list)
        for st in self.v.values():
            out[st.dom].extend(st.latencies)
        return out


def load_meta(trace_path: str | Path, meta_path: str | Path | None = None) -> dict:
    p = Path(meta_path) if meta_path else Path(str(trace_path) + META_SUFFIX)
    if not p.exists():
        if meta_path:
            raise Fail(f"{meta_path}: no such file")
        return {}
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise Fail(f"{p}: not a metadata file: {e}") from None


def analyze_trace(tf: TraceFile, meta: dict | None = None, keep_intervals: bool = False,
                  tsc_khz: int | None = None) -> TraceAnalysis:
    a = TraceAnalysis(meta, keep_intervals=keep_intervals, tsc_khz=tsc_khz)
    a.feed(tf.records())
    return a


def format_analysis(r: dict) -> str:
    span = r["span_ns"]
    lines = [f"{r['records']} records, {span / 1e9:.6f} s "
             f"({r['start_ns'] / 1e9:.6f} .. {r['end_ns'] / 1e9:.6f})"]
    if r["inconsistent_records"]:
        lines.append(f"warning: {r['inconsistent_records']} runstate records do not chain on")
    lines.append("")
    lines.append(f"{'domain':<16} {'id':>5} {'vcpus':>5} {'cpu%':>8} {'wakes':>7} "
                 f"{'lat p50us':>10} {'p99us':>9} {'parked':>7} {'parked ms':>10}")
    for d in r["domains"]:
        lat = d["latency"]
        pk = d.get("parked", {})
        lines.append(f"{d['name'][:16]:<16} {d['domid']:>5} {d['vcpus']:>5} "
                     f"{100 * d['cpu_share']:>8.2f} {lat.get('count', 0):>7} "
                     f"{lat.get('p50_us', 0):>10.1f} {lat.get('p99_us', 0):>9.1f} "
                     f"{pk.get('periods', 0):>7} {pk.get('total_ns', 0) / 1e6:>10.2f}")
    lines.append("")
    lines.append(f"{'vcpu':<10} {'run%':>7} {'runnable%':>9} {'blocked%':>8} {'offline%':>8} "
                 f"{'lat n':>6} {'p50us':>8} {'p90us':>8} {'p99us':>8} {'maxus':>9} "
                 f"{'migr':>5} {'soft-in%':>8}")
    for v in r["vcpus"]:
        obs = v["observed_ns"]
        lat = v["latency"]
        soft = soft_in_text(v)
        lines.append(
            f"{v['name']:<10} {100 * v['running_ns'] / obs:>7.2f} "
            f"{100 * v['runnable_ns'] / obs:>9.2f} {100 * v['blocked_ns'] / obs:>8.2f} "
            f"{100 * v['offline_ns'] / obs:>8.2f} {lat.get('count', 0):>6} "
            f"{lat.get('p50_us', 0):>8.1f} {lat.get('p90_us', 0):>8.1f} "
            f"{lat.get('p99_us', 0):>8.1f} {lat.get('max_us', 0):>9.1f} "
            f"{v['migrations']:>5} {soft:>8}")
    parked = [v for v in r["vcpus"] if "parked" in v]
    if parked:
        lines.append("")
        lines.append("cap parking (credit2 budget exhausted):")
        for v in parked:
            p = v["parked"]
            lines.append(f"  {v['name']:<10} {p['periods']:>6} periods, "
                         f"{p['total_ns'] / 1e6:.3f} ms total, mean {p['mean_ns'] / 1e3:.1f} us, "
                         f"max {p['max_ns'] / 1e3:.1f} us")
    lines.append("")
    lines.append(f"{'pcpu':<5} {'busy%':>7} {'switches':>9}")
    for p in r["pcpus"]:
        lines.append(f"{p['cpu']:<5} {100 * p['busy_share']:>7.2f} {p['switches']:>9}")
    return "\n".join(lines)


# -- plots ------------------------------------------------------------------------------------
class PlotUnavailable(RuntimeError):
    pass


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise PlotUnavailable("plots need matplotlib (pip install 'pyxen[plot]')") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


def write_plots(a: TraceAnalysis, result: dict, out_dir: str | Path,
                window_ns: tuple[int, int] | None = None) -> list[Path]:
    """pcpu_timeline.png, latency_hist.png, runstates.png in `out_dir`."""
    plt = _pyplot()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = {d["domid"]: d["name"] for d in result["domains"]}
    written = []

    # pCPU timeline
    start = result["start_ns"]
    if window_ns is None:
        window_ns = (start, min(result["end_ns"], start + 200_000_000))
    w0, w1 = window_ns
    by_cpu_dom: dict[tuple[int, int], list[tuple[float, float]]] = defaultdict(list)
    ivs = list(a.intervals)
    for st in a.v.values():            # the ones still running at the end
        if st.state == RUNSTATE_RUNNING and st.run_cpu >= 0:
            ivs.append((st.run_cpu, st.run_start, result["end_ns"], st.dom, st.vcpu))
    for cpu, s, e, dom, _vcpu in ivs:
        if e <= w0 or s >= w1:
            continue
        s, e = max(s, w0), min(e, w1)
        by_cpu_dom[(cpu, dom)].append(((s - start) / 1e6, (e - s) / 1e6))
    cpus = sorted({p["cpu"] for p in result["pcpus"]}) or [0]
    doms = sorted({d for _, d in by_cpu_dom})
    cmap = plt.get_cmap("tab20")
    fig, ax = plt.subplots(figsize=(12, max(2.5, 0.3 * len(cpus) + 1.5)))
    for i, dom in enumerate(doms):
        color = cmap(i % 20)
        labelled = False
        for cpu in cpus:
            bars = by_cpu_dom.get((cpu, dom))
            if bars:
                ax.broken_barh(bars, (cpu - 0.4, 0.8), facecolors=color,
                               label=None if labelled else names.get(dom, f"d{dom}"))
                labelled = True
    ax.set_xlabel("time (ms)")
    ax.set_ylabel("pCPU")
    ax.set_yticks(cpus if len(cpus) <= 32 else cpus[::max(1, len(cpus) // 16)])
    ax.set_xlim((w0 - start) / 1e6, (w1 - start) / 1e6)
    ax.set_title("pCPU timeline")
    if 0 < len(doms) <= 20:
        ax.legend(loc="upper right", fontsize="small", ncol=min(4, len(doms)))
    fig.tight_layout()
    p = out / "pcpu_timeline.png"
    fig.savefig(p, dpi=100)
    plt.close(fig)
    written.append(p)

    # wake-up latency histogram
    lat = a.latencies_by_domain()
    fig, ax = plt.subplots(figsize=(10, 5))
    series = sorted(((dom, v) for dom, v in lat.items() if v), key=lambda x: -len(x[1]))[:10]
    if series:
        hi = max(max(v) for _, v in series) / 1000
        lo = 0.1
        n = 50
        bins = [lo * (max(hi, lo * 10) / lo) ** (i / n) for i in range(n + 1)]
        for dom, v in series:
            ax.hist([max(x / 1000, lo) for x in v], bins=bins, histtype="step",
                    label=names.get(dom, f"d{dom}"))
        ax.set_xscale("log")
        ax.legend(fontsize="small")
    ax.set_xlabel("wake-up to run latency (µs; 0 is drawn at 0.1)")
    ax.set_ylabel("wake-ups")
    ax.set_title("wake-up latency")
    fig.tight_layout()
    p = out / "latency_hist.png"
    fig.savefig(p, dpi=100)
    plt.close(fig)
    written.append(p)

    # runstate shares per domain
    fig, ax = plt.subplots(figsize=(10, max(2.5, 0.35 * len(result["domains"]) + 1.5)))
    labels = []
    left = None
    colors = ("tab:green", "tab:orange", "tab:blue", "tab:gray")
    agg = defaultdict(lambda: [0, 0, 0, 0])
    for v in result["vcpus"]:
        for i in range(4):
            agg[v["domid"]][i] += v[f"{RUNSTATE_NAMES[i]}_ns"]
    doms = sorted(agg)
    labels = [names.get(d, f"d{d}") for d in doms]
    left = [0.0] * len(doms)
    for i in range(4):
        vals = [agg[d][i] / max(1, sum(agg[d])) * 100 for d in doms]
        ax.barh(labels, vals, left=left, color=colors[i], label=RUNSTATE_NAMES[i])
        left = [a_ + b for a_, b in zip(left, vals, strict=True)]
    ax.set_xlabel("% of vCPU time")
    ax.set_xlim(0, 100)
    ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=4)
    ax.set_title("runstates per domain")
    fig.tight_layout()
    p = out / "runstates.png"
    fig.savefig(p, dpi=100)
    plt.close(fig)
    written.append(p)
    return written


# -- command line -----------------------------------------------------------------------------
def _window(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    a, sep, b = text.partition(":")
    try:
        if not sep:
            raise ValueError
        return float(a), float(b)
    except ValueError:
        raise click.BadParameter("expected START_MS:END_MS", param_hint="--window-ms") from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Scheduler traces: simulate scenarios, analyse xentrace files."""


@main.command()
@click.argument("tracefile", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--plot-dir", type=click.Path(file_okay=False), default=None,
              help="Write PNG plots (needs matplotlib) into this directory.")
@click.option("--meta", type=click.Path(dir_okay=False), default=None,
              help="Side-car metadata (default: TRACEFILE.meta.json when it exists).")
@click.option("--window-ms", default=None, metavar="START:END",
              help="Time window of the pCPU timeline plot, ms from the trace start "
                   "(default: the first 200 ms).")
@click.option("--cpu-khz", type=click.IntRange(min=1), default=None,
              help="TSC rate of the traced host (default: the side-car's, else pyxen's "
                   "2400000).")
def analyze(tracefile: str, as_json: bool, plot_dir: str | None, meta: str | None,
            window_ms: str | None, cpu_khz: int | None) -> None:
    """Summarise a xentrace file: runstates, latencies, migrations, parking."""
    window = _window(window_ms)
    try:
        tf = read_trace(tracefile)
    except OSError as e:
        raise Fail(f"{tracefile}: {e.strerror or e}") from None
    except TraceFormatError as e:
        raise Fail(f"{tracefile}: not a xentrace file: {e}") from None
    md = load_meta(tracefile, meta)
    a = analyze_trace(tf, md, keep_intervals=plot_dir is not None, tsc_khz=cpu_khz)
    result = a.result()
    if plot_dir is not None:
        w = None
        if window is not None:
            w = (result["start_ns"] + int(window[0] * 1e6), result["start_ns"] +
                 int(window[1] * 1e6))
        try:
            result["plots"] = [str(p) for p in write_plots(a, result, plot_dir, w)]
        except PlotUnavailable as e:
            raise Fail(str(e)) from None
    if as_json:
        click.echo(json.dumps(result, indent=1, sort_keys=True))
    else:
        click.echo(format_analysis(result))
        for p in result.get("plots", []):
            click.echo(f"wrote {p}")


@main.command()
@click.argument("scenario", type=click.Path(dir_okay=False))
@click.option("--trace", "trace_path", type=click.Path(dir_okay=False), default=None,
              help="Write a xentrace file (and its .meta.json side-car).")
@click.option("--json", "as_json", is_flag=True, help="Print the statistics as JSON.")
@click.option("--seed", type=int, default=None, help="Override the scenario's seed.")
@click.option("--duration-ms", type=float, default=None, help="Override the duration.")
@click.option("--trace-mask", default=None, metavar="MASK",
              help="Event classes to trace, like xentrace -e (default 0x0ffff000: all).")
def simulate(scenario: str, trace_path: str | None, as_json: bool, seed: int | None,
             duration_ms: float | None, trace_mask: str | None) -> None:
    """Run a scenario file (TOML) in the scheduler simulator."""
    try:
        sc = Scenario.load(scenario)
        if seed is not None:
            sc.seed = seed
        if duration_ms is not None:
            if duration_ms <= 0:
                raise ScenarioError("--duration-ms must be > 0")
            sc.duration_ns = int(duration_ms * 1e6)
            sc.events = [e for e in sc.events if e.at_ns <= sc.duration_ns]
        mask = TRC_ALL
        if trace_mask is not None:
            try:
                mask = int(trace_mask, 0)
            except ValueError:
                raise ScenarioError(f"--trace-mask: not a number: {trace_mask!r}") from None
        sim = Simulator(sc, trace=trace_path, trace_mask=mask)
        stats = sim.run()
    except ScenarioError as e:
        raise Fail(str(e)) from None
    except SimError as e:
        raise Fail(f"scheduler error: {e}") from None
    except OSError as e:
        raise Fail(f"{e.filename or trace_path}: {e.strerror or e}") from None
    if as_json:
        click.echo(json.dumps(stats, indent=1, sort_keys=True))
    else:
        click.echo(format_stats(stats))
        if trace_path:
            click.echo(f"wrote {trace_path} ({stats['trace_records']} records)")


@main.command()
@click.argument("tracefile", type=click.Path(dir_okay=False))
@click.option("--limit", type=int, default=None, help="Print at most this many records.")
def dump(tracefile: str, limit: int | None) -> None:
    """Print the records in time order: CPU TSC EVENT D1..Dn (hex), and a name."""
    try:
        tf = read_trace(tracefile)
    except OSError as e:
        raise Fail(f"{tracefile}: {e.strerror or e}") from None
    except TraceFormatError as e:
        raise Fail(f"{tracefile}: not a xentrace file: {e}") from None
    for i, rec in enumerate(tf.records()):
        if limit is not None and i >= limit:
            break
        words = " ".join(f"0x{w:08x}" for w in rec.words)
        click.echo(f"{rec.cpu:>3} {rec.tsc:>16} 0x{rec.event:08x} {words}  "
                   f"# {event_name(rec.event)}")


@main.command()
@click.argument("outfile", type=click.Path(dir_okay=False))
@click.option("--seconds", type=click.FloatRange(min=0, min_open=True), default=10.0,
              show_default=True, help="How long to record.")
@click.option("--mask", default=None, metavar="HEX",
              help="Event mask (xentrace -e), e.g. 0x0002f000 for the scheduler; "
                   "default: every event.")
@click.option("--control", "control_path", default=None, metavar="PATH",
              help="The host daemon's control socket (default: $PYXEN_CONTROL).")
def record(outfile: str, seconds: float, mask: str | None, control_path: str | None) -> None:
    """Record a running host's trace into OUTFILE (xentrace format)."""
    from .control import ControlClient, ControlError
    event_mask = _parse_mask(mask)
    path = os.path.abspath(outfile)
    client = ControlClient(control_path, timeout=30.0)
    err = sys.stderr
    try:
        sock = client.stream("trace_record", path=path, seconds=seconds,
                             event_mask=event_mask, progress=True)
    except ControlError as e:
        click.echo(f"pyxen-trace: error: {e}", err=True)
        sys.exit(1)
    result = None
    shown = False
    tty = err.isatty()
    with sock, sock.makefile("rb") as lines:
        sock.settimeout(seconds + 60)
        try:
            for line in lines:
                msg = json.loads(line)
                if not isinstance(msg, dict):
                    raise ValueError("a malformed reply")
                if "progress" in msg:
                    p = msg["progress"]
                    text = (f"recording {p['elapsed']:.1f}/{seconds:g} s: {p['records']} "
                            f"records, {p['bytes']} bytes, {p['lost']} lost")
                    err.write(f"\r{text}" if tty else f"{text}\n")
                    err.flush()
                    shown = True
                    continue
                if not msg.get("ok"):
                    if shown and tty:
                        err.write("\n")
                    click.echo(f"pyxen-trace: error: {msg.get('error') or 'failed'}", err=True)
                    sys.exit(1)
                result = msg.get("result")
                break
        except (OSError, ValueError) as e:
            click.echo(f"pyxen-trace: error: lost the pyxen host: {e}", err=True)
            sys.exit(1)
    if result is None:
        click.echo("pyxen-trace: error: the pyxen host closed the connection", err=True)
        sys.exit(1)
    if shown and tty:
        err.write("\r\033[K")
        err.flush()
    cpus = ",".join(result["per_cpu"]) or "none"
    click.echo(f"{outfile}: {result['records']} records, {result['bytes']} bytes, "
               f"{result['lost']} lost, {result['seconds']:.1f} s, pCPUs {cpus}")


@main.command()
@click.argument("outfile", type=click.Path(dir_okay=False))
@click.option("--domain", "-d", "domains", multiple=True, required=True,
              metavar='"CFG [KEY=VALUE...]"',
              help="An xl.cfg file and settings to override, as for xl create "
                   "(repeat for more domains; created in this order).")
@click.option("--ms", type=click.FloatRange(min=0, min_open=True), default=100.0,
              show_default=True, help="Virtual time to run and record, in ms.")
@click.option("--xen-cmdline", "-x", default="", metavar="PARAMS",
              help='Hypervisor boot parameters, e.g. "nr_cpus=2 sched=credit2".')
@click.option("--mask", default=None, metavar="HEX",
              help="Event mask (xentrace -e); default: every event.")
def guests(outfile: str, domains: tuple[str, ...], ms: float, xen_cmdline: str,
           mask: str | None) -> None:
    """Run real guests in deterministic virtual time and record their trace.

    A one-shot host booted with clock=virtual: the clock is held while every
    domain is created, then runs for --ms of virtual time while the trace
    buffers are copied at fixed virtual times. The same guests, settings and
    parameters give a byte-identical OUTFILE on every run.
    """
    import contextlib

    from .domains import DomainError
    from .host import HostError, one_shot_host
    from .xentrace_record import TraceRecorder

    event_mask = _parse_mask(mask)
    specs = []
    for text in domains:
        # Words split at blanks outside quotes; the quotes stay (xl.cfg strings).
        words = _XL_WORDS.findall(text)
        if re.sub(r"\s", "", "".join(words)) != re.sub(r"\s", "", text):
            raise click.BadParameter(f"unbalanced quotes in {text!r}", param_hint="--domain")
        if not words:
            raise click.BadParameter("an xl.cfg file is needed", param_hint="--domain")
        specs.append((words[0], words[1:]))
    params = f"{xen_cmdline} clock=virtual".strip()
    err = sys.stderr
    with contextlib.ExitStack() as stack:
        try:
            host = stack.enter_context(one_shot_host(params, log=lambda *_a: None,
                                                     prefix="pyxen-vtime-"))
        except HostError as e:
            click.echo(f"pyxen-trace: error: {e}", err=True)
            sys.exit(1)
        host.vtime_hold()
        created = []
        for cfg, overrides in specs:
            try:
                created.append(host.op_create(config_path=cfg, overrides=overrides))
            except DomainError as e:
                click.echo(f"pyxen-trace: error: {cfg}: {e}", err=True)
                sys.exit(1)
        with open(outfile, "wb") as out:
            kw = {} if event_mask is None else {"event_mask": event_mask}
            rec = TraceRecorder(host.xc, host.privcmd, out, **kw)
            rec.start()
            total = int(ms * 1_000_000)
            t = 0
            while t < total:
                t = host.vtime_run_until(min(total, t + 1_000_000), timeout=600)
                rec.poll()
                if err.isatty():
                    err.write(f"\rvirtual time {t / 1e6:.0f}/{ms:g} ms: "
                              f"{rec.stats.records} records")
                    err.flush()
            stats = rec.stop()
        if err.isatty():
            err.write("\r\033[K")
        click.echo(f"{outfile}: {stats.records} records, {stats.bytes} bytes, "
                   f"{stats.lost} lost, {t / 1e6:g} ms of virtual time")
        for c in created:
            info = host.xc.domain_getinfo(c["domid"])
            cpu_ns = info.cpu_time_ns if info is not None else 0
            click.echo(f"  d{c['domid']} {c['name']}: {cpu_ns / 1e6:.3f} ms of CPU")


_XL_WORDS = re.compile(r"""(?:[^\s'"]+|'[^']*'|"[^"]*")+""")


def _parse_mask(mask: str | None) -> int | None:
    if mask is None:
        return None
    try:
        event_mask = int(mask, 16)
    except ValueError:
        raise click.BadParameter("expected a hexadecimal mask", param_hint="--mask") from None
    if not 0 < event_mask <= 0xFFFF_FFFF:
        raise click.BadParameter("a 32-bit mask with a bit set", param_hint="--mask")
    return event_mask


def run() -> None:
    """Entry point of `pyxen-trace`."""
    try:
        main(standalone_mode=True)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        click.echo("pyxen-trace: interrupted", err=True)
        sys.exit(130)
    except Exception as e:  # noqa: BLE001 - one line, details on request
        if os.environ.get("PYXEN_DEBUG"):
            traceback.print_exc()
        click.echo(f"pyxen-trace: internal error: {type(e).__name__}: {e} "
                   "(set PYXEN_DEBUG=1 for details)", err=True)
        sys.exit(70)


if __name__ == "__main__":
    run()


__all__ = ["TraceAnalysis", "analyze_trace", "format_analysis", "write_plots", "load_meta",
           "main", "run"]
