"""xenstored's protocol semantics through XsClient (socket and in-process alike)."""

from __future__ import annotations

import threading

import pytest

from pyxen.abi.constants import XsType
from pyxen.dom0.xenstored import XsError


def _err(fn) -> str:
    with pytest.raises(XsError) as e:
        fn()
    return e.value.name


# -- nodes -------------------------------------------------------------------------------------
def test_initial_tree(xs):
    assert xs.directory("/") == ["tool"]
    assert xs.directory("/tool") == ["xenstored"]
    assert xs.get_perms("/") == ["n0"]
    assert xs.read("/tool") == b""


def test_write_creates_empty_parents_and_read_back(xs):
    xs.write("/a/b/c", b"value\0with nul")
    assert xs.read("/a/b/c") == b"value\0with nul"      # values are binary, no NUL added
    assert xs.read("/a") == b"" and xs.read("/a/b") == b""
    assert xs.directory("/a") == ["b"]
    xs.write("/a/b/c", "")
    assert xs.read("/a/b/c") == b""


def test_directory_keeps_creation_order(xs):
    for name in ["zeta", "alpha", "mid"]:
        xs.write(f"/order/{name}", "1")
    assert xs.directory("/order") == ["zeta", "alpha", "mid"]
    xs.rm("/order/alpha")
    xs.write("/order/alpha", "2")
    assert xs.directory("/order") == ["zeta", "mid", "alpha"]


def test_mkdir_keeps_existing_value(xs):
    xs.write("/m/x", "keep")
    xs.mkdir("/m/x")
    assert xs.read("/m/x") == b"keep"
    xs.mkdir("/m/y/z")
    assert xs.directory("/m/y") == ["z"]


def test_rm_semantics(xs):
    xs.write("/r/a/b/c", "1")
    xs.write("/r/a/d", "2")
    xs.rm("/r/a")
    assert xs.directory("/r") == []
    assert _err(lambda: xs.read("/r/a/b/c")) == "ENOENT"
    xs.rm("/r/missing")                              # gone already, parent exists: fine
    assert _err(lambda: xs.rm("/r/no/such")) == "ENOENT"   # parent missing too
    assert _err(lambda: xs.rm("/")) == "EINVAL"


def test_missing_node(xs):
    assert _err(lambda: xs.read("/nope")) == "ENOENT"
    assert _err(lambda: xs.directory("/nope")) == "ENOENT"
    assert _err(lambda: xs.get_perms("/nope")) == "ENOENT"
    assert not xs.exists("/nope")


@pytest.mark.parametrize("path", ["", "/a//b", "/a/", "/a b", "/a/é", "a\\b", "/" + "x" * 3072,
                                  "@releaseDomain"])
def test_bad_paths_are_einval(xs, path):
    assert _err(lambda: xs.write(path, "v")) == "EINVAL"
    assert _err(lambda: xs.read(path)) == "EINVAL"


def test_longest_path_and_allowed_characters(xs):
    xs.write("/" + "x" * 3071, "ok")                  # 3072 bytes with the slash
    xs.write("/Az09-_@", "ok")
    assert xs.read("/Az09-_@") == b"ok"


def test_relative_paths_resolve_to_the_domain_home(daemon, xs):
    xs.write("rel/node", "0")
    assert xs.read("/local/domain/0/rel/node") == b"0"
    xs.write("/local/domain/7/x", "")
    xs.set_perms("/local/domain/7", ["n7"])
    guest = daemon.domain(7)
    guest.write("data/y", "7")
    assert xs.read("/local/domain/7/data/y") == b"7"
    assert guest.read("/local/domain/7/data/y") == b"7"


def test_raw_payload_errors(xs):
    assert _err(lambda: xs.request(XsType.READ, b"/tool")) == "EINVAL"          # no NUL
    assert _err(lambda: xs.request(XsType.READ, b"/tool\0x\0")) == "EINVAL"     # two args
    assert _err(lambda: xs.request(XsType.WRITE, b"/no-nul-anywhere")) == "EINVAL"
    assert _err(lambda: xs.request(XsType.WATCH, b"/only-path\0")) == "EINVAL"
    assert _err(lambda: xs.request(XsType.SET_PERMS, b"/tool\0")) == "EINVAL"
    assert _err(lambda: xs.set_perms("/tool", ["x0"])) == "EINVAL"
    assert _err(lambda: xs.set_perms("/tool", ["r"])) == "EINVAL"
    assert _err(lambda: xs.set_perms("/tool", ["r1z"])) == "EINVAL"
    assert _err(lambda: xs.request(XsType.TRANSACTION_END, b"X\0", 0)) == "EINVAL"
    for unknown in (20, 23, 99, XsType.WATCH_EVENT, XsType.ERROR, 0xFFFF):
        assert _err(lambda u=unknown: xs.request(u, b"\0")) == "ENOSYS"


