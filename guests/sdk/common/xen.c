/* Finding Xen through CPUID and setting up the hypercall page. */
#include "sdk.h"

bool xen_present;
uint32_t xen_cpuid_base;
uint32_t xen_version_cpuid;
uint32_t xen_hypercall_msr;
bool hypercall_page_ready;

/* Filled by the hypervisor when we write its physical address to the MSR. */
uint8_t hypercall_page[4096] __aligned(4096) __attribute__((section(".bss.page_aligned")));

bool xen_detect(void)
{
    /* Xen's leaves sit at 0x40000000, or 0x40000100 when Viridian is on. */
    for (uint32_t base = XEN_CPUID_FIRST_BASE; base <= XEN_CPUID_LAST_BASE;
         base += XEN_CPUID_BASE_STEP) {
        uint32_t a, b, c, d;
        cpuid_count(base, 0, &a, &b, &c, &d);
        if (b == XEN_CPUID_SIG_EBX && c == XEN_CPUID_SIG_ECX &&
            d == XEN_CPUID_SIG_EDX && a >= base + 2) {
            xen_present = true;
            xen_cpuid_base = base;
            xen_version_cpuid = cpuid_eax(base + 1);
            xen_hypercall_msr = cpuid_ebx(base + 2);
            return true;
        }
    }
    return false;
}

bool xen_setup_hypercall_page(void)
{
    if (!xen_present)
        return false;
    /* Identity-mapped (or unpaged) image: virtual address == physical. */
    wrmsr(xen_hypercall_msr, (unsigned long)hypercall_page);
    hypercall_page_ready = true;
    return true;
}

#ifdef __x86_64__
#define HC_ARGS "+D"(a1), "+S"(a2), "+d"(a3)
#define HC_CLOBBERS "memory", "r8", "r9", "r10", "cc"
#else
#define HC_ARGS "+b"(a1), "+c"(a2), "+d"(a3)
#define HC_CLOBBERS "memory", "esi", "edi", "cc"
#endif

long hypercall_insn_checked(bool use_vmmcall, unsigned long nr, unsigned long a1,
                            unsigned long a2, unsigned long a3, int *vector)
{
    long ret = -XEN_ENOSYS;
    unsigned long ax = nr;
    fault_reset();
    if (use_vmmcall)
        asm volatile("1: .byte 0x0f, 0x01, 0xd9\n2:\n" ASM_EXTABLE(1b, 2b)
                     : "+a"(ax), HC_ARGS :: HC_CLOBBERS);
    else
        asm volatile("1: .byte 0x0f, 0x01, 0xc1\n2:\n" ASM_EXTABLE(1b, 2b)
                     : "+a"(ax), HC_ARGS :: HC_CLOBBERS);
    if (last_fault.vector != NO_FAULT) {
        *vector = (int)last_fault.vector;
        return ret;
    }
    *vector = -1;
    return (long)ax;
}

bool cpu_is_amd(void)
{
    uint32_t a, b, c, d;
    cpuid_count(0, 0, &a, &b, &c, &d);
    /* "AuthenticAMD" / "HygonGenuine": EBX is "Auth" / "Hygo". */
    return b == 0x68747541u || b == 0x6f677948u;
}

long xen_get_hvm_param(uint32_t index, uint64_t *value)
{
    struct xen_hvm_param p = { .domid = DOMID_SELF, .index = index };
    long rc = HYPERVISOR_hvm_op(HVMOP_get_param, &p);
    if (rc == 0 && value)
        *value = p.value;
    return rc;
}

