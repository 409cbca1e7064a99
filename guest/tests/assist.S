/* assist: the instructions the nested-PVM host cannot emulate at CPL0
 * (shared/HOST.md), run where the guest can see what they did.
 *
 * Builds a 32-vector IDT of 64-bit interrupt gates (boot GDT code selector);
 * every handler writes its vector and the low half of the saved RIP to the
 * probe port. #BP and #UD record the saved RIP/CS in the results page (the
 * #UD handler also steps over the 2-byte ud2); any other vector ends the run
 * with doorbell EXIT(0x80 | vector). Then: int3, ud2, stac/clac (only when
 * CPUID reports SMAP; twice: with CR4.SMAP clear, then set), fninit, fwait,
 * fnclex and ldmxcsr (with CR4.OSFXSR set, so the instruction is legal; it
 * loads the default MXCSR, since the nested host's assist skips it).
 * RFLAGS is sampled around stac/clac. TA_STEP tracks progress; success ends
 * with doorbell EXIT(0). */
#include "test_guest.h"

#define R(off) TG_RESULT_GPA + (off)

        .code64
        .text
        .globl _start
_start:
        mov     $TG_STACK_TOP, %rsp

        /* IDT: gate v -> isr_stubs + 16 * v */
        lea     isr_stubs(%rip), %rax
        mov     $TG_IDT_GPA, %rdi
        xor     %ecx, %ecx
build_idt:
        mov     %eax, %edx
        and     $0xffff, %edx
        or      $(TG_CODE_SELECTOR << 16), %edx
        mov     %edx, (%rdi)            /* offset 15:0, selector */
        mov     %eax, %edx
        and     $0xffff0000, %edx
        or      $0x8e00, %edx           /* P, DPL 0, type 0xe (64-bit interrupt gate), IST 0 */
        mov     %edx, 4(%rdi)           /* attributes, offset 31:16 */
        mov     %rax, %rdx
        shr     $32, %rdx
        mov     %edx, 8(%rdi)           /* offset 63:32 */
        movl    $0, 12(%rdi)
        add     $16, %rax
        add     $16, %rdi
        inc     %ecx
        cmp     $32, %ecx
        jb      build_idt
        lidt    idtr(%rip)
        movq    $TA_STEP_IDT, R(TA_STEP)

        /* int3: a trap, the frame holds the address after it */
        lea     after_int3(%rip), %rax
        mov     %rax, R(TA_BP_EXPECT)
        int3
after_int3:
        movq    $TA_STEP_INT3, R(TA_STEP)

        /* ud2: a fault, the frame holds its own address */
        lea     at_ud2(%rip), %rax
        mov     %rax, R(TA_UD_EXPECT)
at_ud2:
        ud2
        movq    $1, R(TA_AFTER_UD)
        movq    $TA_STEP_UD2, R(TA_STEP)

        /* stac/clac exist when CPUID reports SMAP (SDM: they #UD only without
         * CPUID.7.0:EBX.SMAP or at CPL > 0; CR4.SMAP does not matter). Run
         * them with CR4.SMAP clear, then set, as Linux does. */
        xor     %eax, %eax
        cpuid
        cmp     $7, %eax
        jb      no_smap
        mov     $7, %eax
        xor     %ecx, %ecx
        cpuid
        test    $TG_CPUID7_EBX_SMAP, %ebx
        jz      no_smap
        movq    $1, R(TA_SMAP)
no_smap:
        /* CR4.OSFXSR makes ldmxcsr legal (without it the CPU raises #UD) */
        mov     %cr4, %rax
        or      $(TG_CR4_OSFXSR | TG_CR4_OSXMMEXCPT), %rax
        mov     %rax, %cr4
        movq    $TA_STEP_SMAP, R(TA_STEP)

        pushfq
        popq    R(TA_FLAGS_START)
        cmpq    $0, R(TA_SMAP)
        je      skip_ac
        stac
        pushfq
        popq    R(TA_FLAGS_STAC)
        clac
        pushfq
        popq    R(TA_FLAGS_CLAC)
        mov     %cr4, %rax
        or      $TG_CR4_SMAP, %rax
        mov     %rax, %cr4
        stac
        pushfq
        popq    R(TA_FLAGS_STAC2)
        clac
        pushfq
        popq    R(TA_FLAGS_CLAC2)
