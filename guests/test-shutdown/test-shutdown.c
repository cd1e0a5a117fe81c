/*
 * test-shutdown: the guest side of the xenstore shutdown protocol.
 * Needs Xen and xenstored (SKIP without Xen).
 *
 * The toolstack asks for a shutdown by writing the request to
 * /local/domain/<domid>/control/shutdown ("poweroff" for `xl shutdown`,
 * "reboot" for `xl reboot`, "suspend" for `xl save`/migrate; "halt" and
 * "crash" are accepted too).  The guest watches that node; for a request it
 * knows it acknowledges by writing "" back, inside a transaction that also
 * read the request (retried on EAGAIN), and then calls SCHEDOP_shutdown with
 * the matching reason.  Unknown requests are left in place and ignored.
 *
 * Sequence:
 *   1. xs_init() (also sets the callback vector: libxl's "PV control
 *      available" test for HVM-type domains is CALLBACK_IRQ != 0);
 *   2. writes control/feature-poweroff = "1" and control/feature-reboot = "1"
 *      (and feature-suspend with suspend=1); failures are only notes;
 *   3. watches control/shutdown and prints
 *          READY: waiting for control/shutdown (up to <wait_ms> ms)
 *      (a request written before this line is seen too: the watch fires
 *      once at registration);
 *   4. for each event: `watch fired: control/shutdown = "<value>" (event
 *      path ..., token shutdown)`; an empty value is ignored; a request prints
 *          shutdown request: <value>
 *          ok: acknowledged "<value>" (control/shutdown cleared in a transaction)
 *          ok: control/shutdown reads "" after the acknowledgement ()
 *          SCHEDOP_shutdown(<reason>)
 *          Test result: SUCCESS
 *      and calls SCHEDOP_shutdown(poweroff | reboot | crash) (halt ->
 *      poweroff).  For "suspend" it prints `suspending`,
 *      calls SCHEDOP_shutdown(suspend) and, when that returns (resumed),
 *      prints `resumed: SCHEDOP_shutdown returned <rc>` and waits again.
 *   5. no request within wait_ms -> FAILURE.
 *
 * Command-line keys: wait_ms=N (default 60000), suspend=1.
 */
#include "sdk.h"

const char test_title[] = "test-shutdown: control/shutdown watch, acknowledgement, SCHEDOP_shutdown";

#define NODE "control/shutdown"

static const struct {
    const char *request;
    unsigned int reason;
} requests[] = {
    { "poweroff", SHUTDOWN_poweroff },
    { "halt", SHUTDOWN_poweroff },
    { "reboot", SHUTDOWN_reboot },
    { "suspend", SHUTDOWN_suspend },
    { "crash", SHUTDOWN_crash },
};

static const char *reason_name(unsigned int r)
{
    static const char *const names[] = { "poweroff", "reboot", "suspend", "crash", "watchdog" };
    return r < ARRAY_SIZE(names) ? names[r] : "?";
}

/* Reads the request and, if we know it, clears the node in the same
 * transaction.  Returns the index in requests[], -1 for nothing to do
 * (empty, missing or unknown; *value says which), or -2 on errors. */
static int take_request(char *value, size_t len)
{
    for (int attempt = 0; attempt < 20; attempt++) {
        uint32_t tx;
        long rc = xs_transaction_start(&tx);
        if (rc < 0) {
            check_rc(rc, 0, "transaction start");
            return -2;
        }
        rc = xs_read(tx, NODE, value, len);
        if (rc < 0) {
            xs_transaction_end(tx, false);
            note("read %s: %s", NODE, xen_errno_name(rc));
            value[0] = '\0';
            return -1;
        }
        int idx = -1;
        for (unsigned int i = 0; i < ARRAY_SIZE(requests); i++)
            if (!strcmp(value, requests[i].request))
                idx = (int)i;
        if (idx < 0) {
            xs_transaction_end(tx, false);
            return -1;
        }
        rc = xs_write(tx, NODE, "", 0);
        if (rc < 0) {
            xs_transaction_end(tx, false);
            check_rc(rc, 0, "write \"\" to %s", NODE);
            return -2;
        }
        rc = xs_transaction_end(tx, true);
        if (rc == -XEN_EAGAIN) {
            note("transaction conflict, retrying");
            continue;
        }
        if (rc < 0) {
            check_rc(rc, 0, "commit of the acknowledgement of \"%s\"", value);
            return -2;
        }
        return idx;
    }
    check(false, "acknowledgement kept conflicting (20 attempts)");
    return -2;
}

