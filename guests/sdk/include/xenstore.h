/*
 * XenStore client over the shared ring (HVM_PARAM_STORE_PFN / STORE_EVTCHN).
 *
 * One request at a time: the request (xsd_sockmsg header + payload, at most
 * XENSTORE_PAYLOAD_MAX bytes) is copied into `req` as space allows (notify
 * after each chunk), then bytes are read from `rsp` until the reply with our
 * req_id is complete (notify after each consumed chunk).  Waiting blocks in
 * evtchn_wait_port() on the store port (SCHEDOP_poll, IF off), so it works
 * with or without interrupts enabled.  WATCH_EVENT messages that arrive
 * meanwhile are queued (XS_WATCH_QUEUE of them; older ones are dropped when
 * it is full) for xs_read_watch(); replies with a req_id we are not waiting
 * for (answers to requests that timed out) are discarded.
 *
 * All calls return >= 0 on success or a negative Xen errno: the name in an
 * XS_ERROR reply mapped to its number (EINVAL -> -XEN_EINVAL, ...; unknown
 * names -> -XEN_EIO), -XEN_ETIME when xenstored does not answer within
 * xs_timeout_ns, -XEN_ERANGE when the caller's buffer is too small (the reply
 * is consumed all the same), -XEN_E2BIG for a request over 4096 bytes (not
 * sent), -XEN_EIO for a broken stream (bad header, reply of the wrong type,
 * a half-written request).
 *
 * Paths are absolute ("/local/domain/5/name") or relative to our domain's
 * path ("name").  `tx` is a transaction id from xs_transaction_start() or
 * XBT_NULL (0).
 */
#ifndef SDK_XENSTORE_H
#define SDK_XENSTORE_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include "xen_abi.h"

#define XBT_NULL        0u
#define XS_WATCH_QUEUE  16

extern volatile struct xenstore_domain_interface *xs_intf;   /* NULL until xs_init() */
extern evtchn_port_t xs_port;
extern uint64_t xs_pfn;
extern uint64_t xs_timeout_ns;            /* per request, default 10 s */

struct xs_stats {
    uint32_t requests;          /* sent */
    uint32_t replies;           /* matched to a request */
    uint32_t errors;            /* XS_ERROR replies */
    uint32_t stale;             /* replies nobody waited for (discarded) */
    uint32_t watch_events;      /* WATCH_EVENT messages received */
    uint32_t watch_dropped;     /* dropped because the queue was full */
    uint32_t timeouts;
    uint32_t notifies;          /* EVTCHNOP_send on the store port */
    uint32_t port_events;       /* upcalls for the store port (IF=1 only) */
};
extern struct xs_stats xs_stats;

/* Finds the ring and port, maps shared_info and sets up upcalls
 * (evtchn_init()).  Idempotent.  0, -XEN_ENODEV when STORE_PFN is 0, or the
 * hypercall error. */
long xs_init(void);

/* Any request: payload of `len` bytes as is.  The reply payload goes to
 * reply (NUL added when it fits), its length to *reply_len and its type to
 * *reply_type (XS_ERROR included: the return value is then the errno).  Any
 * of the out pointers may be NULL. */
long xs_raw(uint32_t type, uint32_t tx, const void *payload, size_t len,
            char *reply, size_t reply_max, size_t *reply_len, uint32_t *reply_type);
/* The same with the payload in two pieces, sent back to back. */
long xs_raw2(uint32_t type, uint32_t tx, const void *p1, size_t l1, const void *p2, size_t l2,
             char *reply, size_t reply_max, size_t *reply_len, uint32_t *reply_type);

/* READ: the value (NUL-terminated in buf); returns its length. */
long xs_read(uint32_t tx, const char *path, char *buf, size_t len);
/* WRITE: `len` bytes of value (no NUL is sent). */
long xs_write(uint32_t tx, const char *path, const void *value, size_t len);
long xs_write_str(uint32_t tx, const char *path, const char *value);
long xs_mkdir(uint32_t tx, const char *path);
long xs_rm(uint32_t tx, const char *path);
/* DIRECTORY: the child names, each NUL-terminated, one after the other in
 * buf; returns how many.  xs_dir_next() steps from one name to the next. */
long xs_directory(uint32_t tx, const char *path, char *buf, size_t len);
static inline const char *xs_dir_next(const char *name)
{
    while (*name)
        name++;
    return name + 1;
}
/* True when the DIRECTORY result (count, buf) contains `name`. */
bool xs_dir_contains(const char *buf, long count, const char *name);

/* Permissions: perm is one of 'n' 'r' 'w' 'b'; entry 0 is the owner and the
 * default for everyone else. */
struct xs_perm {
    uint32_t domid;
    char perm;
};
/* GET_PERMS: fills up to max entries; returns the number in the reply. */
long xs_get_perms(uint32_t tx, const char *path, struct xs_perm *out, int max);
long xs_set_perms(uint32_t tx, const char *path, const struct xs_perm *perms, int n);

/* WATCH / UNWATCH (a watch fires once right after it is registered). */
long xs_watch(const char *path, const char *token);
long xs_unwatch(const char *path, const char *token);
/* Next watch event (queued or new): path and token copied (NUL-terminated).
 * 0, or -XEN_ETIME when none arrived within timeout_ns. */
long xs_read_watch(char *path, size_t path_len, char *token, size_t token_len,
                   uint64_t timeout_ns);
/* Events queued now; xs_flush_watches() drops them (returns how many). */
unsigned int xs_watch_queued(void);
unsigned int xs_flush_watches(void);

/* TRANSACTION_START: *tx gets the id.  TRANSACTION_END: commit or abort;
 * a commit that conflicts gives -XEN_EAGAIN (retry the whole transaction). */
long xs_transaction_start(uint32_t *tx);
long xs_transaction_end(uint32_t tx, bool commit);

/* GET_DOMAIN_PATH of `domid` ("/local/domain/<domid>"); returns its length. */
long xs_get_domain_path(uint32_t domid, char *buf, size_t len);

/* "EACCES" -> XEN_EACCES (positive), 0 when unknown; and back. */
int xs_errno_from_name(const char *name);
const char *xs_type_name(uint32_t type);

#endif
