"""Raw access to the Unicorn engine's C API, for the paths that run per trap.

The `unicorn` package's high-level binding costs several microseconds per
register access and wraps every hook in Python glue; the hypercall and
TLB-fill budgets are 1-3 µs. So hot paths use the C functions directly
through ctypes (own prototypes, no argument conversion) and, on x86, read and
write the emulated CPU state in place (see x86/cpu_state.py).

Only unicorn 2.1.4 is supported (pinned in pyproject.toml): the engine's
internal layout that cpu_state.py relies on is verified at start-up.

Rule for code running inside engine hooks: never call an engine API that can
raise a guest exception (translation probes, MSR writes that may #GP). The
engine reports those with longjmp, which would unwind straight through the
Python frames of the hook.
"""

from __future__ import annotations

import ctypes
import os
import struct
import threading

import unicorn
from unicorn.unicorn_py3.unicorn import uclib

SUPPORTED_UNICORN = "2.1.4"

# Own handle on the library so that our prototypes never disturb the binding's.
_lib = ctypes.CDLL(uclib._name)

c_void_p = ctypes.c_void_p
c_u64 = ctypes.c_uint64
c_int = ctypes.c_int
c_bool = ctypes.c_bool
c_size_t = ctypes.c_size_t


def _proto(name, restype, *argtypes):
    fn = getattr(_lib, name)
    fn.restype = restype
    fn.argtypes = list(argtypes)
    return fn


uc_hook_add = _proto("uc_hook_add", c_int, c_void_p, c_void_p, c_int, c_void_p, c_void_p,
                     c_u64, c_u64)
# Variant with the extra int argument that UC_HOOK_INSN takes (the instruction id).
uc_hook_add_insn = ctypes.CDLL(uclib._name).uc_hook_add
uc_hook_add_insn.restype = c_int
uc_hook_add_insn.argtypes = [c_void_p, c_void_p, c_int, c_void_p, c_void_p, c_u64, c_u64, c_int]
uc_hook_del = _proto("uc_hook_del", c_int, c_void_p, c_size_t)
uc_emu_start = _proto("uc_emu_start", c_int, c_void_p, c_u64, c_u64, c_u64, c_size_t)
uc_emu_stop = _proto("uc_emu_stop", c_int, c_void_p)
uc_reg_read = _proto("uc_reg_read", c_int, c_void_p, c_int, c_void_p)
uc_reg_write = _proto("uc_reg_write", c_int, c_void_p, c_int, c_void_p)
uc_strerror = _proto("uc_strerror", ctypes.c_char_p, c_int)
# CPU contexts: several vCPUs take turns on one engine (x86: its CPU state block).
uc_context_alloc = _proto("uc_context_alloc", c_int, c_void_p, c_void_p)
uc_context_save = _proto("uc_context_save", c_int, c_void_p, c_void_p)
uc_context_restore = _proto("uc_context_restore", c_int, c_void_p, c_void_p)
uc_context_free = _proto("uc_context_free", c_int, c_void_p)
uc_context_size = _proto("uc_context_size", c_size_t, c_void_p)
CONTEXT_HEADER = 40    # bytes of struct uc_context before the saved CPU state (2.1.4)
_uc_ctl = ctypes.CDLL(uclib._name).uc_ctl
_uc_ctl.restype = c_int

# Callback prototypes (all receive the engine handle first, user data last).
HOOK_INSN_INVALID_CB = ctypes.CFUNCTYPE(c_bool, c_void_p, c_void_p)
HOOK_INTR_CB = ctypes.CFUNCTYPE(None, c_void_p, ctypes.c_uint32, c_void_p)
HOOK_CODE_CB = ctypes.CFUNCTYPE(None, c_void_p, c_u64, ctypes.c_uint32, c_void_p)
HOOK_TLB_FILL_CB = ctypes.CFUNCTYPE(c_bool, c_void_p, c_u64, c_int, c_void_p, c_void_p)
HOOK_MEM_INVALID_CB = ctypes.CFUNCTYPE(c_bool, c_void_p, c_int, c_u64, c_int, ctypes.c_int64,
                                       c_void_p)
# x86 instruction hooks: CPUID/SYSCALL return nothing (void) except CPUID/RDTSC,
# which return int: non-zero means "skip the native instruction".
HOOK_INSN_SKIP_CB = ctypes.CFUNCTYPE(c_int, c_void_p, c_void_p)
HOOK_INSN_VOID_CB = ctypes.CFUNCTYPE(None, c_void_p, c_void_p)

