/*
 * test-double-fault: when delivering an exception itself faults, the CPU must
 * raise #DF (vector 8, error code 0), here through IST1.  Three ways in:
 *   1. #PF with the stack not present: pushing the #PF frame faults again;
 *   2. #GP whose IDT gate is not present: #NP while delivering #GP;
 *   3. #PF whose gate names a selector beyond the GDT limit: #GP while
 *      delivering #PF.
 * Our #DF handler records the frame and resumes at a recovery point.
 */
#include "sdk.h"

const char test_title[] = "test-double-fault: #DF on a faulting exception delivery";

#define FRAME_IP_OFFSET 40

static uint8_t bad_stack_page[PAGE_SIZE] __aligned(PAGE_SIZE);
static uint8_t absent_page[PAGE_SIZE] __aligned(PAGE_SIZE);

/* Where the #DF handler resumes, and the stack to resume with. */
unsigned long df_resume_ip, df_saved_rsp;
static volatile unsigned int other_handler_calls;

static bool df_handler(struct trap_frame *f)
{
    fault_record_from(f);
    f->ip = df_resume_ip;
    f->sp = df_saved_rsp;
    f->cs = KERNEL_CS;
    f->ss = KERNEL_DS;
    return true;
}

static bool unexpected_handler(struct trap_frame *f)
{
    (void)f;
    other_handler_calls++;
    return false;     /* falls through to the default: fails the test */
}

static void expect_double_fault(const char *what)
{
    if (!check(last_fault.vector == X86_EXC_DF, "%s: #DF raised (vector %d)", what,
               (int)last_fault.vector))
        return;
    check_eq(last_fault.error_code, 0, "%s: #DF error code is 0", what);
    check(last_fault.handler_sp == tss.ist[1] - FRAME_IP_OFFSET,
          "%s: #DF handler ran on the IST1 stack (frame at %#lx)", what,
          last_fault.handler_sp);
    check_eq(last_fault.cs, KERNEL_CS, "%s: interrupted code was CPL0", what);
    check_eq(other_handler_calls, 0, "%s: no other handler ran", what);
    printf("  (saved RIP %#lx, RSP %#lx)\n", last_fault.ip, last_fault.sp);
}

/* 1: the first #PF cannot push its frame because RSP points at an absent page. */
static void df_from_stack_fault(void)
{
    unsigned long top = (unsigned long)bad_stack_page + PAGE_SIZE;
    sdk_pte_update(bad_stack_page, 0, PTE_P);
    fault_reset();
    asm volatile("mov %%rsp, df_saved_rsp(%%rip)\n\t"
                 "lea 2f(%%rip), %%rax\n\t"
                 "mov %%rax, df_resume_ip(%%rip)\n\t"
                 "mov %[top], %%rsp\n\t"
                 "push %%rax\n"
                 "2:\n\t"
                 "mov df_saved_rsp(%%rip), %%rsp\n\t"
                 :: [top] "r"(top) : "rax", "memory");
    sdk_pte_update(bad_stack_page, PTE_P, 0);
    expect_double_fault("#PF on an absent stack");
    check_eq(last_fault.cr2, top - 8, "CR2 is the absent stack slot");
}

/* 2: #GP(0) from a non-canonical access, with the #GP gate not present. */
static void df_from_absent_gp_gate(void)
{
    idt_set_present(X86_EXC_GP, false);
    fault_reset();
    asm volatile("mov %%rsp, df_saved_rsp(%%rip)\n\t"
                 "lea 2f(%%rip), %%rax\n\t"
                 "mov %%rax, df_resume_ip(%%rip)\n\t"
                 "mov (%[p]), %%rax\n"
                 "2:\n\t"
                 "mov df_saved_rsp(%%rip), %%rsp\n\t"
                 :: [p] "r"(0x8000000000000000UL) : "rax", "memory");
    idt_reset_gate(X86_EXC_GP);
    expect_double_fault("#GP with a not-present gate");
}

/* 3: #PF whose gate's code selector is beyond the GDT limit. */
static void df_from_bad_pf_selector(void)
{
    sdk_pte_update(absent_page, 0, PTE_P);
    idt_set_selector(X86_EXC_PF, 0x3f8);
    fault_reset();
    asm volatile("mov %%rsp, df_saved_rsp(%%rip)\n\t"
                 "lea 2f(%%rip), %%rax\n\t"
                 "mov %%rax, df_resume_ip(%%rip)\n\t"
                 "mov (%[p]), %%rax\n"
                 "2:\n\t"
                 "mov df_saved_rsp(%%rip), %%rsp\n\t"
                 :: [p] "r"(absent_page) : "rax", "memory");
    idt_reset_gate(X86_EXC_PF);
    sdk_pte_update(absent_page, PTE_P, 0);
    expect_double_fault("#PF with a bad gate selector");
    check_eq(last_fault.cr2, (unsigned long)absent_page, "CR2 is the absent page");
}

void test_main(void)
{
    trap_set_handler(X86_EXC_DF, df_handler);
    trap_set_handler(X86_EXC_PF, unexpected_handler);
    trap_set_handler(X86_EXC_GP, unexpected_handler);
    trap_set_handler(X86_EXC_NP, unexpected_handler);
    trap_set_handler(X86_EXC_SS, unexpected_handler);

    df_from_stack_fault();
    df_from_absent_gp_gate();
    df_from_bad_pf_selector();

    trap_set_handler(X86_EXC_DF, NULL);
}
