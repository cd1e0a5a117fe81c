"""Run one domain from its configuration until it ends, applying xl's on_* actions.

Used by the one-shot `pyxen boot` command; it only talks to the hypervisor
through a privcmd handle (hypercalls, VIRQs), like xl does.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from ..abi.constants import ShutdownReason, Virq
from .builder import BuildError, BuildSpec, build_pvh, resolve_path
from .privcmd import Privcmd
from .xenctrl import XenCtrl
from .xlcfg import DomainConfig

# Exit status of `pyxen boot`, by the guest's shutdown reason.
EXIT_STATUS = {
    ShutdownReason.poweroff: 0,
    ShutdownReason.crash: 1,
    ShutdownReason.reboot: 3,
    ShutdownReason.suspend: 4,
    ShutdownReason.watchdog: 5,
    ShutdownReason.soft_reset: 6,
}
EXIT_UNKNOWN_REASON = 7
EXIT_TIMEOUT = 124
SUPPORTED_ACTIONS = ("destroy", "restart", "preserve", "rename-restart", "coredump-destroy",
                     "coredump-restart")


class RunError(Exception):
    """The domain could not be run; one line for the user."""


MAX_VCPUS = 128        # Xen's HVM_MAX_VCPUS


def validate_for_boot(dc: DomainConfig) -> None:
    """What the foundation supports; everything else is refused with a clear reason."""
    if dc.type in ("pv", "hvm"):
        raise RunError(f'{dc.filename}: type="{dc.type}" guests are not supported yet '
                       '(pyxen runs type="pvh")')
    if dc.memory <= 0:
        raise RunError(f"{dc.filename}: memory={dc.memory}: a guest needs at least 1 MiB")
    if dc.maxmem < dc.memory:
        raise RunError(f"{dc.filename}: maxmem={dc.maxmem} is below memory={dc.memory}")
    if not 1 <= dc.vcpus <= dc.maxvcpus <= MAX_VCPUS:
        raise RunError(f"{dc.filename}: vcpus={dc.vcpus} maxvcpus={dc.maxvcpus}: need "
                       f"1 <= vcpus <= maxvcpus <= {MAX_VCPUS}")
    if not dc.kernel:
        raise RunError(f"{dc.filename}: no kernel= given (PVH guests boot a kernel directly)")
    for key in ("on_poweroff", "on_reboot", "on_watchdog", "on_crash"):
        action = getattr(dc, key)
        if action not in SUPPORTED_ACTIONS:
            raise RunError(f'{dc.filename}: {key}="{action}" is not supported yet')
    unknown = dc.unknown_keys()
    if unknown:
        raise RunError(f"{dc.filename}: unknown configuration key(s): {', '.join(unknown)}")


@dataclass
class Outcome:
    reason: int | None
    status: int
    domid: int | None


class ConsolePump:
    """Reads the hypervisor console ring (sysctl readconsole) and routes its lines."""

    def __init__(self, xc: XenCtrl, on_guest_line: Callable[[int, str], None],
                 on_xen_line: Callable[[str], None]):
        self.xc = xc
        self.index = 0
        self.partial = b""
        self.on_guest_line = on_guest_line
        self.on_xen_line = on_xen_line

    def pump(self) -> None:
        while True:
            data, self.index = self.xc.readconsole(index=self.index)
            if not data:
                return
            data = self.partial + data
            *lines, self.partial = data.split(b"\n")
            for raw in lines:
                line = raw.decode("utf-8", "replace")
                if line.startswith("(d") and ") " in line:
                    tag, _, text = line.partition(") ")
                    if tag[2:].isdigit():
                        self.on_guest_line(int(tag[2:]), text)
                        continue
                self.on_xen_line(line)


class DomainRunner:
    def __init__(self, privcmd: Privcmd, dc: DomainConfig, *, config_dir: str | None = None,
                 out=sys.stdout, err=sys.stderr, quiet: bool = False):
        self.privcmd = privcmd
        self.xc = XenCtrl(privcmd)
        self.dc = dc
        self.config_dir = config_dir
        self.out = out
        self.err = err
        self.quiet = quiet
        self.domid: int | None = None
        self._event = threading.Event()
        self._unbind = [privcmd.bind_virq(Virq.DOM_EXC, self._event.set),
                        privcmd.bind_virq(Virq.CON_RING, self._event.set)]
        self.pump = ConsolePump(self.xc, self._guest_line, self._xen_line)
        self.handle = uuid.UUID(dc.uuid).bytes if dc.uuid else uuid.uuid4().bytes

    def close(self) -> None:
        for fn in self._unbind:
            fn()

    def _guest_line(self, domid: int, text: str) -> None:
        if domid == self.domid:
            print(text, file=self.out, flush=True)

    def _xen_line(self, line: str) -> None:
        if not self.quiet:
            print(line, file=self.err, flush=True)

    def _spec(self) -> BuildSpec:
        dc = self.dc
        return BuildSpec(
            name=dc.name, kernel=resolve_path(dc.kernel, self.config_dir),
            memory_mib=dc.memory, maxmem_mib=dc.maxmem, vcpus=dc.vcpus,
            maxvcpus=dc.maxvcpus, cmdline=dc.cmdline or "",
            ramdisk=resolve_path(dc.ramdisk, self.config_dir) if dc.ramdisk else None,
            handle=self.handle)

    def start(self) -> int:
        try:
            built = build_pvh(self.xc, self._spec())
        except BuildError as e:
            raise RunError(str(e)) from None
        self.domid = built.domid
        self.xc.domain_unpause(built.domid)
        return built.domid

    def wait(self, deadline: float | None = None) -> int | None:
        """Pump console output until the domain shuts down; its reason, or None on timeout."""
        while True:
            self._event.wait(0.05)
            self._event.clear()
            self.pump.pump()
            info = self.xc.domain_getinfo(self.domid)
            if info is None:
                return ShutdownReason.crash
            if info.shutdown:
                self.pump.pump()
                return info.shutdown_reason
            if deadline is not None and time.monotonic() > deadline:
                return None

    def run(self, timeout: float | None = None) -> Outcome:
        deadline = None if timeout is None else time.monotonic() + timeout
        self.start()
        while True:
            reason = self.wait(deadline)
            if reason is None:
                self.xc.domain_destroy(self.domid)
                print(f"pyxen: domain {self.dc.name} did not finish within {timeout:g} s; "
                      "destroyed", file=self.err, flush=True)
                return Outcome(None, EXIT_TIMEOUT, self.domid)
            action = {
                ShutdownReason.poweroff: self.dc.on_poweroff,
                ShutdownReason.reboot: self.dc.on_reboot,
                ShutdownReason.crash: self.dc.on_crash,
                ShutdownReason.watchdog: self.dc.on_watchdog,
            }.get(reason, "destroy")
            status = EXIT_STATUS.get(reason, EXIT_UNKNOWN_REASON)
            if action == "destroy":
                self.xc.domain_destroy(self.domid)
                return Outcome(reason, status, self.domid)
            if action == "preserve":
                print(f"pyxen: domain {self.dc.name} ({self.domid}) preserved; "
                      "the one-shot host exits now", file=self.err, flush=True)
                return Outcome(reason, status, self.domid)
            # restart / rename-restart: a fresh domain from the same configuration.
            old = self.domid
            if action == "restart":
                self.xc.domain_destroy(old)
            print(f"pyxen: domain {self.dc.name} ({old}) {_reason_name(reason)}; restarting",
                  file=self.err, flush=True)
            self.start()


def _reason_name(reason: int) -> str:
    try:
        return {ShutdownReason.poweroff: "powered off", ShutdownReason.reboot: "rebooted",
                ShutdownReason.crash: "crashed"}.get(ShutdownReason(reason),
                                                     ShutdownReason(reason).name)
    except ValueError:
        return f"shut down (reason {reason})"


def config_dir_of(path: str) -> str:
    return os.path.dirname(os.path.abspath(path))
