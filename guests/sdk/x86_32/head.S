/*
 * PVH entry for 32-bit guests: we stay in flat 32-bit protected mode with
 * paging off.  EBX = physical address of struct hvm_start_info.  Load our own
 * GDT, set a stack and call sdk_start().
 */
#include "arch32.h"

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
        mov     %ebx, %ebp                      /* kept across the bss clear */

        mov     $__bss_start, %edi
        mov     $__bss_end, %ecx
        sub     %edi, %ecx
        shr     $2, %ecx
        xor     %eax, %eax
        rep stosl

        mov     %ebp, start_info_paddr
        mov     $boot_stack + BOOT_STACK_SIZE, %esp

        lgdt    gdt_desc
        ljmp    $KERNEL_CS, $1f
1:      mov     $KERNEL_DS, %eax
        mov     %eax, %ds
        mov     %eax, %es
        mov     %eax, %ss
        mov     %eax, %fs
        mov     %eax, %gs

        /* SSE on (CR4.OSFXSR | OSXMMEXCPT), x87 errors native (CR0.NE). */
        mov     %cr4, %eax
        or      $0x600, %eax
        mov     %eax, %cr4
        mov     %cr0, %eax
        or      $0x22, %eax                     /* NE | MP */
        and     $~0xc, %eax                     /* clear EM, TS */
        mov     %eax, %cr0

        xor     %ebp, %ebp
        call    sdk_start
1:      cli
        hlt
        jmp     1b

        .data
        .balign 16
        .globl gdt
gdt:
        .quad 0                         /* 0x00 null */
        .quad 0x00cf9b000000ffff        /* 0x08 code, 32-bit flat */
        .quad 0x00cf93000000ffff        /* 0x10 data, flat */
        .quad 0                         /* 0x18 spare, not present */
gdt_end:

        .balign 8
        .word 0
        .globl gdt_desc
gdt_desc:
        .word gdt_end - gdt - 1
        .long gdt

        .section .bss.page_aligned, "aw", @nobits
        .balign 4096
        .globl boot_stack
boot_stack:
        .skip BOOT_STACK_SIZE
