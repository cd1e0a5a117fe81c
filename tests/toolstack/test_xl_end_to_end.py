"""pyxen-host and pyxl as separate processes, as people use them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pytest
from hostd import ROOT, running_daemon


@pytest.fixture
def daemon(tmp_path):
    with running_daemon(tmp_path, "guest_loglvl=all", "--log-dir", str(tmp_path / "logs")) as env:
        yield env


def xl(env, *args: str, timeout: float = 60, stdin: str | None = None):
    return subprocess.run([sys.executable, "-m", "pyxen.toolstack.xl", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout,
                          input=stdin)


def test_create_list_shutdown_destroy(daemon):
    r = xl(daemon, "create", "guests/test-shutdown/test-shutdown.cfg")
    assert r.returncode == 0, r.stderr
    r = xl(daemon, "list")
    lines = r.stdout.splitlines()
    assert lines[0] == "Name                                        ID   Mem VCPUs\tState\tTime(s)"
    assert re.match(r"Domain-0 +0 +\d+ +\d+ +r----- +\d+\.\d$", lines[1]), lines[1]
    assert re.match(r"test-shutdown +1 +16 +1 +[-r][-b]---- +\d+\.\d$", lines[2]), lines[2]
    listing = json.loads(xl(daemon, "list", "-l").stdout)
    assert any(d.get("domid") == 1 for d in listing)
    assert xl(daemon, "domid", "test-shutdown").stdout.strip() == "1"
    assert xl(daemon, "domname", "1").stdout.strip() == "test-shutdown"
    r = xl(daemon, "shutdown", "-w", "test-shutdown")
    assert r.returncode == 0, r.stderr
    assert "test-shutdown" not in xl(daemon, "list").stdout
    assert "(d1) shutdown request: poweroff" in xl(daemon, "dmesg").stdout
    # destroy of a paused guest, and errors for domains that are not there.
    assert xl(daemon, "create", "-p", "guests/hello/hello.cfg").returncode == 0
    assert xl(daemon, "destroy", "hello").returncode == 0
    r = xl(daemon, "destroy", "hello")
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1


def test_set_parameters_and_dmesg(daemon):
    assert xl(daemon, "set-parameters", "loglvl=warning").returncode == 0
    xl(daemon, "create", "-p", "guests/hello/hello.cfg")
    xl(daemon, "destroy", "hello")
    assert "Created domain" not in xl(daemon, "dmesg").stdout
    assert xl(daemon, "set-parameters", "loglvl=all").returncode == 0
    xl(daemon, "create", "-p", "guests/hello/hello.cfg")
    xl(daemon, "destroy", "hello")
    assert "Created domain" in xl(daemon, "dmesg").stdout
    r = xl(daemon, "set-parameters", "sched=credit2")
    assert r.returncode != 0 and "run time" in r.stderr


def test_console_attaches_and_ends_with_the_guest(daemon):
    r = xl(daemon, "create", "-c", "guests/test-pvconsole/test-pvconsole.cfg",
           "cmdline='console=pv expect_input=0'", timeout=60)
    assert r.returncode == 0, r.stderr
    assert "line 0064/0064" in r.stdout and "Test result: SUCCESS" in r.stdout


def test_on_crash_restart_restarts(daemon, tmp_path):
    cfg = tmp_path / "crash.cfg"
    cfg.write_text(f'name = "crasher"\ntype = "pvh"\n'
                   f'kernel = "{ROOT}/guests/out/test-triple-fault.elf"\nmemory = 16\n'
                   'on_crash = "restart"\n')
    assert xl(daemon, "create", str(cfg)).returncode == 0
    deadline = time.monotonic() + 30
    ids = set()
    while time.monotonic() < deadline and len(ids) < 3:
        for line in xl(daemon, "list").stdout.splitlines()[1:]:
            if line.startswith("crasher"):
                ids.add(int(line.split()[1]))
        time.sleep(0.1)
    assert len(ids) >= 3, ids            # it crashed and came back, more than once
    xl(daemon, "destroy", "crasher")


def test_no_daemon_is_one_line(tmp_path):
    env = dict(os.environ, PYXEN_CONTROL=str(tmp_path / "none.sock"))
    r = xl(env, "list")
    assert r.returncode != 0
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_console_on_a_terminal_detaches_with_ctrl_right_bracket(daemon):
    """`pyxl console` on a pty: raw mode, output shown, Ctrl-] detaches (exit 0) and
    the guest keeps running."""
    import pty
    import select
    assert xl(daemon, "create", "guests/test-shutdown/test-shutdown.cfg").returncode == 0
    pid, fd = pty.fork()
    if pid == 0:                                        # the child: pyxl on a terminal
        os.chdir(ROOT)
        os.execve(sys.executable, [sys.executable, "-m", "pyxen.toolstack.xl", "console",
                                   "test-shutdown"], daemon)
    try:
        time.sleep(1.0)                                 # attached
        os.write(fd, b"\x1d")
        deadline = time.monotonic() + 15
        status = None
        while time.monotonic() < deadline:
            done, st = os.waitpid(pid, os.WNOHANG)
            if done:
                status = st
                break
            if select.select([fd], [], [], 0.1)[0]:
                try:
                    os.read(fd, 4096)
                except OSError:
                    pass
        assert status is not None and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    finally:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
        os.close(fd)
    assert "test-shutdown" in xl(daemon, "list").stdout       # still running
    assert xl(daemon, "destroy", "test-shutdown").returncode == 0
