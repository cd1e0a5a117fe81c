"""Xen 4.10 x86-64 struct layouts, one `Layout` per C struct we decode or build.

Conventions (tests/abi checks every one of them against gcc and the 4.10 sheet):

* Offsets and sizes are those of x86-64 (LP64); guest handles are 8 bytes ("Q").
* A member of a nested struct may be spelled with "__" for C's ".":
  ``cpumap_hard__nr_bits`` is ``cpumap_hard.nr_bits``.  Otherwise a nested
  struct or union is a byte array and has its own Layout, applied at
  ``PARENT.offsetof(member)``.
* A union member that is an anonymous struct gets a Layout whose ``c_type`` is
  ``__typeof__`` of that member, so the test can compile it.
* C bitfields are read through the byte/word that stores them; `BITFIELDS`
  gives (shift, width) of each field inside that storage member.
* Members whose C name starts with "_" (padding) are left out: gaps are padding.
* A C name that is a Python keyword gets a trailing "_" (``in_`` is ``in``).
* Where the 4.10 layout differs from the installed 4.17 headers, the Layout
  is 4.10's (the ABI we implement) and a comment says what 4.17 changed.
"""

from __future__ import annotations

from pyxen.abi.layout import Layout

_XEN = "xen/xen.h"
_ARCH = "xen/arch-x86/xen.h"
_VERSION = "xen/version.h"
_SCHED = "xen/sched.h"
_VCPU = "xen/vcpu.h"
_MEMORY = "xen/memory.h"
_EVTCHN = "xen/event_channel.h"
_GNTTAB = "xen/grant_table.h"
_TRACE = "xen/trace.h"
_VM_EVENT = "xen/vm_event.h"
_DOMCTL = "xen/domctl.h"
_SYSCTL = "xen/sysctl.h"
_START_INFO = "xen/arch-x86/hvm/start_info.h"
_HVM_OP = "xen/hvm/hvm_op.h"
_HVM_VCPU = "xen/hvm/hvm_vcpu.h"
_IOREQ = "xen/hvm/ioreq.h"
_DM_OP = "xen/hvm/dm_op.h"
_CONSOLE = "xen/io/console.h"
_XS_WIRE = "xen/io/xs_wire.h"
_PVCALLS = "xen/io/pvcalls.h"
_HVM_SAVE = "xen/hvm/save.h"


def _struct(name: str, size: int, members: list[tuple[str, int, str]], header: str | None,
            c_type: str | None = None) -> Layout:
    return Layout(name, size, members, header=header, c_type=c_type or f"struct {name}")


def _member_type(parent_c_type: str, path: str) -> str:
    """C type expression for an anonymous struct member, e.g. a union arm."""
    return f"__typeof__((({parent_c_type} *)0)->{path})"


def bitfield_get(word: int, field: tuple[int, int]) -> int:
    shift, width = field
    return (word >> shift) & ((1 << width) - 1)


def bitfield_set(word: int, field: tuple[int, int], value: int) -> int:
    shift, width = field
    mask = ((1 << width) - 1) << shift
    return (word & ~mask) | ((value << shift) & mask)


# ---------------------------------------------------------------------------
# xen.h / arch-x86/xen.h: shared_info, vcpu_info, time
# ---------------------------------------------------------------------------

ARCH_VCPU_INFO = _struct("arch_vcpu_info", 16, [
    ("cr2", 0, "Q"),
    ("pad", 8, "Q"),
], _ARCH)

VCPU_TIME_INFO = _struct("vcpu_time_info", 32, [
    ("version", 0, "I"),
    ("pad0", 4, "I"),
    ("tsc_timestamp", 8, "Q"),
    ("system_time", 16, "Q"),
    ("tsc_to_system_mul", 24, "I"),
    ("tsc_shift", 28, "b"),
    ("flags", 29, "B"),
    ("pad1", 30, "2s"),
], _XEN)

VCPU_INFO_SIZE = 64
VCPU_INFO = _struct("vcpu_info", VCPU_INFO_SIZE, [
    ("evtchn_upcall_pending", 0, "B"),
    ("evtchn_upcall_mask", 1, "B"),
    ("evtchn_pending_sel", 8, "Q"),
    ("arch", 16, "16s"),  # ARCH_VCPU_INFO
    ("time", 32, "32s"),  # VCPU_TIME_INFO
], _XEN)

ARCH_SHARED_INFO = _struct("arch_shared_info", 48, [
    ("max_pfn", 0, "Q"),
    ("pfn_to_mfn_frame_list_list", 8, "Q"),
    ("nmi_reason", 16, "Q"),
    ("p2m_cr3", 24, "Q"),
    ("p2m_vaddr", 32, "Q"),
    ("p2m_generation", 40, "Q"),
], _ARCH)

SHARED_INFO = _struct("shared_info", 3136, [
    ("vcpu_info", 0, "2048s"),  # 32 x VCPU_INFO
    ("evtchn_pending", 2048, "512s"),  # 64 x u64 bitmap words
    ("evtchn_mask", 2560, "512s"),
    ("wc_version", 3072, "I"),
    ("wc_sec", 3076, "I"),
    ("wc_nsec", 3080, "I"),
    ("wc_sec_hi", 3084, "I"),
    ("arch", 3088, "48s"),  # ARCH_SHARED_INFO
], _XEN)

# xen_domain_handle_t: the 16-byte UUID (XENVER_guest_handle, domctl handles).
XEN_DOMAIN_HANDLE = _struct("xen_domain_handle", 16, [("value", 0, "16s")], _XEN,
                            c_type="xen_domain_handle_t")

# ---------------------------------------------------------------------------
# version.h
# ---------------------------------------------------------------------------

XEN_EXTRAVERSION = _struct("xen_extraversion", 16, [("value", 0, "16s")], _VERSION,
                           c_type="xen_extraversion_t")
XEN_COMPILE_INFO = _struct("xen_compile_info", 144, [
    ("compiler", 0, "64s"),
    ("compile_by", 64, "16s"),
    ("compile_domain", 80, "32s"),
    ("compile_date", 112, "32s"),
], _VERSION)
XEN_CAPABILITIES_INFO = _struct("xen_capabilities_info", 1024, [("value", 0, "1024s")],
                                _VERSION, c_type="xen_capabilities_info_t")
XEN_CHANGESET_INFO = _struct("xen_changeset_info", 64, [("value", 0, "64s")], _VERSION,
                             c_type="xen_changeset_info_t")
XEN_PLATFORM_PARAMETERS = _struct("xen_platform_parameters", 8, [
    ("virt_start", 0, "Q"),
], _VERSION)
XEN_FEATURE_INFO = _struct("xen_feature_info", 8, [
    ("submap_idx", 0, "I"),
    ("submap", 4, "I"),
], _VERSION)
XEN_COMMANDLINE = _struct("xen_commandline", 1024, [("value", 0, "1024s")], _VERSION,
                          c_type="xen_commandline_t")
# Fixed part only: `len` is followed by a flexible buf[].
XEN_BUILD_ID = _struct("xen_build_id", 4, [("len", 0, "I")], _VERSION)

# ---------------------------------------------------------------------------
# sched.h
# ---------------------------------------------------------------------------

SCHED_SHUTDOWN = _struct("sched_shutdown", 4, [("reason", 0, "I")], _SCHED)
SCHED_POLL = _struct("sched_poll", 24, [
    ("ports", 0, "Q"),
    ("nr_ports", 8, "I"),
    ("timeout", 16, "Q"),
], _SCHED)
SCHED_REMOTE_SHUTDOWN = _struct("sched_remote_shutdown", 8, [
    ("domain_id", 0, "H"),
    ("reason", 4, "I"),
], _SCHED)
SCHED_WATCHDOG = _struct("sched_watchdog", 8, [
    ("id", 0, "I"),
    ("timeout", 4, "I"),
], _SCHED)
SCHED_PIN_OVERRIDE = _struct("sched_pin_override", 4, [("pcpu", 0, "i")], _SCHED)

# ---------------------------------------------------------------------------
# vcpu.h, hvm/hvm_vcpu.h
# ---------------------------------------------------------------------------

