/* XenStore client over the shared ring page (see xenstore.h). */
#include "sdk.h"

#define HDR_SIZE   sizeof(struct xsd_sockmsg)
#define RING_MASK  (XENSTORE_RING_SIZE - 1)

volatile struct xenstore_domain_interface *xs_intf;
evtchn_port_t xs_port;
uint64_t xs_pfn;
uint64_t xs_timeout_ns = 10 * NS_PER_SEC;
struct xs_stats xs_stats;

static uint32_t next_req_id = 1;
static bool broken;                 /* the byte stream lost its framing */

/* The message being received: header, then payload (+ room for a NUL). */
static union {
    struct xsd_sockmsg hdr;
    uint8_t bytes[HDR_SIZE + XENSTORE_PAYLOAD_MAX + 1];
} rx;
static size_t rx_have;

/* Watch events waiting for xs_read_watch(): raw "path\0token\0" payloads. */
static struct {
    uint16_t len;
    char data[XENSTORE_PAYLOAD_MAX + 1];
} watch_queue[XS_WATCH_QUEUE];
static unsigned int wq_head, wq_count;

static const struct {
    const char *name;
    int num;
} error_names[] = {
    { "EINVAL", XEN_EINVAL },   { "EACCES", XEN_EACCES },     { "EEXIST", XEN_EEXIST },
    { "EISDIR", XEN_EISDIR },   { "ENOENT", XEN_ENOENT },     { "ENOMEM", XEN_ENOMEM },
    { "ENOSPC", XEN_ENOSPC },   { "EIO", XEN_EIO },           { "ENOTEMPTY", XEN_ENOTEMPTY },
    { "ENOSYS", XEN_ENOSYS },   { "EROFS", XEN_EROFS },       { "EBUSY", XEN_EBUSY },
    { "EAGAIN", XEN_EAGAIN },   { "EISCONN", XEN_EISCONN },   { "E2BIG", XEN_E2BIG },
    { "EPERM", XEN_EPERM },
};

int xs_errno_from_name(const char *name)
{
    for (unsigned int i = 0; i < ARRAY_SIZE(error_names); i++)
        if (!strcmp(name, error_names[i].name))
            return error_names[i].num;
    return 0;
}

const char *xs_type_name(uint32_t type)
{
    static const char *const names[] = {
        "CONTROL", "DIRECTORY", "READ", "GET_PERMS", "WATCH", "UNWATCH",
        "TRANSACTION_START", "TRANSACTION_END", "INTRODUCE", "RELEASE",
        "GET_DOMAIN_PATH", "WRITE", "MKDIR", "RM", "SET_PERMS", "WATCH_EVENT",
        "ERROR", "IS_DOMAIN_INTRODUCED", "RESUME", "SET_TARGET", "RESTRICT",
        "RESET_WATCHES", "DIRECTORY_PART",
    };
    return type < ARRAY_SIZE(names) ? names[type] : "?";
}

static void store_event(evtchn_port_t port, void *arg)
{
    (void)port;
    (void)arg;
    xs_stats.port_events++;
}

long xs_init(void)
{
    uint64_t pfn, port;
    long rc;

    if (xs_intf)
        return 0;
    if (!xen_present || !hypercall_page_ready)
        return -XEN_ENOSYS;
    if ((rc = xen_get_hvm_param(HVM_PARAM_STORE_PFN, &pfn)) < 0)
        return rc;
    if (!pfn)
        return -XEN_ENODEV;
    if ((rc = xen_get_hvm_param(HVM_PARAM_STORE_EVTCHN, &port)) < 0)
        return rc;
    if (pfn >= (1ULL << 20))            /* beyond the SDK's identity map */
        return -XEN_ERANGE;
    /* Waiting needs the pending bitmap and the clock; upcalls are set up
     * too, for guests that also want to halt with sdk_wait(). */
    if ((rc = evtchn_init()) < 0 && (rc = xen_map_shared_info()) < 0)
        return rc;
    xs_pfn = pfn;
    xs_port = (evtchn_port_t)port;
    evtchn_set_handler(xs_port, store_event, NULL);
    xs_intf = (volatile struct xenstore_domain_interface *)(unsigned long)(pfn << 12);
    return 0;
}

static void notify(void)
{
    xs_stats.notifies++;
    evtchn_send(xs_port);
}

static uint64_t time_left(uint64_t deadline)
{
    uint64_t now = xen_now();
    return now >= deadline ? 0 : deadline - now;
}

/* ---- sending ---- */

