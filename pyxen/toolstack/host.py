"""The pyxen host daemon: the hypervisor plus Dom0's services, driven over a control socket.

`pyxen-host [XEN BOOT PARAMETERS...]` starts a host: the hypervisor with its
boot parameters in Xen's command-line style, xenstored (on its own Unix
socket, found by clients through XENSTORED_PATH), the console daemon and the
domain manager, and serves the control socket that `pyxl` (and `pyxen boot`)
talk to. Everything the daemon does to guests goes through the hypercall
interface (privcmd), like xl and libxl do.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import socketserver
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import click

from .. import __version__
from ..abi.constants import ShutdownReason
from .control import ControlClient, ControlError, default_socket_path, encode
from .cpupools import SchedControl, SchedCtlError, cpumap_text
from .domains import DomainError, DomainManager
from .privcmd import Privcmd, XenError
from .xenctrl import XenCtrl

XS_ENV = "XENSTORED_PATH"
MAX_TRACE_SECONDS = 24 * 3600
XL_INFO_KEYS = (
    "host", "release", "version", "machine", "nr_cpus", "max_cpu_id", "nr_nodes",
    "cores_per_socket", "threads_per_core", "cpu_mhz", "hw_caps", "virt_caps",
    "total_memory", "free_memory", "sharing_freed_memory", "sharing_used_memory",
    "outstanding_claims", "free_cpus", "xen_major", "xen_minor", "xen_extra",
    "xen_version", "xen_caps", "xen_scheduler", "xen_pagesize", "platform_params",
    "xen_changeset", "xen_commandline", "cc_compiler", "cc_compile_by",
    "cc_compile_domain", "cc_compile_date", "build_id", "xend_config_format",
)


def default_xenstored_path(control_path: str) -> str:
    if os.environ.get(XS_ENV):
        return os.environ[XS_ENV]
    return str(Path(control_path).parent / "xenstored.sock")


def _daemon_log(message: str, _level: int = 1) -> None:
    print(f"pyxen-host: {message}", file=sys.stderr, flush=True)


class HostError(Exception):
    """The host cannot start: one line for the user."""


class HostDaemon:
    def __init__(self, xen_cmdline: str = "", *, control_path: str | None = None,
                 xenstored_path: str | None = None, log_dir: str | None = None,
                 dump_dir: str | None = None, log=None):
        from ..dom0.consoled import ConsoleService
        from ..dom0.xenstored.service import XenstoreService
        from ..hypervisor.hypervisor import Hypervisor

        self.control_path = control_path or default_socket_path()
        self.xenstored_path = xenstored_path or default_xenstored_path(self.control_path)
        self._log = log or _daemon_log
        _claim_socket(self.control_path, "a pyxen host")
        _claim_socket(self.xenstored_path, "a xenstored")
        self.started = time.time()
        self.hv = Hypervisor(xen_cmdline)
        self.privcmd = Privcmd(self.hv)
        self.xc = XenCtrl(self.privcmd)
        self.xenstored = XenstoreService(self.privcmd, self.xenstored_path, log=self._log)
        self.xenstored.start()
        self.consoles = ConsoleService(self.privcmd, log_dir=log_dir, log=self._log)
        self.consoles.start()
        self.domains = DomainManager(self.privcmd, self.xenstored.local_client(),
                                     self.consoles, watch_xs=self.xenstored.local_client(),
                                     log=self._log,
                                     **({"dump_dir": dump_dir} if dump_dir else {}))
        self.sched = SchedControl(self.xc, self.xenstored.local_client(), self.domains.name_of)
        self.sched.publish_pool0()
        self._server = _ControlServer(self.control_path, self)
        self._trace_lock = threading.Lock()     # one trace recording at a time
        self._stopped = threading.Event()
        self._serve_thread: threading.Thread | None = None

    # -- life cycle -------------------------------------------------------------------
    def serve_in_background(self) -> None:
        self._serve_thread = threading.Thread(target=self._server.serve_forever,
                                              kwargs={"poll_interval": 0.1},
                                              name="control", daemon=True)
        self._serve_thread.start()

    def serve_forever(self) -> None:
        self.serve_in_background()
        self._stopped.wait()

    def request_stop(self) -> None:
        self._stopped.set()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        for path in (self.control_path,):
            try:
                os.unlink(path)
            except OSError:
                pass
        self.domains.close()
        for domid in list(self.domains.records):
            try:
                self.domains.destroy(domid)
            except DomainError:
                pass
        self.consoles.stop()
        self.xenstored.stop()
        self.hv.shutdown_host()
        self._stopped.set()

    # -- the operations of the control protocol (see control.py) ---------------------------
    def op_resolve(self, dom: str) -> int:
        return self.domains.resolve(dom)

    def op_create(self, config_path: str, config_text: str | None = None,
                  overrides: list[str] | None = None, paused: bool = False,
                  dry_run: bool = False) -> Any:
        from .runner import RunError, validate_for_boot
        from .xlcfg import XlConfigError, build_domain_config, load_config, parse_config
        try:
            if config_text is not None:
                cfg = parse_config(config_text, config_path, list(overrides or []))
            else:
                cfg = load_config(config_path, list(overrides or []))
            dc = build_domain_config(cfg)
            validate_for_boot(dc)
        except (XlConfigError, RunError) as e:
            raise DomainError(str(e)) from None
        except OSError as e:
            raise DomainError(f"{config_path}: {e.strerror}") from None
        if dry_run:
            return {"config": dc.libxl_json()}
        rec = self.domains.create(dc, os.path.dirname(os.path.abspath(config_path)),
                                  paused=paused)
        return {"domid": rec.domid, "name": rec.name, "warnings": list(dc.warnings)}

    def op_list(self) -> list[dict]:
        out = []
        now = time.time()
        for info in self.xc.domain_getinfo_all():
            rec = self.domains.records.get(info.domid)
            out.append({
                "domid": info.domid,
                "name": self.domains.name_of(info.domid),
                "uuid": rec.uuid if rec else str(_uuid_of(info.handle)),
                "mem_kb": info.tot_pages * 4, "max_mem_kb": info.max_pages * 4,
                "vcpus": info.max_vcpu_id + 1 if info.max_vcpu_id < 0xFFFF_FFFF else 0,
                "online_vcpus": info.nr_online_vcpus, "cpu_time_ns": info.cpu_time_ns,
                # Dom0 is this process: always running, as xl shows Domain-0.
                "running": info.running or info.domid == 0, "blocked": info.blocked,
                "paused": info.paused,
                "shutdown": info.shutdown and info.shutdown_reason != ShutdownReason.crash,
                "crashed": info.shutdown and info.shutdown_reason == ShutdownReason.crash,
                "dying": info.dying,
                "shutdown_reason": info.shutdown_reason if info.shutdown else None,
                "ssidref": 0, "cpupool": info.cpupool,
                "cpupool_name": self.sched.pool_name(info.cpupool),
                "uptime_s": (now - rec.created) if rec else now - self.started,
                **({"config": rec.config.libxl_json()} if rec else {}),
            })
        return out

    def op_destroy(self, domid: int) -> None:
        self.domains.destroy(domid)

    def op_pause(self, domid: int) -> None:
        self.domains.pause(domid)

    def op_unpause(self, domid: int) -> None:
        self.domains.unpause(domid)

    def op_shutdown(self, domid: int, reboot: bool = False, wait: bool = False) -> None:
        self.domains.shutdown(domid, reboot=reboot, wait=wait)

    def op_rename(self, domid: int, name: str) -> None:
        self.domains.rename(domid, name)

    def op_wait(self, name: str, timeout: float | None = None) -> dict:
        """Until the domain called `name` has ended for good (no restart): how it ended."""
        return self.domains.wait_ended(name, timeout)

    def op_info(self) -> dict:
        import platform
        pi = self.xc.physinfo()
        hv = self.hv
        major, minor = self.xc.xen_version()
        mhz = pi.cpu_khz // 1000
        values = {
            "host": platform.node(), "release": platform.release(),
            "version": platform.version(), "machine": platform.machine(),
            "nr_cpus": pi.nr_cpus, "max_cpu_id": pi.max_cpu_id, "nr_nodes": pi.nr_nodes,
            "cores_per_socket": pi.cores_per_socket, "threads_per_core": pi.threads_per_core,
            "cpu_mhz": f"{mhz}.{pi.cpu_khz % 1000:03d}",
            "hw_caps": ":".join("00000000" for _ in range(8)),
            "virt_caps": "hvm hap", "total_memory": pi.total_pages * 4096 >> 20,
            "free_memory": pi.free_pages * 4096 >> 20, "sharing_freed_memory": 0,
            "sharing_used_memory": 0, "outstanding_claims": 0,
            "free_cpus": len(self.xc.cpupool_freeinfo()),
            "xen_major": major, "xen_minor": minor, "xen_extra": hv.version_extra,
            "xen_version": f"{major}.{minor}{hv.version_extra}", "xen_caps": hv.capabilities,
            "xen_scheduler": hv.params.get("sched", "credit"), "xen_pagesize": 4096,
            "platform_params": "virt_start=0x0", "xen_changeset": hv.changeset,
            "xen_commandline": hv.cmdline, "cc_compiler": hv.compiler,
            "cc_compile_by": hv.compile_by, "cc_compile_domain": hv.compile_domain,
            "cc_compile_date": hv.compile_date, "build_id": "", "xend_config_format": 4,
        }
        return {k: values[k] for k in XL_INFO_KEYS}

    def op_dmesg(self, clear: bool = False) -> str:
        data, _ = self.xc.readconsole(clear=clear)
        return data.decode(errors="replace")

    def op_vcpu_list(self, domid: int | None = None) -> list[dict]:
        infos = self.xc.domain_getinfo_all()
        nr_cpus = self.sched.nr_cpus
        out = []
        for info in infos:
            if domid is not None and info.domid != domid:
                continue
            nvcpus = info.max_vcpu_id + 1 if info.max_vcpu_id < 0xFFFF_FFFF else 0
            for v in range(nvcpus):
                try:
                    vi = self.xc.domain_getvcpuinfo(info.domid, v)
                    hard, soft = self.sched.affinity(info.domid, v)
                except XenError:
                    continue              # the domain went away meanwhile
                out.append({"name": self.domains.name_of(info.domid), "domid": info.domid,
                            "vcpu": v, "cpu": vi.cpu, "online": bool(vi.online),
                            "running": bool(vi.running), "blocked": bool(vi.blocked),
                            "time_ns": vi.cpu_time,
                            "hard_affinity": cpumap_text(hard, nr_cpus),
                            "soft_affinity": cpumap_text(soft, nr_cpus),
                            "cpupool": info.cpupool})
        return out

    # -- scheduling and cpupools (cpupools.py) -----------------------------------------------
    def op_sched_list(self, sched: str, pool: str | None = None) -> list[dict]:
        return self.sched.sched_list(sched, pool)

    def op_sched_domain(self, domid: int, sched: str, weight: int | None = None,
                        cap: int | None = None) -> dict:
        return self.sched.sched_domain(domid, sched, weight, cap)

    def op_sched_params(self, sched: str, pool: str | None = None,
                        tslice_ms: int | None = None, ratelimit_us: int | None = None) -> dict:
        return self.sched.sched_params(sched, pool, tslice_ms, ratelimit_us)

    def op_vcpu_pin(self, domid: int, vcpu: int | None, hard: str | None,
                    soft: str | None = None) -> dict:
        return self.sched.vcpu_pin(domid, vcpu, hard, soft)

    def op_cpupool_list(self) -> list[dict]:
        return self.sched.cpupool_list()

    def op_cpupool_create(self, name: str, sched: str | None = None, cpus=None, nodes=None,
                          dry_run: bool = False) -> dict:
        return self.sched.cpupool_create(name, sched, cpus, nodes, dry_run)

    def op_cpupool_destroy(self, pool: str) -> None:
        self.sched.cpupool_destroy(pool)

    def op_cpupool_rename(self, pool: str, name: str) -> None:
        self.sched.cpupool_rename(pool, name)

    def op_cpupool_cpu_add(self, pool: str, cpus: str) -> None:
        self.sched.cpupool_cpu_add(pool, cpus)

    def op_cpupool_cpu_remove(self, pool: str, cpus: str) -> None:
        self.sched.cpupool_cpu_remove(pool, cpus)

    def op_cpupool_migrate(self, domid: int, pool: str) -> None:
        self.sched.cpupool_migrate(domid, pool)

    def op_set_parameters(self, params: str) -> None:
        try:
            self.xc.set_parameters(params)
        except XenError as e:
            # The hypervisor answers EINVAL and logs why; say why here too, with the
            # same (pure) parameter rules it applies.
            from ..hypervisor.params import ParamError, parse_runtime_assignments
            try:
                parse_runtime_assignments(params)
                reason = f"invalid parameters ({e.strerror})"
            except ParamError as pe:
                reason = str(pe)
            raise DomainError(reason) from None

    def op_trace_record(self, path: str, seconds: float = 1.0, event_mask=None,
                        progress: bool = False) -> dict:
        """Record the host's trace buffers into `path` for `seconds` (xentrace's job;
        with progress=true the handler streams progress lines, see control.py)."""
        return self.trace_record(path, seconds, event_mask)

    def trace_record(self, path: str, seconds: float = 1.0, event_mask=None, *,
                     progress=None, stop: threading.Event | None = None) -> dict:
        from ..hypervisor.sched.trace import TRC_ALL
        from .xentrace_record import TraceRecorder
        try:
            seconds = float(seconds)
        except (TypeError, ValueError):
            raise DomainError(f"trace_record: seconds must be a number, not {seconds!r}") \
                from None
        if not 0 < seconds <= MAX_TRACE_SECONDS:
            raise DomainError(f"trace_record: seconds must be in (0, {MAX_TRACE_SECONDS}]")
        mask = TRC_ALL
        if event_mask is not None:
            try:
                mask = int(event_mask, 16) if isinstance(event_mask, str) else int(event_mask)
            except (TypeError, ValueError):
                raise DomainError(f"trace_record: bad event mask {event_mask!r}") from None
            if not 0 < mask <= 0xFFFF_FFFF:
                raise DomainError(f"trace_record: event mask {mask:#x} is not a u32 "
                                  "with a bit set")
        if not isinstance(path, str) or not path:
            raise DomainError("trace_record: a file path is needed")
        if not self._trace_lock.acquire(blocking=False):
            raise DomainError("a trace is being recorded already")
        try:
            try:
                out = open(path, "wb")  # noqa: SIM115 - closed below
            except OSError as e:
                raise DomainError(f"{path}: {e.strerror or e}") from None
            t0 = time.monotonic()
            with out:
                rec = TraceRecorder(self.xc, self.privcmd, out, event_mask=mask)
                stats = rec.record(seconds, stop=stop, progress=progress,
                                   progress_every=min(1.0, max(0.1, seconds / 5)))
            return {"path": path, "seconds": round(time.monotonic() - t0, 3),
                    "event_mask": mask, **stats.as_dict()}
        except OSError as e:
            if isinstance(e, XenError):
                raise
            raise DomainError(f"{path}: {e.strerror or e}") from None
        finally:
            self._trace_lock.release()

    # -- deterministic virtual time (clock=virtual): the machine's own clock control ------
    def _vtime(self):
        vd = self.hv.sched.vdriver
        if vd is None:
            raise DomainError("the host does not run in virtual time (boot option clock=virtual)")
        return vd

    def vtime_hold(self) -> None:
        """Stop virtual time (guests created meanwhile start together when it runs)."""
        self._vtime().hold()

    def vtime_run_until(self, t_ns: int, timeout: float | None = None) -> int:
        """Run virtual time to `t_ns` and hold it there; returns the time reached."""
        return self._vtime().run_until(t_ns, timeout)

    def op_stop(self) -> None:
        threading.Timer(0.05, self.request_stop).start()


@contextlib.contextmanager
def one_shot_host(xen_cmdline: str, *, log=None, prefix: str = "pyxen-"):
    """A private host daemon in this process, its sockets in a fresh temporary
    directory, serving in the background; on exit it is closed and the directory
    removed. Entering raises HostError if the host cannot start."""
    tmp = tempfile.mkdtemp(prefix=prefix)
    try:
        host = HostDaemon(xen_cmdline, control_path=os.path.join(tmp, "control.sock"),
                          xenstored_path=os.path.join(tmp, "xenstored.sock"), log=log)
        try:
            host.serve_in_background()
            yield host
        finally:
            host.close()
    finally:
        try:
            os.rmdir(tmp)
        except OSError:
            pass


class _ControlServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, path: str, host: HostDaemon):
        self.host = host
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        super().__init__(path, _ControlHandler)
        os.chmod(path, 0o660)


class _ControlHandler(socketserver.StreamRequestHandler):
    MAX_REQUEST = 1 << 20

    def handle(self) -> None:
        host: HostDaemon = self.server.host
        line = self.rfile.readline(self.MAX_REQUEST + 1)
        if not line:
            return
        try:
            req = json.loads(line)
            if not isinstance(req, dict) or not isinstance(req.get("op"), str):
                raise ValueError
            op, args = req["op"], req.get("args") or {}
            if not isinstance(args, dict):
                raise ValueError
        except ValueError:
            self._reply({"ok": False, "error": "malformed request"})
            return
        if op == "console":
            self._console(host, args)
            return
        if op == "trace_record" and args.get("progress"):
            self._trace_record(host, args)
            return
        fn = getattr(host, f"op_{op}", None)
        if fn is None:
            self._reply({"ok": False, "error": f"unknown operation {op!r}"})
            return
        try:
            result = fn(**args)
        except TypeError as e:
            self._reply({"ok": False, "error": f"bad arguments for {op}: {e}"})
        except (DomainError, ControlError, SchedCtlError, XenError) as e:
            self._reply({"ok": False, "error": str(e)})
        except Exception as e:  # noqa: BLE001 - a bug must not take the daemon down
            host._log(f"internal error in {op}: {type(e).__name__}: {e}")
            self._reply({"ok": False, "error": f"internal error: {type(e).__name__}: {e}"})
        else:
            self._reply({"ok": True, "result": result})

    def _reply(self, obj) -> None:
        try:
            self.wfile.write(encode(obj))
        except OSError:
            pass

    def _trace_record(self, host: HostDaemon, args: dict) -> None:
        """trace_record with progress: a stream of JSON lines, the result last. The
        recording stops early if the client goes away."""
        stop = threading.Event()
        self._reply({"ok": True, "stream": True})

        def progress(elapsed: float, stats) -> None:
            try:
                self.wfile.write(encode({"progress": {"elapsed": round(elapsed, 3),
                                                      **stats.as_dict()}}))
                self.wfile.flush()
            except OSError:
                stop.set()

        args = {k: v for k, v in args.items() if k != "progress"}
        try:
            result = host.trace_record(**args, progress=progress, stop=stop)
        except TypeError as e:
            self._reply({"ok": False, "error": f"bad arguments for trace_record: {e}"})
        except (DomainError, XenError) as e:
            self._reply({"ok": False, "error": str(e)})
        except Exception as e:  # noqa: BLE001 - a bug must not take the daemon down
            host._log(f"internal error in trace_record: {type(e).__name__}: {e}")
            self._reply({"ok": False, "error": f"internal error: {type(e).__name__}: {e}"})
        else:
            self._reply({"ok": True, "result": result})

    def _console(self, host: HostDaemon, args: dict) -> None:
        try:
            if args.get("hypervisor") or args.get("domid") == 0:
                att = host.consoles.attach_hypervisor()
            else:
                domid = int(args["domid"])
                host.domains.record(domid)
                att = host.consoles.attach(domid)
        except (DomainError, KeyError, ValueError, RuntimeError) as e:
            self._reply({"ok": False, "error": str(e) or "cannot attach the console"})
            return
        self._reply({"ok": True, "stream": True})
        _splice(self.connection, att)


def _splice(conn: socket.socket, att) -> None:
    """Copy console output to the client, and (on another thread, so that a guest not
    reading its input never stalls its output) the client's keystrokes to the guest."""
    done = threading.Event()

    def keystrokes() -> None:
        try:
            while not done.is_set():
                chunk = conn.recv(4096)
                if not chunk:
                    break
                att.write(chunk)
        except (OSError, RuntimeError):      # closed, or a read-only console
            pass
        finally:
            done.set()

    threading.Thread(target=keystrokes, name="console-input", daemon=True).start()
    try:
        while not done.is_set():
            data = att.read(0.1)
            if data is None:          # the console went away (domain destroyed)
                break
            if data:
                conn.sendall(data)
    except OSError:
        pass
    finally:
        done.set()
        att.close()
        try:
            conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _claim_socket(path: str, what: str) -> None:
    """Refuse to start over a live socket; remove a stale one."""
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        return
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError:
        os.unlink(path)               # nobody listens: a leftover from a dead daemon
        return
    finally:
        s.close()
    raise HostError(f"{what} is already running at {path}")


