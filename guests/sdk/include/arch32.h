/*
 * 32-bit (flat protected mode, paging off) specifics of the SDK.
 * GDT: 0x08 code (32-bit, flat), 0x10 data (flat), 0x18 spare (not present).
 * Everything runs at CPL0; guests that want paging build their own tables.
 */
#ifndef SDK_ARCH32_H
#define SDK_ARCH32_H

#define KERNEL_CS    0x08
#define KERNEL_DS    0x10
#define SPARE_SEL    0x18
#define GDT_ENTRIES  4

#define BOOT_STACK_SIZE   16384

#ifndef __ASSEMBLER__
#include <stdint.h>
#include <stdbool.h>

extern uint64_t gdt[GDT_ENTRIES];

/* An 8-byte interrupt gate. */
struct __attribute__((packed)) idt_gate {
    uint16_t offset_lo;
    uint16_t selector;
    uint8_t  zero;
    uint8_t  type_attr;
    uint16_t offset_hi;
};
extern struct idt_gate idt[256];

void idt_set_dpl(unsigned int vec, unsigned int dpl);
void idt_set_present(unsigned int vec, bool present);
void idt_reset_gate(unsigned int vec);

#endif /* __ASSEMBLER__ */

#endif
