/* mmio: MMIO exits on the doorbell page (no memslot behind it). Loads the
 * register (the ABI version), pings, then stores VIC_DOORBELL(EXIT, 42),
 * which stops the machine with exit status 42. */
#include "test_guest.h"

        .code64
        .text
        .globl _start
_start:
        mov     $TG_DOORBELL_MMIO, %ebx  /* zero-extends: 0x00000000fe000000 */
        mov     (%rbx), %eax
        mov     %eax, TG_RESULT_GPA + TG_R_MMIO_IN
        movabs  $TG_MAGIC, %rax
        mov     %rax, TG_RESULT_GPA + TG_R_MAGIC
        movl    $TG_DOORBELL(TG_EV_PING, 7), (%rbx)
        movl    $TG_DOORBELL(TG_EV_EXIT, 42), (%rbx)
        cli
1:      hlt
        jmp     1b

        .section .note.GNU-stack, "", @progbits
