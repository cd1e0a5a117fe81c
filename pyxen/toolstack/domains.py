"""The host's domain manager: what libxl does for xl, through hypercalls and xenstore.

Creating a domain: parse and check its configuration, build it (builder.py),
write the standard xenstore layout for it (the paths and permissions libxl
writes), introduce its xenstore ring to xenstored and its console ring to the
console daemon, and unpause it. Afterwards the manager watches VIRQ_DOM_EXC:
when a domain shuts down it applies the configuration's on_poweroff /
on_reboot / on_watchdog / on_crash action (destroy, restart, preserve,
rename-restart, coredump-destroy, coredump-restart). Destroying a domain
releases it from xenstored (which fires @releaseDomain), removes its console
and its xenstore subtree, and destroys it in the hypervisor.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from ..abi.constants import Errno, Scheduler, ShutdownReason
from .builder import BuildError, BuildSpec, build_pvh, resolve_path
from .coredump import write_core
from .cpupools import SchedControl, SchedCtlError, pool_id_by_name
from .privcmd import Privcmd, XenError
from .xenctrl import XenCtrl
from .xlcfg import DomainConfig

# The control/shutdown requests xl writes, and what a guest's SCHEDOP_shutdown means.
SHUTDOWN_REQUESTS = ("poweroff", "reboot", "suspend", "halt")
SUPPORTED_ACTIONS = ("destroy", "restart", "preserve", "rename-restart", "coredump-destroy",
                     "coredump-restart")
DUMP_DIR = "/var/lib/xen/dump"
ACTION_WORDS = {"destroy": "destroying", "restart": "restarting", "preserve": "preserving",
                "rename-restart": "renaming and restarting",
                "coredump-destroy": "dumping core and destroying",
                "coredump-restart": "dumping core and restarting"}
# Levels of the manager's log lines: a one-shot host shows NOTICE (actions taken on
# the guest's behalf), a daemon shows everything.
INFO, NOTICE = 0, 1


class DomainError(Exception):
    """A request about a domain failed: one line for the user."""


@dataclass
class DomainRecord:
    domid: int
    name: str
    config: DomainConfig
    config_dir: str | None
    uuid: str
    created: float = field(default_factory=time.time)
    handled_shutdown: bool = False
    memory_map: list = field(default_factory=list)     # (addr, size, type) as built


def _action_of(dc: DomainConfig, reason: int) -> str:
    return {
        ShutdownReason.poweroff: dc.on_poweroff,
        ShutdownReason.reboot: dc.on_reboot,
        ShutdownReason.crash: dc.on_crash,
        ShutdownReason.watchdog: dc.on_watchdog,
    }.get(reason, "destroy")


class DomainManager:
    def __init__(self, privcmd: Privcmd, xs, consoles=None, *, watch_xs=None,
                 log: Callable[[str], None] | None = None, dump_dir: str = DUMP_DIR):
        self.privcmd = privcmd
        self.xc = XenCtrl(privcmd)
        self.xs = xs                     # a xenstore client connection (Dom0)
        self.consoles = consoles         # the console daemon (may be None)
        self.log = log or (lambda _msg, _level=NOTICE: None)
        self.dump_dir = dump_dir
        self.records: dict[int, DomainRecord] = {}
        # How each name's last domain ended for good: (reason, action), for waiters;
        # names whose shutdown action is being carried out.
        self.ended: dict[str, tuple[int | None, str]] = {}
        self._ending: set[str] = set()
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        # Domains that shut down or die: xenstored's @releaseDomain watch, as libxl
        # learns it (xenstored itself owns Dom0's VIRQ_DOM_EXC).
        self._watch_token = f"pyxen-domains-{id(self):x}"
        self._watches = watch_xs or xs           # its own connection: events queue there
        self._watches.watch("@releaseDomain", self._watch_token)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="domain-manager", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        try:
            self._watches.unwatch("@releaseDomain", self._watch_token)
        except Exception:  # noqa: BLE001 - xenstored may already be gone at shutdown
            pass

    # -- lookups ----------------------------------------------------------------------
    def resolve(self, dom: str | int) -> int:
        """A domain name or id (as xl accepts them) → domid."""
        text = str(dom).strip()
        if text.isdigit():
            domid = int(text)
            if self.xc.domain_getinfo(domid) is not None:
                return domid
            raise DomainError(f"{text}: no such domain")
        if text == "Domain-0":
            return 0
        with self._lock:
            for r in self.records.values():
                if r.name == text:
                    return r.domid
        raise DomainError(f"{text}: no such domain")

    def name_of(self, domid: int) -> str:
        if domid == 0:
            return "Domain-0"
        with self._lock:
            r = self.records.get(domid)
        return r.name if r else "(null)"

    def record(self, domid: int) -> DomainRecord:
        with self._lock:
            r = self.records.get(domid)
        if r is None:
            raise DomainError(f"domain {domid} is not managed by this host")
        return r

    # -- creation ---------------------------------------------------------------------
    def create(self, dc: DomainConfig, config_dir: str | None, *, paused: bool = False,
               name: str | None = None) -> DomainRecord:
        name = name or dc.name
        with self._lock:
            if any(r.name == name for r in self.records.values()):
                raise DomainError(f'domain with name "{name}" already exists')
            self.ended.pop(name, None)
        handle = uuid.UUID(dc.uuid) if dc.uuid else uuid.uuid4()
        poolid = self._pool_of_config(dc)
        spec = BuildSpec(
            name=name, kernel=resolve_path(dc.kernel or "", config_dir),
            memory_mib=dc.memory, maxmem_mib=dc.maxmem, vcpus=dc.vcpus,
            maxvcpus=dc.maxvcpus, cmdline=dc.cmdline or "",
            ramdisk=resolve_path(dc.ramdisk, config_dir) if dc.ramdisk else None,
            handle=handle.bytes,
            on_created=None if poolid is None else lambda d: self._join_pool(d, poolid))
        try:
            built = build_pvh(self.xc, spec)
        except BuildError as e:
            raise DomainError(str(e)) from None
        except XenError as e:
            raise DomainError(f"cannot create the domain: {e}") from None
        domid = built.domid
        rec = DomainRecord(domid, name, dc, config_dir, str(handle),
                           memory_map=list(built.layout.e820))
        with self._lock:
            self.records[domid] = rec
        try:
            self._apply_scheduling(domid, dc)
            self._publish(rec, built)
            self.xs.introduce(domid, built.store_gfn, built.store_port)
            if self.consoles is not None:
                self.consoles.add_domain(domid, name, built.console_gfn, built.console_port)
            if not paused:
                self.xc.domain_unpause(domid)
        except BaseException:
            self._teardown(domid)
            raise
        self.log(f"created domain {domid} ({name})", INFO)
        return rec

    # -- cpupool, affinity and scheduler parameters from xl.cfg ------------------------------
    def _pool_of_config(self, dc: DomainConfig) -> int | None:
        """pool="NAME" (or an id) → the pool's id, checked before anything is built."""
        if dc.pool is None:
            return None
        poolid = pool_id_by_name(self.xc, self.xs, dc.pool)
        if poolid is None and dc.pool.isdigit():
            if any(p.poolid == int(dc.pool) for p in self.xc.cpupool_list()):
                poolid = int(dc.pool)
        if poolid is None:
            raise DomainError(f"Illegal pool specified: {dc.pool}")
        return poolid

    def _join_pool(self, domid: int, poolid: int) -> None:
        if poolid == 0:
            return                       # where every domain starts
        try:
            self.xc.cpupool_movedomain(poolid, domid)
        except XenError as e:
            why = ("the pool has no pCPUs" if e.errno == Errno.ENOENT else os.strerror(e.errno))
            raise BuildError(f"domain move fail: {why}") from None

    def _apply_scheduling(self, domid: int, dc: DomainConfig) -> None:
        """cpus= / cpus_soft= per vCPU, then cpu_weight / cap for the domain's pool's
        scheduler, as libxl does before the domain first runs."""
        ctl = SchedControl(self.xc, self.xs, self.name_of)
        try:
            if dc.cpus is not None or dc.cpus_soft is not None:
                hard = self._affinity_specs(dc.cpus, dc.maxvcpus)
                soft = self._affinity_specs(dc.cpus_soft, dc.maxvcpus)
                for vcpu in range(dc.maxvcpus):
                    h = ctl.cpu_set(hard[vcpu], "cpus") if vcpu < len(hard) else None
                    s = ctl.cpu_set(soft[vcpu], "cpus_soft") if vcpu < len(soft) else None
                    if h is None and s is None:
                        continue
                    for warning in ctl.set_affinity(domid, vcpu, h, s):
                        self.log(f"domain {domid}: {warning}")
            if dc.cpu_weight is not None or dc.cap is not None:
                info = self.xc.domain_getinfo(domid)
                pool = ctl.pool_info(info.cpupool if info is not None else 0)
                sched = {Scheduler.CREDIT: "credit", Scheduler.CREDIT2: "credit2"}.get(
                    pool.sched_id)
                if sched is None:
                    self.log(f"domain {domid}: its cpupool's scheduler has no weight or cap;"
                             " ignoring cpu_weight / cap")
                else:
                    ctl.sched_domain(domid, sched, weight=dc.cpu_weight, cap=dc.cap)
        except SchedCtlError as e:
            raise DomainError(str(e)) from None

    @staticmethod
    def _affinity_specs(raw, maxvcpus: int) -> list[str]:
        """One cpu-list per vCPU: a string is every vCPU's, list item i is vCPU i's (xl
        stops at the first item that is not a string)."""
        if raw is None:
            return []
        if isinstance(raw, str):
            return [raw] * maxvcpus
        specs: list[str] = []
        for item in raw:
            if not isinstance(item, str):
                break
            specs.append(item)
        return specs[:maxvcpus]

    def _publish(self, rec: DomainRecord, built) -> None:
        """The xenstore layout libxl writes for a new domain, with its permissions."""
        domid, dc = rec.domid, rec.config
        dom = f"/local/domain/{domid}"
        vm = f"/vm/{rec.uuid}"
        ro = ["n0", f"r{domid}"]         # owned by Dom0, readable by the guest
        rw = [f"n{domid}"]               # owned by the guest
        xs = self.xs
        for path, perms in ((dom, ro), (vm, ro), (f"{dom}/device", rw), (f"{dom}/control", ro),
                            (f"{dom}/control/shutdown", rw),
                            (f"{dom}/control/feature-poweroff", rw),
                            (f"{dom}/control/feature-reboot", rw),
                            (f"{dom}/control/feature-suspend", rw),
                            (f"{dom}/control/sysrq", rw), (f"{dom}/data", rw),
                            (f"{dom}/drivers", rw), (f"{dom}/feature", rw),
                            (f"{dom}/attr", rw), (f"{dom}/error", rw)):
            xs.write(path, "")
            xs.set_perms(path, perms)
        memkb = dc.memory * 1024
        values = {
            f"{vm}/uuid": rec.uuid, f"{vm}/name": rec.name,
            f"{vm}/start_time": f"{rec.created:.2f}",
            f"{dom}/vm": vm, f"{dom}/name": rec.name, f"{dom}/domid": str(domid),
            f"{dom}/memory/static-max": str(dc.maxmem * 1024),
            f"{dom}/memory/target": str(memkb),
            f"{dom}/store/port": str(built.store_port),
            f"{dom}/store/ring-ref": str(built.store_gfn),
            f"{dom}/console/port": str(built.console_port),
            f"{dom}/console/ring-ref": str(built.console_gfn),
            f"{dom}/console/type": "xenconsoled",
            f"{dom}/console/limit": "1048576",
            f"{dom}/console/output": "pty",
        }
        for i in range(dc.maxvcpus):
            values[f"{dom}/cpu/{i}/availability"] = "online" if i < dc.vcpus else "offline"
        for path, value in values.items():
            xs.write(path, value)
        for sub in ("memory", "store", "console", "cpu"):
            xs.set_perms(f"{dom}/{sub}", ro)

    # -- control ------------------------------------------------------------------------
    def shutdown(self, domid: int, *, reboot: bool = False, wait: bool = False,
                 timeout: float = 60.0) -> None:
        """Ask the guest, through control/shutdown, as xl does."""
        self.record(domid)
        self.xs.write(f"/local/domain/{domid}/control/shutdown",
                      "reboot" if reboot else "poweroff")
        if wait:
            self.wait_gone(domid, timeout)

    def wait_gone(self, domid: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while domid in self.records:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DomainError(f"domain {domid} did not shut down within {timeout:g} s")
                self._changed.wait(min(left, 0.2))

    def wait_ended(self, name: str, timeout: float | None = None) -> dict:
        """Wait until the domain called `name` has ended without being restarted:
        {"reason": shutdown reason or None (destroyed), "action": what was done}."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while name not in self.ended:
                if name not in self._ending and not any(r.name == name
                                                        for r in self.records.values()):
                    raise DomainError(f"{name}: no such domain")
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise DomainError(f"{name}: still running after {timeout:g} s")
                self._changed.wait(0.2 if left is None else min(left, 0.2))
            reason, action = self.ended.pop(name)
        return {"reason": reason, "action": action}

    def pause(self, domid: int) -> None:
        self._xen(self.xc.domain_pause, domid)

    def unpause(self, domid: int) -> None:
        self._xen(self.xc.domain_unpause, domid)

    def rename(self, domid: int, name: str) -> None:
        rec = self.record(domid)
        with self._lock:
            if any(r.name == name and r is not rec for r in self.records.values()):
                raise DomainError(f'domain with name "{name}" already exists')
            rec.name = name
        self.xs.write(f"/local/domain/{domid}/name", name)
        self.xs.write(f"/vm/{rec.uuid}/name", name)
        if self.consoles is not None:
            self.consoles.rename(domid, name)

    def destroy(self, domid: int) -> None:
        if domid == 0:
            raise DomainError("Domain-0 cannot be destroyed")
        if self.xc.domain_getinfo(domid) is None:
            raise DomainError(f"{domid}: no such domain")
        rec = self.records.get(domid)
        self._teardown(domid)
        if rec is not None:
            self._ended(rec, None, "destroyed")

    def _teardown(self, domid: int) -> None:
        with self._lock:
            rec = self.records.get(domid)
        for step in (lambda: self.xs.release(domid),
                     lambda: self.consoles.remove_domain(domid) if self.consoles else None,
                     lambda: self.xs.rm(f"/local/domain/{domid}"),
                     lambda: self.xs.rm(f"/vm/{rec.uuid}") if rec else None,
                     lambda: self.xc.domain_destroy(domid)):
            try:
                step()
            except Exception as e:  # noqa: BLE001 - tear down as much as possible
                self.log(f"domain {domid}: cleanup step failed: {e}")
        # Only now: waiters (xl shutdown -w) see the domain gone once it really is.
        with self._changed:
            self.records.pop(domid, None)
            self._changed.notify_all()
        self.log(f"destroyed domain {domid}", INFO)

    def _xen(self, fn, domid: int) -> None:
        try:
            fn(domid)
        except XenError as e:
            raise DomainError(f"domain {domid}: {e}") from None

    # -- reacting to shutdowns (@releaseDomain) ---------------------------------------------
    def _watch(self) -> None:
        while not self._stop.is_set():
            if self._watches.next_event(0.2) is None:
                continue
            try:
                self.check_domains()
            except Exception as e:  # noqa: BLE001 - the watcher must survive anything
                self.log(f"domain watcher: {e}")

    def check_domains(self) -> None:
        with self._lock:
            recs = list(self.records.values())
        for rec in recs:
            info = self.xc.domain_getinfo(rec.domid)
            if info is None or not info.shutdown:
                continue
            with self._lock:
                if rec.handled_shutdown:
                    continue
                rec.handled_shutdown = True
                self._ending.add(rec.name)
            try:
                self._apply_action(rec, info.shutdown_reason)
            finally:
                with self._changed:
                    self._ending.discard(rec.name)
                    self._changed.notify_all()

    def _apply_action(self, rec: DomainRecord, reason: int) -> None:
        action = _action_of(rec.config, reason)
        try:
            why = ShutdownReason(reason).name
        except ValueError:
            why = str(reason)
        self.log(f"domain {rec.domid} ({rec.name}) shut down ({why}): "
                 f"{ACTION_WORDS.get(action, action)}")
        if action == "preserve":
            self._ended(rec, reason, "preserve")
            return
        if action.startswith("coredump-"):
            path = os.path.join(self.dump_dir, f"{rec.name}.core")
            try:
                write_core(self.privcmd, rec.domid, path,
                           [(addr, size) for addr, size, _type in rec.memory_map])
                self.log(f"domain {rec.domid}: core dumped to {path}")
            except OSError as e:
                self.log(f"domain {rec.domid}: core dump to {path} failed: {e.strerror}")
            action = "destroy" if action == "coredump-destroy" else "restart"
        if action == "rename-restart":
            old = rec.name
            self.rename(rec.domid, f"{old}-{rec.domid}")
            self._restart(rec, old)
            return
        self._teardown(rec.domid)
        if action == "restart":
            self._restart(rec, rec.name)
        else:
            self._ended(rec, reason, action)

    def _restart(self, rec: DomainRecord, name: str) -> None:
        try:
            new = self.create(rec.config, rec.config_dir, name=name)
            self.log(f"domain {name} restarted as {new.domid}")
        except DomainError as e:
            self.log(f"domain {name}: restart failed: {e}")
            self._ended(rec, None, "restart failed")

    def _ended(self, rec: DomainRecord, reason: int | None, action: str) -> None:
        with self._changed:
            self.ended[rec.name] = (reason, action)
            self._changed.notify_all()
