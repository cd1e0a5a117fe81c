"""xenstored's connections: Unix-socket clients, guest rings and in-process callers.

Every method here runs with the service lock held. A connection queues its
output; the service flushes dirty connections at the end of each locked step,
so replies and watch events leave in the order they were produced.
"""

from __future__ import annotations

import select
import socket
import struct
import threading
from collections import deque

from ...abi import structs as S
from ...abi.constants import XENSTORE_RING_SIZE, XsType
from .wire import HEADER, HEADER_SIZE, PAYLOAD_MAX

_WATCH_EVENT = int(XsType.WATCH_EVENT)
_GONE = select.EPOLLHUP | select.EPOLLERR
_READABLE = select.EPOLLIN | _GONE
SOCKET_RECV_SIZE = 65536
SOCKET_OUTPUT_LIMIT = 1 << 20     # stop reading a socket client whose replies pile up

_RING = S.XENSTORE_DOMAIN_INTERFACE
REQ_OFF = _RING.offsetof("req")
RSP_OFF = _RING.offsetof("rsp")
REQ_CONS = _RING.offsetof("req_cons")     # req_cons, req_prod are adjacent u32s
RSP_CONS = _RING.offsetof("rsp_cons")     # rsp_cons, rsp_prod likewise
_IDX_PAIR = struct.Struct("<II")
_IDX = struct.Struct("<I")
RING_MASK = XENSTORE_RING_SIZE - 1
RING_TURN = 64                    # requests served from one ring before the others' turn
U32 = 0xFFFFFFFF


class Connection:
    """What every client of the store has: identity, watches, transactions."""

    kind = "connection"

    def __init__(self, service, domid: int):
        self.service = service
        self.domid = domid
        self.privileged = domid == 0
        self.target: int | None = None
        self.home = f"/local/domain/{domid}"
        self.watches: dict = {}
        self.transactions: dict = {}
        self.next_tx_id = 1
        self.dead = False

    @property
    def name(self) -> str:
        return f"{self.kind} of domain {self.domid}"

    def send_reply(self, mtype: int, req_id: int, tx_id: int, payload: bytes) -> None:
        raise NotImplementedError

    def push_event(self, payload: bytes) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        """Move queued output towards the peer (never blocks)."""

    def close(self) -> None:
        """Release transport resources (the service has dropped watches and transactions)."""


