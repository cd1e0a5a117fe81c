"""Xen's scheduler boot parameters, as the schedulers read them (`env.param`).

They are parsed with the hypervisor's own parameter parsers. Today only the
scheduler simulator (sim.py) passes them to the schedulers: the host's vCPUs
are not yet run by these schedulers, so the hypervisor's own parameter table
(hypervisor/params.py) does not offer them.
"""

from __future__ import annotations

from ..params import Param, _choice, _uint

SCHED_PARAMS: dict[str, Param] = {p.name: p for p in [
    Param("sched_ratelimit_us", _uint, 1000, False,
          "minimum time a vCPU runs before it can be preempted (0: none)"),
    Param("sched_credit_tslice_ms", _uint, 30, False, "credit: time slice"),
    Param("credit2_runqueue", _choice("cpu", "core", "socket", "node", "all"), "socket",
          False, "credit2: which pCPUs share a runqueue"),
    Param("credit2_cap_period_ms", _uint, 10, False, "credit2: cap budget period"),
    Param("sched_credit2_migrate_resist", _uint, 500, False,
          "credit2: µs of credit a vCPU needs over another to migrate"),
]}
