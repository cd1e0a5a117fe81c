"""The core ABI (events, time, timers, grants, memory ops, SMP) exercised by real
guest code: the guests in guests/test-{events,time,smp,gntpeer,gntdeny,evfuzz}."""

from __future__ import annotations

import hashlib
import re
import statistics

import pytest
from guestrun import MMU_MODES, run_guest
from multidomain import MultiHost


def _passed(run, peer=None) -> None:
    failures = [line for line in run.console if line.startswith("FAIL")]
    # A two-domain failure is only readable with what the other side saw.
    peer_tail = ["--- the peer:"] + peer.console[-10:] if peer is not None else []
    assert run.result_line == "Test result: SUCCESS", "\n".join(
        failures + run.console[-15:] + run.xen[-15:] + peer_tail)


@pytest.mark.parametrize("mmu", MMU_MODES)
def test_event_channels_timers_poll_block(mmu):
    _passed(run_guest("test-events", xen_cmdline=f"vcpu_mmu={mmu}", timeout=120))


def test_pvclock_agrees_with_the_hypervisor_clock():
    """The guest brackets HVMOP_get_time (the hypervisor's NOW()) between two
    pvclock reads and needs the closest within 10 µs. Independently, each
    `pvclock <ns>` line is a console_io hypercall issued right after a clock
    read: the hypervisor's clock when it arrives is never earlier."""
    from pyxen.hypervisor.domain import Domain
    stamps: list[tuple[int, bytes]] = []
    orig = Domain.console_write

    def stamped(self, data: bytes) -> None:
        if data.startswith(b"pvclock "):
            stamps.append((self.hv.now(), data))
        orig(self, data)

    Domain.console_write = stamped
    try:
        run = run_guest("test-time", ("cmdline='samples=40 timers=20'",), timeout=120)
    finally:
        Domain.console_write = orig
    _passed(run)
    deltas = [host - int(re.match(rb"pvclock (\d+)", data).group(1)) for host, data in stamps]
    assert len(deltas) == 40
    assert min(deltas) >= -1_000, deltas           # the guest's clock is never ahead
    closest = next(line for line in run.console if line.startswith("get_time:"))
    assert int(re.search(r"closest=(\d+)", closest).group(1)) <= 10_000
    lateness = [line for line in run.console if line.startswith("timer lateness")]
    assert lateness, run.console[-10:]


def test_smp_guest_counts_exactly_and_routes_ipis():
    run = run_guest("test-smp", timeout=180)
    _passed(run)
    assert any("lock xadd: 4 vCPUs x 200000 increments" in line for line in run.console)


def _pair(server: str, client_args, *, xen_cmdline: str = "", timeout: float = 240.0,
          server_args: str = ""):
    host = MultiHost(xen_cmdline)
    try:
        peer = max(host.hv.domains) + 2          # the client's id-to-be (after the server)
        s = host.start(server, f"cmdline='role=server peer={peer} {server_args}'")
        ready = host.wait_line(s, r"READY (.*)")
        c = host.start(server, f"cmdline='role=client peer={s.domid} {ready.group(1)} "
                               f"{client_args}'")
        assert c.domid == peer
        return host, host.wait_all(timeout)
    except BaseException:
        host.close()
        raise


@pytest.mark.parametrize("mmu", MMU_MODES)
def test_two_domains_exchange_10000_messages_through_a_grant_and_a_channel(mmu):
    host, (server, client) = _pair("test-gntpeer", "", xen_cmdline=f"vcpu_mmu={mmu}")
    host.close()
    _passed(server, client)
    _passed(client, server)
    for run, role in ((server, "server"), (client, "client")):
        assert any(f"{role}: 10000 messages exchanged in order" in line
                   for line in run.console), run.console[-10:]


def test_what_a_domain_may_not_do_with_grants_and_ports():
    host, (server, client) = _pair("test-gntdeny", "")
    host.close()
    _passed(server, client)
    _passed(client, server)


def test_event_grant_memory_fuzzer_leaves_the_host_and_its_neighbour_alone():
    host = MultiHost()
    try:
        neighbour = host.start("hello")
        host.wait_all(60)          # hello powers off; its memory stays until destroyed
        d = host.hv.get_domain(neighbour.domid)
        assert d is not None
        before = _domain_digest(d)
        fuzz = host.start("test-evfuzz", f"cmdline='seed=11 calls=100000 "
                                         f"peer={neighbour.domid}'")
        host.guests.remove(neighbour)
        (run,) = host.wait_all(300)
        _passed(run)
        assert _domain_digest(d) == before
        assert fuzz.domid != neighbour.domid
        # The host is fine: another guest still boots and runs to completion.
        host.guests.clear()
        host.start("hello")
        (again,) = host.wait_all(60)
        assert again.status == 0
    finally:
        host.close()


def _domain_digest(d) -> str:
    """A digest of everything a domain owns: its memory, p2m, ports and grants."""
    h = hashlib.sha256()
    for gfn, e in d.p2m.entries():
        h.update(gfn.to_bytes(8, "little") + e.mfn.to_bytes(8, "little"))
        h.update(bytes(d.hv.machine.frame(e.mfn)))
    h.update(bytes(d.hv.machine.frame(d.shared_info_mfn)))
    h.update(repr(sorted((p, c.state, c.remote_domid, c.remote_port)
                         for p, c in d.evtchn.channels.items())).encode())
    return h.hexdigest()


def test_timer_lateness_is_reported_in_microseconds():
    """The guest's own measure of VIRQ_TIMER lateness (the benchmark tracks the
    p99 against the 1 ms requirement; here only sanity: none early, none absurd)."""
    run = run_guest("test-time", ("cmdline='samples=0 timers=100'",), timeout=120)
    _passed(run)
    line = next(line for line in run.console if line.startswith("timer lateness"))
    values = dict(re.findall(r"(\w+)=(\d+)", line))
    assert int(values["n"]) == 100
    assert int(values["min"]) >= 0
    assert statistics.median([int(values["min"]), int(values["avg"])]) < 5_000
