/* memtest: guest memory round trip. For the word at TG_DATA_GPA and, when
 * RSI != 0, the word at RSI: reads x, writes 3x+1 one page above it and ~x
 * over it. Then reports the low byte of the first x as its exit status
 * through the doorbell port. */
#include "test_guest.h"

        .code64
        .text
        .globl _start
_start:
        mov     $TG_STACK_TOP, %rsp
        mov     $TG_DATA_GPA, %rdi
        call    transform
        mov     %rax, %rbx              /* first x */
        test    %rsi, %rsi
        jz      1f
        mov     %rsi, %rdi
        call    transform
1:      mov     %ebx, %eax
        and     $0xff, %eax
        or      $TG_DOORBELL(TG_EV_EXIT, 0), %eax
        mov     $TG_DOORBELL_PORT, %dx
        out     %eax, %dx
        cli
2:      hlt
        jmp     2b

/* rdi: address of x. Returns x in rax. */
transform:
        mov     (%rdi), %rax
        lea     1(%rax,%rax,2), %rcx
        mov     %rcx, TG_DATA_OUT_OFFSET(%rdi)
        mov     %rax, %rcx
        not     %rcx
        mov     %rcx, (%rdi)
        ret

        .section .note.GNU-stack, "", @progbits
