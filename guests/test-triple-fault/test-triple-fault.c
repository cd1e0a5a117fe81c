/*
 * test-triple-fault: with an empty IDT (limit 0) no exception can be
 * delivered, so a fault escalates to #DF and then to a triple fault (shutdown).
 * Expected: the hypervisor crashes the domain (QEMU with -no-reboot exits);
 * the guest never reaches its result line.
 */
#include "sdk.h"

const char test_title[] = "test-triple-fault: a fault with an empty IDT";

void test_main(void)
{
    static const struct desc_ptr empty = { .limit = 0, .base = 0 };

    printf("about to triple fault\n");
    lidt(&empty);
    asm volatile("ud2" ::: "memory");

    /* Only reached if the CPU or hypervisor let the guest run on. */
    struct desc_ptr p = { .limit = sizeof(idt) - 1, .base = (unsigned long)idt };
    lidt(&p);
    test_fail("still running after a fault with an empty IDT");
}