def test_write_value_may_be_empty_and_binary(xs):
    xs.request(XsType.WRITE, b"/bin\0")
    assert xs.read("/bin") == b""
    xs.request(XsType.WRITE, b"/bin\0\x00\x01\xff")
    assert xs.read("/bin") == b"\x00\x01\xff"


# -- directories larger than a message ---------------------------------------------------------
def test_large_directory_is_e2big_then_read_in_parts(xs):
    names = [f"child-with-a-long-name-{i:04d}" for i in range(300)]
    for n in names:
        xs.write(f"/big/{n}", "")
    assert _err(lambda: xs.request(XsType.DIRECTORY, b"/big\0")) == "E2BIG"
    assert xs.directory("/big") == names


def test_directory_part_format(xs):
    xs.write("/dp/one", "")
    xs.write("/dp/two", "")
    reply = xs.request(XsType.DIRECTORY_PART, b"/dp\0" + b"0\0")
    gen, rest = reply.split(b"\0", 1)
    assert gen.isdigit()
    assert rest == b"one\0two\0\0"                    # an empty name ends the list
    assert xs.request(XsType.DIRECTORY_PART, b"/dp\x004\0") == gen + b"\0two\0\0"
    assert xs.request(XsType.DIRECTORY_PART, b"/dp\x0099\0") == gen + b"\0\0"
    xs.write("/dp/three", "")
    gen2 = xs.request(XsType.DIRECTORY_PART, b"/dp\x000\0").split(b"\0")[0]
    assert gen2 != gen                                # a changed directory: new generation
    assert _err(lambda: xs.request(XsType.DIRECTORY_PART, b"/dp\0")) == "EINVAL"


def test_payload_of_exactly_the_limit(xs):
    xs.request(XsType.WRITE, b"/h\0" + b"w" * (4096 - 3))
    assert xs.read("/h") == b"w" * 4093


# -- domains -----------------------------------------------------------------------------------
def test_domain_queries(daemon, xs):
    assert xs.get_domain_path(5) == "/local/domain/5"
    assert xs.request(XsType.GET_DOMAIN_PATH, b"12abc\0") == b"/local/domain/12\0"   # atoi
    assert xs.is_introduced(0)
    assert not xs.is_introduced(9)
    assert _err(lambda: xs.release(9)) == "ENOENT"
    assert _err(lambda: xs.release(0)) == "EINVAL"
    assert _err(lambda: xs.resume(9)) == "ENOENT"
    assert _err(lambda: xs.set_target(9, 10)) == "ENOENT"
    # No hypervisor behind this daemon: a ring cannot be mapped.
    assert _err(lambda: xs.introduce(3, 0xFEFFC, 1)) == "EINVAL"
    assert _err(lambda: xs.introduce(3, 0xFEFFC, 0)) == "EINVAL"
    assert any("INTRODUCE of domain 3" in line for line in daemon.log)


def test_domain_only_requests_are_refused_to_guests(daemon):
    guest = daemon.domain(4)
    for fn in (lambda: guest.introduce(5, 1, 1), lambda: guest.release(5),
               lambda: guest.resume(5), lambda: guest.set_target(4, 5),
               lambda: guest.control("help"), lambda: guest.is_introduced(5)):
        assert _err(fn) == "EACCES"
    assert guest.get_domain_path(4) == "/local/domain/4"


def test_control(daemon, xs):
    assert b"check" in xs.control("help")
    assert xs.control("check") == b"OK\0"
    xs.control("print", "hello from the test")
    assert "xenstored: hello from the test" in daemon.log
    assert _err(lambda: xs.control("frobnicate")) == "EINVAL"
    assert _err(lambda: xs.request(XsType.CONTROL, b"")) == "EINVAL"
    xs.control("log", "on")
    xs.read("/tool")
    xs.control("log", "off")
    assert any("READ" in line for line in daemon.log)


