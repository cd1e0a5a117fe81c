"""A millisecond ticker that stops engines someone is waiting for.

Reasons to stop a running engine: a vCPU was kicked (pause, shutdown), the
hypervisor waits to update the domain's shared words, an upcall is pending
but was blocked by RFLAGS.IF at the last entry, or another vCPU of the
domain waits for its turn and the current one has had its slice. A stop
requested just before the engine starts is forgotten by the engine, so the
ticker repeats it every millisecond for as long as the reason lasts.
"""

from __future__ import annotations

import threading
import time

PERIOD_S = 0.001
IDLE_EXIT_S = 1.0    # an idle ticker's thread ends (hosts come and go in one process)


class Ticker:
    def __init__(self):
        self._watched: set = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, engine) -> None:
        with self._lock:
            self._watched.add(engine)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="engine-ticker",
                                                daemon=True)
                self._thread.start()
        self._wake.set()

    def forget(self, engine) -> None:
        with self._lock:
            self._watched.discard(engine)

    def _loop(self) -> None:
        while True:
            if not self._wake.wait(IDLE_EXIT_S):
                with self._lock:
                    if not self._watched and not self._wake.is_set():
                        self._thread = None          # the next watch() starts another
                        return
                continue
            time.sleep(PERIOD_S)
            with self._lock:
                watched = list(self._watched)
            keep = {e for e in watched if e.ticker_poll()}
            with self._lock:
                # Engines watched again meanwhile stay; the rest only if still needed.
                self._watched = keep | (self._watched - set(watched))
                if not self._watched:
                    self._wake.clear()
