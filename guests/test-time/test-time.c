/*
 * test-time: the pvclock (vcpu_time_info), RDTSC, the wall clock and
 * single-shot timer accuracy.  Needs Xen (SKIP without it).
 *
 * Command line (all optional):
 *   reads=N        pvclock reads in the monotonicity loop (default 200000)
 *   samples=N      `pvclock <ns>` lines for the harness (default 20)
 *   timers=N       single-shot timers measured (default 50, at most 2000)
 *   seed=N         PRNG seed for the timer offsets (default 1)
 *   max_late_us=N  fail if a timer is later than this (default 0: no bound)
 *
 * Output and checks:
 *  - the vcpu_time_info fields (version even, mul != 0) and CPUID leaf
 *    base+3 (tsc_khz, mul, shift) are printed;
 *  - monotonic: `reads` consecutive reads never go back; the number of
 *    clock updates seen and the largest step are printed; at each update
 *    the old and new parameters must agree on "now" within 1 ms (the jump
 *    is printed);
 *  - consistent with RDTSC: over ~20 ms, pvclock ns and TSC ticks / tsc_khz
 *    agree within 1% (when CPUID gives tsc_khz);
 *  - harness lines `pvclock <ns>`: each is written by one console_io
 *    hypercall issued right after the pvclock read (the digits are produced
 *    between the two with no other call), so the harness can compare <ns>
 *    with its own timestamp of that hypercall (requirement: within 10 us).
 *    Only with the console_io console backend (else skip);
 *  - the hypervisor's clock: HVMOP_get_time between two pvclock reads lies
 *    between them, and the closest sample is within 10 us of the first read
 *    (`get_time: closest=.. farthest=.. ns`);
 *  - wall clock: wc_version even, wc_nsec < 1e9, the date is between 2017
 *    and 2100; printed as `wallclock: YYYY-MM-DD hh:mm:ss UTC`;
 *  - timers: N single-shot timers at random offsets 100 us .. 5 ms (future
 *    flag), each waited for with `sti; hlt`; lateness = pvclock in the
 *    VIRQ_TIMER handler - deadline.  None may be early (tolerance 20 us);
 *    `timer lateness: n=.. min=.. avg=.. p99=.. max=.. us` is printed.
 * Last line: `Test result: SUCCESS` when every check passed.
 */
#include "sdk.h"

const char test_title[] = "test-time: pvclock, rdtsc, wall clock, timer accuracy";

static uint64_t rng_state;

static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dULL;
}

static volatile struct vcpu_time_info *clock_info(void)
{
    return &this_cpu()->vcpu_info->time;
}

static void part_fields(uint32_t *tsc_khz)
{
    struct pvclock_snapshot s;
    pvclock_snapshot(clock_info(), &s);
    printf("vcpu_time_info: version %u, tsc_timestamp %llu, system_time %llu ns, mul %#x, "
           "shift %d, flags %#x\n", s.version, (unsigned long long)s.tsc_timestamp,
           (unsigned long long)s.system_time, s.mul, s.shift, s.flags);
    check(!(s.version & 1), "version is even (%u)", s.version);
    check(s.mul != 0, "tsc_to_system_mul is not zero");
    check(s.shift >= -31 && s.shift <= 31, "tsc_shift in range (%d)", s.shift);
    check(rdtsc() + (1ULL << 32) >= s.tsc_timestamp, "tsc_timestamp is not in the future");

    *tsc_khz = 0;
    if (cpuid_eax(xen_cpuid_base) >= xen_cpuid_base + 3) {
        uint32_t a, b, c, d;
        cpuid_count(xen_cpuid_base + 3, 0, &a, &b, &c, &d);
        printf("CPUID %#x.0: flags %#x, tsc_mode %u, tsc_khz %u, incarnation %u\n",
               xen_cpuid_base + 3, a, b, c, d);
        *tsc_khz = c;
        cpuid_count(xen_cpuid_base + 3, 1, &a, &b, &c, &d);
        printf("CPUID %#x.1: offset %#llx, mul %#x, shift %d\n", xen_cpuid_base + 3,
               ((unsigned long long)b << 32) | a, c, (int)d);
        if (c != s.mul || (int)d != s.shift)
            note("CPUID base+3.1 mul/shift differ from vcpu_time_info (%#x/%d vs %#x/%d)",
                 c, (int)d, s.mul, s.shift);
    }
}

