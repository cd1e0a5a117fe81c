/*
 * test-evfuzz: random event_channel_op, grant_table_op and memory_op calls
 * with random and semi-valid arguments.  Needs Xen (SKIP without it).
 *
 * Command line (optional):
 *   seed=N    PRNG seed (default 1)
 *   calls=N   number of calls (default 100000)
 *   peer=D    another domain's id, used among the domids tried (without it:
 *             our own id + 1)
 *
 * Arguments: ports we allocated, small and boundary port numbers (0, 1023,
 * 1024, 4095, 4096, ...), the console/xenstore ports, random ones; domids
 * DOMID_SELF, our own, the peer, 0, DOMID_IO/XEN/COW/INVALID, random; grant
 * refs 0..7 (toolstack), 8..63 (ours, granted at random to random domids),
 * table boundaries, random; structures in a scratch buffer (followed by an
 * unmapped guard page) or bad pointers (unmapped, non-canonical, NULL,
 * read-only kernel text).
 *
 * What keeps the guest alive (sanitize rules):
 *  - every gfn an operation may destroy, replace or write to (decrease/
 *    populate/exchange, add_to_physmap(_batch) targets and moved gmfns,
 *    remove_from_physmap, map_grant_ref host_addr, copy destinations by
 *    frame, FIFO control/array pages, our grant entries' frames) lies in a
 *    scratch RAM region the CPU never touches after start (8..12 MiB), in a
 *    4 MiB hole above RAM, or beyond 2^40 (invalid);
 *  - grant table frame 0 may only be (re)mapped at its own gfn; shared_info
 *    only into the scratch region or the hole; we never use either after the
 *    fuzzing starts except frame 0 for re-granting;
 *  - grant_table_op arrays have at most 4 sanitized entries (a huge count
 *    only with a bad pointer or the sign bit set); memory_op arrays at most
 *    32 entries; every output fits in the scratch buffer;
 *  - set_version only with 1 or invalid values (never 2); swap_grant_ref
 *    only on refs >= 8; the console and xenstore ports are never closed;
 *    EVTCHNOP_reset of ourselves only when the console is console_io;
 *  - interrupts stay disabled (no upcalls are needed).
 * At the end: per family and per result code counts, a GNTST histogram,
 * and checks that the kernel text, the hypercall page, IDT, GDT and a bss
 * canary are intact and that hypercalls and the console still work.
 * Output: `evfuzz summary: calls=N evtchn=.. gnttab=.. memory=..` followed
 * by `<family>: <result>=<count> ...` lines; `Test result: SUCCESS`.
 */
#include "sdk.h"

const char test_title[] = "test-evfuzz: random event channel, grant table and memory ops";

/* ---- PRNG ---- */
static uint64_t rng_state;

static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dULL;
}

static uint64_t below(uint64_t n)
{
    return n ? rnd() % n : 0;
}

static bool one_in(unsigned int n)
{
    return below(n) == 0;
}

/* ---- memory ---- */
#define SCRATCH_PAGES 8
static uint8_t scratch[SCRATCH_PAGES + 1][PAGE_SIZE] __aligned(PAGE_SIZE);
#define SCRATCH_BYTES (SCRATCH_PAGES * PAGE_SIZE)

#define REGION_START 0x800000UL          /* RAM the CPU never touches after start */
#define REGION_PAGES 1024UL
static bool region_ok;
static uint64_t hole_start;               /* sdk_free_gpa(HOLE_PAGES) */
#define HOLE_PAGES 1024UL

static uint32_t canary[1024];

/* A pointer to `len` bytes inside scratch (8-aligned mostly). */
static void *scratch_at(size_t len)
{
    if (len > SCRATCH_BYTES)
        len = SCRATCH_BYTES;
    uint64_t off = below(SCRATCH_BYTES - len + 1);
    if (!one_in(8))
        off &= ~7ULL;
    return &scratch[0][0] + off;
}

static unsigned long bad_pointer(void)
{
    switch (below(5)) {
    case 0: return 0;
    case 1: return (unsigned long)scratch[SCRATCH_PAGES];             /* guard page */
    case 2: return 0x100000000UL + (below(1UL << 40) & ~7UL);         /* unmapped */
    case 3: return 0x8000000000000000UL | rnd();                      /* non-canonical */
    default: return (unsigned long)_text_start + below(_text_end - _text_start); /* RO */
    }
}

