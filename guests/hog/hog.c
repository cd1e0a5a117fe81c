/* hog: a CPU-bound guest for scheduler tests.  Every vCPU (cfg vcpus=N) spins
 * on arithmetic for ever, or for `seconds=N` of pvclock time and then the
 * domain powers off: all it gets is what the scheduler gives it. */
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
    printf("hog: spinning on %u vCPUs\n", n);
    for (unsigned int i = 1; i < n; i++)
        smp_run(i, spin, NULL);
    spin(NULL);
    for (unsigned int i = 1; i < n; i++)
        smp_wait_done(i, 10 * NS_PER_SEC);
    printf("hog: done\n");
}
