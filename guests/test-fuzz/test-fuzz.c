/*
 * test-fuzz: a hypercall fuzzer.  An xorshift64* generator seeded from the
 * command line (seed=N, default 1) drives `calls=N` (default 100000)
 * hypercalls with random numbers (0..63, half of them among those Xen
 * dispatches for HVM guests; sometimes 64..127 or huge),
 * random arguments and random pointers: into a scratch buffer, into free RAM,
 * unmapped, non-canonical, read-only kernel text, NULL, the special pages.
 *
 * Calls that could end, block or wreck the guest are steered away (each rule
 * is in sanitize()).  At the end: a histogram of return values, and checks
 * that the guest's code, hypercall page and descriptor tables are intact and
 * that hypercalls still work.
 */
#include "sdk.h"

const char test_title[] = "test-fuzz: random hypercalls";

/* ---- PRNG ---- */
static uint64_t rng_state;

static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dULL;
}

static uint64_t rnd_below(uint64_t n)
{
    return n ? rnd() % n : 0;
}

/* ---- memory the hypervisor may write into ---- */
#define SCRATCH_PAGES 16
/* Pointers stay this far from the end: no hypercall writes more than 4 KiB
 * (the largest are XENVER_capabilities/commandline, 1 KiB), and the page
 * after the buffer is unmapped so an overrun faults instead of corrupting. */
#define SCRATCH_SLACK PAGE_SIZE
static uint8_t scratch[SCRATCH_PAGES + 1][PAGE_SIZE] __aligned(PAGE_SIZE);
#define SCRATCH_GUARD (scratch[SCRATCH_PAGES])

/* RAM the guest does not use (identity-mapped, writable). */
#define FREE_RAM_START 0x800000UL
#define FREE_RAM_SIZE  0x400000UL
static bool free_ram_ok;

/* ---- pointers ---- */
enum ptr_class {
    PTR_SCRATCH, PTR_FREE_RAM, PTR_UNMAPPED, PTR_NONCANONICAL, PTR_KERNEL_RO,
    PTR_NULL, PTR_SPECIAL, PTR_HIGH_HALF, NR_PTR_CLASSES
};
static unsigned long class_count[NR_PTR_CLASSES];

static unsigned long scratch_ptr(void)
{
    unsigned long off = rnd_below(SCRATCH_PAGES * PAGE_SIZE - SCRATCH_SLACK);
    if (rnd() & 1)
        off &= ~7UL;               /* mostly aligned, sometimes not */
    return (unsigned long)scratch + off;
}

static unsigned long pointer_of(enum ptr_class c)
{
    switch (c) {
    case PTR_SCRATCH:
        return scratch_ptr();
    case PTR_FREE_RAM:
        if (!free_ram_ok)
            return scratch_ptr();
        return FREE_RAM_START + rnd_below(FREE_RAM_SIZE - SCRATCH_SLACK);
    case PTR_UNMAPPED:      /* canonical, above our 4 GiB identity map */
        return 0x100000000UL + rnd_below(0x7fff00000000UL);
    case PTR_NONCANONICAL:
        return 0x0000800000000000UL | rnd_below(0x7fff000000000000UL);
    case PTR_KERNEL_RO:     /* mapped read-only: writes must fail */
        return (unsigned long)_text_start + rnd_below(_text_end - _text_start);
    case PTR_NULL:
        return rnd() & 1 ? 0 : rnd_below(PAGE_SIZE);
    case PTR_SPECIAL: {     /* ioreq .. console pages at 0xfeff0000.. */
        unsigned long pfn = 0xfeff0 + rnd_below(16);
        if (console_backend == CONSOLE_XEN_PV_RING && pfn == XEN_SPECIAL_PFN_CONSOLE)
            pfn = XEN_SPECIAL_PFN_XENSTORE;   /* keep our own console working */
        return (pfn << 12) + (rnd() & 1 ? 0 : rnd_below(PAGE_SIZE - 64));
    }
    case PTR_HIGH_HALF:
        return 0xffff800000000000UL + (rnd_below(1UL << 46) & ~7UL);
    default:
        return 0;
    }
}

