"""Software walker for x86 guest page tables.

Translates a guest-linear address to a guest-physical address the way the CPU's
page-miss handler does (Intel SDM vol. 3, chapter 4): it reads the paging
structures through a :class:`GuestPhysMemory`, applies the reserved-bit and
access-rights rules, reports faults with the exact #PF error code, and sets the
accessed/dirty bits.  Users: the TLB-fill hook of the CPU engine, copy to/from
guest for hypercalls, introspection and dirty logging.

Supported paging modes: none (CR0.PG=0), 32-bit (with PSE and PSE-36), PAE and
4-level.  5-level paging (CR4.LA57) is not supported; :meth:`PageWalker.set_state`
rejects it (the CPUID we expose does not advertise LA57).

Things deliberately left to the caller:

* Truncating linear addresses to 32 bits outside long mode, and the canonical
  check (#GP) in long mode.  With paging off the walker returns ``va & ~0xfff``
  unchanged; in 32-bit and PAE modes only VA bits 31:0 select entries; in
  4-level mode only bits 47:0 do.  ``PageFault.address`` is always the ``va``
  that was passed in (it becomes CR2).
* Protection keys (CR4.PKE) are not implemented; PTE bits 62:59 are ignored.
* Exceptions from the memory object (unbacked guest-physical address) pass
  through the walk unchanged; what that means for the domain is the caller's
  business.

Divergences from hardware, all invisible to well-behaved guests:

* PAE: real CPUs load the four PDPTEs when CR3 is written (and raise #GP there
  if one has reserved bits set).  We read the PDPTE at walk time and report a
  present PDPTE with reserved bits as a reserved-bit #PF.
* Accessed bits are set only when the whole walk succeeds, top level first; the
  SDM also allows setting them on the upper levels of a walk that faults later.

Speed.  :attr:`PageWalker.translate` is a closure rebuilt by
:meth:`PageWalker.set_state`, specialised for the paging mode, with every mask
bound as a closure cell.  Table reads go through caches of live ``memoryview``
casts of the backing pages (see "table access" below), so reading one level is
a dict lookup plus an index, and validating a non-leaf entry is a cache hit.
The views are never copies: guest writes to its page tables are seen at once.
They only go stale when the guest-physical -> backing mapping changes:
**subscribe** :meth:`PageWalker.invalidate_gfns` **to the p2m's change
notifications** (its signature matches ``P2MListener``), and call
:meth:`PageWalker.flush_table_cache` before closing the backing mmap (the views
export its buffer).  All access-rights rules are folded into precomputed
tables indexed by the combined entry bits, so the common case (no fault, A/D
already set) makes no Python-level calls.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Callable, Sequence
from enum import IntEnum
from typing import NamedTuple, Protocol

# Control-register and EFER bits the walker looks at.
CR0_WP = 1 << 16
CR0_PG = 1 << 31
CR4_PSE = 1 << 4
CR4_PAE = 1 << 5
CR4_PGE = 1 << 7
CR4_LA57 = 1 << 12
CR4_SMEP = 1 << 20
CR4_SMAP = 1 << 21
EFER_LME = 1 << 8
EFER_LMA = 1 << 10
EFER_NXE = 1 << 11

# Paging-structure entry bits (same positions at every level and in every mode).
PTE_P = 1 << 0
PTE_RW = 1 << 1
PTE_US = 1 << 2
PTE_PWT = 1 << 3
PTE_PCD = 1 << 4
PTE_A = 1 << 5
PTE_D = 1 << 6
PTE_PS = 1 << 7
PTE_G = 1 << 8
PTE_NX = 1 << 63

# #PF error-code bits.
PFEC_PRESENT = 1 << 0
PFEC_WRITE = 1 << 1
PFEC_USER = 1 << 2
PFEC_RSVD = 1 << 3
PFEC_INSN = 1 << 4

PAGE_SIZE_4K = 1 << 12
PAGE_SIZE_2M = 2 << 20
PAGE_SIZE_4M = 4 << 20
PAGE_SIZE_1G = 1 << 30


class Access(IntEnum):
    READ = 0
    WRITE = 1
    FETCH = 2


class PagingMode(IntEnum):
    NONE = 0
    LEGACY32 = 1
    PAE = 2
    LONG4 = 3


def paging_mode(cr0: int, cr4: int, efer: int) -> PagingMode:
    """The paging mode selected by CR0.PG, CR4.PAE and EFER.LMA."""
    if not cr0 & CR0_PG:
        return PagingMode.NONE
    if not cr4 & CR4_PAE:
        return PagingMode.LEGACY32
    if efer & EFER_LMA:
        return PagingMode.LONG4
    return PagingMode.PAE


class PageFault(Exception):
    """A #PF the CPU would raise; ``address`` is the linear address for CR2."""

    def __init__(self, error_code: int, address: int) -> None:
        super().__init__(f"#PF at {address:#x}, error code {error_code:#x}")
        self.error_code = error_code
        self.address = address


