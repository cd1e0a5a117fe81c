"""A xenstored daemon for tests: a running XenstoreService on a Unix socket in a
private directory, plus the log lines it wrote."""

from __future__ import annotations

import os
import shutil
import tempfile

from pyxen.dom0.xenstored import Quotas, XenstoreService, XsClient


class Daemon:
    """A running XenstoreService (no hypervisor) plus the log lines it wrote."""

    def __init__(self, quotas: Quotas | None = None, privcmd=None):
        # Unix socket paths are limited to 108 bytes: keep the directory short.
        self.dir = tempfile.mkdtemp(prefix="xsd-", dir="/tmp")
        self.path = os.path.join(self.dir, "socket")
        self.log: list[str] = []
        self.service = XenstoreService(privcmd, self.path, quotas=quotas, log=self.log.append)
        self.service.start()
        self._clients: list[XsClient] = []

    def client(self) -> XsClient:
        c = XsClient.connect(self.path)
        self._clients.append(c)
        return c

    def local(self) -> XsClient:
        return self.service.local_client()

    def domain(self, domid: int) -> XsClient:
        return self.service.local_client_as_domain_for_tests(domid)

    def close(self) -> None:
        for c in self._clients:
            try:
                c.close()
            except OSError:
                pass
        self.service.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
