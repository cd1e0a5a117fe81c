"""The CLI's side of the control socket: a ControlClient that tells a refusal by the daemon
from a daemon that cannot be reached, never leaks a socket exception, and can trace every
request (`pyxl -v`)."""

from __future__ import annotations

import json
import socket
import sys
from typing import Any

from ..control import ControlClient, ControlError


class DaemonError(ControlError):
    """The daemon answered and refused the request ({"ok": false, "error": ...})."""


class XlExit(Exception):
    """End the command: `message` (one line, may be None) on stderr, exit `status`."""

    def __init__(self, message: str | None, status: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class XlClient(ControlClient):
    Refused = DaemonError

    def __init__(self, path: str | None = None, *, timeout: float | None = 60.0,
                 verbose: int = 0) -> None:
        super().__init__(path, timeout=timeout)
        self.verbose = verbose

    def _trace(self, text: str) -> None:
        if self.verbose:
            print(f"pyxl: {text}", file=sys.stderr, flush=True)

    def call(self, op: str, **args: Any) -> Any:
        self._trace(f"-> {op} {json.dumps(args, sort_keys=True)}")
        try:
            result = super().call(op, **args)
        except DaemonError as e:
            self._trace(f"<- {op} refused: {e}")
            raise
        except ControlError:
            raise
        except OSError as e:
            raise self._lost(e) from None
        if self.verbose > 1:
            self._trace(f"<- {op} {json.dumps(result)[:2000]}")
        return result

    def stream(self, op: str, **args: Any) -> socket.socket:
        self._trace(f"-> {op} {json.dumps(args, sort_keys=True)} (stream)")
        try:
            return super().stream(op, **args)
        except ControlError:
            raise
        except TimeoutError:
            raise ControlError("the pyxen host did not answer in time") from None
        except OSError as e:
            raise self._lost(e) from None

    def _lost(self, e: OSError) -> ControlError:
        return ControlError(f"lost the connection to the pyxen host at {self.path}: "
                            f"{e.strerror or e}")
