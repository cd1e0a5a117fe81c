"""The host daemon (pyxen-host) driven through its control socket, with the real
xenstored and console daemon behind it."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from pyxen.toolstack.control import ControlClient, ControlError
from pyxen.toolstack.host import HostDaemon, HostError

ROOT = Path(__file__).resolve().parents[2]
HELLO = str(ROOT / "guests" / "hello" / "hello.cfg")


@pytest.fixture
def host(tmp_path):
    h = HostDaemon("guest_loglvl=all", control_path=str(tmp_path / "control.sock"),
                   xenstored_path=str(tmp_path / "xenstored.sock"),
                   log_dir=str(tmp_path / "logs"), dump_dir=str(tmp_path / "dump"),
                   log=lambda *_a: None)
    h.serve_in_background()
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        yield h
    finally:
        os.chdir(cwd)
        h.close()


def client(host) -> ControlClient:
    return ControlClient(host.control_path, timeout=30)


def xs_cmd(host, *argv: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, XENSTORED_PATH=host.xenstored_path)
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)


def test_create_list_wait_and_the_xenstore_layout(host):
    c = client(host)
    created = c.call("create", config_path=HELLO, paused=True)
    domid = created["domid"]
    assert created["name"] == "hello"
    doms = {d["domid"]: d for d in c.call("list")}
    assert doms[0]["name"] == "Domain-0"
    assert doms[domid]["name"] == "hello" and doms[domid]["paused"]
    assert doms[domid]["mem_kb"] >= 16 * 1024
    assert c.call("resolve", dom="hello") == domid
    # libxl's layout, read with Debian's xenstore-utils through our xenstored.
    base = f"/local/domain/{domid}"
    assert xs_cmd(host, "xenstore-read", f"{base}/name").stdout.strip() == "hello"
    assert xs_cmd(host, "xenstore-read", f"{base}/domid").stdout.strip() == str(domid)
    assert xs_cmd(host, "xenstore-read", f"{base}/memory/target").stdout.strip() == "16384"
    vm = xs_cmd(host, "xenstore-read", f"{base}/vm").stdout.strip()
    assert xs_cmd(host, "xenstore-read", f"{vm}/name").stdout.strip() == "hello"
    perms = xs_cmd(host, "xenstore-ls", "-p", base).stdout
    assert "control" in perms and "console" in perms
    assert xs_cmd(host, "xenstore-read", f"{base}/console/type").stdout.strip() == "xenconsoled"
    c.call("unpause", domid=domid)
    ended = c.call("wait", name="hello", timeout=30)
    assert ended == {"reason": 0, "action": "destroy"}
    assert domid not in {d["domid"] for d in c.call("list")}
    assert xs_cmd(host, "xenstore-exists", base).returncode != 0     # cleaned up


def test_release_domain_watch_fires_on_destroy(host):
    from pyxen.dom0.xenstored.client import XsClient
    c = client(host)
    with XsClient.connect(host.xenstored_path) as xs:
        xs.watch("@releaseDomain", "tok")
        assert xs.next_event(5).path == "@releaseDomain"      # fires once when set
        domid = c.call("create", config_path=HELLO, paused=True)["domid"]
        c.call("destroy", domid=domid)
        ev = xs.next_event(5)
        assert ev is not None and ev.path == "@releaseDomain" and ev.token == "tok"


def test_set_parameters_changes_what_dmesg_shows_at_run_time(host):
    c = client(host)
    c.call("set_parameters", params="loglvl=warning")
    domid = c.call("create", config_path=HELLO, paused=True)["domid"]
    c.call("destroy", domid=domid)
    assert f"Created domain {domid}" not in c.call("dmesg")
    c.call("set_parameters", params="loglvl=all")
    domid = c.call("create", config_path=HELLO, paused=True)["domid"]
    c.call("destroy", domid=domid)
    assert f"Created domain {domid}" in c.call("dmesg")
    with pytest.raises(ControlError, match="conring_size"):
        c.call("set_parameters", params="conring_size=2M")     # boot-time only


def test_hypervisor_console_stream_shows_the_guest(host):
    c = client(host)
    stream = c.stream("console", hypervisor=True)
    try:
        c.call("create", config_path=HELLO)
        data = b""
        stream.settimeout(10)
        while b"Test result" not in data:
            chunk = stream.recv(4096)
            if not chunk:
                break
            data += chunk
        assert b"Hello from a pyxen guest!" in data
    finally:
        stream.close()


def test_bad_requests_get_one_line_and_the_daemon_survives(host):
    c = client(host)
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(host.control_path)
        s.sendall(b"this is not json\n")
        assert b'"ok":false' in s.recv(4096)
    for op, args, needle in (("frobnicate", {}, "unknown operation"),
                             ("destroy", {"domid": 4242}, "no such domain"),
                             ("resolve", {"dom": "nobody"}, "no such domain"),
                             ("destroy", {"bogus": 1}, "bad arguments"),
                             ("create", {"config_path": "/nonexistent.cfg"}, "nonexistent")):
        with pytest.raises(ControlError, match=needle):
            c.call(op, **args)
    assert c.call("list")[0]["name"] == "Domain-0"


def test_create_error_is_one_line(host, tmp_path):
    cfg = tmp_path / "bad.cfg"
    cfg.write_text('name = "bad"\ntype = "pvh"\nkernel = "/nonexistent.elf"\nmemory = 16\n')
    with pytest.raises(ControlError) as e:
        client(host).call("create", config_path=str(cfg))
    assert "/nonexistent.elf" in str(e.value) and "\n" not in str(e.value)


def test_a_second_daemon_on_the_same_socket_is_refused(host):
    with pytest.raises(HostError, match="already running"):
        HostDaemon("", control_path=host.control_path,
                   xenstored_path=host.xenstored_path + ".2")


def test_no_daemon_is_a_clear_error(tmp_path):
    with pytest.raises(ControlError, match="no pyxen host is running"):
        ControlClient(str(tmp_path / "nothing.sock")).call("list")


def test_on_crash_coredump_destroy_writes_a_core(host, tmp_path):
    cfg = tmp_path / "crash.cfg"
    cfg.write_text(f'name = "crasher"\ntype = "pvh"\n'
                   f'kernel = "{ROOT}/guests/out/test-triple-fault.elf"\nmemory = 16\n'
                   'on_crash = "coredump-destroy"\n')
    c = client(host)
    c.call("create", config_path=str(cfg))
    ended = c.call("wait", name="crasher", timeout=30)
    assert ended["reason"] == 3                      # SHUTDOWN_crash
    core = Path(host.domains.dump_dir) / "crasher.core"
    deadline = time.monotonic() + 5
    while not core.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    data = core.read_bytes()
    assert data[:4] == b"\x7fELF" and data[16] == 4   # ET_CORE
    assert len(data) > 16 << 20                      # the guest's RAM is in it


def _dmesg_until(c, needle: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = c.call("dmesg")
        if needle in text:
            return text
        time.sleep(0.05)
    raise AssertionError(f"{needle!r} never appeared:\n{c.call('dmesg')[-2000:]}")


def test_a_guest_uses_xenstore_through_its_ring(host):
    c = client(host)
    domid = c.call("create", config_path=str(ROOT / "guests/test-xenstore/test-xenstore.cfg"))[
        "domid"]
    ended = c.call("wait", name="test-xenstore", timeout=60)
    text = c.call("dmesg")
    assert ended["reason"] == 0, text[-3000:]
    assert f"(d{domid}) Test result: SUCCESS" in text


@pytest.mark.parametrize("reboot,reason", [(False, 0), (True, 1)])
def test_shutdown_reaches_the_guest_through_xenstore(host, reboot, reason):
    c = client(host)
    domid = c.call("create", config_path=str(ROOT / "guests/test-shutdown/test-shutdown.cfg"))[
        "domid"]
    _dmesg_until(c, f"(d{domid}) READY")
    c.call("shutdown", domid=domid, reboot=reboot, wait=True)
    text = c.call("dmesg")
    want = "reboot" if reboot else "poweroff"
    assert f"(d{domid}) shutdown request: {want}" in text
    assert domid not in {d["domid"] for d in c.call("list")}
    assert c.call("wait", name="test-shutdown", timeout=5)["reason"] == reason


def test_pv_console_attach_logs_and_input(host, tmp_path):
    c = client(host)
    cfg = ROOT / "guests/test-pvconsole/test-pvconsole.cfg"
    domid = c.call("create", config_path=str(cfg), overrides=["cmdline='console=pv "
                                                               "expect_input=1'"],
                   paused=True)["domid"]
    stream = c.stream("console", domid=domid)
    try:
        with pytest.raises(ControlError, match="attached"):       # one client at a time
            c.stream("console", domid=domid)
        c.call("unpause", domid=domid)
        stream.settimeout(30)
        data = b""
        while b"READY for input" not in data:
            chunk = stream.recv(65536)
            assert chunk, data[-500:]
            data += chunk
        stream.sendall(b"hello pyxen\r")
        while b"Test result" not in data:
            chunk = stream.recv(65536)
            assert chunk, data[-500:]
            data += chunk
    finally:
        stream.close()
    assert b"echo: hello pyxen" in data
    assert data.count(b"line 00") >= 9 and b"line 0064/0064" in data
    assert b"Test result: SUCCESS" in data
    assert c.call("wait", name="test-pvconsole", timeout=30)["reason"] == 0
    log = (tmp_path / "logs" / "guest-test-pvconsole.log").read_bytes()
    assert b"line 0064/0064" in log
