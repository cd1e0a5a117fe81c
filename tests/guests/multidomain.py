"""Several guests on one host, started in order (rendezvous through console lines).

A two-domain test starts a server guest, waits for the line in which it
announces what it offers (`READY port=.. gref=..`), then starts the client with
those numbers on its command line, and waits for both to finish.
"""

from __future__ import annotations

import io
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from guestrun import GUESTS, OUT, ROOT, GuestRun


@dataclass
class Guest:
    name: str
    runner: object
    out: io.StringIO
    err: io.StringIO
    domid: int
    outcome: object = None
    extra: dict = field(default_factory=dict)

    def lines(self) -> list[str]:
        return self.out.getvalue().splitlines()

    def result(self) -> GuestRun:
        o = self.outcome
        return GuestRun(o.status if o else 124, o.reason if o else None, self.lines(),
                        self.err.getvalue().splitlines(), self.domid)


class MultiHost:
    def __init__(self, xen_cmdline: str = ""):
        from pyxen.hypervisor.hypervisor import Hypervisor
        from pyxen.toolstack.privcmd import Privcmd
        self.hv = Hypervisor(f"guest_loglvl=all conring_size=4M {xen_cmdline}")
        self.privcmd = Privcmd(self.hv)
        self.guests: list[Guest] = []

    def start(self, name: str, *overrides: str, config: str | Path | None = None) -> Guest:
        from pyxen.toolstack.runner import DomainRunner, validate_for_boot
        from pyxen.toolstack.xlcfg import build_domain_config, load_config
        cfg = Path(config) if config else GUESTS / name / f"{name}.cfg"
        if not (OUT / f"{name}.elf").exists():
            pytest.fail(f"{name}.elf is missing: build the guests first (make -C guests)")
        cwd = os.getcwd()
        os.chdir(ROOT)
        try:
            dc = build_domain_config(load_config(cfg, overrides))
            validate_for_boot(dc)
            out, err = io.StringIO(), io.StringIO()
            runner = DomainRunner(self.privcmd, dc, out=out, err=err)
            domid = runner.start()
        finally:
            os.chdir(cwd)
        g = Guest(name, runner, out, err, domid)
        self.guests.append(g)
        return g

    def wait_line(self, g: Guest, pattern: str, timeout: float = 30.0) -> re.Match:
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            g.runner.pump.pump()
            for line in g.lines():
                m = rx.search(line)
                if m:
                    return m
            time.sleep(0.01)
        pytest.fail(f"{g.name} (d{g.domid}) never printed /{pattern}/:\n"
                    + "\n".join(g.lines()[-20:] + g.err.getvalue().splitlines()[-20:]))

    def wait_all(self, timeout: float = 120.0) -> list[GuestRun]:
        """Wait until every guest has shut down (or the timeout); then destroy them."""
        deadline = time.monotonic() + timeout

        def wait(g: Guest) -> None:
            from pyxen.toolstack.runner import EXIT_STATUS, Outcome
            reason = g.runner.wait(deadline)
            g.outcome = Outcome(reason, EXIT_STATUS.get(reason, 124) if reason is not None
                                else 124, g.domid)

        threads = [threading.Thread(target=wait, args=(g,)) for g in self.guests]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return [g.result() for g in self.guests]

    def close(self) -> None:
        for g in self.guests:
            g.runner.close()
        self.hv.shutdown_host()
