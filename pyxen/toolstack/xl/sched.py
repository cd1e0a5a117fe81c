"""Scheduling commands: sched-credit, sched-credit2, vcpu-pin, and the cpupool-* commands
(cpupool-list, -create, -destroy, -rename, -cpu-add, -cpu-remove, -migrate).

Options, messages and output are xl's (tools/xl/xl_sched.c, xl_vcpu.c, xl_cpupool.c); the
work is the host daemon's (pyxen/toolstack/cpupools.py)."""

from __future__ import annotations

import os

import click

from ..xlcfg import XlConfigError, load_config, parse_config
from . import formats
from .client import DaemonError, XlClient, XlExit
from .common import (
    Env,
    config_and_overrides,
    eprint,
    out,
    pass_env,
    print_json,
    resolve,
)
from .domains import _strtol_prefix

CTX = {"help_option_names": ["-h", "--help"]}


def _call(client: XlClient, op: str, **args):
    """A request whose refusal is the command's error, as the daemon words it."""
    try:
        return client.call(op, **args)
    except DaemonError as e:
        raise XlExit(str(e)) from None


# --- sched-credit, sched-credit2 ------------------------------------------------------------------

def _sched_command(env: Env, sched: str, dom: str | None, weight: int | None,
                   cap: int | None, pool: str | None, schedparam: bool,
                   tslice: int | None, ratelimit: int | None) -> int:
    if (pool is not None or schedparam) and (dom is not None or weight is not None
                                             or cap is not None):
        raise XlExit("Specifying a cpupool or schedparam is not allowed with domain options.")
    if dom is None and (weight is not None or cap is not None):
        raise XlExit("Must specify a domain.")
    if not schedparam and (tslice is not None or ratelimit is not None):
        raise XlExit("Must specify schedparam to set schedule parameter values.")
    client = env.client()
    if schedparam:
        params = _call(client, "sched_params", sched=sched, pool=pool, tslice_ms=tslice,
                       ratelimit_us=ratelimit)
        if tslice is None and ratelimit is None:
            out(formats.sched_pool_line(sched, params["pool"], params) + "\n")
        return 0
    if dom is None:
        out(formats.format_sched_list(sched, _call(client, "sched_list", sched=sched,
                                                   pool=pool) or []))
        return 0
    domid = resolve(client, dom)
    row = _call(client, "sched_domain", domid=domid, sched=sched, weight=weight, cap=cap)
    if weight is None and cap is None:
        out(formats.SCHED_HEADER + "\n" + formats.sched_domain_row(row) + "\n")
    return 0


@click.command("sched-credit", context_settings=CTX)
@click.option("-d", "--domain", "dom", metavar="DOMAIN", help="Domain to show or modify.")
@click.option("-w", "--weight", type=int, metavar="WEIGHT",
              help="Weight (1..65535; a domain with weight 512 gets twice the CPU of 256).")
@click.option("-c", "--cap", type=int, metavar="CAP",
              help="Cap: the most CPU the domain may use, in percent of one pCPU (0: none).")
@click.option("-p", "--cpupool", "pool", metavar="CPUPOOL",
              help="Restrict the listing (or -s) to this cpupool.")
@click.option("-s", "--schedparam", is_flag=True,
              help="Show or set the pool-wide parameters (time slice, rate limit).")
@click.option("-t", "--tslice_ms", "tslice", type=int, metavar="TSLICE",
              help="With -s: the time slice, in ms.")
@click.option("-r", "--ratelimit_us", "ratelimit", type=int, metavar="RLIMIT",
              help="With -s: the rate limit, in µs (0 turns it off).")
@pass_env
def sched_credit(env: Env, dom: str | None, weight: int | None, cap: int | None,
                 pool: str | None, schedparam: bool, tslice: int | None,
                 ratelimit: int | None) -> int:
    """Get or set the credit scheduler's parameters: of every domain (no -d), of one
    domain (-d, changed with -w / -c), or of a pool (-s, changed with -t / -r)."""
    return _sched_command(env, "credit", dom, weight, cap, pool, schedparam, tslice,
                          ratelimit)


