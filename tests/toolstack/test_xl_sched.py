"""pyxl's scheduling commands against a real pyxen-host (nr_cpus=4 sched=credit2):
sched-credit2 / sched-credit, vcpu-pin and vcpu-list's affinity, the cpupool-* life cycle,
and the xl.cfg keys cpus, cpus_soft, cpu_weight, cap and pool at create."""

from __future__ import annotations

import contextlib
import io
import subprocess
import time

import pytest
from hostd import ROOT, running_daemon

from pyxen.toolstack.xl.main import execute

SHUTDOWN_CFG = "guests/test-shutdown/test-shutdown.cfg"
HELLO_CFG = "guests/hello/hello.cfg"
SCHED_HEADER = "Name                                ID Weight  Cap"
POOLS_HEADER = "Name               CPUs   Sched     Active   Domain count"
VCPU_HEADER = ("Name                                ID  VCPU   CPU State   Time(s)"
               " Affinity (Hard / Soft)")


@pytest.fixture
def daemon(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)                  # the guests' configs name paths from here
    with running_daemon(tmp_path, "nr_cpus=4", "sched=credit2") as env:
        yield env


def xl(env, *args: str) -> subprocess.CompletedProcess:
    """pyxl ARGS, run in this process (the daemon is a real one): its status and output."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        status = execute(["--control", env["PYXEN_CONTROL"], *args])
    return subprocess.CompletedProcess(args, status, stdout.getvalue(), stderr.getvalue())


def ok(env, *args: str) -> str:
    r = xl(env, *args)
    assert r.returncode == 0, (args, r.stderr)
    return r.stdout


def fails(env, *args: str) -> str:
    """The command fails with one line on stderr (no traceback) and nothing on stdout;
    returns that line."""
    r = xl(env, *args)
    assert r.returncode != 0, (args, r.stdout)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stdout == ""
    return lines[0]


def sched_row(name: str, domid: int, weight: int, cap: int) -> str:
    return f"{name:<33} {domid:4d} {weight:6d} {cap:4d}"


def vcpu_rows(env, dom: str) -> list[tuple[int, str, str]]:
    """(vcpu, cpu, affinity) of each vCPU of `dom`, from vcpu-list's table."""
    lines = ok(env, "vcpu-list", dom).splitlines()
    assert lines[0] == VCPU_HEADER
    rows = []
    for line in lines[1:]:
        fields = line[38:].split(None, 4)        # VCPU CPU State Time affinity
        rows.append((int(fields[0]), fields[1], line.split("  ")[-1].strip()))
    return rows


def list_row(env, name: str) -> list[str]:
    for line in ok(env, "list", "-c").splitlines()[1:]:
        if line.split()[0] == name:
            return line.split()
    raise AssertionError(f"{name} not in xl list")


def scheduled_row(env, name: str, timeout: float = 5.0) -> list[str]:
    """list_row once the domain's vCPU has left the runnable state (`------`): just
    after a cpupool-migrate it waits for the new pool's pCPU to pick it."""
    deadline = time.monotonic() + timeout
    row = list_row(env, name)
    while row[4] == "------" and time.monotonic() < deadline:
        time.sleep(0.01)
        row = list_row(env, name)
    return row