# -- transactions ------------------------------------------------------------------------------
def test_transaction_isolation_and_commit(daemon, xs):
    other = daemon.client()
    xs.write("/t/a", "1")
    tx = xs.transaction_start()
    xs.write("/t/a", "2", tx)
    xs.write("/t/new/deep", "n", tx)
    assert xs.read("/t/a", tx) == b"2"                 # reads see the transaction's writes
    assert other.read("/t/a") == b"1"                  # others do not, yet
    assert not other.exists("/t/new")
    assert xs.transaction_end(tx, True)
    assert other.read("/t/a") == b"2" and other.read("/t/new/deep") == b"n"


def test_transaction_abort_discards(xs):
    xs.write("/ta/a", "1")
    tx = xs.transaction_start()
    xs.rm("/ta/a", tx)
    assert not xs.exists("/ta/a", tx)
    xs.transaction_end(tx, False)
    assert xs.read("/ta/a") == b"1"


def test_conflict_on_a_node_read_in_the_transaction(daemon, xs):
    other = daemon.client()
    xs.write("/c/x", "0")
    xs.write("/c/y", "0")
    tx = xs.transaction_start()
    xs.read("/c/x", tx)
    xs.write("/c/y", "1", tx)
    other.write("/c/x", "changed")
    assert xs.transaction_end(tx, True) is False       # EAGAIN
    assert xs.read("/c/y") == b"0"                      # nothing of it applied
    assert _err(lambda: xs.transaction_end(tx, True)) == "ENOENT"   # it is gone


def test_no_conflict_for_unrelated_changes(daemon, xs):
    other = daemon.client()
    xs.write("/nc/x", "0")
    xs.write("/nc2/z", "0")
    tx = xs.transaction_start()
    xs.read("/nc/x", tx)
    other.write("/nc2/z", "1")                         # not read or written in tx
    assert xs.transaction_end(tx, True)


def test_conflict_on_concurrent_creation(daemon, xs):
    other = daemon.client()
    xs.write("/cc", "")
    tx = xs.transaction_start()
    assert not xs.exists("/cc/n", tx)
    xs.write("/cc/n", "mine", tx)
    other.write("/cc/n", "theirs")
    assert xs.transaction_end(tx, True) is False
    assert xs.read("/cc/n") == b"theirs"


def test_transaction_errors(xs):
    assert _err(lambda: xs.read("/tool", 12345)) == "ENOENT"        # unknown tx id
    tx = xs.transaction_start()
    assert _err(lambda: xs.request(XsType.TRANSACTION_START, b"\0", tx)) == "EBUSY"
    assert _err(lambda: xs.request(XsType.TRANSACTION_END, b"T\0", 0)) == "ENOENT"
    tx2 = xs.transaction_start()
    assert tx2 != tx
    xs.transaction_end(tx, False)
    xs.transaction_end(tx2, False)


