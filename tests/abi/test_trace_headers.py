"""The xentrace record format and event ids (sched/trace.py) against Xen's public
<xen/trace.h>: a C program fills a struct t_rec through its bitfields and prints
the bytes and the macro values; ours must produce the same."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from pyxen.hypervisor.sched import trace

# (macro in trace.h, our value)
IDS = {name: getattr(trace, name) for name in dir(trace)
       if name.startswith(("TRC_SCHED", "TRC_GEN", "TRC_LOST", "TRC_TRACE_"))
       and isinstance(getattr(trace, name), int) and not name.startswith("TRC_CSCHED")}

PROGRAM = r"""
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include <xen/xen.h>
#include <xen/trace.h>
static void dump(const struct t_rec *r, unsigned n) {
    const unsigned char *p = (const unsigned char *)r;
    for (unsigned i = 0; i < n; i++) printf("%02x", p[i]);
    printf("\n");
}
int main(void) {
    struct t_rec r;
    memset(&r, 0, sizeof r);
    r.event = TRC_SCHED_SWITCH; r.extra_u32 = 3; r.cycles_included = 1;
    r.u.cycles.cycles_lo = 0x11223344; r.u.cycles.cycles_hi = 0x55667788;
    r.u.cycles.extra_u32[0] = 1; r.u.cycles.extra_u32[1] = 2; r.u.cycles.extra_u32[2] = 3;
    dump(&r, 4 + 8 + 12);
    memset(&r, 0, sizeof r);
    r.event = TRC_SCHED_WAKE; r.extra_u32 = 1; r.cycles_included = 0;
    r.u.nocycles.extra_u32[0] = 0x00020001;
    dump(&r, 4 + 4);
    printf("csched2_burn %u\n", (unsigned)TRC_SCHED_CLASS_EVT(CSCHED2, 3));
    printf("snull_pick %u\n", (unsigned)TRC_SCHED_CLASS_EVT(SNULL, 1));
@PRINTS@
    return 0;
}
"""


@pytest.fixture(scope="module")
def header_values(tmp_path_factory):
    if shutil.which("gcc") is None:
        pytest.fail("gcc is required to check the trace format against Xen's headers")
    d = tmp_path_factory.mktemp("trace_h")
    prints = "\n".join(f'    printf("{n} %lu\\n", (unsigned long)({n}));' for n in sorted(IDS))
    (d / "t.c").write_text(PROGRAM.replace("@PRINTS@", prints))
    subprocess.run(["gcc", "-std=gnu11", "-w", "-D__XEN_TOOLS__", "-o", str(d / "t"),
                    str(d / "t.c")], check=True, capture_output=True, text=True)
    out = subprocess.run([str(d / "t")], check=True, capture_output=True, text=True).stdout
    lines = out.splitlines()
    values = dict(line.split() for line in lines[2:])
    return lines[0], lines[1], {k: int(v) for k, v in values.items()}


def test_record_with_tsc_is_t_rec(header_values):
    with_tsc, _, _ = header_values
    ours = trace.encode_record(trace.TRC_SCHED_SWITCH, (1, 2, 3), tsc=0x5566778811223344)
    assert ours.hex() == with_tsc


def test_record_without_tsc_is_t_rec(header_values):
    _, without_tsc, _ = header_values
    ours = trace.encode_record(trace.TRC_SCHED_WAKE, (trace.unit_word(2, 1),))
    assert ours.hex() == without_tsc


def test_event_ids_match_the_header(header_values):
    _, _, values = header_values
    assert len(IDS) >= 25
    for name, ours in IDS.items():
        assert values[name] == ours, name
    assert values["csched2_burn"] == trace.TRC_CSCHED2_CREDIT_BURN
    assert values["snull_pick"] == trace.sched_class_evt(trace.TRC_SCHED_SNULL, 1)
