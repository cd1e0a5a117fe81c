"""Grant tables (v1): the pages a domain lets others use, and its mappings of others' pages.

Every domain has one GrantTable in two roles:

* granter: the shared entries (grant_entry_v1, 512 per 4 KiB frame) live in
  hypervisor-owned machine frames that the guest maps into its physmap;
  `active` shadows each entry in use by another domain (who, which machine
  frame, pin counts per kind of use, as Xen keeps them).
* mapper: `maptrack` holds each mapping this domain made of another domain's
  grant; the mapping handle is its index.

Frame lifetime: a frame that another domain maps (or copies through a grant)
is pinned in the host's FramePins. If its owner gives it up while it is
pinned (ballooning, destruction), it leaves the owner's accounts but stays
allocated, owned by DOMID_XEN, until the last pin is dropped; only then does
it return to the free pool. No domain can reach a frame that was reused.

Locks, outermost first: grant-table locks (two at once in creation order),
Domain.lock, the FramePins lock, machine memory's lock. A domain's
atomic_update() gate is taken alone, only around one entry's flag word, and
never while holding a Domain.lock.
"""

from __future__ import annotations

import contextlib
import itertools
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..abi.constants import (
    DOMID_SELF,
    DOMID_XEN,
    GRANT_ENTRY_V1_SIZE,
    GNTMAP_device_map,
    GNTMAP_host_map,
    GNTMAP_readonly,
    GntSt,
    GTF_permit_access,
    GTF_reading,
    GTF_readonly,
    GTF_sub_page,
    GTF_type_mask,
    GTF_writing,
)
from .memory import PAGE_SHIFT, PAGE_SIZE, MachineMemory, OutOfMemory
from .p2m import Access, P2MType

if TYPE_CHECKING:
    from .domain import Domain

ENTRIES_PER_FRAME = PAGE_SIZE // GRANT_ENTRY_V1_SIZE
MAPTRACK_PER_FRAME = PAGE_SIZE // 16      # Xen's maptrack entries are 16 bytes
INITIAL_FRAMES = 1
PIN_LIMIT = 0x80                          # Xen refuses a pin count reaching 128
MAX_GFN = 1 << 36                         # guest-physical frames the p2m accepts
INVALID_GFN = (1 << 64) - 1               # "not in the physmap" (INVALID_M2P_ENTRY)

_COMBO = struct.Struct("<HH")             # flags, domid: the word Xen updates as one
_FRAME = struct.Struct("<I")
_RAM = (P2MType.RAM_RW, P2MType.RAM_RO)
_table_order = itertools.count()


# ---------------------------------------------------------------------------
# Frame pins (one registry per machine memory)
# ---------------------------------------------------------------------------

class FramePins:
    """Machine frames in use through grants, and those whose owner let them go meanwhile."""

    def __init__(self, machine: MachineMemory):
        self.machine = machine
        self._lock = threading.Lock()
        self._pins: dict[int, int] = {}
        self._orphans: set[int] = set()

    def pin(self, mfn: int) -> None:
        with self._lock:
            self._pins[mfn] = self._pins.get(mfn, 0) + 1

    def unpin(self, mfn: int) -> None:
        with self._lock:
            left = self._pins[mfn] - 1
            if left:
                self._pins[mfn] = left
                return
            del self._pins[mfn]
            if mfn not in self._orphans:
                return
            self._orphans.discard(mfn)
            self.machine.free([(mfn, 1)])

    def count(self, mfn: int) -> int:
        with self._lock:
            return self._pins.get(mfn, 0)

    def is_orphan(self, mfn: int) -> bool:
        with self._lock:
            return mfn in self._orphans

    def free_unless_pinned(self, extents: list[tuple[int, int]]) -> int:
        """The owner gives these frames up: free them, except pinned ones, which
        become DOMID_XEN's until their last unpin. Returns how many were given up."""
        total = sum(n for _, n in extents)
        with self._lock:
            if not self._pins:
                self.machine.free(extents)
                return total
            pinned = sorted(self._pins)
            free: list[tuple[int, int]] = []
            for mfn, n in extents:
                lo, end = mfn, mfn + n
                for p in pinned:
                    if lo <= p < end:
                        if p > lo:
                            free.append((lo, p - lo))
                        self._orphans.add(p)
                        self.machine.owner[p] = DOMID_XEN
                        lo = p + 1
                if lo < end:
                    free.append((lo, end - lo))
            if free:
                self.machine.free(free)
        return total


_pins_lock = threading.Lock()


