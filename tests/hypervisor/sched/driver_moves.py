"""What the test drivers of the credit and null tests share: waking a unit, and an
affinity change as Xen's vcpu_set_affinity does it (update, sleep, switch out if
running, then pick_cpu, migrate, wake). The driver provides `s` (the scheduler),
`env`, `woke` and `moving`, and calls `_finish_move` when a moving unit switches out."""

from __future__ import annotations

from pyxen.hypervisor.sched.core import SchedUnit


class AffinityMoves:
    def _wake(self, unit: SchedUnit) -> None:
        unit.runnable = True
        self.woke[unit] = self.env.t
        self.s.wake(unit)

    def set_affinity(self, unit: SchedUnit, hard=None, soft=None) -> None:
        """Xen's vcpu_set_affinity: update, sleep, (switch out,) pick_cpu, migrate, wake."""
        if hard is not None:
            unit.hard_affinity = frozenset(hard)
        if soft is not None:
            unit.soft_affinity = frozenset(soft)
        self.s.affinity_changed(unit)
        self.moving[unit] = unit.runnable
        unit.runnable = False
        self.s.sleep(unit)
        if not unit.running:
            self._finish_move(unit)

    def _finish_move(self, unit: SchedUnit) -> None:
        was_runnable = self.moving.pop(unit)
        new = self.s.pick_cpu(unit)
        assert not unit.hard_affinity or new in unit.hard_affinity
        self.s.migrate(unit, new)
        if was_runnable:
            self._wake(unit)
