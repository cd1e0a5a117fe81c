/* hog: a CPU-bound guest for scheduler tests.  Every vCPU (cfg vcpus=N) spins
 * on arithmetic for ever, or for `seconds=N` of pvclock time and then the
 * domain powers off: all it gets is what the scheduler gives it.
 * `yield=1`: vCPU 0 calls SCHEDOP_yield in a loop instead and reports the
 * median time until it runs again (with another yielding domain on the same
 * pCPU: two vCPU switches). */
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
    for (unsigned long i = 1; i < k; i++) {          /* insertion sort: k is small */
        uint64_t v = samples[i];
        unsigned long j = i;
        for (; j > 0 && samples[j - 1] > v; j--)
            samples[j] = samples[j - 1];
        samples[j] = v;
    }
    printf("hog: yields %lu p50 %llu ns\n", n, k ? (unsigned long long)samples[k / 2] : 0ULL);
}

void test_main(void)
{
    evtchn_init();
    smp_init();
    uint64_t seconds = cmdline_get_u64("seconds", 0);
    unsigned int n = 1;
    while (n < SDK_MAX_CPUS && HYPERVISOR_vcpu_op(VCPUOP_is_up, n, NULL) == 0) {
        if (smp_cpu_start(n, 10 * NS_PER_SEC) != 0)
            break;
        n++;
    }
    until = seconds ? xen_now() + seconds * NS_PER_SEC : 0;
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
