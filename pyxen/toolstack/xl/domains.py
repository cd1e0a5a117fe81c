"""Domain commands: create, list, destroy, shutdown, reboot, pause, unpause, rename, domid,
domname, uptime, vcpu-list."""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor

import click

from ..control import ControlError
from ..xlcfg import XlConfigError, build_domain_config, load_config
from . import formats
from .client import DaemonError, XlExit
from .common import (
    EXIT_CREATE_FAILED,
    EXIT_FAILURE,
    Env,
    config_and_overrides,
    domain_list,
    eprint,
    out,
    pass_env,
    print_json,
    resolve,
)

CTX = {"help_option_names": ["-h", "--help"]}


# --- create -------------------------------------------------------------------------------------

@click.command("create", context_settings=CTX)
@click.argument("args", nargs=-1, metavar="[CONFIG] [KEY=VALUE ...]")
@click.option("-f", "--defconfig", "config_opt", metavar="FILE",
              help="Use FILE as the config file.")
@click.option("-p", "paused", is_flag=True, help="Leave the domain paused after creating it.")
@click.option("-c", "console", is_flag=True, help="Attach to the console after creating it.")
@click.option("-n", "--dryrun", "dry_run", is_flag=True,
              help="Parse the config and print it as JSON (libxl's domain config); "
                   "create nothing.")
@click.option("-q", "--quiet", is_flag=True, help='Do not print "Parsing config from".')
@click.option("-d", "debug", is_flag=True, help="Also print the parsed config (to stderr).")
@click.option("-F", "-e", "foreground", is_flag=True, hidden=True,
              help="Accepted for xl compatibility: the pyxen host monitors its domains.")
@pass_env
def create(env: Env, args: tuple[str, ...], config_opt: str | None, paused: bool,
           console: bool, dry_run: bool, quiet: bool, debug: bool, foreground: bool) -> int:
    """Create a domain from the xl.cfg file CONFIG.

    KEY=VALUE arguments are appended to the config as extra lines (so they override it), as
    with `xl create`. The config is checked here, then sent to the pyxen host, which builds
    the domain.
    """
    del foreground
    path, overrides = config_and_overrides("create", config_opt, args)
    if path is None:
        # xl: ERROR_INVAL, returned as the exit status
        raise XlExit("Config file not specified", 6)
    try:
        cfg = load_config(path, overrides)
        dc = build_domain_config(cfg)
    except XlConfigError as e:
        if e.filename is not None and e.line is None and "Failed to read" in e.message:
            # xl: "Failed to read config file: PATH: REASON", ERROR_FAIL
            raise XlExit(f"Failed to read config file: {path}: {e.message.split(': ', 1)[-1]}",
                         EXIT_CREATE_FAILED) from None
        message = str(e)
        if e.likely_python:
            message += " (the file looks like Python, which xl.cfg no longer supports)"
        raise XlExit(message, EXIT_FAILURE) from None
    if not quiet:
        eprint(f"Parsing config from {path}")
    for warning in dc.warnings:
        eprint(warning)
    for key in dc.unknown_keys():
        env.log(f"{path}: ignoring unknown key {key!r}")

    if dc.pool is not None and not dry_run:
        pools = env.client().call("cpupool_list") or []
        if not any(dc.pool in (p["name"], str(p["poolid"])) for p in pools):
            # xl checks the pool while it parses the config, and exits 1.
            raise XlExit(f"Illegal pool specified: {dc.pool}", EXIT_FAILURE)
    request = {"config_path": os.path.abspath(path), "config_text": cfg.text,
               "overrides": overrides, "paused": paused, "dry_run": dry_run}
    if dry_run or debug:
        config = dc.libxl_json()
        if dry_run:
            try:
                reply = env.client().call("create", **request)
                if isinstance(reply, dict) and isinstance(reply.get("config"), dict):
                    config = reply["config"]
            except DaemonError as e:
                raise XlExit(str(e), EXIT_FAILURE) from None
            except ControlError as e:
                # No host to ask: what this config says is all there is to show.
                env.log(f"{e}; showing the config as parsed here")
            print_json(config)
            return 0
        eprint(json.dumps(config, indent=4))

    client = env.client(timeout=None)
    try:
        reply = client.call("create", **request)
    except DaemonError as e:
        raise XlExit(str(e), EXIT_CREATE_FAILED) from None
    domid = int(reply["domid"]) if isinstance(reply, dict) and "domid" in reply else None
    if domid is None:
        raise XlExit("the pyxen host did not say which domain it created", EXIT_CREATE_FAILED)
    env.log(f"created domain {reply.get('name', dc.name)} (id {domid})")
    if console:
        from .console import attach
        return attach(env, domid)
    return 0


# --- list ---------------------------------------------------------------------------------------

