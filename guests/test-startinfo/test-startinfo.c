/*
 * test-startinfo: the PVH start-of-day structure (hvm_start_info, EBX at
 * entry): magic, version, flags, command line, modules (module 0 = the
 * ramdisk from guests/out/test-ramdisk.bin) and the memory map.
 *
 * With the cfg's command line ("pyxen-test arg1=value") the guest also
 * requires arg1=value and the ramdisk; otherwise it only checks structure.
 * It prints the command line, the module size, its first 16 bytes and an
 * FNV-1a hash so a harness can compare them with what it passed.
 */
#include "sdk.h"
#include "ramdisk.h"

const char test_title[] = "test-startinfo: hvm_start_info, cmdline, modules, memory map";

static struct memmap_entry map[64];
static int map_entries;

static bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    return a < b + blen && b < a + alen;
}

static bool in_ram(uint64_t addr, uint64_t len)
{
    if (map_entries <= 0)
        return true;          /* nothing to check against */
    for (int i = 0; i < map_entries; i++)
        if (map[i].type == E820_RAM && map[i].addr <= addr &&
            map[i].addr + map[i].size >= addr + len)
            return true;
    return false;
}

static uint64_t image_start(void) { return (unsigned long)_image_start; }
static uint64_t image_size(void) { return (unsigned long)(_image_end - _image_start); }

static void check_memmap(void)
{
    enum memmap_source src;
    map_entries = memmap_read(map, ARRAY_SIZE(map), &src);
    if (map_entries < 0) {
        if (!xen_present && start_info->version == 0)
            skip_part("memory map: version 0 start info and no Xen to ask");
        else
            check(false, "memory map available (%s)", xen_errno_name(map_entries));
        return;
    }
    printf("memory map: %d entries from %s\n", map_entries,
           src == MEMMAP_START_INFO ? "hvm_start_info (v1 memmap)" : "XENMEM_memory_map");
    bool sorted = true;
    for (int i = 0; i < map_entries; i++) {
        printf("  0x%016llx-0x%016llx %s\n", (unsigned long long)map[i].addr,
               (unsigned long long)(map[i].addr + map[i].size - 1), e820_type_name(map[i].type));
        if (i && map[i].addr < map[i - 1].addr + map[i - 1].size)
            sorted = false;
    }
    check(map_entries > 0, "memory map is not empty");
    check(sorted, "memory map entries are sorted and do not overlap");
    check(in_ram(image_start(), image_size()), "a RAM entry covers the kernel image");
}

static void check_header(void)
{
    printf("start info at %#x: magic %#x version %u flags %#x nr_modules %u\n",
           start_info_paddr, start_info->magic, start_info->version, start_info->flags,
           start_info->nr_modules);
    printf("  modlist_paddr %#llx cmdline_paddr %#llx rsdp_paddr %#llx\n",
           (unsigned long long)start_info->modlist_paddr,
           (unsigned long long)start_info->cmdline_paddr,
           (unsigned long long)start_info->rsdp_paddr);
    if (start_info->version >= 1)
        printf("  memmap_paddr %#llx memmap_entries %u reserved %#x\n",
               (unsigned long long)start_info->memmap_paddr, start_info->memmap_entries,
               start_info->reserved);

    check(start_info->version <= 1, "version %u is a known one (0: Xen 4.10, 1: 4.11+)",
          start_info->version);
    check(!(start_info->flags & (SIF_PRIVILEGED | SIF_INITDOMAIN)),
          "flags %#x: neither privileged nor the initial domain", start_info->flags);
    size_t size = start_info->version >= 1 ? sizeof(*start_info) : 40;
    check(!overlaps(start_info_paddr, size, image_start(), image_size()),
          "start info does not overlap the kernel image");
    check(in_ram(start_info_paddr, size), "start info lies in RAM");
    if (start_info->version >= 1)
        check_eq(start_info->reserved, 0, "v1 reserved field is zero");
}

