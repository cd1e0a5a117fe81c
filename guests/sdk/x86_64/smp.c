/* Secondary vCPUs (64-bit): per-vCPU GDT/TSS/stacks, VCPUOP_initialise/up, idle loop. */
#include "sdk.h"

#define AP_STACK_SIZE   16384
#define AP_RSP0_SIZE    8192
#define AP_IST_SIZE     4096
#define AP_IST_STACKS   4       /* IST1..3 each; IST4..7 share the fourth */

struct ap_stacks {
    uint8_t stack[AP_STACK_SIZE];
    uint8_t rsp0[AP_RSP0_SIZE];
    uint8_t ist[AP_IST_STACKS][AP_IST_SIZE];
};
static struct ap_stacks ap_stacks[SDK_MAX_CPUS - 1] __aligned(PAGE_SIZE)
    __attribute__((section(".bss.page_aligned")));

extern char ap_entry64[];
void ap_start(struct cpu *c) __noreturn;

static void kick_handler(evtchn_port_t port, void *arg)
{
    (void)port;
    (void)arg;      /* waking up from hlt is all a kick is for */
}

static void bind_kick_ipi(struct cpu *c)
{
    if (!evtchn_ready || c->ipi_port)
        return;
    long p = evtchn_bind_ipi(c->vcpu_id);
    if (p > 0) {
        evtchn_set_handler((evtchn_port_t)p, kick_handler, NULL);
        c->ipi_port = (evtchn_port_t)p;
    }
}

unsigned int smp_init(void)
{
    if (!smp_active) {
        for (unsigned int i = 0; i < SDK_MAX_CPUS; i++) {
            cpus[i].self = &cpus[i];
            cpus[i].index = i;
        }
        cpus[0].vcpu_id = cpuid_vcpu_id();
        cpus[0].online = true;
        wrmsr(MSR_GS_BASE, (unsigned long)&cpus[0]);
        smp_active = true;
    }
    bind_kick_ipi(&cpus[0]);
    return cpus[0].vcpu_id;
}

static void set_tss_descriptor(uint64_t *g, const struct tss64 *t)
{
    unsigned long base = (unsigned long)t;
    uint64_t limit = sizeof(*t) - 1;
    g[TSS_SEL / 8] = (limit & 0xffff) | ((uint64_t)(base & 0xffffff) << 16) |
                     (0x89ULL << 40) |                  /* present, available 64-bit TSS */
                     (((limit >> 16) & 0xf) << 48) | ((uint64_t)((base >> 24) & 0xff) << 56);
    g[TSS_SEL / 8 + 1] = base >> 32;
}

static void prepare_cpu(unsigned int vcpu)
{
    struct cpu *c = &cpus[vcpu];
    struct ap_stacks *s = &ap_stacks[vcpu - 1];

    memcpy(c->gdt, gdt, sizeof(c->gdt));
    memset(&c->tss, 0, sizeof(c->tss));
    c->tss.rsp[0] = (unsigned long)s->rsp0 + AP_RSP0_SIZE;
    for (unsigned int i = 1; i <= 7; i++) {
        unsigned int k = i <= 3 ? i - 1 : 3;
        c->tss.ist[i] = (unsigned long)s->ist[k] + AP_IST_SIZE;
    }
    c->tss.iomap_base = sizeof(c->tss);
    set_tss_descriptor(c->gdt, &c->tss);

    /* The entry code finds its struct cpu at [rsp]. */
    c->stack_top = (unsigned long)s->stack + AP_STACK_SIZE - 16;
    *(uint64_t *)c->stack_top = (unsigned long)c;
}

void smp_fill_context(unsigned int vcpu, struct vcpu_hvm_context *ctx)
{
    struct cpu *c = &cpus[vcpu % SDK_MAX_CPUS];
    memset(ctx, 0, sizeof(*ctx));
    ctx->mode = VCPU_HVM_MODE_64B;
    struct vcpu_hvm_x86_64 *r = &ctx->cpu_regs.x86_64;
    r->rip = (unsigned long)ap_entry64;
    r->rsp = c->stack_top;
    r->rdi = (unsigned long)c;
    r->rflags = 0x2;
    r->cr0 = read_cr0();
    r->cr3 = read_cr3();
    r->cr4 = read_cr4();
    r->efer = rdmsr(MSR_EFER) & (EFER_LME | EFER_LMA | EFER_NXE | EFER_SCE);
}

static bool online_cond(void *arg)
{
    return ((struct cpu *)arg)->online;
}

long smp_cpu_start(unsigned int vcpu, uint64_t timeout_ns)
{
    if (vcpu == 0 || vcpu >= SDK_MAX_CPUS)
        return -XEN_EINVAL;
    if (!xen_present)
        return -XEN_ENOSYS;
    smp_init();
    struct cpu *c = &cpus[vcpu];
    if (c->online)
        return 0;
    prepare_cpu(vcpu);
    struct vcpu_hvm_context ctx;
    smp_fill_context(vcpu, &ctx);
    long rc = HYPERVISOR_vcpu_op(VCPUOP_initialise, vcpu, &ctx);
    if (rc < 0)
        return rc;
    rc = HYPERVISOR_vcpu_op(VCPUOP_up, vcpu, NULL);
    if (rc < 0)
        return rc;
    c->started = true;
    return sdk_wait(online_cond, c, timeout_ns) ? 0 : -XEN_ETIME;
}

static void __noreturn ap_idle(struct cpu *c)
{
    for (;;) {
        local_irq_disable();
        uint32_t posted = c->work_posted;
        if (c->work_done != posted) {
            rmb();
            smp_fn fn = c->work_fn;
            void *arg = c->work_arg;
            local_irq_enable();
            fn(arg);
            mb();
            c->work_done = posted;
            mb();
            if (cpus[0].ipi_port)
                evtchn_send(cpus[0].ipi_port);   /* the poster may be waiting */
            continue;
        }
        if (c->ipi_port) {
            safe_halt();
        } else {
            local_irq_enable();
            cpu_relax();
        }
    }
}

void ap_start(struct cpu *c)
{
    struct desc_ptr g = { .limit = sizeof(c->gdt) - 1, .base = (unsigned long)c->gdt };
    lgdt(&g);
    /* Reload CS through a far return, then the data segments. */
    asm volatile("pushq %[cs]\n\t"
                 "leaq 1f(%%rip), %%rax\n\t"
                 "pushq %%rax\n\t"
                 "lretq\n"
                 "1:"
                 :: [cs] "i"(KERNEL_CS) : "rax", "memory");
    asm volatile("mov %0, %%ds; mov %0, %%es; mov %0, %%ss" :: "r"((uint32_t)KERNEL_DS));
    asm volatile("mov %0, %%fs; mov %0, %%gs" :: "r"(0u));
    ltr(TSS_SEL);
    struct desc_ptr i = { .limit = sizeof(idt) - 1, .base = (unsigned long)idt };
    lidt(&i);
    wrmsr(MSR_GS_BASE, (unsigned long)c);

    c->vcpu_id = cpuid_vcpu_id();
    if (shared_info && c->vcpu_id < XEN_LEGACY_MAX_VCPUS)
        c->vcpu_info = &shared_info->vcpu_info[c->vcpu_id];
    bind_kick_ipi(c);
    mb();
    c->online = true;
    mb();
    if (cpus[0].ipi_port)
        evtchn_send(cpus[0].ipi_port);
    ap_idle(c);
}
