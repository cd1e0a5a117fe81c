"""`pyxl`: Xen 4.10's xl for a pyxen host.

The commands, their options, their output and their exit statuses are xl's (and xentop's for
`top`); each talks to the pyxen host daemon over its control socket.  Any failure ends with
one line on stderr and a non-zero status, never a traceback: 1 for most failures (unknown
domain, no daemon, a refused request, a bad config), 2 for bad options or arguments, and for
`create` xl's -rc (3 when the host fails to build the domain).
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback

import click

from ..control import ENV_SOCKET, ControlError
from . import console as console_mod
from . import domains, host, sched
from . import top as top_mod
from .client import XlExit
from .common import EXIT_FAILURE, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_USAGE, Env, eprint

PROG = "pyxl"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True,
              help="Say more: each request sent to the host (twice: and its reply).")
@click.option("--control", metavar="PATH", envvar=ENV_SOCKET, default=None,
              help=f"The host daemon's control socket (default: ${ENV_SOCKET}, else"
                   " /run/pyxen/control.sock for root, else"
                   " $XDG_RUNTIME_DIR/pyxen/control.sock).")
@click.pass_context
def main(ctx: click.Context, verbose: int, control: str | None) -> None:
    """xl for pyxen: manage the domains of a pyxen host (Xen 4.10's xl commands, options and
    output formats)."""
    ctx.obj = Env(control=control, verbose=verbose)


for command in (domains.create, domains.list_cmd, domains.destroy, domains.shutdown,
                domains.reboot, domains.pause, domains.unpause, domains.rename,
                domains.domid_cmd, domains.domname_cmd, domains.uptime, domains.vcpu_list,
                host.info, host.dmesg, host.set_parameters, console_mod.console, top_mod.top,
                sched.sched_credit, sched.sched_credit2, sched.vcpu_pin, sched.cpupool_list,
                sched.cpupool_create, sched.cpupool_destroy, sched.cpupool_rename,
                sched.cpupool_cpu_add, sched.cpupool_cpu_remove, sched.cpupool_migrate):
    main.add_command(command)


@main.command("help", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("command_name", required=False, metavar="[COMMAND]")
@click.pass_context
def help_cmd(ctx: click.Context, command_name: str | None) -> int:
    """Show the help of pyxl or of one COMMAND."""
    parent = ctx.parent
    assert parent is not None
    if command_name is None:
        click.echo(main.get_help(parent))
        return 0
    command = main.get_command(ctx, command_name)
    if command is None:
        raise XlExit(f"{PROG}: command not implemented: {command_name}", EXIT_FAILURE)
    with click.Context(command, info_name=command_name, parent=parent) as sub:
        click.echo(command.get_help(sub))
    return 0


def _usage_line(e: click.UsageError) -> str:
    where = e.ctx.command_path if e.ctx is not None else PROG
    message = " ".join(e.format_message().split())
    return f"{where}: {message} (see `{where} --help`)"


def execute(argv: list[str] | None = None) -> int:
    """Run pyxl with `argv` (default: sys.argv[1:]) and return its exit status."""
    if argv is None:
        argv = sys.argv[1:]
    try:
        result = main.main(args=list(argv), prog_name=PROG, standalone_mode=False)
    except XlExit as e:
        if e.message:
            eprint(e.message)
        return e.status
    except click.UsageError as e:
        if not argv or "Missing command" in e.format_message():
            # xl: no command → the help, and EXIT_FAILURE
            with click.Context(main, info_name=PROG) as ctx:
                click.echo(main.get_help(ctx))
            return EXIT_FAILURE
        eprint(_usage_line(e))
        # xl: an unknown command is EXIT_FAILURE; bad options and arguments exit 2.
        return EXIT_FAILURE if "No such command" in e.format_message() else EXIT_USAGE
    except click.ClickException as e:
        eprint(f"{PROG}: {' '.join(e.format_message().split())}")
        return e.exit_code
    except ControlError as e:
        eprint(" ".join(str(e).split()))
        return EXIT_FAILURE
    except (click.Abort, KeyboardInterrupt):
        eprint(f"{PROG}: interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`pyxl list | head -1`): stop quietly.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILURE
    except Exception as e:  # noqa: BLE001 - a bug in pyxl: one line, details on request
        if os.environ.get("PYXEN_DEBUG"):
            traceback.print_exc()
        eprint(f"{PROG}: internal error: {type(e).__name__}: {e} (set PYXEN_DEBUG=1 for"
               " details)")
        return EXIT_INTERNAL
    return result if isinstance(result, int) else 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(execute())
