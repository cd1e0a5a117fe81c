/*
 * 64-bit interrupt entry stubs, the common trap path, CPL3 entry/exit,
 * the SYSCALL entry point and the probe_exec() trampoline.
 */
#include "arch64.h"

#define VEC_USER_RETURN 0x82

/*
 * 256 stubs of 16 bytes each: stub for vector v is at trap_stubs + v * 16.
 * Vectors without a CPU error code push a zero so every frame looks alike.
 */
        .text
        .p2align 4
        .globl trap_stubs
trap_stubs:
        .set vec, 0
        .rept 256
        .p2align 4
        .if (vec == 8) || (vec == 10) || (vec == 11) || (vec == 12) || (vec == 13) || (vec == 14) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
        .else
        pushq   $0
        .endif
        pushq   $vec
        jmp     trap_common
        .set vec, vec + 1
        .endr

        .p2align 4
trap_common:
        push    %rax
        push    %rbx
        push    %rcx
        push    %rdx
        push    %rsi
        push    %rdi
        push    %rbp
        push    %r8
        push    %r9
        push    %r10
        push    %r11
        push    %r12
        push    %r13
        push    %r14
        push    %r15
        mov     %rsp, %rdi              /* struct trap_frame * */
        mov     %rsp, %rbx
        and     $~15, %rsp              /* the C ABI wants a 16-byte aligned call */
        cld
        call    trap_dispatch
        mov     %rbx, %rsp
        pop     %r15
        pop     %r14
        pop     %r13
        pop     %r12
        pop     %r11
        pop     %r10
        pop     %r9
        pop     %r8
        pop     %rbp
        pop     %rdi
        pop     %rsi
        pop     %rdx
        pop     %rcx
        pop     %rbx
        pop     %rax
        add     $16, %rsp               /* vector and error code */
        iretq

/*
 * long run_user(user_fn fn, long arg): iretq to CPL3 on the user stack, call
 * fn(arg) there, and come back with `int $VEC_USER_RETURN`, whose handler
 * (setup.c) rewrites the frame to resume at run_user_resume at CPL0.
 */
        .globl run_user
run_user:
        push    %rbx
        push    %rbp
        push    %r12
        push    %r13
        push    %r14
        push    %r15
        pushf
        mov     %rsp, run_user_saved_rsp(%rip)
        mov     %rdi, %r12              /* iretq keeps the GPRs */
        mov     %rsi, %r13
        pushq   $USER_DS
        lea     user_stack + USER_STACK_SIZE(%rip), %rax
        push    %rax
        pushq   $0x2                    /* RFLAGS: interrupts off at CPL3 */
        pushq   $USER_CS
        lea     run_user_trampoline(%rip), %rax
        push    %rax
        iretq

run_user_trampoline:                    /* CPL3 from here */
        mov     %r13, %rdi
        call    *%r12
        mov     %rax, %rdi
        int     $VEC_USER_RETURN
        ud2

        .globl run_user_resume
run_user_resume:                        /* CPL0 again; RAX = result */
        popf
        pop     %r15
        pop     %r14
        pop     %r13
        pop     %r12
        pop     %rbp
        pop     %rbx
        ret

/*
 * SYSCALL lands here at CPL0 with the user RSP still loaded, RCX = user RIP
 * and R11 = user RFLAGS.  Switch to the syscall stack, call
 * syscall_dispatch(nr, a1, a2) and SYSRETQ back.
 */
        .globl syscall_entry
syscall_entry:
        mov     %rsp, syscall_user_rsp(%rip)
        lea     syscall_stack + SYSCALL_STACK_SIZE(%rip), %rsp
        push    %rcx
        push    %r11
        mov     %rcx, syscall_user_rip(%rip)
        mov     %r11, syscall_user_rflags(%rip)
        mov     %rsi, %rdx
        mov     %rdi, %rsi
        mov     %rax, %rdi
        call    syscall_dispatch
        pop     %r11
        pop     %rcx
        mov     syscall_user_rsp(%rip), %rsp
        sysretq

/*
 * int probe_exec_call(const void *target): calls target.  If fetching target
 * faults, trap_dispatch() resumes at probe_exec_recover, which drops the
 * return address the call pushed.
 */
        .globl probe_exec_call
probe_exec_call:
        call    *%rdi
        xor     %eax, %eax
        ret
        .globl probe_exec_recover
probe_exec_recover:
        add     $8, %rsp
        mov     $1, %eax
        ret

        .bss
        .balign 8
        .globl run_user_saved_rsp
run_user_saved_rsp:     .quad 0
        .globl syscall_user_rsp, syscall_user_rip, syscall_user_rflags
syscall_user_rsp:       .quad 0
syscall_user_rip:       .quad 0
syscall_user_rflags:    .quad 0

        .section .bss.page_aligned, "aw", @nobits
        .balign 4096
syscall_stack:
        .skip SYSCALL_STACK_SIZE