@click.command("list", context_settings=CTX)
@click.argument("doms", nargs=-1, metavar="[DOM...]")
@click.option("-l", "--long", "details", is_flag=True,
              help="Each domain's configuration, as JSON (xl's format).")
@click.option("-v", "--verbose", is_flag=True, help="Add UUID, reason code and security label.")
@click.option("-Z", "--context", is_flag=True, help="Add the security label.")
@click.option("-c", "--cpupool", is_flag=True, help="Add the CPU pool.")
@click.option("-j", "--json", "as_json", is_flag=True,
              help="The table's data as JSON (a pyxl addition; xl has only -l).")
@pass_env
def list_cmd(env: Env, doms: tuple[str, ...], details: bool, verbose: bool, context: bool,
             cpupool: bool, as_json: bool) -> int:
    """List domains: all of them, or the DOMs named (by name or id)."""
    client = env.client()
    domains = domain_list(client)
    if doms:
        selected = []
        for dom in doms:
            domid = resolve(client, dom)
            found = [d for d in domains if int(d["domid"]) == domid]
            if not found:
                raise XlExit(f"Error: Domain '{dom}' does not exist.")
            selected += found
        domains = selected
    if details:
        # xl skips a domain whose configuration it cannot retrieve (Domain-0, usually).
        print_json([{"domid": int(d["domid"]), "config": d["config"]}
                    for d in domains if isinstance(d.get("config"), dict)])
    elif as_json:
        print_json(formats.list_json_rows(domains))
    else:
        out(formats.format_list(domains, verbose=verbose, context=context, cpupool=cpupool))
    return 0


# --- destroy, pause, unpause, rename --------------------------------------------------------------

@click.command("destroy", context_settings=CTX)
@click.argument("dom")
@click.option("-f", "force", is_flag=True, help="Allow destroying domain 0.")
@pass_env
def destroy(env: Env, dom: str, force: bool) -> int:
    """Terminate a domain immediately."""
    client = env.client()
    domid = resolve(client, dom)
    if domid == 0 and not force:
        raise XlExit("Not destroying domain 0; use -f to force.")
    try:
        client.call("destroy", domid=domid)
    except DaemonError as e:
        raise XlExit(f"destroy failed: {e}") from None
    return 0


def _simple(op: str, what: str):
    @pass_env
    def command(env: Env, dom: str) -> int:
        client = env.client()
        domid = resolve(client, dom)
        try:
            client.call(op, domid=domid)
        except DaemonError as e:
            # xl ignores a failure here and exits 0; pyxl says so and fails.
            raise XlExit(f"{what} failed: {e}") from None
        return 0
    return command


pause = click.command("pause", context_settings=CTX,
                      help="Pause a domain: none of its vCPUs runs.")(
    click.argument("dom")(_simple("pause", "pause")))
unpause = click.command("unpause", context_settings=CTX, help="Unpause a paused domain.")(
    click.argument("dom")(_simple("unpause", "unpause")))


@click.command("rename", context_settings=CTX)
@click.argument("dom")
@click.argument("new_name", metavar="NEWNAME")
@pass_env
def rename(env: Env, dom: str, new_name: str) -> int:
    """Give a domain a new name."""
    client = env.client()
    domid = resolve(client, dom)
    try:
        client.call("rename", domid=domid, name=new_name)
    except DaemonError as e:
        raise XlExit(f"Can't rename domain '{dom}': {e}") from None
    return 0


# --- shutdown, reboot ---------------------------------------------------------------------------

def _shutdown_or_reboot(env: Env, reboot: bool, dom: str | None, all_domains: bool,
                        wait: bool) -> int:
    what = "reboot" if reboot else "shutdown"
    verb = "Rebooting" if reboot else "Shutting down"
    if dom is None and not all_domains:
        raise XlExit("You must specify -a or a domain id.")
    client = env.client()
    if all_domains:
        targets = [int(d["domid"]) for d in domain_list(client) if int(d["domid"]) != 0]
    else:
        assert dom is not None
        targets = [resolve(client, dom)]

    def send(domid: int, wait_for_it: bool) -> None:
        try:
            env.client(timeout=None if wait_for_it else 60.0).call(
                "shutdown", domid=domid, reboot=reboot, wait=wait_for_it)
        except DaemonError as e:
            raise XlExit(f"{what} failed: {e}") from None

    if not wait:
        for domid in targets:
            eprint(f"{verb} domain {domid}")
            send(domid, False)
        return 0
    for domid in targets:
        eprint(f"{verb} domain {domid}")
    eprint(f"Waiting for {len(targets)} domains")
    if not targets:
        return 0
    # The host waits for each domain on its own connection; wait for them all at once.
    with ThreadPoolExecutor(max_workers=min(len(targets), 32)) as pool:
        futures = [(domid, pool.submit(send, domid, True)) for domid in targets]
        for domid, future in futures:
            future.result()
            eprint(f"Domain {domid} has been destroyed")
    return 0


