"""raw.StopFlag: stops at translation-block boundaries, asked by any thread, and its
counting variant (virtual time) counts guest-code bytes and ends a run on a budget."""

from __future__ import annotations

import threading

from unicorn import UC_ARCH_X86, UC_MODE_64, Uc
from unicorn.x86_const import UC_X86_REG_RAX, UC_X86_REG_RBX, UC_X86_REG_RCX, UC_X86_REG_RIP

from pyxen.arch import unicorn_raw as raw

LOOP = bytes.fromhex("48ffc0" "4883f800" "75f7")    # 1: inc rax; cmp rax, 0; jne 1b (9 bytes)
# 1: mov eax, 1; lock xadd [rbx], rax; inc rcx; jmp 1b (15 bytes, one block)
ADD_LOOP = bytes.fromhex("b801000000" "f0480fc103" "48ffc1" "ebf1")


def _engine(code: bytes, counting: bool) -> tuple[Uc, raw.StopFlag]:
    uc = Uc(UC_ARCH_X86, UC_MODE_64)
    flag = raw.StopFlag(uc._uch, counting=counting)   # before any code is translated
    uc.mem_map(0x1000, 0x2000)
    uc.mem_write(0x1000, code)
    return uc, flag


def test_the_counting_stub_ends_a_run_after_exactly_the_budgeted_blocks():
    uc, flag = _engine(LOOP, counting=True)
    uc.reg_write(UC_X86_REG_RAX, 1)
    flag.arm.limit = 9 * 1000                 # 1000 iterations of a one-block loop
    uc.emu_start(0x1000, 1 << 63)
    assert flag.arm.count == 9000
    assert uc.reg_read(UC_X86_REG_RAX) == 1001 and uc.reg_read(UC_X86_REG_RIP) == 0x1000
    flag.arm.limit += 9 * 500                 # resumes where it stopped
    uc.emu_start(0x1000, 1 << 63)
    assert flag.arm.count == 9 * 1500 and uc.reg_read(UC_X86_REG_RAX) == 1501


def test_a_flag_set_by_another_thread_stops_between_whole_instructions():
    """lock xadd adds 1 to memory and inc rcx counts iterations: after a stop from
    another thread the two agree (no instruction ran twice)."""
    for counting in (False, True):
        uc, flag = _engine(ADD_LOOP, counting)
        uc.reg_write(UC_X86_REG_RBX, 0x2000)
        timer = threading.Timer(0.05, flag.request)
        timer.start()
        uc.emu_start(0x1000, 1 << 63)
        timer.join()
        total = int.from_bytes(uc.mem_read(0x2000, 8), "little")
        assert total == uc.reg_read(UC_X86_REG_RCX) and total > 1000
        assert uc.reg_read(UC_X86_REG_RIP) == 0x1000          # at the block's start
        if counting:
            assert flag.arm.count == 15 * total               # one 15-byte block per add
