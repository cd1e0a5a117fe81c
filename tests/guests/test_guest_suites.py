"""The foundation's test guests, run on pyxen with both MMU modes.

Each guest is real machine code that checks architectural or ABI behaviour
itself and ends with "Test result: SUCCESS" (then powers off) or FAILURE
(then crashes). A test passes only with the SUCCESS line, exit status 0 and
a shutdown reason of poweroff.
"""

from __future__ import annotations

import pytest
from guestrun import MMU_MODES, run_guest


def _assert_success(run, min_ok: int):
    assert run.result_line == "Test result: SUCCESS", "\n".join(run.console + run.xen)
    assert run.status == 0 and run.reason == 0
    assert len(run.ok_lines()) >= min_ok, run.text


@pytest.mark.parametrize("mmu", MMU_MODES)
def test_exceptions(mmu):
    run = run_guest("test-exceptions", xen_cmdline=f"vcpu_mmu={mmu}")
    _assert_success(run, 40)
    text = run.text
    for needle in ("#PF err 0x11", "INT 0x81 at CPL3 through a DPL0 gate: vector 13 err 0x40a",
                   "IST1 stack", "SYSCALL entered", "delivered on TSS.RSP0"):
        assert needle in text


@pytest.mark.parametrize("mmu", MMU_MODES)
def test_double_fault(mmu):
    run = run_guest("test-double-fault", xen_cmdline=f"vcpu_mmu={mmu}")
    _assert_success(run, 8)
    assert "#DF raised (vector 8)" in run.text


@pytest.mark.parametrize("mmu", MMU_MODES)
def test_triple_fault_crashes_only_the_domain(mmu):
    run = run_guest("test-triple-fault", xen_cmdline=f"vcpu_mmu={mmu} loglvl=all")
    assert run.console[-1] == "about to triple fault"
    assert run.status == 1 and run.reason == 3          # crash
    assert any("Triple fault" in line for line in run.xen)
    # The host is fine: the next domain on a new host boots normally.
    assert run_guest("hello").status == 0


@pytest.mark.parametrize("mmu", MMU_MODES)
@pytest.mark.parametrize("name", ["test-paging", "test-paging32"])
def test_paging(name, mmu):
    run = run_guest(name, xen_cmdline=f"vcpu_mmu={mmu}")
    _assert_success(run, 20)
    assert "skip:" not in run.text, "every paging mode and page size must run on pyxen"


def test_hypercalls_64bit():
    run = run_guest("test-hypercalls")
    _assert_success(run, 25)
    text = run.text
    for needle in ("-ENOSYS", "-EFAULT", "-EPERM", "hvm-3.0-x86_64", "0xfeffc", "0xfefff"):
        assert needle in text, needle


def test_hypercalls_32bit_abi():
    run = run_guest("test-hypercalls32")
    _assert_success(run, 8)


def test_startinfo_cmdline_ramdisk_and_memmap():
    run = run_guest("test-startinfo")
    _assert_success(run, 10)
    text = run.text
    assert 'cmdline: "pyxen-test arg1=value"' in text
    from guestrun import OUT
    ramdisk = (OUT / "test-ramdisk.bin").read_bytes()
    first = " ".join(f"{b:02x}" for b in ramdisk[:16])
    assert f"module 0: size {len(ramdisk)}, first 16 bytes: {first}" in text
    assert "memory map: 2 entries" in text


def test_startinfo_cmdline_from_command_line_override():
    # `KEY=VALUE` overrides work as with `xl create`; this command line carries no test
    # arguments, so the guest only checks the structure and prints what it got.
    run = run_guest("test-startinfo", ('cmdline="console=hvc0 quiet"',))
    _assert_success(run, 5)
    assert 'cmdline: "console=hvc0 quiet"' in run.text


def test_hello_demo():
    run = run_guest("hello")
    _assert_success(run, 0)
    assert "Hello from a pyxen guest! Xen 4.10.0" in run.text
