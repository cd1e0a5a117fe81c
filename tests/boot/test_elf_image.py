"""pyxen.boot.elf: PVH kernel images built with the system as/ld, then parsed and mangled."""

from __future__ import annotations

import random
import struct
import subprocess
import time
from pathlib import Path

import pytest

from pyxen.boot.elf import (
    KernelImage,
    KernelImageError,
    load_kernel_image,
    parse_kernel_image,
)

PHYS32_ENTRY = 18
GUEST_OS = 6
GUEST_VERSION = 7
XEN_VERSION = 5
LOADER = 8
FEATURES = 10
ENTRY = 1

# The default kernel: a PHYS32_ENTRY note plus every string note the parser exposes.
STANDARD_NOTES = (
    (PHYS32_ENTRY, ".long", "pvh_entry"),
    (GUEST_OS, ".asciz", '"pyxen-test"'),
    (GUEST_VERSION, ".asciz", '"0.1"'),
    (XEN_VERSION, ".asciz", '"xen-3.0"'),
    (LOADER, ".asciz", '"generic"'),
    (FEATURES, ".asciz", '"writable_page_tables|hvm_callback_vector"'),
)

TEXT_ADDR = 0x100000
DATA_ADDR = 0x200000
DATA_BYTES = b"pyxen-data"
# _start: movl $0x11223344,%eax; pvh_entry: hlt; jmp pvh_entry
TEXT_BYTES = bytes.fromhex("b844332211") + bytes.fromhex("f4ebfd")


def build_kernel(directory: Path, bits: int, *, notes=STANDARD_NOTES, note_segment=True,
                 two_segments=True, bss_size=0x3000, text_addr=TEXT_ADDR,
                 data_addr=DATA_ADDR, text_padding=0, name="kernel") -> Path:
    """Assemble and link a tiny kernel; return the path of the ELF file.

    The text segment holds the code and the .note.Xen section; with note_segment the
    notes are also covered by a PT_NOTE segment, otherwise only the SHT_NOTE section
    describes them. two_segments=False puts .data and .bss in the text segment.
    """
    note_blocks = []
    for note_type, directive, value in notes:
        note_blocks.append(f"""
    .balign 4
    .long 4, 2f - 1f, {note_type}
    .asciz "Xen"
1:  {directive} {value}
2:  .balign 4""")
    source = f"""
    .section .text, "ax"
    .code32
    .globl _start
_start:
    movl $0x11223344, %eax
pvh_entry:
    hlt
    jmp pvh_entry
    .fill {text_padding}, 1, 0x90

    .section .data, "aw"
data_label:
    .ascii "{DATA_BYTES.decode()}"

    .section .bss, "aw", @nobits
    .skip {bss_size}

    .section .note.Xen, "a", @note
{"".join(note_blocks)}

    .section .note.GNU-stack, "", @progbits
"""
    data_phdr = "data" if two_segments else "text"
    script = f"""
ENTRY(_start)
PHDRS {{
  text PT_LOAD FLAGS({5 if two_segments else 7});
  {"data PT_LOAD FLAGS(6);" if two_segments else ""}
  {"note PT_NOTE FLAGS(4);" if note_segment else ""}
}}
SECTIONS {{
  . = {text_addr:#x};
  .text : {{ *(.text) }} :text
  .note.Xen : {{ *(.note.Xen) }} :text {":note" if note_segment else ""}
  . = {data_addr if two_segments else "."};
  .data : {{ *(.data) }} :{data_phdr}
  .bss : {{ *(.bss) }} :{data_phdr}
  /DISCARD/ : {{ *(.note.gnu.property) *(.comment) }}
}}
"""
    src = directory / f"{name}.S"
    obj = directory / f"{name}.o"
    lds = directory / f"{name}.ld"
    elf = directory / f"{name}.elf"
    src.write_text(source)
    lds.write_text(script)
    emulation = "elf_i386" if bits == 32 else "elf_x86_64"
    run_tool("as", f"--{bits}", "-o", str(obj), str(src))
    run_tool("ld", "-m", emulation, "-T", str(lds), "-o", str(elf), str(obj))
    return elf


