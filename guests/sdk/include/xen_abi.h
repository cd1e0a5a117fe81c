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
#define XEN_EISDIR      21
#define XEN_EINVAL      22
#define XEN_ENOSPC      28
#define XEN_EROFS       30
#define XEN_ERANGE      34
#define XEN_ENOSYS      38
#define XEN_ENOTEMPTY   39
#define XEN_ENODATA     61
#define XEN_ETIME       62
#define XEN_EOPNOTSUPP  95
#define XEN_EISCONN    106

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

/* ---- memory_op: reservations and the physmap ---- */
#define XENMEM_exchange              11
#define XENMEM_machphys_mapping      12
#define XENMEM_set_memory_map        13
#define XENMEM_add_to_physmap_batch  23
#define XENMEM_claim_pages           24
#define MEMOP_CMD_MASK               0x3f
#define MEMOP_EXTENT_SHIFT           6

/* Special domain ids. */
#define DOMID_FIRST_RESERVED  ((domid_t)0x7FF0)
#define DOMID_IO              ((domid_t)0x7FF1)
#define DOMID_XEN             ((domid_t)0x7FF2)
#define DOMID_COW             ((domid_t)0x7FF3)
#define DOMID_INVALID         ((domid_t)0x7FF4)
#define DOMID_IDLE            ((domid_t)0x7FFF)

/* xen_pfn_t and xen_ulong_t are unsigned long on x86 (both ABIs). */
typedef unsigned long xen_pfn_t;
typedef unsigned long xen_ulong_t;

struct xen_memory_reservation {
    xen_pfn_t *extent_start;     /* IN/OUT: array of gfns */
    xen_ulong_t nr_extents;
    uint32_t extent_order;
    uint32_t mem_flags;          /* address bits, node, populate-on-demand */
    domid_t domid;
};

#define XENMAPSPACE_shared_info   0
#define XENMAPSPACE_grant_table   1
#define XENMAPSPACE_gmfn          2
#define XENMAPSPACE_gmfn_range    3
#define XENMAPSPACE_gmfn_foreign  4
#define XENMAPSPACE_dev_mmio      5
#define XENMAPIDX_grant_table_status 0x80000000u

struct xen_add_to_physmap {
    domid_t domid;
    uint16_t size;               /* gmfn_range only */
    uint32_t space;
    xen_ulong_t idx;
    xen_pfn_t gpfn;
};

struct xen_add_to_physmap_batch {
    domid_t domid;
    uint16_t space;
    uint16_t size;
    domid_t foreign_domid;       /* union with res0 */
    xen_ulong_t *idxs;
    xen_pfn_t *gpfns;
    int *errs;                   /* OUT */
};

struct xen_remove_from_physmap {
    domid_t domid;
    xen_pfn_t gpfn;
};

struct xen_memory_exchange {
    struct xen_memory_reservation in;
    struct xen_memory_reservation out;
    xen_ulong_t nr_exchanged;    /* OUT */
};

/* ---- hvm_op: event delivery ---- */
#define HVMOP_get_time  10
#define HVMOP_set_evtchn_upcall_vector  23
#define HVM_PARAM_CALLBACK_TYPE_GSI     0
#define HVM_PARAM_CALLBACK_TYPE_PCI_INTX 1
#define HVM_PARAM_CALLBACK_TYPE_VECTOR  2
#define HVM_PARAM_CALLBACK_TYPE_SHIFT   56

struct xen_hvm_evtchn_upcall_vector {
    uint32_t vcpu;
    uint8_t vector;
};

/* ---- shared_info, vcpu_info and time (one 4 KiB page) ---- */
#define XEN_LEGACY_MAX_VCPUS  32
#define XEN_PVCLOCK_TSC_STABLE_BIT  (1u << 0)
#define XEN_PVCLOCK_GUEST_STOPPED   (1u << 1)

struct vcpu_time_info {
    uint32_t version;            /* odd while the hypervisor updates the fields */
    uint32_t pad0;
    uint64_t tsc_timestamp;      /* TSC at the moment system_time was taken */
    uint64_t system_time;        /* ns since boot */
    uint32_t tsc_to_system_mul;  /* 32.32 fixed point: ns = (tsc << shift) * mul >> 32 */
    int8_t tsc_shift;
    uint8_t flags;
    uint8_t pad1[2];
};

struct arch_vcpu_info {
    unsigned long cr2;
#ifdef __x86_64__
    unsigned long pad;
#else
    unsigned long pad[5];
#endif
};

struct vcpu_info {
    uint8_t evtchn_upcall_pending;
    uint8_t evtchn_upcall_mask;
    unsigned long evtchn_pending_sel;   /* one bit per word of evtchn_pending */
    struct arch_vcpu_info arch;
    struct vcpu_time_info time;
};

