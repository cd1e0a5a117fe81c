"""A pyxen-host process for end-to-end tests, driven as people drive it."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def running_daemon(tmp_path: Path, *host_args: str) -> Iterator[dict]:
    """Start `python -m pyxen.toolstack.host HOST_ARGS` with its sockets in tmp_path;
    yields the environment (PYXEN_CONTROL, XENSTORED_PATH) clients need."""
    env = dict(os.environ, PYXEN_CONTROL=str(tmp_path / "control.sock"),
               XENSTORED_PATH=str(tmp_path / "xenstored.sock"), PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "pyxen.toolstack.host", *host_args],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 30
    while not (tmp_path / "control.sock").exists():
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "pyxen-host did not start"
        time.sleep(0.02)
    try:
        yield env
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