UC_CTL_IO_WRITE = 1
UC_CTL_TLB_FLUSH = 11
UC_CTL_TLB_TYPE = 12
UC_CTL_TB_REMOVE_CACHE = 8
UC_CTL_TB_FLUSH = 10


class EngineError(RuntimeError):
    """The engine refused an operation (a bug in pyxen, not in a guest)."""


def check(err: int, what: str) -> None:
    if err:
        raise EngineError(f"{what}: {uc_strerror(err).decode()}")


def ctl_write(handle, ctl: int, nargs: int, *args) -> int:
    code = (UC_CTL_IO_WRITE << 30) | (nargs << 26) | ctl
    return _uc_ctl(handle, c_int(code), *args)


def set_tlb_mode(handle, mode: int) -> None:
    """UC_TLB_CPU (the engine walks guest page tables) or UC_TLB_VIRTUAL (our fill hook)."""
    check(ctl_write(handle, UC_CTL_TLB_TYPE, 1, c_int(mode)), "set TLB mode")


def flush_tlb(handle) -> None:
    check(ctl_write(handle, UC_CTL_TLB_FLUSH, 0), "flush TLB")


def remove_cached_code(handle, begin: int, end: int) -> None:
    """Drop translated code for [begin, end): the engine has no cross-instance coherency."""
    check(ctl_write(handle, UC_CTL_TB_REMOVE_CACHE, 2, c_u64(begin), c_u64(end)),
          "remove TB cache")


def flush_all_code(handle) -> None:
    check(ctl_write(handle, UC_CTL_TB_FLUSH, 0), "flush TBs")


class HookSet:
    """Keeps ctypes callback objects alive for as long as the engine uses them."""

    def __init__(self, handle):
        self.handle = handle
        self._refs: list = []
        self.ids: list[int] = []

    def add(self, hook_type: int, proto, fn, begin: int = 1, end: int = 0,
            insn: int | None = None) -> int:
        cb = proto(fn)
        h = c_size_t()
        if insn is None:
            err = uc_hook_add(self.handle, ctypes.byref(h), hook_type,
                              ctypes.cast(cb, c_void_p), None, begin, end)
        else:
            err = uc_hook_add_insn(self.handle, ctypes.byref(h), hook_type,
                                   ctypes.cast(cb, c_void_p), None, c_u64(begin), c_u64(end),
                                   c_int(insn))
        check(err, f"hook_add type {hook_type}")
        self._refs.append(cb)
        self.ids.append(h.value)
        return h.value

    def remove(self, hook_id: int) -> None:
        check(uc_hook_del(self.handle, hook_id), "hook_del")
        i = self.ids.index(hook_id)
        del self.ids[i]
        # The callback object stays referenced: the engine may still be inside it.


NO_LIMIT = (1 << 64) - 1


