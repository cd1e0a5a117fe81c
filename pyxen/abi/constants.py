"""Xen 4.10 ABI numbers: hypercalls, sub-ops, error codes, flags.

Every number here is the value Xen 4.10's public headers give the macro the
member is named after (prefix dropped). Where 4.17 (the installed headers)
differs, the 4.10 value is used and a comment says what changed. Numbers that
only exist after 4.10 are either left out (with a comment) or marked.
"""

from __future__ import annotations

import enum

XEN_VERSION_MAJOR = 4
XEN_VERSION_MINOR = 10

XEN_PAGE_SHIFT = 12
XEN_PAGE_SIZE = 1 << XEN_PAGE_SHIFT


# ---------------------------------------------------------------------------
# Hypercalls (xen.h __HYPERVISOR_*)
# ---------------------------------------------------------------------------


class Hypercall(enum.IntEnum):
    set_trap_table = 0
    mmu_update = 1
    set_gdt = 2
    stack_switch = 3
    set_callbacks = 4
    fpu_taskswitch = 5
    sched_op_compat = 6
    platform_op = 7
    set_debugreg = 8
    get_debugreg = 9
    update_descriptor = 10
    # 11 is unused
    memory_op = 12
    multicall = 13
    update_va_mapping = 14
    set_timer_op = 15
    event_channel_op_compat = 16
    xen_version = 17
    console_io = 18
    physdev_op_compat = 19
    grant_table_op = 20
    vm_assist = 21
    update_va_mapping_otherdomain = 22
    iret = 23
    vcpu_op = 24
    set_segment_base = 25
    mmuext_op = 26
    xsm_op = 27
    nmi_op = 28
    sched_op = 29
    callback_op = 30
    xenoprof_op = 31
    event_channel_op = 32
    physdev_op = 33
    hvm_op = 34
    sysctl = 35
    domctl = 36
    kexec_op = 37
    tmem_op = 38
    xc_reserved_op = 39  # became argo_op in 4.13
    xenpmu_op = 40
    dm_op = 41
    # 42 hypfs_op is 4.14+, not part of 4.10
    arch_0 = 48
    arch_1 = 49
    arch_2 = 50
    arch_3 = 51
    arch_4 = 52
    arch_5 = 53
    arch_6 = 54
    arch_7 = 55
    # x86 names of the arch slots (aliases)
    mca = 48
    paging_domctl_cont = 49


# Stub layout of the hypercall page: stub i sits at i * HYPERCALL_STUB_SIZE.
HYPERCALL_STUB_SIZE = 32
HYPERCALL_PAGE_STUBS = 128


# ---------------------------------------------------------------------------
# Error codes (errno.h, XEN_E*); hypercalls return them negated.
# ---------------------------------------------------------------------------


class Errno(enum.IntEnum):
    EPERM = 1
    ENOENT = 2
    ESRCH = 3
    EINTR = 4  # internal: never returned to a guest
    EIO = 5
    ENXIO = 6
    E2BIG = 7
    ENOEXEC = 8
    EBADF = 9
    ECHILD = 10
    EAGAIN = 11
    EWOULDBLOCK = 11  # alias of EAGAIN
    ENOMEM = 12
    EACCES = 13
    EFAULT = 14
    EBUSY = 16
    EEXIST = 17
    EXDEV = 18
    ENODEV = 19
    EISDIR = 21
    EINVAL = 22
    ENFILE = 23
    EMFILE = 24
    ENOSPC = 28
    EROFS = 30
    EMLINK = 31
    EDOM = 33
    ERANGE = 34
    EDEADLK = 35
    EDEADLOCK = 35  # alias of EDEADLK
    ENAMETOOLONG = 36
    ENOLCK = 37
    ENOSYS = 38
    ENOTEMPTY = 39
    ENODATA = 61
    ETIME = 62
    EBADMSG = 74
    EOVERFLOW = 75
    EILSEQ = 84
    ERESTART = 85  # internal: never returned to a guest
    ENOTSOCK = 88
    EOPNOTSUPP = 95
    EADDRINUSE = 98
    EADDRNOTAVAIL = 99
    ENOBUFS = 105
    EISCONN = 106
    ENOTCONN = 107
    ETIMEDOUT = 110
    # ENOTDIR (20), EMSGSIZE (90) and ECONNREFUSED (111) were added after 4.10.


