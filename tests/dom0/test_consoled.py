"""The Dom0 console daemon (pyxen/dom0/consoled.py) against the real hypervisor core.

No guest code runs: each test domain is created with XenCtrl, one of its pages
becomes the console ring and a port is allocated unbound for Dom0 (privileged
EVTCHNOP_alloc_unbound), as the domain builder does. The test then plays the
guest: it reads and writes the ring through its own foreign mapping and sends
on the guest's port with the domain's own event-channel table (what the
guest's EVTCHNOP_send does), so the daemon is woken through the real path:
Dom0's pending bit, Dom0's upcall, the event channel device, the handle's fd.
"""

from __future__ import annotations

import os
import random
import struct
import threading
import time

import pytest

from pyxen.abi import structs as S
from pyxen.abi.constants import EvtchnOp, EvtchnStat, Hypercall, Virq
from pyxen.dom0.consoled import (
    GONE,
    IN_SIZE,
    OUT_SIZE,
    RUNNING,
    STOPPED,
    ConsoleError,
    ConsoleService,
)
from pyxen.hypervisor.hypervisor import Hypervisor
from pyxen.toolstack.evtchn import EventChannelDevice
from pyxen.toolstack.privcmd import Privcmd
from pyxen.toolstack.xenctrl import XenCtrl

U32 = struct.Struct("<I")
L = S.XENCONS_INTERFACE
RING_GFN = 0xFEFFF
M32 = 0xFFFF_FFFF


@pytest.fixture
def host():
    hv = Hypervisor("loglvl=all")
    pc = Privcmd(hv)
    try:
        yield hv, pc
    finally:
        hv.shutdown_host()


@pytest.fixture
def lines():
    return []


@pytest.fixture
def service(host, tmp_path, lines):
    hv, pc = host
    svc = ConsoleService(pc, log_dir=str(tmp_path / "console"), log=lines.append)
    svc.start()
    try:
        yield svc
    finally:
        svc.stop()


def wait_for(cond, timeout: float = 5.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.002)


def evtchn_op(pc, cmd, layout, **fields):
    buf = pc.buffer(layout.pack(**fields))
    try:
        pc.hypercall(Hypercall.event_channel_op, cmd, buf.address)
        return layout.unpack(buf.data)
    finally:
        pc.release(buf)


class Guest:
    """The guest side of one console: a domain, its ring page and its port."""

    def __init__(self, hv, pc, *, out_start: int = 0, in_start: int = 0):
        self.hv = hv
        self.xc = XenCtrl(pc)
        self.domid = self.xc.domain_create(os.urandom(16))
        self.xc.domain_setmaxmem(self.domid, 1024)
        self.xc.populate_physmap_exact(self.domid, [RING_GFN])
        self.port = evtchn_op(pc, EvtchnOp.alloc_unbound, S.EVTCHN_ALLOC_UNBOUND,
                              dom=self.domid, remote_dom=0, port=0).port
        self.page = pc.map_foreign(self.domid, [RING_GFN])[0]
        for field, value in (("out_cons", out_start), ("out_prod", out_start),
                             ("in_cons", in_start), ("in_prod", in_start)):
            self.set(field, value)

    def get(self, field: str) -> int:
        return U32.unpack_from(self.page, L.offsetof(field))[0]

    def set(self, field: str, value: int) -> None:
        U32.pack_into(self.page, L.offsetof(field), value & M32)

    def notify(self) -> None:
        """EVTCHNOP_send on the guest's port, made with the guest domain's table."""
        self.hv.get_domain(self.domid).evtchn.send(self.port)

    def was_notified(self) -> bool:
        return self.hv.get_domain(self.domid).evtchn.is_pending(self.port)

    def put(self, data: bytes, timeout: float = 5.0) -> None:
        """Write console output like a guest driver: what fits, notify, wait for room."""
        data = bytes(data)
        while data:
            room = wait_for(lambda: OUT_SIZE - ((self.get("out_prod") - self.get("out_cons"))
                                                & M32), timeout, "room in out")
            chunk, data = data[:room], data[room:]
            prod = self.get("out_prod")
            for i, b in enumerate(chunk):
                self.page[L.offsetof("out") + ((prod + i) & (OUT_SIZE - 1))] = b
            self.set("out_prod", prod + len(chunk))
            self.notify()

    def take_input(self, max_bytes: int = IN_SIZE) -> bytes:
        """Consume what `in` holds (at most max_bytes), then notify like a guest."""
        cons, prod = self.get("in_cons"), self.get("in_prod")
        n = min((prod - cons) & M32, max_bytes)
        assert n <= IN_SIZE
        data = bytes(self.page[L.offsetof("in_") + ((cons + i) & (IN_SIZE - 1))]
                     for i in range(n))
        self.set("in_cons", cons + n)
        if n:
            self.notify()
        return data