def run_tool(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(argv)} failed:\n{done.stderr}"
    return done.stdout


def symbol(elf: Path, name: str) -> int:
    for line in run_tool("nm", str(elf)).splitlines():
        value, _, sym = line.split()
        if sym == name:
            return int(value, 16)
    raise AssertionError(f"{name} not in {elf}")


class ElfBytes:
    """Byte-level view of an ELF file for building broken variants (independent of the parser)."""

    EHDR = {32: {"e_entry": (24, "I"), "e_phoff": (28, "I"), "e_shoff": (32, "I"),
                 "e_phentsize": (42, "H"), "e_phnum": (44, "H"), "e_shentsize": (46, "H"),
                 "e_shnum": (48, "H"), "e_shstrndx": (50, "H"), "e_machine": (18, "H")},
            64: {"e_entry": (24, "Q"), "e_phoff": (32, "Q"), "e_shoff": (40, "Q"),
                 "e_phentsize": (54, "H"), "e_phnum": (56, "H"), "e_shentsize": (58, "H"),
                 "e_shnum": (60, "H"), "e_shstrndx": (62, "H"), "e_machine": (18, "H")}}
    PHDR = {32: {"p_type": (0, "I"), "p_offset": (4, "I"), "p_paddr": (12, "I"),
                 "p_filesz": (16, "I"), "p_memsz": (20, "I"), "p_flags": (24, "I")},
            64: {"p_type": (0, "I"), "p_flags": (4, "I"), "p_offset": (8, "Q"),
                 "p_paddr": (24, "Q"), "p_filesz": (32, "Q"), "p_memsz": (40, "Q")}}
    SHDR = {32: {"sh_type": (4, "I"), "sh_offset": (16, "I"), "sh_size": (20, "I")},
            64: {"sh_type": (4, "I"), "sh_offset": (24, "Q"), "sh_size": (32, "Q")}}

    def __init__(self, data: bytes):
        self.data = bytearray(data)
        self.bits = 32 if data[4] == 1 else 64

    def _get(self, base: int, spec: tuple[int, str]) -> int:
        return struct.unpack_from("<" + spec[1], self.data, base + spec[0])[0]

    def _set(self, base: int, spec: tuple[int, str], value: int) -> None:
        struct.pack_into("<" + spec[1], self.data, base + spec[0], value)

    def ehdr(self, field: str) -> int:
        return self._get(0, self.EHDR[self.bits][field])

    def set_ehdr(self, field: str, value: int) -> None:
        self._set(0, self.EHDR[self.bits][field], value)

    def phdr_base(self, index: int) -> int:
        return self.ehdr("e_phoff") + index * self.ehdr("e_phentsize")

    def phdr(self, index: int, field: str) -> int:
        return self._get(self.phdr_base(index), self.PHDR[self.bits][field])

    def set_phdr(self, index: int, field: str, value: int) -> None:
        self._set(self.phdr_base(index), self.PHDR[self.bits][field], value)

    def phdr_index(self, p_type: int, nth: int = 0) -> int:
        found = [i for i in range(self.ehdr("e_phnum")) if self.phdr(i, "p_type") == p_type]
        return found[nth]

    def shdr_base(self, index: int) -> int:
        return self.ehdr("e_shoff") + index * self.ehdr("e_shentsize")

    def shdr(self, index: int, field: str) -> int:
        return self._get(self.shdr_base(index), self.SHDR[self.bits][field])

    def note_section_offset(self) -> int:
        for i in range(self.ehdr("e_shnum")):
            if self.shdr(i, "sh_type") == 7:  # SHT_NOTE
                return self.shdr(i, "sh_offset")
        raise AssertionError("no SHT_NOTE section")

    def bytes(self) -> bytes:
        return bytes(self.data)


PT_LOAD, PT_NOTE = 1, 4


@pytest.fixture(scope="module")
def kernels(tmp_path_factory) -> dict[int, Path]:
    directory = tmp_path_factory.mktemp("kernels")
    return {bits: build_kernel(directory, bits, name=f"k{bits}") for bits in (32, 64)}