# ---------------------------------------------------------------------------
# xen_version (version.h, features.h)
# ---------------------------------------------------------------------------


class XenVer(enum.IntEnum):
    version = 0
    extraversion = 1
    compile_info = 2
    capabilities = 3
    changeset = 4
    platform_parameters = 5
    get_features = 6
    pagesize = 7
    guest_handle = 8
    commandline = 9
    build_id = 10


class XenFeat(enum.IntEnum):
    """Bit numbers in the XENVER_get_features submaps."""

    writable_page_tables = 0
    writable_descriptor_tables = 1
    auto_translated_physmap = 2
    supervisor_mode_kernel = 3
    pae_pgdir_above_4gb = 4
    mmu_pt_update_preserve_ad = 5
    highmem_assist = 6
    gnttab_map_avail_bits = 7
    hvm_callback_vector = 8
    hvm_safe_pvclock = 9
    hvm_pirqs = 10
    dom0 = 11
    grant_map_identity = 12  # deprecated; 4.17 comments the macro out
    memory_op_vnode_supported = 13
    ARM_SMCCC_supported = 14  # post-4.10.0: added with the 2018 SMCCC 1.1 work (4.11)
    # 15 linux_rsdp_unrestricted, 16/17 (not_)direct_mapped are later still.


XENFEAT_NR_SUBMAPS = 1


# ---------------------------------------------------------------------------
# sched_op (sched.h)
# ---------------------------------------------------------------------------


class SchedOp(enum.IntEnum):
    yield_ = 0
    block = 1
    shutdown = 2
    poll = 3
    remote_shutdown = 4
    shutdown_code = 5
    watchdog = 6
    pin_override = 7


class ShutdownReason(enum.IntEnum):
    poweroff = 0
    reboot = 1
    suspend = 2
    crash = 3
    watchdog = 4
    soft_reset = 5


SHUTDOWN_MAX = 5
SCHEDOP_POLL_MAX_PORTS = 128  # more ports than this: -EINVAL


# ---------------------------------------------------------------------------
# memory_op (memory.h)
# ---------------------------------------------------------------------------


class MemOp(enum.IntEnum):
    increase_reservation = 0
    decrease_reservation = 1
    maximum_ram_page = 2
    current_reservation = 3
    maximum_reservation = 4
    machphys_mfn_list = 5
    populate_physmap = 6
    add_to_physmap = 7
    # 8 translate_gpfn_list is retired
    memory_map = 9
    machine_memory_map = 10
    exchange = 11
    machphys_mapping = 12
    set_memory_map = 13
    maximum_gpfn = 14
    remove_from_physmap = 15
    set_pod_target = 16
    get_pod_target = 17
    get_sharing_freed_pages = 18
    get_sharing_shared_pages = 19
    paging_op = 20
    access_op = 21
    sharing_op = 22
    add_to_physmap_batch = 23
    claim_pages = 24
    machphys_compat_mfn_list = 25
    get_vnumainfo = 26
    reserved_device_memory_map = 27
    # 28 acquire_resource is 4.11+


MEMOP_EXTENT_SHIFT = 6
MEMOP_CMD_MASK = (1 << MEMOP_EXTENT_SHIFT) - 1


class MapSpace(enum.IntEnum):
    shared_info = 0
    grant_table = 1
    gmfn = 2
    gmfn_range = 3
    gmfn_foreign = 4
    dev_mmio = 5


XENMAPIDX_grant_table_status = 0x80000000

# xen_memory_reservation.mem_flags: bits 7:0 address bits, bits 15:8 node + 1.
XENMEMF_populate_on_demand = 1 << 16
XENMEMF_exact_node_request = 1 << 17
XENMEMF_vnode = 1 << 18


