/* virtio_kick: kicks queue 0 of the virtio-mmio device in slot 0 once (with
 * the in-kernel irqchip the store goes to an ioeventfd, not to us), then
 * polls the used ring's index that the host laid out at TV_USED_IDX until
 * it moves or ~TV_SPINS iterations pass, and exits with that index as its
 * status. The test prepares the queue and its chains beforehand. */
#include "test_guest.h"

        .code64
        .text
        .globl _start
_start:
        mov     $TV_NOTIFY, %ebx
        movl    $0, (%rbx)
        mov     $TV_SPINS, %ecx
1:      movzwl  TV_USED_IDX, %eax
        test    %eax, %eax
        jnz     2f
        pause
        dec     %ecx
        jnz     1b
2:      or      $TG_DOORBELL(TG_EV_EXIT, 0), %eax
        mov     $TG_DOORBELL_MMIO, %ebx
        mov     %eax, (%rbx)
        cli
3:      hlt
        jmp     3b

        .section .note.GNU-stack, "", @progbits
