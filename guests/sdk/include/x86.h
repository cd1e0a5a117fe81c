/* x86 architectural constants and small instruction wrappers (32- and 64-bit). */
#ifndef SDK_X86_H
#define SDK_X86_H

#include <stdint.h>
#include <stdbool.h>

/* Exception vectors. */
#define X86_EXC_DE   0
#define X86_EXC_DB   1
#define X86_EXC_NMI  2
#define X86_EXC_BP   3
#define X86_EXC_OF   4
#define X86_EXC_BR   5
#define X86_EXC_UD   6
#define X86_EXC_NM   7
#define X86_EXC_DF   8
#define X86_EXC_TS  10
#define X86_EXC_NP  11
#define X86_EXC_SS  12
#define X86_EXC_GP  13
#define X86_EXC_PF  14
#define X86_EXC_MF  16
#define X86_EXC_AC  17
#define X86_EXC_MC  18
#define X86_EXC_XM  19
#define X86_EXC_VE  20
#define X86_EXC_CP  21

/* Vectors the SDK gives a meaning to. */
#define VEC_SYSCALL_INT   0x80  /* spare software interrupt, DPL3 gate */
#define VEC_SPARE_KERNEL  0x81  /* spare software interrupt, DPL0 gate */
#define VEC_USER_RETURN   0x82  /* CPL3 -> CPL0 return path of run_user(), DPL3 */

/* #PF error code bits. */
#define PFEC_PRESENT  0x01
#define PFEC_WRITE    0x02
#define PFEC_USER     0x04
#define PFEC_RSVD     0x08
#define PFEC_INSN     0x10

/* Page-table entry bits. */
#define PTE_P    0x001ULL
#define PTE_W    0x002ULL
#define PTE_U    0x004ULL
#define PTE_PWT  0x008ULL
#define PTE_PCD  0x010ULL
#define PTE_A    0x020ULL
#define PTE_D    0x040ULL
#define PTE_PS   0x080ULL
#define PTE_G    0x100ULL
#define PTE_NX   (1ULL << 63)
#define PTE_ADDR_MASK  0x000ffffffffff000ULL

/* Control registers. */
#define CR0_PE  (1u << 0)
#define CR0_MP  (1u << 1)
#define CR0_EM  (1u << 2)
#define CR0_TS  (1u << 3)
#define CR0_ET  (1u << 4)
#define CR0_NE  (1u << 5)
#define CR0_WP  (1u << 16)
#define CR0_AM  (1u << 18)
#define CR0_PG  (1u << 31)

#define CR4_VME        (1u << 0)
#define CR4_PSE        (1u << 4)
#define CR4_PAE        (1u << 5)
#define CR4_PGE        (1u << 7)
#define CR4_OSFXSR     (1u << 9)
#define CR4_OSXMMEXCPT (1u << 10)
#define CR4_SMEP       (1u << 20)
#define CR4_SMAP       (1u << 21)

/* MSRs. */
#define MSR_EFER    0xc0000080u
#define MSR_STAR    0xc0000081u
#define MSR_LSTAR   0xc0000082u
#define MSR_CSTAR   0xc0000083u
#define MSR_FMASK   0xc0000084u
#define MSR_FS_BASE 0xc0000100u
#define MSR_GS_BASE 0xc0000101u
#define MSR_KERNEL_GS_BASE 0xc0000102u
#define MSR_TSC_AUX 0xc0000103u
#define EFER_SCE    (1u << 0)
#define EFER_LME    (1u << 8)
#define EFER_LMA    (1u << 10)
#define EFER_NXE    (1u << 11)

/* RFLAGS. */
#define X86_FLAGS_CF   (1u << 0)
#define X86_FLAGS_TF   (1u << 8)
#define X86_FLAGS_IF   (1u << 9)
#define X86_FLAGS_DF   (1u << 10)
#define X86_FLAGS_AC   (1u << 18)

/* CPUID feature bits used by the guests. */
#define CPUID1_EDX_PSE          (1u << 3)
#define CPUID1_EDX_PAE          (1u << 6)
#define CPUID7_EBX_SMEP         (1u << 7)
#define CPUID80000001_EDX_NX    (1u << 20)
#define CPUID80000001_EDX_1GB   (1u << 26)
#define CPUID80000001_EDX_LM    (1u << 29)

static inline void cpuid_count(uint32_t leaf, uint32_t subleaf, uint32_t *a,
                               uint32_t *b, uint32_t *c, uint32_t *d)
{
    asm volatile("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d)
                 : "a"(leaf), "c"(subleaf));
}