VCPU_RUNSTATE_INFO = _struct("vcpu_runstate_info", 48, [
    ("state", 0, "i"),
    ("state_entry_time", 8, "Q"),
    ("time", 16, "32s"),  # u64[4], ns spent in each RunstateState
], _VCPU)
# The argument is a union of handle / pointer / u64: one 8-byte address.
VCPU_REGISTER_RUNSTATE_MEMORY_AREA = _struct("vcpu_register_runstate_memory_area", 8, [
    ("addr", 0, "Q"),
], _VCPU)
VCPU_REGISTER_TIME_MEMORY_AREA = _struct("vcpu_register_time_memory_area", 8, [
    ("addr", 0, "Q"),
], _VCPU)
VCPU_SET_PERIODIC_TIMER = _struct("vcpu_set_periodic_timer", 8, [
    ("period_ns", 0, "Q"),
], _VCPU)
VCPU_SET_SINGLESHOT_TIMER = _struct("vcpu_set_singleshot_timer", 16, [
    ("timeout_abs_ns", 0, "Q"),
    ("flags", 8, "I"),
], _VCPU)
VCPU_REGISTER_VCPU_INFO = _struct("vcpu_register_vcpu_info", 16, [
    ("mfn", 0, "Q"),
    ("offset", 8, "I"),
    ("rsvd", 12, "I"),
], _VCPU)

VCPU_HVM_X86_32 = _struct("vcpu_hvm_x86_32", 120, [
    ("eax", 0, "I"),
    ("ecx", 4, "I"),
    ("edx", 8, "I"),
    ("ebx", 12, "I"),
    ("esp", 16, "I"),
    ("ebp", 20, "I"),
    ("esi", 24, "I"),
    ("edi", 28, "I"),
    ("eip", 32, "I"),
    ("eflags", 36, "I"),
    ("cr0", 40, "I"),
    ("cr3", 44, "I"),
    ("cr4", 48, "I"),
    ("pad1", 52, "I"),
    ("efer", 56, "Q"),
    ("cs_base", 64, "I"),
    ("ds_base", 68, "I"),
    ("ss_base", 72, "I"),
    ("es_base", 76, "I"),
    ("tr_base", 80, "I"),
    ("cs_limit", 84, "I"),
    ("ds_limit", 88, "I"),
    ("ss_limit", 92, "I"),
    ("es_limit", 96, "I"),
    ("tr_limit", 100, "I"),
    ("cs_ar", 104, "H"),
    ("ds_ar", 106, "H"),
    ("ss_ar", 108, "H"),
    ("es_ar", 110, "H"),
    ("tr_ar", 112, "H"),
    ("pad2", 114, "6s"),
], _HVM_VCPU)
VCPU_HVM_X86_64 = _struct("vcpu_hvm_x86_64", 112, [
    (reg, 8 * i, "Q") for i, reg in enumerate(
        ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
         "rip", "rflags", "cr0", "cr3", "cr4", "efer"])
], _HVM_VCPU)
VCPU_HVM_CONTEXT = _struct("vcpu_hvm_context", 128, [
    ("mode", 0, "I"),  # VCPU_HVM_MODE_32B / _64B
    ("pad", 4, "I"),
    ("cpu_regs", 8, "120s"),  # union: VCPU_HVM_X86_32 or VCPU_HVM_X86_64
], _HVM_VCPU)

# ---------------------------------------------------------------------------
# memory.h, and the e820 entry
# ---------------------------------------------------------------------------

XEN_MEMORY_RESERVATION = _struct("xen_memory_reservation", 32, [
    ("extent_start", 0, "Q"),
    ("nr_extents", 8, "Q"),
    ("extent_order", 16, "I"),
    ("mem_flags", 20, "I"),
    ("domid", 24, "H"),
], _MEMORY)
XEN_ADD_TO_PHYSMAP = _struct("xen_add_to_physmap", 24, [
    ("domid", 0, "H"),
    ("size", 2, "H"),
    ("space", 4, "I"),
    ("idx", 8, "Q"),
    ("gpfn", 16, "Q"),
], _MEMORY)
XEN_ADD_TO_PHYSMAP_BATCH = _struct("xen_add_to_physmap_batch", 32, [
    ("domid", 0, "H"),
    ("space", 2, "H"),
    ("size", 4, "H"),
    ("u", 6, "H"),  # union: foreign_domid (gmfn_foreign) / res0
    ("idxs", 8, "Q"),
    ("gpfns", 16, "Q"),
    ("errs", 24, "Q"),
], _MEMORY)
XEN_REMOVE_FROM_PHYSMAP = _struct("xen_remove_from_physmap", 16, [
    ("domid", 0, "H"),
    ("gpfn", 8, "Q"),
], _MEMORY)
XEN_MEMORY_MAP = _struct("xen_memory_map", 16, [
    ("nr_entries", 0, "I"),
    ("buffer", 8, "Q"),
], _MEMORY)
XEN_FOREIGN_MEMORY_MAP = _struct("xen_foreign_memory_map", 24, [
    ("domid", 0, "H"),
    ("map__nr_entries", 8, "I"),
    ("map__buffer", 16, "Q"),
], _MEMORY)
XEN_MEM_ACCESS_OP = _struct("xen_mem_access_op", 32, [
    ("op", 0, "B"),
    ("access", 1, "B"),
    ("domid", 2, "H"),
    ("nr", 4, "I"),
    ("pfn", 8, "Q"),
    ("pfn_list", 16, "Q"),
    ("access_list", 24, "Q"),
], _MEMORY)
# The BIOS e820 entry: 20 packed bytes. Not a public-header type (Xen keeps
# it in asm-x86/e820.h); XENMEM_memory_map returns an array of these.
E820_ENTRY = _struct("e820entry", 20, [
    ("addr", 0, "Q"),
    ("size", 8, "Q"),
    ("type", 16, "I"),
], None)

# ---------------------------------------------------------------------------
# event_channel.h
# ---------------------------------------------------------------------------

EVTCHN_ALLOC_UNBOUND = _struct("evtchn_alloc_unbound", 8, [
    ("dom", 0, "H"),
    ("remote_dom", 2, "H"),
    ("port", 4, "I"),
], _EVTCHN)
EVTCHN_BIND_INTERDOMAIN = _struct("evtchn_bind_interdomain", 12, [
    ("remote_dom", 0, "H"),
    ("remote_port", 4, "I"),
    ("local_port", 8, "I"),
], _EVTCHN)
EVTCHN_BIND_VIRQ = _struct("evtchn_bind_virq", 12, [
    ("virq", 0, "I"),
    ("vcpu", 4, "I"),
    ("port", 8, "I"),
], _EVTCHN)
EVTCHN_BIND_PIRQ = _struct("evtchn_bind_pirq", 12, [
    ("pirq", 0, "I"),
    ("flags", 4, "I"),
    ("port", 8, "I"),
], _EVTCHN)
EVTCHN_BIND_IPI = _struct("evtchn_bind_ipi", 8, [
    ("vcpu", 0, "I"),
    ("port", 4, "I"),
], _EVTCHN)
EVTCHN_CLOSE = _struct("evtchn_close", 4, [("port", 0, "I")], _EVTCHN)
EVTCHN_SEND = _struct("evtchn_send", 4, [("port", 0, "I")], _EVTCHN)
EVTCHN_STATUS = _struct("evtchn_status", 24, [
    ("dom", 0, "H"),
    ("port", 4, "I"),
    ("status", 8, "I"),  # EvtchnStat
    ("vcpu", 12, "I"),
    ("u", 16, "8s"),  # EVTCHN_STATUS_UNBOUND / _INTERDOMAIN, or a u32 pirq / virq
], _EVTCHN)
EVTCHN_STATUS_UNBOUND = _struct("evtchn_status_unbound", 2, [
    ("dom", 0, "H"),
], _EVTCHN, c_type=_member_type("struct evtchn_status", "u.unbound"))
EVTCHN_STATUS_INTERDOMAIN = _struct("evtchn_status_interdomain", 8, [
    ("dom", 0, "H"),
    ("port", 4, "I"),
], _EVTCHN, c_type=_member_type("struct evtchn_status", "u.interdomain"))
EVTCHN_BIND_VCPU = _struct("evtchn_bind_vcpu", 8, [
    ("port", 0, "I"),
    ("vcpu", 4, "I"),
], _EVTCHN)
EVTCHN_UNMASK = _struct("evtchn_unmask", 4, [("port", 0, "I")], _EVTCHN)
EVTCHN_RESET = _struct("evtchn_reset", 2, [("dom", 0, "H")], _EVTCHN)
EVTCHN_INIT_CONTROL = _struct("evtchn_init_control", 24, [
    ("control_gfn", 0, "Q"),
    ("offset", 8, "I"),
    ("vcpu", 12, "I"),
    ("link_bits", 16, "B"),
], _EVTCHN)
EVTCHN_EXPAND_ARRAY = _struct("evtchn_expand_array", 8, [("array_gfn", 0, "Q")], _EVTCHN)
EVTCHN_SET_PRIORITY = _struct("evtchn_set_priority", 8, [
    ("port", 0, "I"),
    ("priority", 4, "I"),
], _EVTCHN)
# Argument of the obsolete event_channel_op_compat hypercall (16).
EVTCHN_OP = _struct("evtchn_op", 28, [
    ("cmd", 0, "I"),
    ("u", 4, "24s"),
], _EVTCHN)