def read_until(att, expected: bytes, timeout: float = 5.0) -> bytes:
    got = b""
    deadline = time.monotonic() + timeout
    while expected not in got:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out: {expected!r} not in {got[-200:]!r}")
        chunk = att.read(left)
        if chunk is None:
            raise AssertionError(f"end of console before {expected!r}; got {got[-200:]!r}")
        got += chunk
    return got


def log_text(tmp_path, name: str) -> bytes:
    path = tmp_path / "console" / f"guest-{name}.log"
    return path.read_bytes() if path.exists() else b""


# -- output ------------------------------------------------------------------------------
def test_output_is_consumed_logged_and_the_guest_notified(host, service, tmp_path):
    hv, pc = host
    g = Guest(hv, pc)
    g.put(b"early output, before the daemon knew the domain\n")
    service.add_domain(g.domid, "alpha", RING_GFN, g.port)
    wait_for(lambda: b"early output" in log_text(tmp_path, "alpha"), what="early output")
    g.put(b"hello\n")
    wait_for(lambda: log_text(tmp_path, "alpha").endswith(b"hello\n"), what="hello")
    assert g.get("out_cons") == g.get("out_prod")
    assert g.was_notified()
    assert service.backlog(g.domid).endswith(b"before the daemon knew the domain\nhello\n")
    assert service.state(g.domid) == RUNNING


def test_output_wraps_around_the_ring_and_the_u32_indices(host, service, tmp_path):
    hv, pc = host
    g = Guest(hv, pc, out_start=M32 - 700)          # free-running indices wrap past 2**32
    service.add_domain(g.domid, "wrap", RING_GFN, g.port)
    att = service.attach(g.domid)
    data = random.Random(9000).randbytes(9000)
    g.put(data)
    got = read_until(att, data[-64:])
    assert got == data
    wait_for(lambda: log_text(tmp_path, "wrap") == data, what="log")
    assert g.get("out_cons") == (M32 - 700 + 9000) & M32
    att.close()


def test_late_attach_sees_the_bounded_backlog(host, tmp_path, lines):
    hv, pc = host
    with ConsoleService(pc, log=lines.append, backlog_size=100) as svc:
        g = Guest(hv, pc)
        svc.add_domain(g.domid, "late", RING_GFN, g.port)
        text = b"".join(b"line %03d\n" % i for i in range(40))
        g.put(text)
        wait_for(lambda: svc.backlog(g.domid) == text[-100:], what="backlog")
        with svc.attach(g.domid) as att:
            assert read_until(att, text[-100:]) == text[-100:]
            g.put(b"live\n")
            assert read_until(att, b"live\n") == b"live\n"
    assert lines == []


def test_one_client_at_a_time(host, service):
    hv, pc = host
    g = Guest(hv, pc)
    service.add_domain(g.domid, "single", RING_GFN, g.port)
    first = service.attach(g.domid)
    with pytest.raises(ConsoleError, match="already attached"):
        service.attach(g.domid)
    first.close()
    with service.attach(g.domid) as second:
        g.put(b"to the second\n")
        read_until(second, b"to the second\n")


