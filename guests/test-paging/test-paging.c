/*
 * test-paging: 4-level paging with the guest's own page tables (built here,
 * separate from the SDK's).  Known patterns are written through the identity
 * map and read back through test mappings of each page size (4 KiB, 2 MiB,
 * 1 GiB), then: Accessed/Dirty bits, INVLPG, CR3 reload, CR0.WP, NX,
 * reserved bits and SMEP.  32-bit and PAE paging are in test-paging32.
 */
#include "sdk.h"

const char test_title[] = "test-paging: 4-level paging, page sizes, A/D, TLB, WP, NX, SMEP";

/* Test mappings live in PML4 slot 1 (512 GiB and up). */
#define T_BASE      0x8000000000UL
#define T_4K(i)     (T_BASE + (unsigned long)(i) * PAGE_SIZE)
#define T_2M        (T_BASE + 0x200000UL)          /* PD slot 1: 2 MiB page */
#define T_1G        (T_BASE + 0x40000000UL)        /* PDPT slot 1: 1 GiB page */
#define PHYS_2M     0x400000UL                     /* 4 MiB, 2 MiB aligned, free RAM */

/* Volatile: the CPU writes A/D bits behind the compiler's back. */
#define TABLE __aligned(PAGE_SIZE)
static volatile uint64_t t_pml4[512] TABLE;
static volatile uint64_t t_pdpt_id[512] TABLE;      /* identity 0..4 GiB, supervisor */
static volatile uint64_t t_pd_id[4][512] TABLE;
static volatile uint64_t t_pdpt[512] TABLE;         /* test region */
static volatile uint64_t t_pd[512] TABLE;
static volatile uint64_t t_pt[512] TABLE;

enum { PG_A, PG_B, PG_C, PG_D, PG_E, PG_R, NR_PAGES };
static volatile uint8_t pages[NR_PAGES][PAGE_SIZE] TABLE;

#define NONLEAF (PTE_P | PTE_W | PTE_U)   /* leaves decide U/S and R/W */

static unsigned long sdk_cr3;

static void build_tables(void)
{
    /* Identity map, supervisor only (U clear in PML4E[0]), 2 MiB pages. */
    t_pml4[0] = (unsigned long)t_pdpt_id | PTE_P | PTE_W;
    for (unsigned int i = 0; i < 4; i++) {
        t_pdpt_id[i] = (unsigned long)t_pd_id[i] | PTE_P | PTE_W;
        for (unsigned int j = 0; j < 512; j++)
            t_pd_id[i][j] = (((uint64_t)i << 30) | ((uint64_t)j << 21)) | PTE_P | PTE_W | PTE_PS;
    }
    t_pml4[1] = (unsigned long)t_pdpt | NONLEAF;
    t_pdpt[0] = (unsigned long)t_pd | NONLEAF;
    t_pd[0] = (unsigned long)t_pt | NONLEAF;
    t_pd[1] = PHYS_2M | PTE_P | PTE_W | PTE_PS;
    for (unsigned int i = 0; i < NR_PAGES; i++)
        t_pt[i] = (unsigned long)pages[i] | PTE_P | PTE_W;
}

static void fill(volatile void *p, size_t len, uint32_t seed)
{
    volatile uint32_t *w = p;
    for (size_t i = 0; i < len / 4; i++)
        w[i] = seed ^ (uint32_t)(i * 0x9e3779b1u);
}

static bool matches(const volatile void *p, size_t len, uint32_t seed)
{
    const volatile uint32_t *w = p;
    for (size_t i = 0; i < len / 4; i++)
        if (w[i] != (seed ^ (uint32_t)(i * 0x9e3779b1u)))
            return false;
    return true;
}

static bool ram_available(uint64_t start, uint64_t end)
{
    struct memmap_entry map[32];
    int n = memmap_read(map, ARRAY_SIZE(map), NULL);
    if (n <= 0)
        return true;     /* no map to consult: assume the documented 16 MiB */
    for (int i = 0; i < n; i++)
        if (map[i].type == E820_RAM && map[i].addr <= start && map[i].addr + map[i].size >= end)
            return true;
    return false;
}

static void test_4k(void)
{
    for (unsigned int i = 0; i < NR_PAGES; i++)
        fill(pages[i], PAGE_SIZE, 0xa0000000u + i);
    bool all = true;
    for (unsigned int i = 0; i < NR_PAGES; i++)
        all &= matches((void *)T_4K(i), PAGE_SIZE, 0xa0000000u + i);
    check(all, "4 KiB pages: %u pages read back through %#lx", NR_PAGES, T_4K(0));

    volatile uint32_t *v = (volatile uint32_t *)(T_4K(PG_B) + 0x7fc);
    *v = 0x600dcafe;
    check_eq(*(volatile uint32_t *)(pages[PG_B] + 0x7fc), 0x600dcafe,
             "4 KiB page: write through the mapping is seen through the identity map");
}

