"""The small interface between the hypervisor core and an architecture's vCPU.

The core owns scheduling state (runnable, blocked, paused), hypercall
semantics and memory (p2m); a backend owns the CPU engine: it runs guest code,
traps hypercalls and exceptions, translates guest-virtual addresses, and
reports why it stopped. An ARM64 backend implements the same methods.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from enum import Enum, auto


class ExitReason(Enum):
    KICKED = auto()     # asked to stop (pause, shutdown, preemption, new event)
    HALTED = auto()     # the guest waits for an interrupt (x86 HLT, ARM WFI)
    CRASHED = auto()    # the guest did something fatal; the core crashes the domain
    SHUTDOWN = auto()   # the architecture shuts the domain down (x86 triple fault)


class VcpuBackend(ABC):
    #: Human-readable reason of the last CRASHED or SHUTDOWN exit.
    crash_reason: str = ""
    #: Shutdown reason (SHUTDOWN_*) of the last SHUTDOWN exit.
    shutdown_reason: int = 0

    @abstractmethod
    def run(self, deadline_ns: int | None = None) -> ExitReason:
        """Run guest code on the calling thread until an exit, or until hypervisor
        system time `deadline_ns` (then KICKED: the scheduler's time slice ended)."""

    @abstractmethod
    def interrupt(self) -> None:
        """An event is pending for this vCPU: stop guest code soon so it can be taken."""

    @abstractmethod
    def kick(self) -> None:
        """Make a running `run()` return soon with KICKED (any thread)."""

    @abstractmethod
    def copy_from_guest(self, va: int, size: int) -> bytes:
        """Read guest-virtual memory as the guest kernel would (raises GuestFault)."""

    @abstractmethod
    def copy_to_guest(self, va: int, data: bytes) -> None:
        """Write guest-virtual memory as the guest kernel would (raises GuestFault)."""

    @abstractmethod
    def registers(self) -> dict[str, int]:
        """A snapshot of the architectural registers (for logs and introspection)."""

    @abstractmethod
    def interrupts_enabled(self) -> bool:
        """Whether an external interrupt could be delivered now."""

    @abstractmethod
    def close(self) -> None:
        """Release the engine."""
