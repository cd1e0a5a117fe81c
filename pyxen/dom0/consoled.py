"""Dom0's console daemon: serves guest console rings and the hypervisor console,
in the manner of xenconsoled.

For each guest the toolstack calls `add_domain` with the console ring's gfn
(HVM_PARAM_CONSOLE_PFN) and the port the domain builder allocated unbound for
Dom0 (HVM_PARAM_CONSOLE_EVTCHN). The service maps the page (privcmd foreign
mapping), binds the interdomain port (event channel device) and from then on,
on its one service thread:

* consumes everything the guest puts in `out` (out_cons advanced, guest
  notified) and appends it to ``<log_dir>/guest-<name>.log`` (when a log
  directory is given, like ``xenconsoled --log=guest``), to a bounded backlog
  (so a client attaching later sees recent output) and to the attached client;
* copies what the attached client writes into `in`, never more than the ring's
  free space: the rest waits in the client's socket until the guest consumes
  input and notifies.

`attach(domid)` gives one client at a time per console (a second attach is
refused, as the xenconsole client refuses when another one holds the
console's lock); `attach_hypervisor()` gives the hypervisor's console ring
(sysctl readconsole from index 0, then new output as VIRQ_CON_RING fires),
read-only, to any number of clients. An attachment is one end of a Unix
socket pair, so a host daemon can splice its `fileno()` to a network socket.

The ring page belongs to the guest, which may write anything there: indices
are free-running u32 values, read once per pass, masked by the ring size and
checked (a producer more than one ring ahead of its consumer, which includes a
consumer ahead of its producer, is a bad guest). A bad ring stops that console
(one log line; its port stays masked, its backlog and log are kept, input to
it is discarded); nothing a guest does can stop the thread or reach another
domain's console.

Nothing here waits for a guest: event ports, client sockets and the wake-up
fd are multiplexed by one selector, client sockets are non-blocking on the
service side, and output for a client that does not read is kept in a bounded
queue (the oldest bytes are dropped beyond it).

Known limit: privcmd's foreign mappings do not hold a reference on the frame
(Xen's do), so before each pass that writes to a ring the service checks that
the domain still exists and is not dying; a domain found gone has its console
closed (clients get end of file) and its page is never touched again.
"""

from __future__ import annotations

import logging
import os
import re
import select
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable

from ..abi import structs as S
from ..abi.constants import Errno, Virq
from ..toolstack.evtchn import EventChannelDevice, EventChannelHandle
from ..toolstack.privcmd import Privcmd, XenError
from ..toolstack.xenctrl import XenCtrl

IN_SIZE = S.XENCONS_INTERFACE.sizeof("in_")        # 1024
OUT_SIZE = S.XENCONS_INTERFACE.sizeof("out")       # 2048
IN_OFF = S.XENCONS_INTERFACE.offsetof("in_")
OUT_OFF = S.XENCONS_INTERFACE.offsetof("out")
IN_CONS = S.XENCONS_INTERFACE.offsetof("in_cons")
IN_PROD = S.XENCONS_INTERFACE.offsetof("in_prod")
OUT_CONS = S.XENCONS_INTERFACE.offsetof("out_cons")
OUT_PROD = S.XENCONS_INTERFACE.offsetof("out_prod")

BACKLOG_SIZE = 64 * 1024          # recent output replayed to a client that attaches
CLIENT_QUEUE_SIZE = 256 * 1024    # output waiting for a slow client (oldest dropped)
HV_READ_CHUNK = 1 << 16
MAX_NAME = 255

_U32 = struct.Struct("<I")
_LINES = re.compile(rb"[^\n]*\n|[^\n]+")
_M32 = 0xFFFF_FFFF

RUNNING, STOPPED, GONE = "running", "stopped", "gone"


class ConsoleError(RuntimeError):
    """A console request could not be done; the message is one line for the user."""


def _errname(e: XenError) -> str:
    try:
        return Errno(e.errno).name
    except ValueError:
        return f"error {e.errno}"


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not name:
        raise ConsoleError("a console needs a non-empty domain name")
    if "/" in name or "\0" in name or name in (".", "..") or len(name) > MAX_NAME:
        raise ConsoleError(f"domain name {name!r} cannot name a log file "
                           f"(no '/', NUL, '.' or '..'; at most {MAX_NAME} characters)")
    return name