def expect_error(data: bytes, *fragments: str, name: str = "kernel.elf") -> str:
    with pytest.raises(KernelImageError) as info:
        parse_kernel_image(data, name)
    message = str(info.value)
    assert message.startswith(f"{name}: ") and "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


# --- well-formed kernels ----------------------------------------------------------------


@pytest.mark.parametrize("bits", [32, 64])
def test_standard_kernel_every_field(kernels, bits):
    elf = kernels[bits]
    image = load_kernel_image(elf)
    assert isinstance(image, KernelImage)
    assert image.path == str(elf)
    assert image.elf_class == bits
    assert image.machine == ("x86" if bits == 32 else "x86_64")
    assert image.phys32_entry == symbol(elf, "pvh_entry") == TEXT_ADDR + 5

    text, data = image.segments
    assert text.paddr == TEXT_ADDR
    assert text.data.startswith(TEXT_BYTES)
    assert text.memsz == len(text.data)
    assert b"Xen\0" in text.data  # the notes are loaded with the text
    assert data.paddr == DATA_ADDR
    assert data.data == DATA_BYTES
    assert data.memsz == len(DATA_BYTES) + 0x3000
    assert image.lowest_paddr == TEXT_ADDR
    assert image.highest_paddr == DATA_ADDR + len(DATA_BYTES) + 0x3000

    assert image.notes == {
        PHYS32_ENTRY: struct.pack("<I", TEXT_ADDR + 5),
        GUEST_OS: b"pyxen-test\0",
        GUEST_VERSION: b"0.1\0",
        XEN_VERSION: b"xen-3.0\0",
        LOADER: b"generic\0",
        FEATURES: b"writable_page_tables|hvm_callback_vector\0",
    }
    assert image.guest_os == "pyxen-test"
    assert image.guest_version == "0.1"
    assert image.xen_version == "xen-3.0"
    assert image.loader == "generic"
    assert image.features == "writable_page_tables|hvm_callback_vector"
    assert image.warnings == ()


@pytest.mark.parametrize("bits", [32, 64])
def test_notes_only_in_section(tmp_path, bits):
    elf = build_kernel(tmp_path, bits, note_segment=False)
    patched = ElfBytes(elf.read_bytes())
    assert PT_NOTE not in [patched.phdr(i, "p_type") for i in range(patched.ehdr("e_phnum"))]
    image = parse_kernel_image(elf.read_bytes())
    assert image.phys32_entry == symbol(elf, "pvh_entry")
    assert image.guest_os == "pyxen-test"
    assert image.path == "<kernel>"


@pytest.mark.parametrize("bits", [32, 64])
def test_only_phys32_entry_note_needed(tmp_path, bits):
    elf = build_kernel(tmp_path, bits, notes=[(PHYS32_ENTRY, ".long", "pvh_entry")])
    image = load_kernel_image(elf)
    assert image.notes == {PHYS32_ENTRY: struct.pack("<I", TEXT_ADDR + 5)}
    assert (image.guest_os, image.guest_version, image.xen_version, image.loader,
            image.features) == (None, None, None, None, None)


@pytest.mark.parametrize("bits", [32, 64])
def test_eight_byte_phys32_entry(tmp_path, bits):
    # Linux emits PHYS32_ENTRY with _ASM_PTR, i.e. 8 bytes in a 64-bit build.
    # ELF32 objects have no 64-bit relocations, so spell the quad out as two longs.
    value = "pvh_entry" if bits == 64 else "pvh_entry, 0"
    elf = build_kernel(tmp_path, bits,
                       notes=[(PHYS32_ENTRY, ".quad" if bits == 64 else ".long", value)])
    image = load_kernel_image(elf)
    assert image.phys32_entry == TEXT_ADDR + 5
    assert image.notes[PHYS32_ENTRY] == struct.pack("<Q", TEXT_ADDR + 5)


def test_single_segment_with_bss(tmp_path):
    elf = build_kernel(tmp_path, 64, two_segments=False, bss_size=0x10000)
    image = load_kernel_image(elf)
    (segment,) = image.segments
    assert segment.paddr == TEXT_ADDR
    assert segment.data.startswith(TEXT_BYTES)
    assert segment.data.endswith(DATA_BYTES)
    assert segment.memsz == len(segment.data) + 0x10000
    assert image.highest_paddr == TEXT_ADDR + segment.memsz


