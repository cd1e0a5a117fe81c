"""pyxl console: attach the terminal to a domain's console (or the hypervisor's).

On a terminal, stdin is put in raw mode and Ctrl-] detaches, as with xenconsole. When stdin
is not a terminal the bytes are just piped both ways until the host closes the stream.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import sys
import threading

import click

from .client import DaemonError, XlExit
from .common import Env, pass_env, resolve

CTX = {"help_option_names": ["-h", "--help"]}
ESCAPE = 0x1D  # Ctrl-]
CONSOLE_TYPES = ("pv", "serial", "vuart")


def _stdin_tty_fd() -> int | None:
    try:
        fd = sys.stdin.fileno()
    except (AttributeError, OSError, ValueError):
        return None
    return fd if os.isatty(fd) else None


def _write_out(data: bytes) -> None:
    stream = getattr(sys.stdout, "buffer", None)
    if stream is not None:
        stream.write(data)
        stream.flush()
    else:  # a text-only stdout
        sys.stdout.write(data.decode("utf-8", "replace"))
        sys.stdout.flush()


def _pump_stdin(sock: socket.socket) -> None:
    """Non-tty: copy stdin to the console until stdin ends or the stream is gone."""
    source = getattr(sys.stdin, "buffer", sys.stdin)
    read = getattr(source, "read1", None) or source.read
    try:
        while True:
            data = read(4096)
            if not data:
                return
            if isinstance(data, str):
                data = data.encode()
            sock.sendall(data)
    except (OSError, ValueError):
        return


def _interactive(sock: socket.socket, fd: int) -> None:
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(sock, selectors.EVENT_READ, "console")
            sel.register(fd, selectors.EVENT_READ, "stdin")
            while True:
                for key, _ in sel.select():
                    if key.data == "console":
                        data = sock.recv(65536)
                        if not data:
                            return
                        _write_out(data)
                    else:
                        data = os.read(fd, 4096)
                        if not data:
                            sel.unregister(fd)
                            continue
                        if ESCAPE in data:
                            before = data[:data.index(ESCAPE)]
                            if before:
                                sock.sendall(before)
                            return
                        sock.sendall(data)
    finally:
        termios.tcsetattr(fd, termios.TCSAFLUSH, saved)


def _piped(sock: socket.socket) -> None:
    threading.Thread(target=_pump_stdin, args=(sock,), daemon=True,
                     name="pyxl-console-stdin").start()
    while True:
        data = sock.recv(65536)
        if not data:
            return
        _write_out(data)


def attach(env: Env, domid: int, console_type: str | None = None) -> int:
    args: dict = {"domid": domid, "hypervisor": domid == 0}
    if console_type is not None:
        args["type"] = console_type
    try:
        sock = env.client().stream("console", **args)
    except DaemonError as e:
        raise XlExit(f"Unable to attach console: {e}") from None
    try:
        fd = _stdin_tty_fd()
        if fd is not None:
            _interactive(sock, fd)
        else:
            _piped(sock)
    except ConnectionError:
        pass  # the host ended the stream: the domain is gone
    finally:
        with contextlib.suppress(OSError):
            sock.close()
    return 0


@click.command("console", context_settings=CTX)
@click.argument("dom")
@click.option("-t", "console_type", metavar="TYPE",
              help="Console type: pv or serial (vuart is ARM's).")
@click.option("-n", "num", type=int, default=0, metavar="NUM",
              help="Console number (only 0 exists).")
@pass_env
def console(env: Env, dom: str, console_type: str | None, num: int) -> int:
    """Attach to a domain's console; Ctrl-] detaches. Domain 0 (Domain-0) is the
    hypervisor's console."""
    if console_type is not None and console_type not in CONSOLE_TYPES:
        raise XlExit(f"console type supported are: {', '.join(CONSOLE_TYPES)}")
    if num != 0:
        raise XlExit(f"console {num} does not exist: pyxen domains have one console")
    domid = resolve(env.client(), dom)
    return attach(env, domid, console_type)