class ConsoleAttachment:
    """A client's end of a console: a connected Unix stream socket.

    Output arrives on it (first the backlog); bytes written to it go to the
    guest's `in` ring. `fileno()` can be handed to select/splice loops.
    """

    def __init__(self, service: ConsoleService, client: _Client, sock: socket.socket,
                 readonly: bool, what: str):
        self._service = service
        self._client = client
        self.socket = sock
        self.readonly = readonly
        self.what = what
        self.closed = False

    def fileno(self) -> int:
        return self.socket.fileno()

    def read(self, timeout: float | None = None) -> bytes | None:
        """Output that arrived within `timeout` seconds (None: wait for ever): b"" if
        nothing came, None once the console has gone away (end of file)."""
        if self.closed:
            return None
        try:
            ready, _, _ = select.select([self.socket], [], [], timeout)
            if not ready:
                return b""
            return self.socket.recv(65536) or None
        except (BlockingIOError, InterruptedError):
            return b""
        except OSError:
            return None

    def write(self, data: bytes) -> None:
        """Send input to the guest (it waits in the socket while the ring is full)."""
        if self.readonly:
            raise ConsoleError(f"{self.what} is read-only")
        if self.closed:
            raise ConsoleError(f"{self.what}: the attachment is closed")
        try:
            self.socket.sendall(bytes(data), socket.MSG_NOSIGNAL)
        except OSError as e:
            raise ConsoleError(f"{self.what} has gone away ({e.strerror or e})") from None

    def close(self) -> None:
        """Detach (another client may attach at once)."""
        if self.closed:
            return
        self.closed = True
        self._service._detach(self._client)
        try:
            self.socket.shutdown(socket.SHUT_RDWR)     # wakes a reader in another thread
        except OSError:
            pass
        self.socket.close()

    def __enter__(self) -> ConsoleAttachment:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Client:
    """The service's side of an attachment."""

    def __init__(self, sock: socket.socket, console: _Console | None):
        self.sock = sock
        self.console = console          # None: the hypervisor console
        self.queue = bytearray()
        self.dropped = 0
        self.hv_index = 0
        self.eof = False                # the client went away

    def push(self, data: bytes) -> None:
        self.queue += data
        excess = len(self.queue) - CLIENT_QUEUE_SIZE
        if excess > 0:
            del self.queue[:excess]
            self.dropped += excess


class _Console:
    def __init__(self, domid: int, name: str, gfn: int, remote_port: int):
        self.domid = domid
        self.name = name
        self.gfn = gfn
        self.remote_port = remote_port
        self.port = 0                   # our local port
        self.page: memoryview | None = None
        self.state = RUNNING
        self.backlog = bytearray()
        self.logf = None
        self.log_at_line_start = True
        self.client: _Client | None = None
        self.in_full = False            # `in` had no room: wait for the guest's event
        self.bytes_out = 0
        self.bytes_in = 0

    def label(self) -> str:
        return f"domain {self.domid} ({self.name})"