def test_segments_are_sorted_by_physical_address(tmp_path):
    # Data below text in memory, but its program header still comes second.
    elf = build_kernel(tmp_path, 32, text_addr=0x400000, data_addr=0x100000)
    raw = ElfBytes(elf.read_bytes())
    assert raw.phdr(0, "p_paddr") == 0x400000
    image = parse_kernel_image(raw.bytes())
    assert [s.paddr for s in image.segments] == [0x100000, 0x400000]
    assert image.lowest_paddr == 0x100000
    assert image.highest_paddr == 0x400000 + image.segments[1].memsz


def test_physical_not_virtual_addresses_are_used(kernels):
    raw = ElfBytes(kernels[64].read_bytes())
    # A higher-half link: only p_vaddr changes, the image still loads at p_paddr.
    for i in range(raw.ehdr("e_phnum")):
        base = raw.phdr_base(i) + 16
        vaddr = struct.unpack_from("<Q", raw.data, base)[0]
        struct.pack_into("<Q", raw.data, base, vaddr + 0xFFFFFFFF80000000)
    image = parse_kernel_image(raw.bytes())
    assert [s.paddr for s in image.segments] == [TEXT_ADDR, DATA_ADDR]


@pytest.mark.parametrize("bits", [32, 64])
def test_entry_outside_segments_is_only_a_warning(tmp_path, bits):
    elf = build_kernel(tmp_path, bits, notes=[(PHYS32_ENTRY, ".long", "0x900000")])
    image = load_kernel_image(elf)
    assert image.phys32_entry == 0x900000
    assert image.warnings == ("PHYS32_ENTRY 0x900000 is outside every loaded segment",)


def test_entry_in_data_segment_warns(tmp_path):
    elf = build_kernel(tmp_path, 32, notes=[(PHYS32_ENTRY, ".long", "data_label")])
    image = load_kernel_image(elf)
    assert image.phys32_entry == DATA_ADDR
    assert image.warnings == ("PHYS32_ENTRY 0x200000 is in a non-executable segment",)


def test_entry_in_bss_warns(tmp_path):
    elf = build_kernel(tmp_path, 32, two_segments=False,
                       notes=[(PHYS32_ENTRY, ".long", f"{TEXT_ADDR + 0x2000:#x}")])
    image = load_kernel_image(elf)
    assert image.warnings == (
        f"PHYS32_ENTRY {TEXT_ADDR + 0x2000:#x} is in the zero-filled part of its segment",)


def test_pt_load_without_permissions_is_skipped_like_xen(kernels):
    raw = ElfBytes(kernels[32].read_bytes())
    raw.set_phdr(raw.phdr_index(PT_LOAD, 1), "p_flags", 0)
    image = parse_kernel_image(raw.bytes())
    assert [s.paddr for s in image.segments] == [TEXT_ADDR]
    assert image.warnings == ("program header 1: PT_LOAD without R/W/X flags is not loaded",)


def test_note_segment_at_offset_zero_is_ignored_like_xen(kernels):
    # Xen skips such PT_NOTE segments; the notes are then found through the section.
    raw = ElfBytes(kernels[32].read_bytes())
    raw.set_phdr(raw.phdr_index(PT_NOTE), "p_offset", 0)
    assert parse_kernel_image(raw.bytes()).phys32_entry == TEXT_ADDR + 5


def test_sections_are_not_searched_when_a_segment_has_xen_notes(kernels):
    raw = ElfBytes(kernels[32].read_bytes())
    note = raw.phdr_index(PT_NOTE)
    # Let the PT_NOTE segment cover only the first note (PHYS32_ENTRY, 20 bytes).
    raw.set_phdr(note, "p_filesz", 20)
    image = parse_kernel_image(raw.bytes())
    assert image.notes == {PHYS32_ENTRY: struct.pack("<I", TEXT_ADDR + 5)}
    assert image.guest_os is None


