/* Long-mode set-up after the entry code: TSS, IDT, page permissions, CPL3. */
#include "sdk.h"

const char sdk_arch_name[] = "x86_64";

/* Identity page tables, filled by head.S. */
uint64_t pml4[512] __aligned(4096) __attribute__((section(".bss.page_aligned")));
uint64_t pdpt[512] __aligned(4096) __attribute__((section(".bss.page_aligned")));
uint64_t pd[4][512] __aligned(4096) __attribute__((section(".bss.page_aligned")));
uint64_t pt_low[512] __aligned(4096) __attribute__((section(".bss.page_aligned")));

struct tss64 tss __aligned(128);
struct idt_gate idt[256] __aligned(16);

uint8_t rsp0_stack[RSP0_STACK_SIZE] __aligned(4096) __attribute__((section(".bss.page_aligned")));
uint8_t ist_stacks[7][IST_STACK_SIZE] __aligned(4096) __attribute__((section(".bss.page_aligned")));
uint8_t user_stack[USER_STACK_SIZE] __aligned(4096) __attribute__((section(".bss.page_aligned")));

volatile struct syscall_record last_syscall;

extern char trap_stubs[];
extern char run_user_resume[];
extern unsigned long run_user_saved_rsp;
extern char syscall_entry[];
extern unsigned long syscall_user_rsp, syscall_user_rip, syscall_user_rflags;

#define STUB_SIZE 16
#define GATE_INTERRUPT 0x8e        /* present, DPL0, 64-bit interrupt gate */

static unsigned int default_ist(unsigned int vec)
{
    switch (vec) {
    case X86_EXC_DF:  return 1;   /* a double fault often means a bad stack */
    case X86_EXC_NMI: return 2;
    case X86_EXC_MC:  return 3;
    default:          return 0;
    }
}

static unsigned int default_dpl(unsigned int vec)
{
    /* Vectors user code may raise with int3 / into / int n. */
    switch (vec) {
    case X86_EXC_BP: case X86_EXC_OF: case VEC_SYSCALL_INT: case VEC_USER_RETURN:
        return 3;
    default:
        return 0;
    }
}

void idt_reset_gate(unsigned int vec)
{
    unsigned long addr = (unsigned long)trap_stubs + vec * STUB_SIZE;
    struct idt_gate *g = &idt[vec & 0xff];
    g->offset_lo = (uint16_t)addr;
    g->selector = KERNEL_CS;
    g->ist = (uint8_t)default_ist(vec);
    g->type_attr = (uint8_t)(GATE_INTERRUPT | (default_dpl(vec) << 5));
    g->offset_mid = (uint16_t)(addr >> 16);
    g->offset_hi = (uint32_t)(addr >> 32);
    g->reserved = 0;
}

void idt_set_ist(unsigned int vec, unsigned int ist)
{
    idt[vec & 0xff].ist = (uint8_t)(ist & 7);
}

void idt_set_dpl(unsigned int vec, unsigned int dpl)
{
    struct idt_gate *g = &idt[vec & 0xff];
    g->type_attr = (uint8_t)((g->type_attr & ~0x60) | ((dpl & 3) << 5));
}

void idt_set_present(unsigned int vec, bool present)
{
    struct idt_gate *g = &idt[vec & 0xff];
    g->type_attr = (uint8_t)(present ? (g->type_attr | 0x80) : (g->type_attr & ~0x80));
}

void idt_set_selector(unsigned int vec, uint16_t sel)
{
    idt[vec & 0xff].selector = sel;
}

bool addr_on_rsp0_stack(unsigned long a)
{
    return a >= (unsigned long)rsp0_stack && a < (unsigned long)rsp0_stack + RSP0_STACK_SIZE;
}

bool addr_on_ist_stack(unsigned int ist, unsigned long a)
{
    if (ist < 1 || ist > 7)
        return false;
    unsigned long lo = (unsigned long)ist_stacks[ist - 1];
    return a >= lo && a < lo + IST_STACK_SIZE;
}

uint64_t *sdk_pte(const volatile void *va)
{
    unsigned long a = (unsigned long)va;
    if (a >= (2UL << 20))
        return NULL;
    return &pt_low[a >> 12];
}

void sdk_pte_update(const volatile void *va, uint64_t set, uint64_t clear)
{
    uint64_t *pte = sdk_pte(va);
    if (!pte)
        return;
    *pte = (*pte & ~clear) | set;
    invlpg(va);
}

