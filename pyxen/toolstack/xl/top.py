"""pyxl top: xentop for a pyxen host.

Batch mode (-b, and whenever stdout is not a terminal) prints what xentop -b prints: for
each iteration the table header and one row per domain, nothing else.  Interactive mode
redraws xentop's screen (three summary lines, the table, the key line) every DELAY seconds
and takes xentop's keys: q quit, s sort column, v vCPUs, r repeat header, d delay.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import sys
import time

import click

from . import formats
from .client import XlClient, XlExit
from .common import Env, domain_list, out, pass_env

CTX = {"help_option_names": ["-h", "--help"]}


def _number(value, default: float = 0.0) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def take_sample(client: XlClient, want_vcpus: bool) -> formats.TopSample:
    info = client.call("info")
    if not isinstance(info, dict):
        raise XlExit("the pyxen host sent malformed host information")
    domains = domain_list(client)
    vcpus: dict[int, list[dict]] = {}
    if want_vcpus:
        for v in client.call("vcpu_list", domid=None) or []:
            vcpus.setdefault(int(v["domid"]), []).append(v)
    return formats.TopSample(
        domains=domains,
        total_kb=int(_number(info.get("total_memory"))) * 1024,
        free_kb=int(_number(info.get("free_memory"))) * 1024,
        nr_cpus=int(_number(info.get("nr_cpus"))),
        cpu_mhz=int(_number(info.get("cpu_mhz"))),
        xen_version=str(info.get("xen_version") or ""),
        taken=time.monotonic(),
        vcpus=vcpus,
    )


class _Screen:
    """xentop's interactive state."""

    def __init__(self, delay: float, options: dict) -> None:
        self.delay = delay
        self.options = options
        self.sort_key = 0
        self.prompt: str | None = None

    def key(self, ch: str) -> bool:
        """Handle one key; False to quit."""
        if self.prompt is not None:
            if ch in "\r\n":
                value = self.prompt.strip()
                if value.isdigit() and int(value) > 0:
                    self.delay = int(value)
                self.prompt = None
            elif ch == "\x1b":
                self.prompt = None
            elif ch in "\x7f\b":
                self.prompt = self.prompt[:-1]
            elif ch.isprintable() and len(self.prompt) < 79:
                self.prompt += ch
            return True
        lower = ch.lower()
        if lower == "q" or ch == "\x1b":
            return False
        if lower == "s":
            self.sort_key = (self.sort_key + 1) % formats.TOP_SORT_FIELDS
        elif lower == "v":
            self.options["show_vcpus"] = not self.options["show_vcpus"]
        elif lower == "r":
            self.options["repeat_header"] = not self.options["repeat_header"]
        elif lower == "n":
            self.options["show_networks"] = not self.options["show_networks"]
        elif lower == "b":
            self.options["show_vbds"] = not self.options["show_vbds"]
        elif lower == "d":
            self.prompt = ""
        return True

    def bottom_line(self) -> str:
        if self.prompt is not None:
            return f"  Delay(sec): {self.prompt}"
        rev, off = "\x1b[7m", "\x1b[0m"
        items = [("D", "elay"), ("N", "etworks"), ("v", "Bds"), ("V", "CPUs"),
                 ("R", "epeat header"), ("S", "ort order"), ("Q", "uit")]
        parts = []
        for first, rest in items:
            if first == "v":  # "vBds": the B is the key
                parts.append(f"v{rev}B{off}ds")
            else:
                parts.append(f"{rev}{first}{off}{rest}")
        return "  " + "  ".join(parts) + "  "

    def draw(self, sample: formats.TopSample, previous: formats.TopSample | None) -> None:
        cols, rows = shutil.get_terminal_size((80, 24))
        lines = formats.top_summary(sample) + formats.top_table(
            sample, previous, sort_key=self.sort_key, **self.options)
        lines = [line[:cols] for line in lines[:max(rows - 1, 1)]]
        screen = "\x1b[H\x1b[2J" + "\r\n".join(lines)
        screen += f"\x1b[{rows};1H" + self.bottom_line()
        out(screen)


def _interactive(env: Env, delay: float, iterations: int | None, options: dict) -> int:
    client = env.client()
    screen = _Screen(delay, options)
    fd: int | None
    try:
        fd = sys.stdin.fileno()
        if not os.isatty(fd):
            fd = None
    except (AttributeError, OSError, ValueError):
        fd = None
    saved = None
    if fd is not None:
        import termios
        import tty
        saved = termios.tcgetattr(fd)
        tty.setcbreak(fd)
    out("\x1b[?1049h\x1b[?25l")
    previous = None
    count = 0
    try:
        while True:
            sample = take_sample(client, screen.options["show_vcpus"])
            screen.draw(sample, previous)
            previous = sample
            count += 1
            if iterations is not None and count >= iterations:
                return 0
            deadline = time.monotonic() + screen.delay
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                if fd is None:
                    time.sleep(left)
                    break
                ready, _, _ = select.select([fd], [], [], left)
                if ready:
                    ch = os.read(fd, 1).decode("latin-1")
                    if not ch:
                        fd = None
                        continue
                    if not screen.key(ch):
                        return 0
                    screen.draw(sample, previous)
    except KeyboardInterrupt:
        return 0
    finally:
        out("\x1b[?25h\x1b[?1049l")
        if saved is not None and fd is not None:
            import termios
            with contextlib.suppress(OSError):
                termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _batch(env: Env, delay: float, iterations: int | None, options: dict) -> int:
    client = env.client()
    previous = None
    count = 0
    try:
        while True:
            sample = take_sample(client, options["show_vcpus"])
            lines = formats.top_table(sample, previous, **options)
            out("".join(line + "\n" for line in lines))
            previous = sample
            count += 1
            if iterations is not None and count >= iterations:
                return 0
            time.sleep(delay)
    except KeyboardInterrupt:
        return 0  # xentop -b ends cleanly on SIGINT / SIGTERM


@click.command("top", context_settings=CTX)
@click.option("-d", "--delay", type=float, default=3.0, metavar="SECONDS", show_default=True,
              help="Seconds between updates.")
@click.option("-b", "--batch", is_flag=True,
              help="Batch mode: print the table every DELAY seconds, take no input (also"
                   " when stdout is not a terminal).")
@click.option("-i", "--iterations", type=click.IntRange(min=1), default=None, metavar="N",
              help="Stop after N updates.")
@click.option("-v", "--vcpus", "show_vcpus", is_flag=True, help="Show each domain's vCPUs.")
@click.option("-r", "--repeat-header", is_flag=True, help="Repeat the header before each"
              " domain.")
@click.option("-f", "--full-name", is_flag=True, help="Do not truncate domain names.")
@click.option("-n", "--networks", "show_networks", is_flag=True,
              help="Show network devices (pyxen domains have none yet).")
@click.option("-x", "--vbds", "show_vbds", is_flag=True,
              help="Show block devices (pyxen domains have none yet).")
@pass_env
def top(env: Env, delay: float, batch: bool, iterations: int | None, show_vcpus: bool,
        repeat_header: bool, full_name: bool, show_networks: bool, show_vbds: bool) -> int:
    """Show the domains' resource use, refreshed (xentop)."""
    if not delay > 0:
        raise XlExit("pyxl top: the delay must be a positive number of seconds", 2)
    options = {"full_name": full_name, "repeat_header": repeat_header,
               "show_vcpus": show_vcpus, "show_networks": show_networks,
               "show_vbds": show_vbds}
    if batch or not sys.stdout.isatty():
        return _batch(env, delay, iterations, options)
    return _interactive(env, delay, iterations, options)