/* gfns an operation may destroy or write. */
static xen_pfn_t victim_gfn(unsigned int order)
{
    unsigned long n = 1UL << order;
    switch (below(region_ok ? 4 : 3)) {
    case 0: case 1:
        if (hole_start && n <= HOLE_PAGES)
            return (hole_start >> 12) + (below(HOLE_PAGES / n) * n);
        /* fall through */
    case 2:
        return (1ULL << 40) + below(1ULL << 20) * n;                   /* invalid */
    default:
        return (REGION_START >> 12) + below(REGION_PAGES / n) * n;
    }
}

/* gfns an operation only reads. */
static xen_pfn_t any_gfn(void)
{
    switch (below(4)) {
    case 0: return below(0x1000);                                     /* low RAM, image */
    case 1: return victim_gfn(0);
    case 2: return 0xfeff0 + below(16);                               /* special pages */
    default: return rnd() & 0xfffffffffULL;
    }
}

/* ---- ids ---- */
static domid_t own_domid, peer_domid;
static evtchn_port_t protected_ports[2];
static evtchn_port_t ports[256];
static unsigned int nr_ports;

static domid_t rand_domid(void)
{
    switch (below(10)) {
    case 0: case 1: case 2: return DOMID_SELF;
    case 3: case 4: return own_domid;
    case 5: case 6: return peer_domid;
    case 7: return 0;
    case 8: {
        static const domid_t special[] = { DOMID_IO, DOMID_XEN, DOMID_COW, DOMID_INVALID,
                                           DOMID_IDLE, 0x7fff, 0xffff };
        return special[below(ARRAY_SIZE(special))];
    }
    default: return (domid_t)rnd();
    }
}

static evtchn_port_t rand_port(void)
{
    switch (below(8)) {
    case 0: case 1: case 2:
        if (nr_ports)
            return ports[below(nr_ports)];
        /* fall through */
    case 3: return (evtchn_port_t)below(64);
    case 4: {
        static const uint32_t edge[] = { 0, 1023, 1024, 4095, 4096, 4097, 32767, 65536,
                                         0x7fffffff, 0xffffffff };
        return edge[below(ARRAY_SIZE(edge))];
    }
    case 5: return protected_ports[below(2)];
    default: return (evtchn_port_t)rnd();
    }
}

static uint32_t rand_vcpu(void)
{
    static const uint32_t v[] = { 0, 0, 0, 1, 31, 32, 127, 0xffffffff };
    return one_in(8) ? (uint32_t)rnd() : v[below(ARRAY_SIZE(v))];
}

static grant_ref_t rand_ref(void)
{
    switch (below(6)) {
    case 0: return (grant_ref_t)below(8);
    case 1: case 2: return (grant_ref_t)(8 + below(56));
    case 3: {
        static const uint32_t edge[] = { 511, 512, 1023, 1024, 32767, 32768, 0xffffffff };
        return edge[below(ARRAY_SIZE(edge))];
    }
    default: return (grant_ref_t)(one_in(2) ? below(4096) : rnd());
    }
}

static bool is_protected(evtchn_port_t p)
{
    return p && (p == protected_ports[0] || p == protected_ports[1]);
}

static void remember_port(evtchn_port_t p)
{
    if (nr_ports < ARRAY_SIZE(ports))
        ports[nr_ports++] = p;
    else
        ports[below(ARRAY_SIZE(ports))] = p;
}

static void forget_port(evtchn_port_t p)
{
    for (unsigned int i = 0; i < nr_ports; i++)
        if (ports[i] == p) {
            ports[i] = ports[--nr_ports];
            return;
        }
}

/* ---- results ---- */
enum family { FAM_EVTCHN, FAM_GNTTAB, FAM_MEMORY, NR_FAM };
static const char *const fam_name[NR_FAM] = { "evtchn", "gnttab", "memory" };
#define HIST_POS   128
#define HIST_OTHER 129
static unsigned long hist[NR_FAM][130];
static unsigned long fam_calls[NR_FAM];
static unsigned long gntst_hist[14];     /* 0..-12, then "other" */

static void record(enum family f, long rc)
{
    fam_calls[f]++;
    if (rc > 0)
        hist[f][HIST_POS]++;
    else if (rc > -128)
        hist[f][-rc]++;
    else
        hist[f][HIST_OTHER]++;
}

static void record_gntst(int16_t st)
{
    if (st <= 0 && st >= -12)
        gntst_hist[-st]++;
    else
        gntst_hist[13]++;
}

/* ---- grants we own ---- */
static grant_ref_t frame0_gfn;

