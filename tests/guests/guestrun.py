"""Run a guest on a fresh one-shot host, in this process (shared by the guest tests)."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GUESTS = ROOT / "guests"
OUT = GUESTS / "out"


@dataclass
class GuestRun:
    status: int
    reason: int | None
    console: list[str]
    xen: list[str]
    domid: int | None
    extra: dict = field(default_factory=dict)

    @property
    def text(self) -> str:
        return "\n".join(self.console)

    @property
    def result_line(self) -> str:
        lines = [line for line in self.console if line.startswith("Test result:")]
        return lines[-1] if lines else "<no result line>"

    def ok_lines(self) -> list[str]:
        return [line for line in self.console if line.startswith("ok:")]


def run_guest(name: str, overrides: tuple[str, ...] = (), *, xen_cmdline: str = "",
              timeout: float = 60.0, config: str | Path | None = None) -> GuestRun:
    """Boot guests/<name>/<name>.cfg on a new host and wait until it ends."""
    from pyxen.hypervisor.hypervisor import Hypervisor
    from pyxen.toolstack.privcmd import Privcmd
    from pyxen.toolstack.runner import DomainRunner, validate_for_boot
    from pyxen.toolstack.xlcfg import build_domain_config, load_config

    cfg_path = Path(config) if config else GUESTS / name / f"{name}.cfg"
    kernel = OUT / f"{name}.elf"
    if config is None and not kernel.exists():
        pytest.fail(f"{kernel} is missing: build the guests first (make -C guests)")
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        dc = build_domain_config(load_config(cfg_path, overrides))
        validate_for_boot(dc)
        params = f"guest_loglvl=all conring_size=4M {xen_cmdline}"
        hv = Hypervisor(params)
        out, err = io.StringIO(), io.StringIO()
        runner = DomainRunner(Privcmd(hv), dc, out=out, err=err)
        try:
            outcome = runner.run(timeout)
        finally:
            runner.close()
            hv.shutdown_host()
    finally:
        os.chdir(cwd)
    return GuestRun(outcome.status, outcome.reason, out.getvalue().splitlines(),
                    err.getvalue().splitlines(), outcome.domid)


MMU_MODES = ("engine", "software")
