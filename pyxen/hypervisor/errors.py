"""Errors that end a hypercall with a Xen errno, and domain-fatal conditions."""

from __future__ import annotations

from ..abi.constants import Errno


class HypercallError(Exception):
    """Raised by a handler to return `-errno` to the caller."""

    def __init__(self, errno: int, why: str = ""):
        super().__init__(why or Errno(errno).name)
        self.errno = int(errno)


class GuestFault(HypercallError):
    """A guest pointer could not be read or written: the hypercall returns -EFAULT."""

    def __init__(self, address: int, why: str = ""):
        super().__init__(Errno.EFAULT, why or f"bad guest address {address:#x}")
        self.address = address


class HypercallContinuation(Exception):
    """A long hypercall stops here and is re-issued with these arguments (Xen's
    hypercall continuation): the caller can be preempted, take events or be
    paused in between, and no single call holds the hypervisor for long."""

    def __init__(self, *args: int):
        super().__init__("continuation")
        self.args = args


class DomainCrash(Exception):
    """The current domain must be crashed (never the host)."""
