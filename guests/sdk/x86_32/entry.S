/* 32-bit interrupt entry stubs, the common trap path and probe_exec(). */
#include "arch32.h"

/* 256 stubs of 16 bytes: stub for vector v is at trap_stubs + v * 16. */
        .text
        .p2align 4
        .globl trap_stubs
trap_stubs:
        .set vec, 0
        .rept 256
        .p2align 4
        .if (vec == 8) || (vec == 10) || (vec == 11) || (vec == 12) || (vec == 13) || (vec == 14) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
        .else
        pushl   $0
        .endif
        pushl   $vec
        jmp     trap_common
        .set vec, vec + 1
        .endr

        .p2align 4
trap_common:
        pushal
        cld
        push    %esp                    /* struct trap_frame * */
        call    trap_dispatch
        add     $4, %esp
        popal
        add     $8, %esp                /* vector and error code */
        iret

/* int probe_exec_call(const void *target): see traps.h. */
        .globl probe_exec_call
probe_exec_call:
        mov     4(%esp), %eax
        call    *%eax
        xor     %eax, %eax
        ret
        .globl probe_exec_recover
probe_exec_recover:
        add     $4, %esp                /* the return address of the call */
        mov     $1, %eax
        ret
