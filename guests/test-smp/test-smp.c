/*
 * test-smp: secondary vCPUs (the cfg has vcpus=4).  Needs Xen (SKIP without
 * it).  Only the boot vCPU prints; the others record results in memory.
 *
 * Command line (optional):
 *   iters=N       lock xadd increments per vCPU (default 200000)
 *   timeout_ms=N  limit for each wait (default 20000)
 *
 * Checks, in order:
 *  1. vCPU count: VCPUOP_is_up(0) = 1, is_up(i) = 0 for the others, the first
 *     id past the last vCPU -> -ENOENT (this gives N; N >= 2 is required);
 *     the boot vCPU's CPUID leaf base+4 gives vCPU id 0;
 *  2. start-up: each AP gets VCPUOP_initialise (vcpu_hvm_context, 64-bit
 *     mode) + VCPUOP_up and reaches SDK code; its CPUID leaf says vCPU i;
 *     is_up(i) = 1; a second VCPUOP_initialise -> -EEXIST; VCPUOP_up of a
 *     running vCPU -> 0;
 *  3. counter: every vCPU adds 1 `iters` times with lock xadd, and also
 *     iters/8 times under a spinlock; the totals must be exact;
 *  4. IPIs: each vCPU binds an IPI port to itself; vCPU 0 sends to each AP,
 *     and the handler must run on that AP (CPUID vCPU id in the handler);
 *     each AP sends to its own vCPU-0 port back, handled on vCPU 0;
 *  5. per-vCPU single-shot timers: each AP binds VIRQ_TIMER on itself and
 *     sets a timer (1+i ms); it fires on that AP at or after its deadline;
 *     set_singleshot_timer for another vCPU -> -EINVAL;
 *  6. cross-modifying code: an AP writes `mov $imm, %eax; ret` into a buffer,
 *     another vCPU runs it (after CPUID to serialise) and must get imm; then
 *     the writer changes imm and the runner, which has run the old code,
 *     must see the new one (several rounds, writer and runner swapped);
 *  7. VCPUOP_down of the last AP: is_up -> 0, an IPI sent to it is not
 *     handled while it is down; VCPUOP_up: is_up -> 1, the pending IPI is
 *     then handled and it runs new work.
 * Last line: `Test result: SUCCESS` when every check passed.
 */
#include "sdk.h"

const char test_title[] = "test-smp: AP start-up, atomics, IPIs, per-vCPU timers, CMC, down/up";

static unsigned int nr_cpus;
static uint64_t timeout_ns;
static unsigned long iters;

static volatile uint32_t counter;
static spinlock_t lock = SPINLOCK_INIT;
static volatile uint64_t locked_counter;

/* ---- per-vCPU results ---- */
struct result {
    volatile uint32_t ipi_recv;          /* events on this vCPU's own IPI port */
    volatile uint32_t ipi_recv_vcpu;     /* CPUID vCPU id inside that handler */
    volatile uint32_t back_recv;         /* events on vCPU 0's port for this AP */
    volatile uint32_t back_recv_vcpu;
    evtchn_port_t ipi_port, back_port;
    volatile long rc;
    volatile uint64_t t_deadline;
    volatile uint32_t code_result;
    volatile bool timer_fired;
};
static struct result res[SDK_MAX_CPUS];

static void ipi_handler(evtchn_port_t port, void *arg)
{
    struct result *r = arg;
    (void)port;
    r->ipi_recv_vcpu = cpuid_vcpu_id();
    r->ipi_recv++;
}

static void back_handler(evtchn_port_t port, void *arg)
{
    struct result *r = arg;
    (void)port;
    r->back_recv_vcpu = cpuid_vcpu_id();
    r->back_recv++;
}

static bool run_on(unsigned int cpu, smp_fn fn, void *arg)
{
    if (cpu == 0) {
        fn(arg);
        return true;
    }
    smp_run(cpu, fn, arg);
    return smp_wait_done(cpu, timeout_ns);
}

static bool run_everywhere(smp_fn fn)
{
    for (unsigned int i = 1; i < nr_cpus; i++)
        smp_run(i, fn, &res[i]);
    fn(&res[0]);
    bool ok = true;
    for (unsigned int i = 1; i < nr_cpus; i++)
        ok &= check(smp_wait_done(i, timeout_ns), "vCPU %u finished its work", i);
    return ok;
}

