/*
 * The Xen guest ABI as the pyxen guests use it: numbers and structure layouts
 * written down from the reference sheet (xen-abi.md) for the 4.10 interface.
 * Freestanding: no Xen header is included.  Guest handles are plain pointers,
 * which gives the right size for both the 64-bit ABI (8 bytes) and the
 * native 32-bit ABI (4 bytes).
 */
#ifndef SDK_XEN_ABI_H
#define SDK_XEN_ABI_H

#include <stdint.h>

/* Hypercall numbers. */
#define __HYPERVISOR_set_trap_table        0
#define __HYPERVISOR_platform_op           7
#define __HYPERVISOR_memory_op            12
#define __HYPERVISOR_multicall            13
#define __HYPERVISOR_set_timer_op         15
#define __HYPERVISOR_xen_version          17
#define __HYPERVISOR_console_io           18
#define __HYPERVISOR_grant_table_op       20
#define __HYPERVISOR_iret                 23
#define __HYPERVISOR_vcpu_op              24
#define __HYPERVISOR_mmuext_op            26
#define __HYPERVISOR_xsm_op               27
#define __HYPERVISOR_sched_op             29
#define __HYPERVISOR_event_channel_op     32
#define __HYPERVISOR_physdev_op           33
#define __HYPERVISOR_hvm_op               34
#define __HYPERVISOR_sysctl               35
#define __HYPERVISOR_domctl               36
#define __HYPERVISOR_dm_op                41

/* Stubs in the hypercall page: 128 of 32 bytes each. */
#define HYPERCALL_STUB_SIZE   32
#define HYPERCALL_PAGE_STUBS  128

/* Error numbers (hypercalls return them negated). */
#define XEN_EPERM        1
#define XEN_ENOENT       2
#define XEN_ESRCH        3
#define XEN_EINTR        4
#define XEN_EIO          5
#define XEN_ENXIO        6
#define XEN_E2BIG        7
#define XEN_EBADF        9
#define XEN_EAGAIN      11
#define XEN_ENOMEM      12
#define XEN_EACCES      13
#define XEN_EFAULT      14
#define XEN_EBUSY       16
#define XEN_EEXIST      17
#define XEN_EXDEV       18
#define XEN_ENODEV      19
#define XEN_EINVAL      22
#define XEN_ENOSPC      28
#define XEN_ERANGE      34
#define XEN_ENOSYS      38
#define XEN_ENODATA     61
#define XEN_ETIME       62
#define XEN_EOPNOTSUPP  95

/* CPUID leaves. */
#define XEN_CPUID_FIRST_BASE   0x40000000u
#define XEN_CPUID_LAST_BASE    0x40000100u
#define XEN_CPUID_BASE_STEP    0x100u
#define XEN_CPUID_SIG_EBX      0x566e6558u   /* "XenV" */
#define XEN_CPUID_SIG_ECX      0x65584d4du   /* "MMXe" */
#define XEN_CPUID_SIG_EDX      0x4d4d566eu   /* "nVMM" */

/* xen_version sub-ops. */
#define XENVER_version              0
#define XENVER_extraversion         1
#define XENVER_compile_info         2
#define XENVER_capabilities         3
#define XENVER_changeset            4
#define XENVER_platform_parameters  5
#define XENVER_get_features         6
#define XENVER_pagesize             7
#define XENVER_guest_handle         8
#define XENVER_commandline          9

#define XEN_EXTRAVERSION_LEN   16
#define XEN_CAPABILITIES_LEN   1024
#define XEN_CHANGESET_LEN      64
#define XEN_COMMANDLINE_LEN    1024
#define XEN_DOMAIN_HANDLE_LEN  16

struct xen_compile_info {
    char compiler[64];
    char compile_by[16];
    char compile_domain[32];
    char compile_date[32];
};

struct xen_platform_parameters {
    unsigned long virt_start;
};

struct xen_feature_info {
    uint32_t submap_idx;
    uint32_t submap;
};

#define XENFEAT_writable_page_tables     0
#define XENFEAT_auto_translated_physmap  2
#define XENFEAT_supervisor_mode_kernel   3
#define XENFEAT_hvm_callback_vector      8
#define XENFEAT_hvm_safe_pvclock         9
#define XENFEAT_hvm_pirqs               10

/* console_io. */
#define CONSOLEIO_write  0
#define CONSOLEIO_read   1

/* sched_op. */
#define SCHEDOP_yield            0
#define SCHEDOP_block            1
#define SCHEDOP_shutdown         2
#define SCHEDOP_poll             3
#define SCHEDOP_remote_shutdown  4
#define SCHEDOP_shutdown_code    5
#define SCHEDOP_watchdog         6
#define SCHEDOP_pin_override     7

#define SHUTDOWN_poweroff    0
#define SHUTDOWN_reboot      1
#define SHUTDOWN_suspend     2
#define SHUTDOWN_crash       3
#define SHUTDOWN_watchdog    4

