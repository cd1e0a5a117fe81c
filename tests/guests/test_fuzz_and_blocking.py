"""Robustness: a hypercall fuzzer must never hurt the host or another domain;
HLT blocks a vCPU without burning host CPU until something wakes it."""

from __future__ import annotations

import threading
import time

import pytest
from guestrun import MMU_MODES, ROOT, run_guest


@pytest.mark.parametrize("mmu", MMU_MODES)
def test_fuzz_guest_100k_hypercalls(mmu):
    run = run_guest("test-fuzz", ("cmdline='seed=7 calls=100000'",),
                    xen_cmdline=f"vcpu_mmu={mmu}", timeout=120)
    assert run.result_line == "Test result: SUCCESS", "\n".join(run.console[-20:] + run.xen)
    assert run.status == 0
    # The guest reports what it got back: many different errors, and some successes.
    assert any(line.startswith("return values") or "histogram" in line.lower()
               for line in run.console), run.text


def _start(hv, name, cmdline=None):
    from pyxen.toolstack.builder import BuildSpec, build_pvh
    from pyxen.toolstack.privcmd import Privcmd
    from pyxen.toolstack.xenctrl import XenCtrl

    xc = XenCtrl(Privcmd(hv))
    spec = BuildSpec(name=name, kernel=str(ROOT / "guests/out" / f"{name}.elf"),
                     memory_mib=16, cmdline=cmdline or "")
    built = build_pvh(xc, spec)
    xc.domain_unpause(built.domid)
    return xc, built.domid


def _wait(pred, timeout=30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.01)
    return False


def test_fuzzer_does_not_disturb_a_neighbour():
    """A fuzzing domain and a quiet one on the same host: the quiet one's memory and
    its successful run are unaffected, and the host stays usable afterwards."""
    from pyxen.hypervisor.hypervisor import Hypervisor

    hv = Hypervisor("guest_loglvl=all conring_size=4M")
    try:
        xc, quiet = _start(hv, "test-hlt")
        assert _wait(lambda: xc.domain_getinfo(quiet).blocked)
        (before,) = [bytes(v) for v in xc.map_foreign(quiet, [0x100], writable=False)]
        _, fuzz = _start(hv, "test-fuzz", "seed=11 calls=100000")
        assert _wait(lambda: xc.domain_getinfo(fuzz).shutdown, timeout=120)
        assert xc.domain_getinfo(fuzz).shutdown_reason == 0
        (after,) = [bytes(v) for v in xc.map_foreign(quiet, [0x100], writable=False)]
        assert before == after
        info = xc.domain_getinfo(quiet)
        assert not info.shutdown and info.blocked
        # The host still builds and runs new domains.
        _, hello = _start(hv, "hello")
        assert _wait(lambda: xc.domain_getinfo(hello).shutdown)
        assert xc.domain_getinfo(hello).shutdown_reason == 0
    finally:
        hv.shutdown_host()


def test_hlt_blocks_until_woken():
    from pyxen.hypervisor.hypervisor import Hypervisor

    hv = Hypervisor("guest_loglvl=all")
    try:
        xc, domid = _start(hv, "test-hlt")
        assert _wait(lambda: xc.domain_getinfo(domid).blocked)
        vcpu = hv.get_domain(domid).vcpus[0]
        # Blocked means no guest code runs and no host CPU is spent on it.
        t0 = vcpu.cpu_time_ns()
        cpu0 = time.process_time()
        time.sleep(0.3)
        assert vcpu.cpu_time_ns() == t0
        assert time.process_time() - cpu0 < 0.1
        assert not xc.domain_getinfo(domid).shutdown
        # An event (event channels arrive with the core-ABI issue) wakes it: the guest
        # resumes after its HLT and powers off.
        vcpu.wake()
        assert _wait(lambda: xc.domain_getinfo(domid).shutdown)
        assert xc.domain_getinfo(domid).shutdown_reason == 0
        data, _ = xc.readconsole()
        assert b"(d%d) woke" % domid in data
    finally:
        hv.shutdown_host()


def test_domain_destroy_while_running_frees_memory():
    from pyxen.hypervisor.hypervisor import Hypervisor

    hv = Hypervisor("")
    try:
        free0 = hv.machine.free_frames
        xc, domid = _start(hv, "test-hlt")
        assert _wait(lambda: xc.domain_getinfo(domid).blocked)
        assert hv.machine.free_frames < free0
        xc.domain_destroy(domid)
        assert xc.domain_getinfo(domid) is None
        assert hv.machine.free_frames == free0
        assert threading.active_count() < 20
    finally:
        hv.shutdown_host()




@pytest.mark.parametrize("mmu", MMU_MODES)
def test_guests_survive_pause_unpause_storms(mmu):
    """The toolstack pausing and unpausing a running domain thousands of times (each a
    stop and restart of the vCPU's engine) must not change what the guest computes."""
    from pyxen.hypervisor.hypervisor import Hypervisor

    hv = Hypervisor(f"guest_loglvl=all vcpu_mmu={mmu}")
    try:
        xc, domid = _start(hv, "test-exceptions")
        storms = 0
        while not xc.domain_getinfo(domid).shutdown and storms < 20000:
            xc.domain_pause(domid)
            xc.domain_unpause(domid)
            storms += 1
        assert _wait(lambda: xc.domain_getinfo(domid).shutdown, timeout=60)
        assert xc.domain_getinfo(domid).shutdown_reason == 0
        data, _ = xc.readconsole()
        assert b"Test result: SUCCESS" in data
        assert storms > 20
    finally:
        hv.shutdown_host()
