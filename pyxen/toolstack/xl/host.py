"""Host commands: info, dmesg, set-parameters."""

from __future__ import annotations

import click

from . import formats
from .client import DaemonError, XlExit
from .common import Env, out, pass_env, print_json

CTX = {"help_option_names": ["-h", "--help"]}


@click.command("info", context_settings=CTX)
@click.argument("name", required=False)
@click.option("-n", "--numa", is_flag=True, help="Add the CPU topology and NUMA information.")
@click.option("-j", "--json", "as_json", is_flag=True,
              help="As JSON (a pyxl addition; xl info has no JSON).")
@pass_env
def info(env: Env, name: str | None, numa: bool, as_json: bool) -> int:
    """Print information about the host and the hypervisor.

    With NAME, print only the values of the keys that start with NAME (`pyxl info
    free_memory`).
    """
    data = env.client().call("info")
    if not isinstance(data, dict):
        raise XlExit("the pyxen host sent malformed host information")
    if numa and "cpu_topology" not in data:
        data = {**data, **formats.default_topology(data)}
    if as_json:
        if not numa:
            data = {k: v for k, v in data.items()
                    if k not in ("cpu_topology", "numa_info", "device_topology")}
        if name is not None:
            data = {k: v for k, v in data.items() if k.startswith(name)}
        print_json(data)
        return 0
    text = formats.format_info(data, numa=numa)
    if name is not None and not numa:  # xl ignores NAME with -n
        text = formats.filter_info(text, name)
    out(text)
    return 0


@click.command("dmesg", context_settings=CTX)
@click.option("-c", "--clear", is_flag=True, help="Clear the ring after reading it.")
@pass_env
def dmesg(env: Env, clear: bool) -> int:
    """Print the hypervisor's console ring."""
    text = env.client().call("dmesg", clear=clear)
    out(text if isinstance(text, str) else "")
    return 0


@click.command("set-parameters", context_settings=CTX)
@click.argument("params", metavar='"KEY=VALUE [KEY=VALUE ...]"')
@pass_env
def set_parameters(env: Env, params: str) -> int:
    """Change hypervisor parameters at run time (those Xen 4.10 declares runtime: loglvl,
    guest_loglvl, console_timestamps, conswitch, gnttab_max_frames,
    gnttab_max_maptrack_frames)."""
    try:
        env.client().call("set_parameters", params=params)
    except DaemonError as e:
        reason = str(e)
        if reason.startswith("cannot set parameters"):
            raise XlExit(reason) from None
        raise XlExit(f"cannot set parameters: {params} ({reason})") from None
    return 0
