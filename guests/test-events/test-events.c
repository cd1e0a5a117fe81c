/*
 * test-events: event channels (2-level ABI), timers, SCHEDOP_poll/block, HLT
 * wake-up, register_vcpu_info and the runstate area, on one domain with one
 * vCPU.  Needs Xen (SKIP without it).  No command-line keys.
 *
 * Parts, in order (each check prints `ok:` or `FAIL:`; a line "waiting for
 * ..." precedes every step that blocks, so a hang shows where it stopped):
 *  1. set-up: shared_info mapped with XENMEM_add_to_physmap, the callback
 *     vector set (HVM_PARAM_CALLBACK_IRQ type 2), the vcpu_info time sane,
 *     our domid learnt from alloc_unbound(self, self) + EVTCHNOP_status;
 *  2. IPI to ourselves: with IF=0 the send leaves the port's pending bit, the
 *     selector bit and upcall_pending set; with IF=1 the upcall arrives for
 *     that port and clears the bit;
 *  3. masking: a send on a masked port sets pending but no upcall;
 *     EVTCHNOP_unmask then delivers it;
 *  4. EVTCHNOP_status of each kind of port: ipi, virq, unbound,
 *     interdomain (loopback: alloc_unbound + bind_interdomain to DOMID_SELF,
 *     which raises the new local port at once; sends in both directions),
 *     closed (the peer of a closed loopback port reverts to unbound);
 *  5. errors: send on a closed port, port 0 and ports >= 4096 -> -EINVAL;
 *     VIRQ_TIMER bound twice -> -EEXIST; a global VIRQ (CONSOLE) on vCPU 1 ->
 *     -EINVAL; per-vCPU VIRQ / IPI on a vCPU that does not exist -> -ENOENT;
 *     bind_vcpu on an IPI or VIRQ_TIMER port -> -EINVAL (on an unbound port
 *     -> 0); alloc_unbound for another domain -> -EPERM (-ESRCH if that
 *     domain does not exist); bind_interdomain to a non-unbound port ->
 *     -EINVAL; unknown sub-op -> -ENOSYS;
 *  6. timers (VIRQ_TIMER): single-shot fires at or after the requested time
 *     (lateness printed in us); -ETIME with VCPU_SSHOTTMR_future in the past;
 *     a past timeout without the flag fires at once; stop_singleshot and
 *     set_timer_op(0) cancel; set_timer_op fires; periodic < 1 ms -> -EINVAL,
 *     1 ms ticks counted over 100 ms by watching the masked port's pending
 *     bit (10..110), none in 30 ms after stop_periodic;
 *  7. SCHEDOP_poll: returns after its timeout with nothing pending, returns
 *     early when a polled port becomes pending, at once when one already is;
 *     129 ports or a port >= 4096 -> -EINVAL; SCHEDOP_block (IF=1) wakes on a
 *     timer (a 50 ms periodic timer is armed as a safety net); `sti; hlt`
 *     wakes on the timer's upcall;
 *  8. VCPUOP_register_vcpu_info: offset 4090 -> -EINVAL; a good one -> 0 with
 *     pending_sel all ones and upcall_pending set in the new area; events then
 *     arrive there (not in shared_info); a second registration -> -EINVAL;
 *  9. runstate: get_runstate_info and a registered runstate area say
 *     "running"; after a 10 ms poll the blocked time grew by >= 5 ms and the
 *     running time grew;
 * 10. port exhaustion: alloc_unbound until it fails -> -ENOSPC (the count and
 *     highest port are printed; all ports must be < 4096), then all closed;
 * 11. FIFO: EVTCHNOP_init_control with a bad vCPU, then (when the console
 *     does not depend on an event channel) with a real control page: the
 *     result is printed ("FIFO ABI available" or "not implemented"); both 0
 *     and -ENOSYS are accepted;
 * 12. EVTCHNOP_reset(self) (only when the console uses console_io, since a
 *     reset closes the PV console's channel): every port closed, FIFO (if
 *     it was enabled) back to 2-level, a new IPI works; reset of another
 *     domain -> -EPERM/-ESRCH;
 * 13. SCHEDOP_block with IF=0 wakes when the timer's event arrives (Xen
 *     unblocks on any event whatever IF says), then the upcall follows.
 *     It is last because a hypervisor that gets this wrong never returns.
 * Last line: `Test result: SUCCESS` when every check passed.
 */
#include "sdk.h"

const char test_title[] = "test-events: event channels, timers, poll/block, vcpu_info, runstate";

static long domid = -1;
static evtchn_port_t ipi_port;

static void noop_handler(evtchn_port_t port, void *arg)
{
    (void)port;
    (void)arg;
}

/* Opens an IF=1 window that ends with a hypercall exit, where a pending
 * upcall is injected; then waits briefly if the count has not moved yet. */
static void let_events_in(void)
{
    local_irq_enable();
    HYPERVISOR_xen_version(XENVER_version, NULL);
    local_irq_disable();
}

static bool wait_count(evtchn_port_t port, uint32_t target, uint64_t timeout_ns)
{
    let_events_in();
    if (evtchn_count[port] >= target)
        return true;
    uint64_t end = xen_now() + timeout_ns;
    evtchn_port_t p = port;
    while (evtchn_count[port] < target && xen_now() < end) {
        sched_poll(&p, 1, xen_now() + 5 * NS_PER_MS);
        let_events_in();
    }
    return evtchn_count[port] >= target;
}

