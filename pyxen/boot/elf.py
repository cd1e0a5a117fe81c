"""PVH kernel images: read an ELF kernel and validate it as Xen 4.10's domain builder does.

Rules taken from Xen 4.10 (libelf and libxc's ELF loader), as behaviour only:

- Xen ELF notes (owner "Xen") are read from PT_NOTE segments, skipping any whose p_offset
  is 0 (some binutils wrote those). Only when no PT_NOTE segment holds a Xen note are the
  SHT_NOTE sections searched.
- Note names and descriptors are padded to 4 bytes in both ELF classes. Numeric
  descriptors are 1, 2, 4 or 8 bytes, little-endian. When a note type repeats, the last
  one wins.
- A PT_LOAD segment is loaded at p_paddr, and only if it has at least one of the R/W/X
  flags. The kernel spans [lowest p_paddr, highest p_paddr + p_memsz).
- libxc refuses an image that has no section header string table.
- A PHYS32_ENTRY note is all a PVH kernel needs. This follows xen-abi.md B.1 and libelf's
  January 2018 fix. RELEASE-4.10.0 itself also wanted a LOADER "generic" or GUEST_OS
  "linux" note, plus XEN_VERSION "xen-3.0". The FEATURES note can still refuse the image:
  a required ("!name") feature Xen does not know, or "!dom0" for a guest that is not
  dom0.
- Xen 4.10 checks the *PV* entry (the ENTRY note, else e_entry) against the kernel
  range, shifted by VIRT_BASE - PADDR_OFFSET, even for PVH. It never checks
  PHYS32_ENTRY, so a PHYS32_ENTRY outside executable code is only reported in
  `KernelImage.warnings`.

This module adds checks that Xen does not make. Xen tolerates these images or reads
garbage from them; here they are errors, because each one would mean a broken boot:
truncated headers or data, overlapping segments, filesz > memsz, corrupt notes, and
segments or an entry point at or above 4 GiB. The vCPU starts in 32-bit mode with
paging off, and libxc puts a PVH guest's kernel in low memory.
"""

from __future__ import annotations

import functools
import os
import struct
from dataclasses import dataclass

from elftools.construct import ConstructError
from elftools.elf.structs import ELFStructs

from ..abi.constants import ElfNote

# Xen ELF note types (public/elfnote.h), from the ABI package.
XEN_ELFNOTE_ENTRY = ElfNote.ENTRY
XEN_ELFNOTE_VIRT_BASE = ElfNote.VIRT_BASE
XEN_ELFNOTE_PADDR_OFFSET = ElfNote.PADDR_OFFSET
XEN_ELFNOTE_XEN_VERSION = ElfNote.XEN_VERSION
XEN_ELFNOTE_GUEST_OS = ElfNote.GUEST_OS
XEN_ELFNOTE_GUEST_VERSION = ElfNote.GUEST_VERSION
XEN_ELFNOTE_LOADER = ElfNote.LOADER
XEN_ELFNOTE_FEATURES = ElfNote.FEATURES
XEN_ELFNOTE_INIT_P2M = ElfNote.INIT_P2M
XEN_ELFNOTE_PHYS32_ENTRY = ElfNote.PHYS32_ENTRY

# Feature names that the 4.10 FEATURES parser recognises (public/features.h).
XEN_FEATURE_NAMES = frozenset({
    "writable_page_tables", "writable_descriptor_tables", "auto_translated_physmap",
    "supervisor_mode_kernel", "pae_pgdir_above_4gb", "hvm_callback_vector", "dom0",
})
# Xen splits a FEATURES token every 63 characters (its fixed 64-byte buffer).
_FEATURE_TOKEN_MAX = 63

# Xen stops note parsing after this many notes ("too many ELF notes").
MAX_TOTAL_NOTES = 65536

_FOUR_GIB = 1 << 32
_ADDR_MASK = (1 << 64) - 1
_MACHINES = {"EM_386": "x86", "EM_X86_64": "x86_64"}
_PF_RWX = 0x7
_PF_X = 0x1
_NOTE_HEADER = struct.Struct("<III")  # namesz, descsz, type
_NUMERIC_FORMATS = {1: "<B", 2: "<H", 4: "<I", 8: "<Q"}


