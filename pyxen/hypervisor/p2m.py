"""The physical-to-machine map of one domain: guest frame (gfn) → machine frame (mfn).

Each entry also carries a type (what kind of memory it is) and access rights
(read/write/execute), which the vCPU's memory management composes with the
guest's own page tables. The p2m is the single source of truth; vCPU backends
subscribe to changes and bring their engine mappings up to date.

Storage: extents (runs of gfns backed by consecutive mfns with the same type
and rights), so populating a 1 GiB domain is a handful of operations; per-page
entries are materialised on first lookup, which keeps lookups a dict access.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Iterator
from enum import IntEnum, IntFlag
from typing import NamedTuple


class Access(IntFlag):
    """Access rights of a p2m entry (same bit values as the engine's protections)."""
    NONE = 0
    R = 1
    W = 2
    X = 4
    RW = 3
    RX = 5
    RWX = 7


class P2MType(IntEnum):
    RAM_RW = 0        # ordinary guest RAM
    RAM_RO = 1        # RAM the guest may read but not write (writes are dropped)
    SPECIAL = 2       # pages the toolstack/hypervisor shares with the guest (rings, start info)
    GRANT_MAP_RW = 3  # another domain's page mapped through a grant
    GRANT_MAP_RO = 4
    FOREIGN = 5       # another domain's page mapped by a privileged domain


class P2MEntry(NamedTuple):
    mfn: int
    type: P2MType
    access: Access
    rights: int          # `access` as a plain int, for the hot paths (TLB fills)


class P2MRun(NamedTuple):
    gfn: int
    mfn: int
    count: int
    access: Access


class _Extent(NamedTuple):
    gfn: int
    count: int
    mfn: int
    type: P2MType
    access: Access


P2MListener = Callable[[int, int], None]   # (first_gfn, count) changed
_MISSING = object()
_CACHE_LIMIT = 1 << 20


class P2M:
    def __init__(self):
        self._starts: list[int] = []            # sorted extent start gfns
        self._extents: dict[int, _Extent] = {}
        self._cache: dict[int, P2MEntry] = {}   # materialised per-page entries
        self._lock = threading.RLock()
        self._listeners: list[P2MListener] = []
        # Pages whose rights are below RWX; vCPUs then need the software TLB to
        # enforce per-page rights.
        self.restricted_pages = 0

    def __len__(self) -> int:
        return sum(e.count for e in self._extents.values())

    def subscribe(self, fn: P2MListener) -> None:
        self._listeners.append(fn)

    def unsubscribe(self, fn: P2MListener) -> None:
        if fn in self._listeners:
            self._listeners.remove(fn)

    # -- lookups (hot) ---------------------------------------------------------------
    def lookup(self, gfn: int) -> P2MEntry | None:
        e = self._cache.get(gfn, _MISSING)
        if e is _MISSING:
            return self._materialise(gfn)
        return e

    def _materialise(self, gfn: int) -> P2MEntry | None:
        with self._lock:
            ext = self._extent_at(gfn)
            if ext is None:
                return None
            e = P2MEntry(ext.mfn + (gfn - ext.gfn), ext.type, ext.access, int(ext.access))
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[gfn] = e
            return e

    def _extent_at(self, gfn: int) -> _Extent | None:
        i = bisect.bisect_right(self._starts, gfn) - 1
        if i < 0:
            return None
        ext = self._extents[self._starts[i]]
        return ext if gfn < ext.gfn + ext.count else None

    # -- changes ----------------------------------------------------------------------
    def set_range(self, gfn: int, mfn: int, count: int, type_: P2MType = P2MType.RAM_RW,
                  access: Access = Access.RWX) -> None:
        if count <= 0:
            return
        with self._lock:
            self._cut(gfn, count)
            self._insert(_Extent(gfn, count, mfn, P2MType(type_), Access(access)))
        self._notify(gfn, count)

    def remove(self, gfn: int, count: int = 1) -> list[P2MEntry]:
        """Remove a range; returns the entries that were there."""
        with self._lock:
            removed = self._cut(gfn, count)
        if removed:
            self._notify(gfn, count)
        return [P2MEntry(x.mfn + i, x.type, x.access, int(x.access))
                for x in removed for i in range(x.count)]

    def removed_extents(self, gfn: int, count: int) -> list[tuple[int, int]]:
        """Remove a range; returns (mfn, count) runs that backed it."""
        with self._lock:
            removed = self._cut(gfn, count)
        if removed:
            self._notify(gfn, count)
        return [(x.mfn, x.count) for x in removed]

    def clear(self) -> None:
        with self._lock:
            self._starts.clear()
            self._extents.clear()
            self._cache.clear()
            self.restricted_pages = 0

    def _insert(self, ext: _Extent) -> None:
        bisect.insort(self._starts, ext.gfn)
        self._extents[ext.gfn] = ext
        if ext.access != Access.RWX:
            self.restricted_pages += ext.count

    def _drop(self, ext: _Extent) -> None:
        self._starts.pop(bisect.bisect_left(self._starts, ext.gfn))
        del self._extents[ext.gfn]
        if ext.access != Access.RWX:
            self.restricted_pages -= ext.count

    def _cut(self, gfn: int, count: int) -> list[_Extent]:
        """Remove [gfn, gfn+count) from the extents; returns the removed pieces."""
        end = gfn + count
        removed: list[_Extent] = []
        i = max(bisect.bisect_right(self._starts, gfn) - 1, 0)
        touched = []
        while i < len(self._starts) and self._starts[i] < end:
            ext = self._extents[self._starts[i]]
            if ext.gfn + ext.count > gfn:
                touched.append(ext)
            i += 1
        for ext in touched:
            self._drop(ext)
            lo, hi = max(ext.gfn, gfn), min(ext.gfn + ext.count, end)
            removed.append(ext._replace(gfn=lo, count=hi - lo, mfn=ext.mfn + (lo - ext.gfn)))
            if ext.gfn < lo:
                self._insert(ext._replace(count=lo - ext.gfn))
            if hi < ext.gfn + ext.count:
                self._insert(ext._replace(gfn=hi, count=ext.gfn + ext.count - hi,
                                          mfn=ext.mfn + (hi - ext.gfn)))
        if touched:
            cache = self._cache
            if count < len(cache):
                for g in range(gfn, end):
                    cache.pop(g, None)
            else:
                for g in [g for g in cache if gfn <= g < end]:
                    del cache[g]
        return removed

    # -- views ------------------------------------------------------------------------
    def entries(self) -> Iterator[tuple[int, P2MEntry]]:
        with self._lock:
            exts = [self._extents[s] for s in self._starts]
        for x in exts:
            for i in range(x.count):
                yield x.gfn + i, P2MEntry(x.mfn + i, x.type, x.access, int(x.access))

    def runs(self, first: int = 0, last: int | None = None) -> list[P2MRun]:
        """Maximal runs of consecutive gfns backed by consecutive mfns with equal rights."""
        with self._lock:
            exts = [self._extents[s] for s in self._starts]
        out: list[P2MRun] = []
        for x in exts:
            lo = max(x.gfn, first)
            hi = x.gfn + x.count if last is None else min(x.gfn + x.count, last + 1)
            if lo >= hi:
                continue
            mfn = x.mfn + (lo - x.gfn)
            if out:
                r = out[-1]
                if r.gfn + r.count == lo and r.mfn + r.count == mfn and r.access == x.access:
                    out[-1] = r._replace(count=r.count + hi - lo)
                    continue
            out.append(P2MRun(lo, mfn, hi - lo, x.access))
        return out

    def backing(self) -> list[tuple[int, int]]:
        """(mfn, count) of every extent, for freeing a domain's memory."""
        with self._lock:
            return [(x.mfn, x.count) for x in self._extents.values()]

    def max_gfn(self) -> int:
        with self._lock:
            if not self._starts:
                return 0
            x = self._extents[self._starts[-1]]
            return x.gfn + x.count - 1

    def _notify(self, gfn: int, count: int) -> None:
        for fn in list(self._listeners):
            fn(gfn, count)
