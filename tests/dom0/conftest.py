"""Fixtures for the xenstored tests: a daemon on a Unix socket in a private directory."""

from __future__ import annotations

import pytest
from xsd_daemon import Daemon

from pyxen.dom0.xenstored import XsClient


@pytest.fixture
def daemon():
    d = Daemon()
    try:
        yield d
    finally:
        d.close()


@pytest.fixture
def make_daemon():
    made: list[Daemon] = []

    def make(**kw) -> Daemon:
        d = Daemon(**kw)
        made.append(d)
        return d
    try:
        yield make
    finally:
        for d in made:
            d.close()


@pytest.fixture(params=["socket", "local"])
def xs(request, daemon) -> XsClient:
    """A Dom0 client, over the socket and in-process: both must behave the same."""
    return daemon.client() if request.param == "socket" else daemon.local()
