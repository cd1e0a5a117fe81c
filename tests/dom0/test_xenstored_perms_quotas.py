"""Permissions between unprivileged connections, and the per-domain quotas."""

from __future__ import annotations

import pytest

from pyxen.dom0.xenstored import Quotas, XsError


def _err(fn) -> str:
    with pytest.raises(XsError) as e:
        fn()
    return e.value.name


@pytest.fixture
def two_guests(daemon):
    """Dom0 gives domains 5 and 6 their home directories, as the toolstack does."""
    dom0 = daemon.local()
    for domid in (5, 6):
        home = f"/local/domain/{domid}"
        dom0.mkdir(home)
        dom0.set_perms(home, [f"n{domid}"])
    return dom0, daemon.domain(5), daemon.domain(6)


def test_guest_cannot_see_dom0_nodes(daemon):
    dom0 = daemon.local()
    dom0.write("/vm/uuid/name", "x")
    guest = daemon.domain(5)
    assert _err(lambda: guest.read("/vm/uuid/name")) == "EACCES"
    assert _err(lambda: guest.directory("/")) == "EACCES"
    assert _err(lambda: guest.write("/vm/uuid/name", "y")) == "EACCES"
    assert _err(lambda: guest.write("/newtop", "y")) == "EACCES"
    assert _err(lambda: guest.mkdir("/vm/other")) == "EACCES"
    assert _err(lambda: guest.rm("/vm")) == "EACCES"
    assert _err(lambda: guest.get_perms("/vm")) == "EACCES"
    # A missing node under an unreadable parent is EACCES too: nothing leaks.
    assert _err(lambda: guest.read("/vm/nonexistent")) == "EACCES"
    assert dom0.read("/vm/uuid/name") == b"x"


def test_owner_has_everything_and_creations_are_owned(two_guests):
    dom0, g5, g6 = two_guests
    g5.write("/local/domain/5/data/a", "1")
    assert g5.get_perms("/local/domain/5/data/a") == ["n5"]
    assert g5.get_perms("/local/domain/5/data") == ["n5"]
    assert _err(lambda: g6.read("/local/domain/5/data/a")) == "EACCES"
    assert _err(lambda: g5.read("/local/domain/6")) == "EACCES"
    assert _err(lambda: g5.read("/local/domain/5/missing")) == "ENOENT"   # may know that


def test_acl_entries(two_guests):
    dom0, g5, g6 = two_guests
    g5.write("/local/domain/5/shared", "s")
    g5.set_perms("/local/domain/5/shared", ["n5", "r6"])
    assert g6.read("/local/domain/5/shared") == b"s"
    assert _err(lambda: g6.write("/local/domain/5/shared", "x")) == "EACCES"
    g5.set_perms("/local/domain/5/shared", ["n5", "w6"])
    assert _err(lambda: g6.read("/local/domain/5/shared")) == "EACCES"
    g6.write("/local/domain/5/shared", "from 6")
    g5.set_perms("/local/domain/5/shared", ["n5", "b6"])
    assert g6.read("/local/domain/5/shared") == b"from 6"
    # The owner entry's letter is everyone else's default ...
    g5.set_perms("/local/domain/5/shared", ["r5"])
    assert g6.read("/local/domain/5/shared") == b"from 6"
    # ... unless a later entry names the domain.
    g5.set_perms("/local/domain/5/shared", ["r5", "n6"])
    assert _err(lambda: g6.read("/local/domain/5/shared")) == "EACCES"
    # The first entry naming the domain wins.
    g5.set_perms("/local/domain/5/shared", ["n5", "r6", "n6"])
    assert g6.read("/local/domain/5/shared") == b"from 6"


def test_only_owner_or_dom0_sets_permissions(two_guests):
    dom0, g5, g6 = two_guests
    g5.write("/local/domain/5/f", "")
    g5.set_perms("/local/domain/5/f", ["n5", "b6"])
    assert _err(lambda: g6.set_perms("/local/domain/5/f", ["n5", "b6"])) == "EACCES"
    assert _err(lambda: g5.set_perms("/local/domain/5/f", ["n6"])) == "EPERM"  # owner stays
    dom0.set_perms("/local/domain/5/f", ["n6"])                               # Dom0 may
    assert g6.get_perms("/local/domain/5/f") == ["n6"]
    assert _err(lambda: g5.read("/local/domain/5/f")) == "EACCES"