struct sched_shutdown {
    uint32_t reason;
};

/* memory_op. */
#define XENMEM_increase_reservation   0
#define XENMEM_decrease_reservation   1
#define XENMEM_maximum_ram_page       2
#define XENMEM_current_reservation    3
#define XENMEM_maximum_reservation    4
#define XENMEM_populate_physmap       6
#define XENMEM_add_to_physmap         7
#define XENMEM_memory_map             9
#define XENMEM_maximum_gpfn          14
#define XENMEM_remove_from_physmap   15

typedef uint16_t domid_t;
#define DOMID_SELF  ((domid_t)0x7FF0)

struct xen_memory_map {
    uint32_t nr_entries;     /* IN: capacity of buffer; OUT: entries written */
    void *buffer;            /* array of struct e820_entry */
};

/* E820 entries are packed: 20 bytes each. */
struct e820_entry {
    uint64_t addr;
    uint64_t size;
    uint32_t type;
} __attribute__((packed));

#define E820_RAM       1
#define E820_RESERVED  2
#define E820_ACPI      3
#define E820_NVS       4
#define E820_UNUSABLE  5

/* hvm_op. */
#define HVMOP_set_param  0
#define HVMOP_get_param  1

#define HVM_PARAM_CALLBACK_IRQ    0
#define HVM_PARAM_STORE_PFN       1
#define HVM_PARAM_STORE_EVTCHN    2
#define HVM_PARAM_CONSOLE_PFN    17
#define HVM_PARAM_CONSOLE_EVTCHN 18
#define HVM_NR_PARAMS            39

struct xen_hvm_param {
    domid_t  domid;
    uint16_t pad;
    uint32_t index;
    uint64_t value;
} __attribute__((aligned(8)));

/* vcpu_op. */
#define VCPUOP_initialise                      0
#define VCPUOP_up                              1
#define VCPUOP_down                            2
#define VCPUOP_is_up                           3
#define VCPUOP_get_runstate_info               4
#define VCPUOP_register_runstate_memory_area   5
#define VCPUOP_set_periodic_timer              6
#define VCPUOP_stop_periodic_timer             7
#define VCPUOP_set_singleshot_timer            8
#define VCPUOP_stop_singleshot_timer           9
#define VCPUOP_register_vcpu_info             10
#define VCPUOP_send_nmi                       11
#define VCPUOP_get_physid                     12
#define VCPUOP_register_vcpu_time_memory_area 13

/* event_channel_op. */
#define EVTCHNOP_bind_interdomain  0
#define EVTCHNOP_bind_virq         1
#define EVTCHNOP_close             3
#define EVTCHNOP_send              4
#define EVTCHNOP_status            5
#define EVTCHNOP_alloc_unbound     6
#define EVTCHNOP_unmask            9
#define EVTCHNOP_reset            10
#define EVTCHNOP_init_control     11
#define EVTCHNOP_expand_array     12

struct evtchn_send {
    uint32_t port;
};

/* grant_table_op. */
#define GNTTABOP_map_grant_ref     0
#define GNTTABOP_unmap_grant_ref   1
#define GNTTABOP_setup_table       2
#define GNTTABOP_transfer          4
#define GNTTABOP_copy              5
#define GNTTABOP_query_size        6
#define GNTTABOP_unmap_and_replace 7

/* PV console ring (one page, published through HVM_PARAM_CONSOLE_PFN). */
struct xencons_interface {
    char in[1024];
    char out[2048];
    uint32_t in_cons, in_prod;
    uint32_t out_cons, out_prod;
};

/* PVH start of day (hvm_start_info, passed in EBX). */
#define HVM_START_MAGIC_VALUE  0x336ec578u
#define SIF_PRIVILEGED   (1u << 0)
#define SIF_INITDOMAIN   (1u << 1)

struct hvm_start_info {
    uint32_t magic;
    uint32_t version;
    uint32_t flags;
    uint32_t nr_modules;
    uint64_t modlist_paddr;
    uint64_t cmdline_paddr;
    uint64_t rsdp_paddr;
    /* Version 1 and later: */
    uint64_t memmap_paddr;
    uint32_t memmap_entries;
    uint32_t reserved;
};

struct hvm_modlist_entry {
    uint64_t paddr;
    uint64_t size;
    uint64_t cmdline_paddr;
    uint64_t reserved;
};

struct hvm_memmap_table_entry {
    uint64_t addr;
    uint64_t size;
    uint32_t type;
    uint32_t reserved;
};

/* ELF note type of the 32-bit physical entry point. */
#define XEN_ELFNOTE_PHYS32_ENTRY  18

/* Special pages as the 4.10 toolstack places them (pfns). */
#define XEN_SPECIAL_PFN_XENSTORE  0xfeffcu
#define XEN_SPECIAL_PFN_CONSOLE   0xfefffu

#endif
