/*
 * test-xenstore: the SDK's xenstore ring client against xenstored (C
 * xenstored 4.10 semantics).  Needs Xen and a xenstored serving our ring
 * (SKIP without Xen).
 *
 * Command-line keys:
 *   base=PATH   the subtree the test may create (default data/pyxen-test,
 *               relative to /local/domain/<domid>; the toolstack makes
 *               data/ guest-owned)
 *   name=NAME   when given, /local/domain/<domid>/name must equal it
 *   other=N     another domain id for the refusals (default domid + 1)
 *   quota=1     also fill the node quota (until ENOSPC, ~1000 writes in
 *               directories of 50, since a node's record - its children's
 *               names included - is limited to 2048 bytes too) and
 *               the watch quota (until E2BIG, ~128 watches)
 *
 * Parts, in order:
 *  1. set-up: STORE_PFN / STORE_EVTCHN, the ring's indexes, connection
 *     state; our domid (alloc_unbound + status);
 *  2. identity: GET_DOMAIN_PATH of us and of dom0; our domid and name nodes,
 *     relative and absolute; vm, memory/target, console/{ring-ref,port}
 *     (the last two must match the HVM params when present);
 *  3. nodes in our subtree: write/read (relative and absolute), overwrite,
 *     empty and binary ("a\0b") values, 1000 bytes, 3000 bytes -> ENOSPC,
 *     parents created by a deep write, mkdir (twice), directory (children
 *     as a set), reads and directories of missing nodes -> ENOENT, rm of a
 *     subtree, rm of a missing node (OK) and of a node whose parent is
 *     missing (ENOENT), malformed paths -> EINVAL;
 *  4. permissions: owner of what we create is us, set_perms/get_perms round
 *     trip, refusals (-> EACCES): write and read under /local/domain/0 and
 *     another domain's path, directory of /local/domain, write into our own
 *     domain directory (owned by dom0), set_perms on a dom0-owned node;
 *  5. watches: a watch on a missing node fires once at registration; it
 *     fires for a child write, a write and an rm; an absolute watch reports
 *     absolute paths; duplicate -> EEXIST; unwatch, unwatch again -> ENOENT,
 *     no event afterwards; a change inside a transaction fires only at
 *     commit;
 *  6. transactions: isolation until commit, abort, a conflict (a node read
 *     and written in T is changed outside T -> EAGAIN at commit, the
 *     outside value stays), unknown transaction id -> ENOENT, the
 *     transaction quota -> ENOSPC after 10 (or 11);
 *  7. bad requests: unknown message type -> ENOSYS (C xenstored; EINVAL is
 *     accepted), a path without NUL and an empty payload -> EINVAL, an
 *     absolute path over 3072 bytes -> EINVAL, INTRODUCE and RELEASE from a
 *     domU -> EACCES;
 *  8. quota=1 only: node and watch quotas;
 *  9. clean-up (rm of the subtree), client statistics (no timeouts, no stale
 *     replies).
 * Last line: `Test result: SUCCESS`.
 */
#include "sdk.h"

const char test_title[] = "test-xenstore: xenstore ring client (read/write/dir/perms/watch/transactions)";

static long domid;
static char dompath[64];
static char base[128];            /* relative */
static char abase[256];           /* absolute */
static char val[XENSTORE_PAYLOAD_MAX + 1];
static char big[3001];

/* Joins a and b with '/', in one of 8 rotating buffers. */
static const char *pj(const char *a, const char *b)
{
    static char bufs[8][384];
    static unsigned int next;
    char *p = bufs[next++ % 8];
    snprintf(p, sizeof(bufs[0]), "%s/%s", a, b);
    return p;
}

static bool read_is(uint32_t tx, const char *path, const char *expect)
{
    long n = xs_read(tx, path, val, sizeof(val));
    if (n < 0)
        return check(false, "read %s: %s, expected \"%s\"", path, xen_errno_name(n), expect);
    if ((size_t)n == strlen(expect) && !strcmp(val, expect))
        return check(true, "read %s = \"%s\"", path, val);
    return check(false, "read %s = \"%s\" (%ld bytes), expected \"%s\"", path, val, n, expect);
}

/* ---- 1, 2 ---- */

