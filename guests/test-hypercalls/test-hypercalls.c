/*
 * test-hypercalls: the 64-bit hypercall ABI of a PVH guest.
 * CPUID leaves, the hypercall page, VMCALL/VMMCALL, every XENVER sub-op,
 * error returns (-ENOSYS, -EFAULT, -EPERM at CPL3, -EINVAL, -ENOENT),
 * console_io, sched_op, memory_op, hvm_op params and vcpu_op.
 * Needs Xen: SKIP without it.
 */
#include "sdk.h"

const char test_title[] = "test-hypercalls: 64-bit hypercall ABI";

#define XEN_4_10 0x0004000AL

static void test_cpuid(void)
{
    uint32_t a, b, c, d;
    cpuid_count(xen_cpuid_base, 0, &a, &b, &c, &d);
    printf("CPUID %#x: max leaf %#x, signature \"%.4s%.4s%.4s\"\n", xen_cpuid_base, a,
           (char *)&b, (char *)&c, (char *)&d);
    check(a >= xen_cpuid_base + 2, "Xen leaves reach at least base+2 (max %#x)", a);
    check_eq(xen_version_cpuid, XEN_4_10, "CPUID base+1 version is 4.10");
    cpuid_count(xen_cpuid_base + 2, 0, &a, &b, &c, &d);
    check_eq(a, 1, "CPUID base+2: one hypercall page");
    printf("hypercall MSR %#x\n", b);
}

static void test_page(void)
{
    bool nonzero = false;
    for (unsigned int i = 0; i < sizeof(hypercall_page); i++)
        nonzero |= hypercall_page[i] != 0;
    check(nonzero, "hypercall page is no longer all zeroes after the MSR write");

    const uint8_t *s = hypercall_page + __HYPERVISOR_xen_version * HYPERCALL_STUB_SIZE;
    printf("stub 17: %02x %02x %02x %02x %02x %02x %02x %02x %02x\n", s[0], s[1], s[2], s[3],
           s[4], s[5], s[6], s[7], s[8]);
    check(s[0] == 0xb8 && s[1] == 17 && !s[2] && !s[3] && !s[4],
          "stub 17 starts with mov $17, %%eax");
    check(s[5] == 0x0f && s[6] == 0x01 && (s[7] == 0xc1 || s[7] == 0xd9) && s[8] == 0xc3,
          "stub 17 continues with vmcall or vmmcall, then ret");
    const uint8_t *iret = hypercall_page + __HYPERVISOR_iret * HYPERCALL_STUB_SIZE;
    check(iret[0] == 0x0f && iret[1] == 0x0b, "stub 23 (iret) is ud2 for HVM guests");
}

static void test_version(void)
{
    check_eq(HYPERVISOR_xen_version(XENVER_version, NULL), XEN_4_10,
             "xen_version(XENVER_version) via the page");
    int vec;
    long r = hypercall_insn_checked(false, __HYPERVISOR_xen_version, XENVER_version, 0, 0, &vec);
    if (check(vec < 0, "direct vmcall does not fault (vector %d)", vec))
        check_eq(r, XEN_4_10, "xen_version via direct vmcall");
    r = hypercall_insn_checked(true, __HYPERVISOR_xen_version, XENVER_version, 0, 0, &vec);
    if (check(vec < 0, "direct vmmcall does not fault (vector %d)", vec))
        check_eq(r, XEN_4_10, "xen_version via direct vmmcall");

    static char buf[XEN_CAPABILITIES_LEN + 1];

    memset(buf, 0, sizeof(buf));
    long rc = HYPERVISOR_xen_version(XENVER_extraversion, buf);
    check(rc == 0 && strnlen(buf, XEN_EXTRAVERSION_LEN) < XEN_EXTRAVERSION_LEN,
          "XENVER_extraversion = \"%s\" (rc %ld)", buf, rc);

    static struct xen_compile_info ci;
    rc = HYPERVISOR_xen_version(XENVER_compile_info, &ci);
    ci.compiler[63] = ci.compile_by[15] = ci.compile_domain[31] = ci.compile_date[31] = 0;
    check_eq(rc, 0, "XENVER_compile_info");
    printf("  compiler \"%s\", by \"%s\"@\"%s\", date \"%s\"\n", ci.compiler, ci.compile_by,
           ci.compile_domain, ci.compile_date);

    memset(buf, 0, sizeof(buf));
    rc = HYPERVISOR_xen_version(XENVER_capabilities, buf);
    check(rc == 0 && buf[0], "XENVER_capabilities = \"%s\"", buf);
    check(strstr(buf, "hvm-3.0-x86_64") != NULL, "capabilities contain hvm-3.0-x86_64");

    memset(buf, 0, sizeof(buf));
    rc = HYPERVISOR_xen_version(XENVER_changeset, buf);
    buf[XEN_CHANGESET_LEN - 1] = 0;
    check_eq(rc, 0, "XENVER_changeset = \"%s\"", buf);

    struct xen_platform_parameters pp = { 0 };
    rc = HYPERVISOR_xen_version(XENVER_platform_parameters, &pp);
    check_eq(rc, 0, "XENVER_platform_parameters (virt_start %#lx)", pp.virt_start);

    struct xen_feature_info fi = { .submap_idx = 0 };
    rc = HYPERVISOR_xen_version(XENVER_get_features, &fi);
    check(rc == 0 && (fi.submap & (1u << XENFEAT_hvm_callback_vector)),
          "XENVER_get_features(0) = %#x has hvm_callback_vector (rc %ld)", fi.submap, rc);

    check_eq(HYPERVISOR_xen_version(XENVER_pagesize, NULL), 4096, "XENVER_pagesize");

    uint8_t h[XEN_DOMAIN_HANDLE_LEN];
    memset(h, 0xee, sizeof(h));
    rc = HYPERVISOR_xen_version(XENVER_guest_handle, h);
    check_eq(rc, 0, "XENVER_guest_handle = %02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
             "%02x%02x%02x%02x%02x%02x", h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7],
             h[8], h[9], h[10], h[11], h[12], h[13], h[14], h[15]);

    memset(buf, 0, sizeof(buf));
    rc = HYPERVISOR_xen_version(XENVER_commandline, buf);
    buf[XEN_COMMANDLINE_LEN - 1] = 0;
    check(rc == 0 || rc == -XEN_EPERM, "XENVER_commandline: rc %s%s%s%s", xen_errno_name(rc),
          rc == 0 ? " \"" : " (refused to an unprivileged domain)", rc == 0 ? buf : "",
          rc == 0 ? "\"" : "");

    check_eq(HYPERVISOR_xen_version(0x7fff, NULL), -XEN_ENOSYS, "unknown XENVER sub-op -> -ENOSYS");
}