@click.command("sched-credit2", context_settings=CTX)
@click.option("-d", "--domain", "dom", metavar="DOMAIN", help="Domain to show or modify.")
@click.option("-w", "--weight", type=int, metavar="WEIGHT",
              help="Weight (1..65535; a domain with weight 512 gets twice the CPU of 256).")
@click.option("-c", "--cap", type=int, metavar="CAP",
              help="Cap: the most CPU the domain may use, in percent of one pCPU (0: none).")
@click.option("-p", "--cpupool", "pool", metavar="CPUPOOL",
              help="Restrict the listing (or -s) to this cpupool.")
@click.option("-s", "--schedparam", is_flag=True,
              help="Show or set the pool-wide parameters (rate limit).")
@click.option("-r", "--ratelimit_us", "ratelimit", type=int, metavar="RLIMIT",
              help="With -s: the rate limit, in µs (0 turns it off).")
@pass_env
def sched_credit2(env: Env, dom: str | None, weight: int | None, cap: int | None,
                  pool: str | None, schedparam: bool, ratelimit: int | None) -> int:
    """Get or set the credit2 scheduler's parameters: of every domain (no -d), of one
    domain (-d, changed with -w / -c), or of a pool (-s, changed with -r)."""
    return _sched_command(env, "credit2", dom, weight, cap, pool, schedparam, None,
                          ratelimit)


# --- vcpu-pin -------------------------------------------------------------------------------------

@click.command("vcpu-pin", context_settings=CTX)
@click.option("-f", "--force", is_flag=True,
              help="Accepted for xl compatibility (not with 'all' as VCPU).")
@click.argument("dom")
@click.argument("vcpu", metavar="VCPU|all")
@click.argument("hard", metavar="HARD")
@click.argument("soft", metavar="[SOFT]", required=False)
@pass_env
def vcpu_pin(env: Env, force: bool, dom: str, vcpu: str, hard: str, soft: str | None) -> int:
    """Set the hard (and optionally soft) pCPU affinity of one vCPU, or of all of them.

    HARD and SOFT are cpu lists: "all", "0-3,5,^1", "node:0" / "nodes:0-1"; "-" leaves
    that affinity as it is (`vcpu-pin DOM 0 - 2-3` sets only the soft one).
    """
    client = env.client()
    domid = resolve(client, dom)
    number = _strtol_prefix(vcpu)
    vcpuid: int | None
    if number is None or number < 0:
        if vcpu != "all":
            raise XlExit(f"Error: Invalid argument {vcpu} as VCPU.")
        if force:
            raise XlExit("Error: --force and 'all' as VCPU not allowed.")
        vcpuid = None
    else:
        vcpuid = number
    reply = _call(client, "vcpu_pin", domid=domid, vcpu=vcpuid, hard=hard, soft=soft)
    for warning in (reply or {}).get("warnings", []):
        eprint(f"Warning: {warning}")
    return 0


# --- cpupools -------------------------------------------------------------------------------------

@click.command("cpupool-list", context_settings=CTX)
@click.option("-c", "--cpus", "show_cpus", is_flag=True, help="List each pool's pCPUs.")
@click.option("-j", "--json", "as_json", is_flag=True,
              help="As JSON (a pyxl addition).")
@click.argument("pool", required=False, metavar="[CPU_POOL]")
@pass_env
def cpupool_list(env: Env, show_cpus: bool, as_json: bool, pool: str | None) -> int:
    """List cpupools: name, pCPUs, scheduler and domain count (-c: the pCPUs)."""
    pools = _call(env.client(), "cpupool_list") or []
    if pool is not None:
        pools = [p for p in pools if p["name"] == pool]
        if not pools:
            raise XlExit(f"Pool '{pool}' does not exist")
    if as_json:
        print_json(pools)
    else:
        out(formats.format_cpupool_list(pools, cpus=show_cpus))
    return 0


def _pool_config(path: str | None, overrides: list[str]):
    try:
        if path is not None:
            return load_config(path, overrides)
        return parse_config("", "command line", overrides)
    except XlConfigError as e:
        if path is not None and e.line is None and "Failed to read" in e.message:
            raise XlExit(f"Failed to read config file: {path}:"
                         f" {e.message.split(': ', 1)[-1]}") from None
        raise XlExit(str(e)) from None


