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
