"""XsClient: a small xenstore client for the toolstack, over the Unix socket or in-process.

    xs = XsClient.connect()                    # $XENSTORED_PATH or the default socket
    xs.write("/local/domain/3/name", "guest")
    xs.watch("/local/domain/3", "tok")
    event = xs.next_event(timeout=1.0)         # WatchEvent(path, token) or None
    xs.transact(lambda t: t.write("a", t.read("a") + b"!"))   # retried on EAGAIN
"""

from __future__ import annotations

import os
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple, TypeVar

from ...abi.constants import XsType
from .wire import HEADER, HEADER_SIZE, XsError, frame

T = TypeVar("T")
_ERROR = int(XsType.ERROR)
_WATCH_EVENT = int(XsType.WATCH_EVENT)
DEFAULT_SOCKET_PATH = "/var/run/xenstored/socket"
_EVENT_POLL = 0.05       # how long an event waiter holds the socket before letting calls in


class WatchEvent(NamedTuple):
    path: str
    token: str


def _event_of(payload: bytes) -> WatchEvent:
    path, token = payload.split(b"\0")[:2]
    return WatchEvent(path.decode("latin-1"), token.decode("latin-1"))


def _b(text: str | bytes) -> bytes:
    return text if isinstance(text, bytes) else text.encode()


# -- transports ---------------------------------------------------------------------------------
class _LocalTransport:
    """Requests run in the calling thread against an in-process XenstoreService."""

    def __init__(self, service, conn):
        self.service = service
        self.conn = conn

    def call(self, mtype: int, tx_id: int, payload: bytes) -> tuple[int, bytes]:
        return self.conn.call(mtype, tx_id, payload)

    def call_many(self, requests: list[tuple[int, int, bytes]]) -> list[tuple[int, bytes]]:
        return [self.conn.call(*r) for r in requests]

    def next_event(self, timeout: float | None) -> bytes | None:
        return self.conn.next_event(timeout)

    def close(self) -> None:
        self.service.close_local(self.conn)