def test_client_that_does_not_read_never_stalls_the_daemon(host, service, tmp_path):
    hv, pc = host
    slow, other = Guest(hv, pc), Guest(hv, pc)
    service.add_domain(slow.domid, "slow", RING_GFN, slow.port)
    service.add_domain(other.domid, "other", RING_GFN, other.port)
    att = service.attach(slow.domid)                  # attached, never read
    blob = bytes(range(256)) * 4096                   # 1 MiB
    slow.put(blob, timeout=10.0)
    wait_for(lambda: len(log_text(tmp_path, "slow")) == len(blob), 10.0, "slow log")
    other.put(b"still served\n")
    wait_for(lambda: log_text(tmp_path, "other") == b"still served\n", what="other")
    # The client receives a bounded tail (older bytes dropped), never more than was sent.
    got = b""
    while (chunk := att.read(0.2)):
        got += chunk
    assert 0 < len(got) < len(blob) and blob.endswith(got[-4096:])
    att.close()


def test_log_timestamps_and_rename(host, tmp_path, lines):
    hv, pc = host
    with ConsoleService(pc, log_dir=str(tmp_path / "console"), log=lines.append,
                        timestamps=True) as svc:
        g = Guest(hv, pc)
        svc.add_domain(g.domid, "old", RING_GFN, g.port)
        g.put(b"one\ntw")
        g.put(b"o\n")
        wait_for(lambda: log_text(tmp_path, "old").count(b"\n") == 2, what="two lines")
        body = log_text(tmp_path, "old").decode()
        assert [ln.split("] ", 1)[1] for ln in body.splitlines()] == ["one", "two"]
        assert all(ln.startswith("[20") for ln in body.splitlines())
        svc.rename(g.domid, "new")
        g.put(b"three\n")
        wait_for(lambda: log_text(tmp_path, "new").endswith(b"three\n"), what="renamed log")
        assert b"three" not in log_text(tmp_path, "old")


# -- input ---------------------------------------------------------------------------------
def test_input_reaches_in_with_wrap_around_and_never_overruns(host, service):
    hv, pc = host
    g = Guest(hv, pc, in_start=M32 - 300)
    service.add_domain(g.domid, "keyboard", RING_GFN, g.port)
    att = service.attach(g.domid)
    data = random.Random(5000).randbytes(5000)
    att.write(data)
    got = b""
    deadline = time.monotonic() + 10
    while len(got) < len(data):
        assert time.monotonic() < deadline, f"only {len(got)} bytes arrived"
        used = (g.get("in_prod") - g.get("in_cons")) & M32
        assert used <= IN_SIZE                     # the daemon never overruns
        got += g.take_input(max_bytes=333)
        time.sleep(0.001)
    assert got == data
    assert g.get("in_prod") == (M32 - 300 + 5000) & M32
    att.close()


def test_input_waits_while_the_guest_does_not_consume(host, service):
    hv, pc = host
    g = Guest(hv, pc)
    service.add_domain(g.domid, "full", RING_GFN, g.port)
    with service.attach(g.domid) as att:
        att.write(b"x" * 3000)
        wait_for(lambda: g.get("in_prod") == IN_SIZE, what="a full ring")
        time.sleep(0.05)
        assert g.get("in_prod") == IN_SIZE and g.get("in_cons") == 0
        g.put(b"output still flows\n")                 # the same console's output
        read_until(att, b"output still flows\n")
        assert g.take_input() == b"x" * IN_SIZE        # room (with the notify) lets more in
        wait_for(lambda: g.get("in_prod") == 2 * IN_SIZE, what="second window")


# -- misbehaving guests -----------------------------------------------------------------------
@pytest.mark.parametrize("cons, prod", [(0, 0x10000), (100, 50), (0, M32)])
def test_bad_output_ring_stops_only_that_console(host, service, lines, tmp_path, cons, prod):
    hv, pc = host
    bad, good = Guest(hv, pc), Guest(hv, pc)
    service.add_domain(bad.domid, "bad", RING_GFN, bad.port)
    service.add_domain(good.domid, "good", RING_GFN, good.port)
    bad.set("out_cons", cons)
    bad.set("out_prod", prod)
    bad.notify()
    wait_for(lambda: service.state(bad.domid) == STOPPED, what="stopped")
    for _ in range(20):                                # its port stays masked: no flood
        bad.notify()
    good.put(b"unaffected\n")
    wait_for(lambda: log_text(tmp_path, "good") == b"unaffected\n", what="good console")
    assert len(lines) == 1 and f"domain {bad.domid} (bad)" in lines[0]
    assert "stopped" in lines[0] and "2048-byte ring" in lines[0]
    assert bad.get("out_cons") == cons                 # nothing was consumed
    # A stopped console keeps its backlog for a client and discards its input.
    with service.attach(bad.domid) as att:
        att.write(b"ignored")
        assert att.read(0.05) == b""
    assert bad.get("in_prod") == 0
    service.remove_domain(bad.domid)
    assert service.state(good.domid) == RUNNING