def frame_pins(machine: MachineMemory) -> FramePins:
    """The machine's pin registry. It lives on the machine object (a module-level
    weak-keyed map would be kept alive by its own value, which refers to the
    machine, and leak every host's memory reservation)."""
    with _pins_lock:
        pins = getattr(machine, "frame_pins", None)
        if pins is None:
            pins = machine.frame_pins = FramePins(machine)
        return pins


# ---------------------------------------------------------------------------
# Per-entry and per-mapping state
# ---------------------------------------------------------------------------

class _Active:
    """An entry in use: who uses it, which frame, and how (Xen's pin counts)."""

    __slots__ = ("domid", "mfn", "host_w", "host_r", "dev_w", "dev_r")

    def __init__(self, domid: int, mfn: int):
        self.domid = domid
        self.mfn = mfn
        self.host_w = self.host_r = self.dev_w = self.dev_r = 0

    def pinned(self) -> bool:
        return bool(self.host_w or self.host_r or self.dev_w or self.dev_r)

    def write_pinned(self) -> bool:
        return bool(self.host_w or self.dev_w)

    def pin_limit_reached(self) -> bool:
        return max(self.host_w, self.host_r, self.dev_w, self.dev_r) >= PIN_LIMIT


@dataclass
class _Mapping:
    """A maptrack entry: this domain's mapping of `table`'s entry `ref`."""
    table: GrantTable
    ref: int
    flags: int           # GNTMAP_* still in force (host_map/device_map cleared by unmaps)
    readonly: bool
    mfn: int


class GrantError(Exception):
    """Ends one grant operation with a GNTST_* status (never leaves this package)."""

    def __init__(self, status: int):
        super().__init__(GntSt(status).name)
        self.status = int(status)


@contextlib.contextmanager
def _both_locked(a: GrantTable, b: GrantTable) -> Iterator[None]:
    first, second = (a, b) if a.order <= b.order else (b, a)
    with first.lock:
        if second is first:
            yield
        else:
            with second.lock:
                yield


# ---------------------------------------------------------------------------
# The grant table of one domain
# ---------------------------------------------------------------------------