# ---------------------------------------------------------------------------
# grant_table.h
# ---------------------------------------------------------------------------

GRANT_ENTRY_V1 = _struct("grant_entry_v1", 8, [
    ("flags", 0, "H"),
    ("domid", 2, "H"),
    ("frame", 4, "I"),
], _GNTTAB)
GNTTAB_MAP_GRANT_REF = _struct("gnttab_map_grant_ref", 32, [
    ("host_addr", 0, "Q"),
    ("flags", 8, "I"),
    ("ref", 12, "I"),
    ("dom", 16, "H"),
    ("status", 18, "h"),
    ("handle", 20, "I"),
    ("dev_bus_addr", 24, "Q"),
], _GNTTAB)
GNTTAB_UNMAP_GRANT_REF = _struct("gnttab_unmap_grant_ref", 24, [
    ("host_addr", 0, "Q"),
    ("dev_bus_addr", 8, "Q"),
    ("handle", 16, "I"),
    ("status", 20, "h"),
], _GNTTAB)
GNTTAB_SETUP_TABLE = _struct("gnttab_setup_table", 24, [
    ("dom", 0, "H"),
    ("nr_frames", 4, "I"),
    ("status", 8, "h"),
    ("frame_list", 16, "Q"),
], _GNTTAB)
GNTTAB_DUMP_TABLE = _struct("gnttab_dump_table", 4, [
    ("dom", 0, "H"),
    ("status", 2, "h"),
], _GNTTAB)
GNTTAB_TRANSFER = _struct("gnttab_transfer", 24, [
    ("mfn", 0, "Q"),
    ("domid", 8, "H"),
    ("ref", 12, "I"),
    ("status", 16, "h"),
], _GNTTAB)
# source.u / dest.u are unions of a u32 grant ref and a u64 frame: read as a
# u64, the ref is its low 32 bits.
GNTTAB_COPY = _struct("gnttab_copy", 40, [
    ("source__u", 0, "Q"),
    ("source__domid", 8, "H"),
    ("source__offset", 10, "H"),
    ("dest__u", 16, "Q"),
    ("dest__domid", 24, "H"),
    ("dest__offset", 26, "H"),
    ("len", 32, "H"),
    ("flags", 34, "H"),
    ("status", 36, "h"),
], _GNTTAB)
GNTTAB_QUERY_SIZE = _struct("gnttab_query_size", 16, [
    ("dom", 0, "H"),
    ("nr_frames", 4, "I"),
    ("max_nr_frames", 8, "I"),
    ("status", 12, "h"),
], _GNTTAB)
GNTTAB_UNMAP_AND_REPLACE = _struct("gnttab_unmap_and_replace", 24, [
    ("host_addr", 0, "Q"),
    ("new_addr", 8, "Q"),
    ("handle", 16, "I"),
    ("status", 20, "h"),
], _GNTTAB)
GNTTAB_SET_VERSION = _struct("gnttab_set_version", 4, [("version", 0, "I")], _GNTTAB)
GNTTAB_GET_STATUS_FRAMES = _struct("gnttab_get_status_frames", 16, [
    ("nr_frames", 0, "I"),
    ("dom", 4, "H"),
    ("status", 6, "h"),
    ("frame_list", 8, "Q"),
], _GNTTAB)
GNTTAB_GET_VERSION = _struct("gnttab_get_version", 8, [
    ("dom", 0, "H"),
    ("pad", 2, "H"),
    ("version", 4, "I"),
], _GNTTAB)
GNTTAB_SWAP_GRANT_REF = _struct("gnttab_swap_grant_ref", 12, [
    ("ref_a", 0, "I"),
    ("ref_b", 4, "I"),
    ("status", 8, "h"),
], _GNTTAB)
GNTTAB_CACHE_FLUSH = _struct("gnttab_cache_flush", 16, [
    ("a", 0, "Q"),  # union: dev_bus_addr (u64) / ref (u32)
    ("offset", 8, "H"),
    ("length", 10, "H"),
    ("op", 12, "I"),
], _GNTTAB)

# ---------------------------------------------------------------------------
# arch-x86/hvm/start_info.h (PVH boot)
# ---------------------------------------------------------------------------

# Version 1 (what we build). 4.10's header only knows version 0: see _V0.
HVM_START_INFO = _struct("hvm_start_info", 56, [
    ("magic", 0, "I"),
    ("version", 4, "I"),
    ("flags", 8, "I"),
    ("nr_modules", 12, "I"),
    ("modlist_paddr", 16, "Q"),
    ("cmdline_paddr", 24, "Q"),
    ("rsdp_paddr", 32, "Q"),
    ("memmap_paddr", 40, "Q"),
    ("memmap_entries", 48, "I"),
    ("reserved", 52, "I"),
], _START_INFO)
# Version 0: the whole struct as 4.10 defines it.
HVM_START_INFO_V0 = _struct("hvm_start_info_v0", 40, [
    ("magic", 0, "I"),
    ("version", 4, "I"),
    ("flags", 8, "I"),
    ("nr_modules", 12, "I"),
    ("modlist_paddr", 16, "Q"),
    ("cmdline_paddr", 24, "Q"),
    ("rsdp_paddr", 32, "Q"),
], _START_INFO, c_type="struct hvm_start_info")
HVM_MODLIST_ENTRY = _struct("hvm_modlist_entry", 32, [
    ("paddr", 0, "Q"),
    ("size", 8, "Q"),
    ("cmdline_paddr", 16, "Q"),
    ("reserved", 24, "Q"),
], _START_INFO)
# Post-4.10 (start_info version 1).
HVM_MEMMAP_TABLE_ENTRY = _struct("hvm_memmap_table_entry", 24, [
    ("addr", 0, "Q"),
    ("size", 8, "Q"),
    ("type", 16, "I"),
    ("reserved", 20, "I"),
], _START_INFO)

# ---------------------------------------------------------------------------
# hvm/hvm_op.h
# ---------------------------------------------------------------------------