static volatile struct vcpu_info *vi(void)
{
    return cpus[0].vcpu_info;
}

static unsigned int word_of(evtchn_port_t p)
{
    return p / EVTCHN_WORD_BITS;
}

/* ---- 1. set-up ---- */
static void part_setup(void)
{
    long rc = evtchn_init();
    if (!check_rc(rc, 0, "evtchn_init: shared_info mapped, callback vector %#x set",
                  EVTCHN_UPCALL_VECTOR))
        test_fail("event channels unavailable (%s)", xen_errno_name(rc));
    printf("shared_info at gfn %#lx\n", shared_info_gfn);
    struct pvclock_snapshot s;
    pvclock_snapshot(&vi()->time, &s);
    check(!(s.version & 1) && s.mul != 0 && s.system_time != 0,
          "vcpu_info[0].time: version %u, system_time %llu, mul %#x, shift %d", s.version,
          (unsigned long long)s.system_time, s.mul, s.shift);
    uint64_t sec;
    uint32_t nsec, ver;
    if (xen_wallclock(&sec, &nsec, &ver))
        note("wallclock at boot: %llu.%09u s (wc_version %u)", (unsigned long long)sec, nsec,
             ver);
    domid = xen_own_domid();
    check(domid >= 0 && domid < DOMID_FIRST_RESERVED, "own domid %ld (via alloc_unbound + status)",
          domid);
    /* A periodic timer left running by the builder would disturb the counts. */
    timer_stop_periodic();
}

/* ---- 2. IPI ---- */
static void part_ipi(void)
{
    long p = evtchn_bind_ipi(0);
    if (!check(p > 0, "bind_ipi(vcpu 0) -> port %ld", p))
        test_fail("cannot bind an IPI");
    ipi_port = (evtchn_port_t)p;
    evtchn_set_handler(ipi_port, noop_handler, NULL);

    local_irq_disable();
    let_events_in();                    /* nothing stale */
    uint32_t before = evtchn_count[ipi_port];
    check_rc(evtchn_send(ipi_port), 0, "send on the IPI port (IF=0)");
    check(evtchn_is_pending(ipi_port), "pending bit set in shared_info");
    check(test_bit(word_of(ipi_port), &vi()->evtchn_pending_sel),
          "pending_sel bit %u set", word_of(ipi_port));
    check_eq(vi()->evtchn_upcall_pending, 1, "evtchn_upcall_pending set");
    check_eq(evtchn_count[ipi_port], before, "no upcall while IF=0");
    wait_count(ipi_port, before + 1, 100 * NS_PER_MS);
    check_eq(evtchn_count[ipi_port], before + 1, "one upcall for the IPI port once IF=1");
    check_eq(evtchn_last_port, ipi_port, "the upcall dispatched the IPI port");
    check(!evtchn_is_pending(ipi_port), "handler cleared the pending bit");
    check_eq(vi()->evtchn_upcall_pending, 0, "upcall_pending cleared by the handler");
}

/* ---- 3. masking ---- */
static void part_mask(void)
{
    uint32_t before = evtchn_count[ipi_port];
    evtchn_mask(ipi_port);
    check(evtchn_is_masked(ipi_port), "mask bit set");
    check_rc(evtchn_send(ipi_port), 0, "send on the masked port");
    check(evtchn_is_pending(ipi_port), "masked port: pending bit set");
    check_eq(vi()->evtchn_upcall_pending, 0, "masked port: no upcall_pending");
    let_events_in();
    check_eq(evtchn_count[ipi_port], before, "masked port: no upcall with IF=1");
    check_rc(evtchn_unmask(ipi_port), 0, "EVTCHNOP_unmask");
    check(!evtchn_is_masked(ipi_port), "mask bit cleared by EVTCHNOP_unmask");
    wait_count(ipi_port, before + 1, 100 * NS_PER_MS);
    check_eq(evtchn_count[ipi_port], before + 1, "unmask delivered the pending event");
}

/* ---- 4. status of each port type ---- */
static void show_status(const char *what, evtchn_port_t port, struct evtchn_status *st)
{
    long rc = evtchn_get_status(DOMID_SELF, port, st);
    printf("  status(%s port %u): rc %s, %s, vcpu %u\n", what, port, xen_errno_name(rc),
           evtchn_status_name(st->status), st->vcpu);
    check_rc(rc, 0, "EVTCHNOP_status(%s)", what);
}

