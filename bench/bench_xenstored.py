"""xenstored throughput: one client on the Unix socket, operations per second.

The daemon runs in this process (as it does inside pyxen) on its own thread;
the client is XsClient over the socket. One operation is one request and its
reply, alternating WRITE and READ of one node.

- single: one request in flight (each waits for its reply);
- pipelined: batches of PIPELINE_DEPTH requests sent before any reply is read.

The machine's floor is printed with them: round trips per second between two
Python threads over a socket pair doing no work (single can be no faster).
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pyxen.abi.constants import XsType  # noqa: E402
from pyxen.dom0.xenstored import XenstoreService, XsClient  # noqa: E402

NODE = b"/bench/xenstored/node"
VALUE = b"a value of some 32 bytes........"
PIPELINE_DEPTH = 100


class _Daemon:
    def __init__(self):
        self._dir = tempfile.TemporaryDirectory(prefix="pyxen-xsbench-")
        self.path = os.path.join(self._dir.name, "socket")
        self.service = XenstoreService(None, self.path)

    def __enter__(self) -> XsClient:
        self.service.start()
        self.client = XsClient.connect(self.path)
        self.client.write(NODE, VALUE)
        return self.client

    def __exit__(self, *exc) -> None:
        self.client.close()
        self.service.stop()
        self._dir.cleanup()


def ops_per_s_single(ops: int = 20000) -> float:
    with _Daemon() as xs:
        for _ in range(500):                 # warm up
            xs.read(NODE)
        start = time.perf_counter()
        for _ in range(ops // 2):
            xs.write(NODE, VALUE)
            xs.read(NODE)
        elapsed = time.perf_counter() - start
    return (ops // 2 * 2) / elapsed


def ops_per_s_pipelined(ops: int = 100000) -> float:
    batch = [(XsType.WRITE, NODE + b"\0" + VALUE), (XsType.READ, NODE + b"\0")] \
        * (PIPELINE_DEPTH // 2)
    rounds = max(1, ops // len(batch))
    with _Daemon() as xs:
        xs.pipeline(batch)                   # warm up
        start = time.perf_counter()
        for _ in range(rounds):
            replies = xs.pipeline(batch)
        elapsed = time.perf_counter() - start
        assert replies[-1] == VALUE
    return rounds * len(batch) / elapsed


def baseline_round_trips_per_s(trips: int = 20000) -> float:
    """Two threads echoing 32 bytes over a socket pair: the cost of the handoff alone."""
    ours, theirs = socket.socketpair()

    def echo() -> None:
        while data := theirs.recv(256):
            theirs.sendall(data)
    t = threading.Thread(target=echo, daemon=True)
    t.start()
    start = time.perf_counter()
    for _ in range(trips):
        ours.sendall(VALUE)
        ours.recv(256)
    elapsed = time.perf_counter() - start
    ours.close()
    t.join(1)
    theirs.close()
    return trips / elapsed


if __name__ == "__main__":
    print(f"baseline round trips: {baseline_round_trips_per_s():10,.0f} /s "
          f"(two threads, socket pair, no work)")
    print(f"xenstored single    : {ops_per_s_single():10,.0f} ops/s")
    print(f"xenstored pipelined : {ops_per_s_pipelined():10,.0f} ops/s "
          f"({PIPELINE_DEPTH} in flight)")