static void test_errors(void)
{
    check_eq(hypercall0(60), -XEN_ENOSYS, "hypercall 60 -> -ENOSYS");
    check_eq(hypercall0(11), -XEN_ENOSYS, "hypercall 11 (unused) -> -ENOSYS");
    check_eq(hypercall0(__HYPERVISOR_set_trap_table), -XEN_ENOSYS,
             "hypercall 0 (PV-only set_trap_table) -> -ENOSYS");
    int vec;
    long r = hypercall_insn_checked(cpu_is_amd(), 1000, 0, 0, 0, &vec);
    check(vec < 0 && r == -XEN_ENOSYS, "hypercall 1000 (beyond the page) -> -ENOSYS (%ld)", r);

    struct { void *p; const char *what; } bad[] = {
        { (void *)0xdead000000000UL, "an unmapped address" },
        { (void *)0x8000000000000000UL, "a non-canonical address" },
        { (void *)(_text_start + 0x40), "a read-only page (kernel text)" },
    };
    for (unsigned int i = 0; i < ARRAY_SIZE(bad); i++)
        check_eq(HYPERVISOR_xen_version(XENVER_extraversion, bad[i].p), -XEN_EFAULT,
                 "xen_version(extraversion, %p: %s) -> -EFAULT", bad[i].p, bad[i].what);
    if (!(pt_low[0] & PTE_P))
        check_eq(HYPERVISOR_xen_version(XENVER_extraversion, NULL), -XEN_EFAULT,
                 "xen_version(extraversion, NULL) -> -EFAULT (page 0 unmapped)");
    check_eq(HYPERVISOR_console_io(CONSOLEIO_write, 8, (void *)0xdead000000000UL),
             -XEN_EFAULT, "console_io write from an unmapped buffer -> -EFAULT");
}

/* CPL3: hypercalls are refused with -EPERM. */
static long user_page_call(long arg)
{
    (void)arg;
    return HYPERVISOR_xen_version(XENVER_version, NULL);
}

static long user_direct_call(long arg)
{
    int vec;
    long r = hypercall_insn_checked(arg != 0, __HYPERVISOR_xen_version, XENVER_version, 0, 0,
                                    &vec);
    return vec < 0 ? r : 1000 + vec;
}

static void test_cpl3(void)
{
    check_eq(run_user(user_page_call, 0), -XEN_EPERM,
             "xen_version from CPL3 through the hypercall page -> -EPERM");
    check_eq(run_user(user_direct_call, cpu_is_amd()), -XEN_EPERM,
             "xen_version from CPL3 with a direct %s -> -EPERM", cpu_is_amd() ? "vmmcall" : "vmcall");
}

static void test_console_sched(void)
{
    static const char msg[] = "console_io: a line written directly\n";
    long rc = HYPERVISOR_console_io(CONSOLEIO_write, sizeof(msg) - 1, (void *)msg);
    if (console_backend == CONSOLE_XEN_CONSOLE_IO)
        check_eq(rc, 0, "console_io(CONSOLEIO_write)");
    else
        note("console_io write returned %s (console uses %s)", xen_errno_name(rc),
             console_backend_name());

    check_eq(HYPERVISOR_sched_op(SCHEDOP_yield, NULL), 0, "SCHEDOP_yield");
    check_eq(HYPERVISOR_sched_op(100, NULL), -XEN_ENOSYS, "unknown sched_op -> -ENOSYS");
}

