"""xl's and xentop's exact text output, as pure functions of the daemon's data.

Every layout here is Xen 4.10's (tools/xl/xl_info.c, xl_vcpu.c, tools/xentop/xentop.c):
column widths, padding, tabs, the single-precision rounding of times, and xentop's state
letter order all follow those tools, because scripts parse their output.

The data comes from the control protocol (pyxen/toolstack/control.py): domain dicts from
``list``, vCPU dicts from ``vcpu_list``, the ``info`` dict.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Dom = Mapping[str, Any]

# libxl_shutdown_reason: poweroff, reboot, suspend, crash, watchdog, soft_reset.
SHUTDOWN_REASON_LETTERS = "-rscwS"
SHUTDOWN_CRASH = 3


def c_float(n: int | float) -> float:
    """(float)n as C computes it: the integer rounded once, to nearest even, to a 24-bit
    mantissa.  xl prints times as (float)ns / 1e9, so large times lose precision as xl's do."""
    if isinstance(n, float):
        n = int(n)
    negative, n = n < 0, abs(n)
    bits = n.bit_length()
    if bits > 24:
        shift = bits - 24
        q, r = divmod(n, 1 << shift)
        half = 1 << (shift - 1)
        if r > half or (r == half and q & 1):
            q += 1
        n = q << shift
    return -float(n) if negative else float(n)


def seconds(ns: int | float | None) -> float:
    return c_float(ns or 0) / 1e9


def format_cpumap(cpus: Iterable[int], nr_cpus: int) -> str:
    """A CPU set the way xl prints a bitmap: "all" when it is every CPU of the host, "none"
    when empty, else ranges such as "0-3,5".  Bits at or above nr_cpus are not shown.
    (For the daemon's hard_affinity / soft_affinity strings.)"""
    present = sorted({c for c in cpus if 0 <= c < nr_cpus})
    if not present:
        return "none"
    runs: list[tuple[int, int]] = []
    for cpu in present:
        if runs and runs[-1][1] == cpu - 1:
            runs[-1] = (runs[-1][0], cpu)
        else:
            runs.append((cpu, cpu))
    if runs == [(0, nr_cpus - 1)]:
        return "all"
    return ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs)


# --- xl list ------------------------------------------------------------------------------------

LIST_HEADER = "Name                                        ID   Mem VCPUs\tState\tTime(s)"


def is_shut_down(dom: Dom) -> bool:
    """libxl's view, which xl list shows: a crashed domain is shut down (reason crash).
    The daemon may report the flags the xenstat way (`shutdown` false when `crashed`)."""
    return bool(dom.get("shutdown") or dom.get("crashed"))


def is_crashed(dom: Dom) -> bool:
    if dom.get("crashed") is not None:
        return bool(dom["crashed"])
    return bool(dom.get("shutdown")) and dom.get("shutdown_reason") == SHUTDOWN_CRASH


def shutdown_reason(dom: Dom) -> int:
    """The reason code xl shows: the domain's, or 0 when it is not shut down."""
    if not is_shut_down(dom):
        return 0
    reason = dom.get("shutdown_reason")
    if reason is None:
        return SHUTDOWN_CRASH if dom.get("crashed") else 0
    return int(reason)


def list_state(dom: Dom) -> str:
    """r b p s <reason> d: the fifth letter is the shutdown reason from "-rscwS"."""
    reason = shutdown_reason(dom)
    reason_letter = (SHUTDOWN_REASON_LETTERS[reason]
                     if 0 <= reason < len(SHUTDOWN_REASON_LETTERS) else "?")
    return "".join([
        "r" if dom.get("running") else "-",
        "b" if dom.get("blocked") else "-",
        "p" if dom.get("paused") else "-",
        "s" if is_shut_down(dom) else "-",
        reason_letter,
        "d" if dom.get("dying") else "-",
    ])


