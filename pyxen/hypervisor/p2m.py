"""The physical-to-machine map of one domain: guest frame (gfn) → machine frame (mfn).

Each entry also carries a type (what kind of memory it is) and access rights
(read/write/execute), which the vCPU's memory management composes with the
guest's own page tables. The p2m is the single source of truth; vCPU backends
subscribe to changes and bring their engine mappings up to date.
"""

from __future__ import annotations

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


class P2MRun(NamedTuple):
    gfn: int
    mfn: int
    count: int
    access: Access


P2MListener = Callable[[int, int], None]   # (first_gfn, count) changed


class P2M:
    def __init__(self):
        self._entries: dict[int, P2MEntry] = {}
        self._lock = threading.RLock()
        self._listeners: list[P2MListener] = []
        # True while some entry restricts access below what its type allows;
        # vCPUs then need the software TLB to enforce per-page rights.
        self.restricted_pages = 0

    def __len__(self) -> int:
        return len(self._entries)

    def subscribe(self, fn: P2MListener) -> None:
        self._listeners.append(fn)

    def unsubscribe(self, fn: P2MListener) -> None:
        if fn in self._listeners:
            self._listeners.remove(fn)

    def lookup(self, gfn: int) -> P2MEntry | None:
        return self._entries.get(gfn)

    def set_range(self, gfn: int, mfn: int, count: int, type_: P2MType = P2MType.RAM_RW,
                  access: Access = Access.RWX) -> None:
        with self._lock:
            for i in range(count):
                old = self._entries.get(gfn + i)
                if old is not None and old.access != Access.RWX:
                    self.restricted_pages -= 1
                self._entries[gfn + i] = P2MEntry(mfn + i, type_, access)
            if access != Access.RWX:
                self.restricted_pages += count
        self._notify(gfn, count)

    def remove(self, gfn: int, count: int = 1) -> list[P2MEntry]:
        removed = []
        with self._lock:
            for g in range(gfn, gfn + count):
                e = self._entries.pop(g, None)
                if e is not None:
                    removed.append(e)
                    if e.access != Access.RWX:
                        self.restricted_pages -= 1
        if removed:
            self._notify(gfn, count)
        return removed

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.restricted_pages = 0

    def entries(self) -> Iterator[tuple[int, P2MEntry]]:
        with self._lock:
            items = sorted(self._entries.items())
        return iter(items)

    def runs(self, first: int = 0, last: int | None = None) -> list[P2MRun]:
        """Maximal runs of consecutive gfns backed by consecutive mfns with equal rights."""
        out: list[P2MRun] = []
        for gfn, e in self.entries():
            if gfn < first or (last is not None and gfn > last):
                continue
            if out:
                r = out[-1]
                if r.gfn + r.count == gfn and r.mfn + r.count == e.mfn and r.access == e.access:
                    out[-1] = r._replace(count=r.count + 1)
                    continue
            out.append(P2MRun(gfn, e.mfn, 1, e.access))
        return out

    def max_gfn(self) -> int:
        with self._lock:
            return max(self._entries, default=0)

    def _notify(self, gfn: int, count: int) -> None:
        for fn in list(self._listeners):
            fn(gfn, count)