static void part_setup(void)
{
    long rc = xs_init();
    if (!check_rc(rc, 0, "xs_init: ring at STORE_PFN, port STORE_EVTCHN"))
        test_fail("no xenstore ring (%s)", xen_errno_name(rc));
    volatile struct xenstore_domain_interface *r = xs_intf;
    printf("store: pfn %#llx port %u req cons/prod %u/%u rsp cons/prod %u/%u "
           "server_features %#x connection %u\n",
           (unsigned long long)xs_pfn, xs_port, r->req_cons, r->req_prod, r->rsp_cons,
           r->rsp_prod, r->server_features, r->connection);
    check_eq(r->connection, XENSTORE_CONNECTED, "ring connection state is CONNECTED (0)");
    domid = xen_own_domid();
    if (!check(domid >= 0, "our domid: %ld", domid))
        test_fail("cannot learn our domid (%s)", xen_errno_name(domid));
}

static void part_identity(void)
{
    char expect[64], buf[128];
    long rc;

    snprintf(expect, sizeof(expect), "/local/domain/%ld", domid);
    rc = xs_get_domain_path((uint32_t)domid, dompath, sizeof(dompath));
    if (!check(rc > 0 && !strcmp(dompath, expect), "GET_DOMAIN_PATH(%ld) = \"%s\"", domid,
               rc >= 0 ? dompath : xen_errno_name(rc)))
        test_fail("GET_DOMAIN_PATH failed");
    rc = xs_get_domain_path(0, buf, sizeof(buf));
    check(rc > 0 && !strcmp(buf, "/local/domain/0"), "GET_DOMAIN_PATH(0) = \"%s\"",
          rc >= 0 ? buf : xen_errno_name(rc));

    snprintf(expect, sizeof(expect), "%ld", domid);
    read_is(XBT_NULL, "domid", expect);
    read_is(XBT_NULL, pj(dompath, "domid"), expect);

    char name[128];
    rc = xs_read(XBT_NULL, "name", name, sizeof(name));
    if (check(rc > 0, "read name (relative): \"%s\"", rc >= 0 ? name : xen_errno_name(rc))) {
        read_is(XBT_NULL, pj(dompath, "name"), name);
        char want[128];
        if (cmdline_get("name", want, sizeof(want)))
            check(!strcmp(name, want), "name is \"%s\" as the command line says", want);
    }
    static const char *const info[] = { "vm", "memory/target", "memory/static-max",
                                        "control/shutdown" };
    for (unsigned int i = 0; i < ARRAY_SIZE(info); i++) {
        rc = xs_read(XBT_NULL, info[i], buf, sizeof(buf));
        note("%s = %s%s%s", info[i], rc >= 0 ? "\"" : "", rc >= 0 ? buf : xen_errno_name(rc),
             rc >= 0 ? "\"" : "");
    }
    uint64_t pfn = 0, port = 0;
    xen_get_hvm_param(HVM_PARAM_CONSOLE_PFN, &pfn);
    xen_get_hvm_param(HVM_PARAM_CONSOLE_EVTCHN, &port);
    rc = xs_read(XBT_NULL, "console/ring-ref", buf, sizeof(buf));
    if (rc > 0)
        check_eq(strtoull_simple(buf, NULL), pfn, "console/ring-ref \"%s\" = CONSOLE_PFN", buf);
    else
        note("console/ring-ref: %s", rc == 0 ? "empty" : xen_errno_name(rc));
    rc = xs_read(XBT_NULL, "console/port", buf, sizeof(buf));
    if (rc > 0)
        check_eq(strtoull_simple(buf, NULL), port, "console/port \"%s\" = CONSOLE_EVTCHN", buf);
    else
        note("console/port: %s", rc == 0 ? "empty" : xen_errno_name(rc));
}

/* ---- 3 ---- */