static struct e820_entry e820[64];

static void test_memory_op(void)
{
    domid_t self = DOMID_SELF;
    long cur = HYPERVISOR_memory_op(XENMEM_current_reservation, &self);
    check(cur > 0, "XENMEM_current_reservation = %ld pages (%ld KiB)", cur, cur * 4);
    long max = HYPERVISOR_memory_op(XENMEM_maximum_reservation, &self);
    check(max > 0, "XENMEM_maximum_reservation = %ld pages", max);
    check(max >= cur, "maximum reservation >= current reservation");
    long ram_page = HYPERVISOR_memory_op(XENMEM_maximum_ram_page, NULL);
    check(ram_page > 0, "XENMEM_maximum_ram_page = %#lx", ram_page);
    long gpfn = HYPERVISOR_memory_op(XENMEM_maximum_gpfn, &self);
    check(gpfn > 0, "XENMEM_maximum_gpfn = %#lx", gpfn);

    struct xen_memory_map map = { .nr_entries = ARRAY_SIZE(e820), .buffer = e820 };
    long rc = HYPERVISOR_memory_op(XENMEM_memory_map, &map);
    if (!check_eq(rc, 0, "XENMEM_memory_map"))
        return;
    check(map.nr_entries > 0 && map.nr_entries <= ARRAY_SIZE(e820), "memory map has %u entries",
          map.nr_entries);
    bool covers = false;
    for (uint32_t i = 0; i < map.nr_entries && i < ARRAY_SIZE(e820); i++) {
        printf("  e820: 0x%012llx-0x%012llx %s\n", (unsigned long long)e820[i].addr,
               (unsigned long long)(e820[i].addr + e820[i].size - 1),
               e820_type_name(e820[i].type));
        if (e820[i].type == E820_RAM && e820[i].addr <= (unsigned long)_image_start &&
            e820[i].addr + e820[i].size >= (unsigned long)_image_end)
            covers = true;
    }
    check(covers, "a RAM entry covers the kernel %p-%p", (void *)_image_start, (void *)_image_end);
    check_eq(HYPERVISOR_memory_op(63, NULL), -XEN_ENOSYS, "unknown memory_op -> -ENOSYS");
}

static void test_hvm_params(void)
{
    static const struct { uint32_t idx; const char *name; uint64_t expect; } params[] = {
        { HVM_PARAM_STORE_PFN, "STORE_PFN", XEN_SPECIAL_PFN_XENSTORE },
        { HVM_PARAM_CONSOLE_PFN, "CONSOLE_PFN", XEN_SPECIAL_PFN_CONSOLE },
        { HVM_PARAM_STORE_EVTCHN, "STORE_EVTCHN", 0 },
        { HVM_PARAM_CONSOLE_EVTCHN, "CONSOLE_EVTCHN", 0 },
    };
    for (unsigned int i = 0; i < ARRAY_SIZE(params); i++) {
        uint64_t v = ~0ULL;
        long rc = xen_get_hvm_param(params[i].idx, &v);
        if (params[i].expect)
            check(rc == 0 && v == params[i].expect, "HVM_PARAM_%s = %#llx (expected %#llx)",
                  params[i].name, (unsigned long long)v, (unsigned long long)params[i].expect);
        else
            check_eq(rc, 0, "HVM_PARAM_%s = %llu", params[i].name, (unsigned long long)v);
    }
    struct xen_hvm_param p = { .domid = DOMID_SELF, .index = HVM_NR_PARAMS };
    check_eq(HYPERVISOR_hvm_op(HVMOP_get_param, &p), -XEN_EINVAL,
             "HVMOP_get_param index %u (out of range) -> -EINVAL", HVM_NR_PARAMS);
}

static void test_vcpu_op(void)
{
    check_eq(HYPERVISOR_vcpu_op(VCPUOP_is_up, 0, NULL), 1, "VCPUOP_is_up(0) = 1");
    check_eq(HYPERVISOR_vcpu_op(VCPUOP_is_up, 1, NULL), -XEN_ENOENT,
             "VCPUOP_is_up(1) on a 1-vCPU domain -> -ENOENT");
    check_eq(HYPERVISOR_vcpu_op(VCPUOP_is_up, 100000, NULL), -XEN_ENOENT,
             "VCPUOP_is_up(100000) -> -ENOENT");
}

void test_main(void)
{
    if (!xen_present)
        test_skip("no Xen CPUID leaves: hypercalls need Xen");
    test_cpuid();
    test_page();
    test_version();
    test_errors();
    test_cpl3();
    test_console_sched();
    test_memory_op();
    test_hvm_params();
    test_vcpu_op();

    struct sched_shutdown code = { .reason = SHUTDOWN_poweroff };
    check_eq(HYPERVISOR_sched_op(SCHEDOP_shutdown_code, &code), 0,
             "SCHEDOP_shutdown_code(poweroff)");
}