def test_sched_credit2_and_the_xl_cfg_keys(daemon):
    ok(daemon, "create", SHUTDOWN_CFG, "cpu_weight=512", "cap=50", 'cpus="0-1"',
       'cpus_soft="1"')
    assert ok(daemon, "sched-credit2") == (
        "Cpupool Pool-0: ratelimit=1000us\n" + SCHED_HEADER + "\n"
        + sched_row("Domain-0", 0, 256, 0) + "\n"
        + sched_row("test-shutdown", 1, 512, 50) + "\n")
    assert vcpu_rows(daemon, "test-shutdown")[0][2] == "0-1 / 1"
    assert ok(daemon, "sched-credit2", "-d", "test-shutdown") == (
        SCHED_HEADER + "\n" + sched_row("test-shutdown", 1, 512, 50) + "\n")
    # -w alone keeps the cap (libxl sends the current cap back), -c 0 removes it.
    assert ok(daemon, "sched-credit2", "-d", "1", "-w", "300") == ""
    assert sched_row("test-shutdown", 1, 300, 50) in ok(daemon, "sched-credit2")
    ok(daemon, "sched-credit2", "-d", "1", "-c", "0")
    assert sched_row("test-shutdown", 1, 300, 0) in ok(daemon, "sched-credit2", "-d", "1")
    ok(daemon, "sched-credit2", "--domain=1", "--cap=100", "--weight=65535")
    assert sched_row("test-shutdown", 1, 65535, 100) in ok(daemon, "sched-credit2", "-d", "1")
    # Errors, in libxl's and xl's words.
    for weight in ("0", "65536", "-3"):
        assert fails(daemon, "sched-credit2", "-d", "1", "-w", weight) == (
            "Cpu weight out of range, valid values are within range from 1 to 65535")
    for cap in ("101", "-1"):
        assert fails(daemon, "sched-credit2", "-d", "1", "-c", cap) == (
            "Cpu cap out of range, valid range is from 0 to 100 for specified number of vcpus")
    assert sched_row("test-shutdown", 1, 65535, 100) in ok(daemon, "sched-credit2", "-d", "1")
    assert fails(daemon, "sched-credit2", "-w", "3") == "Must specify a domain."
    assert fails(daemon, "sched-credit2", "-d", "1", "-s") == (
        "Specifying a cpupool or schedparam is not allowed with domain options.")
    assert fails(daemon, "sched-credit2", "-r", "500") == (
        "Must specify schedparam to set schedule parameter values.")
    assert fails(daemon, "sched-credit2", "-d", "ghost") == (
        "ghost is an invalid domain identifier (rc=-6)")
    assert fails(daemon, "sched-credit2", "-p", "ghost") == "unknown cpupool 'ghost'"
    # The pool-wide parameter.
    assert ok(daemon, "sched-credit2", "-s") == "Cpupool Pool-0: ratelimit=1000us\n"
    assert ok(daemon, "sched-credit2", "-s", "-r", "500") == ""
    assert ok(daemon, "sched-credit2", "-s", "-p", "Pool-0") == "Cpupool Pool-0: ratelimit=500us\n"
    assert ok(daemon, "sched-credit2", "--schedparam", "--ratelimit_us=0") == ""
    assert ok(daemon, "sched-credit2", "-s") == "Cpupool Pool-0: ratelimit=0us\n"
    assert fails(daemon, "sched-credit2", "-s", "-r", "50") == (
        "Ratelimit out of range, valid range is from 100 to 500000")
    # No pool uses credit: sched-credit lists nothing, and refuses Pool-0 by name.
    assert ok(daemon, "sched-credit") == ""
    assert fails(daemon, "sched-credit", "-s") == (
        "cpupool 'Pool-0' uses the credit2 scheduler, not credit")
    assert fails(daemon, "sched-credit", "-p", "Pool-0") == (
        "cpupool 'Pool-0' uses the credit2 scheduler, not credit")
    assert fails(daemon, "sched-credit", "-d", "1") == (
        "Domain 1 is in cpupool 'Pool-0', which uses the credit2 scheduler, not credit")


def test_vcpu_pin_and_vcpu_list(daemon):
    ok(daemon, "create", SHUTDOWN_CFG, "maxvcpus=3", 'cpus=["2", "0-3,^1"]',
       'cpus_soft="nodes:0"')
    assert [(v, aff) for v, _cpu, aff in vcpu_rows(daemon, "1")] == [
        (0, "2 / all"), (1, "0,2-3 / all"), (2, "all / all")]
    cpu0 = vcpu_rows(daemon, "1")[0][1]
    assert cpu0 == "2"                       # the online vCPU runs where it is pinned
    ok(daemon, "vcpu-pin", "test-shutdown", "0", "0-1", "3")
    assert vcpu_rows(daemon, "1")[0][2] == "0-1 / 3"
    ok(daemon, "vcpu-pin", "1", "0", "-", "1")                  # only the soft mask
    assert vcpu_rows(daemon, "1")[0][2] == "0-1 / 1"
    ok(daemon, "vcpu-pin", "1", "all", "3", "-")                # every vCPU, hard only
    assert [aff for _v, _cpu, aff in vcpu_rows(daemon, "1")] == [
        "3 / 1", "3 / all", "3 / all"]
    ok(daemon, "vcpu-pin", "-f", "1", "1", "all", "node:0")
    assert vcpu_rows(daemon, "1")[1][2] == "all / all"
    # A soft affinity outside the hard one is kept, with libxl's warning.
    r = xl(daemon, "vcpu-pin", "1", "2", "0", "1")
    assert r.returncode == 0 and "soft affinity of vcpu 2 are unreachable" in r.stderr
    assert vcpu_rows(daemon, "1")[2][2] == "0 / 1"
    # Every domain's vCPUs, Domain-0 has none here.
    assert ok(daemon, "vcpu-list").splitlines()[0] == VCPU_HEADER
    # Errors.
    assert fails(daemon, "vcpu-pin", "1", "0", "4") == (
        "Invalid pcpu range: 4 (this host has pCPUs 0-3)")
    assert fails(daemon, "vcpu-pin", "1", "0", "0-1,^0-1") == (
        "the hard affinity '0-1,^0-1' selects no pCPU")
    assert fails(daemon, "vcpu-pin", "1", "0", "1", "^all") == "Can't combine \"^\" and \"all\"."
    assert fails(daemon, "vcpu-pin", "1", "0", "1-x") == "Invalid pcpu range: 1-x."
    assert fails(daemon, "vcpu-pin", "1", "0", "node:1") == (
        "Invalid node: 1 (this host has one NUMA node, node 0)")
    assert fails(daemon, "vcpu-pin", "1", "3", "1") == (
        "Could not set affinity for vcpu `3': the domain has 3 vCPUs")
    assert fails(daemon, "vcpu-pin", "1", "x", "1") == "Error: Invalid argument x as VCPU."
    assert fails(daemon, "vcpu-pin", "-f", "1", "all", "1") == (
        "Error: --force and 'all' as VCPU not allowed.")
    assert fails(daemon, "vcpu-pin", "ghost", "0", "1") == (
        "ghost is an invalid domain identifier (rc=-6)")
    assert xl(daemon, "vcpu-pin", "1", "0").returncode == 2           # HARD is required
    assert [aff for _v, _cpu, aff in vcpu_rows(daemon, "1")] == [
        "3 / 1", "all / all", "0 / 1"]                                 # nothing changed
    # A bad cpus= in xl.cfg fails the create and leaves nothing behind.
    r = xl(daemon, "create", HELLO_CFG, 'cpus="7"')
    assert r.returncode != 0 and "Invalid pcpu range: 7" in r.stderr
    assert "hello" not in ok(daemon, "list")


