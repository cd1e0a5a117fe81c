/*
 * test-paging32: the two 32-bit paging modes, entered from flat protected
 * mode with page tables built here.
 *   - 32-bit paging (CR4.PAE=0): 4 KiB pages, and 4 MiB pages with CR4.PSE;
 *   - PAE paging (CR4.PAE=1): 4 KiB and 2 MiB pages, NX when available.
 * In each: patterns read through test mappings, A/D bits, INVLPG, CR3 reload,
 * #PF error codes and CR2, CR0.WP.  Identity maps keep the code running.
 */
#include "sdk.h"

const char test_title[] = "test-paging32: 32-bit (4K, 4M PSE) and PAE (4K, 2M) paging";

#define T_BASE     0x40000000u          /* test mappings at 1 GiB */
#define T_4K(i)    (T_BASE + (uint32_t)(i) * 4096u)
#define T_BIG      (T_BASE + 0x400000u) /* 4 MiB (32-bit) / 2 MiB (PAE) page */
#define PHYS_BIG   0x400000u            /* 4 MiB: aligned for both page sizes */
#define HI_BASE    0xfec00000u          /* 4 MiB region holding the special pages */

#define TABLE __aligned(PAGE_SIZE)
/* Volatile: the CPU writes A/D bits behind the compiler's back. */
enum { PG_A, PG_B, PG_C, PG_D, PG_R, NR_PAGES };
static volatile uint8_t pages[NR_PAGES][PAGE_SIZE] TABLE;

/* 32-bit paging structures (4-byte entries). */
static volatile uint32_t pd32[1024] TABLE;
static volatile uint32_t pt32_id[4][1024] TABLE;     /* identity 0..16 MiB */
static volatile uint32_t pt32_hi[1024] TABLE;        /* identity HI_BASE..+4 MiB */
static volatile uint32_t pt32_t[1024] TABLE;         /* test 4 KiB pages */

/* PAE structures (8-byte entries). */
static volatile uint64_t pdpt_pae[4] __aligned(32);
static volatile uint64_t pd_pae[4][512] TABLE;
static volatile uint64_t pt_pae_t[512] TABLE;

static bool have_pse, have_nx, big_ram;

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
        return true;
    for (int i = 0; i < n; i++)
        if (map[i].type == E820_RAM && map[i].addr <= start && map[i].addr + map[i].size >= end)
            return true;
    return false;
}

static bool pf_is(uint32_t err, const volatile void *addr)
{
    return last_fault.vector == X86_EXC_PF && last_fault.error_code == err &&
           last_fault.cr2 == (unsigned long)addr;
}

static void paging_off(void)
{
    write_cr0(read_cr0() & ~CR0_PG);
}

/* ---------------- 32-bit paging ---------------- */

static void build_32bit(void)
{
    for (uint32_t t = 0; t < 4; t++) {
        for (uint32_t i = 0; i < 1024; i++)
            pt32_id[t][i] = ((t << 22) | (i << 12)) | PTE_P | PTE_W;
        pd32[t] = (uint32_t)pt32_id[t] | PTE_P | PTE_W;
    }
    pt32_id[0][0] = 0;                 /* page 0 not present */
    for (uint32_t i = 0; i < 1024; i++)
        pt32_hi[i] = (HI_BASE + (i << 12)) | PTE_P | PTE_W;
    pd32[HI_BASE >> 22] = (uint32_t)pt32_hi | PTE_P | PTE_W;

    pd32[T_BASE >> 22] = (uint32_t)pt32_t | PTE_P | PTE_W;
    for (uint32_t i = 0; i < NR_PAGES; i++)
        pt32_t[i] = (uint32_t)pages[i] | PTE_P | PTE_W;
    if (have_pse && big_ram)
        pd32[T_BIG >> 22] = PHYS_BIG | PTE_P | PTE_W | PTE_PS;
}

