/*
 * test-gntpeer: two domains share a granted page and an interdomain event
 * channel and exchange sequence-numbered messages.  Needs Xen (SKIP without
 * it, or without role=).
 *
 * Rendezvous (the harness drives it):
 *   1. start the server:  role=server peer=<client domid> [count=N] [gref=R]
 *      It maps its grant table frame 0, grants one page (read-write) to the
 *      peer as ref R (default 8, the first one not reserved for the
 *      toolstack), allocates an unbound port for the peer and prints exactly
 *          READY port=<p> gref=<r>
 *      then waits (wait_ms=, default 120000) for the client.
 *   2. start the client:  role=client peer=<server domid> port=<p> gref=<r> [count=N]
 *      It maps the grant (GNTMAP_host_map at a guest-physical address above
 *      its RAM) and binds the port with bind_interdomain.
 *   Both must get the same count (default 10000).
 *
 * Exchange: strictly alternating.  The client writes message i (seq i and a
 * payload derived from i) into the shared page and notifies; the server
 * checks that i is exactly the next sequence number and the payload, writes
 * reply i and notifies; the client checks the reply.  Nothing may be lost,
 * repeated or reordered.  The server also checks, once the client has
 * mapped the page, that its grant entry shows GTF_reading|GTF_writing and
 * that revoking it then fails.  When done, the client marks the page
 * "unmapping", unmaps (status okay; a second unmap of the same handle ->
 * GNTST_bad_handle), notifies and closes its port; the server waits for
 * the entry's reading/writing flags to clear and revokes the grant
 * successfully.
 *
 * Output: both print `<role>: N messages exchanged in order` and end with
 * `Test result: SUCCESS` (FAILURE with the first failed check otherwise).
 */
#include "sdk.h"

const char test_title[] = "test-gntpeer: grant-shared page + interdomain event channel";

#define PEER_MAGIC     0x50595847u       /* "GXYP" */
#define CLIENT_NONE      0
#define CLIENT_MAPPED    1
#define CLIENT_UNMAPPING 2

struct peer_page {
    volatile uint32_t magic;             /* written by the server before granting */
    volatile uint32_t client_state;
    volatile uint32_t c2s_seq, s2c_seq;
    volatile uint64_t c2s_payload, s2c_payload;
};

static uint8_t shared_page[PAGE_SIZE] __aligned(PAGE_SIZE);
static uint64_t wait_ns;

static uint64_t request_of(uint32_t seq)
{
    return (seq * 0x9E3779B97F4A7C15ULL) ^ 0x1234567800000000ULL;
}

static uint64_t reply_of(uint32_t seq)
{
    return ~request_of(seq) + seq;
}

static void noop_handler(evtchn_port_t port, void *arg)
{
    (void)port;
    (void)arg;
}

struct seq_wait {
    const volatile uint32_t *p;
    uint32_t want;
};

static bool seq_changed(void *arg)
{
    struct seq_wait *w = arg;
    return *w->p != w->want - 1;
}

static bool state_reached(void *arg)
{
    struct seq_wait *w = arg;
    return *w->p >= w->want;
}

static bool entry_idle(void *arg)
{
    grant_ref_t ref = *(grant_ref_t *)arg;
    return !(gnttab_flags(ref) & (GTF_reading | GTF_writing));
}

static void server(domid_t peer, unsigned long count)
{
    grant_ref_t ref = (grant_ref_t)cmdline_get_u64("gref", GNTTAB_NR_RESERVED);
    long rc = gnttab_init(1);
    if (!check_rc(rc, 0, "grant table frame 0 mapped"))
        test_fail("no grant table (%s)", xen_errno_name(rc));
    if (ref >= gnttab_capacity())
        test_fail("gref=%u beyond the mapped table", ref);

    struct peer_page *pg = (struct peer_page *)shared_page;
    memset(shared_page, 0, sizeof(shared_page));
    pg->magic = PEER_MAGIC;
    wmb();
    gnttab_grant(ref, peer, (unsigned long)shared_page >> 12, false);
    long port = evtchn_alloc_unbound(peer);
    if (!check(port > 0, "alloc_unbound for dom %u -> port %ld", peer, port))
        test_fail("alloc_unbound failed (%s)", xen_errno_name(port));
    evtchn_set_handler((evtchn_port_t)port, noop_handler, NULL);
    printf("READY port=%ld gref=%u\n", port, ref);

    struct seq_wait w = { .p = &pg->client_state, .want = CLIENT_MAPPED };
    if (!check(sdk_wait(state_reached, &w, wait_ns), "the client mapped the page"))
        test_fail("no client within %llu ms", (unsigned long long)wait_ns / NS_PER_MS);
    uint16_t f = gnttab_flags(ref);
    check((f & (GTF_reading | GTF_writing)) == (GTF_reading | GTF_writing),
          "grant entry flags %#x show GTF_reading|GTF_writing while mapped", f);
    uint16_t seen = 0;
    rc = gnttab_revoke(ref, &seen);
    check_rc(rc, -XEN_EBUSY, "revoking while mapped (flags %#x)", seen);

    unsigned long bad = 0;
    uint32_t expect = 1;
    for (; expect <= count; expect++) {
        w.p = &pg->c2s_seq;
        w.want = expect;
        if (!sdk_wait(seq_changed, &w, wait_ns)) {
            check(false, "message %u arrived in time (page: c2s_seq %u s2c_seq %u)", expect,
                  pg->c2s_seq, pg->s2c_seq);
            break;
        }
        uint32_t got = pg->c2s_seq;
        rmb();
        uint64_t payload = pg->c2s_payload;
        if (got != expect || payload != request_of(got)) {
            if (!bad++)
                check(false, "message %u: seq %u payload %#llx (expected %#llx)", expect, got,
                      (unsigned long long)payload, (unsigned long long)request_of(expect));
            break;
        }
        pg->s2c_payload = reply_of(got);
        wmb();
        pg->s2c_seq = got;
        evtchn_send((evtchn_port_t)port);
    }
    check(bad == 0 && expect == count + 1, "server: %lu messages exchanged in order", count);

    w.p = &pg->client_state;
    w.want = CLIENT_UNMAPPING;
    check(sdk_wait(state_reached, &w, wait_ns), "the client is unmapping");
    check(sdk_wait(entry_idle, &ref, wait_ns), "GTF_reading/GTF_writing cleared after unmap");
    rc = gnttab_revoke(ref, &seen);
    check_rc(rc, 0, "grant revoked (flags were %#x)", seen);
    check_eq(gnttab_flags(ref), 0, "entry flags now 0");
    evtchn_close((evtchn_port_t)port);
}