class MemAccessOp(enum.IntEnum):
    """XENMEM_access_op sub-ops (2 and 3 are retired)."""

    set_access = 0
    get_access = 1
    set_access_multi = 4


class XenMemAccess(enum.IntEnum):
    """xenmem_access_t."""

    n = 0
    r = 1
    w = 2
    rw = 3
    x = 4
    rx = 5
    wx = 6
    rwx = 7
    rx2rw = 8
    n2rwx = 9
    default = 10


# ---------------------------------------------------------------------------
# hvm_op (hvm/hvm_op.h, hvm/params.h)
# ---------------------------------------------------------------------------


class HvmOp(enum.IntEnum):
    set_param = 0
    get_param = 1
    # 2..4 moved to dm_op in 4.9; the header keeps them for interface < 4.9 only.
    set_pci_intx_level = 2
    set_isa_irq_level = 3
    set_pci_link_route = 4
    flush_tlbs = 5
    # 6..8, 14 and 16..22 also moved to dm_op in 4.9: not HVMOPs in 4.10.
    pagetable_dying = 9
    get_time = 10
    xentrace = 11
    set_mem_access = 12
    get_mem_access = 13
    get_mem_type = 15
    set_evtchn_upcall_vector = 23
    guest_request_vm_event = 24
    altp2m = 25


class Altp2mOp(enum.IntEnum):
    """HVMOP_altp2m commands in 4.10 (9 and above are 4.11+)."""

    get_domain_state = 1
    set_domain_state = 2
    vcpu_enable_notify = 3
    create_p2m = 4
    destroy_p2m = 5
    switch_p2m = 6
    set_mem_access = 7
    change_gfn = 8


HVMOP_ALTP2M_INTERFACE_VERSION = 1


class HvmParam(enum.IntEnum):
    CALLBACK_IRQ = 0
    STORE_PFN = 1
    STORE_EVTCHN = 2
    PAE_ENABLED = 4
    IOREQ_PFN = 5
    BUFIOREQ_PFN = 6
    VIRIDIAN = 9
    TIMER_MODE = 10
    HPET_ENABLED = 11
    IDENT_PT = 12
    DM_DOMAIN = 13
    ACPI_S_STATE = 14
    VM86_TSS = 15
    VPT_ALIGN = 16
    CONSOLE_PFN = 17
    CONSOLE_EVTCHN = 18
    ACPI_IOPORTS_LOCATION = 19
    MEMORY_EVENT_CR0 = 20  # obsolete
    MEMORY_EVENT_CR3 = 21  # obsolete
    MEMORY_EVENT_CR4 = 22  # obsolete
    MEMORY_EVENT_INT3 = 23  # obsolete
    NESTEDHVM = 24
    MEMORY_EVENT_SINGLE_STEP = 25  # obsolete
    BUFIOREQ_EVTCHN = 26
    PAGING_RING_PFN = 27
    MONITOR_RING_PFN = 28
    SHARING_RING_PFN = 29
    MEMORY_EVENT_MSR = 30  # obsolete
    TRIPLE_FAULT_REASON = 31
    IOREQ_SERVER_PFN = 32
    NR_IOREQ_SERVER_PAGES = 33
    VM_GENERATION_ID_ADDR = 34
    ALTP2M = 35
    X87_FIP_WIDTH = 36
    VM86_TSS_SIZED = 37
    MCA_CAP = 38


HVM_NR_PARAMS = 39


class HvmCallbackType(enum.IntEnum):
    """Type in bits 63:56 of HVM_PARAM_CALLBACK_IRQ."""

    GSI = 0
    PCI_INTX = 1
    VECTOR = 2  # x86; ARM calls the same value PPI


HVM_PARAM_CALLBACK_TYPE_SHIFT = 56
HVM_PARAM_CALLBACK_TYPE_PPI = 2
HVM_PARAM_CALLBACK_TYPE_PPI_FLAG_MASK = 0xFF00
HVM_PARAM_CALLBACK_TYPE_PPI_FLAG_LOW_LEVEL = 2

