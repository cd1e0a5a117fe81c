/*
 * test-hlt: `sti; hlt` with no event source armed.  The vCPU should block
 * until the harness destroys the domain (or delivers something that wakes
 * it: then the guest prints "woke" and powers off with SUCCESS).
 */
#include "sdk.h"

const char test_title[] = "test-hlt: halt with interrupts enabled and nothing pending";

static volatile int wake_vector = -1;

static bool record_wakeup(struct trap_frame *f)
{
    wake_vector = (int)f->vector;
    return true;
}

void test_main(void)
{
    /* Anything that can end the HLT is recorded instead of failing the test. */
    trap_set_handler(X86_EXC_NMI, record_wakeup);
    for (unsigned int v = 32; v < 256; v++)
        trap_set_handler(v, record_wakeup);

    printf("halting\n");
    asm volatile("sti; hlt; cli" ::: "memory");
    if (wake_vector >= 0)
        printf("woke (vector %#x)\n", wake_vector);
    else
        printf("woke (no interrupt was delivered)\n");
}