def test_non_xen_notes_are_ignored(tmp_path):
    elf = build_kernel(tmp_path, 32)
    raw = ElfBytes(elf.read_bytes())
    # Rename the owner of the second note (GUEST_OS) from "Xen" to "Xyz".
    second = raw.note_section_offset() + 20
    raw.data[second + 12:second + 16] = b"Xyz\0"
    image = parse_kernel_image(raw.bytes())
    assert GUEST_OS not in image.notes and image.guest_os is None
    assert image.loader == "generic"


def test_features_requiring_unknown_feature_is_refused(tmp_path):
    elf = build_kernel(tmp_path, 32, notes=[(PHYS32_ENTRY, ".long", "pvh_entry"),
                                            (FEATURES, ".asciz", '"!no_such_feature"')])
    expect_error(elf.read_bytes(), "FEATURES note requires 'no_such_feature'")


def test_features_requiring_dom0_is_refused(tmp_path):
    elf = build_kernel(tmp_path, 32, notes=[(PHYS32_ENTRY, ".long", "pvh_entry"),
                                            (FEATURES, ".asciz", '"hvm_callback_vector|!dom0"')])
    expect_error(elf.read_bytes(), "requires dom0")


def test_feature_names_match_exactly_and_unknown_optional_ones_pass(tmp_path):
    elf = build_kernel(tmp_path, 32, notes=[(PHYS32_ENTRY, ".long", "pvh_entry"),
                                            (FEATURES, ".asciz", '"future_thing|!dom0x"')])
    expect_error(elf.read_bytes(), "'dom0x'")
    elf = build_kernel(tmp_path, 32, notes=[(PHYS32_ENTRY, ".long", "pvh_entry"),
                                            (FEATURES, ".asciz", '"future_thing"')])
    assert load_kernel_image(elf).features == "future_thing"


# --- Xen 4.10's PV entry range check ---------------------------------------------------------


def test_e_entry_outside_kernel_is_refused_like_xen_4_10(kernels):
    raw = ElfBytes(kernels[64].read_bytes())
    raw.set_ehdr("e_entry", 0xFFFFFFFF81000000)
    expect_error(raw.bytes(), "e_entry 0xffffffff81000000 is outside the kernel range "
                              "0x100000-0x20300a")


def test_e_entry_at_kernel_end_is_accepted(kernels):
    raw = ElfBytes(kernels[64].read_bytes())
    raw.set_ehdr("e_entry", DATA_ADDR + len(DATA_BYTES) + 0x3000)  # Xen's bound is inclusive
    parse_kernel_image(raw.bytes())


def test_entry_note_replaces_e_entry(tmp_path):
    notes = [(PHYS32_ENTRY, ".long", "pvh_entry"), (ENTRY, ".long", "0x50000000")]
    expect_error(build_kernel(tmp_path, 32, notes=notes).read_bytes(),
                 "ENTRY note 0x50000000 is outside the kernel range")


def test_virt_base_shifts_the_kernel_range(tmp_path):
    notes = [(PHYS32_ENTRY, ".long", "pvh_entry"), (3, ".quad", "0xffffffff80000000"),
             (4, ".quad", "0"), (ENTRY, ".quad", "0xffffffff80100005")]
    image = load_kernel_image(build_kernel(tmp_path, 64, notes=notes))
    assert image.phys32_entry == TEXT_ADDR + 5
    notes.pop(2)  # PADDR_OFFSET needs VIRT_BASE, not the other way round
    load_kernel_image(build_kernel(tmp_path, 64, notes=notes))
    expect_error(build_kernel(tmp_path, 64, notes=[notes[0], (4, ".quad", "0")]).read_bytes(),
                 "PADDR_OFFSET note without a VIRT_BASE note")


# --- broken files ------------------------------------------------------------------------


def test_missing_file():
    with pytest.raises(KernelImageError) as info:
        load_kernel_image("/nonexistent/kernel.elf")
    assert str(info.value) == "/nonexistent/kernel.elf: No such file or directory"


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(KernelImageError, match="Is a directory"):
        load_kernel_image(tmp_path)


