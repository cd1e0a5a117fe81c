"""Recording a running host's trace, as xentrace does: the toolstack side of the trace buffers.

`TraceRecorder` uses only the hypercall interface: XenCtrl's tbuf_* wrappers
(sysctl tbuf_op) to size, filter and switch the buffers, and Privcmd foreign
mappings of DOMID_XEN's frames to read them (t_info read-only, each pCPU's
buffer writable, because the consumer advances its `cons`). Each poll copies
what every pCPU produced since the last one into the output file as a chunk:
a TRC_TRACE_CPU_CHANGE record {cpu, window size} and the window's bytes,
wrapping at the end of the data area (the format sched/trace.py reads).
`stop()` disables tracing and drains what is left.
"""

from __future__ import annotations

import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO

from ..abi import structs as S
from ..abi.constants import DOMID_XEN
from ..hypervisor.sched.trace import (
    CYCLES_FLAG,
    EVENT_MASK,
    TRACE_EXTRA_MAX,
    TRACE_EXTRA_SHIFT,
    TRC_ALL,
    TRC_LOST_RECORDS,
    TRC_TRACE_WRAP_BUFFER,
    cpu_change_record,
)
from .privcmd import Privcmd
from .xenctrl import XenCtrl

PAGE_SIZE = 4096
DEFAULT_PAGES = 128              # per pCPU (512 KiB), when the host has none yet (xentrace -S)
POLL_S = 0.02                    # between polls (xentrace's -s, default 100 ms)
_U32 = struct.Struct("<I")
_U16 = struct.Struct("<H")


@dataclass
class RecordStats:
    records: int = 0             # records written (without padding and CPU-change records)
    bytes: int = 0               # bytes written to the file
    lost: int = 0                # records the hypervisor reported lost (TRC_LOST_RECORDS)
    chunks: int = 0
    per_cpu: dict[int, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"records": self.records, "bytes": self.bytes, "lost": self.lost,
                "chunks": self.chunks,
                "per_cpu": {str(c): n for c, n in sorted(self.per_cpu.items())}}


class _Ring:
    """One pCPU's mapped buffer: page views, {cons, prod} in the first page."""

    def __init__(self, cpu: int, pages: list[memoryview]):
        self.cpu = cpu
        self.pages = pages
        self.head = pages[0]

    def prod_cons(self) -> tuple[int, int]:
        cons, prod = struct.unpack_from("<II", self.head, 0)
        return prod, cons

    def set_cons(self, cons: int) -> None:
        _U32.pack_into(self.head, 0, cons)

    def read(self, off: int, n: int) -> bytes:
        """n bytes from buffer offset off (the t_buf header included in offsets)."""
        out = bytearray()
        while n > 0:
            page, inpage = divmod(off, PAGE_SIZE)
            k = min(n, PAGE_SIZE - inpage)
            out += self.pages[page][inpage:inpage + k]
            off += k
            n -= k
        return bytes(out)