class KernelImageError(Exception):
    """A kernel image that cannot be booted; str() is a one-line message for the user."""


@dataclass(frozen=True)
class LoadSegment:
    """One PT_LOAD segment: `data` goes at `paddr`; bytes from len(data) to memsz are zero."""

    paddr: int
    data: bytes
    memsz: int


@dataclass(frozen=True)
class KernelImage:
    path: str
    elf_class: int
    machine: str
    segments: tuple[LoadSegment, ...]
    phys32_entry: int
    notes: dict[int, bytes]
    guest_os: str | None
    guest_version: str | None
    xen_version: str | None
    loader: str | None
    features: str | None
    warnings: tuple[str, ...] = ()

    @property
    def lowest_paddr(self) -> int:
        return min(seg.paddr for seg in self.segments)

    @property
    def highest_paddr(self) -> int:
        """End (exclusive) of the highest segment, including its zero-filled part."""
        return max(seg.paddr + seg.memsz for seg in self.segments)


def load_kernel_image(path: str | os.PathLike) -> KernelImage:
    name = os.fsdecode(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise KernelImageError(f"{name}: {e.strerror or e}") from None
    return parse_kernel_image(data, name)


def parse_kernel_image(data: bytes, name: str = "<kernel>") -> KernelImage:
    return _ImageParser(bytes(data), name).parse()


# pyelftools' decoders are stateless once built, and building them costs milliseconds
# (domain creation has a 5 ms budget): build each variant once.
@functools.lru_cache(maxsize=4)
def _basic_structs(elf_class: int) -> ELFStructs:
    structs = ELFStructs(little_endian=True, elfclass=elf_class)
    structs.create_basic_structs()
    return structs


@functools.lru_cache(maxsize=16)
def _advanced_structs(elf_class: int, e_type, e_machine, osabi) -> ELFStructs:
    structs = ELFStructs(little_endian=True, elfclass=elf_class)
    structs.create_basic_structs()
    structs.create_advanced_structs(e_type, e_machine, osabi)
    return structs


def _align4(n: int) -> int:
    return (n + 3) & ~3


def _note_string(desc: bytes) -> str:
    return desc.split(b"\0", 1)[0].decode("utf-8", "replace")


class _ImageParser:
    """Parses one image. Every check raises KernelImageError prefixed with the image name."""

    def __init__(self, data: bytes, name: str):
        self.data = data
        self.name = name
        self.warnings: list[str] = []
        self.elf_class = 0  # set from e_ident by _parse_header
        self.structs: ELFStructs | None = None  # pyelftools decoders for this class
        self.note_count = 0  # notes seen so far, across all note containers

    def error(self, message: str) -> KernelImageError:
        return KernelImageError(f"{self.name}: {message}")

    def parse(self) -> KernelImage:
        header = self._parse_header()
        phdrs = self._parse_table("program", header.e_phoff, header.e_phentsize,
                                  header.e_phnum, self.structs.Elf_Phdr)
        shdrs = self._parse_table("section", header.e_shoff, header.e_shentsize,
                                  header.e_shnum, self.structs.Elf_Shdr)
        if header.e_shstrndx >= len(shdrs):
            # libxc: "ELF image has no shstrtab".
            raise self.error(f"no section header string table (e_shstrndx {header.e_shstrndx}"
                            f", {len(shdrs)} section headers)")
        segments = self._load_segments(phdrs)
        notes = self._xen_notes(phdrs, shdrs)
        phys32_entry = self._phys32_entry(notes)
        self._check_features(notes)
        self._check_entry_range(notes, header.e_entry, segments)
        self._check_phys32_entry_target(phys32_entry, phdrs)

        def string_note(note_type: int) -> str | None:
            desc = notes.get(note_type)
            return None if desc is None else _note_string(desc)

        return KernelImage(
            path=self.name,
            elf_class=self.elf_class,
            machine=_MACHINES[header.e_machine],
            segments=tuple(seg for seg, _ in segments),
            phys32_entry=phys32_entry,
            notes=notes,
            guest_os=string_note(XEN_ELFNOTE_GUEST_OS),
            guest_version=string_note(XEN_ELFNOTE_GUEST_VERSION),
            xen_version=string_note(XEN_ELFNOTE_XEN_VERSION),
            loader=string_note(XEN_ELFNOTE_LOADER),
            features=string_note(XEN_ELFNOTE_FEATURES),
            warnings=tuple(self.warnings),
        )

    # --- headers --------------------------------------------------------------------------

    def _parse_header(self):
        data = self.data
        if len(data) < 4 or data[:4] != b"\x7fELF":
            raise self.error("not an ELF file")
        if len(data) < 16:
            raise self.error(f"truncated ELF header ({len(data)} bytes)")
        ei_class, ei_data = data[4], data[5]
        if ei_class not in (1, 2):
            raise self.error(f"unsupported ELF class {ei_class} (expected 1 or 2 for ELF32/ELF64)")
        if ei_data != 1:
            raise self.error(f"not a little-endian ELF file (EI_DATA {ei_data}); "
                            "x86 kernels are little-endian")
        self.elf_class = 32 if ei_class == 1 else 64
        structs = _basic_structs(self.elf_class)
        ehdr_size = structs.Elf_Ehdr.sizeof()
        if len(data) < ehdr_size:
            raise self.error(f"truncated ELF header ({len(data)} bytes, ELF{self.elf_class} "
                            f"needs {ehdr_size})")
        header = self._decode(structs.Elf_Ehdr, 0, "ELF header")
        if header.e_machine not in _MACHINES:
            machine = header.e_machine
            shown = machine if isinstance(machine, str) else f"machine {machine}"
            raise self.error(f"unsupported architecture {shown} "
                            "(a PVH kernel is EM_386 or EM_X86_64)")
        self.structs = _advanced_structs(self.elf_class, header.e_type, header.e_machine,
                                         header.e_ident.EI_OSABI)
        return header

    def _decode(self, definition, offset: int, what: str):
        # Callers check bounds first, so pyelftools only sees complete records; the
        # conversion is a guard against a pyelftools error escaping.
        size = definition.sizeof()
        try:
            return definition.parse(self.data[offset:offset + size])
        except ConstructError as e:
            raise self.error(f"cannot decode {what}: {e}") from None

    def _parse_table(self, kind: str, offset: int, entsize: int, count: int, definition):
        if count == 0:
            return []
        size = definition.sizeof()
        if entsize < size:
            raise self.error(f"{kind} header entry size {entsize} is smaller than "
                            f"ELF{self.elf_class}'s {size}")
        file_size = len(self.data)
        if offset + entsize * count > file_size:
            first_bad = max(0, (file_size - offset) // entsize)
            raise self.error(f"truncated ELF ({kind} header {first_bad} extends past end of file)")
        return [self._decode(definition, offset + i * entsize, f"{kind} header {i}")
                for i in range(count)]

    # --- PT_LOAD segments ---------------------------------------------------------------

    def _load_segments(self, phdrs) -> list[tuple[LoadSegment, int]]:
        """Loadable segments sorted by paddr, each paired with its program header index."""
        loads: list[tuple[LoadSegment, int]] = []
        for index, ph in enumerate(phdrs):
            if ph.p_type != "PT_LOAD":
                continue
            if not ph.p_flags & _PF_RWX:
                # Xen skips such a segment entirely.
                self.warnings.append(f"program header {index}: PT_LOAD without R/W/X flags "
                                     "is not loaded")
                continue
            offset, filesz, memsz, paddr = ph.p_offset, ph.p_filesz, ph.p_memsz, ph.p_paddr
            if filesz > memsz:
                raise self.error(f"segment {index}: p_filesz {filesz:#x} is larger than "
                                f"p_memsz {memsz:#x}")
            if filesz and offset + filesz > len(self.data):
                raise self.error(f"truncated ELF (segment {index} data extends past end of file)")
            end = paddr + memsz
            if end > _ADDR_MASK + 1:
                raise self.error(f"segment {index}: paddr {paddr:#x} + memsz {memsz:#x} "
                                "wraps around the address space")
            if paddr >= _FOUR_GIB or end > _FOUR_GIB:
                raise self.error(f"segment {index} ({paddr:#x}-{end:#x}) is not below 4 GiB; "
                                "a PVH kernel starts in 32-bit mode and must be loaded "
                                "below 4 GiB")
            data = self.data[offset:offset + filesz] if filesz else b""
            loads.append((LoadSegment(paddr=paddr, data=data, memsz=memsz), index))
        if not loads:
            raise self.error("no loadable (PT_LOAD) segments")
        loads.sort(key=lambda item: (item[0].paddr, item[0].memsz))
        previous: tuple[LoadSegment, int] | None = None
        for seg, index in loads:
            if not seg.memsz:
                continue
            if previous is not None:
                prev_seg, prev_index = previous
                prev_end = prev_seg.paddr + prev_seg.memsz
                if prev_end > seg.paddr:
                    raise self.error(
                        f"segments {prev_index} ({prev_seg.paddr:#x}-{prev_end:#x}) and "
                        f"{index} ({seg.paddr:#x}-{seg.paddr + seg.memsz:#x}) overlap")
            previous = (seg, index)
        return loads

    # --- notes ------------------------------------------------------------------------------

    def _xen_notes(self, phdrs, shdrs) -> dict[int, bytes]:
        notes: dict[int, bytes] = {}
        for index, ph in enumerate(phdrs):
            if ph.p_type != "PT_NOTE" or ph.p_offset == 0:
                continue
            self._read_notes(ph.p_offset, ph.p_filesz, f"note segment {index}", notes)
        if not notes:
            for index, sh in enumerate(shdrs):
                if index == 0 or sh.sh_type != "SHT_NOTE":
                    continue
                self._read_notes(sh.sh_offset, sh.sh_size, f"note section {index}", notes)
        return notes

    def _read_notes(self, start: int, size: int, where: str, notes: dict[int, bytes]) -> None:
        data = self.data
        end = start + size
        if end > len(data):
            raise self.error(f"truncated ELF ({where} extends past end of file)")
        pos = start
        while pos < end:
            if self.note_count >= MAX_TOTAL_NOTES:
                raise self.error(f"too many ELF notes (more than {MAX_TOTAL_NOTES})")
            self.note_count += 1
            if end - pos < _NOTE_HEADER.size:
                if not any(data[pos:end]):
                    break  # zero padding after the last note
                raise self.error(f"corrupt ELF note in {where}: truncated note header at "
                                f"offset {pos:#x}")
            namesz, descsz, note_type = _NOTE_HEADER.unpack_from(data, pos)
            name_start = pos + _NOTE_HEADER.size
            desc_start = name_start + _align4(namesz)
            if name_start + namesz > end or (descsz and desc_start + descsz > end):
                raise self.error(f"corrupt ELF note in {where} at offset {pos:#x}: "
                                f"namesz {namesz} / descsz {descsz} extend past its end")
            # Xen compares the name as a C string: "Xen" then a NUL, which may sit in the
            # padding, so namesz 3 with a zero pad byte and namesz 8 both match.
            if data[name_start:desc_start].split(b"\0", 1)[0] == b"Xen":
                notes[note_type] = data[desc_start:desc_start + descsz]
            pos = desc_start + _align4(descsz)

    def _phys32_entry(self, notes: dict[int, bytes]) -> int:
        if not notes:
            raise self.error("no Xen ELF notes: not a PVH kernel")
        desc = notes.get(XEN_ELFNOTE_PHYS32_ENTRY)
        if desc is None:
            raise self.error("no XEN_ELFNOTE_PHYS32_ENTRY note: not a PVH kernel")
        if len(desc) not in _NUMERIC_FORMATS:
            raise self.error(f"XEN_ELFNOTE_PHYS32_ENTRY note has a {len(desc)}-byte "
                            "descriptor (expected 4 or 8)")
        entry = struct.unpack(_NUMERIC_FORMATS[len(desc)], desc)[0]
        if entry >= _FOUR_GIB:
            raise self.error(f"XEN_ELFNOTE_PHYS32_ENTRY {entry:#x} is not a 32-bit address")
        return entry

    def _check_features(self, notes: dict[int, bytes]) -> None:
        desc = notes.get(XEN_ELFNOTE_FEATURES)
        if desc is None:
            return
        for part in _note_string(desc).split("|"):
            for i in range(0, len(part), _FEATURE_TOKEN_MAX):
                token = part[i:i + _FEATURE_TOKEN_MAX]
                if not token.startswith("!"):
                    continue
                if token[1:] not in XEN_FEATURE_NAMES:
                    raise self.error(f"FEATURES note requires {token[1:]!r}, "
                                    "which Xen does not know")
                if token == "!dom0":
                    raise self.error("FEATURES note requires dom0: the kernel cannot run as "
                                    "an unprivileged guest")

    # --- entry points ---------------------------------------------------------------------

    def _numeric_note(self, notes: dict[int, bytes], note_type: int) -> int | None:
        desc = notes.get(note_type)
        if desc is None:
            return None
        fmt = _NUMERIC_FORMATS.get(len(desc))
        return struct.unpack(fmt, desc)[0] if fmt else 0  # Xen reads odd sizes as 0

    def _check_entry_range(self, notes: dict[int, bytes], e_entry: int, segments) -> None:
        """Xen 4.10's kernel range check, which PVH images must pass as well."""
        virt_base = self._numeric_note(notes, XEN_ELFNOTE_VIRT_BASE)
        paddr_offset = self._numeric_note(notes, XEN_ELFNOTE_PADDR_OFFSET)
        if paddr_offset is not None and virt_base is None:
            raise self.error("PADDR_OFFSET note without a VIRT_BASE note")
        virt_base = virt_base or 0
        virt_offset = (virt_base - (paddr_offset or 0)) & _ADDR_MASK
        pstart = min(seg.paddr for seg, _ in segments)
        pend = max(seg.paddr + seg.memsz for seg, _ in segments)
        kstart = (pstart + virt_offset) & _ADDR_MASK
        kend = (pend + virt_offset) & _ADDR_MASK
        entry = self._numeric_note(notes, XEN_ELFNOTE_ENTRY)
        source = "ENTRY note"
        if entry is None:
            entry, source = e_entry, "e_entry"
        if kstart > kend or not kstart <= entry <= kend:
            raise self.error(f"{source} {entry:#x} is outside the kernel range "
                            f"{kstart:#x}-{kend:#x} (Xen 4.10 checks it for PVH kernels too)")
        if virt_base > kstart:
            raise self.error(f"VIRT_BASE {virt_base:#x} is above the kernel start {kstart:#x}")
        p2m_base = self._numeric_note(notes, XEN_ELFNOTE_INIT_P2M)
        if p2m_base is not None and kstart <= p2m_base < kend:
            raise self.error(f"INIT_P2M {p2m_base:#x} lies inside the kernel range "
                            f"{kstart:#x}-{kend:#x}")

    def _check_phys32_entry_target(self, entry: int, phdrs) -> None:
        for ph in phdrs:
            if ph.p_type != "PT_LOAD" or not ph.p_flags & _PF_RWX:
                continue
            if ph.p_paddr <= entry < ph.p_paddr + ph.p_memsz:
                if not ph.p_flags & _PF_X:
                    self.warnings.append(f"PHYS32_ENTRY {entry:#x} is in a non-executable "
                                         "segment")
                elif entry >= ph.p_paddr + ph.p_filesz:
                    self.warnings.append(f"PHYS32_ENTRY {entry:#x} is in the zero-filled "
                                         "part of its segment")
                return
        self.warnings.append(f"PHYS32_ENTRY {entry:#x} is outside every loaded segment")