static void test_2m(void)
{
    if (!ram_available(PHYS_2M, PHYS_2M + 0x200000)) {
        skip_part("2 MiB page: no RAM at %#lx", PHYS_2M);
        return;
    }
    volatile uint32_t *phys = (volatile uint32_t *)PHYS_2M;
    phys[0x1234 / 4] = 0x2a2a0001;
    phys[(0x1ff000 + 0xffc) / 4] = 0x2a2a0002;
    check(*(volatile uint32_t *)(T_2M + 0x1234) == 0x2a2a0001 &&
          *(volatile uint32_t *)(T_2M + 0x1ffffc) == 0x2a2a0002,
          "2 MiB page at %#lx maps physical %#lx (start and last word)", T_2M, PHYS_2M);
}

static bool have_1g;
static void test_1g(void)
{
    if (!have_1g) {
        skip_part("1 GiB pages: CPUID 0x80000001 EDX bit 26 (pdpe1gb) is clear");
        return;
    }
    t_pdpt[1] = 0 | PTE_P | PTE_W | PTE_PS;     /* physical 0..1 GiB */
    invlpg((void *)T_1G);
    unsigned long off = (unsigned long)pages[PG_C];
    check(matches((void *)(T_1G + off), PAGE_SIZE, 0xa0000000u + PG_C),
          "1 GiB page at %#lx maps physical 0 (read page C at +%#lx)", T_1G, off);
}

static void test_accessed_dirty(void)
{
    volatile uint8_t *va = (volatile uint8_t *)T_4K(PG_A);
    volatile uint64_t *pte = &t_pt[PG_A];
    t_pml4[1] &= ~PTE_A;
    t_pdpt[0] &= ~PTE_A;
    t_pd[0] &= ~PTE_A;
    *pte &= ~(PTE_A | PTE_D);
    flush_tlb();
    (void)*va;
    check((*pte & (PTE_A | PTE_D)) == PTE_A, "read sets A, not D, in the 4 KiB PTE (%#llx)",
          (unsigned long long)*pte);
    check((t_pd[0] & PTE_A) && (t_pdpt[0] & PTE_A) && (t_pml4[1] & PTE_A),
          "read sets A in the PDE, PDPTE and PML4E");
    *va = 1;
    check(*pte & PTE_D, "write sets D in the 4 KiB PTE (%#llx)", (unsigned long long)*pte);

    if (ram_available(PHYS_2M, PHYS_2M + 0x200000)) {
        t_pd[1] &= ~(PTE_A | PTE_D);
        invlpg((void *)T_2M);
        (void)*(volatile uint8_t *)(T_2M + 0x10);
        check((t_pd[1] & (PTE_A | PTE_D)) == PTE_A, "read sets A, not D, in a 2 MiB PDE");
        *(volatile uint8_t *)(T_2M + 0x10) = 2;
        check(t_pd[1] & PTE_D, "write sets D in a 2 MiB PDE");
    }
    if (have_1g) {
        t_pdpt[1] &= ~(PTE_A | PTE_D);
        invlpg((void *)T_1G);
        unsigned long off = (unsigned long)pages[PG_C];
        (void)*(volatile uint8_t *)(T_1G + off);
        check((t_pdpt[1] & (PTE_A | PTE_D)) == PTE_A, "read sets A, not D, in a 1 GiB PDPTE");
        *(volatile uint8_t *)(T_1G + off) = 3;
        check(t_pdpt[1] & PTE_D, "write sets D in a 1 GiB PDPTE");
    }
}

static void test_tlb(void)
{
    volatile uint32_t *va = (volatile uint32_t *)T_4K(PG_D);
    fill(pages[PG_D], PAGE_SIZE, 0xd0d0d0d0);
    fill(pages[PG_E], PAGE_SIZE, 0xe0e0e0e0);
    uint64_t orig = t_pt[PG_D];
    (void)*va;                                   /* cache the translation */

    t_pt[PG_D] = (unsigned long)pages[PG_E] | PTE_P | PTE_W;
    invlpg((void *)va);
    check(matches(va, PAGE_SIZE, 0xe0e0e0e0), "after INVLPG the new PTE is used");

    t_pt[PG_D] = orig;
    write_cr3(read_cr3());
    check(matches(va, PAGE_SIZE, 0xd0d0d0d0), "after a CR3 reload the new PTE is used");
}

static void test_wp(void)
{
    volatile uint8_t *va = (volatile uint8_t *)T_4K(PG_C) + 0x80;
    t_pt[PG_C] &= ~PTE_W;
    invlpg((void *)va);

    probe_write8(va, 0x11);
    check(last_fault.vector == X86_EXC_PF && last_fault.error_code == (PFEC_PRESENT | PFEC_WRITE) &&
          last_fault.cr2 == (unsigned long)va,
          "CR0.WP=1: supervisor write to a read-only page faults (vector %d err %#lx)",
          (int)last_fault.vector, last_fault.error_code);

    write_cr0(read_cr0() & ~CR0_WP);
    int vec = probe_write8(va, 0x22);
    write_cr0(read_cr0() | CR0_WP);
    check(vec < 0 && pages[PG_C][0x80] == 0x22,
          "CR0.WP=0: supervisor write to a read-only page succeeds");
    t_pt[PG_C] |= PTE_W;
    invlpg((void *)va);
}