def test_children_inherit_parent_permissions(two_guests):
    dom0, g5, g6 = two_guests
    dom0.mkdir("/local/domain/5/device/vif/0")
    dom0.set_perms("/local/domain/5/device", ["n5", "r6"])
    dom0.write("/local/domain/5/device/new/deep", "")
    assert dom0.get_perms("/local/domain/5/device/new/deep") == ["n5", "r6"]
    g5.write("/local/domain/5/device/mine", "")
    assert dom0.get_perms("/local/domain/5/device/mine") == ["n5", "r6"]
    assert g6.read("/local/domain/5/device/new/deep") == b""


def test_dom0_socket_clients_bypass_permissions(daemon, two_guests):
    dom0, g5, _ = two_guests
    g5.write("/local/domain/5/private", "p")
    sock = daemon.client()
    assert sock.read("/local/domain/5/private") == b"p"
    sock.write("/local/domain/5/private", "q")
    assert sock.get_perms("/local/domain/5/private") == ["n5"]


def test_guest_socket_connection_is_unprivileged(daemon, two_guests):
    from pyxen.dom0.xenstored.client import XsClient, _SocketTransport

    sock = daemon.service.socket_as_domain_for_tests(6)
    g6 = XsClient(_SocketTransport(sock))
    try:
        assert _err(lambda: g6.read("/local/domain/5")) == "EACCES"
        g6.write("/local/domain/6/x", "6")
        assert g6.read("x") == b"6"                    # relative to its own home
    finally:
        g6.close()


# -- quotas ------------------------------------------------------------------------------------
def _guest_with_home(daemon, domid: int):
    dom0 = daemon.local()
    dom0.mkdir(f"/local/domain/{domid}")
    dom0.set_perms(f"/local/domain/{domid}", [f"n{domid}"])
    return dom0, daemon.domain(domid)


def test_node_quota(make_daemon):
    d = make_daemon(quotas=Quotas(nodes=5))
    dom0, guest = _guest_with_home(d, 5)          # the home node counts: 1 of 5
    for i in range(4):
        guest.write(f"n{i}", "")
    assert _err(lambda: guest.write("n4", "")) == "ENOSPC"
    assert _err(lambda: guest.write("a/b", "")) == "ENOSPC"
    guest.write("n0", "rewriting is no new node")
    guest.rm("n0")
    guest.write("again", "")                       # removal gave one back
    for i in range(10):
        dom0.write(f"/local/dom0-is-exempt/{i}", "")


def test_node_quota_counts_parents_created_on_the_way(make_daemon):
    d = make_daemon(quotas=Quotas(nodes=4))
    _, guest = _guest_with_home(d, 5)
    assert _err(lambda: guest.write("a/b/c/d", "")) == "ENOSPC"     # 1 + 4 > 4
    guest.write("a/b/c", "")                                        # 1 + 3 = 4
    assert guest.directory("a/b") == ["c"]


def test_entry_size_quota(make_daemon):
    d = make_daemon(quotas=Quotas(entry_size=100))
    dom0, guest = _guest_with_home(d, 5)
    # record = 24-byte header + 8 per permission + value + children names
    guest.write("v", b"x" * (100 - 24 - 8 - 1))
    assert _err(lambda: guest.write("v", b"x" * (100 - 24 - 8))) == "ENOSPC"
    assert guest.read("v") == b"x" * 67
    dom0.write("/local/domain/5/big", b"y" * 1000)                # Dom0 is exempt


def test_default_entry_size_is_2048(daemon):
    _, guest = _guest_with_home(daemon, 5)
    guest.write("ok", b"x" * 2000)
    assert _err(lambda: guest.write("too-big", b"x" * 2048)) == "ENOSPC"


def test_watch_quota(make_daemon):
    d = make_daemon(quotas=Quotas(watches=3))
    _, guest = _guest_with_home(d, 5)
    # C xenstored refuses once the domain has more than the quota: quota + 1 fit.
    for i in range(4):
        guest.watch("w", f"t{i}")
    assert _err(lambda: guest.watch("w", "t4")) == "E2BIG"
    other = d.domain(5)                             # counted per domain, not connection
    assert _err(lambda: other.watch("w", "x")) == "E2BIG"
    guest.unwatch("w", "t0")
    other.watch("w", "x")
    dom0 = d.client()
    for i in range(10):
        dom0.watch("/", f"dom0-{i}")


def test_transaction_quota(make_daemon):
    d = make_daemon(quotas=Quotas(transactions=2))
    _, guest = _guest_with_home(d, 5)
    txs = [guest.transaction_start() for _ in range(3)]
    assert _err(lambda: guest.transaction_start()) == "ENOSPC"
    guest.transaction_end(txs[0], False)
    guest.transaction_start()
    dom0 = d.client()
    for _ in range(10):
        dom0.transaction_start()
