/* hog: a CPU-bound guest for scheduler tests.  Every vCPU (cfg vcpus=N) spins
 * on arithmetic for ever, or for `seconds=N` (or `ms=N`) of pvclock time and
 * then the domain powers off: all it gets is what the scheduler gives it.
 * `yield=1`: vCPU 0 calls SCHEDOP_yield in a loop instead and reports the
 * median time until it runs again (with another yielding domain on the same
 * pCPU: two vCPU switches).
 * `period_us=P busy_us=B`: vCPU 0 instead spins B µs of every P µs period and
 * sleeps (singleshot timer, halt) until the next period starts; it reports how
 * late it woke (median, worst) and how many periods it had. */
#include "sdk.h"

const char test_title[] = "hog: spins";

static volatile uint64_t sink[SDK_MAX_CPUS];
static uint64_t until;

static void spin(void *arg)
{
    (void)arg;
    unsigned int me = smp_id();
    uint64_t x = me + 1;
    for (;;) {
        for (int i = 0; i < 100000; i++)
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        sink[me] = x;
        if (until && xen_now() >= until)
            return;
    }
}

#define YIELD_SAMPLES 2048
static uint64_t samples[YIELD_SAMPLES];
static void sort_samples(unsigned long k);

static void yield_loop(void)
{
    unsigned long n = 0;
    uint64_t last = xen_now();
    while (!until || last < until) {
        HYPERVISOR_sched_op(SCHEDOP_yield, NULL);
        uint64_t now = xen_now();
        samples[n % YIELD_SAMPLES] = now - last;
        last = now;
        n++;
    }
    unsigned long k = n < YIELD_SAMPLES ? n : YIELD_SAMPLES;
    sort_samples(k);
    printf("hog: yields %lu p50 %llu ns\n", n, k ? (unsigned long long)samples[k / 2] : 0ULL);
}

static void sort_samples(unsigned long k)
{
    for (unsigned long i = 1; i < k; i++) {          /* insertion sort: k is small */
        uint64_t v = samples[i];
        unsigned long j = i;
        for (; j > 0 && samples[j - 1] > v; j--)
            samples[j] = samples[j - 1];
        samples[j] = v;
    }
}

static void periodic_loop(uint64_t period_ns, uint64_t busy_ns)
{
    unsigned long n = 0;
    uint64_t start = xen_now(), worst = 0;
    volatile uint64_t x = 1;
    while (!until || start < until) {
        while (xen_now() < start + busy_ns)
            for (int i = 0; i < 100; i++)
                x = x * 6364136223846793005ULL + 1;
        uint64_t next = start + period_ns;
        uint64_t late = sleep_until(next) - next;
        samples[n % YIELD_SAMPLES] = late;
        if (late > worst)
            worst = late;
        n++;
        start = next;
    }
    unsigned long k = n < YIELD_SAMPLES ? n : YIELD_SAMPLES;
    sort_samples(k);
    printf("hog: periods %lu late p50 %llu ns max %llu ns\n", n,
           k ? (unsigned long long)samples[k / 2] : 0ULL, (unsigned long long)worst);
}

void test_main(void)
{
    evtchn_init();
    smp_init();
    uint64_t run_ns = cmdline_get_u64("seconds", 0) * NS_PER_SEC
                      + cmdline_get_u64("ms", 0) * NS_PER_MS;
    unsigned int n = 1;
    while (n < SDK_MAX_CPUS && HYPERVISOR_vcpu_op(VCPUOP_is_up, n, NULL) == 0) {
        if (smp_cpu_start(n, 10 * NS_PER_SEC) != 0)
            break;
        n++;
    }
    until = run_ns ? xen_now() + run_ns : 0;
    uint64_t period_us = cmdline_get_u64("period_us", 0);
    if (period_us) {
        printf("hog: spinning\n");
        periodic_loop(period_us * 1000, cmdline_get_u64("busy_us", 0) * 1000);
        return;
    }
    if (cmdline_get_u64("yield", 0)) {
        printf("hog: spinning\n");
        yield_loop();
        return;
    }
    printf("hog: spinning on %u vCPUs\n", n);
    for (unsigned int i = 1; i < n; i++)
        smp_run(i, spin, NULL);
    spin(NULL);
    for (unsigned int i = 1; i < n; i++)
        smp_wait_done(i, 10 * NS_PER_SEC);
    printf("hog: done\n");
}