static void test_nx(void)
{
    if (!(rdmsr(MSR_EFER) & EFER_NXE)) {
        skip_part("NX: EFER.NXE is clear (no NX support)");
        return;
    }
    void *fn = (void *)(T_4K(PG_D) + 0x100);
    pages[PG_D][0x100] = OPCODE_RET;
    check(probe_exec(fn) < 0, "fetch from a page without NX works");
    t_pt[PG_D] |= PTE_NX;
    invlpg(fn);
    probe_exec(fn);
    check(last_fault.vector == X86_EXC_PF && last_fault.error_code == (PFEC_PRESENT | PFEC_INSN) &&
          last_fault.cr2 == (unsigned long)fn,
          "fetch from an NX page: #PF err %#lx (expected 0x11)", last_fault.error_code);
    t_pt[PG_D] &= ~PTE_NX;
    invlpg(fn);
}

static void test_reserved_bit(void)
{
    unsigned int maxphys = 36;
    if (cpuid_has_leaf(0x80000008))
        maxphys = cpuid_eax(0x80000008) & 0xff;
    if (maxphys >= 52) {
        skip_part("reserved bit: MAXPHYADDR is 52");
        return;
    }
    volatile uint8_t *va = (volatile uint8_t *)T_4K(PG_R);
    t_pt[PG_R] |= 1ULL << maxphys;
    invlpg((void *)va);
    probe_read8(va, NULL);
    /* QEMU's TCG leaves P clear in this error code; hardware sets it. */
    if (!xen_present && last_fault.vector == X86_EXC_PF && last_fault.error_code == PFEC_RSVD) {
        note("QEMU TCG quirk: reserved-bit #PF error code %#lx (hardware: 0x9)",
             last_fault.error_code);
        last_fault.error_code = PFEC_PRESENT | PFEC_RSVD;
    }
    check(last_fault.vector == X86_EXC_PF && last_fault.error_code == (PFEC_PRESENT | PFEC_RSVD),
          "PTE with reserved bit %u set: #PF err %#lx (expected 0x9)", maxphys,
          last_fault.error_code);
    t_pt[PG_R] &= ~(1ULL << maxphys);
    invlpg((void *)va);
}

static void test_smep(void)
{
    if (!(cpuid_eax(0) >= 7 && (cpuid_ebx(7) & CPUID7_EBX_SMEP))) {
        skip_part("SMEP: CPUID 7.EBX bit 7 is clear");
        return;
    }
    void *fn = (void *)(T_4K(PG_E) + 0x200);
    pages[PG_E][0x200] = OPCODE_RET;
    t_pt[PG_E] |= PTE_U;
    invlpg(fn);
    check(probe_exec(fn) < 0, "without SMEP, supervisor fetch from a user page works");

    write_cr4(read_cr4() | CR4_SMEP);
    probe_exec(fn);
    uint8_t v;
    int rvec = probe_read8(fn, &v);
    write_cr4(read_cr4() & ~CR4_SMEP);
    check(rvec < 0, "with SMEP, supervisor *reads* of a user page still work");
    /* probe_read8 reset last_fault: probe the fetch again for the record. */
    write_cr4(read_cr4() | CR4_SMEP);
    probe_exec(fn);
    write_cr4(read_cr4() & ~CR4_SMEP);
    check(last_fault.vector == X86_EXC_PF && last_fault.error_code == (PFEC_PRESENT | PFEC_INSN) &&
          last_fault.cr2 == (unsigned long)fn,
          "SMEP: supervisor fetch from a user page: #PF err %#lx (expected 0x11)",
          last_fault.error_code);
    t_pt[PG_E] &= ~PTE_U;
    invlpg(fn);
}

void test_main(void)
{
    have_1g = cpuid_has_leaf(0x80000001) && (cpuid_edx(0x80000001) & CPUID80000001_EDX_1GB);
    printf("CR0=%#lx CR4=%#lx EFER=%#llx, pdpe1gb=%d\n", read_cr0(), read_cr4(),
           (unsigned long long)rdmsr(MSR_EFER), have_1g);

    build_tables();
    sdk_cr3 = read_cr3();
    write_cr3((unsigned long)t_pml4);
    check_eq(read_cr3(), (unsigned long)t_pml4, "running on the test's own page tables");

    test_4k();
    test_2m();
    test_1g();
    test_accessed_dirty();
    test_tlb();
    test_wp();
    test_nx();
    test_reserved_bit();
    test_smep();

    write_cr3(sdk_cr3);
}