static void part_nodes(void)
{
    long rc;
    char dir[1024];

    rc = xs_rm(XBT_NULL, base);
    note("rm %s (left-overs of an earlier run) -> %s", base, xen_errno_name(rc));

    rc = xs_write_str(XBT_NULL, pj(base, "a"), "hello");
    if (!check_rc(rc, 0, "write %s/a = \"hello\"", base))
        printf("hint: the test needs a writable %s/%s (libxl creates data/ owned by the "
               "guest)\n", dompath, base);
    read_is(XBT_NULL, pj(base, "a"), "hello");
    read_is(XBT_NULL, pj(abase, "a"), "hello");
    check_rc(xs_write_str(XBT_NULL, pj(base, "a"), "hello, world"), 0, "overwrite %s/a", base);
    read_is(XBT_NULL, pj(base, "a"), "hello, world");
    check_rc(xs_write_str(XBT_NULL, pj(abase, "abs"), "1"), 0, "write by absolute path");
    read_is(XBT_NULL, pj(base, "abs"), "1");

    check_rc(xs_write(XBT_NULL, pj(base, "empty"), "", 0), 0, "write an empty value");
    check_rc(xs_read(XBT_NULL, pj(base, "empty"), val, sizeof(val)), 0,
             "read it back: length 0");
    check_rc(xs_write(XBT_NULL, pj(base, "bin"), "a\0b", 3), 0,
             "write a 3-byte value with a NUL inside");
    rc = xs_read(XBT_NULL, pj(base, "bin"), val, sizeof(val));
    check(rc == 3 && !memcmp(val, "a\0b", 3), "read it back: 3 bytes, same (got %ld)", rc);

    for (unsigned int i = 0; i < sizeof(big) - 1; i++)
        big[i] = (char)('a' + i % 26);
    big[sizeof(big) - 1] = '\0';
    check_rc(xs_write(XBT_NULL, pj(base, "big"), big, 1000), 0, "write a 1000-byte value");
    rc = xs_read(XBT_NULL, pj(base, "big"), val, sizeof(val));
    check(rc == 1000 && !memcmp(val, big, 1000), "read it back: 1000 bytes, same (got %ld)", rc);
    check_rc(xs_write(XBT_NULL, pj(base, "huge"), big, 3000), -XEN_ENOSPC,
             "write a 3000-byte value (over the 2048-byte quota)");

    check_rc(xs_write_str(XBT_NULL, pj(base, "b/c/d"), "deep"), 0,
             "write %s/b/c/d (parents missing)", base);
    check_rc(xs_read(XBT_NULL, pj(base, "b"), val, sizeof(val)), 0, "parent b created, empty");
    check_rc(xs_read(XBT_NULL, pj(base, "b/c"), val, sizeof(val)), 0, "parent b/c created, empty");
    read_is(XBT_NULL, pj(base, "b/c/d"), "deep");
    check_rc(xs_mkdir(XBT_NULL, pj(base, "dir")), 0, "mkdir %s/dir", base);
    check_rc(xs_mkdir(XBT_NULL, pj(base, "dir")), 0, "mkdir of an existing node");
    check_rc(xs_read(XBT_NULL, pj(base, "dir"), val, sizeof(val)), 0, "the new node is empty");

    static const char *const kids[] = { "a", "abs", "empty", "bin", "big", "b", "dir" };
    rc = xs_directory(XBT_NULL, base, dir, sizeof(dir));
    check_rc(rc, (long)ARRAY_SIZE(kids), "directory %s: %u children", base,
             (unsigned int)ARRAY_SIZE(kids));
    bool all = true;
    for (unsigned int i = 0; i < ARRAY_SIZE(kids); i++)
        all &= xs_dir_contains(dir, rc, kids[i]);
    check(rc > 0 && all, "directory lists a abs empty bin big b dir");
    check_rc(xs_directory(XBT_NULL, pj(base, "a"), dir, sizeof(dir)), 0,
             "directory of a leaf: no children");
    rc = xs_directory(XBT_NULL, pj(base, "b"), dir, sizeof(dir));
    check(rc == 1 && !strcmp(dir, "c"), "directory %s/b = [c] (%ld)", base, rc);
    check_rc(xs_read(XBT_NULL, pj(base, "nope"), val, sizeof(val)), -XEN_ENOENT,
             "read a missing node");
    check_rc(xs_directory(XBT_NULL, pj(base, "nope"), dir, sizeof(dir)), -XEN_ENOENT,
             "directory of a missing node");

    check_rc(xs_rm(XBT_NULL, pj(base, "b")), 0, "rm %s/b (a subtree)", base);
    check_rc(xs_read(XBT_NULL, pj(base, "b/c/d"), val, sizeof(val)), -XEN_ENOENT,
             "its grandchild is gone");
    check_rc(xs_directory(XBT_NULL, base, dir, sizeof(dir)), (long)ARRAY_SIZE(kids) - 1,
             "directory %s after the rm", base);
    check_rc(xs_rm(XBT_NULL, pj(base, "nope")), 0, "rm of a missing node");
    check_rc(xs_rm(XBT_NULL, pj(base, "nope/deeper")), -XEN_ENOENT,
             "rm of a node whose parent is missing");

    check_rc(xs_read(XBT_NULL, pj(base, "bad path"), val, sizeof(val)), -XEN_EINVAL,
             "path with a space");
    check_rc(xs_read(XBT_NULL, pj(base, "/x"), val, sizeof(val)), -XEN_EINVAL,
             "path with \"//\"");
    check_rc(xs_write_str(XBT_NULL, pj(base, "x/"), "1"), -XEN_EINVAL, "path ending in \"/\"");
}