static void test_32bit(void)
{
    printf("-- 32-bit paging (CR4.PAE=0)%s\n", have_pse ? ", CR4.PSE=1" : "");
    build_32bit();
    for (uint32_t i = 0; i < NR_PAGES; i++)
        fill(pages[i], PAGE_SIZE, 0x32000000u + i);
    if (big_ram) {
        volatile uint32_t *big = (volatile uint32_t *)PHYS_BIG;
        big[0x1234 / 4] = 0x4d4d0001;
        big[(0x400000 - 4) / 4] = 0x4d4d0002;
    }

    write_cr3((unsigned long)pd32);
    write_cr4((read_cr4() & ~CR4_PAE) | (have_pse ? CR4_PSE : 0));
    write_cr0(read_cr0() | CR0_PG | CR0_WP);
    check(read_cr0() & CR0_PG, "32-bit paging enabled (CR0=%#lx CR4=%#lx)", read_cr0(),
          read_cr4());

    bool all = true;
    for (uint32_t i = 0; i < NR_PAGES; i++)
        all &= matches((void *)T_4K(i), PAGE_SIZE, 0x32000000u + i);
    check(all, "32-bit: %u 4 KiB pages read back through %#x", NR_PAGES, T_4K(0));

    if (have_pse && big_ram)
        check(*(volatile uint32_t *)(T_BIG + 0x1234) == 0x4d4d0001 &&
              *(volatile uint32_t *)(T_BIG + 0x3ffffc) == 0x4d4d0002,
              "32-bit: 4 MiB PSE page at %#x maps physical %#x", T_BIG, PHYS_BIG);
    else
        skip_part("32-bit: 4 MiB pages (%s)", have_pse ? "no RAM at 4 MiB" : "no PSE");

    /* Accessed / dirty. */
    volatile uint8_t *va = (volatile uint8_t *)T_4K(PG_A);
    pd32[T_BASE >> 22] &= ~(uint32_t)PTE_A;
    pt32_t[PG_A] &= ~(uint32_t)(PTE_A | PTE_D);
    flush_tlb();
    (void)*va;
    check((pt32_t[PG_A] & (PTE_A | PTE_D)) == PTE_A && (pd32[T_BASE >> 22] & PTE_A),
          "32-bit: read sets A (PTE and PDE), not D (PTE %#x)", pt32_t[PG_A]);
    *va = 1;
    check(pt32_t[PG_A] & PTE_D, "32-bit: write sets D (PTE %#x)", pt32_t[PG_A]);
    if (have_pse && big_ram) {
        volatile uint32_t *pde = &pd32[T_BIG >> 22];
        *pde &= ~(uint32_t)(PTE_A | PTE_D);
        invlpg((void *)T_BIG);
        (void)*(volatile uint8_t *)(T_BIG + 8);
        check((*pde & (PTE_A | PTE_D)) == PTE_A, "32-bit: read sets A, not D, in a 4 MiB PDE");
        *(volatile uint8_t *)(T_BIG + 8) = 1;
        check(*pde & PTE_D, "32-bit: write sets D in a 4 MiB PDE");
    }

    /* TLB maintenance. */
    volatile uint8_t *vb = (volatile uint8_t *)T_4K(PG_B);
    (void)*vb;
    pt32_t[PG_B] = (uint32_t)pages[PG_C] | PTE_P | PTE_W;
    invlpg((void *)vb);
    check(matches(vb, PAGE_SIZE, 0x32000000u + PG_C), "32-bit: after INVLPG the new PTE is used");
    pt32_t[PG_B] = (uint32_t)pages[PG_B] | PTE_P | PTE_W;
    write_cr3(read_cr3());
    check(matches(vb, PAGE_SIZE, 0x32000000u + PG_B), "32-bit: after a CR3 reload the new PTE is used");

    /* Page faults. */
    volatile uint8_t *vd = (volatile uint8_t *)T_4K(PG_D) + 0x321;
    pt32_t[PG_D] &= ~(uint32_t)PTE_P;
    invlpg(vd);
    probe_read8(vd, NULL);
    check(pf_is(0, vd), "32-bit: read of a not-present page: #PF err %#lx cr2 %#lx",
          last_fault.error_code, last_fault.cr2);
    probe_write8(vd, 1);
    check(pf_is(PFEC_WRITE, vd), "32-bit: write to a not-present page: #PF err %#lx",
          last_fault.error_code);
    pt32_t[PG_D] |= PTE_P;
    pt32_t[PG_D] &= ~(uint32_t)PTE_W;
    invlpg(vd);
    probe_write8(vd, 1);
    check(pf_is(PFEC_PRESENT | PFEC_WRITE, vd),
          "32-bit: CR0.WP=1 write to a read-only page: #PF err %#lx", last_fault.error_code);
    write_cr0(read_cr0() & ~CR0_WP);
    int vec = probe_write8(vd, 0x77);
    write_cr0(read_cr0() | CR0_WP);
    check(vec < 0 && pages[PG_D][0x321] == 0x77,
          "32-bit: CR0.WP=0 write to a read-only page succeeds");
    pt32_t[PG_D] |= PTE_W;
    invlpg(vd);

    paging_off();
    check(!(read_cr0() & CR0_PG), "32-bit paging disabled again");
}

