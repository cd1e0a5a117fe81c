/* Common exception dispatch: custom handlers, probes, exception table. */
#include "sdk.h"

volatile struct fault_record last_fault = { .vector = NO_FAULT };

static trap_handler_fn handlers[256];
static const void *volatile probe_exec_target;

/* From the arch assembly: calls target; returns 0, or 1 via the recover path. */
extern int probe_exec_call(const void *target);
extern char probe_exec_recover[];

extern const struct extable_entry __extable_start[], __extable_end[];

static const char *const names[32] = {
    "#DE divide error", "#DB debug", "NMI", "#BP breakpoint", "#OF overflow",
    "#BR bound range", "#UD invalid opcode", "#NM device not available",
    "#DF double fault", "coprocessor segment overrun", "#TS invalid TSS",
    "#NP segment not present", "#SS stack fault", "#GP general protection",
    "#PF page fault", "vector 15", "#MF x87 error", "#AC alignment check",
    "#MC machine check", "#XM SIMD error", "#VE virtualization", "#CP control protection",
    "vector 22", "vector 23", "vector 24", "vector 25", "vector 26", "vector 27",
    "#HV hypervisor injection", "#VC VMM communication", "#SX security", "vector 31",
};

const char *exception_name(unsigned int vector)
{
    return vector < 32 ? names[vector] : "interrupt";
}

bool exception_has_error_code(unsigned int vector)
{
    switch (vector) {
    case X86_EXC_DF: case X86_EXC_TS: case X86_EXC_NP: case X86_EXC_SS:
    case X86_EXC_GP: case X86_EXC_PF: case X86_EXC_AC: case X86_EXC_CP:
    case 29: case 30:
        return true;
    default:
        return false;
    }
}

void trap_set_handler(unsigned int vector, trap_handler_fn fn)
{
    if (vector < ARRAY_SIZE(handlers))
        handlers[vector] = fn;
}

unsigned long trap_frame_sp(const struct trap_frame *f)
{
#ifdef __x86_64__
    return f->sp;
#else
    return (unsigned long)(&f->flags + 1);
#endif
}

unsigned long trap_frame_ss(const struct trap_frame *f)
{
#ifdef __x86_64__
    return f->ss;
#else
    (void)f;
    return read_ss();
#endif
}

void fault_reset(void)
{
    last_fault.vector = NO_FAULT;
    last_fault.count = 0;
    last_fault.error_code = 0;
    last_fault.cr2 = 0;
    last_fault.ip = 0;
    last_fault.cs = 0;
    last_fault.flags = 0;
    last_fault.sp = 0;
    last_fault.ss = 0;
    last_fault.handler_sp = 0;
}

void fault_record_from(const struct trap_frame *f)
{
    last_fault.vector = (uint32_t)f->vector;
    last_fault.error_code = f->error_code;
    last_fault.cr2 = read_cr2();
    last_fault.ip = f->ip;
    last_fault.cs = f->cs;
    last_fault.flags = f->flags;
    last_fault.sp = trap_frame_sp(f);
    last_fault.ss = trap_frame_ss(f);
    /* The CPU's frame starts at the saved instruction pointer. */
    last_fault.handler_sp = (unsigned long)&f->ip;
    last_fault.count++;
}

int probe_exec(const void *target)
{
    fault_reset();
    probe_exec_target = target;
    probe_exec_call(target);
    probe_exec_target = NULL;
    return last_fault.vector == NO_FAULT ? -1 : (int)last_fault.vector;
}

static const struct extable_entry *extable_find(unsigned long ip)
{
    for (const struct extable_entry *e = __extable_start; e < __extable_end; e++)
        if (e->fault == ip)
            return e;
    return NULL;
}

void trap_dispatch(struct trap_frame *f)
{
    unsigned int vec = (unsigned int)f->vector;

    if (vec < ARRAY_SIZE(handlers) && handlers[vec] && handlers[vec](f))
        return;

    if (probe_exec_target && f->ip == (unsigned long)probe_exec_target) {
        fault_record_from(f);
        f->ip = (unsigned long)probe_exec_recover;
        return;
    }

    const struct extable_entry *e = extable_find(f->ip);
    if (e) {
        fault_record_from(f);
        f->ip = e->fixup;
        return;
    }

    if (vec >= 32)
        test_fail("unexpected interrupt vector %u (%#x) ip=%#lx cs=%#lx",
                  vec, vec, f->ip, f->cs);
    test_fail("unexpected exception %s vec=%u err=%#lx rip=%#lx cr2=%#lx cs=%#lx sp=%#lx",
              exception_name(vec), vec, f->error_code, f->ip, read_cr2(), f->cs,
              trap_frame_sp(f));
}
