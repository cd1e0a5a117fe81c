/*
 * Event channels (2-level ABI) and upcalls.
 *
 * evtchn_init():
 *   1. maps shared_info into a page of the image (XENMEM_add_to_physmap,
 *      XENMAPSPACE_shared_info, idx 0);
 *   2. installs evtchn_do_upcall() for EVTCHN_UPCALL_VECTOR in the IDT;
 *   3. sets HVM_PARAM_CALLBACK_IRQ = (2 << 56) | vector (HVMIRQ callback
 *      vector: injected into every vCPU while its vcpu_info.evtchn_upcall_pending
 *      is set and RFLAGS.IF = 1; no APIC, so no EOI).
 * Interrupts stay disabled: the caller enables them (local_irq_enable(),
 * safe_halt(), sdk_wait()).
 *
 * The upcall handler (on the interrupted vCPU): clears upcall_pending,
 * xchg's pending_sel to 0, and for each selected word takes
 * pending & ~mask & (ports this vCPU owns), clears each bit with lock btr and
 * calls the port's handler.  It loops while upcall_pending is set again.
 * Ports belong to vCPU 0 unless bound to another vCPU with the wrappers
 * below (bind_ipi / bind_virq / bind_vcpu), which keeps one vCPU from taking
 * another's events when they share a pending word.
 *
 * Wrappers return the port (> 0) or 0 on success, or a negative Xen errno.
 */
#ifndef SDK_EVENTS_H
#define SDK_EVENTS_H

#include <stdint.h>
#include <stdbool.h>
#include "xen_abi.h"

#define EVTCHN_UPCALL_VECTOR  0xf3

typedef void (*evtchn_handler_fn)(evtchn_port_t port, void *arg);

extern volatile struct shared_info *shared_info;   /* NULL until mapped */
extern bool evtchn_ready;             /* upcalls configured */
extern unsigned long shared_info_gfn;

/* Per-port statistics kept by the upcall handler. */
extern volatile uint32_t evtchn_count[EVTCHN_2L_NR_PORTS];
extern volatile uint32_t evtchn_last_port;     /* last port dispatched */
extern volatile uint32_t evtchn_last_cpu;      /* smp_id() that dispatched it */
extern volatile uint32_t evtchn_last_vcpu_seen[EVTCHN_2L_NR_PORTS]; /* cpu per port */
extern volatile uint32_t evtchn_unhandled;     /* events on ports with no handler */

/* Maps shared_info (idempotent). 0 or -errno. */
long xen_map_shared_info(void);
long evtchn_init(void);
/* Alternative to HVM_PARAM_CALLBACK_IRQ: HVMOP_set_evtchn_upcall_vector for one
 * vCPU.  On real Xen this vector goes through the local APIC and needs an EOI,
 * which this SDK does not write (there is no APIC here). */
long evtchn_set_upcall_vector(unsigned int vcpu, uint8_t vector);
/* The handler behind the vector (callable directly, e.g. after a poll). */
void evtchn_do_upcall(void);

void evtchn_set_handler(evtchn_port_t port, evtchn_handler_fn fn, void *arg);
/* Makes `vcpu` (a cpus[] slot) the one that handles `port`'s events. */
void evtchn_set_owner(evtchn_port_t port, unsigned int vcpu);

long evtchn_alloc_unbound(domid_t remote_dom);
long evtchn_bind_interdomain(domid_t remote_dom, evtchn_port_t remote_port);
long evtchn_bind_virq(uint32_t virq, unsigned int vcpu);
long evtchn_bind_ipi(unsigned int vcpu);
long evtchn_bind_vcpu(evtchn_port_t port, unsigned int vcpu);
long evtchn_close(evtchn_port_t port);
long evtchn_send(evtchn_port_t port);
long evtchn_unmask(evtchn_port_t port);        /* EVTCHNOP_unmask */
long evtchn_get_status(domid_t dom, evtchn_port_t port, struct evtchn_status *st);
/* Our domain id: alloc_unbound(self, self) + status, then close. -errno on error. */
long xen_own_domid(void);

/* Direct access to the shared bitmaps (lock-prefixed). */
void evtchn_mask(evtchn_port_t port);
void evtchn_unmask_local(evtchn_port_t port);  /* clears the mask bit only */
bool evtchn_is_pending(evtchn_port_t port);
bool evtchn_is_masked(evtchn_port_t port);
void evtchn_clear_pending(evtchn_port_t port);

const char *evtchn_status_name(uint32_t status);

#endif
