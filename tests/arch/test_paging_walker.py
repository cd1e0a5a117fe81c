"""Tests for pyxen.arch.x86.paging: the guest page-table walker.

The walker is compared against ``reference_walk`` below, a deliberately plain
model of the SDM rules (a loop over levels, reserved bits bit by bit, access
rights as nested ifs) that shares no code with the walker.
"""

from __future__ import annotations

import itertools
import random
import struct

import pytest

from pyxen.arch.x86.paging import (
    Access,
    BytearrayGuestMemory,
    PageFault,
    PageWalker,
    PagingMode,
    PhysAccessError,
    WalkResult,
    paging_mode,
)

# Architectural constants, spelled out here independently of the module.
PG, WP = 1 << 31, 1 << 16
PSE, PAE, PGE, LA57, SMEP, SMAP = 1 << 4, 1 << 5, 1 << 7, 1 << 12, 1 << 20, 1 << 21
LME, LMA, NXE = 1 << 8, 1 << 10, 1 << 11
P, RW, US, PWT, PCD, A, D, PS, G = 1, 2, 4, 8, 16, 32, 64, 128, 256
NX = 1 << 63
EC_P, EC_W, EC_U, EC_RSVD, EC_I = 1, 2, 4, 8, 16
READ, WRITE, FETCH = Access.READ, Access.WRITE, Access.FETCH

LONG_EFER = LME | LMA | NXE
MODE_CRS = {
    # mode -> (cr0, cr4, efer) with NXE where it exists
    PagingMode.LEGACY32: (PG | WP, PSE | PGE, 0),
    PagingMode.PAE: (PG | WP, PAE | PGE, NXE),
    PagingMode.LONG4: (PG | WP, PAE | PGE, LONG_EFER),
}
TABLE_FLAGS = P | RW | US | A


# -- reference model -----------------------------------------------------------


def bit_set(value: int, bit: int) -> bool:
    return (value >> bit) & 1 == 1


def any_bit(value: int, bits) -> bool:
    return any(bit_set(value, b) for b in bits)


def reference_walk(
    mem,
    *,
    cr0,
    cr3,
    cr4,
    efer,
    va,
    access,
    cpl,
    implicit=False,
    ac=False,
    maxphyaddr=48,
    pse36=True,
    pdpe1gb=True,
    nx_supported=True,
):
    """Walk the SDM way.  Returns ("fault", error_code) or ("ok", details dict).

    details: gpa_page, page_size, path (list of (address, entry) whose A bits a
    successful walk sets; the last one is the leaf), writable, user,
    executable, global_.
    """
    user_access = cpl == 3 and not implicit
    if not bit_set(cr0, 31):
        return "ok", {
            "gpa_page": va & ~0xFFF,
            "page_size": 4096,
            "path": [],
            "writable": True,
            "user": True,
            "executable": True,
            "global_": False,
            "dirty_leaf": True,
        }
    pae = bit_set(cr4, 5)
    long_mode = pae and bit_set(efer, 10)
    nxe = pae and bit_set(efer, 11) and nx_supported
    smep, smap, wp = bit_set(cr4, 20), bit_set(cr4, 21), bit_set(cr0, 16)

    def error_code(present, rsvd=False):
        code = 0
        if present:
            code |= EC_P
        if access == WRITE:
            code |= EC_W
        if user_access:
            code |= EC_U
        if rsvd:
            code |= EC_RSVD
        if access == FETCH and (smep or nxe):
            code |= EC_I
        return code

    M = maxphyaddr
    path = []  # (address, entry) for entries that carry rights and A bits
    if not pae:
        # 32-bit paging: PD then PT, 1024 4-byte entries each.
        va &= 0xFFFFFFFF
        pde_addr = (cr3 & 0xFFFFF000) + (va >> 22) * 4
        pde = mem.read_u32(pde_addr)
        if not bit_set(pde, 0):
            return "fault", error_code(False)
        if bit_set(pde, 7) and bit_set(cr4, 4):
            m32 = min(M, 40) if pse36 else 32
            reserved = [21] + [13 + i for i in range(8) if 32 + i >= m32]
            if any_bit(pde, reserved):
                return "fault", error_code(True, rsvd=True)
            high = 0
            for i in range(8):
                if bit_set(pde, 13 + i):
                    high |= 1 << (32 + i)
            path.append((pde_addr, pde))
            gpa = (pde & 0xFFC00000) + high + (va & 0x3FF000)
            size = 4 << 20
        else:
            path.append((pde_addr, pde))
            pte_addr = (pde & 0xFFFFF000) + ((va >> 12) & 1023) * 4
            pte = mem.read_u32(pte_addr)
            if not bit_set(pte, 0):
                return "fault", error_code(False)
            path.append((pte_addr, pte))
            gpa = pte & 0xFFFFF000
            size = 4096
    else:
        frame_mask = ((1 << M) - 1) & ~0xFFF
        if long_mode:
            table = cr3 & frame_mask
            levels = ["PML4E", "PDPTE", "PDE", "PTE"]
            shifts = [39, 30, 21, 12]
        else:
            pdpte_addr = (cr3 & 0xFFFFFFE0) + ((va >> 30) & 3) * 8
            pdpte = mem.read_u64(pdpte_addr)
            if not bit_set(pdpte, 0):
                return "fault", error_code(False)
            if any_bit(pdpte, [1, 2, 5, 6, 7, 8] + list(range(M, 64))):
                return "fault", error_code(True, rsvd=True)
            table = pdpte & frame_mask
            levels = ["PDE", "PTE"]
            shifts = [21, 12]
        for level, shift in zip(levels, shifts, strict=True):
            addr = table + ((va >> shift) & 511) * 8
            entry = mem.read_u64(addr)
            if not bit_set(entry, 0):
                return "fault", error_code(False)
            top = 52 if long_mode else 63
            reserved = list(range(M, top))
            if not nxe:
                reserved.append(63)
            large = level in ("PDPTE", "PDE") and bit_set(entry, 7)
            if level == "PML4E":
                reserved.append(7)
            if large and level == "PDPTE":
                reserved += list(range(13, 30)) if pdpe1gb else [7]
            if large and level == "PDE":
                reserved += list(range(13, 21))
            if any_bit(entry, reserved):
                return "fault", error_code(True, rsvd=True)
            path.append((addr, entry))
            if large or level == "PTE":
                size = {"PDPTE": 1 << 30, "PDE": 2 << 20, "PTE": 4096}[level]
                gpa = (entry & frame_mask & ~(size - 1)) + (va & (size - 1) & ~0xFFF)
                break
            table = entry & frame_mask

    leaf = path[-1][1]
    all_rw = all(bit_set(e, 1) for _, e in path)
    all_us = all(bit_set(e, 2) for _, e in path)
    some_xd = nxe and any(bit_set(e, 63) for _, e in path)

    def allowed(kind):
        if user_access:
            if not all_us:
                return False
            if kind == WRITE and not all_rw:
                return False
            if kind == FETCH and some_xd:
                return False
            return True
        # supervisor-mode access
        if kind == FETCH:
            if some_xd:
                return False
            if all_us and smep:
                return False
            return True
        if all_us and smap and (implicit or not ac):
            return False
        if kind == WRITE and wp and not all_rw:
            return False
        return True

    if not allowed(access):
        return "fault", error_code(True)
    return "ok", {
        "gpa_page": gpa,
        "page_size": size,
        "path": path,
        "writable": allowed(WRITE),
        "user": all_us,
        "executable": allowed(FETCH),
        "global_": bit_set(leaf, 8) and bit_set(cr4, 7),
        "dirty_leaf": bit_set(leaf, 6),
    }


