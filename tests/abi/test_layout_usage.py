"""How hypervisor code uses the Layouts: pack/unpack, pack_into, single-field
access, nested layouts at a parent's offset, bitfields, and errors."""

import struct

import pytest

from pyxen.abi import constants as c
from pyxen.abi import structs as s


def test_pack_unpack_round_trip_of_hvm_param():
    raw = s.XEN_HVM_PARAM.pack(domid=c.DOMID_SELF, index=c.HvmParam.STORE_PFN, value=0xFEFFC)
    assert raw == struct.pack("<HxxIQ", 0x7FF0, 1, 0xFEFFC)
    value = s.XEN_HVM_PARAM.unpack(raw)
    assert (value.domid, value.index, value.value) == (0x7FF0, 1, 0xFEFFC)
    assert value._fields == ("domid", "index", "value")


def test_unpack_at_an_offset_inside_guest_memory():
    memory = bytearray(0x1000)
    memory[0x80:0x80 + 12] = struct.pack("<HxxII", 0, 5, 0)  # a bind_interdomain
    arg = s.EVTCHN_BIND_INTERDOMAIN.unpack(memory, 0x80)
    assert (arg.remote_dom, arg.remote_port, arg.local_port) == (0, 5, 0)


def test_pack_into_and_padding_stays_zero():
    page = bytearray(b"\xff" * 64)
    s.GNTTAB_QUERY_SIZE.pack_into(page, 16, dom=1, nr_frames=1, max_nr_frames=64,
                                  status=c.GntSt.okay)
    assert page[16:32] == struct.pack("<HxxIIhxx", 1, 1, 64, 0)
    assert page[:16] == b"\xff" * 16 and page[32:] == b"\xff" * 32


def test_signed_status_round_trips():
    raw = s.GNTTAB_MAP_GRANT_REF.pack(status=c.GntSt.bad_gntref, handle=7)
    assert s.GNTTAB_MAP_GRANT_REF.read(raw, 0, "status") == -3
    assert s.GNTTAB_MAP_GRANT_REF.unpack(raw).handle == 7


def test_read_and_write_one_field():
    info = bytearray(s.VCPU_INFO.size)
    s.VCPU_INFO.write(info, 0, "evtchn_pending_sel", 1 << 63)
    s.VCPU_INFO.write(info, 0, "evtchn_upcall_pending", 1)
    assert info[0] == 1 and info[8:16] == (1 << 63).to_bytes(8, "little")
    assert s.VCPU_INFO.read(info, 0, "evtchn_pending_sel") == 1 << 63


def test_unknown_field_is_an_error():
    with pytest.raises(KeyError):
        s.XEN_HVM_PARAM.pack(domid=0, idx=1)
    with pytest.raises(KeyError):
        s.XEN_HVM_PARAM.read(bytes(16), 0, "idx")


def test_byte_array_member_pads_and_truncates_like_c_char_arrays():
    raw = s.XEN_COMPILE_INFO.pack(compiler=b"gcc", compile_date=b"today")
    assert len(raw) == 144
    info = s.XEN_COMPILE_INFO.unpack(raw)
    assert info.compiler == b"gcc" + bytes(61)
    assert info.compile_by == bytes(16)


def test_vcpu_time_info_sits_inside_vcpu_info_inside_shared_info():
    page = bytearray(4096)
    vcpu = 3
    vcpu_base = s.SHARED_INFO.offsetof("vcpu_info") + vcpu * s.VCPU_INFO_SIZE
    time_base = vcpu_base + s.VCPU_INFO.offsetof("time")
    s.VCPU_TIME_INFO.pack_into(page, time_base, version=2, system_time=10**9, tsc_shift=-1)
    assert time_base == 3 * 64 + 32
    assert s.VCPU_TIME_INFO.unpack(page, time_base).tsc_shift == -1
    assert s.SHARED_INFO.offsetof("evtchn_pending") == 2048
    assert s.SHARED_INFO.offsetof("wc_version") == 3072


def test_union_arm_packs_into_its_parent():
    raw = s.EVTCHN_STATUS.pack(dom=c.DOMID_SELF, port=4, status=c.EvtchnStat.interdomain,
                               u=s.EVTCHN_STATUS_INTERDOMAIN.pack(dom=2, port=9))
    assert struct.unpack_from("<HxxI", raw, s.EVTCHN_STATUS.offsetof("u")) == (2, 9)


