/* Shared by the tiny test guests (assembled with the C preprocessor) and by
 * tests/kvm, which loads them: where they live and where they put results.
 * Plain #defines only, so both GNU as and C++ can include it.
 *
 * Every guest starts at its first byte in 64-bit mode at CPL0 (enter_long_mode:
 * identity-mapped 0..4 GiB, boot GDT, IF clear), loaded at TG_LOAD_GPA.
 */
#ifndef VICVMM_TEST_GUEST_H
#define VICVMM_TEST_GUEST_H

#define TG_LOAD_GPA 0x100000      /* where the flat binary is placed and entered */
#define TG_STACK_TOP 0x1ff000     /* guests that need a stack use this one */
#define TG_RESULT_GPA 0x200000    /* results page, read by the test after the run */
#define TG_IDT_GPA 0x201000       /* the assist guest builds its IDT here */
#define TG_DATA_GPA 0x300000      /* memtest: fixed input word */
#define TG_DATA_OUT_OFFSET 0x1000 /* memtest: output word is one page above its input */
#define TG_PROBE_PORT 0x600       /* 4-byte port a test may claim to record guest values */

/* Mirrors of guest/abi/vicvmm_abi.h (which is C, not assembler); tests/kvm
 * static_asserts that they agree. */
#define TG_DOORBELL_MMIO 0xfe000000
#define TG_DOORBELL_PORT 0x510
#define TG_EV_EXIT 2
#define TG_EV_PING 5
#define TG_DOORBELL(ev, arg) (((ev) << 24) | ((arg) & 0xffffff))

#define TG_COM1 0x3f8
#define TG_I8042_CMD 0x64
#define TG_I8042_RESET 0xfe

/* virtio_kick: slot 0's QueueNotify (vmm/virtio/mmio_slot.h: 0xd0000000 +
 * 0x50) and the used ring the test lays out (its idx is 2 bytes in). */
#define TV_NOTIFY 0xd0000050
#define TV_DESC_GPA 0x500000
#define TV_AVAIL_GPA 0x501000
#define TV_USED_GPA 0x502000
#define TV_USED_IDX (TV_USED_GPA + 2)
#define TV_BUF_GPA 0x510000
#define TV_SPINS 100000

/* Boot GDT code selector (vmm/boot/gdt.h: index kGdtCode = 1). */
#define TG_CODE_SELECTOR 0x08

/* Results of the io_out and mmio guests (byte offsets in the results page). */
#define TG_R_MAGIC 0x00           /* 8: TG_MAGIC once the guest got to the end */
#define TG_R_PORT_IN 0x08         /* 4: io_out: inl from the doorbell port */
#define TG_R_MMIO_IN 0x10         /* 4: mmio: 32-bit load from the doorbell page */
#define TG_MAGIC 0x600d600d600d600d

/* Results of the assist guest (8 bytes each, offsets in the results page). */
#define TA_MAGIC 0x00        /* TG_MAGIC when the guest reached its end */
#define TA_STEP 0x08         /* last step completed (TA_STEP_* below) */
#define TA_BP_COUNT 0x10     /* #BP handler runs */
#define TA_BP_RIP 0x18       /* RIP saved in the #BP frame */
#define TA_BP_EXPECT 0x20    /* address just after the int3 */
#define TA_UD_COUNT 0x28     /* #UD handler runs */
#define TA_UD_RIP 0x30       /* RIP saved in the #UD frame */
#define TA_UD_EXPECT 0x38    /* address of the ud2 */
#define TA_OTHER_VEC 0x40    /* last unexpected vector + 1 (0: none) */
#define TA_OTHER_RIP 0x48    /* its saved RIP */
#define TA_SMAP 0x50         /* 1: CPUID.7.0:EBX.SMAP set, so stac/clac ran */
#define TA_CR4 0x58          /* CR4 after the guest's changes */
#define TA_FLAGS_START 0x60  /* RFLAGS at the start (AC expected clear) */
#define TA_FLAGS_STAC 0x68   /* RFLAGS after stac (CR4.SMAP clear) */
#define TA_FLAGS_CLAC 0x70   /* RFLAGS after clac (CR4.SMAP clear) */
#define TA_BP_CS 0x78        /* CS saved in the #BP frame */
#define TA_UD_CS 0x80        /* CS saved in the #UD frame */
#define TA_AFTER_UD 0x88     /* 1 once execution resumed after the ud2 */
#define TA_FLAGS_STAC2 0x90  /* RFLAGS after stac (CR4.SMAP set) */
#define TA_FLAGS_CLAC2 0x98  /* RFLAGS after clac (CR4.SMAP set) */

