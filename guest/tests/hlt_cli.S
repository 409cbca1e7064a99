/* hlt_cli: nothing can wake this vCPU. */
        .code64
        .text
        .globl _start
_start:
        cli
1:      hlt
        jmp     1b

        .section .note.GNU-stack, "", @progbits