XEN_HVM_MCA_CAP_LMCE = 1 << 0


class Altp2mMode(enum.IntEnum):
    """Values of HVM_PARAM_ALTP2M."""

    disabled = 0
    mixed = 1
    external = 2
    limited = 3


# ---------------------------------------------------------------------------
# vcpu_op (vcpu.h), hvm/hvm_vcpu.h
# ---------------------------------------------------------------------------


class VcpuOp(enum.IntEnum):
    initialise = 0
    up = 1
    down = 2
    is_up = 3
    get_runstate_info = 4
    register_runstate_memory_area = 5
    set_periodic_timer = 6
    stop_periodic_timer = 7
    set_singleshot_timer = 8
    stop_singleshot_timer = 9
    register_vcpu_info = 10
    send_nmi = 11
    get_physid = 12
    register_vcpu_time_memory_area = 13


class RunstateState(enum.IntEnum):
    running = 0
    runnable = 1
    blocked = 2
    offline = 3


XEN_RUNSTATE_UPDATE = 1 << 63
VCPU_SSHOTTMR_future = 1 << 0

VCPU_HVM_MODE_32B = 0
VCPU_HVM_MODE_64B = 1

# vcpu_time_info.flags
XEN_PVCLOCK_TSC_STABLE_BIT = 1 << 0
XEN_PVCLOCK_GUEST_STOPPED = 1 << 1

XEN_LEGACY_MAX_VCPUS = 32  # vcpu_info slots in shared_info


class VmAssistCmd(enum.IntEnum):
    enable = 0
    disable = 1


class VmAssistType(enum.IntEnum):
    four_gb_segments = 0  # VMASST_TYPE_4gb_segments
    four_gb_segments_notify = 1
    writable_pagetables = 2
    pae_extended_cr3 = 3
    architectural_iopl = 4
    runstate_update_flag = 5
    m2p_strict = 32


# ---------------------------------------------------------------------------
# console_io (xen.h)
# ---------------------------------------------------------------------------


class ConsoleIO(enum.IntEnum):
    write = 0
    read = 1


# ---------------------------------------------------------------------------
# event_channel_op (event_channel.h), VIRQs (xen.h)
# ---------------------------------------------------------------------------


class EvtchnOp(enum.IntEnum):
    bind_interdomain = 0
    bind_virq = 1
    bind_pirq = 2
    close = 3
    send = 4
    status = 5
    alloc_unbound = 6
    bind_ipi = 7
    bind_vcpu = 8
    unmask = 9
    reset = 10
    init_control = 11
    expand_array = 12
    set_priority = 13
    # 14 reset_cont is post-4.10


class EvtchnStat(enum.IntEnum):
    """evtchn_status.status values (EVTCHNSTAT_*)."""

    closed = 0
    unbound = 1
    interdomain = 2
    pirq = 3
    virq = 4
    ipi = 5


BIND_PIRQ__WILL_SHARE = 1

# 2-level ABI on a 64-bit guest: 64 words of 64 bits.
EVTCHN_2L_NR_CHANNELS = 64 * 64


class Virq(enum.IntEnum):
    TIMER = 0
    DEBUG = 1
    CONSOLE = 2
    DOM_EXC = 3
    TBUF = 4
    DEBUGGER = 6
    XENOPROF = 7
    CON_RING = 8
    PCPU_STATE = 9
    MEM_EVENT = 10
    ARGO = 11  # post-4.10 name (4.13); 4.10 reserves 11 as VIRQ_XC_RESERVED
    ENOMEM = 12
    XENPMU = 13
    ARCH_0 = 16
    ARCH_1 = 17
    ARCH_2 = 18
    ARCH_3 = 19
    ARCH_4 = 20
    ARCH_5 = 21
    ARCH_6 = 22
    ARCH_7 = 23
    MCA = 16  # x86 name of ARCH_0 (alias)


NR_VIRQS = 24

