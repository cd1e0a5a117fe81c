"""HypervisorLog: loglvl thresholds, rate limit, prefixes, timestamps, the console ring."""

from __future__ import annotations

import re

import pytest

from pyxen.hypervisor.log import (
    RATELIMIT_BURST,
    RATELIMIT_MS,
    HypervisorLog,
    Level,
    LogParameterError,
    parse_loglvl,
)


class FakeClock:
    def __init__(self, start_ns: int = 7_000_000_000):
        self.ns = start_ns

    def __call__(self) -> int:
        return self.ns

    def advance_ms(self, ms: float) -> None:
        self.ns += int(ms * 1_000_000)


def _log(**kw) -> tuple[HypervisorLog, FakeClock]:
    clock = FakeClock()
    return HypervisorLog(clock=clock, **kw), clock


def _kept(log: HypervisorLog, *, guest: bool = False) -> list[Level]:
    return [lv for lv in Level if log.printk(lv, f"m{lv.value}", guest=guest)]


# -- thresholds ----------------------------------------------------------------------------

@pytest.mark.parametrize("text, pair", [
    ("none", (0, 0)), ("error", (1, 1)), ("warning", (2, 2)), ("info", (3, 3)),
    ("debug", (4, 4)), ("all", (4, 4)), ("none/warning", (0, 2)), ("error/all", (1, 4)),
    ("info/error", (3, 3)),          # the upper threshold is never below the lower one
])
def test_parse_loglvl(text, pair):
    assert parse_loglvl(text) == pair


@pytest.mark.parametrize("text", ["", "verbose", "warn", "WARNING", "all/x", "/all"])
def test_parse_loglvl_rejects_unknown_names(text):
    with pytest.raises(LogParameterError):
        parse_loglvl(text)


@pytest.mark.parametrize("loglvl, kept", [
    ("none", []),
    ("error", [Level.ERR]),
    ("warning", [Level.ERR, Level.WARNING]),
    ("info", [Level.ERR, Level.WARNING, Level.INFO]),
    ("all", list(Level)),
])
def test_hypervisor_threshold_selects_levels(loglvl, kept):
    log, _ = _log(loglvl=loglvl)
    assert _kept(log) == kept
    text = log.read()[0].decode()
    assert text == "".join(f"(XEN) m{lv.value}\n" for lv in kept)


def test_defaults_are_xens():
    log, _ = _log()
    assert (log.lower, log.upper) == (2, 2)                 # loglvl=warning
    assert (log.guest_lower, log.guest_upper) == (0, 2)     # guest_loglvl=none/warning
    assert _kept(log) == [Level.ERR, Level.WARNING]
    assert log.describe() == ("(lvl=Errors and warnings, upper=Errors and warnings; "
                              "guest lvl=None, upper=Errors and warnings)")


def test_levels_below_lower_are_never_rate_limited():
    log, _ = _log(loglvl="warning")
    assert all(log.printk(Level.ERR, f"e{i}") for i in range(5 * RATELIMIT_BURST))
    assert log.suppressed == 0


def test_levels_between_lower_and_upper_are_rate_limited_and_refill_with_time():
    log, clock = _log(loglvl="error/all")
    # ERR is below lower: always. INFO is rate limited: a burst, then nothing.
    results = [log.printk(Level.INFO, f"i{i}") for i in range(RATELIMIT_BURST + 5)]
    assert results == [True] * RATELIMIT_BURST + [False] * 5
    assert log.suppressed == 5
    assert log.printk(Level.ERR, "still printed")
    clock.advance_ms(RATELIMIT_MS / RATELIMIT_BURST)        # one message worth of tokens
    assert log.printk(Level.DEBUG, "one more")
    assert not log.printk(Level.DEBUG, "but not two")
    clock.advance_ms(10 * RATELIMIT_MS)                     # refill caps at the burst
    assert sum(log.printk(Level.WARNING, f"w{i}") for i in range(3 * RATELIMIT_BURST)) \
        == RATELIMIT_BURST
    text = log.read()[0].decode()
    assert "(XEN) i9\n" in text and "(XEN) i10\n" not in text
    assert "still printed" in text and "one more" in text and "but not two" not in text


def test_guest_messages_use_the_guest_thresholds_and_prefix():
    log, _ = _log(loglvl="none", guest_loglvl="error/info")
    assert not log.printk(Level.ERR, "hypervisor line")
    assert log.guest(Level.ERR, 7, "guest error")
    assert log.guest(Level.INFO, 7, "guest info")            # rate limited, burst left
    assert not log.guest(Level.DEBUG, 7, "guest debug")
    assert log.read()[0] == b"(d7) guest error\n(d7) guest info\n"


def test_default_guest_loglvl_rate_limits_even_errors():
    log, _ = _log()
    kept = [log.guest(Level.ERR, 1, f"g{i}") for i in range(RATELIMIT_BURST + 3)]
    assert kept == [True] * RATELIMIT_BURST + [False] * 3
    assert not log.guest(Level.DEBUG, 1, "console line")     # guest DEBUG: dropped


def test_thresholds_change_at_run_time():
    log, _ = _log()
    assert not log.printk(Level.DEBUG, "before")
    log.set_loglvl("all")
    assert log.printk(Level.DEBUG, "after")
    log.set_guest_loglvl("all")
    assert log.guest(Level.DEBUG, 3, "guest after")
    with pytest.raises(LogParameterError):
        log.set_loglvl("loud")
    assert (log.lower, log.upper) == (4, 4)                  # a bad value changes nothing


