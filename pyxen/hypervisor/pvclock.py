"""Guest time: the TSC the guest reads, vcpu_time_info (pvclock) and the wall clock.

A guest's TSC is a fixed-rate function of hypervisor system time (Xen's
NOW(), ns since the host started): tsc = (now - epoch) * khz / 10^6. Because
the function is exactly linear, one vcpu_time_info snapshot stays valid
forever; it is refreshed whenever a vCPU is scheduled anyway, as Xen does.

pvclock conversion (what the guest computes): ns = system_time +
((tsc - tsc_timestamp) << shift) * mul >> 32, with a negative shift meaning a
right shift. `scale()` picks shift and mul the way Xen normalises them: mul
in [2^31, 2^32).
"""

from __future__ import annotations

import struct
from functools import lru_cache

from ..abi.constants import XEN_PVCLOCK_TSC_STABLE_BIT

TIME_INFO = 32                  # vcpu_info.time

_TIME = struct.Struct("<IIQQIbB2x")
_WC = struct.Struct("<III")
_I = struct.Struct("<I")


def ns_to_tsc(ns: int, khz: int) -> int:
    return ns * khz // 1_000_000 if ns > 0 else 0


@lru_cache(maxsize=8)
def scale(khz: int) -> tuple[int, int]:
    """(tsc_to_system_mul, tsc_shift) for a TSC of `khz` kHz."""
    tps = khz * 1000                 # ticks per second
    shift = 0
    # ns per tick as a 32.32 fraction must be below 1: scale ticks down or up.
    while tps > 2 * 1_000_000_000:
        tps >>= 1
        shift -= 1
    while tps <= 1_000_000_000:
        tps <<= 1
        shift += 1
    mul = (1_000_000_000 << 32) // tps
    return mul, shift


def system_time(tsc: int, tsc_timestamp: int, system_ns: int, mul: int, shift: int) -> int:
    """What a guest computes from a vcpu_time_info (for tests and cross-checks)."""
    delta = tsc - tsc_timestamp
    delta = delta << shift if shift >= 0 else delta >> -shift
    return system_ns + ((delta * mul) >> 32)


def write_time_info(mem, off: int, *, tsc: int, now: int, khz: int) -> None:
    """Update a vcpu_time_info at mem[off:] with Xen's odd/even version protocol."""
    mul, shift = scale(khz)
    version = _I.unpack_from(mem, off)[0]
    _I.pack_into(mem, off, (version + 1) | 1)             # odd: being updated
    _TIME.pack_into(mem, off, (version + 1) | 1, 0, tsc, now, mul, shift,
                    XEN_PVCLOCK_TSC_STABLE_BIT)
    _I.pack_into(mem, off, ((version + 1) | 1) + 1)       # even: consistent


def write_wallclock(shared_info, wallclock_ns_at_boot: int, offset: int) -> None:
    """shared_info.wc_version/wc_sec/wc_nsec at `offset` (it depends on the guest's
    ABI): the wall-clock time at system time 0. The upper half of the seconds
    (wc_sec_hi, 64-bit layout only) stays 0 until 2106."""
    sec, nsec = divmod(wallclock_ns_at_boot, 1_000_000_000)
    version = _I.unpack_from(shared_info, offset)[0]
    _I.pack_into(shared_info, offset, (version + 1) | 1)
    _WC.pack_into(shared_info, offset, (version + 1) | 1, sec & 0xFFFF_FFFF, nsec)
    _I.pack_into(shared_info, offset, ((version + 1) | 1) + 1)