/* ---- 1, 2 ---- */
static void part_count_and_start(void)
{
    check_rc(HYPERVISOR_vcpu_op(VCPUOP_is_up, 0, NULL), 1, "is_up(0)");
    check_eq(cpuid_vcpu_id(), 0, "boot vCPU: CPUID leaf base+4 says vCPU 0");
    nr_cpus = 1;
    for (unsigned int i = 1; i < SDK_MAX_CPUS; i++) {
        long rc = HYPERVISOR_vcpu_op(VCPUOP_is_up, i, NULL);
        if (rc == -XEN_ENOENT)
            break;
        check_rc(rc, 0, "is_up(%u) before start-up", i);
        nr_cpus = i + 1;
    }
    if (nr_cpus < SDK_MAX_CPUS)
        check_rc(HYPERVISOR_vcpu_op(VCPUOP_is_up, nr_cpus, NULL), -XEN_ENOENT,
                 "is_up(%u): no such vCPU", nr_cpus);
    printf("%u vCPUs\n", nr_cpus);
    if (nr_cpus < 2)
        test_fail("needs at least 2 vCPUs (cfg vcpus=4)");

    for (unsigned int i = 1; i < nr_cpus; i++) {
        printf("starting vCPU %u\n", i);
        long rc = smp_cpu_start(i, timeout_ns);
        if (!check_rc(rc, 0, "vCPU %u: VCPUOP_initialise + VCPUOP_up, running SDK code", i))
            test_fail("vCPU %u did not start (%s)", i, xen_errno_name(rc));
        check_eq(cpus[i].vcpu_id, i, "vCPU %u: CPUID leaf base+4 vCPU id", i);
        check_rc(HYPERVISOR_vcpu_op(VCPUOP_is_up, i, NULL), 1, "is_up(%u) after start-up", i);
    }
    struct vcpu_hvm_context ctx;
    smp_fill_context(1, &ctx);
    check_rc(HYPERVISOR_vcpu_op(VCPUOP_initialise, 1, &ctx), -XEN_EEXIST,
             "VCPUOP_initialise(1) again");
    check_rc(HYPERVISOR_vcpu_op(VCPUOP_up, 1, NULL), 0, "VCPUOP_up(1) while it runs");
}

/* ---- 3 ---- */
static void count_work(void *arg)
{
    (void)arg;
    for (unsigned long i = 0; i < iters; i++)
        atomic_xadd_u32(&counter, 1);
    for (unsigned long i = 0; i < iters / 8; i++) {
        spin_lock(&lock);
        locked_counter = locked_counter + 1;
        spin_unlock(&lock);
    }
}

static void part_counter(void)
{
    counter = 0;
    locked_counter = 0;
    uint64_t t0 = xen_now();
    run_everywhere(count_work);
    uint64_t t1 = xen_now();
    check_eq(counter, (uint64_t)iters * nr_cpus, "lock xadd: %u vCPUs x %lu increments",
             nr_cpus, iters);
    check_eq(locked_counter, (uint64_t)(iters / 8) * nr_cpus,
             "spinlock: %u vCPUs x %lu increments", nr_cpus, iters / 8);
    printf("  took %llu ms\n", (unsigned long long)(t1 - t0) / NS_PER_MS);
}

/* ---- 4 ---- */
static void bind_own_ipi(void *arg)
{
    struct result *r = arg;
    unsigned int me = smp_id();
    long p = evtchn_bind_ipi(cpus[me].vcpu_id);
    r->rc = p;
    if (p > 0) {
        evtchn_set_handler((evtchn_port_t)p, ipi_handler, r);
        r->ipi_port = (evtchn_port_t)p;
    }
}

static void wait_own_ipi(void *arg)
{
    struct result *r = arg;
    sdk_wait_u32_ge(&r->ipi_recv, 1, timeout_ns);
}

static void send_back(void *arg)
{
    struct result *r = arg;
    r->rc = evtchn_send(r->back_port);
}