class PhysAccessError(Exception):
    """A guest-physical address that no memory backs."""

    def __init__(self, gpa: int) -> None:
        super().__init__(f"guest-physical address {gpa:#x} is not backed")
        self.gpa = gpa


class WalkResult(NamedTuple):
    """Outcome of a successful translation.

    ``writable`` and ``executable`` say whether a write or an instruction fetch
    through this translation would be allowed in the same context (CPL,
    implicit-supervisor, RFLAGS.AC, CR0.WP, CR4.SMEP/SMAP, EFER.NXE) as the
    walk.  A successful READ or WRITE walk implies reads are allowed; after a
    FETCH walk they may not be (SMAP on a user page), so grant only what was
    asked for plus ``writable``/``executable``.  Grant write permission to a
    cached translation only when ``dirty`` is set, so that the first write
    comes back through a WRITE walk that sets D.  ``user`` is the combined U/S
    bit of all levels.  ``global_`` is the leaf's G bit when CR4.PGE=1.
    """

    gpa_page: int
    writable: bool
    user: bool
    executable: bool
    dirty: bool
    page_size: int
    global_: bool


class GuestPhysMemory(Protocol):
    """Guest-physical memory as the walker sees it.

    ``read_*`` raise :class:`PhysAccessError` (or the memory's own exception)
    for an unbacked address.  ``cmpxchg_*`` store ``new`` only if the current
    value is ``old`` and say whether they did; the walker uses them for A/D.

    Optional fast path, strongly recommended: ``fast_view(gpa) -> (buffer,
    offset)`` where ``buffer[offset:offset + 4096]`` is a *live* view (not a
    copy) of the whole backing page when ``gpa`` is page aligned.  The walker
    then caches a ``'Q'``/``'I'`` cast of that page per table page (see
    :meth:`PageWalker.invalidate_gfns`).  Without it every table read is a
    ``read_u64``/``read_u32`` call.
    """

    def read_u64(self, gpa: int) -> int: ...

    def read_u32(self, gpa: int) -> int: ...

    def cmpxchg_u64(self, gpa: int, old: int, new: int) -> bool: ...

    def cmpxchg_u32(self, gpa: int, old: int, new: int) -> bool: ...


_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")


class BytearrayGuestMemory:
    """Flat guest-physical memory ``[0, size)`` in one bytearray.

    The reference implementation of :class:`GuestPhysMemory` (with
    ``fast_view``); used by tests and benchmarks.  Single-threaded, so
    cmpxchg is a plain compare-and-write.
    """

    def __init__(self, size: int) -> None:
        if size <= 0 or size % 4096:
            raise ValueError("size must be a positive multiple of 4 KiB")
        self.data = bytearray(size)
        self.size = size

    def _check(self, gpa: int, width: int) -> None:
        if gpa < 0 or gpa + width > self.size:
            raise PhysAccessError(gpa)

    def fast_view(self, gpa: int) -> tuple[bytearray, int]:
        self._check(gpa, 8)
        return self.data, gpa

    def read_u64(self, gpa: int) -> int:
        self._check(gpa, 8)
        return _U64.unpack_from(self.data, gpa)[0]

    def read_u32(self, gpa: int) -> int:
        self._check(gpa, 4)
        return _U32.unpack_from(self.data, gpa)[0]

    def write_u64(self, gpa: int, value: int) -> None:
        self._check(gpa, 8)
        _U64.pack_into(self.data, gpa, value)

    def write_u32(self, gpa: int, value: int) -> None:
        self._check(gpa, 4)
        _U32.pack_into(self.data, gpa, value)

    def cmpxchg_u64(self, gpa: int, old: int, new: int) -> bool:
        if self.read_u64(gpa) != old:
            return False
        _U64.pack_into(self.data, gpa, new)
        return True

    def cmpxchg_u32(self, gpa: int, old: int, new: int) -> bool:
        if self.read_u32(gpa) != old:
            return False
        _U32.pack_into(self.data, gpa, new)
        return True


# -- access rights ------------------------------------------------------------

