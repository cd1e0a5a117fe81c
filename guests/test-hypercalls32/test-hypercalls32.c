/*
 * test-hypercalls32: the 32-bit hypercall ABI from flat protected mode with
 * paging off.  EAX = number, EBX/ECX/EDX/ESI/EDI = arguments, result in EAX;
 * structures use the 32-bit layouts (4-byte guest handles).
 */
#include "sdk.h"

const char test_title[] = "test-hypercalls32: 32-bit hypercall ABI, paging off";

#define XEN_4_10 0x0004000AL

static struct e820_entry e820[32];

static void check_mode(void)
{
    check(!(read_cr0() & CR0_PG), "paging is off (CR0=%#lx)", read_cr0());
    check(read_cr0() & CR0_PE, "protected mode");
    check_eq(read_cs(), KERNEL_CS, "CS is the SDK's 32-bit code selector");
}

static void check_page(void)
{
    bool nonzero = false;
    for (unsigned int i = 0; i < sizeof(hypercall_page); i++)
        nonzero |= hypercall_page[i] != 0;
    check(nonzero, "hypercall page filled after wrmsr(%#x, %p)", xen_hypercall_msr,
          (void *)hypercall_page);
    const uint8_t *stub = hypercall_page + __HYPERVISOR_xen_version * HYPERCALL_STUB_SIZE;
    check(stub[0] == 0xb8 && stub[1] == __HYPERVISOR_xen_version && !stub[2] &&
          !stub[3] && !stub[4], "stub 17 starts with mov $17, %%eax (%02x %02x %02x %02x %02x)",
          stub[0], stub[1], stub[2], stub[3], stub[4]);
}

static void check_version(void)
{
    long v = HYPERVISOR_xen_version(XENVER_version, NULL);
    printf("xen_version(XENVER_version) = %#lx (Xen %ld.%ld)\n", v, v >> 16, v & 0xffff);
    check_eq(v, XEN_4_10, "xen_version via the hypercall page is 4.10");
    check_eq(xen_version_cpuid, XEN_4_10, "CPUID leaf %#x+1 reports 4.10", xen_cpuid_base);

    int vec;
    long r = hypercall_insn_checked(false, __HYPERVISOR_xen_version, XENVER_version, 0, 0, &vec);
    if (check(vec < 0, "direct vmcall does not fault (vector %d)", vec))
        check_eq(r, XEN_4_10, "xen_version via direct vmcall");
    r = hypercall_insn_checked(true, __HYPERVISOR_xen_version, XENVER_version, 0, 0, &vec);
    if (check(vec < 0, "direct vmmcall does not fault (vector %d)", vec))
        check_eq(r, XEN_4_10, "xen_version via direct vmmcall");

    char extra[XEN_EXTRAVERSION_LEN + 1] = "";
    long rc = HYPERVISOR_xen_version(XENVER_extraversion, extra);
    extra[XEN_EXTRAVERSION_LEN] = '\0';
    check_eq(rc, 0, "XENVER_extraversion (\"%s\")", extra);

    struct xen_feature_info fi = { .submap_idx = 0 };
    rc = HYPERVISOR_xen_version(XENVER_get_features, &fi);
    check(rc == 0 && (fi.submap & (1u << XENFEAT_hvm_callback_vector)),
          "XENVER_get_features submap 0 = %#x has hvm_callback_vector (rc %ld)",
          fi.submap, rc);
    check_eq(HYPERVISOR_xen_version(XENVER_pagesize, NULL), 4096, "XENVER_pagesize");
}

static void check_errors(void)
{
    check_eq(hypercall0(60), -XEN_ENOSYS, "hypercall 60 -> -ENOSYS");
    /* Paging is off, so this is a guest-physical address with no RAM behind it. */
    void *bad = (void *)0xc0000000ul;
    check_eq(HYPERVISOR_xen_version(XENVER_extraversion, bad), -XEN_EFAULT,
             "xen_version(extraversion, %p) -> -EFAULT", bad);
}

static void check_memory_map(void)
{
    struct xen_memory_map map = { .nr_entries = ARRAY_SIZE(e820), .buffer = e820 };
    check_eq(sizeof(map), 8, "32-bit xen_memory_map is 8 bytes (handle is 4)");
    long rc = HYPERVISOR_memory_op(XENMEM_memory_map, &map);
    if (!check_eq(rc, 0, "XENMEM_memory_map"))
        return;
    bool covers = false;
    for (uint32_t i = 0; i < map.nr_entries && i < ARRAY_SIZE(e820); i++) {
        printf("  e820[%u]: %#llx +%#llx %s\n", i, (unsigned long long)e820[i].addr,
               (unsigned long long)e820[i].size, e820_type_name(e820[i].type));
        if (e820[i].type == E820_RAM && e820[i].addr <= (unsigned long)_image_start &&
            e820[i].addr + e820[i].size >= (unsigned long)_image_end)
            covers = true;
    }
    check(covers, "a RAM entry covers the image %p-%p", (void *)_image_start,
          (void *)_image_end);
}

static void check_misc(void)
{
    static const char msg[] = "console_io from 32-bit code\n";
    check_eq(HYPERVISOR_console_io(CONSOLEIO_write, sizeof(msg) - 1, (void *)msg), 0,
             "console_io write");
    uint64_t v;
    long rc = xen_get_hvm_param(HVM_PARAM_CONSOLE_PFN, &v);
    check(rc == 0 && v == XEN_SPECIAL_PFN_CONSOLE, "HVM_PARAM_CONSOLE_PFN = %#llx (rc %ld)",
          (unsigned long long)v, rc);
    rc = xen_get_hvm_param(HVM_PARAM_STORE_PFN, &v);
    check(rc == 0 && v == XEN_SPECIAL_PFN_XENSTORE, "HVM_PARAM_STORE_PFN = %#llx (rc %ld)",
          (unsigned long long)v, rc);
    check_eq(HYPERVISOR_sched_op(SCHEDOP_yield, NULL), 0, "SCHEDOP_yield");
    rc = HYPERVISOR_set_timer_op(0);
    if (rc == -XEN_ENOSYS)   /* timers arrive with event channels (core-ABI issue) */
        skip_part("set_timer_op(0): -ENOSYS, timers are not implemented yet");
    else
        check_eq(rc, 0, "set_timer_op(0) cancels (64-bit arg split in two)");
    check_eq(HYPERVISOR_vcpu_op(VCPUOP_is_up, 0, NULL), 1, "VCPUOP_is_up(0)");
}

void test_main(void)
{
    check_mode();
    if (!xen_present)
        test_skip("no Xen CPUID leaves: the 32-bit hypercall ABI needs Xen");
    printf("Xen CPUID base %#x, hypercall MSR %#x\n", xen_cpuid_base, xen_hypercall_msr);
    check_page();
    check_version();
    check_errors();
    check_memory_map();
    check_misc();
}