/* ---------------- PAE paging ---------------- */

static void build_pae(void)
{
    /* PDPTEs carry only P and the address (other low bits are reserved). */
    for (uint32_t i = 0; i < 4; i++) {
        pdpt_pae[i] = (uint32_t)pd_pae[i] | PTE_P;
        for (uint32_t j = 0; j < 512; j++)
            pd_pae[i][j] = 0;
    }
    /* Identity 0..1 GiB and 3..4 GiB with 2 MiB pages. */
    for (uint32_t j = 0; j < 512; j++) {
        pd_pae[0][j] = ((uint64_t)j << 21) | PTE_P | PTE_W | PTE_PS;
        pd_pae[3][j] = (0xc0000000ULL + ((uint64_t)j << 21)) | PTE_P | PTE_W | PTE_PS;
    }
    /* Test region at 1 GiB: PD slot 0 -> 4 KiB pages, slot 2 -> a 2 MiB page. */
    pd_pae[1][0] = (uint32_t)pt_pae_t | PTE_P | PTE_W;
    for (uint32_t i = 0; i < 512; i++)
        pt_pae_t[i] = 0;
    for (uint32_t i = 0; i < NR_PAGES; i++)
        pt_pae_t[i] = (uint32_t)pages[i] | PTE_P | PTE_W;
    if (big_ram)
        pd_pae[1][(T_BIG - T_BASE) >> 21] = PHYS_BIG | PTE_P | PTE_W | PTE_PS;
}

