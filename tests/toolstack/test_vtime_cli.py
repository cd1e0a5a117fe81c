"""pyxen-trace guests: real guests in deterministic virtual time, from the command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HOG = "guests/hog/hog.cfg"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pyxen.toolstack.xentrace_tools", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.fixture(autouse=True)
def _guest_built():
    if not (ROOT / "guests/out/hog.elf").exists():
        pytest.fail("guests/out/hog.elf is missing: build the guests first (make -C guests)")


def test_two_runs_write_the_same_trace_file(tmp_path):
    args = ["-x", "nr_cpus=2 sched=credit2", "--ms", "20",
            "-d", f"{HOG} name='a' cpu_weight=512",
            "-d", f"{HOG} name='b' cmdline='period_us=1000 busy_us=300'"]
    first, second = tmp_path / "1.trace", tmp_path / "2.trace"
    r1 = _run("guests", str(first), *args)
    r2 = _run("guests", str(second), *args)
    assert r1.returncode == 0 and r2.returncode == 0, r1.stderr + r2.stderr
    assert first.read_bytes() == second.read_bytes()
    assert " 0 lost, 20 ms of virtual time" in r1.stdout
    assert r1.stdout.replace("1.trace", "") == r2.stdout.replace("2.trace", "")
    a = _run("analyze", str(first))
    assert a.returncode == 0 and "d1v0" in a.stdout and "d2v0" in a.stdout, a.stderr


@pytest.mark.parametrize("domain, message", [
    (f"{HOG} name='a", "unbalanced quotes"),
    ("no/such.cfg", "no/such.cfg"),
    (f"{HOG} vcpus=", "config parsing error"),
])
def test_bad_domains_get_one_error_line(tmp_path, domain, message):
    r = _run("guests", str(tmp_path / "t"), "--ms", "1", "-d", domain)
    assert r.returncode != 0
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert message in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert len(lines) <= 3, lines            # click's usage lines + the error
    assert sum("error" in line.lower() for line in lines) == 1, lines
