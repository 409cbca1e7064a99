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

#endif