# VIRQs bound per vCPU; the others are global and must be bound on vCPU 0.
PER_VCPU_VIRQS = frozenset({Virq.TIMER, Virq.DEBUG, Virq.XENOPROF, Virq.XENPMU})


# ---------------------------------------------------------------------------
# grant_table_op (grant_table.h)
# ---------------------------------------------------------------------------


class GnttabOp(enum.IntEnum):
    map_grant_ref = 0
    unmap_grant_ref = 1
    setup_table = 2
    dump_table = 3
    transfer = 4
    copy = 5
    query_size = 6
    unmap_and_replace = 7
    set_version = 8
    get_status_frames = 9
    get_version = 10
    swap_grant_ref = 11
    cache_flush = 12


# grant_entry_v1.flags: the entry type is bits 1:0.
GTF_invalid = 0
GTF_permit_access = 1
GTF_accept_transfer = 2
GTF_transitive = 3
GTF_type_mask = 3
GTF_readonly = 1 << 2
GTF_reading = 1 << 3
GTF_writing = 1 << 4
GTF_PWT = 1 << 5
GTF_PCD = 1 << 6
GTF_PAT = 1 << 7
GTF_sub_page = 1 << 8
GTF_transfer_committed = 1 << 2
GTF_transfer_completed = 1 << 3

GNTMAP_device_map = 1 << 0
GNTMAP_host_map = 1 << 1
GNTMAP_readonly = 1 << 2
GNTMAP_application_map = 1 << 3
GNTMAP_contains_pte = 1 << 4

GNTCOPY_source_gref = 1 << 0
GNTCOPY_dest_gref = 1 << 1

GNTTAB_RESERVED_CONSOLE = 0
GNTTAB_RESERVED_XENSTORE = 1
GRANT_ENTRY_V1_SIZE = 8


class GntSt(enum.IntEnum):
    """Per-entry status codes (GNTST_*)."""

    okay = 0
    general_error = -1
    bad_domain = -2
    bad_gntref = -3
    bad_handle = -4
    bad_virt_addr = -5
    bad_dev_addr = -6
    no_device_space = -7
    permission_denied = -8
    bad_page = -9
    bad_copy_arg = -10
    address_too_big = -11
    eagain = -12
    # -13 no_space is post-4.10


# ---------------------------------------------------------------------------
# ELF notes (elfnote.h)
# ---------------------------------------------------------------------------


class ElfNote(enum.IntEnum):
    INFO = 0
    ENTRY = 1
    HYPERCALL_PAGE = 2
    VIRT_BASE = 3
    PADDR_OFFSET = 4
    XEN_VERSION = 5
    GUEST_OS = 6
    GUEST_VERSION = 7
    LOADER = 8
    PAE_MODE = 9
    FEATURES = 10
    BSD_SYMTAB = 11
    HV_START_LOW = 12
    L1_MFN_VALID = 13
    SUSPEND_CANCEL = 14
    INIT_P2M = 15
    MOD_START_PFN = 16
    SUPPORTED_FEATURES = 17
    PHYS32_ENTRY = 18
    CRASH_INFO = 0x1000001
    CRASH_REGS = 0x1000002
    DUMPCORE_NONE = 0x2000000
    DUMPCORE_HEADER = 0x2000001
    DUMPCORE_XEN_VERSION = 0x2000002
    DUMPCORE_FORMAT_VERSION = 0x2000003


XEN_ELFNOTE_MAX = ElfNote.PHYS32_ENTRY
XEN_ELFNOTE_NAME = b"Xen"


# ---------------------------------------------------------------------------
# E820 memory types
# ---------------------------------------------------------------------------


class E820Type(enum.IntEnum):
    RAM = 1
    RESERVED = 2
    ACPI = 3
    NVS = 4
    UNUSABLE = 5
    PMEM = 7


# ---------------------------------------------------------------------------
# domctl (domctl.h, 4.10 numbering)
# ---------------------------------------------------------------------------

DOMCTL_INTERFACE_VERSION = 0x0E  # 4.17 is 0x15