@pytest.mark.parametrize("data", [b"", b"\x7fEL", b"MZ\x90\x00" + bytes(100), b"#!/bin/sh\n"])
def test_not_elf(data):
    assert expect_error(data) == "kernel.elf: not an ELF file"


def test_truncated_ident_and_header(kernels):
    data = kernels[64].read_bytes()
    expect_error(data[:10], "truncated ELF header (10 bytes)")
    expect_error(data[:40], "truncated ELF header (40 bytes, ELF64 needs 64)")
    expect_error(kernels[32].read_bytes()[:51], "ELF32 needs 52")


def test_wrong_class_endianness_machine(kernels):
    data = bytearray(kernels[64].read_bytes())
    bad = bytearray(data)
    bad[4] = 3
    expect_error(bytes(bad), "unsupported ELF class 3")
    bad = bytearray(data)
    bad[5] = 2
    expect_error(bytes(bad), "not a little-endian ELF file")
    raw = ElfBytes(bytes(data))
    raw.set_ehdr("e_machine", 40)  # EM_ARM
    expect_error(raw.bytes(), "unsupported architecture EM_ARM")
    raw.set_ehdr("e_machine", 0x7777)
    expect_error(raw.bytes(), "unsupported architecture machine 30583")


@pytest.mark.parametrize("bits", [32, 64])
def test_program_headers_past_end_of_file(kernels, bits):
    raw = ElfBytes(kernels[bits].read_bytes())
    phoff, phentsize = raw.ehdr("e_phoff"), raw.ehdr("e_phentsize")
    assert expect_error(raw.bytes()[:phoff + 2 * phentsize + 1]) == (
        "kernel.elf: truncated ELF (program header 2 extends past end of file)")
    raw.set_ehdr("e_phoff", len(raw.data) + 100)
    expect_error(raw.bytes(), "program header 0 extends past end of file")


def test_section_headers_past_end_of_file(kernels):
    data = kernels[32].read_bytes()
    expect_error(data[:-1], "truncated ELF (section header 7 extends past end of file)")


def test_header_entry_sizes(kernels):
    raw = ElfBytes(kernels[64].read_bytes())
    raw.set_ehdr("e_phentsize", 32)
    expect_error(raw.bytes(), "program header entry size 32 is smaller than ELF64's 56")
    raw = ElfBytes(kernels[64].read_bytes())
    raw.set_ehdr("e_shentsize", 40)
    expect_error(raw.bytes(), "section header entry size 40 is smaller than ELF64's 64")


def test_no_section_header_string_table(kernels):
    raw = ElfBytes(kernels[32].read_bytes())
    raw.set_ehdr("e_shstrndx", raw.ehdr("e_shnum"))
    expect_error(raw.bytes(), "no section header string table")
    raw.set_ehdr("e_shnum", 0)
    raw.set_ehdr("e_shstrndx", 0)
    expect_error(raw.bytes(), "no section header string table (e_shstrndx 0, 0 section")


@pytest.mark.parametrize("bits", [32, 64])
def test_segment_data_past_end_of_file(kernels, bits):
    raw = ElfBytes(kernels[bits].read_bytes())
    raw.set_phdr(0, "p_filesz", len(raw.data))
    raw.set_phdr(0, "p_memsz", len(raw.data))
    expect_error(raw.bytes(), "truncated ELF (segment 0 data extends past end of file)")


def test_filesz_larger_than_memsz(kernels):
    raw = ElfBytes(kernels[32].read_bytes())
    raw.set_phdr(1, "p_memsz", 4)
    expect_error(raw.bytes(), "segment 1: p_filesz 0xa is larger than p_memsz 0x4")


@pytest.mark.parametrize("bits", [32, 64])
def test_overlapping_segments(kernels, bits):
    raw = ElfBytes(kernels[bits].read_bytes())
    raw.set_phdr(1, "p_paddr", TEXT_ADDR + 0x10)
    text_end = TEXT_ADDR + raw.phdr(0, "p_memsz")
    data_end = TEXT_ADDR + 0x10 + raw.phdr(1, "p_memsz")
    expect_error(raw.bytes(), f"segments 0 ({TEXT_ADDR:#x}-{text_end:#x}) and "
                              f"1 ({TEXT_ADDR + 0x10:#x}-{data_end:#x}) overlap")