def test_bad_input_ring_stops_the_console(host, service, lines):
    hv, pc = host
    g = Guest(hv, pc)
    service.add_domain(g.domid, "badin", RING_GFN, g.port)
    g.set("in_cons", 500)                              # consumer ahead of the producer
    with service.attach(g.domid) as att:
        att.write(b"keys")
        wait_for(lambda: service.state(g.domid) == STOPPED, what="stopped")
    assert g.get("in_prod") == 0
    assert len(lines) == 1 and "bad input ring" in lines[0]


# -- life cycle --------------------------------------------------------------------------------
def _port_status(pc, domid: int, port: int) -> int:
    return evtchn_op(pc, EvtchnOp.status, S.EVTCHN_STATUS, dom=domid, port=port, status=0,
                     vcpu=0, u=bytes(8)).status


def test_remove_domain_flushes_unbinds_and_closes_the_client(host, service, tmp_path):
    hv, pc = host
    g = Guest(hv, pc)
    service.add_domain(g.domid, "gone", RING_GFN, g.port)
    assert _port_status(pc, g.domid, g.port) == EvtchnStat.interdomain
    att = service.attach(g.domid)
    # Output the guest produced without notifying is flushed by the removal.
    prod = g.get("out_prod")
    for i, b in enumerate(b"last words\n"):
        g.page[L.offsetof("out") + prod + i] = b
    g.set("out_prod", prod + 11)
    service.remove_domain(g.domid)
    assert log_text(tmp_path, "gone") == b"last words\n"
    assert read_until(att, b"last words\n") == b"last words\n"
    assert att.read(2.0) is None                         # end of file
    with pytest.raises(ConsoleError, match="has gone away|closed"):
        att.write(b"anyone?")
    assert _port_status(pc, g.domid, g.port) == EvtchnStat.unbound
    assert service.domains() == []
    with pytest.raises(ConsoleError, match="has no console"):
        service.attach(g.domid)
    # The guest's port is offered to Dom0 again: the console can come back.
    service.add_domain(g.domid, "gone", RING_GFN, g.port)
    g.put(b"back\n")
    wait_for(lambda: log_text(tmp_path, "gone").endswith(b"back\n"), what="back")
    att.close()


def test_a_destroyed_domain_closes_its_console(host, service, lines):
    hv, pc = host
    g, other = Guest(hv, pc), Guest(hv, pc)
    service.add_domain(g.domid, "doomed", RING_GFN, g.port)
    service.add_domain(other.domid, "other", RING_GFN, other.port)
    att = service.attach(g.domid)
    g.xc.domain_destroy(g.domid)
    service.kick(g.domid)
    wait_for(lambda: service.state(g.domid) == GONE, what="gone")
    assert att.read(2.0) is None
    assert any("is gone" in ln for ln in lines)
    with pytest.raises(ConsoleError, match="is gone"):
        service.attach(g.domid)
    service.remove_domain(g.domid)
    other.put(b"fine\n")
    with service.attach(other.domid) as a2:
        read_until(a2, b"fine\n")


