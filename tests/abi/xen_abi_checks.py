"""Shared helpers for the ABI layout tests: the gdb `ptype /o` sheet parser,
C-name mapping of Layout members, and the explicit lists of exceptions."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from pyxen.abi import constants, structs
from pyxen.abi.layout import Layout

REFERENCE_DIR = Path("/work/shared/reference")
SHEET_4_10 = REFERENCE_DIR / "layouts-xen-4.10.txt"
SHIM_HEADER = Path(__file__).with_name("xen410_only.h")

# Layouts whose C type in the installed 4.17 headers is not the 4.10 layout.
# They are checked against the 4.10 sheet (or the 4.10 shim) instead.
DIFFERS_IN_4_17: dict[str, str] = {
    "hvm_start_info_v0": "4.17's struct hvm_start_info is the 56-byte version 1",
    "vm_event_st": "vm_event interface 7 in 4.17: 400 bytes, larger unions",
    "vm_event_mov_to_msr": "4.17 has {msr, new_value, old_value}",
    "vm_event_debug": "4.17 inserts pending_dbg before insn_length",
    "vm_event_regs_x86": "4.17 adds dr6 and more registers (344 bytes)",
    "vm_event_emul_read_data": "4.17 grows data[] to 340 bytes",
    "xenstore_domain_interface": "4.17 appends `error`",
    "xen_domctl_createdomain": "4.17 createdomain is 64 bytes with new fields",
    "xen_domctl_getdomaininfo": "4.17 getdomaininfo is 112 bytes",
    "xen_domctl_vm_event_op": "4.17 moves `port` into u.enable.port",
    "xen_domctl_psr_cat_op": "renamed xen_domctl_psr_alloc in 4.11",
    "xen_sysctl_psr_cat_op": "renamed xen_sysctl_psr_alloc in 4.11",
    "xen_hvm_altp2m_set_mem_access": "renamed xen_hvm_altp2m_mem_access in 4.11",
    "xen_domctl_set_gnttab_limits": "removed in 4.11 (folded into createdomain)",
    "xen_domctl_set_max_evtchn": "removed in 4.11 (folded into createdomain)",
    "xen_sysctl_physinfo": "4.17 adds arch_capabilities (112 bytes)",
    "xen_sysctl_set_parameter": "removed in 4.14 (hypfs)",
    "xen_sysctl_scheduler_op": "4.11 adds vcpu_migr_delay_us to the credit arm (32 bytes)",
    "xen_dm_op_get_ioreq_server_info": "4.11 turns `pad` into `flags` (same layout)",
}

# Layouts checked against our own 4.10 declarations in xen410_only.h because
# neither the 4.17 headers nor the 4.10 sheet have them: c_name -> shim type.
SHIM_TYPES: dict[str, str] = {
    "xen_sysctl_physinfo": "struct xen410_sysctl_physinfo",
    "xen_sysctl_set_parameter": "struct xen410_sysctl_set_parameter",
    "xen_sysctl_scheduler_op": "struct xen410_sysctl_scheduler_op",
    "e820entry": "struct xen410_e820entry",
}

# Layouts that describe only the start of their C type: c_name -> the first
# C member they leave out (their size must equal that member's offset).
PREFIX_LAYOUTS: dict[str, str] = {
    "xen_domctl_header": "u",
    "xen_sysctl_header": "u",
}

# Layouts whose C type is a char/byte array typedef: only the size is checked.
ARRAY_TYPEDEF_LAYOUTS = {
    "xen_domain_handle", "xen_extraversion", "xen_capabilities_info",
    "xen_changeset_info", "xen_commandline",
}

# Layouts that share a C type on purpose: c_type -> the c_names sharing it.
INTENDED_SHARED_C_TYPES: dict[str, set[str]] = {
    "struct hvm_start_info": {"hvm_start_info", "hvm_start_info_v0"},
    "struct xen_domctl": {"xen_domctl", "xen_domctl_header"},
    "struct xen_sysctl": {"xen_sysctl", "xen_sysctl_header"},
}

# Layouts not compared with the 4.10 sheet although their C type is in it.
SHEET_SKIP: dict[str, str] = {
    "hvm_start_info": "version-1 layout (post-4.10); checked against the 4.17 header",
}

# Structs of the 4.10 sheet deliberately without a Layout: name -> reason.
SHEET_STRUCTS_WITHOUT_LAYOUT: dict[str, str] = {}


def by_name() -> dict[str, Layout]:
    return {lay.c_name: lay for lay in structs.ALL_LAYOUTS}


def c_path(member: str) -> str:
    """C member designator of a Layout member name ("a__b" -> "a.b", "in_" -> "in")."""
    return ".".join(part[:-1] if part.endswith("_") else part for part in member.split("__"))


def width_of(code: str) -> int:
    if code.endswith("s"):
        return int(code[:-1] or 1)
    return {"B": 1, "b": 1, "H": 2, "h": 2, "I": 4, "i": 4, "Q": 8, "q": 8}[code]


def bitfield_storage(layout: Layout) -> dict[str, dict[str, tuple[int, int]]]:
    return {member: bits for (lay, member), bits in structs.BITFIELDS.items() if lay is layout}


# ---------------------------------------------------------------------------
# gdb `ptype /o` sheet
# ---------------------------------------------------------------------------


@dataclass
class SheetField:
    name: str  # "" for an anonymous aggregate
    type: str  # C type text, "struct X", "union" ...
    offset: int  # from the start of the top-level struct
    size: int | None
    bit: int | None = None  # bit position within the byte at `offset` (bitfields)
    bits: int | None = None  # bitfield width
    children: list[SheetField] = field(default_factory=list)

    def walk(self):
        yield self
        for child in self.children:
            yield from child.walk()

    def members(self) -> list[SheetField]:
        """Named direct members, looking through anonymous aggregates."""
        out = []
        for child in self.children:
            if child.name:
                out.append(child)
            else:
                out.extend(child.members())
        return out

    def find(self, path: tuple[str, ...]) -> SheetField | None:
        node = self
        for part in path:
            node = next((m for m in node.members() if m.name == part), None)
            if node is None:
                return None
        return node


_HEADER = re.compile(r"^/\* offset\s+\|\s+size \*/\s+type = (struct|union) (\w+) \{$")
_MEMBER = re.compile(r"^/\*\s+(\d+)(?::\s*(\d+))?\s+\|\s+(\d+) \*/\s+(.*)$")
_UNION_ARM = re.compile(r"^/\*\s+(\d+) \*/\s+(.*)$")
_TOTAL = re.compile(r"/\* total size \(bytes\):\s+(\d+) \*/")
_CLOSE = re.compile(r"^\}\s*(\w*)\s*;?$")
_DECL = re.compile(r"^(.*?)[\s*]+(\w+)\s*((?:\[\d*\])*)\s*(?::\s*(\d+))?;$")


def parse_sheet(text: str) -> dict[str, SheetField]:
    """Top-level structs of a gdb `ptype /o` dump, keyed "struct NAME"."""
    result: dict[str, SheetField] = {}
    stack: list[SheetField] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("/* XXX"):
            continue
        m = _HEADER.match(line)
        if m:
            stack = [SheetField(m.group(2), f"{m.group(1)} {m.group(2)}", 0, None)]
            continue
        m = _TOTAL.search(line)
        if m:
            stack[-1].size = int(m.group(1))
            continue
        m = _CLOSE.match(line)
        if m:
            node = stack.pop()
            if stack:
                node.name = m.group(1)
            else:
                result[node.type] = node
            continue
        m = _MEMBER.match(line)
        if m:
            offset, bit, size, decl = int(m.group(1)), m.group(2), int(m.group(3)), m.group(4)
            bit = int(bit) if bit is not None else None
        else:
            m = _UNION_ARM.match(line)
            if not m:
                raise ValueError(f"unparsed sheet line: {raw!r}")
            offset, bit, size, decl = stack[-1].offset, None, int(m.group(1)), m.group(2)
        if decl.endswith("{"):
            node = SheetField("", decl[:-1].strip(), offset, size)
            stack[-1].children.append(node)
            stack.append(node)
            continue
        d = _DECL.match(decl)
        if not d:
            raise ValueError(f"unparsed declaration: {raw!r}")
        bits = int(d.group(4)) if d.group(4) else None
        stack[-1].children.append(
            SheetField(d.group(2), d.group(1).strip(), offset, size, bit, bits))
    if stack:
        raise ValueError("sheet ends inside a struct")
    return result


_TYPEOF = re.compile(r"^__typeof__\(\(\((struct \w+) \*\)0\)->([\w.]+)\)$")


def resolve(sheet: dict[str, SheetField], c_type: str) -> SheetField | None:
    """The sheet node describing `c_type` (offsets still absolute), or None."""
    m = _TYPEOF.match(c_type)
    if m:
        parent = resolve(sheet, m.group(1))
        return parent.find(tuple(m.group(2).split("."))) if parent else None
    if c_type in sheet:
        return sheet[c_type]
    for top in sheet.values():
        for node in top.walk():
            if node is not top and node.type == c_type and node.children:
                return node
    return None


def load_sheet_4_10() -> dict[str, SheetField]:
    return parse_sheet(SHEET_4_10.read_text())


def header_checked_layouts() -> list[Layout]:
    """Layouts whose C type is compiled against the installed 4.17 headers."""
    return [lay for lay in structs.ALL_LAYOUTS
            if lay.header is not None and lay.c_name not in DIFFERS_IN_4_17]


def shim_checked_layouts() -> list[Layout]:
    names = by_name()
    return [names[name] for name in SHIM_TYPES]


# ---------------------------------------------------------------------------
# Constants: which C macro each Python constant mirrors
# ---------------------------------------------------------------------------

# IntEnum -> C prefix; the member name follows (trailing "_" dropped).
ENUM_PREFIXES = {
    constants.Hypercall: "__HYPERVISOR_",
    constants.XenVer: "XENVER_",
    constants.XenFeat: "XENFEAT_",
    constants.SchedOp: "SCHEDOP_",
    constants.ShutdownReason: "SHUTDOWN_",
    constants.MemOp: "XENMEM_",
    constants.MapSpace: "XENMAPSPACE_",
    constants.MemAccessOp: "XENMEM_access_op_",
    constants.HvmOp: "HVMOP_",
    constants.Altp2mOp: "HVMOP_altp2m_",
    constants.HvmParam: "HVM_PARAM_",
    constants.HvmCallbackType: "HVM_PARAM_CALLBACK_TYPE_",
    constants.Altp2mMode: "XEN_ALTP2M_",
    constants.VcpuOp: "VCPUOP_",
    constants.RunstateState: "RUNSTATE_",
    constants.VmAssistCmd: "VMASST_CMD_",
    constants.ConsoleIO: "CONSOLEIO_",
    constants.EvtchnOp: "EVTCHNOP_",
    constants.EvtchnStat: "EVTCHNSTAT_",
    constants.Virq: "VIRQ_",
    constants.GnttabOp: "GNTTABOP_",
    constants.GntSt: "GNTST_",
    constants.ElfNote: "XEN_ELFNOTE_",
    constants.Domctl: "XEN_DOMCTL_",
    constants.Scheduler: "XEN_SCHEDULER_",
    constants.DomctlSchedOp: "XEN_DOMCTL_SCHEDOP_",
    constants.Sysctl: "XEN_SYSCTL_",
    constants.TbufOp: "XEN_SYSCTL_TBUFOP_",
    constants.IoreqType: "IOREQ_TYPE_",
}
# Enums whose C names are upper case.
UPPER_CASE_ENUM_PREFIXES = {
    constants.VmEventOp: "XEN_VM_EVENT_",
    constants.VmEventMode: "XEN_DOMCTL_VM_EVENT_OP_",
    constants.CpupoolOp: "XEN_SYSCTL_CPUPOOL_OP_",
}
# Members whose C name does not follow the prefix rule.
SPECIAL_ENUM_NAMES = {
    constants.VmAssistType.four_gb_segments: "VMASST_TYPE_4gb_segments",
    constants.VmAssistType.four_gb_segments_notify: "VMASST_TYPE_4gb_segments_notify",
    constants.VmAssistType.writable_pagetables: "VMASST_TYPE_writable_pagetables",
    constants.VmAssistType.pae_extended_cr3: "VMASST_TYPE_pae_extended_cr3",
    constants.VmAssistType.architectural_iopl: "VMASST_TYPE_architectural_iopl",
    constants.VmAssistType.runstate_update_flag: "VMASST_TYPE_runstate_update_flag",
    constants.VmAssistType.m2p_strict: "VMASST_TYPE_m2p_strict",
    constants.IoreqState.NONE: "STATE_IOREQ_NONE",
    constants.IoreqState.READY: "STATE_IOREQ_READY",
    constants.IoreqState.INPROCESS: "STATE_IOREQ_INPROCESS",
    constants.IoreqState.IORESP_READY: "STATE_IORESP_READY",
}
# Module-level ints: Python name -> C macro (same name unless given).
MODULE_INTS = {name: name for name in [
    "DOMID_FIRST_RESERVED", "DOMID_SELF", "DOMID_IO", "DOMID_XEN", "DOMID_COW",
    "DOMID_INVALID", "DOMID_IDLE", "DOMID_MASK", "SIF_PRIVILEGED", "SIF_INITDOMAIN",
    "XEN_HVM_START_MAGIC_VALUE", "XENFEAT_NR_SUBMAPS", "SHUTDOWN_MAX",
    "MEMOP_EXTENT_SHIFT", "MEMOP_CMD_MASK", "XENMAPIDX_grant_table_status",
    "XENMEMF_populate_on_demand", "XENMEMF_exact_node_request", "XENMEMF_vnode",
    "HVM_NR_PARAMS", "HVM_PARAM_CALLBACK_TYPE_PPI", "HVM_PARAM_CALLBACK_TYPE_PPI_FLAG_MASK",
    "HVM_PARAM_CALLBACK_TYPE_PPI_FLAG_LOW_LEVEL", "XEN_HVM_MCA_CAP_LMCE",
    "HVMOP_ALTP2M_INTERFACE_VERSION", "XEN_RUNSTATE_UPDATE", "VCPU_SSHOTTMR_future",
    "VCPU_HVM_MODE_32B", "VCPU_HVM_MODE_64B", "XEN_PVCLOCK_TSC_STABLE_BIT",
    "XEN_PVCLOCK_GUEST_STOPPED", "XEN_LEGACY_MAX_VCPUS", "BIND_PIRQ__WILL_SHARE",
    "NR_VIRQS", "GTF_invalid", "GTF_permit_access", "GTF_accept_transfer", "GTF_transitive",
    "GTF_type_mask", "GTF_readonly", "GTF_reading", "GTF_writing", "GTF_PWT", "GTF_PCD",
    "GTF_PAT", "GTF_sub_page", "GTF_transfer_committed", "GTF_transfer_completed",
    "GNTMAP_device_map", "GNTMAP_host_map", "GNTMAP_readonly", "GNTMAP_application_map",
    "GNTMAP_contains_pte", "GNTCOPY_source_gref", "GNTCOPY_dest_gref",
    "GNTTAB_RESERVED_CONSOLE", "GNTTAB_RESERVED_XENSTORE", "XEN_ELFNOTE_MAX",
    "XEN_DOMCTL_CDF_hvm_guest", "XEN_DOMCTL_CDF_hap", "XEN_DOMCTL_CDF_s3_integrity",
    "XEN_DOMCTL_CDF_oos_off", "XEN_DOMCTL_CDF_xs_domain", "XEN_DOMINF_dying",
    "XEN_DOMINF_hvm_guest", "XEN_DOMINF_shutdown", "XEN_DOMINF_paused", "XEN_DOMINF_blocked",
    "XEN_DOMINF_running", "XEN_DOMINF_debugged", "XEN_DOMINF_xs_domain",
    "XEN_DOMINF_shutdownmask", "XEN_DOMINF_shutdownshift", "XEN_VCPUAFFINITY_HARD",
    "XEN_VCPUAFFINITY_SOFT", "XEN_VCPUAFFINITY_FORCE", "XEN_SYSCTL_PHYSCAP_hvm",
    "XEN_SYSCTL_PHYSCAP_hvm_directio", "IOREQ_READ", "IOREQ_WRITE", "IOREQ_BUFFER_SLOT_NUM",
]}
MODULE_INTS.update({
    "DOMCTL_INTERFACE_VERSION": "XEN_DOMCTL_INTERFACE_VERSION",
    "SYSCTL_INTERFACE_VERSION": "XEN_SYSCTL_INTERFACE_VERSION",
    "VM_EVENT_INTERFACE_VERSION": "VM_EVENT_INTERFACE_VERSION",
    "XEN_PAGE_SHIFT": "XEN_PAGE_SHIFT",
})

# C names our 4.10 constants use that the 4.17 headers no longer define.
ABSENT_IN_4_17: dict[str, str] = {
    "__HYPERVISOR_xc_reserved_op": "4.13 renamed 39 to argo_op",
    "__HYPERVISOR_paging_domctl_cont": "x86 name of arch_1, not in the public headers",
    "XENFEAT_grant_map_identity": "deprecated; 4.17 comments the macro out",
    "XEN_DOMCTL_getmemlist": "removed after 4.10",
    "XEN_DOMCTL_arch_setup": "obsolete; 4.17 reuses 23 as soft_reset_cont",
    "XEN_DOMCTL_pin_mem_cacheattr": "removed after 4.10 (dm_op)",
    "XEN_DOMCTL_set_cpuid": "removed after 4.10 (set_cpu_policy)",
    "XEN_DOMCTL_set_machine_address_size": "obsolete, removed after 4.10",
    "XEN_DOMCTL_get_machine_address_size": "obsolete, removed after 4.10",
    "XEN_DOMCTL_suppress_spurious_page_faults": "obsolete, removed after 4.10",
    "XEN_DOMCTL_disable_migrate": "removed after 4.10",
    "XEN_DOMCTL_set_max_evtchn": "folded into createdomain in 4.11",
    "XEN_DOMCTL_psr_cat_op": "renamed psr_alloc in 4.11",
    "XEN_DOMCTL_set_gnttab_limits": "folded into createdomain in 4.11",
    "XEN_SYSCTL_gcov_op": "renamed coverage_op in 4.11",
    "XEN_SYSCTL_psr_cat_op": "renamed psr_alloc in 4.11",
    "XEN_SYSCTL_tmem_op": "removed after 4.10",
    "XEN_SYSCTL_set_parameter": "removed in 4.14 (hypfs)",
    "XEN_DOMCTL_CDF_hvm_guest": "renamed XEN_DOMCTL_CDF_hvm in 4.11",
    "HVMOP_set_pci_intx_level": "only for interface < 4.9 (moved to dm_op), in 4.10 too",
    "HVMOP_set_isa_irq_level": "only for interface < 4.9 (moved to dm_op), in 4.10 too",
    "HVMOP_set_pci_link_route": "only for interface < 4.9 (moved to dm_op), in 4.10 too",
    "HVM_PARAM_CALLBACK_TYPE_PPI": "ARM-only macro, invisible to an x86 compile",
    "HVM_PARAM_CALLBACK_TYPE_PPI_FLAG_MASK": "ARM-only macro, invisible to an x86 compile",
    "HVM_PARAM_CALLBACK_TYPE_PPI_FLAG_LOW_LEVEL": "ARM-only macro, invisible to an x86 compile",
    "MEMOP_EXTENT_SHIFT": "hypervisor-internal, not a public-header macro",
    "MEMOP_CMD_MASK": "hypervisor-internal, not a public-header macro",
    "XEN_SYSCTL_PHYSCAP_hvm_directio": "4.13 adds PHYSCAP_pv at bit 1, directio moves to 2",
}
# C names whose 4.17 value is not the 4.10 value we use.
DIFFERENT_IN_4_17: dict[str, str] = {
    "XEN_DOMCTL_INTERFACE_VERSION": "0x0e in 4.10, 0x15 in 4.17",
    "XEN_SYSCTL_INTERFACE_VERSION": "0x10 in 4.10, 0x15 in 4.17",
    "VM_EVENT_INTERFACE_VERSION": "2 in 4.10, 7 in 4.17",
}


def constant_c_names() -> dict[str, int]:
    """C macro name -> the value our constants module gives it."""
    out: dict[str, int] = {}
    for enum_cls, prefix in ENUM_PREFIXES.items():
        for name, member in enum_cls.__members__.items():
            out[prefix + name.rstrip("_")] = int(member)
    for enum_cls, prefix in UPPER_CASE_ENUM_PREFIXES.items():
        for name, member in enum_cls.__members__.items():
            out[prefix + name.upper()] = int(member)
    for member, c_name in SPECIAL_ENUM_NAMES.items():
        out[c_name] = int(member)
    for py_name, c_name in MODULE_INTS.items():
        out[c_name] = int(getattr(constants, py_name))
    return out


# ---------------------------------------------------------------------------
# The probe: one C program printing every size, offset, bitfield and macro
# ---------------------------------------------------------------------------

PROBE_HEADERS = [
    "xen/xen.h", "xen/arch-x86/xen.h", "xen/arch-x86/xen-mca.h", "xen/version.h",
    "xen/features.h", "xen/sched.h", "xen/vcpu.h", "xen/memory.h", "xen/event_channel.h",
    "xen/grant_table.h", "xen/trace.h", "xen/vm_event.h", "xen/domctl.h", "xen/sysctl.h",
    "xen/elfnote.h", "xen/arch-x86/hvm/start_info.h", "xen/hvm/hvm_op.h",
    "xen/hvm/params.h", "xen/hvm/hvm_vcpu.h", "xen/hvm/ioreq.h", "xen/hvm/dm_op.h",
    "xen/io/console.h", "xen/io/xs_wire.h", "xen/io/pvcalls.h",
]


def probe_c_type(layout: Layout) -> str:
    return SHIM_TYPES.get(layout.c_name, layout.c_type)


def build_probe_source() -> str:
    headers = set(PROBE_HEADERS)
    for lay in structs.ALL_LAYOUTS:
        if lay.header:
            headers.add(lay.header)
    lines = ["#include <stdint.h>", "#include <stddef.h>", "#include <stdio.h>",
             "#include <string.h>"]
    lines += [f"#include <{h}>" for h in PROBE_HEADERS]
    lines += [f"#include <{h}>" for h in sorted(headers - set(PROBE_HEADERS))]
    lines += [f'#include "{SHIM_HEADER}"', "",
              "static void dump(const char *tag, const void *p, size_t n)", "{",
              "    const unsigned char *b = p;",
              '    printf("%s ", tag);',
              '    for (size_t i = 0; i < n; i++) printf("%02x", b[i]);',
              '    printf("\\n");', "}", "", "int main(void)", "{"]
    for lay in header_checked_layouts() + shim_checked_layouts():
        t = probe_c_type(lay)
        lines.append(f'    printf("S {lay.c_name} %zu\\n", sizeof({t}));')
        if lay.c_name in ARRAY_TYPEDEF_LAYOUTS:
            continue
        if lay.c_name in PREFIX_LAYOUTS:
            rest = PREFIX_LAYOUTS[lay.c_name]
            lines.append(f'    printf("P {lay.c_name} %zu\\n", offsetof({t}, {rest}));')
        storage = bitfield_storage(lay)
        for name, _off, _code in lay.members:
            if name in storage:
                for bitfield in storage[name]:
                    lines.append(f"    {{ {t} v; memset(&v, 0, sizeof v); v.{bitfield}--;"
                                 f' dump("B {lay.c_name} {name} {bitfield}", &v, sizeof v); }}')
                continue
            path = c_path(name)
            lines.append(f'    printf("M {lay.c_name} {name} %zu %zu\\n", offsetof({t}, {path}),'
                         f" sizeof((({t} *)0)->{path}));")
    for c_name in constant_c_names():
        lines += [f"#ifdef {c_name}",
                  f'    printf("C {c_name} %lld\\n", (long long)({c_name}));', "#endif"]
    # XEN_E* are enum constants, not macros: expand errno.h's list ourselves.
    lines += ['#define XEN_ERRNO(name, value) printf("E XEN_" #name " %lld\\n",'
              " (long long)(value));",
              "#define __XEN__  /* also list the hypervisor-internal EINTR, ERESTART */",
              "#include <xen/errno.h>", "#undef __XEN__", "#undef XEN_ERRNO",
              "    return 0;", "}"]
    return "\n".join(lines) + "\n"


@dataclass
class ProbeResult:
    sizes: dict[str, int] = field(default_factory=dict)
    prefixes: dict[str, int] = field(default_factory=dict)
    members: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    bitfields: dict[tuple[str, str, str], bytes] = field(default_factory=dict)
    constants: dict[str, int] = field(default_factory=dict)
    errnos: dict[str, int] = field(default_factory=dict)


def parse_probe_output(text: str) -> ProbeResult:
    result = ProbeResult()
    for line in text.splitlines():
        kind, *rest = line.split()
        if kind == "S":
            result.sizes[rest[0]] = int(rest[1])
        elif kind == "P":
            result.prefixes[rest[0]] = int(rest[1])
        elif kind == "M":
            result.members[(rest[0], rest[1])] = (int(rest[2]), int(rest[3]))
        elif kind == "B":
            result.bitfields[(rest[0], rest[1], rest[2])] = bytes.fromhex(rest[3])
        elif kind == "C":
            result.constants[rest[0]] = int(rest[1])
        elif kind == "E":
            result.errnos[rest[0]] = int(rest[1])
        else:
            raise ValueError(f"unexpected probe line {line!r}")
    return result