class ConsoleService:
    """xenconsoled for pyxen's Dom0 (see the module docstring)."""

    def __init__(self, privcmd: Privcmd, *, log_dir: str | None = None,
                 log: Callable[[str], None] | None = None, timestamps: bool = False,
                 backlog_size: int = BACKLOG_SIZE):
        self.privcmd = privcmd
        self.xc = XenCtrl(privcmd)
        self.log_dir = log_dir
        self.timestamps = timestamps
        self.backlog_size = backlog_size
        self._log = log or logging.getLogger("pyxen.consoled").warning
        self._lock = threading.RLock()
        self._events: EventChannelHandle = EventChannelDevice.of(privcmd).open()
        self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._consoles: dict[int, _Console] = {}
        self._by_port: dict[int, _Console] = {}
        self._kicked: set[int] = set()          # domids to look at on the next pass
        self._hv_clients: list[_Client] = []
        self._hv_port: int | None = None        # VIRQ_CON_RING on our event handle
        self._hv_unbind: Callable[[], None] | None = None   # or privcmd's host callback
        self._hv_dirty = False
        self._retired: list[_Client] = []       # service-side sockets to close
        self._registered: dict[int, tuple[_Client, int]] = {}
        self._selector: selectors.BaseSelector | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._closed = False

    # -- life cycle -----------------------------------------------------------------------
    def start(self) -> None:
        with self._lock:
            if self._closed:
                raise ConsoleError("the console service has been stopped")
            if self._thread is not None:
                raise ConsoleError("the console service is already running")
            self._selector = selectors.DefaultSelector()
            self._selector.register(self._wake_fd, selectors.EVENT_READ, "wake")
            self._selector.register(self._events.fileno(), selectors.EVENT_READ, "evtchn")
            self._thread = threading.Thread(target=self._run, name="pyxen-consoled",
                                            daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Flush and release every console, close every client, stop the thread."""
        with self._lock:
            if self._closed:
                return
            self._stopping = True
            self._wake()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            self._closed = True
            self._thread = None
            for domid in list(self._consoles):
                self._remove(domid)
            for client in self._hv_clients:
                self._retire(client)
            self._hv_clients.clear()
            self._close_retired()
            if self._hv_unbind is not None:
                self._hv_unbind()
                self._hv_unbind = None
            self._events.close()
            if self._selector is not None:
                self._selector.close()
            os.close(self._wake_fd)

    def __enter__(self) -> ConsoleService:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- domains -------------------------------------------------------------------------
    def add_domain(self, domid: int, name: str, gfn: int, port: int) -> None:
        """Serve `domid`'s console ring at `gfn`, signalled through `port` (the guest's
        port, allocated unbound for Dom0)."""
        _check_name(name)
        with self._lock:
            self._usable()
            if domid in self._consoles:
                raise ConsoleError(f"domain {domid} already has a console "
                                   f"({self._consoles[domid].name})")
            c = _Console(domid, name, gfn, port)
            try:
                c.page = self.privcmd.map_foreign(domid, [gfn], writable=True)[0]
            except XenError as e:
                why = {Errno.ESRCH: "no such domain",
                       Errno.EINVAL: "that gfn is not populated"}.get(e.errno, _errname(e))
                raise ConsoleError(f"domain {domid}: cannot map console page gfn {gfn:#x}: "
                                   f"{why}") from None
            try:
                c.port = self._events.bind_interdomain(domid, port)
            except XenError as e:
                why = {Errno.EINVAL: "not an unbound port offered to Dom0",
                       Errno.ESRCH: "no such domain"}.get(e.errno, _errname(e))
                raise ConsoleError(f"domain {domid}: cannot bind console port {port}: "
                                   f"{why}") from None
            try:
                self._open_log(c)
            except ConsoleError:
                self._events.unbind(c.port)
                raise
            self._consoles[domid] = c
            self._by_port[c.port] = c
            self._kick(domid)

    def remove_domain(self, domid: int) -> None:
        """Flush the console's output, unbind its port, unmap its page, close its client."""
        with self._lock:
            if domid not in self._consoles:
                raise ConsoleError(f"domain {domid} has no console")
            self._remove(domid)

    def rename(self, domid: int, name: str) -> None:
        """A new name for the domain (its log file follows: guest-<name>.log)."""
        _check_name(name)
        with self._lock:
            c = self._get(domid)
            if name == c.name:
                return
            old = c.name
            had_log = c.logf is not None
            self._close_log(c)
            c.name = name
            if had_log:
                try:
                    self._open_log(c)
                except ConsoleError as e:
                    self._log(f"console of domain {domid}: renamed from {old}: {e}")

    def state(self, domid: int) -> str:
        """"running", "stopped" (bad ring) or "gone" (the domain disappeared)."""
        with self._lock:
            return self._get(domid).state

    def backlog(self, domid: int) -> bytes:
        with self._lock:
            return bytes(self._get(domid).backlog)

    def domains(self) -> list[int]:
        with self._lock:
            return sorted(self._consoles)

    def kick(self, domid: int) -> None:
        """Look at the domain's ring now, as if its port had fired (for toolstack code
        that knows the ring changed, e.g. after restoring a domain)."""
        with self._lock:
            self._get(domid)
            self._kick(domid)

    # -- clients -------------------------------------------------------------------------
    def attach(self, domid: int) -> ConsoleAttachment:
        """The domain's console: its backlog, then new output; input goes to the guest.
        One client at a time: a second attach fails while the first is attached."""
        with self._lock:
            self._usable()
            c = self._get(domid)
            if c.state == GONE:
                raise ConsoleError(f"{c.label()} is gone; its console is closed")
            if c.client is not None:
                raise ConsoleError(f"the console of {c.label()} is already attached "
                                   "(one client at a time)")
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            ours.setblocking(False)
            client = _Client(ours, c)
            client.push(bytes(c.backlog))
            c.client = client
            c.in_full = False
            self._kick(domid)
            return ConsoleAttachment(self, client, theirs, readonly=False,
                                     what=f"the console of {c.label()}")

    def attach_hypervisor(self) -> ConsoleAttachment:
        """The hypervisor's console ring from its oldest byte, then new output (read-only)."""
        with self._lock:
            self._usable()
            self._bind_con_ring()
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            ours.setblocking(False)
            client = _Client(ours, None)
            self._hv_clients.append(client)
            self._hv_dirty = True
            self._wake()
            return ConsoleAttachment(self, client, theirs, readonly=True,
                                     what="the hypervisor console")

    def _detach(self, client: _Client) -> None:
        with self._lock:
            self._unlink(client)
            self._retire(client)

    # -- internals: bookkeeping (called with self._lock held) ------------------------------
    def _usable(self) -> None:
        if self._closed or self._stopping:
            raise ConsoleError("the console service has been stopped")

    def _get(self, domid: int) -> _Console:
        c = self._consoles.get(domid)
        if c is None:
            raise ConsoleError(f"domain {domid} has no console")
        return c

    def _wake(self) -> None:
        try:
            os.eventfd_write(self._wake_fd, 1)
        except OSError:
            pass                                 # closed: the service has stopped

    def _kick(self, domid: int) -> None:
        self._kicked.add(domid)
        self._wake()

    def _unlink(self, client: _Client) -> None:
        c = client.console
        if c is None:
            if client in self._hv_clients:
                self._hv_clients.remove(client)
        elif c.client is client:
            c.client = None

    def _retire(self, client: _Client) -> None:
        """Close the service's end of a client (on the service thread when it runs)."""
        self._retired.append(client)
        if self._thread is None:
            self._close_retired()
        else:
            self._wake()

    def _close_retired(self) -> None:
        while self._retired:
            client = self._retired.pop()
            fd = client.sock.fileno()
            if fd in self._registered and self._selector is not None:
                self._selector.unregister(fd)
                del self._registered[fd]
            if not client.eof:
                self._flush(client)             # what fits; the socket is non-blocking
            client.sock.close()

    def _remove(self, domid: int) -> None:
        c = self._consoles.pop(domid)
        self._kicked.discard(domid)
        if c.state == RUNNING and self._alive(c):
            self._drain_output(c)
        if c.client is not None:
            client, c.client = c.client, None
            self._retire(client)
        self._by_port.pop(c.port, None)
        try:
            self._events.unbind(c.port)
        except (XenError, ValueError):
            pass                                 # already closed with the domain
        self._close_log(c)
        self._unmap(c)

    def _unmap(self, c: _Console) -> None:
        if c.page is not None:
            try:
                c.page.release()
            except BufferError:
                pass
            c.page = None

    # -- internals: log files --------------------------------------------------------------
    def _open_log(self, c: _Console) -> None:
        if self.log_dir is None:
            return
        path = os.path.join(self.log_dir, f"guest-{c.name}.log")
        try:
            os.makedirs(self.log_dir, exist_ok=True)
            c.logf = open(path, "ab")
        except OSError as e:
            raise ConsoleError(f"cannot open console log {path}: {e.strerror or e}") from None
        c.log_at_line_start = True

    def _close_log(self, c: _Console) -> None:
        if c.logf is not None:
            try:
                c.logf.close()
            except OSError:
                pass
            c.logf = None

    def _write_log(self, c: _Console, data: bytes) -> None:
        if c.logf is None:
            return
        if self.timestamps:
            out = bytearray()
            for line in _LINES.findall(data):
                if c.log_at_line_start:
                    out += time.strftime("[%Y-%m-%d %H:%M:%S] ").encode()
                out += line
                c.log_at_line_start = line.endswith(b"\n")
            data = bytes(out)
        try:
            c.logf.write(data)
            c.logf.flush()
        except OSError as e:
            self._log(f"console log of {c.label()}: {e.strerror or e}; logging stopped")
            self._close_log(c)

    # -- internals: rings (service thread, or a caller holding the lock) -----------------
    def _alive(self, c: _Console) -> bool:
        """Whether the ring page may be touched; a vanished domain closes its console."""
        if c.state == GONE:
            return False
        try:
            info = self.xc.domain_getinfo(c.domid)
        except XenError:
            info = None
        if info is not None and not info.dying:
            return True
        c.state = GONE
        self._log(f"console of {c.label()}: the domain is gone; console closed")
        self._unmap(c)
        if c.client is not None:
            client, c.client = c.client, None
            self._retire(client)
        return False

    def _stop_console(self, c: _Console, why: str) -> None:
        c.state = STOPPED
        self._log(f"console of {c.label()} stopped: {why}")

    def _ring_indexes(self, c: _Console, name: str, cons_off: int, prod_off: int,
                      size: int) -> tuple[int, int, int] | None:
        """(cons, prod, bytes used) of one ring, or None after stopping the console
        whose guest claims more bytes than the ring holds."""
        page = c.page
        cons = _U32.unpack_from(page, cons_off)[0]
        prod = _U32.unpack_from(page, prod_off)[0]
        used = (prod - cons) & _M32
        if used > size:
            self._stop_console(c, f"bad {'output' if name == 'out' else 'input'} ring "
                                  f"({name}_cons={cons:#x} {name}_prod={prod:#x}: "
                                  f"{used} bytes claimed in a {size}-byte ring)")
            return None
        return cons, prod, used

    def _drain_output(self, c: _Console) -> None:
        page = c.page
        ring = self._ring_indexes(c, "out", OUT_CONS, OUT_PROD, OUT_SIZE)
        if ring is None:
            return
        cons, _prod, n = ring
        if n == 0:
            return
        start = cons & (OUT_SIZE - 1)
        first = min(n, OUT_SIZE - start)
        data = bytes(page[OUT_OFF + start:OUT_OFF + start + first])
        if first < n:
            data += bytes(page[OUT_OFF:OUT_OFF + n - first])
        _U32.pack_into(page, OUT_CONS, (cons + n) & _M32)
        self._notify(c)
        c.bytes_out += n
        self._output(c, data)

    def _output(self, c: _Console, data: bytes) -> None:
        c.backlog += data
        excess = len(c.backlog) - self.backlog_size
        if excess > 0:
            del c.backlog[:excess]
        self._write_log(c, data)
        if c.client is not None:
            c.client.push(data)
            self._flush(c.client)

    def _feed_input(self, c: _Console) -> None:
        """Move what the client wrote into `in`, as far as the guest left room."""
        client = c.client
        if client is None or client.eof:
            return
        page = c.page
        ring = self._ring_indexes(c, "in", IN_CONS, IN_PROD, IN_SIZE)
        if ring is None:
            return
        _cons, iprod, used = ring
        free = IN_SIZE - used
        if free == 0:
            c.in_full = True
            return
        c.in_full = False
        try:
            data = client.sock.recv(free)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._client_gone(client)
            return
        start = iprod & (IN_SIZE - 1)
        first = min(len(data), IN_SIZE - start)
        page[IN_OFF + start:IN_OFF + start + first] = data[:first]
        if first < len(data):
            page[IN_OFF:IN_OFF + len(data) - first] = data[first:]
        _U32.pack_into(page, IN_PROD, (iprod + len(data)) & _M32)
        c.bytes_in += len(data)
        self._notify(c)
        if len(data) == free:
            c.in_full = True                 # wait for the guest to make room

    def _notify(self, c: _Console) -> None:
        try:
            self._events.notify(c.port)
        except XenError:
            pass                             # the peer closed: found gone on the next pass

    def _service(self, c: _Console) -> None:
        """One pass over a console: output, then input."""
        if c.state != RUNNING or not self._alive(c):
            return
        try:
            self._drain_output(c)
            if c.state == RUNNING:
                self._feed_input(c)
        except Exception as e:  # noqa: BLE001 - a console bug must not stop the service
            self._stop_console(c, f"internal error {type(e).__name__}: {e}")

    # -- internals: clients ----------------------------------------------------------------
    def _flush(self, client: _Client) -> None:
        while client.queue and not client.eof:
            try:
                n = client.sock.send(client.queue, socket.MSG_NOSIGNAL)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._client_gone(client)
                return
            del client.queue[:n]

    def _client_gone(self, client: _Client) -> None:
        client.eof = True
        client.queue.clear()
        self._unlink(client)
        self._retire(client)

    def _discard_input(self, client: _Client) -> None:
        """Input on a console that does not take it (hypervisor console, stopped ring)."""
        try:
            data = client.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._client_gone(client)

    # -- internals: the hypervisor console -------------------------------------------------
    def _bind_con_ring(self) -> None:
        if self._hv_port is not None or self._hv_unbind is not None:
            return
        try:
            self._hv_port = self._events.bind_virq(Virq.CON_RING)
        except XenError as e:
            if e.errno != Errno.EEXIST:
                raise ConsoleError(f"cannot bind VIRQ_CON_RING: {_errname(e)}") from None
            # Another Dom0 user holds the VIRQ's port: ride on the host callback.
            self._hv_unbind = self.privcmd.bind_virq(Virq.CON_RING, self._con_ring_fired)

    def _con_ring_fired(self) -> None:
        self._hv_dirty = True
        self._wake()

    def _pump_hypervisor(self) -> None:
        for client in list(self._hv_clients):
            for _ in range(64):                  # bounded: the ring is 16 KiB
                try:
                    data, index = self.xc.readconsole(index=client.hv_index,
                                                      count=HV_READ_CHUNK)
                except XenError as e:
                    self._log(f"hypervisor console: readconsole: {_errname(e)}")
                    return
                if not data:
                    break
                client.hv_index = index
                client.push(data)
            self._flush(client)

    # -- the service thread ----------------------------------------------------------------
    def _run(self) -> None:
        sel = self._selector
        assert sel is not None
        while True:
            with self._lock:
                if self._stopping:
                    return
                try:
                    self._update_selector()
                except Exception as e:  # noqa: BLE001 - the daemon never dies
                    self._log(f"console service: internal error {type(e).__name__}: {e}")
            try:
                ready = sel.select()
            except OSError:
                ready = []
            with self._lock:
                if self._stopping:
                    return
                try:
                    self._handle(ready)
                except Exception as e:  # noqa: BLE001 - the daemon never dies
                    self._log(f"console service: internal error {type(e).__name__}: {e}")

    def _handle(self, ready) -> None:
        for key, mask in ready:
            if key.data == "wake":
                try:
                    os.eventfd_read(self._wake_fd)
                except OSError:
                    pass
            elif key.data == "evtchn":
                self._take_events()
            else:
                client: _Client = key.data
                if mask & selectors.EVENT_WRITE:
                    self._flush(client)
                if mask & selectors.EVENT_READ and not client.eof:
                    c = client.console
                    if c is not None and c.client is client and c.state == RUNNING:
                        self._kicked.add(c.domid)
                    else:
                        self._discard_input(client)
        kicked, self._kicked = self._kicked, set()
        for domid in sorted(kicked):
            c = self._consoles.get(domid)
            if c is not None:
                self._service(c)
                if c.state == RUNNING:
                    self._unmask(c.port)
        if self._hv_dirty:
            self._hv_dirty = False
            self._pump_hypervisor()
        self._close_retired()

    def _take_events(self) -> None:
        hv_fired = False
        while True:
            port = self._events.pending(0.0)
            if port is None:
                break
            if port == self._hv_port:
                hv_fired = True
                continue
            c = self._by_port.get(port)
            if c is None:
                continue                          # unbound meanwhile
            c.in_full = False                     # the guest may have consumed input
            self._kicked.add(c.domid)             # serviced and unmasked below
        if hv_fired:
            self._hv_dirty = True
            self._pump_hypervisor()
            self._hv_dirty = False
            self._unmask(self._hv_port)

    def _unmask(self, port: int) -> None:
        try:
            self._events.unmask(port)
        except XenError:
            pass

    def _update_selector(self) -> None:
        sel = self._selector
        want: dict[int, tuple[_Client, int]] = {}
        clients = [c.client for c in self._consoles.values() if c.client is not None]
        for client in clients + self._hv_clients:
            if client.eof:
                continue
            c = client.console
            events = 0
            if c is None or c.state != RUNNING or not c.in_full:
                events |= selectors.EVENT_READ
            if client.queue:
                events |= selectors.EVENT_WRITE
            if events:
                want[client.sock.fileno()] = (client, events)
        for fd in list(self._registered):
            if fd not in want:
                sel.unregister(fd)
                del self._registered[fd]
        for fd, (client, events) in want.items():
            have = self._registered.get(fd)
            if have is None:
                sel.register(fd, events, client)
            elif have != (client, events):
                sel.modify(fd, events, client)
            self._registered[fd] = (client, events)