class StopFlag:
    """An exact way to stop a running engine from another thread.

    uc_emu_stop from another thread is not exact in unicorn 2.1.4: translated
    code looks for a stop request after every memory access, inside
    instructions, and the engine then resumes at the start of the interrupted
    instruction, so a `lock xadd` whose store was done runs twice. And
    instruction counting (uc_emu_start's `count`) is exact but calls a function
    before every guest instruction (~10 ns each: 20x on register-bound code).

    Instead a UC_HOOK_BLOCK hook, installed before any code is translated, runs
    a few bytes of native code at the start of every translation block:
    `if (*flag) uc_emu_stop(uc)`. The stop is thus issued on the engine's own
    thread before the block's first instruction, and the block's entry check
    (generated right after the hook) leaves before that instruction runs: the
    engine stops exactly at a block boundary. Any thread may set the flag; the
    run loop clears it before each run. (The callback must stay the same
    function: with one hook of a type the engine calls it directly from the
    translated code, so the pointer is copied into every block at translation.)
    A host-native stub: x86-64 hosts only. Cost: one call per block (~10%).
    """

    # cmp byte [rcx], 0 ; jne +1 ; ret ; jmp qword [rcx+8]
    # (rdi = uc, rcx = user_data = &_Arm; the jump is a tail call of uc_emu_stop(uc))
    _CODE = bytes.fromhex("803900" "7501" "c3" "ff6108")
    # The counting variant (deterministic virtual time) first stops when the bytes of
    # guest code started so far reached the limit, else adds this block's size (edx):
    # mov rax,[rcx+16] ; cmp rax,[rcx+24] ; jae stop ; cmp byte [rcx],0 ; jne stop ;
    # mov edx,edx ; add rax,rdx ; mov [rcx+16],rax ; ret ; stop: jmp qword [rcx+8]
    _COUNTING_CODE = bytes.fromhex("488b4110" "483b4118" "730f" "803900" "750a"
                                   "89d2" "4801d0" "48894110" "c3" "ff6108")
    _stubs: dict[bytes, int] = {}
    _stub_maps: list = []
    _stub_lock = threading.Lock()

    class _Arm(ctypes.Structure):
        _fields_ = [("flag", ctypes.c_uint64), ("stop", ctypes.c_uint64),
                    ("count", ctypes.c_uint64), ("limit", ctypes.c_uint64)]

    @classmethod
    def _stub_address(cls, code: bytes) -> int:
        with cls._stub_lock:
            if code not in cls._stubs:
                import mmap
                import platform
                if platform.machine().lower() not in ("x86_64", "amd64"):
                    raise EngineError(f"the engine stop stub needs an x86-64 host, "
                                      f"not {platform.machine()}")
                m = mmap.mmap(-1, mmap.PAGESIZE,
                              prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
                m.write(code)
                cls._stub_maps.append(m)     # never unmapped: engines may call it
                cls._stubs[code] = ctypes.addressof(ctypes.c_char.from_buffer(m))
            return cls._stubs[code]

    def __init__(self, handle, *, counting: bool = False):
        """`counting`: also count the bytes of guest code whose blocks start (`count`),
        and stop before a block once `count` reaches `limit` (see engine: virtual time)."""
        self._arm = self._Arm(0, ctypes.cast(_lib.uc_emu_stop, c_void_p).value, 0, NO_LIMIT)
        code = self._COUNTING_CODE if counting else self._CODE
        h = c_size_t()
        check(uc_hook_add(handle, ctypes.byref(h), unicorn.UC_HOOK_BLOCK,
                          self._stub_address(code), ctypes.addressof(self._arm), 1, 0),
              "hook_add stop flag")
        self.hook_id = h.value
        self.arm = self._arm

    def request(self) -> None:
        """Stop at the next block boundary (any thread; a no-op if nothing runs)."""
        self._arm.flag = 1

    def clear(self) -> None:
        self._arm.flag = 0


class CpuContext:
    """A saved copy of one engine's CPU state (uc_context)."""

    def __init__(self, handle):
        ptr = c_void_p()
        check(uc_context_alloc(handle, ctypes.byref(ptr)), "context_alloc")
        self.ptr = ptr
        self.state_address = ptr.value + CONTEXT_HEADER

    def save(self, handle) -> None:
        check(uc_context_save(handle, self.ptr), "context_save")

    def restore(self, handle) -> None:
        check(uc_context_restore(handle, self.ptr), "context_restore")

    def free(self) -> None:
        if self.ptr:
            uc_context_free(self.ptr)
            self.ptr = c_void_p()


def engine_version() -> str:
    return unicorn.__version__


_mem_fd: int | None = None


def read_process_memory(address: int, size: int) -> bytes | None:
    """Read our own address space without risking a segfault (unmapped → None)."""
    global _mem_fd
    if _mem_fd is None:
        _mem_fd = os.open("/proc/self/mem", os.O_RDONLY)
    try:
        return os.pread(_mem_fd, size, address)
    except OSError:
        return None


_env_location: tuple[int, int] | None = None   # (offset in the uc struct, offset in the CPU)


def find_cpu_env(uc: unicorn.Uc, probe_regs: list[int], env_regs_offset: int = 0) -> int:
    """Locate the emulated CPU's state block inside the engine.

    Writes distinctive values into `probe_regs` through the official API, then
    searches the objects the engine handle points to for that byte pattern.
    Returns the address of the state block (the pattern minus
    `env_regs_offset`). The location found first is tried first next time.
    Raises EngineError when not found.
    """
    global _env_location
    magic = [0x5059_5845_4E00_0000 + i * 0x0101_0101 for i in range(len(probe_regs))]
    saved = [uc.reg_read(r) for r in probe_regs]
    for r, m in zip(probe_regs, magic, strict=True):
        uc.reg_write(r, m)
    pattern = struct.pack(f"<{len(magic)}Q", *magic)
    handle = uc._uch.value
    try:
        if _env_location is not None:
            uc_off, obj_off = _env_location
            head = read_process_memory(handle + uc_off, 8)
            if head:
                ptr = struct.unpack("<Q", head)[0]
                if read_process_memory(ptr + obj_off, len(pattern)) == pattern:
                    return ptr + obj_off - env_regs_offset
        head = read_process_memory(handle, 4096) or b""
        for off in range(0, len(head) - 7, 8):
            ptr = struct.unpack_from("<Q", head, off)[0]
            if ptr < 0x10000 or ptr > 0x7FFF_FFFF_FFFF:
                continue
            blob = read_process_memory(ptr, 1 << 17)
            if not blob:
                continue
            i = blob.find(pattern)
            if i >= 0 and i % 8 == 0:
                _env_location = (off, i)
                return ptr + i - env_regs_offset
    finally:
        for r, v in zip(probe_regs, saved, strict=True):
            uc.reg_write(r, v)
    raise EngineError(
        f"cannot locate the CPU state inside unicorn {engine_version()} "
        f"(pyxen supports {SUPPORTED_UNICORN})")


_halted_offset: int | None = None


def find_halted_offset(new_uc, env_of) -> int:
    """Offset from the x86 CPU state block to the engine's `halted` flag (CPUState).

    The engine sets it when the guest executes HLT and clears it when emulation
    starts again: after uc_emu_start it tells a HLT exit from a budget or stop
    exit, which the byte before RIP cannot (an instruction may end in 0xF4).
    Found once per process on a throwaway engine: the int that is 1 after a HLT
    exit and 0 after an exit by instruction count, twice each. Raises EngineError.
    """
    global _halted_offset
    if _halted_offset is not None:
        return _halted_offset
    uc = new_uc()
    env = env_of(uc)
    handle = uc._uch.value
    span = 0x10000
    uc.mem_map(0, 0x10000)
    uc.mem_write(0x1000, b"\xf4" + b"\x90" * 16 + b"\xf4" + b"\x90" * 8)
    cands: set[int] | None = None
    # HLT exit, exit by count, HLT exit, exit by count (`until` is never reached:
    # an exit there sets the flag too, but pyxen's runs cannot reach theirs).
    for begin, count, want in ((0x1000, 100, 1), (0x1001, 3, 0), (0x1004, 100, 1),
                               (0x1012, 3, 0)):
        check(uc_emu_start(handle, begin, 0x1100, 0, count), "halted probe")
        blob = read_process_memory(env - span, span) or b""
        ints = struct.unpack(f"<{len(blob) // 4}i", blob)
        found = {i * 4 - span for i, v in enumerate(ints) if v == want}
        cands = found if cands is None else cands & found
    if not cands or len(cands) != 1:
        raise EngineError(f"cannot locate the halted flag in unicorn {engine_version()} "
                          f"(pyxen supports {SUPPORTED_UNICORN})")
    _halted_offset = cands.pop()
    return _halted_offset


class EnginePool:
    """Engines initialised ahead of time: an engine's first use costs milliseconds
    (the emulator builds its CPU and translator), which would otherwise land on
    domain creation. A background thread keeps `size` spares ready."""

    def __init__(self, factory, size: int = 1):
        self._factory = factory
        self._size = size
        self._spares: list = []
        self._lock = threading.Lock()
        self._wanted = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        if size > 0:
            self._thread = threading.Thread(target=self._fill, name="engine-pool", daemon=True)
            self._thread.start()
            self._wanted.set()

    def take(self):
        with self._lock:
            engine = self._spares.pop() if self._spares else None
        self._wanted.set()
        return engine if engine is not None else self._factory()

    def close(self) -> None:
        """Stop refilling and wait for an engine being built (never leave one half-made
        at interpreter exit)."""
        self._closed = True
        self._wanted.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self._spares.clear()

    def _fill(self) -> None:
        while not self._closed:
            self._wanted.wait()
            self._wanted.clear()
            while not self._closed:
                with self._lock:
                    if len(self._spares) >= self._size:
                        break
                engine = self._factory()
                with self._lock:
                    self._spares.append(engine)
