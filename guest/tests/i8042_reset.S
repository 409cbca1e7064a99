/* i8042_reset: the keyboard controller's CPU reset (Linux reboot=k). */
#include "test_guest.h"

        .code64
        .text
        .globl _start
_start:
        mov     $TG_I8042_RESET, %al
        out     %al, $TG_I8042_CMD
        cli
1:      hlt
        jmp     1b

        .section .note.GNU-stack, "", @progbits