XEN_HVM_PARAM = _struct("xen_hvm_param", 16, [
    ("domid", 0, "H"),
    ("index", 4, "I"),
    ("value", 8, "Q"),
], _HVM_OP)
XEN_HVM_EVTCHN_UPCALL_VECTOR = _struct("xen_hvm_evtchn_upcall_vector", 8, [
    ("vcpu", 0, "I"),
    ("vector", 4, "B"),
], _HVM_OP)
XEN_HVM_ALTP2M_OP = _struct("xen_hvm_altp2m_op", 80, [
    ("version", 0, "I"),
    ("cmd", 4, "I"),
    ("domain", 8, "H"),
    ("pad1", 10, "H"),
    ("pad2", 12, "I"),
    ("u", 16, "64s"),  # one of the XEN_HVM_ALTP2M_* payloads below
], _HVM_OP)
XEN_HVM_ALTP2M_DOMAIN_STATE = _struct("xen_hvm_altp2m_domain_state", 1, [
    ("state", 0, "B"),
], _HVM_OP)
XEN_HVM_ALTP2M_VCPU_ENABLE_NOTIFY = _struct("xen_hvm_altp2m_vcpu_enable_notify", 16, [
    ("vcpu_id", 0, "I"),
    ("pad", 4, "I"),
    ("gfn", 8, "Q"),
], _HVM_OP)
XEN_HVM_ALTP2M_VIEW = _struct("xen_hvm_altp2m_view", 4, [
    ("view", 0, "H"),
    ("hvmmem_default_access", 2, "H"),
], _HVM_OP)
# 4.17 renames this struct xen_hvm_altp2m_mem_access (member `access`); same layout.
XEN_HVM_ALTP2M_SET_MEM_ACCESS = _struct("xen_hvm_altp2m_set_mem_access", 16, [
    ("view", 0, "H"),
    ("hvmmem_access", 2, "H"),
    ("pad", 4, "I"),
    ("gfn", 8, "Q"),
], _HVM_OP)
XEN_HVM_ALTP2M_CHANGE_GFN = _struct("xen_hvm_altp2m_change_gfn", 24, [
    ("view", 0, "H"),
    ("pad1", 2, "H"),
    ("pad2", 4, "I"),
    ("old_gfn", 8, "Q"),
    ("new_gfn", 16, "Q"),
], _HVM_OP)

# ---------------------------------------------------------------------------
# hvm/ioreq.h
# ---------------------------------------------------------------------------

IOREQ = _struct("ioreq", 32, [
    ("addr", 0, "Q"),
    ("data", 8, "Q"),
    ("count", 16, "I"),
    ("size", 20, "I"),
    ("vp_eport", 24, "I"),
    ("bits", 30, "B"),  # bitfields, see IOREQ_BITS
    ("type", 31, "B"),
], _IOREQ)
IOREQ_BITS = {"state": (0, 4), "data_is_ptr": (4, 1), "dir": (5, 1), "df": (6, 1)}

SHARED_IOPAGE = _struct("shared_iopage", 32, [
    ("vcpu_ioreq", 0, "32s"),  # ioreq[1]; in practice one IOREQ per vCPU
], _IOREQ)

# buf_ioreq is all bitfields but `data`: the first u32 holds type, pad, dir,
# size and addr (see BUF_IOREQ_BITS).
BUF_IOREQ = _struct("buf_ioreq", 8, [
    ("bits", 0, "I"),
    ("data", 4, "I"),
], _IOREQ)
BUF_IOREQ_BITS = {"type": (0, 8), "pad": (8, 1), "dir": (9, 1), "size": (10, 2),
                  "addr": (12, 20)}

BUFFERED_IOPAGE = _struct("buffered_iopage", 4096, [
    ("read_pointer", 0, "I"),
    ("write_pointer", 4, "I"),
    ("buf_ioreq", 8, "4088s"),  # 511 x BUF_IOREQ
], _IOREQ)

# ---------------------------------------------------------------------------
# hvm/dm_op.h (payload layouts are relative to XEN_DM_OP's union at offset 8)
# ---------------------------------------------------------------------------

XEN_DM_OP = _struct("xen_dm_op", 32, [
    ("op", 0, "I"),
    ("pad", 4, "I"),
    ("u", 8, "24s"),
], _DM_OP)
XEN_DM_OP_UNION_OFFSET = 8
XEN_DM_OP_BUF = _struct("xen_dm_op_buf", 16, [
    ("h", 0, "Q"),
    ("size", 8, "Q"),
], _DM_OP)
XEN_DM_OP_CREATE_IOREQ_SERVER = _struct("xen_dm_op_create_ioreq_server", 6, [
    ("handle_bufioreq", 0, "B"),
    ("pad", 1, "3s"),
    ("id", 4, "H"),
], _DM_OP)
# 4.11 renames `pad` to `flags` (XEN_DMOP_no_gfns).
XEN_DM_OP_GET_IOREQ_SERVER_INFO = _struct("xen_dm_op_get_ioreq_server_info", 24, [
    ("id", 0, "H"),
    ("pad", 2, "H"),
    ("bufioreq_port", 4, "I"),
    ("ioreq_gfn", 8, "Q"),
    ("bufioreq_gfn", 16, "Q"),
], _DM_OP)
XEN_DM_OP_IOREQ_SERVER_RANGE = _struct("xen_dm_op_ioreq_server_range", 24, [
    ("id", 0, "H"),
    ("pad", 2, "H"),
    ("type", 4, "I"),
    ("start", 8, "Q"),
    ("end", 16, "Q"),
], _DM_OP)
XEN_DM_OP_SET_IOREQ_SERVER_STATE = _struct("xen_dm_op_set_ioreq_server_state", 4, [
    ("id", 0, "H"),
    ("enabled", 2, "B"),
    ("pad", 3, "B"),
], _DM_OP)
XEN_DM_OP_DESTROY_IOREQ_SERVER = _struct("xen_dm_op_destroy_ioreq_server", 4, [
    ("id", 0, "H"),
    ("pad", 2, "H"),
], _DM_OP)
XEN_DM_OP_TRACK_DIRTY_VRAM = _struct("xen_dm_op_track_dirty_vram", 16, [
    ("nr", 0, "I"),
    ("pad", 4, "I"),
    ("first_pfn", 8, "Q"),
], _DM_OP)
XEN_DM_OP_SET_PCI_INTX_LEVEL = _struct("xen_dm_op_set_pci_intx_level", 6, [
    ("domain", 0, "H"),
    ("bus", 2, "B"),
    ("device", 3, "B"),
    ("intx", 4, "B"),
    ("level", 5, "B"),
], _DM_OP)
XEN_DM_OP_SET_ISA_IRQ_LEVEL = _struct("xen_dm_op_set_isa_irq_level", 2, [
    ("isa_irq", 0, "B"),
    ("level", 1, "B"),
], _DM_OP)
XEN_DM_OP_SET_PCI_LINK_ROUTE = _struct("xen_dm_op_set_pci_link_route", 2, [
    ("link", 0, "B"),
    ("isa_irq", 1, "B"),
], _DM_OP)
XEN_DM_OP_MODIFIED_MEMORY = _struct("xen_dm_op_modified_memory", 8, [
    ("nr_extents", 0, "I"),
    ("opaque", 4, "I"),
], _DM_OP)
# One element of the bufs[1] array of XEN_DMOP_modified_memory.
XEN_DM_OP_MODIFIED_MEMORY_EXTENT = _struct("xen_dm_op_modified_memory_extent", 16, [
    ("nr", 0, "I"),
    ("pad", 4, "I"),
    ("first_pfn", 8, "Q"),
], _DM_OP)
XEN_DM_OP_SET_MEM_TYPE = _struct("xen_dm_op_set_mem_type", 16, [
    ("nr", 0, "I"),
    ("mem_type", 4, "H"),
    ("pad", 6, "H"),
    ("first_pfn", 8, "Q"),
], _DM_OP)
XEN_DM_OP_INJECT_EVENT = _struct("xen_dm_op_inject_event", 24, [
    ("vcpuid", 0, "I"),
    ("vector", 4, "B"),
    ("type", 5, "B"),
    ("insn_len", 6, "B"),
    ("pad0", 7, "B"),
    ("error_code", 8, "I"),
    ("pad1", 12, "I"),
    ("cr2", 16, "Q"),
], _DM_OP)
XEN_DM_OP_INJECT_MSI = _struct("xen_dm_op_inject_msi", 16, [
    ("data", 0, "I"),
    ("pad", 4, "I"),
    ("addr", 8, "Q"),
], _DM_OP)
XEN_DM_OP_MAP_MEM_TYPE_TO_IOREQ_SERVER = _struct("xen_dm_op_map_mem_type_to_ioreq_server", 16, [
    ("id", 0, "H"),
    ("type", 2, "H"),
    ("flags", 4, "I"),
    ("opaque", 8, "Q"),
], _DM_OP)
XEN_DM_OP_REMOTE_SHUTDOWN = _struct("xen_dm_op_remote_shutdown", 4, [
    ("reason", 0, "I"),
], _DM_OP)