def reference_set_ad(mem, path, access, entry_size):
    """What a successful walk with set_ad does to memory."""
    for i, (addr, entry) in enumerate(path):
        new = entry | A
        if i == len(path) - 1 and access == WRITE:
            new |= D
        if entry_size == 8:
            mem.write_u64(addr, new)
        else:
            mem.write_u32(addr, new)


def expected_result(details, access, set_ad):
    dirty = details["dirty_leaf"] or (set_ad and access == WRITE)
    return WalkResult(
        details["gpa_page"],
        details["writable"],
        details["user"],
        details["executable"],
        dirty,
        details["page_size"],
        details["global_"],
    )


# -- helpers ---------------------------------------------------------------------


class Tables:
    """Builds page tables in a fresh bytearray-backed guest memory."""

    def __init__(self, mode: PagingMode, mem_size: int = 1 << 22, mem=None) -> None:
        self.mode = mode
        self.mem = mem if mem is not None else BytearrayGuestMemory(mem_size)
        self.next_free = 0x10000
        self.width = 4 if mode == PagingMode.LEGACY32 else 8
        if mode == PagingMode.PAE:
            # A PDPT that is 32-byte but not page aligned, as CR3 allows.
            self.root = self.new_table() + 0x40
        else:
            self.root = self.new_table()

    def new_table(self) -> int:
        page = self.next_free
        self.next_free += 4096
        return page

    def read(self, addr: int) -> int:
        return self.mem.read_u64(addr) if self.width == 8 else self.mem.read_u32(addr)

    def write(self, addr: int, value: int) -> None:
        if self.width == 8:
            self.mem.write_u64(addr, value)
        else:
            self.mem.write_u32(addr, value)

    def levels(self, page_size: int):
        """(shift, entries per table) from the root down to the leaf for a page size."""
        if self.mode == PagingMode.LEGACY32:
            return [(22, 1024)] if page_size == 4 << 20 else [(22, 1024), (12, 1024)]
        if self.mode == PagingMode.PAE:
            shifts = {2 << 20: [30, 21], 4096: [30, 21, 12]}[page_size]
            return [(s, 4 if s == 30 else 512) for s in shifts]
        shifts = {1 << 30: [39, 30], 2 << 20: [39, 30, 21], 4096: [39, 30, 21, 12]}[page_size]
        return [(s, 512) for s in shifts]

    def map(
        self,
        va: int,
        gpa: int,
        page_size: int = 4096,
        leaf_flags: int = P | RW | US | A | D,
        table_flags=TABLE_FLAGS,
    ) -> list[int]:
        """Map va -> gpa, returning the entry address at each level (root first).

        ``table_flags`` is one value for every non-leaf level or a list, one per level.
        """
        levels = self.levels(page_size)
        if not isinstance(table_flags, list):
            table_flags = [table_flags] * (len(levels) - 1)
        if self.mode == PagingMode.PAE:
            # PDPTEs only take P (their R/W, U/S, A positions are reserved).
            table_flags = [f & (P | PWT | PCD) for f in table_flags[:1]] + table_flags[1:]
        addrs = []
        table = self.root
        for depth, (shift, count) in enumerate(levels):
            addr = table + ((va >> shift) % count) * self.width
            addrs.append(addr)
            if depth == len(levels) - 1:
                large = PS if page_size != 4096 else 0
                self.write(addr, gpa | leaf_flags | large)
                break
            entry = self.read(addr)
            if entry & P and not entry & PS:
                child = entry & 0xFFFFFFFFFF000
                flags = table_flags[depth]
                self.write(addr, child | flags)
            else:
                child = self.new_table()
                self.write(addr, child | table_flags[depth])
            table = child
        return addrs

    def walker(self, cr0=None, cr4=None, efer=None, **kwargs) -> PageWalker:
        mode_cr0, mode_cr4, mode_efer = MODE_CRS[self.mode]
        walker = PageWalker(self.mem, **kwargs)
        walker.set_state(
            mode_cr0 if cr0 is None else cr0,
            self.root,
            mode_cr4 if cr4 is None else cr4,
            mode_efer if efer is None else efer,
        )
        return walker


def fault_code(walker: PageWalker, va: int, access=READ, cpl=0, **kwargs) -> int:
    with pytest.raises(PageFault) as info:
        walker.translate(va, access, cpl, **kwargs)
    assert info.value.address == va
    return info.value.error_code


class ReadOnlyApi:
    """A memory without fast_view: the walker must use read_u64/read_u32."""

    def __init__(self, inner: BytearrayGuestMemory) -> None:
        self.inner = inner
        self.reads = 0

    def read_u64(self, gpa):
        self.reads += 1
        return self.inner.read_u64(gpa)

    def read_u32(self, gpa):
        self.reads += 1
        return self.inner.read_u32(gpa)

    def cmpxchg_u64(self, gpa, old, new):
        return self.inner.cmpxchg_u64(gpa, old, new)

    def cmpxchg_u32(self, gpa, old, new):
        return self.inner.cmpxchg_u32(gpa, old, new)


