/*
 * Xen 4.10 layouts that neither the installed (4.17) headers nor the 4.10
 * reference sheet provide, declared here from the 4.10 interface facts so
 * that gcc, not hand arithmetic, decides every offset and size.
 */
#ifndef PYXEN_XEN410_ONLY_H
#define PYXEN_XEN410_ONLY_H

#include <stdint.h>

/* XEN_SYSCTL_physinfo, sysctl interface 0x10: capabilities sits before the
 * 64-bit counters, and max_mfn follows outstanding_pages. */
struct xen410_sysctl_physinfo {
    uint32_t threads_per_core;
    uint32_t cores_per_socket;
    uint32_t nr_cpus;
    uint32_t max_cpu_id;
    uint32_t nr_nodes;
    uint32_t max_node_id;
    uint32_t cpu_khz;
    uint32_t capabilities;
    uint64_t total_pages;
    uint64_t free_pages;
    uint64_t scrub_pages;
    uint64_t outstanding_pages;
    uint64_t max_mfn;
    uint32_t hw_cap[8];
};

/* XEN_SYSCTL_set_parameter (new in 4.10): a guest handle to the text. */
struct xen410_sysctl_set_parameter {
    uint64_t params;
    uint16_t size;
    uint16_t pad[3];
};

/* XEN_SYSCTL_scheduler_op as of 4.10: the credit arm is {tslice_ms,
 * ratelimit_us}, the credit2 arm {ratelimit_us}. */
struct xen410_sysctl_scheduler_op {
    uint32_t cpupool_id;
    uint32_t sched_id;
    uint32_t cmd;
    union {
        uint64_t arinc653_schedule;          /* XEN_GUEST_HANDLE_64 */
        struct {
            unsigned int tslice_ms;
            unsigned int ratelimit_us;
        } sched_credit;
        struct {
            unsigned int ratelimit_us;
        } sched_credit2;
    } u;
};

/* The BIOS memory-map entry returned by XENMEM_memory_map: packed. */
struct xen410_e820entry {
    uint64_t addr;
    uint64_t size;
    uint32_t type;
} __attribute__((packed));

#endif