static bool req_has_space(void *arg)
{
    (void)arg;
    return xs_intf->req_prod - xs_intf->req_cons < XENSTORE_RING_SIZE;
}

/* Copies len bytes into `req`, waiting for space; *sent counts the bytes
 * that went in (so the caller knows whether the stream is now torn). */
static long ring_put(const void *data, size_t len, uint64_t deadline, size_t *sent)
{
    volatile struct xenstore_domain_interface *r = xs_intf;
    const uint8_t *p = data;

    while (len) {
        uint32_t cons = r->req_cons;
        uint32_t prod = r->req_prod;
        rmb();
        uint32_t used = prod - cons;
        if (used > XENSTORE_RING_SIZE)
            return -XEN_EIO;
        if (used == XENSTORE_RING_SIZE) {
            notify();
            if (!evtchn_wait_port(xs_port, req_has_space, NULL, time_left(deadline)))
                return -XEN_ETIME;
            continue;
        }
        uint32_t n = XENSTORE_RING_SIZE - used;
        if (n > len)
            n = (uint32_t)len;
        for (uint32_t i = 0; i < n; i++)
            r->req[(prod + i) & RING_MASK] = (char)p[i];
        wmb();                          /* bytes before the index */
        r->req_prod = prod + n;
        p += n;
        len -= n;
        *sent += n;
    }
    return 0;
}

static long send_msg(uint32_t type, uint32_t req_id, uint32_t tx,
                     const void *p1, size_t l1, const void *p2, size_t l2,
                     uint64_t deadline)
{
    struct xsd_sockmsg h = { .type = type, .req_id = req_id, .tx_id = tx,
                             .len = (uint32_t)(l1 + l2) };
    size_t sent = 0;
    long rc;

    if (l1 + l2 > XENSTORE_PAYLOAD_MAX)
        return -XEN_E2BIG;
    rc = ring_put(&h, sizeof(h), deadline, &sent);
    if (rc == 0 && l1)
        rc = ring_put(p1, l1, deadline, &sent);
    if (rc == 0 && l2)
        rc = ring_put(p2, l2, deadline, &sent);
    if (sent)
        notify();
    if (rc < 0 && sent) {
        broken = true;                  /* half a message is in the ring */
        return -XEN_EIO;
    }
    return rc;
}

/* ---- receiving ---- */

/* Takes what is available from `rsp`; true when rx holds a whole message. */
static bool rx_pull(void)
{
    volatile struct xenstore_domain_interface *r = xs_intf;
    bool consumed = false, whole = false;

    while (!broken) {
        size_t want = HDR_SIZE;
        if (rx_have >= HDR_SIZE) {
            if (rx.hdr.len > XENSTORE_PAYLOAD_MAX) {
                broken = true;
                break;
            }
            want = HDR_SIZE + rx.hdr.len;
        }
        if (rx_have == want && rx_have >= HDR_SIZE) {
            whole = true;
            break;
        }
        uint32_t cons = r->rsp_cons;
        uint32_t prod = r->rsp_prod;
        rmb();                          /* index before the bytes */
        uint32_t avail = prod - cons;
        if (avail > XENSTORE_RING_SIZE) {
            broken = true;
            break;
        }
        if (!avail)
            break;
        uint32_t n = (uint32_t)(want - rx_have);
        if (n > avail)
            n = avail;
        for (uint32_t i = 0; i < n; i++)
            rx.bytes[rx_have + i] = (uint8_t)r->rsp[(cons + i) & RING_MASK];
        mb();                           /* copied before the space is released */
        r->rsp_cons = cons + n;
        rx_have += n;
        consumed = true;
    }
    if (consumed)
        notify();
    return whole;
}

static bool rx_ready(void *arg)
{
    (void)arg;
    return rx_pull() || broken;
}

static void queue_watch_event(void)
{
    xs_stats.watch_events++;
    if (wq_count == XS_WATCH_QUEUE) {  /* full: the oldest goes */
        wq_head = (wq_head + 1) % XS_WATCH_QUEUE;
        wq_count--;
        xs_stats.watch_dropped++;
    }
    unsigned int slot = (wq_head + wq_count) % XS_WATCH_QUEUE;
    watch_queue[slot].len = (uint16_t)rx.hdr.len;
    memcpy(watch_queue[slot].data, rx.bytes + HDR_SIZE, rx.hdr.len);
    watch_queue[slot].data[rx.hdr.len] = '\0';
    wq_count++;
}