static void regrant_random(void)
{
    grant_ref_t ref = 8 + (grant_ref_t)below(56);
    domid_t d = one_in(3) ? peer_domid : one_in(2) ? own_domid : rand_domid();
    static const uint16_t flagset[] = { GTF_permit_access, GTF_permit_access | GTF_readonly,
                                        GTF_invalid, GTF_accept_transfer, 3,
                                        GTF_permit_access | GTF_sub_page };
    volatile struct grant_entry_v1 *e = &gnttab[ref];
    /* Frames only in the scratch region / hole: copies may write them. */
    uint16_t old = e->flags;
    if (old & (GTF_reading | GTF_writing))
        return;                           /* in use: leave it */
    if (cmpxchg_u16(&e->flags, old, 0) != old)
        return;
    e->domid = d;
    e->frame = (uint32_t)victim_gfn(0);
    wmb();
    e->flags = flagset[below(ARRAY_SIZE(flagset))];
}

/* ---- mappings we made ---- */
struct mapping {
    uint64_t host_addr;
    grant_handle_t handle;
};
static struct mapping maps[64];
static unsigned int nr_maps;

/* ---- event_channel_op ---- */
static long fuzz_evtchn(void)
{
    unsigned int cmd = (unsigned int)below(16);
    if (one_in(40))
        cmd = one_in(2) ? 14 + (unsigned int)below(50) : (unsigned int)rnd();
    union {
        struct evtchn_alloc_unbound au;
        struct evtchn_bind_interdomain bi;
        struct evtchn_bind_virq bv;
        struct evtchn_bind_pirq bp;
        struct evtchn_bind_ipi ipi;
        struct evtchn_close cl;
        struct evtchn_send se;
        struct evtchn_status st;
        struct evtchn_bind_vcpu bvc;
        struct evtchn_unmask um;
        struct evtchn_reset rs;
        struct evtchn_init_control ic;
        struct evtchn_expand_array ea;
        struct evtchn_set_priority sp;
        uint8_t raw[32];
    } *a = scratch_at(32);
    for (unsigned int i = 0; i < sizeof(a->raw); i++)
        a->raw[i] = (uint8_t)rnd();

    switch (cmd) {
    case EVTCHNOP_alloc_unbound:
        a->au.dom = one_in(6) ? rand_domid() : DOMID_SELF;
        a->au.remote_dom = rand_domid();
        break;
    case EVTCHNOP_bind_interdomain:
        a->bi.remote_dom = rand_domid();
        a->bi.remote_port = rand_port();
        break;
    case EVTCHNOP_bind_virq:
        a->bv.virq = one_in(8) ? (uint32_t)rnd() : (uint32_t)below(NR_VIRQS + 2);
        a->bv.vcpu = rand_vcpu();
        break;
    case EVTCHNOP_bind_pirq:
        a->bp.pirq = (uint32_t)below(64);
        a->bp.flags = (uint32_t)below(4);
        break;
    case EVTCHNOP_bind_ipi:
        a->ipi.vcpu = rand_vcpu();
        break;
    case EVTCHNOP_close:
        a->cl.port = rand_port();
        if (is_protected(a->cl.port))
            a->cl.port = 0;
        break;
    case EVTCHNOP_send:
        a->se.port = rand_port();
        break;
    case EVTCHNOP_status:
        a->st.dom = rand_domid();
        a->st.port = rand_port();
        break;
    case EVTCHNOP_bind_vcpu:
        a->bvc.port = rand_port();
        a->bvc.vcpu = rand_vcpu();
        break;
    case EVTCHNOP_unmask:
        a->um.port = rand_port();
        break;
    case EVTCHNOP_reset:
        a->rs.dom = rand_domid();
        if ((a->rs.dom == DOMID_SELF || a->rs.dom == own_domid) &&
            (console_backend != CONSOLE_XEN_CONSOLE_IO || !one_in(50)))
            a->rs.dom = peer_domid;        /* our own reset: rarely, and only with console_io */
        break;
    case EVTCHNOP_init_control:
        a->ic.control_gfn = victim_gfn(0);
        a->ic.offset = one_in(2) ? (uint32_t)below(PAGE_SIZE) & ~7u : (uint32_t)rnd();
        a->ic.vcpu = rand_vcpu();
        break;
    case EVTCHNOP_expand_array:
        a->ea.array_gfn = victim_gfn(0);
        break;
    case EVTCHNOP_set_priority:
        a->sp.port = rand_port();
        a->sp.priority = (uint32_t)below(20);
        break;
    default:
        break;
    }

    bool bad = one_in(20);
    void *arg = bad ? (void *)bad_pointer() : (void *)a;
    long rc;
    if (one_in(200))
        rc = hypercall1(__HYPERVISOR_event_channel_op_compat, arg);   /* -ENOSYS for HVM */
    else
        rc = HYPERVISOR_event_channel_op(cmd, arg);

    if (!bad && rc == 0) {
        switch (cmd) {
        case EVTCHNOP_alloc_unbound:
            if (a->au.dom == DOMID_SELF || a->au.dom == own_domid)
                remember_port(a->au.port);
            break;
        case EVTCHNOP_bind_interdomain: remember_port(a->bi.local_port); break;
        case EVTCHNOP_bind_virq:        remember_port(a->bv.port); break;
        case EVTCHNOP_bind_ipi:         remember_port(a->ipi.port); break;
        case EVTCHNOP_close:            forget_port(a->cl.port); break;
        case EVTCHNOP_reset:
            if (a->rs.dom == DOMID_SELF || a->rs.dom == own_domid)
                nr_ports = 0;
            break;
        default: break;
        }
    }
    return rc;
}

