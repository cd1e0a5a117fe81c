/*
 * test-pvconsole: the PV console ring (CONSOLE_PFN / CONSOLE_EVTCHN) with a
 * console daemon on the other side.  Needs Xen (SKIP without it).
 *
 * The cfg passes `console=pv`, so everything, banner included, goes through
 * the ring; if the SDK chose another console the test switches to the ring
 * after a note.
 *
 *   1. pvcons_init: the ring page and port from the HVM params; the indexes
 *      are printed;
 *   2. `lines` (default 64) lines of 96 bytes each:
 *          line NNNN/TTTT <80 letters>\n
 *      where letter j (0..79) of line N (1-based) is 'a' + (N * 7 + j) % 26;
 *      64 lines are 6144 bytes, three times the 2048-byte `out` ring, so the
 *      writer has to wait for the daemon (stalls are counted);
 *   3. checks: nothing dropped, out_prod advanced by exactly the bytes we
 *      wrote, the ring wrapped, and the daemon consumed everything
 *      (out_cons == out_prod within 5 s);
 *   4. expect_input=1: prints `READY for input: type a line and press
 *      Enter`, reads one line from `in` (ended by CR or LF, up to input_ms,
 *      default 60000) and prints `echo: <line>`; with expect_input=0 (the
 *      default) this part is skipped.
 */
#include "sdk.h"

const char test_title[] = "test-pvconsole: PV console ring output (wrapping) and input";

#define LINE_LETTERS 80

void test_main(void)
{
    if (!xen_present)
        test_skip("needs Xen (the PV console ring)");
    long rc = pvcons_init();
    if (!check_rc(rc, 0, "pvcons_init: CONSOLE_PFN %#llx, CONSOLE_EVTCHN %u",
                  (unsigned long long)pvcons_pfn, pvcons_port))
        test_fail("no PV console (%s)", xen_errno_name(rc));
    if (console_backend != CONSOLE_XEN_PV_RING) {
        note("the console is %s: switching to the PV ring (cmdline console=pv avoids this)",
             console_backend_name());
        console_use_pv();
    }
    volatile struct xencons_interface *r = pvcons_ring;
    printf("pv console: pfn %#llx port %u out cons/prod %u/%u in cons/prod %u/%u\n",
           (unsigned long long)pvcons_pfn, pvcons_port, r->out_cons, r->out_prod, r->in_cons,
           r->in_prod);

    unsigned int lines = (unsigned int)cmdline_get_u64("lines", 64);
    uint32_t start_prod = r->out_prod;
    uint64_t start_bytes = pvcons_bytes_out;
    uint32_t start_stalls = pvcons_stalls;
    for (unsigned int n = 1; n <= lines; n++) {
        char letters[LINE_LETTERS + 1];
        for (unsigned int j = 0; j < LINE_LETTERS; j++)
            letters[j] = (char)('a' + (n * 7 + j) % 26);
        letters[LINE_LETTERS] = '\0';
        printf("line %04u/%04u %s\n", n, lines, letters);
    }
    uint64_t wrote = pvcons_bytes_out - start_bytes;
    uint32_t advanced = r->out_prod - start_prod;
    uint32_t stalls = pvcons_stalls - start_stalls;

    check_eq(pvcons_dropped, 0, "no bytes dropped (%llu written, %u stalls on a full ring)",
             (unsigned long long)wrote, stalls);
    check_eq(advanced, (uint32_t)wrote, "out_prod advanced by the bytes written");
    check(wrote > XENCONS_OUT_SIZE || lines < 64, "the %u-byte out ring wrapped (%llu bytes)",
          XENCONS_OUT_SIZE, (unsigned long long)wrote);
    note("%u notifications so far", pvcons_notifies);
    uint64_t t0 = xen_now();
    bool drained = pvcons_flush(5 * NS_PER_SEC);
    uint64_t flush_us = udivmod64(xen_now() - t0, 1000, NULL);
    uint32_t cons = r->out_cons, prod = r->out_prod;
    note("waited %llu us for the daemon to drain `out`", (unsigned long long)flush_us);
    check(drained, "the console daemon consumed everything (out_cons %u == out_prod %u)",
          cons, prod);

    if (cmdline_get_u64("expect_input", 0)) {
        uint64_t input_ms = cmdline_get_u64("input_ms", 60000);
        char line[256];
        printf("READY for input: type a line and press Enter\n");
        pvcons_flush(2 * NS_PER_SEC);
        rc = pvcons_read_line(line, sizeof(line), input_ms * NS_PER_MS);
        if (check(rc >= 0, "a line arrived on `in` within %llu ms (%s)",
                  (unsigned long long)input_ms, rc >= 0 ? "ok" : xen_errno_name(rc)))
            printf("echo: %s\n", line);
        note("%llu input bytes read; in cons/prod %u/%u", (unsigned long long)pvcons_bytes_in,
             r->in_cons, r->in_prod);
    } else {
        skip_part("console input (expect_input=1 reads a line)");
    }
    test_pass();
}