#define EVTCHN_WORD_BITS   (sizeof(unsigned long) * 8)
#define EVTCHN_2L_NR_PORTS (EVTCHN_WORD_BITS * EVTCHN_WORD_BITS)  /* 4096 / 1024 */

struct arch_shared_info {
    unsigned long max_pfn;
    xen_pfn_t pfn_to_mfn_frame_list_list;
    unsigned long nmi_reason;
    unsigned long p2m_cr3;
    unsigned long p2m_vaddr;
    unsigned long p2m_generation;
#ifndef __x86_64__
    uint32_t wc_sec_hi;          /* 32-bit ABI: the high word lives here */
#endif
};

struct shared_info {
    struct vcpu_info vcpu_info[XEN_LEGACY_MAX_VCPUS];
    unsigned long evtchn_pending[EVTCHN_WORD_BITS];
    unsigned long evtchn_mask[EVTCHN_WORD_BITS];
    uint32_t wc_version;         /* same odd/even protocol as vcpu_time_info */
    uint32_t wc_sec;             /* wall clock at system time 0 */
    uint32_t wc_nsec;
#ifdef __x86_64__
    uint32_t wc_sec_hi;
#endif
    struct arch_shared_info arch;
};

/* ---- event channels ---- */
typedef uint32_t evtchn_port_t;

#define EVTCHNOP_bind_pirq     2
#define EVTCHNOP_bind_ipi      7
#define EVTCHNOP_bind_vcpu     8
#define EVTCHNOP_set_priority 13
#define __HYPERVISOR_event_channel_op_compat 16

struct evtchn_alloc_unbound {
    domid_t dom, remote_dom;     /* IN */
    evtchn_port_t port;          /* OUT */
};

struct evtchn_bind_interdomain {
    domid_t remote_dom;          /* IN */
    evtchn_port_t remote_port;   /* IN */
    evtchn_port_t local_port;    /* OUT */
};

struct evtchn_bind_virq {
    uint32_t virq;               /* IN */
    uint32_t vcpu;               /* IN */
    evtchn_port_t port;          /* OUT */
};

struct evtchn_bind_pirq {
    uint32_t pirq;
    uint32_t flags;
    evtchn_port_t port;
};

struct evtchn_bind_ipi {
    uint32_t vcpu;               /* IN */
    evtchn_port_t port;          /* OUT */
};

struct evtchn_close {
    evtchn_port_t port;
};

#define EVTCHNSTAT_closed       0
#define EVTCHNSTAT_unbound      1
#define EVTCHNSTAT_interdomain  2
#define EVTCHNSTAT_pirq         3
#define EVTCHNSTAT_virq         4
#define EVTCHNSTAT_ipi          5

struct evtchn_status {
    domid_t dom;                 /* IN */
    evtchn_port_t port;          /* IN */
    uint32_t status;             /* OUT: EVTCHNSTAT_* */
    uint32_t vcpu;               /* OUT: notified vCPU */
    union {
        struct { domid_t dom; } unbound;
        struct { domid_t dom; evtchn_port_t port; } interdomain;
        uint32_t pirq;
        uint32_t virq;
    } u;
};

struct evtchn_bind_vcpu {
    evtchn_port_t port;
    uint32_t vcpu;
};

struct evtchn_unmask {
    evtchn_port_t port;
};

struct evtchn_reset {
    domid_t dom;
};

/* FIFO ABI (only its set-up call is used, to see whether FIFO exists). */
struct evtchn_init_control {
    uint64_t control_gfn;        /* IN */
    uint32_t offset;             /* IN */
    uint32_t vcpu;               /* IN */
    uint8_t link_bits;           /* OUT */
    uint8_t _pad[7];
};

struct evtchn_expand_array {
    uint64_t array_gfn;
};

struct evtchn_set_priority {
    evtchn_port_t port;
    uint32_t priority;
};

/* VIRQs. Per-vCPU: TIMER, DEBUG, XENOPROF, XENPMU; the others are global (vCPU 0). */
#define VIRQ_TIMER       0
#define VIRQ_DEBUG       1
#define VIRQ_CONSOLE     2
#define VIRQ_DOM_EXC     3
#define VIRQ_TBUF        4
#define VIRQ_DEBUGGER    6
#define VIRQ_XENOPROF    7
#define VIRQ_CON_RING    8
#define VIRQ_PCPU_STATE  9
#define VIRQ_MEM_EVENT  10
#define VIRQ_ENOMEM     12
#define VIRQ_XENPMU     13
#define VIRQ_ARCH_0     16
#define NR_VIRQS        24

/* ---- sched_op: poll ---- */
struct sched_poll {
    evtchn_port_t *ports;
    uint32_t nr_ports;
    uint64_t timeout;            /* absolute system time (ns), 0 = none */
};
#define SCHEDOP_POLL_MAX_PORTS 128