# ---------------------------------------------------------------------------
# vm_event.h (VM_EVENT_INTERFACE_VERSION 2 in 4.10; 4.17 is 7 and 400 bytes)
# ---------------------------------------------------------------------------

VM_EVENT_ST = _struct("vm_event_st", 312, [
    ("version", 0, "I"),
    ("flags", 4, "I"),
    ("reason", 8, "I"),
    ("vcpu_id", 12, "I"),
    ("altp2m_idx", 16, "H"),
    ("u", 24, "32s"),  # one of the VM_EVENT_* reason payloads below
    ("data", 56, "256s"),  # VM_EVENT_REGS_X86 or an emulation payload
], _VM_EVENT)
VM_EVENT_PAGING = _struct("vm_event_paging", 16, [
    ("gfn", 0, "Q"),
    ("p2mt", 8, "I"),
    ("flags", 12, "I"),
], _VM_EVENT)
VM_EVENT_SHARING = _struct("vm_event_sharing", 16, [
    ("gfn", 0, "Q"),
    ("p2mt", 8, "I"),
], _VM_EVENT)
VM_EVENT_MEM_ACCESS = _struct("vm_event_mem_access", 32, [
    ("gfn", 0, "Q"),
    ("offset", 8, "Q"),
    ("gla", 16, "Q"),
    ("flags", 24, "I"),
], _VM_EVENT)
VM_EVENT_WRITE_CTRLREG = _struct("vm_event_write_ctrlreg", 24, [
    ("index", 0, "I"),
    ("new_value", 8, "Q"),
    ("old_value", 16, "Q"),
], _VM_EVENT)
# 4.17: {msr, new_value, old_value}, 24 bytes.
VM_EVENT_MOV_TO_MSR = _struct("vm_event_mov_to_msr", 16, [
    ("msr", 0, "Q"),
    ("value", 8, "Q"),
], _VM_EVENT)
VM_EVENT_DESC_ACCESS = _struct("vm_event_desc_access", 24, [
    ("arch", 0, "16s"),  # union: vmx {instr_info u32, exit_qualification u64 @8} / svm
    ("descriptor", 16, "B"),
    ("is_write", 17, "B"),
], _VM_EVENT)
VM_EVENT_SINGLESTEP = _struct("vm_event_singlestep", 8, [("gfn", 0, "Q")], _VM_EVENT)
# 4.17 inserts pending_dbg u64 @8 (24 bytes).
VM_EVENT_DEBUG = _struct("vm_event_debug", 16, [
    ("gfn", 0, "Q"),
    ("insn_length", 8, "I"),
    ("type", 12, "B"),
], _VM_EVENT)
VM_EVENT_CPUID = _struct("vm_event_cpuid", 16, [
    ("insn_length", 0, "I"),
    ("leaf", 4, "I"),
    ("subleaf", 8, "I"),
], _VM_EVENT)
VM_EVENT_INTERRUPT_X86 = _struct("vm_event_interrupt_x86", 24, [
    ("vector", 0, "I"),
    ("type", 4, "I"),
    ("error_code", 8, "I"),
    ("cr2", 16, "Q"),
], _VM_EVENT)
# 4.17 adds dr6 after rflags and many more registers (344 bytes).
VM_EVENT_REGS_X86 = _struct("vm_event_regs_x86", 256, [
    (reg, 8 * i, "Q") for i, reg in enumerate(
        ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
         "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
         "rflags", "dr7", "rip", "cr0", "cr2", "cr3", "cr4",
         "sysenter_cs", "sysenter_esp", "sysenter_eip",
         "msr_efer", "msr_star", "msr_lstar", "fs_base", "gs_base"])
] + [("cs_arbytes", 248, "I")], _VM_EVENT)
# 4.17: data[340], 344 bytes.
VM_EVENT_EMUL_READ_DATA = _struct("vm_event_emul_read_data", 256, [
    ("size", 0, "I"),
    ("data", 4, "252s"),
], _VM_EVENT)
VM_EVENT_EMUL_INSN_DATA = _struct("vm_event_emul_insn_data", 16, [
    ("data", 0, "16s"),
], _VM_EVENT)

# ---------------------------------------------------------------------------
# trace.h (fixed parts)
# ---------------------------------------------------------------------------

T_REC = _struct("t_rec", 40, [
    ("bits", 0, "I"),  # event / extra_u32 / cycles_included, see T_REC_BITS
    ("u", 4, "36s"),  # {cycles_lo, cycles_hi, extra_u32[7]} or {extra_u32[7]}
], _TRACE)
T_REC_BITS = {"event": (0, 28), "extra_u32": (28, 3), "cycles_included": (31, 1)}
T_BUF = _struct("t_buf", 8, [
    ("cons", 0, "I"),
    ("prod", 4, "I"),
], _TRACE)
T_INFO = _struct("t_info", 2, [("tbuf_size", 0, "H")], _TRACE)  # then u16 mfn_offset[]

# ---------------------------------------------------------------------------
# io/console.h, io/xs_wire.h
# ---------------------------------------------------------------------------

XENCONS_INTERFACE = _struct("xencons_interface", 3088, [
    ("in_", 0, "1024s"),  # C `in` (a Python keyword)
    ("out", 1024, "2048s"),
    ("in_cons", 3072, "I"),
    ("in_prod", 3076, "I"),
    ("out_cons", 3080, "I"),
    ("out_prod", 3084, "I"),
], _CONSOLE)
# 4.17 appends `error` u32 @2072 (2076 bytes).
XENSTORE_DOMAIN_INTERFACE = _struct("xenstore_domain_interface", 2072, [
    ("req", 0, "1024s"),
    ("rsp", 1024, "1024s"),
    ("req_cons", 2048, "I"),
    ("req_prod", 2052, "I"),
    ("rsp_cons", 2056, "I"),
    ("rsp_prod", 2060, "I"),
    ("server_features", 2064, "I"),
    ("connection", 2068, "I"),
], _XS_WIRE)
XSD_SOCKMSG = _struct("xsd_sockmsg", 16, [
    ("type", 0, "I"),
    ("req_id", 4, "I"),
    ("tx_id", 8, "I"),
    ("len", 12, "I"),
], _XS_WIRE)

# ---------------------------------------------------------------------------
# io/pvcalls.h (request payloads are relative to the union at offset 8)
# ---------------------------------------------------------------------------

XEN_PVCALLS_REQUEST = _struct("xen_pvcalls_request", 64, [
    ("req_id", 0, "I"),
    ("cmd", 4, "I"),
    ("u", 8, "56s"),
], _PVCALLS)
XEN_PVCALLS_REQUEST_UNION_OFFSET = 8
XEN_PVCALLS_SOCKET = _struct("xen_pvcalls_socket", 24, [
    ("id", 0, "Q"),
    ("domain", 8, "I"),
    ("type", 12, "I"),
    ("protocol", 16, "I"),
], _PVCALLS)
XEN_PVCALLS_CONNECT = _struct("xen_pvcalls_connect", 56, [
    ("id", 0, "Q"),
    ("addr", 8, "28s"),
    ("len", 36, "I"),
    ("flags", 40, "I"),
    ("ref", 44, "I"),
    ("evtchn", 48, "I"),
], _PVCALLS)
XEN_PVCALLS_RELEASE = _struct("xen_pvcalls_release", 16, [
    ("id", 0, "Q"),
    ("reuse", 8, "B"),
], _PVCALLS)
XEN_PVCALLS_BIND = _struct("xen_pvcalls_bind", 40, [
    ("id", 0, "Q"),
    ("addr", 8, "28s"),
    ("len", 36, "I"),
], _PVCALLS)
XEN_PVCALLS_LISTEN = _struct("xen_pvcalls_listen", 16, [
    ("id", 0, "Q"),
    ("backlog", 8, "I"),
], _PVCALLS)
XEN_PVCALLS_ACCEPT = _struct("xen_pvcalls_accept", 24, [
    ("id", 0, "Q"),
    ("id_new", 8, "Q"),
    ("ref", 16, "I"),
    ("evtchn", 20, "I"),
], _PVCALLS)
XEN_PVCALLS_POLL = _struct("xen_pvcalls_poll", 8, [("id", 0, "Q")], _PVCALLS)
XEN_PVCALLS_RESPONSE = _struct("xen_pvcalls_response", 24, [
    ("req_id", 0, "I"),
    ("cmd", 4, "I"),
    ("ret", 8, "i"),
    ("pad", 12, "I"),
    ("u", 16, "Q"),  # every arm of the union is the echoed u64 socket id
], _PVCALLS)
# Fixed part of the per-socket indexes page; grant_ref_t ref[] follows at 132.
PVCALLS_DATA_INTF = _struct("pvcalls_data_intf", 132, [
    ("in_cons", 0, "I"),
    ("in_prod", 4, "I"),
    ("in_error", 8, "i"),  # RING_IDX holding a negative errno
    ("pad1", 12, "52s"),
    ("out_cons", 64, "I"),
    ("out_prod", 68, "I"),
    ("out_error", 72, "i"),
    ("pad2", 76, "52s"),
    ("ring_order", 128, "I"),
], _PVCALLS)

