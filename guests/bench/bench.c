/* bench: timing loops for `make bench`.
 *
 * The host timestamps every MARK byte written to the debug port (0xE9); the
 * time between two marks divided by the batch size is the cost of one
 * operation.  Command line: mode=N batches=N size=N
 *   mode=1  null hypercall (xen_version(XENVER_version)) through the page
 *   mode=2  #PF on a not-present page, handled by the guest and returned
 *   mode=3  TLB: reload CR3, touch `size` pages (misses), touch them again (hits)
 *   mode=4  compute: bench_compute_kernel(size) once per batch
 */
#include "sdk.h"

const char test_title[] = "bench: timing loops";

#define MARK 0x01
#define TLB_REGION (32ul << 20)        /* needs memory >= 32 MiB + size pages */
#define UNMAPPED ((volatile uint8_t *)0x200000000ul)   /* 8 GiB: no mapping */

static inline void mark(void)
{
    outb(0xE9, MARK);
}

/* Plain integer work, also run on a bare engine by bench/run.py (same bytes). */
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

void test_main(void)
{
    unsigned long long mode = cmdline_get_u64("mode", 1);
    unsigned long long batches = cmdline_get_u64("batches", 100);
    unsigned long long size = cmdline_get_u64("size", 1000);
    volatile uint64_t sink = 0;
    uint8_t v;

    mark();
    for (unsigned long long b = 0; b < batches; b++) {
        switch (mode) {
        case 1:
            for (unsigned long long i = 0; i < size; i++)
                sink += HYPERVISOR_xen_version(XENVER_version, NULL);
            mark();
            break;
        case 2:
            for (unsigned long long i = 0; i < size; i++)
                sink += probe_read8(UNMAPPED, &v);
            mark();
            break;
        case 3: {
            volatile uint8_t *region = (volatile uint8_t *)TLB_REGION;
            write_cr3(read_cr3());
            mark();
            for (unsigned long long p = 0; p < size; p++)
                sink += region[p << 12];
            mark();
            for (unsigned long long p = 0; p < size; p++)
                sink += region[p << 12];
            mark();
            break;
        }
        case 4:
            sink += bench_compute_kernel(size);
            mark();
            break;
        default:
            test_fail("unknown mode %llu", mode);
        }
    }
    printf("bench mode %llu: %llu batches of %llu (sink %#llx)\n", mode, batches, size,
           (unsigned long long)sink);
}
