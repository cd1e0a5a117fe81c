"""The host daemon's control socket: how the CLI (and scripts) drive a pyxen host.

Wire format: one JSON object per line. A request is
``{"op": "<name>", "args": {...}}``; the reply is ``{"ok": true, "result": ...}``
or ``{"ok": false, "error": "<one line for the user>"}``. Streaming ops
(``console``) reply ``{"ok": true, "stream": true}`` and the connection then
carries raw bytes both ways until either side closes it.

Operations (args → result; domains are named by id, see ``resolve``):

- ``resolve`` {dom: str}: a domain name or id → int domid (error if none)
- ``create`` {config_path, config_text, overrides: [str], paused: bool,
  dry_run: bool} → {domid, name} (dry_run: {config: {...}}, nothing built)
- ``list`` {} → [domain dicts]: domid, name, uuid, mem_kb, max_mem_kb,
  vcpus (max), online_vcpus, cpu_time_ns, state flags running, blocked,
  paused, shutdown, crashed, dying, shutdown_reason (int or null), ssidref,
  cpupool, uptime_s; Domain-0 first
- ``destroy`` / ``pause`` / ``unpause`` {domid} → null
- ``shutdown`` {domid, reboot: bool, wait: bool} → null (through xenstore
  control/shutdown, as xl does; wait: until the domain is gone)
- ``rename`` {domid, name} → null
- ``info`` {} → {key: value} in xl info's key order
- ``dmesg`` {clear: bool} → str
- ``list`` rows also carry ``cpupool_name`` (from xenstore /local/pool/N/name)
- ``vcpu_list`` {domid: int | null} → [vcpu dicts]: name, domid, vcpu, cpu,
  online, running, blocked, time_ns, cpupool, hard_affinity, soft_affinity
  (xl's cpu-list strings: "all" for every pCPU, else ranges like "0-1,3")
- ``sched_list`` {sched: "credit" | "credit2", pool: str | null} → [{poolid,
  pool, params (or null), domains: [{name, domid, weight, cap}]}] for each pool
  using that scheduler (a named pool must use it)
- ``sched_domain`` {domid, sched, weight: int | null, cap: int | null} →
  {name, domid, weight, cap}; sets the ones given (libxl's checks, the other
  value sent back unchanged)
- ``sched_params`` {sched, pool: str | null (Pool-0), tslice_ms, ratelimit_us}
  → {poolid, pool, ratelimit_us[, tslice_ms]}; sets the ones given
- ``vcpu_pin`` {domid, vcpu: int | null (all), hard: str | null, soft: str |
  null} → {warnings: [str]}; cpu lists as xl takes them, "-" = unchanged
- ``cpupool_list`` {} → [{poolid, name, sched, n_dom, cpus: [int]}]
- ``cpupool_create`` {name, sched: str | null (the host's), cpus: [str] | str
  | null, nodes: [str] | null, dry_run} → {poolid (null on a dry run), name,
  sched, cpus}
- ``cpupool_destroy`` {pool} / ``cpupool_rename`` {pool, name} /
  ``cpupool_cpu_add`` {pool, cpus: str} / ``cpupool_cpu_remove`` {pool, cpus}
  / ``cpupool_migrate`` {domid, pool} → null (pool: a name or an id)
- ``set_parameters`` {params: str} → null (runtime parameters only)
- ``console`` {domid, hypervisor: bool} → stream
- ``trace_record`` {path, seconds (default 1), event_mask: int | hex str | null
  (all), progress: bool} → {path, seconds, event_mask, records, bytes, lost,
  chunks, per_cpu: {cpu: records}}: records the hypervisor's trace buffers into
  the xentrace file `path` (written by the daemon) as xentrace does. With
  progress=true it is a streaming op: after the stream reply come JSON lines
  ``{"progress": {elapsed, records, bytes, lost, ...}}`` about every second,
  then one last line, the usual reply; closing the connection stops early
- ``stop`` {} → null (the daemon exits)
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

ENV_SOCKET = "PYXEN_CONTROL"


def default_socket_path() -> str:
    """$PYXEN_CONTROL, else /run/pyxen/control.sock for root, else the user's runtime dir."""
    if os.environ.get(ENV_SOCKET):
        return os.environ[ENV_SOCKET]
    if os.geteuid() == 0:
        return "/run/pyxen/control.sock"
    base = os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/pyxen-{os.getuid()}"
    return str(Path(base) / "pyxen" / "control.sock")


class ControlError(Exception):
    """The daemon refused a request, or there is no daemon: one line for the user."""


def encode(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


class ControlClient:
    def __init__(self, path: str | None = None, *, timeout: float | None = 60.0):
        self.path = path or default_socket_path()
        self.timeout = timeout

    def _connect(self) -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(self.path)
        except (FileNotFoundError, ConnectionRefusedError):
            s.close()
            raise ControlError(f"no pyxen host is running (no daemon at {self.path}); "
                               "start one with `pyxen-host`") from None
        except OSError as e:
            s.close()
            raise ControlError(f"cannot reach the pyxen host at {self.path}: "
                               f"{e.strerror or e}") from None
        return s

    # What a refusal by the daemon ({"ok": false}) raises; subclasses may narrow it.
    Refused: type[ControlError] = ControlError

    @staticmethod
    def _read_reply(s: socket.socket, *, exact: bool = False) -> dict:
        """Read and parse one reply line. `exact`: byte by byte, so that nothing after
        the line (a stream's raw bytes) is consumed."""
        step = 1 if exact else 65536
        buf = bytearray()
        while not buf.endswith(b"\n"):
            try:
                chunk = s.recv(step)
            except TimeoutError:
                raise ControlError("the pyxen host did not answer in time") from None
            if not chunk:
                raise ControlError("the pyxen host closed the connection")
            buf += chunk
        try:
            reply = json.loads(buf)
        except ValueError:
            raise ControlError("the pyxen host sent a malformed reply") from None
        if not isinstance(reply, dict):
            raise ControlError("the pyxen host sent a malformed reply")
        return reply

    def _accepted(self, reply: dict) -> dict:
        if not reply.get("ok"):
            raise self.Refused(str(reply.get("error") or "request failed"))
        return reply

    def call(self, op: str, **args: Any) -> Any:
        with self._connect() as s:
            s.sendall(encode({"op": op, "args": args}))
            reply = self._read_reply(s)
        return self._accepted(reply).get("result")

    def stream(self, op: str, **args: Any) -> socket.socket:
        """Start a streaming op; returns the connected socket (raw bytes follow)."""
        s = self._connect()
        try:
            s.sendall(encode({"op": op, "args": args}))
            self._accepted(self._read_reply(s, exact=True))
            s.settimeout(None)
            return s
        except BaseException:
            s.close()
            raise
