/* 32-bit protected-mode set-up: the IDT. */
#include "sdk.h"

const char sdk_arch_name[] = "x86_32";

struct idt_gate idt[256] __aligned(16);

extern char trap_stubs[];

#define STUB_SIZE 16
#define GATE_INTERRUPT 0x8e        /* present, DPL0, 32-bit interrupt gate */

static unsigned int default_dpl(unsigned int vec)
{
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
    g->zero = 0;
    g->type_attr = (uint8_t)(GATE_INTERRUPT | (default_dpl(vec) << 5));
    g->offset_hi = (uint16_t)(addr >> 16);
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

void arch_setup(void)
{
    for (unsigned int v = 0; v < 256; v++)
        idt_reset_gate(v);
    struct desc_ptr p = { .limit = sizeof(idt) - 1, .base = (unsigned long)idt };
    lidt(&p);
}

void arch_after_hypercall_page(void)
{
    /* Paging is off: nothing to protect the page with. */
}

void arch_bare_metal_setup(void)
{
    /* Firmware may have left the PIT ticking through an unmasked PIC. */
    outb(0x21, 0xff);
    outb(0xa1, 0xff);
}
