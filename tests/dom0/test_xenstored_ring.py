"""Guest rings without a guest: the test plays the guest.

A domain is created with XenCtrl and given one page; the test puts the
xenstore ring in it (reached through privcmd.map_foreign, as a back-end would)
and allocates the guest's unbound port for Dom0. After INTRODUCE the daemon
serves that ring; the test writes requests into it and signals the daemon the
way the guest's EVTCHNOP_send would (the guest domain's event channel send).
"""

from __future__ import annotations

import random
import struct
import time

import pytest
from xsd_daemon import Daemon

from pyxen.abi import constants as C
from pyxen.abi.constants import XsType
from pyxen.dom0.xenstored import XsError
from pyxen.hypervisor.hypervisor import Hypervisor
from pyxen.toolstack.privcmd import Privcmd
from pyxen.toolstack.xenctrl import XenCtrl

HDR = struct.Struct("<IIII")
IDX = struct.Struct("<II")
REQ, RSP, REQ_CONS, RSP_CONS = 0, 1024, 2048, 2056
RING = 1024
STORE_GFN = C.special_pfn(C.SpecialPage.XENSTORE)


class GuestRing:
    """The guest's side of a xenstore ring."""

    def __init__(self, host: Host, domid: int, gfn: int, port: int):
        self.host = host
        self.domid = domid
        self.gfn = gfn
        self.port = port
        self.page = host.pc.map_foreign(domid, [gfn])[0]
        self.buf = bytearray()
        self.events: list[tuple[str, str]] = []
        self.next_req = 1

    def notify(self) -> None:
        self.host.hv.get_domain(self.domid).evtchn.send(self.port)

    def was_notified(self) -> bool:
        return self.host.hv.get_domain(self.domid).evtchn.is_pending(self.port)

    def put(self, data: bytes, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while data:
            cons, prod = IDX.unpack_from(self.page, REQ_CONS)
            space = RING - ((prod - cons) & 0xFFFFFFFF)
            if not space:
                assert time.monotonic() < deadline, "xenstored does not consume requests"
                time.sleep(0.001)
                continue
            n = min(space, len(data))
            for i in range(n):
                self.page[REQ + ((prod + i) & (RING - 1))] = data[i]
            struct.pack_into("<I", self.page, REQ_CONS + 4, (prod + n) & 0xFFFFFFFF)
            self.notify()
            data = data[n:]

    def send(self, mtype: int, payload: bytes, tx_id: int = 0, timeout: float = 5.0) -> int:
        req_id = self.next_req
        self.next_req += 1
        self.put(HDR.pack(mtype, req_id, tx_id, len(payload)) + payload, timeout)
        return req_id

    def get(self, timeout: float = 5.0) -> tuple[int, int, int, bytes]:
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 16:
                mtype, req_id, tx_id, length = HDR.unpack_from(self.buf)
                if len(self.buf) >= 16 + length:
                    body = bytes(self.buf[16:16 + length])
                    del self.buf[:16 + length]
                    return mtype, req_id, tx_id, body
            cons, prod = IDX.unpack_from(self.page, RSP_CONS)
            if cons == prod:
                assert time.monotonic() < deadline, "no reply from xenstored"
                time.sleep(0.001)
                continue
            for i in range((prod - cons) & 0xFFFFFFFF):
                self.buf.append(self.page[RSP + ((cons + i) & (RING - 1))])
            struct.pack_into("<I", self.page, RSP_CONS, prod)
            self.notify()

    def reply(self, req_id: int) -> tuple[int, bytes]:
        """The reply to `req_id`; watch events met on the way are kept in .events."""
        while True:
            mtype, rid, _tx, body = self.get()
            if mtype == XsType.WATCH_EVENT:
                path, token = body.split(b"\0")[:2]
                self.events.append((path.decode(), token.decode()))
            elif rid == req_id:
                return mtype, body

    def call(self, mtype: int, payload: bytes, tx_id: int = 0) -> bytes:
        rtype, body = self.reply(self.send(mtype, payload, tx_id))
        if rtype == XsType.ERROR:
            raise XsError(body.rstrip(b"\0").decode())
        assert rtype == mtype
        return body

    def wait_event(self, timeout: float = 5.0) -> tuple[str, str]:
        if not self.events:
            mtype, _rid, _tx, body = self.get(timeout)
            assert mtype == XsType.WATCH_EVENT
            path, token = body.split(b"\0")[:2]
            return path.decode(), token.decode()
        return self.events.pop(0)


class Host:
    def __init__(self):
        self.hv = Hypervisor("")
        self.pc = Privcmd(self.hv)
        self.xc = XenCtrl(self.pc)
        self.daemon = Daemon(privcmd=self.pc)
        self.dom0 = self.daemon.local()

    def new_guest(self, *, introduce: bool = True, home: bool = True) -> GuestRing:
        domid = self.xc.domain_create(bytes(16))
        self.xc.domain_setmaxmem(domid, 1024)
        self.xc.populate_physmap_exact(domid, [STORE_GFN])
        port = self.xc.evtchn_alloc_unbound(domid, 0)
        ring = GuestRing(self, domid, STORE_GFN, port)
        if home:
            self.dom0.mkdir(f"/local/domain/{domid}")
            self.dom0.set_perms(f"/local/domain/{domid}", [f"n{domid}"])
        if introduce:
            self.dom0.introduce(domid, STORE_GFN, port)
        return ring

    def close(self) -> None:
        self.daemon.close()
        self.hv.shutdown_host()


@pytest.fixture
def host():
    h = Host()
    try:
        yield h
    finally:
        h.close()


def _events(client, timeout=0.3):
    return [(e.path, e.token) for e in client.events(timeout)]


def _wait(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


def test_introduce_and_serve_requests(host):
    host.dom0.watch("@introduceDomain", "intro")
    assert _events(host.dom0) == [("@introduceDomain", "intro")]
    g = host.new_guest(introduce=False)
    IDX.pack_into(g.page, REQ_CONS, 7, 9)                  # stale indexes ...
    host.dom0.introduce(g.domid, g.gfn, g.port)
    assert IDX.unpack_from(g.page, REQ_CONS) == (0, 0)     # ... reset by INTRODUCE
    assert _events(host.dom0) == [("@introduceDomain", "intro")]
    assert host.dom0.is_introduced(g.domid)

    assert g.call(XsType.WRITE, b"data/x\0hello") == b"OK\0"
    assert g.was_notified()
    assert g.call(XsType.READ, b"data/x\0") == b"hello"
    assert g.call(XsType.READ, f"/local/domain/{g.domid}/data/x\0".encode()) == b"hello"
    g.call(XsType.MKDIR, b"data/y\0")
    assert g.call(XsType.DIRECTORY, b"data\0") == b"x\0y\0"
    assert g.call(XsType.GET_PERMS, b"data/x\0") == f"n{g.domid}\0".encode()
    assert g.call(XsType.GET_DOMAIN_PATH, f"{g.domid}\0".encode()) == \
        f"/local/domain/{g.domid}\0".encode()
    assert host.dom0.read(f"/local/domain/{g.domid}/data/x") == b"hello"
    with pytest.raises(XsError) as e:
        g.call(XsType.READ, b"/tool\0")
    assert e.value.name == "EACCES"
    with pytest.raises(XsError) as e:
        g.call(XsType.INTRODUCE, b"9\0001\0001\0")
    assert e.value.name == "EACCES"


def test_transaction_from_the_ring_forced_into_eagain(host):
    g = host.new_guest()
    g.call(XsType.WRITE, b"tx/n\0" + b"0")
    tx = int(g.call(XsType.TRANSACTION_START, b"\0").rstrip(b"\0"))
    assert g.call(XsType.READ, b"tx/n\0", tx) == b"0"
    g.call(XsType.WRITE, b"tx/other\0" + b"1", tx)
    host.dom0.write(f"/local/domain/{g.domid}/tx/n", "dom0 was here")
    with pytest.raises(XsError) as e:
        g.call(XsType.TRANSACTION_END, b"T\0", tx)
    assert e.value.name == "EAGAIN"
    assert not host.dom0.exists(f"/local/domain/{g.domid}/tx/other")
    tx = int(g.call(XsType.TRANSACTION_START, b"\0").rstrip(b"\0"))
    g.call(XsType.WRITE, b"tx/other\0" + b"2", tx)
    assert g.call(XsType.TRANSACTION_END, b"T\0", tx) == b"OK\0"
    assert host.dom0.read(f"/local/domain/{g.domid}/tx/other") == b"2"


def test_watch_from_the_ring(host):
    g = host.new_guest()
    g.call(XsType.WATCH, b"device\0tok\0")
    assert g.wait_event() == ("device", "tok")
    host.dom0.write(f"/local/domain/{g.domid}/device/vif/0/state", "1")
    assert g.wait_event() == ("device/vif/0/state", "tok")
    host.dom0.write("/not/for/the/guest", "1")
    g.call(XsType.UNWATCH, b"device\0tok\0")
    host.dom0.write(f"/local/domain/{g.domid}/device/vif/0/state", "2")
    g.call(XsType.READ, b"device/vif/0/state\0")       # a reply, and no event before it
    assert g.events == []


def test_messages_wrap_around_the_ring_and_pipeline(host):
    g = host.new_guest()
    for i in range(60):                                 # ~20 KiB through a 1 KiB ring
        value = bytes([65 + i % 26]) * (100 + 7 * i)
        assert g.call(XsType.WRITE, f"w/{i}\0".encode() + value) == b"OK\0"
        assert g.call(XsType.READ, f"w/{i}\0".encode()) == value
    ids = [g.send(XsType.READ, f"w/{i}\0".encode()) for i in range(5)]
    for i, rid in enumerate(ids):
        assert g.reply(rid) == (XsType.READ, bytes([65 + i % 26]) * (100 + 7 * i))


def test_guest_that_does_not_read_replies_does_not_block_others(host):
    g = host.new_guest()
    g.call(XsType.MKDIR, b"data\0")
    request = b"data\0"
    sent = []
    full_since = None
    while len(sent) < 500:                              # it never reads a reply
        cons, prod = IDX.unpack_from(g.page, REQ_CONS)
        if RING - ((prod - cons) & 0xFFFFFFFF) >= 16 + len(request):
            sent.append(g.send(XsType.DIRECTORY, request))
            full_since = None
        elif full_since is None:
            full_since = time.monotonic()
        elif time.monotonic() - full_since > 0.3:
            break                                       # xenstored stopped taking them
        else:
            time.sleep(0.01)
    assert len(sent) < 500, "xenstored kept taking requests whose replies pile up"
    for i in range(20):
        host.dom0.write("/still/serving", str(i))
    other = host.new_guest()
    assert other.call(XsType.READ, f"/local/domain/{other.domid}\0".encode()) == b""
    # Once the guest reads, everything is answered, in order.
    for rid in sent:
        assert g.reply(rid) == (XsType.DIRECTORY, b"")


def test_release_fires_release_domain(host):
    g = host.new_guest()
    host.dom0.watch("@releaseDomain", "rel")
    _events(host.dom0)
    host.dom0.release(g.domid)
    assert _events(host.dom0) == [("@releaseDomain", "rel")]
    assert not host.dom0.is_introduced(g.domid)
    g.send(XsType.READ, b"\0")                          # nobody serves the ring now
    time.sleep(0.1)
    assert IDX.unpack_from(g.page, RSP_CONS) == (0, 0)
    with pytest.raises(XsError) as e:
        host.dom0.release(g.domid)
    assert e.value.name == "ENOENT"


def test_domain_death_fires_release_domain(host):
    g = host.new_guest()
    host.dom0.watch("@releaseDomain", "rel")
    _events(host.dom0)
    host.xc.domain_destroy(g.domid)
    assert host.dom0.next_event(5) == ("@releaseDomain", "rel")
    _wait(lambda: not host.dom0.is_introduced(g.domid))


def test_bad_ring_index_releases_only_that_domain(host):
    good = host.new_guest()
    bad = host.new_guest()
    host.dom0.watch("@releaseDomain", "rel")
    _events(host.dom0)
    struct.pack_into("<I", bad.page, REQ_CONS + 4, 5000)    # req_prod far past req_cons
    bad.notify()
    assert host.dom0.next_event(5) == ("@releaseDomain", "rel")
    assert not host.dom0.is_introduced(bad.domid)
    assert host.dom0.is_introduced(good.domid)
    assert sum("ring unusable" in line for line in host.daemon.log) == 1
    assert good.call(XsType.WRITE, b"still\0fine") == b"OK\0"


def test_bad_response_index_and_oversized_message(host):
    a = host.new_guest()
    a.call(XsType.WRITE, b"x\0" + b"1")
    struct.pack_into("<I", a.page, RSP_CONS, 0x80000000)     # rsp_cons nonsense
    a.send(XsType.READ, b"x\0")
    _wait(lambda: not host.dom0.is_introduced(a.domid))
    b = host.new_guest()
    b.put(HDR.pack(XsType.WRITE, 1, 0, 5000))
    _wait(lambda: not host.dom0.is_introduced(b.domid))
    assert sum("ring unusable" in line for line in host.daemon.log) == 2
    host.dom0.write("/after", "ok")


def test_garbage_requests_on_the_ring_get_error_replies(host):
    g = host.new_guest()
    rng = random.Random(99)
    for _ in range(100):
        payload = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40)))
        rid = g.send(rng.randrange(0, 30), payload, rng.choice([0, 0, rng.getrandbits(32)]))
        mtype, _body = g.reply(rid)
    assert host.dom0.is_introduced(g.domid)
    assert g.call(XsType.WRITE, b"ok\0yes") == b"OK\0"
    assert not any("internal error" in line for line in host.daemon.log)


