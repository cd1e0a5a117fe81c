"""xentrace's binary trace format: records, per-pCPU chunks, a writer and a reader.

A trace file is what `xentrace` writes and `xenalyze` reads: a stream of
32-bit-word records (`struct t_rec`, host endian, here little endian):

    word 0    bits 27:0 event id, bits 30:28 number of data words (0..7),
              bit 31 set when a TSC follows
    [word 1, 2  TSC low, TSC high]        only with bit 31
    then the data words (u32 each)

The records of each pCPU come in chunks. Every chunk is preceded by a
TRC_TRACE_CPU_CHANGE record without TSC whose two data words are the pCPU
number and the chunk's size in bytes, so a reader knows which pCPU the next
`window_size` bytes belong to. Within one pCPU the records are in time order;
chunks of different pCPUs interleave in any order (a reader merges by TSC).

Time in traces is the TSC. pyxen's TSC runs at 2.4 GHz from hypervisor time 0,
so `tsc = ns * 12 // 5` (`ns_to_tsc`) and `tsc_to_ns` inverts it exactly for
any TSC `ns_to_tsc` produced. This is the one place that conversion lives.

`TraceWriter` collects records per pCPU and writes chunks to a file: the
simulator uses it unlocked; `threadsafe=True` lets threads append concurrently
(each chunk is written whole). A running host does not use it: its records go
to the hypervisor's trace buffers (hypervisor/trace_buffers.py) and the
toolstack's recorder (toolstack/xentrace_record.py) writes the chunks.
`read_trace` parses a file back into per-pCPU record lists.
"""

from __future__ import annotations

import heapq
import struct
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO, NamedTuple

# -- event ids (public/trace.h) ------------------------------------------------------------
TRC_GEN = 0x0001F000
TRC_SCHED = 0x0002F000
TRC_DOM0OP = 0x0004F000
TRC_HVM = 0x0008F000
TRC_MEM = 0x0010F000
TRC_PV = 0x0020F000
TRC_SHADOW = 0x0040F000
TRC_HW = 0x0080F000
TRC_GUEST = 0x0800F000
TRC_ALL = 0x0FFFF000

TRC_LOST_RECORDS = TRC_GEN + 1
TRC_TRACE_WRAP_BUFFER = TRC_GEN + 2
TRC_TRACE_CPU_CHANGE = TRC_GEN + 3

TRC_SCHED_MIN = 0x00021000        # the generic scheduler events every trace has
TRC_SCHED_CLASS = 0x00022000      # scheduler-specific events
TRC_SCHED_VERBOSE = 0x00028000    # the verbose generic events

TRC_SCHED_RUNSTATE_CHANGE = TRC_SCHED_MIN + 1
TRC_SCHED_CONTINUE_RUNNING = TRC_SCHED_MIN + 2

TRC_SCHED_DOM_ADD = TRC_SCHED_VERBOSE + 1
TRC_SCHED_DOM_REM = TRC_SCHED_VERBOSE + 2
TRC_SCHED_SLEEP = TRC_SCHED_VERBOSE + 3
TRC_SCHED_WAKE = TRC_SCHED_VERBOSE + 4
TRC_SCHED_YIELD = TRC_SCHED_VERBOSE + 5
TRC_SCHED_BLOCK = TRC_SCHED_VERBOSE + 6
TRC_SCHED_SHUTDOWN = TRC_SCHED_VERBOSE + 7
TRC_SCHED_CTL = TRC_SCHED_VERBOSE + 8
TRC_SCHED_ADJDOM = TRC_SCHED_VERBOSE + 9
TRC_SCHED_SWITCH = TRC_SCHED_VERBOSE + 10
TRC_SCHED_S_TIMER_FN = TRC_SCHED_VERBOSE + 11
TRC_SCHED_T_TIMER_FN = TRC_SCHED_VERBOSE + 12
TRC_SCHED_DOM_TIMER_FN = TRC_SCHED_VERBOSE + 13
TRC_SCHED_SWITCH_INFPREV = TRC_SCHED_VERBOSE + 14
TRC_SCHED_SWITCH_INFNEXT = TRC_SCHED_VERBOSE + 15
TRC_SCHED_SHUTDOWN_CODE = TRC_SCHED_VERBOSE + 16
TRC_SCHED_SWITCH_INFCONT = TRC_SCHED_VERBOSE + 17