/* ---- vcpu_op ---- */
#define VCPU_SSHOTTMR_future  (1u << 0)

struct vcpu_set_singleshot_timer {
    uint64_t timeout_abs_ns;
    uint32_t flags;
};

struct vcpu_set_periodic_timer {
    uint64_t period_ns;
};

struct vcpu_register_vcpu_info {
    uint64_t mfn;                /* gfn for HVM/PVH */
    uint32_t offset;             /* offset + 64 <= 4096 */
    uint32_t rsvd;
};

#define RUNSTATE_running   0
#define RUNSTATE_runnable  1
#define RUNSTATE_blocked   2
#define RUNSTATE_offline   3
#define XEN_RUNSTATE_UPDATE (1ULL << 63)

struct vcpu_runstate_info {
    int state;
    uint64_t state_entry_time;
    uint64_t time[4];            /* ns spent in each RUNSTATE_* */
};

struct vcpu_register_runstate_memory_area {
    union {
        struct vcpu_runstate_info *v;
        uint64_t p;
    } addr;                      /* guest virtual address */
};

/* Secondary vCPU start (VCPUOP_initialise for HVM/PVH). */
#define VCPU_HVM_MODE_32B  0
#define VCPU_HVM_MODE_64B  1

struct vcpu_hvm_x86_32 {
    uint32_t eax, ecx, edx, ebx, esp, ebp, esi, edi;
    uint32_t eip, eflags;
    uint32_t cr0, cr3, cr4;
    uint32_t pad1;
    uint64_t efer;
    uint32_t cs_base, ds_base, ss_base, es_base, tr_base;
    uint32_t cs_limit, ds_limit, ss_limit, es_limit, tr_limit;
    /* Attributes: type 3:0, S 4, DPL 6:5, P 7, AVL 8, L 9, D/B 10, G 11. */
    uint16_t cs_ar, ds_ar, ss_ar, es_ar, tr_ar;
    uint16_t pad2[3];
};

/* 64-bit mode: the hidden segment state is set up flat by the hypervisor. */
struct vcpu_hvm_x86_64 {
    uint64_t rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi;
    uint64_t rip, rflags;
    uint64_t cr0, cr3, cr4, efer;
};

struct vcpu_hvm_context {
    uint32_t mode;               /* VCPU_HVM_MODE_* */
    uint32_t pad;
    union {
        struct vcpu_hvm_x86_32 x86_32;
        struct vcpu_hvm_x86_64 x86_64;
    } cpu_regs;
};

/* ---- grant tables (v1) ---- */
typedef uint32_t grant_ref_t;
typedef uint32_t grant_handle_t;

#define GNTTABOP_dump_table        3
#define GNTTABOP_set_version       8
#define GNTTABOP_get_status_frames 9
#define GNTTABOP_get_version      10
#define GNTTABOP_swap_grant_ref   11
#define GNTTABOP_cache_flush      12

struct grant_entry_v1 {
    uint16_t flags;              /* written last when granting */
    domid_t domid;               /* who may use it */
    uint32_t frame;              /* our gfn */
};
#define GNTTAB_V1_PER_FRAME      (4096 / sizeof(struct grant_entry_v1))
#define GNTTAB_NR_RESERVED       8      /* refs 0..7 belong to the toolstack */

#define GTF_invalid          0
#define GTF_permit_access    1
#define GTF_accept_transfer  2
#define GTF_type_mask        3
#define GTF_readonly         (1u << 2)
#define GTF_reading          (1u << 3)
#define GTF_writing          (1u << 4)
#define GTF_PWT              (1u << 5)
#define GTF_PCD              (1u << 6)
#define GTF_PAT              (1u << 7)
#define GTF_sub_page         (1u << 8)

#define GNTMAP_device_map       (1u << 0)
#define GNTMAP_host_map         (1u << 1)
#define GNTMAP_readonly         (1u << 2)
#define GNTMAP_application_map  (1u << 3)
#define GNTMAP_contains_pte     (1u << 4)
#define GNTMAP_can_fail         (1u << 5)

#define GNTST_okay               0
#define GNTST_general_error     (-1)
#define GNTST_bad_domain        (-2)
#define GNTST_bad_gntref        (-3)
#define GNTST_bad_handle        (-4)
#define GNTST_bad_virt_addr     (-5)
#define GNTST_bad_dev_addr      (-6)
#define GNTST_no_device_space   (-7)
#define GNTST_permission_denied (-8)
#define GNTST_bad_page          (-9)
#define GNTST_bad_copy_arg      (-10)
#define GNTST_address_too_big   (-11)
#define GNTST_eagain            (-12)