static void part_ipis(void)
{
    run_everywhere(bind_own_ipi);
    for (unsigned int i = 0; i < nr_cpus; i++)
        check(res[i].rc > 0, "vCPU %u bound an IPI to itself (port %ld)", i, res[i].rc);

    /* vCPU 0 -> each AP. */
    for (unsigned int i = 1; i < nr_cpus; i++) {
        if (!res[i].ipi_port)
            continue;
        smp_run(i, wait_own_ipi, &res[i]);
        check_rc(evtchn_send(res[i].ipi_port), 0, "vCPU 0 sends on vCPU %u's port %u", i,
                 res[i].ipi_port);
        check(smp_wait_done(i, timeout_ns), "vCPU %u woke for its IPI", i);
        check(res[i].ipi_recv == 1 && res[i].ipi_recv_vcpu == i,
              "vCPU %u's port handled once, on vCPU %u", i, res[i].ipi_recv_vcpu);
        check_eq(evtchn_last_vcpu_seen[res[i].ipi_port], i,
                 "the SDK dispatched port %u on vCPU %u", res[i].ipi_port, i);
    }

    /* Each AP -> its own port owned by vCPU 0. */
    for (unsigned int i = 1; i < nr_cpus; i++) {
        long p = evtchn_bind_ipi(0);
        if (check(p > 0, "vCPU 0: IPI port %ld for replies from vCPU %u", p, i)) {
            res[i].back_port = (evtchn_port_t)p;
            evtchn_set_handler((evtchn_port_t)p, back_handler, &res[i]);
        }
    }
    for (unsigned int i = 1; i < nr_cpus; i++)
        if (res[i].back_port)
            smp_run(i, send_back, &res[i]);
    for (unsigned int i = 1; i < nr_cpus; i++) {
        if (!res[i].back_port)
            continue;
        smp_wait_done(i, timeout_ns);
        check_rc(res[i].rc, 0, "vCPU %u sent on vCPU 0's port %u", i, res[i].back_port);
        sdk_wait_u32_ge(&res[i].back_recv, 1, timeout_ns);
        check(res[i].back_recv == 1 && res[i].back_recv_vcpu == 0,
              "reply from vCPU %u handled once, on vCPU %u", i, res[i].back_recv_vcpu);
    }
}

/* ---- 5 ---- */
static void timer_work(void *arg)
{
    struct result *r = arg;
    struct cpu *c = this_cpu();
    long p = timer_init();
    r->rc = p;
    if (p < 0)
        return;
    uint32_t seen = c->timer_events;
    local_irq_disable();
    uint64_t deadline = xen_now() + (1 + smp_id()) * NS_PER_MS;
    r->t_deadline = deadline;
    r->rc = timer_set_singleshot(deadline, VCPU_SSHOTTMR_future);
    if (r->rc < 0)
        return;
    evtchn_port_t tp = c->timer_port;
    uint64_t give_up = xen_now() + timeout_ns;
    while (c->timer_events == seen && xen_now() < give_up) {
        sched_poll(&tp, 1, xen_now() + 10 * NS_PER_MS);
        local_irq_enable();
        HYPERVISOR_xen_version(XENVER_version, NULL);
        local_irq_disable();
    }
    r->timer_fired = c->timer_events != seen;
    local_irq_enable();
}

static void part_timers(void)
{
    for (unsigned int i = 1; i < nr_cpus; i++)
        smp_run(i, timer_work, &res[i]);
    for (unsigned int i = 1; i < nr_cpus; i++) {
        check(smp_wait_done(i, timeout_ns), "vCPU %u finished its timer", i);
        struct cpu *c = &cpus[i];
        if (!check(res[i].rc >= 0 && c->timer_port, "vCPU %u: VIRQ_TIMER port %u (rc %s)", i,
                   c->timer_port, xen_errno_name(res[i].rc)))
            continue;
        check(res[i].timer_fired, "vCPU %u: VIRQ_TIMER fired", i);
        check_eq(evtchn_last_vcpu_seen[c->timer_port], i, "vCPU %u: handled on vCPU %u", i, i);
        check((int64_t)(c->timer_last_ns - res[i].t_deadline) >= 0,
              "vCPU %u: at or after its deadline (lateness %lld us)", i,
              (long long)(int64_t)(c->timer_last_ns - res[i].t_deadline) / 1000);
    }
    struct vcpu_set_singleshot_timer t = { .timeout_abs_ns = xen_now() + NS_PER_SEC };
    check_rc(HYPERVISOR_vcpu_op(VCPUOP_set_singleshot_timer, 1, &t), -XEN_EINVAL,
             "set_singleshot_timer for vCPU 1 from vCPU 0");
}

/* ---- 6: cross-modifying code ---- */
static uint8_t code_buf[64] __aligned(64);
static volatile uint32_t code_value;

