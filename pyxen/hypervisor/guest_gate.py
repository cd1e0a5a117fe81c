"""The gate between a domain's guest code and hypervisor updates of its memory.

The CPU engine compiles a guest's locked read-modify-write instructions
without atomicity against other host threads. Words that both the guest and
the hypervisor update (event pending/mask/selector bits, upcall_pending,
grant flags) would lose updates if the two ran at once. So the vCPU that
executes the domain's guest code holds this gate while it does (not while it
is inside the hypervisor, e.g. in a hypercall), and hypervisor code updating
such words holds it too: the guest is stopped at an instruction boundary
meanwhile. An updater that finds guest code running asks the arch to stop
it (`stop_guest`) and waits.

Rules: hold it briefly; never wait for anything else while holding it; never
hold two domains' gates at once.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator


class GuestCodeGate:
    def __init__(self):
        self._lock = threading.Lock()
        self._updaters_cv = threading.Condition(threading.Lock())
        self.waiting = 0                     # updaters waiting for the guest to stop
        self._holder: int | None = None      # thread id of the updater inside
        self.stop_guest: Callable[[], None] = _nothing

    # -- the guest side (the vCPU thread running the domain's engine) -------------
    def enter_guest(self) -> None:
        if self.waiting:                     # let waiting updaters go first
            with self._updaters_cv:
                while self.waiting:
                    self._updaters_cv.wait()
        self._lock.acquire()

    def leave_guest(self) -> None:
        self._lock.release()

    # -- the hypervisor side ---------------------------------------------------------
    @contextlib.contextmanager
    def update(self) -> Iterator[None]:
        me = threading.get_ident()
        if self._holder == me:               # nested update of the same domain
            yield
            return
        if not self._lock.acquire(blocking=False):
            with self._updaters_cv:
                self.waiting += 1
            try:
                self.stop_guest()
                self._lock.acquire()
            finally:
                with self._updaters_cv:
                    self.waiting -= 1
                    if not self.waiting:
                        self._updaters_cv.notify_all()
        self._holder = me
        try:
            yield
        finally:
            self._holder = None
            self._lock.release()


def _nothing() -> None:
    pass
