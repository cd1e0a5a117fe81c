/*
 * Time and timers.
 *
 * System time (ns since the hypervisor's boot) comes from this vCPU's
 * vcpu_info.time with the version protocol: read version (retry while odd),
 * read the fields and the TSC, re-read version (retry if it changed), then
 *     ns = system_time + (((tsc - tsc_timestamp) <<>> tsc_shift) * mul) >> 32
 * with a 64x32 multiply kept to 96 bits.  The wall clock is shared_info.wc_*
 * (time of day at system time 0, same odd/even protocol).
 *
 * Timers are the vCPU's single-shot and periodic timers; expiry raises
 * VIRQ_TIMER, which timer_init() binds on the calling vCPU.  The SDK's
 * VIRQ_TIMER handler counts events in this_cpu()->timer_events and records
 * the time in timer_last_ns.
 *
 * sdk_wait() blocks (sti; hlt) until a condition holds or a timeout passes;
 * it guards the halt with the single-shot timer, so a caller that tests the
 * single-shot timer itself must not use sdk_wait() at the same time.
 */
#ifndef SDK_XTIME_H
#define SDK_XTIME_H

#include <stdint.h>
#include <stdbool.h>
#include "xen_abi.h"

#define NS_PER_US  1000ULL
#define NS_PER_MS  1000000ULL
#define NS_PER_SEC 1000000000ULL

static inline uint64_t rdtsc(void)
{
    uint32_t lo, hi;
    asm volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}

/* RDTSC that does not move ahead of earlier loads (LFENCE first). */
static inline uint64_t rdtsc_ordered(void)
{
    uint32_t lo, hi;
    asm volatile("lfence; rdtsc" : "=a"(lo), "=d"(hi) :: "memory");
    return ((uint64_t)hi << 32) | lo;
}

static inline uint64_t rdtscp(uint32_t *aux)
{
    uint32_t lo, hi, c;
    asm volatile("rdtscp" : "=a"(lo), "=d"(hi), "=c"(c));
    if (aux)
        *aux = c;
    return ((uint64_t)hi << 32) | lo;
}

/* (delta shifted by `shift`) * mul >> 32, with a 96-bit intermediate. */
uint64_t pvclock_scale(uint64_t delta, uint32_t mul, int8_t shift);

struct pvclock_snapshot {
    uint32_t version;
    uint64_t tsc_timestamp, system_time;
    uint32_t mul;
    int8_t shift;
    uint8_t flags;
};
/* Consistent copy of a vcpu_time_info (version protocol). */
void pvclock_snapshot(const volatile struct vcpu_time_info *t, struct pvclock_snapshot *s);
/* System time from `t`; *tsc_out (optional) gets the TSC value used. */
uint64_t pvclock_read(const volatile struct vcpu_time_info *t, uint64_t *tsc_out);
/* System time of this vCPU's clock (0 when shared_info is not mapped). */
uint64_t xen_now(void);
/* Wall clock at system time 0 (version protocol); false if unavailable. */
bool xen_wallclock(uint64_t *sec, uint32_t *nsec, uint32_t *version);
/* Busy-waits ns nanoseconds (pvclock; without Xen a rough TSC loop). */
void udelay_ns(uint64_t ns);

/* Timers of the calling vCPU. */
long timer_init(void);                 /* binds VIRQ_TIMER here; port or -errno */
long timer_set_singleshot(uint64_t abs_ns, uint32_t flags);   /* VCPU_SSHOTTMR_* */
long timer_stop_singleshot(void);
long timer_set_periodic(uint64_t period_ns);
long timer_stop_periodic(void);

/* SCHEDOP_poll: blocks until one of the ports is pending or until the
 * absolute time `timeout_abs` (0 = none). */
long sched_poll(evtchn_port_t *ports, unsigned int nr, uint64_t timeout_abs);

/* Waits (sti; hlt) until cond(arg) or timeout_ns; restores the IF state.
 * Returns cond's final value. */
typedef bool (*wait_cond_fn)(void *arg);
bool sdk_wait(wait_cond_fn cond, void *arg, uint64_t timeout_ns);
/* Common conditions: *(uint32_t *)arg changed from / reached a value. */
struct wait_u32 {
    const volatile uint32_t *p;
    uint32_t value;
};
bool wait_cond_u32_ne(void *arg);      /* *p != value */
bool wait_cond_u32_ge(void *arg);      /* (int32_t)(*p - value) >= 0 */
bool sdk_wait_u32_ge(const volatile uint32_t *p, uint32_t value, uint64_t timeout_ns);
/*
 * Waits for one event channel without touching the timers: with interrupts
 * off, clears the port's pending bit, re-checks cond(arg), then blocks in
 * SCHEDOP_poll on the port (slices of at most 100 ms, so a lost notification
 * costs time, not the wait) until cond(arg) holds or timeout_ns passes.
 * Restores the IF state; an event consumed here is not dispatched to the
 * port's handler.  Usable from any context (IF=0 included).  Without a
 * mapped shared_info it falls back to SCHEDOP_yield rounds (about 100 us
 * each assumed).  Returns cond's final value.
 */
bool evtchn_wait_port(evtchn_port_t port, wait_cond_fn cond, void *arg, uint64_t timeout_ns);
/* Sleeps until system time `deadline` (single-shot timer + hlt); returns the
 * time at wake-up. */
uint64_t sleep_until(uint64_t deadline);

#endif