# Who performs the access.
_CTX_USER = 0  # CPL 3 and not an implicit supervisor access
_CTX_SUPER_AC = 1  # explicit supervisor access with RFLAGS.AC=1: SMAP does not apply
_CTX_SUPER = 2  # explicit supervisor access with AC=0, or any implicit supervisor access


def _access_allowed(
    access: int, ctx: int, rw: bool, us: bool, nx: bool, wp: bool, smep: bool, smap: bool
) -> bool:
    """SDM 4.6.1 for one access, given the combined R/W, U/S and XD of all levels.

    ``nx`` is only ever true when XD is in force: with EFER.NXE=0 bit 63 is
    reserved (so the walk faulted earlier) and 32-bit entries have no bit 63.
    """
    if ctx == _CTX_USER:
        if not us:
            return False
        if access == Access.WRITE:
            return rw
        if access == Access.FETCH:
            return not nx
        return True
    if access == Access.FETCH:
        # SMAP never applies to fetches; SMEP forbids executing user pages.
        return not nx and not (us and smep)
    if us and smap and ctx == _CTX_SUPER:
        return False
    if access == Access.WRITE and wp:
        return rw
    return True


# The walk ends by looking up one precomputed entry
#   (error code or 0, writable, user, executable, dirty, global_, needs_ad_update)
# in a 512-entry table chosen by (context, access), indexed by
#   bit 0: no level has XD, bit 1: R/W of all levels, bit 2: U/S of all levels,
#   bit 5: A of all levels, bit 6: D of the leaf, bit 8: G of the leaf (if CR4.PGE).
# Bits 0-5 are the AND of every level's "rights" (see _entry_rights): with XD
# stored inverted, AND combines R/W, U/S and A and ORs XD, all at once.
_IDX_X = 1 << 0
_RIGHTS_NEUTRAL = _IDX_X | PTE_RW | PTE_US | PTE_A  # a level that restricts nothing
_IDX_BITS = 512
_PermEntry = tuple[int, bool, bool, bool, bool, bool, bool]
_PermTable = tuple[_PermEntry, ...]


def _perm_table(access: int, ctx: int, wp: bool, smep: bool, smap: bool, insn_flag: bool):
    """The 512 outcomes of one access kind by one context (see the index layout above)."""
    err = PFEC_PRESENT
    if access == Access.WRITE:
        err |= PFEC_WRITE
    if ctx == _CTX_USER:
        err |= PFEC_USER
    if access == Access.FETCH and insn_flag:
        err |= PFEC_INSN
    rows = []
    for idx in range(_IDX_BITS):
        nx, rw, us = not idx & _IDX_X, bool(idx & PTE_RW), bool(idx & PTE_US)
        accessed, dirty, global_ = bool(idx & PTE_A), bool(idx & PTE_D), bool(idx & PTE_G)
        ok = _access_allowed(access, ctx, rw, us, nx, wp, smep, smap)
        writable = _access_allowed(Access.WRITE, ctx, rw, us, nx, wp, smep, smap)
        executable = _access_allowed(Access.FETCH, ctx, rw, us, nx, wp, smep, smap)
        needs_ad = not accessed or (access == Access.WRITE and not dirty)
        rows.append((0 if ok else err, writable, us, executable, dirty, global_, needs_ad))
    return tuple(rows)


# For translate_noflags: nothing faults or sets A/D; writable/executable are the raw bits.
_RAW_PERMS: _PermTable = tuple(
    (
        0,
        bool(i & PTE_RW),
        bool(i & PTE_US),
        bool(i & _IDX_X),
        bool(i & PTE_D),
        bool(i & PTE_G),
        False,
    )
    for i in range(_IDX_BITS)
)

_perm_cache: dict[tuple[bool, bool, bool, bool], tuple[tuple[_PermTable, ...], ...]] = {}


def _perm_tables(wp: bool, smep: bool, smap: bool, insn_flag: bool):
    """Tables [context][access] for one CR0.WP/SMEP/SMAP/I-D setting (built once, shared)."""
    key = (wp, smep, smap, insn_flag)
    tables = _perm_cache.get(key)
    if tables is None:
        tables = tuple(
            tuple(_perm_table(access, ctx, *key) for access in Access)
            for ctx in (_CTX_USER, _CTX_SUPER_AC, _CTX_SUPER)
        )
        _perm_cache[key] = tables
    return tables


def _entry_rights(entry: int) -> int:
    """An entry's R/W, U/S and A bits, plus bit 0 set when it does *not* have XD."""
    return (entry & (PTE_RW | PTE_US | PTE_A)) | (0 if entry & PTE_NX else _IDX_X)