class SocketConnection(Connection):
    kind = "socket client"

    def __init__(self, service, sock: socket.socket, domid: int = 0):
        super().__init__(service, domid)
        self.sock = sock
        self.fd = sock.fileno()
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.want_read = True
        self.registered = 0               # selector events the loop watches for

    def wanted_events(self) -> int:
        return (select.EPOLLIN if self.want_read else 0) | (
            select.EPOLLOUT if self.outbuf else 0)

    def on_io(self, mask: int) -> None:
        if self.dead:
            return
        if mask & _READABLE:
            if self.want_read:
                self.on_readable()
            elif mask & _GONE:
                # Hung up while we held its input back: nobody will read its replies.
                self.service.drop_connection(self, None)
                return
        if self.outbuf and not self.dead:
            self.service.dirty.add(self)

    def on_readable(self) -> None:
        try:
            data = self.sock.recv(SOCKET_RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self.service.drop_connection(self, f"receive failed: {e}")
            return
        if not data:
            self.service.drop_connection(self, None)
            return
        self.inbuf += data
        self.process_input()

    def process_input(self) -> None:
        buf = self.inbuf
        pos, end = 0, len(buf)
        service = self.service
        while end - pos >= HEADER_SIZE and len(self.outbuf) < SOCKET_OUTPUT_LIMIT:
            mtype, req_id, tx_id, length = HEADER.unpack_from(buf, pos)
            if length > PAYLOAD_MAX:
                # The stream cannot be resynchronised: xenstored drops the client.
                service.drop_connection(self, f"message of {length} bytes exceeds "
                                              f"{PAYLOAD_MAX}")
                return
            stop = pos + HEADER_SIZE + length
            if stop > end:
                break
            payload = bytes(buf[pos + HEADER_SIZE:stop])
            pos = stop
            service.handle(self, mtype, req_id, tx_id, payload)
            if self.dead:
                return
        if pos:
            del buf[:pos]
        self.want_read = len(self.outbuf) < SOCKET_OUTPUT_LIMIT

    def send_reply(self, mtype: int, req_id: int, tx_id: int, payload: bytes) -> None:
        self.outbuf += HEADER.pack(mtype, req_id, tx_id, len(payload))
        self.outbuf += payload
        self.service.dirty.add(self)

    def push_event(self, payload: bytes) -> None:
        self.send_reply(_WATCH_EVENT, 0, 0, payload)

    def flush(self) -> None:
        if self.dead:
            return
        if self.outbuf:
            try:
                sent = self.sock.send(self.outbuf)
                del self.outbuf[:sent]
            except (BlockingIOError, InterruptedError):
                pass
            except OSError as e:
                self.service.drop_connection(self, f"send failed: {e}")
                return
        if not self.want_read and len(self.outbuf) < SOCKET_OUTPUT_LIMIT:
            self.want_read = True
            if self.inbuf:
                self.process_input()        # requests held back while replies piled up
        self.service.update_interest(self)

    def close(self) -> None:
        self.sock.close()


class BadRing(Exception):
    """The guest put something in its ring page we cannot work with."""


class RingConnection(Connection):
    """A guest's xenstore ring (xenstore_domain_interface) and its event channel."""

    kind = "ring"

    def __init__(self, service, domid: int, page: memoryview, evtchn, port: int):
        super().__init__(service, domid)
        self.page = page
        self.evtchn = evtchn
        self.port = port
        self.inbuf = bytearray()
        self.out: deque[list] = deque()     # [bytes, offset, is_reply]
        self.replies_waiting = 0
        self.queued_bytes = 0

    def reset_ring(self) -> None:
        """INTRODUCE starts the ring afresh: indexes to 0, nothing pending."""
        _IDX_PAIR.pack_into(self.page, REQ_CONS, 0, 0)
        _IDX_PAIR.pack_into(self.page, RSP_CONS, 0, 0)
        self.inbuf.clear()
        self.out.clear()
        self.replies_waiting = self.queued_bytes = 0

    def _notify(self) -> None:
        self.evtchn.notify(self.port)

    def send_reply(self, mtype: int, req_id: int, tx_id: int, payload: bytes) -> None:
        msg = HEADER.pack(mtype, req_id, tx_id, len(payload)) + payload
        self.out.append([msg, 0, True])
        self.replies_waiting += 1
        self.queued_bytes += len(msg)
        self.service.dirty.add(self)

    def push_event(self, payload: bytes) -> None:
        msg = HEADER.pack(_WATCH_EVENT, 0, 0, len(payload)) + payload
        limit = self.service.quotas.event_backlog_bytes
        if not self.privileged and self.queued_bytes + len(msg) > limit:
            self.service.note(f"xenstored: domain {self.domid} does not read its ring: "
                              f"watch event dropped")
            return
        self.out.append([msg, 0, False])
        self.queued_bytes += len(msg)
        self.service.dirty.add(self)

    # -- the rings ----------------------------------------------------------------------
    def _read_ring(self, want: int) -> None:
        page = self.page
        cons, prod = _IDX_PAIR.unpack_from(page, REQ_CONS)
        avail = (prod - cons) & U32
        if avail > XENSTORE_RING_SIZE:
            raise BadRing(f"request ring indexes cons={cons:#x} prod={prod:#x}")
        n = min(avail, want)
        if not n:
            return
        start = cons & RING_MASK
        first = min(n, XENSTORE_RING_SIZE - start)
        self.inbuf += page[REQ_OFF + start:REQ_OFF + start + first]
        if n > first:
            self.inbuf += page[REQ_OFF:REQ_OFF + n - first]
        _IDX.pack_into(page, REQ_CONS, (cons + n) & U32)
        self._notify()

    def _write_ring(self) -> None:
        if not self.out:
            return
        page = self.page
        cons, prod = _IDX_PAIR.unpack_from(page, RSP_CONS)
        used = (prod - cons) & U32
        if used > XENSTORE_RING_SIZE:
            raise BadRing(f"response ring indexes cons={cons:#x} prod={prod:#x}")
        space = XENSTORE_RING_SIZE - used
        written = 0
        while self.out and space:
            item = self.out[0]
            msg, off = item[0], item[1]
            n = min(space, len(msg) - off)
            at = (prod + written) & RING_MASK
            first = min(n, XENSTORE_RING_SIZE - at)
            page[RSP_OFF + at:RSP_OFF + at + first] = msg[off:off + first]
            if n > first:
                page[RSP_OFF:RSP_OFF + n - first] = msg[off + first:off + n]
            written += n
            space -= n
            if off + n == len(msg):
                self.out.popleft()
                self.queued_bytes -= len(msg)
                if item[2]:
                    self.replies_waiting -= 1
            else:
                item[1] = off + n
        if written:
            # The bytes are in place before the producer index moves (x86 keeps
            # stores in order), then the guest is told.
            _IDX.pack_into(page, RSP_CONS + 4, (prod + written) & U32)
            self._notify()

    def _next_message(self) -> tuple[int, int, int, bytes] | None:
        buf = self.inbuf
        if len(buf) < HEADER_SIZE:
            self._read_ring(HEADER_SIZE - len(buf))
            if len(buf) < HEADER_SIZE:
                return None
        mtype, req_id, tx_id, length = HEADER.unpack_from(buf, 0)
        if length > PAYLOAD_MAX:
            raise BadRing(f"message of {length} bytes exceeds {PAYLOAD_MAX}")
        need = HEADER_SIZE + length
        if len(buf) < need:
            self._read_ring(need - len(buf))
            if len(buf) < need:
                return None
        payload = bytes(buf[HEADER_SIZE:need])
        del buf[:need]
        return mtype, req_id, tx_id, payload

    def pump(self) -> None:
        """Deliver what fits in the response ring, then take requests in order while
        the guest keeps up with its replies."""
        if self.dead:
            return
        try:
            self._write_ring()
            limit = self.service.quotas.outstanding_replies
            for _ in range(RING_TURN):
                if self.dead or (not self.privileged and self.replies_waiting >= limit):
                    return
                msg = self._next_message()
                if msg is None:
                    return
                self.service.handle(self, *msg)
                self._write_ring()
            self.service.defer(self)       # a guest that keeps writing: others go first
        except BadRing as e:
            self.service.bad_ring(self, str(e))
        except OSError as e:           # notify failed: the domain's port is gone
            self.service.bad_ring(self, f"event channel: {e}")

    def flush(self) -> None:
        self.pump()

    def close(self) -> None:
        self.page = memoryview(bytearray(4096))     # never touch the guest page again
        self.out.clear()


class LocalConnection(Connection):
    """An in-process client: requests run synchronously in the caller's thread."""

    kind = "local client"

    def __init__(self, service, domid: int = 0):
        super().__init__(service, domid)
        self.events: deque[bytes] = deque()
        self.cond = threading.Condition()
        self._reply: tuple[int, bytes] | None = None

    def call(self, mtype: int, tx_id: int, payload: bytes) -> tuple[int, bytes]:
        service = self.service
        with service.lock:
            if self.dead:
                raise ConnectionError("xenstored connection closed")
            if len(payload) > PAYLOAD_MAX:
                service.drop_connection(self, f"message of {len(payload)} bytes exceeds "
                                              f"{PAYLOAD_MAX}")
                raise ConnectionError("xenstored dropped the connection: message too long")
            self._reply = None
            service.handle(self, mtype, 0, tx_id, payload)
            service.flush_dirty()
            reply, self._reply = self._reply, None
        return reply

    def send_reply(self, mtype: int, req_id: int, tx_id: int, payload: bytes) -> None:
        self._reply = (mtype, payload)

    def push_event(self, payload: bytes) -> None:
        with self.cond:
            self.events.append(payload)
            self.cond.notify_all()

    def next_event(self, timeout: float | None) -> bytes | None:
        with self.cond:
            if not self.events and timeout != 0:
                self.cond.wait_for(lambda: self.events or self.dead, timeout)
            return self.events.popleft() if self.events else None

    def close(self) -> None:
        with self.cond:
            self.cond.notify_all()
