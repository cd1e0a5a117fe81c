/*
 * test-gntdeny: what a domain must NOT be able to do with another domain's
 * grants and event channels.  Two domains; needs Xen (SKIP without it, or
 * without role=).
 *
 * Rendezvous (the harness drives it, as for test-gntpeer):
 *   1. server:  role=server peer=<client domid> [third=<domid>]
 *      Grants page A read-only to the peer (ref gref, default 8, filled with
 *      a known pattern) and page B read-write to a third domain (third=,
 *      default peer+100) as ref gref2 (default 9); allocates port p for the
 *      peer and port2 for the third domain; prints exactly
 *          READY port=<p> gref=<A> gref2=<B> port2=<port2>
 *   2. client:  role=client peer=<server domid> port=<p> gref=<A> gref2=<B> port2=<port2>
 *
 * Client checks (expected values are Xen 4.10's):
 *  - map gref2 (granted to another domain)      -> GNTST_general_error
 *    (Xen 4.10 reports a grant made to someone else as general_error, not
 *    permission_denied);
 *  - map a ref beyond the table                 -> GNTST_bad_gntref;
 *  - map a ref never granted                    -> GNTST_general_error;
 *  - map without GNTMAP_host_map/device_map     -> GNTST_bad_gntref;
 *  - map the read-only grant writable           -> GNTST_general_error;
 *  - map it with GNTMAP_readonly                -> GNTST_okay, the pattern
 *    reads back; a write through the mapping    -> #GP(0), page unchanged;
 *  - GNTTABOP_copy into the read-only grant     -> GNTST_general_error;
 *  - GNTTABOP_copy from it to our own frame     -> GNTST_okay, data matches;
 *  - GNTTABOP_copy from the server's frame number without a gref
 *                                               -> GNTST_permission_denied;
 *  - unmap with a bad handle                    -> GNTST_bad_handle;
 *  - send on a port we do not have (4000)       -> -EINVAL;
 *  - bind_interdomain to port2 (offered to the third domain) -> -EINVAL;
 *  - bind_interdomain to port p -> ok; binding p a second time -> -EINVAL.
 * Hand-shake on port p: the client notifies once the read-only mapping
 * exists; the server checks its entry shows GTF_reading without
 * GTF_writing and that revoking fails, then notifies back; at the end the
 * client unmaps and notifies again; the server then revokes both grants
 * (must succeed: nothing was left mapped).
 * Output: both end with `Test result: SUCCESS` when every check passed.
 */
#include "sdk.h"

const char test_title[] = "test-gntdeny: refused grant and event-channel operations";

static uint8_t page_a[PAGE_SIZE] __aligned(PAGE_SIZE);
static uint8_t page_b[PAGE_SIZE] __aligned(PAGE_SIZE);
static uint8_t copy_buf[PAGE_SIZE] __aligned(PAGE_SIZE);
static uint64_t wait_ns;

static uint32_t pattern(unsigned int i)
{
    return 0xA5000000u ^ (i * 2654435761u);
}

static void noop_handler(evtchn_port_t port, void *arg)
{
    (void)port;
    (void)arg;
}