def _bits(lo: int, hi: int) -> int:
    """Mask with bits lo..hi inclusive set (0 if hi < lo)."""
    if hi < lo:
        return 0
    return ((1 << (hi + 1)) - 1) & ~((1 << lo) - 1)


def _set_accessed_dirty(
    cmpxchg: Callable[[int, int, int], bool], pairs: tuple, write: bool
) -> bool:
    """Set A on every (address, entry) pair, top level first, and D on the last (leaf).

    Returns False if an entry changed since it was read; the caller walks again.
    """
    last = len(pairs) - 2
    for i in range(0, len(pairs), 2):
        addr, entry = pairs[i], pairs[i + 1]
        want = PTE_A | PTE_D if write and i == last else PTE_A
        if entry & want != want and not cmpxchg(addr, entry, entry | want):
            return False
    return True


# -- table access -------------------------------------------------------------
#
# A walk reads one entry per level.  To make that a couple of C-level
# subscripts, the walker keeps two kinds of cache, both holding live views of
# guest memory (so guest edits to its tables are seen immediately):
#
# * _TablePages: page-aligned gpa -> the page's entries (a memoryview cast to
#   'Q' or 'I').  Only the backing of a gpa can make it stale: invalidate_gfns.
# * _NextTable: non-leaf entry *value* -> entries of the table it points to.
#   The entry is checked (present, no reserved bits) when it is first seen, so
#   a hit means "valid entry" and costs no bit tests.  Each value is checked
#   against one mode's rules, hence one set of _NextTable per mode (and NXE).

# memoryview casts use host byte order; guest tables are little-endian.
_HOST_LITTLE_ENDIAN = sys.byteorder == "little"
_CACHE_LIMIT = 4096  # entries per cache; a full cache is simply emptied


class _WalkStop(Exception):
    """Internal: the walk met an entry that is not present or has reserved bits set."""

    def __init__(self, entry: int) -> None:
        super().__init__(entry)
        self.entry = entry


class _ReadThroughPage:
    """A table page read entry by entry with the memory's read method (no fast_view)."""

    __slots__ = ("read", "base", "width")

    def __init__(self, read: Callable[[int], int], base: int, width: int) -> None:
        self.read = read
        self.base = base
        self.width = width

    def __getitem__(self, index: int) -> int:
        return self.read(self.base + index * self.width)


class _TablePages(dict):
    """Page-aligned gpa -> entries of that page, loaded on first use."""

    __slots__ = ("mem", "width")

    def __init__(self, mem: GuestPhysMemory, width: int) -> None:
        super().__init__()
        self.mem = mem
        self.width = width

    def __missing__(self, page: int) -> Sequence[int]:
        mem = self.mem
        fast_view = getattr(mem, "fast_view", None) if _HOST_LITTLE_ENDIAN else None
        if fast_view is None:
            read = mem.read_u64 if self.width == 8 else mem.read_u32
            entries: Sequence[int] = _ReadThroughPage(read, page, self.width)
        else:
            buf, off = fast_view(page)
            raw = memoryview(buf).cast("B")[off : off + 4096]
            if len(raw) != 4096:
                raise PhysAccessError(page)
            entries = raw.cast("Q" if self.width == 8 else "I")
        if len(self) >= _CACHE_LIMIT:
            self.clear()
        self[page] = entries
        return entries


class _NextTable(dict):
    """Non-leaf entry value -> (entries of the table it points to, its rights).

    ``check`` holds P and the bits that must be zero; a value is admitted only
    if ``value & check == 1``, else :class:`_WalkStop` is raised.  The rights
    are :func:`_entry_rights`, or neutral for levels that grant none (PAE PDPTEs).
    """

    __slots__ = ("check", "addr_mask", "pages", "grants_rights")

    def __init__(
        self, check: int, addr_mask: int, pages: _TablePages, grants_rights: bool = True
    ) -> None:
        super().__init__()
        self.check = check
        self.addr_mask = addr_mask
        self.pages = pages
        self.grants_rights = grants_rights

    def __missing__(self, entry: int) -> tuple[Sequence[int], int]:
        if entry & self.check != 1:
            raise _WalkStop(entry)
        rights = _entry_rights(entry) if self.grants_rights else _RIGHTS_NEUTRAL
        value = (self.pages[entry & self.addr_mask], rights)
        if len(self) >= _CACHE_LIMIT:
            self.clear()
        self[entry] = value
        return value