static void part_status(void)
{
    struct evtchn_status st;
    show_status("ipi", ipi_port, &st);
    check(st.status == EVTCHNSTAT_ipi && st.vcpu == 0, "IPI port: status ipi, vcpu 0");

    long t = timer_init();
    check(t > 0, "bind_virq(VIRQ_TIMER, vcpu 0) -> port %ld", t);
    if (t > 0) {
        show_status("virq", (evtchn_port_t)t, &st);
        check(st.status == EVTCHNSTAT_virq && st.u.virq == VIRQ_TIMER && st.vcpu == 0,
              "timer port: status virq, virq %u, vcpu %u", st.u.virq, st.vcpu);
    }

    long u = evtchn_alloc_unbound(DOMID_SELF);
    if (!check(u > 0, "alloc_unbound(remote = self) -> port %ld", u))
        return;
    evtchn_set_handler((evtchn_port_t)u, noop_handler, NULL);
    show_status("unbound", (evtchn_port_t)u, &st);
    check(st.status == EVTCHNSTAT_unbound && st.u.unbound.dom == domid,
          "unbound port: status unbound, remote dom %u", st.u.unbound.dom);

    local_irq_disable();
    let_events_in();
    long b = evtchn_bind_interdomain(DOMID_SELF, (evtchn_port_t)u);
    if (!check(b > 0, "bind_interdomain(DOMID_SELF, %ld) loopback -> port %ld", u, b))
        return;
    evtchn_set_handler((evtchn_port_t)b, noop_handler, NULL);
    check(evtchn_is_pending((evtchn_port_t)b), "bind_interdomain raised the new local port");
    wait_count((evtchn_port_t)b, 1, 100 * NS_PER_MS);
    check_eq(evtchn_count[b], 1, "one upcall for the newly bound port");

    show_status("interdomain", (evtchn_port_t)b, &st);
    check(st.status == EVTCHNSTAT_interdomain && st.u.interdomain.dom == domid &&
              st.u.interdomain.port == u,
          "bound port: interdomain to dom %u port %u", st.u.interdomain.dom,
          st.u.interdomain.port);
    show_status("interdomain peer", (evtchn_port_t)u, &st);
    check(st.status == EVTCHNSTAT_interdomain && st.u.interdomain.port == b,
          "the unbound end became interdomain to port %u", st.u.interdomain.port);

    uint32_t cu = evtchn_count[u], cb = evtchn_count[b];
    check_rc(evtchn_send((evtchn_port_t)u), 0, "send on port %ld (loopback)", u);
    wait_count((evtchn_port_t)b, cb + 1, 100 * NS_PER_MS);
    check(evtchn_count[b] == cb + 1 && evtchn_count[u] == cu,
          "send on %ld arrived on %ld only", u, b);
    check_rc(evtchn_send((evtchn_port_t)b), 0, "send on port %ld (loopback back)", b);
    wait_count((evtchn_port_t)u, cu + 1, 100 * NS_PER_MS);
    check(evtchn_count[u] == cu + 1 && evtchn_count[b] == cb + 1,
          "send on %ld arrived on %ld only", b, u);

    check_rc(evtchn_close((evtchn_port_t)b), 0, "close port %ld", b);
    show_status("closed", (evtchn_port_t)b, &st);
    check(st.status == EVTCHNSTAT_closed, "closed port: status closed");
    show_status("reverted", (evtchn_port_t)u, &st);
    check(st.status == EVTCHNSTAT_unbound && st.u.unbound.dom == domid,
          "its peer reverted to unbound (remote dom %u)", st.u.unbound.dom);
    check_rc(evtchn_send((evtchn_port_t)b), -XEN_EINVAL, "send on the closed port");
    check_rc(evtchn_send((evtchn_port_t)u), 0, "send on an unbound port (dropped)");
    let_events_in();
    check_eq(evtchn_count[u], cu + 1, "no event from a send on an unbound port");

    /* bind_vcpu works on unbound ports. */
    check_rc(evtchn_bind_vcpu((evtchn_port_t)u, 0), 0, "bind_vcpu(unbound port, vcpu 0)");
    check_rc(evtchn_bind_vcpu((evtchn_port_t)u, 1), -XEN_ENOENT,
             "bind_vcpu(unbound port, vcpu 1 absent)");
    check_rc(evtchn_close((evtchn_port_t)u), 0, "close port %ld", u);

    long rc = evtchn_get_status(DOMID_SELF, 0, &st);
    check(rc == 0 && st.status == EVTCHNSTAT_closed, "status(port 0): rc %s, %s",
          xen_errno_name(rc), evtchn_status_name(st.status));
    check_rc(evtchn_get_status(DOMID_SELF, EVTCHN_2L_NR_PORTS + 100, &st), -XEN_EINVAL,
             "status(port %lu)", (unsigned long)EVTCHN_2L_NR_PORTS + 100);
    rc = evtchn_get_status(0, 1, &st);
    if (domid == 0)
        note("we are domain 0: status of dom 0 is our own (%s)", xen_errno_name(rc));
    else
        check(rc == -XEN_EPERM || rc == -XEN_ESRCH,
              "status(dom 0, port 1) of another domain -> %s (-EPERM, or -ESRCH without dom0)",
              xen_errno_name(rc));
}