class Domctl(enum.IntEnum):
    createdomain = 1
    destroydomain = 2
    pausedomain = 3
    unpausedomain = 4
    getdomaininfo = 5
    getmemlist = 6  # removed after 4.10
    setvcpuaffinity = 9
    shadow_op = 10
    max_mem = 11
    setvcpucontext = 12
    getvcpucontext = 13
    getvcpuinfo = 14
    max_vcpus = 15
    scheduler_op = 16
    setdomainhandle = 17
    setdebugging = 18
    irq_permission = 19
    iomem_permission = 20
    ioport_permission = 21
    hypercall_init = 22
    arch_setup = 23  # obsolete (IA64); 4.17 reuses 23 for soft_reset_cont
    settimeoffset = 24
    getvcpuaffinity = 25
    real_mode_area = 26  # obsolete (PPC)
    resumedomain = 27
    sendtrigger = 28
    subscribe = 29
    gethvmcontext = 33
    sethvmcontext = 34
    set_address_size = 35
    get_address_size = 36
    assign_device = 37
    bind_pt_irq = 38
    memory_mapping = 39
    ioport_mapping = 40
    pin_mem_cacheattr = 41  # removed after 4.10 (moved to dm_op)
    set_ext_vcpucontext = 42
    get_ext_vcpucontext = 43
    set_opt_feature = 44  # obsolete (IA64)
    test_assign_device = 45
    set_target = 46
    deassign_device = 47
    unbind_pt_irq = 48
    set_cpuid = 49  # removed after 4.10 (set_cpu_policy)
    get_device_group = 50
    set_machine_address_size = 51
    get_machine_address_size = 52
    suppress_spurious_page_faults = 53
    debug_op = 54
    gethvmcontext_partial = 55
    vm_event_op = 56
    mem_sharing_op = 57
    disable_migrate = 58  # removed after 4.10
    gettscinfo = 59
    settscinfo = 60
    getpageframeinfo3 = 61
    setvcpuextstate = 62
    getvcpuextstate = 63
    set_access_required = 64
    audit_p2m = 65
    set_virq_handler = 66
    set_broken_page_p2m = 67
    setnodeaffinity = 68
    getnodeaffinity = 69
    set_max_evtchn = 70  # removed after 4.10 (moved into createdomain)
    cacheflush = 71
    get_vcpu_msrs = 72
    set_vcpu_msrs = 73
    setvnumainfo = 74
    psr_cmt_op = 75
    monitor_op = 77
    psr_cat_op = 78  # renamed psr_alloc in 4.11
    soft_reset = 79
    set_gnttab_limits = 80  # new in 4.10, moved into createdomain in 4.11
    vuart_op = 81
    gdbsx_guestmemio = 1000
    gdbsx_pausevcpu = 1001
    gdbsx_unpausevcpu = 1002
    gdbsx_domstatus = 1003


# xen_domctl_createdomain.flags (4.10)
XEN_DOMCTL_CDF_hvm_guest = 1 << 0
XEN_DOMCTL_CDF_hap = 1 << 1
XEN_DOMCTL_CDF_s3_integrity = 1 << 2
XEN_DOMCTL_CDF_oos_off = 1 << 3
XEN_DOMCTL_CDF_xs_domain = 1 << 4

# xen_domctl_getdomaininfo.flags
XEN_DOMINF_dying = 1 << 0
XEN_DOMINF_hvm_guest = 1 << 1
XEN_DOMINF_shutdown = 1 << 2
XEN_DOMINF_paused = 1 << 3
XEN_DOMINF_blocked = 1 << 4
XEN_DOMINF_running = 1 << 5
XEN_DOMINF_debugged = 1 << 6
XEN_DOMINF_xs_domain = 1 << 7
XEN_DOMINF_shutdownmask = 255
XEN_DOMINF_shutdownshift = 16

XEN_VCPUAFFINITY_HARD = 1 << 0
XEN_VCPUAFFINITY_SOFT = 1 << 1
XEN_VCPUAFFINITY_FORCE = 1 << 2


