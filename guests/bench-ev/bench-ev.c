/* bench-ev: timing loops for events, grants, timers and SMP, in the style of
 * guests/bench: the guest writes a MARK byte (0x01) to the debug port 0xE9
 * before the first batch and after each batch; the host timestamps the
 * marks, so (time between two marks) / size is the cost of one operation.
 * A summary line is printed at the end.  Needs Xen (SKIP without it).
 *
 * Command line: mode=N batches=N size=N, plus per mode:
 *   mode=1  event-channel round trip between two domains (ping/pong).
 *           Rendezvous as test-gntpeer:
 *             server: role=server peer=<client domid>   prints `READY port=<p>`
 *             client: role=client peer=<server domid> port=<p>
 *           Both get the same batches/size.  The client marks; one operation
 *           = send a ping, wait for the pong.  wait=halt (default: sti; hlt),
 *           wait=poll (SCHEDOP_poll on the port) or wait=spin (pause loop).
 *   mode=2  GNTTABOP_copy of a 4 KiB page: gref (our own grant to ourselves)
 *           -> our own gmfn; one operation = one copy.  The data is verified.
 *   mode=3  timer wake-up: one operation = a single-shot timer at now +
 *           delay_us (default 200), `sti; hlt` until it fires.  Prints
 *           `timer lateness: n=.. min=.. avg=.. p99=.. max=.. us` (pvclock at
 *           wake-up minus the deadline).
 *   mode=4  SMP compute: cpus=N vCPUs (default: every vCPU, at most 4) each
 *           run bench_compute_kernel(size) per batch (the same loop as
 *           guests/bench mode 4); the mark follows the slowest.  The 4-vs-1
 *           scaling ratio is 4 * t(cpus=1) / t(cpus=4) per batch.
 */
#include "sdk.h"

const char test_title[] = "bench-ev: event, grant, timer and SMP timing loops";

#define MARK 0x01

static inline void mark(void)
{
    outb(0xE9, MARK);
}

/* Same source as guests/bench/bench.c: integer work only. */
__attribute__((noinline, used)) uint64_t bench_compute_kernel(uint64_t n)
{
    uint64_t x = 0x9E3779B97F4A7C15ull, acc = 0;
    for (uint64_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        acc += x * 0x2545F4914F6CDD1Dull;
    }
    return acc;
}

static unsigned long long batches, size;
static volatile uint64_t sink;

static void noop_handler(evtchn_port_t port, void *arg)
{
    (void)port;
    (void)arg;
}

/* ---- mode 1 ---- */
enum wait_kind { WAIT_HALT, WAIT_POLL, WAIT_SPIN };

static void wait_event_on(evtchn_port_t port, uint32_t target, enum wait_kind how)
{
    switch (how) {
    case WAIT_SPIN:
        local_irq_enable();
        while ((int32_t)(evtchn_count[port] - target) < 0)
            cpu_relax();
        local_irq_disable();
        break;
    case WAIT_POLL:
        while ((int32_t)(evtchn_count[port] - target) < 0) {
            if (!evtchn_is_pending(port))
                sched_poll(&port, 1, xen_now() + NS_PER_SEC);
            local_irq_enable();
            HYPERVISOR_xen_version(XENVER_version, NULL);   /* let the upcall in */
            local_irq_disable();
        }
        break;
    default:
        if (!sdk_wait_u32_ge(&evtchn_count[port], target, 60 * NS_PER_SEC))
            test_fail("no event on port %u within 60 s", port);
        break;
    }
}

static void mode_pingpong(void)
{
    char role[16], how_s[8] = "halt";
    if (!cmdline_get("role", role, sizeof(role)) || !cmdline_get("peer", NULL, 0))
        test_skip("mode=1 needs role= and peer= (two domains)");
    cmdline_get("wait", how_s, sizeof(how_s));
    enum wait_kind how = !strcmp(how_s, "spin") ? WAIT_SPIN :
                         !strcmp(how_s, "poll") ? WAIT_POLL : WAIT_HALT;
    domid_t peer = (domid_t)cmdline_get_u64("peer", 0);
    unsigned long long total = batches * size;

    if (!strcmp(role, "server")) {
        long p = evtchn_alloc_unbound(peer);
        if (p < 0)
            test_fail("alloc_unbound: %s", xen_errno_name(p));
        evtchn_set_handler((evtchn_port_t)p, noop_handler, NULL);
        printf("READY port=%ld\n", p);
        for (unsigned long long i = 1; i <= total; i++) {
            wait_event_on((evtchn_port_t)p, (uint32_t)i, how);
            evtchn_send((evtchn_port_t)p);
        }
        printf("bench-ev mode 1 server: %llu pongs sent\n", total);
        return;
    }
    evtchn_port_t rport = (evtchn_port_t)cmdline_get_u64("port", 0);
    long lp = evtchn_bind_interdomain(peer, rport);
    if (lp < 0)
        test_fail("bind_interdomain(%u, %u): %s", peer, rport, xen_errno_name(lp));
    evtchn_set_handler((evtchn_port_t)lp, noop_handler, NULL);
    evtchn_clear_pending((evtchn_port_t)lp);    /* the bind's own notification */
    uint32_t base = evtchn_count[lp];
    uint64_t t0 = xen_now();
    mark();
    for (unsigned long long b = 0; b < batches; b++) {
        for (unsigned long long i = 0; i < size; i++) {
            evtchn_send((evtchn_port_t)lp);
            base++;
            wait_event_on((evtchn_port_t)lp, base, how);
        }
        mark();
    }
    uint64_t t1 = xen_now();
    printf("bench-ev mode 1: %llu round trips (wait=%s), %llu ns each\n", total, how_s,
           total ? (unsigned long long)((t1 - t0) / total) : 0);
}