void test_main(void)
{
    char value[64], path[256], token[32];
    uint64_t wait_ms = cmdline_get_u64("wait_ms", 60000);
    long rc;

    if (!xen_present)
        test_skip("needs Xen and xenstored (control/shutdown)");
    rc = xs_init();
    if (!check_rc(rc, 0, "xs_init (store pfn %#llx, port %u)", (unsigned long long)xs_pfn,
                  xs_port))
        test_fail("no xenstore ring (%s)", xen_errno_name(rc));
    long domid = xen_own_domid();
    char dompath[64];
    if (xs_get_domain_path((uint32_t)domid, dompath, sizeof(dompath)) < 0)
        snprintf(dompath, sizeof(dompath), "(unknown)");
    printf("domid %ld, domain path %s\n", domid, dompath);

    static const char *const features[] = { "control/feature-poweroff",
                                            "control/feature-reboot",
                                            "control/feature-suspend" };
    for (unsigned int i = 0; i < ARRAY_SIZE(features); i++) {
        if (i == 2 && !cmdline_get_u64("suspend", 0))
            break;
        rc = xs_write_str(XBT_NULL, features[i], "1");
        note("write %s = \"1\" -> %s", features[i], xen_errno_name(rc));
    }

    rc = xs_watch(NODE, "shutdown");
    if (!check_rc(rc, 0, "watch %s", NODE))
        test_fail("cannot watch %s (%s)", NODE, xen_errno_name(rc));
    printf("READY: waiting for %s (up to %llu ms)\n", NODE, (unsigned long long)wait_ms);

    uint64_t deadline = xen_now() + wait_ms * NS_PER_MS;
    for (;;) {
        uint64_t now = xen_now();
        if (now >= deadline)
            test_fail("no shutdown request within %llu ms", (unsigned long long)wait_ms);
        rc = xs_read_watch(path, sizeof(path), token, sizeof(token), deadline - now);
        if (rc == -XEN_ETIME)
            continue;
        if (rc < 0)
            test_fail("waiting for the watch: %s", xen_errno_name(rc));
        int idx = take_request(value, sizeof(value));
        printf("watch fired: %s = \"%s\" (event path %s, token %s)\n", NODE, value, path, token);
        if (idx == -2)
            test_fail("could not acknowledge the request");
        if (idx == -1) {
            if (value[0])
                printf("ignoring unknown request \"%s\" (left in place)\n", value);
            continue;
        }
        unsigned int reason = requests[idx].reason;
        printf("shutdown request: %s\n", requests[idx].request);
        check(true, "acknowledged \"%s\" (control/shutdown cleared in a transaction)", value);
        rc = xs_read(XBT_NULL, NODE, value, sizeof(value));
        check(rc == 0, "control/shutdown reads \"\" after the acknowledgement (%s)",
              rc >= 0 ? value : xen_errno_name(rc));
        if (reason == SHUTDOWN_suspend) {
            printf("suspending: SCHEDOP_shutdown(suspend)\n");
            struct sched_shutdown s = { .reason = SHUTDOWN_suspend };
            rc = HYPERVISOR_sched_op(SCHEDOP_shutdown, &s);
            printf("resumed: SCHEDOP_shutdown returned %ld\n", rc);
            deadline = xen_now() + wait_ms * NS_PER_MS;
            continue;
        }
        xs_unwatch(NODE, "shutdown");
        if (test_failures())
            test_pass();                /* reports the failed checks */
        printf("SCHEDOP_shutdown(%s)\n", reason_name(reason));
        printf("Test result: SUCCESS\n");
        sdk_shutdown(reason);
    }
}