static void server(domid_t peer)
{
    domid_t third = (domid_t)cmdline_get_u64("third", peer + 100u);
    grant_ref_t ra = (grant_ref_t)cmdline_get_u64("gref", GNTTAB_NR_RESERVED);
    grant_ref_t rb = (grant_ref_t)cmdline_get_u64("gref2", GNTTAB_NR_RESERVED + 1);
    long rc = gnttab_init(1);
    if (!check_rc(rc, 0, "grant table frame 0 mapped"))
        test_fail("no grant table (%s)", xen_errno_name(rc));

    uint32_t *a = (uint32_t *)page_a;
    for (unsigned int i = 0; i < PAGE_SIZE / 4; i++)
        a[i] = pattern(i);
    memset(page_b, 0x5b, sizeof(page_b));
    gnttab_grant(ra, peer, (unsigned long)page_a >> 12, true);
    gnttab_grant(rb, third, (unsigned long)page_b >> 12, false);
    long p = evtchn_alloc_unbound(peer);
    long p2 = evtchn_alloc_unbound(third);
    if (!check(p > 0 && p2 > 0, "ports %ld (for dom %u) and %ld (for dom %u)", p, peer, p2,
               third))
        test_fail("alloc_unbound failed");
    evtchn_set_handler((evtchn_port_t)p, noop_handler, NULL);
    printf("READY port=%ld gref=%u gref2=%u port2=%ld\n", p, ra, rb, p2);

    if (!check(sdk_wait_u32_ge(&evtchn_count[p], 1, wait_ns), "client mapped the RO grant"))
        test_fail("no client within %llu ms", (unsigned long long)wait_ns / NS_PER_MS);
    uint16_t f = gnttab_flags(ra);
    check((f & GTF_reading) && !(f & GTF_writing),
          "RO grant flags %#x: GTF_reading set, GTF_writing clear", f);
    uint16_t seen;
    check_rc(gnttab_revoke(ra, &seen), -XEN_EBUSY, "revoking the mapped RO grant");
    check_eq(gnttab_flags(rb) & (GTF_reading | GTF_writing), 0,
             "the third domain's grant was never used");
    evtchn_send((evtchn_port_t)p);

    check(sdk_wait_u32_ge(&evtchn_count[p], 2, wait_ns), "client finished");
    f = gnttab_flags(ra);
    check(!(f & (GTF_reading | GTF_writing)), "RO grant idle after the client (flags %#x)", f);
    bool same = true;
    for (unsigned int i = 0; i < PAGE_SIZE / 4; i++)
        same &= a[i] == pattern(i);
    check(same, "page A unchanged by the client");
    bool b_same = true;
    for (unsigned int i = 0; i < PAGE_SIZE; i++)
        b_same &= page_b[i] == 0x5b;
    check(b_same, "page B unchanged");
    check_rc(gnttab_revoke(ra, &seen), 0, "revoke the RO grant");
    check_rc(gnttab_revoke(rb, &seen), 0, "revoke the third domain's grant");
}

