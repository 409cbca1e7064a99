/* clone_template: a tiny guest for the clone engine (tests/kvm/test_clone.cc).
 *
 * Before the template point it
 *   - checks the host put TC_READONLY_MAGIC in the first qword of
 *     TC_READONLY_GPA (a page it only READS before the template point),
 *   - fills TC_PATTERN{0,1,2}_GPA with qword(a) = a ^ TC_PATTERN_XOR,
 *   - records the address clones resume at (results page, TC_R_RESUME_RIP),
 *   - loads TC_RBX/TC_RBP/TC_R12..TC_R15 into the callee-saved registers,
 *   - rings VIC_DOORBELL(TEMPLATE, 0) with an MMIO store: the VMM stops and
 *     captures the VM there (the capture completes the store, so the saved
 *     RIP is `resume`).
 * Each clone then, like vic-init, waits until the mailbox `generation`
 * differs from the template's (it already does: the VMM wrote the
 * personality before the first run), checks its registers, the mailbox magic,
 * the patterns and the read-only page, reads clone_id and seed[0], rings
 * READY (personality read), stamps exactly three pages (TC_PATTERN1_GPA,
 * TC_READONLY_GPA, TC_FRESH_GPA: TC_S_* offsets) and rings
 * EXIT(TC_STATUS_BASE + clone_id % TC_STATUS_MOD), or EXIT(TC_FAIL_*) when
 * a check failed.
 *
 * Determinism of the dirty set: the guest uses no stack and takes no
 * interrupts. Its identity page tables use 2 MiB pages whose Accessed/Dirty
 * bits the CPU (or, on a shadow-paging host, KVM) sets on the first access /
 * first write to each 2 MiB page: a guest-memory write into the page
 * directory that the dirty log reports like any other. Every 2 MiB page a
 * clone writes was therefore already written before the template point
 * (pattern fills: 0x400000 and 0x1e00000 ranges; the doorbell page's PDE by
 * the TEMPLATE store), so after resume the only guest writes are the three
 * stamped pages. With the mailbox page the VMM writes, a clone's dirty set
 * is exactly four pages.
 */
#include "test_guest.h"

/* Fills the page at `page` with the pattern (r8 = TC_PATTERN_XOR). */
.macro FILL page
        mov     $\page, %esi
        lea     4096(%rsi), %rcx
1:      mov     %rsi, %rax
        xor     %r8, %rax
        mov     %rax, (%rsi)
        add     $8, %rsi
        cmp     %rcx, %rsi
        jne     1b
.endm

/* Checks the page at `page` still holds the pattern (r8 = TC_PATTERN_XOR). */
.macro CHECK page
        mov     $\page, %esi
        lea     4096(%rsi), %rcx
1:      mov     %rsi, %rax
        xor     %r8, %rax
        cmp     %rax, (%rsi)
        jne     fail_pattern
        add     $8, %rsi
        cmp     %rcx, %rsi
        jne     1b
.endm

/* Checks a callee-saved register. */
.macro CHECKREG reg, value
        movabs  $\value, %rax
        cmp     %rax, \reg
        jne     fail_regs
.endm

/* Stamps the page at `page` (r10 = clone_id, r11 = seed[0]). */
.macro STAMP page
        mov     %r10, \page + TC_S_CLONE_ID
        mov     %r11, \page + TC_S_SEED0
        movabs  $(TC_WRITE_TAG ^ \page), %rax
        mov     %rax, \page + TC_S_TAG
        mov     %r10, %rax
        not     %rax
        mov     %rax, \page + TC_S_NOT_ID
.endm

        .code64
        .text
        .globl _start
_start:
        mov     $TG_DOORBELL_MMIO, %edi  /* rdi: the doorbell register, throughout */

        /* A page only read before the template point. */
        movabs  $TC_READONLY_MAGIC, %rax
        cmp     %rax, TC_READONLY_GPA
        mov     $TC_FAIL_READONLY_BEFORE, %eax
        jne     report

        movabs  $TC_PATTERN_XOR, %r8
        FILL    TC_PATTERN0_GPA
        FILL    TC_PATTERN1_GPA
        FILL    TC_PATTERN2_GPA

        lea     resume(%rip), %rax
        mov     %rax, TG_RESULT_GPA + TC_R_RESUME_RIP
        mov     TG_MAILBOX_GPA + TG_MB_GENERATION, %r9  /* the template's generation */

        movabs  $TC_RBX, %rbx
        movabs  $TC_RBP, %rbp
        movabs  $TC_R12, %r12
        movabs  $TC_R13, %r13
        movabs  $TC_R14, %r14
        movabs  $TC_R15, %r15
        movl    $TG_DOORBELL(TG_EV_TEMPLATE, 0), (%rdi)
        /* The template is captured here; every clone starts at `resume`. */
resume:
        cmp     TG_MAILBOX_GPA + TG_MB_GENERATION, %r9
        jne     1f
        pause
        jmp     resume
1:
        CHECKREG %rbx, TC_RBX
        CHECKREG %rbp, TC_RBP
        CHECKREG %r12, TC_R12
        CHECKREG %r13, TC_R13
        CHECKREG %r14, TC_R14
        CHECKREG %r15, TC_R15
        mov     $TG_DOORBELL_MMIO, %eax
        cmp     %rax, %rdi
        jne     fail_regs

        movabs  $TG_MAILBOX_MAGIC, %rax
        cmp     %rax, TG_MAILBOX_GPA + TG_MB_MAGIC
        mov     $TC_FAIL_MAILBOX, %eax
        jne     report

        movabs  $TC_PATTERN_XOR, %r8
        CHECK   TC_PATTERN0_GPA
        CHECK   TC_PATTERN1_GPA
        CHECK   TC_PATTERN2_GPA
        movabs  $TC_READONLY_MAGIC, %rax
        cmp     %rax, TC_READONLY_GPA
        mov     $TC_FAIL_READONLY, %eax
        jne     report

        /* The personality. */
        mov     TG_MAILBOX_GPA + TG_MB_CLONE_ID, %r10d  /* zero-extends */
        mov     TG_MAILBOX_GPA + TG_MB_SEED, %r11
        movl    $TG_DOORBELL(TG_EV_READY, 0), (%rdi)

        STAMP   TC_PATTERN1_GPA
        STAMP   TC_READONLY_GPA
        STAMP   TC_FRESH_GPA

        mov     %r10d, %eax
        xor     %edx, %edx
        mov     $TC_STATUS_MOD, %ecx
        div     %ecx
        lea     TC_STATUS_BASE(%rdx), %eax

report: /* eax: the exit status */
        or      $TG_DOORBELL(TG_EV_EXIT, 0), %eax
        mov     %eax, (%rdi)
        cli
2:      hlt
        jmp     2b

fail_regs:
        mov     $TC_FAIL_REGS, %eax
        jmp     report
fail_pattern:
        mov     $TC_FAIL_PATTERN, %eax
        jmp     report

        .section .note.GNU-stack, "", @progbits