/* ---- grant_table_op ---- */
static void fill_map(struct gnttab_map_grant_ref *m)
{
    m->host_addr = victim_gfn(0) << 12;
    if (one_in(16))
        m->host_addr |= below(PAGE_SIZE);
    static const uint32_t fl[] = {
        GNTMAP_host_map, GNTMAP_host_map, GNTMAP_host_map | GNTMAP_readonly, 0,
        GNTMAP_device_map, GNTMAP_host_map | GNTMAP_application_map,
        GNTMAP_host_map | GNTMAP_contains_pte, GNTMAP_host_map | GNTMAP_device_map,
    };
    m->flags = one_in(16) ? (uint32_t)rnd() & 0x3f : fl[below(ARRAY_SIZE(fl))];
    /* never device_map|contains_pte combinations that name our RAM: the
     * address is a victim gfn either way */
    m->ref = rand_ref();
    m->dom = rand_domid();
}

static void fill_unmap(struct gnttab_unmap_grant_ref *u)
{
    if (nr_maps && !one_in(3)) {
        struct mapping *m = &maps[below(nr_maps)];
        u->host_addr = m->host_addr;
        u->handle = one_in(8) ? (grant_handle_t)below(16) : m->handle;
    } else {
        u->host_addr = victim_gfn(0) << 12;
        u->handle = one_in(2) ? (grant_handle_t)below(64) : (grant_handle_t)rnd();
    }
    u->dev_bus_addr = one_in(4) ? rnd() : 0;
}

static void fill_copy_ptr(struct gnttab_copy_ptr *p, bool gref, bool dest)
{
    p->domid = rand_domid();
    if (gref)
        p->u.ref = rand_ref();
    else
        p->u.gmfn = dest ? victim_gfn(0) : any_gfn();
    p->offset = one_in(4) ? (uint16_t)rnd() : (uint16_t)below(PAGE_SIZE);
}