class Scheduler(enum.IntEnum):
    """XEN_SCHEDULER_* ids."""

    CREDIT = 5
    CREDIT2 = 6
    ARINC653 = 7
    RTDS = 8
    NULL = 9


class DomctlSchedOp(enum.IntEnum):
    putinfo = 0
    getinfo = 1
    putvcpuinfo = 2
    getvcpuinfo = 3


class VmEventOp(enum.IntEnum):
    """XEN_VM_EVENT_* ops of XEN_DOMCTL_vm_event_op."""

    enable = 0
    disable = 1
    resume = 2


class VmEventMode(enum.IntEnum):
    paging = 1
    monitor = 2
    sharing = 3


VM_EVENT_INTERFACE_VERSION = 2  # 4.17 is 7


# ---------------------------------------------------------------------------
# sysctl (sysctl.h, 4.10 numbering)
# ---------------------------------------------------------------------------

SYSCTL_INTERFACE_VERSION = 0x10  # 4.17 is 0x15


class Sysctl(enum.IntEnum):
    readconsole = 1
    tbuf_op = 2
    physinfo = 3
    sched_id = 4
    perfc_op = 5
    getdomaininfolist = 6
    debug_keys = 7
    getcpuinfo = 8
    availheap = 9
    get_pmstat = 10
    cpu_hotplug = 11
    pm_op = 12
    page_offline_op = 14
    lockprof_op = 15
    cputopoinfo = 16
    numainfo = 17
    cpupool_op = 18
    scheduler_op = 19
    gcov_op = 20  # named coverage_op since 4.11
    psr_cmt_op = 21
    pcitopoinfo = 22
    psr_cat_op = 23  # named psr_alloc since 4.11
    tmem_op = 24  # removed after 4.10
    get_cpu_levelling_caps = 25
    get_cpu_featureset = 26
    livepatch_op = 27
    set_parameter = 28  # new in 4.10; removed again (hypfs) in 4.14
    # 29 get_cpu_policy is 4.11+


XEN_SYSCTL_PHYSCAP_hvm = 1 << 0
XEN_SYSCTL_PHYSCAP_hvm_directio = 1 << 1


class TbufOp(enum.IntEnum):
    """XEN_SYSCTL_tbuf_op commands (struct xen_sysctl_tbuf_op.cmd)."""
    get_info = 0
    set_cpu_mask = 1
    set_evt_mask = 2
    set_size = 3
    enable = 4
    disable = 5


class CpupoolOp(enum.IntEnum):
    create = 1
    destroy = 2
    info = 3
    addcpu = 4
    rmcpu = 5
    movedomain = 6
    freeinfo = 7


# ---------------------------------------------------------------------------
# Domain ids (xen.h)
# ---------------------------------------------------------------------------

DOMID_FIRST_RESERVED = 0x7FF0
DOMID_SELF = 0x7FF0
DOMID_IO = 0x7FF1
DOMID_XEN = 0x7FF2
DOMID_COW = 0x7FF3
DOMID_INVALID = 0x7FF4
DOMID_IDLE = 0x7FFF
DOMID_MASK = 0x7FFF


# ---------------------------------------------------------------------------
# PVH boot (arch-x86/hvm/start_info.h, xen.h SIF_*)
# ---------------------------------------------------------------------------

XEN_HVM_START_MAGIC_VALUE = 0x336EC578
SIF_PRIVILEGED = 1 << 0
SIF_INITDOMAIN = 1 << 1

# CPUID leaves and the hypercall-page MSR (no Viridian).
XEN_CPUID_BASE = 0x40000000
XEN_CPUID_SIGNATURE = (0x566E6558, 0x65584D4D, 0x4D4D566E)  # "XenVMMXenVMM"
XEN_CPUID_MAX_NUM_LEAVES = 5
XEN_HYPERCALL_MSR = 0x40000000