class PageWalker:
    """Walks one vCPU's guest page tables.

    Call :meth:`set_state` whenever CR0, CR3, CR4 or EFER change; it builds
    :attr:`translate` for the new state.  Call :meth:`invalidate_gfns` when
    the guest-physical -> backing mapping of any page changes (p2m listener).

    ``translate(va, access, cpl, *, set_ad=True, implicit_supervisor=False,
    ac_flag=False) -> WalkResult`` translates ``va`` for an ``access`` at
    privilege ``cpl``.  ``implicit_supervisor`` marks implicit supervisor
    accesses (descriptor tables, TSS, ... even from CPL 3): they are
    supervisor-mode accesses, and SMAP blocks them on user pages whatever
    RFLAGS.AC is.  ``ac_flag`` is RFLAGS.AC.  With ``set_ad`` the walk sets A
    bits (and D on a write) like the CPU.  Raises :class:`PageFault` with the
    error code the CPU would report; exceptions of the memory object (a table
    in unbacked memory) pass through.
    """

    translate: Callable[..., WalkResult]

    def __init__(
        self,
        mem: GuestPhysMemory,
        *,
        maxphyaddr: int = 48,
        nx_supported: bool = True,
        pse36: bool = True,
        pdpe1gb: bool = True,
    ) -> None:
        if not 32 <= maxphyaddr <= 52:
            raise ValueError(f"MAXPHYADDR {maxphyaddr} out of range 32..52")
        self.mem = mem
        self.maxphyaddr = maxphyaddr
        self.nx_supported = nx_supported
        self.pse36 = pse36
        self.pdpe1gb = pdpe1gb
        self._pages64 = _TablePages(mem, 8)
        self._pages32 = _TablePages(mem, 4)
        # (mode, nxe) -> that mode's _NextTable caches; kept across CR3 switches.
        self._next_tables: dict[tuple[PagingMode, bool], tuple[_NextTable, ...]] = {}
        self.set_state(0, 0, 0, 0)

    def set_state(self, cr0: int, cr3: int, cr4: int, efer: int) -> None:
        """Take a new CR0/CR3/CR4/EFER and rebuild :attr:`translate` for it."""
        mode = paging_mode(cr0, cr4, efer)
        if mode == PagingMode.LONG4 and cr4 & CR4_LA57:
            raise ValueError("5-level paging (CR4.LA57) is not supported")
        self.mode = mode
        self.cr0, self.cr3, self.cr4, self.efer = cr0, cr3, cr4, efer
        # XD exists only in PAE-format entries (PAE and 4-level paging).
        nxe = bool(efer & EFER_NXE) and self.nx_supported and mode >= PagingMode.PAE
        smep = bool(cr4 & CR4_SMEP)
        self.nxe = nxe
        # The I/D error-code bit is reported only when SMEP or XD is in force.
        self._insn_flag = smep or nxe
        self._perms = _perm_tables(bool(cr0 & CR0_WP), smep, bool(cr4 & CR4_SMAP), smep or nxe)
        self._dg_mask = PTE_D | (PTE_G if cr4 & CR4_PGE else 0)
        builder = {
            PagingMode.NONE: self._build_none,
            PagingMode.LEGACY32: self._build_legacy32,
            PagingMode.PAE: self._build_pae,
            PagingMode.LONG4: self._build_long4,
        }[mode]
        self.translate = builder()

    def translate_noflags(self, va: int) -> WalkResult | None:
        """Walk without access checks and without touching A/D bits.

        For introspection.  ``writable``, ``user`` and ``executable`` are the
        combined R/W, U/S and (not) XD bits of all levels, ``dirty`` the leaf's
        D bit.  Returns None if the address is not mapped (not present or
        reserved bits set).
        """
        try:
            return self.translate(va, Access.READ, 0, set_ad=False, _perms=_RAW_PERMS)
        except PageFault:
            return None

    def invalidate_gfns(self, first_gfn: int, count: int) -> None:
        """The backing of guest frames [first_gfn, first_gfn + count) changed.

        Drops every cached view if one of those frames holds a cached table
        (rare: page tables seldom move).  Signature of a p2m listener.
        """
        lo, hi = first_gfn << 12, (first_gfn + count) << 12
        for pages in (self._pages64, self._pages32):
            if count <= len(pages):
                hit = any(gfn << 12 in pages for gfn in range(first_gfn, first_gfn + count))
            else:
                hit = any(lo <= page < hi for page in pages)
            if hit:
                self.flush_table_cache()
                return

    def flush_table_cache(self) -> None:
        """Forget every cached table view (also releases the exported buffers)."""
        self._pages64.clear()
        self._pages32.clear()
        for caches in self._next_tables.values():
            for cache in caches:
                cache.clear()

    # -- internals ------------------------------------------------------------

    def _next_table_caches(self, *kinds: tuple[int, bool]) -> tuple[_NextTable, ...]:
        """The current mode's _NextTable caches, one per (entry check, grants rights)."""
        key = (self.mode, self.nxe)
        caches = self._next_tables.get(key)
        if caches is None:
            pages = self._pages32 if self.mode == PagingMode.LEGACY32 else self._pages64
            addr_mask = 0xFFFFF000 if self.mode == PagingMode.LEGACY32 else _bits(12, 51)
            caches = tuple(_NextTable(check, addr_mask, pages, grants) for check, grants in kinds)
            self._next_tables[key] = caches
        return caches

    def _walk_fault(
        self, va: int, access: int, cpl: int, implicit_supervisor: bool, entry: int
    ) -> PageFault:
        """The #PF for a walk stopped at ``entry`` (not present, or reserved bits set)."""
        err = PFEC_PRESENT | PFEC_RSVD if entry & PTE_P else 0
        if access == Access.WRITE:
            err |= PFEC_WRITE
        if cpl == 3 and not implicit_supervisor:
            err |= PFEC_USER
        if access == Access.FETCH and self._insn_flag:
            err |= PFEC_INSN
        return PageFault(err, va)

    # -- per-mode walkers -----------------------------------------------------
    # Each builder returns the translate closure for the current state.  A
    # check mask holds P plus the bits that must be zero: "entry & check != 1"
    # means not present or reserved bits set.  Non-leaf entries are checked by
    # their _NextTable cache; leaves are checked inline.

    def _build_none(self) -> Callable[..., WalkResult]:
        new_result = tuple.__new__

        def translate_unpaged(
            va, access, cpl, *, set_ad=True, implicit_supervisor=False, ac_flag=False, _perms=None
        ):
            return new_result(WalkResult, (va & ~0xFFF, True, True, True, True, 4096, False))

        return translate_unpaged

    def _build_legacy32(self) -> Callable[..., WalkResult]:
        pages = self._pages32
        # A PDE that points to a page table has no reserved bits.
        (pde_next,) = self._next_table_caches((PTE_P, True))
        cmpxchg = self.mem.cmpxchg_u32
        walk_fault = self._walk_fault
        perms_user, perms_super_ac, perms_super = self._perms
        dg_mask = self._dg_mask
        new_result = tuple.__new__
        root = self.cr3 & 0xFFFFF000
        pse = bool(self.cr4 & CR4_PSE)
        # A 4 MiB PDE carries physical bits 39:32 in bits 20:13 (PSE-36), but
        # only up to MAXPHYADDR (capped at 40); the rest of 21:13 is reserved.
        m = min(self.maxphyaddr, 40) if self.pse36 else 32
        check_4m = _bits(m - 19, 21) | PTE_P
        high_mask_4m = _bits(13, m - 20)

        def translate_legacy32(
            va, access, cpl, *, set_ad=True, implicit_supervisor=False, ac_flag=False, _perms=None
        ):
            la = va & 0xFFFFFFFF  # only bits 31:0 take part; CR2 gets va as given
            try:
                e2 = pages[root][la >> 22]
                if e2 & PTE_PS and pse:
                    if e2 & check_4m != 1:
                        raise _WalkStop(e2)
                    leaf = e2
                    rights = _RIGHTS_NEUTRAL
                    gpa = (e2 & 0xFFC00000) | ((e2 & high_mask_4m) << 19) | (la & 0x3FF000)
                    size = PAGE_SIZE_4M
                else:
                    pg, rights = pde_next[e2]
                    leaf = pg[(la >> 12) & 0x3FF]
                    if not leaf & PTE_P:
                        raise _WalkStop(leaf)
                    gpa = leaf & 0xFFFFF000
                    size = PAGE_SIZE_4K
            except _WalkStop as stop:
                raise walk_fault(va, access, cpl, implicit_supervisor, stop.entry) from None
            if _perms is None:
                if cpl == 3 and not implicit_supervisor:
                    _perms = perms_user[access]
                elif ac_flag and not implicit_supervisor:
                    _perms = perms_super_ac[access]
                else:
                    _perms = perms_super[access]
            # No XD in 32-bit paging: the leaf's bit 0 (P=1) keeps "executable" set.
            err, writable, user, executable, dirty, global_, needs_ad = _perms[
                (rights & leaf) | (leaf & dg_mask)
            ]
            if err:
                raise PageFault(err, va)
            if needs_ad and set_ad:
                a2 = root | ((la >> 20) & 0xFFC)
                if size == PAGE_SIZE_4M:
                    pairs = (a2, e2)
                else:
                    pairs = (a2, e2, (e2 & 0xFFFFF000) | ((la >> 10) & 0xFFC), leaf)
                if not _set_accessed_dirty(cmpxchg, pairs, access == Access.WRITE):
                    return translate_legacy32(
                        va, access, cpl, implicit_supervisor=implicit_supervisor, ac_flag=ac_flag
                    )
                if access == Access.WRITE:
                    dirty = True
            return new_result(WalkResult, (gpa, writable, user, executable, dirty, size, global_))

        return translate_legacy32

    def _build_pae(self) -> Callable[..., WalkResult]:
        m = self.maxphyaddr
        addr_mask = _bits(12, m - 1)
        addr_mask_2m = _bits(21, m - 1)
        # PAE entries have no ignored high bits: 62:M are reserved, and 63 unless NXE.
        high = _bits(m, 62) | (0 if self.nxe else PTE_NX)
        check_table = high | PTE_P
        check_2m = high | _bits(13, 20) | PTE_P
        # PDPTEs grant no rights (R/W, U/S, A and XD positions are reserved there).
        check_pdpte = _bits(m, 63) | _bits(5, 8) | _bits(1, 2) | PTE_P
        pdpte_next, pde_next = self._next_table_caches((check_pdpte, False), (check_table, True))
        pages = self._pages64
        cmpxchg = self.mem.cmpxchg_u64
        walk_fault = self._walk_fault
        perms_user, perms_super_ac, perms_super = self._perms
        dg_mask = self._dg_mask
        new_result = tuple.__new__
        # CR3 holds a 32-byte aligned 32-bit pointer to the four PDPTEs.
        pdpt = self.cr3 & 0xFFFFFFE0
        pdpt_page, pdpt_first = pdpt & ~0xFFF, (pdpt & 0xFFF) >> 3

        def translate_pae(
            va, access, cpl, *, set_ad=True, implicit_supervisor=False, ac_flag=False, _perms=None
        ):
            la = va & 0xFFFFFFFF  # only bits 31:0 take part; CR2 gets va as given
            try:
                e3 = pages[pdpt_page][pdpt_first + (la >> 30)]
                pg, rights = pdpte_next[e3]
                e2 = pg[(la >> 21) & 0x1FF]
                if e2 & PTE_PS:
                    if e2 & check_2m != 1:
                        raise _WalkStop(e2)
                    leaf = e2
                    gpa = (e2 & addr_mask_2m) | (la & 0x1FF000)
                    size = PAGE_SIZE_2M
                else:
                    pg, rights = pde_next[e2]
                    leaf = pg[(la >> 12) & 0x1FF]
                    if leaf & check_table != 1:
                        raise _WalkStop(leaf)
                    gpa = leaf & addr_mask
                    size = PAGE_SIZE_4K
            except _WalkStop as stop:
                raise walk_fault(va, access, cpl, implicit_supervisor, stop.entry) from None
            if _perms is None:
                if cpl == 3 and not implicit_supervisor:
                    _perms = perms_user[access]
                elif ac_flag and not implicit_supervisor:
                    _perms = perms_super_ac[access]
                else:
                    _perms = perms_super[access]
            # The leaf's bit 0 is P (1): ANDing keeps the upper levels' "no XD" bit,
            # which ~(leaf >> 63) then clears if the leaf itself has XD.
            err, writable, user, executable, dirty, global_, needs_ad = _perms[
                (rights & leaf & ~(leaf >> 63)) | (leaf & dg_mask)
            ]
            if err:
                raise PageFault(err, va)
            if needs_ad and set_ad:
                a2 = (e3 & addr_mask) | ((la >> 18) & 0xFF8)
                if size == PAGE_SIZE_2M:
                    pairs = (a2, e2)
                else:
                    pairs = (a2, e2, (e2 & addr_mask) | ((la >> 9) & 0xFF8), leaf)
                if not _set_accessed_dirty(cmpxchg, pairs, access == Access.WRITE):
                    return translate_pae(
                        va, access, cpl, implicit_supervisor=implicit_supervisor, ac_flag=ac_flag
                    )
                if access == Access.WRITE:
                    dirty = True
            return new_result(WalkResult, (gpa, writable, user, executable, dirty, size, global_))

        return translate_pae

    def _build_long4(self) -> Callable[..., WalkResult]:
        m = self.maxphyaddr
        addr_mask = _bits(12, m - 1)
        addr_mask_2m = _bits(21, m - 1)
        addr_mask_1g = _bits(30, m - 1)
        # Bits 51:M are reserved (62:52 are ignored), and 63 unless NXE.
        high = _bits(m, 51) | (0 if self.nxe else PTE_NX)
        check_table = high | PTE_P
        check_2m = high | _bits(13, 20) | PTE_P
        # Without 1 GiB page support a PDPTE's PS bit is itself reserved.
        check_1g = high | (_bits(13, 29) if self.pdpe1gb else PTE_PS) | PTE_P
        # PS is reserved in a PML4E.  Non-leaf PDPTEs and PDEs share one cache.
        pml4e_next, table_next = self._next_table_caches(
            (check_table | PTE_PS, True), (check_table, True)
        )
        pages = self._pages64
        cmpxchg = self.mem.cmpxchg_u64
        walk_fault = self._walk_fault
        perms_user, perms_super_ac, perms_super = self._perms
        dg_mask = self._dg_mask
        new_result = tuple.__new__
        # CR3 bits 11:0 are PCID/PWT/PCD and bit 63 is the PCID no-flush hint.
        root = self.cr3 & addr_mask

        def translate_long4(
            va, access, cpl, *, set_ad=True, implicit_supervisor=False, ac_flag=False, _perms=None
        ):
            try:
                e4 = pages[root][(va >> 39) & 0x1FF]
                pg, rights = pml4e_next[e4]
                e3 = pg[(va >> 30) & 0x1FF]
                if e3 & PTE_PS:
                    if e3 & check_1g != 1:
                        raise _WalkStop(e3)
                    leaf = e3
                    gpa = (e3 & addr_mask_1g) | (va & 0x3FFFF000)
                    size = PAGE_SIZE_1G
                else:
                    pg, r3 = table_next[e3]
                    e2 = pg[(va >> 21) & 0x1FF]
                    if e2 & PTE_PS:
                        if e2 & check_2m != 1:
                            raise _WalkStop(e2)
                        leaf = e2
                        rights &= r3
                        gpa = (e2 & addr_mask_2m) | (va & 0x1FF000)
                        size = PAGE_SIZE_2M
                    else:
                        pg, r2 = table_next[e2]
                        leaf = pg[(va >> 12) & 0x1FF]
                        if leaf & check_table != 1:
                            raise _WalkStop(leaf)
                        rights &= r3 & r2
                        gpa = leaf & addr_mask
                        size = PAGE_SIZE_4K
            except _WalkStop as stop:
                raise walk_fault(va, access, cpl, implicit_supervisor, stop.entry) from None
            if _perms is None:
                if cpl == 3 and not implicit_supervisor:
                    _perms = perms_user[access]
                elif ac_flag and not implicit_supervisor:
                    _perms = perms_super_ac[access]
                else:
                    _perms = perms_super[access]
            # The leaf's bit 0 is P (1): ANDing keeps the upper levels' "no XD" bit,
            # which ~(leaf >> 63) then clears if the leaf itself has XD.
            err, writable, user, executable, dirty, global_, needs_ad = _perms[
                (rights & leaf & ~(leaf >> 63)) | (leaf & dg_mask)
            ]
            if err:
                raise PageFault(err, va)
            if needs_ad and set_ad:
                a4 = root | ((va >> 36) & 0xFF8)
                a3 = (e4 & addr_mask) | ((va >> 27) & 0xFF8)
                if size == PAGE_SIZE_1G:
                    pairs = (a4, e4, a3, e3)
                else:
                    a2 = (e3 & addr_mask) | ((va >> 18) & 0xFF8)
                    if size == PAGE_SIZE_2M:
                        pairs = (a4, e4, a3, e3, a2, e2)
                    else:
                        a1 = (e2 & addr_mask) | ((va >> 9) & 0xFF8)
                        pairs = (a4, e4, a3, e3, a2, e2, a1, leaf)
                if not _set_accessed_dirty(cmpxchg, pairs, access == Access.WRITE):
                    return translate_long4(
                        va, access, cpl, implicit_supervisor=implicit_supervisor, ac_flag=ac_flag
                    )
                if access == Access.WRITE:
                    dirty = True
            return new_result(WalkResult, (gpa, writable, user, executable, dirty, size, global_))

        return translate_long4
