/* idle: a guest that does nothing, for as long as it runs.  It sets up event
 * channels (so that an event would wake it) and halts with interrupts on; with
 * nothing sent to it, it stays blocked and costs the host no CPU.  Used by the
 * benchmarks that need many running domains.  On QEMU it halts for ever too. */
#include "sdk.h"

const char test_title[] = "idle: halts for ever";

void test_main(void)
{
    if (xen_present)
        evtchn_init();
    printf("idle: halting\n");
    for (;;)
        safe_halt();
}