class SpecialPage(enum.IntEnum):
    """libxc's special pages at the top of the region below the PCI hole."""

    PAGING = 0
    ACCESS = 1
    SHARING = 2
    BUFIOREQ = 3
    XENSTORE = 4
    IOREQ = 5
    IDENT_PT = 6
    CONSOLE = 7


X86_HVM_END_SPECIAL_REGION = 0xFF000
X86_HVM_NR_SPECIAL_PAGES = 8
SPECIALPAGE_BASE_PFN = X86_HVM_END_SPECIAL_REGION - X86_HVM_NR_SPECIAL_PAGES
NR_IOREQ_SERVER_PAGES = 8
IOREQ_SERVER_BASE_PFN = SPECIALPAGE_BASE_PFN - NR_IOREQ_SERVER_PAGES


def special_pfn(index: int) -> int:
    """Guest frame of special page `index` (a SpecialPage) as libxc places it."""
    return SPECIALPAGE_BASE_PFN + index


# ---------------------------------------------------------------------------
# ioreq (hvm/ioreq.h)
# ---------------------------------------------------------------------------

IOREQ_READ = 1
IOREQ_WRITE = 0


class IoreqState(enum.IntEnum):
    NONE = 0
    READY = 1
    INPROCESS = 2
    IORESP_READY = 3


class IoreqType(enum.IntEnum):
    PIO = 0
    COPY = 1
    PCI_CONFIG = 2
    TIMEOFFSET = 7
    INVALIDATE = 8


IOREQ_BUFFER_SLOT_NUM = 511


# ---------------------------------------------------------------------------
# XenStore (io/xs_wire.h; permission bits from xenstore_lib.h; quota defaults of
# C xenstored 4.10's command line options -E -S -W -t)
# ---------------------------------------------------------------------------


class XsType(enum.IntEnum):
    """enum xsd_sockmsg_type (XS_ prefix dropped). 20 was XS_RESTRICT, removed."""

    CONTROL = 0               # alias XS_DEBUG
    DIRECTORY = 1
    READ = 2
    GET_PERMS = 3
    WATCH = 4
    UNWATCH = 5
    TRANSACTION_START = 6
    TRANSACTION_END = 7
    INTRODUCE = 8
    RELEASE = 9
    GET_DOMAIN_PATH = 10
    WRITE = 11
    MKDIR = 12
    RM = 13
    SET_PERMS = 14
    WATCH_EVENT = 15
    ERROR = 16
    IS_DOMAIN_INTRODUCED = 17
    RESUME = 18
    SET_TARGET = 19
    RESET_WATCHES = 21
    DIRECTORY_PART = 22
    INVALID = 0xFFFF


XS_TYPE_COUNT = 23
# xsd_errors[] in table order: an errno xenstored cannot name is sent as the first.
# 4.17's table ends with EPERM; xenstored already returned EPERM (SET_PERMS changing
# the owner) before then.
XSD_ERRORS = ("EINVAL", "EACCES", "EEXIST", "EISDIR", "ENOENT", "ENOMEM", "ENOSPC", "EIO",
              "ENOTEMPTY", "ENOSYS", "EROFS", "EBUSY", "EAGAIN", "EISCONN", "E2BIG", "EPERM")

XENSTORE_PAYLOAD_MAX = 4096
XENSTORE_ABS_PATH_MAX = 3072
XENSTORE_REL_PATH_MAX = 2048
XENSTORE_RING_SIZE = 1024
XENSTORE_SERVER_FEATURE_RECONNECTION = 1
XENSTORE_CONNECTED = 0
XENSTORE_RECONNECT = 1

XS_PERM_NONE = 0
XS_PERM_READ = 1
XS_PERM_WRITE = 2
XS_PERM_OWNER = 8

XENSTORED_QUOTA_NODES = 1000          # -E: nodes owned per domain
XENSTORED_QUOTA_ENTRY_SIZE = 2048     # -S: bytes of one node record
XENSTORED_QUOTA_WATCHES = 128         # -W: watches per domain
XENSTORED_QUOTA_TRANSACTIONS = 10     # -t: open transactions per connection
