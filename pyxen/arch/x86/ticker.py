"""Makes sure a kick reaches a vCPU that was entering the engine at that moment.

`uc_emu_stop()` called just before the engine starts is forgotten by the
engine, so a kicked vCPU is re-stopped every millisecond until it notices.
"""

from __future__ import annotations

import threading
import time

PERIOD_S = 0.001


class Ticker:
    def __init__(self):
        self._watched: set = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, backend) -> None:
        with self._lock:
            self._watched.add(backend)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="kick-ticker",
                                                daemon=True)
                self._thread.start()
        self._wake.set()

    def forget(self, backend) -> None:
        with self._lock:
            self._watched.discard(backend)

    def _loop(self) -> None:
        while True:
            self._wake.wait()
            time.sleep(PERIOD_S)
            with self._lock:
                pending = [b for b in self._watched if b.kick_pending()]
                self._watched = set(pending)
                if not pending:
                    self._wake.clear()
