/* hello: the demo guest.  Greets with the Xen version, shows the command line
 * and the memory map, then powers off. */
#include "sdk.h"

const char test_title[] = "hello: the pyxen demo guest";

static void print_memory_map(void)
{
    struct memmap_entry map[32];
    enum memmap_source src;
    int n = memmap_read(map, ARRAY_SIZE(map), &src);
    if (n < 0) {
        printf("Memory map: not available (%s)\n", xen_errno_name(n));
        return;
    }
    printf("Memory map (%s, %d entries):\n",
           src == MEMMAP_START_INFO ? "from hvm_start_info" : "from XENMEM_memory_map", n);
    for (int i = 0; i < n; i++)
        printf("  0x%010llx-0x%010llx %-8s (%llu KiB)\n",
               (unsigned long long)map[i].addr,
               (unsigned long long)(map[i].addr + map[i].size - 1),
               e820_type_name(map[i].type),
               (unsigned long long)(map[i].size >> 10));
}

void test_main(void)
{
    if (xen_present) {
        long ver = HYPERVISOR_xen_version(XENVER_version, NULL);
        char extra[XEN_EXTRAVERSION_LEN + 1] = "";
        if (HYPERVISOR_xen_version(XENVER_extraversion, extra) < 0)
            extra[0] = '\0';
        extra[XEN_EXTRAVERSION_LEN] = '\0';
        printf("Hello from a pyxen guest! Xen %ld.%ld%s\n", ver >> 16, ver & 0xffff, extra);
    } else {
        printf("Hello from a pyxen guest! (no Xen here: bare metal / QEMU)\n");
    }
    printf("Command line: \"%s\"\n", cmdline());
    print_memory_map();
    printf("Goodbye.\n");
    test_pass();
}