class RemappableMemory:
    """Guest frames backed by host frames through a dict, like a p2m-backed memory."""

    def __init__(self, frames: int) -> None:
        self.host = bytearray(frames * 4096)
        self.gfn_to_host = {gfn: frames - 1 - gfn for gfn in range(frames)}

    def _offset(self, gpa: int) -> int:
        host = self.gfn_to_host.get(gpa >> 12)
        if host is None:
            raise PhysAccessError(gpa)
        return (host << 12) | (gpa & 0xFFF)

    def fast_view(self, gpa):
        return self.host, self._offset(gpa)

    def read_u64(self, gpa):
        return struct.unpack_from("<Q", self.host, self._offset(gpa))[0]

    def read_u32(self, gpa):
        return struct.unpack_from("<I", self.host, self._offset(gpa))[0]

    def write_u64(self, gpa, value):
        struct.pack_into("<Q", self.host, self._offset(gpa), value)

    def write_u32(self, gpa, value):
        struct.pack_into("<I", self.host, self._offset(gpa), value)

    def cmpxchg_u64(self, gpa, old, new):
        if self.read_u64(gpa) != old:
            return False
        self.write_u64(gpa, new)
        return True

    def cmpxchg_u32(self, gpa, old, new):
        if self.read_u32(gpa) != old:
            return False
        self.write_u32(gpa, new)
        return True


# -- paging_mode and set_state ---------------------------------------------------------


def test_paging_mode_selection():
    assert paging_mode(0, PAE, LONG_EFER) == PagingMode.NONE
    assert paging_mode(PG, 0, 0) == PagingMode.LEGACY32
    assert paging_mode(PG, PSE, LME) == PagingMode.LEGACY32
    assert paging_mode(PG, PAE, 0) == PagingMode.PAE
    assert paging_mode(PG, PAE, LME) == PagingMode.PAE  # LME without LMA: not active yet
    assert paging_mode(PG, PAE, LME | LMA) == PagingMode.LONG4


def test_five_level_paging_is_refused():
    walker = PageWalker(BytearrayGuestMemory(1 << 16))
    with pytest.raises(ValueError):
        walker.set_state(PG, 0x1000, PAE | LA57, LONG_EFER)


def test_maxphyaddr_range_is_checked():
    with pytest.raises(ValueError):
        PageWalker(BytearrayGuestMemory(4096), maxphyaddr=53)


# -- translations per mode and page size ---------------------------------------------------

MAPPINGS = [
    # mode, page size, va, gpa
    (PagingMode.LEGACY32, 4096, 0xC0123000, 0x00345000),
    (PagingMode.LEGACY32, 4 << 20, 0x80400000, 0x01C00000),
    (PagingMode.PAE, 4096, 0xBFFFF000, 0x7654000),
    (PagingMode.PAE, 2 << 20, 0x40200000, 0x12_3460_0000),
    (PagingMode.LONG4, 4096, 0x0000_7FFF_FFFF_F000, 0x8_8888_8000),
    (PagingMode.LONG4, 4096, 0xFFFF_8000_0010_2000, 0x2000),
    (PagingMode.LONG4, 2 << 20, 0xFFFF_FFFF_8020_0000, 0x40_0000),
    (PagingMode.LONG4, 1 << 30, 0x0000_0040_0000_0000, 0xFC_0000_0000),
]


