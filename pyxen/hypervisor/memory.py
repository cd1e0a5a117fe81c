"""Machine memory: the host RAM that backs every domain, handed out in 4 KiB frames.

One anonymous mapping (reserved, not committed: the host only spends memory on
pages a guest touches) is the machine address space; a machine frame number
(MFN) is an index into it. Domains get frames through their p2m; the engine
maps runs of them at guest-physical addresses. Freed frames are returned to
the host and read back as zeroes, so no domain ever sees another's data.
"""

from __future__ import annotations

import ctypes
import mmap
import threading
from array import array

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
NO_OWNER = 0xFFFF   # frame table value of a free (or hypervisor-owned) frame


class OutOfMemory(Exception):
    pass


class MachineMemory:
    def __init__(self, size_bytes: int):
        if size_bytes <= 0 or size_bytes % PAGE_SIZE:
            raise ValueError("machine memory size must be a positive multiple of 4 KiB")
        # MAP_NORESERVE keeps the reservation out of the commit charge (Python 3.11's
        # mmap module lacks the constant; 0x4000 is its Linux value). Without it each
        # host charges its whole machine size, and a process holding a few hosts can
        # no longer fork under the kernel's heuristic overcommit.
        flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_NORESERVE", 0x4000)
        self.size = size_bytes
        self.nr_frames = size_bytes >> PAGE_SHIFT
        self.mm = mmap.mmap(-1, size_bytes, flags=flags)
        self.view = memoryview(self.mm)
        self.host_base = ctypes.addressof(ctypes.c_char.from_buffer(self.mm))
        self._lock = threading.Lock()
        self.frame_pins = None       # grant tables' pin registry, made on first use
        # Free extents as [start_mfn, count], kept sorted; frame 0 stays reserved so
        # that MFN 0 never backs guest memory (catches "0 means none" bugs).
        self._free: list[list[int]] = [[1, self.nr_frames - 1]]
        self.free_frames = self.nr_frames - 1
        # The frame table: which domain owns each machine frame.
        self.owner = array("H", b"\xff\xff" * self.nr_frames)

    def host_address(self, mfn: int) -> int:
        return self.host_base + (mfn << PAGE_SHIFT)

    def frame(self, mfn: int) -> memoryview:
        off = mfn << PAGE_SHIFT
        return self.view[off:off + PAGE_SIZE]

    def alloc(self, count: int, owner: int = NO_OWNER) -> list[tuple[int, int]]:
        """Allocate `count` frames for domain `owner`, preferring one contiguous run.

        Returns a list of (first_mfn, nr) extents. Raises OutOfMemory.
        """
        if count <= 0:
            return []
        with self._lock:
            if count > self.free_frames:
                raise OutOfMemory(f"{count} frames requested, {self.free_frames} free")
            # Best fit among extents large enough; else take extents in order.
            fit = None
            for ext in self._free:
                if ext[1] >= count and (fit is None or ext[1] < fit[1]):
                    fit = ext
            out = []
            if fit is not None:
                out.append((fit[0], count))
                fit[0] += count
                fit[1] -= count
            else:
                need = count
                for ext in self._free:
                    take = min(need, ext[1])
                    if take:
                        out.append((ext[0], take))
                        ext[0] += take
                        ext[1] -= take
                        need -= take
                    if not need:
                        break
            self._free = [e for e in self._free if e[1]]
            self.free_frames -= count
            own = self.owner
            for start, nr in out:
                own[start:start + nr] = array("H", [owner]) * nr
            return out

    def free(self, extents: list[tuple[int, int]]) -> None:
        """Return frames; their contents are discarded (read back as zero)."""
        with self._lock:
            for start, nr in extents:
                self.mm.madvise(mmap.MADV_DONTNEED, start << PAGE_SHIFT, nr << PAGE_SHIFT)
                self.owner[start:start + nr] = array("H", [NO_OWNER]) * nr
                self._free.append([start, nr])
                self.free_frames += nr
            self._free.sort()
            merged: list[list[int]] = []
            for ext in self._free:
                if merged and merged[-1][0] + merged[-1][1] == ext[0]:
                    merged[-1][1] += ext[1]
                else:
                    merged.append(ext)
            self._free = merged

    def used_bytes_resident(self) -> int:
        """Host memory actually committed (pages ever touched and not freed)."""
        try:
            import os
            pagesize = os.sysconf("SC_PAGE_SIZE")
            vec = bytearray((self.size + pagesize - 1) // pagesize)
            libc = ctypes.CDLL(None, use_errno=True)
            libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
            buf = (ctypes.c_char * len(vec)).from_buffer(vec)
            if libc.mincore(ctypes.c_void_p(self.host_base), ctypes.c_size_t(self.size), buf):
                return -1
            return (len(vec) - vec.count(0)) * pagesize
        except OSError:
            return -1
