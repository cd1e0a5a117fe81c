"""XenstoreService: the store behind a Unix socket, introduced guests' rings and
in-process clients.

One selector thread serves the listening socket, every socket client, the
event channel handle (guest rings and VIRQ_DOM_EXC) and a wake-up eventfd.
In-process clients run their requests in their own thread. Everything that
touches the store or a connection holds `lock`; each locked step ends by
flushing the connections it gave output to.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import threading
from collections.abc import Callable

from ...abi.constants import (
    DOMID_FIRST_RESERVED,
    XENSTORE_REL_PATH_MAX,
    Virq,
    XsType,
)
from .connection import Connection, LocalConnection, RingConnection, SocketConnection
from .store import (
    OWNER,
    READ,
    WRITE,
    Change,
    Quotas,
    Store,
    Transaction,
    parent_of,
    parse_perms,
    perm_for,
    perms_to_strings,
    valid_path,
)
from .watches import SPECIAL_WATCHES, Watch, WatchTable
from .wire import OK, PAYLOAD_MAX, XsError, atoi, error_payload, one_arg, strings, type_name

_log = logging.getLogger("pyxen.xenstored")
_ERROR = int(XsType.ERROR)
_E2BIG = error_payload("E2BIG")
_EIO = error_payload("EIO")
DEFAULT_SOCKET_PATH = "/var/run/xenstored/socket"


class IntroducedDomain:
    def __init__(self, domid: int, gfn: int, remote_port: int, conn: RingConnection):
        self.domid = domid
        self.gfn = gfn
        self.remote_port = remote_port
        self.conn = conn
        self.shutdown = False         # @releaseDomain already sent for this shutdown


class XenstoreService:
    def __init__(self, privcmd, socket_path: str | None, *, quotas: Quotas | None = None,
                 log: Callable[[str], None] | None = None):
        self.privcmd = privcmd
        self.socket_path = socket_path
        self.store = Store(quotas)
        self.quotas = self.store.quotas
        self.watches = WatchTable()
        self.lock = threading.RLock()
        self.dirty: set[Connection] = set()
        self.connections: set[Connection] = set()
        self.domains: dict[int, IntroducedDomain] = {}
        self._by_port: dict[int, IntroducedDomain] = {}
        self._log = log or _log.warning
        self._trace = False
        self._after_reply: Callable[[], None] | None = None
        self._poll: select.epoll | None = None
        self._fd_handlers: dict[int, Callable[[int], None]] = {}
        self._listener: socket.socket | None = None
        self._wake_fd = -1
        self._thread: threading.Thread | None = None
        self._loop_ident = None
        self._stopping = False
        self._interest: set[SocketConnection] = set()
        self._deferred: set[RingConnection] = set()
        self._to_close: list[SocketConnection] = []
        self._evtchn = None
        self._virq_port = None
        self._virq_unbind = None
        self._check_domains_due = False
        self._xenctrl = None
        self._handlers = {
            XsType.CONTROL: self._control,
            XsType.DIRECTORY: self._directory,
            XsType.READ: self._read,
            XsType.GET_PERMS: self._get_perms,
            XsType.WATCH: self._watch,
            XsType.UNWATCH: self._unwatch,
            XsType.TRANSACTION_START: self._transaction_start,
            XsType.TRANSACTION_END: self._transaction_end,
            XsType.INTRODUCE: self._introduce,
            XsType.RELEASE: self._release,
            XsType.GET_DOMAIN_PATH: self._get_domain_path,
            XsType.WRITE: self._write,
            XsType.MKDIR: self._mkdir,
            XsType.RM: self._rm,
            XsType.SET_PERMS: self._set_perms,
            XsType.IS_DOMAIN_INTRODUCED: self._is_domain_introduced,
            XsType.RESUME: self._resume,
            XsType.SET_TARGET: self._set_target,
            XsType.RESET_WATCHES: self._reset_watches,
            XsType.DIRECTORY_PART: self._directory_part,
        }
        self._handlers = {int(k): v for k, v in self._handlers.items()}

    # -- life cycle --------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("xenstored already started")
        self._poll = select.epoll()
        self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._register(self._wake_fd, select.EPOLLIN, self._on_wake)
        if self.socket_path is not None:
            try:
                os.unlink(self.socket_path)
            except FileNotFoundError:
                pass
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(self.socket_path)
            os.chmod(self.socket_path, 0o600)    # as xenstored: the owner (and root) only
            listener.listen(128)
            listener.setblocking(False)
            self._listener = listener
            self._register(listener.fileno(), select.EPOLLIN, self._on_accept)
        if self.privcmd is not None:
            self._open_event_channels()
        self._thread = threading.Thread(target=self._run, name="xenstored", daemon=True)
        self._thread.start()

    def _open_event_channels(self) -> None:
        from ...toolstack.evtchn import EventChannelDevice
        from ...toolstack.privcmd import XenError
        from ...toolstack.xenctrl import XenCtrl

        self._xenctrl = XenCtrl(self.privcmd)
        self._evtchn = EventChannelDevice.of(self.privcmd).open()
        self._register(self._evtchn.fileno(), select.EPOLLIN, self._on_event_channel)
        try:
            self._virq_port = self._evtchn.bind_virq(Virq.DOM_EXC)
        except XenError:
            # Another Dom0 service holds VIRQ_DOM_EXC's port: take the host callback.
            self._virq_unbind = self.privcmd.bind_virq(Virq.DOM_EXC, self._dom_exc_callback)

    def stop(self) -> None:
        thread = self._thread
        if thread is None:
            return
        with self.lock:
            self._stopping = True
        self._wake()
        thread.join(10)
        self._thread = None
        with self.lock:
            for conn in list(self.connections):
                self._forget(conn)
                if isinstance(conn, SocketConnection):
                    self._to_close.append(conn)
            self._apply_interest()
            for dom in list(self.domains.values()):
                self._detach_domain(dom)
        if self._virq_unbind is not None:
            self._virq_unbind()
        if self._evtchn is not None:
            self._evtchn.close()
        if self._listener is not None:
            self._listener.close()
            try:
                os.unlink(self.socket_path)
            except FileNotFoundError:
                pass
        self._poll.close()
        os.close(self._wake_fd)

    def __enter__(self) -> XenstoreService:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- clients in this process -------------------------------------------------------
    def local_client(self):
        """A Dom0 client running its requests in the caller's thread."""
        return self._local_client(0)

    def local_client_as_domain_for_tests(self, domid: int):
        """TEST ONLY: an in-process client the store treats as unprivileged domain
        `domid` (as if it spoke through that domain's ring)."""
        return self._local_client(domid)

    def socket_as_domain_for_tests(self, domid: int) -> socket.socket:
        """TEST ONLY: one end of a socket pair served as unprivileged domain `domid`."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        ours.setblocking(False)
        with self.lock:
            conn = SocketConnection(self, ours, domid)
            self.connections.add(conn)
            self._interest.add(conn)     # the loop registers it
        self._wake()
        return theirs

    def _local_client(self, domid: int):
        from .client import XsClient, _LocalTransport

        with self.lock:
            conn = LocalConnection(self, domid)
            self.connections.add(conn)
        return XsClient(_LocalTransport(self, conn))

    def close_local(self, conn: LocalConnection) -> None:
        with self.lock:
            if not conn.dead:
                self._forget(conn)

    # -- the loop ----------------------------------------------------------------------
    def _wake(self) -> None:
        if self._wake_fd < 0:
            return                         # not started: nothing to wake
        try:
            os.eventfd_write(self._wake_fd, 1)
        except OSError:
            pass

    def _register(self, fd: int, events: int, handler: Callable[[int], None]) -> None:
        self._poll.register(fd, events)
        self._fd_handlers[fd] = handler

    def _unregister(self, fd: int) -> None:
        self._fd_handlers.pop(fd, None)
        try:
            self._poll.unregister(fd)
        except (OSError, ValueError):
            pass

    def _in_loop(self) -> bool:
        return threading.get_ident() == self._loop_ident

    def _run(self) -> None:
        self._loop_ident = threading.get_ident()
        poll = self._poll
        handlers = self._fd_handlers
        while True:
            if self._interest or self._to_close or self._stopping:
                with self.lock:
                    if self._stopping:
                        return
                    self._apply_interest()
            try:
                ready = poll.poll()
            except InterruptedError:
                continue
            with self.lock:
                for fd, mask in ready:
                    handler = handlers.get(fd)
                    if handler is None:
                        continue             # closed in this round
                    try:
                        handler(mask)
                    except Exception as e:  # noqa: BLE001 - one bad event must not stop us
                        self.note(f"xenstored: internal error serving fd {fd}: {e!r}")
                if self._deferred:
                    deferred, self._deferred = self._deferred, set()
                    for ring in deferred:
                        ring.pump()
                if self._check_domains_due:
                    self._check_domains_due = False
                    self._check_domains()
                self.flush_dirty()

    def _apply_interest(self) -> None:
        for conn in self._to_close:
            if conn.registered:
                self._unregister(conn.fd)
                conn.registered = 0
            conn.close()
        self._to_close.clear()
        for conn in self._interest:
            if conn.dead:
                continue
            events = conn.wanted_events()
            if events == conn.registered:
                continue
            if not conn.registered:
                self._register(conn.fd, events, conn.on_io)
            elif not events:
                self._unregister(conn.fd)
            else:
                self._poll.modify(conn.fd, events)
            conn.registered = events
        self._interest.clear()

    def update_interest(self, conn: SocketConnection) -> None:
        """After a flush: have the loop watch for what `conn` now waits for."""
        if conn.wanted_events() != conn.registered:
            self._interest.add(conn)
            if not self._in_loop():
                self._wake()

    def _on_wake(self, mask: int) -> None:
        try:
            os.eventfd_read(self._wake_fd)
        except BlockingIOError:
            pass

    def _on_accept(self, mask: int) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                self.note(f"xenstored: accept failed: {e}")
                return
            sock.setblocking(False)
            conn = SocketConnection(self, sock, 0)
            self.connections.add(conn)
            self._register(conn.fd, select.EPOLLIN, conn.on_io)
            conn.registered = select.EPOLLIN

    def flush_dirty(self) -> None:
        while self.dirty:
            conn = self.dirty.pop()
            conn.flush()

    # -- connection teardown -----------------------------------------------------------
    def _forget(self, conn: Connection) -> None:
        """Drop a connection's watches and transactions and stop serving it."""
        conn.dead = True
        self.watches.remove_all(conn)
        conn.transactions.clear()
        self.connections.discard(conn)
        self.dirty.discard(conn)
        if isinstance(conn, LocalConnection):
            conn.close()

    def drop_connection(self, conn: Connection, reason: str | None) -> None:
        if conn.dead:
            return
        if reason:
            self.note(f"xenstored: dropping {conn.name}: {reason}")
        if isinstance(conn, RingConnection):
            self.bad_ring(conn, reason or "closed")
            return
        self._forget(conn)
        if isinstance(conn, SocketConnection):
            self._to_close.append(conn)
            if not self._in_loop():
                self._wake()

    def bad_ring(self, conn: RingConnection, reason: str) -> None:
        """A guest broke its ring: xenstored frees the connection and with it the
        domain, which fires @releaseDomain."""
        self.note(f"xenstored: domain {conn.domid} ring unusable ({reason}); released")
        dom = self.domains.get(conn.domid)
        if dom is not None and dom.conn is conn:
            self._detach_domain(dom)
            self.watches.fire_special("@releaseDomain")
        else:
            self._forget(conn)

    def defer(self, conn: RingConnection) -> None:
        """A busy ring used its turn: serve it again on the loop's next round."""
        self._deferred.add(conn)
        self._wake()

    def note(self, line: str) -> None:
        try:
            self._log(line)
        except Exception:  # noqa: BLE001 - a broken logger must not break the daemon
            pass

    # -- request dispatch --------------------------------------------------------------
    def handle(self, conn: Connection, mtype: int, req_id: int, tx_id: int,
               payload: bytes) -> None:
        """Process one request and queue its reply (lock held)."""
        self._after_reply = None
        if self._trace:
            self.note(f"xenstored: {conn.name}: {type_name(mtype)} {payload[:64]!r}")
        rtype = mtype
        try:
            tx = None
            if tx_id:
                tx = conn.transactions.get(tx_id)
                if tx is None:
                    raise XsError("ENOENT", f"no transaction {tx_id}")
            handler = self._handlers.get(mtype)
            if handler is None:
                self.note(f"xenstored: {conn.name} sent unknown operation {mtype}")
                raise XsError("ENOSYS")
            reply = handler(conn, tx, payload)
            if len(reply) > PAYLOAD_MAX:
                rtype, reply = _ERROR, _E2BIG
                self._after_reply = None
        except XsError as e:
            rtype, reply = _ERROR, error_payload(e.name)
        except Exception as e:  # noqa: BLE001 - a bug answers EIO, the daemon lives on
            self.note(f"xenstored: internal error on {type_name(mtype)} from {conn.name}: "
                      f"{e!r}")
            rtype, reply = _ERROR, _EIO
            self._after_reply = None
        changes = self.store.pending_changes
        if changes:
            # As xenstored: watch events for a change are queued before its reply.
            self.store.pending_changes = []
            for change in changes:
                self.watches.fire(change)
        conn.send_reply(rtype, req_id, tx_id, reply)
        if self._after_reply is not None:
            after, self._after_reply = self._after_reply, None
            after()

    def _path(self, conn: Connection, raw: bytes) -> str:
        text = raw.decode("latin-1")
        if not text.startswith(("/", "@")):
            text = f"{conn.home}/{text}"
        if not valid_path(text):            # "@..." names no node
            raise XsError("EINVAL", f"bad path {text[:80]!r}")
        return text

    def _view(self, tx: Transaction | None):
        return tx if tx is not None else self.store.direct

    # -- nodes -------------------------------------------------------------------------
    def _read(self, conn, tx, payload: bytes) -> bytes:
        path = self._path(conn, one_arg(payload))
        return self.store.lookup(self._view(tx), conn, path, READ).value

    def _write(self, conn, tx, payload: bytes) -> bytes:
        nul = payload.find(b"\0")
        if nul < 0:
            raise XsError("EINVAL", "WRITE without a path")
        path = self._path(conn, payload[:nul])
        value = payload[nul + 1:]
        view = self._view(tx)
        store = self.store
        node = store.lookup(view, conn, path, WRITE, missing_ok=True)
        if node is None:
            node = store.create(view, conn, path, value)
        else:
            node = store.set_value(view, conn, path, node, value)
        view.changed(Change(path, node.perms))
        return OK

    def _mkdir(self, conn, tx, payload: bytes) -> bytes:
        path = self._path(conn, one_arg(payload))
        view = self._view(tx)
        if self.store.lookup(view, conn, path, WRITE, missing_ok=True) is None:
            node = self.store.create(view, conn, path, b"")
            view.changed(Change(path, node.perms))
        return OK

    def _rm(self, conn, tx, payload: bytes) -> bytes:
        path = self._path(conn, one_arg(payload))
        view = self._view(tx)
        node = self.store.lookup(view, conn, path, WRITE, missing_ok=True)
        if node is None:
            if view.get(parent_of(path)) is not None:
                return OK                 # already gone, and its parent exists
            raise XsError("ENOENT", path)
        if path == "/":
            raise XsError("EINVAL", "cannot remove /")
        removed = self.store.remove(view, conn, path)
        view.changed(Change(path, node.perms, removed=removed))
        return OK

    def _directory(self, conn, tx, payload: bytes) -> bytes:
        path = self._path(conn, one_arg(payload))
        return self.store.lookup(self._view(tx), conn, path, READ).children_blob()

    def _directory_part(self, conn, tx, payload: bytes) -> bytes:
        if payload.count(b"\0") != 2:
            raise XsError("EINVAL", "DIRECTORY_PART takes a path and an offset")
        raw_path, raw_offset = strings(payload)
        node = self.store.lookup(self._view(tx), conn, self._path(conn, raw_path), READ)
        offset = atoi(raw_offset) & 0xFFFFFFFF
        generation = node.generation if node.generation >= 0 else self.store.generation
        gen = str(generation).encode() + b"\0"
        blob = node.children_blob()
        if offset >= len(blob):
            return gen + b"\0"            # past the end: an empty list
        room = PAYLOAD_MAX - len(gen) - 1
        length, pos = 0, offset
        while True:
            end = blob.index(b"\0", pos)
            if length + (end - pos) >= room:
                break
            length += end - pos + 1
            pos = end + 1
            if offset + length == len(blob):
                break
        part = gen + blob[offset:offset + length]
        if offset + length == len(blob):
            part += b"\0"                 # an empty name ends the list
        return part

    def _get_perms(self, conn, tx, payload: bytes) -> bytes:
        raw = one_arg(payload)
        if raw.startswith(b"@"):
            perms = self._special_perms(conn, raw, READ)
        else:
            perms = self.store.lookup(self._view(tx), conn, self._path(conn, raw), READ).perms
        return b"".join(p.encode() + b"\0" for p in perms_to_strings(perms))

    def _special_perms(self, conn, raw: bytes, perm: int):
        perms = self.watches.special_perms.get(raw.decode("latin-1"))
        if perms is None:
            raise XsError("ENOENT", f"no special node {raw[:40]!r}")
        if perm_for(conn, perms) & perm != perm:
            raise XsError("EACCES")
        return perms

    def _set_perms(self, conn, tx, payload: bytes) -> bytes:
        if payload.count(b"\0") < 2:
            raise XsError("EINVAL", "SET_PERMS takes a path and permissions")
        raw, *items = strings(payload)
        if raw.startswith(b"@"):
            self._special_perms(conn, raw, WRITE | OWNER)
            self.watches.special_perms[raw.decode()] = parse_perms(items)
            return OK
        path = self._path(conn, raw)
        view = self._view(tx)
        node = self.store.lookup(view, conn, path, WRITE | OWNER)
        perms = parse_perms(items)
        if not conn.privileged and perms[0][0] != node.perms[0][0]:
            raise XsError("EPERM", "only Dom0 changes a node's owner")
        new = self.store.set_perms(view, conn, path, node, perms)
        view.changed(Change(path, new.perms, old_perms=node.perms))
        return OK

    # -- watches -----------------------------------------------------------------------
    def _watch(self, conn, tx, payload: bytes) -> bytes:
        args = strings(payload)
        if len(args) != 2:
            raise XsError("EINVAL", "WATCH takes a path and a token")
        raw, token = args
        if raw.startswith(b"@"):
            if len(raw) > XENSTORE_REL_PATH_MAX:
                raise XsError("EINVAL", "special watch name too long")
            path, prefix = raw.decode("latin-1"), None
        else:
            path = self._path(conn, raw)
            prefix = None if raw.startswith(b"/") else conn.home
        if (path, token) in conn.watches:
            raise XsError("EEXIST")
        if not conn.privileged and self.watches.per_domain[conn.domid] > self.quotas.watches:
            raise XsError("E2BIG", "watch quota")
        watch = Watch(conn, path, token, prefix)
        self.watches.add(watch)
        # xenstored fires a new watch once, right after its reply.
        self._after_reply = lambda: conn.push_event(self.watches.event_payload(watch, path))
        return OK

    def _unwatch(self, conn, tx, payload: bytes) -> bytes:
        args = strings(payload)
        if len(args) != 2:
            raise XsError("EINVAL", "UNWATCH takes a path and a token")
        raw, token = args
        text = raw.decode("latin-1")
        if not text.startswith(("/", "@")):
            text = f"{conn.home}/{text}"
        watch = conn.watches.get((text, token))
        if watch is None:
            raise XsError("ENOENT", "no such watch")
        self.watches.remove(watch)
        return OK

    def _reset_watches(self, conn, tx, payload: bytes) -> bytes:
        self.watches.remove_all(conn)
        conn.transactions.clear()
        return OK

    # -- transactions ------------------------------------------------------------------
    def _transaction_start(self, conn, tx, payload: bytes) -> bytes:
        if tx is not None:
            raise XsError("EBUSY", "already in a transaction")
        if not conn.privileged and len(conn.transactions) > self.quotas.transactions:
            raise XsError("ENOSPC", "transaction quota")
        tx_id = conn.next_tx_id
        while tx_id == 0 or tx_id in conn.transactions:
            tx_id = (tx_id + 1) & 0xFFFFFFFF
        conn.next_tx_id = (tx_id + 1) & 0xFFFFFFFF
        conn.transactions[tx_id] = Transaction(self.store, tx_id)
        return str(tx_id).encode() + b"\0"

    def _transaction_end(self, conn, tx, payload: bytes) -> bytes:
        arg = one_arg(payload)
        if arg not in (b"T", b"F"):
            raise XsError("EINVAL", "TRANSACTION_END takes T or F")
        if tx is None:
            raise XsError("ENOENT", "no transaction")
        del conn.transactions[tx.id]
        if arg == b"T":
            for change in tx.commit():
                self.watches.fire(change)
        return OK

    # -- domains -----------------------------------------------------------------------
    def _require_privileged(self, conn) -> None:
        if not conn.privileged:
            raise XsError("EACCES", "Dom0 only")

    def _introduce(self, conn, tx, payload: bytes) -> bytes:
        args = strings(payload)
        if len(args) < 3:
            raise XsError("EINVAL", "INTRODUCE takes domid, mfn and port")
        self._require_privileged(conn)
        domid, gfn, port = atoi(args[0]), atoi(args[1]), atoi(args[2])
        if port <= 0 or not 0 < domid < DOMID_FIRST_RESERVED:
            raise XsError("EINVAL", "bad domid or port")
        dom = self.domains.get(domid)
        if dom is None:
            dom = self._attach_domain(domid, gfn, port)
            self.watches.fire_special("@introduceDomain")
        elif dom.gfn == gfn and dom.conn is not conn:
            # Re-introduction of a known ring: only the event channel is re-bound.
            self._rebind(dom, port)
        else:
            raise XsError("EINVAL", f"domain {domid} introduced with another page")
        self.watches.remove_all(dom.conn)
        dom.conn.transactions.clear()
        dom.conn.reset_ring()
        self.dirty.add(dom.conn)
        return OK

    def _attach_domain(self, domid: int, gfn: int, port: int) -> IntroducedDomain:
        if self.privcmd is None or self._evtchn is None:
            self.note(f"xenstored: INTRODUCE of domain {domid} without a hypervisor")
            raise XsError("EINVAL", "no hypervisor")
        from ...toolstack.privcmd import XenError

        try:
            (page,) = self.privcmd.map_foreign(domid, [gfn], writable=True)
        except (XenError, ValueError, OverflowError) as e:
            self.note(f"xenstored: cannot map ring {gfn:#x} of domain {domid}: {e}")
            raise XsError("EINVAL", "cannot map the ring") from None
        try:
            local = self._evtchn.bind_interdomain(domid, port)
        except XenError as e:
            self.note(f"xenstored: cannot bind port {port} of domain {domid}: {e}")
            raise XsError("EINVAL", "cannot bind the event channel") from None
        ring = RingConnection(self, domid, page, self._evtchn, local)
        dom = IntroducedDomain(domid, gfn, port, ring)
        self.domains[domid] = dom
        self._by_port[local] = dom
        self.connections.add(ring)
        return dom

    def _rebind(self, dom: IntroducedDomain, port: int) -> None:
        from ...toolstack.privcmd import XenError

        old = dom.conn.port
        self._by_port.pop(old, None)
        try:
            self._evtchn.unbind(old)
        except (XenError, ValueError):
            pass
        try:
            dom.conn.port = self._evtchn.bind_interdomain(dom.domid, port)
        except XenError as e:
            self.note(f"xenstored: cannot re-bind port {port} of domain {dom.domid}: {e}")
            raise XsError("EINVAL", "cannot bind the event channel") from None
        dom.remote_port = port
        self._by_port[dom.conn.port] = dom

    def _detach_domain(self, dom: IntroducedDomain) -> None:
        """Stop serving a domain: unbind its port, unmap its ring, drop its state."""
        from ...toolstack.privcmd import XenError

        self.domains.pop(dom.domid, None)
        self._by_port.pop(dom.conn.port, None)
        self._forget(dom.conn)
        dom.conn.close()
        try:
            self._evtchn.unbind(dom.conn.port)
        except (XenError, ValueError):
            pass

    def _domain_arg(self, payload: bytes) -> int:
        return atoi(one_arg(payload)) & 0xFFFFFFFF

    def _release(self, conn, tx, payload: bytes) -> bytes:
        domid = self._domain_arg(payload)
        if not domid:
            raise XsError("EINVAL", "cannot release Dom0")
        self._require_privileged(conn)
        dom = self.domains.get(domid)
        if dom is None:
            raise XsError("ENOENT", f"domain {domid} not introduced")
        self._detach_domain(dom)
        self.watches.fire_special("@releaseDomain")
        return OK

    def _is_domain_introduced(self, conn, tx, payload: bytes) -> bytes:
        domid = self._domain_arg(payload)
        self._require_privileged(conn)       # XSA-115: domains may not probe others
        return b"T\0" if domid == 0 or domid in self.domains else b"F\0"

    def _get_domain_path(self, conn, tx, payload: bytes) -> bytes:
        return f"/local/domain/{self._domain_arg(payload)}\0".encode()

    def _resume(self, conn, tx, payload: bytes) -> bytes:
        domid = self._domain_arg(payload)
        self._require_privileged(conn)
        dom = self.domains.get(domid)
        if dom is None:
            raise XsError("ENOENT", f"domain {domid} not introduced")
        dom.shutdown = False
        return OK

    def _set_target(self, conn, tx, payload: bytes) -> bytes:
        args = strings(payload)
        if len(args) < 2:
            raise XsError("EINVAL", "SET_TARGET takes two domids")
        self._require_privileged(conn)
        domid, target = atoi(args[0]), atoi(args[1])
        dom = self.domains.get(domid)
        if dom is None or target not in self.domains:
            raise XsError("ENOENT", "domain not introduced")
        dom.conn.target = target
        return OK

    def _on_event_channel(self, mask: int) -> None:
        handle = self._evtchn
        while True:
            port = handle.pending(0.0)
            if port is None:
                return
            handle.unmask(port)
            if port == self._virq_port:
                self._check_domains()
                continue
            dom = self._by_port.get(port)
            if dom is not None:
                dom.conn.pump()

    def _dom_exc_callback(self) -> None:
        # Runs on a hypervisor thread: hand the work to the loop.
        self._check_domains_due = True
        self._wake()

    def _check_domains(self) -> None:
        """VIRQ_DOM_EXC: a domain shut down or died. Dying and vanished domains are
        released; @releaseDomain fires once per shutdown (until RESUME)."""
        notify = False
        # One sysctl for all domains: per-domain lookups made this O(N) hypercalls
        # under the store lock, which slowed every client down on a busy host.
        infos = {i.domid: i for i in self._xenctrl.domain_getinfo_all()}
        for dom in list(self.domains.values()):
            info = infos.get(dom.domid)
            if info is not None:
                if info.shutdown and not dom.shutdown:
                    dom.shutdown = True
                    notify = True
                if not info.dying:
                    continue
            self._detach_domain(dom)
            notify = True
        if notify:
            self.watches.fire_special("@releaseDomain")

    # -- CONTROL -----------------------------------------------------------------------
    _CONTROL_HELP = (b"Valid commands:\ncheck\nhelp\nlog on|off\nmemreport\n"
                     b"print <string>\n\0")

    def _control(self, conn, tx, payload: bytes) -> bytes:
        self._require_privileged(conn)
        args = strings(payload)
        if not args:
            raise XsError("EINVAL", "CONTROL needs a command")
        cmd, rest = args[0], args[1:]
        if cmd == b"help":
            return self._CONTROL_HELP
        if cmd == b"check":
            problems = self.store.check()
            for line in problems:
                self.note(f"xenstored: check: {line}")
            return OK
        if cmd == b"log" and rest and rest[0] in (b"on", b"off"):
            self._trace = rest[0] == b"on"
            return OK
        if cmd == b"print" and rest:
            self.note(f"xenstored: {rest[0].decode('latin-1')}")
            return OK
        if cmd == b"memreport":
            transactions = sum(len(c.transactions) for c in self.connections)
            self.note(f"xenstored: {len(self.store.nodes)} nodes, "
                      f"{len(self.connections)} connections, "
                      f"{sum(len(c.watches) for c in self.connections)} watches, "
                      f"{transactions} transactions, {len(self.domains)} domains")
            return OK
        raise XsError("EINVAL", f"unknown control command {cmd[:40]!r}")


__all__ = ["DEFAULT_SOCKET_PATH", "SPECIAL_WATCHES", "XenstoreService"]
