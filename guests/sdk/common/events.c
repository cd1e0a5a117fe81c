/* Event channels: shared_info, the upcall handler, port bookkeeping, wrappers. */
#include "sdk.h"

#define NR_PORTS   EVTCHN_2L_NR_PORTS
#define WORD_BITS  EVTCHN_WORD_BITS

volatile struct shared_info *shared_info;
bool evtchn_ready;
unsigned long shared_info_gfn;

volatile uint32_t evtchn_count[NR_PORTS];
volatile uint32_t evtchn_last_port;
volatile uint32_t evtchn_last_cpu;
volatile uint32_t evtchn_last_vcpu_seen[NR_PORTS];
volatile uint32_t evtchn_unhandled;

static struct {
    evtchn_handler_fn fn;
    void *arg;
} handlers[NR_PORTS];

/* The page Xen's shared_info replaces (its RAM frame goes back to Xen). */
static uint8_t shared_info_page[PAGE_SIZE] __aligned(PAGE_SIZE)
    __attribute__((section(".bss.page_aligned")));

static void attach_vcpu_infos(void)
{
    /* Slots of vCPUs not started yet are filled in when they start. */
    for (unsigned int i = 0; i < SDK_MAX_CPUS; i++)
        if ((i == 0 || cpus[i].online) && !cpus[i].vcpu_info &&
            cpus[i].vcpu_id < XEN_LEGACY_MAX_VCPUS)
            cpus[i].vcpu_info = &shared_info->vcpu_info[cpus[i].vcpu_id];
}

long xen_map_shared_info(void)
{
    if (shared_info)
        return 0;
    if (!xen_present)
        return -XEN_ENOSYS;
    struct xen_add_to_physmap xatp = {
        .domid = DOMID_SELF,
        .space = XENMAPSPACE_shared_info,
        .idx = 0,
        .gpfn = (unsigned long)shared_info_page >> 12,
    };
    long rc = HYPERVISOR_memory_op(XENMEM_add_to_physmap, &xatp);
    if (rc < 0)
        return rc;
    shared_info_gfn = xatp.gpfn;
    shared_info = (volatile struct shared_info *)shared_info_page;
    attach_vcpu_infos();
    return 0;
}

static bool upcall_trap(struct trap_frame *f)
{
    (void)f;
    evtchn_do_upcall();
    return true;
}

long evtchn_init(void)
{
    if (evtchn_ready)
        return 0;
    long rc = xen_map_shared_info();
    if (rc < 0)
        return rc;
    trap_set_handler(EVTCHN_UPCALL_VECTOR, upcall_trap);
    struct xen_hvm_param p = {
        .domid = DOMID_SELF,
        .index = HVM_PARAM_CALLBACK_IRQ,
        .value = ((uint64_t)HVM_PARAM_CALLBACK_TYPE_VECTOR << HVM_PARAM_CALLBACK_TYPE_SHIFT) |
                 EVTCHN_UPCALL_VECTOR,
    };
    rc = HYPERVISOR_hvm_op(HVMOP_set_param, &p);
    if (rc < 0)
        return rc;
    evtchn_ready = true;
    return 0;
}

long evtchn_set_upcall_vector(unsigned int vcpu, uint8_t vector)
{
    struct xen_hvm_evtchn_upcall_vector a = { .vcpu = vcpu, .vector = vector };
    trap_set_handler(vector, upcall_trap);
    return HYPERVISOR_hvm_op(HVMOP_set_evtchn_upcall_vector, &a);
}

static void dispatch(struct cpu *c, evtchn_port_t port)
{
    evtchn_count[port]++;
    evtchn_last_port = port;
    evtchn_last_cpu = c->index;
    evtchn_last_vcpu_seen[port] = c->index;
    if (handlers[port].fn)
        handlers[port].fn(port, handlers[port].arg);
    else
        evtchn_unhandled++;
}

void evtchn_do_upcall(void)
{
    struct cpu *c = this_cpu();
    volatile struct vcpu_info *vi = c->vcpu_info;
    volatile struct shared_info *s = shared_info;

    c->upcalls++;
    if (!vi || !s)
        return;
    do {
        vi->evtchn_upcall_pending = 0;
        /* xchg is a full barrier: the clear above is visible before we scan. */
        unsigned long sel = xchg_ulong(&vi->evtchn_pending_sel, 0);
        while (sel) {
            unsigned int w = lowest_bit(sel);
            sel &= sel - 1;
            unsigned long pend = s->evtchn_pending[w] & ~s->evtchn_mask[w] &
                                 c->evtchn_owned[w];
            while (pend) {
                unsigned int b = lowest_bit(pend);
                pend &= pend - 1;
                evtchn_port_t port = w * WORD_BITS + b;
                if (test_and_clear_bit(b, &s->evtchn_pending[w]))
                    dispatch(c, port);
            }
        }
    } while (vi->evtchn_upcall_pending);
}

void evtchn_set_handler(evtchn_port_t port, evtchn_handler_fn fn, void *arg)
{
    if (port >= NR_PORTS)
        return;
    handlers[port].fn = NULL;
    barrier();
    handlers[port].arg = arg;
    barrier();
    handlers[port].fn = fn;
}