static long fuzz_gnttab(void)
{
    static const unsigned int cmds[] = {
        GNTTABOP_map_grant_ref, GNTTABOP_map_grant_ref, GNTTABOP_unmap_grant_ref,
        GNTTABOP_setup_table, GNTTABOP_copy, GNTTABOP_copy, GNTTABOP_query_size,
        GNTTABOP_set_version, GNTTABOP_get_version, GNTTABOP_swap_grant_ref,
        GNTTABOP_get_status_frames, GNTTABOP_dump_table, GNTTABOP_transfer,
        GNTTABOP_unmap_and_replace, GNTTABOP_cache_flush,
    };
    unsigned int cmd = cmds[below(ARRAY_SIZE(cmds))];
    if (one_in(50))
        cmd = one_in(2) ? 13 + (unsigned int)below(20) : (unsigned int)rnd();
    unsigned int count = one_in(10) ? (unsigned int)below(5) : 1;
    bool bad = one_in(20);
    if (bad && one_in(4))
        count = (unsigned int)rnd();
    /* A count with the sign bit set (refused before anything is read); the
     * pointer is bad as well, in case the count is not checked first. */
    bool sign = one_in(100);
    if (sign) {
        count = 0x80000000u | (unsigned int)below(16);
        bad = true;
    }

    if (one_in(50))
        regrant_random();

    size_t esize = 40;
    void *arr = scratch_at(4 * 64);
    uint8_t *base = arr;
    memset(arr, 0, 4 * 64);
    static xen_pfn_t *frame_list;
    for (unsigned int i = 0; i < 4; i++) {
        void *e = base + i * 64;
        switch (cmd) {
        case GNTTABOP_map_grant_ref:
            esize = sizeof(struct gnttab_map_grant_ref);
            e = base + i * esize;
            fill_map(e);
            break;
        case GNTTABOP_unmap_grant_ref:
            esize = sizeof(struct gnttab_unmap_grant_ref);
            e = base + i * esize;
            fill_unmap(e);
            break;
        case GNTTABOP_setup_table: {
            struct gnttab_setup_table *s = e;
            esize = 64;
            s->dom = rand_domid();
            s->nr_frames = one_in(8) ? (uint32_t)rnd() : (uint32_t)below(9);
            frame_list = scratch_at(64 * sizeof(xen_pfn_t));
            s->frame_list = one_in(10) ? (xen_pfn_t *)bad_pointer() : frame_list;
            if (s->nr_frames > 64 && s->frame_list == frame_list)
                s->nr_frames = 64;        /* outputs stay inside scratch */
            break;
        }
        case GNTTABOP_copy: {
            struct gnttab_copy *c = (struct gnttab_copy *)(base + i * sizeof(*c));
            esize = sizeof(*c);
            c->flags = (uint16_t)below(4);
            if (one_in(16))
                c->flags = (uint16_t)rnd();
            fill_copy_ptr(&c->source, c->flags & GNTCOPY_source_gref, false);
            fill_copy_ptr(&c->dest, c->flags & GNTCOPY_dest_gref, true);
            c->len = one_in(4) ? (uint16_t)rnd() : (uint16_t)below(PAGE_SIZE + 1);
            break;
        }
        case GNTTABOP_query_size: {
            struct gnttab_query_size *q = e;
            esize = 64;
            q->dom = rand_domid();
            break;
        }
        case GNTTABOP_set_version: {
            struct gnttab_set_version *v = e;
            esize = 64;
            static const uint32_t vers[] = { 1, 1, 0, 3, 0xffffffff };
            v->version = vers[below(ARRAY_SIZE(vers))];
            break;
        }
        case GNTTABOP_get_version: {
            struct gnttab_get_version *g = e;
            esize = 64;
            g->dom = rand_domid();
            break;
        }
        case GNTTABOP_swap_grant_ref: {
            struct gnttab_swap_grant_ref *s = e;
            esize = 64;
            s->ref_a = 8 + (grant_ref_t)below(56);
            s->ref_b = one_in(8) ? (grant_ref_t)rnd() | 8 : 8 + (grant_ref_t)below(56);
            if (s->ref_b < 8)
                s->ref_b = 8;
            break;
        }
        case GNTTABOP_get_status_frames: {
            struct { uint32_t nr; domid_t dom; int16_t status; uint64_t *list; } *g = e;
            esize = 64;
            g->nr = (uint32_t)below(8);
            g->dom = rand_domid();
            g->list = scratch_at(8 * sizeof(uint64_t));
            break;
        }
        default: {
            uint64_t *w = e;          /* other ops: random words, no pointers */
            for (unsigned int k = 0; k < 8; k++)
                w[k] = rnd() & 0xffff;
            esize = 64;
            break;
        }
        }
    }
    /* Entries are packed at esize (setup_table & co. only use the first). */
    if (esize == 64 && count > 1 && !bad && !sign)
        count = 1;
    if (!bad && !sign && count > 4)
        count = 4;

    void *arg = bad ? (void *)bad_pointer() : arr;
    long rc = HYPERVISOR_grant_table_op(cmd, arg, count);

    if (!bad && !sign && rc == 0) {
        for (unsigned int i = 0; i < count && i < 4; i++) {
            if (cmd == GNTTABOP_map_grant_ref) {
                struct gnttab_map_grant_ref *m = (struct gnttab_map_grant_ref *)arr + i;
                record_gntst(m->status);
                if (m->status == GNTST_okay) {
                    struct mapping mp = { m->host_addr & ~0xfffULL, m->handle };
                    if (nr_maps < ARRAY_SIZE(maps))
                        maps[nr_maps++] = mp;
                    else
                        maps[below(ARRAY_SIZE(maps))] = mp;
                }
            } else if (cmd == GNTTABOP_unmap_grant_ref) {
                struct gnttab_unmap_grant_ref *u = (struct gnttab_unmap_grant_ref *)arr + i;
                record_gntst(u->status);
            } else if (cmd == GNTTABOP_copy) {
                record_gntst(((struct gnttab_copy *)arr)[i].status);
            }
        }
    }
    return rc;
}