/* ---- 5. errors ---- */
static void part_errors(void)
{
    struct evtchn_bind_virq bv = { .virq = VIRQ_TIMER, .vcpu = 0 };
    check_rc(HYPERVISOR_event_channel_op(EVTCHNOP_bind_virq, &bv), -XEN_EEXIST,
             "bind_virq(VIRQ_TIMER, vcpu 0) a second time");
    check_rc(evtchn_send(0), -XEN_EINVAL, "send on port 0");
    check_rc(evtchn_send(EVTCHN_2L_NR_PORTS), -XEN_EINVAL, "send on port %lu",
             (unsigned long)EVTCHN_2L_NR_PORTS);
    check_rc(evtchn_send(0xffffffffu), -XEN_EINVAL, "send on port 0xffffffff");
    check_rc(evtchn_close(0), -XEN_EINVAL, "close port 0");
    check_rc(evtchn_close(EVTCHN_2L_NR_PORTS + 5), -XEN_EINVAL, "close port %lu",
             (unsigned long)EVTCHN_2L_NR_PORTS + 5);
    check_rc(evtchn_unmask(EVTCHN_2L_NR_PORTS + 5), -XEN_EINVAL, "unmask port %lu",
             (unsigned long)EVTCHN_2L_NR_PORTS + 5);

    check_rc(evtchn_bind_virq(VIRQ_CONSOLE, 1), -XEN_EINVAL,
             "bind_virq(VIRQ_CONSOLE (global), vcpu 1)");
    check_rc(evtchn_bind_virq(VIRQ_DEBUG, 1), -XEN_ENOENT,
             "bind_virq(VIRQ_DEBUG (per-vCPU), vcpu 1 absent)");
    check_rc(evtchn_bind_virq(NR_VIRQS, 0), -XEN_EINVAL, "bind_virq(virq %u)", NR_VIRQS);
    long d = evtchn_bind_virq(VIRQ_DEBUG, 0);
    if (check(d > 0, "bind_virq(VIRQ_DEBUG, vcpu 0) -> port %ld", d))
        check_rc(evtchn_close((evtchn_port_t)d), 0, "close the VIRQ_DEBUG port");
    check_rc(evtchn_bind_ipi(1), -XEN_ENOENT, "bind_ipi(vcpu 1 absent)");

    check_rc(evtchn_bind_vcpu(ipi_port, 0), -XEN_EINVAL, "bind_vcpu(IPI port, vcpu 0)");
    if (cpus[0].timer_port)
        check_rc(evtchn_bind_vcpu(cpus[0].timer_port, 0), -XEN_EINVAL,
                 "bind_vcpu(VIRQ_TIMER port, vcpu 0)");

    struct evtchn_alloc_unbound a = { .dom = 0, .remote_dom = DOMID_SELF };
    long rc = HYPERVISOR_event_channel_op(EVTCHNOP_alloc_unbound, &a);
    if (domid == 0)
        note("we are domain 0: alloc_unbound(dom 0) is our own (%s)", xen_errno_name(rc));
    else
        check(rc == -XEN_EPERM || rc == -XEN_ESRCH,
              "alloc_unbound(dom 0) without privilege -> %s (-EPERM; -ESRCH if no dom0)",
              xen_errno_name(rc));
    a.dom = 0x7000;
    check_rc(HYPERVISOR_event_channel_op(EVTCHNOP_alloc_unbound, &a), -XEN_ESRCH,
             "alloc_unbound(dom 0x7000, absent)");
    check_rc(evtchn_bind_interdomain(0x7000, 1), -XEN_ESRCH, "bind_interdomain(dom 0x7000)");
    check_rc(evtchn_bind_interdomain(DOMID_SELF, ipi_port), -XEN_EINVAL,
             "bind_interdomain(self, IPI port: not unbound)");
    check_rc(evtchn_bind_interdomain(DOMID_SELF, 3000), -XEN_EINVAL,
             "bind_interdomain(self, unallocated port 3000)");
    check_rc(HYPERVISOR_event_channel_op(99, &a), -XEN_ENOSYS, "event_channel_op(99)");
}

/* ---- 6. timers ---- */
static bool wait_timer_event(uint32_t seen, uint64_t max_ns)
{
    struct cpu *c = &cpus[0];
    evtchn_port_t p = c->timer_port;
    uint64_t end = xen_now() + max_ns;
    for (;;) {
        let_events_in();
        if (c->timer_events != seen)
            return true;
        uint64_t now = xen_now();
        if (now >= end)
            return false;
        sched_poll(&p, 1, now + 10 * NS_PER_MS < end ? now + 10 * NS_PER_MS : end);
    }
}

static void quiet_timer(void)
{
    timer_stop_singleshot();
    HYPERVISOR_set_timer_op(0);
    local_irq_disable();
    let_events_in();
}

/* Stops every timer and waits until no VIRQ_TIMER has arrived for 10 ms
 * (expiries that fired just before a stop may still be on their way). */
static void drain_timer(void)
{
    struct cpu *c = &cpus[0];
    timer_stop_periodic();
    quiet_timer();
    for (int i = 0; i < 20 && wait_timer_event(c->timer_events, 10 * NS_PER_MS); i++)
        ;
}