skip_ac:
        mov     %cr4, %rax
        mov     %rax, R(TA_CR4)
        movq    $TA_STEP_STAC_CLAC, R(TA_STEP)

        fninit
        movq    $TA_STEP_FNINIT, R(TA_STEP)
        fwait
        movq    $TA_STEP_FWAIT, R(TA_STEP)
        fnclex
        movq    $TA_STEP_FNCLEX, R(TA_STEP)
        ldmxcsr mxcsr_default(%rip)
        movq    $TA_STEP_LDMXCSR, R(TA_STEP)

        movq    $TA_STEP_DONE, R(TA_STEP)
        movabs  $TG_MAGIC, %rax
        mov     %rax, R(TA_MAGIC)
        mov     $TG_DOORBELL_PORT, %dx
        mov     $TG_DOORBELL(TG_EV_EXIT, 0), %eax
        out     %eax, %dx
        cli
1:      hlt
        jmp     1b

/* Stack on entry: vector, error code (0 when the CPU pushes none), RIP, CS,
 * RFLAGS, RSP, SS. After the two pushes below, each is 16 bytes further. */
isr_common:
        push    %rax
        push    %rdx
        mov     $TG_PROBE_PORT, %dx
        mov     16(%rsp), %rax
        out     %eax, %dx               /* vector */
        mov     32(%rsp), %rax
        out     %eax, %dx               /* saved RIP, low half */
        mov     16(%rsp), %rax
        cmp     $3, %rax
        je      on_bp
        cmp     $6, %rax
        je      on_ud
        inc     %rax
        mov     %rax, R(TA_OTHER_VEC)
        mov     32(%rsp), %rax
        mov     %rax, R(TA_OTHER_RIP)
        mov     16(%rsp), %rax
        or      $TG_DOORBELL(TG_EV_EXIT, 0x80), %eax
        mov     $TG_DOORBELL_PORT, %dx
        out     %eax, %dx
        cli
2:      hlt
        jmp     2b
on_bp:
        incq    R(TA_BP_COUNT)
        mov     32(%rsp), %rax
        mov     %rax, R(TA_BP_RIP)
        mov     40(%rsp), %rax
        mov     %rax, R(TA_BP_CS)
        jmp     isr_return
on_ud:
        incq    R(TA_UD_COUNT)
        mov     32(%rsp), %rax
        mov     %rax, R(TA_UD_RIP)
        mov     40(%rsp), %rax
        mov     %rax, R(TA_UD_CS)
        addq    $2, 32(%rsp)            /* step over ud2 */
isr_return:
        pop     %rdx
        pop     %rax
        add     $16, %rsp               /* vector, error code */
        iretq

/* One 16-byte stub per vector. Vectors 8, 10-14, 17, 21, 29, 30 come with an
 * error code from the CPU; the others push a zero in its place. */
        .balign 16
isr_stubs:
        .irp    vec, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
        .balign 16
        .if     (\vec == 8) || (\vec >= 10 && \vec <= 14) || (\vec == 17) || (\vec == 21) || (\vec == 29) || (\vec == 30)
        .else
        pushq   $0
        .endif
        pushq   $\vec
        jmp     isr_common
        .endr

        .balign 16
idtr:
        .word   32 * 16 - 1
        .quad   TG_IDT_GPA
mxcsr_default:
        .long   0x1f80                  /* all exceptions masked, round to nearest */

        .section .note.GNU-stack, "", @progbits