@click.command("cpupool-create", context_settings=CTX)
@click.option("-f", "--defconfig", "config_opt", metavar="FILE",
              help="Use FILE as the pool's config file.")
@click.option("-n", "--dryrun", "dry_run", is_flag=True,
              help="Check the config and show the pool; create nothing.")
@click.argument("args", nargs=-1, metavar="[CONFIG] [KEY=VALUE ...]")
@pass_env
def cpupool_create(env: Env, config_opt: str | None, dry_run: bool,
                   args: tuple[str, ...]) -> int:
    """Create a cpupool from CONFIG and/or KEY=VALUE settings.

    Keys: name (default: the config file's name), sched ("credit", "credit2", "null";
    default: the host's scheduler), cpus (a list of free pCPUs, or a cpu list such as
    "2-3"), or nodes (NUMA nodes whose free pCPUs to take).
    """
    path, overrides = config_and_overrides("cpupool-create", config_opt, args)
    cfg = _pool_config(path, overrides)
    try:
        name = cfg.get_string("name")
        sched = cfg.get_string("sched")
    except XlConfigError as e:
        raise XlExit(str(e)) from None
    if name is None:
        if path is None:
            raise XlExit("Missing cpupool name!")
        name = os.path.basename(path)
    setting = {key: cfg.setting(key) for key in ("cpus", "nodes")}
    request = {"name": name, "sched": sched,
               "cpus": None if setting["cpus"] is None else setting["cpus"].value,
               "nodes": None if setting["nodes"] is None else setting["nodes"].value}
    client = env.client()
    plan = _call(client, "cpupool_create", dry_run=True, **request)
    out(f"Using config file \"{path or 'command line'}\"\n"
        f"cpupool name:   {plan['name']}\n"
        f"scheduler:      {plan['sched']}\n"
        f"number of cpus: {len(plan['cpus'])}\n")
    if not dry_run:
        _call(client, "cpupool_create", dry_run=False, **request)
    return 0


def _pool_command(name: str, op: str, doc: str, extra: tuple[str, str] | None = None):
    """A command taking a pool (and `extra`: one more argument, its name and metavar)
    that makes one request."""
    @pass_env
    def run(env: Env, pool: str, **kw: str) -> int:
        _call(env.client(), op, pool=pool, **kw)
        return 0
    if extra is not None:
        run = click.argument(extra[0], metavar=extra[1])(run)
    run = click.argument("pool", metavar="CPU_POOL")(run)
    return click.command(name, context_settings=CTX, help=doc)(run)


cpupool_destroy = _pool_command("cpupool-destroy", "cpupool_destroy",
                                "Destroy an empty cpupool; its pCPUs become free.")
cpupool_rename = _pool_command("cpupool-rename", "cpupool_rename", "Rename a cpupool.",
                               ("name", "NEWNAME"))
cpupool_cpu_add = _pool_command(
    "cpupool-cpu-add", "cpupool_cpu_add",
    "Give free pCPUs to a cpupool: a cpu list such as 2, 2-3 or node:0.",
    ("cpus", "CPUS|node:NODES"))
cpupool_cpu_remove = _pool_command(
    "cpupool-cpu-remove", "cpupool_cpu_remove",
    "Take pCPUs out of a cpupool (they become free): a cpu list such as 2, 2-3 or node:0.",
    ("cpus", "CPUS|node:NODES"))


@click.command("cpupool-migrate", context_settings=CTX)
@click.argument("dom")
@click.argument("pool", metavar="CPU_POOL")
@pass_env
def cpupool_migrate(env: Env, dom: str, pool: str) -> int:
    """Move a domain (running or not) to another cpupool."""
    client = env.client()
    try:
        domid = int(client.call("resolve", dom=dom))
    except DaemonError:
        raise XlExit(f"unknown domain '{dom}'") from None
    _call(client, "cpupool_migrate", domid=domid, pool=pool)
    return 0
