"""What every pyxl command shares: the global options, the daemon client, domain lookup."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any

import click

from .client import DaemonError, XlClient, XlExit

# xl's statuses: EXIT_FAILURE for most failures; getopt and argument-count errors exit 2;
# `xl create` returns -rc of the libxl call that failed (ERROR_FAIL is -3).
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_CREATE_FAILED = 3
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130


@dataclass
class Env:
    control: str | None
    verbose: int

    def client(self, timeout: float | None = 60.0) -> XlClient:
        return XlClient(self.control, timeout=timeout, verbose=self.verbose)

    def log(self, text: str) -> None:
        if self.verbose:
            eprint(f"pyxl: {text}")


pass_env = click.make_pass_decorator(Env)


def eprint(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def out(text: str) -> None:
    """Write exactly `text` to stdout."""
    sys.stdout.write(text)
    sys.stdout.flush()


def print_json(value: Any) -> None:
    # libxl's JSON generator indents by four blanks (yajl "beautify").
    out(json.dumps(value, indent=4) + "\n")


def resolve(client: XlClient, dom: str) -> int:
    """A domain name or id → domid, or xl's error for an unknown domain (find_domain)."""
    try:
        return int(client.call("resolve", dom=dom))
    except DaemonError as e:
        client._trace(f"resolve {dom!r}: {e}")
        # libxl_domain_qualifier_to_domid fails with ERROR_INVAL (-6) for an unknown name.
        raise XlExit(f"{dom} is an invalid domain identifier (rc=-6)") from None


def domain_list(client: XlClient) -> list[dict]:
    domains = client.call("list")
    if not isinstance(domains, list):
        raise XlExit("the pyxen host sent a malformed domain list")
    return domains


def config_and_overrides(command: str, config_opt: str | None,
                         args: tuple[str, ...]) -> tuple[str | None, list[str]]:
    """xl's argument convention for create-like commands: KEY=VALUE words override
    settings, the one other word (unless -f gave it) is the config file."""
    path = config_opt
    overrides: list[str] = []
    for arg in args:
        if "=" in arg:
            overrides.append(arg)
        elif path is None:
            path = arg
        else:
            raise XlExit(f"pyxl {command}: more than one config file given ({path!r} and"
                         f" {arg!r})", EXIT_USAGE)
    return path, overrides
