/*
 * 64-bit (long mode) specifics of the SDK.
 *
 * GDT layout (SYSCALL/SYSRET need the user selectors in this order):
 *   0x08 kernel code, 64-bit      0x10 kernel data
 *   0x18 user code, 32-bit (DPL3) 0x20 user data (DPL3)   0x28 user code, 64-bit (DPL3)
 *   0x30 kernel code, 32-bit      0x38 spare (not present, for tests)
 *   0x40 TSS (16 bytes)            GDT limit = GDT_ENTRIES * 8 - 1
 */
#ifndef SDK_ARCH64_H
#define SDK_ARCH64_H

#define KERNEL_CS    0x08
#define KERNEL_DS    0x10
#define USER_CS32    0x1b
#define USER_DS      0x23
#define USER_CS      0x2b
#define KERNEL_CS32  0x30
#define SPARE_SEL    0x38
#define TSS_SEL      0x40
#define GDT_ENTRIES  10

#define BOOT_STACK_SIZE   16384
#define RSP0_STACK_SIZE   8192
#define IST_STACK_SIZE    4096
#define USER_STACK_SIZE   16384
#define SYSCALL_STACK_SIZE 8192

#ifndef __ASSEMBLER__
#include <stdint.h>
#include <stdbool.h>

extern uint64_t gdt[GDT_ENTRIES];

struct __attribute__((packed)) tss64 {
    uint32_t reserved0;
    uint64_t rsp[3];
    uint64_t ist[8];          /* ist[1..7] are IST1..7; ist[0] is the reserved slot */
    uint64_t reserved2;
    uint16_t reserved3;
    uint16_t iomap_base;
};
extern struct tss64 tss;

/* A 16-byte interrupt gate. */
struct __attribute__((packed)) idt_gate {
    uint16_t offset_lo;
    uint16_t selector;
    uint8_t  ist;             /* bits 2:0 */
    uint8_t  type_attr;       /* P, DPL, type (0xE interrupt gate, 0xF trap gate) */
    uint16_t offset_mid;
    uint32_t offset_hi;
    uint32_t reserved;
};
extern struct idt_gate idt[256];

void idt_set_ist(unsigned int vec, unsigned int ist);
void idt_set_dpl(unsigned int vec, unsigned int dpl);
void idt_set_present(unsigned int vec, bool present);
void idt_set_selector(unsigned int vec, uint16_t sel);
/* Restores the gate to the SDK default (stub, selector, DPL, IST). */
void idt_reset_gate(unsigned int vec);

/* Stacks: the boot stack, TSS.RSP0 (CPL3 -> CPL0), IST1..7. */
extern uint8_t rsp0_stack[RSP0_STACK_SIZE];
extern uint8_t ist_stacks[7][IST_STACK_SIZE];
bool addr_on_rsp0_stack(unsigned long a);
bool addr_on_ist_stack(unsigned int ist, unsigned long a);

/*
 * SDK page tables: identity map of 0..4 GiB.  0..2 MiB uses 4 KiB pages
 * (page 0 not present, so NULL faults); the rest 2 MiB pages, supervisor.
 * The image is user-accessible (so run_user() can run any function), code and
 * read-only data are read-only.  Tests may edit the 4 KiB PTEs below 2 MiB.
 */
extern uint64_t pml4[512], pdpt[512], pd[4][512], pt_low[512];
/* The 4 KiB PTE mapping va (va < 2 MiB), or NULL. */
uint64_t *sdk_pte(const volatile void *va);
/* Sets/clears bits in the PTE for va and invalidates its TLB entry. */
void sdk_pte_update(const volatile void *va, uint64_t set, uint64_t clear);

/* CPL3: runs fn(arg) on the user stack at CPL3 and returns its result.
 * Back to CPL0 through `int $VEC_USER_RETURN` (a DPL3 gate).  The function
 * must not print (console_io is refused at CPL3). */
typedef long (*user_fn)(long arg);
long run_user(user_fn fn, long arg);
extern uint8_t user_stack[USER_STACK_SIZE];

/* SYSCALL/SYSRET: EFER.SCE, STAR (kernel 0x08, user base 0x18), LSTAR, FMASK.
 * SYSCALL from CPL3 runs handler(nr=rax, rdi, rsi) on a kernel stack and
 * SYSRETQ returns its value in RAX. */
typedef long (*syscall_fn)(long nr, long a1, long a2);
void syscall_setup(syscall_fn handler);
struct syscall_record {
    unsigned long count;
    unsigned long nr;
    unsigned long user_rip;     /* RCX at entry */
    unsigned long user_rflags;  /* R11 at entry */
    unsigned long user_rsp;
    unsigned long cs, ss;       /* selectors seen inside the handler */
    unsigned long rflags;       /* RFLAGS inside the handler (after FMASK) */
};
extern volatile struct syscall_record last_syscall;

#endif /* __ASSEMBLER__ */

#endif
