/* The PV console ring (xencons_interface): writer for `out`, reader for `in`. */
#include "sdk.h"

volatile struct xencons_interface *pvcons_ring;
evtchn_port_t pvcons_port;
uint64_t pvcons_pfn;
uint64_t pvcons_stall_ns = 5 * NS_PER_SEC;

uint64_t pvcons_bytes_out;
uint64_t pvcons_bytes_in;
uint64_t pvcons_dropped;
uint32_t pvcons_notifies;
uint32_t pvcons_stalls;
bool pvcons_consumer_seen;

static uint32_t first_out_cons;
/* After a stall timed out: out_cons then; until it moves, a full ring drops
 * at once instead of waiting again (no daemon: no 5 s per line). */
static bool daemon_gone;
static uint32_t gone_cons;
static bool skip_lf;               /* the last line ended with '\r' */

long pvcons_init(void)
{
    uint64_t pfn, port;
    long rc;

    if (pvcons_ring)
        return 0;
    if (!xen_present || !hypercall_page_ready)
        return -XEN_ENOSYS;
    if ((rc = xen_get_hvm_param(HVM_PARAM_CONSOLE_PFN, &pfn)) < 0)
        return rc;
    if (!pfn)
        return -XEN_ENODEV;
    if ((rc = xen_get_hvm_param(HVM_PARAM_CONSOLE_EVTCHN, &port)) < 0)
        return rc;
    /* The 64-bit SDK identity-maps 0..4 GiB; the 32-bit SDK runs unpaged. */
    if (pfn >= (1ULL << 20))
        return -XEN_ERANGE;
    pvcons_pfn = pfn;
    pvcons_port = (evtchn_port_t)port;
    first_out_cons = ((volatile struct xencons_interface *)(unsigned long)(pfn << 12))->out_cons;
    barrier();
    pvcons_ring = (volatile struct xencons_interface *)(unsigned long)(pfn << 12);
    return 0;
}

static void notify(void)
{
    pvcons_notifies++;
    evtchn_send(pvcons_port);
}

/* Waits for cond, notifying the daemon again every 100 ms (one that only
 * reads when notified, a bounded amount each time, still makes progress). */
#define KICK_NS (100 * NS_PER_MS)
static bool wait_kicking(wait_cond_fn cond, void *arg, uint64_t timeout_ns)
{
    /* Waiting wants the pending bitmap and the clock: map shared_info now
     * (only the first wait does it, so guests that never wait are unchanged). */
    if (!shared_info)
        xen_map_shared_info();
    uint64_t start = xen_now();
    if (!start)                         /* no clock: one plain wait */
        return evtchn_wait_port(pvcons_port, cond, arg, timeout_ns);
    for (;;) {
        uint64_t spent = xen_now() - start;
        if (spent >= timeout_ns)
            return cond(arg);
        uint64_t slice = timeout_ns - spent < KICK_NS ? timeout_ns - spent : KICK_NS;
        if (evtchn_wait_port(pvcons_port, cond, arg, slice))
            return true;
        notify();
    }
}

static void note_consumer(void)
{
    if (!pvcons_consumer_seen && pvcons_ring->out_cons != first_out_cons)
        pvcons_consumer_seen = true;
}

struct out_space {
    uint32_t cons;      /* out_cons when the ring was found full */
};

static bool out_has_space(void *arg)
{
    struct out_space *w = arg;
    uint32_t cons = pvcons_ring->out_cons;
    return cons != w->cons || pvcons_ring->out_prod - cons < XENCONS_OUT_SIZE;
}

