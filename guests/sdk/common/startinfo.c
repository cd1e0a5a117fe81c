/* The PVH start-of-day structure: command line, modules, memory map. */
#include "sdk.h"

const struct hvm_start_info *start_info;
uint32_t start_info_paddr;   /* EBX at entry, stored by the entry code */

const char *cmdline(void)
{
    if (!start_info || start_info->magic != HVM_START_MAGIC_VALUE ||
        !start_info->cmdline_paddr || start_info->cmdline_paddr >= (1ULL << 32))
        return "";
    return (const char *)(unsigned long)start_info->cmdline_paddr;
}

/* Finds the word starting with `prefix` (whole-word match of the prefix). */
static const char *find_word(const char *line, const char *prefix, size_t plen)
{
    const char *p = line;
    while (*p) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (!*p)
            break;
        if (!strncmp(p, prefix, plen))
            return p;
        while (*p && *p != ' ' && *p != '\t')
            p++;
    }
    return NULL;
}

bool cmdline_get(const char *key, char *value, size_t len)
{
    char prefix[64];
    int plen = snprintf(prefix, sizeof(prefix), "%s=", key);
    if (plen <= 0 || (size_t)plen >= sizeof(prefix))
        return false;
    const char *w = find_word(cmdline(), prefix, (size_t)plen);
    if (!w)
        return false;
    w += plen;
    size_t n = 0;
    while (w[n] && w[n] != ' ' && w[n] != '\t')
        n++;
    if (len) {
        if (n >= len)
            n = len - 1;
        memcpy(value, w, n);
        value[n] = '\0';
    }
    return true;
}

unsigned long long cmdline_get_u64(const char *key, unsigned long long def)
{
    char buf[32];
    const char *end;
    if (!cmdline_get(key, buf, sizeof(buf)) || !buf[0])
        return def;
    unsigned long long v = strtoull_simple(buf, &end);
    return *end ? def : v;
}

bool cmdline_has_word(const char *token)
{
    size_t n = strlen(token);
    const char *line = cmdline();
    const char *w = line;
    while ((w = find_word(w, token, n))) {
        if (w[n] == '\0' || w[n] == ' ' || w[n] == '\t')
            return true;
        w += n;
    }
    return false;
}

const struct hvm_modlist_entry *start_info_module(unsigned int i)
{
    if (!start_info || i >= start_info->nr_modules || !start_info->modlist_paddr ||
        start_info->modlist_paddr >= (1ULL << 32))
        return NULL;
    const struct hvm_modlist_entry *list =
        (const void *)(unsigned long)start_info->modlist_paddr;
    return &list[i];
}

const char *e820_type_name(uint32_t type)
{
    switch (type) {
    case E820_RAM:      return "RAM";
    case E820_RESERVED: return "reserved";
    case E820_ACPI:     return "ACPI";
    case E820_NVS:      return "ACPI NVS";
    case E820_UNUSABLE: return "unusable";
    case 7:             return "persistent";
    default:            return "unknown";
    }
}

int memmap_read(struct memmap_entry *out, int max, enum memmap_source *src)
{
    if (src)
        *src = MEMMAP_NONE;
    /* Version 1 start info carries the map itself. */
    if (start_info && start_info->version >= 1 && start_info->memmap_entries &&
        start_info->memmap_paddr && start_info->memmap_paddr < (1ULL << 32)) {
        const struct hvm_memmap_table_entry *t =
            (const void *)(unsigned long)start_info->memmap_paddr;
        int n = 0;
        for (uint32_t i = 0; i < start_info->memmap_entries && n < max; i++, n++) {
            out[n].addr = t[i].addr;
            out[n].size = t[i].size;
            out[n].type = t[i].type;
        }
        if (src)
            *src = MEMMAP_START_INFO;
        return n;
    }
    if (!xen_present)
        return -XEN_ENOSYS;

    static struct e820_entry e820[64];
    struct xen_memory_map map = { .nr_entries = ARRAY_SIZE(e820), .buffer = e820 };
    long rc = HYPERVISOR_memory_op(XENMEM_memory_map, &map);
    if (rc < 0)
        return (int)rc;
    int n = 0;
    for (uint32_t i = 0; i < map.nr_entries && i < ARRAY_SIZE(e820) && n < max; i++, n++) {
        out[n].addr = e820[i].addr;
        out[n].size = e820[i].size;
        out[n].type = e820[i].type;
    }
    if (src)
        *src = MEMMAP_XENMEM;
    return n;
}
