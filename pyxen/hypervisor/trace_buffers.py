"""The hypervisor's trace buffers (Xen's common/trace.c): per-pCPU rings that xentrace maps.

Layout, as the public trace.h and xentrace expect it:

* **t_info** (shared read-only with Dom0): u16 tbuf_size (pages per pCPU
  buffer), u16 mfn_offset[NR_CPUS], then, as u32 words starting at word
  `T_INFO_FIRST_OFFSET`, each pCPU's list of buffer MFNs; mfn_offset[cpu] is
  the word index of pCPU cpu's list. Its frames are contiguous: sysctl tbuf_op
  GET_INFO reports the first MFN and the byte size.
* **a pCPU buffer** (shared writable: the consumer advances `cons`): struct
  t_buf {u32 cons, prod} then `data_size` bytes of records, data_size =
  pages * 4096 - 8. prod and cons are byte counters modulo 2 * data_size, so a
  full buffer (prod - cons == data_size) differs from an empty one; a record
  goes at offset 8 + (prod mod data_size).

A record that does not fit before the end of the data area is preceded by a
TRC_TRACE_WRAP_BUFFER record padding exactly to the end (with a TSC when it
needs more than 7 data words to fill the gap). When a record does not fit in
the free space it is counted as lost; the next record that fits is preceded by
TRC_LOST_RECORDS {u32 count, u16 domid, u16 vcpu, u64 TSC of the first loss}
(always with a TSC, 28 bytes). Filtering is Xen's: the event must share a bit
with evt_mask, and with its class bits (31:16), and with its subclass bits
(15:12), and the pCPU must be in cpu_mask.

The frames belong to DOMID_XEN; Dom0 maps them by MFN through privcmd
(`Hypervisor.map_foreign_frames` with DOMID_XEN reaches only frames shared
here). Buffers, once sized, stay for the host's life (SET_SIZE is one-shot).
`on` is Xen's tb_init_done: producers test it before doing anything else.
"""

from __future__ import annotations

import struct
import threading
from typing import TYPE_CHECKING

from ..abi import structs as S
from ..abi.constants import DOMID_XEN, Errno
from .memory import PAGE_SIZE, OutOfMemory
from .sched.trace import (
    DOMID_IDLE,
    TRACE_EXTRA_MAX,
    TRC_ALL,
    TRC_LOST_RECORDS,
    TRC_TRACE_WRAP_BUFFER,
    encode_record,
    ns_to_tsc,
)

if TYPE_CHECKING:
    from .hypervisor import Hypervisor

NR_CPUS = 256                   # Xen's build-time CPU limit (x86 default): t_info's array
T_BUF_SIZE = S.T_BUF.size       # cons, prod
# t_info's MFN lists start after tbuf_size and mfn_offset[NR_CPUS], in u32 words.
T_INFO_FIRST_OFFSET = (S.T_INFO.size + 2 * NR_CPUS + 3) // 4
LOST_REC_SIZE = 4 + 8 + 16      # header, TSC, {u32 lost, u16 dom, u16 vcpu, u64 first TSC}
_U32 = struct.Struct("<I")
_U16 = struct.Struct("<H")
_PROD_CONS = struct.Struct("<II")
_CLS_SHIFT = 16
_SUBCLS_SHIFT = 12


class TraceBufferError(Exception):
    """A tbuf_op the hypervisor refuses: the errno it returns."""

    def __init__(self, errno: Errno, message: str = ""):
        super().__init__(message or errno.name)
        self.errno = errno


class _CpuBuffer:
    """One pCPU's ring: its frames (views into machine memory) and Xen's per-cpu state."""

    __slots__ = ("mfns", "pages", "lock", "lost", "lost_first_tsc", "contig")

    def __init__(self, mfns: list[int], pages: list[memoryview], contig: memoryview | None):
        self.mfns = mfns
        self.pages = pages
        self.contig = contig         # one view of the whole buffer when its frames are a run
        self.lock = threading.Lock()
        self.lost = 0
        self.lost_first_tsc = 0

    def write(self, off: int, data: bytes) -> None:
        if self.contig is not None:
            self.contig[off:off + len(data)] = data
            return
        pos = 0
        while pos < len(data):
            page, inpage = divmod(off + pos, PAGE_SIZE)
            n = min(len(data) - pos, PAGE_SIZE - inpage)
            self.pages[page][inpage:inpage + n] = data[pos:pos + n]
            pos += n