# scheduler ids inside TRC_SCHED_CLASS (bits 11:9)
TRC_SCHED_CSCHED = 0
TRC_SCHED_CSCHED2 = 1
TRC_SCHED_ARINC653 = 3
TRC_SCHED_RTDS = 4
TRC_SCHED_SNULL = 5


def sched_class_evt(sched: int, n: int) -> int:
    """TRC_SCHED_CLASS_EVT(sched, n): a scheduler-specific event id."""
    return TRC_SCHED_CLASS | ((sched & 0x7) << 9) | (n & 0x1FF)


TRC_CSCHED2_CREDIT_BURN = sched_class_evt(TRC_SCHED_CSCHED2, 3)
TRC_CSCHED2_CREDIT_RESET = sched_class_evt(TRC_SCHED_CSCHED2, 7)
TRC_CSCHED2_SCHEDULE = sched_class_evt(TRC_SCHED_CSCHED2, 21)

# runstates (public/vcpu.h) as they appear in RUNSTATE_CHANGE ids
RUNSTATE_RUNNING = 0
RUNSTATE_RUNNABLE = 1
RUNSTATE_BLOCKED = 2
RUNSTATE_OFFLINE = 3
RUNSTATE_NAMES = ("running", "runnable", "blocked", "offline")

DOMID_IDLE = 0x7FFF               # the idle domain; its vCPU n is pCPU n's idle vCPU

TRACE_EXTRA_MAX = 7
TRACE_EXTRA_SHIFT = 28
CYCLES_FLAG = 1 << 31
EVENT_MASK = 0x0FFF_FFFF

CPU_CHANGE_HEADER = TRC_TRACE_CPU_CHANGE | (2 << TRACE_EXTRA_SHIFT)


def runstate_event(old: int, new: int) -> int:
    """The RUNSTATE_CHANGE id: old state in bits 9:8, new state in bits 5:4."""
    return TRC_SCHED_RUNSTATE_CHANGE | ((old & 3) << 8) | ((new & 3) << 4)


def is_runstate_change(event: int) -> bool:
    return event & ~0x330 == TRC_SCHED_RUNSTATE_CHANGE


def runstate_states(event: int) -> tuple[int, int]:
    """(old, new) runstate of a RUNSTATE_CHANGE id."""
    return (event >> 8) & 3, (event >> 4) & 3


def unit_word(domid: int, vcpu: int) -> int:
    """{u16 vcpu, u16 dom} packed in one u32 (vcpu in the low half)."""
    return (vcpu & 0xFFFF) | ((domid & 0xFFFF) << 16)


def split_unit_word(word: int) -> tuple[int, int]:
    """(domid, vcpu) of a {u16 vcpu, u16 dom} word."""
    return (word >> 16) & 0xFFFF, word & 0xFFFF


# -- TSC -------------------------------------------------------------------------------------
TSC_KHZ = 2_400_000               # pyxen's host TSC rate (2.4 GHz)
_TSC_NUM, _TSC_DEN = 12, 5        # TSC ticks per ns, as a fraction


def ns_to_tsc(ns: int) -> int:
    """Hypervisor time (ns) to TSC ticks: 2.4 per ns, rounded down."""
    return ns * _TSC_NUM // _TSC_DEN