void evtchn_set_owner(evtchn_port_t port, unsigned int vcpu)
{
    if (port >= NR_PORTS || vcpu >= SDK_MAX_CPUS)
        return;
    unsigned int w = port / WORD_BITS, b = port % WORD_BITS;
    set_bit(b, &cpus[vcpu].evtchn_owned[w]);
    for (unsigned int i = 0; i < SDK_MAX_CPUS; i++)
        if (i != vcpu)
            clear_bit(b, &cpus[i].evtchn_owned[w]);
}

static long op(int cmd, void *arg)
{
    return HYPERVISOR_event_channel_op(cmd, arg);
}

long evtchn_alloc_unbound(domid_t remote_dom)
{
    struct evtchn_alloc_unbound a = { .dom = DOMID_SELF, .remote_dom = remote_dom };
    long rc = op(EVTCHNOP_alloc_unbound, &a);
    if (rc < 0)
        return rc;
    evtchn_set_owner(a.port, 0);
    return a.port;
}

long evtchn_bind_interdomain(domid_t remote_dom, evtchn_port_t remote_port)
{
    struct evtchn_bind_interdomain b = { .remote_dom = remote_dom, .remote_port = remote_port };
    long rc = op(EVTCHNOP_bind_interdomain, &b);
    if (rc < 0)
        return rc;
    evtchn_set_owner(b.local_port, 0);     /* Xen notifies vCPU 0 */
    return b.local_port;
}

long evtchn_bind_virq(uint32_t virq, unsigned int vcpu)
{
    struct evtchn_bind_virq b = { .virq = virq, .vcpu = vcpu };
    long rc = op(EVTCHNOP_bind_virq, &b);
    if (rc < 0)
        return rc;
    evtchn_set_owner(b.port, vcpu);
    return b.port;
}

long evtchn_bind_ipi(unsigned int vcpu)
{
    struct evtchn_bind_ipi b = { .vcpu = vcpu };
    long rc = op(EVTCHNOP_bind_ipi, &b);
    if (rc < 0)
        return rc;
    evtchn_set_owner(b.port, vcpu);
    return b.port;
}

long evtchn_bind_vcpu(evtchn_port_t port, unsigned int vcpu)
{
    struct evtchn_bind_vcpu b = { .port = port, .vcpu = vcpu };
    long rc = op(EVTCHNOP_bind_vcpu, &b);
    if (rc == 0)
        evtchn_set_owner(port, vcpu);
    return rc;
}

long evtchn_close(evtchn_port_t port)
{
    struct evtchn_close c = { .port = port };
    long rc = op(EVTCHNOP_close, &c);
    if (rc == 0 && port < NR_PORTS) {
        handlers[port].fn = NULL;
        evtchn_set_owner(port, 0);
    }
    return rc;
}

long evtchn_send(evtchn_port_t port)
{
    struct evtchn_send s = { .port = port };
    return op(EVTCHNOP_send, &s);
}

long evtchn_unmask(evtchn_port_t port)
{
    struct evtchn_unmask u = { .port = port };
    return op(EVTCHNOP_unmask, &u);
}

long evtchn_get_status(domid_t dom, evtchn_port_t port, struct evtchn_status *st)
{
    memset(st, 0, sizeof(*st));
    st->dom = dom;
    st->port = port;
    return op(EVTCHNOP_status, st);
}

long xen_own_domid(void)
{
    static long cached = -1;
    if (cached >= 0)
        return cached;
    struct evtchn_alloc_unbound a = { .dom = DOMID_SELF, .remote_dom = DOMID_SELF };
    long rc = op(EVTCHNOP_alloc_unbound, &a);
    if (rc < 0)
        return rc;
    struct evtchn_status st;
    rc = evtchn_get_status(DOMID_SELF, a.port, &st);
    struct evtchn_close c = { .port = a.port };
    op(EVTCHNOP_close, &c);
    if (rc < 0)
        return rc;
    if (st.status != EVTCHNSTAT_unbound)
        return -XEN_EINVAL;
    cached = st.u.unbound.dom;
    return cached;
}

void evtchn_mask(evtchn_port_t port)
{
    if (shared_info && port < NR_PORTS)
        set_bit(port % WORD_BITS, &shared_info->evtchn_mask[port / WORD_BITS]);
}

void evtchn_unmask_local(evtchn_port_t port)
{
    if (shared_info && port < NR_PORTS)
        clear_bit(port % WORD_BITS, &shared_info->evtchn_mask[port / WORD_BITS]);
}

bool evtchn_is_pending(evtchn_port_t port)
{
    return shared_info && port < NR_PORTS &&
           test_bit(port % WORD_BITS, &shared_info->evtchn_pending[port / WORD_BITS]);
}

bool evtchn_is_masked(evtchn_port_t port)
{
    return shared_info && port < NR_PORTS &&
           test_bit(port % WORD_BITS, &shared_info->evtchn_mask[port / WORD_BITS]);
}

void evtchn_clear_pending(evtchn_port_t port)
{
    if (shared_info && port < NR_PORTS)
        clear_bit(port % WORD_BITS, &shared_info->evtchn_pending[port / WORD_BITS]);
}

const char *evtchn_status_name(uint32_t status)
{
    static const char *const names[] = { "closed", "unbound", "interdomain", "pirq",
                                         "virq", "ipi" };
    return status < ARRAY_SIZE(names) ? names[status] : "?";
}
