/*
 * Hypercalls.  Three ways in:
 *   - through the hypercall page (what Xen guests normally do): call page + nr*32;
 *   - directly with VMCALL (Intel encoding, 0F 01 C1);
 *   - directly with VMMCALL (AMD encoding, 0F 01 D9).
 * 64-bit convention: RAX = nr, args in RDI, RSI, RDX, R10, R8; result in RAX.
 * 32-bit convention: EAX = nr, args in EBX, ECX, EDX, ESI, EDI; result in EAX.
 * Results are negative Xen errno values or >= 0.  Without Xen (no hypercall
 * page) the page-based calls return -XEN_ENOSYS instead of crashing.
 */
#ifndef SDK_HYPERCALL_H
#define SDK_HYPERCALL_H

#include <stdint.h>
#include <stdbool.h>
#include "xen_abi.h"

extern uint8_t hypercall_page[4096];
extern bool hypercall_page_ready;

/* The page is in the image, so code running at CPL3 can use these too. */
static inline long hypercall_page_call(unsigned long nr, unsigned long a1,
                                       unsigned long a2, unsigned long a3,
                                       unsigned long a4, unsigned long a5)
{
    long ret;
    if (!hypercall_page_ready || nr >= HYPERCALL_PAGE_STUBS)
        return -XEN_ENOSYS;
    void *stub = hypercall_page + nr * HYPERCALL_STUB_SIZE;
#ifdef __x86_64__
    register unsigned long r10 asm("r10") = a4;
    register unsigned long r8 asm("r8") = a5;
    /* Debug hypervisors scribble over argument registers: declare them all. */
    asm volatile("call *%[stub]"
                 : "=a"(ret), "+D"(a1), "+S"(a2), "+d"(a3), "+r"(r10), "+r"(r8)
                 : [stub] "r"(stub)
                 : "memory", "r9", "cc");
#else
    asm volatile("call *%[stub]"
                 : "=a"(ret), "+b"(a1), "+c"(a2), "+d"(a3), "+S"(a4), "+D"(a5)
                 : [stub] "m"(stub)
                 : "memory", "cc");
#endif
    return ret;
}

static inline long hypercall_vmcall(unsigned long nr, unsigned long a1,
                                    unsigned long a2, unsigned long a3,
                                    unsigned long a4, unsigned long a5)
{
    long ret;
#ifdef __x86_64__
    register unsigned long r10 asm("r10") = a4;
    register unsigned long r8 asm("r8") = a5;
    asm volatile(".byte 0x0f, 0x01, 0xc1"
                 : "=a"(ret), "+D"(a1), "+S"(a2), "+d"(a3), "+r"(r10), "+r"(r8)
                 : "a"(nr) : "memory", "r9", "cc");
#else
    asm volatile(".byte 0x0f, 0x01, 0xc1"
                 : "=a"(ret), "+b"(a1), "+c"(a2), "+d"(a3), "+S"(a4), "+D"(a5)
                 : "a"(nr) : "memory", "cc");
#endif
    return ret;
}

static inline long hypercall_vmmcall(unsigned long nr, unsigned long a1,
                                     unsigned long a2, unsigned long a3,
                                     unsigned long a4, unsigned long a5)
{
    long ret;
#ifdef __x86_64__
    register unsigned long r10 asm("r10") = a4;
    register unsigned long r8 asm("r8") = a5;
    asm volatile(".byte 0x0f, 0x01, 0xd9"
                 : "=a"(ret), "+D"(a1), "+S"(a2), "+d"(a3), "+r"(r10), "+r"(r8)
                 : "a"(nr) : "memory", "r9", "cc");
#else
    asm volatile(".byte 0x0f, 0x01, 0xd9"
                 : "=a"(ret), "+b"(a1), "+c"(a2), "+d"(a3), "+S"(a4), "+D"(a5)
                 : "a"(nr) : "memory", "cc");
#endif
    return ret;
}

#define _HC_ARG(x) ((unsigned long)(x))
#define hypercall0(nr) hypercall_page_call(nr, 0, 0, 0, 0, 0)
#define hypercall1(nr, a) hypercall_page_call(nr, _HC_ARG(a), 0, 0, 0, 0)
#define hypercall2(nr, a, b) \
    hypercall_page_call(nr, _HC_ARG(a), _HC_ARG(b), 0, 0, 0)
#define hypercall3(nr, a, b, c) \
    hypercall_page_call(nr, _HC_ARG(a), _HC_ARG(b), _HC_ARG(c), 0, 0)
#define hypercall4(nr, a, b, c, d) \
    hypercall_page_call(nr, _HC_ARG(a), _HC_ARG(b), _HC_ARG(c), _HC_ARG(d), 0)
#define hypercall5(nr, a, b, c, d, e) \
    hypercall_page_call(nr, _HC_ARG(a), _HC_ARG(b), _HC_ARG(c), _HC_ARG(d), \
                        _HC_ARG(e))

static inline long HYPERVISOR_console_io(int cmd, unsigned int count, void *buf)
{
    return hypercall3(__HYPERVISOR_console_io, cmd, count, buf);
}

static inline long HYPERVISOR_xen_version(int cmd, void *arg)
{
    return hypercall2(__HYPERVISOR_xen_version, cmd, arg);
}

static inline long HYPERVISOR_sched_op(int cmd, void *arg)
{
    return hypercall2(__HYPERVISOR_sched_op, cmd, arg);
}

static inline long HYPERVISOR_memory_op(unsigned int cmd, void *arg)
{
    return hypercall2(__HYPERVISOR_memory_op, cmd, arg);
}

static inline long HYPERVISOR_hvm_op(int cmd, void *arg)
{
    return hypercall2(__HYPERVISOR_hvm_op, cmd, arg);
}

static inline long HYPERVISOR_vcpu_op(int cmd, unsigned int vcpu, void *arg)
{
    return hypercall3(__HYPERVISOR_vcpu_op, cmd, vcpu, arg);
}

static inline long HYPERVISOR_event_channel_op(int cmd, void *arg)
{
    return hypercall2(__HYPERVISOR_event_channel_op, cmd, arg);
}

static inline long HYPERVISOR_grant_table_op(unsigned int cmd, void *uop,
                                             unsigned int count)
{
    return hypercall3(__HYPERVISOR_grant_table_op, cmd, uop, count);
}

/* Absolute system time in ns; 0 cancels.  The 32-bit ABI splits it in two. */
static inline long HYPERVISOR_set_timer_op(uint64_t timeout)
{
#ifdef __x86_64__
    return hypercall1(__HYPERVISOR_set_timer_op, timeout);
#else
    return hypercall2(__HYPERVISOR_set_timer_op, (uint32_t)timeout,
                      (uint32_t)(timeout >> 32));
#endif
}

/* Helpers built on the wrappers. */
long xen_get_hvm_param(uint32_t index, uint64_t *value);

#endif