/* Receives messages until one that is not a watch event or stale reply:
 * 1 = rx holds the reply to req_id (req_id 0: a watch event was queued),
 * -XEN_ETIME, -XEN_EIO. */
static long receive(uint32_t req_id, uint64_t deadline)
{
    for (;;) {
        if (broken)
            return -XEN_EIO;
        if (!rx_pull()) {
            uint64_t left = time_left(deadline);
            if (!left || !evtchn_wait_port(xs_port, rx_ready, NULL, left)) {
                if (!rx_pull())
                    return broken ? -XEN_EIO : -XEN_ETIME;
            }
            if (broken)
                return -XEN_EIO;
            if (rx_have < HDR_SIZE || rx_have != HDR_SIZE + rx.hdr.len)
                continue;
        }
        rx.bytes[rx_have] = 0;
        if (rx.hdr.type == XS_WATCH_EVENT) {
            queue_watch_event();
            rx_have = 0;
            if (req_id == 0)
                return 1;
            continue;
        }
        if (req_id && rx.hdr.req_id == req_id)
            return 1;
        xs_stats.stale++;
        rx_have = 0;
    }
}

long xs_raw(uint32_t type, uint32_t tx, const void *payload, size_t len,
            char *reply, size_t reply_max, size_t *reply_len, uint32_t *reply_type)
{
    return xs_raw2(type, tx, payload, len, NULL, 0, reply, reply_max, reply_len, reply_type);
}

long xs_raw2(uint32_t type, uint32_t tx, const void *p1, size_t l1, const void *p2, size_t l2,
             char *reply, size_t reply_max, size_t *reply_len, uint32_t *reply_type)
{
    long rc;

    if (!xs_intf)
        return -XEN_ENODEV;
    if (broken)
        return -XEN_EIO;
    uint64_t deadline = xen_now() + xs_timeout_ns;
    uint32_t id = next_req_id++;
    if (!next_req_id)
        next_req_id = 1;
    rc = send_msg(type, id, tx, p1, l1, p2, l2, deadline);
    if (rc < 0) {
        if (rc == -XEN_ETIME)
            xs_stats.timeouts++;
        return rc;
    }
    xs_stats.requests++;
    rc = receive(id, deadline);
    if (rc < 0) {
        if (rc == -XEN_ETIME)
            xs_stats.timeouts++;
        return rc;
    }
    xs_stats.replies++;

    uint32_t rtype = rx.hdr.type;
    uint32_t rlen = rx.hdr.len;
    const char *data = (const char *)rx.bytes + HDR_SIZE;
    if (reply_type)
        *reply_type = rtype;
    if (reply_len)
        *reply_len = rlen;
    rc = 0;
    if (rtype == XS_ERROR) {
        xs_stats.errors++;
        int e = xs_errno_from_name(data);
        rc = e ? -e : -XEN_EIO;
    } else if (rtype != type) {
        rc = -XEN_EIO;                  /* not the answer to what we asked */
    }
    if (reply && reply_max) {
        size_t n = rlen < reply_max ? rlen : reply_max - 1;
        memcpy(reply, data, n);
        reply[n] = '\0';
        if (rc == 0 && rlen >= reply_max)
            rc = -XEN_ERANGE;
    }
    rx_have = 0;
    return rc;
}

/* A request whose payload is path\0 followed by `extra` (extra_len bytes). */
static long path_request(uint32_t type, uint32_t tx, const char *path, const void *extra,
                         size_t extra_len, char *reply, size_t reply_max, size_t *reply_len)
{
    return xs_raw2(type, tx, path, strlen(path) + 1, extra, extra_len, reply, reply_max,
                   reply_len, NULL);
}

long xs_read(uint32_t tx, const char *path, char *buf, size_t len)
{
    size_t n = 0;
    long rc = path_request(XS_READ, tx, path, NULL, 0, buf, len, &n);
    return rc < 0 ? rc : (long)n;
}

long xs_write(uint32_t tx, const char *path, const void *value, size_t len)
{
    return path_request(XS_WRITE, tx, path, value, len, NULL, 0, NULL);
}

long xs_write_str(uint32_t tx, const char *path, const char *value)
{
    return xs_write(tx, path, value, strlen(value));
}

long xs_mkdir(uint32_t tx, const char *path)
{
    return path_request(XS_MKDIR, tx, path, NULL, 0, NULL, 0, NULL);
}

long xs_rm(uint32_t tx, const char *path)
{
    return path_request(XS_RM, tx, path, NULL, 0, NULL, 0, NULL);
}