def test_vcpu_hvm_context_64bit_arm():
    regs = s.VCPU_HVM_X86_64.pack(rip=0x100000, cr0=0x80000011, efer=0x500)
    ctx = s.VCPU_HVM_CONTEXT.pack(mode=c.VCPU_HVM_MODE_64B, cpu_regs=regs)
    decoded = s.VCPU_HVM_X86_64.unpack(ctx, s.VCPU_HVM_CONTEXT.offsetof("cpu_regs"))
    assert (decoded.rip, decoded.cr0, decoded.efer) == (0x100000, 0x80000011, 0x500)


def test_domctl_payload_at_the_union_offset():
    buf = bytearray(s.XEN_DOMCTL_SIZE)
    s.XEN_DOMCTL_HEADER.pack_into(buf, 0, cmd=c.Domctl.max_mem,
                                  interface_version=c.DOMCTL_INTERFACE_VERSION, domain=1)
    s.XEN_DOMCTL_MAX_MEM.pack_into(buf, s.XEN_DOMCTL_UNION_OFFSET, max_memkb=512 * 1024)
    whole = s.XEN_DOMCTL.unpack(buf)
    assert (whole.cmd, whole.interface_version, whole.domain) == (11, 0x0E, 1)
    assert s.XEN_DOMCTL_MAX_MEM.unpack(whole.u).max_memkb == 512 * 1024


def test_start_info_version_1_extends_version_0():
    raw = s.HVM_START_INFO.pack(magic=c.XEN_HVM_START_MAGIC_VALUE, version=1, nr_modules=1,
                                modlist_paddr=0x2000, memmap_paddr=0x3000, memmap_entries=4)
    v0 = s.HVM_START_INFO_V0.unpack(raw)
    assert (v0.magic, v0.modlist_paddr) == (0x336EC578, 0x2000)
    assert raw[:4] == bytes.fromhex("78c56e33")
    assert s.HVM_START_INFO.unpack(raw).memmap_entries == 4


def test_e820_entries_are_packed():
    table = b"".join(s.E820_ENTRY.pack(addr=a, size=n, type=t) for a, n, t in
                     [(0, 0x9FC00, c.E820Type.RAM), (0x100000, 0x3FF00000, c.E820Type.RAM)])
    assert len(table) == 40
    assert s.E820_ENTRY.unpack(table, 20).addr == 0x100000


def test_ioreq_bitfields():
    bits = 0
    bits = s.bitfield_set(bits, s.IOREQ_BITS["state"], c.IoreqState.READY)
    bits = s.bitfield_set(bits, s.IOREQ_BITS["dir"], c.IOREQ_READ)
    raw = s.IOREQ.pack(addr=0x3F8, size=1, count=1, bits=bits, type=c.IoreqType.PIO)
    req = s.IOREQ.unpack(raw)
    assert raw[30] == 0b0010_0001
    assert s.bitfield_get(req.bits, s.IOREQ_BITS["state"]) == c.IoreqState.READY
    assert s.bitfield_get(req.bits, s.IOREQ_BITS["dir"]) == 1
    assert s.bitfield_get(req.bits, s.IOREQ_BITS["data_is_ptr"]) == 0
    # Setting a field replaces only its own bits.
    assert s.bitfield_set(0xFF, s.IOREQ_BITS["state"], 0) == 0xF0


def test_trace_record_header_bits():
    header = s.bitfield_set(0, s.T_REC_BITS["event"], 0x00021001)
    header = s.bitfield_set(header, s.T_REC_BITS["extra_u32"], 1)
    header = s.bitfield_set(header, s.T_REC_BITS["cycles_included"], 1)
    assert header == 0x00021001 | (1 << 28) | (1 << 31)


def test_every_layout_is_listed_once_and_sized_by_its_struct():
    assert len({id(lay) for lay in s.ALL_LAYOUTS}) == len(s.ALL_LAYOUTS)
    for lay in s.ALL_LAYOUTS:
        assert lay.struct.size == lay.size
        assert len(lay.pack()) == lay.size
