"""console_io (hypercall 18): write to / read from the hypervisor console."""

from __future__ import annotations

from ...abi.constants import ConsoleIO, Errno, Hypercall
from ..errors import HypercallError

CHUNK = 127    # Xen copies guest console data in chunks of at most 127 bytes
INT_MAX = 0x7FFF_FFFF


def do_console_io(caller, cmd, count, buf, *_):
    count &= 0xFFFF_FFFF
    cmd &= 0xFFFF_FFFF
    d = caller.domain
    if cmd == ConsoleIO.write:
        # Xen's default policy lets the hardware domain write; pyxen behaves like a
        # debug build, where every domain may (guests use this for early output).
        done = 0
        while done < count:
            n = min(CHUNK, count - done)
            data = caller.copy_from_guest(buf + done, n)
            d.console_write(data)
            done += n
        return 0
    if cmd == ConsoleIO.read:
        if not d.is_privileged:
            raise HypercallError(Errno.EPERM)
        if count > INT_MAX:
            raise HypercallError(Errno.EINVAL)
        data = d.hv.read_console_input(count)
        if data:
            caller.copy_to_guest(buf, data)
        return len(data)
    raise HypercallError(Errno.ENOSYS)


def register(hv) -> None:
    hv.hypercalls.register(Hypercall.console_io, do_console_io)
