/* The test result protocol and shutting down. */
#include "sdk.h"

#define QEMU_DEBUG_EXIT_PORT 0xf4

static unsigned int failures;
static char first_failure[160];
static bool finishing;

unsigned int test_failures(void)
{
    return failures;
}

void sdk_halt_forever(void)
{
    for (;;)
        asm volatile("cli; hlt" ::: "memory");
}

void sdk_shutdown(unsigned int reason)
{
    if (xen_present && hypercall_page_ready) {
        struct sched_shutdown s = { .reason = reason };
        console_flush();
        HYPERVISOR_sched_op(SCHEDOP_shutdown, &s);
        /* Only reached if the hypervisor let us run on. */
    } else {
        /* QEMU isa-debug-exit: the process exits with status (value << 1) | 1. */
        outb(QEMU_DEBUG_EXIT_PORT, reason == SHUTDOWN_poweroff ? 0 : 1);
    }
    sdk_halt_forever();
}

static void __noreturn finish(const char *kind, const char *reason,
                              unsigned int code)
{
    if (finishing)          /* a fault while reporting: just stop */
        sdk_shutdown(code);
    finishing = true;
    if (reason)
        printf("Test result: %s: %s\n", kind, reason);
    else
        printf("Test result: %s\n", kind);
    sdk_shutdown(code);
}

static void __noreturn finish_failed_checks(void)
{
    char reason[220];
    if (failures > 1)
        snprintf(reason, sizeof(reason), "%s (and %u more failed checks)",
                 first_failure, failures - 1);
    else
        snprintf(reason, sizeof(reason), "%s", first_failure);
    finish("FAILURE", reason, SHUTDOWN_crash);
}

void test_pass(void)
{
    if (failures)
        finish_failed_checks();
    finish("SUCCESS", NULL, SHUTDOWN_poweroff);
}

void test_done(void)
{
    test_pass();
}

void test_fail(const char *fmt, ...)
{
    char reason[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    finish("FAILURE", reason, SHUTDOWN_crash);
}

void test_skip(const char *fmt, ...)
{
    char reason[200];
    va_list ap;
    if (failures)   /* an earlier failure wins over a later skip */
        finish_failed_checks();
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    finish("SKIP", reason, SHUTDOWN_poweroff);
}

static bool report(bool cond, const char *fmt, va_list ap, const char *detail)
{
    char msg[160];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    if (cond) {
        printf("ok: %s\n", msg);
        return true;
    }
    printf("FAIL: %s%s\n", msg, detail ? detail : "");
    if (!failures++)
        snprintf(first_failure, sizeof(first_failure), "%s%s", msg,
                 detail ? detail : "");
    return false;
}

bool check(bool cond, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    bool r = report(cond, fmt, ap, NULL);
    va_end(ap);
    return r;
}

bool check_eq(unsigned long long got, unsigned long long expected,
              const char *fmt, ...)
{
    char detail[64];
    snprintf(detail, sizeof(detail), ": got %#llx, expected %#llx", got, expected);
    va_list ap;
    va_start(ap, fmt);
    bool r = report(got == expected, fmt, ap, detail);
    va_end(ap);
    return r;
}

void skip_part(const char *fmt, ...)
{
    char msg[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    printf("skip: %s\n", msg);
}

void note(const char *fmt, ...)
{
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    printf("note: %s\n", msg);
}

bool check_rc(long got, long expected, const char *fmt, ...)
{
    char msg[160], detail[80];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (got == expected) {
        if (got > 0)
            return check(true, "%s -> %ld", msg, got);
        return check(true, "%s -> %s", msg, xen_errno_name(got));
    }
    snprintf(detail, sizeof(detail), ": got %s (%ld), expected %s (%ld)", xen_errno_name(got),
             got, xen_errno_name(expected), expected);
    return check(false, "%s%s", msg, detail);
}

bool check_gntst(int got, int expected, const char *fmt, ...)
{
    char msg[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (got == expected)
        return check(true, "%s -> %s", msg, gntst_name(got));
    return check(false, "%s: got %s (%d), expected %s", msg, gntst_name(got), got,
                 gntst_name(expected));
}
