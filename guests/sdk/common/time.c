/* System time (pvclock), wall clock, per-vCPU timers and blocking waits. */
#include "sdk.h"

/* Longest single halt in sdk_wait(): the guard timer is re-armed after it. */
#define GUARD_MAX_NS (1 * NS_PER_SEC)

uint64_t pvclock_scale(uint64_t delta, uint32_t mul, int8_t shift)
{
    if (shift < 0)
        delta >>= -shift;
    else
        delta <<= shift;
    /* (hi * 2^32 + lo) * mul >> 32 = hi * mul + (lo * mul >> 32): 96 bits. */
    uint64_t lo = (uint64_t)(uint32_t)delta * mul;
    uint64_t hi = (uint64_t)(uint32_t)(delta >> 32) * mul;
    return hi + (lo >> 32);
}

void pvclock_snapshot(const volatile struct vcpu_time_info *t, struct pvclock_snapshot *s)
{
    uint32_t v;
    do {
        v = t->version;
        rmb();
        s->tsc_timestamp = t->tsc_timestamp;
        s->system_time = t->system_time;
        s->mul = t->tsc_to_system_mul;
        s->shift = t->tsc_shift;
        s->flags = t->flags;
        rmb();
    } while ((v & 1) || v != t->version);
    s->version = v;
}

uint64_t pvclock_read(const volatile struct vcpu_time_info *t, uint64_t *tsc_out)
{
    uint32_t v, mul;
    uint64_t tsc, stamp, sys;
    int8_t shift;
    do {
        v = t->version;
        rmb();
        stamp = t->tsc_timestamp;
        sys = t->system_time;
        mul = t->tsc_to_system_mul;
        shift = t->tsc_shift;
        tsc = rdtsc_ordered();
        rmb();
    } while ((v & 1) || v != t->version);
    if (tsc_out)
        *tsc_out = tsc;
    if (tsc >= stamp)
        return sys + pvclock_scale(tsc - stamp, mul, shift);
    return sys - pvclock_scale(stamp - tsc, mul, shift);
}

uint64_t xen_now(void)
{
    volatile struct vcpu_info *vi = this_cpu()->vcpu_info;
    return vi ? pvclock_read(&vi->time, NULL) : 0;
}

bool xen_wallclock(uint64_t *sec, uint32_t *nsec, uint32_t *version)
{
    volatile struct shared_info *s = shared_info;
    if (!s)
        return false;
    uint32_t v, lo, hi, ns;
    do {
        v = s->wc_version;
        rmb();
        lo = s->wc_sec;
        ns = s->wc_nsec;
#ifdef __x86_64__
        hi = s->wc_sec_hi;
#else
        hi = s->arch.wc_sec_hi;
#endif
        rmb();
    } while ((v & 1) || v != s->wc_version);
    *sec = ((uint64_t)hi << 32) | lo;
    *nsec = ns;
    if (version)
        *version = v;
    return true;
}

void udelay_ns(uint64_t ns)
{
    uint64_t start = xen_now();
    if (start) {
        while (xen_now() - start < ns)
            cpu_relax();
        return;
    }
    /* No clock: assume a TSC of about 2 GHz. */
    uint64_t end = rdtsc() + ns * 2;
    while ((int64_t)(rdtsc() - end) < 0)
        cpu_relax();
}

/* ---- timers ---- */

static void timer_event(evtchn_port_t port, void *arg)
{
    struct cpu *c = arg;
    (void)port;
    c->timer_last_ns = xen_now();
    c->timer_events++;
}

long timer_init(void)
{
    struct cpu *c = this_cpu();
    if (c->timer_port)
        return c->timer_port;
    long rc = evtchn_init();
    if (rc < 0)
        return rc;
    long port = evtchn_bind_virq(VIRQ_TIMER, c->vcpu_id);
    if (port < 0)
        return port;
    evtchn_set_handler((evtchn_port_t)port, timer_event, c);
    c->timer_port = (evtchn_port_t)port;
    return port;
}

long timer_set_singleshot(uint64_t abs_ns, uint32_t flags)
{
    struct cpu *c = this_cpu();
    struct vcpu_set_singleshot_timer t = { .timeout_abs_ns = abs_ns, .flags = flags };
    c->guard_expiry = 0;          /* whatever sdk_wait() armed is replaced */
    return HYPERVISOR_vcpu_op(VCPUOP_set_singleshot_timer, c->vcpu_id, &t);
}

long timer_stop_singleshot(void)
{
    struct cpu *c = this_cpu();
    c->guard_expiry = 0;
    return HYPERVISOR_vcpu_op(VCPUOP_stop_singleshot_timer, c->vcpu_id, NULL);
}

long timer_set_periodic(uint64_t period_ns)
{
    struct vcpu_set_periodic_timer p = { .period_ns = period_ns };
    return HYPERVISOR_vcpu_op(VCPUOP_set_periodic_timer, this_cpu()->vcpu_id, &p);
}