#define TA_STEP_IDT 1
#define TA_STEP_INT3 2
#define TA_STEP_UD2 3
#define TA_STEP_SMAP 4 /* CPUID probed, CR4.OSFXSR set */
#define TA_STEP_STAC_CLAC 5
#define TA_STEP_FNINIT 6
#define TA_STEP_FWAIT 7
#define TA_STEP_FNCLEX 8
#define TA_STEP_LDMXCSR 9
#define TA_STEP_DONE 10

#define TG_RFLAGS_AC (1 << 18)
#define TG_CR4_OSFXSR (1 << 9)
#define TG_CR4_OSXMMEXCPT (1 << 10)
#define TG_CR4_SMAP (1 << 21)
#define TG_CPUID7_EBX_SMAP (1 << 20)

/* clone_template guest (guest/tests/clone_template.S, tests/kvm/test_clone.cc).
 * Mirrors of the mailbox ABI (vicvmm_abi.h; tests/kvm static_asserts them). */
#define TG_EV_READY 1
#define TG_EV_TEMPLATE 4
#define TG_MAILBOX_GPA 0x9d000
#define TG_MAILBOX_MAGIC 0x5849424c49414d56
#define TG_MB_MAGIC 0         /* u64 */
#define TG_MB_CLONE_ID 28     /* u32 */
#define TG_MB_SEED 32         /* 4 x u64 */
#define TG_MB_GENERATION 72   /* u64 */

/* Pages (all in 2 MiB guest pages the template already wrote, so that the
 * page-table A/D bits are set before capture and a clone's dirty set is only
 * what it stores; see clone_template.S). */
#define TC_PATTERN0_GPA 0x400000  /* filled before the template point, kept */
#define TC_PATTERN1_GPA 0x401000  /* filled before, stamped after (COW of a written page) */
#define TC_READONLY_GPA 0x402000  /* host-filled, only read before, stamped after */
#define TC_PATTERN2_GPA 0x1f00000 /* filled before, kept */
#define TC_FRESH_GPA 0x1f80000    /* untouched (zero) before, stamped after */
#define TC_PATTERN_XOR 0x5ca1ab1e0ddba115 /* pattern qword at address a: a ^ TC_PATTERN_XOR */
#define TC_READONLY_MAGIC 0x0dd0beef0dd0beef /* the host puts it in the first qword */
#define TC_WRITE_TAG 0x7a6b5c4d3e2f1a0b  /* stamp +16: TC_WRITE_TAG ^ page address */

/* Stamp written after resume into each stamped page (byte offsets). */
#define TC_S_CLONE_ID 0x000   /* u64: clone_id */
#define TC_S_SEED0 0x008      /* u64: seed[0] */
#define TC_S_TAG 0x010        /* u64: TC_WRITE_TAG ^ page address */
#define TC_S_NOT_ID 0xff8     /* u64: ~clone_id */

/* Callee-saved registers set before the template point, checked after. */
#define TC_RBX 0x1111222233334444
#define TC_RBP 0x0123456789abcdef
#define TC_R12 0x1212121212121212
#define TC_R13 0x1313131313131313
#define TC_R14 0x1414141414141414
#define TC_R15 0x1515151515151515

#define TC_R_RESUME_RIP 0x20  /* results page: address the clones resume at */

/* Exit status: TC_STATUS_BASE + clone_id % TC_STATUS_MOD on success, else a failure code. */
#define TC_STATUS_BASE 100
#define TC_STATUS_MOD 50
#define TC_FAIL_REGS 1
#define TC_FAIL_PATTERN 2
#define TC_FAIL_MAILBOX 3
#define TC_FAIL_READONLY 4
#define TC_FAIL_READONLY_BEFORE 5 /* before the template point: the host did not fill it */

#endif
