"""pyxl against a fake pyxen host: a Unix-socket server thread that speaks control.py's
protocol with canned replies.  Checks xl's exact text output, the JSON outputs, which op and
arguments each command sends, and that every failure is one line with xl's exit status."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from pyxen.toolstack.xl import formats
from pyxen.toolstack.xl.main import execute

ROOT = Path(__file__).resolve().parents[2]


class Refuse(Exception):
    """Raised by a handler: the fake host answers {"ok": false, "error": message}."""


DOMAINS = [
    {"domid": 0, "name": "Domain-0", "uuid": "00000000-0000-0000-0000-000000000000",
     "mem_kb": 4194304, "max_mem_kb": None, "vcpus": 4, "online_vcpus": 4,
     "cpu_time_ns": 11794300000000, "running": True, "blocked": False, "paused": False,
     "shutdown": False, "crashed": False, "dying": False, "shutdown_reason": None,
     "ssidref": 0, "cpupool": 0, "uptime_s": 2 * 86400 + 5 * 3600 + 7 * 60 + 3},
    {"domid": 3, "name": "web", "uuid": "3b1e2c4d-5a6f-4e7d-8c9b-0a1b2c3d4e5f",
     "mem_kb": 524288, "max_mem_kb": 525312, "vcpus": 2, "online_vcpus": 2,
     "cpu_time_ns": 42_250_000_000, "running": False, "blocked": True, "paused": False,
     "shutdown": False, "crashed": False, "dying": False, "shutdown_reason": None,
     "ssidref": 0, "cpupool": 0, "uptime_s": 3725,
     "config": {"c_info": {"type": "pvh", "name": "web"}, "b_info": {"max_vcpus": 2}}},
    {"domid": 7, "name": "Bad", "uuid": "11111111-2222-3333-4444-555555555555",
     "mem_kb": 33792, "max_mem_kb": 34816, "vcpus": 1, "online_vcpus": 1,
     "cpu_time_ns": 1_000_000, "running": False, "blocked": False, "paused": True,
     "shutdown": True, "crashed": True, "dying": False, "shutdown_reason": 3,
     "ssidref": 0, "cpupool": 0, "uptime_s": 86400 + 59,
     "config": {"c_info": {"type": "pvh", "name": "Bad"}}},
]

INFO = {
    "host": "testhost", "release": "6.1.0", "version": "#1 SMP", "machine": "x86_64",
    "nr_cpus": 4, "max_cpu_id": 3, "nr_nodes": 1, "cores_per_socket": 4,
    "threads_per_core": 1, "cpu_mhz": "2400.000",
    "hw_caps": "00000000:00000000:00000000:00000000:00000000:00000000:00000000:00000000",
    "virt_caps": "", "total_memory": 8192, "free_memory": 3000,
    "sharing_freed_memory": 0, "sharing_used_memory": 0, "outstanding_claims": 0,
    "free_cpus": 0, "xen_major": 4, "xen_minor": 10, "xen_extra": ".0-pyxen",
    "xen_version": "4.10.0-pyxen", "xen_caps": "hvm-3.0-x86_64", "xen_scheduler": "credit",
    "xen_pagesize": 4096, "platform_params": "virt_start=0xffff800000000000",
    "xen_changeset": "", "xen_commandline": "loglvl=all", "cc_compiler": "python",
    "cc_compile_by": "pyxen", "cc_compile_domain": "", "cc_compile_date": "today",
    "build_id": "", "xend_config_format": 4,
}

VCPUS = [
    {"name": "Domain-0", "domid": 0, "vcpu": 0, "cpu": 2, "online": True, "running": True,
     "blocked": False, "time_ns": 5_050_000_000, "hard_affinity": "all",
     "soft_affinity": "all"},
    {"name": "web", "domid": 3, "vcpu": 0, "cpu": 1, "online": True, "running": False,
     "blocked": True, "time_ns": 40_000_000_000, "hard_affinity": "0-1,3",
     "soft_affinity": "all"},
    {"name": "web", "domid": 3, "vcpu": 1, "cpu": 0, "online": False, "running": False,
     "blocked": False, "time_ns": 0, "hard_affinity": "all", "soft_affinity": "all"},
]


class FakeHost:
    def __init__(self, path: str) -> None:
        self.path = path
        self.requests: list[tuple[str, dict]] = []
        self.cpu_calls = 0
        self.handlers = {
            "resolve": self.resolve, "list": self.list, "info": lambda a: dict(INFO),
            "vcpu_list": self.vcpu_list, "dmesg": lambda a: "(XEN) hello\n(d3) guest\n",
        }
        self.streams = {}

    def resolve(self, args):
        dom = args["dom"]
        for d in DOMAINS:
            if d["name"] == dom or (dom.isdigit() and int(dom) == d["domid"]):
                return d["domid"]
        raise Refuse(f"no domain {dom!r}")

    def list(self, args):
        self.cpu_calls += 1
        doms = [dict(d) for d in DOMAINS]
        # Time passes: web gains 0.5 s of CPU per listing.
        doms[1]["cpu_time_ns"] += (self.cpu_calls - 1) * 500_000_000
        return doms

    def vcpu_list(self, args):
        if args.get("domid") is None:
            return VCPUS
        return [v for v in VCPUS if v["domid"] == args["domid"]]

    def ops(self) -> list[str]:
        return [op for op, _ in self.requests]

    def args_of(self, op: str) -> list[dict]:
        return [args for o, args in self.requests if o == op]


@pytest.fixture
def host():
    workdir = tempfile.mkdtemp(prefix="pyxl-", dir="/tmp")
    path = os.path.join(workdir, "control.sock")
    fake = FakeHost(path)

    class Handler(socketserver.StreamRequestHandler):
        def handle(self):
            line = self.rfile.readline()
            if not line:
                return
            request = json.loads(line)
            op, args = request["op"], request.get("args", {})
            fake.requests.append((op, args))
            if op in fake.streams:
                self.wfile.write(b'{"ok":true,"stream":true}\n')
                self.wfile.flush()
                fake.streams[op](self.request, self.rfile, args)
                return
            handler = fake.handlers.get(op, lambda a: None)
            try:
                reply = {"ok": True, "result": handler(args)}
            except Refuse as e:
                reply = {"ok": False, "error": str(e)}
            self.wfile.write(json.dumps(reply).encode() + b"\n")

    class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
        daemon_threads = True

    server = Server(path, Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()
    shutil.rmtree(workdir, ignore_errors=True)


def pyxl(host, *args, stdin: bytes = b"", capsys=None, monkeypatch=None):
    """Run pyxl in this process; returns (status, stdout, stderr)."""
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    argv = (["--control", host.path] if host is not None else []) + [str(a) for a in args]
    status = execute(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture
def run(host, capsys, monkeypatch):
    def runner(*args, stdin: bytes = b""):
        return pyxl(host, *args, stdin=stdin, capsys=capsys, monkeypatch=monkeypatch)
    return runner


def one_error_line(status, out, err, expected_status=1):
    assert status == expected_status, (status, out, err)
    lines = err.strip("\n").splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err + out
    return lines[0]


# --- list ---------------------------------------------------------------------------------------

LIST_HEADER = "Name                                        ID   Mem VCPUs\tState\tTime(s)"
ROW_DOM0 = "Domain-0".ljust(40) + "     0  4096     4     r-----   11794.3"
ROW_WEB = "web".ljust(40) + "     3   512     2     -b----      42.2"
ROW_BAD = "Bad".ljust(40) + "     7    33     1     --psc-       0.0"


def test_list_exact_table(run, host):
    status, out, err = run("list")
    assert (status, err) == (0, "")
    assert out == "\n".join([LIST_HEADER, ROW_DOM0, ROW_WEB, ROW_BAD]) + "\n"
    assert host.ops() == ["list"]


def test_list_verbose(run):
    status, out, _ = run("list", "-v")
    assert status == 0
    assert out.splitlines() == [
        LIST_HEADER + "   UUID                            Reason-Code\tSecurity Label",
        ROW_DOM0 + " 00000000-0000-0000-0000-000000000000        -                -",
        ROW_WEB + " 3b1e2c4d-5a6f-4e7d-8c9b-0a1b2c3d4e5f        -                -",
        ROW_BAD + " 11111111-2222-3333-4444-555555555555        3                -",
    ]


def test_list_cpupool_and_context(run):
    _, out, _ = run("list", "-c", "-Z")
    lines = out.splitlines()
    assert lines[0] == LIST_HEADER + "   Security Label         Cpupool"
    assert lines[1] == ROW_DOM0 + "                -          Pool-0"


def test_list_named_domains(run, host):
    status, out, _ = run("list", "web", "7")
    assert status == 0
    assert out.splitlines() == [LIST_HEADER, ROW_WEB, ROW_BAD]
    assert host.args_of("resolve") == [{"dom": "web"}, {"dom": "7"}]


def test_list_unknown_domain(run):
    line = one_error_line(*run("list", "nosuch"))
    assert line == "nosuch is an invalid domain identifier (rc=-6)"


def test_list_long_is_xl_json(run):
    status, out, _ = run("list", "-l")
    assert status == 0
    data = json.loads(out)
    # Domain-0 has no stored config: xl leaves it out.
    assert [d["domid"] for d in data] == [3, 7]
    assert data[0]["config"]["c_info"] == {"type": "pvh", "name": "web"}
    assert out.startswith("[\n    {\n")  # libxl's four-blank indentation


def test_list_json_rows(run):
    status, out, _ = run("list", "-j")
    rows = json.loads(out)
    assert status == 0 and len(rows) == 3
    assert rows[2]["state"] == "--psc-" and rows[2]["mem_mib"] == 33
    assert rows[0]["time_s"] == 11794.3 and "config" not in rows[1]
    assert {"domid", "name", "uuid", "online_vcpus", "cpu_time_ns"} <= set(rows[0])


def test_list_state_letters_and_reason_codes():
    base = {"domid": 1, "name": "x", "mem_kb": 0}
    assert formats.list_state({**base, "shutdown": True, "shutdown_reason": 0}) == "---s--"
    assert formats.list_state({**base, "shutdown": True, "shutdown_reason": 1}) == "---sr-"
    assert formats.list_state({**base, "shutdown": True, "shutdown_reason": 5}) == "---sS-"
    assert formats.list_state({**base, "shutdown": True, "shutdown_reason": 9}) == "---s?-"
    assert formats.list_state({**base, "dying": True, "paused": True}) == "--p--d"
    # the reason only counts while the domain is shut down
    assert formats.list_state({**base, "shutdown_reason": 3}) == "------"


def test_times_are_rounded_through_single_precision_like_xl():
    assert formats.c_float(16777217) == 16777216.0
    assert formats.c_float(16777219) == 16777220.0  # ties go to even
    assert formats.c_float(123) == 123.0
    # 2^24 + 1 seconds' worth of ns is not exact in a float; xl shows the rounded value
    ns = 99_999_999_950_000_000
    assert formats.seconds(ns) == formats.c_float(ns) / 1e9 != ns / 1e9


# --- vcpu-list ----------------------------------------------------------------------------------

VCPU_HEADER = ("Name                                ID  VCPU   CPU State   Time(s)"
               " Affinity (Hard / Soft)")


def test_vcpu_list_exact(run, host):
    status, out, _ = run("vcpu-list")
    assert status == 0
    assert out.splitlines() == [
        VCPU_HEADER,
        "Domain-0".ljust(32) + "     0     0    2   r--       5.0  all / all",
        "web".ljust(32) + "     3     0    1   -b-      40.0  0-1,3 / all",
        "web".ljust(32) + "     3     1    -   --p       0.0  all / all",
    ]
    assert host.args_of("vcpu_list") == [{"domid": None}]


def test_vcpu_list_of_named_domains_and_json(run, host):
    status, out, _ = run("vcpu-list", "web")
    assert status == 0 and len(out.splitlines()) == 3
    assert host.args_of("vcpu_list") == [{"domid": 3}]
    status, out, _ = run("vcpu-list", "-j", "0")
    data = json.loads(out)
    assert status == 0 and [v["vcpu"] for v in data] == [0]
    assert {"cpu", "online", "time_ns", "hard_affinity", "soft_affinity"} <= set(data[0])


def test_format_cpumap_like_xl():
    assert formats.format_cpumap(range(8), 8) == "all"
    assert formats.format_cpumap([], 8) == "none"
    assert formats.format_cpumap([0, 1, 2, 5, 7], 8) == "0-2,5,7"
    assert formats.format_cpumap([1, 2, 3], 4) == "1-3"
    assert formats.format_cpumap([0, 9], 4) == "0"


# --- info ---------------------------------------------------------------------------------------

def test_info_exact(run, host):
    status, out, _ = run("info")
    assert status == 0
    lines = out.splitlines()
    assert [line.split(":", 1)[0].rstrip() for line in lines] == list(formats.INFO_KEYS)
    assert lines[0] == "host                   : testhost"
    assert lines[9] == "cpu_mhz                : 2400.000"
    assert lines[11] == "virt_caps              :"  # no blank after an empty list
    assert lines[21] == "xen_version            : 4.10.0-pyxen"
    assert lines[-1] == "xend_config_format     : 4"
    assert all(re.fullmatch(r"[a-z_]{1,22} *: .*|virt_caps {14}:", line) for line in lines)
    assert all(line.index(":") == 23 for line in lines)
    assert host.ops() == ["info"]


def test_info_values_and_filter(run):
    assert formats.info_line("virt_caps", "hvm hvm_directio") == (
        "virt_caps              : hvm hvm_directio")
    assert formats.info_line("cpu_mhz", 2394.5) == "cpu_mhz                : 2394.500"
    status, out, _ = run("info", "free")  # every key starting with "free"
    assert (status, out) == (0, "3000\n0\n")


def test_info_json_and_numa(run):
    status, out, _ = run("info", "-j")
    assert status == 0 and json.loads(out) == INFO
    status, out, _ = run("info", "-n")
    lines = out.splitlines()
    start = lines.index("cpu_topology           :")
    assert lines[start - 1].startswith("free_cpus")
    assert lines[start + 1:start + 3] == ["cpu:    core    socket     node",
                                          "  0:       0        0        0"]
    numa = lines.index("numa_info              :")
    assert lines[numa + 1:numa + 3] == ["node:    memsize    memfree    distances",
                                        "   0:      8192       3000      10"]
    assert lines[numa + 3].startswith("xen_major")


# --- uptime -------------------------------------------------------------------------------------

def test_uptime_exact(run):
    status, out, _ = run("uptime")
    assert status == 0
    assert out.splitlines() == [
        "Name                                ID Uptime",
        "Domain-0".ljust(33) + "    0 2 days,  5:07:03",
        "web".ljust(33) + "    3  1:02:05",
        "Bad".ljust(33) + "    7 1 day,  0:00:59",
    ]


def test_uptime_short_and_named(run):
    status, out, _ = run("uptime", "-s", "web", "0")
    assert status == 0
    lines = out.splitlines()
    assert re.fullmatch(r" \d\d:\d\d:\d\d up  1:02, web \(3\)", lines[0]), lines
    assert re.fullmatch(r" \d\d:\d\d:\d\d up 2 days,  5:07, Domain-0 \(0\)", lines[1]), lines


# --- top ----------------------------------------------------------------------------------------

TOP_HEADER = ("      NAME  STATE   CPU(sec) CPU(%)     MEM(k) MEM(%)  MAXMEM(k) MAXMEM(%) VCPUS"
              " NETS NETTX(k) NETRX(k) VBDS   VBD_OO   VBD_RD   VBD_WR  VBD_RSECT  VBD_WSECT"
              " SSID")
TOP_TAIL = "    0        0        0    0        0        0        0          0          0    0"


def test_top_batch_exact(run, host):
    status, out, _ = run("top", "-b", "-i", "2", "-d", "0.05")
    assert status == 0
    lines = out.splitlines()
    # Per iteration: the header, then the domains sorted by name (case-insensitively).
    assert len(lines) == 8 and lines[0] == lines[4] == TOP_HEADER
    assert lines[1] == ("       Bad ---cp-          0    0.0      33792    0.4      34816"
                        "       0.4     1" + TOP_TAIL)
    assert lines[2] == ("  Domain-0 -----r      11794    0.0    4194304   50.0   no limit"
                        "       n/a     4" + TOP_TAIL)
    assert lines[3] == ("       web --b---         42    0.0     524288    6.2     525312"
                        "       6.3     2" + TOP_TAIL)
    # The second sample has a previous one: web used 0.5 s of CPU in ~0.05 s.
    web = lines[7].split()
    assert web[0] == "web" and web[2] == "42" and float(web[3]) > 50.0
    assert host.ops().count("list") == 2 and host.ops().count("info") == 2


def test_top_batch_full_name_and_vcpus(run):
    status, out, _ = run("top", "-b", "-i", "1", "-f", "-v")
    lines = out.splitlines()
    assert status == 0 and lines[0] == TOP_HEADER
    assert lines[1].startswith("       Bad ---cp-")
    assert lines[2] == "VCPUs(sec): "
    assert lines[4] == "VCPUs(sec):   0:          5s"
    assert lines[6] == "VCPUs(sec):   0:         40s"


def test_top_summary_lines():
    sample = formats.TopSample(domains=DOMAINS, total_kb=8192 * 1024, free_kb=3000 * 1024,
                               nr_cpus=4, cpu_mhz=2400, xen_version="4.10.0", taken=0.0,
                               wall=0.0)
    lines = formats.top_summary(sample)
    assert re.fullmatch(r"xentop - \d\d:\d\d:\d\d   Xen 4\.10\.0", lines[0])
    assert lines[1] == ("3 domains: 1 running, 1 blocked, 1 paused, 0 crashed, 0 dying,"
                        " 0 shutdown ")
    assert lines[2] == "Mem: 8388608k total, 5316608k used, 3072000k free    CPUs: 4 @ 2400MHz"


def test_top_rejects_a_bad_delay(run):
    line = one_error_line(*run("top", "-b", "-d", "0"), expected_status=2)
    assert "delay" in line


# --- create -------------------------------------------------------------------------------------

GUEST_CFG = 'name = "g"\ntype = "pvh"\nkernel = "/k"\nmemory = 64\nvcpus = 2\n'


@pytest.fixture
def cfg(tmp_path):
    path = tmp_path / "g.cfg"
    path.write_text(GUEST_CFG)
    return path


def test_create_sends_the_config(run, host, cfg):
    host.handlers["create"] = lambda a: {"domid": 5, "name": "g"}
    status, out, err = run("create", cfg, "memory=128", "extra='quiet'")
    assert (status, out) == (0, "")
    assert err == f"Parsing config from {cfg}\n"
    (args,) = host.args_of("create")
    assert args == {"config_path": str(cfg), "config_text": GUEST_CFG,
                    "overrides": ["memory=128", "extra='quiet'"], "paused": False,
                    "dry_run": False}


def test_create_options(run, host, cfg):
    host.handlers["create"] = lambda a: {"domid": 5, "name": "g"}
    status, out, err = run("create", "-p", "-q", "-f", cfg, "vcpus=1")
    assert (status, out, err) == (0, "", "")
    assert host.args_of("create")[0]["paused"] is True
    assert host.args_of("create")[0]["overrides"] == ["vcpus=1"]


def test_create_dry_run_prints_the_hosts_json(run, host, cfg):
    host.handlers["create"] = lambda a: {"config": {"c_info": {"name": "from-host"}}}
    status, out, _ = run("create", "-n", cfg)
    assert status == 0 and json.loads(out) == {"c_info": {"name": "from-host"}}
    assert host.args_of("create")[0]["dry_run"] is True


def test_create_dry_run_without_a_host_shows_the_local_parse(capsys, monkeypatch, cfg):
    monkeypatch.setenv("PYXEN_CONTROL", "/nonexistent/pyxen.sock")
    status, out, err = pyxl(None, "create", "-n", cfg, "cpu_weight=512", capsys=capsys,
                            monkeypatch=monkeypatch)
    assert status == 0 and err == f"Parsing config from {cfg}\n"
    data = json.loads(out)
    assert data["c_info"] == {"type": "pvh", "name": "g"}
    assert data["b_info"]["max_vcpus"] == 2 and data["b_info"]["avail_vcpus"] == [0, 1]
    assert data["b_info"]["target_memkb"] == 65536
    assert data["b_info"]["sched_params"] == {"weight": 512}
    assert data["on_reboot"] == "restart" and data["on_soft_reset"] == "soft_reset"


def test_create_bad_config_is_one_line_and_sends_nothing(run, host, tmp_path):
    bad = tmp_path / "bad.cfg"
    bad.write_text('name = "g"\nkernel = "/k"\non_crash = "reboot"\n')
    line = one_error_line(*run("create", bad))
    assert line == f'{bad}:3: Unknown on_crash action "reboot" specified'
    bad.write_text("kernel = os.path.join('/boot', 'vmlinuz')\n")
    line = one_error_line(*run("create", bad))
    assert line.startswith(f"{bad}:1: config parsing error") and "Python" in line
    line = one_error_line(*run("create", bad, "nonsense"), expected_status=2)
    assert "more than one config file" in line
    assert host.requests == []


def test_create_missing_file_and_refusal(run, host, tmp_path, cfg):
    line = one_error_line(*run("create", tmp_path / "none.cfg"), expected_status=3)
    assert line == f"Failed to read config file: {tmp_path / 'none.cfg'}: No such file or directory"
    line = one_error_line(*run("create"), expected_status=6)
    assert line == "Config file not specified"

    def refuse(args):
        raise Refuse("not enough memory for the domain")
    host.handlers["create"] = refuse
    status, out, err = run("create", "-q", cfg)
    assert one_error_line(status, out, err, 3) == "not enough memory for the domain"


def test_create_then_console(run, host, cfg):
    host.handlers["create"] = lambda a: {"domid": 3, "name": "g"}

    def console(sock, rfile, args):
        sock.sendall(b"booted\r\n")
        sock.close()
    host.streams["console"] = console
    status, out, err = run("create", "-q", "-c", cfg)
    assert (status, out, err) == (0, "booted\r\n", "")
    assert host.args_of("console") == [{"domid": 3, "hypervisor": False}]


# --- the other domain commands --------------------------------------------------------------------

@pytest.mark.parametrize("argv, op, args", [
    (["destroy", "web"], "destroy", {"domid": 3}),
    (["destroy", "-f", "0"], "destroy", {"domid": 0}),
    (["pause", "3"], "pause", {"domid": 3}),
    (["unpause", "web"], "unpause", {"domid": 3}),
    (["rename", "web", "www"], "rename", {"domid": 3, "name": "www"}),
    (["shutdown", "web"], "shutdown", {"domid": 3, "reboot": False, "wait": False}),
    (["reboot", "Bad"], "reboot", {"domid": 7, "reboot": True, "wait": False}),
    (["dmesg"], "dmesg", {"clear": False}),
    (["dmesg", "-c"], "dmesg", {"clear": True}),
    (["set-parameters", "loglvl=all guest_loglvl=info"], "set_parameters",
     {"params": "loglvl=all guest_loglvl=info"}),
])
def test_commands_map_to_ops(run, host, argv, op, args):
    status, out, err = run(*argv)
    assert status == 0, err
    wire_op = "shutdown" if op == "reboot" else op
    assert host.args_of(wire_op) == [args]
    if op == "dmesg":
        assert out == "(XEN) hello\n(d3) guest\n"


def test_shutdown_messages_all_and_wait(run, host):
    status, _, err = run("shutdown", "web")
    assert (status, err) == (0, "Shutting down domain 3\n")
    host.requests.clear()
    status, _, err = run("reboot", "-a")
    assert status == 0 and err == "Rebooting domain 3\nRebooting domain 7\n"
    assert [a["domid"] for a in host.args_of("shutdown")] == [3, 7]  # never Domain-0
    host.requests.clear()
    status, _, err = run("shutdown", "-w", "-a")
    assert status == 0
    assert err.splitlines() == ["Shutting down domain 3", "Shutting down domain 7",
                                "Waiting for 2 domains", "Domain 3 has been destroyed",
                                "Domain 7 has been destroyed"]
    assert all(a["wait"] for a in host.args_of("shutdown"))
    assert one_error_line(*run("shutdown")) == "You must specify -a or a domain id."


def test_destroy_domain_0_needs_force(run, host):
    assert one_error_line(*run("destroy", "Domain-0")).startswith("Not destroying domain 0")
    assert host.args_of("destroy") == []


def test_refusals_are_one_line(run, host):
    def refuse(args):
        raise Refuse("Invalid argument")
    for op in ("destroy", "pause", "rename", "set_parameters", "shutdown"):
        host.handlers[op] = refuse
    assert one_error_line(*run("destroy", "web")) == "destroy failed: Invalid argument"
    assert one_error_line(*run("pause", "web")) == "pause failed: Invalid argument"
    assert one_error_line(*run("rename", "web", "x")) == (
        "Can't rename domain 'web': Invalid argument")
    assert one_error_line(*run("set-parameters", "sched=credit2")) == (
        "cannot set parameters: sched=credit2 (Invalid argument)")
    # xl's progress lines come first; the error is one line, the last.
    status, _, err = run("shutdown", "-w", "web")
    assert status == 1 and err.splitlines() == [
        "Shutting down domain 3", "Waiting for 1 domains", "shutdown failed: Invalid argument"]


def test_domid_and_domname(run):
    assert run("domid", "web") == (0, "3\n", "")
    assert run("domname", "7") == (0, "Bad\n", "")
    assert run("domname", " 7x") == (0, "Bad\n", "")  # strtol stops at the x
    assert one_error_line(*run("domid", "0")) == (
        "Can't get domid of domain name '0', maybe this domain does not exist.")
    assert one_error_line(*run("domname", "9")) == (
        "Can't get domain name of domain id '9', maybe this domain does not exist.")
    assert one_error_line(*run("domname", "x")) == "Invalid domain id."


@pytest.mark.parametrize("argv", [["destroy", "ghost"], ["pause", "ghost"],
                                  ["vcpu-list", "ghost"], ["uptime", "ghost"],
                                  ["console", "ghost"], ["shutdown", "ghost"]])
def test_unknown_domain_everywhere(run, argv):
    assert one_error_line(*run(*argv)) == "ghost is an invalid domain identifier (rc=-6)"


# --- console ------------------------------------------------------------------------------------

def test_console_pipes_stdin_and_output(run, host):
    got = []

    def console(sock, rfile, args):
        sock.sendall(b"login: ")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(100)
            if not chunk:
                break
            data += chunk
        got.append(data)
        sock.sendall(b"\r\nwelcome " + data.strip() + b"\r\n")
        sock.close()
    host.streams["console"] = console
    status, out, err = run("console", "web", stdin=b"root\n")
    assert (status, err) == (0, "")
    assert out == "login: \r\nwelcome root\r\n"
    assert got == [b"root\n"]
    assert host.args_of("console") == [{"domid": 3, "hypervisor": False}]


def test_console_of_domain_0_is_the_hypervisors(run, host):
    host.streams["console"] = lambda sock, rfile, args: sock.sendall(b"(XEN) hi\n")
    status, out, _ = run("console", "-t", "pv", "Domain-0")
    assert (status, out) == (0, "(XEN) hi\n")
    assert host.args_of("console") == [{"domid": 0, "hypervisor": True, "type": "pv"}]


def test_console_errors(run, host):
    assert one_error_line(*run("console", "-t", "vga", "web")) == (
        "console type supported are: pv, serial, vuart")

    def refuse(args):
        raise Refuse("domain 3 has no console")
    host.handlers["console"] = refuse
    assert one_error_line(*run("console", "web")) == (
        "Unable to attach console: domain 3 has no console")


# --- usage errors and a missing host --------------------------------------------------------------

def test_no_daemon_is_one_line(capsys, monkeypatch, tmp_path):
    for argv in (["list"], ["info"], ["destroy", "x"], ["top", "-b", "-i", "1"],
                 ["console", "1"], ["dmesg"]):
        status, out, err = pyxl(None, "--control", tmp_path / "none.sock", *argv,
                                capsys=capsys, monkeypatch=monkeypatch)
        line = one_error_line(status, out, err)
        assert line.startswith("no pyxen host is running") and "none.sock" in line


def test_control_socket_from_the_environment(capsys, monkeypatch, host):
    monkeypatch.setenv("PYXEN_CONTROL", host.path)
    status, out, _ = pyxl(None, "domid", "web", capsys=capsys, monkeypatch=monkeypatch)
    assert (status, out) == (0, "3\n")


@pytest.mark.parametrize("argv, status, needle", [
    (["list", "--bogus"], 2, "No such option"),
    (["destroy"], 2, "Missing argument"),
    (["top", "-i", "0"], 2, "-i"),
    (["frobnicate"], 1, "No such command"),
    (["help", "frobnicate"], 1, "command not implemented"),
    (["create", "-x"], 2, "No such option"),
])
def test_usage_errors(run, host, argv, status, needle):
    line = one_error_line(*run(*argv), expected_status=status)
    assert needle in line
    assert host.requests == []


def test_help_and_no_command(run):
    status, out, _ = run("help", "list")
    assert status == 0 and "-l, --long" in out
    status, out, _ = run("info", "--help")
    assert status == 0 and "xl info has no JSON" in " ".join(out.split())
    status, out, _ = run()
    assert status == 1 and "Commands:" in out


def test_verbose_traces_requests(run):
    status, out, err = run("-v", "domid", "web")
    assert (status, out) == (0, "3\n")
    assert err == 'pyxl: -> list {}\n'


def test_module_entry_point(host, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pyxen.toolstack.xl", "--control", host.path,
                           "list"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[1] == ROW_DOM0
    proc = subprocess.run([sys.executable, "-m", "pyxen.toolstack.xl", "--control",
                           str(tmp_path / "x.sock"), "list"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1 and len(proc.stderr.splitlines()) == 1


def test_console_through_a_real_pipe(host):
    """A subprocess with a pipe for stdin: the non-tty path with real file descriptors."""
    def console(sock, rfile, args):
        data = sock.recv(100)
        sock.sendall(b"echo:" + data)
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()
    host.streams["console"] = console
    proc = subprocess.run([sys.executable, "-m", "pyxen.toolstack.xl", "--control", host.path,
                           "console", "3"], input=b"ping", cwd=ROOT, capture_output=True,
                          timeout=60)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, b"echo:ping", b"")


def test_crash_flags_in_either_convention():
    """libxl says a crashed domain is shut down with reason crash; xenstat (and the host's
    list) says shutdown=False, crashed=True.  xl list and xentop each show their own view."""
    xenstat_style = {"domid": 7, "name": "c", "shutdown": False, "crashed": True,
                     "shutdown_reason": 3}
    libxl_style = {"domid": 7, "name": "c", "shutdown": True, "shutdown_reason": 3}
    for dom in (xenstat_style, libxl_style):
        assert formats.list_state(dom) == "---sc-"
        assert formats.top_state(dom) == "---c--"
    assert formats.top_state({"domid": 1, "shutdown": True, "shutdown_reason": 0}) == "-s----"
    row = formats.format_list([{**xenstat_style, "uuid": "u"}], verbose=True).splitlines()[1]
    assert row.endswith(" u        3                -")


def test_unlimited_max_memory_shows_no_limit():
    sample = formats.TopSample(
        domains=[{"domid": 0, "name": "Domain-0", "mem_kb": 1024,
                  "max_mem_kb": 0xFFFFFFFF * 4}],
        total_kb=2048, free_kb=0, nr_cpus=1, cpu_mhz=1, xen_version="", taken=0.0)
    row = formats.top_table(sample)[1]
    assert "  no limit       n/a" in row


def test_info_puts_keys_in_xl_order_whatever_the_host_sends():
    shuffled = dict(reversed(list(INFO.items())))
    shuffled["pyxen_extra"] = "x"
    lines = formats.format_info(shuffled).splitlines()
    assert [line.split(":", 1)[0].rstrip() for line in lines] == [
        *formats.INFO_KEYS, "pyxen_extra"]