class _SocketTransport:
    """The xenstored Unix socket. Replies are matched by req_id; watch events that
    arrive meanwhile are queued for next_event()."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self._io = threading.Lock()           # one reader/writer of the socket at a time
        self._buf = bytearray()
        self._events: deque[bytes] = deque()
        self._cv = threading.Condition()
        self._next_req = 1

    def _req_id(self) -> int:
        req_id = self._next_req
        self._next_req = req_id % 0xFFFFFFFF + 1
        return req_id

    def _read_message(self, timeout: float | None) -> tuple[int, int, bytes] | None:
        buf = self._buf
        while True:
            if len(buf) >= HEADER_SIZE:
                mtype, req_id, _tx, length = HEADER.unpack_from(buf, 0)
                end = HEADER_SIZE + length
                if len(buf) >= end:
                    payload = bytes(buf[HEADER_SIZE:end])
                    del buf[:end]
                    return mtype, req_id, payload
            if timeout is not None and not select.select([self.sock], [], [], timeout)[0]:
                return None
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("xenstored closed the connection")
            buf += data

    def _queue_event(self, payload: bytes) -> None:
        with self._cv:
            self._events.append(payload)
            self._cv.notify_all()

    def call(self, mtype: int, tx_id: int, payload: bytes) -> tuple[int, bytes]:
        with self._io:
            req_id = self._req_id()
            self.sock.sendall(frame(mtype, req_id, tx_id, payload))
            while True:
                rtype, rid, body = self._read_message(None)
                if rtype == _WATCH_EVENT:
                    self._queue_event(body)
                elif rid == req_id:
                    return rtype, body

    def call_many(self, requests: list[tuple[int, int, bytes]]) -> list[tuple[int, bytes]]:
        """Send every request before reading any reply (pipelining)."""
        with self._io:
            ids = [self._req_id() for _ in requests]
            self.sock.sendall(b"".join(frame(m, rid, tx, p)
                                       for rid, (m, tx, p) in zip(ids, requests, strict=True)))
            wanted = dict.fromkeys(ids)
            left = len(ids)
            while left:
                rtype, rid, body = self._read_message(None)
                if rtype == _WATCH_EVENT:
                    self._queue_event(body)
                elif rid in wanted and wanted[rid] is None:
                    wanted[rid] = (rtype, body)
                    left -= 1
            return [wanted[rid] for rid in ids]

    def next_event(self, timeout: float | None) -> bytes | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._cv:
                if self._events:
                    return self._events.popleft()
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            slice_ = _EVENT_POLL if remaining is None else min(_EVENT_POLL, remaining)
            if self._io.acquire(timeout=slice_):
                try:
                    msg = self._read_message(slice_)
                finally:
                    self._io.release()
                if msg is not None and msg[0] == _WATCH_EVENT:
                    self._queue_event(msg[2])
            else:
                with self._cv:
                    self._cv.wait(slice_)

    def close(self) -> None:
        self.sock.close()


# -- the client ---------------------------------------------------------------------------------
class XsClient:
    def __init__(self, transport):
        self._t = transport

    @classmethod
    def connect(cls, path: str | None = None) -> XsClient:
        """Connect to xenstored's socket: `path`, else $XENSTORED_PATH, else the default."""
        path = path or os.environ.get("XENSTORED_PATH") or DEFAULT_SOCKET_PATH
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
        except OSError:
            sock.close()
            raise
        return cls(_SocketTransport(sock))

    def close(self) -> None:
        self._t.close()

    def __enter__(self) -> XsClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- plumbing -------------------------------------------------------------------------------
    def request(self, mtype: int, payload: bytes, tx: int = 0) -> bytes:
        """One raw request; the reply payload, or XsError for an ERROR reply."""
        rtype, reply = self._t.call(int(mtype), tx, payload)
        if rtype == _ERROR:
            raise XsError(reply.rstrip(b"\0").decode("latin-1"))
        return reply

    def pipeline(self, requests: Iterable[tuple[int, bytes]], tx: int = 0) -> list:
        """Many raw requests in flight at once; each result is a payload or an XsError."""
        replies = self._t.call_many([(int(m), tx, p) for m, p in requests])
        return [XsError(body.rstrip(b"\0").decode("latin-1")) if rtype == _ERROR else body
                for rtype, body in replies]

    # -- nodes ----------------------------------------------------------------------------------
    def read(self, path: str, tx: int = 0) -> bytes:
        return self.request(XsType.READ, _b(path) + b"\0", tx)

    def write(self, path: str, value: str | bytes, tx: int = 0) -> None:
        self.request(XsType.WRITE, _b(path) + b"\0" + _b(value), tx)

    def mkdir(self, path: str, tx: int = 0) -> None:
        self.request(XsType.MKDIR, _b(path) + b"\0", tx)

    def rm(self, path: str, tx: int = 0) -> None:
        self.request(XsType.RM, _b(path) + b"\0", tx)

    def exists(self, path: str, tx: int = 0) -> bool:
        try:
            self.read(path, tx)
        except XsError as e:
            if e.name == "ENOENT":
                return False
            raise
        return True

    def directory(self, path: str, tx: int = 0) -> list[str]:
        """Child names; directories too long for one reply are read in parts."""
        try:
            reply = self.request(XsType.DIRECTORY, _b(path) + b"\0", tx)
        except XsError as e:
            if e.name != "E2BIG":
                raise
            return self._directory_in_parts(path, tx)
        return [n.decode("latin-1") for n in reply.split(b"\0")[:-1]]

    def _directory_in_parts(self, path: str, tx: int) -> list[str]:
        while True:
            names: list[bytes] = []
            offset, generation = 0, None
            while True:
                reply = self.request(XsType.DIRECTORY_PART,
                                     _b(path) + b"\0" + str(offset).encode() + b"\0", tx)
                gen, _, rest = reply.partition(b"\0")
                if generation is None:
                    generation = gen
                elif gen != generation:
                    break                       # changed while we read: start again
                parts = rest.split(b"\0")
                if rest.endswith(b"\0\0") or rest == b"\0":
                    names += [n for n in parts if n]
                    return [n.decode("latin-1") for n in names]
                names += parts[:-1]
                offset += len(rest)

    def get_perms(self, path: str, tx: int = 0) -> list[str]:
        reply = self.request(XsType.GET_PERMS, _b(path) + b"\0", tx)
        return [p.decode() for p in reply.split(b"\0")[:-1]]

    def set_perms(self, path: str, perms: list[str], tx: int = 0) -> None:
        self.request(XsType.SET_PERMS, _b(path) + b"\0" + b"".join(_b(p) + b"\0" for p in perms),
                     tx)

    # -- watches --------------------------------------------------------------------------------
    def watch(self, path: str, token: str) -> None:
        self.request(XsType.WATCH, _b(path) + b"\0" + _b(token) + b"\0")

    def unwatch(self, path: str, token: str) -> None:
        self.request(XsType.UNWATCH, _b(path) + b"\0" + _b(token) + b"\0")

    def reset_watches(self) -> None:
        self.request(XsType.RESET_WATCHES, b"\0")

    def next_event(self, timeout: float | None = None) -> WatchEvent | None:
        payload = self._t.next_event(timeout)
        return None if payload is None else _event_of(payload)

    def events(self, timeout: float | None = None) -> Iterator[WatchEvent]:
        """Watch events until `timeout` passes without one."""
        while (event := self.next_event(timeout)) is not None:
            yield event

    # -- transactions ---------------------------------------------------------------------------
    def transaction_start(self) -> int:
        return int(self.request(XsType.TRANSACTION_START, b"\0").rstrip(b"\0"))

    def transaction_end(self, tx: int, commit: bool = True) -> bool:
        """End `tx`; False when the commit met a conflict (EAGAIN)."""
        try:
            self.request(XsType.TRANSACTION_END, b"T\0" if commit else b"F\0", tx)
        except XsError as e:
            if commit and e.name == "EAGAIN":
                return False
            raise
        return True

    def transaction(self) -> XsTransaction:
        return XsTransaction(self, self.transaction_start())

    def transact(self, body: Callable[[XsTransaction], T], *, attempts: int = 100) -> T:
        """Run body(t) in a transaction, again from the start while commits conflict."""
        for _ in range(attempts):
            t = self.transaction()
            try:
                result = body(t)
            except BaseException:
                t.abort()
                raise
            if t.commit():
                return result
        raise XsError("EAGAIN", f"transaction conflicted {attempts} times")

    # -- domains --------------------------------------------------------------------------------
    def introduce(self, domid: int, gfn: int, port: int) -> None:
        self.request(XsType.INTRODUCE, f"{domid}\0{gfn}\0{port}\0".encode())

    def release(self, domid: int) -> None:
        self.request(XsType.RELEASE, f"{domid}\0".encode())

    def resume(self, domid: int) -> None:
        self.request(XsType.RESUME, f"{domid}\0".encode())

    def is_introduced(self, domid: int) -> bool:
        return self.request(XsType.IS_DOMAIN_INTRODUCED, f"{domid}\0".encode()) == b"T\0"

    def get_domain_path(self, domid: int) -> str:
        return self.request(XsType.GET_DOMAIN_PATH, f"{domid}\0".encode()).rstrip(
            b"\0").decode()

    def set_target(self, domid: int, target: int) -> None:
        self.request(XsType.SET_TARGET, f"{domid}\0{target}\0".encode())

    def control(self, *args: str) -> bytes:
        return self.request(XsType.CONTROL, b"".join(_b(a) + b"\0" for a in args))