static void part_timers(void)
{
    struct cpu *c = &cpus[0];
    if (!c->timer_port) {
        skip_part("timers: VIRQ_TIMER not bound");
        return;
    }
    quiet_timer();

    /* Single-shot. */
    printf("waiting for a single-shot timer\n");
    uint32_t seen = c->timer_events;
    uint64_t deadline = xen_now() + 2 * NS_PER_MS;
    check_rc(timer_set_singleshot(deadline, VCPU_SSHOTTMR_future), 0,
             "set_singleshot_timer(now + 2 ms, future)");
    if (check(wait_timer_event(seen, 2 * NS_PER_SEC), "VIRQ_TIMER arrived")) {
        int64_t late = (int64_t)(c->timer_last_ns - deadline);
        check(late >= 0, "handled at or after the deadline (lateness %lld us)",
              (long long)late / 1000);
    }

    seen = c->timer_events;
    check_rc(timer_set_singleshot(xen_now() - NS_PER_MS, VCPU_SSHOTTMR_future), -XEN_ETIME,
             "set_singleshot_timer(now - 1 ms, future)");
    check(!wait_timer_event(seen, 20 * NS_PER_MS), "no VIRQ_TIMER after -ETIME");

    seen = c->timer_events;
    check_rc(timer_set_singleshot(xen_now() - NS_PER_MS, 0), 0,
             "set_singleshot_timer(now - 1 ms, no flag)");
    check(wait_timer_event(seen, 100 * NS_PER_MS), "a past timeout fires at once");

    seen = c->timer_events;
    check_rc(timer_set_singleshot(xen_now() + 5 * NS_PER_MS, 0), 0,
             "set_singleshot_timer(now + 5 ms)");
    check_rc(timer_stop_singleshot(), 0, "stop_singleshot_timer");
    check(!wait_timer_event(seen, 20 * NS_PER_MS), "no VIRQ_TIMER after stop_singleshot");

    /* set_timer_op. */
    printf("waiting for a set_timer_op timer\n");
    seen = c->timer_events;
    deadline = xen_now() + 2 * NS_PER_MS;
    check_rc(HYPERVISOR_set_timer_op(deadline), 0, "set_timer_op(now + 2 ms)");
    if (check(wait_timer_event(seen, 2 * NS_PER_SEC), "set_timer_op: VIRQ_TIMER arrived"))
        check((int64_t)(c->timer_last_ns - deadline) >= 0,
              "set_timer_op: at or after the deadline (lateness %lld us)",
              (long long)(c->timer_last_ns - deadline) / 1000);
    seen = c->timer_events;
    check_rc(HYPERVISOR_set_timer_op(xen_now() + 5 * NS_PER_MS), 0, "set_timer_op(now + 5 ms)");
    check_rc(HYPERVISOR_set_timer_op(0), 0, "set_timer_op(0) cancels");
    check(!wait_timer_event(seen, 20 * NS_PER_MS), "no VIRQ_TIMER after set_timer_op(0)");

    /* Periodic.  Expiries not yet handled merge in the pending bit, so the
     * ticks are counted with the port masked, spinning on its pending bit and
     * clearing it: that sees the hypervisor's expiries, not our wake-up
     * latency.  About 100 in 100 ms on hardware. */
    check_rc(timer_set_periodic(100 * NS_PER_US), -XEN_EINVAL,
             "set_periodic_timer(100 us < 1 ms)");
    drain_timer();
    evtchn_port_t tp = c->timer_port;
    printf("counting periodic ticks for 100 ms (port masked, pending bit watched)\n");
    evtchn_mask(tp);
    evtchn_clear_pending(tp);
    check_rc(timer_set_periodic(NS_PER_MS), 0, "set_periodic_timer(1 ms)");
    uint64_t start = xen_now(), now, last = 0, min_gap = ~0ULL;
    unsigned int ticks = 0;
    while ((now = xen_now()) - start < 100 * NS_PER_MS) {
        if (evtchn_is_pending(tp)) {
            evtchn_clear_pending(tp);
            if (ticks && now - last < min_gap)
                min_gap = now - last;
            last = now;
            ticks++;
        }
        cpu_relax();
    }
    check_rc(timer_stop_periodic(), 0, "stop_periodic_timer");
    check(ticks >= 10 && ticks <= 110, "periodic 1 ms timer: %u ticks in 100 ms (10..110)",
          ticks);
    if (ticks > 1)
        printf("  smallest gap between ticks seen: %llu us\n",
               (unsigned long long)min_gap / 1000);
    udelay_ns(20 * NS_PER_MS);          /* expiries from before the stop may still land */
    evtchn_clear_pending(tp);
    start = xen_now();
    unsigned int after = 0;
    while (xen_now() - start < 30 * NS_PER_MS)
        if (evtchn_is_pending(tp)) {
            evtchn_clear_pending(tp);
            after++;
        }
    check_eq(after, 0, "no ticks in 30 ms after stop_periodic_timer");
    evtchn_unmask(tp);
    quiet_timer();
}

