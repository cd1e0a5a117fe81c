"""Bad input on the Unix socket: the daemon answers or drops that client, logs one
line, and every other client carries on."""

from __future__ import annotations

import random
import socket
import struct
import threading
import time

from pyxen.abi.constants import XsType
from pyxen.dom0.xenstored import XsError

HDR = struct.Struct("<IIII")


def _raw(daemon) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(daemon.path)
    s.settimeout(5)
    return s


def _recv_msg(s: socket.socket) -> tuple[int, int, int, bytes]:
    buf = b""
    while len(buf) < 16:
        chunk = s.recv(16 - len(buf))
        assert chunk, "connection closed"
        buf += chunk
    mtype, req_id, tx_id, length = HDR.unpack(buf)
    body = b""
    while len(body) < length:
        chunk = s.recv(length - len(body))
        assert chunk, "connection closed"
        body += chunk
    return mtype, req_id, tx_id, body


def _closed(s: socket.socket) -> bool:
    try:
        return s.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


def _healthy(daemon) -> None:
    c = daemon.client()
    c.write("/health", "ok")
    assert c.read("/health") == b"ok"


def test_oversized_message_drops_only_that_client(daemon):
    bystander = daemon.client()
    bystander.watch("/b", "t")
    assert bystander.next_event(2)
    bad = _raw(daemon)
    bad.sendall(HDR.pack(XsType.READ, 1, 0, 4097) + b"x" * 100)
    assert _closed(bad)
    assert sum("exceeds 4096" in line for line in daemon.log) == 1
    bystander.write("/b/x", "1")
    assert bystander.read("/b/x") == b"1"
    assert bystander.next_event(2) == ("/b/x", "t")
    _healthy(daemon)


def test_reply_header_echoes_request_and_errors(daemon):
    s = _raw(daemon)
    s.sendall(HDR.pack(XsType.READ, 0xDEADBEEF, 0, 6) + b"/tool\0")
    assert _recv_msg(s) == (XsType.READ, 0xDEADBEEF, 0, b"")
    s.sendall(HDR.pack(XsType.READ, 7, 0, 4) + b"/no\0")
    assert _recv_msg(s) == (XsType.ERROR, 7, 0, b"ENOENT\0")
    s.sendall(HDR.pack(XsType.READ, 8, 99, 6) + b"/tool\0")
    assert _recv_msg(s) == (XsType.ERROR, 8, 99, b"ENOENT\0")      # unknown transaction
    s.sendall(HDR.pack(77, 9, 0, 0))
    assert _recv_msg(s) == (XsType.ERROR, 9, 0, b"ENOSYS\0")
    s.sendall(HDR.pack(XsType.TRANSACTION_START, 10, 0, 1) + b"\0")
    mtype, req_id, _, body = _recv_msg(s)
    tx = int(body.rstrip(b"\0"))
    s.sendall(HDR.pack(XsType.WRITE, 11, tx, 8) + b"/t\0abcde")
    assert _recv_msg(s) == (XsType.WRITE, 11, tx, b"OK\0")


def test_requests_split_into_single_bytes(daemon):
    s = _raw(daemon)
    msg = HDR.pack(XsType.WRITE, 1, 0, 7) + b"/s\0data" + HDR.pack(XsType.READ, 2, 0, 3) + b"/s\0"
    for i in range(len(msg)):
        s.send(msg[i:i + 1])
        time.sleep(0.0005)
    assert _recv_msg(s) == (XsType.WRITE, 1, 0, b"OK\0")
    assert _recv_msg(s) == (XsType.READ, 2, 0, b"data")


def test_random_garbage_never_hurts_the_daemon(daemon):
    rng = random.Random(1234)
    watcher = daemon.client()
    watcher.write("/g/seen", "0")
    watcher.watch("/g", "w")
    watcher.next_event(2)
    for _ in range(30):
        s = _raw(daemon)
        blob = bytearray()
        for _ in range(rng.randrange(1, 20)):
            payload = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 64)))
            if rng.random() < 0.5:
                payload = rng.choice([b"/g/", b"", b"rel", b"@"]) + payload
            blob += HDR.pack(rng.randrange(0, 30), rng.getrandbits(32),
                             rng.choice([0, 0, 0, rng.getrandbits(32)]), len(payload)) + payload
        if rng.random() < 0.3:
            blob += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
        s.sendall(bytes(blob))
        s.settimeout(0.05)
        try:
            while s.recv(65536):
                pass
        except (TimeoutError, ConnectionResetError):
            pass
        s.close()
    _healthy(daemon)
    assert watcher.read("/g/seen") == b"0"
    assert not any("internal error" in line for line in daemon.log)


def test_client_disconnecting_mid_message_and_mid_transaction(daemon):
    s = _raw(daemon)
    s.sendall(HDR.pack(XsType.WATCH, 1, 0, 5) + b"/d\0t\0")
    _recv_msg(s)
    s.sendall(HDR.pack(XsType.TRANSACTION_START, 2, 0, 1) + b"\0")
    s.sendall(HDR.pack(XsType.WRITE, 3, 0, 100) + b"/d\0partial")
    s.close()
    time.sleep(0.1)
    c = daemon.client()
    c.write("/d/x", "1")                     # fires nothing towards the closed client
    _healthy(daemon)
    assert not any("internal error" in line for line in daemon.log)


def test_many_concurrent_clients(daemon):
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            c = daemon.client()
            for i in range(100):
                c.write(f"/conc/{n}/{i}", str(i * n))
                assert c.read(f"/conc/{n}/{i}") == str(i * n).encode()
            assert len(c.directory(f"/conc/{n}")) == 100
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert len(daemon.client().directory("/conc")) == 16


def test_pipelined_requests_answered_in_order(daemon):
    c = daemon.client()
    c.watch("/p", "t")
    reqs = []
    for i in range(300):
        reqs.append((XsType.WRITE, f"/p/{i}\0{i}".encode()))
        reqs.append((XsType.READ, f"/p/{i}\0".encode()))
    reqs.append((XsType.READ, b"/p/missing\0"))
    replies = c.pipeline(reqs)
    assert replies[1::2][:300] == [str(i).encode() for i in range(300)]
    assert isinstance(replies[-1], XsError) and replies[-1].name == "ENOENT"
    events = list(c.events(0.5))
    assert len(events) == 301                # registration + one per write


def test_client_that_never_reads_does_not_stall_others(daemon):
    hog = _raw(daemon)
    hog.setblocking(False)
    req = HDR.pack(XsType.DIRECTORY, 0, 0, 6) + b"/tool\0"
    sent = 0
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and sent < 200000:
        try:
            sent += hog.send(req * 256)
        except BlockingIOError:
            break
    _healthy(daemon)
    other = daemon.client()
    for i in range(50):
        other.write("/fair", str(i))
    hog.close()
    _healthy(daemon)