/* CPL3 -> CPL0: `int $VEC_USER_RETURN` from run_user's trampoline. */
static bool user_return_handler(struct trap_frame *f)
{
    if ((f->cs & 3) != 3)
        return false;
    f->rax = f->rdi;                      /* the user function's result */
    f->ip = (unsigned long)run_user_resume;
    f->cs = KERNEL_CS;
    f->ss = KERNEL_DS;
    f->sp = run_user_saved_rsp;
    f->flags = 0x2;                       /* run_user_resume restores the rest */
    return true;
}

static syscall_fn syscall_handler;

long syscall_dispatch(long nr, long a1, long a2);
long syscall_dispatch(long nr, long a1, long a2)
{
    last_syscall.count++;
    last_syscall.nr = (unsigned long)nr;
    last_syscall.user_rip = syscall_user_rip;
    last_syscall.user_rflags = syscall_user_rflags;
    last_syscall.user_rsp = syscall_user_rsp;
    last_syscall.cs = read_cs();
    last_syscall.ss = read_ss();
    last_syscall.rflags = read_flags();
    return syscall_handler ? syscall_handler(nr, a1, a2) : -XEN_ENOSYS;
}

void syscall_setup(syscall_fn handler)
{
    syscall_handler = handler;
    /* SYSCALL: CS = STAR[47:32], SS = +8.  SYSRET (64-bit): CS = STAR[63:48] + 16,
     * SS = STAR[63:48] + 8, both with RPL 3. */
    wrmsr(MSR_STAR, ((uint64_t)(USER_CS32 & ~3) << 48) | ((uint64_t)KERNEL_CS << 32));
    wrmsr(MSR_LSTAR, (unsigned long)syscall_entry);
    wrmsr(MSR_FMASK, X86_FLAGS_IF | X86_FLAGS_TF | X86_FLAGS_DF | X86_FLAGS_AC);
    wrmsr(MSR_EFER, rdmsr(MSR_EFER) | EFER_SCE);
}

static void setup_tss(void)
{
    memset(&tss, 0, sizeof(tss));
    tss.rsp[0] = (unsigned long)rsp0_stack + RSP0_STACK_SIZE;
    for (unsigned int i = 1; i <= 7; i++)
        tss.ist[i] = (unsigned long)ist_stacks[i - 1] + IST_STACK_SIZE;
    tss.iomap_base = sizeof(tss);         /* no I/O permission bitmap */

    unsigned long base = (unsigned long)&tss;
    uint64_t limit = sizeof(tss) - 1;
    gdt[TSS_SEL / 8] = (limit & 0xffff) | ((base & 0xffffff) << 16) |
                       (0x89ULL << 40) |                 /* present, available 64-bit TSS */
                       (((limit >> 16) & 0xf) << 48) | ((uint64_t)((base >> 24) & 0xff) << 56);
    gdt[TSS_SEL / 8 + 1] = base >> 32;
    ltr(TSS_SEL);
}

static void setup_idt(void)
{
    for (unsigned int v = 0; v < 256; v++)
        idt_reset_gate(v);
    struct desc_ptr p = { .limit = sizeof(idt) - 1, .base = (unsigned long)idt };
    lidt(&p);
    trap_set_handler(VEC_USER_RETURN, user_return_handler);
}

static bool in_page0(uint64_t addr)
{
    return addr && addr < PAGE_SIZE;
}

/* Page 0 stays unmapped so NULL pointers fault, unless the loader put start
 * of day data there (QEMU puts the memory map at a low address). */
static bool start_info_uses_page0(void)
{
    if (!start_info)
        return false;
    if (in_page0(start_info_paddr) || in_page0(start_info->cmdline_paddr) ||
        in_page0(start_info->modlist_paddr))
        return true;
    return start_info->version >= 1 && in_page0(start_info->memmap_paddr);
}

/* The image becomes user-accessible (run_user runs any function); code and
 * read-only data become read-only. */
static void setup_page_permissions(void)
{
    for (unsigned long a = (unsigned long)_image_start; a < (unsigned long)_image_end; a += PAGE_SIZE) {
        uint64_t *pte = sdk_pte((void *)a);
        if (!pte)
            break;
        *pte |= PTE_U;
        if (a >= (unsigned long)_text_start && a < (unsigned long)_text_end)
            *pte &= ~PTE_W;
    }
    if (start_info_uses_page0())
        pt_low[0] = PTE_P;              /* read-only, supervisor */
    flush_tlb();
}

void arch_setup(void)
{
    setup_tss();
    setup_idt();
    setup_page_permissions();
}

void arch_after_hypercall_page(void)
{
    /* Stubs are code: keep stray writes (e.g. from fuzzed hypercalls) off them. */
    sdk_pte_update(hypercall_page, 0, PTE_W);
}

void arch_bare_metal_setup(void)
{
    /* Firmware may have left the PIT ticking through an unmasked PIC. */
    outb(0x21, 0xff);
    outb(0xa1, 0xff);
}
