"""Scheduler classes by name ("credit2", "null", "credit"), imported on first use.

A scheduler module that does not exist yet (or fails to import) only makes
its own name unavailable; the rest keep working. A name of the form
"package.module:Class" loads that class (a scheduler under development).
"""

from __future__ import annotations

import importlib

from .core import Scheduler

SCHEDULERS: dict[str, tuple[str, str]] = {
    "credit2": ("pyxen.hypervisor.sched.credit2", "Credit2"),
    "null": ("pyxen.hypervisor.sched.null", "Null"),
    "credit": ("pyxen.hypervisor.sched.credit", "Credit"),
}


class SchedulerUnavailable(LookupError):
    pass


def get(name: str) -> type[Scheduler]:
    """The scheduler class called `name`; SchedulerUnavailable if unknown or not importable."""
    entry = SCHEDULERS.get(name)
    if entry is None and ":" in name:
        module_name, _, attr_name = name.partition(":")
        entry = (module_name, attr_name)
    if entry is None:
        raise SchedulerUnavailable(
            f"unknown scheduler {name!r} (known: {', '.join(sorted(SCHEDULERS))})")
    module, attr = entry
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError) as e:
        raise SchedulerUnavailable(f"scheduler {name!r} is not available: {e}") from e
    if not (isinstance(cls, type) and issubclass(cls, Scheduler)):
        raise SchedulerUnavailable(f"{module}.{attr} is not a Scheduler")
    return cls


def available() -> list[str]:
    """The names whose class imports."""
    out = []
    for name in SCHEDULERS:
        try:
            get(name)
        except SchedulerUnavailable:
            continue
        out.append(name)
    return out