class TraceRecorder:
    """Record the host's trace buffers into `out` (a binary file)."""

    def __init__(self, xc: XenCtrl, privcmd: Privcmd, out: BinaryIO, *,
                 event_mask: int = TRC_ALL, cpus: set[int] | None = None,
                 pages: int = DEFAULT_PAGES, poll_s: float = POLL_S, discard: bool = True):
        self.xc = xc
        self.privcmd = privcmd
        self.out = out
        self.event_mask = event_mask
        self.cpus = cpus
        self.pages = pages
        self.poll_s = poll_s
        self.discard = discard
        self.stats = RecordStats()
        self.rings: list[_Ring] = []
        self.data_size = 0
        self.started = False

    # -- set-up -----------------------------------------------------------------------------
    def start(self) -> None:
        """Size the buffers if the host has none, set the masks, map, enable."""
        xc = self.xc
        mfn, size, _mask = xc.tbuf_get_info()
        if mfn == 0:
            xc.tbuf_set_size(self.pages)
            mfn, size, _mask = xc.tbuf_get_info()
        nr_cpus = xc.physinfo().nr_cpus
        xc.tbuf_set_evt_mask(self.event_mask)
        xc.tbuf_set_cpu_mask(set(range(nr_cpus)) if self.cpus is None else set(self.cpus))
        t_info = self.privcmd.map_foreign(DOMID_XEN, list(range(mfn, mfn + size // PAGE_SIZE)),
                                          writable=False)
        info = b"".join(bytes(p) for p in t_info)
        tbuf_pages = S.T_INFO.unpack(info).tbuf_size
        self.data_size = tbuf_pages * PAGE_SIZE - S.T_BUF.size
        self.rings = []
        for cpu in range(nr_cpus):
            offset = _U16.unpack_from(info, S.T_INFO.size + 2 * cpu)[0]
            mfns = [_U32.unpack_from(info, 4 * (offset + i))[0] for i in range(tbuf_pages)]
            ring = _Ring(cpu, self.privcmd.map_foreign(DOMID_XEN, mfns, writable=True))
            if self.discard:             # xentrace -D: drop what an earlier run left
                ring.set_cons(ring.prod_cons()[0])
            self.rings.append(ring)
        xc.tbuf_enable()
        self.started = True

    # -- copying ----------------------------------------------------------------------------
    def poll(self) -> int:
        """Copy every pCPU's new records to the file; returns the bytes copied."""
        copied = 0
        data_size = self.data_size
        for ring in self.rings:
            prod, cons = ring.prod_cons()
            if prod == cons:
                continue
            start = cons % data_size
            end = prod % data_size
            hdr = S.T_BUF.size
            if end > start:
                data = ring.read(hdr + start, end - start)
            else:                        # wrapped (or full): tail, then head
                data = ring.read(hdr + start, data_size - start) + ring.read(hdr, end)
            self.out.write(cpu_change_record(ring.cpu, len(data)))
            self.out.write(data)
            ring.set_cons(prod)
            self._count(ring.cpu, data)
            self.stats.bytes += 12 + len(data)
            self.stats.chunks += 1
            copied += len(data)
        return copied

    def _count(self, cpu: int, data: bytes) -> None:
        """Count records and lost records in a copied window (walking the headers)."""
        off, end = 0, len(data)
        n = 0
        st = self.stats
        while off + 4 <= end:
            hdr = _U32.unpack_from(data, off)[0]
            extra = (hdr >> TRACE_EXTRA_SHIFT) & TRACE_EXTRA_MAX
            tsc = 8 if hdr & CYCLES_FLAG else 0
            event = hdr & EVENT_MASK
            if event == TRC_LOST_RECORDS and extra and off + 4 + tsc + 4 <= end:
                st.lost += _U32.unpack_from(data, off + 4 + tsc)[0]
            if event != TRC_TRACE_WRAP_BUFFER:
                n += 1
            off += 4 + tsc + 4 * extra
        st.records += n
        st.per_cpu[cpu] = st.per_cpu.get(cpu, 0) + n

    # -- running ----------------------------------------------------------------------------
    def stop(self) -> RecordStats:
        """Disable tracing, copy what is left, drop the mappings."""
        if self.started:
            self.started = False
            self.xc.tbuf_disable()
            self.poll()
            self.out.flush()
        self.rings = []
        return self.stats

    def record(self, seconds: float, *, stop: threading.Event | None = None,
               progress: Callable[[float, RecordStats], None] | None = None,
               progress_every: float = 1.0) -> RecordStats:
        """start(), poll for `seconds` (or until `stop` is set), stop(). `progress(elapsed,
        stats)` is called about every `progress_every` seconds."""
        self.start()
        try:
            t0 = time.monotonic()
            next_report = t0 + progress_every
            stop = stop or threading.Event()
            while True:
                now = time.monotonic()
                if now - t0 >= seconds or stop.is_set():
                    break
                self.poll()
                if progress is not None and now >= next_report:
                    next_report += progress_every
                    progress(now - t0, self.stats)
                stop.wait(min(self.poll_s, max(0.0, seconds - (now - t0))))
        finally:
            self.stop()
        return self.stats


__all__ = ["TraceRecorder", "RecordStats", "DEFAULT_PAGES"]
