"""The hypervisor console: Xen's printk levels, thresholds and console ring.

Messages carry a level (ERR, WARNING, INFO, DEBUG) and a flag saying whether a
guest caused them. Two threshold pairs decide what is kept, as in Xen:
levels below `lower` always print, levels below `upper` print subject to a
rate limit, the rest are dropped. `loglvl` sets the hypervisor pair and
`guest_loglvl` the guest pair (both changeable at run time). Kept lines go to
the console ring (read by `xl dmesg`, sysctl readconsole) and to listeners.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from enum import IntEnum


class Level(IntEnum):
    ERR = 0
    WARNING = 1
    INFO = 2
    DEBUG = 3


# Names accepted by loglvl=/guest_loglvl= and the threshold each one sets.
LEVEL_NAMES = {"none": 0, "error": 1, "warning": 2, "info": 3, "debug": 4, "all": 4}
_NAME_OF = {0: "None", 1: "Errors", 2: "Errors and warnings",
            3: "Errors, warnings and info", 4: "All"}

CONRING_SIZE = 16384      # Xen's default console ring (boot option conring_size)
RATELIMIT_BURST = 10
RATELIMIT_MS = 5000
TIMESTAMP_MODES = ("none", "date", "datems", "boot")


class LogParameterError(ValueError):
    pass


def parse_loglvl(text: str) -> tuple[int, int]:
    """`level[/rate_limited_level]` → (lower, upper) thresholds."""
    lo_name, _, up_name = text.partition("/")
    try:
        lower = LEVEL_NAMES[lo_name]
        upper = LEVEL_NAMES[up_name] if up_name else lower
    except KeyError as e:
        raise LogParameterError(f"unknown log level {e.args[0]!r}") from None
    return lower, max(lower, upper)


class HypervisorLog:
    def __init__(self, loglvl: str = "warning", guest_loglvl: str = "none/warning",
                 console_timestamps: str = "none", clock: Callable[[], int] = time.monotonic_ns,
                 ring_size: int = CONRING_SIZE):
        self._lock = threading.Lock()
        self._size = ring_size
        self._ring = bytearray(ring_size)
        self._prod = 0          # total bytes ever written
        self._clear_mark = 0    # readconsole with clear: bytes before this are gone
        self._listeners: list[Callable[[str], None]] = []
        self._clock = clock
        self._boot_ns = clock()
        self._tokens = float(RATELIMIT_BURST)
        self._last_refill = clock()
        self.suppressed = 0
        self.set_loglvl(loglvl)
        self.set_guest_loglvl(guest_loglvl)
        self.set_timestamps(console_timestamps)

    # -- parameters -------------------------------------------------------
    def set_loglvl(self, text: str) -> None:
        self.lower, self.upper = parse_loglvl(text)

    def set_guest_loglvl(self, text: str) -> None:
        self.guest_lower, self.guest_upper = parse_loglvl(text)

    def set_timestamps(self, mode: str) -> None:
        if mode not in TIMESTAMP_MODES:
            raise LogParameterError(f"unknown console_timestamps mode {mode!r}")
        self.timestamps = mode

    def describe(self) -> str:
        return (f"(lvl={_NAME_OF[self.lower]}, upper={_NAME_OF[self.upper]}; "
                f"guest lvl={_NAME_OF[self.guest_lower]}, upper={_NAME_OF[self.guest_upper]})")

    def add_listener(self, fn: Callable[[str], None]) -> None:
        self._listeners.append(fn)

    def remove_listener(self, fn: Callable[[str], None]) -> None:
        if fn in self._listeners:
            self._listeners.remove(fn)

    # -- printing ---------------------------------------------------------
    def printk(self, level: Level, text: str, *, guest: bool = False,
               prefix: str = "(XEN) ") -> bool:
        """Print one message (may span lines). Returns whether it was kept."""
        lower, upper = (self.guest_lower, self.guest_upper) if guest else (self.lower,
                                                                            self.upper)
        if level >= upper:
            return False
        if level >= lower and not self._ratelimit_ok():
            self.suppressed += 1
            return False
        stamp = self._stamp()
        lines = "".join(f"{prefix}{stamp}{line}\n" for line in text.split("\n"))
        self._append(lines)
        return True

    def err(self, text: str) -> None:
        self.printk(Level.ERR, text)

    def warning(self, text: str) -> None:
        self.printk(Level.WARNING, text)

    def info(self, text: str) -> None:
        self.printk(Level.INFO, text)

    def debug(self, text: str) -> None:
        self.printk(Level.DEBUG, text)

    def guest(self, level: Level, domid: int, text: str) -> bool:
        """A line a guest caused, shown as `(dN) text` when guest_loglvl allows."""
        return self.printk(level, text, guest=True, prefix=f"(d{domid}) ")

    def _stamp(self) -> str:
        mode = self.timestamps
        if mode == "none":
            return ""
        if mode == "boot":
            ns = self._clock() - self._boot_ns
            return f"[{ns // 1_000_000_000:5d}.{ns // 1000 % 1_000_000:06d}] "
        now = time.time()
        base = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
        if mode == "datems":
            return f"[{base}.{int(now * 1000) % 1000:03d}] "
        return f"[{base}] "

    def _ratelimit_ok(self) -> bool:
        now = self._clock()
        with self._lock:
            elapsed_ms = (now - self._last_refill) / 1e6
            self._last_refill = now
            self._tokens = min(RATELIMIT_BURST,
                               self._tokens + elapsed_ms * RATELIMIT_BURST / RATELIMIT_MS)
            if self._tokens >= 1:
                self._tokens -= 1
                return True
            return False

    def _append(self, text: str) -> None:
        data = text.encode("utf-8", "replace")
        size = self._size
        with self._lock:
            self._prod += max(0, len(data) - size)
            data = data[-size:]
            pos = self._prod % size
            first = min(len(data), size - pos)
            self._ring[pos:pos + first] = data[:first]
            self._ring[:len(data) - first] = data[first:]
            self._prod += len(data)
            listeners = list(self._listeners)
        for fn in listeners:
            fn(text)

    # -- reading (sysctl readconsole) --------------------------------------
    def read(self, *, clear: bool = False, index: int | None = None,
             max_bytes: int | None = None) -> tuple[bytes, int]:
        """Return (bytes, next_index). `index` reads incrementally from a position."""
        size = self._size
        with self._lock:
            oldest = max(self._clear_mark, self._prod - size)
            # An index outside what the ring holds reads from the oldest byte (Xen).
            start = oldest if index is None or not oldest <= index <= self._prod else index
            end = self._prod
            if max_bytes is not None:
                end = min(end, start + max_bytes)
            a, b = start % size, end % size
            if end - start == 0:
                out = b""
            elif a < b:
                out = bytes(self._ring[a:b])
            else:
                out = bytes(self._ring[a:]) + bytes(self._ring[:b])
            if clear:
                self._clear_mark = end     # only what was returned is gone
            return out, end
