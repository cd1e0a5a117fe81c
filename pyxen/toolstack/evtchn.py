"""Dom0's event channels for host-side services, like Linux's /dev/xen/evtchn and
libxenevtchn on top of it.

Dom0 is the host process, so its "kernel" part lives here: when Dom0's
upcall becomes pending, `EventChannelDevice` scans Dom0's shared_info (the
2-level pending/mask words, updated atomically with the hypervisor), masks
each pending port and hands it to the handle that bound it, whose file
descriptor becomes readable. The user reads ports with `pending()` and
re-enables them with `unmask()`, exactly the Linux evtchn device protocol.
Every bind, notify and unmask is a hypercall through privcmd.
"""

from __future__ import annotations

import os
import select
import struct
import threading
from collections import deque

from ..abi import structs as S
from ..abi.constants import DOMID_SELF, EvtchnOp, Hypercall
from .privcmd import Privcmd

PENDING, MASK = 2048, 2560          # shared_info.evtchn_pending / evtchn_mask
UPCALL_PENDING, PENDING_SEL = 0, 8  # vcpu_info[0] fields
_Q = struct.Struct("<Q")


class EventChannelDevice:
    """The host's demultiplexer of Dom0 events (one per Privcmd)."""

    def __init__(self, privcmd: Privcmd):
        self.privcmd = privcmd
        self._page, self._atomic = privcmd.event_page()
        self._owners: dict[int, EventChannelHandle] = {}
        self._lock = threading.Lock()
        privcmd.set_event_upcall(self._upcall)

    @classmethod
    def of(cls, privcmd: Privcmd) -> EventChannelDevice:
        dev = getattr(privcmd, "_evtchn_device", None)
        if dev is None:
            dev = privcmd._evtchn_device = cls(privcmd)
        return dev

    def open(self) -> EventChannelHandle:
        return EventChannelHandle(self)

    def _register(self, port: int, handle: EventChannelHandle) -> None:
        with self._lock:
            self._owners[port] = handle
        self._scan(all_words=True)     # it may have fired before we knew its owner

    def _unregister(self, port: int) -> None:
        with self._lock:
            self._owners.pop(port, None)

    def _upcall(self) -> None:
        self._scan(all_words=False)

    def _scan(self, all_words: bool) -> None:
        """Collect pending ports, mask them and wake their owners (Dom0's upcall)."""
        page = self._page
        fired: list[int] = []
        with self._atomic():
            page[UPCALL_PENDING] = 0
            sel = _Q.unpack_from(page, PENDING_SEL)[0]
            _Q.pack_into(page, PENDING_SEL, 0)
            if all_words:
                sel = (1 << 64) - 1
            with self._lock:
                owners = set(self._owners)
            while sel:
                word = (sel & -sel).bit_length() - 1
                sel &= sel - 1
                off = word * 8
                pend = _Q.unpack_from(page, PENDING + off)[0]
                ready = pend & ~_Q.unpack_from(page, MASK + off)[0]
                owned = 0
                while ready:
                    bit = (ready & -ready).bit_length() - 1
                    ready &= ready - 1
                    if word * 64 + bit in owners:
                        owned |= 1 << bit
                        fired.append(word * 64 + bit)
                # Ports nobody has bound yet stay pending; binding one rescans.
                if owned:
                    _Q.pack_into(page, PENDING + off, pend & ~owned)
                    mask_now = _Q.unpack_from(page, MASK + off)[0]
                    _Q.pack_into(page, MASK + off, mask_now | owned)
        for port in fired:
            with self._lock:
                h = self._owners.get(port)
            if h is not None:
                h._deliver(port)


class EventChannelHandle:
    """One user's event channels (xenevtchn_handle)."""

    def __init__(self, device: EventChannelDevice):
        self._dev = device
        self._privcmd = device.privcmd
        self._ports: set[int] = set()
        self._queue: deque[int] = deque()
        self._cv = threading.Condition()
        self._efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.closed = False

    # -- binding ----------------------------------------------------------------------
    def _op(self, cmd: EvtchnOp, layout, **fields):
        buf = self._privcmd.buffer(layout.pack(**fields))
        try:
            self._privcmd.hypercall(Hypercall.event_channel_op, cmd, buf.address,
                                    what=f"EVTCHNOP_{cmd.name}")
            return layout.unpack(buf.data)
        finally:
            self._privcmd.release(buf)

    def _bound(self, port: int) -> int:
        self._ports.add(port)
        self._dev._register(port, self)
        return port

    def bind_unbound_port(self, remote_domid: int) -> int:
        r = self._op(EvtchnOp.alloc_unbound, S.EVTCHN_ALLOC_UNBOUND, dom=DOMID_SELF,
                     remote_dom=remote_domid, port=0)
        return self._bound(r.port)

    def bind_interdomain(self, remote_domid: int, remote_port: int) -> int:
        r = self._op(EvtchnOp.bind_interdomain, S.EVTCHN_BIND_INTERDOMAIN,
                     remote_dom=remote_domid, remote_port=remote_port, local_port=0)
        return self._bound(r.local_port)

    def bind_virq(self, virq: int) -> int:
        r = self._op(EvtchnOp.bind_virq, S.EVTCHN_BIND_VIRQ, virq=int(virq), vcpu=0, port=0)
        return self._bound(r.port)

    def unbind(self, port: int) -> None:
        if port not in self._ports:
            raise ValueError(f"port {port} is not bound by this handle")
        self._ports.discard(port)
        self._dev._unregister(port)
        self._op(EvtchnOp.close, S.EVTCHN_CLOSE, port=port)

    def notify(self, port: int) -> None:
        self._op(EvtchnOp.send, S.EVTCHN_SEND, port=port)

    def unmask(self, port: int) -> None:
        self._op(EvtchnOp.unmask, S.EVTCHN_UNMASK, port=port)

    # -- receiving ----------------------------------------------------------------------
    def fileno(self) -> int:
        """Readable while ports are waiting in pending() (for select/poll loops)."""
        return self._efd

    def _deliver(self, port: int) -> None:
        with self._cv:
            self._queue.append(port)
            self._cv.notify_all()
        try:
            os.eventfd_write(self._efd, 1)
        except OSError:
            pass                          # closed meanwhile

    def pending(self, timeout: float | None = 0.0) -> int | None:
        """The next port that fired (masked until unmask()), or None after `timeout` s
        (None: wait for ever)."""
        with self._cv:
            if not self._queue and timeout != 0.0:
                self._cv.wait_for(lambda: self._queue or self.closed, timeout)
            if not self._queue:
                return None
            port = self._queue.popleft()
            if not self._queue:
                try:
                    os.eventfd_read(self._efd)
                except OSError:
                    pass
            return port

    def wait_readable(self, timeout: float | None) -> bool:
        r, _, _ = select.select([self._efd], [], [], timeout)
        return bool(r)

    def close(self) -> None:
        for port in list(self._ports):
            try:
                self.unbind(port)
            except Exception:  # noqa: BLE001 - closing must always finish
                pass
        with self._cv:
            self.closed = True
            self._cv.notify_all()
        os.close(self._efd)

    def __enter__(self) -> EventChannelHandle:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
