/*
 * Console output.  On Xen: HYPERVISOR_console_io(CONSOLEIO_write); if the
 * hypervisor refuses it (release Xen builds do for ordinary domains) the PV
 * console ring is used instead (pvcons.c), and `console=pv` on the command
 * line chooses the ring first.  Without Xen: QEMU's debug console, port 0xE9.
 */
#include "sdk.h"

#define DEBUGCON_PORT 0xe9

enum console_backend console_backend = CONSOLE_NONE;

const char *console_backend_name(void)
{
    switch (console_backend) {
    case CONSOLE_XEN_CONSOLE_IO: return "console_io";
    case CONSOLE_XEN_PV_RING:    return "pv-console-ring";
    case CONSOLE_DEBUGCON:       return "debugcon-0xe9";
    default:                     return "none";
    }
}

void console_init(void)
{
    char want[16] = "";

    if (!xen_present || !hypercall_page_ready) {
        console_backend = CONSOLE_DEBUGCON;
        return;
    }
    /* `console=pv`: the PV console ring whenever CONSOLE_PFN is set. */
    if (cmdline_get("console", want, sizeof(want)) && !strcmp(want, "pv") &&
        pvcons_init() == 0) {
        xen_map_shared_info();          /* clock and bitmap for waiting on the ring */
        console_backend = CONSOLE_XEN_PV_RING;
        return;
    }
    /* A zero-length write asks only whether we may use console_io. */
    if (HYPERVISOR_console_io(CONSOLEIO_write, 0, "") == 0) {
        console_backend = CONSOLE_XEN_CONSOLE_IO;
        return;
    }
    if (pvcons_init() == 0) {
        console_backend = CONSOLE_XEN_PV_RING;
        return;
    }
    console_backend = CONSOLE_NONE;
}

bool console_use_pv(void)
{
    if (console_backend == CONSOLE_XEN_PV_RING)
        return true;
    if (pvcons_init() < 0)
        return false;
    console_backend = CONSOLE_XEN_PV_RING;
    return true;
}

void console_flush(void)
{
    /* Only once a console daemon has shown up: without one nothing would
     * drain the ring and the wait would only delay the shutdown. */
    if (console_backend == CONSOLE_XEN_PV_RING && pvcons_consumer_seen)
        pvcons_flush(2 * NS_PER_SEC);
}

void console_write(const char *s, size_t len)
{
    switch (console_backend) {
    case CONSOLE_XEN_CONSOLE_IO:
        HYPERVISOR_console_io(CONSOLEIO_write, (unsigned int)len, (void *)s);
        break;
    case CONSOLE_XEN_PV_RING:
        pvcons_write(s, len);
        break;
    case CONSOLE_DEBUGCON:
        for (size_t i = 0; i < len; i++)
            outb(DEBUGCON_PORT, (uint8_t)s[i]);
        break;
    default:
        break;
    }
}