def tsc_to_ns(tsc: int) -> int:
    """TSC ticks to ns (rounded up, so tsc_to_ns(ns_to_tsc(n)) == n)."""
    return -(-tsc * _TSC_DEN // _TSC_NUM)


# -- records ----------------------------------------------------------------------------------
class Record(NamedTuple):
    cpu: int
    tsc: int | None            # None: the record carries no TSC
    event: int
    words: tuple[int, ...]

    @property
    def ns(self) -> int | None:
        return None if self.tsc is None else tsc_to_ns(self.tsc)


_WITH_TSC = [struct.Struct(f"<{3 + n}I") for n in range(TRACE_EXTRA_MAX + 1)]
_NO_TSC = [struct.Struct(f"<{1 + n}I") for n in range(TRACE_EXTRA_MAX + 1)]
_U32 = struct.Struct("<I")


class TraceFormatError(ValueError):
    pass


def encode_record(event: int, words: Iterable[int] = (), tsc: int | None = None) -> bytes:
    """One t_rec: header, optional TSC, data words (each taken modulo 2^32)."""
    w = [x & 0xFFFF_FFFF for x in words]
    n = len(w)
    if n > TRACE_EXTRA_MAX:
        raise TraceFormatError(f"{n} data words (at most {TRACE_EXTRA_MAX})")
    hdr = (event & EVENT_MASK) | (n << TRACE_EXTRA_SHIFT)
    if tsc is None:
        return _NO_TSC[n].pack(hdr, *w)
    return _WITH_TSC[n].pack(hdr | CYCLES_FLAG, tsc & 0xFFFF_FFFF, (tsc >> 32) & 0xFFFF_FFFF, *w)


def decode_records(data: bytes | memoryview, cpu: int = 0, start: int = 0,
                   end: int | None = None) -> Iterator[Record]:
    """The records in data[start:end] (all of one pCPU)."""
    end = len(data) if end is None else end
    off = start
    unpack_from = _U32.unpack_from
    while off < end:
        if end - off < 4:
            raise TraceFormatError(f"truncated record header at byte {off}")
        hdr = unpack_from(data, off)[0]
        n = (hdr >> TRACE_EXTRA_SHIFT) & TRACE_EXTRA_MAX
        if hdr & CYCLES_FLAG:
            size = 12 + 4 * n
            if off + size > end:
                raise TraceFormatError(f"truncated record at byte {off}")
            vals = _WITH_TSC[n].unpack_from(data, off)
            yield Record(cpu, vals[1] | (vals[2] << 32), hdr & EVENT_MASK, vals[3:])
        else:
            size = 4 + 4 * n
            if off + size > end:
                raise TraceFormatError(f"truncated record at byte {off}")
            vals = _NO_TSC[n].unpack_from(data, off)
            yield Record(cpu, None, hdr & EVENT_MASK, vals[1:])
        off += size


def cpu_change_record(cpu: int, window_size: int) -> bytes:
    return _NO_TSC[2].pack(CPU_CHANGE_HEADER, cpu & 0xFFFF_FFFF, window_size)


# -- writer -----------------------------------------------------------------------------------
class TraceWriter:
    """Per-pCPU record buffers written to `out` as xentrace chunks.

    A pCPU's buffer becomes a chunk (CPU-change record + its bytes) when it
    reaches `chunk_bytes`, on `flush()` and on `close()` (pCPUs in order), so a
    deterministic producer gets a byte-identical file. `event_mask` filters
    like `xentrace -e`: a record is kept when its class bits (27:16) and its
    subclass bits (15:12) both share a bit with the mask's; CPU-change records
    are always written.
    """

    def __init__(self, out: BinaryIO, nr_cpus: int, *, chunk_bytes: int = 1 << 16,
                 threadsafe: bool = True, event_mask: int = TRC_ALL):
        if nr_cpus < 1:
            raise ValueError("a trace needs at least one pCPU")
        self.out = out
        self.nr_cpus = nr_cpus
        self.chunk_bytes = max(64, chunk_bytes)
        self.event_mask = event_mask & TRC_ALL
        self.all_events = self.event_mask == TRC_ALL
        self.bufs = [bytearray() for _ in range(nr_cpus)]
        self.records = 0
        self.bytes_written = 0
        self._out_lock = threading.Lock()
        self._locks = [threading.Lock() for _ in range(nr_cpus)] if threadsafe else None
        self.closed = False

    def wants(self, event: int) -> bool:
        m = self.event_mask
        return bool(event & m & 0x0FFF_0000) and bool(event & m & 0xF000)

    def append(self, cpu: int, tsc: int | None, event: int, words: Iterable[int] = ()) -> None:
        """Add one record for pCPU `cpu` (tsc None: a record without TSC)."""
        if not self.wants(event):
            return
        if self._locks is None:
            self._append(cpu, tsc, event, tuple(words))
        else:
            with self._locks[cpu]:
                self._append(cpu, tsc, event, tuple(words))

    def append_ns(self, cpu: int, ns: int, event: int, words: Iterable[int] = ()) -> None:
        self.append(cpu, ns_to_tsc(ns), event, words)

    def _append(self, cpu: int, tsc: int | None, event: int, words: tuple[int, ...]) -> None:
        n = len(words)
        if n > TRACE_EXTRA_MAX:
            raise TraceFormatError(f"{n} data words (at most {TRACE_EXTRA_MAX})")
        buf = self.bufs[cpu]
        hdr = (event & EVENT_MASK) | (n << TRACE_EXTRA_SHIFT)
        try:
            if tsc is None:
                buf += _NO_TSC[n].pack(hdr, *words)
            else:
                buf += _WITH_TSC[n].pack(hdr | CYCLES_FLAG, tsc & 0xFFFF_FFFF, tsc >> 32,
                                         *words)
        except struct.error:            # negative or wide words: take them modulo 2^32
            buf += encode_record(event, words, tsc)
        self.records += 1
        if len(buf) >= self.chunk_bytes:
            self._write_chunk(cpu, buf)

    def _write_chunk(self, cpu: int, buf: bytearray) -> None:
        data = bytes(buf)
        buf.clear()
        with self._out_lock:
            self.out.write(cpu_change_record(cpu, len(data)))
            self.out.write(data)
            self.bytes_written += 12 + len(data)

    def flush(self) -> None:
        """Write every pCPU's pending records (pCPU order), then flush the file."""
        for cpu in range(self.nr_cpus):
            if self._locks is None:
                if self.bufs[cpu]:
                    self._write_chunk(cpu, self.bufs[cpu])
            else:
                with self._locks[cpu]:
                    if self.bufs[cpu]:
                        self._write_chunk(cpu, self.bufs[cpu])
        with self._out_lock:
            self.out.flush()

    def close(self) -> None:
        if not self.closed:
            self.flush()
            self.closed = True

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def host_tracer(writer: TraceWriter, now_ns: Callable[[], int],
                current_cpu: Callable[[], int]) -> Callable[[int, Iterable[int]], None]:
    """A `tracer(event, words)` callable for a host whose pCPU is found by `current_cpu()`
    and whose time is `now_ns()` (hypervisor ns), writing straight into `writer`."""

    def tracer(event: int, words: Iterable[int]) -> None:
        writer.append(current_cpu(), ns_to_tsc(now_ns()), event, words)

    return tracer


# -- reader -----------------------------------------------------------------------------------
class TraceFile:
    """A parsed trace: each pCPU's records in file order."""

    def __init__(self):
        self.per_cpu: dict[int, list[Record]] = {}
        self.chunks = 0
        self.size = 0

    @property
    def cpus(self) -> list[int]:
        return sorted(self.per_cpu)

    def __len__(self) -> int:
        return sum(len(r) for r in self.per_cpu.values())

    def records(self) -> Iterator[Record]:
        """All records with a TSC, merged into time order (ties: pCPU order, then file order)."""
        streams = [((r.tsc, r.cpu, i, r) for i, r in enumerate(self.per_cpu[cpu])
                    if r.tsc is not None) for cpu in self.cpus]
        for _tsc, _cpu, _i, rec in heapq.merge(*streams):
            yield rec

    def first_tsc(self) -> int | None:
        firsts = [next((r.tsc for r in recs if r.tsc is not None), None)
                  for recs in self.per_cpu.values()]
        firsts = [t for t in firsts if t is not None]
        return min(firsts) if firsts else None

    def last_tsc(self) -> int | None:
        lasts = [next((r.tsc for r in reversed(recs) if r.tsc is not None), None)
                 for recs in self.per_cpu.values()]
        lasts = [t for t in lasts if t is not None]
        return max(lasts) if lasts else None


def parse_trace(data: bytes) -> TraceFile:
    """Split a xentrace stream into per-pCPU records (CPU-change records consumed).
    Records before the first CPU-change record are taken as pCPU 0's."""
    tf = TraceFile()
    tf.size = len(data)
    mv = memoryview(data)
    off, end = 0, len(data)
    unpack_from = _U32.unpack_from
    while off < end:
        if end - off < 4:
            raise TraceFormatError(f"truncated record header at byte {off}")
        hdr = unpack_from(data, off)[0]
        if hdr == CPU_CHANGE_HEADER:
            if off + 12 > end:
                raise TraceFormatError(f"truncated CPU-change record at byte {off}")
            cpu, window = _NO_TSC[2].unpack_from(data, off)[1:]
            start = off + 12
            if start + window > end:
                raise TraceFormatError(
                    f"CPU-change record at byte {off} announces {window} bytes, "
                    f"{end - start} left")
            tf.per_cpu.setdefault(cpu, []).extend(decode_records(mv, cpu, start, start + window))
            tf.chunks += 1
            off = start + window
            continue
        # records outside any chunk (a stream without CPU-change records): pCPU 0
        n = (hdr >> TRACE_EXTRA_SHIFT) & TRACE_EXTRA_MAX
        size = (12 if hdr & CYCLES_FLAG else 4) + 4 * n
        tf.per_cpu.setdefault(0, []).extend(decode_records(mv, 0, off, min(end, off + size)))
        off += size
    return tf


def read_trace(path) -> TraceFile:
    with open(path, "rb") as f:
        return parse_trace(f.read())


def event_name(event: int) -> str:
    """A short name for well-known events (for dumps and summaries)."""
    if is_runstate_change(event):
        old, new = runstate_states(event)
        return f"runstate_change {RUNSTATE_NAMES[old]}->{RUNSTATE_NAMES[new]}"
    return _NAMES.get(event, f"0x{event:08x}")


_NAMES = {
    TRC_LOST_RECORDS: "lost_records",
    TRC_TRACE_WRAP_BUFFER: "trace_wrap_buffer",
    TRC_TRACE_CPU_CHANGE: "cpu_change",
    TRC_SCHED_CONTINUE_RUNNING: "continue_running",
    TRC_SCHED_DOM_ADD: "dom_add",
    TRC_SCHED_DOM_REM: "dom_rem",
    TRC_SCHED_SLEEP: "sleep",
    TRC_SCHED_WAKE: "wake",
    TRC_SCHED_YIELD: "yield",
    TRC_SCHED_BLOCK: "block",
    TRC_SCHED_SHUTDOWN: "shutdown",
    TRC_SCHED_CTL: "ctl",
    TRC_SCHED_ADJDOM: "adjdom",
    TRC_SCHED_SWITCH: "switch",
    TRC_SCHED_S_TIMER_FN: "s_timer_fn",
    TRC_SCHED_T_TIMER_FN: "t_timer_fn",
    TRC_SCHED_DOM_TIMER_FN: "dom_timer_fn",
    TRC_SCHED_SWITCH_INFPREV: "switch_infprev",
    TRC_SCHED_SWITCH_INFNEXT: "switch_infnext",
    TRC_SCHED_SHUTDOWN_CODE: "shutdown_code",
    TRC_SCHED_SWITCH_INFCONT: "switch_infcont",
}
_CSCHED2_NAMES = {1: "tick", 2: "runq_pos", 3: "credit_burn", 4: "credit_add",
                  5: "tickle_check", 6: "tickle", 7: "credit_reset", 8: "sched_tasklet",
                  9: "update_load", 10: "runq_assign", 11: "update_vcpu_load",
                  12: "update_runq_load", 13: "tickle_new", 14: "runq_max_weight",
                  15: "migrate", 16: "load_check", 17: "load_balance", 19: "picked_cpu",
                  20: "runq_candidate", 21: "schedule", 22: "ratelimit", 23: "runq_cand_check"}
_NULL_NAMES = {1: "picked_cpu", 2: "vcpu_assign", 3: "vcpu_deassign", 4: "migrate",
               5: "schedule", 6: "tasklet"}
for _n, _s in _CSCHED2_NAMES.items():
    _NAMES[sched_class_evt(TRC_SCHED_CSCHED2, _n)] = f"csched2:{_s}"
for _n, _s in _NULL_NAMES.items():
    _NAMES[sched_class_evt(TRC_SCHED_SNULL, _n)] = f"null:{_s}"
del _n, _s