/* ---- mode 2 ---- */
static uint8_t src_page[PAGE_SIZE] __aligned(PAGE_SIZE);
static uint8_t dst_page[PAGE_SIZE] __aligned(PAGE_SIZE);

static void mode_copy(void)
{
    long rc = gnttab_init(1);
    if (rc < 0)
        test_fail("grant table: %s", xen_errno_name(rc));
    long me = xen_own_domid();
    if (me < 0)
        test_fail("own domid: %s", xen_errno_name(me));
    for (unsigned int i = 0; i < PAGE_SIZE; i++)
        src_page[i] = (uint8_t)(i * 7 + 3);
    grant_ref_t ref = GNTTAB_NR_RESERVED;
    gnttab_grant(ref, (domid_t)me, (unsigned long)src_page >> 12, true);
    struct gnttab_copy c;
    unsigned long failures = 0;
    uint64_t t0 = xen_now();
    mark();
    for (unsigned long long b = 0; b < batches; b++) {
        for (unsigned long long i = 0; i < size; i++) {
            memset(&c, 0, sizeof(c));
            c.source.u.ref = ref;
            c.source.domid = DOMID_SELF;
            c.dest.u.gmfn = (unsigned long)dst_page >> 12;
            c.dest.domid = DOMID_SELF;
            c.len = PAGE_SIZE;
            c.flags = GNTCOPY_source_gref;
            if (gnttab_copy_one(&c) != 0 || c.status != GNTST_okay)
                failures++;
        }
        mark();
    }
    uint64_t t1 = xen_now();
    unsigned long long total = batches * size;
    if (failures)
        test_fail("%lu of %llu copies failed (last status %s)", failures, total,
                  gntst_name(c.status));
    if (memcmp(src_page, dst_page, PAGE_SIZE))
        test_fail("the copied page differs");
    gnttab_revoke(ref, NULL);
    printf("bench-ev mode 2: %llu grant copies of 4 KiB, %llu ns each\n", total,
           total ? (unsigned long long)((t1 - t0) / total) : 0);
}

/* ---- mode 3 ---- */
static int64_t late[4096];

static void mode_timer(void)
{
    uint64_t delay = cmdline_get_u64("delay_us", 200) * NS_PER_US;
    if (timer_init() < 0)
        test_fail("VIRQ_TIMER cannot be bound");
    timer_stop_periodic();
    unsigned int n = 0;
    int64_t sum = 0, mx = INT64_MIN, mn = INT64_MAX;
    mark();
    for (unsigned long long b = 0; b < batches; b++) {
        for (unsigned long long i = 0; i < size; i++) {
            uint64_t deadline = xen_now() + delay;
            uint64_t woke = sleep_until(deadline);
            int64_t l = (int64_t)(woke - deadline);
            sum += l;
            if (l > mx)
                mx = l;
            if (l < mn)
                mn = l;
            if (n < ARRAY_SIZE(late))
                late[n] = l;
            n++;
        }
        mark();
    }
    unsigned int m = n < ARRAY_SIZE(late) ? n : ARRAY_SIZE(late);
    for (unsigned int gap = m / 2; gap; gap /= 2)          /* shell sort */
        for (unsigned int i = gap; i < m; i++) {
            int64_t v = late[i];
            unsigned int j = i;
            for (; j >= gap && late[j - gap] > v; j -= gap)
                late[j] = late[j - gap];
            late[j] = v;
        }
    unsigned int p99 = m ? (m * 99 + 99) / 100 - 1 : 0;
    if (n)
        printf("timer lateness: n=%u min=%lld avg=%lld p99=%lld max=%lld us\n", n,
               (long long)mn / 1000, (long long)(sum / n) / 1000,
               (long long)late[p99] / 1000, (long long)mx / 1000);
}

/* ---- mode 4 ---- */
static void compute_work(void *arg)
{
    (void)arg;
    sink += bench_compute_kernel(size);
}

static void mode_smp(void)
{
    unsigned int want = (unsigned int)cmdline_get_u64("cpus", 4), n = 1;
    if (want > SDK_MAX_CPUS)
        want = SDK_MAX_CPUS;
    smp_init();
    for (unsigned int i = 1; i < want; i++) {
        if (HYPERVISOR_vcpu_op(VCPUOP_is_up, i, NULL) < 0)
            break;
        long rc = smp_cpu_start(i, 10 * NS_PER_SEC);
        if (rc < 0)
            test_fail("vCPU %u did not start: %s", i, xen_errno_name(rc));
        n++;
    }
    mark();
    for (unsigned long long b = 0; b < batches; b++) {
        for (unsigned int i = 1; i < n; i++)
            smp_run(i, compute_work, NULL);
        compute_work(NULL);
        for (unsigned int i = 1; i < n; i++)
            if (!smp_wait_done(i, 600 * NS_PER_SEC))
                test_fail("vCPU %u did not finish batch %llu", i, b);
        mark();
    }
    printf("bench-ev mode 4: %u vCPUs x %llu batches of compute(%llu) (sink %#llx)\n", n,
           batches, size, (unsigned long long)sink);
}

void test_main(void)
{
    if (!xen_present)
        test_skip("needs Xen");
    unsigned long long mode = cmdline_get_u64("mode", 1);
    batches = cmdline_get_u64("batches", 10);
    size = cmdline_get_u64("size", 1000);
    local_irq_disable();
    long rc = evtchn_init();
    if (rc < 0)
        test_fail("event channels: %s", xen_errno_name(rc));
    switch (mode) {
    case 1: mode_pingpong(); break;
    case 2: mode_copy(); break;
    case 3: mode_timer(); break;
    case 4: mode_smp(); break;
    default: test_fail("unknown mode %llu", mode);
    }
}
