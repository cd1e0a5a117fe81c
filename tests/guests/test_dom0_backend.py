"""A Dom0 back-end talking to real guest code through the host-side interface only:
Gnttab (grant mapping checked by the hypervisor) and the event channel device.

The guest is test-gntpeer's server; the client side of its protocol is played
here in Python, as a PV back-end in Dom0 would.
"""

from __future__ import annotations

import struct

from multidomain import MultiHost

from pyxen.abi import structs as S
from pyxen.toolstack.evtchn import EventChannelDevice
from pyxen.toolstack.gnttab import Gnttab

MAGIC = 0x50595847
# struct peer_page in guests/test-gntpeer: magic, client_state, c2s_seq, s2c_seq,
# c2s_payload, s2c_payload.
PAGE = struct.Struct("<IIIIQQ")
CLIENT_MAPPED, CLIENT_UNMAPPING = 1, 2
M64 = (1 << 64) - 1


def request_of(seq: int) -> int:
    return ((seq * 0x9E3779B97F4A7C15) ^ 0x1234567800000000) & M64


def reply_of(seq: int) -> int:
    return ((~request_of(seq) & M64) + seq) & M64


def test_dom0_backend_exchanges_messages_with_a_guest():
    count = 300
    host = MultiHost()
    try:
        server = host.start("test-gntpeer", f"cmdline='role=server peer=0 count={count}'")
        ready = host.wait_line(server, r"READY port=(\d+) gref=(\d+)")
        port, gref = int(ready.group(1)), int(ready.group(2))

        mapping = Gnttab(host.privcmd).map_grant_ref(server.domid, gref, writable=True)
        view = mapping.view
        assert struct.unpack_from("<I", view, 0)[0] == MAGIC
        events = EventChannelDevice.of(host.privcmd).open()
        local = events.bind_interdomain(server.domid, port)
        assert events.pending(2.0) == local          # raised on bind
        events.unmask(local)

        struct.pack_into("<I", view, 4, CLIENT_MAPPED)
        events.notify(local)
        for seq in range(1, count + 1):
            struct.pack_into("<Q", view, 16, request_of(seq))
            struct.pack_into("<I", view, 8, seq)
            events.notify(local)
            while struct.unpack_from("<I", view, 12)[0] != seq:
                fired = events.pending(5.0)
                assert fired == local, f"no reply to message {seq}"
                events.unmask(local)
            assert struct.unpack_from("<Q", view, 24)[0] == reply_of(seq)

        struct.pack_into("<I", view, 4, CLIENT_UNMAPPING)
        del view
        mapping.unmap()                               # the server then revokes its grant
        events.notify(local)
        events.close()
        (run,) = host.wait_all(60)
        assert run.result_line == "Test result: SUCCESS", "\n".join(run.console[-15:])
        assert any(f"server: {count} messages exchanged in order" in line
                   for line in run.console)
        assert any("grant revoked" in line for line in run.console)
    finally:
        host.close()


def test_page_layout_matches_the_guest():
    assert PAGE.size == 32 and S.GRANT_ENTRY_V1.size == 8
