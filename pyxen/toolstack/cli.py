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

    KEY=VALUE arguments override settings of the file, as with `xl create`.
    """
    from ..hypervisor.hypervisor import Hypervisor
    from .privcmd import Privcmd
    from .runner import DomainRunner, RunError, config_dir_of, validate_for_boot
    from .xlcfg import XlConfigError, build_domain_config, load_config

    try:
        cfg = load_config(config, overrides)
        dc = build_domain_config(cfg)
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
    hv = Hypervisor(params.strip())
    runner = DomainRunner(Privcmd(hv), dc, config_dir=config_dir_of(config), quiet=quiet)
    try:
        outcome = runner.run(timeout)
    except RunError as e:
        _fail(str(e))
    finally:
        runner.close()
        hv.shutdown_host()
    sys.exit(outcome.status)


def run() -> None:
    """Entry point with the guarantee that no traceback reaches the user."""
    try:
        main(standalone_mode=True)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        click.echo("pyxen: interrupted", err=True)
        sys.exit(130)
    except Exception as e:  # noqa: BLE001 - a bug in pyxen: one line, details on request
        if os.environ.get("PYXEN_DEBUG"):
            traceback.print_exc()
        click.echo(f"pyxen: internal error: {type(e).__name__}: {e} "
                   "(set PYXEN_DEBUG=1 for details)", err=True)
        sys.exit(EXIT_INTERNAL)