def test_transact_retries_until_it_commits(daemon):
    clients = [daemon.client() for _ in range(4)] + [daemon.local()]
    clients[0].write("/counter", "0")

    def bump(t):
        t.write("/counter", str(int(t.read("/counter")) + 1))

    def worker(c):
        for _ in range(25):
            c.transact(bump)
    threads = [threading.Thread(target=worker, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert clients[0].read("/counter") == str(25 * len(clients)).encode()


def test_transaction_context_manager(xs):
    with xs.transaction() as t:
        t.write("/ctx/a", "1")
        t.mkdir("/ctx/b")
        assert t.directory("/ctx") == ["a", "b"]
    assert xs.read("/ctx/a") == b"1"
    with pytest.raises(RuntimeError):
        with xs.transaction() as t:
            t.write("/ctx/a", "2")
            raise RuntimeError("body failed")
    assert xs.read("/ctx/a") == b"1"


# -- watches -----------------------------------------------------------------------------------
def _events(c, timeout=0.3):
    return [(e.path, e.token) for e in c.events(timeout)]


def test_watch_fires_on_registration_and_on_changes_below(xs, daemon):
    xs.watch("/w", "tok")
    assert xs.next_event(2.0) == ("/w", "tok")        # at once, even for a missing node
    other = daemon.client()
    other.write("/w/a/b", "1")
    other.write("/elsewhere", "1")
    other.write("/w", "v")
    other.set_perms("/w/a", ["n0", "r3"])
    assert _events(xs) == [("/w/a/b", "tok"), ("/w", "tok"), ("/w/a", "tok")]


def test_recursive_removal_reports_the_watched_path(xs, daemon):
    other = daemon.client()
    other.write("/rr/a/b/c", "1")
    xs.watch("/rr/a/b", "deep")
    xs.watch("/rr", "top")
    _events(xs)
    other.rm("/rr/a")
    assert sorted(_events(xs)) == [("/rr/a", "top"), ("/rr/a/b", "deep")]


def test_unwatch_and_duplicates(xs, daemon):
    xs.watch("/u", "t1")
    xs.watch("/u", "t2")
    assert _err(lambda: xs.watch("/u", "t1")) == "EEXIST"
    _events(xs)
    xs.unwatch("/u", "t1")
    assert _err(lambda: xs.unwatch("/u", "t1")) == "ENOENT"
    daemon.client().write("/u/x", "")
    assert _events(xs) == [("/u/x", "t2")]
    xs.reset_watches()
    daemon.client().write("/u/y", "")
    assert _events(xs) == []


def test_transaction_changes_fire_at_commit_only(xs, daemon):
    watcher = daemon.client()
    watcher.watch("/tw", "t")
    _events(watcher)
    tx = xs.transaction_start()
    xs.write("/tw/a", "1", tx)
    assert _events(watcher, 0.2) == []
    xs.transaction_end(tx, True)
    assert _events(watcher) == [("/tw/a", "t")]
    tx = xs.transaction_start()
    xs.write("/tw/b", "1", tx)
    xs.transaction_end(tx, False)
    assert _events(watcher, 0.2) == []


def test_relative_watch_gets_relative_paths(daemon, xs):
    xs.mkdir("/local/domain/3")
    xs.set_perms("/local/domain/3", ["n3"])
    xs.write("/local/domain/3/device/x", "")          # inherits: owned by domain 3
    guest = daemon.domain(3)
    guest.watch("device", "rel")
    guest.watch("/local/domain/3/device", "abs")
    assert sorted(_events(guest)) == [("/local/domain/3/device", "abs"), ("device", "rel")]
    xs.write("/local/domain/3/device/x/state", "4")
    assert sorted(_events(guest)) == [("/local/domain/3/device/x/state", "abs"),
                                      ("device/x/state", "rel")]
    guest.unwatch("device", "rel")


def test_watch_events_need_read_permission(daemon, xs):
    xs.write("/secret/key", "s")
    xs.write("/public/key", "p")
    xs.set_perms("/public", ["n0", "r5"])
    xs.set_perms("/public/key", ["n0", "r5"])
    guest = daemon.domain(5)
    guest.watch("/secret", "s")
    guest.watch("/public", "p")
    assert sorted(_events(guest)) == [("/public", "p"), ("/secret", "s")]   # initial ones
    xs.write("/secret/key", "s2")
    xs.write("/secret/new", "x")
    xs.write("/public/key", "p2")
    assert _events(guest) == [("/public/key", "p")]
    # Taking read access away is still announced (old permissions), then silence.
    xs.set_perms("/public/key", ["n0"])
    xs.write("/public/key", "p3")
    assert _events(guest) == [("/public/key", "p")]
    # Removal is announced with the removed node's permissions.
    xs.rm("/secret")
    xs.rm("/public")
    assert _events(guest) == [("/public", "p")]


def test_special_watches_for_privileged_only(daemon, xs):
    guest = daemon.domain(6)
    guest.watch("@releaseDomain", "r")
    xs.watch("@releaseDomain", "r0")
    assert _events(guest) == [("@releaseDomain", "r")]     # the registration event only
    assert _events(xs) == [("@releaseDomain", "r0")]
    assert xs.get_perms("@releaseDomain") == ["n0"]
    assert _err(lambda: guest.get_perms("@releaseDomain")) == "EACCES"
    assert _err(lambda: guest.set_perms("@releaseDomain", ["n6"])) == "EACCES"
    assert _err(lambda: xs.get_perms("@nonsense")) == "ENOENT"
    xs.set_perms("@introduceDomain", ["n0", "r6"])
    assert guest.get_perms("@introduceDomain") == ["n0", "r6"]
