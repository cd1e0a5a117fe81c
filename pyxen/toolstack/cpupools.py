"""Schedulers, vCPU affinity and cpupools for the host daemon: the part of libxl behind
xl's sched-credit, sched-credit2, vcpu-pin, vcpu-list and cpupool-* commands.

Everything goes through XenCtrl (domctl scheduler_op / {set,get}vcpuaffinity, sysctl
scheduler_op / cpupool_op).  Pool names are toolstack state, kept where libxl keeps them:
xenstore's /local/pool/<poolid>/name (Pool-0 for pool 0, written when the host starts).
Failures are SchedCtlError, one line for the user, in libxl's or xl's words where they
have some.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from ..abi.constants import Errno, Scheduler
from .privcmd import XenError
from .xenctrl import CpupoolInfo, XenCtrl
from .xlcfg import XlConfigError, resolve_cpu_spec

# libxl_scheduler's names for Xen's scheduler ids.
SCHED_NAMES = {4: "sedf", Scheduler.CREDIT: "credit", Scheduler.CREDIT2: "credit2",
               7: "arinc653", 8: "rtds", Scheduler.NULL: "null"}
SCHED_IDS = {name: sid for sid, name in SCHED_NAMES.items()}
POOL0_NAME = "Pool-0"
# libxl's bounds for the pool-wide parameters (XEN_SYSCTL_SCHED_RATELIMIT_*,
# XEN_SYSCTL_CSCHED_TSLICE_*).
RATELIMIT_MIN, RATELIMIT_MAX = 100, 500000
TSLICE_MIN, TSLICE_MAX = 1, 1000


class SchedCtlError(Exception):
    """A scheduling or cpupool request failed: one line for the user."""


def sched_name(sched_id: int) -> str:
    return SCHED_NAMES.get(sched_id, "unknown")


def _why(e: XenError) -> str:
    return os.strerror(e.errno)


def pool_path(poolid: int) -> str:
    return f"/local/pool/{poolid}"


def read_pool_name(xs, poolid: int) -> str | None:
    """The pool's name from xenstore; Pool-0 for pool 0 even when unset (libxl)."""
    try:
        name = xs.read(f"{pool_path(poolid)}/name").decode(errors="replace")
    except Exception:  # noqa: BLE001 - ENOENT, or xenstored going away
        name = None
    if not name and poolid == 0:
        return POOL0_NAME
    return name or None


def pool_id_by_name(xc: XenCtrl, xs, name: str) -> int | None:
    """The id of the existing pool called `name` (libxl_name_to_cpupoolid), or None."""
    for info in xc.cpupool_list():
        if read_pool_name(xs, info.poolid) == name:
            return info.poolid
    return None


def cpumap_text(cpus, nr_cpus: int) -> str:
    """A pCPU set as xl prints a cpumap: "all", "none" or ranges like "0-1,3"."""
    present = sorted({c for c in cpus if 0 <= c < nr_cpus})
    if not present:
        return "none"
    runs: list[list[int]] = []
    for cpu in present:
        if runs and runs[-1][1] == cpu - 1:
            runs[-1][1] = cpu
        else:
            runs.append([cpu, cpu])
    if runs == [[0, nr_cpus - 1]]:
        return "all"
    return ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs)