def test_multi_line_messages_prefix_every_line():
    log, _ = _log(loglvl="all")
    log.printk(Level.ERR, "first\nsecond")
    log.guest(Level.ERR, 12, "a\nb")
    assert log.read()[0] == b"(XEN) first\n(XEN) second\n(d12) a\n(d12) b\n"


def test_dropped_messages_reach_neither_ring_nor_listeners():
    log, _ = _log(loglvl="error")
    heard = []
    log.add_listener(heard.append)
    log.printk(Level.WARNING, "dropped")
    log.printk(Level.ERR, "kept")
    log.remove_listener(heard.append)
    log.printk(Level.ERR, "unheard")
    assert heard == ["(XEN) kept\n"]
    assert log.read()[0] == b"(XEN) kept\n(XEN) unheard\n"


# -- timestamps -----------------------------------------------------------------------------

def test_boot_timestamps_are_seconds_and_microseconds_since_boot():
    log, clock = _log(loglvl="all", console_timestamps="boot")
    clock.ns += 12_345_678_901
    log.printk(Level.ERR, "x\ny")
    assert log.read()[0] == b"(XEN) [   12.345678] x\n(XEN) [   12.345678] y\n"


@pytest.mark.parametrize("mode, pattern", [
    ("none", r"\(XEN\) msg\n"),
    ("date", r"\(XEN\) \[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] msg\n"),
    ("datems", r"\(XEN\) \[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\] msg\n"),
])
def test_date_timestamps(mode, pattern):
    log, _ = _log(loglvl="all")
    log.set_timestamps(mode)
    log.guest(Level.ERR, 2, "msg")
    log.printk(Level.ERR, "msg")
    text = log.read()[0].decode()
    guest_line, xen_line = text.splitlines(keepends=True)
    assert re.fullmatch(pattern, xen_line)
    assert re.fullmatch(pattern.replace(r"\(XEN\)", r"\(d2\)"), guest_line)


def test_unknown_timestamp_mode_is_rejected():
    log, _ = _log()
    with pytest.raises(LogParameterError):
        log.set_timestamps("iso")
    with pytest.raises(LogParameterError):
        HypervisorLog(console_timestamps="yes")
    assert log.timestamps == "none"


# -- the ring ---------------------------------------------------------------------------------

def _write_all(log: HypervisorLog, n: int) -> bytes:
    expected = b""
    for i in range(n):
        assert log.printk(Level.ERR, f"line {i:03d} " + "x" * (i % 7))
        expected += f"(XEN) line {i:03d} ".encode() + b"x" * (i % 7) + b"\n"
    return expected


def test_ring_keeps_the_newest_bytes_after_wrapping():
    log, _ = _log(loglvl="all", ring_size=256)
    expected = _write_all(log, 80)
    data, index = log.read()
    assert len(expected) > 5 * 256
    assert data == expected[-256:]
    assert index == len(expected)


def test_a_message_larger_than_the_ring_keeps_its_tail():
    log, _ = _log(loglvl="all", ring_size=128)
    log.printk(Level.ERR, "a" * 100)
    log.printk(Level.ERR, "b" * 300)
    data, index = log.read()
    assert data == (b"b" * 300 + b"\n")[-128:]
    assert index == len("(XEN) ") * 2 + 100 + 300 + 2


def test_incremental_reads_return_only_new_text():
    log, _ = _log(loglvl="all", ring_size=512)
    first = _write_all(log, 5)
    data, idx = log.read()
    assert data == first
    log.printk(Level.WARNING, "new one")
    data, idx2 = log.read(index=idx)
    assert data == b"(XEN) new one\n"
    assert idx2 == idx + len(data)
    assert log.read(index=idx2) == (b"", idx2)


def test_incremental_read_from_an_overwritten_index_starts_at_the_oldest_byte():
    log, _ = _log(loglvl="all", ring_size=256)
    expected = _write_all(log, 40)
    assert log.read(index=3) == (expected[-256:], len(expected))


def test_max_bytes_reads_in_pieces_across_the_wrap():
    log, _ = _log(loglvl="all", ring_size=256)
    expected = _write_all(log, 33)
    pieces, idx = [], None
    while True:
        data, idx = log.read(index=idx, max_bytes=37)
        if not data:
            break
        assert len(data) <= 37
        pieces.append(data)
    assert b"".join(pieces) == expected[-256:]
    assert idx == len(expected)


def test_clear_drops_what_was_there_and_keeps_what_comes_later():
    log, _ = _log(loglvl="all", ring_size=256)
    expected = _write_all(log, 10)
    data, idx = log.read(clear=True)
    assert data == expected[-256:]
    assert log.read() == (b"", idx)
    log.printk(Level.ERR, "after clear")
    assert log.read() == (b"(XEN) after clear\n", idx + len(b"(XEN) after clear\n"))


def test_clear_with_a_short_read_only_clears_what_was_returned():
    log, _ = _log(loglvl="all", ring_size=512)
    expected = _write_all(log, 6)
    head, idx = log.read(clear=True, max_bytes=20)
    assert head == expected[:20]
    assert log.read() == (expected[20:], len(expected))


def test_incremental_read_from_a_future_index_is_ignored():
    log, _ = _log(loglvl="all", ring_size=64)
    expected = _write_all(log, 4)
    assert log.read(index=len(expected) + 5) == (expected[-64:], len(expected))
