"""pyxen-trace: the analysis on hand-made traces, the CLI's text/JSON output, plots."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from pyxen.hypervisor.sched.trace import (
    DOMID_IDLE,
    TRC_CSCHED2_CREDIT_BURN,
    TRC_SCHED_SLEEP,
    TRC_SCHED_SWITCH,
    TRC_SCHED_WAKE,
    TraceWriter,
    parse_trace,
    runstate_event,
    unit_word,
)
from pyxen.hypervisor.sched.trace import (
    RUNSTATE_BLOCKED as BL,
)
from pyxen.hypervisor.sched.trace import (
    RUNSTATE_OFFLINE as OFF,
)
from pyxen.hypervisor.sched.trace import (
    RUNSTATE_RUNNABLE as RBL,
)
from pyxen.hypervisor.sched.trace import (
    RUNSTATE_RUNNING as RUN,
)
from pyxen.toolstack import xentrace_tools as X

ROOT = Path(__file__).resolve().parents[2]
US = 1000
INT_MIN = 1 << 31


class Crafted:
    """Builds a small trace by hand: records per pCPU at given ns."""

    def __init__(self, nr_cpus: int = 2):
        self.buf = io.BytesIO()
        self.w = TraceWriter(self.buf, nr_cpus, chunk_bytes=96, threadsafe=False)

    def rs(self, cpu, ns, dom, vcpu, old, new):
        self.w.append_ns(cpu, ns, runstate_event(old, new), (unit_word(dom, vcpu),))

    def rec(self, cpu, ns, event, *words):
        self.w.append_ns(cpu, ns, event, words)

    def data(self) -> bytes:
        self.w.close()
        return self.buf.getvalue()


def crafted_basic() -> bytes:
    """d1v0 runs, blocks, wakes and runs on another pCPU. d2v0 is woken on pCPU 1 and run on
    pCPU 0 at the same TSC: pCPU 0's record comes first in the merged stream, the analysis
    must still see blocked -> runnable -> running. (Each pCPU's records in time order.)"""
    c = Crafted()
    c.rs(0, 0, 1, 0, OFF, RBL)                 # d1v0 comes up at 0
    c.rs(0, 0, 2, 0, OFF, BL)                  # d2v0 is up and blocked
    c.rs(0, 1 * US, 1, 0, RBL, RUN)            # d1v0 runs on pCPU 0 after 1 µs
    c.rec(0, 1 * US, TRC_SCHED_SWITCH, DOMID_IDLE, 0, 1, 0)
    c.rs(0, 5 * US, 1, 0, RUN, BL)             # blocks at 5 µs
    c.rs(0, 12 * US, 2, 0, RBL, RUN)
    c.rs(0, 20 * US, 2, 0, RUN, BL)
    c.rec(1, 8 * US, TRC_SCHED_WAKE, 1, 0)
    c.rs(1, 8 * US, 1, 0, BL, RBL)             # woken at 8 µs (on pCPU 1's buffer)
    c.rs(1, 10 * US, 1, 0, RBL, RUN)           # runs on pCPU 1: a migration, 2 µs latency
    c.rs(1, 12 * US, 2, 0, BL, RBL)
    c.rs(1, 15 * US, 1, 0, RUN, RBL)           # preempted at 15 µs
    return c.data()


def test_analysis_numbers_on_crafted_trace():
    tf = parse_trace(crafted_basic())
    a = X.analyze_trace(tf)
    r = a.result()
    assert r["start_ns"] == 0 and r["end_ns"] == 20 * US
    v = {x["name"]: x for x in r["vcpus"]}
    d1 = v["d1v0"]
    assert d1["running_ns"] == 4 * US + 5 * US
    assert d1["blocked_ns"] == 3 * US
    assert d1["runnable_ns"] == 1 * US + 2 * US + 5 * US      # until the end at 20 µs
    assert d1["offline_ns"] == 0
    assert d1["latency"] == {"count": 2, "mean_us": 1.5, "p50_us": 1.0, "p90_us": 2.0,
                             "p99_us": 2.0, "max_us": 2.0}
    assert (d1["migrations"], d1["runs"], d1["preemptions"], d1["wakes"]) == (1, 2, 1, 1)
    d2 = v["d2v0"]
    assert d2["latency"]["count"] == 1 and d2["latency"]["max_us"] == 0
    assert d2["running_ns"] == 8 * US and d2["blocked_ns"] == 12 * US
    assert r["inconsistent_records"] == 0 and r["reordered_records"] == 1
    cpus = {p["cpu"]: p for p in r["pcpus"]}
    assert cpus[0]["busy_ns"] == 4 * US + 8 * US and cpus[0]["switches"] == 1
    assert cpus[1]["busy_ns"] == 5 * US


def test_other_tsc_rates():
    tf = parse_trace(crafted_basic())
    r = X.analyze_trace(tf, tsc_khz=1_200_000).result()       # half the rate: twice the ns
    d1 = next(v for v in r["vcpus"] if v["name"] == "d1v0")
    assert d1["running_ns"] == 2 * 9 * US and r["end_ns"] == 40 * US
    res = _cli_bytes(crafted_basic(), "--cpu-khz", "4800000")
    assert json.loads(res)["end_ns"] == 10 * US


def test_parking_from_credit2_burn_and_from_offline():
    c = Crafted(1)
    c.rs(0, 0, 1, 0, RBL, RUN)
    c.rec(0, 5 * US, TRC_CSCHED2_CREDIT_BURN, unit_word(1, 0), 100, (-3) & 0xFFFF_FFFF, 5000)
    c.rs(0, 5 * US, 1, 0, RUN, RBL)            # budget gone: parked from 5 µs ...
    c.rs(0, 15 * US, 1, 0, RBL, RUN)           # ... to 15 µs
    c.rec(0, 16 * US, TRC_CSCHED2_CREDIT_BURN, unit_word(1, 0), 50, 7000, 1000)
    c.rs(0, 16 * US, 1, 0, RUN, RBL)           # budget left: a plain preemption
    c.rs(0, 17 * US, 1, 0, RBL, RUN)
    c.rs(0, 20 * US, 1, 0, RUN, OFF)           # Xen-style parking: offline without SLEEP
    c.rs(0, 24 * US, 1, 0, OFF, RUN)
    c.rec(0, 25 * US, TRC_SCHED_SLEEP, 1, 0)   # a pause: offline after SLEEP is no parking
    c.rs(0, 25 * US, 1, 0, RUN, OFF)
    c.rs(0, 30 * US, 1, 0, OFF, RBL)
    # uncapped vCPUs have budget INT_MIN in their burn records
    c.rs(0, 30 * US, 2, 0, RBL, RUN)
    c.rec(0, 31 * US, TRC_CSCHED2_CREDIT_BURN, unit_word(2, 0), 1, INT_MIN, 1)
    c.rs(0, 31 * US, 2, 0, RUN, RBL)
    r = X.analyze_trace(parse_trace(c.data())).result()
    v = {x["name"]: x for x in r["vcpus"]}
    assert v["d1v0"]["parked"] == {"periods": 2, "total_ns": 14 * US, "max_ns": 10 * US,
                                   "mean_ns": 7 * US}
    assert "parked" not in v["d2v0"]
    assert r["credit2_burn_records"] is True
    assert r["domains"][0]["parked"] == {"periods": 2, "total_ns": 14 * US}
    assert "cap parking" in X.format_analysis(r)


def test_soft_affinity_from_meta_with_change():
    c = Crafted(4)
    c.rs(0, 0, 1, 0, RBL, RUN)
    c.rs(0, 10 * US, 1, 0, RUN, RBL)
    c.rs(2, 10 * US, 1, 0, RBL, RUN)
    c.rs(2, 30 * US, 1, 0, RUN, RBL)
    c.rs(2, 40 * US, 1, 0, RBL, RUN)
    c.rs(2, 50 * US, 1, 0, RUN, RBL)
    meta = {"pcpus": 4, "pools": [{"name": "p", "cpus": [0, 1, 2, 3]}],
            "domains": [{"domid": 1, "name": "web", "pool": "p",
                         "vcpus": [{"vcpu": 0, "hard": [], "soft": [0, 1]}]}],
            "changes": [{"t_ns": 35 * US, "domid": 1, "vcpu": 0, "hard": [], "soft": [2]}]}
    r = X.analyze_trace(parse_trace(c.data()), meta).result()
    (v,) = r["vcpus"]
    assert v["domain"] == "web"
    assert (v["soft_in_ns"], v["soft_out_ns"]) == (10 * US + 10 * US, 20 * US)


def _cli(*args):
    return CliRunner().invoke(X.main, [str(a) for a in args])


def _cli_bytes(data: bytes, *args) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "t.trace"
        p.write_bytes(data)
        res = CliRunner().invoke(X.main, ["analyze", str(p), "--json", *args])
    assert res.exit_code == 0, res.output
    return res.output


def test_cli_analyze_text_and_json(tmp_path):
    p = tmp_path / "t.trace"
    p.write_bytes(crafted_basic())
    res = _cli("analyze", p)
    assert res.exit_code == 0, res.output
    assert "d1v0" in res.output and "pcpu" in res.output
    res = _cli("analyze", p, "--json")
    assert res.exit_code == 0
    out = json.loads(res.output)
    assert out["records"] == 12
    assert {v["name"] for v in out["vcpus"]} == {"d1v0", "d2v0"}
    assert out["events"]["wake"] == 1


def test_cli_dump(tmp_path):
    p = tmp_path / "t.trace"
    p.write_bytes(crafted_basic())
    res = _cli("dump", p, "--limit", "3")
    assert res.exit_code == 0
    lines = res.output.splitlines()
    assert len(lines) == 3
    assert lines[0].split()[:4] == ["0", "0", "0x00021311", "0x00010000"]
    assert lines[0].endswith("# runstate_change offline->runnable")
    assert lines[2].split()[:3] == ["0", "2400", "0x00021101"]


RR_MODULE = '''
from pyxen.hypervisor.sched.core import IDLE, Decision, Scheduler

class RR(Scheduler):
    name = "rr"
    def __init__(self, env, cpus):
        super().__init__(env, cpus)
        self.q = []
    def insert_domain(self, dom): pass
    def remove_domain(self, dom): pass
    def insert_unit(self, unit): unit.processor = min(self.cpus)
    def remove_unit(self, unit): pass
    def wake(self, unit):
        self.q.append(unit)
        self.env.tickle(min(self.cpus))
    def sleep(self, unit):
        if unit in self.q:
            self.q.remove(unit)
    def do_schedule(self, cpu, prev, now):
        if prev is not None and prev.runnable:
            self.q.append(prev)
        return Decision(self.q.pop(0) if self.q else IDLE, 5_000_000)
    def pick_cpu(self, unit): return min(self.cpus)
'''

SCENARIO = """
duration_ms = 100
seed = 2
[host]
pcpus = 1
[[pools]]
scheduler = "simrr:RR"
[[domains]]
name = "hog"
[[domains]]
name = "rt"
workload = { type = "periodic", period_ms = 10, run_ms = 1 }
"""


@pytest.fixture
def rr_env(tmp_path, monkeypatch):
    (tmp_path / "simrr.py").write_text(RR_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    sc = tmp_path / "s.toml"
    sc.write_text(SCENARIO)
    return tmp_path, sc


def test_cli_simulate_json_and_trace(rr_env):
    tmp, sc = rr_env
    trace = tmp / "s.trace"
    res = _cli("simulate", sc, "--json", "--trace", trace)
    assert res.exit_code == 0, res.output
    st = json.loads(res.output)
    assert st["scenario"] == "s" and st["duration_ns"] == 100_000_000
    hog, rt = st["domains"]
    assert hog["cpu_share"] + rt["cpu_share"] == pytest.approx(1.0)
    assert rt["cpu_share"] == pytest.approx(0.1, abs=0.011)
    assert trace.exists() and (tmp / "s.trace.meta.json").exists()
    res = _cli("analyze", trace, "--json")
    out = json.loads(res.output)
    assert [d["name"] for d in out["domains"]] == ["hog", "rt"]
    by = {v["name"]: v for v in out["vcpus"]}
    for v in st["vcpus"]:
        assert by[v["name"]]["running_ns"] == v["running_ns"]
        assert by[v["name"]]["latency"] == v["latency"]
    res = _cli("simulate", sc, "--duration-ms", "20", "--seed", "9")
    assert res.exit_code == 0 and "0.020 s virtual, seed 9" in res.output


def test_cli_plots(rr_env):
    pytest.importorskip("matplotlib")
    tmp, sc = rr_env
    trace = tmp / "s.trace"
    assert _cli("simulate", sc, "--trace", trace).exit_code == 0
    plots = tmp / "plots"
    res = _cli("analyze", trace, "--plot-dir", plots, "--window-ms", "0:50")
    assert res.exit_code == 0, res.output
    for name in ("pcpu_timeline.png", "latency_hist.png", "runstates.png"):
        data = (plots / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_cli_errors(tmp_path):
    res = _cli("analyze", tmp_path / "missing.trace")
    assert res.exit_code == 2 and "missing.trace" in res.output
    bad = tmp_path / "bad.trace"
    bad.write_bytes(b"\x03\xf0\x01\x20\x00\x00\x00\x00\xff\x00\x00\x00")
    res = _cli("analyze", bad)
    assert res.exit_code == 2 and "not a xentrace file" in res.output
    sc = tmp_path / "bad.toml"
    sc.write_text("duration_ms = 1\n[host]\npcpus = 1\n[[pools]]\nscheduler = 'zzz'\n")
    res = _cli("simulate", sc)
    assert res.exit_code == 2 and "unknown scheduler" in res.output
    res = _cli("analyze", bad, "--window-ms", "x")
    assert res.exit_code == 2


def test_module_entry_point(tmp_path):
    p = tmp_path / "t.trace"
    p.write_bytes(crafted_basic())
    out = subprocess.run([sys.executable, "-m", "pyxen.toolstack.xentrace_tools", "analyze",
                          str(p), "--json"], capture_output=True, text=True, timeout=60,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["records"] == 12


def test_example_scenarios_parse():
    from pyxen.hypervisor.sched.sim import Scenario
    files = sorted((ROOT / "bench" / "scenarios").glob("*.toml"))
    assert len(files) >= 3
    for f in files:
        sc = Scenario.load(f)
        assert sc.domains and sc.duration_ns > 0