/* ---- memory_op ---- */
static void fill_reservation(struct xen_memory_reservation *r, bool destroys, xen_pfn_t **list)
{
    unsigned int order = one_in(4) ? (unsigned int)below(11) : 0;
    unsigned long n = one_in(8) ? 0 : 1 + below(one_in(4) ? 32 : 4);
    xen_pfn_t *l = scratch_at(32 * sizeof(xen_pfn_t));
    for (unsigned long i = 0; i < 32; i++)
        l[i] = destroys ? victim_gfn(order) : any_gfn();
    r->extent_start = one_in(16) ? NULL : l;
    r->nr_extents = n;
    r->extent_order = order;
    r->mem_flags = one_in(4) ? (uint32_t)rnd() & 0x3ffff : 0;
    r->domid = one_in(6) ? rand_domid() : DOMID_SELF;
    *list = l;
}

/* idx/gpfn for x->space (already chosen). */
static void fill_xatp_for_space(struct xen_add_to_physmap *x)
{
    x->size = (uint16_t)(1 + below(16));
    x->gpfn = victim_gfn(x->space == XENMAPSPACE_gmfn_range ? 4 : 0);
    switch (x->space) {
    case XENMAPSPACE_shared_info:
        x->idx = one_in(4) ? rnd() : 0;
        break;
    case XENMAPSPACE_grant_table:
        x->idx = below(4) | (one_in(8) ? XENMAPIDX_grant_table_status : 0);
        if (one_in(8))
            x->idx = rnd();
        if ((x->idx & ~(xen_ulong_t)XENMAPIDX_grant_table_status) == 0)
            x->gpfn = frame0_gfn;        /* frame 0 stays where the SDK maps it */
        break;
    case XENMAPSPACE_gmfn:
    case XENMAPSPACE_gmfn_range:
        x->idx = victim_gfn(x->space == XENMAPSPACE_gmfn_range ? 4 : 0);
        break;
    default:
        x->idx = rnd() & 0xfffff;
        break;
    }
}

static void fill_xatp(struct xen_add_to_physmap *x)
{
    x->domid = one_in(8) ? rand_domid() : DOMID_SELF;
    x->space = one_in(10) ? (uint32_t)rnd() : (uint32_t)below(6);
    fill_xatp_for_space(x);
}