static inline uint32_t cpuid_eax(uint32_t leaf)
{
    uint32_t a, b, c, d;
    cpuid_count(leaf, 0, &a, &b, &c, &d);
    return a;
}

static inline uint32_t cpuid_ebx(uint32_t leaf)
{
    uint32_t a, b, c, d;
    cpuid_count(leaf, 0, &a, &b, &c, &d);
    return b;
}

static inline uint32_t cpuid_edx(uint32_t leaf)
{
    uint32_t a, b, c, d;
    cpuid_count(leaf, 0, &a, &b, &c, &d);
    return d;
}

/* True when the CPU reports the leaf as in range (extended leaves included). */
static inline bool cpuid_has_leaf(uint32_t leaf)
{
    return cpuid_eax(leaf & 0x80000000u) >= leaf;
}

static inline uint64_t rdmsr(uint32_t msr)
{
    uint32_t lo, hi;
    asm volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
    return ((uint64_t)hi << 32) | lo;
}

static inline void wrmsr(uint32_t msr, uint64_t val)
{
    asm volatile("wrmsr" :: "c"(msr), "a"((uint32_t)val),
                 "d"((uint32_t)(val >> 32)) : "memory");
}

static inline unsigned long read_cr0(void)
{
    unsigned long v;
    asm volatile("mov %%cr0, %0" : "=r"(v));
    return v;
}

static inline void write_cr0(unsigned long v)
{
    asm volatile("mov %0, %%cr0" :: "r"(v) : "memory");
}

static inline unsigned long read_cr2(void)
{
    unsigned long v;
    asm volatile("mov %%cr2, %0" : "=r"(v));
    return v;
}

static inline unsigned long read_cr3(void)
{
    unsigned long v;
    asm volatile("mov %%cr3, %0" : "=r"(v));
    return v;
}

static inline void write_cr3(unsigned long v)
{
    asm volatile("mov %0, %%cr3" :: "r"(v) : "memory");
}

static inline unsigned long read_cr4(void)
{
    unsigned long v;
    asm volatile("mov %%cr4, %0" : "=r"(v));
    return v;
}

static inline void write_cr4(unsigned long v)
{
    asm volatile("mov %0, %%cr4" :: "r"(v) : "memory");
}

static inline void invlpg(const volatile void *va)
{
    asm volatile("invlpg (%0)" :: "r"(va) : "memory");
}

/* Reloading CR3 drops every non-global TLB entry. */
static inline void flush_tlb(void)
{
    write_cr3(read_cr3());
}

static inline unsigned long read_flags(void)
{
    unsigned long f;
    asm volatile("pushf; pop %0" : "=r"(f));
    return f;
}

static inline uint16_t read_cs(void)
{
    uint16_t v;
    asm volatile("mov %%cs, %0" : "=r"(v));
    return v;
}

static inline uint16_t read_ss(void)
{
    uint16_t v;
    asm volatile("mov %%ss, %0" : "=r"(v));
    return v;
}

static inline unsigned long read_sp(void)
{
    unsigned long v;
#ifdef __x86_64__
    asm volatile("mov %%rsp, %0" : "=r"(v));
#else
    asm volatile("mov %%esp, %0" : "=r"(v));
#endif
    return v;
}

static inline void outb(uint16_t port, uint8_t v)
{
    asm volatile("outb %0, %1" :: "a"(v), "Nd"(port));
}

static inline uint8_t inb(uint16_t port)
{
    uint8_t v;
    asm volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

static inline void cpu_relax(void)
{
    asm volatile("pause" ::: "memory");
}

static inline void barrier(void)
{
    asm volatile("" ::: "memory");
}

/* Stores must be visible before the index that publishes them. */
static inline void wmb(void)
{
    asm volatile("sfence" ::: "memory");
}

struct __attribute__((packed)) desc_ptr {
    uint16_t limit;
    unsigned long base;
};

static inline void lidt(const struct desc_ptr *p)
{
    asm volatile("lidt %0" :: "m"(*p) : "memory");
}

static inline void sidt(struct desc_ptr *p)
{
    asm volatile("sidt %0" : "=m"(*p));
}

static inline void lgdt(const struct desc_ptr *p)
{
    asm volatile("lgdt %0" :: "m"(*p) : "memory");
}

static inline void sgdt(struct desc_ptr *p)
{
    asm volatile("sgdt %0" : "=m"(*p));
}

static inline void ltr(uint16_t sel)
{
    asm volatile("ltr %0" :: "rm"(sel) : "memory");
}

#endif
