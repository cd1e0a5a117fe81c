"""`pyxen-trace record` against a real pyxen-host (nr_cpus=2 sched=credit2) running a hog
guest: progress while it records, the summary, a file `pyxen-trace analyze` accepts; and
the one error line when there is no daemon."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from hostd import ROOT, running_daemon

from pyxen.hypervisor.sched.trace import TRC_CSCHED2_CREDIT_BURN, read_trace


def trace_cli(env, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pyxen.toolstack.xentrace_tools", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def daemon(tmp_path):
    with running_daemon(tmp_path, "nr_cpus=2", "sched=credit2") as env:
        yield env


def test_record_from_a_running_daemon_then_analyze(daemon, tmp_path):
    from pyxen.toolstack.control import ControlClient
    client = ControlClient(daemon["PYXEN_CONTROL"])
    client.call("create", config_path=str(ROOT / "guests/hog/hog.cfg"))
    out = tmp_path / "host.trace"
    r = trace_cli(daemon, "record", str(out), "--seconds", "1", "--mask", "0x0002f000")
    assert r.returncode == 0, r.stderr
    assert "recording " in r.stderr and " records, " in r.stderr      # progress lines
    (summary,) = r.stdout.splitlines()
    assert summary.startswith(f"{out}: ") and " lost" in summary
    n = int(summary.split(": ", 1)[1].split(" records")[0])
    tf = read_trace(out)
    assert n == len(tf) > 0 and set(tf.cpus) <= {0, 1}
    assert all(rec.event & 0x0FFF_0000 == 0x0002_0000 for rec in tf.records())
    assert any(rec.event == TRC_CSCHED2_CREDIT_BURN for rec in tf.records())
    a = trace_cli(daemon, "analyze", str(out), "--json")
    assert a.returncode == 0, a.stderr
    result = json.loads(a.stdout)
    (hog,) = result["vcpus"]
    assert hog["running_ns"] > 0.5 * result["span_ns"]
    # a path the daemon cannot write: one line, no traceback
    bad = trace_cli(daemon, "record", str(tmp_path / "no" / "dir.trace"), "--seconds", "0.2")
    assert bad.returncode == 1 and bad.stdout == ""
    assert bad.stderr.strip().splitlines() == [
        f"pyxen-trace: error: {tmp_path / 'no' / 'dir.trace'}: No such file or directory"]


def test_record_without_a_daemon_is_one_error_line(tmp_path):
    env = dict(os.environ, PYXEN_CONTROL=str(tmp_path / "none.sock"), PYTHONPATH=str(ROOT))
    r = trace_cli(env, "record", str(tmp_path / "x.trace"), "--seconds", "1")
    assert r.returncode == 1 and r.stdout == ""
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("pyxen-trace: error: no pyxen host is running"), line
    assert not (tmp_path / "x.trace").exists()
