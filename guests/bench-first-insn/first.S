/* bench-first-insn: the smallest PVH kernel. Its first instruction writes a
 * byte to the debug port, so the host can time domain creation up to the
 * first guest instruction; then it halts with interrupts off (powers off). */
        .section .note.Xen, "a", @note
        .balign 4
        .long 4, 4, 18          /* namesz, descsz, XEN_ELFNOTE_PHYS32_ENTRY */
        .asciz "Xen"
        .long _start

        .text
        .code32
        .globl _start
_start:
        outb    %al, $0xe9
        cli
        hlt
