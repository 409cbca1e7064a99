/* io_out: port I/O exits. Prints "ok\n" on COM1, reads the doorbell port
 * (the ABI version), rings it twice with PINGs, writes a 32-bit and an 8-bit
 * value to the probe port, records the magic and halts with IF clear. */
#include "test_guest.h"

        .code64
        .text
        .globl _start
_start:
        mov     $TG_COM1, %dx
        mov     $0x6f, %al              /* 'o' */
        out     %al, %dx
        mov     $0x6b, %al              /* 'k' */
        out     %al, %dx
        mov     $0x0a, %al              /* '\n' */
        out     %al, %dx

        mov     $TG_DOORBELL_PORT, %dx
        in      %dx, %eax
        mov     %eax, TG_RESULT_GPA + TG_R_PORT_IN
        mov     $TG_DOORBELL(TG_EV_PING, 1), %eax
        out     %eax, %dx
        mov     $TG_DOORBELL(TG_EV_PING, 2), %eax
        out     %eax, %dx

        mov     $TG_PROBE_PORT, %dx
        mov     $0x12345678, %eax
        out     %eax, %dx
        mov     $0xab, %al
        out     %al, %dx

        movabs  $TG_MAGIC, %rax
        mov     %rax, TG_RESULT_GPA + TG_R_MAGIC
        cli
1:      hlt
        jmp     1b

        .section .note.GNU-stack, "", @progbits