static long fuzz_memory(void)
{
    static const unsigned int cmds[] = {
        XENMEM_increase_reservation, XENMEM_decrease_reservation, XENMEM_maximum_ram_page,
        XENMEM_current_reservation, XENMEM_maximum_reservation, XENMEM_populate_physmap,
        XENMEM_add_to_physmap, XENMEM_memory_map, XENMEM_maximum_gpfn,
        XENMEM_remove_from_physmap, XENMEM_add_to_physmap_batch, XENMEM_exchange,
        XENMEM_machphys_mapping, XENMEM_set_memory_map, XENMEM_claim_pages, 10, 5,
    };
    unsigned int cmd = cmds[below(ARRAY_SIZE(cmds))];
    if (one_in(40))
        cmd = 28 + (unsigned int)below(36);             /* unknown sub-ops */
    void *arg = NULL;
    xen_pfn_t *list;

    switch (cmd) {
    case XENMEM_increase_reservation:
    case XENMEM_claim_pages: {
        struct xen_memory_reservation *r = scratch_at(sizeof(*r));
        fill_reservation(r, false, &list);
        arg = r;
        break;
    }
    case XENMEM_decrease_reservation:
    case XENMEM_populate_physmap: {
        struct xen_memory_reservation *r = scratch_at(sizeof(*r));
        fill_reservation(r, true, &list);
        arg = r;
        break;
    }
    case XENMEM_exchange: {
        struct xen_memory_exchange *x = scratch_at(sizeof(*x));
        xen_pfn_t *l2;
        fill_reservation(&x->in, true, &list);
        fill_reservation(&x->out, true, &l2);
        x->nr_exchanged = one_in(4) ? below(4) : 0;
        arg = x;
        break;
    }
    case XENMEM_current_reservation:
    case XENMEM_maximum_reservation:
    case XENMEM_maximum_gpfn: {
        domid_t *d = scratch_at(sizeof(*d));
        *d = rand_domid();
        arg = d;
        break;
    }
    case XENMEM_add_to_physmap: {
        struct xen_add_to_physmap *x = scratch_at(sizeof(*x));
        fill_xatp(x);
        arg = x;
        break;
    }
    case XENMEM_add_to_physmap_batch: {
        struct xen_add_to_physmap_batch *b = scratch_at(sizeof(*b));
        unsigned int n = (unsigned int)below(9);
        xen_ulong_t *idxs = scratch_at(8 * sizeof(xen_ulong_t));
        xen_pfn_t *gpfns = scratch_at(8 * sizeof(xen_pfn_t));
        int *errs = scratch_at(8 * sizeof(int));
        struct xen_add_to_physmap one;
        b->domid = one_in(8) ? rand_domid() : DOMID_SELF;
        b->space = (uint16_t)(one_in(10) ? rnd() : below(6));
        for (unsigned int i = 0; i < 8; i++) {
            one.space = b->space;
            fill_xatp_for_space(&one);
            idxs[i] = b->space == XENMAPSPACE_gmfn_foreign ? any_gfn() : one.idx;
            gpfns[i] = one.gpfn;
        }
        b->size = (uint16_t)n;
        b->foreign_domid = rand_domid();
        b->idxs = idxs;
        b->gpfns = gpfns;
        b->errs = one_in(10) ? (int *)bad_pointer() : errs;
        arg = b;
        break;
    }
    case XENMEM_remove_from_physmap: {
        struct xen_remove_from_physmap *r = scratch_at(sizeof(*r));
        r->domid = one_in(8) ? rand_domid() : DOMID_SELF;
        r->gpfn = victim_gfn(0);
        arg = r;
        break;
    }
    case XENMEM_memory_map:
    case 10: {                                   /* machine_memory_map (-ENOSYS for HVM) */
        struct xen_memory_map *m = scratch_at(sizeof(*m));
        m->nr_entries = (uint32_t)below(33);
        m->buffer = one_in(10) ? (void *)bad_pointer() : scratch_at(32 * 20);
        arg = m;
        break;
    }
    case XENMEM_set_memory_map: {
        struct { domid_t domid; struct xen_memory_map map; } *f = scratch_at(sizeof(*f));
        f->domid = rand_domid();
        f->map.nr_entries = (uint32_t)below(8);
        f->map.buffer = scratch_at(8 * 20);
        arg = f;
        break;
    }
    case 5: {                                    /* machphys_mfn_list */
        struct { uint32_t max; xen_pfn_t *start; uint32_t nr; } *l = scratch_at(sizeof(*l));
        l->max = (uint32_t)below(32);
        l->start = scratch_at(32 * sizeof(xen_pfn_t));
        arg = l;
        break;
    }
    default:
        arg = scratch_at(64);
        break;
    }
    if (one_in(20))
        arg = (void *)bad_pointer();
    /* Continuation bits on sub-ops that do not use them. */
    if (one_in(30) && cmd != XENMEM_increase_reservation && cmd != XENMEM_decrease_reservation &&
        cmd != XENMEM_populate_physmap && cmd != XENMEM_exchange)
        cmd |= (unsigned int)below(4) << MEMOP_EXTENT_SHIFT;
    return HYPERVISOR_memory_op(cmd, arg);
}