def test_introduce_errors_and_reintroduction(host):
    g = host.new_guest(introduce=False)
    with pytest.raises(XsError) as e:
        host.dom0.introduce(g.domid, 0x12345, g.port)          # not populated
    assert e.value.name == "EINVAL"
    with pytest.raises(XsError) as e:
        host.dom0.introduce(g.domid, g.gfn, 4000)             # no such port
    assert e.value.name == "EINVAL"
    host.dom0.introduce(g.domid, g.gfn, g.port)
    with pytest.raises(XsError) as e:
        host.dom0.introduce(g.domid, g.gfn + 1, g.port)       # another page
    assert e.value.name == "EINVAL"
    # Same page, new event channel: only the channel is re-bound.
    g.port = host.xc.evtchn_alloc_unbound(g.domid, 0)
    host.dom0.introduce(g.domid, g.gfn, g.port)
    assert g.call(XsType.WRITE, b"rebound\0yes") == b"OK\0"


def test_set_target_grants_the_target_domains_rights(host):
    dm = host.new_guest()          # e.g. a device-model stub domain
    vm = host.new_guest()
    host.dom0.write(f"/local/domain/{vm.domid}/secret", "s")
    host.dom0.set_perms(f"/local/domain/{vm.domid}/secret", [f"n{vm.domid}"])
    path = f"/local/domain/{vm.domid}/secret\0".encode()
    with pytest.raises(XsError):
        dm.call(XsType.READ, path)
    host.dom0.set_target(dm.domid, vm.domid)
    assert dm.call(XsType.READ, path) == b"s"
