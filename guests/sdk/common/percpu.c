/* Per-vCPU data shared by both architectures. */
#include "sdk.h"

/* cpus[0] handles every port until one is bound elsewhere. */
struct cpu cpus[SDK_MAX_CPUS] = {
    [0] = { .self = &cpus[0], .index = 0,
            .evtchn_owned = { [0 ... EVTCHN_WORD_BITS - 1] = ~0UL } },
};
bool smp_active;

unsigned int cpuid_vcpu_id(void)
{
    if (!xen_present)
        return 0;
    uint32_t a, b, c, d;
    if (cpuid_eax(xen_cpuid_base) < xen_cpuid_base + 4)
        return 0;
    cpuid_count(xen_cpuid_base + 4, 0, &a, &b, &c, &d);
    return (a & (1u << 3)) ? b : 0;     /* XEN_HVM_CPUID_VCPU_ID_PRESENT */
}

bool smp_idle(unsigned int vcpu)
{
    return vcpu < SDK_MAX_CPUS && cpus[vcpu].work_done == cpus[vcpu].work_posted;
}

static bool work_done_cond(void *arg)
{
    struct cpu *c = arg;
    return c->work_done == c->work_posted;
}

bool smp_wait_done(unsigned int vcpu, uint64_t timeout_ns)
{
    if (vcpu >= SDK_MAX_CPUS)
        return false;
    return sdk_wait(work_done_cond, &cpus[vcpu], timeout_ns);
}

void smp_run(unsigned int vcpu, smp_fn fn, void *arg)
{
    if (vcpu >= SDK_MAX_CPUS)
        return;
    struct cpu *c = &cpus[vcpu];
    c->work_arg = arg;
    c->work_fn = fn;
    wmb();
    c->work_posted++;
    mb();
    if (c->ipi_port)
        evtchn_send(c->ipi_port);
}