static void check_cmdline(bool expect_test_args)
{
    uint64_t pa = start_info->cmdline_paddr;
    if (!pa) {
        check(!expect_test_args, "no command line");
        printf("cmdline: (none)\n");
        return;
    }
    check(pa < (1ULL << 32), "cmdline below 4 GiB (%#llx)", (unsigned long long)pa);
    const char *s = cmdline();
    size_t len = strnlen(s, 1024);
    check(len < 1024, "cmdline is NUL-terminated (length %u)", (unsigned int)len);
    bool printable = true;
    for (size_t i = 0; i < len; i++)
        if (s[i] < 0x20 || s[i] > 0x7e)
            printable = false;
    check(printable, "cmdline is printable text");
    printf("cmdline: \"%s\"\n", s);
    check(!overlaps(pa, len + 1, image_start(), image_size()),
          "cmdline does not overlap the kernel image");

    if (expect_test_args) {
        char value[32];
        bool found = cmdline_get("arg1", value, sizeof(value));
        check(found && !strcmp(value, "value"), "cmdline has arg1=value (got \"%s\")",
              found ? value : "");
    }
}

static void check_modules(bool expect_ramdisk)
{
    uint32_t n = start_info->nr_modules;
    printf("modules: %u\n", n);
    if (!n) {
        check(!expect_ramdisk, "a module was expected (the ramdisk)");
        return;
    }
    check(start_info->modlist_paddr && start_info->modlist_paddr < (1ULL << 32),
          "modlist at %#llx", (unsigned long long)start_info->modlist_paddr);
    for (uint32_t i = 0; i < n && i < 8; i++) {
        const struct hvm_modlist_entry *m = start_info_module(i);
        if (!m)
            break;
        printf("module %u: paddr %#llx size %llu cmdline_paddr %#llx\n", i,
               (unsigned long long)m->paddr, (unsigned long long)m->size,
               (unsigned long long)m->cmdline_paddr);
        check(m->paddr && !(m->paddr & (PAGE_SIZE - 1)), "module %u is page aligned", i);
        check(!overlaps(m->paddr, m->size, image_start(), image_size()),
              "module %u does not overlap the kernel image", i);
        check(in_ram(m->paddr, m->size), "module %u lies in RAM", i);
    }

    const struct hvm_modlist_entry *m = start_info_module(0);
    if (!m || m->paddr >= (1ULL << 32))
        return;
    const volatile uint8_t *data = (const volatile uint8_t *)(unsigned long)m->paddr;
    uint32_t size = (uint32_t)m->size;
    printf("module 0: size %u, first 16 bytes:", size);
    for (uint32_t i = 0; i < 16 && i < size; i++)
        printf(" %02x", data[i]);
    printf("\nmodule 0: fnv1a32 %#010x\n", fnv1a32(data, size));

    if (expect_ramdisk) {
        check_eq(m->size, RAMDISK_SIZE, "module 0 has the ramdisk's size");
        uint32_t bad = 0;
        for (uint32_t i = 0; i < size && i < RAMDISK_SIZE; i++)
            if (data[i] != ramdisk_byte(i))
                bad++;
        check(bad == 0, "module 0 content matches test-ramdisk.bin (%u bytes differ)", bad);
    }
}

void test_main(void)
{
    if (!start_info_paddr)
        test_fail("EBX was 0 at entry: no start info");
    if (start_info->magic != HVM_START_MAGIC_VALUE)
        test_fail("start info magic %#x, expected %#x", start_info->magic,
                  HVM_START_MAGIC_VALUE);
    check_eq(start_info->magic, HVM_START_MAGIC_VALUE, "magic");

    bool test_args = cmdline_has_word("pyxen-test");
    if (!test_args)
        note("cmdline lacks \"pyxen-test\": only structural checks");

    check_memmap();
    check_header();
    check_cmdline(test_args);
    check_modules(test_args);
}