def test_touching_segments_are_fine(kernels):
    raw = ElfBytes(kernels[32].read_bytes())
    raw.set_phdr(1, "p_paddr", TEXT_ADDR + raw.phdr(0, "p_memsz"))
    assert len(parse_kernel_image(raw.bytes()).segments) == 2


def test_no_loadable_segments(kernels):
    raw = ElfBytes(kernels[64].read_bytes())
    for i in (0, 1):
        raw.set_phdr(i, "p_type", 0)
    assert expect_error(raw.bytes()) == "kernel.elf: no loadable (PT_LOAD) segments"


def test_segment_above_4gib(tmp_path):
    elf = build_kernel(tmp_path, 64, data_addr=0x100000000)
    expect_error(elf.read_bytes(), "segment 1 (0x100000000-0x10000300a) is not below 4 GiB")


def test_segment_crossing_4gib_in_elf32(kernels):
    raw = ElfBytes(kernels[32].read_bytes())
    raw.set_phdr(1, "p_paddr", 0xFFFFF000)
    expect_error(raw.bytes(), "segment 1 (0xfffff000-0x10000200a) is not below 4 GiB")


def test_segment_wrapping_the_address_space(kernels):
    raw = ElfBytes(kernels[64].read_bytes())
    raw.set_phdr(1, "p_paddr", 0xFFFFFFFFFFFFF000)
    expect_error(raw.bytes(), "wraps around the address space")


def test_phys32_entry_above_4gib(tmp_path):
    elf = build_kernel(tmp_path, 64, notes=[(PHYS32_ENTRY, ".quad", "0x100000000")])
    expect_error(elf.read_bytes(), "XEN_ELFNOTE_PHYS32_ENTRY 0x100000000 is not a 32-bit address")


def test_phys32_entry_odd_descriptor_size(tmp_path):
    elf = build_kernel(tmp_path, 32, notes=[(PHYS32_ENTRY, ".byte", "1, 2, 3")])
    expect_error(elf.read_bytes(), "3-byte descriptor (expected 4 or 8)")


@pytest.mark.parametrize("bits", [32, 64])
def test_no_xen_notes(tmp_path, bits):
    elf = build_kernel(tmp_path, bits, notes=[])
    assert expect_error(elf.read_bytes()) == "kernel.elf: no Xen ELF notes: not a PVH kernel"


def test_no_phys32_entry_note(tmp_path):
    elf = build_kernel(tmp_path, 64, notes=STANDARD_NOTES[1:])
    assert expect_error(elf.read_bytes()) == (
        "kernel.elf: no XEN_ELFNOTE_PHYS32_ENTRY note: not a PVH kernel")


@pytest.mark.parametrize("field_offset", [0, 4])  # namesz, descsz
def test_corrupt_note_sizes(kernels, field_offset):
    raw = ElfBytes(kernels[32].read_bytes())
    struct.pack_into("<I", raw.data, raw.note_section_offset() + 20 + field_offset, 0x1000)
    expect_error(raw.bytes(), "corrupt ELF note in note segment 2 at offset 0x101c")


def test_zero_padding_after_the_last_note(kernels):
    raw = ElfBytes(kernels[32].read_bytes())
    note = raw.phdr_index(PT_NOTE)
    notes_end = raw.phdr(note, "p_offset") + raw.phdr(note, "p_filesz")
    assert raw.data[notes_end:notes_end + 8] == bytes(8)  # file padding before .data
    raw.set_phdr(note, "p_filesz", raw.phdr(note, "p_filesz") + 8)
    assert parse_kernel_image(raw.bytes()).guest_os == "pyxen-test"
    raw.data[notes_end + 5] = 1
    expect_error(raw.bytes(), f"truncated note header at offset {notes_end:#x}")


def test_note_segment_past_end_of_file(kernels):
    raw = ElfBytes(kernels[32].read_bytes())
    raw.set_phdr(raw.phdr_index(PT_NOTE), "p_filesz", 0x10000)
    expect_error(raw.bytes(), "truncated ELF (note segment 2 extends past end of file)")


