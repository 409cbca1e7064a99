/* spin: never stops by itself (for the timeout and request_stop tests). */
        .code64
        .text
        .globl _start
_start:
        pause
        jmp     _start

        .section .note.GNU-stack, "", @progbits