static void client(domid_t peer)
{
    static const char *const keys[] = { "port", "gref", "gref2", "port2" };
    for (unsigned int i = 0; i < ARRAY_SIZE(keys); i++)
        if (!cmdline_get(keys[i], NULL, 0))
            test_fail("client needs %s= (from the server's READY line)", keys[i]);
    evtchn_port_t port = (evtchn_port_t)cmdline_get_u64("port", 0);
    evtchn_port_t port2 = (evtchn_port_t)cmdline_get_u64("port2", 0);
    grant_ref_t ra = (grant_ref_t)cmdline_get_u64("gref", 0);
    grant_ref_t rb = (grant_ref_t)cmdline_get_u64("gref2", 0);
    uint64_t gpa = sdk_free_gpa(1);
    if (!gpa)
        test_fail("no free guest-physical page");
    grant_handle_t h;
    int16_t st;

    printf("-- grant mapping refusals\n");
    gnttab_map(peer, rb, gpa, GNTMAP_host_map, &h, &st);
    check_gntst(st, GNTST_general_error, "map ref %u (granted to another domain)", rb);
    gnttab_map(peer, 1u << 20, gpa, GNTMAP_host_map, &h, &st);
    check_gntst(st, GNTST_bad_gntref, "map ref %u (beyond the table)", 1u << 20);
    gnttab_map(peer, 300, gpa, GNTMAP_host_map, &h, &st);
    check_gntst(st, GNTST_general_error, "map ref 300 (never granted)");
    gnttab_map(peer, ra, gpa, 0, &h, &st);
    check_gntst(st, GNTST_bad_gntref, "map without host_map/device_map");
    gnttab_map(peer, ra, gpa, GNTMAP_host_map, &h, &st);
    check_gntst(st, GNTST_general_error, "map the read-only grant writable");
    if (st == GNTST_okay)
        gnttab_unmap(gpa, h, &st);

    printf("-- read-only mapping\n");
    long rc = gnttab_map(peer, ra, gpa, GNTMAP_host_map | GNTMAP_readonly, &h, &st);
    if (!check(rc == 0 && st == GNTST_okay, "map the RO grant read-only: rc %s, %s",
               xen_errno_name(rc), gntst_name(st)))
        test_fail("cannot map the read-only grant");
    long lp = evtchn_bind_interdomain(peer, port);
    if (!check(lp > 0, "bind_interdomain(dom %u, port %u) -> port %ld", peer, port, lp))
        test_fail("cannot bind the server's port");
    evtchn_set_handler((evtchn_port_t)lp, noop_handler, NULL);
    evtchn_clear_pending((evtchn_port_t)lp);  /* the bind's own notification */
    uint32_t before = evtchn_count[lp];
    evtchn_send((evtchn_port_t)lp);           /* "mapped": the server checks its flags */

    volatile uint32_t *m = (volatile uint32_t *)(unsigned long)gpa;
    bool same = true;
    for (unsigned int i = 0; i < PAGE_SIZE / 4; i++)
        same &= m[i] == pattern(i);
    check(same, "the read-only mapping shows the server's pattern");
    int vec = probe_write32(&m[7], 0xdeadbeef);
    check(vec == X86_EXC_GP && last_fault.error_code == 0,
          "a write through the read-only mapping -> #GP(0) (vector %d, error %#lx)", vec,
          vec >= 0 ? last_fault.error_code : 0UL);
    check_eq(m[7], pattern(7), "the word is unchanged after the write attempt");

    printf("-- grant copy\n");
    struct gnttab_copy c;
    memset(&c, 0, sizeof(c));
    c.source.u.gmfn = (unsigned long)copy_buf >> 12;
    c.source.domid = DOMID_SELF;
    c.dest.u.ref = ra;
    c.dest.domid = peer;
    c.len = 64;
    c.flags = GNTCOPY_dest_gref;
    rc = gnttab_copy_one(&c);
    check(rc == 0 && c.status == GNTST_general_error,
          "copy into the read-only grant -> rc %s, %s (Xen 4.10: general_error)",
          xen_errno_name(rc), gntst_name(c.status));

    memset(copy_buf, 0, sizeof(copy_buf));
    memset(&c, 0, sizeof(c));
    c.source.u.ref = ra;
    c.source.domid = peer;
    c.dest.u.gmfn = (unsigned long)copy_buf >> 12;
    c.dest.domid = DOMID_SELF;
    c.len = PAGE_SIZE;
    c.flags = GNTCOPY_source_gref;
    rc = gnttab_copy_one(&c);
    check(rc == 0 && c.status == GNTST_okay, "copy from the read-only grant -> rc %s, %s",
          xen_errno_name(rc), gntst_name(c.status));
    same = true;
    for (unsigned int i = 0; i < PAGE_SIZE / 4; i++)
        same &= ((uint32_t *)copy_buf)[i] == pattern(i);
    check(same, "the copied page holds the server's pattern");

    memset(&c, 0, sizeof(c));
    c.source.u.gmfn = (unsigned long)page_a >> 12;   /* a frame number, no gref */
    c.source.domid = peer;
    c.dest.u.gmfn = (unsigned long)copy_buf >> 12;
    c.dest.domid = DOMID_SELF;
    c.len = 8;
    rc = gnttab_copy_one(&c);
    check(rc == 0 && c.status == GNTST_permission_denied,
          "copy from the server's frame without a gref -> rc %s, %s", xen_errno_name(rc),
          gntst_name(c.status));

    int16_t st2;
    gnttab_unmap(gpa, 0xdead, &st2);
    check_gntst(st2, GNTST_bad_handle, "unmap with handle 0xdead");

    printf("-- event channel refusals\n");
    check_rc(evtchn_send(4000), -XEN_EINVAL, "send on port 4000 (not ours)");
    check_rc(evtchn_bind_interdomain(peer, port2), -XEN_EINVAL,
             "bind_interdomain to port %u (offered to another domain)", port2);
    check_rc(evtchn_bind_interdomain(peer, port), -XEN_EINVAL,
             "bind_interdomain to port %u a second time", port);

    printf("-- finishing\n");
    check(sdk_wait_u32_ge(&evtchn_count[lp], before + 1, wait_ns),
          "the server acknowledged the mapping");
    rc = gnttab_unmap(gpa, h, &st);
    check(rc == 0 && st == GNTST_okay, "unmap the read-only mapping: rc %s, %s",
          xen_errno_name(rc), gntst_name(st));
    check_rc(evtchn_send((evtchn_port_t)lp), 0, "tell the server we are done");
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
    wait_ns = cmdline_get_u64("wait_ms", 120000) * NS_PER_MS;

    local_irq_disable();
    long rc = evtchn_init();
    if (!check_rc(rc, 0, "event channels set up"))
        test_fail("no event channels (%s)", xen_errno_name(rc));
    printf("role %s, own domid %ld, peer %u\n", role, xen_own_domid(), peer);
    if (!strcmp(role, "server"))
        server(peer);
    else if (!strcmp(role, "client"))
        client(peer);
    else
        test_fail("unknown role=%s", role);
}
