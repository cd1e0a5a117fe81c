"""The hypervisor: machine memory, domains, the console log, hypercall dispatch.

One `Hypervisor` object is one host. The toolstack never holds it directly:
it talks to it through a privcmd handle (toolstack/privcmd.py), i.e. through
hypercalls issued as Dom0.
"""

from __future__ import annotations

import platform
import threading
import time
from collections.abc import Callable
from typing import Any

from .. import __version__
from ..abi.constants import DOMID_FIRST_RESERVED, DOMID_XEN, ShutdownReason, Virq
from ..arch import load_arch
from .domain import Domain
from .hypercall import HypercallTable
from .log import HypervisorLog, Level
from .memory import MachineMemory
from .params import PARAMS, parse_cmdline
from .timer import TimerService


class Hypervisor:
    def __init__(self, cmdline: str = "", *, arch: str = "x86"):
        self.boot_ns = time.monotonic_ns()
        self.wallclock_at_boot = time.time_ns()
        self.cmdline = cmdline
        values, warnings = parse_cmdline(cmdline)
        self.params: dict[str, Any] = {n: p.default for n, p in PARAMS.items()}
        self.params.update(values)
        self.log = HypervisorLog(self.params["loglvl"], self.params["guest_loglvl"],
                                 self.params["console_timestamps"],
                                 ring_size=max(4096, self.params["conring_size"]))
        for w in warnings:
            self.log.warning(w)
        self.machine = MachineMemory(self.params["mem"])
        self.vclock = None
        if self.params["clock"] == "virtual":
            # Deterministic virtual time: system time is guest progress, not the host's
            # clock, and the guests' wallclock starts at a fixed date.
            from .sched.vtime import VIRTUAL_EPOCH_NS, VirtualClock
            self.vclock = VirtualClock()
            self.now = self.vclock.now
            self.wallclock_at_boot = VIRTUAL_EPOCH_NS
        self.timers = TimerService(self, driven=self.vclock is not None)
        # Frames of DOMID_XEN that Dom0 may map (trace buffers): mfn -> writable.
        self._xen_shared: dict[int, bool] = {}
        from .trace_buffers import TraceBuffers
        self.tbuf = TraceBuffers(self)
        from .sched.host import SchedulerHost
        self.sched = SchedulerHost(self)
        # Xen 4.10 defaults HVM_PARAM_TRIPLE_FAULT_REASON to reboot; the issue that
        # specifies pyxen asks for a crashed domain, so that is our default.
        self.triple_fault_reason = ShutdownReason.crash
        self.arch = load_arch(arch)(self)
        self.hypercalls = HypercallTable(self)
        from .ops import register_all
        register_all(self)
        self.domains: dict[int, Domain] = {}
        self._lock = threading.RLock()
        self._next_domid = 1
        self._dom0_virqs: dict[int, list[Callable[[], None]]] = {}
        self.log.add_listener(lambda _text: self.send_dom0_virq(Virq.CON_RING))
        self.dom0 = Domain(self, 0, privileged=True, hvm=False)
        self.domains[0] = self.dom0
        self.log.printk(Level.INFO, f"pyxen {__version__} (Xen 4.10 ABI), "
                                    f"{self.machine.size >> 20} MiB machine memory")
        if cmdline:
            self.log.printk(Level.INFO, f"Command line: {cmdline}")

    def now(self) -> int:
        """Hypervisor system time in ns (Xen's NOW())."""
        return time.monotonic_ns() - self.boot_ns

    # -- domains -----------------------------------------------------------------
    def create_domain(self, domid: int | None = None, *, handle: bytes | None = None,
                      hvm: bool = True, max_vcpus: int = 0) -> Domain:
        with self._lock:
            if domid is None or domid == 0:
                domid = self._allocate_domid()
            elif domid in self.domains or domid >= DOMID_FIRST_RESERVED:
                raise ValueError(f"domain id {domid} unavailable")
            d = Domain(self, domid, handle=handle, hvm=hvm, max_vcpus=max_vcpus)
            d.pause_count = 1    # a new domain waits for the toolstack to unpause it
            self.domains[domid] = d
        self.log.printk(Level.INFO, f"Created domain {domid}")
        return d

    def _allocate_domid(self) -> int:
        for _ in range(DOMID_FIRST_RESERVED):
            domid = self._next_domid
            self._next_domid = domid + 1 if domid + 1 < DOMID_FIRST_RESERVED else 1
            if domid not in self.domains:
                return domid
        raise ValueError("no free domain id")

    def get_domain(self, domid: int) -> Domain | None:
        return self.domains.get(domid)

    def destroy_domain(self, d: Domain) -> None:
        d.destroy()
        with self._lock:
            self.domains.pop(d.domid, None)
        self.log.printk(Level.INFO, f"Destroyed domain {d.domid}")
        self.domain_state_changed(d)

    def domain_state_changed(self, d: Domain) -> None:
        """A domain shut down, crashed or died: VIRQ_DOM_EXC for Dom0."""
        self.send_dom0_virq(Virq.DOM_EXC)

    # -- Dom0's virtual IRQs (Dom0 is the host process: handlers are host callbacks) --
    def bind_dom0_virq(self, virq: int, handler: Callable[[], None]) -> None:
        self._dom0_virqs.setdefault(int(virq), []).append(handler)

    def unbind_dom0_virq(self, virq: int, handler: Callable[[], None]) -> None:
        handlers = self._dom0_virqs.get(int(virq), [])
        if handler in handlers:
            handlers.remove(handler)

    def send_dom0_virq(self, virq: int) -> None:
        dom0 = getattr(self, "dom0", None)
        if dom0 is not None:
            dom0.evtchn.send_virq(virq)
        for fn in list(self._dom0_virqs.get(int(virq), ())):
            fn()

    # -- foreign mappings (the privcmd device's mmap) ------------------------------------
    def map_foreign_frames(self, caller: Domain, domid: int, gfns: list[int],
                           writable: bool) -> list[memoryview]:
        """Views of `domid`'s frames for a privileged caller (toolstack, back-ends)."""
        if not caller.is_privileged:
            raise PermissionError("only a privileged domain maps foreign frames")
        if domid == DOMID_XEN:
            return self._map_xen_frames(gfns, writable)
        d = self.get_domain(domid)
        if d is None or d.is_dying or d is caller:
            raise LookupError(f"no domain {domid}")
        views = []
        for gfn in gfns:
            e = d.p2m.lookup(gfn)
            if e is None:
                raise ValueError(f"gfn {gfn:#x} of domain {domid} is not populated")
            view = self.machine.frame(e.mfn)
            views.append(view if writable else view.toreadonly())
        return views

    def share_xen_frames(self, mfns, *, writable: bool) -> None:
        """Let privileged domains map these hypervisor frames (Xen's
        share_xen_page_with_privileged_guests); only trace buffers are shared."""
        for mfn in mfns:
            self._xen_shared[mfn] = writable

    def _map_xen_frames(self, mfns: list[int], writable: bool) -> list[memoryview]:
        """DOMID_XEN's frames are named by MFN; only shared ones map, read-only ones
        only read-only. No other hypervisor memory is reachable this way."""
        views = []
        for mfn in mfns:
            shared_rw = self._xen_shared.get(mfn)
            if shared_rw is None or (writable and not shared_rw):
                raise PermissionError(f"mfn {mfn:#x} is not shared with Dom0"
                                      + (" writable" if shared_rw is not None else ""))
            view = self.machine.frame(mfn)
            views.append(view if writable else view.toreadonly())
        return views

    def grant_mapped_frame(self, caller: Domain, handle: int) -> memoryview:
        """The page behind `caller`'s live grant mapping `handle` (made with
        GNTTABOP_map_grant_ref), for a privileged caller's host-side back-ends.
        Read-only if the grant was mapped read-only. The view must be dropped at
        unmap: the frame may then be freed and reused."""
        if not caller.is_privileged:
            raise PermissionError("only a privileged domain reaches grant mappings")
        return caller.grant_table.mapped_frame(handle)

    # -- Dom0's own event channel page (the host's "kernel" handles Dom0's upcalls) ----
    def dom0_event_page(self) -> tuple[memoryview, object]:
        """Dom0's shared_info frame and the context manager that makes updates of its
        event words atomic against the hypervisor's."""
        d = self.dom0
        return self.machine.frame(d.shared_info_mfn), d.atomic_update

    def set_dom0_upcall(self, handler: Callable[[], None] | None) -> None:
        """`handler` runs (on the sender's thread) when Dom0's upcall becomes pending."""
        self.dom0.host_upcall = handler

    def read_console_input(self, count: int) -> bytes:
        """Serial input for CONSOLEIO_read (the host has no serial line yet)."""
        return b""

    def shutdown_host(self) -> None:
        for d in list(self.domains.values()):
            if d.domid != 0:
                self.destroy_domain(d)
        self.sched.close()
        self.timers.close()
        self.arch.close()

    # -- identity strings (xen_version) ------------------------------------------
    version_extra = ".0"
    changeset = f"pyxen {__version__}"
    compiler = f"Python {platform.python_version()} (pyxen {__version__})"
    compile_by = "pyxen"
    compile_domain = "pyxen.invalid"
    compile_date = "Mon Nov 23 00:00:00 UTC 2026"

    @property
    def capabilities(self) -> str:
        return self.arch.capabilities