long timer_stop_periodic(void)
{
    return HYPERVISOR_vcpu_op(VCPUOP_stop_periodic_timer, this_cpu()->vcpu_id, NULL);
}

long sched_poll(evtchn_port_t *ports, unsigned int nr, uint64_t timeout_abs)
{
    struct sched_poll p = { .ports = ports, .nr_ports = nr, .timeout = timeout_abs };
    return HYPERVISOR_sched_op(SCHEDOP_poll, &p);
}

/* ---- waiting ---- */

bool wait_cond_u32_ne(void *arg)
{
    struct wait_u32 *w = arg;
    return *w->p != w->value;
}

bool wait_cond_u32_ge(void *arg)
{
    struct wait_u32 *w = arg;
    return (int32_t)(*w->p - w->value) >= 0;
}

bool sdk_wait_u32_ge(const volatile uint32_t *p, uint32_t value, uint64_t timeout_ns)
{
    struct wait_u32 w = { .p = p, .value = value };
    return sdk_wait(wait_cond_u32_ge, &w, timeout_ns);
}

static bool spin_wait(wait_cond_fn cond, void *arg, uint64_t timeout_ns)
{
    uint64_t start = xen_now();
    uint64_t spins = timeout_ns / 20 + 1;     /* when there is no clock at all */
    for (;;) {
        if (cond(arg))
            return true;
        if (start ? xen_now() - start >= timeout_ns : !spins--)
            return cond(arg);
        cpu_relax();
        if (xen_present)
            HYPERVISOR_sched_op(SCHEDOP_yield, NULL);
    }
}

bool sdk_wait(wait_cond_fn cond, void *arg, uint64_t timeout_ns)
{
    struct cpu *c = this_cpu();
    bool was_enabled = irqs_enabled();
    bool ok;

    if (!evtchn_ready || !c->vcpu_info || timer_init() < 0)
        return spin_wait(cond, arg, timeout_ns);

    uint64_t deadline = xen_now() + timeout_ns;
    for (;;) {
        local_irq_disable();
        if ((ok = cond(arg)))
            break;
        uint64_t now = xen_now();
        if (now >= deadline) {
            ok = cond(arg);
            break;
        }
        if (c->guard_expiry <= now || c->guard_expiry > deadline) {
            uint64_t at = deadline - now > GUARD_MAX_NS ? now + GUARD_MAX_NS : deadline;
            if (timer_set_singleshot(at, 0) == 0)
                c->guard_expiry = at;
        }
        safe_halt();
    }
    if (was_enabled)
        local_irq_enable();
    else
        local_irq_disable();
    return ok;
}

#define PORT_POLL_SLICE_NS (100 * NS_PER_MS)
#define YIELD_ROUND_NS     (100 * NS_PER_US)

bool evtchn_wait_port(evtchn_port_t port, wait_cond_fn cond, void *arg, uint64_t timeout_ns)
{
    if (cond(arg))
        return true;
    if (!xen_present || !hypercall_page_ready)
        return cond(arg);
    if (!shared_info || !this_cpu()->vcpu_info) {
        /* No clock and no bitmap: bounded yield rounds. */
        uint64_t rounds = udivmod64(timeout_ns, (uint32_t)YIELD_ROUND_NS, NULL) + 1;
        while (rounds--) {
            if (cond(arg))
                return true;
            HYPERVISOR_sched_op(SCHEDOP_yield, NULL);
        }
        return cond(arg);
    }

    bool was_enabled = irqs_enabled();
    bool ok;
    uint64_t deadline = xen_now() + timeout_ns;
    local_irq_disable();
    for (;;) {
        if ((ok = cond(arg)))
            break;
        uint64_t now = xen_now();
        if (now >= deadline)
            break;
        /* Clear, re-check, then poll: a notification after the clear leaves
         * the bit set and the poll returns at once. */
        evtchn_clear_pending(port);
        if ((ok = cond(arg)))
            break;
        uint64_t until = deadline - now > PORT_POLL_SLICE_NS ? now + PORT_POLL_SLICE_NS : deadline;
        evtchn_port_t p = port;
        if (sched_poll(&p, 1, until) < 0)
            HYPERVISOR_sched_op(SCHEDOP_yield, NULL);
    }
    if (was_enabled)
        local_irq_enable();
    return ok;
}

uint64_t sleep_until(uint64_t deadline)
{
    struct cpu *c = this_cpu();
    bool was_enabled = irqs_enabled();
    if (timer_init() < 0) {
        while (xen_now() < deadline)
            cpu_relax();
        return xen_now();
    }
    uint32_t seen = c->timer_events;
    timer_set_singleshot(deadline, 0);
    c->guard_expiry = deadline;
    uint64_t now;
    for (;;) {
        local_irq_disable();
        now = xen_now();
        if (now >= deadline)
            break;
        if (c->timer_events != seen) {      /* fired early by our clock: re-arm */
            seen = c->timer_events;
            timer_set_singleshot(deadline, 0);
            c->guard_expiry = deadline;
        }
        safe_halt();
    }
    if (was_enabled)
        local_irq_enable();
    return now;
}