def mem_mib(dom: Dom) -> int:
    """(current + outstanding) KiB / 1024, truncated, as xl list shows Mem."""
    return (int(dom.get("mem_kb") or 0) + int(dom.get("outstanding_kb") or 0)) // 1024


def pool_name(dom: Dom) -> str:
    if dom.get("cpupool_name"):
        return str(dom["cpupool_name"])
    pool = dom.get("cpupool")
    return "Pool-0" if pool in (None, 0) else str(pool)


def format_list(domains: Sequence[Dom], verbose: bool = False, context: bool = False,
                cpupool: bool = False) -> str:
    header = LIST_HEADER
    if verbose:
        header += "   UUID                            Reason-Code\tSecurity Label"
    if context and not verbose:
        header += "   Security Label"
    if cpupool:
        header += "         Cpupool"
    lines = [header]
    for dom in domains:
        row = (f"{dom.get('name', '')!s:<40} {int(dom['domid']):5d} {mem_mib(dom):5d}"
               f" {int(dom.get('online_vcpus') or 0):5d}     {list_state(dom)}"
               f"  {seconds(dom.get('cpu_time_ns')):8.1f}")
        if verbose:
            row += f" {dom.get('uuid') or '00000000-0000-0000-0000-000000000000'}"
            row += f" {shutdown_reason(dom):8x}" if is_shut_down(dom) else f" {'-':>8}"
        if verbose or context:
            row += f" {dom.get('ssid_label') or '-':>16}"
        if cpupool:
            row += f"{pool_name(dom):>16}"
        lines.append(row)
    return "\n".join(lines) + "\n"


def list_json_rows(domains: Sequence[Dom]) -> list[dict]:
    """pyxl list -j: the daemon's fields plus what the table derives from them."""
    rows = []
    for dom in domains:
        row = {k: v for k, v in dom.items() if k != "config"}
        row["state"] = list_state(dom)
        row["mem_mib"] = mem_mib(dom)
        row["time_s"] = round(seconds(dom.get("cpu_time_ns")), 1)
        rows.append(row)
    return rows


# --- xl vcpu-list -------------------------------------------------------------------------------

VCPU_LIST_HEADER = (f"{'Name':<32} {'ID':>5} {'VCPU':>5} {'CPU':>5} {'State':>5} {'Time(s)':>9}"
                    " Affinity (Hard / Soft)")


def format_vcpu_row(v: Dom) -> str:
    row = f"{v.get('name', '')!s:<32} {int(v['domid']):5d} {int(v['vcpu']):5d}"
    if not v.get("online"):
        row += f"{'-':>5} {'-':>3}-p "
    else:
        running = "r" if v.get("running") else "-"
        blocked = "b" if v.get("blocked") else "-"
        row += f"{int(v.get('cpu') or 0):5d} {running:>3}{blocked}- "
    row += f"{seconds(v.get('time_ns')):9.1f}  "
    row += f"{v.get('hard_affinity') or 'all'} / {v.get('soft_affinity') or 'all'}"
    return row


def format_vcpu_list(vcpus: Sequence[Dom]) -> str:
    return "\n".join([VCPU_LIST_HEADER, *(format_vcpu_row(v) for v in vcpus)]) + "\n"


# --- xl info ------------------------------------------------------------------------------------

INFO_KEYS = (
    "host", "release", "version", "machine", "nr_cpus", "max_cpu_id", "nr_nodes",
    "cores_per_socket", "threads_per_core", "cpu_mhz", "hw_caps", "virt_caps", "total_memory",
    "free_memory", "sharing_freed_memory", "sharing_used_memory", "outstanding_claims",
    "free_cpus", "xen_major", "xen_minor", "xen_extra", "xen_version", "xen_caps",
    "xen_scheduler", "xen_pagesize", "platform_params", "xen_changeset", "xen_commandline",
    "cc_compiler", "cc_compile_by", "cc_compile_domain", "cc_compile_date", "build_id",
    "xend_config_format",
)
# -n prints the topology and NUMA sections between the host's keys and Xen's.
_FIRST_XEN_KEY = "xen_major"