struct gnttab_map_grant_ref {
    uint64_t host_addr;          /* HVM/PVH: guest-physical address */
    uint32_t flags;              /* GNTMAP_* */
    grant_ref_t ref;
    domid_t dom;
    int16_t status;              /* OUT: GNTST_* */
    grant_handle_t handle;       /* OUT */
    uint64_t dev_bus_addr;       /* OUT */
};

struct gnttab_unmap_grant_ref {
    uint64_t host_addr;
    uint64_t dev_bus_addr;
    grant_handle_t handle;
    int16_t status;              /* OUT */
};

struct gnttab_setup_table {
    domid_t dom;
    uint32_t nr_frames;
    int16_t status;              /* OUT */
    xen_pfn_t *frame_list;       /* OUT */
};

#define GNTCOPY_source_gref  (1u << 0)
#define GNTCOPY_dest_gref    (1u << 1)

struct gnttab_copy_ptr {
    union {
        grant_ref_t ref;
        xen_pfn_t gmfn;
    } u;
    domid_t domid;
    uint16_t offset;
};

struct gnttab_copy {
    struct gnttab_copy_ptr source, dest;
    uint16_t len;
    uint16_t flags;              /* GNTCOPY_* */
    int16_t status;              /* OUT */
};

struct gnttab_query_size {
    domid_t dom;
    uint32_t nr_frames;          /* OUT */
    uint32_t max_nr_frames;      /* OUT */
    int16_t status;              /* OUT */
};

struct gnttab_set_version {
    uint32_t version;
};

struct gnttab_get_version {
    domid_t dom;
    uint16_t pad;
    uint32_t version;            /* OUT */
};

struct gnttab_swap_grant_ref {
    grant_ref_t ref_a, ref_b;
    int16_t status;
};

/* PV console ring (one page, published through HVM_PARAM_CONSOLE_PFN). */
struct xencons_interface {
    char in[1024];               /* backend -> guest (keyboard) */
    char out[2048];              /* guest -> backend */
    uint32_t in_cons, in_prod;
    uint32_t out_cons, out_prod;
};

#define XENCONS_IN_SIZE   1024
#define XENCONS_OUT_SIZE  2048

/*
 * XenStore (xen-abi.md E): the wire format and the ring page published
 * through HVM_PARAM_STORE_PFN / HVM_PARAM_STORE_EVTCHN.
 */
#define XS_CONTROL               0     /* alias XS_DEBUG */
#define XS_DIRECTORY             1
#define XS_READ                  2
#define XS_GET_PERMS             3
#define XS_WATCH                 4
#define XS_UNWATCH               5
#define XS_TRANSACTION_START     6
#define XS_TRANSACTION_END       7
#define XS_INTRODUCE             8
#define XS_RELEASE               9
#define XS_GET_DOMAIN_PATH      10
#define XS_WRITE                11
#define XS_MKDIR                12
#define XS_RM                   13
#define XS_SET_PERMS            14
#define XS_WATCH_EVENT          15     /* server -> client only */
#define XS_ERROR                16     /* reply only: errno name */
#define XS_IS_DOMAIN_INTRODUCED 17
#define XS_RESUME               18
#define XS_SET_TARGET           19
#define XS_RESET_WATCHES        21
#define XS_DIRECTORY_PART       22

/* Message header; `len` payload bytes follow it. */
struct xsd_sockmsg {
    uint32_t type;               /* XS_* */
    uint32_t req_id;             /* echoed in the reply */
    uint32_t tx_id;              /* transaction, 0 = none */
    uint32_t len;                /* payload bytes */
};

#define XENSTORE_PAYLOAD_MAX    4096   /* more and xenstored drops the connection */
#define XENSTORE_ABS_PATH_MAX   3072
#define XENSTORE_REL_PATH_MAX   2048
#define XENSTORE_RING_SIZE      1024   /* both rings; index & (size - 1) */

#define XENSTORE_SERVER_FEATURE_RECONNECTION  1u
#define XENSTORE_CONNECTED   0
#define XENSTORE_RECONNECT   1

struct xenstore_domain_interface {
    char req[XENSTORE_RING_SIZE];     /* guest -> xenstored */
    char rsp[XENSTORE_RING_SIZE];     /* xenstored -> guest (replies, watch events) */
    uint32_t req_cons, req_prod;      /* free-running */
    uint32_t rsp_cons, rsp_prod;
    uint32_t server_features;         /* XENSTORE_SERVER_FEATURE_* */
    uint32_t connection;              /* XENSTORE_CONNECTED / _RECONNECT */
};

/* Permission letters (the first entry's domid is the owner). */
#define XS_PERM_CHAR_NONE   'n'
#define XS_PERM_CHAR_READ   'r'
#define XS_PERM_CHAR_WRITE  'w'
#define XS_PERM_CHAR_BOTH   'b'

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