def _uuid_of(handle: bytes):
    import uuid
    return uuid.UUID(bytes=bytes(handle))


# -- the `pyxen-host` command ------------------------------------------------------------------
@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pyxen-host")
@click.argument("xen_params", nargs=-1)
@click.option("--control", "control_path", default=None, metavar="PATH",
              help="Control socket (default: $PYXEN_CONTROL or /run/pyxen/control.sock).")
@click.option("--xenstored", "xenstored_path", default=None, metavar="PATH",
              help="xenstored's socket (default: $XENSTORED_PATH or next to the control "
                   "socket).")
@click.option("--log-dir", default=None, metavar="DIR",
              help="Write guest console logs to DIR/guest-NAME.log (xenconsoled --log=guest).")
def main(xen_params: tuple[str, ...], control_path: str | None, xenstored_path: str | None,
         log_dir: str | None) -> None:
    """Start a pyxen host with XEN_PARAMS as the hypervisor's boot parameters
    (Xen style, e.g. `loglvl=all guest_loglvl=info sched=credit2`), and serve it
    until `pyxl` asks it to stop or it is interrupted."""
    try:
        host = HostDaemon(" ".join(xen_params), control_path=control_path,
                          xenstored_path=xenstored_path, log_dir=log_dir)
    except HostError as e:
        click.echo(f"pyxen-host: error: {e}", err=True)
        sys.exit(1)
    click.echo(f"pyxen-host: serving {host.control_path} (xenstored at "
               f"{host.xenstored_path})", err=True)
    try:
        host.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        host.close()


def run() -> None:
    from .cli import guarded
    guarded(main, "pyxen-host")


__all__ = ["HostDaemon", "HostError", "ControlClient", "main", "run"]


if __name__ == "__main__":
    run()
