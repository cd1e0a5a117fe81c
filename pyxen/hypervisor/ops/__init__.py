"""Hypercall handlers, one module per hypercall (or family)."""

from __future__ import annotations

from . import (
    console_io,
    domctl,
    event_channel_op,
    grant_table_op,
    hvm_op,
    memory_op,
    misc,
    sched_op,
    sysctl,
    vcpu_op,
    xen_version,
)

_MODULES = (console_io, xen_version, sched_op, memory_op, hvm_op, vcpu_op, domctl, sysctl, misc,
            grant_table_op, event_channel_op)


def register_all(hv) -> None:
    for m in _MODULES:
        m.register(hv)
