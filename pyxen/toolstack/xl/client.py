"""The CLI's side of the control socket: a ControlClient that tells a refusal by the daemon
from a daemon that cannot be reached, never leaks a socket exception, and can trace every
request (`pyxl -v`)."""

from __future__ import annotations

import json
import socket
import sys
from typing import Any

from ..control import ControlClient, ControlError, encode


class DaemonError(ControlError):
    """The daemon answered and refused the request ({"ok": false, "error": ...})."""


class XlExit(Exception):
    """End the command: `message` (one line, may be None) on stderr, exit `status`."""

    def __init__(self, message: str | None, status: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class XlClient(ControlClient):
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
            with self._connect() as s:
                s.sendall(encode({"op": op, "args": args}))
                reply = self._read_reply(s)
        except ControlError:
            raise
        except OSError as e:
            raise ControlError(f"lost the connection to the pyxen host at {self.path}: "
                               f"{e.strerror or e}") from None
        if not reply.get("ok"):
            error = str(reply.get("error") or "request failed")
            self._trace(f"<- {op} refused: {error}")
            raise DaemonError(error)
        result = reply.get("result")
        if self.verbose > 1:
            self._trace(f"<- {op} {json.dumps(result)[:2000]}")
        return result

    def stream(self, op: str, **args: Any) -> socket.socket:
        self._trace(f"-> {op} {json.dumps(args, sort_keys=True)} (stream)")
        s = self._connect()
        try:
            s.sendall(encode({"op": op, "args": args}))
            line = bytearray()
            while not line.endswith(b"\n"):
                b = s.recv(1)
                if not b:
                    raise ControlError("the pyxen host closed the connection")
                line += b
            try:
                reply = json.loads(line)
            except ValueError:
                raise ControlError("the pyxen host sent a malformed reply") from None
            if not isinstance(reply, dict):
                raise ControlError("the pyxen host sent a malformed reply")
            if not reply.get("ok"):
                raise DaemonError(str(reply.get("error") or "request failed"))
            s.settimeout(None)
            return s
        except TimeoutError:
            s.close()
            raise ControlError("the pyxen host did not answer in time") from None
        except ControlError:
            s.close()
            raise
        except OSError as e:
            s.close()
            raise ControlError(f"lost the connection to the pyxen host at {self.path}: "
                               f"{e.strerror or e}") from None