# ---------------------------------------------------------------------------
# domctl.h (4.10, interface version 0x0e). Payloads are the structs of the
# xen_domctl union; their offsets are relative to the union start.
# ---------------------------------------------------------------------------

XEN_DOMCTL_SIZE = 144
XEN_DOMCTL_UNION_OFFSET = 16
XEN_DOMCTL = _struct("xen_domctl", XEN_DOMCTL_SIZE, [
    ("cmd", 0, "I"),
    ("interface_version", 4, "I"),
    ("domain", 8, "H"),
    ("u", XEN_DOMCTL_UNION_OFFSET, "128s"),
], _DOMCTL)
# The fixed header alone (the bytes before the union).
XEN_DOMCTL_HEADER = _struct("xen_domctl_header", XEN_DOMCTL_UNION_OFFSET, [
    ("cmd", 0, "I"),
    ("interface_version", 4, "I"),
    ("domain", 8, "H"),
], _DOMCTL, c_type="struct xen_domctl")

XENCTL_BITMAP = _struct("xenctl_bitmap", 16, [
    ("bitmap", 0, "Q"),
    ("nr_bits", 8, "I"),
], _DOMCTL)
# 4.17: 64 bytes (max_vcpus, max_evtchn_port, grant limits, ... and `arch`).
XEN_DOMCTL_CREATEDOMAIN = _struct("xen_domctl_createdomain", 28, [
    ("ssidref", 0, "I"),
    ("handle", 4, "16s"),
    ("flags", 20, "I"),
    ("config__emulation_flags", 24, "I"),  # struct xen_arch_domainconfig
], _DOMCTL)
# 4.17: 112 bytes (adds gpaddr_bits and arch_config).
XEN_DOMCTL_GETDOMAININFO = _struct("xen_domctl_getdomaininfo", 96, [
    ("domain", 0, "H"),
    ("flags", 4, "I"),
    ("tot_pages", 8, "Q"),
    ("max_pages", 16, "Q"),
    ("outstanding_pages", 24, "Q"),
    ("shr_pages", 32, "Q"),
    ("paged_pages", 40, "Q"),
    ("shared_info_frame", 48, "Q"),
    ("cpu_time", 56, "Q"),
    ("nr_online_vcpus", 64, "I"),
    ("max_vcpu_id", 68, "I"),
    ("ssidref", 72, "I"),
    ("handle", 76, "16s"),
    ("cpupool", 92, "I"),
], _DOMCTL)
XEN_DOMCTL_MAX_MEM = _struct("xen_domctl_max_mem", 8, [("max_memkb", 0, "Q")], _DOMCTL)
XEN_DOMCTL_MAX_VCPUS = _struct("xen_domctl_max_vcpus", 4, [("max", 0, "I")], _DOMCTL)
XEN_DOMCTL_VCPUCONTEXT = _struct("xen_domctl_vcpucontext", 16, [
    ("vcpu", 0, "I"),
    ("ctxt", 8, "Q"),
], _DOMCTL)
XEN_DOMCTL_GETVCPUINFO = _struct("xen_domctl_getvcpuinfo", 24, [
    ("vcpu", 0, "I"),
    ("online", 4, "B"),
    ("blocked", 5, "B"),
    ("running", 6, "B"),
    ("cpu_time", 8, "Q"),
    ("cpu", 16, "I"),
], _DOMCTL)
XEN_DOMCTL_VCPUAFFINITY = _struct("xen_domctl_vcpuaffinity", 40, [
    ("vcpu", 0, "I"),
    ("flags", 4, "I"),
    ("cpumap_hard__bitmap", 8, "Q"),
    ("cpumap_hard__nr_bits", 16, "I"),
    ("cpumap_soft__bitmap", 24, "Q"),
    ("cpumap_soft__nr_bits", 32, "I"),
], _DOMCTL)
XEN_DOMCTL_SCHEDULER_OP = _struct("xen_domctl_scheduler_op", 24, [
    ("sched_id", 0, "I"),
    ("cmd", 4, "I"),
    ("u", 8, "16s"),  # XEN_DOMCTL_SCHED_CREDIT / _CREDIT2 / _RTDS
], _DOMCTL)
XEN_DOMCTL_SCHED_CREDIT = _struct("xen_domctl_sched_credit", 4, [
    ("weight", 0, "H"),
    ("cap", 2, "H"),
], _DOMCTL)
XEN_DOMCTL_SCHED_CREDIT2 = _struct("xen_domctl_sched_credit2", 4, [
    ("weight", 0, "H"),
    ("cap", 2, "H"),
], _DOMCTL)
XEN_DOMCTL_SCHED_RTDS = _struct("xen_domctl_sched_rtds", 12, [
    ("period", 0, "I"),
    ("budget", 4, "I"),
    ("flags", 8, "I"),
], _DOMCTL)
XEN_DOMCTL_SETDOMAINHANDLE = _struct("xen_domctl_setdomainhandle", 16, [
    ("handle", 0, "16s"),
], _DOMCTL)
XEN_DOMCTL_HVMCONTEXT = _struct("xen_domctl_hvmcontext", 16, [
    ("size", 0, "I"),
    ("buffer", 8, "Q"),
], _DOMCTL)
# 4.17: `port` moved into a union, u.enable.port (same offset).
XEN_DOMCTL_VM_EVENT_OP = _struct("xen_domctl_vm_event_op", 12, [
    ("op", 0, "I"),
    ("mode", 4, "I"),
    ("port", 8, "I"),
], _DOMCTL)
XEN_DOMCTL_MONITOR_OP = _struct("xen_domctl_monitor_op", 24, [
    ("op", 0, "I"),
    ("event", 4, "I"),
    ("u", 8, "16s"),
], _DOMCTL)
# Renamed xen_domctl_psr_alloc in 4.11 (same layout).
XEN_DOMCTL_PSR_CAT_OP = _struct("xen_domctl_psr_cat_op", 16, [
    ("cmd", 0, "I"),
    ("target", 4, "I"),
    ("data", 8, "Q"),
], _DOMCTL)
# 4.10 only: folded into createdomain in 4.11.
XEN_DOMCTL_SET_GNTTAB_LIMITS = _struct("xen_domctl_set_gnttab_limits", 8, [
    ("grant_frames", 0, "I"),
    ("maptrack_frames", 4, "I"),
], _DOMCTL)
# Removed after 4.10 (folded into createdomain).
XEN_DOMCTL_SET_MAX_EVTCHN = _struct("xen_domctl_set_max_evtchn", 4, [
    ("max_port", 0, "I"),
], _DOMCTL)
XEN_DOMCTL_VUART_OP = _struct("xen_domctl_vuart_op", 24, [
    ("cmd", 0, "I"),
    ("type", 4, "I"),
    ("gfn", 8, "Q"),
    ("console_domid", 16, "H"),
    ("pad", 18, "2s"),
    ("evtchn", 20, "I"),
], _DOMCTL)