/* ---- 4 ---- */

static void print_perms(const char *what, const struct xs_perm *p, long n)
{
    char line[160];
    size_t len = 0;
    line[0] = '\0';
    for (long i = 0; i < n && i < 8; i++)
        len += (size_t)snprintf(line + len, sizeof(line) - len, "%s%c%u", i ? " " : "",
                                p[i].perm, (unsigned int)p[i].domid);
    printf("perms of %s: %s\n", what, line);
}

static void part_perms(void)
{
    struct xs_perm p[8];
    long n, rc;
    char other[32];
    long other_id = (long)cmdline_get_u64("other", (unsigned long long)domid + 1);
    snprintf(other, sizeof(other), "/local/domain/%ld", other_id);

    n = xs_get_perms(XBT_NULL, pj(base, "a"), p, ARRAY_SIZE(p));
    if (check(n >= 1, "get_perms %s/a: %ld entries", base, n)) {
        print_perms(pj(base, "a"), p, n);
        check_eq(p[0].domid, (unsigned long long)domid, "we own the node we created");
    }
    const struct xs_perm set[2] = { { (uint32_t)domid, 'r' }, { 0, 'w' } };
    check_rc(xs_set_perms(XBT_NULL, pj(base, "a"), set, 2), 0, "set_perms %s/a to r%ld w0",
             base, domid);
    n = xs_get_perms(XBT_NULL, pj(base, "a"), p, ARRAY_SIZE(p));
    check(n == 2 && p[0].domid == (uint32_t)domid && p[0].perm == 'r' && p[1].domid == 0 &&
              p[1].perm == 'w', "get_perms reads back r%ld w0 (%ld entries)", domid, n);
    read_is(XBT_NULL, pj(base, "a"), "hello, world");   /* the owner may still read */
    const struct xs_perm own[1] = { { (uint32_t)domid, 'n' } };
    check_rc(xs_set_perms(XBT_NULL, pj(base, "a"), own, 1), 0, "set_perms back to n%ld", domid);

    n = xs_get_perms(XBT_NULL, dompath, p, ARRAY_SIZE(p));
    if (n > 0)
        print_perms(dompath, p, n);
    else
        note("get_perms %s -> %s", dompath, xen_errno_name(n));

    check_rc(xs_write_str(XBT_NULL, "/local/domain/0/pyxen-test", "x"), -XEN_EACCES,
             "write under /local/domain/0");
    check_rc(xs_read(XBT_NULL, "/local/domain/0", val, sizeof(val)), -XEN_EACCES,
             "read /local/domain/0");
    check_rc(xs_read(XBT_NULL, "/local/domain/0/name", val, sizeof(val)), -XEN_EACCES,
             "read /local/domain/0/name");
    check_rc(xs_write_str(XBT_NULL, pj(other, "pyxen-test"), "x"), -XEN_EACCES,
             "write under %s (another domain)", other);
    check_rc(xs_read(XBT_NULL, pj(other, "name"), val, sizeof(val)), -XEN_EACCES,
             "read %s/name", other);
    check_rc(xs_directory(XBT_NULL, "/local/domain", val, sizeof(val)), -XEN_EACCES,
             "directory /local/domain");
    check_rc(xs_write_str(XBT_NULL, "pyxen-forbidden", "x"), -XEN_EACCES,
             "write %s/pyxen-forbidden (our domain directory is dom0's)", dompath);
    const struct xs_perm grab[1] = { { (uint32_t)domid, 'b' } };
    check_rc(xs_set_perms(XBT_NULL, "domid", grab, 1), -XEN_EACCES,
             "set_perms on %s/domid (owned by dom0)", dompath);
    /* Giving the node away: 4.10 behaviour not pinned down, only shown. */
    const struct xs_perm give[1] = { { 0, 'b' } };
    rc = xs_set_perms(XBT_NULL, pj(base, "abs"), give, 1);
    note("set_perms %s/abs to owner 0 -> %s", base, xen_errno_name(rc));
}

