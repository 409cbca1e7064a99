/* bench_clone: the benchmark's tiny template guest.
 *
 * Template boot: remembers the mailbox generation and rings TEMPLATE through
 * the doorbell port; the VMM captures the VM at that store. A clone resumes
 * after it with a newer generation already in the mailbox, so it leaves the
 * wait loop at once, rings READY ("personality read"), writes one word into
 * each of K = mailbox seed[0] consecutive pages from BG_DIRTY_BASE, rings
 * EXIT(0) and halts with IF clear.
 *
 * At BG_FLOOR_OFFSET sits the raw-KVM floor's entry: a single `out` to
 * BG_FLOOR_PORT, the first instruction a bare VM runs there.
 *
 * Everything runs at CPL0, where the nested PVM host emulates each
 * instruction (~0.65 us each, HOST.md): the clone path is ~10 instructions
 * plus one port exit before READY. */
#include "bench_guest.h"

        .code64
        .text
        .globl _start
_start:
        jmp     main

        .org    BG_FLOOR_OFFSET
floor:
        out     %al, $BG_FLOOR_PORT
        cli
1:      hlt
        jmp     1b

main:
        mov     BG_MAILBOX_GPA + BG_MB_GENERATION, %rbx     /* parked generation */
        mov     $BG_DOORBELL_PORT, %edx
        mov     $BG_DOORBELL(BG_EV_TEMPLATE, 0), %eax
        out     %eax, %dx                                   /* captured here */
wait:
        mov     BG_MAILBOX_GPA + BG_MB_GENERATION, %rax
        cmp     %rax, %rbx
        jne     ready
        pause
        jmp     wait
ready:
        mov     $BG_DOORBELL(BG_EV_READY, 0), %eax
        out     %eax, %dx
        mov     BG_MAILBOX_GPA + BG_MB_SEED0, %rcx
        cmp     $BG_DIRTY_MAX, %rcx
        jbe     2f
        mov     $BG_DIRTY_MAX, %rcx
2:      mov     $BG_DIRTY_BASE, %rdi
        test    %rcx, %rcx
        jz      done
dirty:
        mov     %rcx, (%rdi)
        add     $0x1000, %rdi
        dec     %rcx
        jnz     dirty
done:
        mov     $BG_DOORBELL(BG_EV_EXIT, 0), %eax
        out     %eax, %dx
        cli
3:      hlt
        jmp     3b

        .section .note.GNU-stack, "", @progbits
