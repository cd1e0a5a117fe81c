/*
 * The PV console: the xencons_interface page at HVM_PARAM_CONSOLE_PFN and the
 * event channel in HVM_PARAM_CONSOLE_EVTCHN (already bound on the Dom0 side;
 * we only send on it and poll it).
 *
 *   out (2048 bytes): guest -> console daemon.  We copy bytes in at
 *       out_prod & 2047, write barrier, advance out_prod, notify.  When the
 *       ring is full we notify and wait (evtchn_wait_port) for the daemon to
 *       advance out_cons; a stall longer than pvcons_stall_ns without any
 *       progress drops the rest of that write (counted in pvcons_dropped).
 *   in (1024 bytes): console daemon -> guest (keyboard input).  We copy
 *       bytes out at in_cons & 1023, advance in_cons, notify (the daemon may
 *       be waiting for space).
 *
 * The SDK console (console.c) uses this ring when `console=pv` is on the
 * command line, or when Xen refuses console_io.
 */
#ifndef SDK_PVCONS_H
#define SDK_PVCONS_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include "xen_abi.h"

extern volatile struct xencons_interface *pvcons_ring;   /* NULL until pvcons_init() */
extern evtchn_port_t pvcons_port;
extern uint64_t pvcons_pfn;
extern uint64_t pvcons_stall_ns;          /* default 5 s */

/* Statistics since pvcons_init(). */
extern uint64_t pvcons_bytes_out;         /* bytes put into `out` */
extern uint64_t pvcons_bytes_in;          /* bytes taken from `in` */
extern uint64_t pvcons_dropped;           /* bytes dropped after a stall */
extern uint32_t pvcons_notifies;          /* EVTCHNOP_send calls */
extern uint32_t pvcons_stalls;            /* times `out` was full */
extern bool pvcons_consumer_seen;         /* out_cons moved at least once */

/* Reads the two HVM params and remembers the ring (idempotent).  0, or
 * -XEN_ENODEV when CONSOLE_PFN is 0, -XEN_ERANGE when the page is beyond the
 * identity map, or the hypercall error. */
long pvcons_init(void);
static inline bool pvcons_ready(void)
{
    return pvcons_ring != NULL;
}
/* Writes all of s (waiting for space); returns the bytes written, which is
 * less than len only when a stall timed out. */
size_t pvcons_write(const char *s, size_t len);
/* Bytes waiting in `in`. */
uint32_t pvcons_input_avail(void);
/* Non-blocking: copies up to len bytes from `in`, returns the count. */
size_t pvcons_read(char *buf, size_t len);
/* Reads one line (ended by '\n' or '\r', not stored; a '\n' right after a
 * '\r' is skipped on the next call) into buf (NUL-terminated, at most len-1
 * characters kept, the rest of a long line is discarded).  Returns the
 * length, or -XEN_ETIME when no complete line arrived in timeout_ns. */
long pvcons_read_line(char *buf, size_t len, uint64_t timeout_ns);
/* Waits until the daemon has consumed all of `out` (out_cons == out_prod). */
bool pvcons_flush(uint64_t timeout_ns);

#endif
