/*
 * Entry of a secondary vCPU started with VCPUOP_initialise (64-bit mode,
 * flat hidden segments, paging on with the boot vCPU's CR3).  smp.c put the
 * address of the vCPU's struct cpu at the top of its stack; RSP points at it.
 */
        .text
        .code64
        .globl ap_entry64
ap_entry64:
        cli
        cld
        mov     (%rsp), %rdi            /* struct cpu * */
        and     $~15, %rsp
        xor     %ebp, %ebp
        call    ap_start                /* never returns */
1:      cli
        hlt
        jmp     1b