/* ---- 7. poll, block, hlt ---- */
static void part_poll_block_hlt(void)
{
    struct cpu *c = &cpus[0];
    evtchn_port_t p = ipi_port;
    local_irq_disable();
    let_events_in();

    uint64_t t0 = xen_now(), deadline = t0 + 3 * NS_PER_MS;
    long rc = sched_poll(&p, 1, deadline);
    uint64_t t1 = xen_now();
    check_rc(rc, 0, "SCHEDOP_poll(ipi port, timeout now + 3 ms)");
    check((int64_t)(t1 - deadline) >= -10000,
          "poll returned after its timeout (%lld us after the deadline)",
          (long long)(int64_t)(t1 - deadline) / 1000);
    check(!evtchn_is_pending(p), "nothing pending after the poll timeout");

    if (c->timer_port) {
        evtchn_port_t tp = c->timer_port;
        printf("waiting in SCHEDOP_poll for the timer port\n");
        t0 = xen_now();
        timer_set_singleshot(t0 + 2 * NS_PER_MS, 0);
        rc = sched_poll(&tp, 1, t0 + 500 * NS_PER_MS);
        t1 = xen_now();
        check_rc(rc, 0, "SCHEDOP_poll(timer port, timeout now + 500 ms)");
        check(t1 - t0 < 250 * NS_PER_MS && evtchn_is_pending(tp),
              "poll returned early when the port became pending (after %llu us)",
              (unsigned long long)(t1 - t0) / 1000);
        let_events_in();
    }

    check_rc(evtchn_send(p), 0, "send on the IPI port (IF=0)");
    t0 = xen_now();
    rc = sched_poll(&p, 1, t0 + 500 * NS_PER_MS);
    t1 = xen_now();
    check(rc == 0 && t1 - t0 < 100 * NS_PER_MS,
          "poll on an already pending port returns at once (rc %s, %llu us)",
          xen_errno_name(rc), (unsigned long long)(t1 - t0) / 1000);
    let_events_in();

    static evtchn_port_t many[SCHEDOP_POLL_MAX_PORTS + 1];
    for (unsigned int i = 0; i < ARRAY_SIZE(many); i++)
        many[i] = p;
    check_rc(sched_poll(many, SCHEDOP_POLL_MAX_PORTS + 1, xen_now() + NS_PER_MS), -XEN_EINVAL,
             "SCHEDOP_poll with %u ports", SCHEDOP_POLL_MAX_PORTS + 1);
    evtchn_port_t bad = EVTCHN_2L_NR_PORTS + 1;
    check_rc(sched_poll(&bad, 1, xen_now() + NS_PER_MS), -XEN_EINVAL,
             "SCHEDOP_poll on port %u", bad);

    if (!c->timer_port) {
        skip_part("SCHEDOP_block / hlt: no timer port");
        return;
    }
    /* SCHEDOP_block with IF=1: returns once the timer's event is pending; the
     * upcall follows.  Late expiries of earlier timers are drained first, and
     * the timer is 20 ms away so that it cannot fire before the block. */
    drain_timer();
    printf("blocking in SCHEDOP_block (IF=1) until the timer fires\n");
    uint32_t seen = c->timer_events;
    t0 = xen_now();
    uint64_t dl = t0 + 20 * NS_PER_MS;
    timer_set_singleshot(dl, 0);
    local_irq_enable();
    rc = HYPERVISOR_sched_op(SCHEDOP_block, NULL);
    local_irq_disable();
    t1 = xen_now();
    check_rc(rc, 0, "SCHEDOP_block");
    check((int64_t)(t1 - dl) >= -10000, "SCHEDOP_block returned at the timer (%lld us after it)",
          (long long)(int64_t)(t1 - dl) / 1000);
    check(wait_timer_event(seen, 100 * NS_PER_MS), "the timer's upcall followed");

    drain_timer();
    printf("halting (sti; hlt) until the timer fires\n");
    seen = c->timer_events;
    t0 = xen_now();
    dl = t0 + 3 * NS_PER_MS;
    timer_set_singleshot(dl, 0);
    unsigned int halts = 0;
    while (c->timer_events == seen && xen_now() - t0 < 2 * NS_PER_SEC) {
        safe_halt();
        local_irq_disable();
        halts++;
    }
    t1 = xen_now();
    check(c->timer_events != seen, "hlt woke on the timer upcall (%u halt%s)", halts,
          halts == 1 ? "" : "s");
    check((int64_t)(c->timer_last_ns - dl) >= 0, "the upcall came at or after the deadline");
}

/* ---- 8. register_vcpu_info ---- */
static uint8_t vcpu_info_page[PAGE_SIZE] __aligned(PAGE_SIZE);

static void part_vcpu_info(void)
{
    drain_timer();
    struct vcpu_register_vcpu_info r = {
        .mfn = (unsigned long)vcpu_info_page >> 12, .offset = 4090,
    };
    check_rc(HYPERVISOR_vcpu_op(VCPUOP_register_vcpu_info, 0, &r), -XEN_EINVAL,
             "register_vcpu_info(offset 4090: crosses the page)");

    local_irq_disable();
    let_events_in();
    volatile struct vcpu_info *old = vi();
    uint64_t before = xen_now();
    r.offset = 128;
    long rc = HYPERVISOR_vcpu_op(VCPUOP_register_vcpu_info, 0, &r);
    if (!check_rc(rc, 0, "register_vcpu_info(gfn %#llx, offset 128)",
                  (unsigned long long)r.mfn))
        return;
    volatile struct vcpu_info *nv = (volatile struct vcpu_info *)(vcpu_info_page + 128);
    check(nv->evtchn_pending_sel == ~0UL, "new vcpu_info: pending_sel all ones (%#lx)",
          (unsigned long)nv->evtchn_pending_sel);
    check_eq(nv->evtchn_upcall_pending, 1, "new vcpu_info: upcall_pending set");
    struct pvclock_snapshot s;
    pvclock_snapshot(&nv->time, &s);
    check(s.mul != 0 && s.system_time != 0, "new vcpu_info carries the time (system_time %llu)",
          (unsigned long long)s.system_time);
    cpus[0].vcpu_info = nv;
    uint64_t after = xen_now();
    check(after >= before, "time from the new area is not behind the old (+%llu ns)",
          (unsigned long long)(after - before));
    uint32_t upcalls = cpus[0].upcalls;
    let_events_in();
    if (cpus[0].upcalls == upcalls)
        udelay_ns(NS_PER_MS), let_events_in();
    check(cpus[0].upcalls != upcalls && nv->evtchn_pending_sel != ~0UL,
          "an upcall followed the registration and rescanned from the new area "
          "(upcalls +%u, pending_sel now %#lx, upcall_pending %u)", cpus[0].upcalls - upcalls,
          (unsigned long)nv->evtchn_pending_sel, nv->evtchn_upcall_pending);

    old->evtchn_upcall_pending = 0;
    uint32_t n = evtchn_count[ipi_port];
    check_rc(evtchn_send(ipi_port), 0, "send on the IPI port after the move");
    check_eq(nv->evtchn_upcall_pending, 1, "upcall_pending set in the new area");
    check_eq(old->evtchn_upcall_pending, 0, "the old area in shared_info is not used");
    wait_count(ipi_port, n + 1, 100 * NS_PER_MS);
    check_eq(evtchn_count[ipi_port], n + 1, "the event was delivered");

    r.offset = 256;
    check_rc(HYPERVISOR_vcpu_op(VCPUOP_register_vcpu_info, 0, &r), -XEN_EINVAL,
             "register_vcpu_info a second time");
}

