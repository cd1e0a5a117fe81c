"""The null scheduler (Xen 4.10, `sched=null`, XEN_SCHEDULER_NULL = 9).

Model: every pCPU of the pool carries at most one unit, and a unit is bound to at
most one pCPU. A pCPU with no unit bound to it is in `cpus_free`. A unit that finds
no free pCPU it may use waits, in arrival order, on the pool's waitqueue until one
is released. Nothing is ever time-sliced: `do_schedule` answers with the pCPU's
unit (or the idle vCPU when the unit cannot run) and no timer.

Placement (`pick_cpu`) goes through the balance steps, soft affinity first (only
when the unit has an effective soft affinity), then hard affinity:
  1. keep the unit's current pCPU if the step allows it and it is free or already
     the unit's own;
  2. else the lowest-numbered free pCPU the step allows;
and, when no step finds anything, the lowest pCPU of hard affinity ∩ pool (the unit
then waits if that pCPU is taken).

When a pCPU is released (unit removed or moved away), and when a pCPU with nothing
bound schedules, the waitqueue is walked twice: first for units whose effective
soft affinity contains the pCPU, then for units whose hard affinity does. The first
match is bound to it.

An affinity change is the framework's business (Xen 4.10 has no scheduler hook for
it): sleep, switch out if running, pick_cpu, migrate, wake. A unit running on a pCPU
that leaves the pool is moved as Xen's vcpu_migrate does it: its pCPU is tickled and
schedules idle, and the move happens in `context_saved`.

Trace records (TRC_SCHED_CLASS_EVT(SNULL, n) = 0x00022A0n), little-endian packing of
Xen's structs into u32 words:
  PICKED_CPU    w0 = vcpu | dom << 16, w1 = new_cpu
  VCPU_ASSIGN   w0 = vcpu | dom << 16, w1 = cpu
  VCPU_DEASSIGN w0 = vcpu | dom << 16, w1 = cpu
  MIGRATE       w0 = vcpu | dom << 16, w1 = cpu | new_cpu << 16
  SCHEDULE      w0 = tasklet | cpu << 16, w1 = vcpu | dom << 16 (each s16, 0xFFFF when
                nothing is bound to the pCPU)
There are no tasklets here, so TASKLET (0x00022A06) is never emitted and SCHEDULE's
tasklet field is 0.
"""

from __future__ import annotations

from dataclasses import dataclass

from .core import IDLE, NO_TIMER, Decision, SchedDomain, Scheduler, SchedUnit

TRC_SNULL_PICKED_CPU = 0x00022A01
TRC_SNULL_VCPU_ASSIGN = 0x00022A02
TRC_SNULL_VCPU_DEASSIGN = 0x00022A03
TRC_SNULL_MIGRATE = 0x00022A04
TRC_SNULL_SCHEDULE = 0x00022A05
TRC_SNULL_TASKLET = 0x00022A06


def _u16(v: int) -> int:
    return v & 0xFFFF


def _pair(lo: int, hi: int) -> int:
    """Two 16-bit fields in one u32 word, the first one in the low half (x86 layout)."""
    return _u16(lo) | (_u16(hi) << 16)


def cpulist(cpus) -> str:
    """A cpu set as Xen's cpulist_scnprintf prints it: "0-3,6"."""
    out: list[str] = []
    run: list[int] = []
    for c in sorted(cpus):
        if run and c == run[-1] + 1:
            run.append(c)
            continue
        if run:
            out.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
        run = [c]
    if run:
        out.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
    return ",".join(out)


@dataclass(eq=False)
class _NullUnit:
    migrating: bool = False          # Xen's _VPF_migrating: move it once it stopped running