/* ---- 5 ---- */

/* Reads events until one matches (path, token); others are shown as notes. */
static bool expect_event(const char *path, const char *token, const char *what)
{
    char p[512], t[64];
    for (int extra = 0; extra < 8; extra++) {
        long rc = xs_read_watch(p, sizeof(p), t, sizeof(t), 2 * NS_PER_SEC);
        if (rc < 0)
            return check(false, "watch event for %s (%s %s): %s", what, path, token,
                         xen_errno_name(rc));
        if (!strcmp(p, path) && !strcmp(t, token))
            return check(true, "watch event for %s: %s %s", what, p, t);
        note("other watch event: %s %s", p, t);
    }
    return check(false, "watch event for %s: not among the next 8", what);
}

static void expect_no_event(uint64_t ns, const char *what)
{
    char p[512], t[64];
    long rc = xs_read_watch(p, sizeof(p), t, sizeof(t), ns);
    if (rc == 0)
        check(false, "no watch event %s (got %s %s)", what, p, t);
    else
        check_rc(rc, -XEN_ETIME, "no watch event %s", what);
}

static void part_watches(void)
{
    char w[160], t[160], aw[320], at[320];
    snprintf(w, sizeof(w), "%s/w", base);
    snprintf(t, sizeof(t), "%s/t", base);
    snprintf(aw, sizeof(aw), "%s/x", abase);
    snprintf(at, sizeof(at), "%s/v", t);

    xs_flush_watches();
    check_rc(xs_watch(w, "tok-rel"), 0, "watch %s (missing node) token tok-rel", w);
    expect_event(w, "tok-rel", "the registration");
    check_rc(xs_write_str(XBT_NULL, pj(w, "child"), "1"), 0, "write %s/child", w);
    expect_event(pj(w, "child"), "tok-rel", "a child write");
    check_rc(xs_write_str(XBT_NULL, w, "x"), 0, "write %s", w);
    expect_event(w, "tok-rel", "a write of the node");
    check_rc(xs_rm(XBT_NULL, w), 0, "rm %s", w);
    expect_event(w, "tok-rel", "the rm");

    check_rc(xs_watch(aw, "tok-abs"), 0, "watch %s (absolute) token tok-abs", aw);
    expect_event(aw, "tok-abs", "the registration");
    check_rc(xs_write_str(XBT_NULL, pj(base, "x"), "1"), 0, "write %s/x (relative)", base);
    expect_event(aw, "tok-abs", "an absolute watch: absolute path");
    check_rc(xs_watch(aw, "tok-abs"), -XEN_EEXIST, "the same watch again");

    check_rc(xs_unwatch(w, "tok-rel"), 0, "unwatch %s", w);
    check_rc(xs_unwatch(aw, "tok-abs"), 0, "unwatch %s", aw);
    check_rc(xs_unwatch(aw, "tok-abs"), -XEN_ENOENT, "unwatch it again");
    xs_write_str(XBT_NULL, w, "again");
    xs_write_str(XBT_NULL, pj(base, "x"), "2");
    expect_no_event(300 * NS_PER_MS, "after unwatch (300 ms)");

    uint32_t tx = 0;
    check_rc(xs_watch(t, "tok-tx"), 0, "watch %s token tok-tx", t);
    expect_event(t, "tok-tx", "the registration");
    long trc = xs_transaction_start(&tx);
    if (check_rc(trc, 0, "transaction start (id %u)", tx)) {
        check_rc(xs_write_str(tx, at, "in-tx"), 0, "write %s inside the transaction", at);
        expect_no_event(300 * NS_PER_MS, "before the commit (300 ms)");
        check_rc(xs_transaction_end(tx, true), 0, "commit");
        expect_event(at, "tok-tx", "the commit");
    }
    check_rc(xs_unwatch(t, "tok-tx"), 0, "unwatch %s", t);
    xs_flush_watches();
}

/* ---- 6 ---- */

