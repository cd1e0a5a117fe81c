/*
 * Per-vCPU data and secondary vCPU start-up.
 *
 * cpus[i] describes the vCPU whose id is i (the SDK keeps slot == vCPU id).
 * this_cpu() reads the slot through %gs:0 once smp_init() has set the GS
 * base of the boot vCPU (APs set their own); before that it is cpus[0].
 *
 * 64-bit only: smp_init() / smp_cpu_start() start secondary vCPUs with
 * VCPUOP_initialise (vcpu_hvm_context, VCPU_HVM_MODE_64B: our CR3, CR0, CR4
 * and EFER, RIP = the AP entry, RSP = the AP's stack) and VCPUOP_up.  Each AP
 * loads a GDT of its own (same selectors as the boot GDT, own TSS with own
 * RSP0 and IST stacks), the shared IDT, sets its GS base, learns its vCPU id
 * from CPUID leaf base+4, and then runs work posted with smp_run() (with
 * interrupts enabled), halting in between.  If event channels are set up
 * (evtchn_init() before smp_init()), each AP binds an IPI port to itself
 * (cpu->ipi_port), which smp_run() uses to wake it; otherwise APs spin.
 */
#ifndef SDK_SMP_H
#define SDK_SMP_H

#include <stdint.h>
#include <stdbool.h>
#include "xen_abi.h"

#define SDK_MAX_CPUS  8

typedef void (*smp_fn)(void *arg);

struct cpu {
    struct cpu *self;                 /* @0: %gs:0 */
    unsigned int index;               /* slot in cpus[] (== vCPU id) */
    unsigned int vcpu_id;             /* from CPUID base+4 (0 without the leaf) */
    volatile struct vcpu_info *vcpu_info;   /* NULL until shared_info is mapped */
    volatile bool online;             /* running SDK code */
    volatile bool started;            /* VCPUOP_up done by smp_cpu_start() */

    /* Event channels (events.c / time.c). */
    evtchn_port_t timer_port;         /* VIRQ_TIMER on this vCPU, 0 = not bound */
    evtchn_port_t ipi_port;           /* SDK wake-up IPI, 0 = none */
    volatile uint32_t upcalls;        /* upcall handler entries */
    volatile uint32_t timer_events;   /* VIRQ_TIMER events handled */
    volatile uint64_t timer_last_ns;  /* system time when the last one was handled */
    uint64_t guard_expiry;            /* sdk_wait()'s timer, 0 = not armed */
    /* Ports whose events this vCPU handles (bit set = ours). */
    unsigned long evtchn_owned[EVTCHN_WORD_BITS];

    /* Work posted by smp_run(). */
    volatile smp_fn work_fn;
    void *volatile work_arg;
    volatile uint32_t work_posted, work_done;

#ifdef __x86_64__
    uint64_t gdt[10] __attribute__((aligned(16)));   /* GDT_ENTRIES */
    struct tss64 tss __attribute__((aligned(16)));
    unsigned long stack_top;
#endif
};

extern struct cpu cpus[SDK_MAX_CPUS];
extern bool smp_active;              /* GS-based this_cpu() in use */

static inline struct cpu *this_cpu(void)
{
#ifdef __x86_64__
    if (smp_active) {
        struct cpu *c;
        asm volatile("mov %%gs:0, %0" : "=r"(c));
        return c;
    }
#endif
    return &cpus[0];
}

static inline unsigned int smp_id(void)
{
    return this_cpu()->index;
}

/* vCPU id from CPUID leaf base+4 (EBX, valid when EAX bit 3 is set); 0 without Xen. */
unsigned int cpuid_vcpu_id(void);
/* Sets up cpus[0] and the GS base of the boot vCPU; idempotent.  Returns the
 * boot vCPU's id. */
unsigned int smp_init(void);
/* VCPUOP_initialise + VCPUOP_up for `vcpu`, then waits (up to timeout_ns)
 * until it runs SDK code.  Returns 0 or a negative Xen errno (-XEN_ETIME on
 * timeout, -XEN_ENOSYS on 32-bit). */
long smp_cpu_start(unsigned int vcpu, uint64_t timeout_ns);
/* Posts fn(arg) to run on `vcpu` (which must be idle) and wakes it. */
void smp_run(unsigned int vcpu, smp_fn fn, void *arg);
/* Waits until the work posted to `vcpu` has returned; false on timeout. */
bool smp_wait_done(unsigned int vcpu, uint64_t timeout_ns);
bool smp_idle(unsigned int vcpu);
/* The VCPUOP_initialise context the SDK uses for an AP (for tests that want
 * to call the hypercall themselves). */
void smp_fill_context(unsigned int vcpu, struct vcpu_hvm_context *ctx);

#endif