static void test_pae(void)
{
    printf("-- PAE paging (CR4.PAE=1)%s\n", have_nx ? ", EFER.NXE=1" : "");
    build_pae();
    for (uint32_t i = 0; i < NR_PAGES; i++)
        fill(pages[i], PAGE_SIZE, 0xbae00000u + i);
    if (big_ram) {
        volatile uint32_t *big = (volatile uint32_t *)PHYS_BIG;
        big[0x2468 / 4] = 0x2b2b0001;
        big[(0x200000 - 4) / 4] = 0x2b2b0002;
    }
    if (have_nx)
        wrmsr(MSR_EFER, rdmsr(MSR_EFER) | EFER_NXE);

    write_cr4(read_cr4() | CR4_PAE);
    write_cr3((unsigned long)pdpt_pae);
    write_cr0(read_cr0() | CR0_PG | CR0_WP);
    check((read_cr0() & CR0_PG) && (read_cr4() & CR4_PAE), "PAE paging enabled (CR4=%#lx)",
          read_cr4());

    bool all = true;
    for (uint32_t i = 0; i < NR_PAGES; i++)
        all &= matches((void *)T_4K(i), PAGE_SIZE, 0xbae00000u + i);
    check(all, "PAE: %u 4 KiB pages read back through %#x", NR_PAGES, T_4K(0));
    if (big_ram)
        check(*(volatile uint32_t *)(T_BIG + 0x2468) == 0x2b2b0001 &&
              *(volatile uint32_t *)(T_BIG + 0x1ffffc) == 0x2b2b0002,
              "PAE: 2 MiB page at %#x maps physical %#x", T_BIG, PHYS_BIG);
    else
        skip_part("PAE: 2 MiB page (no RAM at 4 MiB)");

    /* Accessed / dirty. */
    volatile uint8_t *va = (volatile uint8_t *)T_4K(PG_A);
    pd_pae[1][0] &= ~PTE_A;
    pt_pae_t[PG_A] &= ~(PTE_A | PTE_D);
    flush_tlb();
    (void)*va;
    check((pt_pae_t[PG_A] & (PTE_A | PTE_D)) == PTE_A && (pd_pae[1][0] & PTE_A),
          "PAE: read sets A (PTE and PDE), not D");
    *va = 1;
    check(pt_pae_t[PG_A] & PTE_D, "PAE: write sets D");
    if (big_ram) {
        volatile uint64_t *pde = &pd_pae[1][(T_BIG - T_BASE) >> 21];
        *pde &= ~(PTE_A | PTE_D);
        invlpg((void *)T_BIG);
        (void)*(volatile uint8_t *)(T_BIG + 8);
        check((*pde & (PTE_A | PTE_D)) == PTE_A, "PAE: read sets A, not D, in a 2 MiB PDE");
        *(volatile uint8_t *)(T_BIG + 8) = 1;
        check(*pde & PTE_D, "PAE: write sets D in a 2 MiB PDE");
    }

    /* TLB maintenance. */
    volatile uint8_t *vb = (volatile uint8_t *)T_4K(PG_B);
    (void)*vb;
    pt_pae_t[PG_B] = (uint32_t)pages[PG_C] | PTE_P | PTE_W;
    invlpg((void *)vb);
    check(matches(vb, PAGE_SIZE, 0xbae00000u + PG_C), "PAE: after INVLPG the new PTE is used");
    pt_pae_t[PG_B] = (uint32_t)pages[PG_B] | PTE_P | PTE_W;
    write_cr3(read_cr3());
    check(matches(vb, PAGE_SIZE, 0xbae00000u + PG_B), "PAE: after a CR3 reload the new PTE is used");

    /* Page faults. */
    volatile uint8_t *vd = (volatile uint8_t *)T_4K(PG_D) + 0x654;
    pt_pae_t[PG_D] &= ~PTE_P;
    invlpg(vd);
    probe_read8(vd, NULL);
    check(pf_is(0, vd), "PAE: read of a not-present page: #PF err %#lx cr2 %#lx",
          last_fault.error_code, last_fault.cr2);
    pt_pae_t[PG_D] |= PTE_P;
    pt_pae_t[PG_D] &= ~PTE_W;
    invlpg(vd);
    probe_write8(vd, 1);
    check(pf_is(PFEC_PRESENT | PFEC_WRITE, vd), "PAE: write to a read-only page: #PF err %#lx",
          last_fault.error_code);
    pt_pae_t[PG_D] |= PTE_W;
    invlpg(vd);

    if (have_nx) {
        void *fn = (void *)(T_4K(PG_R) + 0x10);
        pages[PG_R][0x10] = OPCODE_RET;
        check(probe_exec(fn) < 0, "PAE: fetch from a page without NX works");
        pt_pae_t[PG_R] |= PTE_NX;
        invlpg(fn);
        probe_exec(fn);
        check(pf_is(PFEC_PRESENT | PFEC_INSN, fn), "PAE: fetch from an NX page: #PF err %#lx",
              last_fault.error_code);
        pt_pae_t[PG_R] &= ~PTE_NX;
        invlpg(fn);
    } else {
        skip_part("PAE: NX (CPUID 0x80000001 EDX bit 20 clear)");
    }

    paging_off();
    write_cr4(read_cr4() & ~CR4_PAE);
    if (have_nx)
        wrmsr(MSR_EFER, rdmsr(MSR_EFER) & ~(uint64_t)EFER_NXE);
    check(!(read_cr0() & CR0_PG), "PAE paging disabled again");
}

void test_main(void)
{
    uint32_t edx1 = cpuid_edx(1);
    have_pse = edx1 & CPUID1_EDX_PSE;
    bool have_pae = edx1 & CPUID1_EDX_PAE;
    have_nx = cpuid_has_leaf(0x80000001) && (cpuid_edx(0x80000001) & CPUID80000001_EDX_NX);
    big_ram = ram_available(PHYS_BIG, PHYS_BIG + 0x400000);
    printf("CPUID: PSE=%d PAE=%d NX=%d; RAM at 4-8 MiB: %d\n", have_pse, have_pae, have_nx,
           big_ram);
    check(!(read_cr0() & CR0_PG), "entered with paging off");

    test_32bit();
    if (have_pae)
        test_pae();
    else
        skip_part("PAE paging: CPUID 1 EDX bit 6 clear");
}
