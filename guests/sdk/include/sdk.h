/*
 * pyxen guest SDK: everything a guest needs, in one include.
 *
 * A guest provides:
 *     const char test_title[] = "what this guest checks";
 *     void test_main(void);
 * The SDK's PVH entry sets up the CPU, detects Xen, prints a banner and calls
 * test_main().  If test_main() returns, the result is SUCCESS unless a check
 * failed (see test.h).
 */
#ifndef SDK_H
#define SDK_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "xen_abi.h"
#include "x86.h"
#include "hypercall.h"
#include "traps.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define PAGE_SIZE 4096UL
#define __aligned(n) __attribute__((aligned(n)))
#define __noreturn __attribute__((noreturn))
#define __printf(a, b) __attribute__((format(printf, a, b)))
#define __used __attribute__((used))
#define ALIGN_UP(x, a) (((x) + (a) - 1) & ~((__typeof__(x))(a) - 1))

/* ---- provided by the guest ---- */
extern const char test_title[];
void test_main(void);

/* ---- linker-script symbols ---- */
extern char _image_start[], _image_end[];
extern char _text_start[], _text_end[];      /* code + read-only data */
extern char _data_start[], _bss_start[], _bss_end[];

/* ---- string.c ---- */
void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
void *memmove(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
size_t strnlen(const char *s, size_t max);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);
char *strstr(const char *hay, const char *needle);
char *strchr(const char *s, int c);
/* Unsigned 64-bit divide by a 32-bit divisor (no libgcc on 32-bit builds). */
uint64_t udivmod64(uint64_t n, uint32_t d, uint32_t *rem);
/* Parses decimal or 0x-hex; stops at the first non-digit. */
unsigned long long strtoull_simple(const char *s, const char **end);

/* ---- printf.c ---- */
int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap);
int snprintf(char *buf, size_t size, const char *fmt, ...) __printf(3, 4);
int vprintf(const char *fmt, va_list ap);
int printf(const char *fmt, ...) __printf(1, 2);
int puts(const char *s);   /* writes s and a newline */

/* ---- console.c ---- */
enum console_backend {
    CONSOLE_NONE,
    CONSOLE_XEN_CONSOLE_IO,   /* HYPERVISOR_console_io(CONSOLEIO_write) */
    CONSOLE_XEN_PV_RING,      /* the console page + event channel */
    CONSOLE_DEBUGCON,         /* port 0xE9 (QEMU -debugcon) */
};
extern enum console_backend console_backend;
void console_init(void);
void console_write(const char *s, size_t len);
const char *console_backend_name(void);
/* Switches the console to the PV ring (false when there is none). */
bool console_use_pv(void);
/* PV ring console: waits (up to 2 s) until the daemon has read everything;
 * called by sdk_shutdown().  No-op for the other back-ends. */
void console_flush(void);

/* ---- xen.c ---- */
extern bool xen_present;           /* Xen CPUID signature found */
extern uint32_t xen_cpuid_base;    /* 0x40000000 or 0x40000100 */
extern uint32_t xen_version_cpuid; /* (major << 16) | minor from leaf base+1 */
extern uint32_t xen_hypercall_msr; /* MSR index from leaf base+2 */
bool xen_detect(void);
/* Writes the hypercall-page MSR; returns false when Xen is absent. */
bool xen_setup_hypercall_page(void);
const char *xen_errno_name(long err);   /* "-ENOSYS" etc., for printing */
/*
 * A direct VMCALL (use_vmmcall false) or VMMCALL with up to three arguments,
 * guarded by the exception table: if the instruction faults (e.g. #UD for the
 * other vendor's instruction), *vector gets the vector and -XEN_ENOSYS is
 * returned; otherwise *vector = -1.
 */
long hypercall_insn_checked(bool use_vmmcall, unsigned long nr, unsigned long a1,
                            unsigned long a2, unsigned long a3, int *vector);
/* True when the CPU vendor is AMD/Hygon (VMMCALL is its native instruction). */
bool cpu_is_amd(void);

/* ---- startinfo.c ---- */
extern const struct hvm_start_info *start_info;   /* NULL if EBX was 0 */
extern uint32_t start_info_paddr;
/* The command line ("" when there is none). */
const char *cmdline(void);
/* Finds "key=value" in the command line; copies value (NUL-terminated). */
bool cmdline_get(const char *key, char *value, size_t len);
unsigned long long cmdline_get_u64(const char *key, unsigned long long def);
/* True when the command line contains the word `token` (whitespace separated). */
bool cmdline_has_word(const char *token);
struct memmap_entry {
    uint64_t addr, size;
    uint32_t type;
};
enum memmap_source { MEMMAP_NONE, MEMMAP_START_INFO, MEMMAP_XENMEM };
/* Fills up to max entries; returns the count or a negative Xen errno. */
int memmap_read(struct memmap_entry *out, int max, enum memmap_source *src);
const char *e820_type_name(uint32_t type);
const struct hvm_modlist_entry *start_info_module(unsigned int i);

/* ---- test.c: the result protocol ---- */
/*
 * Output protocol: a guest prints what it checks; the last line is exactly one of
 *     Test result: SUCCESS
 *     Test result: FAILURE: <reason>
 *     Test result: SKIP: <reason>
 * then the guest shuts down (poweroff for SUCCESS/SKIP, crash for FAILURE;
 * under QEMU the isa-debug-exit port 0xf4 gets 0 or 1).
 */
void test_pass(void) __noreturn;                       /* SUCCESS unless a check failed */
void test_fail(const char *fmt, ...) __printf(1, 2) __noreturn;
void test_skip(const char *fmt, ...) __printf(1, 2) __noreturn;
/* Prints "ok: <msg>" or "FAIL: <msg>" (failure recorded, test goes on). */
bool check(bool cond, const char *fmt, ...) __printf(2, 3);
/* Like check() but also prints got/expected on failure. */
bool check_eq(unsigned long long got, unsigned long long expected,
              const char *fmt, ...) __printf(3, 4);
/* check() for a hypercall result: "ok: <msg> -> -EINVAL", or FAIL with both
 * errno names.  check_gntst() does the same for GNTST_* statuses. */
bool check_rc(long got, long expected, const char *fmt, ...) __printf(3, 4);
bool check_gntst(int got, int expected, const char *fmt, ...) __printf(3, 4);
/* Prints "skip: <msg>" for one part that cannot run here. */
void skip_part(const char *fmt, ...) __printf(1, 2);
/* Prints "note: <msg>" (information only). */
void note(const char *fmt, ...) __printf(1, 2);
unsigned int test_failures(void);
/* Ends the test from test_main's return path. */
void test_done(void) __noreturn;
/* Shuts the domain down (or exits QEMU); never returns. */
void sdk_shutdown(unsigned int reason) __noreturn;
/* cli; hlt forever. */
void sdk_halt_forever(void) __noreturn;

/* ---- arch setup (x86_64/setup.c or x86_32/setup.c) ---- */
extern const char sdk_arch_name[];
void arch_setup(void);
void arch_after_hypercall_page(void); /* protects the filled hypercall page */
void arch_bare_metal_setup(void);   /* called when no Xen: masks the legacy PIC */

#ifdef __x86_64__
#include "arch64.h"
#else
#include "arch32.h"
#endif

#include "atomic.h"
#include "smp.h"
#include "events.h"
#include "xtime.h"
#include "grant.h"
#include "pvcons.h"
#include "xenstore.h"

#endif
