"""Toolstack benchmarks: domain creation time with N domains already running.

Xen's known bottleneck was creation slowing down as xenstore filled up with
running domains; here a host daemon runs N idle guests (guests/idle: halted,
no CPU) and the time of one more `create` (build, xenstore layout, introduce,
console) is measured, median of several, for N = 0, 100, 500.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pyxen.toolstack.control import ControlClient  # noqa: E402
from pyxen.toolstack.host import HostDaemon  # noqa: E402

IDLE = str(ROOT / "guests" / "idle" / "idle.cfg")


def create_ms_with_n_running(ns=(0, 100, 500), samples: int = 7, progress=None) -> dict:
    tmp = tempfile.mkdtemp(prefix="pyxen-bench-")
    cwd = os.getcwd()
    os.chdir(ROOT)
    host = HostDaemon("mem=8G", control_path=os.path.join(tmp, "c.sock"),
                      xenstored_path=os.path.join(tmp, "xs.sock"), log=lambda *_a: None)
    host.serve_in_background()
    c = ControlClient(host.control_path, timeout=120)
    out = {}
    running = 0
    try:
        for n in sorted(ns):
            while running < n:
                c.call("create", config_path=IDLE, overrides=[f"name='idle-{running}'"])
                running += 1
                if progress and running % 50 == 0:
                    progress(f"{running} idle domains running")
            times = []
            for i in range(samples):
                t = time.perf_counter()
                domid = c.call("create", config_path=IDLE, overrides=[f"name='probe-{i}'"],
                               paused=True)["domid"]
                times.append((time.perf_counter() - t) * 1e3)
                c.call("destroy", domid=domid)
            out[f"create_ms_with_{n}_running"] = statistics.median(times)
    finally:
        os.chdir(cwd)
        host.close()
    return out


if __name__ == "__main__":
    print(create_ms_with_n_running(progress=print))