def test_cpupool_life_cycle(daemon, tmp_path):
    ok(daemon, "create", SHUTDOWN_CFG, "cpu_weight=384")
    assert ok(daemon, "cpupool-list") == (
        POOLS_HEADER + "\nPool-0               4   credit2       y          2\n")
    assert ok(daemon, "cpupool-list", "-c") == (
        "Name               CPU list\nPool-0             0,1,2,3\n")
    # A null pool on pCPUs 2-3, created from the command line.
    ok(daemon, "cpupool-cpu-remove", "Pool-0", "2-3")
    assert "free_cpus              : 2" in ok(daemon, "info")
    out = ok(daemon, "cpupool-create", "-n", 'name="nullpool"', 'sched="null"', 'cpus="2-3"')
    assert out == ('Using config file "command line"\ncpupool name:   nullpool\n'
                   "scheduler:      null\nnumber of cpus: 2\n")
    assert "nullpool" not in ok(daemon, "cpupool-list")                  # -n: a dry run
    ok(daemon, "cpupool-create", 'name="nullpool"', 'sched="null"', 'cpus=["2", "3"]')
    assert ok(daemon, "cpupool-list") == (
        POOLS_HEADER + "\nPool-0               2   credit2       y          2\n"
        "nullpool             2      null       y          0\n")
    assert ok(daemon, "cpupool-list", "-c", "nullpool") == (
        "Name               CPU list\nnullpool           2,3\n")
    # Move the running domain there and back.
    ok(daemon, "cpupool-migrate", "test-shutdown", "nullpool")
    row = scheduled_row(daemon, "test-shutdown")
    assert row[-1] == "nullpool" and row[4] in ("r-----", "-b----"), row
    assert vcpu_rows(daemon, "test-shutdown")[0][1] in ("2", "3")
    assert "test-shutdown" not in ok(daemon, "sched-credit2")
    assert fails(daemon, "cpupool-destroy", "nullpool") == (
        "cpupool 'nullpool' still has 1 domain; migrate or destroy them first")
    assert fails(daemon, "cpupool-cpu-remove", "nullpool", "2-3").startswith(
        "some cpus may not have been removed from nullpool: cpu 3: it is the pool's last")
    ok(daemon, "cpupool-migrate", "1", "Pool-0")
    row = scheduled_row(daemon, "test-shutdown")
    assert row[-1] == "Pool-0" and row[4] in ("r-----", "-b----"), row
    # Back in credit2, with that scheduler's defaults.
    assert sched_row("test-shutdown", 1, 256, 0) in ok(daemon, "sched-credit2")
    # Rename, and pool errors.
    ok(daemon, "cpupool-rename", "nullpool", "np")
    assert fails(daemon, "cpupool-rename", "np", "Pool-0") == (
        "Can't rename cpupool 'np': a pool called 'Pool-0' exists already")
    assert fails(daemon, "cpupool-list", "nullpool") == "Pool 'nullpool' does not exist"
    assert fails(daemon, "cpupool-create", 'name="np"') == 'Pool name "np" already exists'
    assert fails(daemon, "cpupool-create", 'name="x"', 'sched="bogus"') == "Unknown scheduler"
    assert fails(daemon, "cpupool-create", 'name="x"', 'cpus="0"') == "cpu 0 illegal or not free"
    assert fails(daemon, "cpupool-create", 'sched="credit"') == "Missing cpupool name!"
    assert fails(daemon, "cpupool-cpu-add", "np", "0") == (
        "some cpus may not have been added to np: cpu 0 in use by cpupool 'Pool-0'")
    assert fails(daemon, "cpupool-migrate", "ghost", "np") == "unknown domain 'ghost'"
    assert fails(daemon, "cpupool-migrate", "1", "ghost") == "unknown cpupool 'ghost'"
    assert fails(daemon, "cpupool-migrate", "0", "np") == (
        "Error moving domain to cpupool: Domain-0 cannot leave its cpupool")
    assert fails(daemon, "cpupool-destroy", "Pool-0").startswith("cpupool 'Pool-0' cannot")
    ok(daemon, "cpupool-destroy", "1")                                  # by id
    assert ok(daemon, "cpupool-list", "-c").splitlines()[1:] == ["Pool-0             0,1"]
    # A credit pool from a config file (named after it); pool= at create puts a domain
    # there before it runs, with its cpu_weight and cap.
    cfg = tmp_path / "credit-pool"
    cfg.write_text('sched = "credit"\ncpus = "2-3"\n')
    out = ok(daemon, "cpupool-create", str(cfg))
    assert "cpupool name:   credit-pool\nscheduler:      credit\nnumber of cpus: 2\n" in out
    ok(daemon, "create", SHUTDOWN_CFG, 'name="pooled"', 'pool="credit-pool"', "cpu_weight=128",
       "cap=20")
    assert ok(daemon, "sched-credit") == (
        "Cpupool credit-pool: tslice=30ms ratelimit=1000us\n" + SCHED_HEADER + "\n"
        + sched_row("pooled", 2, 128, 20) + "\n")
    assert list_row(daemon, "pooled")[-1] == "credit-pool"
    assert ok(daemon, "sched-credit", "-s", "-p", "credit-pool", "-t", "10", "-r", "2000") == ""
    assert ok(daemon, "sched-credit", "-s", "-p", "credit-pool") == (
        "Cpupool credit-pool: tslice=10ms ratelimit=2000us\n")
    assert fails(daemon, "sched-credit", "-s", "-p", "credit-pool", "-r", "20000") == (
        "Ratelimit cannot be greater than timeslice")
    assert fails(daemon, "sched-credit", "-s", "-p", "credit-pool", "-t", "0") == (
        "Time slice out of range, valid range is from 1 to 1000")
    assert fails(daemon, "sched-credit", "-d", "pooled", "-c", "101") == (
        "Cpu cap out of range, valid range is from 0 to 100 for specified number of vcpus")
    # An unknown pool= is xl's error, and nothing is created.
    r = xl(daemon, "create", HELLO_CFG, 'name="stray"', 'pool="ghost"')
    assert r.returncode == 1 and r.stderr.strip().splitlines()[-1] == (
        "Illegal pool specified: ghost")
    assert "stray" not in ok(daemon, "list")
    # xl list -c names every domain's pool.
    assert [line.split()[-1] for line in ok(daemon, "list", "-c").splitlines()[1:]] == [
        "Pool-0", "Pool-0", "credit-pool"]


def test_cpu_lists_resolve_against_the_host():
    from pyxen.toolstack.cpupools import cpumap_text
    from pyxen.toolstack.xlcfg import XlConfigError, resolve_cpu_spec
    assert resolve_cpu_spec("0-3,5,^1", 8) == {0, 2, 3, 5}
    assert resolve_cpu_spec("all,^node:0", 4) == set()
    assert resolve_cpu_spec("nodes:0,^2-9", 4) == {0, 1}          # removing more is fine
    for bad, message in (("4", "Invalid pcpu range: 4 (this host has pCPUs 0-3)"),
                         ("^all", "Can't combine \"^\" and \"all\"."),
                         ("3-1", "Invalid pcpu range: 3-1."),
                         ("node:2", "Invalid node: 2 (this host has one NUMA node, node 0)")):
        with pytest.raises(XlConfigError) as e:
            resolve_cpu_spec(bad, 4)
        assert e.value.message == message
    assert [cpumap_text(s, 4) for s in ({0, 1, 2, 3}, {0, 1, 3}, set(), {2})] == [
        "all", "0-1,3", "none", "2"]