def test_bad_requests_get_one_line_errors(host, service):
    hv, pc = host
    g = Guest(hv, pc)
    cases = [
        (lambda: service.add_domain(g.domid, "a/b", RING_GFN, g.port), "cannot name"),
        (lambda: service.add_domain(g.domid, "", RING_GFN, g.port), "non-empty"),
        (lambda: service.add_domain(999, "x", RING_GFN, g.port), "no such domain"),
        (lambda: service.add_domain(g.domid, "x", 0x1234, g.port), "not populated"),
        (lambda: service.add_domain(g.domid, "x", RING_GFN, g.port + 5), "not an unbound"),
        (lambda: service.attach(42), "has no console"),
        (lambda: service.remove_domain(42), "has no console"),
        (lambda: service.rename(42, "x"), "has no console"),
    ]
    for fn, text in cases:
        with pytest.raises(ConsoleError, match=text) as e:
            fn()
        assert "\n" not in str(e.value)
    assert service.domains() == []
    service.add_domain(g.domid, "x", RING_GFN, g.port)  # nothing was left half-done
    with pytest.raises(ConsoleError, match="already has a console"):
        service.add_domain(g.domid, "y", RING_GFN, g.port)


def test_unwritable_log_dir_is_refused_cleanly(host, tmp_path):
    hv, pc = host
    g = Guest(hv, pc)
    (tmp_path / "afile").write_text("")
    with ConsoleService(pc, log_dir=str(tmp_path / "afile"), log=lambda s: None) as svc:
        with pytest.raises(ConsoleError, match="cannot open console log"):
            svc.add_domain(g.domid, "x", RING_GFN, g.port)
        assert _port_status(pc, g.domid, g.port) == EvtchnStat.unbound
        assert svc.domains() == []


def test_close_wakes_a_reader_in_another_thread(host, service):
    hv, pc = host
    g = Guest(hv, pc)
    service.add_domain(g.domid, "r", RING_GFN, g.port)
    att = service.attach(g.domid)
    got = []
    reader = threading.Thread(target=lambda: got.append(att.read(None)))
    reader.start()
    time.sleep(0.05)
    att.close()
    reader.join(5.0)
    assert not reader.is_alive() and got == [None]


def test_stop_releases_everything(host, tmp_path):
    hv, pc = host
    g = Guest(hv, pc)
    svc = ConsoleService(pc, log_dir=str(tmp_path / "console"), log=lambda s: None)
    svc.add_domain(g.domid, "s", RING_GFN, g.port)    # before start: served once started
    g.put(b"queued\n")
    svc.start()
    att = svc.attach(g.domid)
    read_until(att, b"queued\n")
    svc.stop()
    assert att.read(2.0) is None
    assert _port_status(pc, g.domid, g.port) == EvtchnStat.unbound
    with pytest.raises(ConsoleError, match="stopped"):
        svc.attach(g.domid)
    svc.stop()                                         # idempotent


# -- the hypervisor console --------------------------------------------------------------------
def test_hypervisor_console_from_the_start_then_live(host, service):
    hv, pc = host
    att = service.attach_hypervisor()
    read_until(att, b"(XEN) pyxen ")                   # the boot line, from index 0
    domid = XenCtrl(pc).domain_create(bytes(16))
    read_until(att, f"Created domain {domid}\n".encode())
    with pytest.raises(ConsoleError, match="read-only"):
        att.write(b"x")
    with service.attach_hypervisor() as second:        # read-only: any number of readers
        read_until(second, f"Created domain {domid}\n".encode())
    att.close()


def test_hypervisor_console_when_another_dom0_user_holds_the_virq(host, service):
    hv, pc = host
    with EventChannelDevice.of(pc).open() as other:
        other.bind_virq(Virq.CON_RING)
        att = service.attach_hypervisor()
        read_until(att, b"(XEN) pyxen ")
        hv.log.info("a line after the attach")
        read_until(att, b"a line after the attach\n")
        att.close()


def test_concurrent_consoles(host, service, tmp_path):
    hv, pc = host
    guests = [Guest(hv, pc) for _ in range(4)]
    for i, g in enumerate(guests):
        service.add_domain(g.domid, f"c{i}", RING_GFN, g.port)
    texts = [b"".join(b"dom%d line %d\n" % (i, n) for n in range(300)) for i in range(4)]
    threads = [threading.Thread(target=g.put, args=(t,))
               for g, t in zip(guests, texts, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, t in enumerate(texts):
        wait_for(lambda i=i, t=t: log_text(tmp_path, f"c{i}") == t, what=f"console {i}")
