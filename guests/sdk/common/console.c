/*
 * Console output.  On Xen: HYPERVISOR_console_io(CONSOLEIO_write); if the
 * hypervisor refuses it (release Xen builds do for ordinary domains) the PV
 * console ring is used instead.  Without Xen: QEMU's debug console, port 0xE9.
 */
#include "sdk.h"

#define DEBUGCON_PORT 0xe9

enum console_backend console_backend = CONSOLE_NONE;

static volatile struct xencons_interface *cons_ring;
static uint32_t cons_evtchn;

const char *console_backend_name(void)
{
    switch (console_backend) {
    case CONSOLE_XEN_CONSOLE_IO: return "console_io";
    case CONSOLE_XEN_PV_RING:    return "pv-console-ring";
    case CONSOLE_DEBUGCON:       return "debugcon-0xe9";
    default:                     return "none";
    }
}

static bool pv_ring_init(void)
{
    uint64_t pfn, port;
    if (xen_get_hvm_param(HVM_PARAM_CONSOLE_PFN, &pfn) < 0 || !pfn)
        return false;
    if (xen_get_hvm_param(HVM_PARAM_CONSOLE_EVTCHN, &port) < 0)
        return false;
    /* The SDK's identity map covers 0..4 GiB; the 32-bit SDK runs unpaged. */
    if (pfn >= (1ULL << 20))
        return false;
    cons_ring = (volatile struct xencons_interface *)(unsigned long)(pfn << 12);
    cons_evtchn = (uint32_t)port;
    return true;
}

void console_init(void)
{
    if (!xen_present || !hypercall_page_ready) {
        console_backend = CONSOLE_DEBUGCON;
        return;
    }
    /* A zero-length write asks only whether we may use console_io. */
    if (HYPERVISOR_console_io(CONSOLEIO_write, 0, "") == 0) {
        console_backend = CONSOLE_XEN_CONSOLE_IO;
        return;
    }
    if (pv_ring_init()) {
        console_backend = CONSOLE_XEN_PV_RING;
        return;
    }
    console_backend = CONSOLE_NONE;
}

static void pv_ring_write(const char *s, size_t len)
{
    unsigned int stalls = 0;
    const uint32_t size = sizeof(cons_ring->out);

    while (len) {
        uint32_t cons = cons_ring->out_cons;
        uint32_t prod = cons_ring->out_prod;
        barrier();
        uint32_t used = prod - cons;
        if (used >= size) {
            /* Full: let the backend run; give up rather than hang forever. */
            struct evtchn_send send = { .port = cons_evtchn };
            HYPERVISOR_event_channel_op(EVTCHNOP_send, &send);
            HYPERVISOR_sched_op(SCHEDOP_yield, NULL);
            if (++stalls > 10000)
                return;
            continue;
        }
        uint32_t n = size - used;
        if (n > len)
            n = (uint32_t)len;
        for (uint32_t i = 0; i < n; i++)
            cons_ring->out[(prod + i) & (size - 1)] = s[i];
        wmb();
        cons_ring->out_prod = prod + n;
        s += n;
        len -= n;
        struct evtchn_send send = { .port = cons_evtchn };
        HYPERVISOR_event_channel_op(EVTCHNOP_send, &send);
    }
}

void console_write(const char *s, size_t len)
{
    switch (console_backend) {
    case CONSOLE_XEN_CONSOLE_IO:
        HYPERVISOR_console_io(CONSOLEIO_write, (unsigned int)len, (void *)s);
        break;
    case CONSOLE_XEN_PV_RING:
        pv_ring_write(s, len);
        break;
    case CONSOLE_DEBUGCON:
        for (size_t i = 0; i < len; i++)
            outb(DEBUGCON_PORT, (uint8_t)s[i]);
        break;
    default:
        break;
    }
}