static unsigned long random_pointer(void)
{
    enum ptr_class c = (enum ptr_class)rnd_below(NR_PTR_CLASSES);
    /* Valid memory half the time: that is where hypercalls go deepest. */
    if (rnd() & 1)
        c = rnd() & 3 ? PTR_SCRATCH : PTR_FREE_RAM;
    class_count[c]++;
    return pointer_of(c);
}

static unsigned long bad_pointer(void)
{
    static const enum ptr_class bad[] = { PTR_UNMAPPED, PTR_NONCANONICAL, PTR_NULL, PTR_HIGH_HALF };
    enum ptr_class c = bad[rnd_below(ARRAY_SIZE(bad))];
    class_count[c]++;
    return c == PTR_NULL ? 0 : pointer_of(c);   /* NULL, not page 0 (may be mapped) */
}

static unsigned long random_arg(void)
{
    switch (rnd_below(8)) {
    case 0: case 1: return rnd_below(64);                /* sub-op sized */
    case 2:         return (uint32_t)rnd();
    case 3:         return rnd();
    case 4:         return DOMID_SELF;
    case 5:         return ~0UL - rnd_below(4);           /* -1, -2, ... */
    default:        return random_pointer();
    }
}

/* Random words, small numbers and pointers: plausible structure contents. */
static void scribble(void *p, size_t len)
{
    uint64_t *w = p;
    for (size_t i = 0; i < len / 8; i++) {
        switch (rnd_below(4)) {
        case 0:  w[i] = rnd(); break;
        case 1:  w[i] = rnd_below(64) | (rnd_below(64) << 32); break;
        case 2:  w[i] = DOMID_SELF | (rnd_below(64) << 32); break;
        default: w[i] = random_pointer(); break;
        }
    }
}

/* ---- keeping the guest alive ---- */
struct call {
    unsigned long nr, a[5];
    bool direct;          /* VMCALL/VMMCALL instead of the hypercall page */
};

static unsigned long steered;

static void replace_sub_op(struct call *c, unsigned long op)
{
    c->a[0] = op;
    steered++;
}

static void sanitize(struct call *c)
{
    uint32_t op = (uint32_t)c->a[0];   /* Xen reads sub-op numbers as int */

    switch (c->nr) {
    case 6:  /* sched_op_compat */
    case __HYPERVISOR_sched_op:
        /* No block, shutdown, poll, remote_shutdown, shutdown_code (it
         * would change our final exit reason) or watchdog. */
        if (op >= SCHEDOP_block && op <= SCHEDOP_watchdog)
            replace_sub_op(c, rnd() & 1 ? SCHEDOP_yield : SCHEDOP_pin_override);
        break;
    case __HYPERVISOR_memory_op: {
        /* Only sub-ops that read state: nothing that adds or removes pages. */
        static const unsigned long safe[] = {
            XENMEM_maximum_ram_page, XENMEM_current_reservation,
            XENMEM_maximum_reservation, XENMEM_memory_map, XENMEM_maximum_gpfn,
        };
        c->a[0] = safe[rnd_below(ARRAY_SIZE(safe))];
        break;
    }
    case __HYPERVISOR_hvm_op:
        /* set_param: never CALLBACK_IRQ (index 0). */
        if (op == HVMOP_set_param) {
            if (rnd() & 1) {
                struct xen_hvm_param *p = (void *)scratch_ptr();
                p->index = 1 + (uint32_t)rnd_below(HVM_NR_PARAMS + 8);
                c->a[1] = (unsigned long)p;
            } else {
                c->a[1] = bad_pointer();
            }
        }
        break;
    case __HYPERVISOR_multicall:
        /* A batch could contain anything, shutdown included. */
        c->a[0] = bad_pointer();
        break;
    case __HYPERVISOR_console_io:
        /* Garbage on the console would corrupt the result line. */
        if (op == CONSOLEIO_write)
            c->a[2] = bad_pointer();
        break;
    case __HYPERVISOR_vcpu_op:
        /* No taking ourselves down, NMIs, or areas Xen keeps writing to. */
        if (op == VCPUOP_down || op == VCPUOP_register_runstate_memory_area ||
            op == VCPUOP_register_vcpu_info || op == VCPUOP_send_nmi ||
            op == VCPUOP_register_vcpu_time_memory_area)
            replace_sub_op(c, VCPUOP_is_up);
        break;
    case __HYPERVISOR_event_channel_op:
        /* FIFO set-up takes guest frame numbers Xen would write into. */
        if (op == EVTCHNOP_init_control || op == EVTCHNOP_expand_array)
            replace_sub_op(c, EVTCHNOP_status);
        break;
    case __HYPERVISOR_grant_table_op:
        /* transfer gives pages away; copy / unmap_and_replace can write
         * to our own frames. */
        if (op == GNTTABOP_transfer || op == GNTTABOP_copy || op == GNTTABOP_unmap_and_replace)
            replace_sub_op(c, GNTTABOP_query_size);
        break;
    case __HYPERVISOR_iret:
        c->direct = true;     /* its stub in the page is ud2 */
        break;
    default:
        break;
    }
}