class XsTransaction:
    """Node operations inside one transaction of an XsClient."""

    def __init__(self, client: XsClient, tx_id: int):
        self.client = client
        self.id = tx_id
        self.open = True

    def read(self, path: str) -> bytes:
        return self.client.read(path, self.id)

    def write(self, path: str, value: str | bytes) -> None:
        self.client.write(path, value, self.id)

    def mkdir(self, path: str) -> None:
        self.client.mkdir(path, self.id)

    def rm(self, path: str) -> None:
        self.client.rm(path, self.id)

    def exists(self, path: str) -> bool:
        return self.client.exists(path, self.id)

    def directory(self, path: str) -> list[str]:
        return self.client.directory(path, self.id)

    def get_perms(self, path: str) -> list[str]:
        return self.client.get_perms(path, self.id)

    def set_perms(self, path: str, perms: list[str]) -> None:
        self.client.set_perms(path, perms, self.id)

    def commit(self) -> bool:
        self.open = False
        return self.client.transaction_end(self.id, True)

    def abort(self) -> None:
        if self.open:
            self.open = False
            self.client.transaction_end(self.id, False)

    def __enter__(self) -> XsTransaction:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is not None:
            self.abort()
        elif self.open and not self.commit():
            raise XsError("EAGAIN", "transaction conflicted")