/* ---- 9. runstate ---- */
static struct vcpu_runstate_info runstate_area;

static void part_runstate(void)
{
    struct vcpu_runstate_info ri;
    memset(&ri, 0xff, sizeof(ri));
    long rc = HYPERVISOR_vcpu_op(VCPUOP_get_runstate_info, 0, &ri);
    check_rc(rc, 0, "get_runstate_info");
    check(ri.state == RUNSTATE_running, "get_runstate_info: state running (%d)", ri.state);
    printf("  runstate: running %llu ns, runnable %llu, blocked %llu, offline %llu\n",
           (unsigned long long)ri.time[0], (unsigned long long)ri.time[1],
           (unsigned long long)ri.time[2], (unsigned long long)ri.time[3]);

    struct vcpu_register_runstate_memory_area a = { .addr.v = &runstate_area };
    memset(&runstate_area, 0xff, sizeof(runstate_area));
    rc = HYPERVISOR_vcpu_op(VCPUOP_register_runstate_memory_area, 0, &a);
    if (!check_rc(rc, 0, "register_runstate_memory_area(%p)", (void *)&runstate_area))
        return;
    struct vcpu_runstate_info r0 = runstate_area;
    check(r0.state == RUNSTATE_running && r0.time[RUNSTATE_running] > 0,
          "runstate area filled at registration: state %d, running %llu ns", r0.state,
          (unsigned long long)r0.time[RUNSTATE_running]);

    udelay_ns(2 * NS_PER_MS);
    evtchn_port_t p = ipi_port;
    local_irq_disable();
    let_events_in();
    uint64_t t0 = xen_now();
    sched_poll(&p, 1, t0 + 10 * NS_PER_MS);
    uint64_t slept = xen_now() - t0;
    struct vcpu_runstate_info r1 = runstate_area;
    uint64_t blocked = r1.time[RUNSTATE_blocked] - r0.time[RUNSTATE_blocked];
    uint64_t running = r1.time[RUNSTATE_running] - r0.time[RUNSTATE_running];
    printf("  after a %llu us poll: blocked +%llu us, running +%llu us\n",
           (unsigned long long)slept / 1000, (unsigned long long)blocked / 1000,
           (unsigned long long)running / 1000);
    check(blocked >= 5 * NS_PER_MS, "blocked time grew by >= 5 ms");
    check(running > 0, "running time grew");
    check((r1.state_entry_time & ~XEN_RUNSTATE_UPDATE) >
              (r0.state_entry_time & ~XEN_RUNSTATE_UPDATE),
          "state_entry_time advanced");
    check_eq(r1.state, RUNSTATE_running, "area says running while we run");
}

/* ---- 10. exhaustion ---- */
static evtchn_port_t many_ports[EVTCHN_2L_NR_PORTS];

static void part_exhaustion(void)
{
    unsigned int n = 0;
    long rc = 0;
    evtchn_port_t highest = 0;
    printf("allocating ports until alloc_unbound fails\n");
    while (n < ARRAY_SIZE(many_ports)) {
        rc = evtchn_alloc_unbound(DOMID_SELF);
        if (rc < 0)
            break;
        many_ports[n++] = (evtchn_port_t)rc;
        if ((evtchn_port_t)rc > highest)
            highest = (evtchn_port_t)rc;
    }
    check_rc(rc, -XEN_ENOSPC, "alloc_unbound after %u ports (highest %u)", n, highest);
    check(highest < EVTCHN_2L_NR_PORTS, "every port below %lu",
          (unsigned long)EVTCHN_2L_NR_PORTS);
    unsigned int bad = 0;
    for (unsigned int i = 0; i < n; i++)
        if (evtchn_close(many_ports[i]) != 0)
            bad++;
    check_eq(bad, 0, "closed all %u ports", n);
    rc = evtchn_alloc_unbound(DOMID_SELF);
    check(rc > 0, "alloc_unbound works again (port %ld)", rc);
    if (rc > 0)
        evtchn_close((evtchn_port_t)rc);
}