/* The numbers Xen 4.10 dispatches for HVM/PVH guests: half the calls use
 * one of these so that they get past the -ENOSYS check. */
static const uint8_t hvm_hypercalls[] = {
    7, 12, 15, 17, 18, 20, 24, 26, 27, 29, 32, 33, 34, 35, 36, 38, 40, 41, 49,
};

static void random_call(struct call *c)
{
    unsigned int kind = (unsigned int)rnd_below(100);
    c->direct = false;
    if (kind < 50) {
        c->nr = hvm_hypercalls[rnd_below(ARRAY_SIZE(hvm_hypercalls))];
    } else if (kind < 90) {
        c->nr = rnd_below(64);
    } else if (kind < 95) {
        c->nr = 64 + rnd_below(64);               /* still in the page: stubs 64..127 */
    } else {
        /* Huge: low 32 bits >= 128 too, so a truncating decoder stays out
         * of the real table. */
        c->nr = (rnd() & ~0xffffffffUL) | (128 + rnd_below(0xffffff00UL));
        c->direct = true;
    }
    if (!c->direct && !rnd_below(16))
        c->direct = true;
    for (unsigned int i = 0; i < 5; i++)
        c->a[i] = random_arg();
    if (rnd() & 1)
        c->a[0] = rnd_below(32);                  /* first argument: usually a sub-op */
    sanitize(c);
}

static long issue(const struct call *c)
{
    if (!c->direct)
        return hypercall_page_call(c->nr, c->a[0], c->a[1], c->a[2], c->a[3], c->a[4]);
    if (cpu_is_amd())
        return hypercall_vmmcall(c->nr, c->a[0], c->a[1], c->a[2], c->a[3], c->a[4]);
    return hypercall_vmcall(c->nr, c->a[0], c->a[1], c->a[2], c->a[3], c->a[4]);
}

/* ---- results ---- */
#define HIST_SLOTS 128
static struct { long value; unsigned long count; } hist[HIST_SLOTS];
static unsigned int hist_used;
static unsigned long hist_other;

static void record(long rc)
{
    /* Non-negative results are counts, ports, pfns...: bucket them together. */
    long key = rc > 0 ? 1 : rc;
    for (unsigned int i = 0; i < hist_used; i++)
        if (hist[i].value == key) {
            hist[i].count++;
            return;
        }
    if (hist_used < HIST_SLOTS) {
        hist[hist_used].value = key;
        hist[hist_used++].count = 1;
    } else {
        hist_other++;
    }
}