/* Counts the NUL-terminated strings in a reply of n bytes. */
static long count_strings(const char *buf, size_t n)
{
    long count = 0;
    for (size_t i = 0; i < n; i++)
        if (buf[i] == '\0')
            count++;
    return count;
}

long xs_directory(uint32_t tx, const char *path, char *buf, size_t len)
{
    size_t n = 0;
    long rc = path_request(XS_DIRECTORY, tx, path, NULL, 0, buf, len, &n);
    return rc < 0 ? rc : count_strings(buf, n);
}

bool xs_dir_contains(const char *buf, long count, const char *name)
{
    for (long i = 0; i < count; i++, buf = xs_dir_next(buf))
        if (!strcmp(buf, name))
            return true;
    return false;
}

long xs_get_perms(uint32_t tx, const char *path, struct xs_perm *out, int max)
{
    static char buf[XENSTORE_PAYLOAD_MAX + 1];
    size_t n = 0;
    long rc = path_request(XS_GET_PERMS, tx, path, NULL, 0, buf, sizeof(buf), &n);
    if (rc < 0)
        return rc;
    long count = 0;
    for (const char *p = buf; p < buf + n; p = xs_dir_next(p), count++) {
        if (count < max) {
            out[count].perm = p[0];
            out[count].domid = (uint32_t)strtoull_simple(p[0] ? p + 1 : p, NULL);
        }
    }
    return count;
}

long xs_set_perms(uint32_t tx, const char *path, const struct xs_perm *perms, int n)
{
    char buf[512];
    size_t len = 0;
    for (int i = 0; i < n; i++) {
        int w = snprintf(buf + len, sizeof(buf) - len, "%c%u", perms[i].perm,
                         (unsigned int)perms[i].domid);
        if (w < 0 || len + (size_t)w + 1 >= sizeof(buf))
            return -XEN_E2BIG;
        len += (size_t)w + 1;           /* keep the NUL */
    }
    return path_request(XS_SET_PERMS, tx, path, buf, len, NULL, 0, NULL);
}

long xs_watch(const char *path, const char *token)
{
    return path_request(XS_WATCH, XBT_NULL, path, token, strlen(token) + 1, NULL, 0, NULL);
}

long xs_unwatch(const char *path, const char *token)
{
    return path_request(XS_UNWATCH, XBT_NULL, path, token, strlen(token) + 1, NULL, 0, NULL);
}

static void copy_str(char *dst, size_t len, const char *src)
{
    if (!len)
        return;
    size_t n = strnlen(src, len - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
}

long xs_read_watch(char *path, size_t path_len, char *token, size_t token_len,
                   uint64_t timeout_ns)
{
    if (!xs_intf)
        return -XEN_ENODEV;
    if (!wq_count) {
        long rc = receive(0, xen_now() + timeout_ns);
        if (rc < 0)
            return rc;
    }
    const char *ev = watch_queue[wq_head].data;
    size_t len = watch_queue[wq_head].len;
    size_t plen = strnlen(ev, len);
    copy_str(path, path_len, ev);
    copy_str(token, token_len, plen < len ? ev + plen + 1 : "");
    wq_head = (wq_head + 1) % XS_WATCH_QUEUE;
    wq_count--;
    return 0;
}

unsigned int xs_watch_queued(void)
{
    return wq_count;
}

unsigned int xs_flush_watches(void)
{
    unsigned int n = wq_count;
    wq_head = wq_count = 0;
    return n;
}

long xs_transaction_start(uint32_t *tx)
{
    char buf[32];
    long rc = xs_raw(XS_TRANSACTION_START, XBT_NULL, "", 1, buf, sizeof(buf), NULL, NULL);
    if (rc < 0)
        return rc;
    *tx = (uint32_t)strtoull_simple(buf, NULL);
    return 0;
}

long xs_transaction_end(uint32_t tx, bool commit)
{
    return xs_raw(XS_TRANSACTION_END, tx, commit ? "T" : "F", 2, NULL, 0, NULL, NULL);
}

long xs_get_domain_path(uint32_t domid, char *buf, size_t len)
{
    char id[16];
    size_t n = 0;
    int l = snprintf(id, sizeof(id), "%u", (unsigned int)domid);
    long rc = xs_raw(XS_GET_DOMAIN_PATH, XBT_NULL, id, (size_t)l + 1, buf, len, &n, NULL);
    if (rc < 0)
        return rc;
    return (long)strnlen(buf, n);
}