static void client(domid_t peer, unsigned long count)
{
    char buf[16];
    if (!cmdline_get("port", buf, sizeof(buf)) || !cmdline_get("gref", buf, sizeof(buf)))
        test_fail("client needs port= and gref= (from the server's READY line)");
    evtchn_port_t rport = (evtchn_port_t)cmdline_get_u64("port", 0);
    grant_ref_t ref = (grant_ref_t)cmdline_get_u64("gref", 0);

    uint64_t gpa = sdk_free_gpa(1);
    if (!check(gpa != 0, "free guest-physical page above RAM at %#llx", (unsigned long long)gpa))
        test_fail("no room for the mapping");
    grant_handle_t h;
    int16_t st;
    long rc = gnttab_map(peer, ref, gpa, GNTMAP_host_map, &h, &st);
    check_rc(rc, 0, "GNTTABOP_map_grant_ref hypercall");
    if (!check_gntst(st, GNTST_okay, "map dom %u ref %u at %#llx", peer, ref,
                     (unsigned long long)gpa))
        test_fail("cannot map the grant (%s)", gntst_name(st));
    struct peer_page *pg = (struct peer_page *)(unsigned long)gpa;
    check_eq(pg->magic, PEER_MAGIC, "the mapped page holds the server's magic");

    long lp = evtchn_bind_interdomain(peer, rport);
    if (!check(lp > 0, "bind_interdomain(dom %u, port %u) -> port %ld", peer, rport, lp))
        test_fail("cannot bind the server's port (%s)", xen_errno_name(lp));
    evtchn_set_handler((evtchn_port_t)lp, noop_handler, NULL);
    pg->client_state = CLIENT_MAPPED;
    evtchn_send((evtchn_port_t)lp);

    unsigned long bad = 0;
    uint32_t i = 1;
    struct seq_wait w = { .p = &pg->s2c_seq };
    for (; i <= count; i++) {
        pg->c2s_payload = request_of(i);
        wmb();
        pg->c2s_seq = i;
        evtchn_send((evtchn_port_t)lp);
        w.want = i;
        if (!sdk_wait(seq_changed, &w, wait_ns)) {
            check(false, "reply %u arrived in time (page: c2s_seq %u s2c_seq %u)", i,
                  pg->c2s_seq, pg->s2c_seq);
            break;
        }
        uint32_t got = pg->s2c_seq;
        rmb();
        uint64_t payload = pg->s2c_payload;
        if (got != i || payload != reply_of(i)) {
            if (!bad++)
                check(false, "reply %u: seq %u payload %#llx (expected %#llx)", i, got,
                      (unsigned long long)payload, (unsigned long long)reply_of(i));
            break;
        }
    }
    check(bad == 0 && i == count + 1, "client: %lu messages exchanged in order", count);

    pg->client_state = CLIENT_UNMAPPING;
    mb();
    rc = gnttab_unmap(gpa, h, &st);
    check(rc == 0 && st == GNTST_okay, "unmap: rc %s, %s", xen_errno_name(rc), gntst_name(st));
    evtchn_send((evtchn_port_t)lp);
    rc = gnttab_unmap(gpa, h, &st);
    check(rc == 0 && st == GNTST_bad_handle, "unmap of the same handle again -> %s",
          gntst_name(st));
    check_rc(evtchn_close((evtchn_port_t)lp), 0, "close the interdomain port");
}

void test_main(void)
{
    if (!xen_present)
        test_skip("needs Xen (grant tables, event channels, a peer domain)");
    char role[16];
    if (!cmdline_get("role", role, sizeof(role)))
        test_skip("no role= on the command line (two-domain test: see guests/README.md)");
    if (!cmdline_get("peer", NULL, 0))
        test_fail("peer=<domid> is required");
    domid_t peer = (domid_t)cmdline_get_u64("peer", 0);
    unsigned long count = cmdline_get_u64("count", 10000);
    wait_ns = cmdline_get_u64("wait_ms", 120000) * NS_PER_MS;

    local_irq_disable();
    long rc = evtchn_init();
    if (!check_rc(rc, 0, "event channels set up"))
        test_fail("no event channels (%s)", xen_errno_name(rc));
    printf("role %s, own domid %ld, peer %u, count %lu\n", role, xen_own_domid(), peer, count);
    if (!strcmp(role, "server"))
        server(peer, count);
    else if (!strcmp(role, "client"))
        client(peer, count);
    else
        test_fail("unknown role=%s", role);
}