static void part_transactions(void)
{
    uint32_t tx = 0;
    char dir[1024];
    long rc;
    const char *t1 = pj(base, "t1"), *t2 = pj(base, "t2"), *c = pj(base, "c");

    if (check_rc(xs_transaction_start(&tx), 0, "transaction start")) {
        check(tx != 0, "transaction id %u is not 0", tx);
        check_rc(xs_write_str(tx, t1, "x"), 0, "write %s in T", t1);
        check_rc(xs_read(XBT_NULL, t1, val, sizeof(val)), -XEN_ENOENT,
                 "outside T it does not exist yet");
        read_is(tx, t1, "x");
        rc = xs_directory(tx, base, dir, sizeof(dir));
        check(rc > 0 && xs_dir_contains(dir, rc, "t1"), "directory in T lists t1");
        check_rc(xs_transaction_end(tx, true), 0, "commit");
        read_is(XBT_NULL, t1, "x");
    }
    if (check_rc(xs_transaction_start(&tx), 0, "transaction start")) {
        check_rc(xs_write_str(tx, t2, "y"), 0, "write %s in T", t2);
        check_rc(xs_transaction_end(tx, false), 0, "abort");
        check_rc(xs_read(XBT_NULL, t2, val, sizeof(val)), -XEN_ENOENT, "the write was dropped");
    }

    check_rc(xs_write_str(XBT_NULL, c, "0"), 0, "write %s = 0", c);
    if (check_rc(xs_transaction_start(&tx), 0, "transaction start (conflict)")) {
        read_is(tx, c, "0");
        check_rc(xs_write_str(XBT_NULL, c, "outside"), 0, "write %s outside T", c);
        check_rc(xs_write_str(tx, c, "inside"), 0, "write %s inside T", c);
        check_rc(xs_transaction_end(tx, true), -XEN_EAGAIN, "commit after the conflict");
        read_is(XBT_NULL, c, "outside");
    }
    if (check_rc(xs_transaction_start(&tx), 0, "transaction start (retry)")) {
        read_is(tx, c, "outside");
        check_rc(xs_write_str(tx, c, "inside"), 0, "write %s inside T", c);
        check_rc(xs_transaction_end(tx, true), 0, "commit without interference");
        read_is(XBT_NULL, c, "inside");
    }

    check_rc(xs_read(0x7fffffffu, c, val, sizeof(val)), -XEN_ENOENT,
             "read with an unknown transaction id");
    check_rc(xs_transaction_end(0x7fffffffu, true), -XEN_ENOENT,
             "end of an unknown transaction");

    uint32_t open[24];
    unsigned int n = 0;
    rc = 0;
    while (n < ARRAY_SIZE(open) && (rc = xs_transaction_start(&open[n])) == 0)
        n++;
    check_rc(rc, -XEN_ENOSPC, "transaction quota: start number %u refused", n + 1);
    check(n >= 10 && n <= 11, "%u transactions open at once (quota 10)", n);
    bool ended = true;
    for (unsigned int i = 0; i < n; i++)
        ended &= xs_transaction_end(open[i], false) == 0;
    check(ended, "all %u aborted", n);
    if (check_rc(xs_transaction_start(&tx), 0, "a transaction starts again"))
        xs_transaction_end(tx, false);
}

/* ---- 7 ---- */

static void part_bad(void)
{
    uint32_t type = 0;
    size_t len = 0;
    long rc;

    rc = xs_raw(99, XBT_NULL, "", 1, val, sizeof(val), &len, &type);
    check(type == XS_ERROR && (rc == -XEN_ENOSYS || rc == -XEN_EINVAL),
          "unknown message type 99 -> ERROR \"%s\" (ENOSYS in C xenstored)",
          type == XS_ERROR ? val : xen_errno_name(rc));
    check_rc(xs_raw(XS_READ, XBT_NULL, "abc", 3, val, sizeof(val), NULL, NULL), -XEN_EINVAL,
             "READ whose path has no NUL");
    check_rc(xs_raw(XS_READ, XBT_NULL, "", 0, val, sizeof(val), NULL, NULL), -XEN_EINVAL,
             "READ with an empty payload");
    check_rc(xs_raw(XS_WRITE, XBT_NULL, "nonul", 5, val, sizeof(val), NULL, NULL), -XEN_EINVAL,
             "WRITE without a NUL after the path");

    static char longpath[3200];
    size_t l = (size_t)snprintf(longpath, sizeof(longpath), "%s", abase);
    while (l < 3100)
        l += (size_t)snprintf(longpath + l, sizeof(longpath) - l, "/abcdefghijklmnop");
    check_rc(xs_read(XBT_NULL, longpath, val, sizeof(val)), -XEN_EINVAL,
             "read of a %u-byte absolute path (max 3072)", (unsigned int)l);

    /* domid\0mfn\0port\0 */
    char intro[48];
    int il = snprintf(intro, sizeof(intro), "%ld", domid + 1) + 1;
    il += snprintf(intro + il, sizeof(intro) - (size_t)il, "%u", 0xfeffcu) + 1;
    il += snprintf(intro + il, sizeof(intro) - (size_t)il, "%u", 1u) + 1;
    check_rc(xs_raw(XS_INTRODUCE, XBT_NULL, intro, (size_t)il, val, sizeof(val), NULL, NULL),
             -XEN_EACCES, "INTRODUCE from a domU");
    il = snprintf(intro, sizeof(intro), "%ld", domid + 1);
    check_rc(xs_raw(XS_RELEASE, XBT_NULL, intro, (size_t)il + 1, val, sizeof(val), NULL, NULL),
             -XEN_EACCES, "RELEASE from a domU");
    /* The connection still works. */
    read_is(XBT_NULL, pj(base, "c"), "inside");
}