# ---------------------------------------------------------------------------
# sysctl.h (4.10, interface version 0x10). Payloads relative to the union.
# ---------------------------------------------------------------------------

XEN_SYSCTL_SIZE = 136
XEN_SYSCTL_UNION_OFFSET = 8
XEN_SYSCTL = _struct("xen_sysctl", XEN_SYSCTL_SIZE, [
    ("cmd", 0, "I"),
    ("interface_version", 4, "I"),
    ("u", XEN_SYSCTL_UNION_OFFSET, "128s"),
], _SYSCTL)
XEN_SYSCTL_HEADER = _struct("xen_sysctl_header", XEN_SYSCTL_UNION_OFFSET, [
    ("cmd", 0, "I"),
    ("interface_version", 4, "I"),
], _SYSCTL, c_type="struct xen_sysctl")
XEN_SYSCTL_READCONSOLE = _struct("xen_sysctl_readconsole", 24, [
    ("clear", 0, "B"),
    ("incremental", 1, "B"),
    ("pad0", 2, "B"),
    ("pad1", 3, "B"),
    ("index", 4, "I"),
    ("buffer", 8, "Q"),
    ("count", 16, "I"),
], _SYSCTL)
# 4.17: arch_capabilities and a pad follow `capabilities`, 112 bytes.
XEN_SYSCTL_PHYSINFO = _struct("xen_sysctl_physinfo", 104, [
    ("threads_per_core", 0, "I"),
    ("cores_per_socket", 4, "I"),
    ("nr_cpus", 8, "I"),
    ("max_cpu_id", 12, "I"),
    ("nr_nodes", 16, "I"),
    ("max_node_id", 20, "I"),
    ("cpu_khz", 24, "I"),
    ("capabilities", 28, "I"),
    ("total_pages", 32, "Q"),
    ("free_pages", 40, "Q"),
    ("scrub_pages", 48, "Q"),
    ("outstanding_pages", 56, "Q"),
    ("max_mfn", 64, "Q"),
    ("hw_cap", 72, "32s"),  # u32[8]
], _SYSCTL)
XEN_SYSCTL_SCHED_ID = _struct("xen_sysctl_sched_id", 4, [("sched_id", 0, "I")], _SYSCTL)
XEN_SYSCTL_GETDOMAININFOLIST = _struct("xen_sysctl_getdomaininfolist", 24, [
    ("first_domain", 0, "H"),
    ("max_domains", 4, "I"),
    ("buffer", 8, "Q"),  # array of XEN_DOMCTL_GETDOMAININFO
    ("num_domains", 16, "I"),
], _SYSCTL)
XEN_SYSCTL_CPUPOOL_OP = _struct("xen_sysctl_cpupool_op", 40, [
    ("op", 0, "I"),
    ("cpupool_id", 4, "I"),
    ("sched_id", 8, "I"),
    ("domid", 12, "I"),
    ("cpu", 16, "I"),
    ("n_dom", 20, "I"),
    ("cpumap__bitmap", 24, "Q"),
    ("cpumap__nr_bits", 32, "I"),
], _SYSCTL)
XEN_SYSCTL_TBUF_OP = _struct("xen_sysctl_tbuf_op", 48, [
    ("cmd", 0, "I"),
    ("cpu_mask__bitmap", 8, "Q"),  # struct xenctl_bitmap
    ("cpu_mask__nr_bits", 16, "I"),
    ("evt_mask", 24, "I"),
    ("buffer_mfn", 32, "Q"),
    ("size", 40, "I"),
], _SYSCTL)
# 4.10's union: an arinc653 schedule handle, credit {tslice_ms, ratelimit_us},
# credit2 {ratelimit_us}; 4.11+ grow credit (vcpu_migr_delay_us) to 32 bytes in all.
XEN_SYSCTL_SCHEDULER_OP = _struct("xen_sysctl_scheduler_op", 24, [
    ("cpupool_id", 0, "I"),
    ("sched_id", 4, "I"),
    ("cmd", 8, "I"),
    ("u__sched_credit__tslice_ms", 16, "I"),
    ("u__sched_credit__ratelimit_us", 20, "I"),
], _SYSCTL)
# Renamed xen_sysctl_psr_alloc in 4.11 (which adds an mba_info arm, same size).
XEN_SYSCTL_PSR_CAT_OP = _struct("xen_sysctl_psr_cat_op", 20, [
    ("cmd", 0, "I"),
    ("target", 4, "I"),
    ("u__cat_info__cbm_len", 8, "I"),
    ("u__cat_info__cos_max", 12, "I"),
    ("u__cat_info__flags", 16, "I"),
], _SYSCTL)
# New in 4.10; gone from 4.17 (runtime parameters moved to hypfs).
XEN_SYSCTL_SET_PARAMETER = _struct("xen_sysctl_set_parameter", 16, [
    ("params", 0, "Q"),
    ("size", 8, "H"),
    ("pad", 10, "6s"),  # u16[3], must be zero
], _SYSCTL)


# ---------------------------------------------------------------------------
# hvm/save.h: the HVM context the toolstack loads with XEN_DOMCTL_sethvmcontext
# (a sequence of typed records; the domain builder sends HEADER, CPU, END).
# ---------------------------------------------------------------------------

HVM_FILE_MAGIC = 0x54381286
HVM_FILE_VERSION = 1
HVM_SAVE_CODE_END = 0
HVM_SAVE_CODE_HEADER = 1
HVM_SAVE_CODE_CPU = 2
HVM_SAVE_DESCRIPTOR = _struct("hvm_save_descriptor", 8, [
    ("typecode", 0, "H"),
    ("instance", 2, "H"),
    ("length", 4, "I"),
], _HVM_SAVE)
HVM_SAVE_HEADER = _struct("hvm_save_header", 24, [
    ("magic", 0, "I"),
    ("version", 4, "I"),
    ("changeset", 8, "Q"),
    ("cpuid", 16, "I"),
    ("gtsc_khz", 20, "I"),
], _HVM_SAVE)
HVM_HW_CPU = _struct("hvm_hw_cpu", 1032, [
    ("fpu_regs", 0, "512s"),
    ("rax", 512, "Q"),
    ("rbx", 520, "Q"),
    ("rcx", 528, "Q"),
    ("rdx", 536, "Q"),
    ("rbp", 544, "Q"),
    ("rsi", 552, "Q"),
    ("rdi", 560, "Q"),
    ("rsp", 568, "Q"),
    ("r8", 576, "Q"),
    ("r9", 584, "Q"),
    ("r10", 592, "Q"),
    ("r11", 600, "Q"),
    ("r12", 608, "Q"),
    ("r13", 616, "Q"),
    ("r14", 624, "Q"),
    ("r15", 632, "Q"),
    ("rip", 640, "Q"),
    ("rflags", 648, "Q"),
    ("cr0", 656, "Q"),
    ("cr2", 664, "Q"),
    ("cr3", 672, "Q"),
    ("cr4", 680, "Q"),
    ("dr0", 688, "Q"),
    ("dr1", 696, "Q"),
    ("dr2", 704, "Q"),
    ("dr3", 712, "Q"),
    ("dr6", 720, "Q"),
    ("dr7", 728, "Q"),
    ("cs_sel", 736, "I"),
    ("ds_sel", 740, "I"),
    ("es_sel", 744, "I"),
    ("fs_sel", 748, "I"),
    ("gs_sel", 752, "I"),
    ("ss_sel", 756, "I"),
    ("tr_sel", 760, "I"),
    ("ldtr_sel", 764, "I"),
    ("cs_limit", 768, "I"),
    ("ds_limit", 772, "I"),
    ("es_limit", 776, "I"),
    ("fs_limit", 780, "I"),
    ("gs_limit", 784, "I"),
    ("ss_limit", 788, "I"),
    ("tr_limit", 792, "I"),
    ("ldtr_limit", 796, "I"),
    ("idtr_limit", 800, "I"),
    ("gdtr_limit", 804, "I"),
    ("cs_base", 808, "Q"),
    ("ds_base", 816, "Q"),
    ("es_base", 824, "Q"),
    ("fs_base", 832, "Q"),
    ("gs_base", 840, "Q"),
    ("ss_base", 848, "Q"),
    ("tr_base", 856, "Q"),
    ("ldtr_base", 864, "Q"),
    ("idtr_base", 872, "Q"),
    ("gdtr_base", 880, "Q"),
    ("cs_arbytes", 888, "I"),
    ("ds_arbytes", 892, "I"),
    ("es_arbytes", 896, "I"),
    ("fs_arbytes", 900, "I"),
    ("gs_arbytes", 904, "I"),
    ("ss_arbytes", 908, "I"),
    ("tr_arbytes", 912, "I"),
    ("ldtr_arbytes", 916, "I"),
    ("sysenter_cs", 920, "Q"),
    ("sysenter_esp", 928, "Q"),
    ("sysenter_eip", 936, "Q"),
    ("shadow_gs", 944, "Q"),
    ("msr_flags", 952, "Q"),
    ("msr_lstar", 960, "Q"),
    ("msr_star", 968, "Q"),
    ("msr_cstar", 976, "Q"),
    ("msr_syscall_mask", 984, "Q"),
    ("msr_efer", 992, "Q"),
    ("msr_tsc_aux", 1000, "Q"),
    ("tsc", 1008, "Q"),
    ("pending_event", 1016, "I"),
    ("error_code", 1020, "I"),
    ("flags", 1024, "I"),
], _HVM_SAVE)