def _shutdown_command(name: str, reboot: bool, doc: str):
    @click.command(name, context_settings=CTX, help=doc)
    @click.argument("dom", required=False)
    @click.option("-a", "--all", "all_domains", is_flag=True, help="Every guest domain.")
    @click.option("-w", "--wait", is_flag=True, help="Wait until the domains are gone.")
    @click.option("-F", "fallback", is_flag=True,
                  help="Accepted for xl compatibility (ACPI fallback; pyxen guests always"
                       " have the PV control interface).")
    @pass_env
    def command(env: Env, dom: str | None, all_domains: bool, wait: bool,
                fallback: bool) -> int:
        del fallback
        return _shutdown_or_reboot(env, reboot, dom, all_domains, wait)
    return command


shutdown = _shutdown_command(
    "shutdown", False, "Ask a domain (or with -a every guest) to shut down, through xenstore"
    " control/shutdown.")
reboot = _shutdown_command(
    "reboot", True, "Ask a domain (or with -a every guest) to reboot, through xenstore"
    " control/shutdown.")


# --- domid, domname -----------------------------------------------------------------------------

@click.command("domid", context_settings=CTX)
@click.argument("name")
@pass_env
def domid_cmd(env: Env, name: str) -> int:
    """Print the id of the domain called NAME."""
    for dom in domain_list(env.client()):
        if dom.get("name") == name:
            out(f"{int(dom['domid'])}\n")
            return 0
    raise XlExit(f"Can't get domid of domain name '{name}', maybe this domain does not exist.")


def _strtol_prefix(text: str) -> int | None:
    """strtol(text, &end, 10), or None when no digit converts."""
    i, n = 0, len(text)
    while i < n and text[i] in " \t\n\v\f\r":
        i += 1
    sign = 1
    if i < n and text[i] in "+-":
        sign = -1 if text[i] == "-" else 1
        i += 1
    start = i
    while i < n and text[i].isascii() and text[i].isdigit():
        i += 1
    if i == start:
        return None
    return sign * int(text[start:i])


@click.command("domname", context_settings=CTX)
@click.argument("domid", metavar="ID")
@pass_env
def domname_cmd(env: Env, domid: str) -> int:
    """Print the name of the domain with id ID."""
    value = _strtol_prefix(domid)
    if value is None:
        raise XlExit("Invalid domain id.")
    value &= 0xFFFFFFFF  # xl keeps it in a uint32_t
    for dom in domain_list(env.client()):
        if int(dom["domid"]) == value:
            out(f"{dom.get('name', '')}\n")
            return 0
    raise XlExit(f"Can't get domain name of domain id '{value}', maybe this domain does"
                 " not exist.")


# --- uptime -------------------------------------------------------------------------------------

@click.command("uptime", context_settings=CTX)
@click.argument("doms", nargs=-1, metavar="[DOM...]")
@click.option("-s", "short", is_flag=True, help="Short format, like uptime(1).")
@pass_env
def uptime(env: Env, doms: tuple[str, ...], short: bool) -> int:
    """Print how long domains have been up."""
    client = env.client()
    wanted = [resolve(client, dom) for dom in doms]
    domains = {int(d["domid"]): d for d in domain_list(client)}
    now = time.time()
    lines = [] if short else [formats.UPTIME_HEADER]
    # Domain-0 first, then the others in id order (xl's order), or the order asked.
    order = wanted or sorted(domains, key=lambda d: (d != 0, d))
    for domid in order:
        if domid in domains:  # xl skips a domain whose start time it cannot read
            lines.append(formats.format_uptime_row(domains[domid], short, now))
    out("".join(line + "\n" for line in lines))
    return 0


# --- vcpu-list ----------------------------------------------------------------------------------

@click.command("vcpu-list", context_settings=CTX)
@click.argument("doms", nargs=-1, metavar="[DOM...]")
@click.option("-j", "--json", "as_json", is_flag=True,
              help="As JSON (a pyxl addition; xl has no JSON for vcpu-list).")
@pass_env
def vcpu_list(env: Env, doms: tuple[str, ...], as_json: bool) -> int:
    """List the vCPUs of every domain, or of the DOMs named."""
    client = env.client()
    vcpus: list[dict] = []
    if doms:
        for dom in doms:
            vcpus += client.call("vcpu_list", domid=resolve(client, dom)) or []
    else:
        vcpus = client.call("vcpu_list", domid=None) or []
    if as_json:
        print_json(vcpus)
    else:
        out(formats.format_vcpu_list(vcpus))
    return 0
