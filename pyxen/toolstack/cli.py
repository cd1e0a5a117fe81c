"""The `pyxen` command line.

`pyxen boot CONFIG [KEY=VALUE ...]` starts a one-shot host (hypervisor plus
the Dom0 side in this process), builds the domain the xl.cfg file describes,
streams its console, applies its on_poweroff/on_crash/... actions and exits
with a status derived from how the guest shut down:
0 poweroff, 1 crash, 3 reboot, 4 suspend, 5 watchdog, 6 soft_reset,
2 bad input, 124 timeout.
"""

from __future__ import annotations

import os
import sys
import traceback

import click

from .. import __version__

EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 70


def _fail(message: str, status: int = EXIT_BAD_INPUT) -> None:
    click.echo(f"pyxen: error: {message}", err=True)
    sys.exit(status)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pyxen")
def main() -> None:
    """pyxen: a Xen 4.10-compatible hypervisor in Python."""


@main.command(context_settings={"ignore_unknown_options": False})
@click.argument("config", type=click.Path(dir_okay=False))
@click.argument("overrides", nargs=-1)
@click.option("--xen-cmdline", "-x", default="", metavar="PARAMS",
              help='Hypervisor boot parameters, Xen style: "loglvl=all guest_loglvl=info".')
@click.option("--timeout", type=float, default=None, metavar="SECONDS",
              help="Destroy the domain if it has not shut down after this long (exit 124).")
@click.option("--quiet", "-q", is_flag=True, help="Do not show hypervisor messages.")
def boot(config: str, overrides: tuple[str, ...], xen_cmdline: str, timeout: float | None,
         quiet: bool) -> None:
    """Boot the domain described by the xl.cfg file CONFIG and show its console.

    A one-shot host: starts a pyxen host daemon in this process, creates the
    domain through its control socket (as `pyxl create` does), streams the
    console, and stops the host when the domain has ended for good (after its
    on_poweroff/on_crash/... actions). KEY=VALUE arguments override settings of
    the file, as with `xl create`.
    """
    from .runner import RunError, validate_for_boot
    from .xlcfg import XlConfigError, build_domain_config, load_config

    try:
        dc = build_domain_config(load_config(config, overrides))
        for w in dc.warnings:
            click.echo(w, err=True)
        validate_for_boot(dc)
    except (XlConfigError, RunError) as e:
        _fail(str(e))
    except OSError as e:
        _fail(f"{config}: {e.strerror}")
    if timeout is not None and timeout <= 0:
        _fail("--timeout must be positive")
    # Guest console output reaches the one-shot host through the hypervisor console
    # ring, so keep guest messages unless the user chose otherwise.
    params = xen_cmdline if "guest_loglvl=" in xen_cmdline else f"{xen_cmdline} guest_loglvl=all"
    if "conring_size=" not in params:
        params += " conring_size=1M"
    sys.exit(_one_shot(config, overrides, dc.name, params.strip(), timeout, quiet))


def _one_shot(config, overrides, name, params, timeout, quiet) -> int:
    import contextlib
    import threading

    from .control import ControlClient, ControlError
    from .host import HostError, one_shot_host
    from .runner import EXIT_STATUS, EXIT_TIMEOUT, EXIT_UNKNOWN_REASON

    with contextlib.ExitStack() as stack:
        try:
            host = stack.enter_context(one_shot_host(params,
                                                     log=(_no_log if quiet else _host_log)))
        except HostError as e:
            _fail(str(e))
        client = ControlClient(host.control_path, timeout=None)
        stream = client.stream("console", hypervisor=True)
        printer = threading.Thread(target=_print_console, args=(stream, quiet), daemon=True)
        printer.start()
        try:
            created = client.call("create", config_path=config, overrides=list(overrides))
        except ControlError as e:
            stream.close()
            _fail(str(e))
        try:
            ended = client.call("wait", name=name, timeout=timeout)
        except ControlError:
            domid = _current_domid(client, name)
            if domid is not None:
                client.call("destroy", domid=domid)
            _drain(printer)
            click.echo(f"pyxen: domain {name} did not finish within {timeout:g} s; destroyed",
                       err=True) if timeout is not None else None
            return EXIT_TIMEOUT
        _drain(printer)
        stream.close()
        reason = ended["reason"]
        if ended["action"] == "preserve":
            click.echo(f"pyxen: domain {name} ({created['domid']}) preserved; the one-shot "
                       "host exits now", err=True)
        return EXIT_STATUS.get(reason, EXIT_UNKNOWN_REASON) if reason is not None else 0


def _no_log(_message: str, _level: int = 0) -> None:
    pass


def _host_log(message: str, level: int = 1) -> None:
    from .domains import NOTICE
    if level >= NOTICE:      # what happened to the guest, not the host's bookkeeping
        click.echo(f"pyxen: {message}", err=True)


def _current_domid(client, name: str):
    for d in client.call("list"):
        if d["name"] == name:
            return d["domid"]
    return None


def _print_console(stream, quiet: bool) -> None:
    """Hypervisor console lines: the guest's `(dN) text` to stdout, the rest to stderr."""
    buf = b""
    try:
        while True:
            data = stream.recv(65536)
            if not data:
                break
            buf += data
            *lines, buf = buf.split(b"\n")
            for raw in lines:
                line = raw.decode("utf-8", "replace")
                if line.startswith("(d") and ") " in line and line[2:line.index(")")].isdigit():
                    print(line.partition(") ")[2], flush=True)
                elif not quiet:
                    print(line, file=sys.stderr, flush=True)
    except OSError:
        pass


def _drain(printer) -> None:
    printer.join(0.3)       # let the last console lines through


def guarded(command, prog: str) -> None:
    """Run a click command with the guarantee that no traceback reaches the user."""
    try:
        command(standalone_mode=True)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        click.echo(f"{prog}: interrupted", err=True)
        sys.exit(130)
    except Exception as e:  # noqa: BLE001 - a bug in pyxen: one line, details on request
        if os.environ.get("PYXEN_DEBUG"):
            traceback.print_exc()
        click.echo(f"{prog}: internal error: {type(e).__name__}: {e} "
                   "(set PYXEN_DEBUG=1 for details)", err=True)
        sys.exit(EXIT_INTERNAL)


def run() -> None:
    """Entry point of `pyxen`."""
    guarded(main, "pyxen")