const char *xen_errno_name(long err)
{
    static const struct { int num; const char *name; } names[] = {
        { 0, "0" },
        { XEN_EPERM, "-EPERM" },   { XEN_ENOENT, "-ENOENT" },
        { XEN_ESRCH, "-ESRCH" },   { XEN_EINTR, "-EINTR" },
        { XEN_EIO, "-EIO" },       { XEN_ENXIO, "-ENXIO" },
        { XEN_E2BIG, "-E2BIG" },   { XEN_EBADF, "-EBADF" },
        { XEN_EAGAIN, "-EAGAIN" }, { XEN_ENOMEM, "-ENOMEM" },
        { XEN_EACCES, "-EACCES" }, { XEN_EFAULT, "-EFAULT" },
        { XEN_EBUSY, "-EBUSY" },   { XEN_EEXIST, "-EEXIST" },
        { XEN_EXDEV, "-EXDEV" },   { XEN_ENODEV, "-ENODEV" },
        { XEN_EINVAL, "-EINVAL" }, { XEN_ENOSPC, "-ENOSPC" },
        { XEN_ERANGE, "-ERANGE" }, { XEN_ENOSYS, "-ENOSYS" },
        { XEN_ENODATA, "-ENODATA" }, { XEN_ETIME, "-ETIME" },
        { XEN_EOPNOTSUPP, "-EOPNOTSUPP" },
        { XEN_EISDIR, "-EISDIR" }, { XEN_EROFS, "-EROFS" },
        { XEN_ENOTEMPTY, "-ENOTEMPTY" }, { XEN_EISCONN, "-EISCONN" },
        { 8, "-ENOEXEC" },  { 10, "-ECHILD" },  { 23, "-ENFILE" },
        { 24, "-EMFILE" },  { 31, "-EMLINK" },   { 33, "-EDOM" },
        { 35, "-EDEADLK" }, { 36, "-ENAMETOOLONG" }, { 37, "-ENOLCK" },
        { 74, "-EBADMSG" }, { 75, "-EOVERFLOW" }, { 84, "-EILSEQ" },
        { 85, "-ERESTART" }, { 88, "-ENOTSOCK" }, { 98, "-EADDRINUSE" },
        { 99, "-EADDRNOTAVAIL" }, { 105, "-ENOBUFS" },
        { 107, "-ENOTCONN" }, { 110, "-ETIMEDOUT" },
    };
    for (unsigned int i = 0; i < ARRAY_SIZE(names); i++)
        if (-err == names[i].num)
            return names[i].name;
    return err > 0 ? "positive" : "-E?";
}

/* Layouts from the reference sheet; a mistake here would corrupt hypercalls. */
_Static_assert(sizeof(struct hvm_start_info) == 56, "hvm_start_info (v1) is 56 bytes");
_Static_assert(__builtin_offsetof(struct hvm_start_info, memmap_paddr) == 40, "memmap_paddr @40");
_Static_assert(sizeof(struct hvm_modlist_entry) == 32, "hvm_modlist_entry is 32 bytes");
_Static_assert(sizeof(struct hvm_memmap_table_entry) == 24, "memmap entry is 24 bytes");
_Static_assert(sizeof(struct e820_entry) == 20, "e820 entries are packed, 20 bytes");
_Static_assert(sizeof(struct xen_hvm_param) == 16, "xen_hvm_param is 16 bytes");
_Static_assert(__builtin_offsetof(struct xen_hvm_param, index) == 4, "index @4");
_Static_assert(__builtin_offsetof(struct xen_hvm_param, value) == 8, "value @8");
_Static_assert(sizeof(struct xencons_interface) == 3088, "xencons_interface is 3088 bytes");
_Static_assert(__builtin_offsetof(struct xencons_interface, in_cons) == 3072, "in_cons @3072");
_Static_assert(__builtin_offsetof(struct xencons_interface, out_prod) == 3084, "out_prod @3084");
_Static_assert(sizeof(((struct xencons_interface *)0)->in) == XENCONS_IN_SIZE, "in[] size");
_Static_assert(sizeof(((struct xencons_interface *)0)->out) == XENCONS_OUT_SIZE, "out[] size");
_Static_assert(sizeof(struct xsd_sockmsg) == 16, "xsd_sockmsg is 16 bytes");
_Static_assert(__builtin_offsetof(struct xsd_sockmsg, len) == 12, "xsd_sockmsg.len @12");
_Static_assert(__builtin_offsetof(struct xenstore_domain_interface, rsp) == 1024, "rsp @1024");
_Static_assert(__builtin_offsetof(struct xenstore_domain_interface, req_cons) == 2048, "req_cons @2048");
_Static_assert(__builtin_offsetof(struct xenstore_domain_interface, rsp_prod) == 2060, "rsp_prod @2060");
_Static_assert(__builtin_offsetof(struct xenstore_domain_interface, server_features) == 2064,
               "server_features @2064");