class GrantTable:
    def __init__(self, domain: Domain):
        self.domain = domain
        self.machine = domain.hv.machine
        self.pins = frame_pins(self.machine)
        self.lock = threading.RLock()
        self.order = next(_table_order)    # lock order between two tables
        self.version = 1
        self.nr_frames = INITIAL_FRAMES
        # Machine frames of the shared entries, allocated on first use (an
        # unallocated frame reads as all-invalid entries).
        self.frames: list[int | None] = [None] * INITIAL_FRAMES
        self.frame_gfns: list[int | None] = [None] * INITIAL_FRAMES
        self.active: dict[int, _Active] = {}
        self.maptrack: dict[int, _Mapping] = {}
        self.maptrack_limit = 0
        self._free_handles: list[int] = []
        # Frames of other domains this (privileged, translated) domain maps
        # with XENMAPSPACE_gmfn_foreign: gfn -> pinned mfn.
        self.foreign: dict[int, int] = {}
        self.released = False

    # -- the shared frames ---------------------------------------------------------
    @property
    def nr_entries(self) -> int:
        return self.nr_frames * ENTRIES_PER_FRAME

    def grow(self, nr_frames: int) -> bool:
        """Make the table at least `nr_frames` long (within the domain's limit)."""
        with self.lock:
            if nr_frames > self.domain.max_grant_frames or self.released:
                return False
            if nr_frames > self.nr_frames:
                extra = nr_frames - self.nr_frames
                self.frames += [None] * extra
                self.frame_gfns += [None] * extra
                self.nr_frames = nr_frames
            return True

    def frame_mfn(self, index: int) -> int:
        """The machine frame of shared frame `index` (allocated now if needed).
        Raises OutOfMemory."""
        with self.lock:
            mfn = self.frames[index]
            if mfn is None:
                mfn = self.machine.alloc(1, owner=DOMID_XEN)[0][0]
                self.machine.frame(mfn)[:] = bytes(PAGE_SIZE)
                self.frames[index] = mfn
            return mfn

    def frame_gfn(self, index: int) -> int | None:
        """Where the guest has shared frame `index` in its physmap, if anywhere."""
        with self.lock:
            gfn, mfn = self.frame_gfns[index], self.frames[index]
        if gfn is None or mfn is None:
            return None
        e = self.domain.p2m.lookup(gfn)
        return gfn if e is not None and e.mfn == mfn else None

    def frame_index_of(self, mfn: int) -> int | None:
        with self.lock:
            try:
                return self.frames.index(mfn)
            except ValueError:
                return None

    def set_frame_gfn(self, index: int, gfn: int | None) -> None:
        with self.lock:
            if index < len(self.frame_gfns):
                self.frame_gfns[index] = gfn

    def _entry_offset(self, ref: int) -> int | None:
        mfn = self.frames[ref // ENTRIES_PER_FRAME]
        if mfn is None:
            return None
        return (mfn << PAGE_SHIFT) + (ref % ENTRIES_PER_FRAME) * GRANT_ENTRY_V1_SIZE

    def read_entry(self, ref: int) -> tuple[int, int, int]:
        """(flags, domid, frame) of entry `ref` (< nr_entries)."""
        off = self._entry_offset(ref)
        if off is None:
            return 0, 0, 0
        view = self.machine.view
        flags, domid = _COMBO.unpack_from(view, off)
        return flags, domid, _FRAME.unpack_from(view, off + 4)[0]

    def _set_busy(self, ref: int, mapper: int, readonly: bool, *, first: bool,
                  mapping: bool) -> None:
        """Mark entry `ref` reading (and writing) for `mapper`, checking it first
        when it is not in use yet. The guest updates the same word, hence the gate."""
        off = self._entry_offset(ref)
        if off is None:
            raise GrantError(GntSt.general_error)     # never written: GTF_invalid
        mask = GTF_type_mask | (GTF_sub_page if mapping else 0)
        view = self.machine.view
        with self.domain.atomic_update():
            flags, domid = _COMBO.unpack_from(view, off)
            if first and ((flags & mask) != GTF_permit_access or domid != mapper):
                raise GrantError(GntSt.general_error)
            new = flags | GTF_reading
            if not readonly:
                if flags & GTF_readonly:
                    raise GrantError(GntSt.general_error)
                new |= GTF_writing
            _COMBO.pack_into(view, off, new, domid)

    def _clear_busy(self, ref: int, bits: int) -> None:
        if not bits or self.released:
            return
        off = self._entry_offset(ref)
        if off is None:
            return
        view = self.machine.view
        with self.domain.atomic_update():
            flags, domid = _COMBO.unpack_from(view, off)
            _COMBO.pack_into(view, off, flags & ~bits & 0xFFFF, domid)

    def swap_entries(self, ref_a: int, ref_b: int) -> int:
        """GNTTABOP_swap_grant_ref: exchange two entries not in use. Returns a GNTST_* status."""
        with self.lock:
            if ref_a >= self.nr_entries or ref_b >= self.nr_entries:
                return GntSt.bad_gntref
            if ref_a == ref_b:
                return GntSt.okay
            if ref_a in self.active or ref_b in self.active:
                return GntSt.eagain
            off_a, off_b = self._entry_offset(ref_a), self._entry_offset(ref_b)
            if off_a is None and off_b is None:
                return GntSt.okay                  # both still all-zero
            try:
                off_a = off_a if off_a is not None else self._entry_offset_alloc(ref_a)
                off_b = off_b if off_b is not None else self._entry_offset_alloc(ref_b)
            except OutOfMemory:
                return GntSt.general_error
            view = self.machine.view
            size = GRANT_ENTRY_V1_SIZE
            with self.domain.atomic_update():
                a = bytes(view[off_a:off_a + size])
                view[off_a:off_a + size] = view[off_b:off_b + size]
                view[off_b:off_b + size] = a
            return GntSt.okay

    def _entry_offset_alloc(self, ref: int) -> int:
        self.frame_mfn(ref // ENTRIES_PER_FRAME)
        off = self._entry_offset(ref)
        assert off is not None
        return off

    # -- pinning entries (granter side; the caller holds self.lock) ----------------
    def _grantable_frame(self, gfn: int, readonly: bool) -> int:
        """Pin the frame at our `gfn` for a grant: it must be our own populated RAM."""
        d = self.domain
        with d.lock:
            e = d.p2m.lookup(gfn)
            if (e is None or e.type not in _RAM or self.machine.owner[e.mfn] != d.domid
                    or (not readonly and e.type != P2MType.RAM_RW)):
                raise GrantError(GntSt.bad_page)
            self.pins.pin(e.mfn)
            return e.mfn

    def pin_entry(self, ref: int, user: int, readonly: bool, kinds: int,
                  *, mapping: bool) -> int:
        """Take entry `ref` into use by domain `user` (GNTMAP_host_map/device_map
        kinds; copies count as host use). Returns the machine frame."""
        if self.released or self.domain.is_dying:
            raise GrantError(GntSt.bad_domain)
        if ref >= self.nr_entries:
            raise GrantError(GntSt.bad_gntref)
        act = self.active.get(ref)
        if act is not None and (act.domid != user or act.pin_limit_reached()):
            raise GrantError(GntSt.general_error)
        if act is not None and self.machine.owner[act.mfn] != self.domain.domid:
            # The owner gave the frame up while it was in use: no new users.
            raise GrantError(GntSt.general_error if mapping else GntSt.bad_domain)
        if act is None or (not readonly and not act.write_pinned()):
            self._set_busy(ref, user, readonly, first=act is None, mapping=mapping)
            if act is None:
                try:
                    mfn = self._grantable_frame(self.read_entry(ref)[2], readonly)
                except GrantError:
                    self._clear_busy(ref, GTF_reading | (0 if readonly else GTF_writing))
                    raise
                act = self.active[ref] = _Active(user, mfn)
        if kinds & GNTMAP_host_map:
            if readonly:
                act.host_r += 1
            else:
                act.host_w += 1
        if kinds & GNTMAP_device_map:
            if readonly:
                act.dev_r += 1
            else:
                act.dev_w += 1
        return act.mfn

    def unpin_entry(self, ref: int, readonly: bool, kinds: int) -> None:
        """Drop uses taken with pin_entry; the flags go when the last use of their kind does."""
        act = self.active.get(ref)
        if act is None or not kinds:
            return
        if kinds & GNTMAP_host_map:
            if readonly:
                act.host_r -= 1
            else:
                act.host_w -= 1
        if kinds & GNTMAP_device_map:
            if readonly:
                act.dev_r -= 1
            else:
                act.dev_w -= 1
        clear = 0
        if not readonly and not act.write_pinned():
            clear |= GTF_writing
        if not act.pinned():
            clear |= GTF_reading
            del self.active[ref]
        self._clear_busy(ref, clear)
        if not act.pinned():
            self.pins.unpin(act.mfn)

    # -- maptrack (mapper side; the caller holds self.lock) --------------------------
    def _new_handle(self) -> int | None:
        if not self._free_handles:
            limit = self.domain.max_maptrack_frames * MAPTRACK_PER_FRAME
            if self.maptrack_limit >= limit:
                return None
            grown = min(self.maptrack_limit + MAPTRACK_PER_FRAME, limit)
            self._free_handles = list(range(grown - 1, self.maptrack_limit - 1, -1))
            self.maptrack_limit = grown
        return self._free_handles.pop()

    def _put_handle(self, handle: int) -> None:
        self._free_handles.append(handle)

    # -- operations of this domain as a mapper -------------------------------------------
    def map_grant(self, granter: Domain | None, ref: int, flags: int,
                  host_addr: int) -> tuple[int, int]:
        """GNTTABOP_map_grant_ref by this domain. Returns (handle, machine frame);
        raises GrantError."""
        me = self.domain
        if not flags & (GNTMAP_device_map | GNTMAP_host_map):
            raise GrantError(GntSt.bad_gntref)
        if me.is_hvm and flags & ~(GNTMAP_host_map | GNTMAP_readonly):
            # Translated guests get host (p2m) mappings only, with no other flags.
            raise GrantError(GntSt.general_error)
        if granter is None:
            raise GrantError(GntSt.bad_domain)
        rgt = granter.grant_table
        readonly = bool(flags & GNTMAP_readonly)
        kinds = flags & (GNTMAP_host_map | GNTMAP_device_map)
        with _both_locked(self, rgt):
            if self.released or me.is_dying:
                raise GrantError(GntSt.general_error)
            handle = self._new_handle()
            if handle is None:
                raise GrantError(GntSt.no_device_space)
            try:
                mfn = rgt.pin_entry(ref, me.domid, readonly, kinds, mapping=True)
            except GrantError:
                self._put_handle(handle)
                raise
            if me.is_hvm:
                try:
                    self._map_into_physmap(host_addr >> PAGE_SHIFT, mfn, readonly)
                except GrantError:
                    rgt.unpin_entry(ref, readonly, kinds)
                    self._put_handle(handle)
                    raise
            self.maptrack[handle] = _Mapping(rgt, ref, flags, readonly, mfn)
            return handle, mfn

    def _map_into_physmap(self, gfn: int, mfn: int, readonly: bool) -> None:
        me = self.domain
        if gfn >= MAX_GFN:
            raise GrantError(GntSt.general_error)
        old = me.p2m.lookup(gfn)
        if old is not None and old.type in (P2MType.GRANT_MAP_RW, P2MType.GRANT_MAP_RO,
                                            P2MType.FOREIGN):
            raise GrantError(GntSt.general_error)   # Xen: never replace such a mapping
        if old is not None:
            forget_physmap_slot(me, gfn)
            me.unpopulate(gfn, 1)
        if readonly:
            me.p2m.set_range(gfn, mfn, 1, P2MType.GRANT_MAP_RO, Access.RX)
        else:
            me.p2m.set_range(gfn, mfn, 1, P2MType.GRANT_MAP_RW, Access.RWX)

    def unmap_grant(self, handle: int, host_addr: int, dev_bus_addr: int,
                    new_addr: int = 0) -> None:
        """GNTTABOP_unmap_grant_ref (and unmap_and_replace) by this domain; raises GrantError."""
        with self.lock:
            m = self.maptrack.get(handle)
        if m is None:
            raise GrantError(GntSt.bad_handle)
        with _both_locked(self, m.table):
            if self.maptrack.get(handle) is not m:
                raise GrantError(GntSt.bad_handle)      # unmapped meanwhile
            if dev_bus_addr and dev_bus_addr != m.mfn << PAGE_SHIFT:
                raise GrantError(GntSt.general_error)
            done = 0
            if host_addr and m.flags & GNTMAP_host_map:
                if self.domain.is_hvm:
                    self._unmap_from_physmap(host_addr >> PAGE_SHIFT, m.mfn, new_addr)
                m.flags &= ~GNTMAP_host_map
                done |= GNTMAP_host_map
            if dev_bus_addr and m.flags & GNTMAP_device_map:
                m.flags &= ~GNTMAP_device_map
                done |= GNTMAP_device_map
            if not m.flags & (GNTMAP_host_map | GNTMAP_device_map):
                del self.maptrack[handle]
                self._put_handle(handle)
            m.table.unpin_entry(m.ref, m.readonly, done)

    def _unmap_from_physmap(self, gfn: int, mfn: int, new_addr: int) -> None:
        if new_addr:
            raise GrantError(GntSt.general_error)     # no replacement for translated guests
        e = self.domain.p2m.lookup(gfn) if gfn < MAX_GFN else None
        if e is None or e.mfn != mfn or e.type not in (P2MType.GRANT_MAP_RW,
                                                       P2MType.GRANT_MAP_RO):
            raise GrantError(GntSt.general_error)
        self.domain.p2m.remove(gfn, 1)

    def mapped_frame(self, handle: int) -> memoryview:
        """The frame behind a live mapping of this domain (for the host back-ends)."""
        with self.lock:
            m = self.maptrack.get(handle)
            if m is None or not m.flags & (GNTMAP_host_map | GNTMAP_device_map):
                raise LookupError(f"no grant mapping with handle {handle}")
            view = self.machine.frame(m.mfn)
            return view.toreadonly() if m.readonly else view

    # -- domain destruction -----------------------------------------------------------------
    def release(self) -> None:
        """The domain is being destroyed: drop its mappings of other domains' grants
        (clearing their busy flags), its foreign mappings, and its own table's frames.
        Grants of ours still mapped elsewhere keep their frames until unmapped."""
        with self.lock:
            self.released = True
            handles = list(self.maptrack)
        for handle in handles:
            with self.lock:
                m = self.maptrack.get(handle)
            if m is None:
                continue
            with _both_locked(self, m.table):
                if self.maptrack.pop(handle, None) is m:
                    m.table.unpin_entry(m.ref, m.readonly,
                                        m.flags & (GNTMAP_host_map | GNTMAP_device_map))
        with self.lock:
            foreign, self.foreign = list(self.foreign.values()), {}
            frames = [mfn for mfn in self.frames if mfn is not None]
            self.frames = [None] * len(self.frames)
            self.frame_gfns = [None] * len(self.frame_gfns)
        for mfn in foreign:
            self.pins.unpin(mfn)
        if frames:
            self.machine.free([(mfn, 1) for mfn in frames])

    # -- foreign frames (XENMAPSPACE_gmfn_foreign) ------------------------------------------
    def pin_foreign(self, source: Domain, source_gfn: int, gfn: int) -> int:
        """Pin `source`'s RAM frame at `source_gfn` for our p2m at `gfn`; returns it.
        Raises LookupError if it is not populated RAM of `source`."""
        with source.lock:
            e = source.p2m.lookup(source_gfn)
            if (e is None or e.type not in _RAM
                    or self.machine.owner[e.mfn] != source.domid):
                raise LookupError("not RAM of the foreign domain")
            self.pins.pin(e.mfn)
        with self.lock:
            old = self.foreign.pop(gfn, None)
            self.foreign[gfn] = e.mfn
        if old is not None:
            self.pins.unpin(old)
        return e.mfn

    def unpin_foreign(self, gfn: int) -> None:
        with self.lock:
            mfn = self.foreign.pop(gfn, None)
        if mfn is not None:
            self.pins.unpin(mfn)


def forget_physmap_slot(d: Domain, gfn: int) -> None:
    """`gfn` of `d` is about to lose what it maps: forget it as the place of
    shared_info or of a grant-table frame."""
    if d.shared_info_gfn == gfn:
        d.shared_info_gfn = None
    gt = d.grant_table
    with gt.lock:
        for i, g in enumerate(gt.frame_gfns):
            if g == gfn:
                gt.frame_gfns[i] = None


def is_xen_frame_of(d: Domain, mfn: int) -> bool:
    """Whether `mfn` is one of the hypervisor's frames shared with `d` (shared_info,
    grant-table frames): the physmap only hooks these in, never frees them."""
    return mfn == d.shared_info_mfn or d.grant_table.frame_index_of(mfn) is not None


def release_frames(d: Domain, extents: list[tuple[int, int]]) -> None:
    """Frames `d` owns leave it: free them, keeping those still grant-mapped elsewhere."""
    if extents:
        frame_pins(d.hv.machine).free_unless_pinned(extents)


# ---------------------------------------------------------------------------
# GNTTABOP_copy
# ---------------------------------------------------------------------------

@dataclass
class CopyEnd:
    """One side of a copy: a grant reference of `domid`, or a frame of the caller's own."""
    domid: int
    is_ref: bool
    ref_or_gfn: int
    offset: int


def grant_copy(me: Domain, src: CopyEnd, dst: CopyEnd, length: int) -> None:
    """Copy `length` bytes between two pages as GNTTABOP_copy does; raises GrantError."""
    src_dom = _copy_domain(me, src)
    dst_dom = _copy_domain(me, dst)
    releases: list = []
    try:
        src_mfn = _claim_for_copy(me, src_dom, src, True, releases)
        dst_mfn = _claim_for_copy(me, dst_dom, dst, False, releases)
        if src.offset + length > PAGE_SIZE or dst.offset + length > PAGE_SIZE:
            raise GrantError(GntSt.bad_copy_arg)
        view = me.hv.machine.view
        s = (src_mfn << PAGE_SHIFT) + src.offset
        d = (dst_mfn << PAGE_SHIFT) + dst.offset
        view[d:d + length] = bytes(view[s:s + length])
    finally:
        for release in reversed(releases):
            release()


def _copy_domain(me: Domain, end: CopyEnd) -> Domain:
    if end.domid != DOMID_SELF and not end.is_ref:
        raise GrantError(GntSt.permission_denied)   # frames only of one's own, named SELF
    d = me if end.domid in (DOMID_SELF, me.domid) else me.hv.get_domain(end.domid)
    if d is None or d.is_dying:
        raise GrantError(GntSt.bad_domain)
    return d


def _claim_for_copy(me: Domain, d: Domain, end: CopyEnd, readonly: bool,
                    releases: list) -> int:
    """Take the page of one copy side into use until its release runs."""
    if end.is_ref:
        gt = d.grant_table
        ref = end.ref_or_gfn & 0xFFFF_FFFF
        with gt.lock:
            mfn = gt.pin_entry(ref, me.domid, readonly, GNTMAP_host_map, mapping=False)

        def release_grant() -> None:
            with gt.lock:
                gt.unpin_entry(ref, readonly, GNTMAP_host_map)
        releases.append(release_grant)
        return mfn
    pins = frame_pins(me.hv.machine)
    with d.lock:
        e = d.p2m.lookup(end.ref_or_gfn)
        if e is None or e.type not in _RAM or me.hv.machine.owner[e.mfn] != d.domid:
            raise GrantError(GntSt.bad_page)
        if not readonly and e.type != P2MType.RAM_RW:
            raise GrantError(GntSt.general_error)    # not writable
        pins.pin(e.mfn)
    releases.append(lambda: pins.unpin(e.mfn))
    return e.mfn
