/* triple_fault: loads an empty IDT (limit 0), then raises an exception that
 * cannot be delivered: #GP, then #DF, then shutdown (KVM_EXIT_SHUTDOWN).
 * RSI picks the exception: 0 int3 (#BP), 1 ud2 (#UD), 2 divide by zero (#DE). */
#include "test_guest.h"

        .code64
        .text
        .globl _start
_start:
        lidt    zero_idtr(%rip)
        cmp     $1, %rsi
        je      do_ud
        cmp     $2, %rsi
        je      do_de
        int3
        jmp     stop
do_ud:
        ud2
do_de:
        xor     %eax, %eax
        xor     %edx, %edx
        xor     %ecx, %ecx
        div     %ecx
stop:
        cli
1:      hlt
        jmp     1b

        .balign 16
zero_idtr:
        .word   0
        .quad   0

        .section .note.GNU-stack, "", @progbits
