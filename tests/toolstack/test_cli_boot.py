"""`pyxen boot` as a user runs it: the demo works, and every kind of bad input
gets exactly one clear error line, a non-zero exit and no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HELLO = ROOT / "guests/out/hello.elf"


def pyxen(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "pyxen", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def write_cfg(tmp_path, body: str, name="guest.cfg") -> Path:
    p = tmp_path / name
    p.write_text(body)
    return p


def base(kernel=HELLO, **extra):
    lines = ['name = "t"', 'type = "pvh"', f'kernel = "{kernel}"', "memory = 16"]
    lines += [f"{k} = {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def assert_one_error_line(proc, *needles):
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("pyxen: error: ")
    assert "Traceback" not in proc.stderr + proc.stdout
    for n in needles:
        assert n in lines[0], lines[0]


def test_boot_hello_streams_console_and_exits_0():
    proc = pyxen("boot", "guests/hello/hello.cfg")
    assert proc.returncode == 0, proc.stderr
    assert "Hello from a pyxen guest! Xen 4.10.0" in proc.stdout
    assert proc.stdout.rstrip().endswith("Test result: SUCCESS")


def test_crashing_guest_exits_1():
    proc = pyxen("boot", "guests/test-triple-fault/test-triple-fault.cfg")
    assert proc.returncode == 1
    assert "about to triple fault" in proc.stdout


def test_on_crash_restart_restarts(tmp_path):
    cfg = write_cfg(tmp_path, base(ROOT / "guests/out/test-triple-fault.elf",
                                   on_crash='"restart"'))
    proc = pyxen("boot", "--timeout", "3", cfg)
    assert proc.returncode == 124      # it kept restarting until the timeout
    assert proc.stdout.count("about to triple fault") >= 2
    assert "restarting" in proc.stderr


def test_on_poweroff_preserve(tmp_path):
    proc = pyxen("boot", write_cfg(tmp_path, base(on_poweroff='"preserve"')))
    assert proc.returncode == 0 and "preserved" in proc.stderr


def test_overrides_on_the_command_line(tmp_path):
    proc = pyxen("boot", write_cfg(tmp_path, base()), 'cmdline="from the command line"')
    assert proc.returncode == 0
    assert 'Command line: "from the command line"' in proc.stdout


@pytest.mark.parametrize("body,needles", [
    (base(memory=0).replace("memory = 16\n", ""), ("memory=0",)),
    (base(colour='"blue"'), ("unknown configuration key", "colour")),
    (base(vcpus=200), ("vcpus=200", "maxvcpus <= 128")),
    (base().replace('type = "pvh"', 'type = "pv"'), ('type="pv"', "not supported")),
    (base().replace('type = "pvh"', 'type = "hvm"'), ('type="hvm"', "not supported")),
    (base().replace('type = "pvh"', "pvh = 1"), ('type="pvh"',)),
    (base(on_crash='"explode"'), ("on_crash",)),
    ('name = "t"\ntype = "pvh"\nkernel = "x.elf"\nmemory = = 16\n', ("guest.cfg:4:",)),
    ('name = "t"\ntype = "pvh"\nmemory = 16\n', ("kernel",)),
    (base("/nonexistent/kernel.elf"), ("/nonexistent/kernel.elf", "No such file")),
    (base(memory=1).replace("memory = 16\n", ""), ("MiB",)),
])
def test_bad_config_gets_one_line(tmp_path, body, needles):
    assert_one_error_line(pyxen("boot", write_cfg(tmp_path, body)), *needles)


def test_missing_config_file():
    assert_one_error_line(pyxen("boot", "/nonexistent.cfg"), "/nonexistent.cfg")


def test_elf_without_pvh_note(tmp_path):
    src = tmp_path / "k.s"
    src.write_text(".text\n.globl _start\n_start: hlt\n")
    subprocess.run(["as", "--64", "-o", tmp_path / "k.o", src], check=True)
    subprocess.run(["ld", "-o", tmp_path / "k.elf", "-Ttext=0x100000", tmp_path / "k.o"],
                   check=True)
    proc = pyxen("boot", write_cfg(tmp_path, base(tmp_path / "k.elf")))
    assert_one_error_line(proc, "not a PVH kernel")


def test_truncated_elf(tmp_path):
    k = tmp_path / "cut.elf"
    k.write_bytes(HELLO.read_bytes()[:200])
    assert_one_error_line(pyxen("boot", write_cfg(tmp_path, base(k))), "cut.elf")


def test_not_an_elf(tmp_path):
    k = tmp_path / "text.elf"
    k.write_text("just text\n")
    assert_one_error_line(pyxen("boot", write_cfg(tmp_path, base(k))), "not an ELF")


def test_kernel_larger_than_memory(tmp_path):
    # A PVH kernel whose bss reaches past 8 MiB cannot fit a 4 MiB guest.
    src = tmp_path / "big.s"
    src.write_text('.section .note.Xen,"a",@note\n.align 4\n.long 4, 4, 18\n.asciz "Xen"\n'
                   ".long _start\n.text\n.code32\n.globl _start\n_start: hlt\n"
                   ".bss\n.space 8*1024*1024\n")
    subprocess.run(["as", "--32", "-o", tmp_path / "big.o", src], check=True)
    subprocess.run(["ld", "-m", "elf_i386", "-o", tmp_path / "big.elf", "-Ttext=0x100000",
                    tmp_path / "big.o"], check=True)
    proc = pyxen("boot", write_cfg(tmp_path, base(tmp_path / "big.elf", memory=4)
                                   .replace("memory = 16\n", "")))
    assert_one_error_line(proc, "4 MiB")


def test_timeout_must_be_positive():
    assert_one_error_line(pyxen("boot", "--timeout", "0", "guests/hello/hello.cfg"), "timeout")
