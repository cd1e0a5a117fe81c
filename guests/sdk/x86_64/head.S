/*
 * PVH entry for 64-bit guests.  We arrive in 32-bit flat protected mode with
 * paging off and EBX = physical address of struct hvm_start_info; nothing
 * else (not even a stack) can be relied on.  This code builds the GDT, the
 * identity page tables (0..4 GiB), enters long mode and calls sdk_start().
 */
#include "arch64.h"

#define CR0_PE   0x00000001
#define CR0_MP   0x00000002
#define CR0_NE   0x00000020
#define CR0_WP   0x00010000
#define CR0_PG   0x80000000
#define CR4_PAE  0x00000020
#define CR4_OSFXSR     0x00000200
#define CR4_OSXMMEXCPT 0x00000400
#define MSR_EFER 0xc0000080
#define EFER_LME 0x00000100
#define EFER_NXE 0x00000800

#define PTE_P_W     0x003
#define PTE_P_W_U   0x007
#define PDE_2M      0x083       /* present, writable, 2 MiB page */

/* ---- The Xen ELF note: the 32-bit physical entry point. ---- */
        .section .note.Xen, "a", @note
        .balign 4
        .long 4                 /* name size: "Xen\0" */
        .long 4                 /* descriptor size */
        .long 18                /* XEN_ELFNOTE_PHYS32_ENTRY */
        .asciz "Xen"
        .long _start
        /* An empty note right after, so a loader that reads the entry as
         * 8 bytes sees zeroes in the upper half. */
        .long 0, 0, 0

        .section .text.boot, "ax", @progbits
        .code32
        .globl _start
_start:
        cli
        cld
        mov     %ebx, %ebp                      /* start info, kept across the bss clear */

        /* Clear .bss: page tables and stacks live there. */
        mov     $__bss_start, %edi
        mov     $__bss_end, %ecx
        sub     %edi, %ecx
        shr     $2, %ecx
        xor     %eax, %eax
        rep stosl

        mov     %ebp, start_info_paddr
        mov     $boot_stack + BOOT_STACK_SIZE, %esp

        lgdt    gdt_desc
        ljmp    $KERNEL_CS32, $1f
1:      mov     $KERNEL_DS, %eax
        mov     %eax, %ds
        mov     %eax, %es
        mov     %eax, %ss
        mov     %eax, %fs
        mov     %eax, %gs

        /* Long mode is required; NX is used when present. */
        mov     $0x80000000, %eax
        cpuid
        cmp     $0x80000001, %eax
        jb      no_long_mode
        mov     $0x80000001, %eax
        cpuid
        test    $(1 << 29), %edx
        jz      no_long_mode
        xor     %esi, %esi
        test    $(1 << 20), %edx
        jz      1f
        mov     $EFER_NXE, %esi
1:
        /* PML4[0] -> PDPT; PDPT[0..3] -> the four page directories. */
        mov     $pdpt + PTE_P_W_U, %eax
        mov     %eax, pml4
        mov     $pd + PTE_P_W_U, %eax
        xor     %ecx, %ecx
1:      mov     %eax, pdpt(,%ecx,8)
        add     $4096, %eax
        inc     %ecx
        cmp     $4, %ecx
        jb      1b

        /* 2048 identity 2 MiB pages cover 0..4 GiB (special pages included). */
        xor     %ecx, %ecx
1:      mov     %ecx, %eax
        shl     $21, %eax
        or      $PDE_2M, %eax
        mov     %eax, pd(,%ecx,8)
        inc     %ecx
        cmp     $2048, %ecx
        jb      1b

        /* 0..2 MiB in 4 KiB pages instead; page 0 stays not present. */
        mov     $pt_low + PTE_P_W_U, %eax
        mov     %eax, pd
        mov     $1, %ecx
1:      mov     %ecx, %eax
        shl     $12, %eax
        or      $PTE_P_W, %eax
        mov     %eax, pt_low(,%ecx,8)
        inc     %ecx
        cmp     $512, %ecx
        jb      1b

        mov     %cr4, %eax
        or      $(CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT), %eax
        mov     %eax, %cr4
        mov     $pml4, %eax
        mov     %eax, %cr3

        mov     $MSR_EFER, %ecx
        rdmsr
        or      $EFER_LME, %eax
        or      %esi, %eax
        wrmsr

        mov     $(CR0_PG | CR0_WP | CR0_NE | CR0_MP | CR0_PE), %eax
        mov     %eax, %cr0
        ljmp    $KERNEL_CS, $start64

no_long_mode:
        /* Nothing to report through yet except QEMU's debug port. */
        mov     $no_lm_msg, %esi
1:      lodsb
        test    %al, %al
        jz      2f
        outb    %al, $0xe9
        jmp     1b
2:      cli
        hlt
        jmp     2b

        .code64
start64:
        mov     $KERNEL_DS, %eax
        mov     %eax, %ds
        mov     %eax, %es
        mov     %eax, %ss
        xor     %eax, %eax
        mov     %eax, %fs
        mov     %eax, %gs
        mov     $boot_stack + BOOT_STACK_SIZE, %rsp
        xor     %ebp, %ebp
        call    sdk_start
1:      cli
        hlt
        jmp     1b

        .section .rodata
no_lm_msg:
        .asciz "pyxen-sdk: this CPU has no long mode\n"

/* ---- GDT (in .data: the CPU writes the TSS busy bit) ---- */
        .data
        .balign 16
        .globl gdt
gdt:
        .quad 0                         /* 0x00 null */
        .quad 0x00af9b000000ffff        /* 0x08 kernel code, 64-bit */
        .quad 0x00cf93000000ffff        /* 0x10 kernel data */
        .quad 0x00cffb000000ffff        /* 0x18 user code, 32-bit, DPL3 */
        .quad 0x00cff3000000ffff        /* 0x20 user data, DPL3 */
        .quad 0x00affb000000ffff        /* 0x28 user code, 64-bit, DPL3 */
        .quad 0x00cf9b000000ffff        /* 0x30 kernel code, 32-bit */
        .quad 0                         /* 0x38 spare, not present */
        .quad 0, 0                      /* 0x40 TSS, filled in by arch_setup() */
gdt_end:

        .balign 8
        .globl gdt_desc
        .word 0
gdt_desc:
        .word gdt_end - gdt - 1
        .quad gdt                       /* 32-bit lgdt reads the low half */

        .section .bss.page_aligned, "aw", @nobits
        .balign 4096
        .globl boot_stack
boot_stack:
        .skip BOOT_STACK_SIZE