class SchedControl:
    def __init__(self, xc: XenCtrl, xs, name_of: Callable[[int], str]):
        self.xc = xc
        self.xs = xs
        self.name_of = name_of

    def publish_pool0(self) -> None:
        self.xs.write(f"{pool_path(0)}/name", POOL0_NAME)

    # -- lookups ----------------------------------------------------------------------------
    @property
    def nr_cpus(self) -> int:
        return int(self.xc.physinfo().nr_cpus)

    def pool_name(self, poolid: int) -> str:
        return read_pool_name(self.xs, poolid) or str(poolid)

    def pool_info(self, poolid: int) -> CpupoolInfo:
        for info in self.xc.cpupool_list():
            if info.poolid == poolid:
                return info
        raise SchedCtlError(f"unknown cpupool '{poolid}'")

    def find_pool(self, qualifier: str | int) -> CpupoolInfo:
        """A pool named by id or name (libxl_cpupool_qualifier_to_cpupoolid), which must
        exist; xl's "unknown cpupool" otherwise."""
        text = str(qualifier)
        pools = self.xc.cpupool_list()
        if text.isdigit():
            found = [p for p in pools if p.poolid == int(text)]
        else:
            found = [p for p in pools if read_pool_name(self.xs, p.poolid) == text]
        if not found:
            raise SchedCtlError(f"unknown cpupool '{text}'")
        return found[0]

    def _sched_id(self, sched: str) -> int:
        if sched not in ("credit", "credit2"):
            raise SchedCtlError(f"not a scheduler with domain parameters: {sched!r}")
        return SCHED_IDS[sched]

    def _domain(self, domid: int):
        info = self.xc.domain_getinfo(domid)
        if info is None:
            raise SchedCtlError(f"{domid}: no such domain")
        return info

    def _pool_sched_check(self, pool: CpupoolInfo, sid: int) -> None:
        if pool.sched_id != sid:
            raise SchedCtlError(f"cpupool '{self.pool_name(pool.poolid)}' uses the"
                                f" {sched_name(pool.sched_id)} scheduler, not"
                                f" {sched_name(sid)}")

    # -- sched-credit / sched-credit2 ---------------------------------------------------------
    def sched_list(self, sched: str, pool: str | None = None) -> list[dict]:
        """Every pool using `sched` (or the one named, which must), with its parameters
        (None when they cannot be read) and its domains' weight and cap."""
        sid = self._sched_id(sched)
        only = None
        if pool is not None:
            only = self.find_pool(pool)
            self._pool_sched_check(only, sid)
        domains = self.xc.domain_getinfo_all()
        out = []
        for p in self.xc.cpupool_list():
            if p.sched_id != sid or (only is not None and p.poolid != only.poolid):
                continue
            try:
                params: dict | None = self.xc.sched_params(p.poolid, sid)
            except XenError:
                params = None
            rows = []
            for d in domains:
                if d.cpupool != p.poolid:
                    continue
                try:
                    weight, cap = self.xc.sched_domain(d.domid, sid)
                except XenError:
                    continue          # gone, or no vCPUs yet
                rows.append({"name": self.name_of(d.domid), "domid": d.domid,
                             "weight": weight, "cap": cap})
            out.append({"poolid": p.poolid, "pool": self.pool_name(p.poolid),
                        "params": params, "domains": rows})
        return out

    def sched_domain(self, domid: int, sched: str, weight: int | None = None,
                     cap: int | None = None) -> dict:
        """A domain's weight and cap (get), or set the ones given as libxl does: read the
        current values, check the new ones, send both back."""
        sid = self._sched_id(sched)
        info = self._domain(domid)
        pool = self.pool_info(info.cpupool)
        if pool.sched_id != sid:
            raise SchedCtlError(f"Domain {domid} is in cpupool '{self.pool_name(pool.poolid)}',"
                                f" which uses the {sched_name(pool.sched_id)} scheduler, not"
                                f" {sched}")
        try:
            cur_weight, cur_cap = self.xc.sched_domain(domid, sid)
        except XenError as e:
            raise SchedCtlError(f"getting domain sched {sched}: {_why(e)}") from None
        if weight is not None or cap is not None:
            nvcpus = info.max_vcpu_id + 1 if info.max_vcpu_id < 0xFFFF_FFFF else 0
            if weight is not None and not 1 <= weight <= 65535:
                raise SchedCtlError("Cpu weight out of range, valid values are within range"
                                    " from 1 to 65535")
            cap_range = (f"Cpu cap out of range, valid range is from 0 to {100 * nvcpus}"
                         " for specified number of vcpus")
            if cap is not None and sid == Scheduler.CREDIT and not 0 <= cap <= 100 * nvcpus:
                raise SchedCtlError(cap_range)            # libxl checks credit caps itself
            if cap is not None and not 0 <= cap <= 0xFFFF:
                raise SchedCtlError(cap_range)            # does not fit the u16 Xen reads
            try:
                self.xc.sched_domain(domid, sid, weight=cur_weight if weight is None else weight,
                                     cap=cur_cap if cap is None else cap)
            except XenError as e:
                if e.errno == Errno.EINVAL and cap is not None:
                    raise SchedCtlError(cap_range) from None      # Xen's check (credit2)
                raise SchedCtlError(f"Setting domain sched {sched}: {_why(e)}") from None
            cur_weight, cur_cap = self.xc.sched_domain(domid, sid)
        return {"name": self.name_of(domid), "domid": domid, "weight": cur_weight,
                "cap": cur_cap}

    def sched_params(self, sched: str, pool: str | None = None, tslice_ms: int | None = None,
                     ratelimit_us: int | None = None) -> dict:
        """A pool's (default Pool-0's) scheduler-wide parameters; set the ones given, with
        libxl's checks."""
        sid = self._sched_id(sched)
        p = self.find_pool(pool) if pool is not None else self.pool_info(0)
        self._pool_sched_check(p, sid)
        if tslice_ms is not None and sid != Scheduler.CREDIT:
            raise SchedCtlError(f"the {sched} scheduler has no time slice parameter")
        try:
            cur = self.xc.sched_params(p.poolid, sid)
        except XenError as e:
            raise SchedCtlError(f"getting sched {sched} params: {_why(e)}") from None
        if tslice_ms is not None or ratelimit_us is not None:
            new = dict(cur)
            if tslice_ms is not None:
                new["tslice_ms"] = tslice_ms
            if ratelimit_us is not None:
                new["ratelimit_us"] = ratelimit_us
            if sid == Scheduler.CREDIT and not TSLICE_MIN <= new["tslice_ms"] <= TSLICE_MAX:
                raise SchedCtlError(f"Time slice out of range, valid range is from {TSLICE_MIN}"
                                    f" to {TSLICE_MAX}")
            rl = new["ratelimit_us"]
            if rl != 0 and not RATELIMIT_MIN <= rl <= RATELIMIT_MAX:
                raise SchedCtlError(f"Ratelimit out of range, valid range is from"
                                    f" {RATELIMIT_MIN} to {RATELIMIT_MAX}")
            if sid == Scheduler.CREDIT and rl > new["tslice_ms"] * 1000:
                raise SchedCtlError("Ratelimit cannot be greater than timeslice")
            try:
                cur = self.xc.sched_params(p.poolid, sid, tslice_ms=tslice_ms,
                                           ratelimit_us=ratelimit_us)
            except XenError as e:
                raise SchedCtlError(f"setting sched {sched} params: {_why(e)}") from None
        return {"poolid": p.poolid, "pool": self.pool_name(p.poolid), **cur}

    # -- vCPU affinity ------------------------------------------------------------------------
    def cpu_set(self, spec: str, what: str = "cpu list") -> frozenset[int]:
        try:
            cpus = resolve_cpu_spec(spec, self.nr_cpus)
        except XlConfigError as e:
            raise SchedCtlError(e.message) from None
        if not cpus:
            raise SchedCtlError(f"the {what} '{spec}' selects no pCPU")
        return cpus

    def affinity(self, domid: int, vcpu: int) -> tuple[set[int], set[int]]:
        return self.xc.vcpu_affinity(domid, vcpu, get=True)

    def set_affinity(self, domid: int, vcpu: int, hard: frozenset[int] | None,
                     soft: frozenset[int] | None) -> list[str]:
        """Set one vCPU's masks (None: unchanged) as libxl_set_vcpuaffinity does; returns
        libxl's warnings (a soft affinity with no reachable pCPU)."""
        try:
            _, eff_soft = self.xc.vcpu_affinity(domid, vcpu,
                                                hard=None if hard is None else set(hard),
                                                soft=None if soft is None else set(soft))
        except XenError as e:
            why = _why(e)
            if e.errno == Errno.EINVAL and hard is not None:
                info = self.xc.domain_getinfo(domid)
                pool = self.pool_info(info.cpupool) if info is not None else None
                if pool is not None and not set(hard) & pool.cpus:
                    why = (f"no pCPU of cpupool '{self.pool_name(pool.poolid)}'"
                           f" ({cpumap_text(pool.cpus, self.nr_cpus)}) in the hard affinity")
            raise SchedCtlError(f"Could not set affinity for vcpu `{vcpu}': {why}") from None
        if soft is not None and not eff_soft:
            return [f"all cpus in soft affinity of vcpu {vcpu} are unreachable. Only hard"
                    " affinity will be considered for scheduling"]
        return []

    def vcpu_pin(self, domid: int, vcpu: int | None, hard: str | None,
                 soft: str | None = None) -> dict:
        """xl vcpu-pin: vcpu None is every vCPU; a mask of None or "-" stays as it is."""
        info = self._domain(domid)
        hard_set = None if hard in (None, "-") else self.cpu_set(hard, "hard affinity")
        soft_set = None if soft in (None, "-") else self.cpu_set(soft, "soft affinity")
        if hard_set is None and soft_set is None:
            raise SchedCtlError("nothing to pin: both the hard and the soft affinity are '-'")
        nvcpus = info.max_vcpu_id + 1 if info.max_vcpu_id < 0xFFFF_FFFF else 0
        if vcpu is not None and not 0 <= vcpu < nvcpus:
            raise SchedCtlError(f"Could not set affinity for vcpu `{vcpu}': the domain has"
                                f" {nvcpus} vCPU{'s' if nvcpus != 1 else ''}")
        warnings: list[str] = []
        for v in range(nvcpus) if vcpu is None else (vcpu,):
            warnings += self.set_affinity(domid, v, hard_set, soft_set)
        return {"warnings": warnings}

    # -- cpupools ---------------------------------------------------------------------------
    def cpupool_list(self) -> list[dict]:
        return [{"poolid": p.poolid, "name": self.pool_name(p.poolid),
                 "sched": sched_name(p.sched_id), "n_dom": p.n_dom, "cpus": sorted(p.cpus)}
                for p in self.xc.cpupool_list()]

    def _config_cpus(self, cpus: Any, nodes: Any, free: set[int]) -> set[int]:
        """cpupool-create's cpus= (a list of pCPUs, or a cpu-list string) or nodes=."""
        if nodes is not None:
            wanted: set[int] = set()
            for node in nodes if isinstance(nodes, list) else [nodes]:
                try:
                    number = int(str(node).strip())
                except ValueError:
                    raise SchedCtlError(f"Invalid node: {node}") from None
                if number == 0:                       # the host's only NUMA node
                    wanted |= free
            if not wanted:
                raise SchedCtlError("no free cpu found")
            return wanted
        if cpus is None:
            return set()
        if isinstance(cpus, list):
            wanted = set()
            for item in cpus:
                text = str(item).strip()
                try:
                    cpu = int(text)
                except ValueError:
                    cpu = -1
                if cpu < 0 or cpu >= self.nr_cpus or cpu not in free:
                    raise SchedCtlError(f"cpu {text} illegal or not free")
                wanted.add(cpu)
            return wanted
        wanted = set(self.cpu_set(str(cpus)))
        busy = sorted(wanted - free)
        if busy:
            raise SchedCtlError(f"cpu {busy[0]} illegal or not free")
        return wanted

    def cpupool_create(self, name: str, sched: str | None = None, cpus: Any = None,
                       nodes: Any = None, dry_run: bool = False) -> dict:
        if not name:
            raise SchedCtlError("Missing cpupool name!")
        if pool_id_by_name(self.xc, self.xs, name) is not None:
            raise SchedCtlError(f'Pool name "{name}" already exists')
        if sched is None:
            sid = self.xc.sched_id()
        elif sched in SCHED_IDS:
            sid = SCHED_IDS[sched]
        else:
            raise SchedCtlError("Unknown scheduler")
        wanted = self._config_cpus(cpus, nodes, self.xc.cpupool_freeinfo())
        result = {"poolid": None, "name": name, "sched": sched_name(sid), "cpus": sorted(wanted)}
        if dry_run:
            return result
        try:
            poolid = self.xc.cpupool_create(sid)
        except XenError as e:
            why = (f"the {sched_name(sid)} scheduler is not available" if e.errno == Errno.ENOENT
                   else _why(e))
            raise SchedCtlError(f"error on creating cpupool: {why}") from None
        self.xs.write(f"{pool_path(poolid)}/name", name)
        try:
            for cpu in sorted(wanted):
                try:
                    self.xc.cpupool_addcpu(poolid, cpu)
                except XenError as e:
                    raise SchedCtlError(f"error on creating cpupool: Error moving cpu {cpu} to"
                                        f" cpupool: {_why(e)}") from None
        except SchedCtlError:
            self._remove_pool(poolid)
            raise
        result["poolid"] = poolid
        return result

    def _remove_pool(self, poolid: int) -> None:
        for cpu in sorted(self.pool_info(poolid).cpus):
            self.xc.cpupool_removecpu(poolid, cpu)
        self.xc.cpupool_destroy(poolid)
        try:
            self.xs.rm(pool_path(poolid))
        except Exception:  # noqa: BLE001 - already gone
            pass

    def cpupool_destroy(self, pool: str) -> None:
        p = self.find_pool(pool)
        name = self.pool_name(p.poolid)
        if p.poolid == 0:
            raise SchedCtlError(f"cpupool '{name}' cannot be destroyed (it is the host's first"
                                " pool)")
        if p.n_dom:
            raise SchedCtlError(f"cpupool '{name}' still has {p.n_dom}"
                                f" domain{'s' if p.n_dom != 1 else ''}; migrate or destroy"
                                " them first")
        try:
            self._remove_pool(p.poolid)
        except XenError as e:
            raise SchedCtlError(f"Could not destroy cpupool '{name}': {_why(e)}") from None

    def cpupool_rename(self, pool: str, name: str) -> None:
        p = self.find_pool(pool)
        if not name:
            raise SchedCtlError(f"Can't rename cpupool '{pool}': the new name is empty")
        other = pool_id_by_name(self.xc, self.xs, name)
        if other is not None and other != p.poolid:
            raise SchedCtlError(f"Can't rename cpupool '{pool}': a pool called '{name}' exists"
                                " already")
        self.xs.write(f"{pool_path(p.poolid)}/name", name)

    def _cpu_targets(self, spec: str) -> tuple[frozenset[int], bool]:
        explicit = not any(word in spec for word in ("all", "node"))
        return self.cpu_set(spec), explicit

    def cpupool_cpu_add(self, pool: str, cpus: str) -> None:
        targets, explicit = self._cpu_targets(cpus)
        p = self.find_pool(pool)
        if not explicit:                 # "all", "node:N": the free pCPUs among them
            targets = targets & (self.xc.cpupool_freeinfo() | p.cpus)
        owner = {c: q.poolid for q in self.xc.cpupool_list() for c in q.cpus}
        failed = []
        for cpu in sorted(targets - p.cpus):
            try:
                self.xc.cpupool_addcpu(p.poolid, cpu)
            except XenError as e:
                why = (f"in use by cpupool '{self.pool_name(owner[cpu])}'"
                       if e.errno == Errno.EBUSY and cpu in owner else _why(e))
                failed.append(f"cpu {cpu} {why}")
        if failed:
            raise SchedCtlError(f"some cpus may not have been added to {pool}: "
                                + "; ".join(failed))

    def cpupool_cpu_remove(self, pool: str, cpus: str) -> None:
        targets, explicit = self._cpu_targets(cpus)
        p = self.find_pool(pool)
        failed = [f"cpu {cpu} is not in it" for cpu in sorted(targets - p.cpus) if explicit]
        for cpu in sorted(targets & p.cpus):
            try:
                self.xc.cpupool_removecpu(p.poolid, cpu)
            except XenError as e:
                why = ("it is the pool's last pCPU and the pool has domains"
                       if e.errno == Errno.EBUSY else _why(e))
                failed.append(f"cpu {cpu}: {why}")
        if failed:
            raise SchedCtlError(f"some cpus may not have been removed from {pool}: "
                                + "; ".join(failed))

    def cpupool_migrate(self, domid: int, pool: str) -> None:
        self._domain(domid)
        p = self.find_pool(pool)
        try:
            self.xc.cpupool_movedomain(p.poolid, domid)
        except XenError as e:
            if e.errno == Errno.ENOENT:
                why = f"cpupool '{self.pool_name(p.poolid)}' has no pCPUs"
            elif e.errno == Errno.EPERM:
                why = "Domain-0 cannot leave its cpupool"
            else:
                why = _why(e)
            raise SchedCtlError(f"Error moving domain to cpupool: {why}") from None