def info_value(key: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if key == "cpu_mhz" and isinstance(value, (int, float)):
        khz = int(round(float(value) * 1000))
        return f"{khz // 1000}.{khz % 1000:03d}"
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    return str(value)


def info_line(key: str, value: Any) -> str:
    text = info_value(key, value)
    if key == "virt_caps":
        # xl prints each capability with its own leading blank: "virt_caps              :"
        # alone when there is none.
        return f"{key:<23}:" + "".join(f" {cap}" for cap in text.split())
    return f"{key:<23}: {text}"


def _topology_lines(info: Mapping[str, Any]) -> list[str]:
    lines = ["cpu_topology           :", "cpu:    core    socket     node"]
    for i, cpu in enumerate(info.get("cpu_topology") or ()):
        lines.append(f"{cpu.get('cpu', i):3d}:    {cpu.get('core', 0):4d}"
                     f"     {cpu.get('socket', 0):4d}     {cpu.get('node', 0):4d}")
    lines += ["device topology        :", "device           node"]
    devices = info.get("device_topology") or ()
    for dev in devices:
        lines.append(f"{dev['device']}      {dev.get('node', 0)}")
    if not devices:
        lines.append("No device topology data available")
    lines += ["numa_info              :", "node:    memsize    memfree    distances"]
    for i, node in enumerate(info.get("numa_info") or ()):
        distances = ",".join(str(d) for d in node.get("distances") or (10,))
        lines.append(f"{node.get('node', i):4d}:    {int(node.get('memsize', 0)):6d}"
                     f"     {int(node.get('memfree', 0)):6d}      {distances}")
    return lines


def default_topology(info: Mapping[str, Any]) -> dict:
    """Topology for `info -n` when the daemon gives none: one socket, one node, every CPU
    its own core, all the memory on node 0 (a single-node host)."""
    nr_cpus = int(info.get("nr_cpus") or 0)
    return {
        "cpu_topology": [{"cpu": i, "core": i, "socket": 0, "node": 0} for i in range(nr_cpus)],
        "numa_info": [{"node": 0, "memsize": int(info.get("total_memory") or 0),
                       "memfree": int(info.get("free_memory") or 0), "distances": [10]}],
    }


def format_info(info: Mapping[str, Any], numa: bool = False) -> str:
    """xl info: `%-23s: %s` per key, xl's keys in xl's order, then any others the host
    added."""
    lines = []
    keys = [k for k in INFO_KEYS if k in info] + [
        k for k in info
        if k not in INFO_KEYS and k not in ("cpu_topology", "numa_info", "device_topology")]
    for key in keys:
        if numa and key == _FIRST_XEN_KEY:
            lines += _topology_lines(info)
        lines.append(info_line(key, info[key]))
    if numa and _FIRST_XEN_KEY not in keys:
        lines += _topology_lines(info)
    return "\n".join(lines) + "\n"


def filter_info(text: str, name: str) -> str:
    """`xl info NAME`: the values of the lines whose key starts with NAME."""
    out = []
    for line in text.splitlines():
        if line.startswith(name) and ": " in line:
            # xl looks for the first ':' and wants a blank after it
            colon = line.index(":")
            if line[colon + 1:colon + 2] == " ":
                out.append(line[colon + 2:])
    return "".join(x + "\n" for x in out)


# --- xl uptime ----------------------------------------------------------------------------------

def uptime_string(uptime: int, short: bool) -> str:
    uptime = max(int(uptime), 0)
    day, rest = divmod(uptime, 86400)
    hour, rest = divmod(rest, 3600)
    minute, sec = divmod(rest, 60)
    days = f"{day} days, " if day > 1 else "1 day, " if day == 1 else ""
    if short:
        return f"{days}{hour:2d}:{minute:02d}"
    return f"{days}{hour:2d}:{minute:02d}:{sec:02d}"


UPTIME_HEADER = f"{'Name':<33} {'ID':>4} Uptime"


def format_uptime_row(dom: Dom, short: bool, now: float | None = None) -> str:
    up = uptime_string(int(dom.get("uptime_s") or 0), short)
    if short:
        clock = time.strftime("%H:%M:%S", time.localtime(now if now is not None else time.time()))
        return f" {clock} up {up}, {dom.get('name', '')} ({int(dom['domid'])})"
    return f"{dom.get('name', '')!s:<33} {int(dom['domid']):4d} {up}"


# --- xentop -------------------------------------------------------------------------------------

@dataclass
class TopField:
    header: str
    width: int


def top_fields() -> list[TopField]:
    return [TopField(h, w) for h, w in (
        ("NAME", 10), ("STATE", 6), ("CPU(sec)", 10), ("CPU(%)", 6), ("MEM(k)", 10),
        ("MEM(%)", 6), ("MAXMEM(k)", 10), ("MAXMEM(%)", 9), ("VCPUS", 5), ("NETS", 4),
        ("NETTX(k)", 8), ("NETRX(k)", 8), ("VBDS", 4), ("VBD_OO", 8), ("VBD_RD", 8),
        ("VBD_WR", 8), ("VBD_RSECT", 10), ("VBD_WSECT", 10), ("SSID", 4))]


def top_shutdown(dom: Dom) -> bool:
    """xenstat's view, which xentop shows: shut down but not crashed."""
    return bool(dom.get("shutdown")) and not is_crashed(dom)


def top_state(dom: Dom) -> str:
    """xentop's letters, in its order: d s b c p r."""
    flags = (("d", dom.get("dying")), ("s", top_shutdown(dom)), ("b", dom.get("blocked")),
             ("c", is_crashed(dom)), ("p", dom.get("paused")), ("r", dom.get("running")))
    return "".join(letter if on else "-" for letter, on in flags)


# xenstat shows "no limit" when a domain's max_pages is UINT_MAX.
NO_LIMIT_KB = 0xFFFFFFFF * 4


def max_mem_kb(dom: Dom) -> int | None:
    value = dom.get("max_mem_kb")
    if value is None or int(value) >= NO_LIMIT_KB:
        return None
    return int(value)


def _digits(n: int) -> int:
    return len(str(max(int(n), 1)))


@dataclass
class TopSample:
    """One refresh: the domains, the host figures, and when it was taken."""

    domains: list[Dom]
    total_kb: int
    free_kb: int
    nr_cpus: int
    cpu_mhz: int
    xen_version: str
    taken: float  # time.monotonic()
    wall: float = field(default_factory=time.time)
    vcpus: dict[int, list[Dom]] = field(default_factory=dict)


def cpu_pct(dom: Dom, sample: TopSample, previous: TopSample | None) -> float:
    """CPU(%) over the interval since the previous sample; 0.0 on the first one."""
    if previous is None:
        return 0.0
    before = next((d for d in previous.domains if d["domid"] == dom["domid"]), None)
    if before is None:
        return 0.0
    us_elapsed = (sample.taken - previous.taken) * 1e6
    if us_elapsed <= 0:
        return 0.0
    delta = int(dom.get("cpu_time_ns") or 0) - int(before.get("cpu_time_ns") or 0)
    return (delta / 10.0) / us_elapsed


def top_summary(sample: TopSample) -> list[str]:
    counts = dict.fromkeys(("run", "block", "pause", "shutdown", "crash", "dying"), 0)
    for dom in sample.domains:
        # one state per domain, in xentop's order of precedence
        if dom.get("running"):
            counts["run"] += 1
        elif dom.get("blocked"):
            counts["block"] += 1
        elif dom.get("paused"):
            counts["pause"] += 1
        elif top_shutdown(dom):
            counts["shutdown"] += 1
        elif is_crashed(dom):
            counts["crash"] += 1
        elif dom.get("dying"):
            counts["dying"] += 1
    clock = time.strftime("%H:%M:%S", time.localtime(sample.wall))
    used = sample.total_kb - sample.free_kb
    return [
        f"xentop - {clock}   Xen {sample.xen_version}",
        f"{len(sample.domains)} domains: {counts['run']} running, {counts['block']} blocked,"
        f" {counts['pause']} paused, {counts['crash']} crashed, {counts['dying']} dying,"
        f" {counts['shutdown']} shutdown ",
        f"Mem: {sample.total_kb}k total, {used}k used, {sample.free_kb}k free    "
        f"CPUs: {sample.nr_cpus} @ {sample.cpu_mhz}MHz",
    ]


def _int(dom: Dom, key: str) -> int:
    return int(dom.get(key) or 0)


def top_table(sample: TopSample, previous: TopSample | None = None, *,
              full_name: bool = False, repeat_header: bool = False, show_vcpus: bool = False,
              show_networks: bool = False, show_vbds: bool = False,
              sort_key: int = 0) -> list[str]:
    """The domain table: the header, then a row per domain (sorted as xentop sorts, by
    default by name, case-insensitively), each followed by its optional detail lines."""
    fields = top_fields()
    domains = sorted(sample.domains, key=lambda d: _sort_value(d, sort_key, sample, previous))
    for dom in domains:
        if full_name:
            fields[0].width = max(fields[0].width, len(str(dom.get("name", ""))))
        for index, key, scale in ((10, "net_tx_bytes", 1024), (11, "net_rx_bytes", 1024),
                                  (14, "vbd_rd", 1), (15, "vbd_wr", 1), (16, "vbd_rsect", 1),
                                  (17, "vbd_wsect", 1)):
            fields[index].width = max(fields[index].width, _digits(_int(dom, key) // scale + 1))
    header = " ".join(f"{f.header:>{f.width}}" for f in fields)
    total_kb = sample.total_kb or 1
    lines = []
    for i, dom in enumerate(domains):
        if i == 0 or repeat_header:
            lines.append(header)
        name = str(dom.get("name", ""))
        max_kb = max_mem_kb(dom)
        cells = [
            f"{name:>{fields[0].width}}" if full_name else f"{name[:10]:>10}",
            top_state(dom),
            f"{_int(dom, 'cpu_time_ns') // 1_000_000_000:10d}",
            f"{cpu_pct(dom, sample, previous):6.1f}",
            f"{_int(dom, 'mem_kb'):10d}",
            f"{_int(dom, 'mem_kb') / total_kb * 100:6.1f}",
            f"{'no limit':>10}" if max_kb is None else f"{int(max_kb):10d}",
            f"{'n/a':>9}" if max_kb is None else f"{int(max_kb) / total_kb * 100:9.1f}",
            f"{_int(dom, 'vcpus'):5d}",
            f"{_int(dom, 'nets'):4d}",
            f"{_int(dom, 'net_tx_bytes') // 1024:{fields[10].width}d}",
            f"{_int(dom, 'net_rx_bytes') // 1024:{fields[11].width}d}",
            f"{_int(dom, 'vbds'):4d}",
            f"{_int(dom, 'vbd_oo'):8d}",
            f"{_int(dom, 'vbd_rd'):{fields[14].width}d}",
            f"{_int(dom, 'vbd_wr'):{fields[15].width}d}",
            f"{_int(dom, 'vbd_rsect'):{fields[16].width}d}",
            f"{_int(dom, 'vbd_wsect'):{fields[17].width}d}",
            f"{_int(dom, 'ssidref'):4d}",
        ]
        lines.append(" ".join(cells))
        if show_vcpus:
            lines.extend(top_vcpu_lines(sample.vcpus.get(int(dom["domid"]), [])))
        # show_networks / show_vbds: xentop adds a line per vif / vbd; pyxen domains have
        # none yet, so -n and -x add nothing.
    return lines


def top_vcpu_lines(vcpus: Sequence[Dom]) -> list[str]:
    text = "VCPUs(sec): "
    for i, v in enumerate(vcpus):
        if v.get("online"):
            if i != 0 and i % 5 == 0:
                text += "\n        "
            text += f" {i:2d}: {_int(v, 'time_ns') // 1_000_000_000:10d}s"
    return text.split("\n")


# The sort keys interactive `s` cycles through, in xentop's column order (0 = name).
def _sort_value(dom: Dom, key: int, sample: TopSample, previous: TopSample | None):
    if key == 0:
        return (str(dom.get("name", "")).lower(),)
    if key == 1:
        return (top_state(dom),)
    values = {
        2: -_int(dom, "cpu_time_ns"), 3: -cpu_pct(dom, sample, previous),
        4: -_int(dom, "mem_kb"), 5: -_int(dom, "mem_kb"),
        6: -(max_mem_kb(dom) if max_mem_kb(dom) is not None else 1 << 62),
        7: -(max_mem_kb(dom) if max_mem_kb(dom) is not None else 1 << 62),
        8: -_int(dom, "vcpus"), 9: -_int(dom, "nets"), 10: -_int(dom, "net_tx_bytes"),
        11: -_int(dom, "net_rx_bytes"), 12: -_int(dom, "vbds"), 13: -_int(dom, "vbd_oo"),
        14: -_int(dom, "vbd_rd"), 15: -_int(dom, "vbd_wr"), 16: -_int(dom, "vbd_rsect"),
        17: -_int(dom, "vbd_wsect"), 18: _int(dom, "ssidref"),
    }
    return (values.get(key, 0),)


TOP_SORT_FIELDS = 19


# --- xl sched-credit / sched-credit2 (xl_sched.c) -----------------------------------------------

SCHED_HEADER = f"{'Name':<33} {'ID':>4} {'Weight':>6} {'Cap':>4}"


def sched_pool_line(sched: str, pool: str, params: Mapping[str, Any] | None) -> str:
    """The `Cpupool NAME: ...` line of a pool's scheduler-wide parameters."""
    if not params:
        return f"Cpupool {pool}: [sched params unavailable]"
    if sched == "credit":
        return (f"Cpupool {pool}: tslice={int(params['tslice_ms'])}ms"
                f" ratelimit={int(params['ratelimit_us'])}us")
    return f"Cpupool {pool}: ratelimit={int(params['ratelimit_us'])}us"


def sched_domain_row(d: Dom) -> str:
    return (f"{d.get('name', '')!s:<33} {int(d['domid']):4d} {int(d['weight']):6d}"
            f" {int(d['cap']):4d}")


def format_sched_list(sched: str, pools: Sequence[Dom]) -> str:
    """Every pool using the scheduler: its parameters line, the header, its domains."""
    lines: list[str] = []
    for pool in pools:
        lines.append(sched_pool_line(sched, str(pool["pool"]), pool.get("params")))
        lines.append(SCHED_HEADER)
        lines += [sched_domain_row(d) for d in pool.get("domains") or []]
    return "".join(line + "\n" for line in lines)


# --- xl cpupool-list (xl_cpupool.c) ------------------------------------------------------------

CPUPOOL_LIST_HEADER = f"{'Name':<19}CPUs   Sched     Active   Domain count"
CPUPOOL_CPUS_HEADER = f"{'Name':<19}CPU list"


def format_cpupool_list(pools: Sequence[Dom], cpus: bool = False) -> str:
    lines = [CPUPOOL_CPUS_HEADER if cpus else CPUPOOL_LIST_HEADER]
    for pool in pools:
        row = f"{pool['name']!s:<19}"
        members = [int(c) for c in pool.get("cpus") or []]
        if cpus:
            row += ",".join(str(c) for c in members)
        else:
            row += f"{len(members):3d} {pool['sched']!s:>9}       y       {int(pool['n_dom']):4d}"
        lines.append(row)
    return "".join(line + "\n" for line in lines)