class Null(Scheduler):
    name = "null"
    sched_id = 9

    def __init__(self, env, cpus: frozenset[int]):
        super().__init__(env, cpus)
        self.domains: list[SchedDomain] = []
        self.waitq: list[SchedUnit] = []
        self.cpus_free: set[int] = set()
        self.assigned: dict[int, SchedUnit | None] = {}     # per-pCPU bound unit
        for cpu in sorted(self.cpus):
            self._init_pdata(cpu)

    # -- helpers ------------------------------------------------------------
    def _init_pdata(self, cpu: int) -> None:
        self.cpus_free.add(cpu)
        self.assigned[cpu] = None

    def _nu(self, unit: SchedUnit) -> _NullUnit:
        if not isinstance(unit.priv, _NullUnit):
            unit.priv = _NullUnit()
        return unit.priv

    def _steps(self, unit: SchedUnit):
        """The balance steps' cpu masks (already ∩ pool): soft (when it counts), hard."""
        soft = self.soft_cpus(unit)
        if soft is not None:
            yield soft
        yield self.hard_cpus(unit)

    def _allowed(self, unit: SchedUnit, cpu: int, soft_step: bool) -> bool:
        if soft_step:
            soft = self.soft_cpus(unit)
            return soft is not None and cpu in soft
        return cpu in self.hard_cpus(unit)

    def _in_waitq(self, unit: SchedUnit) -> bool:
        return any(w is unit for w in self.waitq)

    def _waitq_remove(self, unit: SchedUnit) -> None:
        self.waitq = [w for w in self.waitq if w is not unit]

    def _is_assigned(self, unit: SchedUnit) -> bool:
        return self.assigned.get(unit.processor) is unit

    def _assign(self, unit: SchedUnit, cpu: int) -> None:
        self.assigned[cpu] = unit
        unit.processor = cpu
        self.cpus_free.discard(cpu)
        self.env.trace(TRC_SNULL_VCPU_ASSIGN, _pair(unit.vcpu_id, unit.domid), cpu)

    def _deassign(self, unit: SchedUnit, cpu: int) -> None:
        self.assigned[cpu] = None
        if cpu in self.cpus:
            self.cpus_free.add(cpu)
        self.env.trace(TRC_SNULL_VCPU_DEASSIGN, _pair(unit.vcpu_id, unit.domid), cpu)

    def _waitq_pick(self, cpu: int) -> SchedUnit | None:
        """First waiting unit that may use `cpu`: soft-affine ones first, then hard."""
        for soft_step in (True, False):
            for w in self.waitq:
                if soft_step and self.soft_cpus(w) is None:
                    continue
                if self._allowed(w, cpu, soft_step):
                    return w
        return None

    def _release(self, unit: SchedUnit) -> None:
        """Unbind `unit` from its pCPU and hand the pCPU to a waiting unit if one fits."""
        cpu = unit.processor
        self._deassign(unit, cpu)
        if cpu not in self.cpus:
            return
        w = self._waitq_pick(cpu)
        if w is not None:
            self._waitq_remove(w)
            self._assign(w, cpu)
            self.env.tickle(cpu)

    # -- domains and units ----------------------------------------------------------------------
    def insert_domain(self, dom: SchedDomain) -> None:
        if all(d is not dom for d in self.domains):
            self.domains.append(dom)

    def remove_domain(self, dom: SchedDomain) -> None:
        self.domains = [d for d in self.domains if d is not dom]

    def insert_unit(self, unit: SchedUnit) -> None:
        self._nu(unit)
        for _ in range(len(self.cpus) + 1):
            cpu = unit.processor = self.pick_cpu(unit)
            hard = self.hard_cpus(unit)
            if cpu in self.assigned and self.assigned[cpu] is None and cpu in hard:
                self._assign(unit, cpu)
                return
            if not (self.cpus_free & hard):
                break                        # nothing else free: wait
        self.waitq.append(unit)

    def remove_unit(self, unit: SchedUnit) -> None:
        nu = self._nu(unit)
        nu.migrating = False
        if self._in_waitq(unit):
            self._waitq_remove(unit)
            return
        if self._is_assigned(unit):
            self._release(unit)

    # -- state changes ----------------------------------------------------------------------------
    def wake(self, unit: SchedUnit) -> None:
        if unit.running:
            return
        if self._in_waitq(unit):
            # Xen stops here. A free pCPU the unit may use (its affinity changed) would
            # not look at the waitqueue until it schedules: make it schedule.
            cpu = unit.processor
            if cpu in self.assigned and self.assigned[cpu] is None \
                    and cpu in self.hard_cpus(unit):
                self.env.tickle(cpu)
            return
        if self._nu(unit).migrating:
            return                           # still stopping; context_saved moves it
        self.env.tickle(unit.processor)

    def sleep(self, unit: SchedUnit) -> None:
        if unit.running:
            self.env.tickle(unit.processor)

    def do_schedule(self, cpu: int, prev: SchedUnit | None, now: int) -> Decision:
        cur = self.assigned.get(cpu)
        if cur is None:
            w0 = _pair(0, cpu)
            w1 = 0xFFFF_FFFF
        else:
            w0 = _pair(0, cpu)
            w1 = _pair(cur.vcpu_id, cur.domid)
        self.env.trace(TRC_SNULL_SCHEDULE, w0, w1)

        task = cur
        if task is None and cpu in self.cpus and self.waitq:
            # A pCPU new in the pool (or coming back): take a waiting unit.
            w = self._waitq_pick(cpu)
            if w is not None:
                self._assign(w, cpu)
                self._waitq_remove(w)
                task = w
        if task is None or not task.runnable or self._nu(task).migrating:
            return Decision(IDLE, NO_TIMER)
        if task.running and task is not prev:
            return Decision(IDLE, NO_TIMER)  # still stopping elsewhere
        return Decision(task, NO_TIMER)

    def context_saved(self, unit: SchedUnit) -> None:
        nu = self._nu(unit)
        if nu.migrating:
            self._finish_migration(unit)

    def _finish_migration(self, unit: SchedUnit) -> None:
        """vcpu_migrate for a unit that is not running: place it, then wake it."""
        nu = self._nu(unit)
        new_cpu = self.pick_cpu(unit)
        nu.migrating = False
        self.migrate(unit, new_cpu)
        self._ensure_placed(unit)
        if unit.runnable:
            self.wake(unit)

    def _ensure_placed(self, unit: SchedUnit) -> None:
        if not self._in_waitq(unit) and not self._is_assigned(unit):
            self.waitq.append(unit)

    def pick_cpu(self, unit: SchedUnit) -> int:
        cpu = unit.processor
        new_cpu: int | None = None
        for mask in self._steps(unit):
            owner = self.assigned.get(cpu)
            if cpu in mask and (owner is None or owner is unit):
                new_cpu = cpu
                break
            free = mask & self.cpus_free
            if free:
                new_cpu = min(free)
                break
        if new_cpu is None:
            hard = self.hard_cpus(unit)
            if hard:
                new_cpu = min(hard)
            elif self.cpus:
                new_cpu = cpu if cpu in self.cpus else min(self.cpus)
            else:
                new_cpu = cpu
        self.env.trace(TRC_SNULL_PICKED_CPU, _pair(unit.vcpu_id, unit.domid), new_cpu)
        return new_cpu

    def migrate(self, unit: SchedUnit, new_cpu: int) -> None:
        """null_vcpu_migrate: leave the old pCPU (handing it to a waiter), then take
        new_cpu if it is free and allowed, else wait."""
        if unit.processor == new_cpu:
            return
        self.env.trace(TRC_SNULL_MIGRATE, _pair(unit.vcpu_id, unit.domid),
                       _pair(unit.processor, new_cpu))
        if not self._in_waitq(unit) and self._is_assigned(unit):
            self._release(unit)
        if (new_cpu in self.assigned and self.assigned[new_cpu] is None
                and new_cpu in self.hard_cpus(unit)):
            self._waitq_remove(unit)
            self._assign(unit, new_cpu)
        elif not self._in_waitq(unit):
            self.waitq.append(unit)
        unit.processor = new_cpu

    def affinity_changed(self, unit: SchedUnit) -> None:
        """Nothing to do here: Xen 4.10 has no affinity hook. The framework re-places the
        unit as vcpu_set_affinity does: sleep, (switch out,) pick_cpu, migrate, wake."""

    # -- parameters ------------------------------------------------------------
    def adjust(self, dom: SchedDomain, put: bool, params: dict) -> dict:
        """null has no per-domain parameters; Xen's sched_adjust succeeds with nothing."""
        return {}

    def adjust_global(self, put: bool, params: dict) -> dict:
        return {}

    # -- pCPUs ------------------------------------------------------------
    def add_cpu(self, cpu: int) -> None:
        if cpu in self.cpus:
            return
        super().add_cpu(cpu)
        self._init_pdata(cpu)
        if self.waitq:
            self.env.tickle(cpu)             # it takes a waiting unit when it schedules

    def remove_cpu(self, cpu: int) -> None:
        if cpu not in self.cpus:
            return
        super().remove_cpu(cpu)
        self.cpus_free.discard(cpu)
        unit = self.assigned.get(cpu)
        if unit is not None:
            nu = self._nu(unit)
            if unit.running:
                # Unbind now (nothing may be bound to a pCPU outside the pool); the
                # unit is placed again once it has stopped.
                self._deassign(unit, cpu)
                nu.migrating = True
                self.env.tickle(cpu)
            else:
                new_cpu = self.pick_cpu(unit)
                self.migrate(unit, new_cpu)
                self.assigned.pop(cpu, None)
                self._ensure_placed(unit)
                if unit.runnable:
                    self.wake(unit)
        self.assigned.pop(cpu, None)
        # Units waiting with this pCPU as their nominal processor keep waiting.

    def dump(self) -> str:
        lines = [f"null: {len(self.cpus)} pCPUs", f"\tcpus_free = {cpulist(self.cpus_free)}"]
        for cpu in sorted(self.cpus):
            u = self.assigned.get(cpu)
            lines.append(f"CPU[{cpu:02d}]" + (f" vcpu=d{u.domid}v{u.vcpu_id}" if u else ""))
        lines.append("Domain info:")
        n = 0
        for d in self.domains:
            lines.append(f"\tDomain: {d.domid}")
            for u in d.units:
                n += 1
                where = u.processor if not self._in_waitq(u) else -1
                lines.append(f"\t{n:3d}: [{d.domid}.{u.vcpu_id}] pcpu={where}")
        lines.append("Waitqueue: " + ", ".join(f"d{u.domid}v{u.vcpu_id}" for u in self.waitq))
        return "\n".join(lines)


__all__ = ["Null", "cpulist"]