# ---------------------------------------------------------------------------
# 32-bit guests (the "compat" ABI): where pointers and longs are 4 bytes the
# layout differs from x86-64. Only the structs pyxen decodes for 32-bit guests;
# tests/abi checks them with gcc -m32 against the same headers.
# ---------------------------------------------------------------------------

XEN_MEMORY_MAP_COMPAT = _struct("xen_memory_map", 8, [
    ("nr_entries", 0, "I"),
    ("buffer", 4, "I"),
], _MEMORY)
XEN_PLATFORM_PARAMETERS_COMPAT = _struct("xen_platform_parameters", 4, [
    ("virt_start", 0, "I"),
], _VERSION)
XEN_MEMORY_RESERVATION_COMPAT = _struct("xen_memory_reservation", 20, [
    ("extent_start", 0, "I"),
    ("nr_extents", 4, "I"),
    ("extent_order", 8, "I"),
    ("mem_flags", 12, "I"),
    ("domid", 16, "H"),
], _MEMORY)
COMPAT_LAYOUTS: list[Layout] = [XEN_MEMORY_MAP_COMPAT, XEN_PLATFORM_PARAMETERS_COMPAT,
                                XEN_MEMORY_RESERVATION_COMPAT]

# Grant tables and physmap edits: handles, xen_pfn_t and xen_ulong_t are 4 bytes.
GNTTAB_SETUP_TABLE_COMPAT = _struct("gnttab_setup_table", 16, [
    ("dom", 0, "H"),
    ("nr_frames", 4, "I"),
    ("status", 8, "h"),
    ("frame_list", 12, "I"),
], _GNTTAB)
GNTTAB_TRANSFER_COMPAT = _struct("gnttab_transfer", 16, [
    ("mfn", 0, "I"),
    ("domid", 4, "H"),
    ("ref", 8, "I"),
    ("status", 12, "h"),
], _GNTTAB)
GNTTAB_COPY_COMPAT = _struct("gnttab_copy", 24, [
    ("source__u", 0, "I"),
    ("source__domid", 4, "H"),
    ("source__offset", 6, "H"),
    ("dest__u", 8, "I"),
    ("dest__domid", 12, "H"),
    ("dest__offset", 14, "H"),
    ("len", 16, "H"),
    ("flags", 18, "H"),
    ("status", 20, "h"),
], _GNTTAB)
GNTTAB_GET_STATUS_FRAMES_COMPAT = _struct("gnttab_get_status_frames", 12, [
    ("nr_frames", 0, "I"),
    ("dom", 4, "H"),
    ("status", 6, "h"),
    ("frame_list", 8, "I"),
], _GNTTAB)
XEN_ADD_TO_PHYSMAP_COMPAT = _struct("xen_add_to_physmap", 16, [
    ("domid", 0, "H"),
    ("size", 2, "H"),
    ("space", 4, "I"),
    ("idx", 8, "I"),
    ("gpfn", 12, "I"),
], _MEMORY)
XEN_ADD_TO_PHYSMAP_BATCH_COMPAT = _struct("xen_add_to_physmap_batch", 20, [
    ("domid", 0, "H"),
    ("space", 2, "H"),
    ("size", 4, "H"),
    ("u", 6, "H"),
    ("idxs", 8, "I"),
    ("gpfns", 12, "I"),
    ("errs", 16, "I"),
], _MEMORY)
XEN_REMOVE_FROM_PHYSMAP_COMPAT = _struct("xen_remove_from_physmap", 8, [
    ("domid", 0, "H"),
    ("gpfn", 4, "I"),
], _MEMORY)
COMPAT_LAYOUTS += [GNTTAB_SETUP_TABLE_COMPAT, GNTTAB_TRANSFER_COMPAT, GNTTAB_COPY_COMPAT,
                   GNTTAB_GET_STATUS_FRAMES_COMPAT, XEN_ADD_TO_PHYSMAP_COMPAT,
                   XEN_ADD_TO_PHYSMAP_BATCH_COMPAT, XEN_REMOVE_FROM_PHYSMAP_COMPAT]

# sched_op and vcpu_op: a 4-byte handle, and uint64_t aligned to 4 bytes.
SCHED_POLL_COMPAT = _struct("sched_poll", 16, [
    ("ports", 0, "I"),
    ("nr_ports", 4, "I"),
    ("timeout", 8, "Q"),
], _SCHED)
VCPU_RUNSTATE_INFO_COMPAT = _struct("vcpu_runstate_info", 44, [
    ("state", 0, "i"),
    ("state_entry_time", 4, "Q"),
    ("time", 12, "32s"),
], _VCPU)
VCPU_SET_SINGLESHOT_TIMER_COMPAT = _struct("vcpu_set_singleshot_timer", 12, [
    ("timeout_abs_ns", 0, "Q"),
    ("flags", 8, "I"),
], _VCPU)
# shared_info of a 32-bit guest: xen_ulong_t is 4 bytes (1024 2-level ports).
VCPU_INFO_COMPAT = _struct("vcpu_info", 64, [
    ("evtchn_upcall_pending", 0, "B"),
    ("evtchn_upcall_mask", 1, "B"),
    ("evtchn_pending_sel", 4, "I"),
    ("arch", 8, "24s"),
    ("time", 32, "32s"),
], _XEN)
SHARED_INFO_COMPAT = _struct("shared_info", 2344, [
    ("vcpu_info", 0, "2048s"),
    ("evtchn_pending", 2048, "128s"),
    ("evtchn_mask", 2176, "128s"),
    ("wc_version", 2304, "I"),
    ("wc_sec", 2308, "I"),
    ("wc_nsec", 2312, "I"),
    ("arch", 2316, "28s"),
], _XEN)
COMPAT_LAYOUTS += [SCHED_POLL_COMPAT, VCPU_RUNSTATE_INFO_COMPAT,
                   VCPU_SET_SINGLESHOT_TIMER_COMPAT, VCPU_INFO_COMPAT, SHARED_INFO_COMPAT]


# ---------------------------------------------------------------------------

# (layout, storage member) -> {C bitfield: (shift, width) within that member}
BITFIELDS: dict[tuple[Layout, str], dict[str, tuple[int, int]]] = {
    (IOREQ, "bits"): IOREQ_BITS,
    (BUF_IOREQ, "bits"): BUF_IOREQ_BITS,
    (T_REC, "bits"): T_REC_BITS,
}

ALL_LAYOUTS: list[Layout] = [v for v in list(globals().values())
                             if isinstance(v, Layout) and v not in COMPAT_LAYOUTS]
