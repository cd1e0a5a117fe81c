"""Hypercall dispatch: who is calling, with which arguments, and which handler runs.

A handler is `fn(caller, a1, ..., a6) -> int`: it returns a non-negative result
or raises HypercallError (→ -errno). Unknown or not-allowed numbers give
-ENOSYS, exactly as Xen's HVM dispatch table does. The same handlers serve
guest vCPUs and the host toolstack (Dom0 through privcmd); the `Caller`
says how to reach the caller's memory.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from ..abi.constants import Errno, Hypercall
from .errors import DomainCrash, HypercallContinuation, HypercallError
from .log import Level

if TYPE_CHECKING:
    from .domain import Domain
    from .hypervisor import Hypervisor
    from .vcpu import Vcpu

ENOSYS = -int(Errno.ENOSYS)

# Hypercalls an HVM/PVH guest may make in Xen 4.10 (arch/x86/hvm/hypercall.c).
HVM_ALLOWED = frozenset({
    Hypercall.memory_op, Hypercall.grant_table_op, Hypercall.vcpu_op, Hypercall.physdev_op,
    Hypercall.xen_version, Hypercall.console_io, Hypercall.event_channel_op,
    Hypercall.sched_op, Hypercall.set_timer_op, Hypercall.xsm_op, Hypercall.hvm_op,
    Hypercall.sysctl, Hypercall.domctl, Hypercall.platform_op, Hypercall.mmuext_op,
    Hypercall.xenpmu_op, Hypercall.dm_op, Hypercall.arch_1,
})


class Caller(Protocol):
    """Who issued a hypercall and how to reach its memory."""
    domain: Domain
    vcpu: Vcpu | None
    compat: bool          # 32-bit guest ABI (struct layouts differ)

    def copy_from_guest(self, addr: int, size: int) -> bytes: ...
    def copy_to_guest(self, addr: int, data: bytes) -> None: ...


class VcpuCaller:
    """A guest vCPU; pointers are guest-virtual addresses in its current context."""

    __slots__ = ("vcpu", "domain", "compat", "_backend", "continuation")

    def __init__(self, vcpu: Vcpu, backend):
        self.vcpu = vcpu
        self.domain = vcpu.domain
        self.compat = False
        self._backend = backend
        # Set by dispatch when the call must be re-issued with these arguments: the
        # arch rewinds to the hypercall instruction with them in the registers.
        self.continuation: tuple[int, ...] | None = None

    def copy_from_guest(self, addr: int, size: int) -> bytes:
        return self._backend.copy_from_guest(addr, size)

    def copy_to_guest(self, addr: int, data: bytes) -> None:
        self._backend.copy_to_guest(addr, data)


Handler = Callable[..., int]


class HypercallTable:
    def __init__(self, hv: Hypervisor):
        self.hv = hv
        self.handlers: dict[int, Handler] = {}
        self.guest_handlers: dict[int, Handler] = {}   # what an HVM/PVH guest may call

    def register(self, nr: int, fn: Handler) -> None:
        self.handlers[int(nr)] = fn
        if nr in HVM_ALLOWED:
            self.guest_handlers[int(nr)] = fn

    def dispatch(self, caller: Caller, nr: int, a1: int = 0, a2: int = 0, a3: int = 0,
                 a4: int = 0, a5: int = 0, a6: int = 0) -> int:
        """Run hypercall `nr`; always returns the value for the caller's RAX."""
        fn = (self.handlers if caller.vcpu is None else self.guest_handlers).get(nr)
        if fn is None:
            return ENOSYS
        try:
            while True:
                try:
                    return fn(caller, a1, a2, a3, a4, a5, a6)
                except HypercallContinuation as c:
                    if caller.vcpu is not None:
                        caller.continuation = c.args
                        return nr
                    # The host (privcmd) re-issues at once, as Linux's privcmd does.
                    a1, a2, a3, a4, a5, a6 = (tuple(c.args) + (0,) * 6)[:6]
        except HypercallError as e:
            return -e.errno
        except DomainCrash as e:
            caller.domain.crash(str(e))
            return -int(Errno.EFAULT)
        except Exception:  # noqa: BLE001 - a handler bug: crash the caller, not the host
            self.hv.log.printk(
                Level.ERR, f"BUG: hypercall {nr} from {caller.domain} raised:\n"
                + traceback.format_exc().rstrip())
            if caller.vcpu is not None:
                caller.domain.crash(f"internal error in hypercall {nr}")
            return -int(Errno.EFAULT)