static void print_histogram(void)
{
    /* Insertion sort by value: small table. */
    for (unsigned int i = 1; i < hist_used; i++)
        for (unsigned int j = i; j && hist[j - 1].value > hist[j].value; j--) {
            long v = hist[j].value;
            unsigned long n = hist[j].count;
            hist[j] = hist[j - 1];
            hist[j - 1].value = v;
            hist[j - 1].count = n;
        }
    printf("return value histogram:\n");
    for (unsigned int i = 0; i < hist_used; i++) {
        if (hist[i].value == 1)
            printf("  %12s %lu\n", "> 0", hist[i].count);
        else if (hist[i].value < 0 && hist[i].value >= -128)
            printf("  %12s %lu  (%ld)\n", xen_errno_name(hist[i].value), hist[i].count,
                   hist[i].value);
        else
            printf("  %12ld %lu\n", hist[i].value, hist[i].count);
    }
    if (hist_other)
        printf("  %12s %lu\n", "other", hist_other);
}

static uint32_t fnv(const volatile void *p, size_t len)
{
    const volatile uint8_t *b = p;
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++)
        h = (h ^ b[i]) * 16777619u;
    return h;
}

static bool ram_available(uint64_t start, uint64_t end)
{
    struct memmap_entry map[32];
    int n = memmap_read(map, ARRAY_SIZE(map), NULL);
    if (n <= 0)
        return false;
    for (int i = 0; i < n; i++)
        if (map[i].type == E820_RAM && map[i].addr <= start && map[i].addr + map[i].size >= end)
            return true;
    return false;
}

void test_main(void)
{
    if (!xen_present)
        test_skip("no Xen CPUID leaves: nothing to fuzz");

    uint64_t seed = cmdline_get_u64("seed", 1);
    unsigned long calls = (unsigned long)cmdline_get_u64("calls", 100000);
    rng_state = seed ? seed : 1;
    for (int i = 0; i < 8; i++)
        rnd();
    free_ram_ok = ram_available(FREE_RAM_START, FREE_RAM_START + FREE_RAM_SIZE);
    printf("seed=%llu calls=%lu scratch=%p free RAM at %#lx: %s\n", (unsigned long long)seed,
           calls, (void *)scratch, FREE_RAM_START, free_ram_ok ? "yes" : "no");

    sdk_pte_update(SCRATCH_GUARD, 0, PTE_P);

    uint32_t text_sum = fnv(_text_start, (size_t)(_text_end - _text_start));
    uint32_t page_sum = fnv(hypercall_page, sizeof(hypercall_page));
    uint32_t idt_sum = fnv(idt, sizeof(idt));
    uint64_t gdt_copy[GDT_ENTRIES];
    memcpy(gdt_copy, gdt, sizeof(gdt_copy));

    for (unsigned long i = 1; i <= calls; i++) {
        struct call c;
        if ((i & 255) == 1)
            scribble(scratch, SCRATCH_PAGES * PAGE_SIZE);
        random_call(&c);
        /* Fresh bytes where the first pointer argument points. */
        if (c.a[1] >= (unsigned long)scratch &&
            c.a[1] < (unsigned long)scratch + SCRATCH_PAGES * PAGE_SIZE - 64)
            scribble((void *)(c.a[1] & ~7UL), 64);
        record(issue(&c));
        if (i % 10000 == 0)
            printf("fuzz: %lu/%lu calls\n", i, calls);
    }

    sdk_pte_update(SCRATCH_GUARD, PTE_P, 0);
    print_histogram();
    printf("steered away from %lu dangerous calls; pointer classes:", steered);
    for (unsigned int i = 0; i < NR_PTR_CLASSES; i++)
        printf(" %lu", class_count[i]);
    printf("\n");

    check(fnv(_text_start, (size_t)(_text_end - _text_start)) == text_sum,
          "read-only kernel text is unchanged");
    check(fnv(hypercall_page, sizeof(hypercall_page)) == page_sum,
          "hypercall page is unchanged");
    check(fnv(idt, sizeof(idt)) == idt_sum && !memcmp(gdt_copy, gdt, sizeof(gdt_copy)),
          "IDT and GDT are unchanged");
    check_eq(HYPERVISOR_xen_version(XENVER_version, NULL), 0x0004000A,
             "hypercalls still work afterwards");
    check_eq(HYPERVISOR_vcpu_op(VCPUOP_is_up, 0, NULL), 1, "vCPU 0 is still up");
}
