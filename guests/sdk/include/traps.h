/*
 * Exceptions and interrupts.
 *
 * Every vector has a stub that builds a struct trap_frame and calls
 * trap_dispatch(), which tries in order:
 *   1. a handler installed with trap_set_handler() for that vector;
 *   2. probe_exec(): a fetch fault at the probed address;
 *   3. the exception table: if the saved instruction pointer is listed with
 *      ASM_EXTABLE(fault, fixup), the fault is recorded in last_fault and
 *      execution resumes at the fixup address (at the same privilege level);
 *   4. otherwise: "unexpected exception ..." and the test fails.
 *
 * Note the key of the exception table is the *saved* instruction pointer:
 * the faulting instruction for faults, the next instruction for traps
 * (int3, int n, icebp).  Example:
 *
 *     fault_reset();
 *     asm volatile("1: ud2\n2:\n" ASM_EXTABLE(1b, 2b) ::: "memory");
 *     check(last_fault.vector == X86_EXC_UD, "#UD");
 */
#ifndef SDK_TRAPS_H
#define SDK_TRAPS_H

#include <stdint.h>
#include <stdbool.h>

#ifdef __x86_64__
#define _ASM_PTR    ".quad "
#define _ASM_ALIGN  "8"
struct trap_frame {
    unsigned long r15, r14, r13, r12, r11, r10, r9, r8;
    unsigned long rbp, rdi, rsi, rdx, rcx, rbx, rax;
    unsigned long vector, error_code;
    /* Pushed by the CPU (in 64-bit mode SS:RSP are always pushed). */
    unsigned long ip, cs, flags, sp, ss;
};
#else
#define _ASM_PTR    ".long "
#define _ASM_ALIGN  "4"
struct trap_frame {
    /* pushal order, lowest address first */
    unsigned long edi, esi, ebp, esp_at_pusha, ebx, edx, ecx, eax;
    unsigned long vector, error_code;
    /* Pushed by the CPU.  No privilege change in the 32-bit SDK, so the
     * interrupted ESP is the address just above 'flags' (trap_frame_sp()). */
    unsigned long ip, cs, flags;
};
#endif

#define ASM_EXTABLE(fault, fixup)                           \
    ".pushsection .extable, \"a\"\n\t"                      \
    ".balign " _ASM_ALIGN "\n\t"                            \
    _ASM_PTR #fault ", " #fixup "\n\t"                      \
    ".popsection\n\t"

struct extable_entry {
    unsigned long fault, fixup;
};

#define NO_FAULT  0xffffffffu

/* What the last fault caught by the exception table or a probe looked like. */
struct fault_record {
    uint32_t vector;          /* NO_FAULT when nothing was caught */
    uint32_t count;           /* faults caught since fault_reset() */
    unsigned long error_code;
    unsigned long cr2;
    unsigned long ip;         /* saved instruction pointer */
    unsigned long cs;
    unsigned long flags;
    unsigned long sp;         /* interrupted stack pointer */
    unsigned long ss;
    unsigned long handler_sp; /* where the CPU put the exception frame */
};
extern volatile struct fault_record last_fault;

/* Returns true when it handled the event (the frame may be edited). */
typedef bool (*trap_handler_fn)(struct trap_frame *f);
void trap_set_handler(unsigned int vector, trap_handler_fn fn);
void trap_dispatch(struct trap_frame *f);
const char *exception_name(unsigned int vector);
bool exception_has_error_code(unsigned int vector);
unsigned long trap_frame_sp(const struct trap_frame *f);
unsigned long trap_frame_ss(const struct trap_frame *f);
/* Record a fault from a handler (used by custom handlers). */
void fault_record_from(const struct trap_frame *f);

void fault_reset(void);

/*
 * One-instruction probes.  Each returns the vector of the fault it caught, or
 * -1 when the access worked.  Details are in last_fault.
 */
static inline int probe_read8(const volatile void *p, uint8_t *val)
{
    uint8_t v = 0;
    fault_reset();
    asm volatile("1: movb (%[p]), %[v]\n2:\n" ASM_EXTABLE(1b, 2b)
                 : [v] "+q"(v) : [p] "r"(p) : "memory");
    if (val)
        *val = v;
    return last_fault.vector == NO_FAULT ? -1 : (int)last_fault.vector;
}

static inline int probe_write8(volatile void *p, uint8_t val)
{
    fault_reset();
    asm volatile("1: movb %[v], (%[p])\n2:\n" ASM_EXTABLE(1b, 2b)
                 :: [v] "q"(val), [p] "r"(p) : "memory");
    return last_fault.vector == NO_FAULT ? -1 : (int)last_fault.vector;
}

static inline int probe_read32(const volatile void *p, uint32_t *val)
{
    uint32_t v = 0;
    fault_reset();
    asm volatile("1: movl (%[p]), %[v]\n2:\n" ASM_EXTABLE(1b, 2b)
                 : [v] "+r"(v) : [p] "r"(p) : "memory");
    if (val)
        *val = v;
    return last_fault.vector == NO_FAULT ? -1 : (int)last_fault.vector;
}

static inline int probe_write32(volatile void *p, uint32_t val)
{
    fault_reset();
    asm volatile("1: movl %[v], (%[p])\n2:\n" ASM_EXTABLE(1b, 2b)
                 :: [v] "r"(val), [p] "r"(p) : "memory");
    return last_fault.vector == NO_FAULT ? -1 : (int)last_fault.vector;
}

/*
 * Calls `target` (which should hold a RET, e.g. the byte 0xC3).  A fault on
 * fetching target itself is caught; returns the vector or -1.
 */
int probe_exec(const void *target);

/* Byte of code that just returns: copy it where probe_exec should jump. */
#define OPCODE_RET 0xc3

#endif