/* ---- 8 ---- */

static void part_quota(void)
{
    char path[64];
    long rc = 0;
    unsigned int n;
    const char *q = pj(base, "q");

    /* 50 children per directory: a node's record holds its children's names
     * and is itself limited to 2048 bytes, which a flat directory would hit
     * (ENOSPC for the record size) long before the node count. */
    unsigned int nodes = 0;
    for (n = 0; n < 1200; n++) {
        snprintf(path, sizeof(path), "%s/g%u/n%u", q, n / 50, n % 50);
        if ((rc = xs_write_str(XBT_NULL, path, "1")) < 0)
            break;
        nodes += n % 50 ? 1 : (n ? 2 : 3);     /* first write creates q and g0 too */
    }
    check_rc(rc, -XEN_ENOSPC, "node quota: write number %u refused", n + 1);
    check(nodes >= 900 && nodes <= 1000, "%u nodes created under %s (quota 1000 per domain)",
          nodes, q);
    check_rc(xs_rm(XBT_NULL, q), 0, "rm %s", q);

    for (n = 0; n < 200; n++) {
        snprintf(path, sizeof(path), "%s/qw%u", base, n);
        if ((rc = xs_watch(path, "q")) < 0)
            break;
    }
    check_rc(rc, -XEN_E2BIG, "watch quota: watch number %u refused", n + 1);
    check(n >= 100 && n <= 129, "%u watches registered (quota 128)", n);
    bool ok = true;
    for (unsigned int i = 0; i < n; i++) {
        snprintf(path, sizeof(path), "%s/qw%u", base, i);
        ok &= xs_unwatch(path, "q") == 0;
    }
    check(ok, "all %u unwatched", n);
    note("%u watch events dropped from the client's queue (expected: it holds %u)",
         xs_stats.watch_dropped, XS_WATCH_QUEUE);
    xs_flush_watches();
}

void test_main(void)
{
    if (!xen_present)
        test_skip("needs Xen and xenstored (the xenstore ring)");

    part_setup();
    if (!cmdline_get("base", base, sizeof(base)) || !base[0])
        snprintf(base, sizeof(base), "data/pyxen-test");
    part_identity();
    snprintf(abase, sizeof(abase), "%s/%s", dompath, base);
    printf("test subtree: %s (%s)\n", base, abase);

    part_nodes();
    part_perms();
    part_watches();
    part_transactions();
    part_bad();
    if (cmdline_get_u64("quota", 0))
        part_quota();
    else
        skip_part("node and watch quotas (quota=1 runs them)");

    check_rc(xs_rm(XBT_NULL, base), 0, "rm %s (clean-up)", base);
    check_rc(xs_read(XBT_NULL, base, val, sizeof(val)), -XEN_ENOENT, "the subtree is gone");
    printf("xenstore client: requests=%u replies=%u errors=%u stale=%u watch_events=%u "
           "dropped=%u timeouts=%u notifies=%u port_events=%u\n",
           xs_stats.requests, xs_stats.replies, xs_stats.errors, xs_stats.stale,
           xs_stats.watch_events, xs_stats.watch_dropped, xs_stats.timeouts, xs_stats.notifies,
           xs_stats.port_events);
    check_eq(xs_stats.timeouts, 0, "no request timed out");
    check_eq(xs_stats.stale, 0, "no reply without a request");
    test_pass();
}
