"""Event channels, 2-level ABI: ports, their bindings, and the pending/mask bits.

Each domain has a table of ports (port 0 is reserved). A port is unbound
(waiting for one named domain to bind to it), interdomain (connected to a
port of another domain, or of the same one), bound to a VIRQ of one vCPU, or
an IPI port. Sending sets the destination port's bit in `evtchn_pending` of
the destination domain's shared_info; if the port is not masked, the bit of
its 64-port word in the notified vCPU's `evtchn_pending_sel` is set, and if
that vCPU had no upcall pending, `evtchn_upcall_pending` is set and the vCPU
is interrupted (HVM: the callback vector is injected when RFLAGS.IF allows).

The bits live in guest-visible memory and the guest updates them too, with
locked instructions that the CPU engine does not make atomic against other
threads: every read-modify-write here runs under the domain's
`atomic_update()`, which keeps the domain's guest code stopped meanwhile.

Locking: `EventChannels.lock` guards a domain's port table (Xen's
event_lock); operations spanning two domains take both in domain-id order.
Bits are set after the table locks are released, one domain at a time.
"""

from __future__ import annotations

import heapq
import struct
import threading
from typing import TYPE_CHECKING

from ..abi import structs as S
from ..abi.constants import (
    DOMID_SELF,
    EVTCHN_2L_NR_CHANNELS,
    NR_VIRQS,
    PER_VCPU_VIRQS,
    Errno,
    EvtchnStat,
)
from .errors import HypercallError

if TYPE_CHECKING:
    from .domain import Domain
    from .vcpu import Vcpu

VCPU_INFO_SIZE = 64
UPCALL_PENDING = 0             # vcpu_info.evtchn_upcall_pending (u8)
UPCALL_MASK = 1                # vcpu_info.evtchn_upcall_mask (u8)
BUCKET = 64                    # ports become valid in buckets, as Xen allocates them


class SharedInfoAbi:
    """Where the 2-level words are: xen_ulong_t is 8 bytes for 64-bit guests and 4
    for 32-bit ones, which moves evtchn_mask, the selector and the port count."""

    def __init__(self, shared_info, vcpu_info):
        word_bytes = vcpu_info.sizeof("evtchn_pending_sel")
        self.word = struct.Struct("<Q" if word_bytes == 8 else "<I")
        self.word_bytes = word_bytes
        self.word_bits = word_bytes * 8
        self.nr_ports = self.word_bits * self.word_bits
        self.pending_offset = shared_info.offsetof("evtchn_pending")
        self.mask_offset = shared_info.offsetof("evtchn_mask")
        self.sel_offset = vcpu_info.offsetof("evtchn_pending_sel")
        self.wc_offset = shared_info.offsetof("wc_version")
        self.all_ones = (1 << self.word_bits) - 1


NATIVE_ABI = SharedInfoAbi(S.SHARED_INFO, S.VCPU_INFO)
COMPAT_ABI = SharedInfoAbi(S.SHARED_INFO_COMPAT, S.VCPU_INFO_COMPAT)
assert NATIVE_ABI.nr_ports == EVTCHN_2L_NR_CHANNELS


class Channel:
    __slots__ = ("state", "notify_vcpu", "remote_domid", "remote_port", "virq")

    def __init__(self, state: EvtchnStat):
        self.state = state
        self.notify_vcpu = 0
        self.remote_domid = 0      # unbound: who may bind; interdomain: the peer
        self.remote_port = 0       # interdomain: the peer's port
        self.virq = 0