static void write_code(void *arg)
{
    (void)arg;
    uint32_t v = code_value;
    volatile uint8_t *p = code_buf;
    p[0] = 0xb8;                        /* mov $imm32, %eax */
    p[1] = (uint8_t)v;
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)(v >> 16);
    p[4] = (uint8_t)(v >> 24);
    p[5] = 0xc3;                        /* ret */
    mb();
}

static void run_code(void *arg)
{
    struct result *r = arg;
    uint32_t a, b, c, d;
    cpuid_count(0, 0, &a, &b, &c, &d);  /* serialise before running new code */
    uint32_t (*fn)(void) = (uint32_t (*)(void))(void *)code_buf;
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)         /* run it several times: it gets cached */
        v = fn();
    r->code_result = v;
}

static void part_cmc(void)
{
    unsigned int a = 1, b = nr_cpus > 2 ? 2 : 0;
    static const uint32_t values[] = { 0x11111111, 0x22222222, 0x33333333, 0x44444444,
                                       0x55555555, 0x66666666 };
    for (unsigned int round = 0; round < ARRAY_SIZE(values); round++) {
        unsigned int writer = round < 3 ? a : b, runner = round < 3 ? b : a;
        code_value = values[round];
        if (!check(run_on(writer, write_code, NULL), "round %u: vCPU %u wrote the code",
                   round, writer))
            return;
        res[runner].code_result = 0;
        run_on(runner, run_code, &res[runner]);
        check_eq(res[runner].code_result, values[round],
                 "round %u: code written by vCPU %u, run on vCPU %u", round, writer, runner);
    }
}

/* ---- 7: down / up ---- */
static void part_down_up(void)
{
    unsigned int v = nr_cpus - 1;
    struct result *r = &res[v];
    if (!r->ipi_port) {
        skip_part("down/up: vCPU %u has no IPI port", v);
        return;
    }
    check(smp_wait_done(v, timeout_ns), "vCPU %u is idle", v);
    check_rc(HYPERVISOR_vcpu_op(VCPUOP_down, v, NULL), 0, "VCPUOP_down(%u)", v);
    check_rc(HYPERVISOR_vcpu_op(VCPUOP_is_up, v, NULL), 0, "is_up(%u) after down", v);
    uint32_t before = r->ipi_recv;
    check_rc(evtchn_send(r->ipi_port), 0, "send an IPI to the down vCPU %u", v);
    udelay_ns(20 * NS_PER_MS);
    check_eq(r->ipi_recv, before, "not handled while vCPU %u is down", v);
    check_rc(HYPERVISOR_vcpu_op(VCPUOP_up, v, NULL), 0, "VCPUOP_up(%u)", v);
    check_rc(HYPERVISOR_vcpu_op(VCPUOP_is_up, v, NULL), 1, "is_up(%u) after up", v);
    check(sdk_wait_u32_ge(&r->ipi_recv, before + 1, timeout_ns) && r->ipi_recv_vcpu == v,
          "the pending IPI was handled on vCPU %u once it was up", v);
    counter = 0;
    unsigned long saved = iters;
    iters = 1000;
    smp_run(v, count_work, r);
    check(smp_wait_done(v, timeout_ns) && counter == 1000, "vCPU %u runs new work after up", v);
    iters = saved;
}

void test_main(void)
{
    if (!xen_present)
        test_skip("needs Xen (VCPUOP_initialise/up, event channels)");
    iters = cmdline_get_u64("iters", 200000);
    timeout_ns = cmdline_get_u64("timeout_ms", 20000) * NS_PER_MS;
    local_irq_disable();
    long rc = evtchn_init();
    if (!check_rc(rc, 0, "event channels set up"))
        test_fail("no event channels (%s)", xen_errno_name(rc));
    smp_init();
    check(cpus[0].ipi_port != 0, "vCPU 0 bound its wake-up IPI (port %u)", cpus[0].ipi_port);

    printf("-- vCPUs and start-up\n");
    part_count_and_start();
    printf("-- shared counter\n");
    part_counter();
    printf("-- IPIs\n");
    part_ipis();
    printf("-- per-vCPU timers\n");
    part_timers();
    printf("-- cross-modifying code\n");
    part_cmc();
    printf("-- VCPUOP_down / up\n");
    part_down_up();
    local_irq_disable();
}