class TraceBuffers:
    def __init__(self, hv: Hypervisor):
        self.hv = hv
        self.on = False               # tb_init_done: the one check producers make
        self.evt_mask = TRC_ALL
        self.cpu_on = [True] * NR_CPUS   # tb_cpu_mask: every pCPU
        self.pages = 0                # opt_tbuf_size: pages per pCPU buffer, 0 = none yet
        self.data_size = 0
        self.t_info_mfn = 0
        self.t_info_pages = 0
        self._bufs: list[_CpuBuffer] = []
        self._ctl = threading.Lock()  # tb_control's lock

    # -- sysctl tbuf_op ------------------------------------------------------------------------
    def get_info(self) -> tuple[int, int, int]:
        """(evt_mask, t_info's first MFN or 0, t_info's size in bytes)."""
        with self._ctl:
            return self.evt_mask, self.t_info_mfn, self.t_info_pages * PAGE_SIZE

    def cpu_mask(self) -> set[int]:
        return {c for c, on in enumerate(self.cpu_on) if on}

    def set_cpu_mask(self, cpus: set[int]) -> None:
        with self._ctl:
            self.cpu_on = [c in cpus for c in range(NR_CPUS)]

    def set_evt_mask(self, mask: int) -> None:
        with self._ctl:
            self.evt_mask = mask & 0xFFFF_FFFF

    def set_size(self, pages: int) -> None:
        """Allocate the buffers, `pages` per pCPU (one-shot, like Xen)."""
        with self._ctl:
            if self.pages and pages != self.pages:
                raise TraceBufferError(Errno.EINVAL, "trace buffer size is set already")
            if self._bufs:
                raise TraceBufferError(Errno.EBUSY, "trace buffers exist")
            if pages <= 0:
                raise TraceBufferError(Errno.EINVAL, "no pages")
            self._allocate(pages)

    def enable(self) -> None:
        with self._ctl:
            if not self.pages:
                raise TraceBufferError(Errno.EINVAL, "no trace buffers")
            self.on = True

    def disable(self) -> None:
        """Stop new records (the buffers stay); forget pending lost-record counts."""
        with self._ctl:
            self.on = False
            for b in self._bufs:
                with b.lock:
                    b.lost = 0

    # -- allocation -------------------------------------------------------------------------
    def _allocate(self, pages: int) -> None:
        hv = self.hv
        ncpus = hv.sched.nr_cpus
        if ncpus > NR_CPUS:
            raise TraceBufferError(Errno.EINVAL, f"more than {NR_CPUS} pCPUs")
        # Xen's calculate_tbuf_size: prod/cons must reach 2 * data_size in a u32, the page
        # count fit tbuf_size (u16) and the last list's offset fit mfn_offset (u16).
        max_pages = min(0xFFFF, 0xFFFF_FFFF // PAGE_SIZE)
        max_off = 0xFFFF - T_INFO_FIRST_OFFSET
        if ncpus > 1:
            max_off //= ncpus - 1
        pages = min(pages, max_pages, max_off)
        words = ncpus * pages + T_INFO_FIRST_OFFSET
        t_info_pages = (words * 4 + PAGE_SIZE - 1) // PAGE_SIZE
        machine = hv.machine
        got: list[list[tuple[int, int]]] = []
        try:
            ext = machine.alloc(t_info_pages, owner=DOMID_XEN)
            got.append(ext)
            if len(ext) != 1:
                raise OutOfMemory("t_info needs contiguous frames")
            t_info_mfn = ext[0][0]
            per_cpu = []
            for _cpu in range(ncpus):
                ext = machine.alloc(pages, owner=DOMID_XEN)
                got.append(ext)
                per_cpu.append(ext)
        except OutOfMemory:
            for ext in got:
                machine.free(ext)
            hv.log.warning("xentrace: allocation failed! Tracing disabled.")
            raise TraceBufferError(Errno.ENOMEM) from None
        t_info = machine.view[t_info_mfn * PAGE_SIZE:(t_info_mfn + t_info_pages) * PAGE_SIZE]
        t_info[:] = bytes(len(t_info))
        _U16.pack_into(t_info, 0, pages)
        bufs = []
        for cpu, ext in enumerate(per_cpu):
            offset = T_INFO_FIRST_OFFSET + cpu * pages
            _U16.pack_into(t_info, S.T_INFO.size + 2 * cpu, offset)
            mfns = [m for start, n in ext for m in range(start, start + n)]
            for i, mfn in enumerate(mfns):
                _U32.pack_into(t_info, 4 * (offset + i), mfn)
            contig = None
            if len(ext) == 1:
                start = ext[0][0]
                contig = machine.view[start * PAGE_SIZE:(start + pages) * PAGE_SIZE]
            b = _CpuBuffer(mfns, [machine.frame(m) for m in mfns], contig)
            b.write(0, _PROD_CONS.pack(0, 0))
            bufs.append(b)
        hv.share_xen_frames(range(t_info_mfn, t_info_mfn + t_info_pages), writable=False)
        for b in bufs:
            hv.share_xen_frames(b.mfns, writable=True)
        self._bufs = bufs
        self.t_info_mfn = t_info_mfn
        self.t_info_pages = t_info_pages
        self.data_size = pages * PAGE_SIZE - T_BUF_SIZE
        self.pages = pages
        hv.log.info(f"xentrace: {pages} pages per pCPU on {ncpus} pCPUs, "
                    f"t_info at mfn {t_info_mfn:#x} ({t_info_pages} pages)")

    # -- producing records ------------------------------------------------------------------
    def wants(self, event: int, cpu: int) -> bool:
        m = self.evt_mask
        return bool(m & event and (m >> _CLS_SHIFT) & (event >> _CLS_SHIFT)
                    and (m >> _SUBCLS_SHIFT) & (event >> _SUBCLS_SHIFT) & 0xF
                    and 0 <= cpu < NR_CPUS and self.cpu_on[cpu])

    def trace(self, cpu: int, event: int, words=()) -> None:
        """Record `event` with `words` (u32 each, at most 7) in pCPU `cpu`'s buffer, with
        the hypervisor's time as TSC. Producers check `on` first."""
        if not self.on or not self.wants(event, cpu):
            return
        bufs = self._bufs
        if not 0 <= cpu < len(bufs):
            return
        words = tuple(words)[:TRACE_EXTRA_MAX]
        b = bufs[cpu]
        with b.lock:
            tsc = ns_to_tsc(self.hv.now())
            bogus = self._insert(b, cpu, event, words, tsc)
        if bogus:                       # logged outside the buffer lock
            self.hv.log.warning(bogus)

    def _insert(self, b: _CpuBuffer, cpu: int, event: int, words: tuple,
                tsc: int) -> str | None:
        data_size = self.data_size
        two = 2 * data_size
        prod, cons = self._prod_cons(b)
        if prod & 3 or prod >= two or cons & 3 or cons >= two:
            self.on = False             # Xen's "bogus prod/cons": stop tracing
            return f"trc#{cpu}: bogus prod ({prod:08x}) and/or cons ({cons:08x})"
        used = (prod - cons) % two
        avail = data_size - used
        to_wrap = data_size - prod
        if to_wrap <= 0:
            to_wrap += data_size
        rec_size = 12 + 4 * len(words)
        # Dry run: what writing the lost-records record, padding and this record takes.
        total = 0
        wrap = to_wrap
        if b.lost:
            if LOST_REC_SIZE > wrap:
                total += wrap
                wrap = data_size
            total += LOST_REC_SIZE
            wrap -= LOST_REC_SIZE
            if wrap == 0:
                wrap = data_size
        if rec_size > wrap:
            total += wrap
        total += rec_size
        if total > avail:
            b.lost += 1
            if b.lost == 1:
                b.lost_first_tsc = tsc
            return None
        if b.lost:
            if LOST_REC_SIZE > to_wrap:
                prod = self._put(b, prod, self._wrap_record(to_wrap, tsc))
                to_wrap = data_size
            dom, vcpu = self._current(cpu)
            first = b.lost_first_tsc
            rec = encode_record(TRC_LOST_RECORDS,
                                (b.lost, dom | vcpu << 16, first, first >> 32), tsc)
            b.lost = 0
            prod = self._put(b, prod, rec)
            to_wrap -= LOST_REC_SIZE
            if to_wrap == 0:
                to_wrap = data_size
        if rec_size > to_wrap:
            prod = self._put(b, prod, self._wrap_record(to_wrap, tsc))
        self._put(b, prod, encode_record(event, words, tsc))
        return None

    def _prod_cons(self, b: _CpuBuffer) -> tuple[int, int]:
        if b.contig is not None:
            cons, prod = _PROD_CONS.unpack_from(b.contig, 0)
        else:
            cons, prod = _PROD_CONS.unpack_from(b.pages[0], 0)
        return prod, cons

    def _put(self, b: _CpuBuffer, prod: int, rec: bytes) -> int:
        """Write one record at prod, then publish the new prod (after the data)."""
        data_size = self.data_size
        off = prod - data_size if prod >= data_size else prod
        b.write(T_BUF_SIZE + off, rec)
        prod += len(rec)
        if prod >= 2 * data_size:
            prod -= 2 * data_size
        b.write(4, _U32.pack(prod))
        return prod

    @staticmethod
    def _wrap_record(space: int, tsc: int) -> bytes:
        """A TRC_TRACE_WRAP_BUFFER record exactly `space` bytes long (4 <= space < 40)."""
        extra = (space - 4) // 4
        if extra > TRACE_EXTRA_MAX:
            return encode_record(TRC_TRACE_WRAP_BUFFER, (0,) * (extra - 2), tsc)
        return encode_record(TRC_TRACE_WRAP_BUFFER, (0,) * extra)

    def _current(self, cpu: int) -> tuple[int, int]:
        """(domid, vcpu) running on `cpu` (its idle vCPU when none)."""
        pcpus = self.hv.sched.pcpus
        unit = pcpus[cpu].current if cpu < len(pcpus) else None
        if unit is None:
            return DOMID_IDLE, cpu
        return unit.domid, unit.vcpu_id


__all__ = ["TraceBuffers", "TraceBufferError", "NR_CPUS", "T_INFO_FIRST_OFFSET",
           "LOST_REC_SIZE"]