class EventChannels:
    def __init__(self, domain: Domain):
        self.domain = domain
        self.lock = threading.RLock()
        self.channels: dict[int, Channel] = {}
        self.virq_ports: dict[tuple[int, int], int] = {}   # (virq, vcpu) -> port
        self._freed: list[int] = []          # heap of closed ports below the high-water mark
        self._next = 1                       # lowest never-allocated port
        self.valid_ports = BUCKET            # ports below this are "valid" (bucket 0 exists)

    # -- limits and allocation ---------------------------------------------------------
    def _nr_vcpus(self) -> int:
        """Event targets: the vCPUs, or one for the host domain (Dom0 has no vCPUs)."""
        return len(self.domain.vcpus) or 1

    def port_limit(self) -> int:
        """One past the highest port this domain may allocate."""
        return min(self.domain.shinfo_abi.nr_ports, self.domain.max_evtchn_port + 1)

    def port_is_valid(self, port: int) -> bool:
        return 0 <= port < min(self.valid_ports, self.domain.shinfo_abi.nr_ports)

    def _allocate(self) -> int:
        """Lowest free port (caller holds self.lock); -ENOSPC when none is left."""
        while self._freed and self._freed[0] in self.channels:
            heapq.heappop(self._freed)
        port = self._freed[0] if self._freed else self._next
        if port >= self.port_limit():
            raise HypercallError(Errno.ENOSPC, "no free event channel")
        if self._freed and port == self._freed[0]:
            heapq.heappop(self._freed)
        else:
            self._next = port + 1
        if port >= self.valid_ports:
            self.valid_ports = (port // BUCKET + 1) * BUCKET
        return port

    def _get(self, port: int) -> Channel:
        if not self.port_is_valid(port):
            raise HypercallError(Errno.EINVAL, f"port {port} out of range")
        chn = self.channels.get(port)
        if chn is None:
            raise HypercallError(Errno.EINVAL, f"port {port} is closed")
        return chn

    def _free(self, port: int) -> None:
        del self.channels[port]
        heapq.heappush(self._freed, port)

    # -- operations (EVTCHNOP_*), called with the calling domain's table ----------------
    def alloc_unbound(self, remote_domid: int, caller_domid: int) -> int:
        with self.lock:
            port = self._allocate()
            chn = Channel(EvtchnStat.unbound)
            chn.remote_domid = caller_domid if remote_domid == DOMID_SELF else remote_domid
            self.channels[port] = chn
            return port

    def bind_interdomain(self, remote: Domain, remote_port: int) -> int:
        me = self.domain
        first, second = sorted((me, remote), key=lambda d: d.domid)
        with first.evtchn.lock, second.evtchn.lock:      # RLocks: loopback is fine
            port = self._allocate()
            rt = remote.evtchn
            if not rt.port_is_valid(remote_port):
                self._release_unused(port)
                raise HypercallError(Errno.EINVAL, "remote port out of range")
            rchn = rt.channels.get(remote_port)
            if (rchn is None or rchn.state != EvtchnStat.unbound
                    or rchn.remote_domid != me.domid):
                self._release_unused(port)
                raise HypercallError(Errno.EINVAL, "remote port is not offered to us")
            chn = Channel(EvtchnStat.interdomain)
            chn.remote_domid, chn.remote_port = remote.domid, remote_port
            self.channels[port] = chn
            rchn.state = EvtchnStat.interdomain
            rchn.remote_domid, rchn.remote_port = me.domid, port
        # Notifications sent to the unbound port were dropped: raise one here, as Xen
        # does, so that the binder never misses the peer's first event.
        self.set_pending(port)
        return port

    def _release_unused(self, port: int) -> None:
        heapq.heappush(self._freed, port)

    def bind_virq(self, virq: int, vcpu_id: int) -> int:
        if not 0 <= virq < NR_VIRQS:
            raise HypercallError(Errno.EINVAL, f"no VIRQ {virq}")
        if virq not in PER_VCPU_VIRQS and vcpu_id != 0:
            raise HypercallError(Errno.EINVAL, "global VIRQs bind on vCPU 0")
        if not 0 <= vcpu_id < self._nr_vcpus():
            raise HypercallError(Errno.ENOENT, f"no vCPU {vcpu_id}")
        with self.lock:
            if (virq, vcpu_id) in self.virq_ports:
                raise HypercallError(Errno.EEXIST, "VIRQ already bound")
            port = self._allocate()
            chn = Channel(EvtchnStat.virq)
            chn.virq = virq
            chn.notify_vcpu = vcpu_id
            self.channels[port] = chn
            self.virq_ports[(virq, vcpu_id)] = port
            return port

    def bind_ipi(self, vcpu_id: int) -> int:
        if not 0 <= vcpu_id < self._nr_vcpus():
            raise HypercallError(Errno.ENOENT, f"no vCPU {vcpu_id}")
        with self.lock:
            port = self._allocate()
            chn = Channel(EvtchnStat.ipi)
            chn.notify_vcpu = vcpu_id
            self.channels[port] = chn
            return port

    def close(self, port: int) -> None:
        me = self.domain
        with self.lock:
            chn = self._get(port)
            peer = (me.hv.get_domain(chn.remote_domid)
                    if chn.state == EvtchnStat.interdomain else None)
        if peer is not None and peer is not me:
            first, second = sorted((me, peer), key=lambda d: d.domid)
            with first.evtchn.lock, second.evtchn.lock:
                self._close_locked(port)
        else:
            with self.lock:
                self._close_locked(port)

    def _close_locked(self, port: int) -> None:
        me = self.domain
        chn = self.channels.get(port)
        if chn is None:
            raise HypercallError(Errno.EINVAL, f"port {port} is closed")
        if chn.state == EvtchnStat.virq:
            self.virq_ports.pop((chn.virq, chn.notify_vcpu), None)
        elif chn.state == EvtchnStat.interdomain:
            peer = me.hv.get_domain(chn.remote_domid)
            if peer is not None:
                rchn = peer.evtchn.channels.get(chn.remote_port)
                if (rchn is not None and rchn.state == EvtchnStat.interdomain
                        and rchn.remote_domid == me.domid and rchn.remote_port == port):
                    # The peer's end waits for us to bind again.
                    rchn.state = EvtchnStat.unbound
                    rchn.remote_domid = me.domid
                    rchn.remote_port = 0
        self._free(port)
        self._clear_pending(port)

    def close_all(self) -> None:
        """EVTCHNOP_reset and domain destruction: close every port."""
        for port in sorted(self.channels):
            try:
                self.close(port)
            except HypercallError:
                pass

    def send(self, port: int) -> None:
        me = self.domain
        with self.lock:
            chn = self._get(port)
            state = chn.state
            if state == EvtchnStat.interdomain:
                target = (chn.remote_domid, chn.remote_port)
            elif state == EvtchnStat.ipi:
                target = None
            elif state == EvtchnStat.unbound:
                return                       # nobody is listening yet: dropped, as in Xen
            else:
                raise HypercallError(Errno.EINVAL, "cannot send on this port")
        if target is None:
            self.set_pending(port)
            return
        peer = me.hv.get_domain(target[0])
        if peer is not None and not peer.is_dying:
            peer.evtchn.set_pending(target[1])

    def status(self, port: int) -> tuple[int, int, int, int]:
        """(status, vcpu, a, b): a/b are the union fields for that status."""
        with self.lock:
            if not self.port_is_valid(port):
                raise HypercallError(Errno.EINVAL, f"port {port} out of range")
            chn = self.channels.get(port)
            if chn is None:
                return EvtchnStat.closed, 0, 0, 0
            if chn.state == EvtchnStat.unbound:
                return chn.state, chn.notify_vcpu, chn.remote_domid, 0
            if chn.state == EvtchnStat.interdomain:
                return chn.state, chn.notify_vcpu, chn.remote_domid, chn.remote_port
            if chn.state == EvtchnStat.virq:
                return chn.state, chn.notify_vcpu, chn.virq, 0
            return chn.state, chn.notify_vcpu, 0, 0

    def bind_vcpu(self, port: int, vcpu_id: int) -> None:
        if not 0 <= vcpu_id < self._nr_vcpus():
            raise HypercallError(Errno.ENOENT, f"no vCPU {vcpu_id}")
        with self.lock:
            chn = self._get(port)
            if chn.state == EvtchnStat.virq:
                if chn.virq in PER_VCPU_VIRQS:
                    raise HypercallError(Errno.EINVAL, "per-vCPU VIRQ")
            elif chn.state not in (EvtchnStat.unbound, EvtchnStat.interdomain):
                raise HypercallError(Errno.EINVAL, "port cannot move")
            chn.notify_vcpu = vcpu_id

    # -- hypervisor-raised events --------------------------------------------------------
    def send_virq(self, virq: int, vcpu_id: int = 0) -> bool:
        """Raise a VIRQ; False if the domain has not bound it (then it is dropped)."""
        port = self.virq_ports.get((int(virq), vcpu_id))
        if port is None:
            return False
        self.set_pending(port)
        return True

    # -- the 2-level bits ------------------------------------------------------------------
    def _shared(self) -> tuple[memoryview, int] | None:
        d = self.domain
        if d.shared_info_mfn is None:
            return None
        return d.hv.machine.view, d.shared_info_mfn << 12

    def set_pending(self, port: int) -> None:
        if self._flip(port, set_pending=True):
            self.domain.check_pollers(port)

    def _flip(self, port: int, *, set_pending: bool) -> bool:
        """The two 2-level transitions that can make a port deliverable: its pending
        bit 0 -> 1 (set_pending) or its mask bit 1 -> 0 (unmask). If the port is then
        both pending and unmasked, select its word and raise the upcall. False when
        nothing changed (the bit already had that value, or no shared_info yet)."""
        d = self.domain
        chn = self.channels.get(port)
        vcpu_id = chn.notify_vcpu if chn is not None else 0
        where = self._shared()
        if where is None:
            return False
        mem, base = where
        abi = d.shinfo_abi
        w = abi.word
        word = port // abi.word_bits
        off = base + word * abi.word_bytes
        pending_at, mask_at = off + abi.pending_offset, off + abi.mask_offset
        bit = 1 << (port % abi.word_bits)
        notify = False
        with d.atomic_update():
            if set_pending:
                pending = w.unpack_from(mem, pending_at)[0]
                if pending & bit:
                    return False
                w.pack_into(mem, pending_at, pending | bit)
                deliverable = not w.unpack_from(mem, mask_at)[0] & bit
            else:
                mask = w.unpack_from(mem, mask_at)[0]
                if not mask & bit:
                    return False
                w.pack_into(mem, mask_at, mask & ~bit)
                deliverable = bool(w.unpack_from(mem, pending_at)[0] & bit)
            if deliverable:
                notify = self._select_word(vcpu_id, word)
        if notify:
            d.upcall_raised(vcpu_id)
        return True

    def _select_word(self, vcpu_id: int, word: int) -> bool:
        """Set the selector bit and upcall_pending (inside atomic_update).

        True if the vCPU's upcall went from idle to pending (it must be interrupted).
        """
        d = self.domain
        info = d.vcpu_info_address(vcpu_id)
        if info is None:
            return False
        abi = d.shinfo_abi
        mem = d.hv.machine.view
        sel = abi.word.unpack_from(mem, info + abi.sel_offset)[0]
        if sel & (1 << word):
            return False
        abi.word.pack_into(mem, info + abi.sel_offset, sel | (1 << word))
        if mem[info + UPCALL_PENDING]:
            return False
        mem[info + UPCALL_PENDING] = 1
        return True

    def unmask(self, port: int) -> None:
        if not self.port_is_valid(port):
            raise HypercallError(Errno.EINVAL, f"port {port} out of range")
        self._flip(port, set_pending=False)

    def _bit(self, port: int, which: str) -> tuple[memoryview, int, int] | None:
        where = self._shared()
        abi = self.domain.shinfo_abi
        if where is None or not 0 <= port < abi.nr_ports:
            return None
        mem, base = where
        off = (base + (abi.pending_offset if which == "pending" else abi.mask_offset)
               + (port // abi.word_bits) * abi.word_bytes)
        return mem, off, 1 << (port % abi.word_bits)

    def _clear_pending(self, port: int) -> None:
        loc = self._bit(port, "pending")
        if loc is None:
            return
        mem, off, bit = loc
        w = self.domain.shinfo_abi.word
        with self.domain.atomic_update():
            w.pack_into(mem, off, w.unpack_from(mem, off)[0] & ~bit)

    def is_pending(self, port: int) -> bool:
        loc = self._bit(port, "pending")
        if loc is None:
            return False
        mem, off, bit = loc
        return bool(self.domain.shinfo_abi.word.unpack_from(mem, off)[0] & bit)

    def is_masked(self, port: int) -> bool:
        loc = self._bit(port, "mask")
        if loc is None:
            return True
        mem, off, bit = loc
        return bool(self.domain.shinfo_abi.word.unpack_from(mem, off)[0] & bit)


def upcall_pending(d: Domain, vcpu: Vcpu) -> bool:
    info = d.vcpu_info_address(vcpu.vcpu_id)
    return info is not None and d.hv.machine.view[info + UPCALL_PENDING] != 0