/* ---- 11. FIFO, 12. reset ---- */
static uint8_t fifo_control_page[PAGE_SIZE] __aligned(PAGE_SIZE);

static void part_fifo_reset(void)
{
    struct evtchn_init_control ic = {
        .control_gfn = (unsigned long)fifo_control_page >> 12, .offset = 0, .vcpu = 0xffff,
    };
    long rc = HYPERVISOR_event_channel_op(EVTCHNOP_init_control, &ic);
    check(rc == -XEN_ENOSYS || rc == -XEN_ENOENT || rc == -XEN_EINVAL,
          "init_control(vcpu 0xffff) -> %s (-ENOSYS without FIFO, -ENOENT/-EINVAL with it)",
          xen_errno_name(rc));

    bool can_reset = console_backend == CONSOLE_XEN_CONSOLE_IO;
    if (!can_reset) {
        skip_part("FIFO init_control with a real page and EVTCHNOP_reset: the console "
                  "uses an event channel (%s)", console_backend_name());
        return;
    }
    ic.vcpu = 0;
    local_irq_disable();
    rc = HYPERVISOR_event_channel_op(EVTCHNOP_init_control, &ic);
    check(rc == 0 || rc == -XEN_ENOSYS, "init_control(vcpu 0, control page) -> %s: %s",
          xen_errno_name(rc),
          rc == 0 ? "FIFO ABI available (now switched to FIFO)" : "FIFO ABI not implemented");
    if (rc == 0)
        printf("  link_bits %u\n", ic.link_bits);

    struct evtchn_reset r = { .dom = DOMID_SELF };
    rc = HYPERVISOR_event_channel_op(EVTCHNOP_reset, &r);
    check_rc(rc, 0, "EVTCHNOP_reset(self)");
    struct evtchn_status st;
    evtchn_get_status(DOMID_SELF, ipi_port, &st);
    check_eq(st.status, EVTCHNSTAT_closed, "IPI port closed by the reset");
    if (cpus[0].timer_port) {
        evtchn_get_status(DOMID_SELF, cpus[0].timer_port, &st);
        check_eq(st.status, EVTCHNSTAT_closed, "VIRQ_TIMER port closed by the reset");
        cpus[0].timer_port = 0;
    }
    long p = evtchn_bind_ipi(0);
    if (check(p > 0, "bind_ipi after the reset -> port %ld", p)) {
        evtchn_set_handler((evtchn_port_t)p, noop_handler, NULL);
        uint32_t n = evtchn_count[p];
        evtchn_send((evtchn_port_t)p);
        check(wait_count((evtchn_port_t)p, n + 1, 100 * NS_PER_MS),
              "2-level delivery works after the reset");
    }
    r.dom = 0;
    rc = HYPERVISOR_event_channel_op(EVTCHNOP_reset, &r);
    if (domid != 0)
        check(rc == -XEN_EPERM || rc == -XEN_ESRCH,
              "EVTCHNOP_reset(dom 0) -> %s (-EPERM; -ESRCH without dom0)", xen_errno_name(rc));
}

/* ---- 13. SCHEDOP_block with IF=0 (last: a hypervisor that only wakes a
 * blocked vCPU for deliverable events hangs here) ---- */
static void part_block_if0(void)
{
    struct cpu *c = &cpus[0];
    if (!c->timer_port && timer_init() < 0) {
        skip_part("SCHEDOP_block with IF=0: no timer port");
        return;
    }
    local_irq_disable();
    let_events_in();
    printf("blocking in SCHEDOP_block with IF=0 until the timer fires (Xen wakes a blocked "
           "vCPU on any event, whatever its IF)\n");
    uint32_t seen = c->timer_events;
    uint64_t t0 = xen_now(), dl = t0 + 20 * NS_PER_MS;
    timer_set_singleshot(dl, 0);
    if (vi()->evtchn_upcall_pending) {
        skip_part("SCHEDOP_block with IF=0: an event is already pending");
        return;
    }
    long rc = HYPERVISOR_sched_op(SCHEDOP_block, NULL);
    uint64_t t1 = xen_now();
    check_rc(rc, 0, "SCHEDOP_block (IF=0)");
    check((int64_t)(t1 - dl) >= -10000, "woke at the timer (%lld us after it) with IF=0",
          (long long)(int64_t)(t1 - dl) / 1000);
    check(wait_timer_event(seen, 100 * NS_PER_MS), "the timer's upcall came once IF=1");
}

void test_main(void)
{
    if (!xen_present)
        test_skip("needs Xen (event channels, timers)");
    local_irq_disable();
    printf("-- set-up\n");
    part_setup();
    printf("-- IPI\n");
    part_ipi();
    printf("-- masking\n");
    part_mask();
    printf("-- status of each port type\n");
    part_status();
    printf("-- error cases\n");
    part_errors();
    printf("-- timers\n");
    part_timers();
    printf("-- poll, block, hlt\n");
    part_poll_block_hlt();
    printf("-- register_vcpu_info\n");
    part_vcpu_info();
    printf("-- runstate\n");
    part_runstate();
    printf("-- port exhaustion\n");
    part_exhaustion();
    printf("-- FIFO and reset\n");
    part_fifo_reset();
    printf("-- SCHEDOP_block with IF=0\n");
    part_block_if0();
    local_irq_disable();
}
