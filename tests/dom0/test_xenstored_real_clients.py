"""Real xenstore clients against our daemon: Debian's xenstore-utils (libxenstore,
found through XENSTORED_PATH) and the pyxs library."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time

import pytest

needs_utils = pytest.mark.skipif(shutil.which("xenstore-read") is None,
                                 reason="xenstore-utils not installed")


def _run(daemon, *argv: str, timeout: float = 10) -> subprocess.CompletedProcess:
    env = dict(os.environ, XENSTORED_PATH=daemon.path)
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)


def _ok(daemon, *argv: str) -> str:
    r = _run(daemon, *argv)
    assert r.returncode == 0, (argv, r.stdout, r.stderr)
    return r.stdout


@needs_utils
def test_xenstore_utils_read_write_list_rm(daemon):
    _ok(daemon, "xenstore-write", "/vm/a", "1", "/vm/b", "two words")
    assert _ok(daemon, "xenstore-read", "/vm/a", "/vm/b") == "1\ntwo words\n"
    assert _ok(daemon, "xenstore-list", "/vm") == "a\nb\n"
    assert _ok(daemon, "xenstore-exists", "/vm/a") == ""
    assert _run(daemon, "xenstore-exists", "/vm/zz").returncode != 0
    r = _run(daemon, "xenstore-read", "/vm/zz")
    assert r.returncode != 0 and "couldn't read path /vm/zz" in r.stderr
    _ok(daemon, "xenstore-rm", "/vm/a")
    assert _ok(daemon, "xenstore-list", "/vm") == "b\n"
    assert daemon.local().read("/vm/b") == b"two words"


@needs_utils
def test_xenstore_utils_ls_and_chmod(daemon):
    _ok(daemon, "xenstore-write", "/tree/x/y", "v")
    _ok(daemon, "xenstore-chmod", "/tree/x/y", "n5", "r6")
    out = _ok(daemon, "xenstore-ls", "-p", "/tree")
    lines = [line.split() for line in out.splitlines()]
    assert lines[0][:3] == ["x", "=", '""'] and lines[0][-1] == "(n0)"
    assert lines[1][:3] == ["y", "=", '"v"'] and lines[1][-1] == "(n5,r6)"
    assert daemon.local().get_perms("/tree/x/y") == ["n5", "r6"]
    # Relative paths of a socket client are Dom0's.
    _ok(daemon, "xenstore-write", "relative", "r")
    assert daemon.local().read("/local/domain/0/relative") == b"r"


@needs_utils
def test_xenstore_utils_large_directory(daemon):
    xs = daemon.local()
    names = sorted(f"entry-with-a-long-name-{i:04d}" for i in range(250))
    for n in names:
        xs.write(f"/many/{n}", "")
    assert _ok(daemon, "xenstore-list", "/many").split() == names     # via DIRECTORY_PART


@needs_utils
def test_xenstore_watch(daemon):
    env = dict(os.environ, XENSTORED_PATH=daemon.path)
    proc = subprocess.Popen(["xenstore-watch", "-n", "3", "/watched"], env=env,
                            stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 5
        xs = daemon.local()
        while not any(c.watches for c in daemon.service.connections) \
                and time.monotonic() < deadline:
            time.sleep(0.01)
        xs.write("/watched/a", "1")
        xs.write("/unrelated", "1")
        xs.rm("/watched")
        out, _ = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert out.split() == ["/watched", "/watched/a", "/watched"]


# -- pyxs --------------------------------------------------------------------------------------
@pytest.fixture
def pyxs():
    return pytest.importorskip("pyxs")


def test_pyxs_read_write_list_perms(daemon, pyxs):
    with pyxs.Client(unix_socket_path=daemon.path) as c:
        c.write(b"/px/a", b"1")
        c.mkdir(b"/px/dir")
        assert c.read(b"/px/a") == b"1"
        assert sorted(c.list(b"/px")) == [b"a", b"dir"]
        assert c.exists(b"/px/a") and not c.exists(b"/px/nope")
        c.set_perms(b"/px/a", [b"b0", b"r3"])
        assert c.get_perms(b"/px/a") == [b"b0", b"r3"]
        assert c.get_domain_path(3) == b"/local/domain/3"
        assert c.is_domain_introduced(0) and not c.is_domain_introduced(3)
        c.delete(b"/px")
        assert not c.exists(b"/px/a")
    assert daemon.local().directory("/") == ["tool"]


def test_pyxs_watch_fires(daemon, pyxs):
    with pyxs.Client(unix_socket_path=daemon.path) as c:
        m = c.monitor()
        m.watch(b"/pw", b"token")
        got = []
        done = threading.Event()

        def collect():
            for event in m.wait():
                got.append((event.path, event.token))
                if len(got) == 3:
                    done.set()
                    return
        t = threading.Thread(target=collect, daemon=True)
        t.start()
        xs = daemon.local()
        xs.write("/pw/x", "1")
        xs.set_perms("/pw/x", ["n0"])
        assert done.wait(5), got
        assert got == [(b"/pw", b"token"), (b"/pw/x", b"token"), (b"/pw/x", b"token")]
        m.close()


def test_pyxs_transaction_conflict_is_eagain(daemon, pyxs):
    with pyxs.Client(unix_socket_path=daemon.path) as c:
        c.write(b"/ptx/n", b"0")
        c.transaction()
        assert c.read(b"/ptx/n") == b"0"
        c.write(b"/ptx/n", b"mine")
        daemon.local().write("/ptx/n", b"theirs")
        assert c.commit() is False                  # EAGAIN
        assert c.read(b"/ptx/n") == b"theirs"
        c.transaction()
        c.write(b"/ptx/n", b"retry")
        assert c.commit() is True
        assert c.read(b"/ptx/n") == b"retry"
