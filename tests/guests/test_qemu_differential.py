"""The same guest ELFs under qemu-system-x86_64 (PVH boot, no Xen): the
architectural checks (exceptions, paging, start info) must pass on a real
system emulator too, so the guests' expectations are the CPU's, not pyxen's."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from guestrun import GUESTS, OUT

ARCH_GUESTS = ["hello", "test-exceptions", "test-double-fault", "test-triple-fault",
               "test-paging", "test-paging32", "test-startinfo"]


@pytest.mark.parametrize("name", ARCH_GUESTS)
def test_guest_under_qemu(name):
    assert shutil.which("qemu-system-x86_64"), "qemu-system-x86 is installed by `make`"
    expect = "reset" if name == "test-triple-fault" else "success"
    proc = subprocess.run([str(GUESTS / "run-qemu.sh"), "--expect", expect, "--timeout", "60",
                           str(OUT / f"{name}.elf")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