def test_corrupt_note_in_fallback_section(tmp_path):
    raw = ElfBytes(build_kernel(tmp_path, 64, note_segment=False).read_bytes())
    struct.pack_into("<I", raw.data, raw.note_section_offset() + 4, 0xFFFFFFFF)
    expect_error(raw.bytes(), "corrupt ELF note in note section 2")


# --- fuzzing and speed -------------------------------------------------------------------


def check_parse(data: bytes, what: str) -> None:
    """Parse a mangled image: only KernelImageError may escape, and what parses is sane."""
    try:
        image = parse_kernel_image(data, "fuzz.elf")
    except KernelImageError as e:
        message = str(e)
        assert message.startswith("fuzz.elf: ") and "\n" not in message, (what, message)
        return
    except Exception as e:  # noqa: BLE001 - the point is to catch anything else
        raise AssertionError(f"{what}: {type(e).__name__}: {e}") from e
    assert image.segments, what
    previous_end = 0
    for seg in image.segments:
        assert len(seg.data) <= seg.memsz, what
        if seg.memsz:
            assert seg.paddr >= previous_end, what
            previous_end = seg.paddr + seg.memsz
    assert image.highest_paddr <= 1 << 32, what
    assert image.phys32_entry < 1 << 32, what


def test_fuzz_only_kernel_image_error_escapes(kernels):
    rng = random.Random(0x5EED)
    cases = 0
    for bits, elf in kernels.items():
        data = elf.read_bytes()
        raw = ElfBytes(data)
        header_end = raw.phdr_base(raw.ehdr("e_phnum"))
        notes_start = raw.note_section_offset()
        shdr_start = raw.ehdr("e_shoff")
        # Truncation at every length of the headers, the notes and the section table.
        lengths = set(range(header_end + 1))
        lengths |= set(range(notes_start, notes_start + 0x30))
        lengths |= set(range(shdr_start, len(data)))
        lengths |= set(range(0, len(data), 61))
        for length in sorted(lengths):
            check_parse(data[:length], f"ELF{bits} truncated to {length}")
            cases += 1
        hot = (list(range(header_end)) + list(range(notes_start, notes_start + 0x2C))
               + list(range(shdr_start, len(data))))
        for i in range(1500):
            mutated = bytearray(data)
            for _ in range(rng.randint(1, 4)):
                if rng.random() < 0.5:
                    pos = rng.choice(hot)
                    mutated[pos] ^= 1 << rng.randrange(8)
                else:
                    width = rng.choice((1, 2, 4, 8))
                    pos = rng.choice(hot)
                    value = rng.choice((0, 1, 0xFF, 0xFFFF, 0xFFFFFFFF, (1 << 64) - 1,
                                        rng.getrandbits(64), len(data), len(data) - 1))
                    mutated[pos:pos + width] = (value & ((1 << 8 * width) - 1)).to_bytes(
                        width, "little")
            check_parse(bytes(mutated), f"ELF{bits} mutation {i}")
            cases += 1
        for i in range(300):
            # Valid ELF header, random everything after it.
            garbage = data[:rng.randrange(16, 80)] + rng.randbytes(rng.randrange(0, 600))
            check_parse(garbage, f"ELF{bits} header + garbage {i}")
            cases += 1
    for i in range(300):
        check_parse(b"\x7fELF" + rng.randbytes(rng.randrange(0, 300)), f"magic + garbage {i}")
        check_parse(rng.randbytes(rng.randrange(0, 100)), f"garbage {i}")
        cases += 2
    assert cases > 5000


def test_parsing_100kb_kernel_is_fast(tmp_path):
    elf = build_kernel(tmp_path, 64, text_padding=100_000)
    data = elf.read_bytes()
    assert len(data) > 100_000
    best = float("inf")
    for _ in range(20):
        start = time.perf_counter()
        image = parse_kernel_image(data)
        best = min(best, time.perf_counter() - start)
    assert len(image.segments[0].data) > 100_000
    assert best < 0.005, f"best parse took {best * 1000:.2f} ms"