static void part_monotonic(unsigned long reads)
{
    volatile struct vcpu_time_info *t = clock_info();
    struct pvclock_snapshot prev_s, s;
    pvclock_snapshot(t, &prev_s);
    uint64_t prev = pvclock_read(t, NULL), max_step = 0;
    unsigned long back = 0, updates = 0;
    int64_t max_jump = 0;
    for (unsigned long i = 0; i < reads; i++) {
        uint64_t tsc;
        uint64_t now = pvclock_read(t, &tsc);
        if (now < prev) {
            if (!back++)
                printf("  went back: %llu -> %llu\n", (unsigned long long)prev,
                       (unsigned long long)now);
        } else if (now - prev > max_step) {
            max_step = now - prev;
        }
        prev = now;
        if (t->version != prev_s.version) {
            pvclock_snapshot(t, &s);
            if (s.version != prev_s.version) {
                /* Both parameter sets evaluated at the same TSC value. */
                uint64_t tsc2 = rdtsc();
                uint64_t a = prev_s.system_time +
                             pvclock_scale(tsc2 - prev_s.tsc_timestamp, prev_s.mul, prev_s.shift);
                uint64_t b = s.system_time +
                             pvclock_scale(tsc2 - s.tsc_timestamp, s.mul, s.shift);
                int64_t jump = (int64_t)(b - a);
                if ((jump < 0 ? -jump : jump) > (max_jump < 0 ? -max_jump : max_jump))
                    max_jump = jump;
                updates++;
                prev_s = s;
            }
        }
    }
    check(back == 0, "%lu reads: never backwards (%lu times)", reads, back);
    printf("  clock updates seen: %lu, largest step between reads: %llu ns\n", updates,
           (unsigned long long)max_step);
    check((max_jump < 0 ? -max_jump : max_jump) < (int64_t)NS_PER_MS,
          "old and new parameters agree at each update (largest jump %lld ns)",
          (long long)max_jump);
}

static void part_tsc(uint32_t tsc_khz)
{
    uint64_t tsc0, tsc1;
    uint64_t t0 = pvclock_read(clock_info(), &tsc0);
    while (pvclock_read(clock_info(), &tsc1) - t0 < 20 * NS_PER_MS)
        cpu_relax();
    uint64_t t1 = pvclock_read(clock_info(), &tsc1);
    uint64_t ns = t1 - t0, ticks = tsc1 - tsc0;
    printf("  %llu ns of pvclock = %llu TSC ticks\n", (unsigned long long)ns,
           (unsigned long long)ticks);
    check(ticks > 0, "the TSC advances");
    if (!tsc_khz) {
        skip_part("TSC rate check: CPUID gives no tsc_khz");
        return;
    }
    /* ticks / khz = ms; compare in us. */
    uint64_t tsc_us = udivmod64(ticks * 1000, tsc_khz, NULL);
    uint64_t pv_us = ns / 1000;
    uint64_t diff = tsc_us > pv_us ? tsc_us - pv_us : pv_us - tsc_us;
    check(diff * 100 <= pv_us, "pvclock and TSC/tsc_khz agree within 1%% (%llu us vs %llu us)",
          (unsigned long long)pv_us, (unsigned long long)tsc_us);
}

/* One `pvclock <ns>` line: the clock read, the digits, then console_io. */
static void emit_pvclock_line(void)
{
    static char line[48];
    char *end = line + sizeof(line) - 1;
    uint64_t ns = pvclock_read(clock_info(), NULL);
    char *p = end;
    *p = '\n';
    do {
        *--p = (char)('0' + ns % 10);
        ns /= 10;
    } while (ns);
    p -= 8;
    memcpy(p, "pvclock ", 8);
    HYPERVISOR_console_io(CONSOLEIO_write, (unsigned int)(end + 1 - p), p);
}

static void part_samples(unsigned long samples)
{
    if (console_backend != CONSOLE_XEN_CONSOLE_IO) {
        skip_part("pvclock lines: the console is %s, not console_io", console_backend_name());
        return;
    }
    for (unsigned long i = 0; i < samples; i++) {
        emit_pvclock_line();
        udelay_ns(2 * NS_PER_MS);
    }
    check(true, "%lu pvclock lines written (the harness compares them)", samples);
}

/*
 * The hypervisor's own clock (HVMOP_get_time, Xen's NOW()) between two pvclock
 * reads: before <= now <= after, and the closest sample within 10 us.
 */
static void part_get_time(unsigned long samples)
{
    uint64_t best = ~0ULL, worst = 0;
    unsigned long bad = 0;
    for (unsigned long i = 0; i < samples; i++) {
        uint64_t hv_now = 0;
        uint64_t before = pvclock_read(clock_info(), NULL);
        long rc = HYPERVISOR_hvm_op(HVMOP_get_time, &hv_now);
        uint64_t after = pvclock_read(clock_info(), NULL);
        if (rc != 0) {
            check_rc(rc, 0, "HVMOP_get_time");
            return;
        }
        /* 1 us of slack each way for the pvclock's own rounding. */
        if (hv_now + 1000 < before || hv_now > after + 1000)
            bad++;
        uint64_t lead = hv_now > before ? hv_now - before : before - hv_now;
        if (lead < best)
            best = lead;
        if (lead > worst)
            worst = lead;
    }
    check(bad == 0, "HVMOP_get_time always between two pvclock reads (%lu outside)", bad);
    check(best <= 10000, "pvclock agrees with the hypervisor clock within 10 us "
          "(closest %llu ns, farthest %llu ns over %lu samples)",
          (unsigned long long)best, (unsigned long long)worst, samples);
    printf("get_time: closest=%llu farthest=%llu ns\n", (unsigned long long)best,
           (unsigned long long)worst);
}