_Static_assert(__builtin_offsetof(struct xenstore_domain_interface, connection) == 2068,
               "connection @2068");
_Static_assert(sizeof(struct xen_compile_info) == 144, "xen_compile_info is 144 bytes");
_Static_assert(sizeof(struct xen_feature_info) == 8, "xen_feature_info is 8 bytes");
_Static_assert(sizeof(struct xen_memory_map) == 2 * sizeof(void *), "memory_map: u32 + handle");
/* Event channels, time, vcpu_op, grant tables, memory_op (xen-abi.md A.5, C, D). */
#define OFF(t, m) __builtin_offsetof(struct t, m)
_Static_assert(sizeof(struct vcpu_time_info) == 32, "vcpu_time_info is 32 bytes");
_Static_assert(OFF(vcpu_time_info, tsc_to_system_mul) == 24, "tsc_to_system_mul @24");
_Static_assert(OFF(vcpu_time_info, tsc_shift) == 28, "tsc_shift @28");
_Static_assert(sizeof(struct vcpu_info) == 64, "vcpu_info is 64 bytes");
_Static_assert(OFF(vcpu_info, evtchn_pending_sel) == sizeof(long), "pending_sel");
_Static_assert(OFF(vcpu_info, time) == 32, "vcpu_info.time @32");
_Static_assert(OFF(shared_info, evtchn_pending) == 2048, "evtchn_pending @2048");
_Static_assert(sizeof(struct evtchn_alloc_unbound) == 8, "alloc_unbound is 8 bytes");
_Static_assert(sizeof(struct evtchn_bind_interdomain) == 12, "bind_interdomain is 12 bytes");
_Static_assert(OFF(evtchn_bind_interdomain, local_port) == 8, "local_port @8");
_Static_assert(sizeof(struct evtchn_bind_virq) == 12, "bind_virq is 12 bytes");
_Static_assert(sizeof(struct evtchn_bind_ipi) == 8, "bind_ipi is 8 bytes");
_Static_assert(sizeof(struct evtchn_status) == 24, "evtchn_status is 24 bytes");
_Static_assert(OFF(evtchn_status, u.interdomain.port) == 20, "status interdomain.port @20");
_Static_assert(sizeof(struct evtchn_init_control) == 24, "init_control is 24 bytes");
_Static_assert(sizeof(struct grant_entry_v1) == 8, "grant_entry_v1 is 8 bytes");
_Static_assert(sizeof(struct gnttab_map_grant_ref) == 32, "map_grant_ref is 32 bytes");
_Static_assert(OFF(gnttab_map_grant_ref, status) == 18, "map status @18");
_Static_assert(OFF(gnttab_map_grant_ref, handle) == 20, "map handle @20");
_Static_assert(sizeof(struct gnttab_unmap_grant_ref) == 24, "unmap_grant_ref is 24 bytes");
_Static_assert(OFF(gnttab_unmap_grant_ref, status) == 20, "unmap status @20");
_Static_assert(sizeof(struct gnttab_query_size) == 16, "query_size is 16 bytes");
_Static_assert(sizeof(struct gnttab_get_version) == 8, "get_version is 8 bytes");
_Static_assert(sizeof(struct vcpu_hvm_x86_32) == 120, "vcpu_hvm_x86_32 is 120 bytes");
_Static_assert(sizeof(struct vcpu_hvm_x86_64) == 112, "vcpu_hvm_x86_64 is 112 bytes");
_Static_assert(OFF(vcpu_hvm_context, cpu_regs) == 8, "cpu_regs @8");
_Static_assert(sizeof(struct vcpu_hvm_context) == 128, "vcpu_hvm_context is 128 bytes");
_Static_assert(OFF(vcpu_hvm_x86_32, efer) == 56, "x86_32.efer @56");
_Static_assert(OFF(vcpu_hvm_x86_32, cs_ar) == 104, "x86_32.cs_ar @104");
_Static_assert(OFF(vcpu_hvm_x86_64, rip) == 64, "x86_64.rip @64");
_Static_assert(sizeof(struct vcpu_register_vcpu_info) == 16, "register_vcpu_info is 16 bytes");
_Static_assert(sizeof(struct vcpu_register_runstate_memory_area) == 8, "runstate area arg");
_Static_assert(OFF(vcpu_set_singleshot_timer, flags) == 8, "singleshot flags @8");
#ifdef __x86_64__
_Static_assert(sizeof(struct shared_info) == 3136, "shared_info is 3136 bytes");
_Static_assert(OFF(shared_info, wc_version) == 3072, "wc_version @3072");
_Static_assert(OFF(shared_info, wc_sec_hi) == 3084, "wc_sec_hi @3084");
_Static_assert(OFF(shared_info, arch) == 3088, "arch @3088");
_Static_assert(sizeof(struct vcpu_runstate_info) == 48, "vcpu_runstate_info is 48 bytes");
_Static_assert(OFF(vcpu_runstate_info, time) == 16, "runstate time[] @16");
_Static_assert(sizeof(struct sched_poll) == 24, "sched_poll is 24 bytes");
_Static_assert(OFF(sched_poll, timeout) == 16, "poll timeout @16");
_Static_assert(sizeof(struct vcpu_set_singleshot_timer) == 16, "singleshot is 16 bytes");
_Static_assert(sizeof(struct gnttab_setup_table) == 24, "setup_table is 24 bytes");
_Static_assert(sizeof(struct gnttab_copy) == 40, "gnttab_copy is 40 bytes");
_Static_assert(OFF(gnttab_copy, dest) == 16, "copy dest @16");
_Static_assert(OFF(gnttab_copy, len) == 32, "copy len @32");
_Static_assert(OFF(gnttab_copy, status) == 36, "copy status @36");
_Static_assert(sizeof(struct xen_memory_reservation) == 32, "memory_reservation is 32 bytes");
_Static_assert(OFF(xen_memory_reservation, domid) == 24, "reservation domid @24");
_Static_assert(sizeof(struct xen_add_to_physmap) == 24, "add_to_physmap is 24 bytes");
_Static_assert(OFF(xen_add_to_physmap, gpfn) == 16, "add_to_physmap gpfn @16");
_Static_assert(sizeof(struct xen_add_to_physmap_batch) == 32, "add_to_physmap_batch is 32 bytes");
_Static_assert(sizeof(struct xen_remove_from_physmap) == 16, "remove_from_physmap is 16 bytes");
#else
_Static_assert(OFF(shared_info, evtchn_mask) == 2048 + 128, "32-bit evtchn_mask");
_Static_assert(sizeof(struct vcpu_set_singleshot_timer) == 12, "32-bit singleshot is 12 bytes");
_Static_assert(sizeof(struct gnttab_copy) == 24, "32-bit gnttab_copy is 24 bytes");
#endif
#undef OFF
#ifdef __x86_64__
_Static_assert(sizeof(struct tss64) == 104, "64-bit TSS is 104 bytes");
_Static_assert(__builtin_offsetof(struct tss64, ist[1]) == 36, "IST1 @36");
_Static_assert(__builtin_offsetof(struct tss64, iomap_base) == 102, "iomap base @102");
_Static_assert(sizeof(struct idt_gate) == 16, "64-bit gates are 16 bytes");
_Static_assert(sizeof(struct trap_frame) == 22 * 8, "trap frame matches entry.S");
#else
_Static_assert(sizeof(struct idt_gate) == 8, "32-bit gates are 8 bytes");
_Static_assert(sizeof(struct trap_frame) == 13 * 4, "trap frame matches entry.S");
#endif
