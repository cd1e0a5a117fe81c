/* Grant tables v1: our own table, granting and revoking, map/unmap/copy wrappers. */
#include "sdk.h"

volatile struct grant_entry_v1 *gnttab;
unsigned int gnttab_nr_frames;

/* Pages of the image whose RAM frames Xen replaces with grant-table frames. */
static uint8_t gnttab_pages[GNTTAB_SDK_MAX_FRAMES][PAGE_SIZE] __aligned(PAGE_SIZE)
    __attribute__((section(".bss.page_aligned")));

long gnttab_init(unsigned int nr_frames)
{
    if (!xen_present)
        return -XEN_ENOSYS;
    if (nr_frames > GNTTAB_SDK_MAX_FRAMES)
        return -XEN_EINVAL;
    for (unsigned int i = gnttab_nr_frames; i < nr_frames; i++) {
        struct xen_add_to_physmap xatp = {
            .domid = DOMID_SELF,
            .space = XENMAPSPACE_grant_table,
            .idx = i,
            .gpfn = (unsigned long)gnttab_pages[i] >> 12,
        };
        long rc = HYPERVISOR_memory_op(XENMEM_add_to_physmap, &xatp);
        if (rc < 0)
            return rc;
        gnttab_nr_frames = i + 1;
    }
    gnttab = (volatile struct grant_entry_v1 *)gnttab_pages;
    return 0;
}

unsigned int gnttab_capacity(void)
{
    return gnttab_nr_frames * GNTTAB_V1_PER_FRAME;
}

void gnttab_grant(grant_ref_t ref, domid_t dom, unsigned long gfn, bool readonly)
{
    volatile struct grant_entry_v1 *e = &gnttab[ref];
    e->domid = dom;
    e->frame = (uint32_t)gfn;
    wmb();                      /* domid and frame before the flags that publish them */
    e->flags = (uint16_t)(GTF_permit_access | (readonly ? GTF_readonly : 0));
}

long gnttab_revoke(grant_ref_t ref, uint16_t *flags_seen)
{
    volatile uint16_t *f = &gnttab[ref].flags;
    uint16_t cur = *f;
    for (;;) {
        if (flags_seen)
            *flags_seen = cur;
        if (cur & (GTF_reading | GTF_writing))
            return -XEN_EBUSY;
        uint16_t old = cmpxchg_u16(f, cur, 0);
        if (old == cur)
            return 0;
        cur = old;
    }
}

uint16_t gnttab_flags(grant_ref_t ref)
{
    return gnttab[ref].flags;
}

long gnttab_map(domid_t dom, grant_ref_t ref, uint64_t gpa, uint32_t flags,
                grant_handle_t *handle, int16_t *status)
{
    struct gnttab_map_grant_ref m = {
        .host_addr = gpa, .flags = flags, .ref = ref, .dom = dom,
        .status = 1,            /* not a GNTST value: shows whether Xen wrote it */
    };
    long rc = HYPERVISOR_grant_table_op(GNTTABOP_map_grant_ref, &m, 1);
    if (handle)
        *handle = m.handle;
    if (status)
        *status = m.status;
    return rc;
}

long gnttab_unmap(uint64_t gpa, grant_handle_t handle, int16_t *status)
{
    struct gnttab_unmap_grant_ref u = { .host_addr = gpa, .handle = handle, .status = 1 };
    long rc = HYPERVISOR_grant_table_op(GNTTABOP_unmap_grant_ref, &u, 1);
    if (status)
        *status = u.status;
    return rc;
}

long gnttab_copy_one(struct gnttab_copy *op)
{
    return HYPERVISOR_grant_table_op(GNTTABOP_copy, op, 1);
}

long gnttab_query_size(domid_t dom, uint32_t *nr, uint32_t *max, int16_t *status)
{
    struct gnttab_query_size q = { .dom = dom, .status = 1 };
    long rc = HYPERVISOR_grant_table_op(GNTTABOP_query_size, &q, 1);
    if (nr)
        *nr = q.nr_frames;
    if (max)
        *max = q.max_nr_frames;
    if (status)
        *status = q.status;
    return rc;
}

long gnttab_get_version(domid_t dom, uint32_t *version)
{
    struct gnttab_get_version g = { .dom = dom };
    long rc = HYPERVISOR_grant_table_op(GNTTABOP_get_version, &g, 1);
    if (version)
        *version = g.version;
    return rc;
}

long gnttab_set_version(uint32_t version)
{
    struct gnttab_set_version s = { .version = version };
    return HYPERVISOR_grant_table_op(GNTTABOP_set_version, &s, 1);
}

const char *gntst_name(int st)
{
    static const char *const names[] = {
        "GNTST_okay", "GNTST_general_error", "GNTST_bad_domain", "GNTST_bad_gntref",
        "GNTST_bad_handle", "GNTST_bad_virt_addr", "GNTST_bad_dev_addr",
        "GNTST_no_device_space", "GNTST_permission_denied", "GNTST_bad_page",
        "GNTST_bad_copy_arg", "GNTST_address_too_big", "GNTST_eagain",
    };
    if (st <= 0 && -st < (int)ARRAY_SIZE(names))
        return names[-st];
    return st == 1 ? "(status not written)" : "GNTST_?";
}

/* ---- guest-physical space above RAM ---- */

#define SPECIAL_PAGES_START 0xfeff0000ULL
#define FREE_GPA_LIMIT      0xfc000000ULL    /* stay clear of firmware/special areas */

static struct memmap_entry map[64];
static int map_n = -1;
static uint64_t next_free;

static void load_map(void)
{
    if (map_n < 0) {
        map_n = memmap_read(map, ARRAY_SIZE(map), NULL);
        if (map_n < 0)
            map_n = 0;
    }
}

uint64_t sdk_ram_end(void)
{
    load_map();
    uint64_t end = 0;
    for (int i = 0; i < map_n; i++)
        if (map[i].type == E820_RAM && map[i].addr + map[i].size > end &&
            map[i].addr < (1ULL << 32))
            end = map[i].addr + map[i].size;
    return end;
}

static bool overlaps_map(uint64_t a, uint64_t len)
{
    for (int i = 0; i < map_n; i++)
        if (a < map[i].addr + map[i].size && map[i].addr < a + len)
            return true;
    return a < SPECIAL_PAGES_START + 0x10000 && SPECIAL_PAGES_START < a + len;
}

uint64_t sdk_free_gpa(unsigned long pages)
{
    uint64_t len = (uint64_t)pages << 12;
    load_map();
    if (!next_free) {
        uint64_t end = sdk_ram_end();
        if (!end)
            end = (uint64_t)(unsigned long)_image_end;
        /* A 2 MiB gap above RAM, then 2 MiB aligned. */
        next_free = ALIGN_UP(end, 2ULL << 20) + (2ULL << 20);
    }
    for (uint64_t a = next_free; a + len <= FREE_GPA_LIMIT; a += PAGE_SIZE) {
        if (!overlaps_map(a, len)) {
            next_free = a + len;
            return a;
        }
    }
    return 0;
}