/* Days since 1970-01-01 to a civil date (proleptic Gregorian). */
static void civil_from_days(int64_t z, int *y, unsigned int *m, unsigned int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned int doe = (unsigned int)(z - era * 146097);
    unsigned int yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned int doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned int mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int)(yoe + era * 400 + (*m <= 2));
}

static void part_wallclock(void)
{
    uint64_t sec;
    uint32_t nsec, version;
    if (!check(xen_wallclock(&sec, &nsec, &version), "wall clock readable"))
        return;
    check(!(version & 1), "wc_version is even (%u)", version);
    check(nsec < NS_PER_SEC, "wc_nsec < 1e9 (%u)", nsec);
    uint64_t now = xen_now();
    uint64_t tod = sec + (nsec + now) / NS_PER_SEC;
    int y;
    unsigned int mo, d;
    civil_from_days((int64_t)(tod / 86400), &y, &mo, &d);
    unsigned int s = (unsigned int)(tod % 86400);
    printf("wallclock: %04d-%02u-%02u %02u:%02u:%02u UTC (boot at %llu.%09u)\n", y, mo, d,
           s / 3600, s / 60 % 60, s % 60, (unsigned long long)sec, nsec);
    check(tod >= 1483228800ULL && tod < 4102444800ULL, "the date is between 2017 and 2100");
}

static int64_t lateness[2000];

static void sort_i64(int64_t *a, unsigned int n)
{
    for (unsigned int gap = n / 2; gap; gap /= 2)
        for (unsigned int i = gap; i < n; i++) {
            int64_t v = a[i];
            unsigned int j = i;
            for (; j >= gap && a[j - gap] > v; j -= gap)
                a[j] = a[j - gap];
            a[j] = v;
        }
}

static void part_timers(unsigned int n, unsigned long long max_late_us)
{
    long port = timer_init();
    if (!check(port > 0, "VIRQ_TIMER bound (port %ld)", port))
        return;
    struct cpu *c = this_cpu();
    timer_stop_periodic();
    unsigned int got = 0, etime = 0, early = 0;
    int64_t sum = 0;
    printf("running %u single-shot timers (100 us .. 5 ms)\n", n);
    for (unsigned int i = 0; i < n; i++) {
        uint64_t off = 100 * NS_PER_US + rnd() % (4900 * NS_PER_US);
        local_irq_disable();
        uint32_t seen = c->timer_events;
        uint64_t deadline = xen_now() + off;
        long rc = timer_set_singleshot(deadline, VCPU_SSHOTTMR_future);
        if (rc == -XEN_ETIME) {
            etime++;
            continue;
        }
        if (rc < 0) {
            check_rc(rc, 0, "set_singleshot_timer #%u", i);
            return;
        }
        while (c->timer_events == seen) {
            safe_halt();
            local_irq_disable();
        }
        int64_t late = (int64_t)(c->timer_last_ns - deadline);
        if (late < -20000)
            early++;
        lateness[got++] = late;
        sum += late;
    }
    local_irq_disable();
    check(etime == 0 || got > 0, "%u timers measured (%u refused with -ETIME: too slow to arm)",
          got, etime);
    check(early == 0, "no timer fired early (%u more than 20 us before the deadline)", early);
    if (!got)
        return;
    sort_i64(lateness, got);
    unsigned int p99 = (got * 99 + 99) / 100;
    if (p99)
        p99--;
    printf("timer lateness: n=%u min=%lld avg=%lld p99=%lld max=%lld us\n", got,
           (long long)lateness[0] / 1000, (long long)(sum / got) / 1000,
           (long long)lateness[p99] / 1000, (long long)lateness[got - 1] / 1000);
    if (max_late_us)
        check(lateness[got - 1] <= (int64_t)(max_late_us * 1000),
              "largest lateness %lld us <= max_late_us=%llu",
              (long long)lateness[got - 1] / 1000, max_late_us);
}

void test_main(void)
{
    if (!xen_present)
        test_skip("needs Xen (pvclock, timers)");
    unsigned long reads = cmdline_get_u64("reads", 200000);
    unsigned long samples = cmdline_get_u64("samples", 20);
    unsigned long long timers = cmdline_get_u64("timers", 50);
    unsigned long long max_late = cmdline_get_u64("max_late_us", 0);
    rng_state = cmdline_get_u64("seed", 1) * 0x9E3779B97F4A7C15ULL | 1;
    if (timers > ARRAY_SIZE(lateness))
        timers = ARRAY_SIZE(lateness);

    local_irq_disable();
    long rc = evtchn_init();
    if (!check_rc(rc, 0, "shared_info mapped and upcalls set up"))
        test_fail("no shared_info (%s)", xen_errno_name(rc));

    uint32_t tsc_khz;
    printf("-- fields\n");
    part_fields(&tsc_khz);
    printf("-- monotonic\n");
    part_monotonic(reads);
    printf("-- rdtsc\n");
    part_tsc(tsc_khz);
    printf("-- hypervisor clock\n");
    part_get_time(samples ? samples : 20);
    printf("-- harness samples\n");
    part_samples(samples);
    printf("-- wall clock\n");
    part_wallclock();
    printf("-- timer accuracy\n");
    part_timers((unsigned int)timers, max_late);
}
