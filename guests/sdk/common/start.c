/* Common start-of-day: called by the arch entry code once the CPU is set up. */
#include "sdk.h"

void sdk_start(void);
void sdk_start(void)
{
    if (start_info_paddr)
        start_info = (const struct hvm_start_info *)(unsigned long)start_info_paddr;
    arch_setup();

    if (xen_detect() && xen_setup_hypercall_page())
        arch_after_hypercall_page();
    else
        arch_bare_metal_setup();
    console_init();

    if (xen_present)
        printf("--- %s [%s, Xen %u.%u, console %s] ---\n", test_title, sdk_arch_name,
               xen_version_cpuid >> 16, xen_version_cpuid & 0xffff,
               console_backend_name());
    else
        printf("--- %s [%s, no Xen found: bare metal / QEMU mode] ---\n", test_title,
               sdk_arch_name);

    test_main();
    test_done();
}