/* ---- integrity ---- */
static uint64_t fnv(const void *p, size_t n)
{
    const uint8_t *b = p;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

static void print_hist(const char *name, const unsigned long *h, unsigned long total)
{
    char line[512];
    int n = snprintf(line, sizeof(line), "%s (%lu calls):", name, total);
    for (int i = 0; i < 130 && n < (int)sizeof(line) - 32; i++) {
        if (!h[i])
            continue;
        const char *label = i == HIST_POS ? "positive" : i == HIST_OTHER ? "other" : NULL;
        if (label)
            n += snprintf(line + n, sizeof(line) - n, " %s=%lu", label, h[i]);
        else if (strcmp(xen_errno_name(-i), "-E?"))
            n += snprintf(line + n, sizeof(line) - n, " %s=%lu", xen_errno_name(-i), h[i]);
        else
            n += snprintf(line + n, sizeof(line) - n, " -%d=%lu", i, h[i]);
    }
    printf("%s\n", line);
}

void test_main(void)
{
    if (!xen_present)
        test_skip("needs Xen (event channel, grant table and memory ops)");
    unsigned long calls = cmdline_get_u64("calls", 100000);
    rng_state = cmdline_get_u64("seed", 1) * 0x9E3779B97F4A7C15ULL | 1;
    local_irq_disable();

    long d = xen_own_domid();
    check(d >= 0, "own domid %ld", d);
    own_domid = d >= 0 ? (domid_t)d : 0;
    peer_domid = (domid_t)cmdline_get_u64("peer", own_domid + 1u);
    uint64_t v;
    if (xen_get_hvm_param(HVM_PARAM_CONSOLE_EVTCHN, &v) == 0)
        protected_ports[0] = (evtchn_port_t)v;
    if (xen_get_hvm_param(HVM_PARAM_STORE_EVTCHN, &v) == 0)
        protected_ports[1] = (evtchn_port_t)v;
    printf("own domid %u, peer %u, console port %u, xenstore port %u, console %s\n",
           own_domid, peer_domid, protected_ports[0], protected_ports[1],
           console_backend_name());

    long rc = gnttab_init(1);
    check_rc(rc, 0, "grant table frame 0 mapped");
    if (rc < 0)
        test_fail("no grant table");
    frame0_gfn = (grant_ref_t)((unsigned long)gnttab >> 12);

    uint64_t ram_end = sdk_ram_end();
    region_ok = ram_end >= REGION_START + REGION_PAGES * PAGE_SIZE;
    hole_start = sdk_free_gpa(HOLE_PAGES);
    printf("victim gfns: RAM region %s%#lx-%#lx, hole %#llx-%#llx, and >= 2^40\n",
           region_ok ? "" : "(not RAM here, unused) ", REGION_START,
           REGION_START + REGION_PAGES * PAGE_SIZE - 1, (unsigned long long)hole_start,
           (unsigned long long)(hole_start + HOLE_PAGES * PAGE_SIZE - 1));
    for (unsigned int i = 0; i < 56; i++)
        regrant_random();

    sdk_pte_update(scratch[SCRATCH_PAGES], 0, PTE_P);     /* guard page */
    for (unsigned int i = 0; i < ARRAY_SIZE(canary); i++)
        canary[i] = 0xC0FFEE00u ^ i;
    uint64_t text_hash = fnv(_text_start, _text_end - _text_start);
    uint64_t hpage_hash = fnv(hypercall_page, sizeof(hypercall_page));
    uint64_t idt_hash = fnv(idt, sizeof(idt));
    uint64_t gdt_hash = fnv(gdt, sizeof(gdt));

    printf("fuzzing %lu calls\n", calls);
    for (unsigned long i = 0; i < calls; i++) {
        unsigned int r = (unsigned int)below(100);
        enum family f = r < 40 ? FAM_EVTCHN : r < 75 ? FAM_GNTTAB : FAM_MEMORY;
        long res = f == FAM_EVTCHN ? fuzz_evtchn() : f == FAM_GNTTAB ? fuzz_gnttab()
                                                                      : fuzz_memory();
        record(f, res);
        if ((i + 1) % 10000 == 0)
            printf("  %lu calls\n", i + 1);
    }

    printf("evfuzz summary: calls=%lu evtchn=%lu gnttab=%lu memory=%lu\n", calls,
           fam_calls[FAM_EVTCHN], fam_calls[FAM_GNTTAB], fam_calls[FAM_MEMORY]);
    for (unsigned int f = 0; f < NR_FAM; f++)
        print_hist(fam_name[f], hist[f], fam_calls[f]);
    char line[256];
    int n = snprintf(line, sizeof(line), "gntst per entry:");
    for (int s = 0; s < 14; s++)
        if (gntst_hist[s])
            n += snprintf(line + n, sizeof(line) - n, " %s=%lu",
                          s == 13 ? "other" : gntst_name(-s), gntst_hist[s]);
    printf("%s\n", line);

    check(fnv(_text_start, _text_end - _text_start) == text_hash, "kernel text unchanged");
    check(fnv(hypercall_page, sizeof(hypercall_page)) == hpage_hash, "hypercall page unchanged");
    check(fnv(idt, sizeof(idt)) == idt_hash, "IDT unchanged");
    check(fnv(gdt, sizeof(gdt)) == gdt_hash, "GDT unchanged");
    bool canary_ok = true;
    for (unsigned int i = 0; i < ARRAY_SIZE(canary); i++)
        canary_ok &= canary[i] == (0xC0FFEE00u ^ i);
    check(canary_ok, "bss canary intact");
    check_eq(HYPERVISOR_xen_version(XENVER_version, NULL), 0x0004000A,
             "hypercalls still work (xen_version)");
    check(true, "the console still works");
}