@pytest.mark.parametrize("mode,size,va,gpa", MAPPINGS)
def test_translation_of_every_page_of_a_mapping(mode, size, va, gpa):
    tables = Tables(mode)
    tables.map(va, gpa, size)
    walker = tables.walker()
    # First, a middle and last 4 KiB sub-frame of the page; offsets within the page are dropped.
    for sub in sorted({0, (size // 2) & ~0xFFF, size - 4096}):
        result = walker.translate(va + sub + 0x123, READ, 0)
        assert result.gpa_page == gpa + sub
        assert result.page_size == size
        assert (result.writable, result.user, result.executable) == (True, True, True)
        assert result.dirty
    # The neighbouring page is not mapped.
    code = fault_code(walker, va + size, READ, 3)
    assert code == EC_U


@pytest.mark.parametrize("mode", list(MODE_CRS))
def test_fallback_without_fast_view_gives_same_results(mode):
    tables = Tables(mode)
    va = 0x4010_3000 if mode != PagingMode.LONG4 else 0x7F12_3456_7000
    tables.map(va, 0x55000, leaf_flags=P | RW | A)
    slow_mem = ReadOnlyApi(tables.mem)
    cr0, cr4, efer = MODE_CRS[mode]
    slow = PageWalker(slow_mem)
    slow.set_state(cr0, tables.root, cr4, efer)
    fast = tables.walker()
    for access, cpl in itertools.product(Access, (0, 3)):
        outcomes = []
        for walker in (fast, slow):
            try:
                outcomes.append(walker.translate(va, access, cpl))
            except PageFault as fault:
                outcomes.append(fault.error_code)
        assert outcomes[0] == outcomes[1]
    assert slow_mem.reads > 0


def test_fast_view_offset_into_a_shared_host_buffer_is_honoured():
    # Guest frames are stored back to front in the host buffer.
    mem = RemappableMemory(64)
    tables = Tables(PagingMode.LONG4, mem=mem)
    tables.map(0x1234_5000, 0xABC_D000)
    assert tables.walker().translate(0x1234_5FFF, READ, 0).gpa_page == 0xABC_D000


def test_paging_disabled_is_identity_without_truncation():
    walker = PageWalker(BytearrayGuestMemory(4096))
    result = walker.translate(0x1_2345_6789, WRITE, 3)
    # The walker does not truncate: outside long mode that is the caller's job.
    assert result == WalkResult(0x1_2345_6000, True, True, True, True, 4096, False)
    assert walker.translate_noflags(0xFFF) == WalkResult(0, True, True, True, True, 4096, False)


@pytest.mark.parametrize("mode", [PagingMode.LEGACY32, PagingMode.PAE])
def test_32bit_modes_use_only_low_32_va_bits(mode):
    tables = Tables(mode)
    tables.map(0x8000_1000, 0x9000)
    walker = tables.walker()
    assert walker.translate(0x7_8000_1000, READ, 0).gpa_page == 0x9000
    with pytest.raises(PageFault) as info:
        walker.translate(0x7_0000_0000, READ, 0)
    assert info.value.address == 0x7_0000_0000  # CR2 gets the address as given


def test_long_mode_ignores_va_bits_above_47():
    tables = Tables(PagingMode.LONG4)
    tables.map(0x0000_8000_0000_0000 - 4096, 0x3000)
    walker = tables.walker()
    # Not canonical, but the canonical check is the caller's.
    assert walker.translate(0x1234_7FFF_FFFF_F000, READ, 0).gpa_page == 0x3000


def test_cr3_low_bits_and_pcid_are_ignored_in_long_mode():
    tables = Tables(PagingMode.LONG4)
    tables.map(0x5000, 0x6000)
    walker = PageWalker(tables.mem)
    walker.set_state(PG, tables.root | (1 << 63) | 0xFFF, PAE, LONG_EFER)
    assert walker.translate(0x5000, READ, 0).gpa_page == 0x6000


def test_global_bit_needs_cr4_pge():
    tables = Tables(PagingMode.LONG4)
    tables.map(0x5000, 0x6000, leaf_flags=P | RW | A | D | G)
    assert tables.walker().translate(0x5000, READ, 0).global_
    assert not tables.walker(cr4=PAE).translate(0x5000, READ, 0).global_


# -- PSE and PSE-36 ---------------------------------------------------------------------------


def test_pse36_high_physical_bits():
    tables = Tables(PagingMode.LEGACY32)
    pde = tables.root + (0x80400000 >> 22) * 4
    # PDE bits 20:13 = 0x1F -> physical bits 36:32.
    tables.write(pde, 0x01C00000 | (0x1F << 13) | P | RW | A | PS)
    result = tables.walker(maxphyaddr=40).translate(0x80512000, READ, 0)
    assert result.gpa_page == 0x1F_01C0_0000 + 0x112000
    assert result.page_size == 4 << 20


@pytest.mark.parametrize(
    "maxphyaddr,pse36,high_bits,ok",
    [
        (40, True, 0xFF, True),
        (36, True, 0x0F, True),
        (36, True, 0x10, False),  # physical bit 36 >= MAXPHYADDR
        (46, True, 0xFF, True),  # MAXPHYADDR above 40 is capped at 40
        (40, False, 0x01, False),  # without PSE-36 all of 20:13 is reserved
        (40, True, 0x100, False),  # bit 21 is always reserved
    ],
)
def test_pse36_reserved_bits(maxphyaddr, pse36, high_bits, ok):
    tables = Tables(PagingMode.LEGACY32)
    tables.write(tables.root, 0x00400000 | (high_bits << 13) | P | RW | A | PS)
    walker = tables.walker(maxphyaddr=maxphyaddr, pse36=pse36)
    if ok:
        walker.translate(0x1000, READ, 0)
    else:
        assert fault_code(walker, 0x1000, WRITE, 3) == EC_P | EC_W | EC_U | EC_RSVD


def test_ps_bit_is_ignored_without_cr4_pse():
    tables = Tables(PagingMode.LEGACY32)
    tables.map(0x1000, 0x7000)
    tables.write(tables.root, tables.read(tables.root) | PS)
    assert tables.walker(cr4=0).translate(0x1000, READ, 0).gpa_page == 0x7000
    assert tables.walker(cr4=PSE).translate(0x1000, READ, 0).page_size == 4 << 20


# -- not present at each level -------------------------------------------------------------------


@pytest.mark.parametrize("mode", list(MODE_CRS))
@pytest.mark.parametrize("access,cpl", [(READ, 0), (WRITE, 3), (FETCH, 0), (FETCH, 3)])
def test_not_present_at_each_level(mode, access, cpl):
    va = 0x4020_3000 if mode != PagingMode.LONG4 else 0x7F80_4020_3000
    tables = Tables(mode)
    addrs = tables.map(va, 0x1234000)
    nxe_or_smep = mode != PagingMode.LEGACY32  # the modes' default CRs have NXE there
    expected = (EC_W if access == WRITE else 0) | (EC_U if cpl == 3 else 0)
    if access == FETCH and nxe_or_smep:
        expected |= EC_I
    for addr in addrs:
        saved = tables.read(addr)
        tables.write(addr, saved & ~P)
        assert fault_code(tables.walker(), va, access, cpl) == expected
        tables.write(addr, saved)
    tables.walker().translate(va, access, cpl)


def test_insn_flag_needs_smep_or_nxe():
    tables = Tables(PagingMode.LEGACY32)
    walker = tables.walker()
    # 32-bit paging has no XD: NXE does not count there, only SMEP does.
    walker.set_state(PG, tables.root, PSE, NXE)
    assert fault_code(walker, 0x1000, FETCH, 0) == 0
    walker.set_state(PG, tables.root, PSE | SMEP, 0)
    assert fault_code(walker, 0x1000, FETCH, 0) == EC_I
    tables = Tables(PagingMode.LONG4)
    assert fault_code(tables.walker(efer=LME | LMA), 0x1000, FETCH, 3) == EC_U
    assert fault_code(tables.walker(), 0x1000, FETCH, 3) == EC_U | EC_I


def test_nx_unsupported_means_efer_nxe_has_no_effect():
    tables = Tables(PagingMode.LONG4)
    tables.map(0x1000, 0x2000, leaf_flags=P | RW | A | NX)
    walker = tables.walker(nx_supported=False)
    # Bit 63 is then reserved, and fetch faults carry no I/D flag.
    assert fault_code(walker, 0x1000, FETCH, 0) == EC_P | EC_RSVD


# -- reserved bits ----------------------------------------------------------------------------


def rsvd(access=READ, cpl=0):
    return (
        EC_P
        | EC_RSVD
        | (EC_W if access == WRITE else 0)
        | (EC_U if cpl == 3 else 0)
        | (EC_I if access == FETCH else 0)
    )


LONG_RESERVED = [
    # (page size, level index, bits to set, maxphyaddr, pdpe1gb, nxe, faults)
    (4096, 0, 1 << 47, 46, True, True, True),  # address bit above MAXPHYADDR
    (4096, 3, 1 << 47, 46, True, True, True),
    (4096, 3, 1 << 47, 48, True, True, False),
    (4096, 3, 1 << 51, 52, True, True, False),
    (4096, 2, 1 << 51, 48, True, True, True),
    (4096, 3, 1 << 50, 48, True, True, True),
    (4096, 3, 0x7FF << 52, 48, True, True, False),  # 62:52 are ignored in 4-level paging
    (4096, 3, NX, 48, True, False, True),  # XD without EFER.NXE
    (4096, 1, NX, 48, True, False, True),
    (4096, 0, PS, 48, True, True, True),  # PS in a PML4E
    (2 << 20, 2, 1 << 13, 48, True, True, True),  # 2 MiB frame not aligned
    (2 << 20, 2, 1 << 20, 48, True, True, True),
    (2 << 20, 2, 1 << 12, 48, True, True, False),  # PAT
    (1 << 30, 1, 1 << 29, 48, True, True, True),
    (1 << 30, 1, 1 << 13, 48, True, True, True),
    (1 << 30, 1, 1 << 12, 48, True, True, False),  # PAT
    (1 << 30, 1, 0, 48, False, True, True),  # 1 GiB pages not supported: PS reserved
]


@pytest.mark.parametrize("size,level,bits,maxphyaddr,pdpe1gb,nxe,faults", LONG_RESERVED)
def test_long_mode_reserved_bits(size, level, bits, maxphyaddr, pdpe1gb, nxe, faults):
    tables = Tables(PagingMode.LONG4)
    va = 0x7F00_0000_0000
    gpa = 0x4000_0000
    addrs = tables.map(va, gpa, size)
    tables.write(addrs[level], tables.read(addrs[level]) | bits)
    efer = LONG_EFER if nxe else LME | LMA
    walker = tables.walker(efer=efer, maxphyaddr=maxphyaddr, pdpe1gb=pdpe1gb)
    for access, cpl in [(READ, 0), (WRITE, 3), (FETCH, 3)]:
        if faults:
            expected = rsvd(access, cpl)
            if not nxe:
                expected &= ~EC_I
            assert fault_code(walker, va, access, cpl) == expected
        else:
            walker.translate(va, access, cpl)


PAE_RESERVED = [
    # (page size, level, bits, maxphyaddr, nxe, faults); level 0 is the PDPTE
    (4096, 0, RW, 36, True, True),  # R/W, U/S and A positions are reserved in a PDPTE
    (4096, 0, US, 36, True, True),
    (4096, 0, A, 36, True, True),
    (4096, 0, PS, 36, True, True),
    (4096, 0, 1 << 8, 36, True, True),
    (4096, 0, PWT | PCD, 36, True, False),
    (4096, 0, NX, 36, True, True),  # no XD in PDPTEs even with NXE
    (4096, 0, 1 << 36, 36, True, True),
    (4096, 2, 1 << 36, 36, True, True),
    (4096, 2, 1 << 36, 40, True, False),
    (4096, 1, 1 << 52, 48, True, True),  # 62:52 are reserved in PAE (not ignored)
    (4096, 2, 1 << 62, 48, True, True),
    (4096, 2, NX, 48, False, True),
    (4096, 2, NX, 48, True, False),
    (2 << 20, 1, 1 << 13, 48, True, True),
    (2 << 20, 1, 1 << 12, 48, True, False),
]


@pytest.mark.parametrize("size,level,bits,maxphyaddr,nxe,faults", PAE_RESERVED)
def test_pae_reserved_bits(size, level, bits, maxphyaddr, nxe, faults):
    tables = Tables(PagingMode.PAE)
    va = 0xC000_0000
    addrs = tables.map(va, 0x20_0000, size, leaf_flags=P | RW | A | D)
    tables.write(addrs[level], tables.read(addrs[level]) | bits)
    walker = tables.walker(efer=NXE if nxe else 0, maxphyaddr=maxphyaddr)
    if faults:
        expected = rsvd(WRITE, 0)
        assert fault_code(walker, va, WRITE, 0) == expected
    else:
        # Only the fetch can fail, for the XD bit itself.
        walker.translate(va, WRITE, 0)


def test_reserved_bits_beat_a_not_present_lower_level():
    tables = Tables(PagingMode.LONG4)
    addrs = tables.map(0x1000, 0x2000)
    tables.write(addrs[1], tables.read(addrs[1]) | (1 << 50))
    tables.write(addrs[3], 0)
    assert fault_code(tables.walker(), 0x1000) == EC_P | EC_RSVD


def test_not_present_entry_reserved_bits_are_not_checked():
    tables = Tables(PagingMode.LONG4)
    addrs = tables.map(0x1000, 0x2000)
    tables.write(addrs[2], (1 << 50) | PS | RW)  # garbage, but P=0
    assert fault_code(tables.walker(), 0x1000, WRITE) == EC_W


# -- access rights, exhaustively against the reference ------------------------------------------


def level_flag_combos(levels: int, with_nx: bool):
    per_level = [
        (RW if rw else 0) | (US if us else 0) | (NX if nx else 0)
        for us, rw, nx in itertools.product((0, 1), (0, 1), (0, 1) if with_nx else (0,))
    ]
    return itertools.product(per_level, repeat=levels)


CONTEXTS = [
    (access, cpl) for access in Access for cpl in (0, 3)
]  # x (CR0.WP, CR4.SMEP, CR4.SMAP) from the parametrisation


def check_against_reference(tables, walker, cr0, cr4, efer, va, access, cpl, **kw):
    kind, details = reference_walk(
        tables.mem,
        cr0=cr0,
        cr3=tables.root,
        cr4=cr4,
        efer=efer,
        va=va,
        access=access,
        cpl=cpl,
        **kw,
    )
    try:
        got = walker.translate(
            va,
            access,
            cpl,
            set_ad=False,
            implicit_supervisor=kw.get("implicit", False),
            ac_flag=kw.get("ac", False),
        )
    except PageFault as fault:
        assert (kind, fault.error_code) == ("fault", details), (hex(va), access, cpl)
        return
    assert kind == "ok", (hex(va), access, cpl, details)
    assert got == expected_result(details, access, set_ad=False)


@pytest.mark.parametrize("wp,smep,smap", list(itertools.product((0, 1), repeat=3)))
@pytest.mark.parametrize(
    "mode,size",
    [
        (PagingMode.LONG4, 4096),
        (PagingMode.LONG4, 2 << 20),
        (PagingMode.LONG4, 1 << 30),
        (PagingMode.PAE, 4096),
        (PagingMode.PAE, 2 << 20),
        (PagingMode.LEGACY32, 4096),
        (PagingMode.LEGACY32, 4 << 20),
    ],
)
def test_access_rights_every_combination(mode, size, wp, smep, smap):
    tables = Tables(mode)
    va = 0x4000_0000 if mode != PagingMode.LONG4 else 0xFFFF_8000_4000_0000
    addrs = tables.map(va, 0x8000_0000, size)
    # PAE PDPTEs carry no rights: vary the levels from the PDE down.
    varied = addrs[1:] if mode == PagingMode.PAE else addrs
    cr0_mode, cr4_mode, efer = MODE_CRS[mode]
    cr0 = PG | (WP if wp else 0)
    cr4 = cr4_mode | (SMEP if smep else 0) | (SMAP if smap else 0)
    walker = tables.walker(cr0=cr0, cr4=cr4)
    with_nx = mode != PagingMode.LEGACY32
    base = [tables.read(addr) & ~(RW | US | NX) for addr in varied]
    for combo in level_flag_combos(len(varied), with_nx):
        for addr, entry, flags in zip(varied, base, combo, strict=True):
            tables.write(addr, entry | flags)
        for access, cpl in CONTEXTS:
            check_against_reference(tables, walker, cr0, cr4, efer, va, access, cpl)


@pytest.mark.parametrize("mode", [PagingMode.LONG4, PagingMode.LEGACY32])
def test_smap_ac_and_implicit_supervisor_accesses(mode):
    tables = Tables(mode)
    va = 0x4000_0000
    cr0_mode, cr4_mode, efer = MODE_CRS[mode]
    addrs = tables.map(va, 0x8000_0000)
    walker_by_cr4 = {}
    for cr4 in (cr4_mode | SMAP, cr4_mode | SMAP | SMEP, cr4_mode):
        walker_by_cr4[cr4] = tables.walker(cr4=cr4)
    for leaf_flags in (P | A | D, P | RW | A | D, P | US | A | D, P | RW | US | A | D):
        tables.write(addrs[-1], (tables.read(addrs[-1]) & ~0xFFF) | leaf_flags)
        for cr4, walker in walker_by_cr4.items():
            for access, cpl, implicit, ac in itertools.product(
                Access, (0, 3), (False, True), (False, True)
            ):
                check_against_reference(
                    tables, walker, PG | WP, cr4, efer, va, access, cpl, implicit=implicit, ac=ac
                )


def test_smap_examples():
    tables = Tables(PagingMode.LONG4)
    tables.map(0x1000, 0x2000)  # user page, writable
    walker = tables.walker(cr4=PAE | SMAP)
    assert fault_code(walker, 0x1000, READ, 0) == EC_P
    assert walker.translate(0x1000, WRITE, 0, ac_flag=True).writable
    # Implicit supervisor accesses (e.g. GDT reads from CPL 3) ignore AC.
    assert fault_code(walker, 0x1000, READ, 3, implicit_supervisor=True, ac_flag=True) == EC_P
    # A supervisor fetch is not a data access: SMAP lets it through, but the
    # same translation is then not writable for the supervisor.
    result = walker.translate(0x1000, FETCH, 0)
    assert result.executable and not result.writable


def test_wp_examples():
    tables = Tables(PagingMode.LONG4)
    tables.map(0x1000, 0x2000, leaf_flags=P | US | A | D)  # read-only user page
    assert tables.walker(cr0=PG).translate(0x1000, WRITE, 0).writable
    assert fault_code(tables.walker(cr0=PG | WP), 0x1000, WRITE, 0) == EC_P | EC_W
    assert fault_code(tables.walker(cr0=PG), 0x1000, WRITE, 3) == EC_P | EC_W | EC_U
    assert not tables.walker(cr0=PG).translate(0x1000, READ, 3).writable


def test_smep_and_nx_examples():
    tables = Tables(PagingMode.LONG4)
    tables.map(0x1000, 0x2000)
    tables.map(0x3000, 0x4000, leaf_flags=P | RW | A | D | NX)
    walker = tables.walker(cr4=PAE | SMEP)
    assert fault_code(walker, 0x1000, FETCH, 0) == EC_P | EC_I
    assert walker.translate(0x1000, FETCH, 3).executable
    assert not walker.translate(0x1000, READ, 0).executable
    assert fault_code(walker, 0x3000, FETCH, 0) == EC_P | EC_I
    assert not walker.translate(0x3000, READ, 0).executable
    # Without NXE bit 63 is reserved rather than "execute disable".
    assert fault_code(tables.walker(efer=LME | LMA), 0x3000, READ, 0) == EC_P | EC_RSVD


# -- accessed and dirty bits ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "mode,size",
    [
        (PagingMode.LEGACY32, 4096),
        (PagingMode.LEGACY32, 4 << 20),
        (PagingMode.PAE, 4096),
        (PagingMode.PAE, 2 << 20),
        (PagingMode.LONG4, 4096),
        (PagingMode.LONG4, 2 << 20),
        (PagingMode.LONG4, 1 << 30),
    ],
)
def test_accessed_and_dirty_bits(mode, size):
    tables = Tables(mode)
    va = 0x4000_0000
    addrs = tables.map(va, 0x8000_0000, size, leaf_flags=P | RW | US, table_flags=P | RW | US)
    walker = tables.walker()
    # PAE PDPTEs have no A bit; every other level gets one.
    has_a = addrs[1:] if mode == PagingMode.PAE else addrs
    before = {addr: tables.read(addr) for addr in addrs}

    result = walker.translate(va, READ, 0, set_ad=False)
    assert not result.dirty
    assert {addr: tables.read(addr) for addr in addrs} == before

    result = walker.translate(va, READ, 0)
    assert not result.dirty
    for addr in addrs:
        expected = before[addr] | (A if addr in has_a else 0)
        assert tables.read(addr) == expected

    result = walker.translate(va, WRITE, 0)
    assert result.dirty
    assert tables.read(addrs[-1]) == before[addrs[-1]] | A | D
    for addr in has_a[:-1]:
        assert not tables.read(addr) & D  # D only on the leaf
    assert walker.translate(va, READ, 3).dirty


def test_no_accessed_bits_on_a_faulting_walk():
    tables = Tables(PagingMode.LONG4)
    addrs = tables.map(0x1000, 0x2000, leaf_flags=P | US, table_flags=P | RW | US)
    before = [tables.read(addr) for addr in addrs]
    walker = tables.walker()
    fault_code(walker, 0x1000, WRITE, 3)  # read-only leaf
    assert [tables.read(addr) for addr in addrs] == before


def test_dirty_is_reported_as_found_without_set_ad():
    tables = Tables(PagingMode.LONG4)
    tables.map(0x1000, 0x2000, leaf_flags=P | RW | A)
    result = tables.walker().translate(0x1000, WRITE, 0, set_ad=False)
    assert not result.dirty and result.writable


class RacingMemory(BytearrayGuestMemory):
    """The first cmpxchg fails after another 'CPU' rewrote the entry."""

    def __init__(self, size, race):
        super().__init__(size)
        self.race = race
        self.cmpxchg_calls = 0

    def cmpxchg_u64(self, gpa, old, new):
        self.cmpxchg_calls += 1
        if self.race is not None:
            race, self.race = self.race, None
            race(self)
        return super().cmpxchg_u64(gpa, old, new)


def test_walk_is_retried_when_an_entry_changes_under_it():
    pte_holder = {}

    def remap(mem):
        mem.write_u64(pte_holder["pte"], 0x7000 | P | RW | US)

    mem = RacingMemory(1 << 22, remap)
    tables = Tables(PagingMode.LONG4, mem=mem)
    addrs = tables.map(0x1000, 0x2000, leaf_flags=P | RW | US)
    pte_holder["pte"] = addrs[-1]
    result = tables.walker().translate(0x1000, WRITE, 0)
    assert result.gpa_page == 0x7000 and result.dirty
    assert mem.read_u64(addrs[-1]) == 0x7000 | P | RW | US | A | D
    assert mem.cmpxchg_calls >= 2


def test_retry_sees_an_entry_made_not_present():
    def unmap(mem):
        mem.write_u64(pte_holder["pte"], 0)

    pte_holder = {}
    mem = RacingMemory(1 << 22, unmap)
    tables = Tables(PagingMode.LONG4, mem=mem)
    addrs = tables.map(0x1000, 0x2000, leaf_flags=P | RW | US)
    pte_holder["pte"] = addrs[-1]
    assert fault_code(tables.walker(), 0x1000, READ, 3) == EC_U


# -- caches: live views and invalidation ---------------------------------------------


def test_guest_edits_to_its_tables_are_seen_without_any_flush():
    tables = Tables(PagingMode.LONG4)
    addrs = tables.map(0x1000, 0x2000)
    walker = tables.walker()
    assert walker.translate(0x1000, READ, 0).gpa_page == 0x2000
    tables.write(addrs[-1], 0x9000 | P | RW | A)
    assert walker.translate(0x1000, READ, 0).gpa_page == 0x9000
    # A non-leaf entry rewritten to point at another table.
    other = tables.new_table()
    tables.write(other + 1 * 8, 0xA000 | P | A)
    tables.write(addrs[-2], other | P | RW | A)
    assert walker.translate(0x1000, READ, 0).gpa_page == 0xA000
    tables.write(addrs[0], 0)
    assert fault_code(walker, 0x1000) == 0


def test_invalidate_gfns_after_the_backing_of_a_table_changes():
    mem = RemappableMemory(64)
    tables = Tables(PagingMode.LONG4, mem=mem)
    tables.next_free = 0x8000
    addrs = tables.map(0x1000, 0x2000)
    walker = tables.walker()
    assert walker.translate(0x1000, READ, 0).gpa_page == 0x2000
    # Back the PT's guest frame with a different host frame holding another PTE.
    pt_gfn = addrs[-1] >> 12
    spare_host = mem.gfn_to_host.pop(63)
    new_pt = bytearray(4096)
    struct.pack_into("<Q", new_pt, (addrs[-1] & 0xFFF), 0x5000 | P | A)
    mem.host[spare_host << 12 : (spare_host + 1) << 12] = new_pt
    mem.gfn_to_host[pt_gfn] = spare_host
    walker.invalidate_gfns(40, 2)  # unrelated frames: nothing cached there
    walker.invalidate_gfns(pt_gfn, 1)
    assert walker.translate(0x1000, READ, 0).gpa_page == 0x5000
    # A wide range also works, and so does a full flush.
    mem.gfn_to_host[pt_gfn] = 63
    mem.host[63 << 12 : 64 << 12] = new_pt
    struct.pack_into("<Q", mem.host, (63 << 12) | (addrs[-1] & 0xFFF), 0x6000 | P | A)
    walker.invalidate_gfns(0, 1 << 20)
    assert walker.translate(0x1000, READ, 0).gpa_page == 0x6000
    walker.flush_table_cache()
    assert walker.translate(0x1000, READ, 0).gpa_page == 0x6000


def test_table_in_unbacked_memory_raises_the_memory_error():
    tables = Tables(PagingMode.LONG4, mem_size=1 << 20)
    addrs = tables.map(0x1000, 0x2000)
    tables.write(addrs[1], 0x4000_0000 | P | RW | A)  # PD beyond the memory
    with pytest.raises(PhysAccessError):
        tables.walker().translate(0x1000, READ, 0)
    slow = PageWalker(ReadOnlyApi(tables.mem))
    slow.set_state(PG, tables.root, PAE, LONG_EFER)
    with pytest.raises(PhysAccessError):
        slow.translate(0x1000, READ, 0)


def test_translate_noflags():
    tables = Tables(PagingMode.LONG4)
    addrs = tables.map(0x1000, 0x2000, leaf_flags=P | NX, table_flags=P | RW | US)
    walker = tables.walker(cr4=PAE | SMAP | SMEP)
    before = [tables.read(addr) for addr in addrs]
    result = walker.translate_noflags(0x1000)
    assert result == WalkResult(0x2000, False, False, False, False, 4096, False)
    assert [tables.read(addr) for addr in addrs] == before  # no A bits
    assert walker.translate_noflags(0x5000) is None
    tables.write(addrs[-1], before[-1] | (1 << 50))
    assert walker.translate_noflags(0x1000) is None


# -- randomized differential test -----------------------------------------------------

POOL_PAGES = 24
POOL_BASE = 0x1000
# Entries filled in every pool page; PAE PDPTs (CR3 offsets 0, 0x7E0, 0xFE0) use 4 of them.
HOT_INDEXES = [0, 1, 2, 3, 252, 253, 254, 255, 256, 508, 509, 510, 511]


def random_entry(rng: random.Random, width: int, maxphyaddr: int) -> int:
    """A plausible but often wrong paging-structure entry."""

    def chance(p):
        return rng.random() < p

    if chance(0.3):
        # Also valid as a PAE PDPTE (whose R/W, U/S and A positions are reserved).
        flags = (P if chance(0.96) else 0) | (PWT if chance(0.2) else 0)
    else:
        flags = (
            (P if chance(0.96) else 0)
            | (RW if chance(0.85) else 0)
            | (US if chance(0.85) else 0)
            | (A if chance(0.6) else 0)
            | (D if chance(0.5) else 0)
            | (G if chance(0.3) else 0)
            | (PWT if chance(0.1) else 0)
        )
    large = chance(0.12)
    if large:
        flags |= PS
    if width == 4:
        if large:
            frame = rng.randrange(0, 1 << 32, 4 << 20)
            if chance(0.4):
                frame |= rng.randrange(0, 256) << 13  # PSE-36 high bits
            if chance(0.1):
                frame |= 1 << 21
        else:
            frame = POOL_BASE + rng.randrange(POOL_PAGES) * 4096
        return frame | flags
    if large:
        align = rng.choice([2 << 20, 1 << 30])
        frame = rng.randrange(0, 1 << min(maxphyaddr, 40), align)
        if chance(0.1):
            frame |= 1 << rng.randrange(12, 30)  # misaligned or PAT
    else:
        frame = POOL_BASE + rng.randrange(POOL_PAGES) * 4096
    entry = frame | flags
    if chance(0.15):
        entry |= NX
    if chance(0.05):
        entry |= 1 << rng.randrange(maxphyaddr, 63)  # reserved or ignored high bit
    return entry


def random_va(rng: random.Random, mode: PagingMode) -> int:
    def index():
        return rng.choice(HOT_INDEXES)

    offset = rng.randrange(0, 1 << 21) & ~7 if rng.random() < 0.3 else rng.randrange(4096)
    if mode == PagingMode.LONG4:
        va = (index() << 39) | (index() << 30) | (index() << 21) | (index() << 12) | offset
        if rng.random() < 0.2:
            va |= 0xFFFF << 48
        return va
    if mode == PagingMode.PAE:
        return (rng.randrange(4) << 30) | (index() << 21) | (index() << 12) | (offset & 0xFFF)
    return (rng.choice(HOT_INDEXES + [1023]) << 22) | (index() << 12) | (offset & 0xFFF)


PAE_ROOT_PAGES = 6  # pool pages whose PDPT-sized slots mostly hold valid PDPTEs
PDPT_SLOTS = {0, 1, 2, 3, 252, 253, 254, 255, 508, 509, 510, 511}


def fill_pool(rng, mem, width, maxphyaddr):
    for page in range(POOL_PAGES):
        base = POOL_BASE + page * 4096
        for index in HOT_INDEXES + ([1023] if width == 4 else []):
            value = random_entry(rng, width, maxphyaddr)
            if width == 8 and page < PAE_ROOT_PAGES and index in PDPT_SLOTS:
                if rng.random() < 0.85:
                    value &= ~(RW | US | A | D | PS | G | NX | (0xFFF << 52))
            if width == 8:
                mem.write_u64(base + index * 8, value)
            else:
                mem.write_u32(base + index * 4, value)


WALKER_CONFIGS = [
    # (entry width of the pool, maxphyaddr, pse36, pdpe1gb, nx_supported)
    (8, 48, True, True, True),
    (8, 36, True, True, True),
    (8, 52, True, False, True),
    (8, 40, True, True, False),
    (4, 40, True, True, True),
    (4, 36, True, True, True),
    (4, 32, False, True, True),
    (4, 46, True, True, True),
]


@pytest.mark.parametrize("config", WALKER_CONFIGS)
def test_random_walks_match_the_reference(config):
    width, maxphyaddr, pse36, pdpe1gb, nx_supported = config
    rng = random.Random(hash(config) & 0xFFFF_FFFF)
    mem = BytearrayGuestMemory(POOL_BASE + POOL_PAGES * 4096)
    fill_pool(rng, mem, width, maxphyaddr)
    walker = PageWalker(
        mem, maxphyaddr=maxphyaddr, pse36=pse36, pdpe1gb=pdpe1gb, nx_supported=nx_supported
    )
    modes = [PagingMode.LEGACY32] if width == 4 else [PagingMode.PAE, PagingMode.LONG4]
    outcomes = {"ok": 0, "fault": 0, "unbacked": 0}
    for case in range(600):
        mode = rng.choice(modes) if case % 40 else PagingMode.NONE
        cr0 = (PG if mode != PagingMode.NONE else 0) | (WP if rng.random() < 0.6 else 0)
        cr4 = (
            (PAE if mode in (PagingMode.PAE, PagingMode.LONG4) else 0)
            | (PSE if rng.random() < 0.7 else 0)
            | (PGE if rng.random() < 0.5 else 0)
            | (SMEP if rng.random() < 0.3 else 0)
            | (SMAP if rng.random() < 0.3 else 0)
        )
        efer = (LME | LMA if mode == PagingMode.LONG4 else 0) | (NXE if rng.random() < 0.7 else 0)
        cr3 = POOL_BASE + rng.randrange(POOL_PAGES) * 4096
        if mode == PagingMode.PAE:
            cr3 = POOL_BASE + rng.randrange(PAE_ROOT_PAGES) * 4096
            cr3 += rng.choice([0, 0x7E0, 0xFE0, rng.randrange(0, 4096, 32)])
        va = random_va(rng, mode)
        access = rng.choice(list(Access))
        cpl = rng.choice([0, 3, 3])
        implicit = rng.random() < 0.1
        ac = rng.random() < 0.3
        set_ad = rng.random() < 0.8
        if rng.random() < 0.2:
            # The guest edits a table between walks: caches must not hide it.
            page = POOL_BASE + rng.randrange(POOL_PAGES) * 4096
            index = rng.choice(HOT_INDEXES)
            if width == 8:
                mem.write_u64(page + index * 8, random_entry(rng, 8, maxphyaddr))
            else:
                mem.write_u32(page + index * 4, random_entry(rng, 4, maxphyaddr))

        reference_mem = BytearrayGuestMemory(mem.size)
        reference_mem.data[:] = mem.data
        try:
            kind, details = reference_walk(
                reference_mem,
                cr0=cr0,
                cr3=cr3,
                cr4=cr4,
                efer=efer,
                va=va,
                access=access,
                cpl=cpl,
                implicit=implicit,
                ac=ac,
                maxphyaddr=maxphyaddr,
                pse36=pse36,
                pdpe1gb=pdpe1gb,
                nx_supported=nx_supported,
            )
        except PhysAccessError:
            # A table outside guest memory (e.g. PS ignored without CR4.PSE).
            kind, details = "unbacked", None
        if kind == "ok" and set_ad:
            reference_set_ad(reference_mem, details["path"], access, width)

        walker.set_state(cr0, cr3, cr4, efer)
        context = (case, hex(va), access, cpl, implicit, ac, hex(cr0), hex(cr4), hex(efer))
        if kind == "ok":
            # Before the walk: its A/D updates may land in aliased table entries.
            assert walker.translate_noflags(va).gpa_page == details["gpa_page"], context
        try:
            got = walker.translate(
                va, access, cpl, set_ad=set_ad, implicit_supervisor=implicit, ac_flag=ac
            )
        except PhysAccessError:
            assert kind == "unbacked", (context, details)
        except PageFault as fault:
            assert kind == "fault", (context, details)
            assert fault.error_code == details, context
            assert fault.address == va
        else:
            assert kind == "ok", (context, details)
            assert got == expected_result(details, access, set_ad), context
        outcomes[kind] += 1
        assert mem.data == reference_mem.data, context
    # The generator must exercise both outcomes substantially.
    assert outcomes["ok"] > 70 and outcomes["fault"] > 70, outcomes
