/*
 * Grant tables, version 1.
 *
 * gnttab_init(n) maps frames 0..n-1 of our own grant table into pages of the
 * image with XENMEM_add_to_physmap(XENMAPSPACE_grant_table, idx i).
 * Granting writes domid and frame first, then (after a barrier) the flags;
 * revoking swaps the flags to 0 with cmpxchg and fails while Xen has the
 * entry in use (GTF_reading / GTF_writing).
 *
 * Foreign pages are mapped with GNTTABOP_map_grant_ref(GNTMAP_host_map):
 * host_addr is the guest-physical address where the page appears;
 * sdk_free_gpa() gives addresses above RAM (below 4 GiB, so the SDK's
 * identity map reaches them).
 */
#ifndef SDK_GRANT_H
#define SDK_GRANT_H

#include <stdint.h>
#include <stdbool.h>
#include "xen_abi.h"

#define GNTTAB_SDK_MAX_FRAMES 4

extern volatile struct grant_entry_v1 *gnttab;   /* NULL until mapped */
extern unsigned int gnttab_nr_frames;

long gnttab_init(unsigned int nr_frames);
unsigned int gnttab_capacity(void);            /* entries mapped */
void gnttab_grant(grant_ref_t ref, domid_t dom, unsigned long gfn, bool readonly);
/* 0 when revoked; -XEN_EBUSY while in use (*flags_seen gets the flags). */
long gnttab_revoke(grant_ref_t ref, uint16_t *flags_seen);
uint16_t gnttab_flags(grant_ref_t ref);

/* One-entry wrappers: return the hypercall's rc; the GNTST_* status is in
 * *status (and the op). */
long gnttab_map(domid_t dom, grant_ref_t ref, uint64_t gpa, uint32_t flags,
                grant_handle_t *handle, int16_t *status);
long gnttab_unmap(uint64_t gpa, grant_handle_t handle, int16_t *status);
long gnttab_copy_one(struct gnttab_copy *op);
long gnttab_query_size(domid_t dom, uint32_t *nr, uint32_t *max, int16_t *status);
long gnttab_get_version(domid_t dom, uint32_t *version);
long gnttab_set_version(uint32_t version);

const char *gntst_name(int st);

/* A page-aligned guest-physical range of `pages` above RAM and clear of every
 * memory-map entry, below 4 GiB; 0 if none.  Successive calls give fresh ranges. */
uint64_t sdk_free_gpa(unsigned long pages);
/* Highest end of RAM in the memory map (0 if unknown). */
uint64_t sdk_ram_end(void);

#endif
