"""Hypervisor boot parameters, in Xen's command-line syntax.

`loglvl=all guest_loglvl=info/warning mem=2G vcpu_mmu=software` — words
separated by spaces, each `name=value`, `name` (boolean true) or `no-name`
(boolean false). Unknown names and bad values are reported in the log and
ignored, as Xen does. Parameters declared `runtime` can also be changed while
running (XEN_SYSCTL_set_parameter, `xl set-parameters`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .log import LogParameterError, parse_loglvl

if TYPE_CHECKING:
    from .hypervisor import Hypervisor


class ParamError(ValueError):
    pass


def parse_size(text: str) -> int:
    """Xen size syntax: a number with an optional K/M/G/T suffix (default: bytes)."""
    m = re.fullmatch(r"(0x[0-9a-fA-F]+|\d+)([kKmMgGtTbB]?)", text)
    if not m:
        raise ParamError(f"invalid size {text!r}")
    n = int(m.group(1), 0)
    shift = {"": 0, "b": 0, "k": 10, "m": 20, "g": 30, "t": 40}[m.group(2).lower()]
    return n << shift


MIN_MACHINE_MEMORY = 1 << 20
MAX_MACHINE_MEMORY = 1 << 40


def parse_machine_memory(text: str) -> int:
    """mem=: the machine memory pyxen reserves for domains (rounded down to 4 KiB)."""
    size = parse_size(text) & ~0xFFF
    if not MIN_MACHINE_MEMORY <= size <= MAX_MACHINE_MEMORY:
        raise ParamError(f"must be between 1M and 1T, got {text!r}")
    return size


def parse_bool(text: str) -> bool:
    t = text.lower()
    if t in ("1", "yes", "true", "on", "enable"):
        return True
    if t in ("0", "no", "false", "off", "disable"):
        return False
    raise ParamError(f"invalid boolean {text!r}")


def _parse_loglvl(text: str) -> str:
    try:
        parse_loglvl(text)
    except LogParameterError as e:
        raise ParamError(str(e)) from None
    return text


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise ParamError(f"expected one of {', '.join(choices)}")
        return text
    return parse


def _uint(text: str) -> int:
    try:
        v = int(text, 0)
    except ValueError:
        raise ParamError(f"invalid number {text!r}") from None
    if v < 0:
        raise ParamError("must not be negative")
    return v


@dataclass(frozen=True)
class Param:
    name: str
    parse: Callable[[str], Any]
    default: Any
    runtime: bool
    help: str
    apply: Callable[[Hypervisor, Any], None] | None = None


def _apply_log(attr: str) -> Callable[[Hypervisor, Any], None]:
    def apply(hv: Hypervisor, value: Any) -> None:
        getattr(hv.log, attr)(value)
    return apply


PARAMS: dict[str, Param] = {p.name: p for p in [
    Param("loglvl", _parse_loglvl, "warning", True,
          "hypervisor messages kept: level[/rate-limited level]", _apply_log("set_loglvl")),
    Param("guest_loglvl", _parse_loglvl, "none/warning", True,
          "guest-caused messages kept: level[/rate-limited level]",
          _apply_log("set_guest_loglvl")),
    Param("console_timestamps", _choice("none", "date", "datems", "boot"), "none", True,
          "timestamp prefix of console lines", _apply_log("set_timestamps")),
    Param("conswitch", str, "a", True, "console input switch character"),
    Param("conring_size", parse_size, 16384, False, "size of the hypervisor console ring"),
    Param("gnttab_max_frames", _uint, 64, True, "default grant-table frames per domain"),
    Param("gnttab_max_maptrack_frames", _uint, 1024, True,
          "default maptrack frames per domain"),
    Param("sched", _choice("credit", "credit2", "null", "rtds", "arinc653"), "credit", False,
          "scheduler of Pool-0"),
    Param("nr_cpus", _uint, os.cpu_count() or 1, False,
          "pCPUs of the host (pyxen: host threads running vCPUs; more than the "
          "machine's cores is allowed)"),
    Param("sched_ratelimit_us", _uint, 1000, False,
          "minimum time a vCPU runs before it can be preempted (0: none)"),
    Param("sched_credit_tslice_ms", _uint, 30, False, "credit: time slice"),
    Param("credit2_runqueue", _choice("cpu", "core", "socket", "node", "all"), "socket",
          False, "credit2: which pCPUs share a runqueue"),
    Param("credit2_cap_period_ms", _uint, 10, False, "credit2: cap budget period"),
    Param("sched_credit2_migrate_resist", _uint, 500, False,
          "credit2: µs of credit a vCPU needs over another to migrate"),
    Param("dom0_mem", str, "", False, "memory of Dom0 (the host process has none to give)"),
    Param("mem", parse_machine_memory, 4 << 30, False, "machine memory available to domains"),
    Param("engine_spares", _uint, 1, False,
          "pyxen: CPU engines kept initialised ahead of domain creation"),
    Param("clock", _choice("wall", "virtual"), "wall", False,
          "pyxen: system time from the host's clock, or deterministic virtual time "
          "(1 ns per byte of guest code run; one thread steps every pCPU in turn)"),
    Param("vtime_quantum_us", _uint, 100, False,
          "pyxen, clock=virtual: virtual µs each pCPU runs per round (timers fire "
          "and other pCPUs' tickles are seen at round ends)"),
    Param("vcpu_mmu", _choice("auto", "software", "engine"), "auto", False,
          "pyxen: who walks guest page tables (software TLB, the engine's walker, or "
          "the engine's unless the p2m needs per-page control)"),
]}


def parse_cmdline(text: str) -> tuple[dict[str, Any], list[str]]:
    """Parse a command line into {name: value} plus warning lines for bad words."""
    values: dict[str, Any] = {}
    warnings: list[str] = []
    for word in text.split():
        name, eq, raw = word.partition("=")
        if not eq:
            raw = "1"
            if name.startswith("no-") and name[3:] in PARAMS:
                name, raw = name[3:], "0"
        p = PARAMS.get(name)
        if p is None:
            warnings.append(f'parameter "{name}" unknown!')
            continue
        try:
            values[name] = p.parse(raw)
        except ParamError as e:
            warnings.append(f'parameter "{name}" has invalid value "{raw}": {e}')
    return values, warnings


def parse_runtime_assignments(text: str) -> list[tuple[Param, Any]]:
    """Validate `k=v k2=v2` for run-time change; raises ParamError on the first problem."""
    out = []
    for word in text.split():
        name, eq, raw = word.partition("=")
        p = PARAMS.get(name)
        if p is None:
            raise ParamError(f'parameter "{name}" unknown')
        if not p.runtime:
            raise ParamError(f'parameter "{name}" cannot be changed at run time')
        if not eq:
            raise ParamError(f'parameter "{name}" needs a value')
        try:
            out.append((p, p.parse(raw)))
        except ParamError as e:
            raise ParamError(f'parameter "{name}": {e}') from None
    return out
