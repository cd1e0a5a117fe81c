/* 32-bit SDK: one vCPU only (secondary vCPU start is 64-bit only). */
#include "sdk.h"

unsigned int smp_init(void)
{
    cpus[0].self = &cpus[0];
    cpus[0].online = true;
    return cpus[0].vcpu_id;
}

void smp_fill_context(unsigned int vcpu, struct vcpu_hvm_context *ctx)
{
    (void)vcpu;
    memset(ctx, 0, sizeof(*ctx));
}

long smp_cpu_start(unsigned int vcpu, uint64_t timeout_ns)
{
    (void)vcpu;
    (void)timeout_ns;
    return -XEN_ENOSYS;
}