size_t pvcons_write(const char *s, size_t len)
{
    volatile struct xencons_interface *r = pvcons_ring;
    size_t done = 0;

    if (!r)
        return 0;
    while (done < len) {
        uint32_t cons = r->out_cons;
        uint32_t prod = r->out_prod;
        rmb();
        uint32_t used = prod - cons;
        if (used > XENCONS_OUT_SIZE) {
            /* Indexes we cannot trust: do not write over the daemon's data. */
            pvcons_dropped += len - done;
            return done;
        }
        if (used == XENCONS_OUT_SIZE) {
            if (daemon_gone && cons == gone_cons) {
                pvcons_dropped += len - done;
                return done;
            }
            pvcons_stalls++;
            notify();
            struct out_space w = { .cons = cons };
            if (!wait_kicking(out_has_space, &w, pvcons_stall_ns)) {
                daemon_gone = true;
                gone_cons = cons;
                pvcons_dropped += len - done;
                return done;
            }
            daemon_gone = false;
            note_consumer();
            continue;
        }
        uint32_t n = XENCONS_OUT_SIZE - used;
        if (n > len - done)
            n = (uint32_t)(len - done);
        for (uint32_t i = 0; i < n; i++)
            r->out[(prod + i) & (XENCONS_OUT_SIZE - 1)] = s[done + i];
        wmb();
        r->out_prod = prod + n;
        done += n;
        pvcons_bytes_out += n;
        notify();
    }
    note_consumer();
    return done;
}

uint32_t pvcons_input_avail(void)
{
    volatile struct xencons_interface *r = pvcons_ring;
    if (!r)
        return 0;
    uint32_t avail = r->in_prod - r->in_cons;
    return avail > XENCONS_IN_SIZE ? 0 : avail;
}

size_t pvcons_read(char *buf, size_t len)
{
    volatile struct xencons_interface *r = pvcons_ring;
    if (!r)
        return 0;
    uint32_t cons = r->in_cons;
    uint32_t prod = r->in_prod;
    rmb();                              /* the bytes after the index */
    uint32_t avail = prod - cons;
    if (avail > XENCONS_IN_SIZE)
        return 0;
    if (avail > len)
        avail = (uint32_t)len;
    for (uint32_t i = 0; i < avail; i++)
        buf[i] = r->in[(cons + i) & (XENCONS_IN_SIZE - 1)];
    if (avail) {
        mb();                           /* copied before the slots are released */
        r->in_cons = cons + avail;
        pvcons_bytes_in += avail;
        notify();
    }
    return avail;
}

static bool input_ready(void *arg)
{
    (void)arg;
    return pvcons_input_avail() != 0;
}

long pvcons_read_line(char *buf, size_t len, uint64_t timeout_ns)
{
    size_t n = 0;
    uint64_t start = xen_now();
    uint64_t left = timeout_ns;

    if (!pvcons_ring)
        return -XEN_ENODEV;
    for (;;) {
        char c;
        while (pvcons_read(&c, 1) == 1) {
            if (c == '\n' && skip_lf) {
                skip_lf = false;
                continue;
            }
            skip_lf = false;
            if (c == '\r' || c == '\n') {
                skip_lf = c == '\r';
                if (len)
                    buf[n < len ? n : len - 1] = '\0';
                return (long)(n < len ? n : len - 1);
            }
            if (n + 1 < len)
                buf[n++] = c;
        }
        if (start) {
            uint64_t spent = xen_now() - start;
            if (spent >= timeout_ns)
                break;
            left = timeout_ns - spent;
        } else if (!left) {
            break;
        }
        if (!evtchn_wait_port(pvcons_port, input_ready, NULL, left) && !start)
            left = 0;
    }
    if (len)
        buf[n < len ? n : len - 1] = '\0';
    return -XEN_ETIME;
}

static bool out_empty(void *arg)
{
    (void)arg;
    return pvcons_ring->out_cons == pvcons_ring->out_prod;
}

bool pvcons_flush(uint64_t timeout_ns)
{
    if (!pvcons_ring)
        return true;
    if (out_empty(NULL))
        return true;
    notify();
    bool ok = wait_kicking(out_empty, NULL, timeout_ns);
    note_consumer();
    return ok;
}
